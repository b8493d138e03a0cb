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
    /// The route template, never the raw path: ids would make it unbounded.
    pub route: String,
    pub method: String,
    pub status: u16,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RouteLabels {
    pub route: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct TransactionLabels {
    /// `grant`, `purchase`, `consume`, `gift`, the market's, trades' and auctions' kinds.
    pub kind: &'static str,
    /// `committed` or `voided`.
    pub outcome: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct SaleLabels {
    /// `market` or `auction`.
    pub venue: &'static str,
    /// A catalog currency (bounded by the catalog).
    pub currency: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct EscrowLabels {
    /// `listing`, `trade` or `auction`.
    pub exchange: String,
    /// `c:<currency>` or `i:<item>` (an instance counts in its item).
    pub asset: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct FraudLabels {
    /// The rule's name from the catalog (bounded: the catalog's rules).
    pub rule: String,
    /// `allow`, `hold` or `deny`.
    pub outcome: &'static str,
}

pub struct Metrics {
    pub requests: Family<RequestLabels, Counter>,
    pub duration: Family<RouteLabels, Histogram>,
    pub transactions: Family<TransactionLabels, Counter>,
    pub fraud: Family<FraudLabels, Counter>,
    /// Sales on the market and in the auction house, and their volume (prices summed).
    pub sales: Family<SaleLabels, Counter>,
    pub sales_volume: Family<SaleLabels, Counter>,
    /// What escrow accounts hold, per exchange and asset, at the last audit.
    pub escrow: Family<EscrowLabels, Gauge>,
    /// Value created or destroyed according to the last audit: must stay 0.
    pub audit_drift: Gauge,
    pub audit_violations: Gauge,
    /// Transactions not yet finished at the last audit (in flight, or waiting for recovery).
    pub audit_unfinished: Gauge,
    pub audit_seconds: Gauge<f64, std::sync::atomic::AtomicU64>,
    pub recovered: Counter,
    pub catalog_version: Gauge,
    pub catalog_refused: Counter,
}

impl Metrics {
    pub fn register(registry: &mut Registry) -> Self {
        // 1 ms … ~16 s: a transaction is a handful of store round trips (~10 ms on FerretDB), and
        // the tail under contention is what the buckets must show.
        let duration = Family::<RouteLabels, Histogram>::new_with_constructor(|| {
            Histogram::new(exponential_buckets(0.001, 2.0, 15))
        });
        let metrics = Self {
            requests: Family::default(),
            duration,
            transactions: Family::default(),
            fraud: Family::default(),
            sales: Family::default(),
            sales_volume: Family::default(),
            escrow: Family::default(),
            audit_drift: Gauge::default(),
            audit_violations: Gauge::default(),
            audit_unfinished: Gauge::default(),
            audit_seconds: Gauge::default(),
            recovered: Counter::default(),
            catalog_version: Gauge::default(),
            catalog_refused: Counter::default(),
        };
        let r = registry;
        r.register(
            "flotilla_economy_http_requests",
            "HTTP requests by route and status",
            metrics.requests.clone(),
        );
        r.register(
            "flotilla_economy_http_request_duration_seconds",
            "HTTP request latency by route",
            metrics.duration.clone(),
        );
        r.register(
            "flotilla_economy_transactions",
            "Transactions decided, by kind and outcome",
            metrics.transactions.clone(),
        );
        r.register(
            "flotilla_economy_audit_drift",
            "Value created or destroyed according to the last audit (must be 0)",
            metrics.audit_drift.clone(),
        );
        r.register(
            "flotilla_economy_audit_violations",
            "Rule violations found by the last audit",
            metrics.audit_violations.clone(),
        );
        r.register(
            "flotilla_economy_audit_unfinished",
            "Transactions unfinished at the last audit",
            metrics.audit_unfinished.clone(),
        );
        r.register(
            "flotilla_economy_audit_duration_seconds",
            "How long the last audit took",
            metrics.audit_seconds.clone(),
        );
        r.register(
            "flotilla_economy_recovered",
            "Unfinished transactions completed or voided by the recovery worker",
            metrics.recovered.clone(),
        );
        r.register(
            "flotilla_economy_catalog_version",
            "The version of the catalog in use",
            metrics.catalog_version.clone(),
        );
        r.register(
            "flotilla_economy_catalog_refused",
            "Catalog documents refused by validation (the running one stayed)",
            metrics.catalog_refused.clone(),
        );
        r.register(
            "flotilla_economy_sales",
            "Sales on the market and in the auction house, by venue and currency",
            metrics.sales.clone(),
        );
        r.register(
            "flotilla_economy_sales_volume",
            "Prices of sales summed, in the currency's minor units",
            metrics.sales_volume.clone(),
        );
        r.register(
            "flotilla_economy_escrow_held",
            "What escrow accounts held at the last audit, by exchange and asset",
            metrics.escrow.clone(),
        );
        r.register(
            "flotilla_economy_fraud_checks",
            "Fraud rule checks by rule and outcome",
            metrics.fraud.clone(),
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
    let metrics = &state.metrics;
    metrics
        .duration
        .get_or_create(&RouteLabels { route: route.clone() })
        .observe(started.elapsed().as_secs_f64());
    let status = response.status().as_u16();
    metrics
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

impl Metrics {
    /// Counts a decided transaction.
    pub fn transaction(&self, kind: &'static str, committed: bool) {
        let outcome = if committed { "committed" } else { "voided" };
        self.transactions
            .get_or_create(&TransactionLabels { kind, outcome })
            .inc();
    }

    /// Counts a sale at `price` in `currency`.
    pub fn sale(&self, venue: &'static str, currency: &str, price: i64) {
        let labels = SaleLabels {
            venue,
            currency: currency.to_owned(),
        };
        self.sales.get_or_create(&labels).inc();
        self.sales_volume
            .get_or_create(&labels)
            .inc_by(u64::try_from(price).unwrap_or(0));
    }
}
