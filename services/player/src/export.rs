//! `GET /v1/players/me/export`: everything the service keeps about the caller, in one JSON
//! document — the right of access, like Nakama's account export. Account deletion
//! (`DELETE /v1/players/me`) is its counterpart.
//!
//! Secrets stay out: password hashes and refresh-token hashes mean nothing to the player, and a
//! leaked export must not help anyone sign in. Presence and the search entry are left out too:
//! both are derived from what is exported (the profile, the live connections) and expire.

use axum::extract::State;
use axum::routing::get;
use axum::{Json, Router};
use mongodb::bson::{Document, doc};
use serde::Serialize;

use flotilla_storage::model::{Model, Store};
use flotilla_storage::mongo::now_ms;
use flotilla_storage::rate_limit::Limit;

use crate::error::{Error, Result};
use crate::events::{MessageView, NotificationView};
use crate::model::{FriendState, Method};
use crate::players::{self, OwnProfile};
use crate::session::Session;
use crate::state::Shared;

pub fn routes() -> Router<Shared> {
    Router::new().route("/v1/players/me/export", get(export))
}

/// An export reads every collection: a few a minute per player is plenty for a person and
/// little for a script.
const EXPORT_LIMIT: Limit = Limit {
    max: 3,
    window: std::time::Duration::from_secs(60),
};

/// Items exported per collection. A player sending at the message limit all day stays below it;
/// past it the export says which lists were cut rather than answering out of memory.
const MAX_ITEMS: i64 = 100_000;

#[derive(Serialize, Debug, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct AccountExport {
    pub exported_ms: i64,
    pub profile: OwnProfile,
    /// Set while the account is banned.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ban: Option<BanExport>,
    pub sign_ins: Vec<SignInExport>,
    pub sessions: Vec<SessionExport>,
    pub relationships: Vec<RelationshipExport>,
    /// Sent and received, oldest first.
    pub messages: Vec<MessageView>,
    pub read_markers: Vec<ReadMarkerExport>,
    pub notifications: Vec<NotificationView>,
    pub matches: Vec<MatchExport>,
    /// Lists cut at 100,000 items, by name; empty when the export is whole.
    pub truncated: Vec<&'static str>,
}

#[derive(Serialize, Debug, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct BanExport {
    pub reason: String,
    pub since_ms: i64,
}

/// A way to sign in: the email address, device id or custom id, never the password hash.
#[derive(Serialize, Debug, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct SignInExport {
    pub method: Method,
    pub identifier: String,
    pub created_ms: i64,
}

/// A refresh token's record, without the token or its hash.
#[derive(Serialize, Debug, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct SessionExport {
    pub created_ms: i64,
    pub expires_ms: i64,
    /// Which refresh of its sign-in issued it: 0 for the sign-in itself.
    pub generation: i64,
}

#[derive(Serialize, Debug, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct RelationshipExport {
    pub player: String,
    pub state: FriendState,
    pub updated_ms: i64,
}

#[derive(Serialize, Debug, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ReadMarkerExport {
    pub conversation: String,
    pub up_to: String,
}

/// The caller's line of a match report.
#[derive(Serialize, Debug, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct MatchExport {
    pub id: String,
    pub server: String,
    pub score: i64,
    pub placement: u32,
    pub reported_ms: i64,
}

/// `GET /v1/players/me/export`.
async fn export(State(state): State<Shared>, session: Session) -> Result<Json<AccountExport>> {
    let me = session.player.as_str();
    state.limit_player("export", me, EXPORT_LIMIT).await?;
    let player = players::load(&state, me)
        .await?
        .ok_or(Error::NotFound("player"))?;
    let mut truncated = Vec::new();
    let by_player = doc! {"player": me};
    let sign_ins = all(&state.identities, by_player.clone(), &mut truncated).await?;
    let sessions = all(&state.refresh_tokens, by_player.clone(), &mut truncated).await?;
    let edges = all(&state.edges, doc! {"owner": me}, &mut truncated).await?;
    let messages = all(
        &state.messages,
        doc! {"$or": [{"from": me}, {"to": me}]},
        &mut truncated,
    )
    .await?;
    let markers = all(&state.read_markers, doc! {"reader": me}, &mut truncated).await?;
    let notifications = all(&state.notifications, by_player, &mut truncated).await?;
    let matches = all(&state.match_results, doc! {"players.id": me}, &mut truncated).await?;
    Ok(Json(AccountExport {
        exported_ms: now_ms(),
        profile: OwnProfile::from(&player),
        ban: player.banned.map(|ban| BanExport {
            reason: ban.reason,
            since_ms: ban.since_ms,
        }),
        sign_ins: sign_ins
            .into_iter()
            .map(|identity| SignInExport {
                method: identity.method,
                identifier: identity
                    .id
                    .strip_prefix(&format!("{}:", identity.method.as_str()))
                    .unwrap_or(&identity.id)
                    .to_owned(),
                created_ms: identity.created_ms,
            })
            .collect(),
        sessions: sessions
            .into_iter()
            .map(|token| SessionExport {
                created_ms: token.created_ms,
                expires_ms: token.expires_ms,
                generation: token.generation,
            })
            .collect(),
        relationships: edges
            .into_iter()
            .map(|edge| RelationshipExport {
                player: edge.other,
                state: edge.state,
                updated_ms: edge.updated_ms,
            })
            .collect(),
        messages: messages.into_iter().map(MessageView::from).collect(),
        read_markers: markers
            .into_iter()
            .map(|marker| ReadMarkerExport {
                conversation: marker.conversation,
                up_to: marker.up_to,
            })
            .collect(),
        notifications: notifications.into_iter().map(NotificationView::from).collect(),
        matches: matches
            .into_iter()
            .filter_map(|result| {
                let line = result.players.into_iter().find(|p| p.id == me)?;
                Some(MatchExport {
                    id: result.id,
                    server: result.server,
                    score: line.score,
                    placement: line.placement,
                    reported_ms: result.reported_ms,
                })
            })
            .collect(),
        truncated,
    }))
}

/// Every document of `store` matching `filter`, oldest id first, up to [`MAX_ITEMS`]; a cut
/// list's collection goes into `truncated`.
async fn all<M: Model>(
    store: &Store<M>,
    filter: Document,
    truncated: &mut Vec<&'static str>,
) -> Result<Vec<M>> {
    let mut items = store.find(filter, doc! {"_id": 1}, MAX_ITEMS + 1).await?;
    if items.len() > MAX_ITEMS as usize {
        items.truncate(MAX_ITEMS as usize);
        truncated.push(M::COLLECTION);
    }
    Ok(items)
}
