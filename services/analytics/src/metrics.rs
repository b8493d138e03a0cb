//! Prometheus metrics and the operations endpoints (`/metrics`, `/healthz`, `/readyz`), served on
//! their own port so they are not exposed with the public API.

use std::collections::BTreeMap;
use std::sync::Arc;

use axum::Router;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::encoding::text::encode;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

use crate::state::Shared;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct OutcomeLabels {
    /// `accepted` or `rejected`.
    pub outcome: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ReasonLabels {
    /// `flood` or `late`.
    pub reason: String,
}

pub struct Metrics {
    pub events: Family<OutcomeLabels, Counter>,
    pub excluded: Family<ReasonLabels, Counter>,
    /// New events committed to the event store (resends not counted).
    pub committed_events: Counter,
    pub committed_files: Counter,
    pub pipeline_errors: Counter,
    /// Shards this replica works.
    pub owned_shards: Gauge,
    /// From a batch's body being read to its acknowledgement (durably appended), in seconds.
    pub collect_seconds: Histogram,
    /// From acknowledgement to commit for the oldest event of each committed chunk, in seconds:
    /// how far the live counters trail the collector.
    pub freshness_seconds: Histogram,
    /// The live counters, read from Redis when scraped (every replica reports the same).
    pub concurrent_players: Gauge,
    pub players_today: Gauge,
}

impl Metrics {
    pub fn register(registry: &mut Registry) -> Self {
        let metrics = Self {
            events: Family::default(),
            excluded: Family::default(),
            committed_events: Counter::default(),
            committed_files: Counter::default(),
            pipeline_errors: Counter::default(),
            owned_shards: Gauge::default(),
            // 0.5 ms to 4 s.
            collect_seconds: Histogram::new(exponential_buckets(0.0005, 2.0, 14)),
            // 50 ms to 7 min.
            freshness_seconds: Histogram::new(exponential_buckets(0.05, 2.0, 14)),
            concurrent_players: Gauge::default(),
            players_today: Gauge::default(),
        };
        let registry = registry.sub_registry_with_prefix("flotilla_analytics");
        registry.register(
            "events",
            "Events received by the collector, by outcome",
            metrics.events.clone(),
        );
        registry.register(
            "excluded_events",
            "Accepted events kept out of KPIs, by reason",
            metrics.excluded.clone(),
        );
        registry.register(
            "committed_events",
            "New events the pipeline committed to the event store",
            metrics.committed_events.clone(),
        );
        registry.register(
            "committed_files",
            "Parquet files the pipeline committed",
            metrics.committed_files.clone(),
        );
        registry.register(
            "pipeline_errors",
            "Chunks the pipeline failed to process (retried)",
            metrics.pipeline_errors.clone(),
        );
        registry.register(
            "owned_shards",
            "Log shards this replica processes",
            metrics.owned_shards.clone(),
        );
        registry.register(
            "collect_seconds",
            "From a batch's body being read to its acknowledgement once durably appended",
            metrics.collect_seconds.clone(),
        );
        registry.register(
            "freshness_seconds",
            "From acknowledgement to commit, for the oldest event of each committed chunk",
            metrics.freshness_seconds.clone(),
        );
        registry.register(
            "concurrent_players",
            "Players with an event in the last five minutes (live counters, read when scraped)",
            metrics.concurrent_players.clone(),
        );
        registry.register(
            "players_today",
            "Players with an event received today, UTC (live counters, read when scraped)",
            metrics.players_today.clone(),
        );
        metrics
    }

    pub fn collected(&self, accepted: usize, rejected: usize, excluded: &BTreeMap<String, usize>) {
        let count = |outcome| self.events.get_or_create(&OutcomeLabels { outcome });
        count("accepted").inc_by(accepted as u64);
        count("rejected").inc_by(rejected as u64);
        for (reason, n) in excluded {
            self.excluded
                .get_or_create(&ReasonLabels {
                    reason: reason.clone(),
                })
                .inc_by(*n as u64);
        }
    }

    /// A chunk committed; `oldest_received_ms` is when its oldest event was acknowledged.
    pub fn committed(&self, events: usize, files: usize, oldest_received_ms: Option<i64>, now_ms: i64) {
        self.committed_events.inc_by(events as u64);
        self.committed_files.inc_by(files as u64);
        if let Some(received) = oldest_received_ms {
            self.freshness_seconds
                .observe((now_ms - received).max(0) as f64 / 1000.0);
        }
    }
}

pub fn router(state: Shared, registry: Registry) -> Router {
    let registry = Arc::new(registry);
    Router::new()
        .route(
            "/metrics",
            get(move |State(state): State<Shared>| metrics(state, registry.clone())),
        )
        .route("/healthz", get(|| async { "ok" }))
        .route("/readyz", get(ready))
        .with_state(state)
}

async fn metrics(state: Shared, registry: Arc<Registry>) -> Response {
    // A scrape without Redis still answers: the gauges keep their last values.
    if let Ok(live) = crate::live::read_live(&state).await {
        let gauge = |value: u64| i64::try_from(value).unwrap_or(i64::MAX);
        state
            .metrics
            .concurrent_players
            .set(gauge(live.concurrent_players));
        state.metrics.players_today.set(gauge(live.players_today));
    }
    let mut body = String::new();
    match encode(&mut body, &registry) {
        Ok(()) => (
            [(
                "content-type",
                "application/openmetrics-text; version=1.0.0; charset=utf-8",
            )],
            body,
        )
            .into_response(),
        Err(_) => StatusCode::INTERNAL_SERVER_ERROR.into_response(),
    }
}

/// Ready when the log's Redis answers: a replica that cannot append should get no batches.
async fn ready(State(state): State<Shared>) -> Response {
    let mut redis = state.log_redis.clone();
    match redis::cmd("PING").query_async::<String>(&mut redis).await {
        Ok(_) => "ready".into_response(),
        Err(_) => (StatusCode::SERVICE_UNAVAILABLE, "the log is unreachable").into_response(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The Grafana dashboard in the chart queries only series this service exports.
    #[test]
    fn the_grafana_dashboard_queries_exported_series() {
        let mut registry = Registry::default();
        let metrics = Metrics::register(&mut registry);
        metrics.collected(1, 1, &BTreeMap::from([("flood".to_owned(), 1)]));
        metrics.committed(1, 1, Some(0), 1);
        metrics.collect_seconds.observe(0.01);
        let mut exported = String::new();
        encode(&mut exported, &registry).expect("encodes");
        let dashboard = include_str!("../../../charts/flotilla/dashboards/analytics.json");
        let mut queried = 0;
        for name in dashboard.split("flotilla_analytics_").skip(1) {
            let name: String = name
                .chars()
                .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                .collect();
            let series = format!("flotilla_analytics_{name}");
            assert!(
                exported.lines().any(|line| line.starts_with(&series)),
                "the dashboard queries {series}, which is not exported"
            );
            queried += 1;
        }
        assert!(queried >= 10, "{queried} queries found");
    }
}
