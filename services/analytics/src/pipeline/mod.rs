//! The pipeline: every replica takes a fair share of the log's shards and turns each one it owns
//! into event files, chunk by chunk ([`chunk`]), exactly once.
//!
//! Ownership is a lease per shard in the log's Redis (`{ns}:analytics:lease:{shard}`, value a
//! random claim, renewed while the owner works). Replicas announce themselves every second; each
//! keeps at most `ceil(shards / replicas)` shards and releases the rest, so replicas share the work
//! and a dead replica's shards are taken over once its leases expire. The commit of a chunk checks
//! the claim, so a replica that stalled past its lease cannot commit over its successor.

pub mod chunk;

use std::collections::BTreeMap;
use std::time::Duration;

use redis::AsyncCommands;

use crate::log::{Reader, START};
use crate::state::Shared;
use crate::{Error, Result};

/// The Redis keys of the pipeline's state, under the namespace.
#[derive(Clone)]
pub struct Keys {
    prefix: String,
}

impl Keys {
    pub fn new(namespace: &str) -> Self {
        Self {
            prefix: format!("{namespace}:analytics"),
        }
    }

    pub fn lease(&self, shard: u32) -> String {
        format!("{}:lease:{shard}", self.prefix)
    }
    /// The offset up to which `shard` is committed.
    pub fn offset(&self, shard: u32) -> String {
        format!("{}:offset:{shard}", self.prefix)
    }
    /// Committed files: path → events in it.
    pub fn manifest(&self) -> String {
        format!("{}:files", self.prefix)
    }
    pub fn seen(&self, shard: u32, day: i64) -> String {
        format!("{}:seen:{shard}:{day}", self.prefix)
    }
    pub fn replicas(&self) -> String {
        format!("{}:replicas", self.prefix)
    }
    /// Events committed in the second `second`, by name.
    pub fn rate(&self, second: i64) -> String {
        format!("{}:live:rate:{second}", self.prefix)
    }
    pub fn totals(&self) -> String {
        format!("{}:live:totals", self.prefix)
    }
    pub fn excluded(&self) -> String {
        format!("{}:live:excluded", self.prefix)
    }
    /// Players by the time of their latest event.
    pub fn active(&self) -> String {
        format!("{}:live:active", self.prefix)
    }
    /// Players with an event received on the UTC day of `now_ms`.
    pub fn today(&self, now_ms: i64) -> String {
        format!("{}:live:today:{}", self.prefix, now_ms.div_euclid(86_400_000))
    }
    /// Custom events' JSON Schemas, by event name.
    pub fn schemas(&self) -> String {
        format!("{}:schemas", self.prefix)
    }
    /// Bumped on every change of the schemas, so collectors know when to reload them.
    pub fn schemas_version(&self) -> String {
        format!("{}:schemas:version", self.prefix)
    }
    /// Events per player and minute, for the rate limit.
    pub fn flood(&self, player: &str, minute: i64) -> String {
        format!("{}:flood:{player}:{minute}", self.prefix)
    }
}

/// Tuning of the pipeline.
#[derive(Debug, Clone)]
pub struct Settings {
    pub lease: Duration,
    /// Log records per chunk (each a part of a collected batch).
    pub chunk_records: usize,
    /// How long a read waits for records before the owner renews its lease and reads again.
    pub wait: Duration,
}

/// A shard this replica owns: its claim and the task working it.
struct Owned {
    claim: String,
    task: tokio::task::JoinHandle<()>,
}

/// Runs for as long as the process: claims, keeps and releases shards, one task per owned shard.
pub async fn run(state: Shared, replica: String) {
    let mut owned: BTreeMap<u32, Owned> = BTreeMap::new();
    let mut ticker = tokio::time::interval(Duration::from_secs(1));
    loop {
        ticker.tick().await;
        owned.retain(|_, shard| !shard.task.is_finished());
        if let Err(error) = balance(&state, &replica, &mut owned).await {
            tracing::warn!(%error, "pipeline: could not balance shards");
        }
        state.metrics.owned_shards.set(owned.len() as i64);
    }
}

async fn balance(state: &Shared, replica: &str, owned: &mut BTreeMap<u32, Owned>) -> Result<()> {
    let keys = &state.keys;
    let now = flotilla_storage::mongo::now_ms();
    let mut redis = state.log_redis.clone();
    let lease_ms = state.settings.lease.as_millis() as i64;
    let (_, _, live): (i64, i64, i64) = redis::pipe()
        .zadd(keys.replicas(), replica, now)
        .zrembyscore(keys.replicas(), "-inf", now - lease_ms)
        .zcard(keys.replicas())
        .query_async(&mut redis)
        .await
        .map_err(flotilla_storage::Error::from)?;
    let shards = state.log.shards();
    let share = shards.div_ceil(live.max(1) as u32) as usize;
    // Over the share (a replica joined): hand the highest shards back.
    while owned.len() > share {
        let Some((shard, mine)) = owned.pop_last() else {
            break;
        };
        mine.task.abort();
        release(state, shard, &mine.claim).await?;
    }
    for shard in 0..shards {
        if owned.len() >= share {
            break;
        }
        if owned.contains_key(&shard) {
            continue;
        }
        let claim = new_claim(replica)?;
        let taken: bool = redis::cmd("SET")
            .arg(keys.lease(shard))
            .arg(&claim)
            .arg("NX")
            .arg("PX")
            .arg(lease_ms)
            .query_async::<Option<String>>(&mut redis)
            .await
            .map_err(flotilla_storage::Error::from)?
            .is_some();
        if taken {
            tracing::info!(shard, "pipeline: shard claimed");
            let task = tokio::spawn(work(state.clone(), shard, claim.clone()));
            owned.insert(shard, Owned { claim, task });
        }
    }
    Ok(())
}

