//! Flotilla's analytics service: collects game events, keeps them in a durable log, and turns the
//! log into a columnar event store (Parquet) exactly once, with live counters beside it.
//!
//! Modules by responsibility:
//! - collecting: [`collector`] (`POST /v1/events`), [`event`] (what an event is and the rules it
//!   must pass), [`schemas`] (the registry of custom events' JSON Schemas), [`caller`] (who is
//!   sending);
//! - the log: [`log`] (Redis Streams, sharded by player);
//! - processing: [`pipeline`] (shard ownership, and each chunk to files and a commit, exactly
//!   once), [`store`] (the Parquet files);
//! - reading: [`kpi`] (KPIs, retention, sessions, funnels and custom-event counts in any time
//!   zone, with DataFusion), [`admin`] (pipeline status, reports), [`export`] (events as JSON
//!   lines, CSV or Parquet), [`live`] (the live counters, also as a stream), [`dashboard`] (the
//!   web page that draws them all);
//! - plumbing: [`metrics`], [`openapi`], [`state`], [`args`].

pub mod admin;
pub mod args;
pub mod caller;
pub mod collector;
pub mod dashboard;
mod error;
pub mod event;
pub mod export;
pub mod kpi;
pub mod live;
pub mod log;
pub mod metrics;
pub mod openapi;
pub mod pipeline;
pub mod schemas;
pub mod state;
pub mod store;

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::DefaultBodyLimit;
use flotilla_player::remote::PlayerTokens;
use flotilla_service::SecretKey;
use prometheus_client::registry::Registry;
use tokio::net::TcpListener;

pub use error::{Error, Result};

use crate::args::{Args, Command, ServeArgs};
use crate::event::Limits;
use crate::log::RedisLog;
use crate::metrics::Metrics;
use crate::pipeline::{Keys, Settings};
use crate::state::{AppState, Shared};
use crate::store::EventStore;

pub async fn run(args: Args) -> Result<()> {
    match args.command {
        Command::Serve(serve_args) => serve(*serve_args).await,
    }
}

/// Everything `serve` sets up, minus binding: tests start replicas in-process with this. The
/// pipeline runs in the background.
pub async fn build(args: ServeArgs) -> Result<(Shared, Router, Router)> {
    if args.shards == 0 || args.shards > 1024 {
        return Err(Error::Config("--shards is 1-1024".into()));
    }
    let config = |error: flotilla_service::ConfigError| Error::Config(error.0);
    let redis = flotilla_storage::connect_redis(&args.redis_url).await?;
    let log_redis = flotilla_storage::connect_redis(&args.log_redis_url).await?;
    let log = RedisLog::new(
        &args.log_redis_url,
        log_redis.clone(),
        &args.namespace,
        args.shards,
    )?;
    log.check_durable(args.allow_volatile_log).await?;
    let tokens = Arc::new(
        PlayerTokens::new(
            &args.player_token_keys,
            args.player_url.as_deref(),
            redis,
            &args.namespace,
        )
        .await
        .map_err(|error| Error::Config(error.to_string()))?,
    );
    tokio::spawn(tokens.clone().refresh(Duration::from_secs(60)));
    let mut registry = Registry::default();
    let state: Shared = Arc::new(AppState {
        log,
        log_redis,
        store: EventStore::new(&args.data_dir),
        keys: Keys::new(&args.namespace),
        caller_keys: caller::Keys {
            service: SecretKey::new(&args.service_key, "service key").map_err(config)?,
            admin: SecretKey::new(&args.admin_key, "admin key").map_err(config)?,
        },
        tokens,
        metrics: Metrics::register(&mut registry),
        limits: Limits {
            max_properties: args.max_properties,
            max_string_len: args.max_string_bytes,
            max_age_ms: i64::from(args.max_event_age_days) * 86_400_000,
            ..Limits::default()
        },
        schemas: schemas::Registry::default(),
        max_events_per_minute: args.max_events_per_minute,
        settings: Settings {
            lease: Duration::from_secs(args.lease_seconds.max(1)),
            chunk_records: args.chunk_records.max(1),
            wait: Duration::from_millis(500),
        },
        game: args.game,
    });
    if args.pipeline {
        tokio::spawn(pipeline::run(state.clone(), args.replica));
    }
    let ops = metrics::router(state.clone(), registry);
    Ok((state.clone(), api(state), ops))
}

/// The public API.
pub fn api(state: Shared) -> Router {
    Router::new()
        .merge(collector::routes())
        .merge(admin::routes())
        .merge(live::routes())
        .merge(export::routes())
        .merge(dashboard::routes())
        .merge(schemas::routes())
        .merge(openapi::routes())
        // A gzip body may not exceed the batch limit either; decompressed, it is checked again.
        .layer(DefaultBodyLimit::max(collector::MAX_BYTES))
        .with_state(state)
}

async fn serve(args: ServeArgs) -> Result<()> {
    let (addr, metrics_addr) = (args.addr, args.metrics_addr);
    let (_state, api, ops) = build(args).await?;
    let api_listener = TcpListener::bind(addr).await?;
    let ops_listener = TcpListener::bind(metrics_addr).await?;
    tracing::info!(%addr, %metrics_addr, "serving");
    let api = axum::serve(api_listener, api).with_graceful_shutdown(flotilla_service::shutdown());
    let ops = axum::serve(ops_listener, ops).with_graceful_shutdown(flotilla_service::shutdown());
    tokio::try_join!(api.into_future(), ops.into_future())?;
    Ok(())
}
