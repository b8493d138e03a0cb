//! Who is sending: a game client with the player service's access token (its events are its own),
//! a game server or back-end with the service key (any player's events), or an admin.

use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use flotilla_service::SecretKey;
use flotilla_service::extract::bearer;

use crate::state::{AppState, Shared};
use crate::{Error, Result};

pub struct Keys {
    pub service: SecretKey,
    pub admin: SecretKey,
}

/// Who sent a batch of events.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Sender {
    /// A signed-in player: may send only their own events.
    Player(String),
    /// A game server or back-end (or an admin): may send any player's events.
    Service,
}

impl FromRequestParts<Shared> for Sender {
    type Rejection = Error;

    async fn from_request_parts(parts: &mut Parts, state: &Shared) -> Result<Self> {
        let credential = bearer(parts).ok_or(Error::Unauthenticated(
            "send Authorization: Bearer <access token or service key>",
        ))?;
        if state.caller_keys.service.matches(credential) || state.caller_keys.admin.matches(credential) {
            return Ok(Sender::Service);
        }
        // Access tokens are JWTs; anything else was meant as a key.
        if credential.matches('.').count() != 2 {
            return Err(Error::Unauthenticated("service key is invalid"));
        }
        authenticate(state, credential).await.map(Sender::Player)
    }
}

async fn authenticate(state: &AppState, token: &str) -> Result<String> {
    let now = flotilla_storage::mongo::now_ms() / 1000;
    let claims = state
        .tokens
        .authenticate(token, now)
        .await
        .map_err(|error| match error {
            flotilla_player::Error::Unauthenticated(reason) => Error::Unauthenticated(reason),
            flotilla_player::Error::Storage(error) => Error::Storage(error),
            _ => Error::Unauthenticated("access token is invalid"),
        })?;
    Ok(claims.sub)
}

/// An operator or dashboard, from `Authorization: Bearer <admin key>`.
pub struct AdminCaller;

impl FromRequestParts<Shared> for AdminCaller {
    type Rejection = Error;

    async fn from_request_parts(parts: &mut Parts, state: &Shared) -> Result<Self> {
        let key = bearer(parts).ok_or(Error::Unauthenticated("send Authorization: Bearer <admin key>"))?;
        match state.caller_keys.admin.matches(key) {
            true => Ok(AdminCaller),
            false => Err(Error::Unauthenticated("admin key is invalid")),
        }
    }
}
