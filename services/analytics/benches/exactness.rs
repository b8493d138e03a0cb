//! Exact counts at scale (the bench's last phase, `BENCH_EXACT_EVENTS`, a million by default): every
//! event sent one to five times in shuffled batches by concurrent clients that resend until
//! acknowledged, while the service (the release binary, pipeline on) is SIGKILLed three times.
//! Once the pipeline has caught up, the live counters' totals by name, and the KPI API's DAU and
//! revenue per day, must equal the generator's ground truth exactly.
//!
//! Events are made from their number alone, so the million need not be held in memory: the run
//! keeps the shuffled list of copies (4 bytes each) and builds each batch as it sends it.

use std::collections::{BTreeMap, HashSet};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::{SERVICE_KEY, Service, admin, caught_up};

const PLAYERS: u64 = 20_000;
const CLIENTS: usize = 16;
const BATCH: usize = 100;

/// splitmix64: a well-mixed number from a counter, so event `n` is the same in every use.
fn mix(mut x: u64) -> u64 {
    x = x.wrapping_add(0x9e37_79b9_7f4a_7c15);
    x = (x ^ (x >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    x ^ (x >> 31)
}

/// Event `n`: its player, its name, its revenue (purchases only) and its time (ms), within the
/// 50 minutes before `now_ms`.
struct Made {
    player: u64,
    name: &'static str,
    amount: i64,
    time_ms: i64,
}

fn made(n: u64, now_ms: i64) -> Made {
    let bits = mix(n);
    let name = match bits % 4 {
        0 => "purchase",
        1 => "resource",
        _ => "design",
    };
    Made {
        player: (bits >> 8) % PLAYERS,
        name,
        amount: 99 + ((bits >> 32) % 1000) as i64,
        time_ms: now_ms - ((bits >> 40) % 3_000_000) as i64,
    }
}

fn event(n: u64, now_ms: i64, run: &str) -> Value {
    let made = made(n, now_ms);
    let time = jiff::Timestamp::from_millisecond(made.time_ms)
        .expect("a time")
        .to_string();
    let properties = match made.name {
        "purchase" => json!({"currency": "USD", "amount": made.amount}),
        "resource" => json!({"flow": "source", "currency": "gold", "amount": 10}),
        _ => json!({"event": "match:won", "value": 1}),
    };
    json!({"id": format!("e{n}"), "name": made.name, "player": format!("{run}-{}", made.player),
           "time": time, "properties": properties})
}

fn utc_date(ms: i64) -> String {
    jiff::Timestamp::from_millisecond(ms)
        .expect("a time")
        .to_zoned(jiff::tz::TimeZone::UTC)
        .date()
        .to_string()
}

/// The generator's truth: events by name, and players and revenue by UTC date.
struct Truth {
    names: BTreeMap<String, u64>,
    players: BTreeMap<String, HashSet<u64>>,
    revenue: BTreeMap<String, i64>,
}

fn truth(events: u64, now_ms: i64) -> Truth {
    let mut truth = Truth {
        names: BTreeMap::new(),
        players: BTreeMap::new(),
        revenue: BTreeMap::new(),
    };
    for n in 0..events {
        let made = made(n, now_ms);
        *truth.names.entry(made.name.to_owned()).or_default() += 1;
        let date = utc_date(made.time_ms);
        truth.players.entry(date.clone()).or_default().insert(made.player);
        if made.name == "purchase" {
            *truth.revenue.entry(date).or_default() += made.amount;
        }
    }
    truth
}

/// Every event 1–5 times, shuffled (Fisher–Yates with the same mixer).
fn copies(events: u64) -> Vec<u32> {
    let mut sent: Vec<u32> = Vec::new();
    for n in 0..events {
        for _ in 0..=(mix(n ^ 0xc0ff_ee00) % 5) {
            sent.push(n as u32);
        }
    }
    for i in (1..sent.len()).rev() {
        let j = (mix(i as u64 ^ 0x5eed) % (i as u64 + 1)) as usize;
        sent.swap(i, j);
    }
    sent
}

pub async fn run(http: &reqwest::Client, events: u64, namespace: &str, data_dir: &std::path::Path) {
    let now_ms = flotilla_storage::mongo::now_ms();
    let run = format!("x{now_ms}");
    let truth = truth(events, now_ms);
    let sent = Arc::new(copies(events));
    let batches = sent.len().div_ceil(BATCH);
    let port = crate::free_port();
    let service = Arc::new(std::sync::Mutex::new(Service::start_at(
        port, namespace, data_dir, true, None,
    )));
    let url = format!("http://127.0.0.1:{port}");
    Service::wait_ready(http, &url).await;

    let next = Arc::new(AtomicUsize::new(0));
    let started = Instant::now();
    let clients: Vec<_> = (0..CLIENTS)
        .map(|_| {
            let (http, url, next, sent, run) = (http.clone(), url.clone(), next.clone(), sent.clone(), run.clone());
            tokio::spawn(async move {
                loop {
                    let batch = next.fetch_add(1, Ordering::Relaxed);
                    if batch >= batches {
                        return;
                    }
                    let numbers = &sent[batch * BATCH..((batch + 1) * BATCH).min(sent.len())];
                    let body = json!({"events": numbers.iter().map(|&n| event(u64::from(n), now_ms, &run)).collect::<Vec<_>>()});
                    let body = serde_json::to_vec(&body).expect("json");
                    // Resend until acknowledged, as the SDKs do: through every crash.
                    loop {
                        let answer = http
                            .post(format!("{url}/v1/events"))
                            .bearer_auth(SERVICE_KEY)
                            .header("content-type", "application/json")
                            .body(body.clone())
                            .timeout(Duration::from_secs(10))
                            .send()
                            .await;
                        match answer {
                            Ok(answer) if answer.status().is_success() => break,
                            _ => tokio::time::sleep(Duration::from_millis(100)).await,
                        }
                    }
                }
            })
        })
        .collect();

    // Three SIGKILLs, at a quarter, half and three quarters of the batches handed out.
    for quarter in 1..=3 {
        while next.load(Ordering::Relaxed) < batches * quarter / 4 {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let mut running = service.lock().expect("service");
        running.kill();
        *running = Service::start_at(port, namespace, data_dir, true, None);
    }
    for client in clients {
        client.await.expect("a client");
    }
    let sent_in = started.elapsed().as_secs_f64();
    caught_up(http, &url).await;
    let settled_in = started.elapsed().as_secs_f64();

    let live = admin(http, &url, "/v1/admin/live").await;
    let totals: BTreeMap<String, u64> = serde_json::from_value(live["totals"].clone()).expect("totals");
    let (first, last) = (
        truth.players.keys().next().expect("a date").clone(),
        truth.players.keys().last().expect("a date").clone(),
    );
    let report = admin(http, &url, &format!("/v1/admin/kpis?from={first}&to={last}")).await;
    let mut dau = BTreeMap::new();
    let mut revenue = BTreeMap::new();
    for day in report["days"].as_array().expect("days") {
        let date = day["date"].as_str().expect("date").to_owned();
        dau.insert(date.clone(), day["dau"].as_u64().expect("dau") as usize);
        revenue.insert(date, day["revenue"]["USD"].as_i64().unwrap_or(0));
    }
    let expected_dau: BTreeMap<String, usize> = truth
        .players
        .iter()
        .map(|(date, players)| (date.clone(), players.len()))
        .collect();
    let exact = totals == truth.names && dau == expected_dau && revenue == truth.revenue;
    println!(
        "exactness: {events} events sent {} times in all by {CLIENTS} clients, the service SIGKILLed 3 times; \
         sent in {sent_in:.0} s, caught up at {settled_in:.0} s; counts by name {}, DAU {}, revenue {}: {}",
        sent.len(),
        show(&totals),
        show(&dau),
        show(&revenue),
        if exact {
            "all equal to the generator's"
        } else {
            "NOT EQUAL"
        }
    );
    assert_eq!(totals, truth.names, "events by name");
    assert_eq!(dau, expected_dau, "DAU by date");
    assert_eq!(revenue, truth.revenue, "revenue by date");
    drop(service);
}

fn show<V: std::fmt::Display>(map: &BTreeMap<String, V>) -> String {
    map.iter()
        .map(|(key, value)| format!("{key} {value}"))
        .collect::<Vec<_>>()
        .join(", ")
}
