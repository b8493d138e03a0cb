//! This replica's WebSocket connections, by player.

use std::collections::HashMap;
use std::sync::Mutex;

use tokio::sync::mpsc;

use crate::events::Event;

/// Events queued per connection before it counts as stuck; a client that cannot keep up is
/// disconnected rather than allowed to grow the server's memory.
pub const QUEUE: usize = 256;

pub struct Connection {
    pub id: String,
    pub session: String,
    pub sender: mpsc::Sender<Event>,
}

#[derive(Default)]
pub struct Hub {
    players: Mutex<HashMap<String, Vec<Connection>>>,
}

impl Hub {
    pub fn add(&self, player: &str, connection: Connection) {
        self.lock().entry(player.to_owned()).or_default().push(connection);
    }

    /// Removes a connection; true when it was the player's last one here.
    pub fn remove(&self, player: &str, connection: &str) -> bool {
        let mut players = self.lock();
        let Some(connections) = players.get_mut(player) else {
            return true;
        };
        connections.retain(|c| c.id != connection);
        let last = connections.is_empty();
        if last {
            players.remove(player);
        }
        last
    }

    /// Queues `event` on each of the player's connections here. A connection whose queue is full or
    /// closed is dropped; its socket task then ends.
    pub fn deliver(&self, player: &str, event: &Event) {
        let mut players = self.lock();
        let Some(connections) = players.get_mut(player) else {
            return;
        };
        connections.retain(|c| match c.sender.try_send(event.clone()) {
            Ok(()) => true,
            Err(mpsc::error::TrySendError::Full(_)) => {
                tracing::warn!("dropping a connection that is not reading its events");
                false
            }
            Err(mpsc::error::TrySendError::Closed(_)) => false,
        });
        if connections.is_empty() {
            players.remove(player);
        }
    }

    /// Connections open on this replica.
    pub fn connections(&self) -> usize {
        self.lock().values().map(Vec::len).sum()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Vec<Connection>>> {
        // A panic while holding the lock leaves the map consistent (each operation is one step).
        self.players
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}
