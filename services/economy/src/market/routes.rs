//! The market's HTTP surface: list, browse, look at, buy from and cancel listings, price history,
//! and the admin's reindex.

use std::collections::BTreeMap;

use axum::extract::{Path, State};
use axum::routing::{get, post};
use axum::{Json, Router};
use futures::{StreamExt, TryStreamExt};
use mongodb::bson::doc;
use serde::{Deserialize, Serialize};
use serde_json::json;

use crate::caller::{AdminCaller, PlayerCaller};
use crate::catalog::{Item, MAX_AMOUNT, currency_asset, item_asset};
use crate::extract::IdempotencyKey;
use crate::fees::{self, Split};
use crate::ids;
use crate::instances::{self, instance_asset};
use crate::ledger::model::{Holder, Leg};
use crate::ledger::store::LedgerStore;
use crate::market::closing::{self, Reason, reindex_one};
use crate::market::listings::{self, Listing, ListingView, Sale};
use crate::market::search::{ListingDoc, MAX_PAGE, Query, Sort};
use crate::players;
use crate::state::Shared;
use crate::transactions::{TransactionView, check_amount, identify, stackable_item, submit, valid_player};
use crate::{Error, Result};
use flotilla_service::extract::{JsonBody, QueryParams};

pub fn routes() -> Router<Shared> {
    Router::new()
        .route("/v1/market/listings", post(create).get(browse))
        .route("/v1/market/listings/{id}", get(show))
        .route("/v1/market/listings/{id}/purchases", post(buy))
        .route("/v1/market/listings/{id}/cancel", post(cancel))
        .route("/v1/market/items/{item}/prices", get(prices))
        .route("/v1/admin/market/reindex", post(reindex))
}

/// `amount` units of a stackable `item`, or one `instance` of a unique item, at `unitPrice` each.
#[derive(Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ListRequest {
    pub item: Option<String>,
    pub amount: Option<i64>,
    pub instance: Option<String>,
    /// One of the catalog's market currencies.
    pub currency: String,
    pub unit_price: i64,
    /// How long it stays up, in seconds; the catalog's `market.maxDurationHours` when absent.
    pub duration_seconds: Option<i64>,
}

#[derive(Serialize, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ListAnswer {
    pub listing: ListingView,
    pub transaction: TransactionView,
}

#[derive(Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct BuyRequest {
    /// Units to buy (default 1); all or nothing.
    pub amount: Option<i64>,
}

#[derive(Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct BrowseQuery {
    pub item: Option<String>,
    pub category: Option<String>,
    pub seller: Option<String>,
    pub currency: Option<String>,
    /// Property filters, comma-separated `name=value` (`rarity=epic,level=3`); all must match.
    pub properties: Option<String>,
    pub min_price: Option<i64>,
    pub max_price: Option<i64>,
    /// `priceAsc`, `priceDesc`, `newest` (default) or `oldest`.
    pub sort: Option<Sort>,
    pub limit: Option<usize>,
    pub cursor: Option<String>,
}

#[derive(Serialize, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ListingPage {
    pub items: Vec<ListingDoc>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub next_cursor: Option<String>,
}

#[derive(Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct PricesQuery {
    /// How many of the latest sales (default 20, at most 100).
    pub limit: Option<i64>,
}

#[derive(Serialize, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct PriceHistory {
    pub item: String,
    /// The latest sales, newest first.
    pub sales: Vec<SaleView>,
    /// The median unit price of those sales, per currency.
    pub median: BTreeMap<String, i64>,
}

#[derive(Serialize, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct SaleView {
    pub listing: String,
    pub amount: i64,
    pub unit_price: i64,
    pub currency: String,
    pub at_ms: i64,
}

#[derive(Serialize, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ReindexAnswer {
    pub indexed: u64,
}

