//! Flotilla's operator: the fleet and game-server controllers.
//!
//! `run` wires them to the API: each controller watches its resource and the objects it owns
//! and reconciles one object at a time, idempotently (read what is, compute what should be,
//! apply the difference, write status).

pub mod allocation;
pub mod api_metrics;
pub mod args;
pub mod autoscaler;
pub mod console;
pub mod context;
pub mod discovery;
pub mod error;
pub mod fleet;
pub mod game_server;
pub mod health;
pub mod in_cluster;
pub mod leader;
pub mod metrics;
pub mod ops;
pub mod pod;
pub mod rollout;
pub mod scale_down;
pub mod sdk;
pub mod sdk_auth;
pub mod signing_key;
pub mod status_patch;
pub mod tls;

use std::sync::Arc;

use flotilla_api::{GameServer, GameServerFleet, labels};
use futures::StreamExt;
use k8s_openapi::api::core::v1::Pod;
use kube::{
    Api, Client, ResourceExt,
    runtime::{
        Controller, WatchStreamExt,
        events::{Recorder, Reporter},
        reflector, watcher,
    },
};
use prometheus_client::registry::Registry;
use tracing::{info, warn};

use crate::{
    args::Args,
    console::{Console, ConsoleFeed},
    context::Context,
    error::{Error, Result},
    metrics::Metrics,
    sdk::SdkState,
    sdk_auth::Authenticator,
};

