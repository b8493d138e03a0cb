//! `./x bench analytics`: the collector, the pipeline and the KPI engine, each against a limit
//! measured in the same run.
//!
//! 1. The log's own append ceiling: the same shard parts the collector writes, appended straight
//!    to the durable Redis (`appendfsync always`) by as many clients.
//! 2. The collector, collect-only, pinned to one core (`taskset`): 300-byte events in batches of
//!    100, acknowledged once durable. Events per second of wall time and per second of the
//!    process's own CPU time (from /proc), acknowledgement latency, and the ratio to the ceiling.
//! 3. The pipeline draining that backlog, then freshness under a steady load: acknowledged →
//!    in the live counters, and → in the KPI API.
//! 4. A D30 retention query over BENCH_KPI_EVENTS events (10 million) written straight to the
//!    event store.
//! 5. Exact counts over BENCH_EXACT_EVENTS events (a million) resent and SIGKILLed ([`exactness`]).

mod exactness;

use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use flotilla_analytics::event::Stored;
use flotilla_analytics::log::shard_of;
use flotilla_analytics::pipeline::Keys;
use flotilla_analytics::store::EventStore;
use serde_json::{Value, json};

const SERVICE_KEY: &str = "bench-service-key-0123456789";
const ADMIN_KEY: &str = "bench-admin-key-0123456789";
const BATCH: usize = 100;
const SHARDS: u32 = 8;

fn env_number(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn quantile(values: &mut [u64], q: f64) -> f64 {
    values.sort_unstable();
    let index = ((values.len() as f64 - 1.0) * q).round() as usize;
    values.get(index).copied().unwrap_or(0) as f64 / 1000.0
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|listener| listener.local_addr())
        .expect("a free port")
        .port()
}

/// One service process.
struct Service {
    child: Child,
    url: String,
}

impl Service {
    fn start(namespace: &str, data_dir: &std::path::Path, pipeline: bool, pin: Option<&str>) -> Self {
        Self::start_at(free_port(), namespace, data_dir, pipeline, pin)
    }

    fn start_at(
        port: u16,
        namespace: &str,
        data_dir: &std::path::Path,
        pipeline: bool,
        pin: Option<&str>,
    ) -> Self {
        let binary = env!("CARGO_BIN_EXE_flotilla-analytics");
        let mut command = match pin {
            Some(cpu) => {
                let mut command = Command::new("taskset");
                command.args(["-c", cpu, binary]);
                command
            }
            None => Command::new(binary),
        };
        let child = command
            .arg("serve")
            .env("FLOTILLA_ANALYTICS_ADDR", format!("127.0.0.1:{port}"))
            .env(
                "FLOTILLA_ANALYTICS_METRICS_ADDR",
                format!("127.0.0.1:{}", free_port()),
            )
            .env("FLOTILLA_ANALYTICS_DATA_DIR", data_dir)
            .env("FLOTILLA_NAMESPACE", namespace)
            .env("FLOTILLA_ANALYTICS_SHARDS", SHARDS.to_string())
            .env("FLOTILLA_ANALYTICS_PIPELINE", pipeline.to_string())
            .env("FLOTILLA_ANALYTICS_CHUNK_RECORDS", "500")
            // A killed replica's shards are taken over within seconds.
            .env("FLOTILLA_ANALYTICS_LEASE_SECONDS", "3")
            .env("FLOTILLA_ANALYTICS_MAX_EVENTS_PER_MINUTE", "1000000000")
            .env("FLOTILLA_PLAYER_TOKEN_KEYS", player_key())
            .env("FLOTILLA_SERVICE_KEY", SERVICE_KEY)
            .env("FLOTILLA_ANALYTICS_ADMIN_KEY", ADMIN_KEY)
            .env("POD_NAME", format!("bench-{port}"))
            .env("RUST_LOG", "warn")
            .stdout(Stdio::null())
            .spawn()
            .expect("flotilla-analytics");
        Self {
            child,
            url: format!("http://127.0.0.1:{port}"),
        }
    }

