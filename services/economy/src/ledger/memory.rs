//! An in-memory [`LedgerStore`] for the simulation tier, with the same guarantees FerretDB gives
//! (unique inserts are atomic, nothing else is needed) and injected failures.
//!
//! Every call yields to the scheduler before and after it takes effect, so a seeded scheduler can
//! interleave drivers at every store call and drop one (a crash) either before a write lands or
//! after it landed but before its caller heard. A call may also fail in transport, before or after
//! taking effect (a lost acknowledgement), as a real connection does.

use std::collections::BTreeMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};

use crate::ledger::audit::Books;
use crate::ledger::model::{Finished, Flow, Hold, Outcome, Posting, Review, Transaction};
use crate::ledger::store::{Insert, LedgerStore};
use crate::{Error, Result};

/// SplitMix64: a small seeded generator, so a failing seed replays exactly.
#[derive(Clone, Debug)]
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Self {
        Self(seed)
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// A number in `0..n` (`n` > 0).
    pub fn below(&mut self, n: u64) -> u64 {
        self.next_u64() % n.max(1)
    }

    /// True with probability `per_mille` / 1000.
    pub fn chance(&mut self, per_mille: u64) -> bool {
        self.below(1000) < per_mille
    }
}

#[derive(Default)]
struct State {
    transactions: BTreeMap<String, Transaction>,
    outcomes: BTreeMap<String, Outcome>,
    postings: BTreeMap<String, Posting>,
    references: BTreeMap<String, String>,
    flows: BTreeMap<String, Flow>,
    holds: BTreeMap<String, Hold>,
    reviews: BTreeMap<String, Review>,
    finished: BTreeMap<String, Finished>,
}

/// The store, shared by the drivers of one simulation.
#[derive(Clone)]
pub struct MemoryStore {
    state: Arc<Mutex<State>>,
    faults: Arc<Mutex<Faults>>,
}

struct Faults {
    rng: Rng,
    /// Chance per call, per mille, of failing in transport before and after taking effect.
    per_mille: u64,
}

impl MemoryStore {
    /// A store whose calls fail in transport with `fault_per_mille` / 1000 chance each way.
    pub fn new(seed: u64, fault_per_mille: u64) -> Self {
        Self {
            state: Arc::default(),
            faults: Arc::new(Mutex::new(Faults {
                rng: Rng::new(seed),
                per_mille: fault_per_mille,
            })),
        }
    }

    /// From now on, calls never fail (recovery at the end of a simulation).
    pub fn heal(&self) {
        lock(&self.faults).per_mille = 0;
    }

    /// The transactions waiting for review.
    pub fn holds(&self) -> Vec<String> {
        lock(&self.state).holds.keys().cloned().collect()
    }

    /// Everything stored, for the auditor.
    pub fn books(&self) -> Books {
        let state = lock(&self.state);
        Books {
            finished: state.finished.keys().cloned().collect(),
            postings: state.postings.values().cloned().collect(),
            flows: state.flows.values().cloned().collect(),
            outcomes: state.outcomes.values().cloned().collect(),
            transactions: state.transactions.values().cloned().collect(),
        }
    }

    /// One store call: yield, maybe fail before, take effect, yield, maybe fail after.
    async fn call<T>(&self, effect: impl FnOnce(&mut State) -> T) -> Result<T> {
        Yield::default().await;
        if self.fails() {
            return Err(Error::Unavailable("injected failure before the call".into()));
        }
        let result = effect(&mut lock(&self.state));
        Yield::default().await;
        if self.fails() {
            return Err(Error::Unavailable("injected failure after the call".into()));
        }
        Ok(result)
    }

    fn fails(&self) -> bool {
        let mut faults = lock(&self.faults);
        let per_mille = faults.per_mille;
        per_mille > 0 && faults.rng.chance(per_mille)
    }
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// Returns `Pending` once, so the scheduler decides who runs next.
#[derive(Default)]
struct Yield {
    yielded: bool,
}

impl Future for Yield {
    type Output = ();

