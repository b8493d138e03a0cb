//! Taking a listing down: the seller cancels it, or it expires and a worker does. Whatever the
//! escrow still holds goes back to the seller.
//!
//! Returns are transactions `close:<listing>#1`, `#2`, …, each created only after the one before
//! it settled, each moving what the escrow has available when it is created. A purchase in flight
//! has its units reserved in the escrow: the return leaves them, and if that purchase is then
//! voided, the next attempt returns them too. Two closers at once (the seller and the worker)
//! create the same attempt, whose request is the same whatever they read, so one drives the
//! other's transaction instead of failing.

use mongodb::bson::doc;

use crate::catalog::{MAX_BALANCE, item_asset};
use crate::instances::instance_asset;
use crate::ledger::model::{Holder, Leg, Transaction};
use crate::ledger::store::LedgerStore;
use crate::market::listings::{Closure, Listing, ListingView};
use crate::market::search::ListingDoc;
use crate::players;
use crate::state::Shared;
use crate::transactions::request_hash;
use crate::{Error, Result};

/// Return attempts one listing may have: each voided one (a purchase reserved meanwhile) or
/// committed one with units left behind by a voided purchase leaves one behind.
const MAX_ATTEMPTS: usize = 100;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Reason {
    Cancelled,
    Expired,
}

impl Reason {
    fn kind(self) -> &'static str {
        match self {
            Reason::Cancelled => "market-cancel",
            Reason::Expired => "market-expire",
        }
    }

    fn name(self) -> &'static str {
        match self {
            Reason::Cancelled => "cancelled",
            Reason::Expired => "expired",
        }
    }
}

/// Returns everything the listing's escrow holds to the seller and records why. Done when the
/// escrow is empty (`true` when this call moved something back); [`Error::Conflict`] while
/// purchases of it are in flight (try again).
pub async fn close(state: &Shared, listing: &Listing, reason: Reason) -> Result<bool> {
    settle_listing(state, listing).await?;
    let ledger = &state.ledger;
    let escrow = listing.escrow();
    let owner = escrow.account().unwrap_or_default();
    let (mut returned, mut moved) = (false, false);
    for attempt in 1..=MAX_ATTEMPTS {
        let id = format!("close:{}#{attempt}", listing.id);
        if let Some(settled) = ledger.settled(&id).await? {
            returned |= settled.outcome.committed;
            continue;
        }
        if let Some(existing) = ledger.store().transaction(&id).await? {
            returned |= ledger.submit(existing).await?.outcome.committed;
            continue;
        }
        let balance = ledger.balance(owner, &listing.asset()).await?;
        if balance.available == 0 && balance.reserved > 0 {
            return Err(Error::Conflict(
                "purchases of this listing are being decided; try again in a moment".into(),
            ));
        }
        if balance.available == 0 {
            if returned {
                let closure = Closure {
                    listing: listing.id.clone(),
                    reason: reason.name().into(),
                    tx: format!("close:{}#{}", listing.id, attempt - 1),
                    at_ms: ledger.now_ms(),
                };
                match state.market.closures.insert(&closure).await {
                    Ok(()) | Err(flotilla_storage::Error::Duplicate { .. }) => {}
                    Err(error) => return Err(error.into()),
                }
            }
            return Ok(moved);
        }
        let tx = Transaction {
            request_hash: request_hash("market-close", id.as_bytes()),
            id,
            kind: reason.kind().into(),
            memo: format!("listing {} {}", listing.id, reason.name()),
            legs: returning(listing, &escrow, balance.available),
            players: vec![listing.seller.clone()],
            at_ms: ledger.now_ms(),
            flag: None,
        };
        let committed = ledger.submit(tx).await?.outcome.committed;
        state.metrics.transaction(reason.kind(), committed);
        returned |= committed;
        moved |= committed;
    }
    Err(Error::Contended {
        key: listing.id.clone(),
        attempts: MAX_ATTEMPTS,
    })
}

/// Drives the listing's own transaction to its outcome first: one still in flight (a crash) could
/// otherwise fill the escrow after it was found empty.
async fn settle_listing(state: &Shared, listing: &Listing) -> Result<()> {
    if state.ledger.settled(&listing.tx).await?.is_some() {
        return Ok(());
    }
    let tx = state
        .ledger
        .store()
        .transaction(&listing.tx)
        .await?
        .ok_or(Error::Conflict("the listing is still being created".into()))?;
    state.ledger.submit(tx).await?;
    Ok(())
}

/// The legs giving `amount` units back from the escrow: the instance and its count for a unique
/// item. Giving back may pass a maximum count the seller reached meanwhile: it is allowed.
fn returning(listing: &Listing, escrow: &Holder, amount: i64) -> Vec<Leg> {
    let seller = Holder::Player(listing.seller.clone());
    let leg = |asset: String| Leg {
        asset,
        amount,
        from: escrow.clone(),
        to: seller.clone(),
        limit: MAX_BALANCE,
        debt: false,
    };
    let mut legs = Vec::new();
    if let Some(instance) = &listing.instance {
        legs.push(leg(instance_asset(&listing.item, instance)));
    }
    legs.push(leg(item_asset(&listing.item)));
    legs
}

/// Writes a listing's current state to the search index. The store is the truth: a failure is
/// logged (and mended by the next change or a reindex), never the request's failure.
pub async fn reindex_one(state: &Shared, listing: &Listing) {
    let written = async {
        let view = ListingView::remembered(state, listing).await?;
        let category = state
            .catalog()
            .item(&listing.item)
            .and_then(|item| item.category.clone());
        state
            .market
            .index
            .put(ListingDoc::new(&view, category), view.version)
            .await
    };
    if let Err(error) = written.await {
        tracing::warn!(listing = %listing.id, %error, "cannot index a listing");
    }
}

/// Closes the listings that expired, oldest first, from `checkpoint` (the expiry before which all
/// are closed). Listings that cannot be closed yet (purchases in flight, a listing held for
/// review) are kept in `stragglers` and tried again each round. Returns how many it closed.
pub async fn expire_due(
    state: &Shared,
    checkpoint: &mut i64,
    stragglers: &mut Vec<Listing>,
) -> Result<usize> {
    const BATCH: i64 = 200;
    let now = state.ledger.now_ms();
    let due = state
        .market
        .listings
        .find(
            doc! {"expires_ms": {"$gte": *checkpoint, "$lte": now}},
            doc! {"expires_ms": 1},
            BATCH,
        )
        .await?;
    let mut closed = 0;
    let mut waiting = Vec::new();
    for listing in std::mem::take(stragglers).into_iter().chain(due) {
        *checkpoint = (*checkpoint).max(listing.expires_ms);
        match close(state, &listing, Reason::Expired).await {
            Ok(moved) => {
                reindex_one(state, &listing).await;
                if moved {
                    let content = serde_json::json!({"listing": listing.id, "item": listing.item});
                    players::notify(state, &listing.seller, "listing-expired", None, content);
                    closed += 1;
                }
            }
            Err(Error::Conflict(_) | Error::Held { .. }) => {
                if !waiting.iter().any(|known: &Listing| known.id == listing.id) {
                    waiting.push(listing);
                }
            }
            Err(error) => {
                *stragglers = waiting;
                return Err(error);
            }
        }
    }
    *stragglers = waiting;
    Ok(closed)
}
