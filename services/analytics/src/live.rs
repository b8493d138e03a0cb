//! The live counters the pipeline keeps in Redis — events per second by name, concurrent players,
//! players today, totals — as one snapshot (`GET /v1/admin/live`) and as a Server-Sent Events
//! stream of snapshots, one a second (`GET /v1/admin/live/stream`), which the dashboard draws.

use std::collections::BTreeMap;
use std::convert::Infallible;
use std::time::Duration;

use axum::extract::State;
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::routing::get;
use axum::{Json, Router};
use futures::Stream;
use serde::{Deserialize, Serialize};

use crate::caller::AdminCaller;
use crate::pipeline::chunk::ACTIVE_MS;
use crate::state::Shared;
use crate::{Error, Result};

/// How often a stream sends a snapshot: the counters move by the second.
const PACE: Duration = Duration::from_secs(1);

pub fn routes() -> Router<Shared> {
    Router::new()
        .route("/v1/admin/live", get(live))
        .route("/v1/admin/live/stream", get(stream))
}

/// The live counters, as committed by the pipeline (events kept out of KPIs not included).
#[derive(Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Live {
    /// When the counters were read (Unix milliseconds).
    pub at_ms: i64,
    /// Events per second over the last ten seconds, by name.
    pub events_per_second: BTreeMap<String, f64>,
    /// Players with an event in the last five minutes.
    pub concurrent_players: u64,
    /// Players with an event received today (UTC).
    pub players_today: u64,
    /// Events since the start, by name.
    pub totals: BTreeMap<String, u64>,
    /// Events kept out of KPIs since the start, by reason.
    pub excluded: BTreeMap<String, u64>,
}

pub async fn read_live(state: &Shared) -> Result<Live> {
    let now = flotilla_storage::mongo::now_ms();
    let keys = &state.keys;
    let mut pipe = redis::pipe();
    let second = now / 1000;
    for past in 1..=10 {
        pipe.hgetall(keys.rate(second - past));
    }
    pipe.zcount(keys.active(), now - ACTIVE_MS, "+inf")
        .scard(keys.today(now))
        .hgetall(keys.totals())
        .hgetall(keys.excluded());
    let mut redis = state.log_redis.clone();
    let mut answers: Vec<redis::Value> = pipe
        .query_async(&mut redis)
        .await
        .map_err(flotilla_storage::Error::from)?;
    let parse = |value: redis::Value| -> Result<BTreeMap<String, u64>> {
        redis::from_redis_value(value).map_err(|e| Error::Internal(format!("live counters: {e}")))
    };
    let excluded = parse(answers.pop().unwrap_or(redis::Value::Nil))?;
    let totals = parse(answers.pop().unwrap_or(redis::Value::Nil))?;
    let number = |value: Option<redis::Value>| -> u64 {
        value
            .and_then(|value| redis::from_redis_value(value).ok())
            .unwrap_or(0)
    };
    let players_today = number(answers.pop());
    let concurrent_players = number(answers.pop());
    let mut events_per_second = BTreeMap::new();
    for second in answers {
        for (name, count) in parse(second)? {
            *events_per_second.entry(name).or_insert(0.0) += count as f64 / 10.0;
        }
    }
    Ok(Live {
        at_ms: now,
        events_per_second,
        concurrent_players,
        players_today,
        totals,
        excluded,
    })
}

async fn live(State(state): State<Shared>, _: AdminCaller) -> Result<Json<Live>> {
    Ok(Json(read_live(&state).await?))
}

/// A `live` event with a fresh snapshot every second, for as long as the client listens. A
/// failed read is sent as an `error` event (the stream goes on: Redis may be back next second).
async fn stream(
    State(state): State<Shared>,
    _: AdminCaller,
) -> Sse<impl Stream<Item = std::result::Result<Event, Infallible>>> {
    let mut ticks = tokio::time::interval(PACE);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let events = futures::stream::unfold((state, ticks), |(state, mut ticks)| async move {
        ticks.tick().await;
        let event = match read_live(&state).await {
            Ok(live) => Event::default()
                .event("live")
                .json_data(&live)
                .unwrap_or_else(|_| {
                    Event::default()
                        .event("error")
                        .data("the snapshot does not serialise")
                }),
            Err(error) => {
                tracing::warn!(%error, "live counters for a stream");
                Event::default()
                    .event("error")
                    .data("the live counters cannot be read")
            }
        };
        Some((Ok(event), (state, ticks)))
    });
    Sse::new(events).keep_alive(KeepAlive::default())
}
