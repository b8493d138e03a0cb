//! Reports a finished match's results to the player service, which records them once per match
//! and turns them into players' statistics and notifications (docs/player-service.md); with an
//! economy URL, grants each player's match reward through the economy service (docs/economy.md);
//! with an analytics URL, sends each player's match as events (docs/analytics.md): a
//! `progression` (complete, with the score and placement) and, with rewards, a `resource` source.
//!
//! Authorised by the deployment's service key, never a player's token. The player service keys
//! the record by the match (session) id, so retrying after a lost answer is safe: it answers 200
//! for a report it already has. A reward's idempotency key is the match and the player, so it is
//! granted once however often it is sent; an event's id is the match, the player and its kind, so
//! it is counted once.

use std::time::Duration;

use flotilla_game::wire::PlayerResult;
use serde_json::json;
use tracing::warn;

#[derive(Clone)]
pub struct ResultsReporter {
    http: reqwest::Client,
    base_url: String,
    key: String,
    server: String,
    economy_url: Option<String>,
    analytics_url: Option<String>,
}

impl ResultsReporter {
    pub fn new(base_url: &str, key: String, server: String) -> crate::Result<Self> {
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(5))
            .build()
            .map_err(|e| crate::Error::Config(format!("player service client: {e}")))?;
        Ok(Self {
            http,
            base_url: base_url.trim_end_matches('/').to_owned(),
            key,
            server,
            economy_url: None,
            analytics_url: None,
        })
    }

    /// Also grants match rewards through the economy service at `url` (with the same key).
    pub fn with_economy(mut self, url: Option<String>) -> Self {
        self.economy_url = url.map(|url| url.trim_end_matches('/').to_owned());
        self
    }

    /// Also sends each player's match as events to the analytics service at `url` (same key).
    pub fn with_analytics(mut self, url: Option<String>) -> Self {
        self.analytics_url = url.map(|url| url.trim_end_matches('/').to_owned());
        self
    }

    /// Sends the results, then the rewards, then the events, retrying transport failures and 5xx answers a few
    /// times with backoff. Gives up with a warning: results also stay on the GameServer's
    /// annotation.
    pub async fn report(&self, session: &str, results: &[PlayerResult]) {
        let players = placements(results);
        let body = json!({"server": self.server, "players": players});
        let url = format!("{}/v1/matches/{session}/results", self.base_url);
        self.send(session, &url, None, &body).await;
        if let Some(economy) = &self.economy_url {
            for player in &players {
                let placement = player["placement"].as_u64().unwrap_or(1);
                let gold = reward(players.len() as u64, placement);
                let grant = json!({
                    "player": player["id"],
                    "currencies": {"gold": gold},
                    "reason": format!("match {session}: placement {placement}"),
                });
                let key = format!("match-{session}-{}", player["id"].as_str().unwrap_or_default());
                self.send(session, &format!("{economy}/v1/grants"), Some(&key), &grant)
                    .await;
            }
        }
        if let Some(analytics) = &self.analytics_url {
            let events = match_events(session, &players, self.economy_url.is_some());
            self.send(
                session,
                &format!("{analytics}/v1/events"),
                None,
                &json!({"events": events}),
            )
            .await;
        }
    }

    async fn send(&self, session: &str, url: &str, idempotency_key: Option<&str>, body: &serde_json::Value) {
        let mut delay = Duration::from_millis(200);
        for attempt in 1..=5 {
            let mut request = self.http.post(url).bearer_auth(&self.key).json(body);
            if let Some(key) = idempotency_key {
                request = request.header("idempotency-key", key);
            }
            let outcome = request.send().await;
            match outcome {
                Ok(answer) if answer.status().is_success() => return,
                Ok(answer) if answer.status().is_client_error() => {
                    warn!(%session, %url, status = %answer.status(), "match results or rewards refused");
                    return;
                }
                Ok(answer) => {
                    warn!(%session, %url, attempt, status = %answer.status(), "reporting match results failed")
                }
                Err(error) => warn!(%session, %url, attempt, %error, "reporting match results failed"),
            }
            tokio::time::sleep(delay).await;
            delay *= 2;
        }
    }
}

/// Gold for a placement among `players`: 10, and 10 more for every player placed below.
fn reward(players: u64, placement: u64) -> u64 {
    10 + 10 * players.saturating_sub(placement)
}

