//! The pod of a game server, built from its template: the game-server container gets the
//! server's ports and the environment it needs to find itself and the platform; the pod is
//! owned by the GameServer (so it goes when the server goes) and prefers nodes that already
//! run servers of the same fleet (`Packed`) or nodes that do not (`Distributed`).

use std::collections::BTreeMap;

use flotilla_api::{GameServer, Protocol, Scheduling, labels};
use k8s_openapi::{
    api::core::v1::{
        Affinity, Container, ContainerPort, EnvVar, EnvVarSource, ObjectFieldSelector, Pod, PodAffinity,
        PodAffinityTerm, PodAntiAffinity, ProjectedVolumeSource, ServiceAccountTokenProjection, Volume,
        VolumeMount, VolumeProjection, WeightedPodAffinityTerm,
    },
    apimachinery::pkg::apis::meta::v1::{LabelSelector, ObjectMeta},
};
use kube::{Resource, ResourceExt};

use crate::{
    error::{Error, Result},
    sdk_auth,
};

/// Environment variables every game-server container gets.
pub const ENV_NAME: &str = "FLOTILLA_GAMESERVER_NAME";
pub const ENV_NAMESPACE: &str = "FLOTILLA_GAMESERVER_NAMESPACE";
pub const ENV_POD_IP: &str = "POD_IP";
pub const ENV_SDK_URL: &str = "FLOTILLA_SDK_URL";
pub const ENV_SDK_TOKEN_FILE: &str = "FLOTILLA_SDK_TOKEN_FILE";
pub const ENV_TOKEN_KEYS: &str = "FLOTILLA_TOKEN_KEYS";
const SDK_TOKEN_VOLUME: &str = "flotilla-sdk-token";

