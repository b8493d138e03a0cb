//! Versioned schema migrations, recorded in the database and run in order.
//!
//! Every replica may run [`Migrator::run`] at start-up: a lease serialises them, so when two start at
//! once one applies the migrations while the other waits, then finds nothing left to do. A holder that
//! dies mid-run loses the lease when it expires. The lease is a [`Sequence`] of epochs, since a
//! conditional update ("take it if expired") is not atomic on FerretDB. Each migration must itself be idempotent
//! (creating an index that exists is a no-op), because a holder can die after applying one and before
//! recording it.

use std::future::Future;
use std::pin::Pin;
use std::time::Duration;

use futures::TryStreamExt;
use mongodb::Database;
use mongodb::bson::doc;
use serde::{Deserialize, Serialize};

use crate::model::Model;
use crate::mongo::{Mongo, now_ms, retry};
use crate::sequence::{Append, Entry, Sequence, entry_id, sequence_index};
use crate::{Error, Result};

pub type MigrationFuture = Pin<Box<dyn Future<Output = Result<()>> + Send>>;

pub struct Migration {
    pub version: u32,
    pub name: &'static str,
    pub run: fn(Mongo) -> MigrationFuture,
}

#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
pub struct AppliedMigration {
    #[serde(rename = "_id")]
    pub version: u32,
    pub name: String,
    pub applied_ms: i64,
}

/// One epoch of the migration lease: who holds it and until when. Taking, renewing and releasing the
/// lease each append the next epoch (an insert against the unique `_id`, atomic on every store), so of
/// two replicas taking over an expired lease at once exactly one succeeds, and a holder whose lease was
/// taken over finds out at its next renewal.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
struct LeaseEpoch {
    #[serde(rename = "_id")]
    id: String,
    key: String,
    seq: i64,
    /// Empty once released.
    holder: String,
    until_ms: i64,
}

impl Model for LeaseEpoch {
    const COLLECTION: &'static str = LOCKS;

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

const MIGRATIONS: &str = "flotilla_migrations";
const LOCKS: &str = "flotilla_locks";
const LOCK_KEY: &str = "migrations";

pub struct Migrator {
    mongo: Mongo,
    migrations: Vec<Migration>,
    holder: String,
    lease: Duration,
    wait: Duration,
}

impl Migrator {
    /// `holder` names this process in the lease (a pod name), so a stuck lock says who holds it.
    pub fn new(mongo: Mongo, migrations: Vec<Migration>, holder: impl Into<String>) -> Self {
        Self {
            mongo,
            migrations,
            holder: holder.into(),
            lease: Duration::from_secs(30),
            wait: Duration::from_secs(120),
        }
    }

    /// How long the lease lasts without renewal, and how long to wait for another holder.
    pub fn with_timing(mut self, lease: Duration, wait: Duration) -> Self {
        self.lease = lease;
        self.wait = wait;
        self
    }

    /// Migrations recorded as applied, in version order.
    pub async fn applied(&self) -> Result<Vec<AppliedMigration>> {
        let collection = self.database().collection::<AppliedMigration>(MIGRATIONS);
        let cursor = collection.find(doc! {}).sort(doc! {"_id": 1}).await?;
        Ok(cursor.try_collect().await?)
    }

    /// Applies every migration not yet recorded, in order, under the lease. Returns the versions
    /// applied by this call (empty when another replica got there first).
    pub async fn run(&self) -> Result<Vec<u32>> {
        self.check_order()?;
        let mut epoch = self.acquire().await?;
        let outcome = self.apply_pending(&mut epoch).await;
        // Released even after a failure, so a fixed build can retry at once rather than after expiry.
        let released = self.release(epoch).await;
        let applied = outcome?;
        released?;
        Ok(applied)
    }

