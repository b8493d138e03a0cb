//! The operations endpoint: `/metrics` for Prometheus, `/healthz` (the process answers),
//! `/readyz` (it serves; every replica serves the SDK, leader or not), the ops console
//! under `/console` (`console.rs`) and Prometheus service discovery of game servers at
//! `/sd/gameservers` (`discovery.rs`).

use std::sync::Arc;

use axum::{Router, extract::State, http::StatusCode, http::header, response::IntoResponse, routing::get};
use flotilla_api::GameServer;
use kube::runtime::reflector::Store;
use prometheus_client::registry::Registry;

use crate::console::{self, Console};
use crate::discovery;

pub fn router(registry: Arc<Registry>, console: Arc<Console>, servers: Store<GameServer>) -> Router {
    Router::new()
        .route("/metrics", get(metrics))
        .route("/healthz", get(|| async { "ok" }))
        .route("/readyz", get(|| async { "ok" }))
        .with_state(registry)
        .merge(console::router(console))
        .route(
            "/sd/gameservers",
            get(move || {
                let servers = servers.clone();
                async move {
                    axum::Json(discovery::target_groups(
                        servers.state().iter().map(AsRef::as_ref),
                    ))
                }
            }),
        )
}

async fn metrics(State(registry): State<Arc<Registry>>) -> impl IntoResponse {
    let mut text = String::new();
    match prometheus_client::encoding::text::encode(&mut text, &registry) {
        Ok(()) => (
            StatusCode::OK,
            [(
                header::CONTENT_TYPE,
                "application/openmetrics-text; version=1.0.0; charset=utf-8",
            )],
            text,
        )
            .into_response(),
        Err(_) => StatusCode::INTERNAL_SERVER_ERROR.into_response(),
    }
}
