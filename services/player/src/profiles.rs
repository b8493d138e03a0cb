//! Profiles: reading one's own and others' (as privacy allows), updating, searching, and deleting the
//! account with its personal data. Also [`JsonBody`], the JSON extractor every handler uses.

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::routing::get;
use axum::{Json, Router};
use mongodb::bson::doc;
use serde::Deserialize;

use flotilla_storage::mongo::now_ms;

use crate::auth;
use crate::error::{Error, Result};
use crate::model::Privacy;
use crate::players::{self, OwnProfile, PublicProfile};
use crate::rules;
use crate::session::Session;
use crate::state::Shared;
use flotilla_service::extract::{JsonBody, QueryParams};

pub fn routes() -> Router<Shared> {
    Router::new()
        .route("/v1/players/me", get(own).patch(update).delete(delete_account))
        .route("/v1/players/search", get(search))
        .route("/v1/players/{id}", get(other))
}

#[derive(Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ProfileUpdate {
    #[serde(default)]
    #[schemars(pattern(rules::USERNAME.pattern), length(min = rules::USERNAME.min, max = rules::USERNAME.max))]
    pub username: Option<String>,
    #[serde(default)]
    #[schemars(pattern(rules::DISPLAY_NAME.pattern), length(min = rules::DISPLAY_NAME.min, max = rules::DISPLAY_NAME.max))]
    pub display_name: Option<String>,
    #[serde(default)]
    #[schemars(pattern(rules::AVATAR_URL.pattern), length(min = rules::AVATAR_URL.min, max = rules::AVATAR_URL.max))]
    pub avatar_url: Option<String>,
    #[serde(default)]
    #[schemars(pattern(rules::LANGUAGE.pattern), length(min = rules::LANGUAGE.min, max = rules::LANGUAGE.max))]
    pub language: Option<String>,
    /// A JSON object of at most 16 KiB once serialised.
    #[serde(default)]
    #[schemars(with = "Option<serde_json::Map<String, serde_json::Value>>")]
    pub metadata: Option<serde_json::Value>,
    #[serde(default)]
    pub privacy: Option<Privacy>,
}

async fn own(State(state): State<Shared>, session: Session) -> Result<Json<OwnProfile>> {
    let player = players::load(&state, &session.player)
        .await?
        .ok_or(Error::NotFound("player"))?;
    Ok(Json(OwnProfile::from(&player)))
}

async fn other(
    State(state): State<Shared>,
    _signed_in: Session,
    Path(id): Path<String>,
) -> Result<Json<PublicProfile>> {
    // The public profile is public: the same for a player who was blocked as for anyone, so a block
    // shows nowhere (privacy.rs).
    let player = players::load_visible(&state, &id).await?;
    Ok(Json(PublicProfile::from(&player)))
}

async fn update(
    State(state): State<Shared>,
    session: Session,
    JsonBody(body): JsonBody<ProfileUpdate>,
) -> Result<Json<OwnProfile>> {
    let mut set = doc! {"updated_ms": now_ms()};
    if let Some(username) = &body.username {
        players::validate_username(username)?;
        set.insert("username", username);
        set.insert("username_key", username.to_lowercase());
    }
    if let Some(name) = &body.display_name {
        players::validate_display_name(name)?;
        set.insert("display_name", name);
    }
    if let Some(url) = &body.avatar_url {
        players::validate_avatar_url(url)?;
        set.insert("avatar_url", url);
    }
    if let Some(language) = &body.language {
        players::validate_language(language)?;
        set.insert("language", language);
    }
    if let Some(metadata) = &body.metadata {
        set.insert("metadata", players::validate_metadata(metadata)?);
    }
    if let Some(privacy) = &body.privacy {
        set.insert(
            "privacy",
            mongodb::bson::to_bson(privacy).map_err(flotilla_storage::Error::from)?,
        );
    }
    // Last writer wins between two updates of one's own profile at once; a ban copied in meanwhile
    // is restored by `settle_ban`.
    let updated = state.players.set(&session.player, set).await;
    players::settle_ban(&state, &session.player).await?;
    if !updated.map_err(Error::taken("that username is taken"))? {
        return Err(Error::NotFound("player"));
    }
    let player = players::load(&state, &session.player)
        .await?
        .ok_or(Error::NotFound("player"))?;
    if body.username.is_some() || body.display_name.is_some() {
        players::index(&state, &player).await;
    }
    Ok(Json(OwnProfile::from(&player)))
}

#[derive(Deserialize)]
struct SearchQuery {
    q: String,
    /// u32 as documented: a larger number is refused (400), not wrapped or clamped.
    #[serde(default)]
    limit: Option<u32>,
}

async fn search(
    State(state): State<Shared>,
    _signed_in: Session,
    QueryParams(query): QueryParams<SearchQuery>,
) -> Result<Json<Vec<PublicProfile>>> {
    if !rules::SEARCH_TEXT.allows(&query.q) {
        return Err(Error::bad(
            "q",
            "search text must be 1-64 characters, not only spaces",
        ));
    }
    let q = query.q.trim();
    let hits = state
        .search
        .search(q, query.limit.unwrap_or(20).clamp(1, 50) as usize)
        .await?;
    // Profiles come from the database, not the index: the index may lag a rename or a ban. Players
    // who blocked the searcher are found like anyone (a block shows nowhere, privacy.rs).
    let ids: Vec<String> = hits.iter().map(|hit| hit.id.clone()).collect();
    let mut profiles = Vec::with_capacity(hits.len());
    for id in &ids {
        if let Ok(player) = players::load_visible(&state, id).await {
            profiles.push(PublicProfile::from(&player));
        }
    }
    Ok(Json(profiles))
}

/// Deletes the account and the personal data tied to it: sign-ins, relationships and their history,
/// messages written and received, conversation entries, notifications, read markers and the search
/// entry. Match results keep only the (now dangling) id.
async fn delete_account(State(state): State<Shared>, session: Session) -> Result<StatusCode> {
    let me = session.player.as_str();
    auth::revoke_all(&state, me, "account deleted").await?;
    state
        .messages
        .delete_many(doc! {"$or": [{"from": me}, {"to": me}]})
        .await?;
    state
        .notifications
        .delete_many(doc! {"$or": [{"player": me}, {"subject": me}]})
        .await?;
    state
        .read_markers
        .delete_many(doc! {"conversation": {"$regex": me}})
        .await?;
    state
        .conversations
        .delete_many(doc! {"$or": [{"player": me}, {"with": me}]})
        .await?;
    // Ids are base64url, so an id is a regular expression matching itself.
    state
        .pointers
        .store()
        .delete_many(doc! {"key": {"$regex": me}})
        .await?;
    state
        .edges
        .delete_many(doc! {"$or": [{"owner": me}, {"other": me}]})
        .await?;
    state
        .relationships
        .store()
        .delete_many(doc! {"$or": [{"low": me}, {"high": me}]})
        .await?;
    state.revoked_sessions.delete_many(doc! {"player": me}).await?;
    if let Err(error) = state.search.delete(me).await {
        tracing::warn!(%error, "search index delete failed");
    }
    // Identities go last but one: until then the player can sign in again and retry a failed delete.
    state.identities.delete_many(doc! {"player": me}).await?;
    state.players.delete_one(doc! {"_id": me}).await?;
    players::invalidate(&state, me).await?;
    Ok(StatusCode::NO_CONTENT)
}
