//! The writes that move value — store purchases, consumption, gifts between players, grants from
//! game servers — and a player's history. Each write is one ledger transaction under the caller's
//! `Idempotency-Key`: sent again with the same body it answers the stored result and changes
//! nothing; with another body it is 409.

use std::collections::BTreeMap;

use axum::extract::{Path, State};
use axum::routing::{get, post};
use axum::{Json, Router};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use flotilla_storage::page::{Page, PageRequest, SortKey};
use mongodb::bson::doc;
use serde::{Deserialize, Serialize};

use crate::caller::{PlayerCaller, ServiceCaller};
use crate::catalog::{Catalog, Item, MAX_AMOUNT, currency_asset, item_asset, offer_asset};
use crate::extract::IdempotencyKey;
use crate::fraud;
use crate::instances::{self, Minted, NewInstance};
use crate::ledger::model::{Holder, Leg, Outcome, Transaction};
use crate::ledger::store::LedgerStore;
use crate::state::Shared;
use crate::{Error, Result};
use flotilla_service::extract::{JsonBody, QueryParams};

/// Where bought goods' prices go, where rewards come from, where consumed items go.
pub const STORE: &str = "store";
pub const MINT: &str = "mint";
pub const SINK: &str = "sink";

pub fn routes() -> Router<Shared> {
    Router::new()
        .route("/v1/purchases", post(purchase))
        .route("/v1/consumptions", post(consume))
        .route("/v1/gifts", post(gift))
        .route("/v1/grants", post(grant))
        .route("/v1/transactions", get(own_history))
        .route("/v1/players/{player}/transactions", get(player_history))
}

#[derive(Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct PurchaseRequest {
    /// The offer's id in the catalog.
    pub offer: String,
}

#[derive(Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
/// An `amount` of a stackable `item`, or the `instances` of unique items.
pub struct ConsumeRequest {
    pub item: Option<String>,
    pub amount: Option<i64>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub instances: Vec<String>,
}

/// A gift of an `amount` of one `currency` or one `item`, or of `instances` of unique items:
/// exactly one of the three.
#[derive(Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct GiftRequest {
    pub to: String,
    pub currency: Option<String>,
    pub item: Option<String>,
    pub amount: Option<i64>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub instances: Vec<String>,
}

#[derive(Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct GrantRequest {
    pub player: String,
    #[serde(default)]
    pub currencies: BTreeMap<String, i64>,
    /// Stackable items by amount; a unique item here mints that many instances with the
    /// catalog's properties.
    #[serde(default)]
    pub items: BTreeMap<String, i64>,
    /// Instances of unique items with properties of their own.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub instances: Vec<NewInstance>,
    /// Why (a match reward, a compensation): shown in history. Up to 200 characters.
    pub reason: String,
}

/// A transaction as clients see it.
#[derive(Serialize, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct TransactionView {
    pub id: String,
    pub kind: String,
    pub memo: String,
    /// `committed`, `voided`, `held` while a fraud rule holds it for review, or `pending` while
    /// it is being decided.
    pub state: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    pub legs: Vec<LegView>,
    pub at_ms: i64,
}

#[derive(Serialize, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct LegView {
    pub asset: String,
    pub amount: i64,
    pub from: Holder,
    pub to: Holder,
}

impl TransactionView {
    pub fn new(tx: &Transaction, outcome: Option<&Outcome>) -> Self {
        let held = tx.flag.as_ref().filter(|flag| !flag.deny);
        let state = match (outcome, held) {
            (Some(outcome), _) if outcome.committed => "committed",
            (Some(_), _) => "voided",
            (None, Some(_)) => "held",
            (None, None) => "pending",
        };
        let reason = match (outcome, held) {
            (Some(outcome), _) => outcome.reason.clone(),
            (None, Some(flag)) => Some(format!("held by fraud rule {}", flag.rule)),
            (None, None) => None,
        };
        Self {
            id: tx.id.clone(),
            kind: tx.kind.clone(),
            memo: tx.memo.clone(),
            state,
            reason,
            legs: tx
                .legs
                .iter()
                .map(|leg| LegView {
                    asset: leg.asset.clone(),
                    amount: leg.amount,
                    from: leg.from.clone(),
                    to: leg.to.clone(),
                })
                .collect(),
            at_ms: tx.at_ms,
        }
    }
}

