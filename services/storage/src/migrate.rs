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

use crate::lease::Lease;
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

const MIGRATIONS: &str = "flotilla_migrations";
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
        let mut lease = self.acquire().await?;
        let outcome = self.apply_pending(&mut lease).await;
        // Released even after a failure, so a fixed build can retry at once rather than after expiry.
        let released = lease.release().await;
        let applied = outcome?;
        released?;
        Ok(applied)
    }

    async fn apply_pending(&self, lease: &mut Lease) -> Result<Vec<u32>> {
        let done: Vec<u32> = self.applied().await?.into_iter().map(|m| m.version).collect();
        let known = self.migrations.last().map_or(0, |m| m.version);
        if let Some(&found) = done.iter().find(|&&v| v > known) {
            return Err(Error::MigrationsAhead { found, known });
        }
        let records = self.database().collection::<AppliedMigration>(MIGRATIONS);
        let mut applied = Vec::new();
        for migration in self.migrations.iter().filter(|m| !done.contains(&m.version)) {
            if !lease.renew().await? {
                return Err(Error::MigrationLocked {
                    holder: "another replica".into(),
                    until_ms: now_ms(),
                });
            }
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

    /// Takes the lease, polling while another holder has it.
    async fn acquire(&self) -> Result<Lease> {
        let deadline = tokio::time::Instant::now() + self.wait;
        let mut lease = Lease::new(&self.mongo, LOCK_KEY, self.holder.clone(), self.lease);
        lease.ensure_indexes().await?;
        loop {
            let Some(held) = lease.take().await? else {
                return Ok(lease);
            };
            if tokio::time::Instant::now() >= deadline {
                return Err(Error::MigrationLocked {
                    holder: held.holder,
                    until_ms: held.until_ms,
                });
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
}
