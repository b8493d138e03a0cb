//! `/console/api`: the summary as one JSON snapshot, and as a Server-Sent Events stream that
//! sends a fresh one whenever something shown changes.

use std::sync::Arc;
use std::time::Duration;

use axum::Json;
use axum::extract::State;
use axum::http::{HeaderValue, header};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use futures::Stream;

use super::Console;

/// The stream's fastest pace. A burst of changes (a fleet scaling by hundreds of servers, each
/// a watch event) becomes one summary per quarter second, so a page never gets more than four
/// a second however busy the cluster is.
const MIN_PUSH_INTERVAL: Duration = Duration::from_millis(250);
/// While allocations from the last minute are in the window, the rate falls as time passes
/// with no event to say so: the stream then re-sends at this pace so the figure decays on screen.
const DECAY_REFRESH: Duration = Duration::from_secs(5);
/// Comment lines on an otherwise idle stream, so proxies and load balancers (and the browser)
/// do not take a quiet console for a dead connection.
const KEEP_ALIVE: Duration = Duration::from_secs(15);

pub(super) async fn summary(State(console): State<Arc<Console>>) -> Response {
    (
        [(header::CACHE_CONTROL, HeaderValue::from_static("no-store"))],
        Json(console.summary()),
    )
        .into_response()
}

/// A summary at once, then one after each change (no faster than [`MIN_PUSH_INTERVAL`]), and
/// every [`DECAY_REFRESH`] while the allocation rate is falling. Each stream builds its own
/// summaries: a handful of people watching costs a handful of passes over the stores.
pub(super) async fn stream(
    State(console): State<Arc<Console>>,
) -> Sse<impl Stream<Item = Result<Event, axum::Error>>> {
    let changes = console.feed.subscribe();
    let events = futures::stream::unfold(
        (console, changes, true),
        |(console, mut changes, first)| async move {
            if !first {
                tokio::time::sleep(MIN_PUSH_INTERVAL).await;
                if console.feed.rate_decaying() {
                    // Elapsing is the point here: either way a summary goes out.
                    let _ = tokio::time::timeout(DECAY_REFRESH, changes.changed()).await;
                } else if changes.changed().await.is_err() {
                    // The feed is gone: the operator is shutting down.
                    return None;
                }
            }
            changes.borrow_and_update();
            let event = Event::default().event("summary").json_data(console.summary());
            Some((event, (console, changes, false)))
        },
    );
    Sse::new(events).keep_alive(KeepAlive::new().interval(KEEP_ALIVE))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::console::fixtures::{fleet, server};
    use crate::console::{ConsoleFeed, router};

    /// The next `summary` event's data from an SSE body, reading more of it as needed.
    async fn next_summary(response: &mut reqwest::Response, buffer: &mut String) -> serde_json::Value {
        loop {
            if let Some(end) = buffer.find("\n\n") {
                let block: String = buffer.drain(..end + 2).collect();
                if block.lines().any(|l| l == "event: summary")
                    && let Some(data) = block.lines().find_map(|l| l.strip_prefix("data: "))
                {
                    return serde_json::from_str(data).expect("a summary is JSON");
                }
                continue;
            }
            let chunk = response
                .chunk()
                .await
                .expect("the stream goes on")
                .expect("the stream is not closed");
            buffer.push_str(std::str::from_utf8(&chunk).expect("events are UTF-8"));
        }
    }

    #[tokio::test]
    async fn the_stream_sends_a_summary_at_once_and_a_fresh_one_after_an_allocation() {
        use kube::runtime::{reflector, watcher};
        let (fleets, mut fleet_writer) = reflector::store();
        fleet_writer.apply_watcher_event(&watcher::Event::Apply((*fleet("games", "arena", 2)).clone()));
        let (servers, mut server_writer) = reflector::store();
        for state in ["Ready", "Allocated"] {
            let server = server("games", Some("arena"), state, None);
            server_writer.apply_watcher_event(&watcher::Event::Apply((*server).clone()));
        }
        let feed = Arc::new(ConsoleFeed::new("replica-a", Some("games"), true));
        let console = Arc::new(Console {
            feed: feed.clone(),
            fleets,
            servers,
        });
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("a free port");
        let address = listener.local_addr().expect("a bound address");
        tokio::spawn(async move { axum::serve(listener, router(console)).await });

        let mut response = reqwest::get(format!("http://{address}/console/api/stream"))
            .await
            .expect("the stream answers");
        assert_eq!(
            response
                .headers()
                .get(header::CONTENT_TYPE)
                .map(HeaderValue::as_bytes),
            Some(&b"text/event-stream"[..])
        );
        let mut buffer = String::new();
        let first = next_summary(&mut response, &mut buffer).await;
        assert_eq!(first["identity"], "replica-a");
        assert_eq!(first["fleets"][0]["servers"]["Ready"], 1, "{first}");
        assert_eq!(first["fleets"][0]["servers"]["Allocated"], 1, "{first}");
        assert_eq!(first["allocations"]["perMinute"], 0);
        assert_eq!(first["leader"]["thisReplica"], false);

        feed.allocation("allocated");
        let second = tokio::time::timeout(Duration::from_secs(2), next_summary(&mut response, &mut buffer))
            .await
            .expect("a summary follows the allocation within the push interval");
        assert_eq!(second["allocations"]["perMinute"], 1, "{second}");
        assert_eq!(second["allocations"]["total"]["allocated"], 1, "{second}");

        let page = reqwest::get(format!("http://{address}/console"))
            .await
            .expect("the page answers");
        assert!(page.headers().contains_key(header::CONTENT_SECURITY_POLICY));
    }
}
