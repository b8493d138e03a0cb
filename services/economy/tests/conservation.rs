//! Conservation under load on the real FerretDB: 64 writers doing random grants, gifts, purchases
//! and consumption through two replicas for `ECONOMY_SOAK_SECONDS` (default 60), then the books
//! must balance exactly, every acknowledged request must have taken effect as answered, and no
//! limit may have been passed. (`crashes.rs` does the same with SIGKILLs and a store restart.)

mod support;

use std::time::{Duration, Instant};

use support::{Deployment, check_books, players, unique, writer};

fn soak_seconds() -> u64 {
    std::env::var("ECONOMY_SOAK_SECONDS").map_or(60, |s| s.parse().expect("ECONOMY_SOAK_SECONDS is a number"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sixty_four_writers_neither_create_nor_lose_value() {
    let deployment = Deployment::new();
    let replicas = [deployment.replica().await, deployment.replica().await];
    let players = players(32, &unique("run"));
    let deadline = Instant::now() + Duration::from_secs(soak_seconds());
    let writers: Vec<_> = (0..64)
        .map(|i| {
            let base = format!("http://{}", replicas[i % 2].addr);
            tokio::spawn(writer(base, i, players.clone(), deadline))
        })
        .collect();
    let mut acks = Vec::new();
    for writer in writers {
        acks.extend(writer.await.expect("writer"));
    }
    let books = replicas[0].state.ledger.store().books().await.expect("books");
    check_books(&books, &acks);
}
