//! The review queue: transactions a fraud rule held, their value reserved, waiting for an admin
//! to approve (they commit) or reject (they are voided and the value returns). The first review
//! stands; a second is 409.

use axum::extract::{Path, State};
use axum::routing::{get, post};
use axum::{Json, Router};
use flotilla_storage::page::{Page, PageRequest, SortKey};
use mongodb::bson::doc;
use serde::{Deserialize, Serialize};

use crate::caller::AdminCaller;
use crate::ledger::model::Review;
use crate::ledger::store::LedgerStore;
use crate::state::Shared;
use crate::transactions::TransactionView;
use crate::{Error, Result};
use flotilla_service::extract::{JsonBody, QueryParams};

pub fn routes() -> Router<Shared> {
    Router::new()
        .route("/v1/admin/reviews", get(queue))
        .route("/v1/admin/reviews/{tx}", post(review))
}

#[derive(Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct QueueQuery {
    pub limit: Option<u32>,
    pub cursor: Option<String>,
}

#[derive(Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ReviewRequest {
    /// True: the transaction commits; false: it is voided and its value returns.
    pub approve: bool,
    /// Who decided (an operator's name), 1-64 characters.
    pub by: String,
    /// Why, 1-200 characters: recorded, and shown as the reason of a rejected transaction.
    pub reason: String,
}

/// Held transactions, oldest first. Holds whose transaction finished meanwhile (reviewed while
/// the hold was being written) are dropped from the queue as they are met.
async fn queue(
    State(state): State<Shared>,
    _: AdminCaller,
    QueryParams(query): QueryParams<QueueQuery>,
) -> Result<Json<Page<TransactionView>>> {
    let request = PageRequest::new(query.limit, query.cursor);
    let store = state.ledger.store();
    let page = store
        .holds
        .page(doc! {}, SortKey::ascending("at_ms"), &request)
        .await?;
    let mut items = Vec::new();
    for hold in page.items {
        match store.transaction(&hold.tx).await? {
            Some(tx) if !store.is_finished(&tx.id).await? => items.push(TransactionView::new(&tx, None)),
            _ => store.delete_hold(&hold.tx).await?,
        }
    }
    Ok(Json(Page {
        items,
        next_cursor: page.next_cursor,
    }))
}

async fn review(
    State(state): State<Shared>,
    _: AdminCaller,
    Path(tx): Path<String>,
    JsonBody(request): JsonBody<ReviewRequest>,
) -> Result<Json<TransactionView>> {
    if !(1..=64).contains(&request.by.chars().count()) {
        return Err(Error::bad("by", "must be 1-64 characters"));
    }
    if !(1..=200).contains(&request.reason.chars().count()) {
        return Err(Error::bad("reason", "must be 1-200 characters"));
    }
    let review = Review {
        tx,
        approved: request.approve,
        by: request.by,
        reason: request.reason,
        at_ms: state.ledger.now_ms(),
    };
    let settled = state.ledger.review(review).await?;
    Ok(Json(TransactionView::new(&settled.tx, Some(&settled.outcome))))
}