/// Builds the pod for `server`; fails if the template names a container it does not have.
/// `sdk_url` is where the game server reaches the SDK endpoint; `token_keys` the public keys
/// its players' connection tokens are signed with.
pub fn build(server: &GameServer, sdk_url: &str, token_keys: &str) -> Result<Pod> {
    let name = server.name_any();
    let mut template = server.spec.template.clone();
    let mut pod_spec = template.spec.take().unwrap_or_default();
    let container = game_server_container(server, &mut pod_spec.containers)?;

    let ports = container.ports.get_or_insert_with(Vec::new);
    for port in &server.spec.ports {
        let protocols: &[&str] = match port.protocol {
            Protocol::Udp => &["UDP"],
            Protocol::Tcp => &["TCP"],
            Protocol::TcpUdp => &["TCP", "UDP"],
        };
        for protocol in protocols {
            ports.push(ContainerPort {
                name: (protocols.len() == 1).then(|| port.name.clone()),
                container_port: port.container_port,
                protocol: Some((*protocol).to_owned()),
                ..Default::default()
            });
        }
    }
    let env = container.env.get_or_insert_with(Vec::new);
    let mut set_default = |var: EnvVar| {
        if !env.iter().any(|e| e.name == var.name) {
            env.push(var);
        }
    };
    set_default(literal(ENV_NAME, &name));
    set_default(literal(ENV_NAMESPACE, &server.namespace().unwrap_or_default()));
    set_default(literal(ENV_SDK_URL, sdk_url));
    set_default(literal(ENV_SDK_TOKEN_FILE, sdk_auth::TOKEN_PATH));
    set_default(literal(ENV_TOKEN_KEYS, token_keys));
    set_default(EnvVar {
        name: ENV_POD_IP.into(),
        value_from: Some(EnvVarSource {
            field_ref: Some(ObjectFieldSelector {
                field_path: "status.podIP".into(),
                ..Default::default()
            }),
            ..Default::default()
        }),
        ..Default::default()
    });

    // The pod's own token for the SDK endpoint: bound to this pod, so it identifies this
    // server and no other, and renewed by the kubelet before it expires.
    let token_dir = sdk_auth::TOKEN_PATH.rsplit_once('/').map_or("/", |(dir, _)| dir);
    container
        .volume_mounts
        .get_or_insert_with(Vec::new)
        .push(VolumeMount {
            name: SDK_TOKEN_VOLUME.into(),
            mount_path: token_dir.into(),
            read_only: Some(true),
            ..Default::default()
        });
    // A game server talks to the platform through the SDK, not to the Kubernetes API: unless
    // the template asks for it, it gets no API token (least privilege, and one TokenRequest
    // less per server when a fleet starts).
    pod_spec.automount_service_account_token.get_or_insert(false);
    pod_spec.volumes.get_or_insert_with(Vec::new).push(Volume {
        name: SDK_TOKEN_VOLUME.into(),
        projected: Some(ProjectedVolumeSource {
            sources: Some(vec![VolumeProjection {
                service_account_token: Some(ServiceAccountTokenProjection {
                    audience: Some(sdk_auth::AUDIENCE.into()),
                    expiration_seconds: Some(sdk_auth::TOKEN_SECONDS),
                    path: "token".into(),
                }),
                ..Default::default()
            }]),
            ..Default::default()
        }),
        ..Default::default()
    });

    // Packed prefers nodes already running the fleet (bin-packing, so empty nodes can be
    // scaled away); Distributed prefers nodes without it (spreading, so one node's loss takes
    // few matches). Both are preferences: a full cluster still schedules.
    let fleet = server.labels().get(labels::FLEET).cloned();
    if let Some(fleet) = &fleet {
        let term = WeightedPodAffinityTerm {
            weight: 100,
            pod_affinity_term: PodAffinityTerm {
                label_selector: Some(LabelSelector {
                    match_labels: Some(BTreeMap::from([(labels::FLEET.to_owned(), fleet.clone())])),
                    ..Default::default()
                }),
                topology_key: "kubernetes.io/hostname".into(),
                ..Default::default()
            },
        };
        let affinity = pod_spec.affinity.get_or_insert_with(Affinity::default);
        let terms = match server.spec.scheduling {
            Scheduling::Packed => {
                &mut affinity
                    .pod_affinity
                    .get_or_insert_with(PodAffinity::default)
                    .preferred_during_scheduling_ignored_during_execution
            }
            Scheduling::Distributed => {
                &mut affinity
                    .pod_anti_affinity
                    .get_or_insert_with(PodAntiAffinity::default)
                    .preferred_during_scheduling_ignored_during_execution
            }
        };
        terms.get_or_insert_with(Vec::new).push(term);
    }

    let mut metadata = template.metadata.take().unwrap_or_default();
    let pod_labels = metadata.labels.get_or_insert_with(BTreeMap::new);
    pod_labels.insert(labels::GAME_SERVER.into(), name.clone());
    if let Some(fleet) = fleet {
        pod_labels.insert(labels::FLEET.into(), fleet);
    }
    Ok(Pod {
        metadata: ObjectMeta {
            name: Some(name),
            namespace: server.namespace(),
            labels: metadata.labels,
            annotations: metadata.annotations,
            owner_references: server.controller_owner_ref(&()).map(|r| vec![r]),
            ..Default::default()
        },
        spec: Some(pod_spec),
        status: None,
    })
}

/// The container named by `spec.container`, or the first one.
pub fn game_server_container<'a>(
    server: &GameServer,
    containers: &'a mut [Container],
) -> Result<&'a mut Container> {
    let wanted = server.spec.container.as_deref();
    let index = match wanted {
        Some(name) => containers.iter().position(|c| c.name == name),
        None => (!containers.is_empty()).then_some(0),
    };
    index.map(|i| &mut containers[i]).ok_or_else(|| {
        Error::InvalidTemplate(match wanted {
            Some(name) => format!("spec.container {name:?} is not a container of the pod template"),
            None => "the pod template has no containers".into(),
        })
    })
}

fn literal(name: &str, value: &str) -> EnvVar {
    EnvVar {
        name: name.into(),
        value: Some(value.into()),
        ..Default::default()
    }
}

#[cfg(test)]
mod tests {
    use flotilla_api::GameServerSpec;

    use super::*;

    fn server(spec: serde_json::Value) -> GameServer {
        let spec: GameServerSpec = serde_json::from_value(spec).expect("valid spec");
        let mut gs = GameServer::new("arena-x7k2p", spec);
        gs.metadata.namespace = Some("games".into());
        gs.metadata.uid = Some("uid-1".into());
        gs.metadata.labels = Some(BTreeMap::from([(labels::FLEET.to_owned(), "arena".to_owned())]));
        gs
    }

    fn spec(container: Option<&str>) -> serde_json::Value {
        serde_json::json!({
            "ports": [{"name": "game", "containerPort": 7777, "protocol": "TCPUDP"}],
            "container": container,
            "template": {
                "metadata": {"labels": {"game": "arena"}},
                "spec": {"containers": [
                    {"name": "sidecar", "image": "busybox"},
                    {"name": "server", "image": "flotilla/gameserver",
                     "env": [{"name": "POD_IP", "value": "overridden-by-user"}]},
                ]},
            },
        })
    }

