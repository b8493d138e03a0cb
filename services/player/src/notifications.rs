//! A player's stored notifications: listing (newest first), marking read, deleting. They are created
//! by the features that cause them ([`crate::events::notify`]); every operation here is limited to
//! the caller's own, and someone else's id answers as if it did not exist.

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::routing::{delete, get, post};
use axum::{Json, Router};
use mongodb::bson::doc;
use serde::{Deserialize, Serialize};

use flotilla_storage::page::{PageRequest, SortKey};

use crate::error::{Error, Result};
use crate::events::NotificationView;
use crate::model::NotificationKind;
use crate::rules;
use crate::session::{ServiceCaller, Session};
use crate::state::Shared;
use flotilla_service::extract::JsonBody;
use flotilla_service::extract::QueryParams;

pub fn routes() -> Router<Shared> {
    Router::new()
        .route("/v1/notifications", get(list))
        .route("/v1/notifications/read", post(mark_read))
        .route("/v1/notifications/{id}", delete(remove))
        .route("/v1/admin/players/{id}/notifications", post(send))
}

/// A notification another service sends a player (the economy: an item sold, an outbid).
#[derive(Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ServiceNotification {
    /// What happened: 1-32 of `a-z 0-9 -`; stored in `content.event`.
    #[schemars(pattern(rules::SERVICE_EVENT.pattern), length(min = rules::SERVICE_EVENT.min, max = rules::SERVICE_EVENT.max))]
    pub event: String,
    /// The player who caused it, if any.
    #[serde(default)]
    pub subject: Option<String>,
    /// Details for the client: up to 16 entries, names of 1-32 characters, each value a string of
    /// up to 200 characters, a number, a boolean or null.
    #[serde(default)]
    pub content: serde_json::Map<String, serde_json::Value>,
}

/// Entries one service notification's content may carry, and their sizes.
pub const MAX_CONTENT_ENTRIES: usize = 16;
pub const MAX_CONTENT_NAME: usize = 32;
pub const MAX_CONTENT_TEXT: usize = 200;

/// Ids per `POST /v1/notifications/read`.
pub const MAX_READ_IDS: usize = 100;
/// Blocks read to hide their notifications. Far above any real block list; past it, notifications
/// from the oldest blocks would show again, which costs nothing but noise.
const MAX_BLOCKS: i64 = 5_000;

#[derive(Deserialize)]
pub struct ListQuery {
    /// Only unread ones.
    #[serde(default)]
    unread: Option<bool>,
    #[serde(default)]
    limit: Option<u32>,
    #[serde(default)]
    cursor: Option<String>,
}

/// Either `ids` or `all: true`.
#[derive(Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct MarkRead {
    #[serde(default)]
    pub ids: Option<Vec<String>>,
    #[serde(default)]
    pub all: bool,
}

/// A page of notifications, newest first.
#[derive(Serialize, Debug, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct NotificationPage {
    pub items: Vec<NotificationView>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub next_cursor: Option<String>,
}

#[derive(Serialize, Debug, schemars::JsonSchema)]
pub struct MarkedRead {
    /// Notifications that were unread and now are read.
    pub updated: u64,
}

/// `GET /v1/notifications?unread=&limit=&cursor=`. Notifications caused by players the caller has
/// since blocked are left out (but kept: unblocking shows them again).
async fn list(
    State(state): State<Shared>,
    session: Session,
    QueryParams(query): QueryParams<ListQuery>,
) -> Result<Json<NotificationPage>> {
    let blocked: Vec<String> = state
        .edges
        .find(
            doc! {"owner": &session.player, "state": "blocked"},
            doc! {"updated_ms": -1},
            MAX_BLOCKS,
        )
        .await?
        .into_iter()
        .map(|edge| edge.other)
        .collect();
    let mut filter = doc! {"player": &session.player};
    if query.unread == Some(true) {
        filter.insert("read", false);
    }
    if !blocked.is_empty() {
        filter.insert("subject", doc! {"$nin": blocked});
    }
    let request = PageRequest::new(query.limit, query.cursor);
    let page = state
        .notifications
        .page(filter, SortKey::descending("_id"), &request)
        .await?;
    let items = page.items.into_iter().map(NotificationView::from).collect();
    Ok(Json(NotificationPage {
        items,
        next_cursor: page.next_cursor,
    }))
}

/// `POST /v1/notifications/read`.
async fn mark_read(
    State(state): State<Shared>,
    session: Session,
    JsonBody(body): JsonBody<MarkRead>,
) -> Result<Json<MarkedRead>> {
    let mut filter = doc! {"player": &session.player, "read": false};
    match (body.ids, body.all) {
        (None, true) => {}
        (Some(ids), false) if (1..=MAX_READ_IDS).contains(&ids.len()) => {
            filter.insert("_id", doc! {"$in": ids});
        }
        _ => {
            return Err(Error::bad(
                "ids",
                format!("send either 1-{MAX_READ_IDS} ids or \"all\": true"),
            ));
        }
    }
    let updated = state.notifications.set_many(filter, doc! {"read": true}).await?;
    Ok(Json(MarkedRead { updated }))
}

/// `DELETE /v1/notifications/{id}`.
async fn remove(State(state): State<Shared>, session: Session, Path(id): Path<String>) -> Result<StatusCode> {
    if state
        .notifications
        .delete_one(doc! {"_id": &id, "player": &session.player})
        .await?
    {
        Ok(StatusCode::NO_CONTENT)
    } else {
        Err(Error::NotFound("notification"))
    }
}

/// `POST /v1/admin/players/{id}/notifications` (service key): stores a notification of kind
/// `economy` for the player and pushes it live, like the player service's own.
async fn send(
    State(state): State<Shared>,
    _caller: ServiceCaller,
    Path(id): Path<String>,
    JsonBody(body): JsonBody<ServiceNotification>,
) -> Result<(StatusCode, Json<NotificationView>)> {
    if !rules::SERVICE_EVENT.allows(&body.event) {
        return Err(Error::bad("event", "event must be 1-32 of a-z 0-9 -"));
    }
    let entry_ok = |(name, value): (&String, &serde_json::Value)| {
        (1..=MAX_CONTENT_NAME).contains(&name.chars().count())
            && match value {
                serde_json::Value::String(text) => text.chars().count() <= MAX_CONTENT_TEXT,
                serde_json::Value::Array(_) | serde_json::Value::Object(_) => false,
                _ => true,
            }
    };
    if body.content.len() > MAX_CONTENT_ENTRIES || !body.content.iter().all(entry_ok) {
        return Err(Error::bad(
            "content",
            "content is up to 16 entries of 1-32 character names and plain values (text up to 200 characters)",
        ));
    }
    let mut content = body.content;
    content.insert("event".into(), serde_json::Value::String(body.event));
    let content = serde_json::Value::Object(content);
    if state.players.get(&id).await?.is_none() {
        return Err(Error::NotFound("player"));
    }
    let view = crate::events::notify(
        &state,
        &id,
        NotificationKind::Economy,
        body.subject.as_deref(),
        content,
    )
    .await?;
    Ok((StatusCode::CREATED, Json(view)))
}