/// Whether `id` may be a player id: what the player service issues, `[A-Za-z0-9_-]{1,64}`.
pub fn valid_player(id: &str) -> bool {
    (1..=64).contains(&id.len())
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
}

pub(crate) fn check_amount(field: &'static str, amount: i64) -> Result<()> {
    match (1..=MAX_AMOUNT).contains(&amount) {
        true => Ok(()),
        false => Err(Error::bad(field, format!("must be between 1 and {MAX_AMOUNT}"))),
    }
}

/// A leg crediting `player` with `amount` of `asset` out of system account `from`.
fn credit(catalog: &Catalog, from: &str, player: &str, asset: String, amount: i64) -> Result<Leg> {
    let limit = catalog
        .limit(&asset)
        .ok_or_else(|| Error::bad("asset", format!("{asset} is not in the catalog")))?;
    Ok(Leg {
        asset,
        amount,
        from: Holder::System(from.into()),
        to: Holder::Player(player.into()),
        limit,
        debt: false,
    })
}

fn debit(player: &str, to: &str, asset: String, amount: i64) -> Leg {
    Leg {
        asset,
        amount,
        from: Holder::Player(player.into()),
        to: Holder::System(to.into()),
        limit: i64::MAX,
        debt: false,
    }
}

async fn purchase(
    State(state): State<Shared>,
    caller: PlayerCaller,
    IdempotencyKey(key): IdempotencyKey,
    JsonBody(request): JsonBody<PurchaseRequest>,
) -> Result<Json<TransactionView>> {
    let catalog = state.catalog();
    let offer = catalog.offer(&request.offer).ok_or(Error::NotFound("offer"))?;
    let now = state.ledger.now_ms();
    if offer.available_from_ms.is_some_and(|from| now < from)
        || offer.available_until_ms.is_some_and(|until| now >= until)
    {
        return Err(Error::bad("offer", "this offer is not available now"));
    }
    let player = caller.player.as_str();
    let mut legs: Vec<Leg> = offer
        .cost
        .assets()
        .map(|(asset, amount)| debit(player, STORE, asset, amount))
        .collect();
    let (stackable, unique) = split_unique(&catalog, &offer.reward.currencies, &offer.reward.items);
    for (asset, amount) in stackable {
        legs.push(credit(&catalog, MINT, player, asset, amount)?);
    }
    let (id, hash) = identify(Some(&caller), &key, "purchase", &request)?;
    let minted = Minted::new(&catalog, (&id, &hash, now), MINT, player, &unique)?;
    minted.store(&state).await?;
    legs.extend(minted.legs);
    if offer.purchase_limit.is_some() {
        // The purchase count is an account too: its limit holds as every other one does.
        legs.push(credit(&catalog, MINT, player, offer_asset(&offer.id), 1)?);
    }
    let memo = format!("offer {} (catalog v{})", offer.id, catalog.version);
    submit(&state, Some(&caller), &key, "purchase", memo, &request, legs).await
}

