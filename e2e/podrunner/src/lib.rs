//! The pod runner: Flotilla's kubelet stand-in for the local test cluster.
//!
//! It registers nodes with a real API server and runs the containers of pods bound to them as
//! local processes, each pod on a loopback address of its own. See `docs/local-cluster.md`.

pub mod args;
pub mod env;
pub mod error;
pub mod image_map;
pub mod node;
pub mod pod;
pub mod pod_network;
pub mod probe;
pub mod process;
pub mod service_proxy;
pub mod status;
pub mod volumes;

use std::{sync::Arc, time::Duration};

use kube::{
    Client, Config,
    config::{KubeConfigOptions, Kubeconfig},
    runtime::events::{Recorder, Reporter},
};
use tokio::sync::watch;
use tracing::info;

use crate::{
    args::Args,
    error::{Error, Result},
    node::NodeSpecifics,
    pod::{Backoff, NodeContext},
    pod_network::PodNetwork,
};

pub async fn run(args: Args) -> Result<()> {
    let Args {
        nodes,
        kubeconfig_dir,
        pod_network,
        image_map,
        state_dir,
        cpu,
        memory,
        max_pods,
        backoff_initial_ms,
        backoff_max_ms,
        kubelet_version,
        proxy_kubeconfig,
    } = args;
    let network = PodNetwork::parse(&pod_network)?;
    let pgid_dir = state_dir.join("pgids");
    let pods_dir = state_dir.join("pods");
    for dir in [&pgid_dir, &pods_dir] {
        std::fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
    }
    // Process groups left by an earlier runner that was killed outright.
    process::kill_recorded_groups(&pgid_dir);

    let specifics = NodeSpecifics {
        cpu,
        memory,
        max_pods,
        kubelet_version,
    };
    let backoff = Backoff {
        initial: Duration::from_millis(backoff_initial_ms),
        max: Duration::from_millis(backoff_max_ms.max(backoff_initial_ms)),
    };
    // Kubelets verify nothing about probe endpoints' certificates either.
    let http = reqwest::Client::builder()
        .danger_accept_invalid_certs(true)
        .build()
        .map_err(|e| Error::ContainerConfig(format!("building the probe http client: {e}")))?;
    let (shutdown_tx, shutdown_rx) = watch::channel(false);

    let mut watchers = Vec::new();
    for (index, name) in nodes.iter().enumerate() {
        let index = u8::try_from(index).map_err(|_| Error::PodNetwork {
            network: pod_network.clone(),
            message: "at most 254 nodes".into(),
        })?;
        let config = node_config(&kubeconfig_dir.join(format!("{name}.kubeconfig"))).await?;
        let base_env = api_server_env(&config);
        let client = Client::try_from(config)?;
        let recorder = Recorder::new(
            client.clone(),
            Reporter {
                controller: "kubelet".into(),
                instance: Some(name.clone()),
            },
        );
        let ctx = Arc::new(NodeContext {
            client,
            node_name: name.clone(),
            host_ip: network.node_address(index),
            pool: std::sync::Mutex::new(network.node_pool(index)),
            image_map: image_map.clone(),
            pods_dir: pods_dir.clone(),
            pgid_dir: pgid_dir.clone(),
            base_env,
            backoff,
            http: http.clone(),
            recorder,
        });
        watchers.push(node::start(ctx, specifics.clone(), shutdown_rx.clone()).await?);
    }
    let proxy = match proxy_kubeconfig {
        Some(path) => {
            let client = Client::try_from(node_config(&path).await?)?;
            Some(tokio::spawn(service_proxy::run(client)))
        }
        None => None,
    };
    info!(nodes = nodes.len(), "pod runner ready");

    shutdown_signal().await;
    info!("shutting down");
    let _ = shutdown_tx.send(true);
    if let Some(proxy) = proxy {
        proxy.abort();
    }
    for watcher in watchers {
        let _ = watcher.await;
    }
    process::kill_recorded_groups(&pgid_dir);
    Ok(())
}

/// A client config from a kubeconfig file (a node's, or the service proxy's).
async fn node_config(path: &std::path::Path) -> Result<Config> {
    let kubeconfig = Kubeconfig::read_from(path).map_err(|source| Error::Kubeconfig {
        path: path.to_owned(),
        source,
    })?;
    Config::from_custom_kubeconfig(kubeconfig, &KubeConfigOptions::default())
        .await
        .map_err(|source| Error::Kubeconfig {
            path: path.to_owned(),
            source,
        })
}

/// `KUBERNETES_SERVICE_HOST`/`PORT` as a kubelet sets them, but pointing at the API server's
/// real loopback address: this cluster has no service proxy for the `kubernetes` ClusterIP.
fn api_server_env(config: &Config) -> Vec<(String, String)> {
    let host = config.cluster_url.host().unwrap_or("127.0.0.1").to_owned();
    let port = config.cluster_url.port_u16().unwrap_or(443).to_string();
    vec![
        ("KUBERNETES_SERVICE_HOST".into(), host.clone()),
        ("KUBERNETES_SERVICE_PORT".into(), port.clone()),
        ("KUBERNETES_SERVICE_PORT_HTTPS".into(), port.clone()),
        ("KUBERNETES_PORT".into(), format!("tcp://{host}:{port}")),
    ]
}

async fn shutdown_signal() {
    let mut term = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
        Ok(s) => s,
        Err(_) => return std::future::pending().await,
    };
    tokio::select! {
        _ = term.recv() => {}
        _ = tokio::signal::ctrl_c() => {}
    }
}
