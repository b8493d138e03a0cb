//! Reports a finished match's results to the player service, which records them once per match
//! and turns them into players' statistics and notifications (docs/player-service.md).
//!
//! Authorised by the deployment's service key, never a player's token. The player service keys
//! the record by the match (session) id, so retrying after a lost answer is safe: it answers 200
//! for a report it already has.

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
        })
    }

    /// Sends the results, retrying transport failures and 5xx answers a few times with backoff.
    /// Gives up with a warning: results also stay on the GameServer's annotation.
    pub async fn report(&self, session: &str, results: &[PlayerResult]) {
        let body = json!({"server": self.server, "players": placements(results)});
        let url = format!("{}/v1/matches/{session}/results", self.base_url);
        let mut delay = Duration::from_millis(200);
        for attempt in 1..=5 {
            let outcome = self
                .http
                .post(&url)
                .bearer_auth(&self.key)
                .json(&body)
                .send()
                .await;
            match outcome {
                Ok(answer) if answer.status().is_success() => return,
                Ok(answer) if answer.status().is_client_error() => {
                    warn!(%session, status = %answer.status(), "the player service refused the match results");
                    return;
                }
                Ok(answer) => {
                    warn!(%session, attempt, status = %answer.status(), "reporting match results failed")
                }
                Err(error) => warn!(%session, attempt, %error, "reporting match results failed"),
            }
            tokio::time::sleep(delay).await;
            delay *= 2;
        }
    }
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
    fn equal_scores_share_a_placement() {
        let placed = placements(&[result("a", 5), result("b", 9), result("c", 5), result("d", 1)]);
        let ranks: Vec<u64> = placed
            .iter()
            .map(|p| p["placement"].as_u64().expect("placement"))
            .collect();
        assert_eq!(ranks, [2, 1, 2, 4]);
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
