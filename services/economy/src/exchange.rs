//! Exchanges that run over time with goods held in escrow — trades, auctions — as sequences of
//! steps, one unique insert per position, as an account is a sequence of postings.
//!
//! Each step records an action, the state if its ledger legs commit, the state if they are voided,
//! and the legs, which are the transaction `<prefix>:<key>#<n>`. Before anyone appends step
//! `n + 1`, step `n`'s transaction is driven to its outcome (by whoever gets there first), and the
//! exchange's state is step `n`'s or, if that transaction was voided, the state it would have
//! replaced. So every step is decided on an exact state, escrow always holds what the state says,
//! and two parties acting at once on different replicas are ordered by the store: the one whose
//! insert loses reads again and decides again. What each exchange allows is a pure function of its
//! own ([`crate::trades::state`], [`crate::auctions::state`]).

use std::marker::PhantomData;

use flotilla_storage::model::{Model, Store};
use flotilla_storage::mongo::Mongo;
use flotilla_storage::sequence::{Append, Entry, Sequence, entry_id, sequence_index};
use mongodb::IndexModel;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use crate::ledger::model::{Leg, Transaction};
use crate::state::Shared;
use crate::transactions::request_hash;
use crate::{Error, Result};

/// One kind of exchange: its state, its actions, where its steps live.
pub trait Kind: Clone + std::fmt::Debug + PartialEq + Send + Sync + Unpin + 'static {
    type State: Clone + PartialEq + Serialize + DeserializeOwned + Send + Sync + Unpin;
    type Action: Clone + Serialize + DeserializeOwned + Send + Sync + Unpin;
    /// The steps' collection.
    const COLLECTION: &'static str;
    /// Transactions are `<PREFIX>:<key>#<n>`.
    const PREFIX: &'static str;

    /// The transaction kind of an action that moves goods (history filters by it).
    fn transaction_kind(action: &Self::Action) -> &'static str;
    /// The players whose history shows the step's transaction.
    fn players(state: &Self::State) -> Vec<String>;
}

/// Step `seq` of exchange `key`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(bound = "")]
pub struct Step<K: Kind> {
    #[serde(rename = "_id")]
    pub id: String,
    pub key: String,
    pub seq: i64,
    pub by: String,
    pub action: K::Action,
    pub state: K::State,
    pub voided: K::State,
    pub legs: Vec<Leg>,
    pub at_ms: i64,
    #[serde(skip)]
    kind: PhantomData<K>,
}

impl<K: Kind> Model for Step<K> {
    const COLLECTION: &'static str = K::COLLECTION;

    fn indexes() -> Vec<IndexModel> {
        vec![sequence_index()]
    }
}

impl<K: Kind> Entry for Step<K> {
    fn key(&self) -> &str {
        &self.key
    }

    fn seq(&self) -> i64 {
        self.seq
    }
}

impl<K: Kind> Step<K> {
    fn transaction(&self) -> Result<Transaction> {
        let kind = K::transaction_kind(&self.action);
        let legs = serde_json::to_vec(&self.legs).map_err(|e| Error::Invariant(e.to_string()))?;
        let mut players = K::players(&self.state);
        players.sort();
        players.dedup();
        Ok(Transaction {
            id: format!("{}:{}#{}", K::PREFIX, self.key, self.seq),
            request_hash: request_hash(kind, &legs),
            kind: kind.into(),
            memo: format!("{} {}", K::PREFIX, self.key),
            legs: self.legs.clone(),
            players,
            at_ms: self.at_ms,
            flag: None,
        })
    }
}

/// What an action does to the state: the state if its legs commit, the state if they are voided.
pub struct Decision<S> {
    pub state: S,
    pub voided: S,
    pub legs: Vec<Leg>,
}

/// What appending an action did.
pub enum Applied<S> {
    /// The action changes nothing: nothing was appended.
    Unchanged(S),
    /// Appended and settled: the state after it.
    Committed(S),
    /// Appended, but its legs were voided (the reason): the state is as before.
    Voided(S, String),
}

impl<S> Applied<S> {
    pub fn state(self) -> S {
        match self {
            Applied::Unchanged(state) | Applied::Committed(state) | Applied::Voided(state, _) => state,
        }
    }
}

/// Appending loses a race at most this often before giving up (each loss means another party
/// acted in between).
const ATTEMPTS: usize = 16;

/// Exchanges whose newest step this process remembers; past this many it starts afresh.
const REMEMBERED: usize = 100_000;

pub struct Steps<K: Kind> {
    sequence: Sequence<Step<K>>,
    /// The newest step seen per exchange, with the state after its transaction was decided. A step
    /// decided on a stale one lands on a position that is taken (positions fill in order), so the
    /// memory saves reads without risking a wrong decision: a miss costs a duplicate insert and a
    /// re-read. On FerretDB every read scans a collection.
    heads: std::sync::Mutex<std::collections::HashMap<String, (i64, K::State)>>,
}

impl<K: Kind> Steps<K> {
    pub fn new(mongo: &Mongo) -> Self {
        let store: Store<Step<K>> = mongo.store();
        Self {
            sequence: Sequence::new(store),
            heads: Default::default(),
        }
    }

