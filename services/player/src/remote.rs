//! Player sign-ins, as other services (economy, analytics) check them: access tokens verified
//! locally with the keys the player service publishes at `GET /v1/auth/keys`, and refused when the
//! player service revoked their session (sign-out, ban, deleted account; kept in the shared Redis).
//! The keys are fetched again periodically, so a key the player service rotates in is accepted.

use std::sync::{Arc, RwLock};
use std::time::Duration;

use redis::AsyncCommands;
use serde::Deserialize;

use crate::error::{Error, Result};
use crate::tokens::{Claims, Verifier};

pub struct PlayerTokens {
    verifier: RwLock<Arc<Verifier>>,
    redis: redis::aio::ConnectionManager,
    /// The player service's key prefix in Redis.
    namespace: String,
    /// Where the keys come from, when they are fetched rather than configured.
    source: Option<(reqwest::Client, String)>,
}

#[derive(Deserialize)]
struct KeysAnswer {
    keys: Vec<String>,
}

impl PlayerTokens {
    /// With `public_keys` (base64 Ed25519) when given, else the player service's published keys,
    /// waited for up to a minute: the player service may start after the caller.
    pub async fn new(
        public_keys: &[String],
        player_url: Option<&str>,
        redis: redis::aio::ConnectionManager,
        namespace: &str,
    ) -> Result<Self> {
        let source = match player_url {
            Some(url) => Some((
                reqwest::Client::builder()
                    .timeout(Duration::from_secs(5))
                    .build()
                    .map_err(|error| Error::Config(error.to_string()))?,
                url.trim_end_matches('/').to_owned(),
            )),
            None => None,
        };
        let verifier = match (&source, public_keys.is_empty()) {
            (_, false) => Verifier::from_public_keys(public_keys)?,
            (Some((client, url)), true) => wait_for_keys(client, url).await?,
            (None, true) => {
                return Err(Error::Config(
                    "--player-token-keys or --player-url is required".into(),
                ));
            }
        };
        Ok(Self {
            verifier: RwLock::new(Arc::new(verifier)),
            redis,
            namespace: namespace.to_owned(),
            source,
        })
    }

    /// The claims of a valid access token whose session is not revoked; `now` is Unix seconds.
    pub async fn authenticate(&self, token: &str, now: i64) -> Result<Claims> {
        let verifier = self
            .verifier
            .read()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .clone();
        let claims = verifier.verify(token, now)?;
        let revoked: bool = self
            .redis
            .clone()
            .exists(format!("{}:revoked:{}", self.namespace, claims.sid))
            .await
            .map_err(flotilla_storage::Error::from)?;
        match revoked {
            true => Err(Error::Unauthenticated("session was signed out or revoked")),
            false => Ok(claims),
        }
    }

    /// Fetches the keys again every `every`, for as long as the process runs (when they are fetched).
    pub async fn refresh(self: Arc<Self>, every: Duration) {
        let Some((client, url)) = &self.source else {
            return;
        };
        let mut ticker = tokio::time::interval(every);
        ticker.tick().await;
        loop {
            ticker.tick().await;
            match fetch_keys(client, url).await {
                Ok(verifier) => {
                    *self
                        .verifier
                        .write()
                        .unwrap_or_else(|poisoned| poisoned.into_inner()) = Arc::new(verifier)
                }
                Err(error) => tracing::warn!(%error, "keeping the current player token keys"),
            }
        }
    }
}

async fn wait_for_keys(client: &reqwest::Client, url: &str) -> Result<Verifier> {
    let mut attempt = 0;
    loop {
        attempt += 1;
        match fetch_keys(client, url).await {
            Ok(verifier) => return Ok(verifier),
            Err(error) if attempt >= 30 => return Err(error),
            Err(error) => tracing::info!(%error, "waiting for the player service"),
        }
        tokio::time::sleep(Duration::from_secs(2)).await;
    }
}

/// The player service's token verification keys, from `GET {url}/v1/auth/keys`.
async fn fetch_keys(client: &reqwest::Client, url: &str) -> Result<Verifier> {
    let url = format!("{url}/v1/auth/keys");
    let fetch = async {
        let answer = client.get(&url).send().await?.error_for_status()?;
        answer.json::<KeysAnswer>().await
    };
    let answer = fetch
        .await
        .map_err(|error| Error::Config(format!("fetching player token keys from {url}: {error}")))?;
    Verifier::from_public_keys(&answer.keys)
}
