//! Load generator for `./x bench player` (see services/player/bench.sh, which starts the service on
//! one core and this on the other). One phase per run:
//!
//! - `ceiling`: GET /healthz on the ops port — the same process's HTTP rate with no storage behind
//!   it, the physical limit the other phases are compared with;
//! - `logins`: device-id sign-ins of existing accounts (identity read, profile read, refresh-token
//!   write, one rate-limit check of account and address, a JWT signature);
//! - `reads`: GET /v1/players/{id} of other players (cached or not: the service's setting);
//! - `store`: the database's own rate for what a login asks of it (one read by id, one insert),
//!   straight from the driver: the ceiling for logins;
//! - `sockets`: opens idle WebSockets, holds them, and reports the service's memory per connection
//!   and its CPU while they idle.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use tokio::net::TcpSocket;

struct Options {
    phase: String,
    api: String,
    ops: String,
    seconds: u64,
    concurrency: usize,
    accounts: usize,
    sockets: usize,
    service_pid: u32,
    /// The service's CPU quota in % of a core, when bench.sh capped it.
    cpu_cap: Option<f64>,
}

fn options() -> Options {
    let mut args = std::env::args().skip(1).filter(|a| a != "--bench");
    let phase = args.next().unwrap_or_else(|| "logins".into());
    let var = |name: &str, default: &str| std::env::var(name).unwrap_or_else(|_| default.into());
    Options {
        phase,
        api: var("BENCH_API", "127.0.0.1:8080"),
        ops: var("BENCH_OPS", "127.0.0.1:9090"),
        seconds: var("BENCH_SECONDS", "10").parse().expect("BENCH_SECONDS"),
        concurrency: var("BENCH_CONCURRENCY", "64").parse().expect("BENCH_CONCURRENCY"),
        accounts: var("BENCH_ACCOUNTS", "1000").parse().expect("BENCH_ACCOUNTS"),
        sockets: var("BENCH_SOCKETS", "20000").parse().expect("BENCH_SOCKETS"),
        service_pid: var("BENCH_SERVICE_PID", "0").parse().expect("BENCH_SERVICE_PID"),
        cpu_cap: std::env::var("BENCH_CPU_CAP")
            .ok()
            .map(|cap| cap.parse().expect("BENCH_CPU_CAP")),
    }
}

fn main() {
    let options = options();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    runtime.block_on(async {
        match options.phase.as_str() {
            "ceiling" => ceiling(&options).await,
            "logins" => logins(&options).await,
            "reads" => reads(&options).await,
            "sockets" => sockets(&options).await,
            "store" => store(&options).await,
            other => panic!("unknown phase {other}: ceiling, store, logins, reads or sockets"),
        }
    });
}

fn client(concurrency: usize) -> reqwest::Client {
    reqwest::Client::builder()
        .pool_max_idle_per_host(concurrency)
        .build()
        .expect("client")
}

/// Creates (or signs in) `count` device accounts numbered from `first`; returns (player id, access
/// token) for each.
async fn accounts(options: &Options, first: usize, count: usize) -> Vec<(String, String)> {
    let http = client(options.concurrency);
    let mut out = Vec::with_capacity(count);
    for chunk in (first..first + count)
        .collect::<Vec<_>>()
        .chunks(options.concurrency)
    {
        let calls = chunk.iter().map(|i| {
            let http = http.clone();
            let url = format!("http://{}/v1/auth/device", options.api);
            async move {
                let body: Value = http
                    .post(url)
                    .json(&json!({"id": device(*i)}))
                    .send()
                    .await
                    .expect("sign-in sent")
                    .json()
                    .await
                    .expect("sign-in answer");
                let id = body["player"]["id"]
                    .as_str()
                    .unwrap_or_else(|| panic!("sign-in failed: {body}"));
                (
                    id.to_owned(),
                    body["accessToken"].as_str().expect("token").to_owned(),
                )
            }
        });
        out.extend(futures::future::join_all(calls).await);
    }
    out
}

fn device(i: usize) -> String {
    format!("bench-device-{i:08}")
}