    async fn apply_pending(&self, epoch: &mut i64) -> Result<Vec<u32>> {
        let done: Vec<u32> = self.applied().await?.into_iter().map(|m| m.version).collect();
        let known = self.migrations.last().map_or(0, |m| m.version);
        if let Some(&found) = done.iter().find(|&&v| v > known) {
            return Err(Error::MigrationsAhead { found, known });
        }
        let records = self.database().collection::<AppliedMigration>(MIGRATIONS);
        let mut applied = Vec::new();
        for migration in self.migrations.iter().filter(|m| !done.contains(&m.version)) {
            *epoch = self.renew(*epoch).await?;
            tracing::info!(
                version = migration.version,
                name = migration.name,
                "applying migration"
            );
            (migration.run)(self.mongo.clone())
                .await
                .map_err(|error| Error::Migration {
                    version: migration.version,
                    name: migration.name,
                    message: error.to_string(),
                })?;
            let record = AppliedMigration {
                version: migration.version,
                name: migration.name.to_owned(),
                applied_ms: now_ms(),
            };
            retry(|| async {
                records
                    .replace_one(doc! {"_id": migration.version}, &record)
                    .upsert(true)
                    .await?;
                Ok(())
            })
            .await?;
            applied.push(migration.version);
        }
        Ok(applied)
    }

    fn check_order(&self) -> Result<()> {
        for pair in self.migrations.windows(2) {
            if pair[0].version >= pair[1].version {
                return Err(Error::Migration {
                    version: pair[1].version,
                    name: pair[1].name,
                    message: format!("versions must increase; it follows {}", pair[0].version),
                });
            }
        }
        Ok(())
    }

    fn database(&self) -> &Database {
        self.mongo.database()
    }

    fn leases(&self) -> Sequence<LeaseEpoch> {
        Sequence::new(self.mongo.store())
    }

    fn epoch(&self, seq: i64, holder: &str, until_ms: i64) -> LeaseEpoch {
        LeaseEpoch {
            id: entry_id(LOCK_KEY, seq),
            key: LOCK_KEY.into(),
            seq,
            holder: holder.into(),
            until_ms,
        }
    }

    /// Takes the lease: appends the next epoch when the newest is released, expired, or ours from a
    /// previous life of this process. Polls while another holder has it. Returns the epoch taken.
    async fn acquire(&self) -> Result<i64> {
        let deadline = tokio::time::Instant::now() + self.wait;
        let leases = self.leases();
        leases.store().ensure_indexes().await?;
        loop {
            let now = now_ms();
            let advanced = leases
                .advance(LOCK_KEY, 0, |newest| {
                    let free = newest.is_none_or(|lease| {
                        lease.holder.is_empty() || lease.until_ms < now || lease.holder == self.holder
                    });
                    let next = newest.map_or(1, |lease| lease.seq + 1);
                    Ok(free.then(|| self.epoch(next, &self.holder, now + self.lease_ms())))
                })
                .await?;
            if advanced.appended
                && let Some(taken) = advanced.head
            {
                return Ok(taken.seq);
            }
            if tokio::time::Instant::now() >= deadline {
                let (holder, until_ms) = advanced
                    .head
                    .map_or((String::new(), 0), |l| (l.holder, l.until_ms));
                return Err(Error::MigrationLocked { holder, until_ms });
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    /// Extends the lease held at `epoch` by appending the next epoch; returns it. Fails when another
    /// replica appended it first (it took over an expired lease), so the two never migrate side by side.
    async fn renew(&self, epoch: i64) -> Result<i64> {
        let until_ms = now_ms() + self.lease_ms();
        let next = self.epoch(epoch + 1, &self.holder, until_ms);
        match self.leases().append(&next).await? {
            Append::Appended => Ok(next.seq),
            Append::Taken => Err(Error::MigrationLocked {
                holder: "another replica".into(),
                until_ms,
            }),
        }
    }

    /// Releases the lease held at `epoch`; nothing to do when another replica took it over meanwhile.
    async fn release(&self, epoch: i64) -> Result<()> {
        // `Taken` needs nothing more: another replica holds it now.
        self.leases().append(&self.epoch(epoch + 1, "", 0)).await?;
        Ok(())
    }

    fn lease_ms(&self) -> i64 {
        i64::try_from(self.lease.as_millis()).unwrap_or(i64::MAX)
    }
}
