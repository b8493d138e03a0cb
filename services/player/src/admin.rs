//! Operator actions, authorised by the service key: banning and unbanning players.
//!
//! A ban is its own document ([`BanRecord`]), written by these two handlers only; the player
//! document carries a copy for reads, which [`players::settle_ban`] keeps in step.

use axum::Router;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::routing::post;
use mongodb::bson::doc;
use serde::Deserialize;

use flotilla_storage::mongo::now_ms;

use crate::auth;
use crate::error::{Error, Result};
use crate::model::BanRecord;
use crate::players;
use crate::rules;
use crate::session::ServiceCaller;
use crate::state::Shared;
use flotilla_service::extract::JsonBody;

pub fn routes() -> Router<Shared> {
    Router::new().route("/v1/admin/players/{id}/ban", post(ban).delete(unban))
}

#[derive(Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct BanRequest {
    #[schemars(length(min = rules::BAN_REASON.min, max = rules::BAN_REASON.max))]
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
    if !rules::BAN_REASON.allows(&body.reason) {
        return Err(Error::bad("reason", "reason must be 1-500 characters"));
    }
    if state.players.get(&id).await?.is_none() {
        return Err(Error::NotFound("player"));
    }
    let ban = BanRecord {
        player: id.clone(),
        reason: body.reason,
        since_ms: now_ms(),
    };
    state.bans.replace(&id, &ban).await?;
    players::settle_ban(&state, &id).await?;
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
    if state.players.get(&id).await?.is_none() {
        return Err(Error::NotFound("player"));
    }
    state.bans.delete_one(doc! {"_id": &id}).await?;
    players::settle_ban(&state, &id).await?;
    if let Some(player) = players::load(&state, &id).await? {
        players::index(&state, &player).await;
    }
    Ok(StatusCode::NO_CONTENT)
}
