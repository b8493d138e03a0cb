//! Processing one chunk of a shard: from the records after the committed offset to files in the
//! event store, exactly once.
//!
//! 1. Drop events already counted: (player, id) pairs seen in this chunk, or committed before (a
//!    Redis set per shard and event date, `{ns}:analytics:seen:{shard}:{day}`, kept 2 days past the
//!    age limit: resends of an event carry its date, and older events are quarantined).
//! 2. Write the rest as one Parquet file per partition, named after the shard, the chunk's first
//!    offset and this claim of the shard, fsynced.
//! 3. Commit in one Redis script, atomically: only while this claim still holds the shard's lease
//!    and the committed offset is the one this chunk started from, mark the ids seen, move the
//!    offset, list the files in the manifest and add the chunk to the live counters.
//!
//! A crash before the commit leaves files no manifest lists (never read) and an offset that has
//! not moved, so the next owner processes the same records again; a crash after it loses nothing.
//! A replica that lost its lease fails the commit. Only one claim commits a range, so every event
//! is in exactly one listed file.

use std::collections::{BTreeMap, HashSet};

use serde::Serialize;

use crate::event::Stored;
use crate::log::Record;
use crate::pipeline::Keys;
use crate::state::AppState;
use crate::store::partition;
use crate::{Error, Result};

/// Seen ids are kept this many days past the age limit, counted from their event date: a resend
/// of an older event is quarantined, not counted.
const SEEN_MARGIN_DAYS: i64 = 2;
/// A "concurrent" player sent an event within this many milliseconds.
pub const ACTIVE_MS: i64 = 5 * 60 * 1000;

/// What a commit records in Redis; the script reads it as JSON.
#[derive(Serialize)]
struct Commit<'a> {
    claim: &'a str,
    from: &'a str,
    to: &'a str,
    offset_key: String,
    manifest_key: String,
    /// File path → what it holds.
    files: BTreeMap<String, String>,
    /// Seen-set key → (expiry in Unix seconds, members: see [`member`]).
    seen: BTreeMap<String, (i64, Vec<String>)>,
    rate_key: String,
    rates: BTreeMap<&'a str, i64>,
    totals_key: String,
    excluded_key: String,
    excluded: BTreeMap<&'a str, i64>,
    active_key: String,
    active: BTreeMap<&'a str, i64>,
    active_since: i64,
    today_key: String,
    today: Vec<&'a str>,
}

