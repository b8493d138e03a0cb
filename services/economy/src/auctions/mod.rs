//! The auction house. A seller puts up a lot (a stack, or an instance of a unique item) with a
//! start price, optionally a reserve and a buyout price, a duration and a bid increment; the
//! catalog sets the listing fee, the sale fee and anti-sniping (a bid near the end pushes it back,
//! up to a cap). A bid names the version of the auction it saw; its amount moves into the
//! auction's bid escrow at once and the bid it beats goes back to its bidder in the same
//! transaction. At the end (or at a buyout) settlement moves the lot to the winner and the price
//! less the fee to the seller, exactly once; without bids, or below the reserve, everything goes
//! back.
//!
//! An auction is an [`exchange`](crate::exchange): a sequence of steps (`economy_auction_steps`)
//! whose legs are the transactions `auction:<id>#<step>`, each decided on the exact state the one
//! before left; its lot waits in the escrow `auction:<id>:lot` and the top bid in
//! `auction:<id>:bid`. Settling is a step like any other, so the worker that settles ended
//! auctions, a buyer's buyout and a retry all settle once. The rules are a pure function
//! ([`state`]).

pub mod routes;
pub mod state;

use flotilla_storage::model::{Model, Store, index};
use flotilla_storage::mongo::Mongo;
use mongodb::IndexModel;
use mongodb::bson::doc;
use serde::{Deserialize, Serialize};
use serde_json::json;

use crate::auctions::state::{Action, AuctionState, Refusal, step};
use crate::exchange::{Applied, Decision, Kind, Step, Steps};
use crate::players;
use crate::remembered::Remembered;
use crate::state::Shared;
use crate::{Error, Result};

/// An auction's record: who sells what, and when it was meant to end. Its state is its newest
/// step's.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Auction {
    #[serde(rename = "_id")]
    pub id: String,
    pub seller: String,
    pub item: String,
    pub created_ms: i64,
    /// The end before any extension: the settlement worker looks from here.
    pub ends_ms: i64,
}

impl Model for Auction {
    const COLLECTION: &'static str = "economy_auctions";

    fn indexes() -> Vec<IndexModel> {
        vec![
            index("created", doc! {"created_ms": -1}),
            index("item", doc! {"item": 1, "created_ms": -1}),
            index("seller", doc! {"seller": 1, "created_ms": -1}),
            index("ends", doc! {"ends_ms": 1}),
        ]
    }
}

#[derive(Clone, Debug, PartialEq)]
pub struct AuctionKind;

impl Kind for AuctionKind {
    type State = AuctionState;
    type Action = Action;
    const COLLECTION: &'static str = "economy_auction_steps";
    const PREFIX: &'static str = "auction";

    fn transaction_kind(action: &Action) -> &'static str {
        match action {
            Action::Create { .. } => "auction-create",
            Action::Bid { .. } => "auction-bid",
            Action::Settle => "auction-settle",
        }
    }

    fn players(state: &AuctionState) -> Vec<String> {
        let mut players = vec![state.terms.seller.clone()];
        players.extend(state.top.iter().map(|top| top.bidder.clone()));
        players
    }
}

pub struct Auctions {
    pub auctions: Store<Auction>,
    /// Auctions by id, remembered once read (the record never changes; the state is in the steps).
    pub records: Remembered<Auction>,
    steps: Steps<AuctionKind>,
}

impl Auctions {
    pub fn new(mongo: &Mongo) -> Self {
        Self {
            auctions: mongo.store(),
            records: Remembered::new(mongo.store()),
            steps: Steps::new(mongo),
        }
    }

    pub async fn ensure_indexes(&self) -> Result<()> {
        self.auctions.ensure_indexes().await?;
        self.steps.ensure_indexes().await
    }
}

/// The auction's state now; `None` while its first step is not written (a creation still in
/// flight, which its retry completes).
pub async fn current(state: &Shared, auction: &Auction) -> Result<Option<AuctionState>> {
    let now = state.auctions.steps.current(state, &auction.id).await?;
    Ok(now.map(|(_, now)| now))
}

/// The auction's state as this process last saw it (exact when it saw none).
pub async fn latest(state: &Shared, auction: &Auction) -> Result<Option<AuctionState>> {
    let known = state.auctions.steps.latest(state, &auction.id).await?;
    Ok(known.map(|(_, known)| known))
}

/// Applies `action` by `by`: appends it as the next step and settles it. A bid that reaches the
/// buyout price settles the auction at once.
pub async fn act(
    state: &Shared,
    auction: &Auction,
    by: &str,
    action: Action,
) -> Result<Applied<AuctionState>> {
    let applied = apply(state, auction, by, &action).await?;
    if let Applied::Committed(after) = &applied
        && matches!(action, Action::Bid { .. })
        && after.terms.buyout_price.is_some()
        && after.top.as_ref().map(|top| top.amount) == after.terms.buyout_price
    {
        apply(state, auction, by, &Action::Settle).await?;
        let settled = current(state, auction).await?.ok_or(Error::NotFound("auction"))?;
        return Ok(Applied::Committed(settled));
    }
    Ok(applied)
}