    #[test]
    fn ports_and_identity_go_to_the_named_container() {
        let pod = build(&server(spec(Some("server"))), "http://sdk:9358", "a2V5").expect("builds");
        let containers = pod.spec.expect("spec").containers;
        assert!(containers[0].ports.is_none(), "the sidecar is left alone");
        let ports = containers[1].ports.clone().expect("ports");
        let protocols: Vec<_> = ports
            .iter()
            .map(|p| (p.container_port, p.protocol.clone()))
            .collect();
        assert_eq!(
            protocols,
            vec![(7777, Some("TCP".into())), (7777, Some("UDP".into()))]
        );
        let env = containers[1].env.clone().expect("env");
        let value = |n: &str| env.iter().find(|e| e.name == n).and_then(|e| e.value.clone());
        assert_eq!(value(ENV_NAME).as_deref(), Some("arena-x7k2p"));
        assert_eq!(value(ENV_NAMESPACE).as_deref(), Some("games"));
        assert_eq!(
            value(ENV_POD_IP).as_deref(),
            Some("overridden-by-user"),
            "user env wins"
        );
    }

    #[test]
    fn pod_is_owned_by_its_server_and_labelled_with_it_and_its_fleet() {
        let pod = build(&server(spec(None)), "http://sdk:9358", "a2V5").expect("builds");
        let owner = &pod.metadata.owner_references.expect("owned")[0];
        assert_eq!(
            (owner.kind.as_str(), owner.controller),
            ("GameServer", Some(true))
        );
        let labels = pod.metadata.labels.expect("labels");
        assert_eq!(
            labels.get(labels::GAME_SERVER).map(String::as_str),
            Some("arena-x7k2p")
        );
        assert_eq!(labels.get(labels::FLEET).map(String::as_str), Some("arena"));
        assert_eq!(
            labels.get("game").map(String::as_str),
            Some("arena"),
            "template labels kept"
        );
    }

    #[test]
    fn packed_servers_prefer_nodes_running_their_fleet() {
        let pod = build(&server(spec(None)), "http://sdk:9358", "a2V5").expect("builds");
        let terms = pod
            .spec
            .and_then(|s| s.affinity)
            .and_then(|a| a.pod_affinity)
            .and_then(|p| p.preferred_during_scheduling_ignored_during_execution)
            .expect("preferred affinity");
        assert_eq!(terms[0].pod_affinity_term.topology_key, "kubernetes.io/hostname");
    }

    #[test]
    fn distributed_servers_prefer_nodes_without_their_fleet() {
        let mut distributed = spec(None);
        distributed["scheduling"] = "Distributed".into();
        let affinity = build(&server(distributed), "http://sdk:9358", "a2V5")
            .expect("builds")
            .spec
            .and_then(|s| s.affinity)
            .expect("affinity");
        assert!(affinity.pod_affinity.is_none(), "no packing");
        let terms = affinity
            .pod_anti_affinity
            .and_then(|p| p.preferred_during_scheduling_ignored_during_execution)
            .expect("preferred anti-affinity");
        assert_eq!(terms[0].pod_affinity_term.topology_key, "kubernetes.io/hostname");
    }

    #[test]
    fn game_servers_get_no_kubernetes_api_token_unless_the_template_asks() {
        let pod = build(&server(spec(None)), "http://sdk:9358", "a2V5").expect("builds");
        assert_eq!(
            pod.spec.and_then(|s| s.automount_service_account_token),
            Some(false)
        );
        let mut wants = server(spec(None));
        if let Some(pod) = wants.spec.template.spec.as_mut() {
            pod.automount_service_account_token = Some(true);
        }
        let pod = build(&wants, "http://sdk:9358", "a2V5").expect("builds");
        assert_eq!(
            pod.spec.and_then(|s| s.automount_service_account_token),
            Some(true)
        );
    }

    #[test]
    fn a_missing_named_container_is_a_clear_error() {
        let err =
            build(&server(spec(Some("nope"))), "http://sdk:9358", "a2V5").expect_err("no such container");
        assert_eq!(
            err.to_string(),
            r#"invalid game server template: spec.container "nope" is not a container of the pod template"#
        );
    }
}