/// The analytics events of a finished match: each player's progression and, when rewards were
/// granted, the gold they earned. An event id is unique per player, so the match's digest and the
/// kind make it (ids are at most 64 characters); a resend counts once.
fn match_events(session: &str, players: &[serde_json::Value], rewarded: bool) -> Vec<serde_json::Value> {
    let time = jiff::Timestamp::now().to_string();
    let digest = ring::digest::digest(&ring::digest::SHA256, session.as_bytes());
    let tag: String = digest.as_ref()[..12]
        .iter()
        .map(|byte| format!("{byte:02x}"))
        .collect();
    // The session is named when it fits the collector's rules for ids.
    let session = (session.len() <= 64
        && session
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b':' | b'-')))
    .then_some(session);
    let mut events = Vec::new();
    for player in players {
        let id = player["id"].as_str().unwrap_or_default();
        let placement = player["placement"].as_u64().unwrap_or(1);
        events.push(json!({
            "id": format!("match-{tag}-progression"), "name": "progression", "player": id,
            "session": session, "time": time,
            "properties": {"status": "complete", "level": "match", "score": player["score"], "placement": placement},
        }));
        if rewarded {
            events.push(json!({
                "id": format!("match-{tag}-reward"), "name": "resource", "player": id,
                "session": session, "time": time,
                "properties": {
                    "flow": "source", "currency": "gold", "source": "match",
                    "amount": reward(players.len() as u64, placement),
                },
            }));
        }
    }
    events
}

/// Each player's placement: 1 for the best score; equal scores share a placement ("1, 1, 3").
fn placements(results: &[PlayerResult]) -> Vec<serde_json::Value> {
    results
        .iter()
        .map(|r| {
            let better = results.iter().filter(|other| other.score > r.score).count();
            json!({"id": r.player, "score": r.score, "placement": better + 1})
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use std::sync::{Arc, Mutex};

    use axum::extract::{Path, State};
    use axum::http::{HeaderMap, StatusCode};
    use axum::routing::post;

    use super::*;

    fn result(player: &str, score: u32) -> PlayerResult {
        PlayerResult {
            entity: 0,
            player: player.into(),
            score,
        }
    }

    #[test]
    fn a_better_placement_earns_more_and_everyone_earns_something() {
        assert_eq!([1, 2, 3].map(|placement| reward(3, placement)), [30, 20, 10]);
        assert_eq!(reward(1, 1), 10);
    }

    #[test]
    fn equal_scores_share_a_placement() {
        let placed = placements(&[result("a", 5), result("b", 9), result("c", 5), result("d", 1)]);
        let ranks: Vec<u64> = placed
            .iter()
            .map(|p| p["placement"].as_u64().expect("placement"))
            .collect();
        assert_eq!(ranks, [2, 1, 2, 4]);
    }

    #[test]
    fn each_player_gets_a_progression_and_a_reward_with_ids_that_resend_as_the_same() {
        let players = placements(&[result("ann", 3), result("bob", 8)]);
        let events = match_events("session-7", &players, true);
        assert_eq!(events.len(), 4);
        let again = match_events("session-7", &players, true);
        let ids = |events: &[serde_json::Value]| events.iter().map(|e| e["id"].clone()).collect::<Vec<_>>();
        assert_eq!(ids(&events), ids(&again));
        assert!(
            ids(&events)
                .iter()
                .all(|id| id.as_str().is_some_and(|id| id.len() <= 64))
        );
        let bob_reward = &events[3];
        assert_eq!(
            (
                bob_reward["player"].clone(),
                bob_reward["properties"]["amount"].clone()
            ),
            (json!("bob"), json!(20))
        );
        assert_eq!(events[0]["properties"]["placement"], 2);
        assert_eq!(
            match_events("session-7", &players, false).len(),
            2,
            "no rewards, no resource events"
        );
        assert_eq!(
            match_events(&"x".repeat(80), &players, false)[0]["session"],
            serde_json::Value::Null
        );
    }

    type Seen = Arc<Mutex<Vec<(String, String, serde_json::Value)>>>;

    /// A stand-in for the player service's endpoint that fails the first call with a 503.
    async fn record(
        State(seen): State<Seen>,
        Path(id): Path<String>,
        headers: HeaderMap,
        axum::Json(body): axum::Json<serde_json::Value>,
    ) -> StatusCode {
        let auth = headers
            .get("authorization")
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_owned();
        let mut seen = seen.lock().expect("lock");
        seen.push((id, auth, body));
        if seen.len() == 1 {
            StatusCode::SERVICE_UNAVAILABLE
        } else {
            StatusCode::CREATED
        }
    }

    #[tokio::test]
    async fn results_are_posted_with_the_service_key_and_retried_after_a_5xx() {
        let seen: Seen = Arc::default();
        let app = axum::Router::new()
            .route("/v1/matches/{id}/results", post(record))
            .with_state(seen.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        tokio::spawn(async move { axum::serve(listener, app).await.expect("serve") });

        let reporter = ResultsReporter::new(&format!("http://{addr}/"), "service-key".into(), "gs-1".into())
            .expect("reporter");
        reporter
            .report("match-7", &[result("ann", 3), result("bob", 8)])
            .await;
        let seen = seen.lock().expect("lock");
        assert_eq!(seen.len(), 2, "one 503, then the retry");
        let (id, auth, body) = &seen[1];
        assert_eq!(id, "match-7");
        assert_eq!(auth, "Bearer service-key");
        assert_eq!(
            body,
            &json!({"server": "gs-1", "players": [
                {"id": "ann", "score": 3, "placement": 2}, {"id": "bob", "score": 8, "placement": 1}]})
        );
    }
}
