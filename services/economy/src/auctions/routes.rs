//! The auction house's HTTP surface: create, browse, look at, bid on an auction, and its bids.

use axum::extract::{Path, State};
use axum::routing::{get, post};
use axum::{Json, Router};
use flotilla_storage::page::{Page, PageRequest, SortKey};
use mongodb::bson::doc;
use serde::{Deserialize, Serialize};

use crate::auctions::state::{Action, AuctionState, Bid, Lot, Status, Terms, minimum_bid};
use crate::auctions::{self, Auction, act, current};
use crate::caller::PlayerCaller;
use crate::catalog::{Item, MAX_AMOUNT};
use crate::exchange::Applied;
use crate::extract::IdempotencyKey;
use crate::ids;
use crate::state::Shared;
use crate::transactions::{check_amount, identify, stackable_item, valid_player};
use crate::{Error, Result};
use flotilla_service::extract::{JsonBody, QueryParams};

pub fn routes() -> Router<Shared> {
    Router::new()
        .route("/v1/auctions", post(create).get(browse))
        .route("/v1/auctions/{id}", get(show))
        .route("/v1/auctions/{id}/bids", post(bid).get(history))
}

/// A lot (`item` and `amount`, or an `instance`) and the seller's terms, in `currency`.
#[derive(Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct CreateRequest {
    pub item: Option<String>,
    pub amount: Option<i64>,
    pub instance: Option<String>,
    pub currency: String,
    pub start_price: i64,
    pub reserve_price: Option<i64>,
    pub buyout_price: Option<i64>,
    pub duration_seconds: i64,
    /// The least a bid beats the top one by (at least the catalog's `minIncrement`).
    pub increment: Option<i64>,
    /// Or this share of the top bid, in basis points, when that is more.
    pub increment_percent_bps: Option<i64>,
}

#[derive(Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct BidRequest {
    pub amount: i64,
    /// The auction's version the bidder saw: a bid on anything else is 409.
    pub version: i64,
}

/// An auction as players see it.
#[derive(Serialize, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct AuctionView {
    pub id: String,
    pub seller: String,
    pub lot: Lot,
    pub currency: String,
    pub start_price: i64,
    /// Whether a reserve is set (not its amount) and whether the top bid meets it.
    pub has_reserve: bool,
    pub reserve_met: bool,
    pub buyout_price: Option<i64>,
    /// `open`, `sold`, `unsold` or `refused`.
    pub state: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    pub top_bid: Option<Bid>,
    /// What the next bid must be at least.
    pub minimum_bid: i64,
    /// What a bid names.
    pub version: i64,
    pub ends_ms: i64,
    pub created_ms: i64,
}

impl AuctionView {
    fn new(auction: &Auction, state: &AuctionState) -> Self {
        let terms = &state.terms;
        let (name, reason) = match &state.status {
            Status::Open => ("open", None),
            Status::Sold { .. } => ("sold", None),
            Status::Unsold { reason } => ("unsold", Some(reason.clone())),
            Status::Refused => ("refused", None),
        };
        let top = state.top.as_ref().map(|top| top.amount);
        Self {
            id: auction.id.clone(),
            seller: terms.seller.clone(),
            lot: terms.lot.clone(),
            currency: terms.currency.clone(),
            start_price: terms.start_price,
            has_reserve: terms.reserve_price.is_some(),
            reserve_met: terms
                .reserve_price
                .is_none_or(|reserve| top.is_some_and(|top| top >= reserve)),
            buyout_price: terms.buyout_price,
            state: name,
            reason,
            top_bid: state.top.clone(),
            minimum_bid: minimum_bid(state),
            version: state.version,
            ends_ms: state.ends_ms,
            created_ms: auction.created_ms,
        }
    }
}

