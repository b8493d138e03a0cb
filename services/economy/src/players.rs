//! The player service, as this service asks it: whether two players exist and stand apart (a
//! block). Trades across a block are refused, and so are gifts to players who do not exist.

use serde::Deserialize;

use crate::{Error, Result};

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
