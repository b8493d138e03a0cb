//! Leases: one replica at a time does a job (migrations, the economy's recovery worker), and a
//! holder that dies loses the lease when it expires.
//!
//! A lease is a [`Sequence`] of epochs, since a conditional update ("take it if expired") is not
//! atomic on FerretDB. Taking, renewing and releasing each append the next epoch (an insert against
//! the unique `_id`), so of two replicas taking over an expired lease at once exactly one succeeds,
//! and a holder whose lease was taken over finds out at its next renewal.

use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::Result;
use crate::model::Model;
use crate::mongo::{Mongo, now_ms};
use crate::sequence::{Append, Entry, Sequence, entry_id, sequence_index};

/// One epoch of a lease: who holds it and until when.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
pub(crate) struct LeaseEpoch {
    #[serde(rename = "_id")]
    id: String,
    key: String,
    seq: i64,
    /// Empty once released.
    holder: String,
    until_ms: i64,
}

impl Model for LeaseEpoch {
    const COLLECTION: &'static str = "flotilla_locks";

    fn indexes() -> Vec<mongodb::IndexModel> {
        vec![sequence_index()]
    }
}

impl Entry for LeaseEpoch {
    fn key(&self) -> &str {
        &self.key
    }

    fn seq(&self) -> i64 {
        self.seq
    }
}

/// Who holds a lease this process could not take, and until when.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HeldBy {
    pub holder: String,
    pub until_ms: i64,
}

pub struct Lease {
    epochs: Sequence<LeaseEpoch>,
    key: String,
    holder: String,
    ttl: Duration,
    /// The epoch this process holds.
    held: Option<i64>,
}

impl Lease {
    /// The lease named `key`, for `holder` (a pod name, so a stuck lease says who holds it).
    pub fn new(mongo: &Mongo, key: impl Into<String>, holder: impl Into<String>, ttl: Duration) -> Self {
        Self {
            epochs: Sequence::new(mongo.store()),
            key: key.into(),
            holder: holder.into(),
            ttl,
            held: None,
        }
    }

    pub async fn ensure_indexes(&self) -> Result<()> {
        self.epochs.store().ensure_indexes().await
    }

    pub fn is_held(&self) -> bool {
        self.held.is_some()
    }

    /// Takes the lease when it is free, expired or this holder's; else says who holds it.
    pub async fn take(&mut self) -> Result<Option<HeldBy>> {
        let now = now_ms();
        let until_ms = now + self.ttl_ms();
        let advanced = self
            .epochs
            .advance(&self.key, self.held.unwrap_or(0), |newest| {
                let free = newest.is_none_or(|lease| {
                    lease.holder.is_empty() || lease.until_ms < now || lease.holder == self.holder
                });
                let next = newest.map_or(1, |lease| lease.seq + 1);
                Ok(free.then(|| self.epoch(next, &self.holder, until_ms)))
            })
            .await?;
        match advanced.head {
            Some(taken) if advanced.appended => {
                self.held = Some(taken.seq);
                Ok(None)
            }
            head => {
                self.held = None;
                Ok(Some(head.map_or(
                    HeldBy {
                        holder: String::new(),
                        until_ms: 0,
                    },
                    |lease| HeldBy {
                        holder: lease.holder,
                        until_ms: lease.until_ms,
                    },
                )))
            }
        }
    }

    /// Extends the lease this process holds; false when it was lost (expired and taken over).
    pub async fn renew(&mut self) -> Result<bool> {
        let Some(epoch) = self.held else { return Ok(false) };
        let next = self.epoch(epoch + 1, &self.holder, now_ms() + self.ttl_ms());
        match self.epochs.append(&next).await? {
            Append::Appended => {
                self.held = Some(next.seq);
                Ok(true)
            }
            Append::Taken => {
                self.held = None;
                Ok(false)
            }
        }
    }

    /// Renews the lease when held, else tries to take it: what a job that runs on one replica at a
    /// time calls before each round. True when this process may run the round.
    pub async fn keep(&mut self) -> Result<bool> {
        if self.renew().await? {
            return Ok(true);
        }
        Ok(self.take().await?.is_none())
    }

    /// Gives the lease up; nothing to do when another replica took it over meanwhile.
    pub async fn release(&mut self) -> Result<()> {
        if let Some(epoch) = self.held.take() {
            self.epochs.append(&self.epoch(epoch + 1, "", 0)).await?;
        }
        Ok(())
    }

    fn epoch(&self, seq: i64, holder: &str, until_ms: i64) -> LeaseEpoch {
        LeaseEpoch {
            id: entry_id(&self.key, seq),
            key: self.key.clone(),
            seq,
            holder: holder.into(),
            until_ms,
        }
    }

    fn ttl_ms(&self) -> i64 {
        i64::try_from(self.ttl.as_millis()).unwrap_or(i64::MAX)
    }
}