async fn consume(
    State(state): State<Shared>,
    caller: PlayerCaller,
    IdempotencyKey(key): IdempotencyKey,
    JsonBody(request): JsonBody<ConsumeRequest>,
) -> Result<Json<TransactionView>> {
    let consumable = |item: &Item| match item.consumable {
        true => Ok(()),
        false => Err(Error::bad("item", format!("{} is not consumable", item.id))),
    };
    let from = Holder::Player(caller.player.clone());
    let legs = match (&request.item, request.amount, request.instances.is_empty()) {
        (None, None, false) => {
            let sink = Holder::System(SINK.into());
            instances::moving(&state, &request.instances, &from, &sink, consumable).await?
        }
        (Some(id), Some(amount), true) => {
            check_amount("amount", amount)?;
            let catalog = state.catalog();
            let item = stackable_item(&catalog, id)?;
            consumable(item)?;
            vec![debit(&caller.player, SINK, item_asset(&item.id), amount)]
        }
        _ => {
            return Err(Error::bad("item", "name an item and an amount, or the instances"));
        }
    };
    submit(
        &state,
        Some(&caller),
        &key,
        "consume",
        String::new(),
        &request,
        legs,
    )
    .await
}

async fn gift(
    State(state): State<Shared>,
    caller: PlayerCaller,
    IdempotencyKey(key): IdempotencyKey,
    JsonBody(request): JsonBody<GiftRequest>,
) -> Result<Json<TransactionView>> {
    if !valid_player(&request.to) {
        return Err(Error::bad("to", "is not a player id"));
    }
    if request.to == caller.player {
        return Err(Error::bad("to", "a gift goes to another player"));
    }
    // With the player service at hand: no gifts into the void, nor across a block.
    if let Some(players) = &state.players {
        match players.relation(&caller.player, &request.to).await? {
            None => return Err(Error::NotFound("player")),
            Some(relation) if relation.blocked => {
                return Err(Error::Forbidden("you cannot give to this player"));
            }
            Some(_) => {}
        }
    }
    let catalog = state.catalog();
    let tradeable = |item: &Item| match item.tradeable {
        true => Ok(()),
        false => Err(Error::bad("item", format!("{} cannot be gifted", item.id))),
    };
    let (from, to) = (
        Holder::Player(caller.player.clone()),
        Holder::Player(request.to.clone()),
    );
    let asset = match (&request.currency, &request.item, request.instances.is_empty()) {
        (Some(code), None, true) => {
            let currency = catalog.currency(code).ok_or(Error::NotFound("currency"))?;
            if !currency.transferable {
                return Err(Error::bad("currency", format!("{code} cannot be gifted")));
            }
            Some(currency_asset(code))
        }
        (None, Some(id), true) => {
            let item = stackable_item(&catalog, id)?;
            tradeable(item)?;
            Some(item_asset(id))
        }
        (None, None, false) if request.amount.is_none() => None,
        _ => {
            return Err(Error::bad(
                "currency",
                "name exactly one of currency and item (with an amount), or the instances",
            ));
        }
    };
    let legs = match asset {
        None => instances::moving(&state, &request.instances, &from, &to, tradeable).await?,
        Some(asset) => {
            let amount = request
                .amount
                .ok_or_else(|| Error::bad("amount", "is required"))?;
            check_amount("amount", amount)?;
            vec![Leg {
                limit: catalog.limit(&asset).unwrap_or(0),
                asset,
                amount,
                from,
                to,
                debt: false,
            }]
        }
    };
    let memo = format!("gift to {}", request.to);
    submit(&state, Some(&caller), &key, "gift", memo, &request, legs).await
}

