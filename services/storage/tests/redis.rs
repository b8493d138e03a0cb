//! The Redis parts of the storage layer (cache, presence, rate limits, pub/sub) against a real
//! redis-server: start one with `e2e/storage/up.sh` and export its env file. Every test works under
//! its own random names, so tests run in parallel and beside other users of the same server.

use std::{
    collections::HashSet,
    sync::{
        LazyLock,
        atomic::{AtomicU32, Ordering},
    },
    time::{Duration, Instant},
};

use flotilla_storage::{
    cache::{Cache, CacheMetrics},
    presence::{Presence, PresenceEntry},
    pubsub::{Bus, Message},
    rate_limit::{Check, Decision, Limit, RateLimiter},
};
use futures::{Stream, StreamExt};
use prometheus_client::registry::Registry;
use redis::{AsyncCommands, aio::ConnectionManager};
use ring::rand::{SecureRandom, SystemRandom};
use serde::{Deserialize, Serialize};
use tokio::sync::RwLock;

fn redis_url() -> String {
    std::env::var("FLOTILLA_REDIS_URL").unwrap_or_else(|_| {
        panic!("FLOTILLA_REDIS_URL is not set: run e2e/storage/up.sh and source its env file")
    })
}

async fn redis() -> ConnectionManager {
    let url = redis_url();
    redis::Client::open(url.as_str())
        .expect("FLOTILLA_REDIS_URL is a redis url")
        .get_connection_manager()
        .await
        .unwrap_or_else(|error| panic!("cannot connect to redis at {url}: {error}"))
}

/// A name no other test (or run) uses.
fn unique(what: &str) -> String {
    let mut random = [0u8; 6];
    SystemRandom::new().fill(&mut random).expect("randomness");
    let suffix: String = random.iter().map(|byte| format!("{byte:02x}")).collect();
    format!("test-{what}-{suffix}")
}

/// Cache names and rate-limit buckets are `&'static str` (fixed in services); tests make theirs.
fn leak(name: String) -> &'static str {
    Box::leak(name.into_boxed_str())
}

async fn exists(redis: &mut ConnectionManager, key: &str) -> bool {
    redis.exists(key).await.expect("EXISTS")
}

// --- cache ----------------------------------------------------------------------------------

#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
struct Player {
    name: String,
    level: u32,
}

fn player(name: &str, level: u32) -> Player {
    Player {
        name: name.to_owned(),
        level,
    }
}

struct CacheFixture {
    cache: Cache,
    name: &'static str,
    registry: Registry,
    redis: ConnectionManager,
}

async fn cache_fixture(ttl: Duration) -> CacheFixture {
    let redis = redis().await;
    let mut registry = Registry::default();
    let metrics = CacheMetrics::register(&mut registry);
    let name = leak(unique("cache"));
    CacheFixture {
        cache: Cache::new(redis.clone(), name, ttl, metrics),
        name,
        registry,
        redis,
    }
}

impl CacheFixture {
    fn count(&self, result: &str) -> u64 {
        let mut text = String::new();
        prometheus_client::encoding::text::encode(&mut text, &self.registry).expect("encode metrics");
        let series = format!(
            "flotilla_cache_requests_total{{cache=\"{}\",result=\"{result}\"}} ",
            self.name
        );
        text.lines()
            .find_map(|line| line.strip_prefix(&series))
            .map_or(0, |value| value.parse().expect("a counter value"))
    }

    fn entry(&self, key: &str) -> String {
        format!("flotilla:cache:{}:{key}", self.name)
    }
}

