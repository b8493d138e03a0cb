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

    pub fn committed(&self, events: usize, files: usize) {
        self.committed_events.inc_by(events as u64);
        self.committed_files.inc_by(files as u64);
    }
}

pub fn router(state: Shared, registry: Registry) -> Router {
    let registry = Arc::new(registry);
    Router::new()
        .route("/metrics", get(move || metrics(registry.clone())))
        .route("/healthz", get(|| async { "ok" }))
        .route("/readyz", get(ready))
        .with_state(state)
}

async fn metrics(registry: Arc<Registry>) -> Response {
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