async fn create(
    State(state): State<Shared>,
    caller: PlayerCaller,
    IdempotencyKey(key): IdempotencyKey,
    JsonBody(request): JsonBody<CreateRequest>,
) -> Result<Json<AuctionView>> {
    let catalog = state.catalog();
    let rules = &catalog.auctions;
    if !rules.currencies.contains(&request.currency) {
        return Err(Error::bad(
            "currency",
            format!("bids are in one of: {}", rules.currencies.join(", ")),
        ));
    }
    check_amount("startPrice", request.start_price)?;
    for (field, price) in [
        ("reservePrice", request.reserve_price),
        ("buyoutPrice", request.buyout_price),
    ] {
        if price.is_some_and(|price| price < request.start_price || price > MAX_AMOUNT) {
            return Err(Error::bad(field, "must be between the start price and 10^12"));
        }
    }
    if let (Some(reserve), Some(buyout)) = (request.reserve_price, request.buyout_price)
        && buyout < reserve
    {
        return Err(Error::bad("buyoutPrice", "must be at least the reserve price"));
    }
    let longest = rules.max_duration_hours * 3_600;
    if !(1..=longest).contains(&request.duration_seconds) {
        return Err(Error::bad(
            "durationSeconds",
            format!("must be between 1 and {longest}"),
        ));
    }
    let increment = request.increment.unwrap_or(rules.min_increment);
    if !(rules.min_increment..=MAX_AMOUNT).contains(&increment) {
        return Err(Error::bad(
            "increment",
            format!("must be at least {}", rules.min_increment),
        ));
    }
    let increment_bps = request.increment_percent_bps.unwrap_or(0);
    if !(0..=10_000).contains(&increment_bps) {
        return Err(Error::bad("incrementPercentBps", "must be between 0 and 10000"));
    }
    let tradeable = |item: &Item| match item.tradeable {
        true => Ok(()),
        false => Err(Error::bad("item", format!("{} cannot be traded", item.id))),
    };
    let lot = match (&request.item, request.amount, &request.instance) {
        (Some(item), Some(amount), None) => {
            check_amount("amount", amount)?;
            tradeable(stackable_item(&catalog, item)?)?;
            Lot {
                item: item.clone(),
                amount,
                instance: None,
            }
        }
        (None, None, Some(instance)) => {
            if !ids::valid(instance) {
                return Err(Error::bad("instance", "is not an instance id"));
            }
            let record = state
                .instances
                .get(instance)
                .await?
                .ok_or(Error::NotFound("instance"))?;
            tradeable(catalog.item(&record.item).ok_or(Error::NotFound("item"))?)?;
            Lot {
                item: record.item,
                amount: 1,
                instance: Some(instance.clone()),
            }
        }
        _ => return Err(Error::bad("item", "name an item and an amount, or an instance")),
    };
    let (tx, hash) = identify(Some(&caller), &key, "auction-create", &request)?;
    let id = ids::derived(&["auction", &tx, &hash]);
    let auction = match state.auctions.records.get(&id).await? {
        Some(auction) => auction,
        None => {
            let now = state.ledger.now_ms();
            let auction = Auction {
                id,
                seller: caller.player.clone(),
                item: lot.item.clone(),
                created_ms: now,
                ends_ms: now + request.duration_seconds * 1_000,
            };
            match state.auctions.auctions.insert(&auction).await {
                Ok(()) | Err(flotilla_storage::Error::Duplicate { .. }) => {}
                Err(error) => return Err(error.into()),
            }
            auction
        }
    };
    let terms = Terms {
        seller: caller.player.clone(),
        lot,
        currency: request.currency.clone(),
        start_price: request.start_price,
        reserve_price: request.reserve_price,
        buyout_price: request.buyout_price,
        increment_fixed: increment,
        increment_bps,
        listing_fee: rules
            .listing_fee
            .as_ref()
            .map(|fee| (fee.currency.clone(), fee.amount)),
        sale_fee_bps: rules.sale_fee_bps,
        window_ms: rules.sniping_window_seconds * 1_000,
        extension_ms: rules.sniping_extension_seconds * 1_000,
        max_extension_ms: rules.max_extension_seconds * 1_000,
    };
    let action = Action::Create {
        terms: Box::new(terms),
        ends_ms: auction.ends_ms,
    };
    match act(&state, &auction, &caller.player, action).await? {
        Applied::Voided(_, reason) => Err(Error::Refused(reason)),
        applied => Ok(Json(AuctionView::new(&auction, &applied.state()))),
    }
}

/// The auction and its state: read exactly (`exact`), or as this process last saw it.
async fn auction(state: &Shared, id: &str, exact: bool) -> Result<(Auction, AuctionState)> {
    let found = match ids::valid(id) {
        true => state.auctions.records.get(id).await?,
        false => None,
    };
    let auction = found.ok_or(Error::NotFound("auction"))?;
    let now = match exact {
        true => current(state, &auction).await?,
        false => auctions::latest(state, &auction).await?,
    };
    Ok((auction, now.ok_or(Error::NotFound("auction"))?))
}

async fn show(
    State(state): State<Shared>,
    _: PlayerCaller,
    Path(id): Path<String>,
) -> Result<Json<AuctionView>> {
    let (auction, now) = auction(&state, &id, true).await?;
    Ok(Json(AuctionView::new(&auction, &now)))
}

async fn bid(
    State(state): State<Shared>,
    caller: PlayerCaller,
    Path(id): Path<String>,
    JsonBody(request): JsonBody<BidRequest>,
) -> Result<Json<AuctionView>> {
    check_amount("amount", request.amount)?;
    // As last seen: a stale state only makes the retry check miss, and the bid's own append
    // decides on the stored one.
    let (auction, before) = auction(&state, &id, false).await?;
    // A retried bid that went through is answered, not refused as the caller's own top bid.
    if let Some(top) = &before.top
        && top.bidder == caller.player
        && top.amount == request.amount
        && before.version > request.version
    {
        return Ok(Json(AuctionView::new(&auction, &before)));
    }
    let action = Action::Bid {
        amount: request.amount,
        version: request.version,
    };
    match act(&state, &auction, &caller.player, action).await? {
        Applied::Voided(_, reason) => Err(Error::Refused(reason)),
        applied => Ok(Json(AuctionView::new(&auction, &applied.state()))),
    }
}

async fn history(
    State(state): State<Shared>,
    _: PlayerCaller,
    Path(id): Path<String>,
) -> Result<Json<Vec<Bid>>> {
    let (auction, _) = auction(&state, &id, true).await?;
    Ok(Json(auctions::bids(&state, &auction).await?))
}

#[derive(Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct BrowseQuery {
    pub item: Option<String>,
    pub seller: Option<String>,
    pub limit: Option<u32>,
    pub cursor: Option<String>,
}

/// Auctions, newest first, by item or seller.
async fn browse(
    State(state): State<Shared>,
    _: PlayerCaller,
    QueryParams(query): QueryParams<BrowseQuery>,
) -> Result<Json<Page<AuctionView>>> {
    let mut filter = doc! {};
    if let Some(item) = &query.item {
        filter.insert("item", item);
    }
    if let Some(seller) = &query.seller {
        if !valid_player(seller) {
            return Err(Error::bad("seller", "is not a player id"));
        }
        filter.insert("seller", seller);
    }
    let request = PageRequest::new(query.limit, query.cursor);
    let page = state
        .auctions
        .auctions
        .page(filter, SortKey::descending("created_ms"), &request)
        .await?;
    let mut views = Vec::new();
    for auction in &page.items {
        if let Some(now) = current(&state, auction).await? {
            views.push(AuctionView::new(auction, &now));
        }
    }
    Ok(Json(Page {
        items: views,
        next_cursor: page.next_cursor,
    }))
}