    fn remembered(&self, key: &str) -> Option<(i64, K::State)> {
        let heads = self.heads.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        heads.get(key).cloned()
    }

    fn remember(&self, key: &str, seq: i64, state: &K::State) {
        let mut heads = self.heads.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        if heads.len() >= REMEMBERED {
            heads.clear();
        }
        if heads.get(key).is_none_or(|(known, _)| *known < seq) {
            heads.insert(key.to_owned(), (seq, state.clone()));
        }
    }

    fn forget(&self, key: &str) {
        let mut heads = self.heads.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        heads.remove(key);
    }

    /// The state this process last saw, or the current one when it saw none. For decisions whose
    /// staleness the store catches (an append) or that only skip work (a retry's answer).
    pub async fn latest(&self, state: &Shared, key: &str) -> Result<Option<(i64, K::State)>> {
        match self.remembered(key) {
            Some(known) => Ok(Some(known)),
            None => self.current(state, key).await,
        }
    }

    pub async fn ensure_indexes(&self) -> Result<()> {
        Ok(self.sequence.store().ensure_indexes().await?)
    }

    /// The exchange's state now and its newest step's position (`None` before its first step).
    /// Drives the newest step's transaction to its outcome first.
    pub async fn current(&self, state: &Shared, key: &str) -> Result<Option<(i64, K::State)>> {
        let known = self.remembered(key);
        let hint = known.as_ref().map_or(0, |(seq, _)| *seq);
        let Some(head) = self.sequence.head(key, hint).await? else {
            return Ok(None);
        };
        if let Some((seq, known)) = known
            && seq == head.seq
        {
            return Ok(Some((seq, known)));
        }
        let after = settle(state, &head, false).await?.0;
        self.remember(key, head.seq, &after);
        Ok(Some((head.seq, after)))
    }

    /// Appends what `decide` makes of the current state (`None` before the first step) as the
    /// next step by `by`, and settles it. `decide` answers `Ok(None)` for an action that changes
    /// nothing, and an error for one that does not apply.
    pub async fn append(
        &self,
        state: &Shared,
        key: &str,
        by: &str,
        action: &K::Action,
        decide: impl Fn(Option<&K::State>, i64) -> Result<Option<Decision<K::State>>>,
    ) -> Result<Applied<K::State>> {
        let mut fresh = false;
        for _ in 0..ATTEMPTS {
            // The remembered state first; after a lost race, the stored one.
            let current = match fresh {
                false => self.latest(state, key).await?,
                true => self.current(state, key).await?,
            };
            let seq = current.as_ref().map_or(1, |(seq, _)| seq + 1);
            let decided = decide(current.as_ref().map(|(_, s)| s), seq);
            // A refusal or a no-op decided on the remembered state may only mean this process
            // missed another replica's steps: only the stored state may answer one.
            if !fresh && !matches!(decided, Ok(Some(_))) {
                fresh = true;
                continue;
            }
            let Some(decision) = decided? else {
                let unchanged = current.ok_or(Error::NotFound("exchange"))?.1;
                return Ok(Applied::Unchanged(unchanged));
            };
            let step = Step::<K> {
                id: entry_id(key, seq),
                key: key.to_owned(),
                seq,
                by: by.to_owned(),
                action: action.clone(),
                state: decision.state,
                voided: decision.voided,
                legs: decision.legs,
                at_ms: state.ledger.now_ms(),
                kind: PhantomData,
            };
            if self.sequence.append(&step).await? == Append::Appended {
                let (after, voided) = settle(state, &step, true).await?;
                self.remember(key, step.seq, &after);
                if !step.legs.is_empty() {
                    let kind = K::transaction_kind(action);
                    state.metrics.transaction(kind, voided.is_none());
                }
                return Ok(match voided {
                    None => Applied::Committed(after),
                    Some(reason) => Applied::Voided(after, reason),
                });
            }
            self.forget(key);
            fresh = true;
        }
        Err(Error::Contended {
            key: key.to_owned(),
            attempts: ATTEMPTS,
        })
    }

    /// Every step of an exchange, oldest first (a history).
    pub async fn all(&self, key: &str) -> Result<Vec<Step<K>>> {
        let filter = mongodb::bson::doc! {"key": key};
        Ok(self
            .sequence
            .store()
            .find(filter, mongodb::bson::doc! {"seq": 1}, 0)
            .await?)
    }
}

/// The state after `step` once its transaction is decided, and why it was voided if it was.
/// `appended`: this process just appended the step, so it is the transaction's first driver and
/// submits without reading; a step found in the store may be settled already, which is read first.
async fn settle<K: Kind>(
    state: &Shared,
    step: &Step<K>,
    appended: bool,
) -> Result<(K::State, Option<String>)> {
    if step.legs.is_empty() {
        return Ok((step.state.clone(), None));
    }
    let tx = step.transaction()?;
    let found = match appended {
        true => None,
        false => state.ledger.settled(&tx.id).await?,
    };
    let settled = match found {
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