pub async fn run(args: Args) -> Result<()> {
    let Args {
        namespace,
        sdk_addr,
        metrics_addr,
        leader_election,
        lease_namespace,
        lease_name,
        lease_seconds,
        identity,
        sdk_url,
        allocation_addr,
        signing_key_secret,
        allocation_partitions,
        token_seconds,
        sdk_service,
        label_leader_pod,
        allocation_tls_cert,
        allocation_tls_key,
        allocation_client_ca,
        allocation_client_auth,
    } = args;
    let mut registry = Registry::default();
    let metrics = Arc::new(Metrics::register(&mut registry));
    let client = api_client(metrics.clone()).await?;
    let identity = identity.unwrap_or_else(|| {
        let host = std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap_or_default();
        format!("{}-{}", host.trim(), std::process::id())
    });
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
    let sdk_url = match &sdk_service {
        Some(service) => in_cluster::sdk_url_from_service(&client, &lease_namespace, service).await?,
        None => sdk_url,
    };
    if label_leader_pod {
        in_cluster::mark_leader_pod(&client, &lease_namespace, &identity, false).await?;
    }
    let recorder = Recorder::new(
        client.clone(),
        Reporter {
            controller: "flotilla-operator".into(),
            instance: Some(identity.clone()),
        },
    );
    let signer = signing_key::load_or_create(client.clone(), &lease_namespace, &signing_key_secret).await?;
    // The game-server controller's pod watch feeds a store its reconciles read, instead of a
    // GET of the pod on every reconcile (nine per server while a fleet starts).
    let (pod_store, pod_writer) = reflector::store();
    let ctx = Arc::new(Context {
        pods: pod_store,
        client: client.clone(),
        sdk_url,
        token_keys: signer.public_key(),
        metrics: metrics.clone(),
        recorder,
    });
    info!(namespace = namespace.as_deref().unwrap_or("<all>"), %sdk_addr, %metrics_addr, "operator starting");
    let ops_listener = tokio::net::TcpListener::bind(metrics_addr)
        .await
        .map_err(|source| Error::Serve {
            address: metrics_addr.to_string(),
            source,
        })?;
    // The watch-fed stores, made here so the console on the operations listener reads the
    // same ones the allocator does; the watches that fill them start below.
    let (server_cache, cache_writer) = reflector::store();
    let (fleet_cache, fleet_writer) = reflector::store();
    let feed = Arc::new(ConsoleFeed::new(&identity, namespace.as_deref(), leader_election));
    let console = Arc::new(Console {
        feed: feed.clone(),
        fleets: fleet_cache.clone(),
        servers: server_cache.clone(),
    });
    let ops_server = axum::serve(
        ops_listener,
        ops::router(Arc::new(registry), console, server_cache.clone()),
    );
    tokio::spawn(async move { ops_server.await });

    // The SDK endpoint, and the health monitor that reads its heartbeats against a cache of
    // the game servers kept by a watch.
    let sdk_state = Arc::new(SdkState {
        client: client.clone(),
        auth: Authenticator::new(client.clone()),
        heartbeats: Default::default(),
        metrics: metrics.clone(),
        changes: Default::default(),
        servers: server_cache.clone(),
    });
    let listener = tokio::net::TcpListener::bind(sdk_addr)
        .await
        .map_err(|source| Error::Serve {
            address: sdk_addr.to_string(),
            source,
        })?;
    let sdk_server = axum::serve(listener, sdk::router(sdk_state.clone()));
    // One watch of every GameServer, on every replica: it feeds the health monitor's cache,
    // the SDK's watch requests and the console.
    let changes = sdk_state.changes.clone();
    let server_feed = feed.clone();
    let server_watch = reflector(cache_writer, watcher(servers.clone(), watcher::Config::default()))
        .default_backoff()
        .for_each(move |event| {
            if let Ok(event) = &event {
                changes.publish(event);
                server_feed.changed();
            }
            async {}
        });
    let server_watch = tokio::spawn(server_watch);
    // The allocation API, on every replica, choosing from the same watch-fed cache.
    let fleet_feed = feed.clone();
    let fleet_watch = tokio::spawn(
        reflector(fleet_writer, watcher(fleets.clone(), watcher::Config::default()))
            .default_backoff()
            .for_each(move |_| {
                fleet_feed.changed();
                async {}
            }),
    );
    let membership = allocation::membership::Membership::default();
    if allocation_partitions {
        tokio::spawn(allocation::membership::run(
            client.clone(),
            lease_namespace.clone(),
            identity.clone(),
            membership.clone(),
        ));
    }
    let allocator = Arc::new(allocation::service::AllocatorState {
        client: client.clone(),
        servers: server_cache.clone(),
        fleets: fleet_cache,
        signer,
        auth: allocation::auth::AllocationAuth::new(client.clone()),
        metrics: metrics.clone(),
        membership: membership.clone(),
        token_lifetime: std::time::Duration::from_secs(token_seconds.clamp(30, 86_400)),
        claims: Default::default(),
        console: feed.clone(),
    });
    let allocation_listener = tokio::net::TcpListener::bind(allocation_addr)
        .await
        .map_err(|source| Error::Serve {
            address: allocation_addr.to_string(),
            source,
        })?;
    let allocation_app = allocation::service::router(allocator);
    let allocation_task = match (&allocation_tls_cert, &allocation_tls_key) {
        (Some(cert), Some(key)) => {
            let config =
                tls::server_config(cert, key, allocation_client_ca.as_deref(), allocation_client_auth)?;
            info!(%allocation_addr, client_auth = ?allocation_client_auth, "allocation API over TLS");
            tokio::spawn(tls::serve(allocation_listener, config, allocation_app))
        }
        _ => tokio::spawn(async move { axum::serve(allocation_listener, allocation_app).await }),
    };
    let client_for_lease = client.clone();
    let health_monitor = health::monitor(
        client.clone(),
        server_cache,
        sdk_state.heartbeats.clone(),
        metrics.clone(),
    );

    let fleet_controller = Controller::new(fleets.clone(), watcher::Config::default())
        .owns(servers.clone(), watcher::Config::default())
        .shutdown_on_signal()
        .run(fleet::reconcile, fleet::error_policy, ctx.clone())
        .for_each(|result| async move {
            if let Err(e) = result {
                warn!(error = %e, "fleet controller");
            }
        });
    let autoscaler_api: Api<flotilla_api::FleetAutoscaler> = match &namespace {
        Some(ns) => Api::namespaced(client.clone(), ns),
        None => Api::all(client.clone()),
    };
    let autoscalers = Controller::new(autoscaler_api, watcher::Config::default());
    let autoscaler_store = autoscalers.store();
    // Every change of a fleet — an allocation moves its counts — re-evaluates its autoscalers.
    let autoscaler_controller = autoscalers
        .watches(
            fleets.clone(),
            watcher::Config::default(),
            move |fleet: GameServerFleet| {
                let (namespace, name) = (fleet.namespace(), fleet.name_any());
                autoscaler_store
                    .state()
                    .into_iter()
                    .filter(|fas| fas.namespace() == namespace && fas.spec.fleet_name == name)
                    .map(|fas| kube::runtime::reflector::ObjectRef::from_obj(&*fas))
                    .collect::<Vec<_>>()
            },
        )
        .shutdown_on_signal()
        .run(
            autoscaler::controller::reconcile,
            autoscaler::controller::error_policy,
            Arc::new(autoscaler::controller::AutoscalerContext {
                ctx: ctx.clone(),
                http: reqwest::Client::new(),
                console: feed.clone(),
            }),
        )
        .for_each(|result| async move {
            if let Err(e) = result {
                warn!(error = %e, "autoscaler controller");
            }
        });
    let pod_selector = watcher::Config::default().labels(labels::GAME_SERVER);
    let pod_events = reflector(
        pod_writer,
        watcher(pods, pod_selector).modify(game_server::strip_pod),
    )
    .default_backoff()
    .touched_objects();
    let server_controller = Controller::new(servers, watcher::Config::default())
        .owns_stream(pod_events)
        .shutdown_on_signal()
        .run(game_server::reconcile, game_server::error_policy, ctx)
        .for_each(|result| async move {
            if let Err(e) = result {
                warn!(error = %e, "game server controller");
            }
        });
    // Every replica serves the SDK; only the leader runs the controllers and the health monitor.
    let sdk_task = tokio::spawn(async move { sdk_server.await });
    if leader_election {
        // Every replica names the leader on its console; a GET per third of the lease.
        tokio::spawn(console::follow_lease(
            client.clone(),
            lease_namespace.clone(),
            lease_name.clone(),
            feed.clone(),
            std::time::Duration::from_secs((lease_seconds / 3).max(1)),
        ));
    }
    let elector = leader_election.then(|| {
        leader::Elector::new(
            client_for_lease,
            &lease_namespace,
            &lease_name,
            &identity,
            std::time::Duration::from_secs(lease_seconds.max(3)),
        )
    });
    if let Some(elector) = &elector {
        info!(identity = %identity, lease = %lease_name, "waiting for leadership");
        tokio::select! {
            acquired = elector.acquire() => acquired?,
            _ = shutdown_signal() => {
                info!("stopped before becoming leader");
                return Ok(());
            }
        }
    }
    if label_leader_pod {
        in_cluster::mark_leader_pod(&client, &lease_namespace, &identity, true).await?;
    }
    metrics.leader.set(1);
    feed.lead();
    let holding = async {
        match &elector {
            Some(elector) => elector.hold().await,
            None => std::future::pending().await,
        }
    };
    // The controllers end on SIGTERM or Ctrl-C; the rest ends with them.
    tokio::select! {
        _ = async { futures::join!(fleet_controller, server_controller, autoscaler_controller) } => {}
        served = sdk_task => {
            if let Ok(Err(source)) = served {
                return Err(Error::Serve { address: sdk_addr.to_string(), source });
            }
        }
        lost = holding => lost?,
        _ = server_watch => {}
        _ = fleet_watch => {}
        served = allocation_task => {
            if let Ok(Err(source)) = served {
                return Err(Error::Serve { address: allocation_addr.to_string(), source });
            }
        }
        _ = health_monitor => {}
    }
    if let Some(elector) = &elector {
        elector.release().await;
    }
    info!("operator stopped");
    Ok(())
}

/// A client for the cluster the operator runs in (or the kubeconfig's), counting its requests.
async fn api_client(metrics: Arc<Metrics>) -> Result<Client> {
    let config = kube::Config::infer()
        .await
        .map_err(|e| Error::ClientConfig(e.to_string()))?;
    let counter = tower::util::MapRequestLayer::new(move |request: http::Request<kube::client::Body>| {
        api_metrics::count(&metrics.api_requests, &request);
        request
    });
    Ok(kube::client::ClientBuilder::try_from(config)?
        .with_layer(&counter)
        .build())
}

async fn shutdown_signal() {
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending().await,
        }
    };
    tokio::select! {
        _ = term => {}
        _ = tokio::signal::ctrl_c() => {}
    }
}
