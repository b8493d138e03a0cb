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
use crate::extract::JsonBody;
use crate::extract::QueryParams;
use crate::session::Session;
use crate::state::Shared;

pub fn routes() -> Router<Shared> {
    Router::new()
        .route("/v1/notifications", get(list))
        .route("/v1/notifications/read", post(mark_read))
        .route("/v1/notifications/{id}", delete(remove))
}

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
