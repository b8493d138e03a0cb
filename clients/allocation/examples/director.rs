//! An example director: forms matches from a queue of players and allocates a server for each,
//! as an Open Match director would after its match functions ran.
//!
//!     cargo run -p flotilla-allocation-client --example director -- \
//!         http://127.0.0.1:8443 games arena "$(kubectl -n games create token matchmaker --audience flotilla.dev/allocation)"

use std::time::Duration;

use flotilla_allocation_client::{AllocationClient, AllocationRequest};

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [url, namespace, fleet, token] = &args[..] else {
        return Err("usage: director URL NAMESPACE FLEET TOKEN".into());
    };
    let client = AllocationClient::new(url, token)?;
    let queue: Vec<String> = (1..=8).map(|i| format!("player-{i}")).collect();
    for (n, players) in queue.chunks(4).enumerate() {
        let request = AllocationRequest {
            fleet: Some(fleet.clone()),
            session_id: Some(format!("match-{n}")),
            players: players.to_vec(),
            ..Default::default()
        };
        let answer = client
            .allocate_with_retry(namespace, &request, Duration::from_secs(30))
            .await?;
        println!(
            "match-{n}: {} at {}:{} for {:?}",
            answer.game_server,
            answer.address,
            answer.ports.first().map_or(0, |p| p.port),
            answer.tokens.keys().collect::<Vec<_>>()
        );
    }
    Ok(())
}