#[tokio::test]
async fn cache_loads_on_a_miss_and_serves_hits_without_loading() {
    let fixture = cache_fixture(Duration::from_secs(60)).await;
    let loads = AtomicU32::new(0);
    let load = || async {
        loads.fetch_add(1, Ordering::SeqCst);
        Ok(Some(player("alice", 3)))
    };

    let first = fixture.cache.get_or_load("p1", load).await.expect("first lookup");
    let second = fixture
        .cache
        .get_or_load("p1", load)
        .await
        .expect("second lookup");

    assert_eq!(first, Some(player("alice", 3)));
    assert_eq!(second, first);
    assert_eq!(loads.load(Ordering::SeqCst), 1, "the second lookup must be a hit");
    assert_eq!(
        (
            fixture.count("miss"),
            fixture.count("hit"),
            fixture.count("error")
        ),
        (1, 1, 0)
    );
    let mut redis = fixture.redis.clone();
    assert!(
        exists(&mut redis, &fixture.entry("p1")).await,
        "entries live under flotilla:cache:{{name}}:{{key}}"
    );
}

#[tokio::test]
async fn cache_entries_expire_after_the_ttl() {
    let fixture = cache_fixture(Duration::from_secs(30)).await;
    fixture
        .cache
        .get_or_load("p1", || async { Ok(Some(player("alice", 1))) })
        .await
        .expect("lookup");

    let mut redis = fixture.redis.clone();
    let ttl_ms: i64 = redis.pttl(fixture.entry("p1")).await.expect("PTTL");
    assert!((1..=30_000).contains(&ttl_ms), "entry ttl {ttl_ms} ms");
}

#[tokio::test]
async fn an_invalidated_entry_is_loaded_again() {
    let fixture = cache_fixture(Duration::from_secs(60)).await;
    fixture
        .cache
        .get_or_load("p1", || async { Ok(Some(player("alice", 1))) })
        .await
        .expect("first lookup");

    fixture.cache.invalidate("p1").await.expect("invalidate");
    let after = fixture
        .cache
        .get_or_load("p1", || async { Ok(Some(player("alice", 2))) })
        .await
        .expect("lookup");
    let cached = fixture
        .cache
        .get_or_load("p1", || async { Ok(Some(player("stale", 0))) })
        .await
        .expect("lookup");

    assert_eq!(after, Some(player("alice", 2)));
    assert_eq!(cached, Some(player("alice", 2)), "the reloaded value is cached");
}

#[tokio::test]
async fn a_load_overlapping_a_write_and_invalidation_does_not_cache_its_stale_value() {
    let fixture = cache_fixture(Duration::from_secs(60)).await;
    let cache = fixture.cache.clone();

    // The reader loads the old value; before it returns, a writer updates the database and
    // invalidates the key.
    let stale = fixture
        .cache
        .get_or_load("p1", || async move {
            let old = player("alice", 1);
            cache.invalidate("p1").await?;
            Ok(Some(old))
        })
        .await
        .expect("racing lookup");
    assert_eq!(
        stale,
        Some(player("alice", 1)),
        "the reader itself still gets what it loaded"
    );

    let mut redis = fixture.redis.clone();
    assert!(
        !exists(&mut redis, &fixture.entry("p1")).await,
        "the stale value must not be stored"
    );
    let next = fixture
        .cache
        .get_or_load("p1", || async { Ok(Some(player("alice", 2))) })
        .await
        .expect("lookup");
    assert_eq!(next, Some(player("alice", 2)));
}

#[tokio::test]
async fn a_reader_that_misses_while_another_loads_does_not_overwrite_it() {
    let fixture = cache_fixture(Duration::from_secs(60)).await;
    let (loading_tx, loading_rx) = tokio::sync::oneshot::channel::<()>();
    let (release_tx, release_rx) = tokio::sync::oneshot::channel::<()>();
    let first = {
        let cache = fixture.cache.clone();
        tokio::spawn(async move {
            cache
                .get_or_load("p1", || async move {
                    loading_tx.send(()).expect("the test waits for the load");
                    release_rx.await.expect("the test releases the load");
                    Ok(Some(player("first", 1)))
                })
                .await
        })
    };
    loading_rx.await.expect("first reader is loading");

    let second = fixture
        .cache
        .get_or_load("p1", || async { Ok(Some(player("second", 1))) })
        .await;
    release_tx.send(()).expect("first reader waits");
    let first = first.await.expect("first reader").expect("first lookup");

    assert_eq!(second.expect("second lookup"), Some(player("second", 1)));
    assert_eq!(first, Some(player("first", 1)));
    let cached = fixture
        .cache
        .get_or_load("p1", || async { Ok(Some(player("third", 1))) })
        .await;
    assert_eq!(
        cached.expect("lookup"),
        Some(player("first", 1)),
        "the lease holder fills the entry"
    );
    assert_eq!((fixture.count("miss"), fixture.count("hit")), (2, 1));
}

