//! What `/console/api/summary` answers and the stream sends: fleets with their servers counted
//! by state, read from the watch-fed stores, together with what the [`ConsoleFeed`] holds.

use std::collections::BTreeMap;
use std::sync::Arc;

use flotilla_api::{GameServer, GameServerFleet, GameServerState, labels};
use jiff::Timestamp;
use kube::ResourceExt;
use kube::runtime::reflector::Store;
use serde::Serialize;

use super::{AllocationView, ConsoleFeed, Decision, LeaderView};

/// Servers by state with their players, for one fleet or the total.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Counts {
    /// Every state, zeros included, so the page need not know which ones exist.
    pub servers: BTreeMap<&'static str, u32>,
    pub total: u32,
    pub players: i64,
    pub capacity: i64,
}

impl Default for Counts {
    fn default() -> Self {
        Counts {
            servers: GameServerState::ALL.iter().map(|s| (s.as_str(), 0)).collect(),
            total: 0,
            players: 0,
            capacity: 0,
        }
    }
}

impl Counts {
    fn add(&mut self, server: &GameServer) {
        // A server with a deletion timestamp is on its way out whatever its last state said.
        let state = if server.metadata.deletion_timestamp.is_some() {
            GameServerState::Shutdown
        } else {
            server.status.as_ref().map(|s| s.state).unwrap_or_default()
        };
        *self.servers.entry(state.as_str()).or_default() += 1;
        self.total += 1;
        if state == GameServerState::Shutdown {
            return;
        }
        // As the fleet's status counts them: reported players, else the declared capacity.
        match (
            server.status.as_ref().and_then(|s| s.players.as_ref()),
            &server.spec.players,
        ) {
            (Some(reported), _) => {
                self.players += i64::from(reported.count);
                self.capacity += i64::from(reported.capacity);
            }
            (None, Some(declared)) => self.capacity += i64::from(declared.capacity),
            (None, None) => {}
        }
    }

    fn merge(&mut self, other: &Counts) {
        for (state, count) in &other.servers {
            *self.servers.entry(state).or_default() += count;
        }
        self.total += other.total;
        self.players += other.players;
        self.capacity += other.capacity;
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct FleetRow {
    pub namespace: String,
    /// The fleet's name; "" for servers that belong to no fleet.
    pub name: String,
    /// The fleet's spec.replicas; None for servers whose fleet is gone (or never was).
    pub desired: Option<i32>,
    #[serde(flatten)]
    pub counts: Counts,
}

/// One row per fleet, and one per namespace for servers of no known fleet (standalone ones, or
/// those of a fleet being deleted), sorted by namespace and name.
pub fn fleet_rows(fleets: &[Arc<GameServerFleet>], servers: &[Arc<GameServer>]) -> Vec<FleetRow> {
    let row = |namespace: String, name: String, desired| FleetRow {
        namespace,
        name,
        desired,
        counts: Counts::default(),
    };
    let mut rows: BTreeMap<(String, String), FleetRow> = fleets
        .iter()
        .map(|fleet| {
            let key = (fleet.namespace().unwrap_or_default(), fleet.name_any());
            (key.clone(), row(key.0, key.1, Some(fleet.spec.replicas)))
        })
        .collect();
    for server in servers {
        let namespace = server.namespace().unwrap_or_default();
        let owner = server.labels().get(labels::FLEET).cloned().unwrap_or_default();
        let key = (namespace, owner);
        let known = if rows.contains_key(&key) {
            key
        } else {
            (key.0, String::new())
        };
        rows.entry(known.clone())
            .or_insert_with(|| row(known.0, known.1, None))
            .counts
            .add(server);
    }
    rows.into_values().collect()
}

/// What `/console/api/summary` answers and the stream sends.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Summary {
    /// This replica's identity (its pod name in a cluster).
    pub identity: String,
    /// The namespace the operator watches; None for all.
    pub namespace: Option<String>,
    pub leader: LeaderView,
    pub started_at: String,
    pub generated_at: String,
    pub fleets: Vec<FleetRow>,
    pub totals: Counts,
    /// Answered by this replica only: every replica serves allocations.
    pub allocations: AllocationView,
    /// Made on the leader only; empty on the other replicas.
    pub decisions: Vec<Decision>,
}

/// What the console's handlers read.
pub struct Console {
    pub feed: Arc<ConsoleFeed>,
    pub fleets: Store<GameServerFleet>,
    pub servers: Store<GameServer>,
}

impl Console {
    pub fn summary(&self) -> Summary {
        let fleets = fleet_rows(&self.fleets.state(), &self.servers.state());
        let mut totals = Counts::default();
        for row in &fleets {
            totals.merge(&row.counts);
        }
        let feed = &self.feed;
        Summary {
            identity: feed.identity().to_owned(),
            namespace: feed.namespace().map(str::to_owned),
            leader: feed.leader(),
            started_at: feed.started_at().to_string(),
            generated_at: Timestamp::now().to_string(),
            fleets,
            totals,
            allocations: feed.allocations(),
            decisions: feed.decisions(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::console::fixtures::{fleet, server};

    fn count(row: &FleetRow, state: &str) -> u32 {
        row.counts.servers.get(state).copied().unwrap_or(99)
    }

    #[test]
    fn servers_are_counted_by_state_under_their_fleet() {
        let fleets = [fleet("games", "arena", 3), fleet("games", "duel", 1)];
        let mut leaving = (*server("games", Some("arena"), "Ready", None)).clone();
        leaving.metadata.deletion_timestamp = Some(k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(
            Timestamp::UNIX_EPOCH,
        ));
        let servers = [
            server("games", Some("arena"), "Ready", Some((0, 10))),
            server("games", Some("arena"), "Allocated", Some((4, 10))),
            server("games", Some("arena"), "Scheduled", None),
            Arc::new(leaving),
        ];
        let rows = fleet_rows(&fleets, &servers);
        assert_eq!(
            rows.iter().map(|r| r.name.as_str()).collect::<Vec<_>>(),
            ["arena", "duel"]
        );
        let arena = &rows[0];
        assert_eq!(arena.desired, Some(3));
        assert_eq!(
            (
                count(arena, "Ready"),
                count(arena, "Allocated"),
                count(arena, "Scheduled")
            ),
            (1, 1, 1)
        );
        assert_eq!(
            count(arena, "Shutdown"),
            1,
            "a server being deleted is shutting down"
        );
        assert_eq!(arena.counts.total, 4);
        // Reported players where the server reports them, declared capacity otherwise; a
        // server on its way out counts for neither.
        assert_eq!((arena.counts.players, arena.counts.capacity), (4, 28));
        let duel = &rows[1];
        assert_eq!((duel.desired, duel.counts.total), (Some(1), 0));
        assert_eq!(
            duel.counts.servers.len(),
            GameServerState::ALL.len(),
            "zeros included"
        );
    }

    #[test]
    fn servers_of_no_known_fleet_are_grouped_per_namespace() {
        let fleets = [fleet("games", "arena", 1)];
        let servers = [
            server("games", None, "Ready", None),
            server("games", Some("deleted"), "Allocated", None),
            server("other", Some("arena"), "Ready", None),
        ];
        let rows = fleet_rows(&fleets, &servers);
        let keys: Vec<_> = rows
            .iter()
            .map(|r| (r.namespace.as_str(), r.name.as_str(), r.desired, r.counts.total))
            .collect();
        assert_eq!(
            keys,
            [
                ("games", "", None, 2),
                ("games", "arena", Some(1), 0),
                ("other", "", None, 1)
            ]
        );
    }
}
