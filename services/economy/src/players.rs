//! The player service, as this service asks it: whether two players exist and stand apart (a
//! block) — trades across a block are refused, and so are gifts to players who do not exist — and
//! the notifications players get when their goods sell, they are outbid, a trade changes.

use serde::Deserialize;
use serde_json::Value;

use crate::state::Shared;
use crate::{Error, Result};

#[derive(Clone)]
pub struct Players {
    http: reqwest::Client,
    base: String,
    service_key: String,
}

/// How two players stand.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize)]
pub struct Relation {
    /// Either blocked the other.
    pub blocked: bool,
    pub friends: bool,
}

impl Players {
    pub fn new(http: reqwest::Client, base: &str, service_key: &str) -> Self {
        Self {
            http,
            base: base.trim_end_matches('/').to_owned(),
            service_key: service_key.to_owned(),
        }
    }

    /// How `a` and `b` stand, or `None` when either does not exist.
    pub async fn relation(&self, a: &str, b: &str) -> Result<Option<Relation>> {
        let url = format!("{}/v1/admin/players/{a}/relations/{b}", self.base);
        let unavailable = |error: reqwest::Error| Error::Unavailable(format!("player service: {error}"));
        let answer = self
            .http
            .get(&url)
            .bearer_auth(&self.service_key)
            .send()
            .await
            .map_err(unavailable)?;
        if answer.status() == reqwest::StatusCode::NOT_FOUND {
            return Ok(None);
        }
        let answer = answer.error_for_status().map_err(unavailable)?;
        Ok(Some(answer.json().await.map_err(unavailable)?))
    }
}

/// Tells `player` what happened (`event`: `sold`, `outbid`, `trade-offered`, …) through the player
/// service's notifications. In the background and best effort: what it reports has happened
/// whether or not the notification arrives, and a request never waits for it.
pub fn notify(state: &Shared, player: &str, event: &'static str, subject: Option<&str>, content: Value) {
    let Some(players) = state.players.clone() else {
        return;
    };
    let (player, subject) = (player.to_owned(), subject.map(str::to_owned));
    tokio::spawn(async move {
        let url = format!("{}/v1/admin/players/{player}/notifications", players.base);
        let body = serde_json::json!({"event": event, "subject": subject, "content": content});
        let sent = players
            .http
            .post(&url)
            .bearer_auth(&players.service_key)
            .json(&body)
            .send()
            .await
            .and_then(reqwest::Response::error_for_status);
        if let Err(error) = sent {
            tracing::warn!(event, %error, "cannot notify a player");
        }
    });
}
