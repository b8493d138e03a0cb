//! Flotilla's economy service: currencies, inventory, store purchases, gifts and grants on a
//! double-entry ledger that never creates or loses value, on MongoDB (FerretDB) and Redis.
//! Stateless: any number of replicas serve the same players; one at a time (by lease) runs the
//! recovery worker and the continuous audit.
//!
//! Modules by responsibility:
//! - the books: [`ledger`] (transactions of legs, driven to an outcome with unique inserts only,
//!   an auditor, and the in-memory store of the simulation tier);
//! - HTTP surface: [`transactions`] (purchases, consumption, gifts, grants, history), [`market`]
//!   (listings in escrow, search, price history), [`trades`] (player to player), [`auctions`],
//!   [`wallet`] (balances, the catalog), [`instances`] (unique items), [`reversals`],
//!   [`reviews`] (the fraud review queue), [`admin`] (audit);
//! - rules: [`catalog`] (what exists and its limits), [`fraud`], [`caller`] (who is calling),
//!   [`players`] (the player service: who exists, who blocked whom);
//! - plumbing: [`extract`], [`workers`], [`metrics`], `flows` (currency flows sent to analytics),
//!   [`openapi`], [`state`], [`args`].

pub mod admin;
pub mod args;
pub mod auctions;
pub mod caller;
pub mod catalog;
mod error;
pub mod exchange;
pub mod extract;
pub mod fees;
mod flows;
pub mod fraud;
pub mod ids;
pub mod instances;
pub mod ledger;
pub mod market;
pub mod metrics;
pub mod openapi;
pub mod players;
pub mod remembered;
pub mod reversals;
pub mod reviews;
pub mod state;
pub mod trades;
pub mod transactions;
pub mod wallet;
pub mod workers;

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::DefaultBodyLimit;
use flotilla_player::remote::PlayerTokens;
use flotilla_storage::lease::Lease;
use flotilla_storage::mongo::{Mongo, MongoOptions};
use prometheus_client::registry::Registry;
use tokio::net::TcpListener;

pub use error::{Error, Result};

use crate::args::{Args, Command, ServeArgs, StorageArgs};
use crate::caller::Keys;
use crate::catalog::Catalog;
use crate::ledger::engine::Ledger;
use crate::ledger::mongo::MongoLedger;
use crate::market::Market;
use crate::market::search::ListingIndex;
use crate::metrics::Metrics;
use crate::players::Players;
use crate::state::{AppState, Shared};
use flotilla_service::SecretKey;
use flotilla_service::analytics::Emitter;

/// Request bodies larger than this are refused before they are read.
pub const MAX_BODY: usize = 16 * 1024;

pub async fn run(args: Args) -> Result<()> {
    match args.command {
        Command::Serve(serve_args) => serve(*serve_args).await,
        Command::CheckCatalog { path } => {
            let catalog = Catalog::load(&path)?;
            println!(
                "catalog v{}: {} currencies, {} items, {} offers",
                catalog.version,
                catalog.currencies.len(),
                catalog.items.len(),
                catalog.offers.len()
            );
            Ok(())
        }
        Command::Audit(storage) => {
            let mongo = connect(&storage, None).await?;
            let report = ledger::audit::audit(&MongoLedger::new(&mongo).books().await?);
            for (asset, totals) in &report.totals {
                println!("{asset}: {totals:?}");
            }
            for violation in &report.violations {
                println!("violation: {violation}");
            }
            println!("drift {} · unfinished {}", report.drift, report.unfinished);
            match report.is_clean() {
                true => Ok(()),
                false => Err(Error::Invariant(format!(
                    "{} violations",
                    report.violations.len()
                ))),
            }
        }
    }
}