async fn grant(
    State(state): State<Shared>,
    _: ServiceCaller,
    IdempotencyKey(key): IdempotencyKey,
    JsonBody(request): JsonBody<GrantRequest>,
) -> Result<Json<TransactionView>> {
    if !valid_player(&request.player) {
        return Err(Error::bad("player", "is not a player id"));
    }
    if request.reason.chars().count() > 200 {
        return Err(Error::bad("reason", "is longer than 200 characters"));
    }
    if request.currencies.is_empty() && request.items.is_empty() && request.instances.is_empty() {
        return Err(Error::bad(
            "currencies",
            "a grant gives at least one currency or item",
        ));
    }
    let catalog = state.catalog();
    let mut legs = Vec::new();
    for (code, amount) in &request.currencies {
        check_amount("currencies", *amount)?;
        catalog.currency(code).ok_or(Error::NotFound("currency"))?;
        legs.push(credit(
            &catalog,
            MINT,
            &request.player,
            currency_asset(code),
            *amount,
        )?);
    }
    for (id, amount) in &request.items {
        check_amount("items", *amount)?;
        catalog.item(id).ok_or(Error::NotFound("item"))?;
    }
    let (stackable, mut unique) = split_unique(&catalog, &BTreeMap::new(), &request.items);
    for (asset, amount) in stackable {
        legs.push(credit(&catalog, MINT, &request.player, asset, amount)?);
    }
    unique.extend(request.instances.iter().cloned());
    let (id, hash) = identify(None, &key, "grant", &request)?;
    let minted = Minted::new(
        &catalog,
        (&id, &hash, state.ledger.now_ms()),
        MINT,
        &request.player,
        &unique,
    )?;
    minted.store(&state).await?;
    legs.extend(minted.legs);
    submit(
        &state,
        None,
        &key,
        "grant",
        request.reason.clone(),
        &request,
        legs,
    )
    .await
}

/// Records and drives the transaction; a voided one is answered 422 with its reason, every time.
/// `caller` is the player who asked, or `None` for a game server or back-end (keys are then
/// scoped to "service", and fraud rules do not apply).
pub(crate) async fn submit<B: Serialize>(
    state: &Shared,
    caller: Option<&PlayerCaller>,
    key: &str,
    kind: &'static str,
    memo: String,
    request: &B,
    legs: Vec<Leg>,
) -> Result<Json<TransactionView>> {
    let (id, request_hash) = identify(caller, key, kind, request)?;
    let mut players: Vec<String> = legs
        .iter()
        .flat_map(|leg| [leg.from.player(), leg.to.player()])
        .flatten()
        .map(str::to_owned)
        .collect();
    players.sort();
    players.dedup();
    // Fraud rules judge players' own transactions, once: a retry follows the stored verdict.
    // (Without rules, no read: on FerretDB a read that finds nothing scans the collection.)
    let rules = &state.catalog().fraud;
    let flag = match caller {
        Some(caller) if !rules.rules.is_empty() => match state.ledger.store().transaction(&id).await? {
            None => fraud::check(state, rules, &caller.player, caller.created, kind, &legs).await?,
            Some(stored) => stored.flag,
        },
        _ => None,
    };
    let tx = Transaction {
        id,
        request_hash,
        kind: kind.to_owned(),
        memo,
        legs,
        players,
        at_ms: state.ledger.now_ms(),
        flag,
    };
    let settled = state.ledger.submit(tx).await?;
    state.metrics.transaction(kind, settled.outcome.committed);
    if !settled.outcome.committed {
        return Err(Error::Refused(
            settled.outcome.reason.unwrap_or_else(|| "voided".into()),
        ));
    }
    Ok(Json(TransactionView::new(&settled.tx, Some(&settled.outcome))))
}

/// The id of the transaction a request makes, and the digest of the request its key is bound to.
/// Keys are scoped by caller: a player's own, or "service" for game servers and back-ends.
pub(crate) fn identify<B: Serialize>(
    caller: Option<&PlayerCaller>,
    key: &str,
    kind: &str,
    request: &B,
) -> Result<(String, String)> {
    let body = serde_json::to_vec(request).map_err(|e| Error::Invariant(e.to_string()))?;
    let id = Transaction::id_for(caller.map_or("service", |c| c.player.as_str()), key);
    Ok((id, request_hash(kind, &body)))
}

