//! Who is calling: a player with the player service's access token ([`PlayerCaller`]), a game
//! server or back-end with the service key ([`ServiceCaller`]), or an admin ([`AdminCaller`]).

use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use flotilla_service::SecretKey;
use flotilla_service::extract::bearer;

use crate::state::{AppState, Shared};
use crate::{Error, Result};

/// A signed-in player. Tokens are verified here with the player service's public keys; a session
/// the player service revoked (sign-out, ban, deleted account) is refused as it is there.
#[derive(Clone, Debug)]
pub struct PlayerCaller {
    pub player: String,
    /// When the account was created (Unix seconds), from the token; absent in tokens signed
    /// before the player service carried it.
    pub created: Option<i64>,
}

impl FromRequestParts<Shared> for PlayerCaller {
    type Rejection = Error;

    async fn from_request_parts(parts: &mut Parts, state: &Shared) -> Result<Self> {
        let token = bearer(parts).ok_or(Error::Unauthenticated(
            "send Authorization: Bearer <access token>",
        ))?;
        authenticate(state, token).await
    }
}

async fn authenticate(state: &AppState, token: &str) -> Result<PlayerCaller> {
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
    Ok(PlayerCaller {
        player: claims.sub,
        created: claims.created,
    })
}

/// A game server or studio back-end, from `Authorization: Bearer <service key>`.
pub struct ServiceCaller;

impl FromRequestParts<Shared> for ServiceCaller {
    type Rejection = Error;

    async fn from_request_parts(parts: &mut Parts, state: &Shared) -> Result<Self> {
        let key = bearer(parts).ok_or(Error::Unauthenticated("send Authorization: Bearer <service key>"))?;
        match state.keys.service.matches(key) || state.keys.admin.matches(key) {
            true => Ok(ServiceCaller),
            false => Err(Error::Unauthenticated("service key is invalid")),
        }
    }
}

/// An operator, from `Authorization: Bearer <admin key>`.
pub struct AdminCaller;

impl FromRequestParts<Shared> for AdminCaller {
    type Rejection = Error;

    async fn from_request_parts(parts: &mut Parts, state: &Shared) -> Result<Self> {
        let key = bearer(parts).ok_or(Error::Unauthenticated("send Authorization: Bearer <admin key>"))?;
        match state.keys.admin.matches(key) {
            true => Ok(AdminCaller),
            false => Err(Error::Unauthenticated("admin key is invalid")),
        }
    }
}

pub struct Keys {
    pub service: SecretKey,
    pub admin: SecretKey,
}