async fn connect(args: &StorageArgs, registry: Option<&mut Registry>) -> Result<Mongo> {
    let mut options = MongoOptions::new(&args.mongo_url, &args.database);
    options.max_pool = args.mongo_pool;
    options.app_name = format!("flotilla-economy/{}", args.replica);
    Ok(match registry {
        Some(registry) => Mongo::connect(&options, registry).await?,
        None => Mongo::connect_unmonitored(&options).await?,
    })
}

/// Everything `serve` sets up, minus binding: tests start replicas in-process with this.
pub async fn build(args: ServeArgs) -> Result<(Shared, Router, Router)> {
    let ServeArgs {
        storage,
        redis_url,
        opensearch_url,
        namespace,
        addr: _,
        metrics_addr: _,
        catalog,
        player_token_keys,
        player_url,
        service_key,
        admin_key,
        analytics_url,
        recovery_grace_seconds,
        recovery_interval_seconds,
        reversal_policy,
        audit_interval_seconds,
    } = args;
    let mut registry = Registry::default();
    let mongo = connect(&storage, Some(&mut registry)).await?;
    let store = MongoLedger::new(&mongo);
    store.ensure_indexes().await?;
    let redis = flotilla_storage::connect_redis(&redis_url).await?;
    let market = Market::new(&mongo, ListingIndex::new(&opensearch_url, &namespace)?);
    market.ensure_indexes().await?;
    let keys = Keys {
        service: SecretKey::new(&service_key, "service key").map_err(|e| Error::Config(e.0))?,
        admin: SecretKey::new(&admin_key, "admin key").map_err(|e| Error::Config(e.0))?,
    };
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(5))
        .build()
        .map_err(|error| Error::Config(error.to_string()))?;
    let tokens = Arc::new(
        PlayerTokens::new(
            &player_token_keys,
            player_url.as_deref(),
            redis.clone(),
            &namespace,
        )
        .await
        .map_err(|error| Error::Config(error.to_string()))?,
    );
    let players = player_url
        .as_deref()
        .map(|url| Players::new(http.clone(), url, &service_key));
    let metrics = Metrics::register(&mut registry);
    let analytics = match analytics_url {
        Some(url) => Emitter::start(&url, &service_key),
        None => Emitter::disabled(),
    };
    let clock = Arc::new(flotilla_storage::mongo::now_ms);
    let ledger = Ledger::new(store, clock).on_commit(flows::reporter(analytics));
    let state: Shared = Arc::new(AppState::new(
        ledger,
        market,
        players,
        mongo.clone(),
        redis,
        namespace,
        keys,
        metrics,
        Catalog::load(&catalog)?,
        tokens.clone(),
        reversal_policy,
    ));

    state.trades.ensure_indexes().await?;
    state.auctions.ensure_indexes().await?;
    let lease = Lease::new(
        &mongo,
        "economy-recovery",
        storage.replica,
        Duration::from_secs(30),
    );
    lease.ensure_indexes().await?;
    let audit_every = (audit_interval_seconds > 0).then(|| Duration::from_secs(audit_interval_seconds));
    tokio::spawn(workers::recover_and_audit(
        state.clone(),
        lease,
        Duration::from_secs(recovery_interval_seconds.max(1)),
        Duration::from_secs(recovery_grace_seconds),
        audit_every,
    ));
    tokio::spawn(workers::reload_catalog(
        state.clone(),
        catalog,
        Duration::from_secs(5),
    ));
    tokio::spawn(tokens.refresh(Duration::from_secs(60)));
    let ops = metrics::router(state.clone(), registry);
    Ok((state.clone(), api(state), ops))
}

/// The public API.
pub fn api(state: Shared) -> Router {
    Router::new()
        .merge(wallet::routes())
        .merge(transactions::routes())
        .merge(market::routes::routes())
        .merge(trades::routes::routes())
        .merge(auctions::routes::routes())
        .merge(admin::routes())
        .merge(reversals::routes())
        .merge(reviews::routes())
        .merge(openapi::routes())
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            metrics::track,
        ))
        .layer(DefaultBodyLimit::max(MAX_BODY))
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