#[tokio::test]
async fn a_missing_value_is_not_cached() {
    let fixture = cache_fixture(Duration::from_secs(60)).await;
    let none = fixture
        .cache
        .get_or_load::<Player, _, _>("p1", || async { Ok(None) })
        .await
        .expect("lookup");
    let created = fixture
        .cache
        .get_or_load("p1", || async { Ok(Some(player("alice", 1))) })
        .await;

    assert_eq!(none, None);
    assert_eq!(
        created.expect("lookup"),
        Some(player("alice", 1)),
        "a player created since is found at once"
    );
}

#[tokio::test]
async fn a_loader_error_is_returned_and_not_cached() {
    let fixture = cache_fixture(Duration::from_secs(60)).await;
    let failed = fixture
        .cache
        .get_or_load::<Player, _, _>("p1", || async { Err(flotilla_storage::Error::BadCursor) })
        .await;
    assert!(
        matches!(failed, Err(flotilla_storage::Error::BadCursor)),
        "{failed:?}"
    );

    let mut redis = fixture.redis.clone();
    assert!(
        !exists(&mut redis, &fixture.entry("p1")).await,
        "the lease is given back"
    );
}

#[tokio::test]
async fn a_redis_error_on_lookup_falls_back_to_the_loader() {
    let fixture = cache_fixture(Duration::from_secs(60)).await;
    let mut redis = fixture.redis.clone();
    // GET on a hash fails with WRONGTYPE: a Redis error without taking Redis down.
    redis
        .hset::<_, _, _, ()>(fixture.entry("p1"), "field", "value")
        .await
        .expect("HSET");

    let found = fixture
        .cache
        .get_or_load("p1", || async { Ok(Some(player("alice", 1))) })
        .await;

    assert_eq!(found.expect("the loader answers"), Some(player("alice", 1)));
    assert_eq!((fixture.count("error"), fixture.count("miss")), (1, 0));
}