async fn create(
    State(state): State<Shared>,
    caller: PlayerCaller,
    IdempotencyKey(key): IdempotencyKey,
    JsonBody(request): JsonBody<ListRequest>,
) -> Result<Json<ListAnswer>> {
    let catalog = state.catalog();
    let rules = &catalog.market;
    if !rules.currencies.contains(&request.currency) {
        return Err(Error::bad(
            "currency",
            format!("prices are in one of: {}", rules.currencies.join(", ")),
        ));
    }
    check_amount("unitPrice", request.unit_price)?;
    let longest = rules.max_duration_hours * 3_600;
    let seconds = request.duration_seconds.unwrap_or(longest);
    if !(1..=longest).contains(&seconds) {
        return Err(Error::bad(
            "durationSeconds",
            format!("must be between 1 and {longest}"),
        ));
    }
    let tradeable = |item: &Item| match item.tradeable {
        true => Ok(()),
        false => Err(Error::bad("item", format!("{} cannot be traded", item.id))),
    };
    let (tx, hash) = identify(Some(&caller), &key, "market-list", &request)?;
    let id = ids::derived(&["listing", &tx, &hash]);
    let listing_escrow = Holder::Escrow(format!("listing:{id}"));
    let seller = Holder::Player(caller.player.clone());
    let (item, amount, instance, mut legs, properties) =
        match (&request.item, request.amount, &request.instance) {
            (Some(item), Some(amount), None) => {
                check_amount("amount", amount)?;
                let item = stackable_item(&catalog, item)?;
                tradeable(item)?;
                let leg = Leg {
                    asset: item_asset(&item.id),
                    amount,
                    from: seller.clone(),
                    to: listing_escrow.clone(),
                    limit: i64::MAX,
                    debt: false,
                };
                (item.id.clone(), amount, None, vec![leg], item.properties.clone())
            }
            (None, None, Some(instance)) => {
                let ids = [instance.clone()];
                let legs = instances::moving(&state, &ids, &seller, &listing_escrow, tradeable).await?;
                let record = state
                    .instances
                    .get(instance)
                    .await?
                    .ok_or(Error::NotFound("instance"))?;
                (record.item, 1, Some(instance.clone()), legs, record.properties)
            }
            _ => {
                return Err(Error::bad("item", "name an item and an amount, or an instance"));
            }
        };
    if request
        .unit_price
        .checked_mul(amount)
        .is_none_or(|total| total > MAX_AMOUNT)
    {
        return Err(Error::bad(
            "unitPrice",
            format!("the whole listing may be worth at most {MAX_AMOUNT}"),
        ));
    }
    if let Some(fee) = &rules.listing_fee {
        legs.push(Leg {
            asset: currency_asset(&fee.currency),
            amount: fee.amount,
            from: seller.clone(),
            to: Holder::System(crate::transactions::SINK.into()),
            limit: i64::MAX,
            debt: false,
        });
    }
    let now = state.ledger.now_ms();
    let listing = Listing {
        id,
        seller: caller.player.clone(),
        item,
        instance,
        amount,
        currency: request.currency.clone(),
        unit_price: request.unit_price,
        sale_fee_bps: rules.sale_fee_bps,
        properties,
        tx: tx.clone(),
        created_ms: now,
        expires_ms: now + seconds * 1_000,
    };
    // Stored before its transaction: a retry finds this one (same id), and a listing whose
    // transaction was voided is shown as refused.
    let listing = match state.market.listings.insert(&listing).await {
        Ok(()) => listing,
        Err(flotilla_storage::Error::Duplicate { .. }) => state
            .market
            .listings
            .get(&listing.id)
            .await?
            .ok_or(Error::Unavailable("listing vanished".into()))?,
        Err(error) => return Err(error.into()),
    };
    let memo = format!("listing {}", listing.id);
    let transaction = submit(&state, Some(&caller), &key, "market-list", memo, &request, legs).await?;
    reindex_one(&state, &listing).await;
    Ok(Json(ListAnswer {
        listing: ListingView::read(&state, &listing).await?,
        transaction: transaction.0,
    }))
}

async fn listing(state: &Shared, id: &str) -> Result<Listing> {
    if !ids::valid(id) {
        return Err(Error::NotFound("listing"));
    }
    state
        .market
        .listing_records
        .get(id)
        .await?
        .ok_or(Error::NotFound("listing"))
}

async fn show(
    State(state): State<Shared>,
    _: PlayerCaller,
    Path(id): Path<String>,
) -> Result<Json<ListingView>> {
    let listing = listing(&state, &id).await?;
    Ok(Json(ListingView::read(&state, &listing).await?))
}