fn new_claim(replica: &str) -> Result<String> {
    let mut bytes = [0u8; 8];
    ring::rand::SecureRandom::fill(&ring::rand::SystemRandom::new(), &mut bytes)
        .map_err(|_| Error::Internal("no randomness".into()))?;
    let random: String = bytes.iter().map(|byte| format!("{byte:02x}")).collect();
    Ok(format!("{replica}/{random}"))
}

/// Extends the lease while it is still `claim`'s; false when it is not.
const RENEW: &str = r#"
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('PEXPIRE', KEYS[1], ARGV[2])
end
return 0
"#;

const RELEASE: &str = r#"
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
"#;

async fn renew(state: &Shared, shard: u32, claim: &str) -> Result<bool> {
    let mut redis = state.log_redis.clone();
    let renewed: i64 = redis::Script::new(RENEW)
        .key(state.keys.lease(shard))
        .arg(claim)
        .arg(state.settings.lease.as_millis() as i64)
        .invoke_async(&mut redis)
        .await
        .map_err(flotilla_storage::Error::from)?;
    Ok(renewed == 1)
}

async fn release(state: &Shared, shard: u32, claim: &str) -> Result<()> {
    let mut redis = state.log_redis.clone();
    let _: i64 = redis::Script::new(RELEASE)
        .key(state.keys.lease(shard))
        .arg(claim)
        .invoke_async(&mut redis)
        .await
        .map_err(flotilla_storage::Error::from)?;
    Ok(())
}

/// Works one owned shard until its lease is lost.
async fn work(state: Shared, shard: u32, claim: String) {
    let mut reader = None;
    loop {
        let reader = match &mut reader {
            Some(reader) => reader,
            None => match state.log.reader().await {
                Ok(connected) => reader.insert(connected),
                Err(error) => {
                    tracing::warn!(shard, %error, "pipeline: cannot connect to the log");
                    tokio::time::sleep(Duration::from_millis(500)).await;
                    continue;
                }
            },
        };
        match step(&state, reader, shard, &claim).await {
            Ok(true) => {}
            Ok(false) => {
                tracing::info!(shard, "pipeline: shard lost to another claim");
                return;
            }
            Err(error) => {
                state.metrics.pipeline_errors.inc();
                tracing::warn!(shard, %error, "pipeline: chunk failed; retrying");
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
        }
    }
}

/// Renews the lease, reads after the committed offset and processes what came. False once the
/// shard belongs to another claim.
async fn step(state: &Shared, reader: &mut Reader, shard: u32, claim: &str) -> Result<bool> {
    if !renew(state, shard, claim).await? {
        return Ok(false);
    }
    let mut redis = state.log_redis.clone();
    let from: Option<String> = redis
        .get(state.keys.offset(shard))
        .await
        .map_err(flotilla_storage::Error::from)?;
    let from = from.unwrap_or_else(|| START.to_owned());
    let settings = &state.settings;
    let records = state
        .log
        .read(reader, shard, &from, settings.chunk_records, settings.wait)
        .await?;
    let Some(last) = records.last().map(|record| record.offset.clone()) else {
        return Ok(true);
    };
    match chunk::process(state, &state.keys, shard, claim, &from, records).await? {
        chunk::Outcome::Lost => Ok(false),
        chunk::Outcome::Committed { .. } => {
            state.log.trim(shard, &last).await?;
            Ok(true)
        }
    }
}

/// Where each shard stands: committed offset, the log's end, and whether it has caught up.
#[derive(Debug, serde::Serialize, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ShardStatus {
    pub shard: u32,
    pub owner: Option<String>,
    pub committed: String,
    pub end: String,
    pub caught_up: bool,
}

pub async fn status(state: &Shared) -> Result<Vec<ShardStatus>> {
    let mut shards = Vec::new();
    let mut redis = state.log_redis.clone();
    for shard in 0..state.log.shards() {
        let (owner, committed): (Option<String>, Option<String>) = redis::pipe()
            .get(state.keys.lease(shard))
            .get(state.keys.offset(shard))
            .query_async(&mut redis)
            .await
            .map_err(flotilla_storage::Error::from)?;
        let committed = committed.unwrap_or_else(|| START.to_owned());
        let end = state.log.end(shard).await?;
        shards.push(ShardStatus {
            shard,
            owner: owner.map(|claim| claim.split('/').next().unwrap_or_default().to_owned()),
            caught_up: end == START || committed == end,
            committed,
            end,
        });
    }
    Ok(shards)
}
