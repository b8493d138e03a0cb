//! `./x bench economy`: the ledger on FerretDB, against the store's own ceiling measured in the
//! same run.
//!
//! 1. The ceiling: unique inserts of small documents per second from the driver, at 64 and at 200
//!    concurrent writers — what every ledger write is.
//! 2. Transfers between players: 64 writers, each moving 1 gold between two random accounts of
//!    10,000 (funded first), for `BENCH_SECONDS`: transfers/s, p50/p99/max.
//! 3. A hot sink: 200 writers, each paying 1 gold from its own account into one system account.
//!
//! The ratio printed is transfers/s × store writes per transfer ÷ the ceiling: the share of the
//! store's insert rate the ledger turns into useful writes. It runs the ledger in-process (no HTTP),
//! in release mode; the store runs on the same 2 cores.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use flotilla_economy::ledger::engine::Ledger;
use flotilla_economy::ledger::memory::Rng;
use flotilla_economy::ledger::model::{Holder, Leg, Transaction};
use flotilla_economy::ledger::mongo::MongoLedger;
use flotilla_storage::mongo::now_ms;

mod support;
use support::{Latencies, ceiling, connect, env_number};

fn transaction(id: String, kind: &str, legs: Vec<Leg>) -> Transaction {
    let players = legs
        .iter()
        .flat_map(|leg| [leg.from.player(), leg.to.player()])
        .flatten()
        .map(str::to_owned)
        .collect();
    Transaction {
        request_hash: id.clone(),
        id,
        kind: kind.into(),
        memo: String::new(),
        legs,
        players,
        at_ms: now_ms(),
        flag: None,
    }
}

fn gold(amount: i64, from: Holder, to: Holder) -> Leg {
    Leg {
        asset: "c:gold".into(),
        amount,
        from,
        to,
        limit: i64::MAX / 4,
        debt: false,
    }
}

/// Funds `accounts` players with 1,000,000 gold each, 64 at a time.
async fn fund(ledger: &Arc<Ledger<MongoLedger>>, accounts: u64) {
    let next = Arc::new(AtomicU64::new(0));
    let tasks: Vec<_> = (0..64)
        .map(|_| {
            let (ledger, next) = (ledger.clone(), next.clone());
            tokio::spawn(async move {
                loop {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    if i >= accounts {
                        return;
                    }
                    let leg = gold(
                        1_000_000,
                        Holder::System("mint".into()),
                        Holder::Player(format!("p{i}")),
                    );
                    let settled = ledger
                        .submit(transaction(format!("fund:{i}"), "grant", vec![leg]))
                        .await;
                    assert!(settled.expect("grant").outcome.committed);
                }
            })
        })
        .collect();
    for task in tasks {
        task.await.expect("funding");
    }
}

/// `writers` writers submitting what `legs` makes for `seconds`; transfers/s and latencies.
async fn run<F>(
    ledger: &Arc<Ledger<MongoLedger>>,
    writers: usize,
    seconds: u64,
    name: &str,
    legs: F,
) -> (f64, Latencies, u64)
where
    F: Fn(usize, &mut Rng) -> Vec<Leg> + Send + Sync + 'static,
{
    let legs = Arc::new(legs);
    let deadline = Instant::now() + Duration::from_secs(seconds);
    let started = Instant::now();
    let tasks: Vec<_> = (0..writers)
        .map(|writer| {
            let (ledger, legs) = (ledger.clone(), legs.clone());
            let name = name.to_owned();
            tokio::spawn(async move {
                let mut rng = Rng::new(writer as u64 + 1);
                let (mut latencies, mut refused) = (Vec::new(), 0);
                let mut n = 0;
                while Instant::now() < deadline {
                    n += 1;
                    let tx = transaction(format!("{name}:{writer}:{n}"), "gift", legs(writer, &mut rng));
                    let sent = Instant::now();
                    let settled = ledger.submit(tx).await.expect("transfer");
                    latencies.push(sent.elapsed().as_micros() as u64);
                    if !settled.outcome.committed {
                        refused += 1;
                    }
                }
                (latencies, refused)
            })
        })
        .collect();
    let (mut all, mut refused) = (Vec::new(), 0);
    for task in tasks {
        let (latencies, r) = task.await.expect("writer");
        all.extend(latencies);
        refused += r;
    }
    let rate = all.len() as f64 / started.elapsed().as_secs_f64();
    (rate, Latencies(all), refused)
}

#[tokio::main]
async fn main() {
    let seconds = env_number("BENCH_SECONDS", 20);
    let accounts = env_number("BENCH_ACCOUNTS", 10_000);
    let database = format!("bench{}", now_ms());
    let mongo = connect(&database).await;
    let store = MongoLedger::new(&mongo);
    store.ensure_indexes().await.expect("indexes");
    let ledger = Arc::new(Ledger::new(store, Arc::new(now_ms)));

    let ceiling_64 = ceiling(&mongo, 64, seconds).await;
    let ceiling_200 = ceiling(&mongo, 200, seconds).await;
    println!("store ceiling: {ceiling_64:.0} unique inserts/s at 64 writers, {ceiling_200:.0}/s at 200");

    let funding = Instant::now();
    fund(&ledger, accounts).await;
    println!(
        "funded {accounts} accounts in {:.1} s",
        funding.elapsed().as_secs_f64()
    );

    // A transfer: the transaction, two openings, the outcome, two closings; and the finished flag
    // (an update by _id: counted as a write).
    const TRANSFER_WRITES: f64 = 7.0;
    let (rate, mut latencies, refused) = run(&ledger, 64, seconds, "transfer", move |_, rng| {
        let from = rng.below(accounts);
        let to = (from + 1 + rng.below(accounts - 1)) % accounts;
        vec![gold(
            1,
            Holder::Player(format!("p{from}")),
            Holder::Player(format!("p{to}")),
        )]
    })
    .await;
    let share = rate * TRANSFER_WRITES / ceiling_64;
    println!(
        "transfers, 64 writers over {accounts} accounts: {rate:.0}/s ({refused} refused), p50 {:.1} ms, p99 {:.1} ms, max {:.1} ms; \
         × {TRANSFER_WRITES} writes = {:.0}% of the store ceiling (target ≥ 70%, p99 ≤ 100 ms)",
        latencies.quantile(0.5),
        latencies.quantile(0.99),
        latencies.quantile(1.0),
        share * 100.0
    );

    // Into a system account: the transaction, one opening, the outcome, one closing, one flow, and
    // the finished flag.
    const SINK_WRITES: f64 = 6.0;
    let (rate, mut latencies, refused) = run(&ledger, 200, seconds, "sink", |writer, _| {
        vec![gold(
            1,
            Holder::Player(format!("p{writer}")),
            Holder::System("store".into()),
        )]
    })
    .await;
    println!(
        "paying one hot sink, 200 writers: {rate:.0}/s ({refused} refused), p50 {:.1} ms, p99 {:.1} ms, max {:.1} ms; \
         × {SINK_WRITES} writes = {:.0}% of the store ceiling at 200 writers",
        latencies.quantile(0.5),
        latencies.quantile(0.99),
        latencies.quantile(1.0),
        rate * SINK_WRITES / ceiling_200 * 100.0
    );
    let books = ledger.store().books().await.expect("books");
    let report = flotilla_economy::ledger::audit::audit(&books);
    println!(
        "audit: drift {}, {} violations, settled: {}",
        report.drift,
        report.violations.len(),
        report.is_settled()
    );
    mongo.database().drop().await.expect("drop the bench database");
}
