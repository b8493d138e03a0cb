//! The admin API: the pipeline's state and the KPI reports.

use axum::extract::State;
use axum::routing::get;
use axum::{Json, Router};
use flotilla_service::extract::QueryParams;
use redis::AsyncCommands;
use serde::Serialize;

use crate::Result;
use crate::caller::AdminCaller;
use crate::kpi::custom::{CountQuery, Counts};
use crate::kpi::daily::Report;
use crate::kpi::funnel::{Funnel, FunnelQuery};
use crate::kpi::sessions::SessionReport;
use crate::kpi::{self, KpiQuery};
use crate::pipeline::{self, ShardStatus};
use crate::state::Shared;

pub fn routes() -> Router<Shared> {
    Router::new()
        .route("/v1/admin/pipeline", get(status))
        .route("/v1/admin/kpis", get(kpis))
        .route("/v1/admin/kpis/sessions", get(sessions))
        .route("/v1/admin/kpis/funnel", get(funnel))
        .route("/v1/admin/kpis/events", get(counts))
}

async fn kpis(
    State(state): State<Shared>,
    _: AdminCaller,
    QueryParams(query): QueryParams<KpiQuery>,
) -> Result<Json<Report>> {
    Ok(Json(kpi::daily::report(&state, &query).await?))
}

async fn sessions(
    State(state): State<Shared>,
    _: AdminCaller,
    QueryParams(query): QueryParams<KpiQuery>,
) -> Result<Json<SessionReport>> {
    Ok(Json(kpi::sessions::report(&state, &query).await?))
}

async fn funnel(
    State(state): State<Shared>,
    _: AdminCaller,
    QueryParams(query): QueryParams<FunnelQuery>,
) -> Result<Json<Funnel>> {
    Ok(Json(kpi::funnel::report(&state, &query).await?))
}

async fn counts(
    State(state): State<Shared>,
    _: AdminCaller,
    QueryParams(query): QueryParams<CountQuery>,
) -> Result<Json<Counts>> {
    Ok(Json(kpi::custom::report(&state, &query).await?))
}

#[derive(Serialize, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct PipelineStatus {
    /// Every shard has committed all it was given.
    pub caught_up: bool,
    pub shards: Vec<ShardStatus>,
    /// Committed files in the event store.
    pub files: u64,
}

async fn status(State(state): State<Shared>, _: AdminCaller) -> Result<Json<PipelineStatus>> {
    let shards = pipeline::status(&state).await?;
    let mut redis = state.log_redis.clone();
    let files: u64 = redis
        .hlen(state.keys.manifest())
        .await
        .map_err(flotilla_storage::Error::from)?;
    Ok(Json(PipelineStatus {
        caught_up: shards.iter().all(|shard| shard.caught_up),
        shards,
        files,
    }))
}
