//! Exact counts on real servers: every event sent one to five times, in shuffled batches, through
//! two replicas — and through a binary SIGKILLed three times mid-run — is in the event store
//! exactly once, with the revenue the generator computed.

mod support;

use std::collections::{BTreeMap, HashSet};
use std::time::Duration;

use reqwest::StatusCode;
use serde_json::{Value, json};
use support::*;

/// A small deterministic generator (xorshift64*), so a failure replays.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

/// `events` events of `players` players, every one in 1–5 copies, shuffled into batches of 100;
/// also the truth: events by name and revenue in cents.
fn generate(seed: u64, events: usize, players: usize) -> (Vec<Value>, BTreeMap<String, u64>, i64) {
    let mut rng = Rng(seed);
    let prefix = unique("p");
    let mut sent = Vec::new();
    let mut names = BTreeMap::new();
    let mut revenue = 0;
    for n in 0..events {
        let player = format!("{prefix}-{}", rng.below(players as u64));
        let event = match rng.below(4) {
            0 => {
                let amount = 99 + rng.below(1000) as i64;
                revenue += amount;
                json!({"id": format!("e{n}"), "name": "purchase", "player": player, "time": ago(rng.below(3000) as i64),
                       "properties": {"currency": "USD", "amount": amount}})
            }
            1 => {
                json!({"id": format!("e{n}"), "name": "resource", "player": player, "time": ago(rng.below(3000) as i64),
                        "properties": {"flow": "source", "currency": "gold", "amount": 10}})
            }
            _ => {
                json!({"id": format!("e{n}"), "name": "design", "player": player, "time": ago(rng.below(3000) as i64),
                        "properties": {"event": "match:won", "value": 1}})
            }
        };
        *names
            .entry(event["name"].as_str().unwrap_or_default().to_owned())
            .or_default() += 1;
        for _ in 0..=rng.below(5) {
            sent.push(event.clone());
        }
    }
    for i in (1..sent.len()).rev() {
        sent.swap(i, rng.below(i as u64 + 1) as usize);
    }
    (sent, names, revenue)
}

fn check(exported: &[Value], names: &BTreeMap<String, u64>, revenue: i64, expected: usize) {
    let ids: HashSet<(&str, &str)> = exported
        .iter()
        .map(|e| {
            (
                e["player"].as_str().expect("player"),
                e["id"].as_str().expect("id"),
            )
        })
        .collect();
    assert_eq!(exported.len(), expected, "events in the store");
    assert_eq!(ids.len(), expected, "no event twice");
    let mut counted: BTreeMap<String, u64> = BTreeMap::new();
    for event in exported {
        *counted
            .entry(event["name"].as_str().unwrap_or_default().to_owned())
            .or_default() += 1;
    }
    assert_eq!(&counted, names);
    let earned: i64 = exported
        .iter()
        .filter(|e| e["name"] == "purchase")
        .map(|e| e["amount"].as_i64().expect("amount"))
        .sum();
    assert_eq!(earned, revenue);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn resent_batches_through_two_replicas_count_every_event_once() {
    const EVENTS: usize = 20_000;
    let deployment = Deployment::new();
    let replicas = [deployment.replica("r1").await, deployment.replica("r2").await];
    let (sent, names, revenue) = generate(7, EVENTS, 300);
    let batches: Vec<Value> = sent.chunks(100).map(|events| json!({"events": events})).collect();
    let sends = batches.iter().enumerate().map(|(n, batch)| {
        let url = replicas[n % 2].url.clone();
        async move {
            let (status, answer) = send(&url, SERVICE_KEY, batch).await;
            assert_eq!(status, StatusCode::OK, "{answer}");
            assert!(
                answer["rejected"].as_array().is_some_and(Vec::is_empty),
                "{answer}"
            );
        }
    });
    futures::StreamExt::collect::<Vec<()>>(futures::StreamExt::buffer_unordered(
        futures::stream::iter(sends),
        8,
    ))
    .await;
    caught_up(&replicas[0].url, Duration::from_secs(120)).await;
    // The replicas share the shards: each keeps at most half once it has seen the other.
    let started = std::time::Instant::now();
    loop {
        let status = admin_get(&replicas[0].url, "/v1/admin/pipeline").await;
        let owners: HashSet<String> = status["shards"]
            .as_array()
            .expect("shards")
            .iter()
            .filter_map(|shard| shard["owner"].as_str().map(str::to_owned))
            .collect();
        if owners.len() == 2 {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "both replicas work shards: {status}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }

    let exported = export(&replicas[1].url, &format!("from={}&to={}", ago(4000), ago(-60))).await;
    check(&exported, &names, revenue, EVENTS);
    let live = admin_get(&replicas[0].url, "/v1/admin/live").await;
    for (name, count) in &names {
        assert_eq!(live["totals"][name], *count, "{live}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkilled_three_times_mid_run_it_loses_and_doubles_nothing() {
    const EVENTS: usize = 12_000;
    let deployment = Deployment::new();
    let port = Deployment::free_port();
    let url = format!("http://127.0.0.1:{port}");
    let mut child = deployment.binary("crashy", port);
    let (sent, names, revenue) = generate(11, EVENTS, 200);
    let batches: Vec<Value> = sent.chunks(100).map(|events| json!({"events": events})).collect();
    let kills = [batches.len() / 5, batches.len() * 2 / 5, batches.len() * 3 / 5];
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .build()
        .expect("client");
    let mut killed = 0;
    for (n, batch) in batches.iter().enumerate() {
        if kills.contains(&n) {
            // SIGKILL: no chance to finish a chunk, release a lease or flush anything.
            child.kill().expect("kill");
            child.wait().expect("reaped");
            killed += 1;
            child = deployment.binary("crashy", port);
        }
        // A client resends until the batch is acknowledged, as the SDKs do.
        loop {
            let answer = http
                .post(format!("{url}/v1/events"))
                .bearer_auth(SERVICE_KEY)
                .json(batch)
                .send()
                .await;
            match answer {
                Ok(answer) if answer.status() == StatusCode::OK => break,
                _ => tokio::time::sleep(Duration::from_millis(100)).await,
            }
        }
    }
    assert_eq!(killed, 3);
    caught_up(&url, Duration::from_secs(120)).await;
    let exported = export(&url, &format!("from={}&to={}", ago(4000), ago(-60))).await;
    check(&exported, &names, revenue, EVENTS);
    child.kill().expect("kill");
    child.wait().expect("reaped");
}
