//! The store calls the ledger makes, and nothing more: inserts against unique keys, point reads,
//! and the one flag that goes from false to true. Two implementations: [`crate::ledger::mongo`] on
//! MongoDB/FerretDB, and [`crate::ledger::memory`] for the simulation tier, which injects failures
//! and interleaves concurrent drivers under a seeded scheduler.

use std::future::Future;

use crate::Result;
use crate::ledger::model::{Finished, Flow, Hold, Outcome, Posting, Review, Transaction};

/// What an insert against a unique key did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Insert {
    Inserted,
    /// A document with the same `_id` or unique reference exists.
    Duplicate,
}

pub trait LedgerStore: Send + Sync {
    fn insert_transaction(&self, tx: &Transaction) -> impl Future<Output = Result<Insert>> + Send;
    fn transaction(&self, id: &str) -> impl Future<Output = Result<Option<Transaction>>> + Send;
    /// Records that a transaction is finished; recording it twice is recording it once.
    fn finish(&self, finished: &Finished) -> impl Future<Output = Result<()>> + Send;
    fn is_finished(&self, tx: &str) -> impl Future<Output = Result<bool>> + Send;
    /// Unfinished transactions created before `before_ms`, oldest first.
    fn unfinished(
        &self,
        before_ms: i64,
        limit: usize,
    ) -> impl Future<Output = Result<Vec<Transaction>>> + Send;

    fn insert_outcome(&self, outcome: &Outcome) -> impl Future<Output = Result<Insert>> + Send;
    fn outcome(&self, tx: &str) -> impl Future<Output = Result<Option<Outcome>>> + Send;

    /// Inserts against both the posting's `_id` (account and position) and its unique reference.
    fn insert_posting(&self, posting: &Posting) -> impl Future<Output = Result<Insert>> + Send;
    fn posting(&self, id: &str) -> impl Future<Output = Result<Option<Posting>>> + Send;
    /// The posting filling a slot. Off the common path: used when a slot turned out to be filled
    /// by another driver.
    fn posting_by_ref(&self, reference: &str) -> impl Future<Output = Result<Option<Posting>>> + Send;
    /// An account's newest posting by index, for an account this process has no head for.
    fn newest_posting(&self, key: &str) -> impl Future<Output = Result<Option<Posting>>> + Send;

    fn insert_flow(&self, flow: &Flow) -> impl Future<Output = Result<Insert>> + Send;

    /// The review queue: held transactions, oldest first.
    fn insert_hold(&self, hold: &Hold) -> impl Future<Output = Result<Insert>> + Send;
    fn hold(&self, tx: &str) -> impl Future<Output = Result<Option<Hold>>> + Send;
    fn delete_hold(&self, tx: &str) -> impl Future<Output = Result<()>> + Send;
    fn insert_review(&self, review: &Review) -> impl Future<Output = Result<Insert>> + Send;
    fn review(&self, tx: &str) -> impl Future<Output = Result<Option<Review>>> + Send;
}
