//! The durable log between collecting and processing.
//!
//! The collector appends each batch's events, split by shard (a hash of the player, so one
//! player's events stay in order), and acknowledges the batch only once every part is appended
//! durably. The pipeline reads each shard from the offset it last committed. One interface, with
//! Redis Streams as the embedded engine; the offsets are the engine's own.
//!
//! Redis Streams: one stream per shard, `{ns}:analytics:log:{shard}`, one entry per appended part
//! (its events as JSON). An append is durable when the Redis server writes its AOF with
//! `appendfsync always`, which [`RedisLog::check_durable`] verifies at start-up.

use std::time::Duration;

use redis::AsyncCommands;
use redis::streams::{StreamReadOptions, StreamReadReply};

use crate::event::Stored;
use crate::{Error, Result};

/// A position in a shard: the entry id of Redis Streams.
pub type Offset = String;

/// Before the first entry of a shard.
pub const START: &str = "0-0";

/// One appended part: its offset and its events.
#[derive(Debug)]
pub struct Record {
    pub offset: Offset,
    pub events: Vec<Stored>,
}

pub struct RedisLog {
    redis: redis::aio::ConnectionManager,
    /// For readers' connections of their own: a blocking read would stall every other command
    /// multiplexed on a shared connection.
    client: redis::Client,
    namespace: String,
    shards: u32,
}

/// A connection for blocking reads of one shard ([`RedisLog::reader`]).
pub struct Reader {
    connection: redis::aio::MultiplexedConnection,
}

/// Which shard a player's events go to: FNV-1a of the player id, so every replica (and any
/// producer written elsewhere) agrees without coordination.
pub fn shard_of(player: &str, shards: u32) -> u32 {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for byte in player.bytes() {
        hash ^= u64::from(byte);
        hash = hash.wrapping_mul(0x0000_0100_0000_01b3);
    }
    (hash % u64::from(shards.max(1))) as u32
}

impl RedisLog {
    pub fn new(
        url: &str,
        redis: redis::aio::ConnectionManager,
        namespace: &str,
        shards: u32,
    ) -> Result<Self> {
        Ok(Self {
            redis,
            client: redis::Client::open(url).map_err(flotilla_storage::Error::from)?,
            namespace: namespace.to_owned(),
            shards,
        })
    }

    /// A connection of its own for [`RedisLog::read`], its answers awaited longer than a read waits.
    pub async fn reader(&self) -> Result<Reader> {
        let config = redis::AsyncConnectionConfig::new()
            .set_connection_timeout(Some(Duration::from_secs(2)))
            .set_response_timeout(Some(Duration::from_secs(10)));
        let connection = self
            .client
            .get_multiplexed_async_connection_with_config(&config)
            .await
            .map_err(flotilla_storage::Error::from)?;
        Ok(Reader { connection })
    }

    pub fn shards(&self) -> u32 {
        self.shards
    }

    fn key(&self, shard: u32) -> String {
        format!("{}:analytics:log:{shard}", self.namespace)
    }

    /// Refuses a Redis that could lose acknowledged appends: one without an AOF fsynced on every
    /// write. `allow_volatile` (development only) turns the refusal into a warning.
    pub async fn check_durable(&self, allow_volatile: bool) -> Result<()> {
        let mut redis = self.redis.clone();
        let aof: Vec<String> = redis::cmd("CONFIG")
            .arg("GET")
            .arg("append*")
            .query_async(&mut redis)
            .await
            .map_err(flotilla_storage::Error::from)?;
        let setting = |name: &str| {
            aof.chunks(2)
                .find(|pair| pair[0] == name)
                .and_then(|pair| pair.get(1))
                .cloned()
                .unwrap_or_default()
        };
        if setting("appendonly") == "yes" && setting("appendfsync") == "always" {
            return Ok(());
        }
        let problem = "the log's Redis does not run with appendonly yes and appendfsync always: \
                       an acknowledged batch could be lost in a crash";
        match allow_volatile {
            true => {
                tracing::warn!("{problem}");
                Ok(())
            }
            false => Err(Error::Config(problem.into())),
        }
    }

    /// Appends `events` to `shard`; durable once this returns (see [`RedisLog::check_durable`]).
    pub async fn append(&self, shard: u32, events: &[Stored]) -> Result<Offset> {
        let payload = serde_json::to_vec(events).map_err(|e| Error::Internal(e.to_string()))?;
        let mut redis = self.redis.clone();
        let offset: String = redis
            .xadd(self.key(shard), "*", &[("e", payload)])
            .await
            .map_err(flotilla_storage::Error::from)?;
        Ok(offset)
    }

    /// Up to `max` records of `shard` after `after`, waiting up to `wait` for the first.
    pub async fn read(
        &self,
        reader: &mut Reader,
        shard: u32,
        after: &str,
        max: usize,
        wait: Duration,
    ) -> Result<Vec<Record>> {
        let options = StreamReadOptions::default()
            .count(max)
            .block(wait.as_millis() as usize);
        let reply: Option<StreamReadReply> = reader
            .connection
            .xread_options(&[self.key(shard)], &[after], &options)
            .await
            .map_err(flotilla_storage::Error::from)?;
        let mut records = Vec::new();
        for stream in reply.map(|reply| reply.keys).unwrap_or_default() {
            for entry in stream.ids {
                let payload: Vec<u8> = entry
                    .get("e")
                    .ok_or_else(|| Error::Internal(format!("log entry {} has no events", entry.id)))?;
                let events = serde_json::from_slice(&payload)
                    .map_err(|e| Error::Internal(format!("log entry {}: {e}", entry.id)))?;
                records.push(Record {
                    offset: entry.id,
                    events,
                });
            }
        }
        Ok(records)
    }

    /// The offset of the newest record of `shard` (`START` when it has none).
    pub async fn end(&self, shard: u32) -> Result<Offset> {
        let mut redis = self.redis.clone();
        let newest: redis::streams::StreamRangeReply = redis
            .xrevrange_count(self.key(shard), "+", "-", 1)
            .await
            .map_err(flotilla_storage::Error::from)?;
        Ok(newest
            .ids
            .into_iter()
            .next()
            .map_or_else(|| START.to_owned(), |entry| entry.id))
    }

    /// Drops the records of `shard` up to and including `upto`: they are committed.
    pub async fn trim(&self, shard: u32, upto: &str) -> Result<()> {
        // MINID keeps entries >= the id given: the one just after `upto`.
        let Some((ms, seq)) = upto.split_once('-') else {
            return Ok(());
        };
        let next = format!("{ms}-{}", seq.parse::<u64>().unwrap_or(0).saturating_add(1));
        let mut redis = self.redis.clone();
        let _: i64 = redis::cmd("XTRIM")
            .arg(self.key(shard))
            .arg("MINID")
            .arg(next)
            .query_async(&mut redis)
            .await
            .map_err(flotilla_storage::Error::from)?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_player_always_lands_on_the_same_shard_and_players_spread() {
        assert_eq!(shard_of("player-1", 8), shard_of("player-1", 8));
        let mut counts = [0usize; 8];
        for n in 0..8000 {
            counts[shard_of(&format!("player-{n}"), 8) as usize] += 1;
        }
        assert!(
            counts.iter().all(|&count| (800..1200).contains(&count)),
            "{counts:?}"
        );
    }
}
