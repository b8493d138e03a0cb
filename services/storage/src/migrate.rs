//! Versioned schema migrations, recorded in the database and run in order.
//!
//! Every replica may run [`Migrator::run`] at start-up: a lease document serialises them, so when two
//! start at once one applies the migrations while the other waits, then finds nothing left to do. A
//! holder that dies mid-run loses the lease when it expires. Each migration must itself be idempotent
//! (creating an index that exists is a no-op), because a holder can die after applying one and before
//! recording it.

use std::future::Future;
use std::pin::Pin;
use std::time::Duration;

use futures::TryStreamExt;
use mongodb::Database;
use mongodb::bson::doc;
use serde::{Deserialize, Serialize};

use crate::mongo::{Mongo, now_ms, retry};
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

#[derive(Serialize, Deserialize)]
struct Lease {
    #[serde(rename = "_id")]
    id: String,
    holder: String,
    until_ms: i64,
}

const MIGRATIONS: &str = "flotilla_migrations";
const LOCKS: &str = "flotilla_locks";
const LOCK_ID: &str = "migrations";

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
        self.acquire().await?;
        let outcome = self.apply_pending().await;
        // Released even after a failure, so a fixed build can retry at once rather than after expiry.
        let released = self.release().await;
        let applied = outcome?;
        released?;
        Ok(applied)
    }

    async fn apply_pending(&self) -> Result<Vec<u32>> {
        let done: Vec<u32> = self.applied().await?.into_iter().map(|m| m.version).collect();
        let known = self.migrations.last().map_or(0, |m| m.version);
        if let Some(&found) = done.iter().find(|&&v| v > known) {
            return Err(Error::MigrationsAhead { found, known });
        }
        let records = self.database().collection::<AppliedMigration>(MIGRATIONS);
        let mut applied = Vec::new();
        for migration in self.migrations.iter().filter(|m| !done.contains(&m.version)) {
            self.renew().await?;
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

    fn leases(&self) -> mongodb::Collection<Lease> {
        self.database().collection(LOCKS)
    }

    /// Takes the lease: creates it, or takes it over once expired. Polls while another holder has it.
    async fn acquire(&self) -> Result<()> {
        let deadline = tokio::time::Instant::now() + self.wait;
        loop {
            let now = now_ms();
            let until_ms = now + self.lease_ms();
            let lease = Lease {
                id: LOCK_ID.into(),
                holder: self.holder.clone(),
                until_ms,
            };
            match self.leases().insert_one(&lease).await {
                Ok(_) => return Ok(()),
                Err(error) if !is_duplicate(&error) => return Err(error.into()),
                Err(_) => {}
            }
            // Expired, or ours from a previous life of this process: take it over.
            let taken = self
                .leases()
                .find_one_and_update(
                    doc! {"_id": LOCK_ID, "$or": [{"until_ms": {"$lt": now}}, {"holder": &self.holder}]},
                    doc! {"$set": {"holder": &self.holder, "until_ms": until_ms}},
                )
                .await?;
            if taken.is_some() {
                return Ok(());
            }
            if tokio::time::Instant::now() >= deadline {
                let current = self.leases().find_one(doc! {"_id": LOCK_ID}).await?;
                let (holder, until_ms) = current.map_or((String::new(), 0), |l| (l.holder, l.until_ms));
                return Err(Error::MigrationLocked { holder, until_ms });
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    async fn renew(&self) -> Result<()> {
        let until_ms = now_ms() + self.lease_ms();
        let renewed = self
            .leases()
            .update_one(
                doc! {"_id": LOCK_ID, "holder": &self.holder},
                doc! {"$set": {"until_ms": until_ms}},
            )
            .await?;
        if renewed.matched_count == 0 {
            // Someone took over an expired lease: stop rather than run migrations side by side.
            return Err(Error::MigrationLocked {
                holder: "another replica".into(),
                until_ms,
            });
        }
        Ok(())
    }

    async fn release(&self) -> Result<()> {
        retry(|| async {
            self.leases()
                .delete_one(doc! {"_id": LOCK_ID, "holder": &self.holder})
                .await?;
            Ok(())
        })
        .await
    }

    fn lease_ms(&self) -> i64 {
        i64::try_from(self.lease.as_millis()).unwrap_or(i64::MAX)
    }
}

fn is_duplicate(error: &mongodb::error::Error) -> bool {
    use mongodb::error::{ErrorKind, WriteFailure};
    matches!(&*error.kind, ErrorKind::Write(WriteFailure::WriteError(write)) if write.code == 11000)
}
