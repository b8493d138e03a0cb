//! Player-to-player trading. Two players put currencies and items on the table; either may change
//! their side, and any change withdraws both acceptances; when both accept the same version, both
//! sides' goods change hands at once. Cancel and expiry give everything back.
//!
//! Each side's goods wait in an escrow account of the trade (`trade:<id>:a`, `:b`) from the moment
//! they are offered, so completing can never fail for want of them. The trade is a sequence of
//! steps (`economy_trade_steps`, one unique insert per position, as an account is a sequence of
//! postings): each step records the action, the state after it, and the ledger legs that make it
//! so; the legs are the transaction `trade:<id>#<step>`. Before a step is appended, the previous
//! step's transaction is driven to its outcome (by whoever gets there first), and the state is the
//! previous step's own or, if its transaction was voided, the one it would have replaced. So every
//! step is decided on an exact state, escrow always holds exactly what the state says, and two
//! players acting at once are ordered by the store. The rules are a pure function ([`state`]).

pub mod routes;
pub mod state;

use flotilla_storage::model::{Model, Store, index};
use flotilla_storage::mongo::Mongo;
use mongodb::IndexModel;
use mongodb::bson::doc;
use serde::{Deserialize, Serialize};

use crate::exchange::{Applied, Decision, Kind, Steps};
use crate::players;
use crate::remembered::Remembered;
use crate::state::Shared;
use crate::trades::state::{Action, Refusal, TradeState, step};
use crate::{Error, Result};

/// A trade between two players: who and until when. Its state is its newest step's.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Trade {
    #[serde(rename = "_id")]
    pub id: String,
    /// The one who opened it, then the other.
    pub parties: [String; 2],
    pub created_ms: i64,
    pub expires_ms: i64,
}

impl Model for Trade {
    const COLLECTION: &'static str = "economy_trades";

    fn indexes() -> Vec<IndexModel> {
        vec![
            index("parties", doc! {"parties": 1, "created_ms": -1}),
            index("expiry", doc! {"expires_ms": 1}),
        ]
    }
}

#[derive(Clone, Debug, PartialEq)]
pub struct TradeKind;

impl Kind for TradeKind {
    type State = TradeState;
    type Action = Action;
    const COLLECTION: &'static str = "economy_trade_steps";
    const PREFIX: &'static str = "trade";

    fn transaction_kind(action: &Action) -> &'static str {
        match action {
            Action::Offer { .. } => "trade-offer",
            Action::Complete => "trade",
            Action::Cancel => "trade-cancel",
            Action::Expire => "trade-expire",
            // Neither moves goods, so neither is ever counted as a transaction.
            Action::Open { .. } | Action::Accept { .. } => "trade-no-transfer",
        }
    }

    fn players(state: &TradeState) -> Vec<String> {
        state.sides.iter().map(|side| side.player.clone()).collect()
    }
}

/// Where trades are kept.
pub struct Trades {
    pub trades: Store<Trade>,
    /// Trades by id, remembered once read (the record never changes; the state is in the steps).
    pub records: Remembered<Trade>,
    steps: Steps<TradeKind>,
}

impl Trades {
    pub fn new(mongo: &Mongo) -> Self {
        Self {
            trades: mongo.store(),
            records: Remembered::new(mongo.store()),
            steps: Steps::new(mongo),
        }
    }

    pub async fn ensure_indexes(&self) -> Result<()> {
        self.trades.ensure_indexes().await?;
        self.steps.ensure_indexes().await
    }
}

/// Records a new trade and its first step; a retry with the same trade finds them.
pub async fn open(state: &Shared, trade: &Trade) -> Result<TradeState> {
    match state.trades.trades.insert(trade).await {
        Ok(()) | Err(flotilla_storage::Error::Duplicate { .. }) => {}
        Err(error) => return Err(error.into()),
    }
    let [a, b] = trade.parties.clone();
    let action = Action::Open { a, b };
    let applied = state
        .trades
        .steps
        .append(state, &trade.id, &trade.parties[0], &action, |current, _| {
            let opened = state::opened(&trade.parties[0], &trade.parties[1]);
            Ok(current.is_none().then(|| Decision {
                state: opened.clone(),
                voided: opened,
                legs: Vec::new(),
            }))
        })
        .await?;
    Ok(applied.state())
}

