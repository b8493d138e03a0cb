//! Trading's HTTP surface: open a trade with another player, put goods on the table, accept,
//! cancel, and see one's trades.

use std::collections::BTreeMap;

use axum::extract::{Path, State};
use axum::routing::{get, post, put};
use axum::{Json, Router};
use flotilla_storage::page::{Page, PageRequest, SortKey};
use mongodb::bson::doc;
use serde::{Deserialize, Serialize};

use crate::caller::PlayerCaller;
use crate::catalog::Catalog;
use crate::extract::IdempotencyKey;
use crate::ids;
use crate::players;
use crate::state::Shared;
use crate::trades;
use crate::trades::state::{Action, Goods, Side, Status, TradeState};
use crate::trades::{Trade, act, current};
use crate::transactions::{check_amount, identify, stackable_item, valid_player};
use crate::{Error, Result};
use flotilla_service::extract::{JsonBody, QueryParams};

/// How long a trade stays open unless its request says, and at most.
const DEFAULT_SECONDS: i64 = 3_600;
const MAX_SECONDS: i64 = 86_400;

/// Different currencies, items and instances one side may offer.
const MAX_GOODS: usize = 32;

pub fn routes() -> Router<Shared> {
    Router::new()
        .route("/v1/trades", post(open).get(mine))
        .route("/v1/trades/{id}", get(show))
        .route("/v1/trades/{id}/offer", put(offer))
        .route("/v1/trades/{id}/accept", post(accept))
        .route("/v1/trades/{id}/cancel", post(cancel))
}

#[derive(Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct OpenRequest {
    /// The other player.
    pub with: String,
    /// How long it stays open (default 3600, at most 86400); then everything goes back.
    pub duration_seconds: Option<i64>,
}

/// What the caller puts on the table, replacing what was there. Instances are named by id.
#[derive(Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct OfferRequest {
    #[serde(default)]
    pub currencies: BTreeMap<String, i64>,
    #[serde(default)]
    pub items: BTreeMap<String, i64>,
    #[serde(default)]
    pub instances: Vec<String>,
}

#[derive(Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct AcceptRequest {
    /// The version seen: an acceptance of anything else is 409.
    pub version: i64,
}

/// A trade as its parties see it.
#[derive(Serialize, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct TradeView {
    pub id: String,
    /// `open`, `completed`, `cancelled` or `expired`.
    pub state: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cancelled_by: Option<String>,
    /// Changes with every change to the goods; accept names it.
    pub version: i64,
    /// The one who opened it, then the other.
    pub sides: Vec<SideView>,
    /// Why the last completion failed (a limit on a receiving side).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub failed: Option<String>,
    pub created_ms: i64,
    pub expires_ms: i64,
}

#[derive(Serialize, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct SideView {
    pub player: String,
    pub goods: Goods,
    /// Accepted the current version.
    pub accepted: bool,
}

impl TradeView {
    fn new(trade: &Trade, state: &TradeState) -> Self {
        let (name, cancelled_by) = match &state.status {
            Status::Open => ("open", None),
            Status::Completed => ("completed", None),
            Status::Cancelled { by } => ("cancelled", Some(by.clone())),
            Status::Expired => ("expired", None),
        };
        let side = |side: &Side| SideView {
            player: side.player.clone(),
            goods: side.goods.clone(),
            accepted: side.accepted == Some(state.version),
        };
        Self {
            id: trade.id.clone(),
            state: name,
            cancelled_by,
            version: state.version,
            sides: state.sides.iter().map(side).collect(),
            failed: state.failed.clone(),
            created_ms: trade.created_ms,
            expires_ms: trade.expires_ms,
        }
    }
}

/// Refuses a trade across a block, or with a player who does not exist. Needs the player service.
async fn check_relation(state: &Shared, a: &str, b: &str) -> Result<()> {
    let players = state
        .players
        .as_ref()
        .ok_or_else(|| Error::Unavailable("trading needs the player service (--player-url)".into()))?;
    match players.relation(a, b).await? {
        None => Err(Error::NotFound("player")),
        Some(relation) if relation.blocked => Err(Error::Forbidden("you cannot trade with this player")),
        Some(_) => Ok(()),
    }
}

async fn open(
    State(state): State<Shared>,
    caller: PlayerCaller,
    IdempotencyKey(key): IdempotencyKey,
    JsonBody(request): JsonBody<OpenRequest>,
) -> Result<Json<TradeView>> {
    if !valid_player(&request.with) {
        return Err(Error::bad("with", "is not a player id"));
    }
    if request.with == caller.player {
        return Err(Error::bad("with", "a trade is with another player"));
    }
    let seconds = request.duration_seconds.unwrap_or(DEFAULT_SECONDS);
    if !(1..=MAX_SECONDS).contains(&seconds) {
        return Err(Error::bad(
            "durationSeconds",
            format!("must be between 1 and {MAX_SECONDS}"),
        ));
    }
    let (tx, hash) = identify(Some(&caller), &key, "trade-open", &request)?;
    let id = ids::derived(&["trade", &tx, &hash]);
    let trade = match state.trades.records.get(&id).await? {
        Some(trade) => trade,
        None => {
            check_relation(&state, &caller.player, &request.with).await?;
            let now = state.ledger.now_ms();
            let trade = Trade {
                id,
                parties: [caller.player.clone(), request.with.clone()],
                created_ms: now,
                expires_ms: now + seconds * 1_000,
            };
            trades::open(&state, &trade).await?;
            let content = serde_json::json!({"trade": trade.id, "version": 1});
            players::notify(
                &state,
                &request.with,
                "trade-offered",
                Some(&caller.player),
                content,
            );
            trade
        }
    };
    let now = current(&state, &trade).await?;
    Ok(Json(TradeView::new(&trade, &now)))
}

