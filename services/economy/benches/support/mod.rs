//! What the economy's benchmarks share: settings from the environment, latency quantiles, and the
//! store's own ceiling measured in the same run.

#![allow(dead_code)] // each bench uses its own subset

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use flotilla_storage::mongo::{Mongo, MongoOptions, now_ms};
use mongodb::bson::{Document, doc};

pub fn env_number(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// Latencies of one phase, in microseconds.
pub struct Latencies(pub Vec<u64>);

impl Latencies {
    pub fn quantile(&mut self, q: f64) -> f64 {
        self.0.sort_unstable();
        let index = ((self.0.len() as f64 - 1.0) * q).round() as usize;
        self.0.get(index).copied().unwrap_or(0) as f64 / 1000.0
    }
}

pub async fn connect(database: &str) -> Mongo {
    let url = std::env::var("FLOTILLA_MONGO_URL").expect("FLOTILLA_MONGO_URL (e2e/storage/up.sh)");
    let mut options = MongoOptions::new(url, database);
    options.max_pool = 256;
    Mongo::connect_unmonitored(&options).await.expect("connect")
}

/// Unique inserts per second with `writers` concurrent writers.
pub async fn ceiling(mongo: &Mongo, writers: usize, seconds: u64) -> f64 {
    let collection = mongo
        .database()
        .collection::<Document>(&format!("ceiling_{writers}"));
    let done = Arc::new(AtomicU64::new(0));
    let deadline = Instant::now() + Duration::from_secs(seconds);
    let started = Instant::now();
    let tasks: Vec<_> = (0..writers)
        .map(|writer| {
            let (collection, done) = (collection.clone(), done.clone());
            tokio::spawn(async move {
                let mut n = 0_u64;
                while Instant::now() < deadline {
                    n += 1;
                    let document = doc! {"_id": format!("{writer}#{n:020}"), "key": writer as i64, "seq": n as i64, "at_ms": now_ms()};
                    collection.insert_one(document).await.expect("insert");
                    done.fetch_add(1, Ordering::Relaxed);
                }
            })
        })
        .collect();
    for task in tasks {
        task.await.expect("writer");
    }
    done.load(Ordering::Relaxed) as f64 / started.elapsed().as_secs_f64()
}
