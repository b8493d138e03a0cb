//! Rate limits shared by every replica, kept in Redis.
//!
//! The algorithm is GCRA (the generic cell rate algorithm): each key stores one timestamp, its
//! *theoretical arrival time*, and a limit of `max` per `window` admits a burst of `max` and then
//! one attempt every `window / max` as the burst drains. Unlike a fixed window it never admits two
//! full bursts back to back at a window boundary, and unlike a log of attempts it costs one small
//! key per client whatever `max` is. The whole decision is one Lua script on the Redis server's
//! clock, so concurrent replicas (and their clock skew) cannot let extra attempts through.
//!
//! Refused attempts are not counted: a client that waits `retry_after` is then admitted, which
//! keeps the advertised delay honest.
//!
//! Keys are often email or IP addresses, which must not sit in Redis key names: the key name holds
//! a truncated SHA-256 of them. Being unsalted, the hash hides them from a casual `KEYS` or `MONITOR`,
//! not from someone who guesses an address and hashes it.

use std::{sync::LazyLock, time::Duration};

use base64::{Engine as _, engine::general_purpose::URL_SAFE_NO_PAD};
use redis::{AsyncCommands, Script, aio::ConnectionManager};
use ring::digest::{SHA256, digest};

use crate::Result;

#[derive(Clone, Copy, Debug)]
pub struct Limit {
    pub max: u32,
    pub window: Duration,
}

/// One limit an attempt is counted against: `key`'s attempts in `bucket` (one bucket per kind of
/// action, each with its own limit).
#[derive(Clone, Copy, Debug)]
pub struct Check<'a> {
    pub bucket: &'static str,
    pub key: &'a str,
    pub limit: Limit,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Decision {
    /// Admitted; `remaining` more attempts would be admitted right now.
    Allowed { remaining: u32 },
    /// Refused (and not counted); the next attempt is admitted after `retry_after`.
    Limited { retry_after: Duration },
}

/// KEYS[i] each key's arrival time (µs); ARGV[2i-1] its emission interval and ARGV[2i] its burst
/// allowance (max × interval), both µs. Every key is checked before any is written, so an attempt
/// refused by one limit counts against none. Returns {1, fewest remaining} or {0, µs until every
/// limit allows}.
static CHECK: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r"
local time = redis.call('TIME')
local now = tonumber(time[1]) * 1000000 + tonumber(time[2])
local aheads = {}
local wait = 0
local remaining = nil
for i, key in ipairs(KEYS) do
  local interval = tonumber(ARGV[2 * i - 1])
  local burst = tonumber(ARGV[2 * i])
  local tat = tonumber(redis.call('GET', key)) or now
  if tat < now then tat = now end
  local ahead = tat + interval - now
  aheads[i] = ahead
  if ahead > burst then
    wait = math.max(wait, ahead - burst)
  else
    local left = math.floor((burst - ahead) / interval)
    if remaining == nil or left < remaining then remaining = left end
  end
end
if wait > 0 then return {0, wait} end
for i, key in ipairs(KEYS) do
  redis.call('SET', key, string.format('%.0f', now + aheads[i]), 'PX', math.ceil(aheads[i] / 1000))
end
return {1, remaining}
",
    )
});

/// Lua numbers are doubles: keeping every duration below 2^52 µs (143 years) keeps its arithmetic
/// exact.
const MAX_MICROS: u64 = 1 << 52;

#[derive(Clone)]
pub struct RateLimiter {
    redis: ConnectionManager,
}

impl RateLimiter {
    pub fn new(redis: ConnectionManager) -> Self {
        Self { redis }
    }

    fn key(bucket: &str, key: &str) -> String {
        let hash = digest(&SHA256, key.as_bytes());
        // 128 bits: collisions between two clients' keys are out of reach.
        let hash = URL_SAFE_NO_PAD.encode(&hash.as_ref()[..16]);
        format!("flotilla:ratelimit:{bucket}:{hash}")
    }

    /// Counts an attempt by `key` against `limit` in `bucket` (one bucket per kind of action, each
    /// with its own limit), if it is admitted.
    pub async fn check(&self, bucket: &'static str, key: &str, limit: Limit) -> Result<Decision> {
        self.check_all(&[Check { bucket, key, limit }]).await
    }

    /// Counts one attempt against several limits at once (a sign-in against its account and its
    /// address, say), in one round trip: it is admitted only if every limit admits it, and then
    /// counts against each; if any refuses it counts against none.
    pub async fn check_all(&self, checks: &[Check<'_>]) -> Result<Decision> {
        let mut script = CHECK.prepare_invoke();
        // A limit of zero refuses without asking Redis; the longest such window is the wait.
        let mut refused: Option<Duration> = None;
        for check in checks {
            let window = u64::try_from(check.limit.window.as_micros())
                .unwrap_or(u64::MAX)
                .min(MAX_MICROS);
            if check.limit.max == 0 {
                refused = refused.max(Some(Duration::from_micros(window)));
                continue;
            }
            // Rounded up, so the limit errs on the strict side by at most a microsecond per attempt.
            let interval = window.div_ceil(u64::from(check.limit.max)).max(1);
            let burst = interval
                .saturating_mul(u64::from(check.limit.max))
                .min(MAX_MICROS);
            script
                .key(Self::key(check.bucket, check.key))
                .arg(interval)
                .arg(burst);
        }
        if let Some(retry_after) = refused {
            return Ok(Decision::Limited { retry_after });
        }
        if checks.is_empty() {
            return Ok(Decision::Allowed { remaining: u32::MAX });
        }
        let mut redis = self.redis.clone();
        let (allowed, value): (i64, i64) = script.invoke_async(&mut redis).await?;
        let value = u64::try_from(value).unwrap_or(0);
        Ok(if allowed == 1 {
            Decision::Allowed {
                remaining: u32::try_from(value).unwrap_or(u32::MAX),
            }
        } else {
            Decision::Limited {
                retry_after: Duration::from_micros(value),
            }
        })
    }

    /// Forgets every attempt by `key` in `bucket` (after a successful login, say).
    pub async fn reset(&self, bucket: &'static str, key: &str) -> Result<()> {
        let mut redis = self.redis.clone();
        redis.del::<_, ()>(Self::key(bucket, key)).await?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::RateLimiter;

    #[test]
    fn key_names_hold_a_hash_not_the_key() {
        let name = RateLimiter::key("login", "alice@example.com");
        assert!(name.starts_with("flotilla:ratelimit:login:"), "{name}");
        assert!(!name.contains("alice"), "{name}");
        assert_eq!(name.len(), "flotilla:ratelimit:login:".len() + 22, "{name}");
        assert_ne!(name, RateLimiter::key("login", "alice@example.org"));
    }
}