/// A trade the caller is a party to; 404 for anyone else.
async fn party_trade(state: &Shared, caller: &PlayerCaller, id: &str) -> Result<Trade> {
    let trade = match ids::valid(id) {
        true => state.trades.records.get(id).await?,
        false => None,
    };
    trade
        .filter(|trade| trade.parties.contains(&caller.player))
        .ok_or(Error::NotFound("trade"))
}

/// The other party.
fn other<'a>(trade: &'a Trade, caller: &PlayerCaller) -> &'a str {
    trade
        .parties
        .iter()
        .find(|party| **party != caller.player)
        .map_or("", String::as_str)
}

async fn show(
    State(state): State<Shared>,
    caller: PlayerCaller,
    Path(id): Path<String>,
) -> Result<Json<TradeView>> {
    let trade = party_trade(&state, &caller, &id).await?;
    let now = current(&state, &trade).await?;
    Ok(Json(TradeView::new(&trade, &now)))
}

async fn offer(
    State(state): State<Shared>,
    caller: PlayerCaller,
    Path(id): Path<String>,
    JsonBody(request): JsonBody<OfferRequest>,
) -> Result<Json<TradeView>> {
    let trade = party_trade(&state, &caller, &id).await?;
    let goods = goods(&state, &state.catalog(), request).await?;
    check_relation(&state, &caller.player, other(&trade, &caller)).await?;
    let after = act(&state, &trade, &caller.player, Action::Offer { goods }).await?;
    Ok(Json(TradeView::new(&trade, &after)))
}

async fn accept(
    State(state): State<Shared>,
    caller: PlayerCaller,
    Path(id): Path<String>,
    JsonBody(request): JsonBody<AcceptRequest>,
) -> Result<Json<TradeView>> {
    let trade = party_trade(&state, &caller, &id).await?;
    check_relation(&state, &caller.player, other(&trade, &caller)).await?;
    let action = Action::Accept {
        version: request.version,
    };
    let after = act(&state, &trade, &caller.player, action).await?;
    Ok(Json(TradeView::new(&trade, &after)))
}

async fn cancel(
    State(state): State<Shared>,
    caller: PlayerCaller,
    Path(id): Path<String>,
) -> Result<Json<TradeView>> {
    let trade = party_trade(&state, &caller, &id).await?;
    let after = act(&state, &trade, &caller.player, Action::Cancel).await?;
    Ok(Json(TradeView::new(&trade, &after)))
}

#[derive(Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct MineQuery {
    pub limit: Option<u32>,
    pub cursor: Option<String>,
}

/// The caller's trades, newest first.
async fn mine(
    State(state): State<Shared>,
    caller: PlayerCaller,
    QueryParams(query): QueryParams<MineQuery>,
) -> Result<Json<Page<TradeView>>> {
    let request = PageRequest::new(query.limit, query.cursor);
    let page = state
        .trades
        .trades
        .page(
            doc! {"parties": &caller.player},
            SortKey::descending("created_ms"),
            &request,
        )
        .await?;
    let mut views = Vec::new();
    for trade in &page.items {
        let now = current(&state, trade).await?;
        views.push(TradeView::new(trade, &now));
    }
    Ok(Json(Page {
        items: views,
        next_cursor: page.next_cursor,
    }))
}

/// Checks an offer against the catalog: known, transferable currencies and tradeable items in
/// valid amounts, instances that exist. Whether the caller holds them is the ledger's to check.
async fn goods(state: &Shared, catalog: &Catalog, request: OfferRequest) -> Result<Goods> {
    if request.currencies.len() + request.items.len() + request.instances.len() > MAX_GOODS {
        return Err(Error::bad(
            "items",
            format!("at most {MAX_GOODS} currencies, items and instances"),
        ));
    }
    for (code, amount) in &request.currencies {
        check_amount("currencies", *amount)?;
        let currency = catalog.currency(code).ok_or(Error::NotFound("currency"))?;
        if !currency.transferable {
            return Err(Error::bad("currencies", format!("{code} cannot be traded")));
        }
    }
    for (id, amount) in &request.items {
        check_amount("items", *amount)?;
        if !stackable_item(catalog, id)?.tradeable {
            return Err(Error::bad("items", format!("{id} cannot be traded")));
        }
    }
    let mut instances = BTreeMap::new();
    if !request.instances.is_empty() {
        if request.instances.iter().any(|id| !ids::valid(id)) {
            return Err(Error::bad(
                "instances",
                "names something that is not an instance id",
            ));
        }
        let records = state.instances.get_many(&request.instances).await?;
        for id in &request.instances {
            let record = records
                .iter()
                .find(|record| record.id == *id)
                .ok_or(Error::NotFound("instance"))?;
            if !catalog.item(&record.item).is_some_and(|item| item.tradeable) {
                return Err(Error::bad(
                    "instances",
                    format!("{} cannot be traded", record.item),
                ));
            }
            if instances.insert(id.clone(), record.item.clone()).is_some() {
                return Err(Error::bad("instances", format!("{id} is named twice")));
            }
        }
    }
    Ok(Goods {
        currencies: request.currencies,
        items: request.items,
        instances,
    })
}
