//! Flotilla's player service: sign-in, profiles, friends, presence, messages and notifications, on
//! MongoDB (FerretDB), Redis and OpenSearch. Stateless: any number of replicas serve the same players,
//! and realtime events cross between them on the Redis bus ([`events`]).
//!
//! Modules by responsibility:
//! - HTTP surface: [`auth`], [`profiles`], [`friends`], [`messages`], [`notifications`], [`realtime`]
//!   (WebSocket, presence), [`matches`] (game-server reports), [`admin`] (bans);
//! - rules: [`privacy`] (every cross-player check), [`session`] (who is calling);
//! - plumbing: [`model`] (what is stored), [`migrations`], [`tokens`], [`passwords`], [`events`],
//!   [`hub`], [`metrics`], [`openapi`], [`state`].

pub mod admin;
pub mod args;
pub mod auth;
pub mod clock;
mod error;
pub mod events;
pub mod export;
pub mod friends;
pub mod hub;
pub mod matches;
pub mod messages;
pub mod metrics;
pub mod migrations;
pub mod model;
pub mod notifications;
pub mod openapi;
pub mod passwords;
pub mod players;
pub mod presence_refresh;
pub mod privacy;
pub mod profiles;
pub mod realtime;
pub mod remote;
pub mod rules;
pub mod session;
pub mod state;
pub mod tokens;

use std::net::SocketAddr;
use std::sync::Arc;

use axum::Router;
use axum::extract::DefaultBodyLimit;
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use prometheus_client::registry::Registry;
use tokio::net::TcpListener;

pub use error::{Error, Result};

use crate::args::{Args, Command, ServeArgs};
use crate::state::{AppState, ClientAddressSource, Config, Shared, Storage};
use crate::tokens::TokenKeys;

/// Request bodies larger than this are refused with 413 before they are read.
pub const MAX_BODY: usize = 64 * 1024;

pub async fn run(args: Args) -> Result<()> {
    match args.command {
        Command::Serve(serve_args) => serve(*serve_args).await,
        Command::Migrate(storage_args) => {
            let storage = Storage::connect(&storage_args, None).await?;
            let applied = migrations::run(&storage, &storage_args.replica).await?;
            tracing::info!(?applied, "migrations applied");
            Ok(())
        }
        Command::SearchRebuild(storage) => {
            let storage = Storage::connect(&storage, None).await?;
            let indexed = players::rebuild_search(&storage).await?;
            tracing::info!(indexed, "search index rebuilt");
            Ok(())
        }
        Command::GenerateTokenKey => {
            println!("{}", STANDARD.encode(TokenKeys::generate_pkcs8()?));
            Ok(())
        }
    }
}

/// Everything `serve` sets up, minus binding: tests start replicas in-process with this.
pub async fn build(args: ServeArgs) -> Result<(Shared, Router, Router)> {
    let ServeArgs {
        storage: storage_args,
        addr: _,
        metrics_addr: _,
        migrate,
        token_key,
        token_key_file,
        token_previous_keys,
        service_key,
        analytics_url,
        access_token_seconds,
        refresh_token_days,
        friend_limit,
        profile_cache_seconds,
        client_ip_header,
        trusted_proxy_hops,
        login_limit_account,
        login_limit_address,
    } = args;
    let mut registry = Registry::default();
    let storage = Storage::connect(&storage_args, Some(&mut registry)).await?;
    if migrate {
        migrations::run(&storage, &storage_args.replica).await?;
    }
    let key = match (token_key, token_key_file) {
        (Some(key), _) => key,
        (None, Some(path)) => std::fs::read_to_string(&path)?,
        (None, None) => {
            return Err(Error::Config(
                "--token-key or --token-key-file is required".into(),
            ));
        }
    };
    let key = decode_key(&key)?;
    let tokens = TokenKeys::new(&key, &token_previous_keys)?;
    if service_key.len() < 16 {
        return Err(Error::Config(
            "the service key must be at least 16 characters".into(),
        ));
    }
    let config = Config {
        access_token_ttl: std::time::Duration::from_secs(access_token_seconds.max(1)),
        refresh_token_ttl: std::time::Duration::from_secs(refresh_token_days.max(1) * 86_400),
        friend_limit,
        profile_cache_ttl: std::time::Duration::from_secs(profile_cache_seconds),
        service_key: service_key_check(&service_key)?,
        analytics: match analytics_url {
            Some(url) => flotilla_service::analytics::Emitter::start(&url, &service_key),
            None => flotilla_service::analytics::Emitter::disabled(),
        },
        client_address: client_ip_header.map(|header| ClientAddressSource {
            header,
            trusted_hops: trusted_proxy_hops as usize,
        }),
        login_per_account: flotilla_storage::rate_limit::Limit {
            max: login_limit_account,
            window: std::time::Duration::from_secs(300),
        },
        login_per_address: flotilla_storage::rate_limit::Limit {
            max: login_limit_address,
            window: std::time::Duration::from_secs(60),
        },
    };
    let bus = flotilla_storage::pubsub::Bus::connect(&storage_args.redis_url, &storage.namespace).await?;
    let events = bus.subscribe_ready().await?;
    let state: Shared = Arc::new(AppState::new(storage, bus, tokens, config, &mut registry));
    tokio::spawn(events::dispatch(state.clone(), events));
    let api = api(state.clone());
    let ops = metrics::router(state.clone(), registry);
    Ok((state, api, ops))
}

/// The public API.
pub fn api(state: Shared) -> Router {
    Router::new()
        .merge(auth::routes())
        .merge(profiles::routes())
        .merge(friends::routes())
        .merge(messages::routes())
        .merge(notifications::routes())
        .merge(realtime::routes())
        .merge(matches::routes())
        .merge(admin::routes())
        .merge(export::routes())
        .merge(openapi::routes())
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            metrics::track,
        ))
        .layer(DefaultBodyLimit::max(MAX_BODY))
        .with_state(state)
}

/// The signing key as base64 PKCS#8, or PEM (`-----BEGIN PRIVATE KEY-----`, what Helm's
/// `genPrivateKey "ed25519"` writes).
fn decode_key(key: &str) -> Result<Vec<u8>> {
    let body: String = key
        .lines()
        .map(str::trim)
        .filter(|line| !line.starts_with("-----"))
        .collect();
    STANDARD
        .decode(body)
        .map_err(|_| Error::Config("the token key is neither base64 nor PEM".into()))
}

fn service_key_check(service_key: &str) -> Result<(ring::hmac::Key, ring::hmac::Tag)> {
    let key = ring::hmac::Key::generate(ring::hmac::HMAC_SHA256, &ring::rand::SystemRandom::new())
        .map_err(|_| Error::Config("no randomness".into()))?;
    let tag = ring::hmac::sign(&key, service_key.as_bytes());
    Ok((key, tag))
}

async fn serve(args: ServeArgs) -> Result<()> {
    let (addr, metrics_addr) = (args.addr, args.metrics_addr);
    let (_state, api, ops) = build(args).await?;
    let api_listener = TcpListener::bind(addr).await?;
    let ops_listener = TcpListener::bind(metrics_addr).await?;
    tracing::info!(%addr, %metrics_addr, "serving");
    let api = axum::serve(
        api_listener,
        api.into_make_service_with_connect_info::<SocketAddr>(),
    )
    .with_graceful_shutdown(flotilla_service::shutdown());
    let ops = axum::serve(ops_listener, ops).with_graceful_shutdown(flotilla_service::shutdown());
    tokio::try_join!(api.into_future(), ops.into_future())?;
    Ok(())
}
