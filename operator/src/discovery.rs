//! Prometheus HTTP service discovery for game servers (`GET /sd/gameservers`), so any
//! Prometheus can scrape every game server without the Prometheus Operator's PodMonitor and
//! without Kubernetes service discovery (which some Prometheus builds, Debian's among them,
//! leave out). A server is listed once it has an address, on its container port named
//! `metrics` (in the pod template, or among the game server's `ports`); servers without one
//! are not listed.
//!
//! ```yaml
//! scrape_configs:
//!   - job_name: game-servers
//!     http_sd_configs: [{url: "http://flotilla-operator-metrics.flotilla-system.svc:8080/sd/gameservers"}]
//! ```

use flotilla_api::{GameServer, GameServerState, labels};
use kube::ResourceExt;
use serde::Serialize;

/// The name of the container port a game server serves `/metrics` on.
pub const METRICS_PORT: &str = "metrics";

/// One target group of Prometheus' HTTP SD format.
#[derive(Debug, Serialize, PartialEq, Eq)]
pub struct TargetGroup {
    pub targets: Vec<String>,
    pub labels: std::collections::BTreeMap<String, String>,
}

/// One group per scrapeable game server, sorted by namespace and name.
pub fn target_groups<'a>(servers: impl IntoIterator<Item = &'a GameServer>) -> Vec<TargetGroup> {
    let mut groups: Vec<TargetGroup> = servers
        .into_iter()
        .filter_map(|server| {
            let status = server.status.as_ref()?;
            if matches!(
                status.state,
                GameServerState::Creating | GameServerState::Shutdown
            ) {
                return None;
            }
            let address = status.address.as_deref()?;
            // A container port of the template, or a game-server port (the operator adds
            // those to the pod too).
            let container_port = server
                .spec
                .template
                .spec
                .iter()
                .flat_map(|pod| &pod.containers)
                .flat_map(|c| c.ports.iter().flatten())
                .find(|p| p.name.as_deref() == Some(METRICS_PORT))
                .map(|p| p.container_port);
            let port = container_port.or_else(|| {
                server
                    .spec
                    .ports
                    .iter()
                    .find(|p| p.name == METRICS_PORT)
                    .map(|p| p.container_port)
            })?;
            let mut labels = std::collections::BTreeMap::new();
            labels.insert("namespace".to_owned(), server.namespace().unwrap_or_default());
            labels.insert("gameserver".to_owned(), server.name_any());
            if let Some(fleet) = server.labels().get(labels::FLEET) {
                labels.insert("fleet".to_owned(), fleet.clone());
            }
            if let Some(node) = &status.node_name {
                labels.insert("node".to_owned(), node.clone());
            }
            Some(TargetGroup {
                targets: vec![format!("{address}:{port}")],
                labels,
            })
        })
        .collect();
    groups.sort_by(|a, b| {
        (&a.labels["namespace"], &a.labels["gameserver"])
            .cmp(&(&b.labels["namespace"], &b.labels["gameserver"]))
    });
    groups
}

#[cfg(test)]
mod tests {
    use super::*;

    fn server(name: &str, state: GameServerState, metrics_port: bool) -> GameServer {
        let ports = if metrics_port {
            serde_json::json!([{"name": "metrics", "containerPort": 9100}])
        } else {
            serde_json::json!([])
        };
        serde_json::from_value(serde_json::json!({
            "apiVersion": "flotilla.dev/v1alpha1",
            "kind": "GameServer",
            "metadata": {"name": name, "namespace": "games", "labels": {"flotilla.dev/fleet": "arena"}},
            "spec": {
                "ports": [{"name": "game", "containerPort": 7777}],
                "template": {"spec": {"containers": [{"name": "gs", "image": "flotilla/gameserver", "ports": ports}]}}
            },
            "status": {"state": state, "address": "127.9.1.3", "nodeName": "node-0"}
        }))
        .expect("a game server")
    }

    #[test]
    fn servers_with_an_address_and_a_metrics_port_are_targets_labelled_by_fleet() {
        let servers = [
            server("b", GameServerState::Allocated, true),
            server("a", GameServerState::Ready, true),
            server("c", GameServerState::Ready, false),
            server("d", GameServerState::Creating, true),
        ];
        let groups = target_groups(&servers);
        assert_eq!(groups.len(), 2, "{groups:?}");
        assert_eq!(groups[0].targets, vec!["127.9.1.3:9100".to_owned()]);
        assert_eq!(groups[0].labels["gameserver"], "a");
        assert_eq!(groups[0].labels["fleet"], "arena");
        assert_eq!(groups[1].labels["node"], "node-0");
    }
}
