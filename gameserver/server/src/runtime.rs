//! Arguments and wiring of the `flotilla-gameserver` binary.

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use axum::Router;
use axum::routing::get;
use clap::Parser;
use flotilla_api::connection_token::TokenVerifier;
use flotilla_game::{ArenaConfig, GameConfig};
use prometheus_client::registry::Registry;
use tokio_util::sync::CancellationToken;
use tracing::info;

use crate::checkpoint_store::CheckpointStore;
use crate::metrics::Metrics;
use crate::platform::{AfterMatch, Platform};
use crate::results_report::ResultsReporter;
use crate::server::{self, ServerConfig};
use crate::{Error, Result};

#[derive(Debug, Parser)]
#[command(
    name = "flotilla-gameserver",
    about = "The Flotilla reference QUIC game server"
)]
pub struct Args {
    /// Address to serve players on: the pod's IP.
    #[arg(long, env = "POD_IP", default_value = "127.0.0.1")]
    pub address: IpAddr,
    /// UDP port for QUIC.
    #[arg(long, env = "FLOTILLA_GAME_PORT", default_value_t = 7777)]
    pub port: u16,
    /// Port for /metrics and /healthz on the same address.
    #[arg(long, env = "FLOTILLA_METRICS_PORT", default_value_t = 9100)]
    pub metrics_port: u16,
    /// This GameServer's name: connection tokens must be issued for it.
    #[arg(long, env = "FLOTILLA_GAMESERVER_NAME", default_value = "local")]
    pub name: String,
    #[arg(long, env = "FLOTILLA_GAMESERVER_NAMESPACE", default_value = "default")]
    pub namespace: String,
    /// Ed25519 public keys (standard base64, comma-separated) whose connection tokens are
    /// accepted: the allocation service's signing keys.
    #[arg(long, env = "FLOTILLA_TOKEN_KEYS")]
    pub token_keys: String,
    #[arg(long, env = "FLOTILLA_TICK_RATE", default_value_t = 30)]
    pub tick_rate: u16,
    #[arg(long, env = "FLOTILLA_MATCH_SECONDS", default_value_t = 120)]
    pub match_seconds: u32,
    /// Connected players needed to start the match.
    #[arg(long, env = "FLOTILLA_MIN_PLAYERS", default_value_t = 1)]
    pub min_players: u16,
    #[arg(long, env = "FLOTILLA_MAX_PLAYERS", default_value_t = 100)]
    pub max_players: u16,
    /// Side of the square arena in metres.
    #[arg(long, env = "FLOTILLA_ARENA_METRES", default_value_t = 200)]
    pub arena_metres: i32,
    /// What to do when a match ends.
    #[arg(long, env = "FLOTILLA_AFTER_MATCH", value_enum, default_value = "ready")]
    pub after_match: AfterMatch,
    /// Redis for match checkpoints (`redis://host:port`); without it a match dies with its
    /// server.
    #[arg(long, env = "FLOTILLA_REDIS_URL")]
    pub redis_url: Option<String>,
    #[arg(long, env = "FLOTILLA_CHECKPOINT_SECONDS", default_value_t = 2)]
    pub checkpoint_seconds: u64,
    #[arg(long, env = "FLOTILLA_HEARTBEAT_SECONDS", default_value_t = 2)]
    pub heartbeat_seconds: u64,
    /// The player service's URL: match results are reported there (with `--player-service-key`).
    #[arg(long, env = "FLOTILLA_PLAYER_SERVICE_URL", requires = "player_service_key")]
    pub player_service_url: Option<String>,
    /// The player service's service key.
    #[arg(long, env = "FLOTILLA_PLAYER_SERVICE_KEY", hide_env_values = true)]
    pub player_service_key: Option<String>,
    /// The economy service's URL: each player's match reward is granted there (with the same key).
    #[arg(long, env = "FLOTILLA_ECONOMY_URL", requires = "player_service_url")]
    pub economy_url: Option<String>,
    /// The analytics service's URL: each player's match is sent there as events (same key).
    #[arg(long, env = "FLOTILLA_ANALYTICS_URL", requires = "player_service_url")]
    pub analytics_url: Option<String>,
    /// Run without the platform, allocated to this session at once (benchmarks, local play).
    #[arg(long)]
    pub standalone_session: Option<String>,
}

