//! Sending a service's own events (sign-ins, purchases, resource flows) to the analytics service.
//!
//! [`Emitter::emit`] never waits and never fails the request that emits: events go through a
//! bounded queue to one background task that sends them in batches (up to 100, or what arrived in
//! half a second) with the service key. A batch that fails for want of the service (a transport
//! error or a 5xx) is sent again, the same events with the same ids, which the analytics service
//! counts once. If the queue is full (the analytics service has been away long enough), new events
//! are dropped and counted ([`Emitter::dropped`]), so a business request never waits for analytics.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use serde_json::{Value, json};
use tokio::sync::mpsc;

/// Events per batch.
const BATCH: usize = 100;
/// Events waiting to be sent before new ones are dropped.
const QUEUE: usize = 10_000;
/// How long the first event of a batch waits for others.
const LINGER: Duration = Duration::from_millis(500);
/// Tries per batch; between them the wait doubles from a quarter second (about a minute in all).
const TRIES: u32 = 8;

/// Where a service's events go; [`Emitter::disabled`] when no analytics URL is configured.
#[derive(Clone, Default)]
pub struct Emitter {
    queue: Option<mpsc::Sender<Value>>,
    dropped: Arc<AtomicU64>,
}

impl Emitter {
    /// Events are discarded: the deployment has no analytics service.
    pub fn disabled() -> Self {
        Self::default()
    }

    /// Starts the sender for `url` (the analytics service's base URL); the events are counted
    /// under the analytics service's default game. Must be called inside a Tokio runtime.
    pub fn start(url: &str, service_key: &str) -> Self {
        let (queue, receiver) = mpsc::channel(QUEUE);
        let target = Target {
            http: reqwest::Client::builder()
                .timeout(Duration::from_secs(10))
                .build()
                .unwrap_or_default(),
            url: format!("{}/v1/events", url.trim_end_matches('/')),
            key: service_key.to_owned(),
        };
        tokio::spawn(send_batches(target, receiver));
        Self {
            queue: Some(queue),
            dropped: Arc::default(),
        }
    }

    /// Queues one event (`{"id", "name", "player", "time", ...}`, the collector's format).
    pub fn emit(&self, event: Value) {
        if let Some(queue) = &self.queue
            && queue.try_send(event).is_err()
        {
            let dropped = self.dropped.fetch_add(1, Ordering::Relaxed) + 1;
            if dropped.is_power_of_two() {
                tracing::warn!(dropped, "the analytics queue is full; events are dropped");
            }
        }
    }

    /// Events dropped because the queue was full.
    pub fn dropped(&self) -> u64 {
        self.dropped.load(Ordering::Relaxed)
    }
}

/// An event in the collector's format, at `time_ms` (Unix milliseconds). `id` must be the same
/// whenever the same happening is emitted again: that is what makes it count once.
pub fn event(
    id: &str,
    name: &str,
    player: &str,
    session: Option<&str>,
    time_ms: i64,
    properties: Value,
) -> Value {
    let time = jiff::Timestamp::from_millisecond(time_ms).unwrap_or(jiff::Timestamp::UNIX_EPOCH);
    json!({"id": id, "name": name, "player": player, "session": session, "time": time.to_string(),
           "properties": properties})
}

struct Target {
    http: reqwest::Client,
    url: String,
    key: String,
}

async fn send_batches(target: Target, mut receiver: mpsc::Receiver<Value>) {
    while let Some(first) = receiver.recv().await {
        let mut events = vec![first];
        let deadline = tokio::time::Instant::now() + LINGER;
        while events.len() < BATCH {
            match tokio::time::timeout_at(deadline, receiver.recv()).await {
                Ok(Some(event)) => events.push(event),
                Ok(None) | Err(_) => break,
            }
        }
        send(&target, &json!({"events": events})).await;
    }
}