/// The trade's state now. A trade whose opening request stopped before its first step gets it now.
pub async fn current(state: &Shared, trade: &Trade) -> Result<TradeState> {
    match state.trades.steps.current(state, &trade.id).await? {
        Some((_, now)) => Ok(now),
        None => open(state, trade).await,
    }
}

/// Applies `action` by `by` to the trade and returns the state after it (unchanged when the action
/// changes nothing). When an acceptance completes the pair, the completion is applied too.
pub async fn act(state: &Shared, trade: &Trade, by: &str, action: Action) -> Result<TradeState> {
    if state.trades.steps.latest(state, &trade.id).await?.is_none() {
        open(state, trade).await?; // the first step, if its opening request stopped short
    }
    let after = apply(state, trade, by, &action).await?;
    if matches!(action, Action::Accept { .. }) {
        return apply(state, trade, by, &Action::Complete).await;
    }
    Ok(after)
}

async fn apply(state: &Shared, trade: &Trade, by: &str, action: &Action) -> Result<TradeState> {
    let catalog = state.catalog();
    let limit = |asset: &str| catalog.limit(asset).unwrap_or(0);
    let decide = |current: Option<&TradeState>, seq: i64| {
        let current = current.ok_or(Error::NotFound("trade"))?;
        match step(current, &trade.id, seq, by, action, limit) {
            Ok(next) => Ok(next.map(|next| Decision {
                state: next.state,
                voided: next.voided,
                legs: next.legs,
            })),
            Err(Refusal::NotAParty) => Err(Error::NotFound("trade")),
            Err(Refusal::Closed) => Err(Error::Conflict("the trade is closed".into())),
            Err(Refusal::StaleVersion { current }) => Err(Error::Conflict(format!(
                "the offer changed: the current version is {current}"
            ))),
        }
    };
    match state
        .trades
        .steps
        .append(state, &trade.id, by, action, decide)
        .await?
    {
        // The goods offered are not there: the offer is refused, the table unchanged.
        Applied::Voided(_, reason) if matches!(action, Action::Offer { .. }) => Err(Error::Refused(reason)),
        Applied::Committed(after) => {
            tell(state, trade, by, action, &after);
            Ok(after)
        }
        applied => Ok(applied.state()),
    }
}

/// Tells the parties what a step did: the other party of an offer, a change, an acceptance or a
/// cancel; both of a completion or an expiry.
fn tell(state: &Shared, trade: &Trade, by: &str, action: &Action, after: &TradeState) {
    let event = match action {
        Action::Open { .. } => return, // told by the request that opened it
        Action::Offer { .. } => "trade-changed",
        Action::Accept { .. } => "trade-accepted",
        Action::Cancel => "trade-cancelled",
        Action::Complete => "trade-completed",
        Action::Expire => "trade-expired",
    };
    let content = serde_json::json!({"trade": trade.id, "version": after.version});
    for party in &trade.parties {
        let everyone = matches!(action, Action::Complete | Action::Expire);
        if everyone || party != by {
            players::notify(
                state,
                party,
                event,
                (by != "system").then_some(by),
                content.clone(),
            );
        }
    }
}

/// Expires the trades whose time ran out, oldest first, from `checkpoint` (the expiry before which
/// all are closed). Returns how many it closed.
pub async fn expire_due(state: &Shared, checkpoint: &mut i64) -> Result<usize> {
    let now = state.ledger.now_ms();
    let due = state
        .trades
        .trades
        .find(
            doc! {"expires_ms": {"$gte": *checkpoint, "$lte": now}},
            doc! {"expires_ms": 1},
            200,
        )
        .await?;
    let mut closed = 0;
    for trade in due {
        let before = current(state, &trade).await?;
        let after = act(state, &trade, "system", Action::Expire).await?;
        closed += usize::from(before != after);
        *checkpoint = trade.expires_ms;
    }
    Ok(closed)
}
