//! A read-through cache in Redis with explicit invalidation.
//!
//! The race every read-through cache must close: a reader misses, loads the old value from the
//! database, a writer then updates the database and invalidates, and the reader finally stores the
//! old value, which stays cached until it expires. Here the reader takes a *lease* before loading:
//! on a miss it atomically puts a random token into the empty entry, and afterwards stores the loaded
//! value only if the entry still holds that token (compare-and-set in Lua). Invalidation deletes the
//! entry, lease included, so a load that overlapped an invalidation is never stored.
//!
//! A lease fails closed: if it expires (a loader slower than [`LEASE_TTL`]) or Redis evicts it, the
//! store is skipped, never done with a stale value. That is why this is a lease and not a generation
//! counter, which would have to outlive every load and survive eviction to stay correct.
//!
//! While one reader holds the lease, others that miss load from the database without storing; the
//! first load fills the entry for everyone after it.
//!
//! A `None` from the loader is not cached: a player created right after a lookup must be found at
//! once, whether or not the writer remembers to invalidate the key.
//!
//! Callers must invalidate *after* their database write has committed.

use std::{future::Future, sync::LazyLock, time::Duration};

use prometheus_client::{
    encoding::EncodeLabelSet,
    metrics::{counter::Counter, family::Family},
    registry::Registry,
};
use redis::{AsyncCommands, Script, aio::ConnectionManager};
use ring::rand::{SecureRandom, SystemRandom};
use serde::{Serialize, de::DeserializeOwned};

use crate::Result;

/// How long a reader may take to load before its lease lapses and its result is not stored. Bounds,
/// too, how long a reader that was cancelled mid-load keeps others from filling the entry.
pub const LEASE_TTL: Duration = Duration::from_millis(LEASE_TTL_MS);
const LEASE_TTL_MS: u64 = 10_000;

// An entry's first byte tells a cached value (JSON follows) from a reader's lease (a token follows).
const VALUE_TAG: u8 = b'v';
const LEASE_TAG: u8 = b'l';

/// Returns the entry if there is one; otherwise takes the lease (ARGV[1]) for ARGV[2] ms and
/// returns nil.
static FETCH: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r"
local current = redis.call('GET', KEYS[1])
if current then return current end
redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
return false
",
    )
});

/// Compare-and-set: if the entry still holds ARGV[1] (our lease, or an undecodable value), stores
/// ARGV[2] for ARGV[3] ms, or with an empty ARGV[2] deletes it. Returns 1 if the entry was replaced.
static SETTLE: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r"
if redis.call('GET', KEYS[1]) ~= ARGV[1] then return 0 end
if ARGV[2] == '' then
  redis.call('DEL', KEYS[1])
else
  redis.call('SET', KEYS[1], ARGV[2], 'PX', ARGV[3])
end
return 1
",
    )
});

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct CacheLabels {
    cache: &'static str,
    /// hit, miss or error (Redis failed or held an undecodable entry; the loader answered).
    result: &'static str,
}

/// `flotilla_cache_requests_total{cache, result}`, shared by every cache of a process.
#[derive(Clone)]
pub struct CacheMetrics {
    requests: Family<CacheLabels, Counter>,
}

impl CacheMetrics {
    pub fn register(registry: &mut Registry) -> Self {
        let requests = Family::<CacheLabels, Counter>::default();
        registry.register(
            "flotilla_cache_requests",
            "Cache lookups by cache and result (hit, miss, error)",
            requests.clone(),
        );
        Self { requests }
    }

    fn count(&self, cache: &'static str, result: &'static str) {
        self.requests.get_or_create(&CacheLabels { cache, result }).inc();
    }
}

/// One named cache; entries live at `flotilla:cache:{name}:{key}`.
#[derive(Clone)]
pub struct Cache {
    redis: ConnectionManager,
    name: &'static str,
    ttl_ms: u64,
    metrics: CacheMetrics,
}

/// What a lookup found. A lease, if any, lets this reader store what it loads.
enum Lookup<T> {
    Hit(T),
    Miss(Option<Vec<u8>>),
    /// Redis failed, or held an entry this build cannot decode (replaced by a lease if possible).
    Failed(Option<Vec<u8>>),
}

impl Cache {
    pub fn new(redis: ConnectionManager, name: &'static str, ttl: Duration, metrics: CacheMetrics) -> Self {
        let ttl_ms = u64::try_from(ttl.as_millis()).unwrap_or(u64::MAX).max(1);
        Self {
            redis,
            name,
            ttl_ms,
            metrics,
        }
    }

