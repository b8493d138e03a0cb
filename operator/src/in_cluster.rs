//! What the operator does differently when it runs as a pod of its chart.
//!
//! Game servers reach the SDK endpoint through a Service that selects only the leader's pod:
//! the leader keeps the heartbeats in memory and runs the health monitor, so a heartbeat sent
//! to a standby would be lost. The leader labels its own pod, and every replica clears that
//! label when it starts (a restarted leader's container must not keep attracting SDK traffic).
//! Game-server pods are given the Service's ClusterIP rather than its DNS name, so they need
//! no cluster DNS and the address stays valid across operator restarts and upgrades.

use k8s_openapi::api::core::v1::{Pod, Service};
use kube::{
    Api, Client,
    api::{Patch, PatchParams},
};
use serde_json::json;

use crate::error::{Error, Result};

/// The label the SDK Service selects on.
pub const LEADER_LABEL: &str = "flotilla.dev/leader";

/// `http://<ClusterIP>:<port>` of the Service `name`'s port named `sdk` (or its only port).
pub async fn sdk_url_from_service(client: &Client, namespace: &str, name: &str) -> Result<String> {
    let service = Api::<Service>::namespaced(client.clone(), namespace)
        .get(name)
        .await?;
    let spec = service.spec.unwrap_or_default();
    let ip = spec
        .cluster_ip
        .filter(|ip| !ip.is_empty() && ip != "None")
        .ok_or_else(|| Error::NotFound(format!("a ClusterIP on Service {namespace}/{name}")))?;
    let ports = spec.ports.unwrap_or_default();
    let port = ports
        .iter()
        .find(|p| p.name.as_deref() == Some("sdk"))
        .or_else(|| if ports.len() == 1 { ports.first() } else { None })
        .ok_or_else(|| Error::NotFound(format!("a port named sdk on Service {namespace}/{name}")))?;
    Ok(format!("http://{ip}:{}", port.port))
}

/// Sets or clears the leader label on this replica's own pod.
pub async fn mark_leader_pod(client: &Client, namespace: &str, pod: &str, leader: bool) -> Result<()> {
    let value = if leader {
        json!("true")
    } else {
        serde_json::Value::Null
    };
    let patch = json!({ "metadata": { "labels": { LEADER_LABEL: value } } });
    Api::<Pod>::namespaced(client.clone(), namespace)
        .patch(pod, &PatchParams::default(), &Patch::Merge(&patch))
        .await?;
    Ok(())
}
