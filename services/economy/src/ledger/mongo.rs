//! The ledger on MongoDB/FerretDB: four collections, written only by unique inserts (and the
//! `finished` flag), so the ledger is exact on FerretDB and on a sharded MongoDB alike.

use flotilla_storage::model::{Model, Store, index, unique_index};
use flotilla_storage::mongo::Mongo;
use flotilla_storage::sequence::sequence_index;
use mongodb::IndexModel;
use mongodb::bson::doc;

use crate::ledger::audit::Books;
use crate::ledger::model::{Flow, Hold, Outcome, Posting, Review, Transaction};
use crate::ledger::store::{Insert, LedgerStore};
use crate::{Error, Result};

impl Model for Transaction {
    const COLLECTION: &'static str = "economy_transactions";

    fn indexes() -> Vec<IndexModel> {
        vec![
            index("unfinished", doc! {"finished": 1, "at_ms": 1}),
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
        vec![unique_index("ref", doc! {"ref": 1}), sequence_index()]
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
        }
    }

    pub async fn ensure_indexes(&self) -> Result<()> {
        self.transactions.ensure_indexes().await?;
        self.outcomes.ensure_indexes().await?;
        self.postings.ensure_indexes().await?;
        self.flows.ensure_indexes().await?;
        self.holds.ensure_indexes().await?;
        self.reviews.ensure_indexes().await?;
        Ok(())
    }

    /// The outcomes of these transactions (undecided ones are missing).
    pub async fn outcomes(&self, ids: &[&str]) -> Result<Vec<Outcome>> {
        Ok(self.outcomes.get_many(ids).await?)
    }

    /// Everything stored, read in the order [`Books`] needs while writers run. Whole collections:
    /// the audit's cost grows with the ledger (see `docs/economy.md`).
    pub async fn books(&self) -> Result<Books> {
        let finished = self
            .transactions
            .find(doc! {"finished": true}, doc! {"_id": 1}, 0)
            .await?;
        let postings = self.postings.find(doc! {}, doc! {"_id": 1}, 0).await?;
        let flows = self.flows.find(doc! {}, doc! {"_id": 1}, 0).await?;
        let outcomes = self.outcomes.find(doc! {}, doc! {"_id": 1}, 0).await?;
        let transactions = self.transactions.find(doc! {}, doc! {"_id": 1}, 0).await?;
        Ok(Books {
            finished: finished.into_iter().map(|tx| tx.id).collect(),
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

    async fn mark_finished(&self, id: &str) -> Result<()> {
        // The only field of a ledger document that changes, and only from false to true: a
        // last-writer-wins set is exact here.
        self.transactions.set(id, doc! {"finished": true}).await?;
        Ok(())
    }

    async fn unfinished(&self, before_ms: i64, limit: usize) -> Result<Vec<Transaction>> {
        let filter = doc! {"finished": false, "at_ms": {"$lt": before_ms}};
        Ok(self
            .transactions
            .find(filter, doc! {"at_ms": 1}, limit as i64)
            .await?)
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