    fn poll(mut self: Pin<&mut Self>, context: &mut Context<'_>) -> Poll<()> {
        if self.yielded {
            return Poll::Ready(());
        }
        self.yielded = true;
        context.waker().wake_by_ref();
        Poll::Pending
    }
}

fn insert<T>(map: &mut BTreeMap<String, T>, id: &str, value: &T) -> Insert
where
    T: Clone,
{
    if map.contains_key(id) {
        return Insert::Duplicate;
    }
    map.insert(id.to_owned(), value.clone());
    Insert::Inserted
}

impl LedgerStore for MemoryStore {
    async fn insert_transaction(&self, tx: &Transaction) -> Result<Insert> {
        self.call(|state| insert(&mut state.transactions, &tx.id, tx))
            .await
    }

    async fn transaction(&self, id: &str) -> Result<Option<Transaction>> {
        self.call(|state| state.transactions.get(id).cloned()).await
    }

    async fn finish(&self, finished: &Finished) -> Result<()> {
        self.call(|state| {
            insert(&mut state.finished, &finished.tx, finished);
        })
        .await
    }

    async fn is_finished(&self, tx: &str) -> Result<bool> {
        self.call(|state| state.finished.contains_key(tx)).await
    }

    async fn unfinished(&self, before_ms: i64, limit: usize) -> Result<Vec<Transaction>> {
        self.call(|state| {
            let mut open: Vec<Transaction> = state
                .transactions
                .values()
                .filter(|tx| !state.finished.contains_key(&tx.id) && tx.at_ms < before_ms)
                .cloned()
                .collect();
            open.sort_by_key(|tx| tx.at_ms);
            open.truncate(limit);
            open
        })
        .await
    }

    async fn insert_outcome(&self, outcome: &Outcome) -> Result<Insert> {
        self.call(|state| insert(&mut state.outcomes, &outcome.tx, outcome))
            .await
    }

    async fn outcome(&self, tx: &str) -> Result<Option<Outcome>> {
        self.call(|state| state.outcomes.get(tx).cloned()).await
    }

    async fn insert_posting(&self, posting: &Posting) -> Result<Insert> {
        self.call(|state| {
            if state.references.contains_key(&posting.reference) || state.postings.contains_key(&posting.id) {
                return Insert::Duplicate;
            }
            state
                .references
                .insert(posting.reference.clone(), posting.id.clone());
            state.postings.insert(posting.id.clone(), posting.clone());
            Insert::Inserted
        })
        .await
    }

    async fn posting(&self, id: &str) -> Result<Option<Posting>> {
        self.call(|state| state.postings.get(id).cloned()).await
    }

    async fn posting_by_ref(&self, reference: &str) -> Result<Option<Posting>> {
        self.call(|state| {
            let id = state.references.get(reference)?;
            state.postings.get(id).cloned()
        })
        .await
    }

    async fn newest_posting(&self, key: &str) -> Result<Option<Posting>> {
        self.call(|state| {
            state
                .postings
                .values()
                .filter(|posting| posting.key == key)
                .max_by_key(|posting| posting.seq)
                .cloned()
        })
        .await
    }

    async fn insert_flow(&self, flow: &Flow) -> Result<Insert> {
        self.call(|state| insert(&mut state.flows, &flow.reference, flow))
            .await
    }

    async fn insert_hold(&self, hold: &Hold) -> Result<Insert> {
        self.call(|state| insert(&mut state.holds, &hold.tx, hold)).await
    }

    async fn hold(&self, tx: &str) -> Result<Option<Hold>> {
        self.call(|state| state.holds.get(tx).cloned()).await
    }

    async fn delete_hold(&self, tx: &str) -> Result<()> {
        self.call(|state| {
            state.holds.remove(tx);
        })
        .await
    }

    async fn insert_review(&self, review: &Review) -> Result<Insert> {
        self.call(|state| insert(&mut state.reviews, &review.tx, review))
            .await
    }

    async fn review(&self, tx: &str) -> Result<Option<Review>> {
        self.call(|state| state.reviews.get(tx).cloned()).await
    }
}