pub async fn run(args: Args) -> Result<()> {
    let Args {
        address,
        port,
        metrics_port,
        name,
        namespace,
        token_keys,
        tick_rate,
        match_seconds,
        min_players,
        max_players,
        arena_metres,
        after_match,
        redis_url,
        checkpoint_seconds,
        heartbeat_seconds,
        player_service_url,
        player_service_key,
        economy_url,
        analytics_url,
        standalone_session,
    } = args;
    let results = match (player_service_url, player_service_key) {
        (Some(url), Some(key)) => {
            let reporter = ResultsReporter::new(&url, key, format!("{namespace}/{name}"))?;
            Some(reporter.with_economy(economy_url).with_analytics(analytics_url))
        }
        _ => None,
    };
    let verifier = TokenVerifier::from_base64_list(&token_keys).map_err(|e| Error::Config(e.to_string()))?;
    if !(1..=240).contains(&tick_rate) {
        return Err(Error::Config(format!(
            "tick rate {tick_rate} is not within 1..=240"
        )));
    }
    if !(10..=10_000).contains(&arena_metres) {
        return Err(Error::Config(format!(
            "arena of {arena_metres} m is not within 10..=10000"
        )));
    }
    let game = GameConfig {
        arena: ArenaConfig {
            size_mm: arena_metres * 1000,
            ..ArenaConfig::default()
        },
        tick_rate,
        match_ticks: match_seconds.saturating_mul(u32::from(tick_rate)),
        min_players,
        max_players,
        ..GameConfig::default()
    };
    let mut registry = Registry::default();
    let metrics = Metrics::new(&mut registry);
    let server = server::start(
        ServerConfig {
            bind: SocketAddr::new(address, port),
            name,
            game,
            verifier,
        },
        metrics.clone(),
    )?;
    serve_metrics(SocketAddr::new(address, metrics_port), registry).await?;

    let stop = CancellationToken::new();
    tokio::spawn(cancel_on_signal(stop.clone()));
    if let Some(session) = standalone_session {
        server.handle.allocate(&session).await?;
        info!(%session, "standalone: allocated");
        stop.cancelled().await;
        server.close();
        return Ok(());
    }
    let store = match redis_url {
        Some(url) => Some(CheckpointStore::connect(&url, &namespace).await?),
        None => None,
    };
    let platform = Platform {
        sdk: flotilla_sdk::Sdk::from_env()?,
        store,
        after_match,
        heartbeat: Duration::from_secs(heartbeat_seconds.max(1)),
        checkpoint_every: Duration::from_secs(checkpoint_seconds.max(1)),
        max_players: u32::from(max_players),
        metrics,
        results,
    };
    platform.run(server, stop).await
}

async fn serve_metrics(addr: SocketAddr, registry: Registry) -> Result<()> {
    let registry = std::sync::Arc::new(registry);
    let app = Router::new().route("/healthz", get(|| async { "ok" })).route(
        "/metrics",
        get(move || {
            let registry = registry.clone();
            async move {
                let mut body = String::new();
                match prometheus_client::encoding::text::encode(&mut body, &registry) {
                    Ok(()) => (axum::http::StatusCode::OK, body),
                    Err(_) => (axum::http::StatusCode::INTERNAL_SERVER_ERROR, String::new()),
                }
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .map_err(|source| Error::Bind { addr, source })?;
    tokio::spawn(async move { axum::serve(listener, app).await });
    Ok(())
}

async fn cancel_on_signal(stop: CancellationToken) {
    let Ok(mut term) = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) else {
        return;
    };
    tokio::select! {
        _ = term.recv() => {}
        _ = tokio::signal::ctrl_c() => {}
    }
    info!("signal received; shutting down");
    stop.cancel();
}
