//! The replica's batched presence refreshes against the real Redis. A test binary of its own:
//! it counts the scripts Redis ran, which other tests running at the same time would add to.

use std::time::Duration;

use flotilla_player::presence_refresh::PresenceRefresher;
use flotilla_storage::presence::{Presence, PresenceEntry};

/// Scripts Redis has run since it started (EVAL and EVALSHA).
async fn scripts_run(redis: &mut redis::aio::ConnectionManager) -> u64 {
    let info: String = redis::cmd("INFO")
        .arg("commandstats")
        .query_async(redis)
        .await
        .expect("INFO commandstats");
    info.lines()
        .filter(|line| line.starts_with("cmdstat_evalsha:") || line.starts_with("cmdstat_eval:"))
        .filter_map(|line| {
            line.split("calls=")
                .nth(1)?
                .split(',')
                .next()?
                .parse::<u64>()
                .ok()
        })
        .sum()
}

#[tokio::test]
async fn concurrent_refreshes_share_round_trips_and_report_lapsed_entries() {
    let url = std::env::var("FLOTILLA_REDIS_URL").expect("FLOTILLA_REDIS_URL: run e2e/storage/up.sh");
    let mut redis = flotilla_storage::connect_redis(&url).await.expect("redis");
    let presence = Presence::new(redis.clone(), Duration::from_secs(30));
    let run = std::process::id();
    let entry = PresenceEntry {
        status: "online".into(),
        payload: serde_json::json!({}),
        updated_ms: 1,
    };
    let players: Vec<String> = (0..500).map(|i| format!("refresh-{run}-{i}")).collect();
    for player in &players {
        presence.set(player, "phone", &entry).await.expect("set");
    }
    let refresher = PresenceRefresher::spawn(presence.clone());

    let before = scripts_run(&mut redis).await;
    let refreshes = players
        .iter()
        .map(|player| refresher.refresh(player, "phone"))
        .chain(std::iter::once(refresher.refresh(&players[0], "never-set")));
    let answers = futures::future::join_all(refreshes).await;
    let round_trips = scripts_run(&mut redis).await - before;

    assert!(answers[..500].iter().all(|a| *a == Some(true)), "{answers:?}");
    assert_eq!(
        answers[500],
        Some(false),
        "an entry that was never set is not refreshed"
    );
    // 501 refreshes in batches of 100: 6 scripts, where one per connection would be 501.
    assert!(round_trips <= 12, "{round_trips} scripts for 501 refreshes");
}