    fn entry_key(&self, key: &str) -> String {
        format!("flotilla:cache:{}:{key}", self.name)
    }

    /// The cached value for `key`, or else what `load` returns (stored unless a concurrent
    /// [`invalidate`](Self::invalidate) made it possibly stale). Redis failures are logged and
    /// counted, and the loader answers instead: the cache never fails a request.
    pub async fn get_or_load<T, F, Fut>(&self, key: &str, load: F) -> Result<Option<T>>
    where
        T: Serialize + DeserializeOwned,
        F: FnOnce() -> Fut,
        Fut: Future<Output = Result<Option<T>>>,
    {
        let entry = self.entry_key(key);
        let lease = match self.lookup(&entry).await {
            Lookup::Hit(value) => {
                self.metrics.count(self.name, "hit");
                return Ok(Some(value));
            }
            Lookup::Miss(lease) => {
                self.metrics.count(self.name, "miss");
                lease
            }
            Lookup::Failed(lease) => {
                self.metrics.count(self.name, "error");
                lease
            }
        };
        let loaded = load().await;
        if let Some(lease) = lease {
            self.settle(&entry, &lease, &loaded).await;
        }
        loaded
    }

    async fn lookup<T: DeserializeOwned>(&self, entry: &str) -> Lookup<T> {
        let Some(lease) = new_lease() else {
            tracing::warn!(
                cache = self.name,
                "no randomness for a cache lease; loading uncached"
            );
            return Lookup::Failed(None);
        };
        let mut redis = self.redis.clone();
        let fetched: redis::RedisResult<Option<Vec<u8>>> = FETCH
            .key(entry)
            .arg(&lease)
            .arg(LEASE_TTL_MS)
            .invoke_async(&mut redis)
            .await;
        match fetched {
            Ok(None) => Lookup::Miss(Some(lease)),
            Ok(Some(found)) => match found.split_first() {
                Some((&VALUE_TAG, json)) => match serde_json::from_slice(json) {
                    Ok(value) => Lookup::Hit(value),
                    Err(error) => {
                        // Likely written by another version of the service during a rollout:
                        // leasing it lets this reader refill it in this version's shape.
                        tracing::warn!(cache = self.name, %error, "replacing an undecodable cache entry");
                        let leased: redis::RedisResult<i64> = SETTLE
                            .key(entry)
                            .arg(&found)
                            .arg(&lease)
                            .arg(LEASE_TTL_MS)
                            .invoke_async(&mut redis)
                            .await;
                        Lookup::Failed(leased.is_ok_and(|leased| leased == 1).then_some(lease))
                    }
                },
                // Another reader's lease: it will fill the entry, this one only loads.
                _ => Lookup::Miss(None),
            },
            Err(error) => {
                tracing::warn!(cache = self.name, %error, "cache lookup failed; loading uncached");
                Lookup::Failed(None)
            }
        }
    }

    /// Stores a loaded value under our lease, or gives the lease back so the next reader can fill
    /// the entry. Failures only cost a later miss, so they are logged, not returned.
    async fn settle<T: Serialize>(&self, entry: &str, lease: &[u8], loaded: &Result<Option<T>>) {
        let value = match loaded {
            Ok(Some(value)) => match serde_json::to_vec(value) {
                Ok(json) => [&[VALUE_TAG][..], &json].concat(),
                Err(error) => {
                    tracing::warn!(cache = self.name, %error, "cannot encode a value for the cache");
                    Vec::new()
                }
            },
            Ok(None) | Err(_) => Vec::new(),
        };
        let mut redis = self.redis.clone();
        let settled: redis::RedisResult<i64> = SETTLE
            .key(entry)
            .arg(lease)
            .arg(value)
            .arg(self.ttl_ms)
            .invoke_async(&mut redis)
            .await;
        if let Err(error) = settled {
            tracing::warn!(cache = self.name, %error, "cannot store a loaded value in the cache");
        }
    }

    /// Drops `key` from the cache, and cancels the store of any load in flight for it. Call it after
    /// every committed write of the cached data; an error here means the cache may serve the old
    /// value until it expires, so it is returned.
    pub async fn invalidate(&self, key: &str) -> Result<()> {
        let mut redis = self.redis.clone();
        redis.del::<_, ()>(self.entry_key(key)).await?;
        Ok(())
    }
}

/// A random token, tagged as a lease; `None` only if the system has no randomness to give.
fn new_lease() -> Option<Vec<u8>> {
    let mut token = [0u8; 16];
    SystemRandom::new().fill(&mut token).ok()?;
    Some([&[LEASE_TAG][..], &token].concat())
}