async fn buy(
    State(state): State<Shared>,
    caller: PlayerCaller,
    IdempotencyKey(key): IdempotencyKey,
    Path(id): Path<String>,
    JsonBody(request): JsonBody<BuyRequest>,
) -> Result<Json<TransactionView>> {
    let listing = listing(&state, &id).await?;
    let amount = request.amount.unwrap_or(1);
    check_amount("amount", amount)?;
    if caller.player == listing.seller {
        return Err(Error::bad("listing", "this is your own listing"));
    }
    if listing.instance.is_some() && amount != 1 {
        return Err(Error::bad("amount", "an instance is bought whole: 1"));
    }
    let (tx, _) = identify(Some(&caller), &key, "market-buy", &(&id, &request))?;
    // Without reading the store on the common path (a read scans a collection on FerretDB): the
    // escrow's balance is the ledger's to check, and a retry finds its transaction on submit.
    match listings::decided(&state, &listing).await? {
        Some(true) => {}
        Some(false) => return Err(Error::Refused("this listing was refused".into())),
        None => return Err(Error::Conflict("this listing is still being created".into())),
    }
    if state.ledger.now_ms() >= listing.expires_ms && state.ledger.store().transaction(&tx).await?.is_none() {
        return Err(Error::Refused("this listing has expired".into()));
    }
    // The remaining units as this process last saw them: a clear refusal in the common case,
    // while the ledger decides the races.
    let escrow_owner = listing.escrow();
    let remembered = escrow_owner
        .account()
        .and_then(|owner| state.ledger.remembered_head(owner, &listing.asset()));
    if let Some(head) = remembered
        && head.balance.available + head.balance.reserved == 0
        && state.ledger.store().transaction(&tx).await?.is_none()
    {
        return Err(Error::Refused("this listing has no units left".into()));
    }
    let catalog = state.catalog();
    let escrow = listing.escrow();
    let buyer = Holder::Player(caller.player.clone());
    let seller = Holder::Player(listing.seller.clone());
    let limit = catalog.item(&listing.item).map_or(0, |item| item.max_count);
    let mut legs = Vec::new();
    if let Some(instance) = &listing.instance {
        legs.push(Leg {
            asset: instance_asset(&listing.item, instance),
            amount: 1,
            from: escrow.clone(),
            to: buyer.clone(),
            limit: 1,
            debt: false,
        });
    }
    legs.push(Leg {
        asset: item_asset(&listing.item),
        amount,
        from: escrow,
        to: buyer.clone(),
        limit,
        debt: false,
    });
    let price = listing
        .unit_price
        .checked_mul(amount)
        .filter(|price| *price <= MAX_AMOUNT)
        .ok_or_else(|| Error::bad("amount", "is more than this listing holds"))?;
    let Split { proceeds, fee } = fees::split(price, listing.sale_fee_bps);
    let currency = currency_asset(&listing.currency);
    let currency_limit = catalog.limit(&currency).unwrap_or(0);
    if proceeds > 0 {
        legs.push(Leg {
            asset: currency.clone(),
            amount: proceeds,
            from: buyer.clone(),
            to: seller,
            limit: currency_limit,
            debt: false,
        });
    }
    if fee > 0 {
        legs.push(Leg {
            asset: currency,
            amount: fee,
            from: buyer,
            to: Holder::System(crate::transactions::SINK.into()),
            limit: i64::MAX,
            debt: false,
        });
    }
    let sale = Sale {
        tx,
        listing: listing.id.clone(),
        item: listing.item.clone(),
        amount,
        unit_price: listing.unit_price,
        currency: listing.currency.clone(),
        at_ms: state.ledger.now_ms(),
    };
    match state.market.sales.insert(&sale).await {
        Ok(()) | Err(flotilla_storage::Error::Duplicate { .. }) => {}
        Err(error) => return Err(error.into()),
    }
    let memo = format!("listing {}: {amount} × {}", listing.id, listing.item);
    let answer = submit(
        &state,
        Some(&caller),
        &key,
        "market-buy",
        memo,
        &(&id, &request),
        legs,
    )
    .await;
    if answer.is_ok() {
        state.metrics.sale("market", &listing.currency, price);
        let sold = json!({"listing": listing.id, "item": listing.item, "amount": amount, "price": price, "currency": listing.currency});
        players::notify(&state, &listing.seller, "sold", Some(&caller.player), sold);
    }
    reindex_one(&state, &listing).await;
    answer
}

async fn cancel(
    State(state): State<Shared>,
    caller: PlayerCaller,
    Path(id): Path<String>,
) -> Result<Json<ListingView>> {
    let listing = listing(&state, &id).await?;
    if listing.seller != caller.player {
        return Err(Error::Forbidden("only the seller may cancel a listing"));
    }
    closing::close(&state, &listing, Reason::Cancelled).await?;
    reindex_one(&state, &listing).await;
    Ok(Json(ListingView::read(&state, &listing).await?))
}

