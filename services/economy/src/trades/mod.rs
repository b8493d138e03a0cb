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
use flotilla_storage::sequence::{Append, Entry, Sequence, entry_id, sequence_index};
use mongodb::IndexModel;
use mongodb::bson::doc;
use serde::{Deserialize, Serialize};

use crate::ledger::model::{Leg, Transaction};
use crate::state::Shared;
use crate::trades::state::{Action, Refusal, TradeState, step};
use crate::transactions::request_hash;
use crate::{Error, Result};

/// A trade between two players: who and until when. Its state is its newest [`TradeStep`].
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

/// Step `seq` of a trade: the action, the state if its legs commit, the state if they are voided.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct TradeStep {
    #[serde(rename = "_id")]
    pub id: String,
    /// The trade's id.
    pub key: String,
    pub seq: i64,
    pub by: String,
    pub action: Action,
    pub state: TradeState,
    pub voided: TradeState,
    pub legs: Vec<Leg>,
    pub at_ms: i64,
}

impl Model for TradeStep {
    const COLLECTION: &'static str = "economy_trade_steps";

    fn indexes() -> Vec<IndexModel> {
        vec![sequence_index()]
    }
}

impl Entry for TradeStep {
    fn key(&self) -> &str {
        &self.key
    }

    fn seq(&self) -> i64 {
        self.seq
    }
}

impl TradeStep {
    /// The ledger transaction of this step's legs.
    fn transaction(&self) -> Result<Transaction> {
        let kind = match self.action {
            Action::Offer { .. } => "trade-offer",
            Action::Complete => "trade",
            Action::Cancel => "trade-cancel",
            Action::Expire => "trade-expire",
            Action::Open { .. } | Action::Accept { .. } => {
                return Err(Error::Invariant(format!("{} moves nothing", self.id)));
            }
        };
        let legs = serde_json::to_vec(&self.legs).map_err(|e| Error::Invariant(e.to_string()))?;
        let mut players: Vec<String> = self.state.sides.iter().map(|s| s.player.clone()).collect();
        players.sort();
        Ok(Transaction {
            id: format!("trade:{}#{}", self.key, self.seq),
            request_hash: request_hash(kind, &legs),
            kind: kind.into(),
            memo: format!("trade {}", self.key),
            legs: self.legs.clone(),
            players,
            at_ms: self.at_ms,
            flag: None,
        })
    }
}

/// Where trades are kept.
pub struct Trades {
    pub trades: Store<Trade>,
    steps: Sequence<TradeStep>,
}

/// Appending a step loses a race at most this often before giving up (each loss means the other
/// party acted in between).
const ATTEMPTS: usize = 16;

impl Trades {
    pub fn new(mongo: &Mongo) -> Self {
        Self {
            trades: mongo.store(),
            steps: Sequence::new(mongo.store()),
        }
    }

    pub async fn ensure_indexes(&self) -> Result<()> {
        self.trades.ensure_indexes().await?;
        self.steps.store().ensure_indexes().await?;
        Ok(())
    }

    /// Records a new trade and its first step; a retry with the same trade finds them.
    pub async fn open(&self, trade: &Trade) -> Result<()> {
        match self.trades.insert(trade).await {
            Ok(()) | Err(flotilla_storage::Error::Duplicate { .. }) => {}
            Err(error) => return Err(error.into()),
        }
        let state = state::opened(&trade.parties[0], &trade.parties[1]);
        let first = TradeStep {
            id: entry_id(&trade.id, 1),
            key: trade.id.clone(),
            seq: 1,
            by: trade.parties[0].clone(),
            action: Action::Open {
                a: trade.parties[0].clone(),
                b: trade.parties[1].clone(),
            },
            voided: state.clone(),
            state,
            legs: Vec::new(),
            at_ms: trade.created_ms,
        };
        self.steps.append(&first).await?; // taken: by this trade's own first step
        Ok(())
    }
}

/// The trade's state now, and its newest step's position. Drives the newest step's transaction to
/// its outcome first.
pub async fn current(state: &Shared, trade: &Trade) -> Result<(i64, TradeState)> {
    let steps = &state.trades.steps;
    let head = match steps.head(&trade.id, 0).await? {
        Some(head) => head,
        None => {
            // Opened by a request that stopped before its first step: write it now.
            state.trades.open(trade).await?;
            steps
                .head(&trade.id, 1)
                .await?
                .ok_or_else(|| Error::Unavailable("the trade's first step vanished".into()))?
        }
    };
    Ok((head.seq, settle(state, &head).await?.0))
}

/// The state after `step` once its transaction is decided, and why it was voided if it was.
async fn settle(state: &Shared, step: &TradeStep) -> Result<(TradeState, Option<String>)> {
    if step.legs.is_empty() {
        return Ok((step.state.clone(), None));
    }
    let tx = step.transaction()?;
    let settled = match state.ledger.settled(&tx.id).await? {
        Some(settled) => settled,
        None => state.ledger.submit(tx).await?,
    };
    Ok(match settled.outcome.committed {
        true => (step.state.clone(), None),
        false => (
            step.voided.clone(),
            Some(settled.outcome.reason.unwrap_or_else(|| "voided".into())),
        ),
    })
}

/// Applies `action` by `by` to the trade: appends it as the next step and settles it. Returns the
/// state after it (unchanged when the action changes nothing). When an acceptance completes the
/// pair, the completion is appended and settled too.
pub async fn act(state: &Shared, trade: &Trade, by: &str, action: Action) -> Result<TradeState> {
    let after = append(state, trade, by, &action).await?;
    if matches!(action, Action::Accept { .. }) {
        return append(state, trade, by, &Action::Complete).await;
    }
    Ok(after)
}

async fn append(state: &Shared, trade: &Trade, by: &str, action: &Action) -> Result<TradeState> {
    for _ in 0..ATTEMPTS {
        let (seq, current) = current(state, trade).await?;
        let catalog = state.catalog();
        let limit = |asset: &str| catalog.limit(asset).unwrap_or(0);
        let next = match step(&current, &trade.id, seq + 1, by, action, limit) {
            Ok(Some(next)) => next,
            Ok(None) => return Ok(current),
            Err(Refusal::NotAParty) => return Err(Error::NotFound("trade")),
            Err(Refusal::Closed) => return Err(Error::Conflict("the trade is closed".into())),
            Err(Refusal::StaleVersion { current }) => {
                return Err(Error::Conflict(format!(
                    "the offer changed: the current version is {current}"
                )));
            }
        };
        let step = TradeStep {
            id: entry_id(&trade.id, seq + 1),
            key: trade.id.clone(),
            seq: seq + 1,
            by: by.to_owned(),
            action: action.clone(),
            state: next.state,
            voided: next.voided,
            legs: next.legs,
            at_ms: state.ledger.now_ms(),
        };
        if state.trades.steps.append(&step).await? == Append::Appended {
            return match (settle(state, &step).await?, action) {
                // The goods offered are not there: the offer is refused, the table unchanged.
                ((_, Some(reason)), Action::Offer { .. }) => Err(Error::Refused(reason)),
                ((after, _), _) => Ok(after),
            };
        }
    }
    Err(Error::Contended {
        key: trade.id.clone(),
        attempts: ATTEMPTS,
    })
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
        let before = current(state, &trade).await?.1;
        let after = act(state, &trade, "system", Action::Expire).await?;
        closed += usize::from(before != after);
        *checkpoint = trade.expires_ms;
    }
    Ok(closed)
}
