//! Operator actions, authorised by the service key: banning and unbanning players.

use axum::Router;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::routing::post;
use mongodb::bson::{Bson, doc};
use serde::Deserialize;

use flotilla_storage::mongo::now_ms;

use crate::auth;
use crate::error::{Error, Result};
use crate::extract::JsonBody;
use crate::players;
use crate::session::ServiceCaller;
use crate::state::Shared;

pub fn routes() -> Router<Shared> {
    Router::new().route("/v1/admin/players/{id}/ban", post(ban).delete(unban))
}

#[derive(Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct BanRequest {
    pub reason: String,
}

/// Bans a player: sign-in is refused from now on, every session is revoked (access tokens stop
/// working at once) and live connections are closed, on every replica.
async fn ban(
    State(state): State<Shared>,
    _caller: ServiceCaller,
    Path(id): Path<String>,
    JsonBody(body): JsonBody<BanRequest>,
) -> Result<StatusCode> {
    if body.reason.is_empty() || body.reason.len() > 500 {
        return Err(Error::bad("reason", "reason must be 1-500 characters"));
    }
    let ban = doc! {"reason": &body.reason, "since_ms": now_ms()};
    if !state
        .players
        .update_idempotent(doc! {"_id": &id}, doc! {"$set": {"banned": ban}})
        .await?
    {
        return Err(Error::NotFound("player"));
    }
    players::invalidate(&state, &id).await?;
    auth::revoke_all(&state, &id, "banned").await?;
    if let Err(error) = state.search.delete(&id).await {
        tracing::warn!(%error, "search index delete failed");
    }
    Ok(StatusCode::NO_CONTENT)
}

async fn unban(
    State(state): State<Shared>,
    _caller: ServiceCaller,
    Path(id): Path<String>,
) -> Result<StatusCode> {
    if !state
        .players
        .update_idempotent(doc! {"_id": &id}, doc! {"$set": {"banned": Bson::Null}})
        .await?
    {
        return Err(Error::NotFound("player"));
    }
    players::invalidate(&state, &id).await?;
    if let Some(player) = players::load(&state, &id).await? {
        players::index(&state, &player).await;
    }
    Ok(StatusCode::NO_CONTENT)
}