/// Runs `concurrency` workers calling `call` for `seconds`; prints rate and latency percentiles.
async fn drive<F, Fut>(label: &str, options: &Options, call: F)
where
    F: Fn(usize, u64) -> Fut + Send + Sync + 'static,
    Fut: std::future::Future<Output = bool> + Send,
{
    let call = Arc::new(call);
    let deadline = Instant::now() + Duration::from_secs(options.seconds);
    let started = Instant::now();
    let ticks = cpu_ticks(options.service_pid);
    let workers = (0..options.concurrency).map(|worker| {
        let call = call.clone();
        async move {
            let mut latencies = Vec::new();
            let mut failures = 0_u64;
            let mut n = 0_u64;
            while Instant::now() < deadline {
                let begun = Instant::now();
                if call(worker, n).await {
                    latencies.push(begun.elapsed());
                } else {
                    failures += 1;
                }
                n += 1;
            }
            (latencies, failures)
        }
    });
    let results = futures::future::join_all(workers).await;
    let elapsed = started.elapsed().as_secs_f64();
    // Clock ticks are 1/100 s on Linux.
    let service_cpu = (cpu_ticks(options.service_pid).saturating_sub(ticks)) as f64 / 100.0 / elapsed;
    let failures: u64 = results.iter().map(|(_, f)| f).sum();
    let mut latencies: Vec<Duration> = results.into_iter().flat_map(|(l, _)| l).collect();
    latencies.sort_unstable();
    let percentile = |p: f64| {
        latencies
            .get(((latencies.len() as f64 * p) as usize).min(latencies.len().saturating_sub(1)))
            .copied()
    };
    let rate = latencies.len() as f64 / elapsed;
    // What one fully busy service core would do, if what it waits on kept up. Under a CPU quota
    // (bench.sh's capped phase) the quota is the most the service used: rate / quota.
    let per_core = match options.cpu_cap {
        Some(cap) => format!("{:.0}/s (rate / {cap} % quota)", rate / (cap / 100.0)),
        None if service_cpu > 0.01 => format!("{:.0}/s", rate / service_cpu),
        None => "n/a".into(),
    };
    println!(
        "{label}: {rate:.0}/s ok over {elapsed:.1} s ({} ok, {failures} failed), concurrency {}, p50 {:.2} ms, \
         p99 {:.2} ms; service CPU {:.0} % -> {per_core} per service core",
        latencies.len(),
        options.concurrency,
        percentile(0.50).unwrap_or_default().as_secs_f64() * 1e3,
        percentile(0.99).unwrap_or_default().as_secs_f64() * 1e3,
        service_cpu * 100.0,
    );
}

async fn ceiling(options: &Options) {
    let http = client(options.concurrency);
    let url = format!("http://{}/healthz", options.ops);
    drive("ceiling (GET /healthz, no storage)", options, move |_, _| {
        let request = http.get(&url).send();
        async move { matches!(request.await, Ok(r) if r.status().is_success()) }
    })
    .await;
}

async fn logins(options: &Options) {
    accounts(options, 0, options.accounts).await;
    let http = client(options.concurrency);
    let url = format!("http://{}/v1/auth/device", options.api);
    let accounts = options.accounts;
    let label = std::env::var("BENCH_LABEL").unwrap_or_else(|_| "device logins (existing accounts)".into());
    drive(&label, options, move |worker, n| {
        let i = (worker * 7919 + n as usize * 104_729) % accounts;
        let request = http.post(&url).json(&json!({"id": device(i)})).send();
        async move { matches!(request.await, Ok(r) if r.status().is_success()) }
    })
    .await;
}

async fn reads(options: &Options) {
    let players = Arc::new(accounts(options, 0, options.accounts).await);
    let http = client(options.concurrency);
    let base = format!("http://{}/v1/players/", options.api);
    let label = std::env::var("BENCH_LABEL").unwrap_or_else(|_| "profile reads".into());
    drive(&label, options, move |worker, n| {
        let reader = &players[worker % players.len()];
        let target = &players[(worker * 31 + n as usize * 17 + 1) % players.len()];
        let request = http
            .get(format!("{base}{}", target.0))
            .bearer_auth(&reader.1)
            .send();
        async move { matches!(request.await, Ok(r) if r.status().is_success()) }
    })
    .await;
}

async fn store(options: &Options) {
    use mongodb::bson::{Document, doc};
    let url = std::env::var("FLOTILLA_MONGO_URL").expect("FLOTILLA_MONGO_URL");
    let database = std::env::var("BENCH_DATABASE").expect("BENCH_DATABASE: the service's database");
    let client = mongodb::Client::with_uri_str(&url).await.expect("connect");
    let db = client.database(&database);
    let identities = db.collection::<Document>("identities");
    let scratch = db.collection::<Document>("bench_scratch");
    let accounts = options.accounts;
    drive(
        "store ceiling (identity read + token insert, driver direct)",
        options,
        move |worker, n| {
            let (identities, scratch) = (identities.clone(), scratch.clone());
            let i = (worker * 7919 + n as usize * 104_729) % accounts;
            async move {
                let read = identities
                    .find_one(doc! {"_id": format!("device:{}", device(i))})
                    .await;
                let write = scratch
                    .insert_one(doc! {"worker": worker as i64, "n": n as i64, "pad": "x".repeat(120)})
                    .await;
                read.is_ok() && write.is_ok()
            }
        },
    )
    .await;
}

fn cpu_ticks(pid: u32) -> u64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    // Fields after the command (which may hold spaces) start after the last ')'.
    let fields: Vec<&str> = stat
        .rsplit_once(')')
        .map(|(_, rest)| rest.split_whitespace().collect())
        .unwrap_or_default();
    let field = |i: usize| fields.get(i).and_then(|v| v.parse::<u64>().ok()).unwrap_or(0);
    field(11) + field(12)
}

