//! Online presence: which players are connected, and their latest status.
//!
//! A player may hold several connections at once (two devices, possibly served by different
//! replicas), each with its own entry and its own expiry: a replica refreshes the connections it
//! serves, and if it crashes its connections read as offline `ttl` later without anyone removing
//! them. Redis 7.0 cannot expire a hash field, so each player is one hash
//! (`flotilla:presence:{player}`, field = connection id) whose values carry their own deadline
//! (`"{deadline ms} {entry json}"`). Scripts compare deadlines with the Redis server's clock, so
//! replicas with skewed clocks agree on who is online; they drop the lapsed fields they see and keep
//! the hash's own expiry at its latest deadline, so a player nobody reads again leaves nothing behind.

use std::{collections::HashMap, sync::LazyLock, time::Duration};

use futures::future::try_join_all;
use redis::{AsyncCommands, Script, aio::ConnectionManager};
use serde::{Deserialize, Serialize};

use crate::Result;

/// What one connection last said about its player.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
pub struct PresenceEntry {
    pub status: String,
    pub payload: serde_json::Value,
    pub updated_ms: i64,
}

/// Players per script call in [`Presence::get_many`]: keeps each call short, since Redis runs one
/// script at a time.
const BATCH: usize = 100;

/// Shared by the scripts: `now` (server clock, ms) and `sweep(key)`, which drops lapsed fields,
/// sets the key to expire with its latest deadline and returns the live values without deadlines.
const PRELUDE: &str = r"
local time = redis.call('TIME')
local now = tonumber(time[1]) * 1000 + math.floor(tonumber(time[2]) / 1000)
local function sweep(key)
  local fields = redis.call('HGETALL', key)
  local live = {}
  local latest = 0
  for i = 1, #fields, 2 do
    local deadline, entry = string.match(fields[i + 1], '^(%d+) (.*)$')
    deadline = tonumber(deadline)
    if deadline == nil or deadline <= now then
      redis.call('HDEL', key, fields[i])
    else
      live[#live + 1] = entry
      if deadline > latest then latest = deadline end
    end
  end
  if latest > 0 then redis.call('PEXPIREAT', key, string.format('%.0f', latest)) end
  return live
end
";

/// KEYS[1] player; ARGV[1] connection, ARGV[2] entry json, ARGV[3] ttl ms.
static SET: LazyLock<Script> = LazyLock::new(|| {
    Script::new(&format!(
        r"{PRELUDE}
local deadline = string.format('%.0f', now + tonumber(ARGV[3]))
redis.call('HSET', KEYS[1], ARGV[1], deadline .. ' ' .. ARGV[2])
sweep(KEYS[1])
return 1
"
    ))
});

/// KEYS = players, ARGV[i] the connection of KEYS[i], ARGV[#KEYS + 1] ttl ms. Returns, per
/// connection, 1 if refreshed or 0 if its entry had lapsed or was removed.
static REFRESH: LazyLock<Script> = LazyLock::new(|| {
    Script::new(&format!(
        r"{PRELUDE}
local ttl = tonumber(ARGV[#KEYS + 1])
local result = {{}}
for i, key in ipairs(KEYS) do
  result[i] = 0
  local value = redis.call('HGET', key, ARGV[i])
  if value then
    local deadline, entry = string.match(value, '^(%d+) (.*)$')
    if tonumber(deadline) ~= nil and tonumber(deadline) > now then
      redis.call('HSET', key, ARGV[i], string.format('%.0f', now + ttl) .. ' ' .. entry)
      result[i] = 1
    end
  end
  sweep(key)
end
return result
"
    ))
});

/// KEYS = players. Returns, per player, the entries of its live connections.
static GET: LazyLock<Script> = LazyLock::new(|| {
    Script::new(&format!(
        r"{PRELUDE}
local result = {{}}
for i, key in ipairs(KEYS) do result[i] = sweep(key) end
return result
"
    ))
});

#[derive(Clone)]
pub struct Presence {
    redis: ConnectionManager,
    ttl_ms: u64,
}

impl Presence {
    /// Entries lapse `ttl` after their last [`set`](Self::set) or [`refresh`](Self::refresh).
    pub fn new(redis: ConnectionManager, ttl: Duration) -> Self {
        let ttl_ms = u64::try_from(ttl.as_millis()).unwrap_or(u64::MAX).max(1);
        Self { redis, ttl_ms }
    }

    fn key(player: &str) -> String {
        format!("flotilla:presence:{player}")
    }

    /// Records what `connection` says about `player`, alive for another `ttl`.
    pub async fn set(&self, player: &str, connection: &str, entry: &PresenceEntry) -> Result<()> {
        let json = serde_json::to_string(entry)?;
        let mut redis = self.redis.clone();
        SET.key(Self::key(player))
            .arg(connection)
            .arg(json)
            .arg(self.ttl_ms)
            .invoke_async::<()>(&mut redis)
            .await?;
        Ok(())
    }

    /// Keeps `connection` alive for another `ttl`. `false` if it had already lapsed or been removed:
    /// the caller should [`set`](Self::set) it again, since others have seen it go offline.
    pub async fn refresh(&self, player: &str, connection: &str) -> Result<bool> {
        let refreshed = self
            .refresh_many(&[(player.to_owned(), connection.to_owned())])
            .await?;
        Ok(refreshed.first().copied().unwrap_or(false))
    }

    /// [`refresh`](Self::refresh) for many `(player, connection)` pairs, in one round trip per
    /// [`BATCH`] pairs (batches run concurrently): a replica refreshes all its connections at
    /// once instead of one call per connection.
    pub async fn refresh_many(&self, connections: &[(String, String)]) -> Result<Vec<bool>> {
        let batches = try_join_all(connections.chunks(BATCH).map(|batch| async move {
            let mut invocation = REFRESH.prepare_invoke();
            for (player, connection) in batch {
                invocation.key(Self::key(player)).arg(connection);
            }
            invocation.arg(self.ttl_ms);
            let mut redis = self.redis.clone();
            let refreshed: Vec<i64> = invocation.invoke_async(&mut redis).await?;
            Ok::<_, crate::Error>(refreshed)
        }))
        .await?;
        Ok(batches.into_iter().flatten().map(|r| r == 1).collect())
    }

    pub async fn remove(&self, player: &str, connection: &str) -> Result<()> {
        let mut redis = self.redis.clone();
        redis.hdel::<_, _, ()>(Self::key(player), connection).await?;
        Ok(())
    }

    /// The entry of `player`'s most recently updated live connection; `None` if offline.
    pub async fn get(&self, player: &str) -> Result<Option<PresenceEntry>> {
        let mut found = self.fetch(&[player]).await?;
        Ok(found.remove(&player))
    }

    /// The online players among `players`, each with its most recently updated entry, in one
    /// round trip per [`BATCH`] players (batches run concurrently).
    pub async fn get_many(&self, players: &[String]) -> Result<HashMap<String, PresenceEntry>> {
        let mut unique: Vec<&str> = players.iter().map(String::as_str).collect();
        unique.sort_unstable();
        unique.dedup();
        let batches = try_join_all(unique.chunks(BATCH).map(|batch| self.fetch(batch))).await?;
        Ok(batches
            .into_iter()
            .flatten()
            .map(|(player, entry)| (player.to_owned(), entry))
            .collect())
    }

    async fn fetch<'a>(&self, players: &[&'a str]) -> Result<HashMap<&'a str, PresenceEntry>> {
        let mut invocation = GET.prepare_invoke();
        for player in players {
            invocation.key(Self::key(player));
        }
        let mut redis = self.redis.clone();
        let live: Vec<Vec<String>> = invocation.invoke_async(&mut redis).await?;
        let mut online = HashMap::new();
        for (player, entries) in players.iter().zip(live) {
            let mut latest: Option<PresenceEntry> = None;
            for json in entries {
                let entry: PresenceEntry = serde_json::from_str(&json)?;
                if latest
                    .as_ref()
                    .is_none_or(|current| entry.updated_ms > current.updated_ms)
                {
                    latest = Some(entry);
                }
            }
            if let Some(entry) = latest {
                online.insert(*player, entry);
            }
        }
        Ok(online)
    }
}