async fn browse(
    State(state): State<Shared>,
    _: PlayerCaller,
    QueryParams(query): QueryParams<BrowseQuery>,
) -> Result<Json<ListingPage>> {
    if query
        .seller
        .as_deref()
        .is_some_and(|seller| !valid_player(seller))
    {
        return Err(Error::bad("seller", "is not a player id"));
    }
    let attributes: Vec<String> = query
        .properties
        .iter()
        .flat_map(|properties| properties.split(','))
        .filter(|attribute| !attribute.is_empty())
        .map(str::to_owned)
        .collect();
    if attributes.len() > 8 || attributes.iter().any(|a| !a.contains('=') || a.len() > 200) {
        return Err(Error::bad(
            "properties",
            "up to 8 comma-separated name=value filters",
        ));
    }
    if query.min_price.is_some_and(|p| p < 0) || query.max_price.is_some_and(|p| p < 0) {
        return Err(Error::bad("minPrice", "prices are not negative"));
    }
    let limit = query.limit.unwrap_or(20);
    if !(1..=MAX_PAGE).contains(&limit) {
        return Err(Error::bad("limit", format!("must be between 1 and {MAX_PAGE}")));
    }
    let search = Query {
        item: query.item,
        category: query.category,
        seller: query.seller,
        currency: query.currency,
        attributes,
        min_price: query.min_price,
        max_price: query.max_price,
        sort: query.sort,
        limit,
        cursor: query.cursor,
    };
    let (docs, next_cursor) = state.market.index.search(&search, state.ledger.now_ms()).await?;
    Ok(Json(ListingPage {
        items: docs,
        next_cursor,
    }))
}

/// The latest committed sales of an item and their median unit price per currency.
async fn prices(
    State(state): State<Shared>,
    _: PlayerCaller,
    Path(item): Path<String>,
    QueryParams(query): QueryParams<PricesQuery>,
) -> Result<Json<PriceHistory>> {
    state.catalog().item(&item).ok_or(Error::NotFound("item"))?;
    let limit = query.limit.unwrap_or(20);
    if !(1..=100).contains(&limit) {
        return Err(Error::bad("limit", "must be between 1 and 100"));
    }
    // Voided purchases are rare: read a few more than asked and keep the committed ones.
    let sales = state
        .market
        .sales
        .find(doc! {"item": &item}, doc! {"at_ms": -1}, limit * 2 + 10)
        .await?;
    let ids: Vec<&str> = sales.iter().map(|sale| sale.tx.as_str()).collect();
    let committed: std::collections::HashSet<String> = state
        .ledger
        .store()
        .outcomes(&ids)
        .await?
        .into_iter()
        .filter(|outcome| outcome.committed)
        .map(|outcome| outcome.tx)
        .collect();
    let sales: Vec<SaleView> = sales
        .into_iter()
        .filter(|sale| committed.contains(&sale.tx))
        .take(limit as usize)
        .map(|sale| SaleView {
            listing: sale.listing,
            amount: sale.amount,
            unit_price: sale.unit_price,
            currency: sale.currency,
            at_ms: sale.at_ms,
        })
        .collect();
    let mut by_currency: BTreeMap<String, Vec<i64>> = BTreeMap::new();
    for sale in &sales {
        by_currency
            .entry(sale.currency.clone())
            .or_default()
            .push(sale.unit_price);
    }
    let median = by_currency
        .into_iter()
        .map(|(currency, prices)| (currency, median(prices)))
        .collect();
    Ok(Json(PriceHistory { item, sales, median }))
}

/// The middle price; of an even count, the lower middle one (a price that was paid).
fn median(mut prices: Vec<i64>) -> i64 {
    prices.sort_unstable();
    prices[(prices.len() - 1) / 2]
}

/// Rebuilds the search index from the store: every listing with its current state.
async fn reindex(State(state): State<Shared>, _: AdminCaller) -> Result<Json<ReindexAnswer>> {
    let listings = state
        .market
        .listings
        .find(doc! {}, doc! {"created_ms": 1}, 0)
        .await?;
    let catalog = state.catalog();
    // A few listings' states read at once: each is a few point reads.
    let docs: Vec<(ListingDoc, i64)> = futures::stream::iter(listings)
        .map(|listing| {
            let (state, catalog) = (state.clone(), catalog.clone());
            async move {
                let view = ListingView::read(&state, &listing).await?;
                let category = catalog.item(&listing.item).and_then(|item| item.category.clone());
                Ok::<_, Error>((ListingDoc::new(&view, category), view.version))
            }
        })
        .buffered(16)
        .try_collect()
        .await?;
    let indexed = state.market.index.rebuild(docs).await?;
    Ok(Json(ReindexAnswer { indexed }))
}

#[cfg(test)]
mod tests {
    use super::median;

    #[test]
    fn the_median_is_a_price_that_was_paid() {
        assert_eq!(median(vec![5]), 5);
        assert_eq!(median(vec![9, 1, 5]), 5);
        assert_eq!(median(vec![10, 1, 7, 3]), 3);
    }
}