fn rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find_map(|line| line.strip_prefix("VmRSS:"))
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|kib| kib.parse().ok())
        .unwrap_or(0)
}

async fn sockets(options: &Options) {
    let api: SocketAddr = options.api.parse().expect("BENCH_API is host:port");
    // Each generator its own loopback source address (one has ~28,000 ephemeral ports) and its own
    // players, about 20 connections each: many devices per player, as a stress, but not thousands.
    let source_octet: u8 = std::env::var("BENCH_SOURCE")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1);
    let players = accounts(
        options,
        1_000_000 * usize::from(source_octet),
        options.sockets.div_ceil(20),
    )
    .await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    let before = rss_kib(options.service_pid);
    let started = Instant::now();
    let mut open = Vec::with_capacity(options.sockets);
    let mut failed = 0;
    // Each generator its own loopback source address (one has ~28,000 ephemeral ports).
    let source_octet: u8 = std::env::var("BENCH_SOURCE")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1);
    for i in 0..options.sockets {
        let source = IpAddr::V4(Ipv4Addr::new(127, 0, source_octet, 1 + (i / 20_000) as u8));
        let token = &players[i % players.len()].1;
        match connect(api, source, token).await {
            Ok(socket) => open.push(socket),
            Err(error) => {
                failed += 1;
                if failed <= 3 {
                    eprintln!("connection {i} failed: {error}");
                }
            }
        }
    }
    let opened = started.elapsed();
    // Hold them idle (presence refreshes and pings keep running): memory after settling, CPU over
    // the hold.
    let hold: u64 = std::env::var("BENCH_HOLD")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(20);
    wait_for_other_generators().await;
    tokio::time::sleep(Duration::from_secs(5)).await;
    // Redis does the presence refreshes' other half: its CPU over the same hold, when bench.sh
    // names its process.
    let redis_pid: Option<u32> = std::env::var("BENCH_REDIS_PID").ok().and_then(|v| v.parse().ok());
    let ticks = cpu_ticks(options.service_pid);
    let redis_ticks = redis_pid.map(cpu_ticks);
    let held = Instant::now();
    tokio::time::sleep(Duration::from_secs(hold)).await;
    // Clock ticks are 1/100 s on Linux.
    let share = |ticks: u64| ticks as f64 / 100.0 / held.elapsed().as_secs_f64();
    let cpu = share(cpu_ticks(options.service_pid) - ticks);
    let redis_cpu = redis_pid
        .zip(redis_ticks)
        .map(|(pid, before)| {
            format!(
                "; Redis CPU meanwhile {:.1} %",
                share(cpu_ticks(pid) - before) * 100.0
            )
        })
        .unwrap_or_default();
    let after = rss_kib(options.service_pid);
    let per = (after.saturating_sub(before) as f64 * 1024.0) / open.len().max(1) as f64;
    println!(
        "idle websockets: {} open ({failed} failed) in {:.1} s, held {hold} s; service RSS {:.1} MiB -> {:.1} MiB, \
         {:.1} KiB per connection; service CPU while idle {:.1} %{redis_cpu}",
        open.len(),
        opened.as_secs_f64(),
        before as f64 / 1024.0,
        after as f64 / 1024.0,
        per / 1024.0,
        cpu * 100.0,
    );
    drop(open);
}

/// With BENCH_BARRIER=DIR:N, marks this generator's sockets open in DIR and waits until N
/// generators have: the idle window then starts when every replica is idle, not while another
/// still signs its players in.
async fn wait_for_other_generators() {
    let Some((dir, count)) = std::env::var("BENCH_BARRIER").ok().and_then(|v| {
        Some((
            v.split_once(':')?.0.to_owned(),
            v.split_once(':')?.1.parse::<usize>().ok()?,
        ))
    }) else {
        return;
    };
    let source = std::env::var("BENCH_SOURCE").unwrap_or_default();
    std::fs::write(format!("{dir}/open-{source}"), b"").expect("barrier file");
    loop {
        let open = std::fs::read_dir(&dir)
            .map(|entries| {
                entries
                    .flatten()
                    .filter(|e| e.file_name().to_string_lossy().starts_with("open-"))
                    .count()
            })
            .unwrap_or(0);
        if open >= count {
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

type Socket = tokio_tungstenite::WebSocketStream<tokio::net::TcpStream>;

async fn connect(api: SocketAddr, source: IpAddr, token: &str) -> Result<Socket, String> {
    let socket = TcpSocket::new_v4().map_err(|e| e.to_string())?;
    socket
        .bind(SocketAddr::new(source, 0))
        .map_err(|e| e.to_string())?;
    let stream = socket.connect(api).await.map_err(|e| e.to_string())?;
    let url = format!("ws://{api}/v1/realtime?token={token}");
    let (socket, _) = tokio_tungstenite::client_async(url, stream)
        .await
        .map_err(|e| e.to_string())?;
    Ok(socket)
}
