//! Who is calling: a player with an access token ([`Session`]) or a game server / operator with the
//! service key ([`ServiceCaller`]).

use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use flotilla_service::extract::bearer;
use redis::AsyncCommands;

use crate::error::{Error, Result};
use crate::state::{AppState, Shared};

/// A signed-in player, from `Authorization: Bearer <access token>`.
#[derive(Clone, Debug)]
pub struct Session {
    pub player: String,
    /// The refresh-token family this token belongs to: what sign-out revokes.
    pub session: String,
}

impl FromRequestParts<Shared> for Session {
    type Rejection = Error;

    async fn from_request_parts(parts: &mut Parts, state: &Shared) -> Result<Self> {
        let token = bearer(parts).ok_or(Error::Unauthenticated(
            "send Authorization: Bearer <access token>",
        ))?;
        authenticate(state, token).await
    }
}

/// Verifies an access token and that its session was not revoked (sign-out, ban, deleted account).
pub async fn authenticate(state: &AppState, token: &str) -> Result<Session> {
    let claims = state.tokens.verify(token, state.clock.now_secs())?;
    let mut redis = state.redis.clone();
    let revoked: bool = redis
        .exists(state.key(&format!("revoked:{}", claims.sid)))
        .await
        .map_err(flotilla_storage::Error::from)?;
    if revoked {
        return Err(Error::Unauthenticated("session was signed out or revoked"));
    }
    Ok(Session {
        player: claims.sub,
        session: claims.sid,
    })
}

/// Marks a session revoked for as long as its access tokens could still be valid.
pub async fn revoke(state: &AppState, session: &str) -> Result<()> {
    let mut redis = state.redis.clone();
    let seconds = state.config.access_token_ttl.as_secs().max(1);
    let () = redis
        .set_ex(state.key(&format!("revoked:{session}")), 1, seconds)
        .await
        .map_err(flotilla_storage::Error::from)?;
    Ok(())
}

/// A game server or operator tool, from `Authorization: Bearer <service key>`.
pub struct ServiceCaller;

impl FromRequestParts<Shared> for ServiceCaller {
    type Rejection = Error;

    async fn from_request_parts(parts: &mut Parts, state: &Shared) -> Result<Self> {
        let key = bearer(parts).ok_or(Error::Unauthenticated("send Authorization: Bearer <service key>"))?;
        // An HMAC check is constant-time: neither the key's length nor a matching prefix shows in timing.
        ring::hmac::verify(
            &state.config.service_key.0,
            key.as_bytes(),
            state.config.service_key.1.as_ref(),
        )
        .map_err(|_| Error::Unauthenticated("service key is invalid"))?;
        Ok(ServiceCaller)
    }
}