async fn send(target: &Target, batch: &Value) {
    let mut wait = Duration::from_millis(250);
    for attempt in 1..=TRIES {
        let answer = target
            .http
            .post(&target.url)
            .bearer_auth(&target.key)
            .json(batch)
            .send()
            .await;
        match answer {
            Ok(answer) if answer.status().is_success() => {
                let body: Value = answer.json().await.unwrap_or_default();
                if let Some(rejected) = body
                    .get("rejected")
                    .filter(|r| r.as_array().is_some_and(|r| !r.is_empty()))
                {
                    let rejected = rejected.to_string();
                    tracing::warn!(%rejected, "analytics refused events");
                }
                return;
            }
            Ok(answer) if answer.status().is_client_error() => {
                tracing::warn!(status = %answer.status(), "analytics refused a batch; it is not sent again");
                return;
            }
            Ok(answer) => tracing::debug!(status = %answer.status(), attempt, "analytics is unavailable"),
            Err(error) => tracing::debug!(%error, attempt, "analytics is unreachable"),
        }
        tokio::time::sleep(wait).await;
        wait *= 2;
    }
    tracing::warn!(
        events = batch["events"].as_array().map_or(0, Vec::len),
        "analytics stayed unavailable; a batch is lost"
    );
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::Json;
    use axum::http::StatusCode;
    use axum::routing::post;
    use std::sync::Mutex;

    /// A collector that fails the first `failures` batches with a 503 and records the rest.
    async fn collector(failures: usize) -> (String, Arc<Mutex<Vec<Value>>>) {
        let seen: Arc<Mutex<Vec<Value>>> = Arc::default();
        let calls = Arc::new(AtomicU64::new(0));
        let recorded = seen.clone();
        let app = axum::Router::new().route(
            "/v1/events",
            post(move |headers: axum::http::HeaderMap, Json(batch): Json<Value>| {
                let (recorded, calls) = (recorded.clone(), calls.clone());
                async move {
                    assert_eq!(headers["authorization"], "Bearer key-0123456789");
                    if calls.fetch_add(1, Ordering::SeqCst) < failures as u64 {
                        return (StatusCode::SERVICE_UNAVAILABLE, Json(json!({})));
                    }
                    recorded.lock().expect("lock").push(batch);
                    (StatusCode::OK, Json(json!({"accepted": 1, "rejected": []})))
                }
            }),
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let url = format!("http://{}", listener.local_addr().expect("address"));
        tokio::spawn(async move { axum::serve(listener, app).await });
        (url, seen)
    }

    async fn wait_for(seen: &Mutex<Vec<Value>>, events: usize) -> Vec<Value> {
        for _ in 0..100 {
            let batches = seen.lock().expect("lock").clone();
            let sent: Vec<Value> = batches
                .iter()
                .flat_map(|batch| batch["events"].as_array().cloned().unwrap_or_default())
                .collect();
            if sent.len() >= events {
                return batches;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        panic!("the events did not arrive");
    }

    #[tokio::test]
    async fn events_arrive_in_batches_and_a_failed_batch_is_sent_again() {
        let (url, seen) = collector(2).await;
        let emitter = Emitter::start(&url, "key-0123456789");
        for i in 0..150 {
            emitter.emit(json!({"id": format!("e{i}"), "name": "design"}));
        }
        let batches = wait_for(&seen, 150).await;
        assert_eq!(batches.len(), 2, "100 and 50, the first after two 503s");
        assert_eq!(batches[0]["events"].as_array().expect("events").len(), 100);
        assert_eq!(batches[0]["events"][0]["id"], "e0");
        assert_eq!(emitter.dropped(), 0);
    }

    #[test]
    fn events_carry_an_rfc3339_time() {
        let event = event(
            "e1",
            "session_start",
            "p1",
            Some("s1"),
            1_800_000_000_000,
            json!({}),
        );
        assert_eq!(event["time"], "2027-01-15T08:00:00Z");
        assert_eq!(event["session"], "s1");
    }

    #[tokio::test]
    async fn a_disabled_emitter_takes_events_and_sends_nothing() {
        let emitter = Emitter::disabled();
        emitter.emit(json!({"id": "e1"}));
        assert_eq!(emitter.dropped(), 0);
    }
}
