//! Fan-out of messages to every replica of a service, over Redis pub/sub.
//!
//! A topic is the channel `flotilla:bus:{namespace}:{topic}`, and a subscription is one PSUBSCRIBE
//! to all of a namespace's channels. The namespace is percent-encoded into the channel name, so it
//! can hold no `:` or glob character: `a` does not see `a:b`'s messages, and `*` is not a wildcard.
//!
//! Delivery is Redis pub/sub's: at most once, to the subscribers connected at the time. A
//! subscription reconnects with backoff when its connection drops, and messages published while it
//! is disconnected are lost. Users needing every message must be able to catch up from the database
//! (treat a message as "something changed", not as the change).

use std::{sync::Arc, time::Duration};

use futures::{Stream, StreamExt, stream};
use redis::{
    AsyncCommands, Client, RedisError,
    aio::{ConnectionManager, PubSubSink, PubSubStream},
};
use ring::rand::{SecureRandom, SystemRandom};
use tokio::time::{Instant, sleep, timeout};

use crate::Result;

/// One message, as every subscriber of its namespace receives it.
#[derive(Clone, Debug, PartialEq)]
pub struct Message {
    pub topic: String,
    pub payload: Vec<u8>,
}

/// A subscription idle this long pings Redis, so a connection lost without a reset (a crashed node,
/// a dropped NAT entry) is noticed and replaced instead of waiting silently forever.
const KEEPALIVE: Duration = Duration::from_secs(30);
/// Bounds each connection attempt and each keep-alive ping.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
const MIN_BACKOFF: Duration = Duration::from_millis(100);
const MAX_BACKOFF: Duration = Duration::from_secs(5);
/// A connection that lived this long was healthy: its loss starts the backoff afresh.
const HEALTHY: Duration = Duration::from_secs(30);

/// A handle for publishing to and subscribing to one namespace; cheap to clone.
#[derive(Clone)]
pub struct Bus {
    client: Client,
    publisher: ConnectionManager,
    /// `flotilla:bus:{encoded namespace}:`, which every channel of the namespace starts with.
    prefix: Arc<str>,
}

impl Bus {
    /// Connects to Redis at `url` (the publishing connection; subscriptions open their own).
    pub async fn connect(url: &str, namespace: &str) -> Result<Self> {
        let client = Client::open(url)?;
        let publisher = client.get_connection_manager().await?;
        Ok(Self {
            client,
            publisher,
            prefix: format!("flotilla:bus:{}:", encode(namespace)).into(),
        })
    }

    /// Sends `payload` to the current subscribers of this namespace, on every replica.
    pub async fn publish(&self, topic: &str, payload: &[u8]) -> Result<()> {
        let mut redis = self.publisher.clone();
        redis
            .publish::<_, _, ()>(format!("{}{topic}", self.prefix), payload)
            .await?;
        Ok(())
    }

    /// Every message published on any topic of this namespace, by any replica, from the time the
    /// subscription is confirmed (on the stream's first poll). Never ends: it reconnects with
    /// backoff when the Redis connection drops, and messages published while it is disconnected are
    /// lost. Use [`subscribe_ready`](Self::subscribe_ready) to know when the subscription is live.
    pub fn subscribe(&self) -> impl Stream<Item = Message> + Send + 'static {
        self.subscription().stream(None)
    }

    /// Like [`subscribe`](Self::subscribe), but returns once Redis has confirmed the subscription:
    /// every message published after this returns is delivered (unless the connection drops later).
    /// Fails if the first connection fails.
    pub async fn subscribe_ready(&self) -> Result<impl Stream<Item = Message> + Send + 'static> {
        let subscription = self.subscription();
        let connection = subscription.open().await?;
        Ok(subscription.stream(Some(connection)))
    }

    fn subscription(&self) -> Subscription {
        Subscription {
            client: self.client.clone(),
            prefix: self.prefix.clone(),
        }
    }
}

struct Subscription {
    client: Client,
    prefix: Arc<str>,
}

/// A live subscribed connection: the sink pings, the stream delivers.
type Connection = (PubSubSink, PubSubStream);

struct State {
    subscription: Subscription,
    connection: Option<Connection>,
    connected_at: Instant,
    /// Consecutive losses and failed attempts, for the backoff.
    failures: u32,
}

impl Subscription {
    async fn open(&self) -> Result<Connection> {
        let opened = timeout(CONNECT_TIMEOUT, async {
            let mut pubsub = self.client.get_async_pubsub().await?;
            // Confirmed by Redis before this returns.
            pubsub.psubscribe(format!("{}*", self.prefix)).await?;
            Ok::<_, RedisError>(pubsub.split())
        })
        .await
        .map_err(|_| RedisError::from(std::io::Error::from(std::io::ErrorKind::TimedOut)))??;
        Ok(opened)
    }

