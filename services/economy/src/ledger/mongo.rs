//! The ledger on MongoDB/FerretDB: collections written only by unique inserts (and the review
//! queue's deletes), so the ledger is exact on FerretDB and on a sharded MongoDB alike.

use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};

use flotilla_storage::model::{Model, Store, index, unique_index};
use flotilla_storage::mongo::Mongo;
use flotilla_storage::sequence::sequence_index;
use mongodb::IndexModel;
use mongodb::bson::doc;

use crate::ledger::audit::Books;
use crate::ledger::model::{Finished, Flow, Hold, Outcome, Posting, Review, Transaction};
use crate::ledger::store::{Insert, LedgerStore};
use crate::{Error, Result};

impl Model for Transaction {
    const COLLECTION: &'static str = "economy_transactions";

    fn indexes() -> Vec<IndexModel> {
        vec![
            index("recovery", doc! {"at_ms": 1}),
            index("history", doc! {"players": 1, "at_ms": -1}),
        ]
    }
}

impl Model for Outcome {
    const COLLECTION: &'static str = "economy_outcomes";
}

impl Model for Posting {
    const COLLECTION: &'static str = "economy_postings";

    fn indexes() -> Vec<IndexModel> {
        // The reference is the second unique key: a slot is filled once whatever position it lands at.
        vec![
            unique_index("ref", doc! {"ref": 1}),
            sequence_index(),
            // A player's unique items: their accounts' postings (see `held_instances`).
            index("instances", doc! {"player": 1, "asset": 1, "seq": -1}),
        ]
    }
}

impl Model for Flow {
    const COLLECTION: &'static str = "economy_flows";
}

impl Model for Hold {
    const COLLECTION: &'static str = "economy_holds";

    fn indexes() -> Vec<IndexModel> {
        vec![index("queue", doc! {"at_ms": 1})]
    }
}

impl Model for Finished {
    const COLLECTION: &'static str = "economy_finished";

    fn indexes() -> Vec<IndexModel> {
        vec![index("recovery", doc! {"tx_at_ms": 1})]
    }
}

impl Model for Review {
    const COLLECTION: &'static str = "economy_reviews";
}

#[derive(Clone)]
pub struct MongoLedger {
    pub transactions: Store<Transaction>,
    outcomes: Store<Outcome>,
    postings: Store<Posting>,
    flows: Store<Flow>,
    pub holds: Store<Hold>,
    reviews: Store<Review>,
    finished: Store<Finished>,
    /// Recovery's scan starts here: every transaction before it is finished or a straggler.
    checkpoint: Arc<AtomicI64>,
    stragglers: Arc<tokio::sync::Mutex<Vec<Transaction>>>,
}

impl MongoLedger {
    pub fn new(mongo: &Mongo) -> Self {
        Self {
            transactions: mongo.store(),
            outcomes: mongo.store(),
            postings: mongo.store(),
            flows: mongo.store(),
            holds: mongo.store(),
            reviews: mongo.store(),
            finished: mongo.store(),
            checkpoint: Arc::new(AtomicI64::new(0)),
            stragglers: Arc::default(),
        }
    }

    pub async fn ensure_indexes(&self) -> Result<()> {
        self.transactions.ensure_indexes().await?;
        self.outcomes.ensure_indexes().await?;
        self.postings.ensure_indexes().await?;
        self.flows.ensure_indexes().await?;
        self.holds.ensure_indexes().await?;
        self.reviews.ensure_indexes().await?;
        self.finished.ensure_indexes().await?;
        Ok(())
    }

    /// The outcomes of these transactions (undecided ones are missing).
    pub async fn outcomes(&self, ids: &[&str]) -> Result<Vec<Outcome>> {
        Ok(self.outcomes.get_many(ids).await?)
    }

    /// The newest posting of every instance account `player` holds or has promised
    /// ([`crate::instances`]): the postings of the player's `u:` accounts, newest first in each.
    pub async fn held_instances(&self, player: &str) -> Result<Vec<Posting>> {
        let filter = doc! {"player": player, "asset": {"$gt": "u:", "$lt": "u;"}};
        let postings = self
            .postings
            .find(filter, doc! {"player": 1, "asset": 1, "seq": -1}, 0)
            .await?;
        let mut newest: Vec<Posting> = Vec::new();
        for posting in postings {
            if newest.last().is_none_or(|last| last.key != posting.key) {
                newest.push(posting);
            }
        }
        newest.retain(|posting| posting.balance.available + posting.balance.reserved > 0);
        Ok(newest)
    }

    /// Everything stored, read in the order [`Books`] needs while writers run. Whole collections:
    /// the audit's cost grows with the ledger (see `docs/economy.md`).
    pub async fn books(&self) -> Result<Books> {
        let finished = self.finished.find(doc! {}, doc! {"_id": 1}, 0).await?;
        let postings = self.postings.find(doc! {}, doc! {"_id": 1}, 0).await?;
        let flows = self.flows.find(doc! {}, doc! {"_id": 1}, 0).await?;
        let outcomes = self.outcomes.find(doc! {}, doc! {"_id": 1}, 0).await?;
        let transactions = self.transactions.find(doc! {}, doc! {"_id": 1}, 0).await?;
        Ok(Books {
            finished: finished.into_iter().map(|f| f.tx).collect(),
            postings,
            flows,
            outcomes,
            transactions,
        })
    }
}

