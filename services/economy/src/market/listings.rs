//! What the market stores: listings, sales (for price history) and closures, each inserted once
//! and never changed.

use std::collections::BTreeMap;

use flotilla_storage::model::{Model, index};
use mongodb::IndexModel;
use mongodb::bson::doc;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::Result;
use crate::catalog::item_asset;
use crate::ledger::model::Holder;
use crate::ledger::model::Posting;
use crate::state::Shared;

/// A fixed-price offer of `amount` units of an item (or one instance of a unique item). Stored
/// before its listing transaction is submitted; live once that transaction commits.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Listing {
    #[serde(rename = "_id")]
    pub id: String,
    pub seller: String,
    pub item: String,
    /// The unique item's instance on sale; `amount` is then 1.
    pub instance: Option<String>,
    /// Units listed.
    pub amount: i64,
    pub currency: String,
    pub unit_price: i64,
    /// The sale fee in force when it was listed: a later catalog does not change a listing's terms.
    pub sale_fee_bps: i64,
    /// The instance's properties (or the item's), for search.
    pub properties: BTreeMap<String, Value>,
    /// The transaction that moved the items into escrow.
    pub tx: String,
    pub created_ms: i64,
    pub expires_ms: i64,
}

impl Model for Listing {
    const COLLECTION: &'static str = "economy_listings";

    fn indexes() -> Vec<IndexModel> {
        vec![
            index("expiry", doc! {"expires_ms": 1}),
            index("seller", doc! {"seller": 1, "created_ms": -1}),
        ]
    }
}

impl Listing {
    /// The escrow account holding what is still on sale.
    pub fn escrow(&self) -> Holder {
        Holder::Escrow(format!("listing:{}", self.id))
    }

    /// The account whose balance is the units on sale: the item's count in escrow.
    pub fn asset(&self) -> String {
        item_asset(&self.item)
    }
}

/// A purchase from a listing, stored under the purchase transaction's id before it is submitted;
/// price history counts those whose transaction committed.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Sale {
    #[serde(rename = "_id")]
    pub tx: String,
    pub listing: String,
    pub item: String,
    pub amount: i64,
    pub unit_price: i64,
    pub currency: String,
    pub at_ms: i64,
}

impl Model for Sale {
    const COLLECTION: &'static str = "economy_sales";

    fn indexes() -> Vec<IndexModel> {
        vec![index("prices", doc! {"item": 1, "at_ms": -1})]
    }
}

/// Why a listing closed before it sold out: inserted once its return transaction committed.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Closure {
    #[serde(rename = "_id")]
    pub listing: String,
    /// `cancelled` by the seller, or `expired`.
    pub reason: String,
    pub tx: String,
    pub at_ms: i64,
}

impl Model for Closure {
    const COLLECTION: &'static str = "economy_listing_closures";
}

/// A listing as clients see it.
#[derive(Clone, Debug, Serialize, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ListingView {
    pub id: String,
    pub seller: String,
    pub item: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub instance: Option<String>,
    pub properties: BTreeMap<String, Value>,
    pub currency: String,
    pub unit_price: i64,
    pub listed: i64,
    /// Units that can be bought now.
    pub remaining: i64,
    /// `pending` (being listed), `open`, `soldOut`, `cancelled`, `expired`, or `refused` (the
    /// listing transaction was voided: the items never left the seller).
    pub state: &'static str,
    pub created_ms: i64,
    pub expires_ms: i64,
    /// The escrow account's position: it orders this listing's states.
    #[serde(skip)]
    pub version: i64,
}

impl ListingView {
    /// The listing's state from its transaction's outcome, its escrow's balance and its closure.
    pub async fn read(state: &Shared, listing: &Listing) -> Result<Self> {
        let escrow = listing.escrow();
        let owner = escrow.account().unwrap_or_default();
        let head = state.ledger.head(owner, &listing.asset()).await?;
        Self::with_head(state, listing, head).await
    }

    /// The same, from the escrow head this process remembers when it has one (after its own
    /// write: no read; the version orders it against other replicas' index writes).
    pub async fn remembered(state: &Shared, listing: &Listing) -> Result<Self> {
        let escrow = listing.escrow();
        let owner = escrow.account().unwrap_or_default();
        match state.ledger.remembered_head(owner, &listing.asset()) {
            Some(head) => Self::with_head(state, listing, Some(head)).await,
            None => Self::read(state, listing).await,
        }
    }

    async fn with_head(state: &Shared, listing: &Listing, head: Option<Posting>) -> Result<Self> {
        let decided = decided(state, listing).await?;
        let (balance, version) = head.map_or((Default::default(), 0), |p| (p.balance, p.seq));
        let closure = match (balance.available + balance.reserved, decided) {
            (0, Some(true)) => state.market.closures.get(&listing.id).await?,
            _ => None,
        };
        let now = state.ledger.now_ms();
        let view_state = match (decided, balance.available + balance.reserved, closure) {
            (None, _, _) => "pending",
            (Some(false), _, _) => "refused",
            (_, 0, Some(closure)) if closure.reason == "expired" => "expired",
            (_, 0, Some(_)) => "cancelled",
            (_, 0, None) => "soldOut",
            _ if now >= listing.expires_ms => "expired",
            _ => "open",
        };
        Ok(Self {
            id: listing.id.clone(),
            seller: listing.seller.clone(),
            item: listing.item.clone(),
            instance: listing.instance.clone(),
            properties: listing.properties.clone(),
            currency: listing.currency.clone(),
            unit_price: listing.unit_price,
            listed: listing.amount,
            remaining: match view_state {
                "open" => balance.available,
                _ => 0,
            },
            state: view_state,
            created_ms: listing.created_ms,
            expires_ms: listing.expires_ms,
            version,
        })
    }
}

/// Whether the listing's transaction committed (`None` while undecided). A decision never changes,
/// so once read it is remembered.
pub async fn decided(state: &Shared, listing: &Listing) -> Result<Option<bool>> {
    if let Some(known) = state.market.remembered_decision(&listing.id) {
        return Ok(Some(known));
    }
    let outcome = state.ledger.store().outcomes(&[listing.tx.as_str()]).await?.pop();
    let decided = outcome.map(|outcome| outcome.committed);
    if let Some(committed) = decided {
        state.market.remember_decision(&listing.id, committed);
    }
    Ok(decided)
}
