//! The simulation tier, in the style of TigerBeetle's simulator: the ledger's decision logic runs
//! against an in-memory store under a seeded scheduler that interleaves concurrent drivers at every
//! store call, crashes them (before or after a write lands), fails calls in transport, and starts
//! the recovery worker at random moments beside the requests. The auditor checks the books after
//! every step; at the end, recovery finishes everything and the books must be settled exactly.
//!
//! `SIM_SEEDS=N` runs seeds `0..N` (default 2,000); a failure prints its seed, and `SEED=S` replays
//! that one.

use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};
use std::task::{Context, Poll, Waker};

use flotilla_economy::Error;
use flotilla_economy::ledger::audit::audit;
use flotilla_economy::ledger::engine::{Ledger, Settled};
use flotilla_economy::ledger::memory::{MemoryStore, Rng};
use flotilla_economy::ledger::model::{Flag, Holder, Leg, Review, Transaction};

type Task<'a> = Pin<Box<dyn Future<Output = Result<Settled, Error>> + 'a>>;

const PLAYERS: u64 = 4;
const ITEM_LIMIT: i64 = 5;

#[test]
fn no_seed_creates_or_loses_value_under_crashes_faults_and_races() {
    let seeds: Vec<u64> = match std::env::var("SEED") {
        Ok(seed) => vec![seed.parse().expect("SEED is a number")],
        Err(_) => {
            let count =
                std::env::var("SIM_SEEDS").map_or(2_000, |n| n.parse().expect("SIM_SEEDS is a number"));
            (0..count).collect()
        }
    };
    let mut steps = 0;
    for seed in seeds {
        match simulate(seed) {
            Ok(taken) => steps += taken,
            Err(failure) => panic!(
                "seed {seed} failed: {failure}\nreplay: SEED={seed} cargo test -p flotilla-economy --test simulation"
            ),
        }
    }
    eprintln!("{steps} scheduler steps audited");
}

fn player(index: u64) -> Holder {
    Holder::Player(format!("p{index}"))
}

fn system(name: &str) -> Holder {
    Holder::System(name.into())
}

fn leg(asset: &str, amount: i64, from: Holder, to: Holder, limit: i64) -> Leg {
    Leg {
        asset: asset.into(),
        amount,
        from,
        to,
        limit,
        debt: false,
    }
}

/// A random request: a grant, a gift, a purchase, a consumption or a reversal into debt.
fn request(rng: &mut Rng) -> (String, Vec<Leg>) {
    let someone = player(rng.below(PLAYERS));
    let gold = "c:gold";
    match rng.below(5) {
        0 => (
            "grant".into(),
            vec![leg(gold, 1 + rng.below(30) as i64, system("mint"), someone, 100)],
        ),
        1 => {
            let other = player(rng.below(PLAYERS));
            (
                "gift".into(),
                vec![leg(gold, 1 + rng.below(40) as i64, someone, other, 100)],
            )
        }
        2 => (
            "purchase".into(),
            vec![
                leg(gold, 10, someone.clone(), system("store"), i64::MAX),
                leg(
                    "i:potion",
                    1 + rng.below(2) as i64,
                    system("mint"),
                    someone,
                    ITEM_LIMIT,
                ),
            ],
        ),
        3 => (
            "consume".into(),
            vec![leg("i:potion", 1, someone, system("sink"), i64::MAX)],
        ),
        // A reversal under the debt policy: the balance may go below zero.
        _ => {
            let mut taken = leg(gold, 1 + rng.below(40) as i64, someone, system("mint"), i64::MAX);
            taken.debt = true;
            ("reversal".into(), vec![taken])
        }
    }
}

fn transaction(caller: &str, key: &str, kind: String, legs: Vec<Leg>, at_ms: i64) -> Transaction {
    let players = legs
        .iter()
        .flat_map(|leg| [leg.from.player(), leg.to.player()])
        .flatten()
        .map(str::to_owned)
        .collect();
    Transaction {
        id: Transaction::id_for(caller, key),
        request_hash: format!("{kind}:{legs:?}"),
        kind,
        memo: String::new(),
        legs,
        players,
        at_ms,
        flag: None,
    }
}