fn inserted(result: flotilla_storage::Result<()>) -> Result<Insert> {
    match result {
        Ok(()) => Ok(Insert::Inserted),
        Err(flotilla_storage::Error::Duplicate { .. }) => Ok(Insert::Duplicate),
        Err(error) => Err(Error::Storage(error)),
    }
}

impl LedgerStore for MongoLedger {
    async fn insert_transaction(&self, tx: &Transaction) -> Result<Insert> {
        inserted(self.transactions.insert(tx).await)
    }

    async fn transaction(&self, id: &str) -> Result<Option<Transaction>> {
        Ok(self.transactions.get(id).await?)
    }

    async fn finish(&self, finished: &Finished) -> Result<()> {
        inserted(self.finished.insert(finished).await)?; // a duplicate is this record
        Ok(())
    }

    async fn is_finished(&self, tx: &str) -> Result<bool> {
        Ok(self.finished.get(tx).await?.is_some())
    }

    /// Transactions before `before_ms` without a finished record, oldest first. Each round reads
    /// the transactions after the checkpoint and the finished records of the same time range (two
    /// range reads, compared in memory) and moves the checkpoint past them; transactions found
    /// open are kept as stragglers and checked again each round until they finish (a held one
    /// may wait for days), so no round reads the whole ledger again.
    async fn unfinished(&self, before_ms: i64, limit: usize) -> Result<Vec<Transaction>> {
        const BATCH: i64 = 2_000;
        // A transaction is inserted within moments of its `at_ms`: one older than this margin
        // before `before_ms` is surely visible to the scan.
        const MARGIN_MS: i64 = 60_000;
        let from = self.checkpoint.load(Ordering::Relaxed);
        let range = doc! {"$gte": from, "$lt": before_ms};
        let scanned = self
            .transactions
            .find(doc! {"at_ms": range}, doc! {"at_ms": 1}, BATCH)
            .await?;
        let full = scanned.len() as i64 == BATCH;
        let until = match (scanned.last(), full) {
            (Some(last), true) => last.at_ms,
            _ => before_ms,
        };
        let done: std::collections::HashSet<String> = self
            .finished
            .find(
                doc! {"tx_at_ms": {"$gte": from, "$lt": until}},
                doc! {"_id": 1},
                0,
            )
            .await?
            .into_iter()
            .map(|f| f.tx)
            .collect();
        let mut stragglers = self.stragglers.lock().await;
        let mut open = Vec::new();
        for tx in std::mem::take(&mut *stragglers) {
            if !self.is_finished(&tx.id).await? {
                open.push(tx);
            }
        }
        for tx in scanned
            .into_iter()
            .filter(|tx| tx.at_ms < until && !done.contains(&tx.id))
        {
            if !open.iter().any(|known| known.id == tx.id) {
                open.push(tx);
            }
        }
        open.sort_by_key(|tx| tx.at_ms);
        // Past what was read; not past what might not be visible yet.
        self.checkpoint
            .fetch_max(until.min(before_ms - MARGIN_MS).max(from), Ordering::Relaxed);
        let answer = open.iter().take(limit).cloned().collect();
        *stragglers = open;
        Ok(answer)
    }

    async fn insert_outcome(&self, outcome: &Outcome) -> Result<Insert> {
        inserted(self.outcomes.insert(outcome).await)
    }

    async fn outcome(&self, tx: &str) -> Result<Option<Outcome>> {
        Ok(self.outcomes.get(tx).await?)
    }

    async fn insert_posting(&self, posting: &Posting) -> Result<Insert> {
        inserted(self.postings.insert(posting).await)
    }

    async fn posting(&self, id: &str) -> Result<Option<Posting>> {
        Ok(self.postings.get(id).await?)
    }

    async fn posting_by_ref(&self, reference: &str) -> Result<Option<Posting>> {
        Ok(self.postings.find_one(doc! {"ref": reference}).await?)
    }

    async fn newest_posting(&self, key: &str) -> Result<Option<Posting>> {
        let newest = self.postings.find(doc! {"key": key}, doc! {"seq": -1}, 1).await?;
        Ok(newest.into_iter().next())
    }

    async fn insert_flow(&self, flow: &Flow) -> Result<Insert> {
        inserted(self.flows.insert(flow).await)
    }

    async fn insert_hold(&self, hold: &Hold) -> Result<Insert> {
        inserted(self.holds.insert(hold).await)
    }

    async fn hold(&self, tx: &str) -> Result<Option<Hold>> {
        Ok(self.holds.get(tx).await?)
    }

    async fn delete_hold(&self, tx: &str) -> Result<()> {
        self.holds.delete_one(doc! {"_id": tx}).await?;
        Ok(())
    }

    async fn insert_review(&self, review: &Review) -> Result<Insert> {
        inserted(self.reviews.insert(review).await)
    }

    async fn review(&self, tx: &str) -> Result<Option<Review>> {
        Ok(self.reviews.get(tx).await?)
    }
}
