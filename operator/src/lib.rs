//! Flotilla's operator: the fleet and game-server controllers.
//!
//! `run` wires them to the API: each controller watches its resource and the objects it owns
//! and reconciles one object at a time, idempotently (read what is, compute what should be,
//! apply the difference, write status).

pub mod args;
pub mod context;
pub mod error;
pub mod fleet;
pub mod game_server;
pub mod pod;
pub mod scale_down;

use std::sync::Arc;

use flotilla_api::{GameServer, GameServerFleet, labels};
use futures::StreamExt;
use k8s_openapi::api::core::v1::Pod;
use kube::{
    Api, Client,
    runtime::{Controller, watcher},
};
use tracing::{info, warn};

use crate::{args::Args, context::Context, error::Result};

pub async fn run(args: Args) -> Result<()> {
    let Args { namespace } = args;
    let client = Client::try_default().await?;
    let scoped = |client: &Client| -> (Api<GameServerFleet>, Api<GameServer>, Api<Pod>) {
        match &namespace {
            Some(ns) => (
                Api::namespaced(client.clone(), ns),
                Api::namespaced(client.clone(), ns),
                Api::namespaced(client.clone(), ns),
            ),
            None => (
                Api::all(client.clone()),
                Api::all(client.clone()),
                Api::all(client.clone()),
            ),
        }
    };
    let (fleets, servers, pods) = scoped(&client);
    let ctx = Arc::new(Context { client });
    info!(
        namespace = namespace.as_deref().unwrap_or("<all>"),
        "operator starting"
    );

    let fleet_controller = Controller::new(fleets, watcher::Config::default())
        .owns(servers.clone(), watcher::Config::default())
        .shutdown_on_signal()
        .run(fleet::reconcile, fleet::error_policy, ctx.clone())
        .for_each(|result| async move {
            if let Err(e) = result {
                warn!(error = %e, "fleet controller");
            }
        });
    let pod_selector = watcher::Config::default().labels(labels::GAME_SERVER);
    let server_controller = Controller::new(servers, watcher::Config::default())
        .owns(pods, pod_selector)
        .shutdown_on_signal()
        .run(game_server::reconcile, game_server::error_policy, ctx)
        .for_each(|result| async move {
            if let Err(e) = result {
                warn!(error = %e, "game server controller");
            }
        });
    futures::join!(fleet_controller, server_controller);
    info!("operator stopped");
    Ok(())
}