/// Answers 1 when committed, 0 when the lease or the offset moved (another claim owns the shard).
const COMMIT: &str = r#"
local c = cjson.decode(ARGV[1])
if redis.call('GET', KEYS[1]) ~= c.claim then return 0 end
local offset = redis.call('GET', c.offset_key) or '0-0'
if offset ~= c.from then return 0 end
for key, entry in pairs(c.seen) do
  local ids = entry[2]
  for i = 1, #ids, 1000 do
    redis.call('SADD', key, unpack(ids, i, math.min(i + 999, #ids)))
  end
  redis.call('EXPIREAT', key, entry[1])
end
redis.call('SET', c.offset_key, c.to)
for path, meta in pairs(c.files) do redis.call('HSET', c.manifest_key, path, meta) end
for name, n in pairs(c.rates) do
  redis.call('HINCRBY', c.rate_key, name, n)
  redis.call('HINCRBY', c.totals_key, name, n)
end
redis.call('EXPIRE', c.rate_key, 120)
for reason, n in pairs(c.excluded) do redis.call('HINCRBY', c.excluded_key, reason, n) end
for player, at in pairs(c.active) do redis.call('ZADD', c.active_key, 'GT', at, player) end
redis.call('ZREMRANGEBYSCORE', c.active_key, '-inf', '(' .. c.active_since)
for i = 1, #c.today, 1000 do
  redis.call('SADD', c.today_key, unpack(c.today, i, math.min(i + 999, #c.today)))
end
redis.call('EXPIRE', c.today_key, 3 * 86400)
return 1
"#;

/// What [`process`] did with a chunk.
#[derive(Debug, PartialEq, Eq)]
pub enum Outcome {
    /// Committed: `events` new events in `files` files.
    Committed { events: usize, files: usize },
    /// Another claim owns the shard now: this one stops.
    Lost,
}

/// Processes `records` (read after `from`) of `shard` under `claim` (the lease's value).
pub async fn process(
    state: &AppState,
    keys: &Keys,
    shard: u32,
    claim: &str,
    from: &str,
    records: Vec<Record>,
) -> Result<Outcome> {
    let Some(last) = records.last() else {
        return Ok(Outcome::Committed { events: 0, files: 0 });
    };
    let to = last.offset.clone();
    let first = records[0].offset.clone();
    let events: Vec<Stored> = records.into_iter().flat_map(|record| record.events).collect();
    let fresh = unseen(state, keys, shard, events).await?;

    let mut partitions: BTreeMap<String, Vec<Stored>> = BTreeMap::new();
    for event in &fresh {
        partitions
            .entry(partition(event))
            .or_default()
            .push(event.clone());
    }
    let suffix = &claim[claim.len().saturating_sub(8)..];
    let mut files = BTreeMap::new();
    for (directory, events) in partitions {
        let path = format!("{directory}/{shard}-{first}-{suffix}.parquet");
        files.insert(path.clone(), format!("{}", events.len()));
        state.store.write(&path, events).await?;
    }

    let now_ms = flotilla_storage::mongo::now_ms();
    let mut seen: BTreeMap<String, (i64, Vec<String>)> = BTreeMap::new();
    let mut rates: BTreeMap<&str, i64> = BTreeMap::new();
    let mut excluded: BTreeMap<&str, i64> = BTreeMap::new();
    let mut active: BTreeMap<&str, i64> = BTreeMap::new();
    let mut today = HashSet::new();
    for event in &fresh {
        let (key, expires) = seen_key(state, keys, shard, event.time_ms);
        seen.entry(key)
            .or_insert_with(|| (expires, Vec::new()))
            .1
            .push(member(event));
        match &event.excluded {
            Some(reason) => *excluded.entry(reason).or_default() += 1,
            None => {
                *rates.entry(&event.name).or_default() += 1;
                let at = active.entry(&event.player).or_default();
                *at = (*at).max(event.received_ms);
                today.insert(event.player.as_str());
            }
        }
    }
    let commit = Commit {
        claim,
        from,
        to: &to,
        offset_key: keys.offset(shard),
        manifest_key: keys.manifest(),
        files,
        seen,
        rate_key: keys.rate(now_ms / 1000),
        rates,
        totals_key: keys.totals(),
        excluded_key: keys.excluded(),
        excluded,
        active_key: keys.active(),
        active,
        active_since: now_ms - ACTIVE_MS,
        today_key: keys.today(now_ms),
        today: today.into_iter().collect(),
    };
    let argument = serde_json::to_string(&commit).map_err(|e| Error::Internal(e.to_string()))?;
    let mut redis = state.log_redis.clone();
    let committed: i64 = redis::Script::new(COMMIT)
        .key(keys.lease(shard))
        .arg(argument)
        .invoke_async(&mut redis)
        .await
        .map_err(flotilla_storage::Error::from)?;
    if committed == 0 {
        return Ok(Outcome::Lost);
    }
    let oldest = fresh.iter().map(|event| event.received_ms).min();
    state.metrics.committed(
        fresh.len(),
        commit.files.len(),
        oldest,
        flotilla_storage::mongo::now_ms(),
    );
    Ok(Outcome::Committed {
        events: fresh.len(),
        files: commit.files.len(),
    })
}

/// The seen-set of `shard` for the UTC date of `time_ms`, and when it may expire.
fn seen_key(state: &AppState, keys: &Keys, shard: u32, time_ms: i64) -> (String, i64) {
    let day = time_ms.div_euclid(86_400_000);
    let keep = state.limits.max_age_ms.div_euclid(86_400_000) + SEEN_MARGIN_DAYS;
    (keys.seen(shard, day), (day + 1 + keep) * 86_400)
}

/// How an event is known in a seen-set: a digest of its player and id (ids are unique per
/// player), 16 bytes as hex whatever the ids' length.
fn member(event: &Stored) -> String {
    let mut input = Vec::with_capacity(event.player.len() + 1 + event.id.len());
    input.extend_from_slice(event.player.as_bytes());
    input.push(0);
    input.extend_from_slice(event.id.as_bytes());
    let digest = ring::digest::digest(&ring::digest::SHA256, &input);
    digest.as_ref()[..16]
        .iter()
        .map(|byte| format!("{byte:02x}"))
        .collect()
}

/// `events` minus repeats within them and ids committed before, in order.
async fn unseen(state: &AppState, keys: &Keys, shard: u32, events: Vec<Stored>) -> Result<Vec<Stored>> {
    let mut in_chunk = HashSet::new();
    let events: Vec<Stored> = events
        .into_iter()
        .filter(|event| in_chunk.insert((member(event), event.time_ms.div_euclid(86_400_000))))
        .collect();
    let mut by_set: BTreeMap<String, Vec<usize>> = BTreeMap::new();
    for (index, event) in events.iter().enumerate() {
        by_set
            .entry(seen_key(state, keys, shard, event.time_ms).0)
            .or_default()
            .push(index);
    }
    let mut pipe = redis::pipe();
    for (key, indexes) in &by_set {
        let members: Vec<String> = indexes.iter().map(|&i| member(&events[i])).collect();
        pipe.cmd("SMISMEMBER").arg(key).arg(members);
    }
    let mut redis = state.log_redis.clone();
    let answers: Vec<Vec<bool>> = pipe
        .query_async(&mut redis)
        .await
        .map_err(flotilla_storage::Error::from)?;
    let mut seen = vec![false; events.len()];
    for ((_, indexes), answer) in by_set.iter().zip(answers) {
        for (&index, was_seen) in indexes.iter().zip(answer) {
            seen[index] = was_seen;
        }
    }
    Ok(events
        .into_iter()
        .zip(seen)
        .filter(|(_, seen)| !seen)
        .map(|(event, _)| event)
        .collect())
}
