//! Prometheus metrics and the operations endpoints (`/metrics`, `/healthz`, `/readyz`), served on
//! their own port so they are not exposed with the public API.

use std::sync::Arc;
use std::time::Instant;

use axum::Router;
use axum::extract::{MatchedPath, Request, State};
use axum::http::StatusCode;
use axum::middleware::Next;
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
pub struct RequestLabels {
    /// The route template (`/v1/players/{id}`), never the raw path: ids would make it unbounded.
    pub route: String,
    pub method: String,
    pub status: u16,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RouteLabels {
    pub route: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct LoginLabels {
    pub method: &'static str,
    pub result: &'static str,
}

pub struct Metrics {
    pub requests: Family<RequestLabels, Counter>,
    pub duration: Family<RouteLabels, Histogram>,
    pub logins: Family<LoginLabels, Counter>,
    pub websockets: Gauge,
}

impl Metrics {
    pub fn register(registry: &mut Registry) -> Self {
        // 0.5 ms … ~4 s: a cached read is sub-millisecond, a password login ~50 ms.
        let duration = Family::<RouteLabels, Histogram>::new_with_constructor(|| {
            Histogram::new(exponential_buckets(0.0005, 2.0, 14))
        });
        let metrics = Self {
            requests: Family::default(),
            duration,
            logins: Family::default(),
            websockets: Gauge::default(),
        };
        registry.register(
            "flotilla_player_http_requests",
            "HTTP requests by route and status",
            metrics.requests.clone(),
        );
        registry.register(
            "flotilla_player_http_request_duration_seconds",
            "HTTP request latency by route",
            metrics.duration.clone(),
        );
        registry.register(
            "flotilla_player_logins",
            "Sign-in attempts by method and result",
            metrics.logins.clone(),
        );
        registry.register(
            "flotilla_player_websocket_connections",
            "Realtime connections open on this replica",
            metrics.websockets.clone(),
        );
        metrics
    }
}

/// Counts and times every request by route.
pub async fn track(State(state): State<Shared>, request: Request, next: Next) -> Response {
    let route = request
        .extensions()
        .get::<MatchedPath>()
        .map_or_else(|| "unmatched".to_owned(), |path| path.as_str().to_owned());
    let method = request.method().as_str().to_owned();
    let started = Instant::now();
    let response = next.run(request).await;
    state
        .metrics
        .duration
        .get_or_create(&RouteLabels { route: route.clone() })
        .observe(started.elapsed().as_secs_f64());
    let status = response.status().as_u16();
    state
        .metrics
        .requests
        .get_or_create(&RequestLabels {
            route,
            method,
            status,
        })
        .inc();
    response
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

/// Ready when the database and Redis answer: a replica that cannot reach them should get no traffic.
async fn ready(State(state): State<Shared>) -> Response {
    let mut redis = state.redis.clone();
    let redis_ok = redis::cmd("PING").query_async::<String>(&mut redis).await.is_ok();
    match (state.mongo.ping().await, redis_ok) {
        (Ok(()), true) => "ready".into_response(),
        _ => (StatusCode::SERVICE_UNAVAILABLE, "storage unreachable").into_response(),
    }
}