#[tokio::test]
async fn an_entry_this_build_cannot_decode_is_replaced() {
    let fixture = cache_fixture(Duration::from_secs(60)).await;
    let mut redis = fixture.redis.clone();
    redis
        .set::<_, _, ()>(fixture.entry("p1"), br#"v{"nom":"alice"}"#)
        .await
        .expect("SET");

    let loaded = fixture
        .cache
        .get_or_load("p1", || async { Ok(Some(player("alice", 1))) })
        .await;
    let cached = fixture
        .cache
        .get_or_load("p1", || async { Ok(Some(player("other", 9))) })
        .await;

    assert_eq!(loaded.expect("lookup"), Some(player("alice", 1)));
    assert_eq!(cached.expect("lookup"), Some(player("alice", 1)));
    assert_eq!(
        (
            fixture.count("error"),
            fixture.count("miss"),
            fixture.count("hit")
        ),
        (1, 0, 1)
    );
}

// --- presence -------------------------------------------------------------------------------

fn entry(status: &str, updated_ms: i64) -> PresenceEntry {
    PresenceEntry {
        status: status.to_owned(),
        payload: serde_json::json!({ "status": status }),
        updated_ms,
    }
}

#[tokio::test]
async fn a_player_with_two_connections_shows_the_latest_until_both_leave() {
    let presence = Presence::new(redis().await, Duration::from_secs(30));
    let player = unique("player");

    presence
        .set(&player, "phone", &entry("in-menu", 100))
        .await
        .expect("set phone");
    presence
        .set(&player, "desktop", &entry("in-match", 200))
        .await
        .expect("set desktop");
    assert_eq!(
        presence.get(&player).await.expect("get"),
        Some(entry("in-match", 200))
    );

    presence
        .set(&player, "phone", &entry("in-lobby", 300))
        .await
        .expect("update phone");
    assert_eq!(
        presence.get(&player).await.expect("get"),
        Some(entry("in-lobby", 300))
    );

    presence.remove(&player, "phone").await.expect("remove phone");
    assert_eq!(
        presence.get(&player).await.expect("get"),
        Some(entry("in-match", 200))
    );

    presence.remove(&player, "desktop").await.expect("remove desktop");
    assert_eq!(presence.get(&player).await.expect("get"), None);
    presence
        .remove(&player, "desktop")
        .await
        .expect("removing twice is fine");
}

#[tokio::test]
async fn a_connection_that_stops_refreshing_goes_offline_after_its_ttl() {
    let ttl = Duration::from_secs(1);
    let presence = Presence::new(redis().await, ttl);
    let player = unique("player");

    // The crashed replica's connection has the newest entry, so it would win while alive.
    presence
        .set(&player, "alive", &entry("online", 100))
        .await
        .expect("set alive");
    presence
        .set(&player, "crashed", &entry("in-match", 200))
        .await
        .expect("set crashed");
    assert_eq!(
        presence.get(&player).await.expect("get"),
        Some(entry("in-match", 200))
    );

    let deadline = Instant::now() + ttl + Duration::from_millis(500);
    while Instant::now() < deadline {
        assert!(
            presence.refresh(&player, "alive").await.expect("refresh"),
            "a refreshed entry stays alive"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert_eq!(
        presence.get(&player).await.expect("get"),
        Some(entry("online", 100))
    );
    assert!(
        !presence.refresh(&player, "crashed").await.expect("refresh"),
        "a lapsed entry is not revived"
    );
    assert_eq!(
        presence.get(&player).await.expect("get"),
        Some(entry("online", 100))
    );

    tokio::time::sleep(ttl + Duration::from_millis(300)).await;
    assert_eq!(presence.get(&player).await.expect("get"), None);
    let mut redis = redis().await;
    assert!(
        !exists(&mut redis, &format!("flotilla:presence:{player}")).await,
        "nothing is left behind"
    );
}

#[tokio::test]
async fn refresh_does_not_revive_a_removed_connection() {
    let presence = Presence::new(redis().await, Duration::from_secs(30));
    let player = unique("player");
    assert!(!presence.refresh(&player, "never-set").await.expect("refresh"));

    presence
        .set(&player, "phone", &entry("online", 1))
        .await
        .expect("set");
    assert!(presence.refresh(&player, "phone").await.expect("refresh"));
    presence.remove(&player, "phone").await.expect("remove");
    assert!(!presence.refresh(&player, "phone").await.expect("refresh"));
    assert_eq!(presence.get(&player).await.expect("get"), None);
}

#[tokio::test]
async fn refresh_many_answers_each_connection_in_order_across_batches() {
    let presence = Presence::new(redis().await, Duration::from_secs(30));
    let base = unique("player");
    // 250 connections, more than two batches: every third one never set, every fifth removed.
    let mut connections = Vec::new();
    let mut expected = Vec::new();
    for i in 0..250_i64 {
        let (player, connection) = (format!("{base}-{}", i % 40), format!("c{i}"));
        let live = i % 3 != 0 && i % 5 != 0;
        if i % 3 != 0 {
            presence
                .set(&player, &connection, &entry("online", i))
                .await
                .expect("set");
        }
        if i % 3 != 0 && i % 5 == 0 {
            presence.remove(&player, &connection).await.expect("remove");
        }
        connections.push((player, connection));
        expected.push(live);
    }
    assert_eq!(
        presence.refresh_many(&connections).await.expect("refresh_many"),
        expected
    );
    assert_eq!(
        presence.refresh_many(&[]).await.expect("nothing"),
        Vec::<bool>::new()
    );
}

#[tokio::test]
async fn get_many_returns_only_the_online_players() {
    let presence = Presence::new(redis().await, Duration::from_secs(30));
    let base = unique("player");
    // More than one batch of the script, with duplicates and unknown players mixed in.
    let players: Vec<String> = (0..250).map(|i| format!("{base}-{i}")).collect();
    for (i, player) in players.iter().enumerate().filter(|(i, _)| i % 2 == 0) {
        let updated = i64::try_from(i).expect("small");
        presence
            .set(player, "c1", &entry("online", updated))
            .await
            .expect("set");
        presence
            .set(player, "c2", &entry("away", updated + 1000))
            .await
            .expect("set");
    }
    presence
        .set(&players[1], "c1", &entry("online", 1))
        .await
        .expect("set");
    presence.remove(&players[1], "c1").await.expect("remove");

    let mut asked = players.clone();
    asked.push(players[0].clone());
    asked.push(format!("{base}-unknown"));
    let online = presence.get_many(&asked).await.expect("get_many");

    assert_eq!(online.len(), 125);
    for (i, player) in players.iter().enumerate() {
        let expected = (i % 2 == 0).then(|| entry("away", i64::try_from(i).expect("small") + 1000));
        assert_eq!(online.get(player), expected.as_ref(), "player {i}");
    }
    assert!(
        presence
            .get_many(&[])
            .await
            .expect("get_many of nobody")
            .is_empty()
    );
}

// --- rate limits ----------------------------------------------------------------------------

#[tokio::test]
async fn a_limit_admits_max_attempts_then_refuses_with_a_sane_retry_after() {
    let limiter = RateLimiter::new(redis().await);
    let bucket = leak(unique("login"));
    let limit = Limit {
        max: 5,
        window: Duration::from_secs(10),
    };

    for remaining in (0..5).rev() {
        assert_eq!(
            limiter
                .check(bucket, "alice@example.com", limit)
                .await
                .expect("check"),
            Decision::Allowed { remaining }
        );
    }
    let Decision::Limited { retry_after } = limiter
        .check(bucket, "alice@example.com", limit)
        .await
        .expect("check")
    else {
        panic!("the sixth attempt must be limited");
    };
    // One attempt drains every window / max = 2 s.
    assert!(
        retry_after > Duration::from_secs(1) && retry_after <= Duration::from_secs(2),
        "{retry_after:?}"
    );

    assert_eq!(
        limiter
            .check(bucket, "bob@example.com", limit)
            .await
            .expect("check"),
        Decision::Allowed { remaining: 4 },
        "keys are limited separately"
    );
    let other_bucket = leak(unique("chat"));
    assert_eq!(
        limiter
            .check(other_bucket, "alice@example.com", limit)
            .await
            .expect("check"),
        Decision::Allowed { remaining: 4 },
        "buckets are limited separately"
    );
}

#[tokio::test]
async fn the_window_slides_instead_of_resetting_at_a_boundary() {
    let limiter = RateLimiter::new(redis().await);
    let bucket = leak(unique("slide"));
    let limit = Limit {
        max: 2,
        window: Duration::from_secs(4),
    };
    let check = || limiter.check(bucket, "203.0.113.7", limit);

    assert_eq!(check().await.expect("check"), Decision::Allowed { remaining: 1 });
    assert_eq!(check().await.expect("check"), Decision::Allowed { remaining: 0 });
    let Decision::Limited { retry_after } = check().await.expect("check") else {
        panic!("the third attempt must be limited");
    };
    assert!(retry_after <= Duration::from_secs(2), "{retry_after:?}");

    // Half a window later one attempt has drained, not the whole window: a fixed window would now
    // admit two more. (The margins allow for a slow machine: the next attempt drains 2 s later.)
    tokio::time::sleep(retry_after + Duration::from_millis(100)).await;
    assert_eq!(check().await.expect("check"), Decision::Allowed { remaining: 0 });
    assert!(matches!(check().await.expect("check"), Decision::Limited { .. }));

    tokio::time::sleep(Duration::from_millis(4100)).await;
    assert_eq!(
        check().await.expect("check"),
        Decision::Allowed { remaining: 1 },
        "a full window drains all"
    );
}

#[tokio::test]
async fn concurrent_attempts_from_many_replicas_admit_exactly_max() {
    let bucket = leak(unique("burst"));
    let limit = Limit {
        max: 10,
        window: Duration::from_secs(60),
    };
    let mut replicas = Vec::new();
    for _ in 0..4 {
        replicas.push(RateLimiter::new(redis().await));
    }

    let attempts = (0..40).map(|i| {
        let limiter = replicas[i % replicas.len()].clone();
        tokio::spawn(async move { limiter.check(bucket, "198.51.100.1", limit).await })
    });
    let mut allowed = 0;
    for attempt in futures::future::join_all(attempts).await {
        if let Decision::Allowed { .. } = attempt.expect("task").expect("check") {
            allowed += 1;
        }
    }
    assert_eq!(allowed, 10);
}

#[tokio::test]
async fn an_attempt_against_several_limits_counts_against_all_or_none() {
    let limiter = RateLimiter::new(redis().await);
    let (account, address) = (leak(unique("account")), leak(unique("address")));
    let tight = Limit {
        max: 1,
        window: Duration::from_secs(60),
    };
    let loose = Limit {
        max: 3,
        window: Duration::from_secs(60),
    };
    let both = |who: &'static str| {
        [
            Check {
                bucket: account,
                key: who,
                limit: tight,
            },
            Check {
                bucket: address,
                key: "192.0.2.1",
                limit: loose,
            },
        ]
    };

    assert_eq!(
        limiter.check_all(&both("frank")).await.expect("check"),
        Decision::Allowed { remaining: 0 },
        "the fewest remaining of the two"
    );
    for _ in 0..3 {
        assert!(matches!(
            limiter.check_all(&both("frank")).await.expect("check"),
            Decision::Limited { .. }
        ));
    }
    // The account limit refused those three, so the address limit did not count them: one of its
    // three has been used, two remain.
    assert_eq!(
        limiter.check(address, "192.0.2.1", loose).await.expect("check"),
        Decision::Allowed { remaining: 1 }
    );
    assert_eq!(
        limiter.check_all(&both("grace")).await.expect("check"),
        Decision::Allowed { remaining: 0 }
    );
    let Decision::Limited { retry_after } = limiter.check_all(&both("heidi")).await.expect("check") else {
        panic!("the address limit is spent");
    };
    assert!(retry_after > Duration::from_secs(10), "{retry_after:?}");
    assert_eq!(
        limiter.check(account, "heidi", tight).await.expect("check"),
        Decision::Allowed { remaining: 0 },
        "refused by the address limit, the attempt did not count against heidi's account"
    );
}

#[tokio::test]
async fn reset_forgets_every_attempt() {
    let limiter = RateLimiter::new(redis().await);
    let bucket = leak(unique("reset"));
    let limit = Limit {
        max: 1,
        window: Duration::from_secs(60),
    };

    assert_eq!(
        limiter.check(bucket, "carol", limit).await.expect("check"),
        Decision::Allowed { remaining: 0 }
    );
    assert!(matches!(
        limiter.check(bucket, "carol", limit).await.expect("check"),
        Decision::Limited { .. }
    ));
    limiter.reset(bucket, "carol").await.expect("reset");
    assert_eq!(
        limiter.check(bucket, "carol", limit).await.expect("check"),
        Decision::Allowed { remaining: 0 }
    );
}

#[tokio::test]
async fn a_zero_limit_refuses_everything() {
    let limiter = RateLimiter::new(redis().await);
    let limit = Limit {
        max: 0,
        window: Duration::from_secs(5),
    };
    assert_eq!(
        limiter.check("test-zero", "dave", limit).await.expect("check"),
        Decision::Limited {
            retry_after: Duration::from_secs(5)
        }
    );
}

#[tokio::test]
async fn redis_key_names_hold_a_hash_of_the_key_not_the_key() {
    let limiter = RateLimiter::new(redis().await);
    let bucket = leak(unique("privacy"));
    let email = format!("{}@example.com", unique("erin"));
    let limit = Limit {
        max: 3,
        window: Duration::from_secs(60),
    };
    limiter.check(bucket, &email, limit).await.expect("check");

    let mut redis = redis().await;
    let keys: Vec<String> = redis
        .keys(format!("flotilla:ratelimit:{bucket}:*"))
        .await
        .expect("KEYS");
    assert_eq!(keys.len(), 1, "{keys:?}");
    let local_part = email.split('@').next().expect("an address");
    assert!(
        !keys[0].contains(local_part) && !keys[0].contains("example.com"),
        "{keys:?}"
    );
    let everything: Vec<String> = redis.keys("*").await.expect("KEYS");
    assert!(
        !everything.iter().any(|key| key.contains(local_part)),
        "the address appears in a key name"
    );
}

// --- pub/sub --------------------------------------------------------------------------------

/// The reconnection test kills its subscription's connection, found as the pub/sub client that
/// appeared while it subscribed: other pub/sub tests hold this lock shared, so none subscribes then.
static PUBSUB: LazyLock<RwLock<()>> = LazyLock::new(|| RwLock::new(()));

async fn bus(namespace: &str) -> Bus {
    Bus::connect(&redis_url(), namespace)
        .await
        .expect("connect the bus")
}

async fn next(messages: &mut (impl Stream<Item = Message> + Unpin), within: Duration) -> Option<Message> {
    tokio::time::timeout(within, messages.next()).await.ok().flatten()
}

fn message(topic: &str, payload: &[u8]) -> Message {
    Message {
        topic: topic.to_owned(),
        payload: payload.to_vec(),
    }
}

#[tokio::test]
async fn a_message_reaches_every_replica_of_the_namespace() {
    let _shared = PUBSUB.read().await;
    let namespace = unique("bus");
    let (replica_a, replica_b) = (bus(&namespace).await, bus(&namespace).await);
    let mut on_a = Box::pin(replica_a.subscribe_ready().await.expect("subscribe a"));
    let mut on_b = Box::pin(replica_b.subscribe_ready().await.expect("subscribe b"));

    replica_a.publish("player.updated", b"p1").await.expect("publish");
    replica_b
        .publish("match:found/eu*", &[0, 159, 146, 150])
        .await
        .expect("publish");

    for messages in [&mut on_a, &mut on_b] {
        assert_eq!(
            next(messages, Duration::from_secs(5)).await,
            Some(message("player.updated", b"p1"))
        );
        assert_eq!(
            next(messages, Duration::from_secs(5)).await,
            Some(message("match:found/eu*", &[0, 159, 146, 150])),
            "topics may hold any character and payloads any byte"
        );
    }
}

#[tokio::test]
async fn namespaces_do_not_see_each_others_messages() {
    let _shared = PUBSUB.read().await;
    let namespace = unique("bus");
    let mine = bus(&namespace).await;
    let mut messages = Box::pin(mine.subscribe_ready().await.expect("subscribe"));
    // Names a naive `{namespace}:*` or `{namespace}*` pattern would match.
    for other in [
        format!("{namespace}:sub"),
        format!("{namespace}x"),
        format!("{namespace}*"),
    ] {
        bus(&other)
            .await
            .publish("topic", b"foreign")
            .await
            .expect("publish elsewhere");
    }
    let wildcard = bus("*").await;
    wildcard.publish("topic", b"foreign").await.expect("publish");
    let mut on_wildcard = Box::pin(wildcard.subscribe_ready().await.expect("subscribe"));

    mine.publish("topic", b"own").await.expect("publish");

    // Redis delivers in publish order, so anything foreign would arrive first.
    assert_eq!(
        next(&mut messages, Duration::from_secs(5)).await,
        Some(message("topic", b"own"))
    );
    assert_eq!(
        next(&mut on_wildcard, Duration::from_millis(300)).await,
        None,
        "`*` is not a wildcard"
    );
}

#[tokio::test]
async fn a_lazy_subscription_receives_once_polled() {
    let _shared = PUBSUB.read().await;
    let namespace = unique("bus");
    let bus = bus(&namespace).await;
    let mut messages = Box::pin(bus.subscribe());

    // Not subscribed until polled: publish until the subscription is live.
    let received = publish_until_received(&bus, &mut messages, "hello", Duration::from_secs(10)).await;
    assert_eq!(received, Some(message("hello", b"hello")));
}

/// Publishes `topic` every 100 ms until it arrives on `messages` (at-most-once delivery).
async fn publish_until_received(
    bus: &Bus,
    messages: &mut (impl Stream<Item = Message> + Unpin),
    topic: &str,
    within: Duration,
) -> Option<Message> {
    let deadline = Instant::now() + within;
    while Instant::now() < deadline {
        bus.publish(topic, topic.as_bytes()).await.expect("publish");
        if let Some(message) = next(messages, Duration::from_millis(100)).await {
            return Some(message);
        }
    }
    None
}

async fn pubsub_clients(redis: &mut ConnectionManager) -> HashSet<String> {
    let list: String = redis::cmd("CLIENT")
        .arg("LIST")
        .arg("TYPE")
        .arg("pubsub")
        .query_async(redis)
        .await
        .expect("CLIENT LIST");
    list.lines()
        .filter_map(|line| {
            line.split(' ')
                .find_map(|field| field.strip_prefix("id="))
                .map(str::to_owned)
        })
        .collect()
}

#[tokio::test]
async fn a_subscription_comes_back_after_its_connection_is_killed() {
    let _exclusive = PUBSUB.write().await;
    let namespace = unique("bus");
    let (subscriber, publisher) = (bus(&namespace).await, bus(&namespace).await);
    let mut redis = redis().await;

    let before = pubsub_clients(&mut redis).await;
    let mut messages = Box::pin(subscriber.subscribe_ready().await.expect("subscribe"));
    let ours: Vec<String> = pubsub_clients(&mut redis)
        .await
        .difference(&before)
        .cloned()
        .collect();
    assert_eq!(ours.len(), 1, "exactly one new pub/sub client: {ours:?}");

    publisher.publish("before", b"before").await.expect("publish");
    assert_eq!(
        next(&mut messages, Duration::from_secs(5)).await,
        Some(message("before", b"before"))
    );

    let killed: i64 = redis::cmd("CLIENT")
        .arg("KILL")
        .arg("ID")
        .arg(&ours[0])
        .query_async(&mut redis)
        .await
        .expect("CLIENT KILL");
    assert_eq!(killed, 1);

    // Messages published while it reconnects are lost; it must come back and receive later ones.
    let received = publish_until_received(&publisher, &mut messages, "after", Duration::from_secs(15)).await;
    assert_eq!(received, Some(message("after", b"after")));
    assert!(!pubsub_clients(&mut redis).await.contains(&ours[0]));
}

#[test]
fn storage_handles_can_be_shared_between_tasks() {
    fn shareable<T: Clone + Send + Sync + 'static>() {}
    shareable::<Cache>();
    shareable::<Presence>();
    shareable::<RateLimiter>();
    shareable::<Bus>();
}