/// A bundle's assets split into those a leg moves by amount, and instances to mint for its
/// unique items (each with the catalog's properties).
fn split_unique(
    catalog: &Catalog,
    currencies: &BTreeMap<String, i64>,
    items: &BTreeMap<String, i64>,
) -> (Vec<(String, i64)>, Vec<NewInstance>) {
    let bundle = crate::catalog::Bundle {
        currencies: currencies.clone(),
        items: items.clone(),
    };
    let mut stackable = Vec::new();
    let mut unique = Vec::new();
    for (asset, amount) in bundle.assets() {
        match asset.strip_prefix("i:").and_then(|id| catalog.item(id)) {
            Some(item) if item.unique => {
                let count = amount.clamp(0, instances::MAX_PER_REQUEST as i64 + 1) as usize;
                let new = NewInstance {
                    item: item.id.clone(),
                    properties: BTreeMap::new(),
                };
                unique.extend(std::iter::repeat_n(new, count));
            }
            _ => stackable.push((asset, amount)),
        }
    }
    (stackable, unique)
}

/// A catalog item moved by amount: not a unique one, whose instances are named instead.
pub(crate) fn stackable_item<'a>(catalog: &'a Catalog, id: &str) -> Result<&'a Item> {
    let item = catalog.item(id).ok_or(Error::NotFound("item"))?;
    match item.unique {
        true => Err(Error::bad("item", format!("{id} is unique: name the instances"))),
        false => Ok(item),
    }
}

/// SHA-256 of the route's kind and the request body: what an idempotency key is bound to.
pub fn request_hash(kind: &str, body: &[u8]) -> String {
    let mut context = ring::digest::Context::new(&ring::digest::SHA256);
    context.update(kind.as_bytes());
    context.update(b"\n");
    context.update(body);
    URL_SAFE_NO_PAD.encode(context.finish())
}

#[derive(Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct HistoryQuery {
    pub kind: Option<String>,
    /// From this time (inclusive), milliseconds since the epoch.
    pub since_ms: Option<i64>,
    /// Until this time (exclusive).
    pub until_ms: Option<i64>,
    pub limit: Option<u32>,
    pub cursor: Option<String>,
}

async fn own_history(
    State(state): State<Shared>,
    caller: PlayerCaller,
    QueryParams(query): QueryParams<HistoryQuery>,
) -> Result<Json<Page<TransactionView>>> {
    history(&state, &caller.player, query).await
}

async fn player_history(
    State(state): State<Shared>,
    _: ServiceCaller,
    Path(player): Path<String>,
    QueryParams(query): QueryParams<HistoryQuery>,
) -> Result<Json<Page<TransactionView>>> {
    if !valid_player(&player) {
        return Err(Error::bad("player", "is not a player id"));
    }
    history(&state, &player, query).await
}

/// The kinds of transaction history can be filtered by.
pub const KINDS: [&str; 16] = [
    "grant",
    "purchase",
    "consume",
    "gift",
    "reversal",
    "market-list",
    "market-buy",
    "market-cancel",
    "market-expire",
    "trade-offer",
    "trade",
    "trade-cancel",
    "trade-expire",
    "auction-create",
    "auction-bid",
    "auction-settle",
];

/// A player's transactions, newest first, in pages.
async fn history(state: &Shared, player: &str, query: HistoryQuery) -> Result<Json<Page<TransactionView>>> {
    let mut filter = doc! {"players": player};
    if let Some(kind) = query.kind {
        if !KINDS.contains(&kind.as_str()) {
            return Err(Error::bad("kind", format!("is one of {}", KINDS.join(", "))));
        }
        filter.insert("kind", kind);
    }
    let mut at = doc! {};
    if let Some(since) = query.since_ms {
        at.insert("$gte", since);
    }
    if let Some(until) = query.until_ms {
        at.insert("$lt", until);
    }
    if !at.is_empty() {
        filter.insert("at_ms", at);
    }
    let request = PageRequest::new(query.limit, query.cursor);
    let store = state.ledger.store();
    let page = store
        .transactions
        .page(filter, SortKey::descending("at_ms"), &request)
        .await?;
    let ids: Vec<&str> = page.items.iter().map(|tx| tx.id.as_str()).collect();
    let outcomes = store.outcomes(&ids).await?;
    Ok(Json(page.map(|tx| {
        let outcome = outcomes.iter().find(|o| o.tx == tx.id);
        TransactionView::new(&tx, outcome)
    })))
}