async fn apply(
    state: &Shared,
    auction: &Auction,
    by: &str,
    action: &Action,
) -> Result<Applied<AuctionState>> {
    let catalog = state.catalog();
    let limit = |asset: &str| catalog.limit(asset).unwrap_or(0);
    let now = state.ledger.now_ms();
    // The top bid the applied step was decided on: its bidder is told they were outbid.
    let beaten = std::sync::Mutex::new(None);
    let decide = |current: Option<&AuctionState>, seq: i64| {
        *beaten.lock().unwrap_or_else(|poisoned| poisoned.into_inner()) =
            current.and_then(|current| current.top.clone());
        match step(current, &auction.id, seq, by, action, now, limit) {
            Ok(next) => Ok(next.map(|next| Decision {
                state: next.state,
                voided: next.voided,
                legs: next.legs,
            })),
            Err(refusal) => Err(refused(refusal)),
        }
    };
    let applied = state
        .auctions
        .steps
        .append(state, &auction.id, by, action, decide)
        .await?;
    if let Applied::Committed(after) = &applied {
        let beaten = beaten
            .into_inner()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        tell(state, auction, action, after, beaten);
    }
    Ok(applied)
}

/// Counts a sale and tells the players what a committed step did to them.
fn tell(
    state: &Shared,
    auction: &Auction,
    action: &Action,
    after: &AuctionState,
    beaten: Option<state::Bid>,
) {
    let seller = &after.terms.seller;
    let top = after.top.as_ref();
    match (action, &after.status) {
        (Action::Settle, state::Status::Sold { winner, price }) => {
            state.metrics.sale("auction", &after.terms.currency, *price);
            let content = json!({"auction": auction.id, "item": auction.item, "price": price});
            players::notify(state, winner, "auction-won", Some(seller), content.clone());
            players::notify(state, seller, "auction-sold", Some(winner), content);
        }
        (Action::Settle, state::Status::Unsold { reason }) => {
            let content = json!({"auction": auction.id, "item": auction.item, "reason": reason});
            players::notify(state, seller, "auction-unsold", None, content);
        }
        (Action::Bid { .. }, _) => {
            if let (Some(beaten), Some(top)) = (beaten, top) {
                let content = json!({"auction": auction.id, "item": auction.item, "topBid": top.amount});
                players::notify(state, &beaten.bidder, "outbid", Some(&top.bidder), content);
            }
        }
        _ => {}
    }
}

fn refused(refusal: Refusal) -> Error {
    match refusal {
        Refusal::Closed => Error::Conflict("the auction is closed".into()),
        Refusal::Ended => Error::Refused("the auction has ended".into()),
        Refusal::NotEnded => Error::Conflict("the auction has not ended".into()),
        Refusal::OwnAuction => Error::bad("auction", "you cannot bid on your own auction"),
        Refusal::AlreadyTop => Error::Refused("yours is already the top bid".into()),
        Refusal::TooLow { minimum } => Error::Refused(format!("the least you can bid is {minimum}")),
        Refusal::StaleVersion { current, minimum } => Error::Conflict(format!(
            "there were bids since: the current version is {current}, the least you can bid is {minimum}"
        )),
    }
}

/// The auction's bids that went through, newest first.
pub async fn bids(state: &Shared, auction: &Auction) -> Result<Vec<state::Bid>> {
    let steps: Vec<Step<AuctionKind>> = state.auctions.steps.all(&auction.id).await?;
    let placed: Vec<&Step<AuctionKind>> = steps
        .iter()
        .filter(|step| matches!(step.action, Action::Bid { .. }))
        .collect();
    let ids: Vec<String> = placed
        .iter()
        .map(|step| format!("auction:{}#{}", step.key, step.seq))
        .collect();
    let ids: Vec<&str> = ids.iter().map(String::as_str).collect();
    let committed: std::collections::HashSet<String> = state
        .ledger
        .store()
        .outcomes(&ids)
        .await?
        .into_iter()
        .filter(|outcome| outcome.committed)
        .map(|outcome| outcome.tx)
        .collect();
    let mut bids: Vec<state::Bid> = placed
        .into_iter()
        .filter(|step| committed.contains(&format!("auction:{}#{}", step.key, step.seq)))
        .filter_map(|step| step.state.top.clone())
        .collect();
    bids.reverse();
    Ok(bids)
}

/// Settles the auctions that ended, from `checkpoint` (the original end before which all are
/// settled). Auctions whose end bids pushed back are kept in `stragglers` and tried each round.
/// Returns how many it settled.
pub async fn settle_due(
    state: &Shared,
    checkpoint: &mut i64,
    stragglers: &mut Vec<Auction>,
) -> Result<usize> {
    let now = state.ledger.now_ms();
    let due = state
        .auctions
        .auctions
        .find(
            doc! {"ends_ms": {"$gte": *checkpoint, "$lte": now}},
            doc! {"ends_ms": 1},
            200,
        )
        .await?;
    let mut settled = 0;
    let mut waiting: Vec<Auction> = Vec::new();
    for auction in std::mem::take(stragglers).into_iter().chain(due) {
        *checkpoint = (*checkpoint).max(auction.ends_ms);
        if current(state, &auction).await?.is_none() {
            continue; // never created: nothing moved, nothing to settle
        }
        match act(state, &auction, "system", Action::Settle).await {
            Ok(Applied::Committed(_)) => settled += 1,
            Ok(_) => {}
            // Extended by late bids: next round.
            Err(Error::Conflict(_)) => {
                if !waiting.iter().any(|known| known.id == auction.id) {
                    waiting.push(auction);
                }
            }
            Err(error) => {
                *stragglers = waiting;
                return Err(error);
            }
        }
    }
    *stragglers = waiting;
    Ok(settled)
}