    async fn wait_ready(http: &reqwest::Client, url: &str) {
        for _ in 0..600 {
            if http.get(format!("{url}/v1/openapi.json")).send().await.is_ok() {
                return;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        panic!("the analytics service did not start");
    }

    /// User plus system CPU seconds the process has used.
    fn cpu_seconds(&self) -> f64 {
        let stat = std::fs::read_to_string(format!("/proc/{}/stat", self.child.id())).expect("stat");
        let fields: Vec<&str> = stat
            .rsplit_once(')')
            .expect("comm")
            .1
            .split_whitespace()
            .collect();
        let ticks: f64 =
            fields[11].parse::<f64>().expect("utime") + fields[12].parse::<f64>().expect("stime");
        ticks / clock_ticks()
    }

    /// SIGKILL: no chance to finish a chunk, release a lease or flush anything.
    fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Service {
    fn drop(&mut self) {
        self.kill();
    }
}

/// A player token key to start with (the bench sends with the service key only).
fn player_key() -> String {
    use flotilla_player::tokens::TokenKeys;
    let keys = TokenKeys::new(&TokenKeys::generate_pkcs8().expect("key"), &[]).expect("keys");
    keys.public_keys().join(",")
}

fn clock_ticks() -> f64 {
    let out = Command::new("getconf").arg("CLK_TCK").output().expect("getconf");
    String::from_utf8_lossy(&out.stdout)
        .trim()
        .parse()
        .unwrap_or(100.0)
}

/// A batch of 100 design events of about 300 bytes each, from `players` players.
fn batch(seed: u64, players: u64) -> Value {
    let time = jiff::Timestamp::now().to_string();
    let events: Vec<Value> = (0..BATCH as u64)
        .map(|n| {
            let id = seed * BATCH as u64 + n;
            let player = format!("player-{:06}", (id * 7919) % players);
            json!({"id": format!("e{id:012}"), "name": "design", "player": player, "session": format!("s-{player}"),
                   "time": time, "properties": {"event": "level:enter:forest", "value": 1, "build": "1.4.2",
                   "platform": "android", "pad": "x".repeat(96)}})
        })
        .collect();
    json!({"events": events})
}

/// The shard parts the collector would append for a batch, as the log stores them.
fn shard_parts(batch: &Value) -> Vec<(u32, Vec<u8>)> {
    let now = flotilla_storage::mongo::now_ms();
    let mut parts: std::collections::BTreeMap<u32, Vec<Stored>> = Default::default();
    for event in batch["events"].as_array().expect("events") {
        let player = event["player"].as_str().expect("player").to_owned();
        parts.entry(shard_of(&player, SHARDS)).or_default().push(Stored {
            id: event["id"].as_str().expect("id").to_owned(),
            game: "default".into(),
            name: "design".into(),
            session: event["session"].as_str().map(Into::into),
            time_ms: now,
            received_ms: now,
            properties: event["properties"].to_string(),
            excluded: None,
            currency: None,
            amount: None,
            player,
        });
    }
    parts
        .into_iter()
        .map(|(shard, events)| (shard, serde_json::to_vec(&events).expect("json")))
        .collect()
}

async fn ceiling(redis_url: &str, clients: usize, seconds: u64) -> f64 {
    let redis = flotilla_storage::connect_redis(redis_url).await.expect("redis");
    let parts = Arc::new(shard_parts(&batch(0, 10_000)));
    let done = Arc::new(AtomicU64::new(0));
    let deadline = Instant::now() + Duration::from_secs(seconds);
    let started = Instant::now();
    let tasks: Vec<_> = (0..clients)
        .map(|_| {
            let (mut redis, parts, done) = (redis.clone(), parts.clone(), done.clone());
            tokio::spawn(async move {
                while Instant::now() < deadline {
                    let mut pipe = redis::pipe();
                    for (shard, payload) in parts.iter() {
                        pipe.cmd("XADD")
                            .arg(format!("bench-ceiling:{shard}"))
                            .arg("*")
                            .arg("e")
                            .arg(payload);
                    }
                    let _: Vec<String> = pipe.query_async(&mut redis).await.expect("xadd");
                    done.fetch_add(BATCH as u64, Ordering::Relaxed);
                }
            })
        })
        .collect();
    for task in tasks {
        task.await.expect("client");
    }
    let rate = done.load(Ordering::Relaxed) as f64 / started.elapsed().as_secs_f64();
    let mut redis = redis.clone();
    for shard in 0..SHARDS {
        let _: i64 = redis::cmd("DEL")
            .arg(format!("bench-ceiling:{shard}"))
            .query_async(&mut redis)
            .await
            .expect("del");
    }
    rate
}

/// Sends batches from `clients` clients for `seconds`; events acknowledged and each batch's latency (µs).
async fn load(
    http: &reqwest::Client,
    url: &str,
    clients: usize,
    seconds: u64,
    pace: Option<Duration>,
) -> (u64, Vec<u64>) {
    let done = Arc::new(AtomicU64::new(0));
    let deadline = Instant::now() + Duration::from_secs(seconds);
    let seeds = Arc::new(AtomicU64::new(rand_seed()));
    let tasks: Vec<_> = (0..clients)
        .map(|_| {
            let (http, url, done, seeds) = (http.clone(), url.to_owned(), done.clone(), seeds.clone());
            tokio::spawn(async move {
                let mut latencies = Vec::new();
                while Instant::now() < deadline {
                    let body = serde_json::to_vec(&batch(seeds.fetch_add(1, Ordering::Relaxed), 10_000))
                        .expect("json");
                    let started = Instant::now();
                    let answer = http
                        .post(format!("{url}/v1/events"))
                        .bearer_auth(SERVICE_KEY)
                        .header("content-type", "application/json")
                        .body(body)
                        .send()
                        .await
                        .expect("send");
                    assert!(answer.status().is_success(), "{}", answer.status());
                    let collected: Value = answer.json().await.expect("answer");
                    latencies.push(started.elapsed().as_micros() as u64);
                    done.fetch_add(collected["accepted"].as_u64().unwrap_or(0), Ordering::Relaxed);
                    if let Some(pace) = pace {
                        tokio::time::sleep(pace).await;
                    }
                }
                latencies
            })
        })
        .collect();
    let mut latencies = Vec::new();
    for task in tasks {
        latencies.extend(task.await.expect("client"));
    }
    (done.load(Ordering::Relaxed), latencies)
}

fn rand_seed() -> u64 {
    (flotilla_storage::mongo::now_ms() as u64 % 1_000_000) * 1_000_000
}

async fn admin(http: &reqwest::Client, url: &str, path: &str) -> Value {
    http.get(format!("{url}{path}"))
        .bearer_auth(ADMIN_KEY)
        .send()
        .await
        .expect("admin")
        .json()
        .await
        .expect("json")
}

async fn caught_up(http: &reqwest::Client, url: &str) {
    loop {
        if admin(http, url, "/v1/admin/pipeline").await["caughtUp"] == true {
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Acknowledged → visible: in the live counters, and in the KPI API (DAU), for a new player.
async fn freshness(http: &reqwest::Client, url: &str, probe: u64) -> (f64, f64) {
    let player = format!("probe-{}-{probe}", rand_seed());
    let today = jiff::Timestamp::now()
        .to_zoned(jiff::tz::TimeZone::UTC)
        .date()
        .to_string();
    let kpis = format!("/v1/admin/kpis?from={today}&to={today}");
    let live_before = admin(http, url, "/v1/admin/live").await["totals"]["progression"]
        .as_u64()
        .unwrap_or(0);
    let dau_before = admin(http, url, &kpis).await["days"][0]["dau"]
        .as_u64()
        .unwrap_or(0);
    let event = json!({"events": [{"id": "p", "name": "progression", "player": player,
        "time": jiff::Timestamp::now().to_string(), "properties": {"status": "start", "level": "probe"}}]});
    let answer = http
        .post(format!("{url}/v1/events"))
        .bearer_auth(SERVICE_KEY)
        .json(&event)
        .send()
        .await
        .expect("probe");
    assert!(answer.status().is_success());
    let acknowledged = Instant::now();
    // Each view is polled on its own, so a slow KPI query does not delay noticing the counters.
    let seen = |path: String, pick: fn(&Value) -> u64, before: u64, pause: Duration| async move {
        loop {
            if pick(&admin(http, url, &path).await) > before {
                return acknowledged.elapsed().as_secs_f64() * 1000.0;
            }
            assert!(
                acknowledged.elapsed() < Duration::from_secs(120),
                "a probe never became visible in {path}"
            );
            tokio::time::sleep(pause).await;
        }
    };
    tokio::join!(
        seen(
            "/v1/admin/live".into(),
            |live| live["totals"]["progression"].as_u64().unwrap_or(0),
            live_before,
            Duration::from_millis(10),
        ),
        seen(
            kpis,
            |report| report["days"][0]["dau"].as_u64().unwrap_or(0),
            dau_before,
            Duration::from_millis(10),
        ),
    )
}

/// `events` events of 100,000 players over 40 days, straight into a store, listed in its manifest.
async fn fill_store(redis_url: &str, namespace: &str, data_dir: &std::path::Path, events: u64) -> f64 {
    let started = Instant::now();
    let store = EventStore::new(data_dir);
    let keys = Keys::new(namespace);
    let mut redis = flotilla_storage::connect_redis(redis_url).await.expect("redis");
    let day0 = jiff::Timestamp::now().as_millisecond() / 86_400_000 * 86_400_000 - 40 * 86_400_000;
    let per_file = 500_000u64;
    let mut written = 0;
    let mut file = 0;
    while written < events {
        let count = per_file.min(events - written);
        let rows: Vec<Stored> = (written..written + count)
            .map(|n| {
                // Players install over the 40 days and come back less often as days pass.
                let player = n % 100_000;
                let install = (player % 40) as i64;
                let day = (install + ((n / 100_000) * (n / 100_000) % 40) as i64).min(39);
                Stored {
                    id: format!("k{n}"),
                    game: "default".into(),
                    name: if n % 50 == 0 {
                        "purchase".into()
                    } else {
                        "design".into()
                    },
                    player: format!("kpi-player-{player:06}"),
                    session: None,
                    time_ms: day0 + day * 86_400_000 + (n as i64 % 86_400_000),
                    received_ms: day0,
                    properties: "{}".into(),
                    excluded: None,
                    currency: (n % 50 == 0).then(|| "USD".into()),
                    amount: (n % 50 == 0).then_some(499),
                }
            })
            .collect();
        let path = format!("events/game=default/date=2000-01-01/hour=00/bench-{file}.parquet");
        store.write(&path, rows).await.expect("write");
        let _: i64 = redis::cmd("HSET")
            .arg(keys.manifest())
            .arg(&path)
            .arg(count)
            .query_async(&mut redis)
            .await
            .expect("manifest");
        written += count;
        file += 1;
    }
    started.elapsed().as_secs_f64()
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let seconds = env_number("BENCH_SECONDS", 20);
    let clients = env_number("BENCH_CLIENTS", 16) as usize;
    let kpi_events = env_number("BENCH_KPI_EVENTS", 10_000_000);
    let redis_url = std::env::var("FLOTILLA_ANALYTICS_LOG_REDIS_URL")
        .expect("FLOTILLA_ANALYTICS_LOG_REDIS_URL (e2e/storage/up.sh)");
    let http = reqwest::Client::builder()
        .pool_max_idle_per_host(64)
        .build()
        .expect("client");
    let work = std::env::temp_dir().join(format!("flotilla-analytics-bench-{}", std::process::id()));
    let namespace = format!("bench{}", std::process::id());
    let body_bytes = serde_json::to_vec(&batch(0, 10_000)).expect("json").len();
    println!(
        "events of {} bytes in batches of {BATCH}, {clients} clients, {seconds} s per phase",
        body_bytes / BATCH
    );

    let limit = ceiling(&redis_url, clients, seconds).await;
    println!("log append ceiling (Redis Streams, appendfsync always): {limit:.0} events/s");

    let collector = Service::start(&namespace, &work, false, Some("1"));
    Service::wait_ready(&http, &collector.url).await;
    let cpu_before = collector.cpu_seconds();
    let started = Instant::now();
    let (accepted, mut latencies) = load(&http, &collector.url, clients, seconds, None).await;
    let wall = started.elapsed().as_secs_f64();
    let cpu = collector.cpu_seconds() - cpu_before;
    let rate = accepted as f64 / wall;
    println!(
        "collector (one core, collect-only): {rate:.0} events/s, {:.0} events per CPU-second ({cpu:.1} CPU-s in {wall:.1} s), \
         ack p50 {:.1} ms p99 {:.1} ms; {:.0} % of the ceiling",
        accepted as f64 / cpu,
        quantile(&mut latencies, 0.5),
        quantile(&mut latencies, 0.99),
        100.0 * rate / limit
    );
    drop(collector);

    let processor = Service::start(&namespace, &work, true, None);
    Service::wait_ready(&http, &processor.url).await;
    let started = Instant::now();
    caught_up(&http, &processor.url).await;
    println!(
        "pipeline drained the {accepted} events in {:.1} s: {:.0} events/s",
        started.elapsed().as_secs_f64(),
        accepted as f64 / started.elapsed().as_secs_f64()
    );
    let steady = tokio::spawn({
        let (http, url) = (http.clone(), processor.url.clone());
        async move { load(&http, &url, 2, seconds, Some(Duration::from_millis(20))).await }
    });
    let (mut live, mut kpi) = (Vec::new(), Vec::new());
    for probe in 0..5 {
        let (to_live, to_kpi) = freshness(&http, &processor.url, probe).await;
        live.push((to_live * 1000.0) as u64);
        kpi.push((to_kpi * 1000.0) as u64);
    }
    let (steady_events, _) = steady.await.expect("steady load");
    println!(
        "freshness under {:.0} events/s: acknowledged → live counters median {:.0} ms max {:.0} ms; → KPI API median {:.0} ms max {:.0} ms",
        steady_events as f64 / seconds as f64,
        quantile(&mut live, 0.5),
        quantile(&mut live, 1.0),
        quantile(&mut kpi, 0.5),
        quantile(&mut kpi, 1.0)
    );
    drop(processor);

    let kpi_namespace = format!("{namespace}kpi");
    let kpi_dir = work.join("kpi");
    let filled = fill_store(&redis_url, &kpi_namespace, &kpi_dir, kpi_events).await;
    let reader = Service::start(&kpi_namespace, &kpi_dir, false, None);
    Service::wait_ready(&http, &reader.url).await;
    let today = jiff::Timestamp::now().to_zoned(jiff::tz::TimeZone::UTC).date();
    let from = today.checked_sub(jiff::Span::new().days(40)).expect("date");
    let mut took = Vec::new();
    let mut cohort_size = 0;
    for _ in 0..3 {
        let started = Instant::now();
        let report = admin(
            &http,
            &reader.url,
            &format!("/v1/admin/kpis?from={from}&to={today}&tz=America/Los_Angeles"),
        )
        .await;
        took.push(started.elapsed().as_micros() as u64);
        cohort_size = report["cohorts"]
            .as_array()
            .map_or(0, |c| c.iter().map(|c| c["size"].as_u64().unwrap_or(0)).sum());
    }
    println!(
        "KPI report with D0-D30 retention over {kpi_events} events ({cohort_size} players in cohorts; written in {filled:.0} s): \
         median {:.2} s, max {:.2} s",
        quantile(&mut took, 0.5) / 1000.0,
        quantile(&mut took, 1.0) / 1000.0
    );
    drop(reader);

    let exact_events = env_number("BENCH_EXACT_EVENTS", 1_000_000);
    if exact_events > 0 {
        exactness::run(&http, exact_events, &format!("{namespace}x"), &work.join("exact")).await;
    }
    let _ = std::fs::remove_dir_all(&work);
}