    fn stream(self, connection: Option<Connection>) -> impl Stream<Item = Message> + Send + 'static {
        let state = State {
            subscription: self,
            connection,
            connected_at: Instant::now(),
            failures: 0,
        };
        stream::unfold(state, |mut state| async move {
            loop {
                let Some((sink, messages)) = state.connection.as_mut() else {
                    state.reconnect().await;
                    continue;
                };
                match next(sink, messages).await {
                    Some(message) => {
                        if let Some(message) = state.subscription.decode(&message) {
                            return Some((message, state));
                        }
                    }
                    None => {
                        tracing::warn!(prefix = %state.subscription.prefix, "pub/sub connection lost; reconnecting");
                        state.connection = None;
                        if state.connected_at.elapsed() >= HEALTHY {
                            state.failures = 0;
                        }
                        state.failures = state.failures.saturating_add(1);
                    }
                }
            }
        })
    }

    fn decode(&self, message: &redis::Msg) -> Option<Message> {
        let channel: Vec<u8> = message.get_channel().ok()?;
        let topic = channel.strip_prefix(self.prefix.as_bytes())?;
        Some(Message {
            topic: String::from_utf8_lossy(topic).into_owned(),
            payload: message.get_payload_bytes().to_vec(),
        })
    }
}

impl State {
    /// One attempt to subscribe again, after the backoff its failures call for.
    async fn reconnect(&mut self) {
        if self.failures > 0 {
            sleep(backoff(self.failures)).await;
        }
        match self.subscription.open().await {
            Ok(connection) => {
                if self.failures > 0 {
                    tracing::info!(prefix = %self.subscription.prefix, "pub/sub subscription restored");
                }
                self.connection = Some(connection);
                self.connected_at = Instant::now();
            }
            Err(error) => {
                tracing::warn!(prefix = %self.subscription.prefix, %error, "pub/sub subscription failed");
                self.failures = self.failures.saturating_add(1);
            }
        }
    }
}

/// The next message, or `None` once the connection is gone (closed, or silent through a ping).
async fn next(sink: &mut PubSubSink, messages: &mut PubSubStream) -> Option<redis::Msg> {
    loop {
        match timeout(KEEPALIVE, messages.next()).await {
            Ok(message) => return message,
            Err(_idle) => match timeout(CONNECT_TIMEOUT, sink.ping::<redis::Value>()).await {
                Ok(Ok(_)) => {}
                Ok(Err(error)) => {
                    tracing::warn!(%error, "pub/sub keep-alive ping failed");
                    return None;
                }
                Err(_) => {
                    tracing::warn!("pub/sub keep-alive ping timed out");
                    return None;
                }
            },
        }
    }
}

/// Exponential from [`MIN_BACKOFF`] to [`MAX_BACKOFF`], with up to 50% added at random so replicas
/// that lost Redis together do not all come back in the same instant.
fn backoff(failures: u32) -> Duration {
    let base = MIN_BACKOFF
        .saturating_mul(1 << failures.saturating_sub(1).min(16))
        .min(MAX_BACKOFF);
    let mut random = [0u8; 1];
    // Without randomness the backoff is merely not spread out.
    let _ = SystemRandom::new().fill(&mut random);
    base + base.mul_f64(f64::from(random[0]) / 510.0)
}

/// Percent-encodes every byte but `[A-Za-z0-9._-]`, so the result has no `:` and no glob character,
/// and distinct namespaces stay distinct.
fn encode(namespace: &str) -> String {
    let mut encoded = String::with_capacity(namespace.len());
    for byte in namespace.bytes() {
        if byte.is_ascii_alphanumeric() || matches!(byte, b'.' | b'_' | b'-') {
            encoded.push(char::from(byte));
        } else {
            encoded.push_str(&format!("%{byte:02X}"));
        }
    }
    encoded
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::{MAX_BACKOFF, MIN_BACKOFF, backoff, encode};

    #[test]
    fn namespaces_are_encoded_without_separators_or_wildcards() {
        assert_eq!(encode("game-1.eu_west"), "game-1.eu_west");
        assert_eq!(encode("a:b"), "a%3Ab");
        assert_eq!(encode("*?[]\\%"), "%2A%3F%5B%5D%5C%25");
        assert_ne!(encode("a:b"), encode("a%3Ab"));
    }

    #[test]
    fn backoff_grows_to_its_cap_and_stays_there() {
        assert!(backoff(1) >= MIN_BACKOFF && backoff(1) < MIN_BACKOFF * 2);
        assert!(backoff(3) >= MIN_BACKOFF * 4);
        for failures in [10, 100, u32::MAX] {
            let delay = backoff(failures);
            assert!(
                delay >= MAX_BACKOFF && delay <= MAX_BACKOFF.mul_f64(1.5),
                "{delay:?}"
            );
        }
        assert!(backoff(2) < Duration::from_secs(1));
    }
}