/// One simulation; returns the number of scheduler steps, or what went wrong.
fn simulate(seed: u64) -> Result<usize, String> {
    let mut rng = Rng::new(seed);
    let fault_per_mille = [0, 20, 80][rng.below(3) as usize];
    let crash_per_mille = [0, 10, 40][rng.below(3) as usize];
    let store = MemoryStore::new(seed ^ 0x5eed, fault_per_mille);
    let time = Arc::new(AtomicI64::new(0));
    let ticks = time.clone();
    let clock: Arc<dyn Fn() -> i64 + Send + Sync> = Arc::new(move || ticks.fetch_add(1, Ordering::Relaxed));
    // Replicas of the service: each remembers its own account heads, which go stale as others write.
    let replicas: Vec<Ledger<MemoryStore>> = (0..3)
        .map(|_| Ledger::new(store.clone(), clock.clone()))
        .collect();

    // Requests by idempotency key: a key is sent several times (retries, twins) with the same body,
    // and now and then with another body.
    let mut bodies: HashMap<String, (String, Vec<Leg>)> = HashMap::new();
    let mut tasks: Vec<(String, Option<String>, Task)> = Vec::new();
    let requests = 4 + rng.below(10);
    for _ in 0..requests {
        let key = format!("k{}", rng.below(requests * 2 / 3 + 1));
        let mut body = bodies
            .entry(key.clone())
            .or_insert_with(|| request(&mut rng))
            .clone();
        let reused = rng.chance(50);
        if reused {
            body = request(&mut rng);
        }
        let mut tx = transaction("caller", &key, body.0, body.1, time.load(Ordering::Relaxed));
        // Fraud rules: some transactions are held for review, a few denied (as the key's first
        // request was judged: a retry follows the stored verdict).
        tx.flag = match key[1..].parse::<u64>().unwrap_or(0) % 7 {
            0 | 1 => Some(Flag {
                rule: "velocity".into(),
                deny: false,
            }),
            2 => Some(Flag {
                rule: "threshold".into(),
                deny: true,
            }),
            _ => None,
        };
        let ledger = &replicas[rng.below(3) as usize];
        tasks.push((key, Some(tx.request_hash.clone()), Box::pin(ledger.submit(tx))));
    }

    let waker = Waker::noop();
    let mut context = Context::from_waker(waker);
    let mut answers: Vec<(String, String, Result<Settled, Error>)> = Vec::new();
    let mut steps = 0;
    while !tasks.is_empty() {
        steps += 1;
        if rng.chance(15) {
            let ledger = &replicas[rng.below(3) as usize];
            tasks.push(("recovery".into(), None, Box::pin(recover_once(ledger))));
        }
        if rng.chance(15) {
            let ledger = &replicas[rng.below(3) as usize];
            let key = format!("k{}", rng.below(requests * 2 / 3 + 1));
            let review = review(&key, rng.chance(500));
            tasks.push(("review".into(), None, Box::pin(ledger.review(review))));
        }
        let index = rng.below(tasks.len() as u64) as usize;
        if rng.chance(crash_per_mille) {
            drop(tasks.swap_remove(index)); // the process died here
        } else if let Poll::Ready(answer) = tasks[index].2.as_mut().poll(&mut context) {
            let (key, hash, _) = tasks.swap_remove(index);
            if let Some(hash) = hash {
                answers.push((key, hash, answer));
            }
        }
        let report = audit(&store.books());
        if !report.is_clean() {
            return Err(format!("after step {steps}: {:?}", report.violations));
        }
    }

    // Recovery finishes whatever crashes and failures left open (a held transaction that crashed
    // before joining the review queue joins it then), and admins review whatever is held.
    store.heal();
    for _ in 0..3 {
        let mut recovery = Box::pin(replicas[0].recover(i64::MAX, 1_000));
        let recovered = loop {
            if let Poll::Ready(result) = recovery.as_mut().poll(&mut context) {
                break result;
            }
        };
        recovered.map_err(|error| format!("recovery failed: {error}"))?;
        for id in store.holds() {
            let key = id.trim_start_matches("caller:").to_owned();
            let mut reviewing = Box::pin(replicas[0].review(review(&key, rng.chance(500))));
            while reviewing.as_mut().poll(&mut context).is_pending() {}
        }
    }
    let books = store.books();
    let report = audit(&books);
    if !report.is_clean() || !report.is_settled() {
        return Err(format!(
            "after recovery: {:?} {:?}",
            report.violations, report.totals
        ));
    }

    // Every answer is what the books hold: one transaction per key, decided once.
    let stored: HashMap<&str, &Transaction> =
        books.transactions.iter().map(|tx| (tx.id.as_str(), tx)).collect();
    for (key, hash, answer) in answers {
        let id = Transaction::id_for("caller", &key);
        let tx = match (&answer, stored.get(id.as_str())) {
            (Err(error), _) if error.is_transient() => continue, // the caller retries; any outcome is fine
            (_, Some(tx)) => tx,
            (_, None) => return Err(format!("{key} was answered {answer:?} but not stored")),
        };
        match answer {
            Ok(settled) => {
                let outcome = books
                    .outcomes
                    .iter()
                    .find(|o| o.tx == id)
                    .ok_or("answered without outcome")?;
                if &settled.outcome != outcome
                    || settled.tx.request_hash != tx.request_hash
                    || hash != tx.request_hash
                {
                    return Err(format!(
                        "{key} was answered {settled:?}, stored {tx:?} {outcome:?}"
                    ));
                }
            }
            Err(Error::Held { .. }) if tx.flag.as_ref().is_some_and(|flag| !flag.deny) => {}
            Err(Error::KeyReused) if hash != tx.request_hash => {}
            Err(Error::KeyReused) => return Err(format!("{key} refused as reused with its own body")),
            Err(error) => return Err(format!("{key} failed: {error}")),
        }
    }
    for posting in &books.postings {
        if posting.asset == "i:potion" && posting.balance.available + posting.balance.reserved > ITEM_LIMIT {
            return Err(format!("{} holds more than {ITEM_LIMIT}", posting.key));
        }
    }
    Ok(steps)
}

fn review(key: &str, approved: bool) -> Review {
    Review {
        tx: Transaction::id_for("caller", key),
        approved,
        by: "sim".into(),
        reason: "seeded".into(),
        at_ms: 0,
    }
}

async fn recover_once(ledger: &Ledger<MemoryStore>) -> Result<Settled, Error> {
    ledger.recover(i64::MAX, 100).await?;
    Err(Error::Unavailable("recovery pass".into()))
}
