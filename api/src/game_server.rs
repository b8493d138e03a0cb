//! `GameServer` (`gs`): one game server. The fleet controller creates it from the fleet's
//! template; the game-server controller creates its pod and moves it through its states.

// Repeated `printcolumn(type_ = …)` entries in `#[kube(...)]` are separate columns, not
// duplicates: clippy's attribute check cannot tell.
#![allow(clippy::duplicated_attributes)]

use k8s_openapi::{api::core::v1::PodTemplateSpec, apimachinery::pkg::apis::meta::v1::Time};
use kube::{CustomResource, KubeSchema};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::state::GameServerState;

/// The desired game server: its ports, health checking, player capacity and pod template.
#[derive(CustomResource, KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[kube(
    group = "flotilla.dev",
    version = "v1alpha1",
    kind = "GameServer",
    namespaced,
    shortname = "gs",
    category = "flotilla",
    status = "GameServerStatus",
    derive = "PartialEq",
    doc = "One game server: a pod running a game-server process that reports its state through the SDK.",
    printcolumn(name = "State", type_ = "string", json_path = ".status.state"),
    printcolumn(name = "Address", type_ = "string", json_path = ".status.address"),
    printcolumn(name = "Port", type_ = "integer", json_path = ".status.ports[0].port"),
    printcolumn(name = "Node", type_ = "string", json_path = ".status.nodeName"),
    printcolumn(
        name = "Players",
        type_ = "integer",
        json_path = ".status.players.count",
        priority = 1
    ),
    printcolumn(name = "Age", type_ = "date", json_path = ".metadata.creationTimestamp")
)]
#[serde(rename_all = "camelCase")]
pub struct GameServerSpec {
    /// Ports the game server listens on; the first one is the one players connect to.
    #[schemars(length(min = 1, max = 16))]
    #[x_kube(validation = Rule::new("self.all(p, self.filter(q, q.name == p.name).size() == 1)")
        .message("port names must be unique"))]
    pub ports: Vec<GameServerPort>,

    /// How the operator decides the server is healthy.
    #[serde(default)]
    pub health: Health,

    /// Player tracking: capacity for allocation with free slots (backfill).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub players: Option<Players>,

    /// Packed bin-packs servers onto few nodes; Distributed spreads them.
    #[serde(default)]
    pub scheduling: Scheduling,

    /// The container that runs the game server; the pod's first container when unset.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub container: Option<String>,

    /// The pod to run.
    #[schemars(schema_with = "pod_template_schema")]
    pub template: PodTemplateSpec,
}

/// The pod template's schema with its field descriptions left out. The full text would make
/// each CRD about 500 KB, more than `kubectl apply` can keep in its last-applied annotation
/// (256 KiB); the structure, types and formats, which is what validates, stay.
fn pod_template_schema(generator: &mut schemars::SchemaGenerator) -> schemars::Schema {
    // `properties` maps field names to schemas: a field called "description" is not a text.
    fn strip(value: &mut serde_json::Value, is_properties: bool) {
        match value {
            serde_json::Value::Object(map) => {
                if !is_properties {
                    map.remove("description");
                }
                for (key, child) in map.iter_mut() {
                    strip(child, !is_properties && key == "properties");
                }
            }
            serde_json::Value::Array(items) => items.iter_mut().for_each(|item| strip(item, false)),
            _ => {}
        }
    }
    let mut schema = <PodTemplateSpec as JsonSchema>::json_schema(generator);
    if let Some(object) = schema.as_object_mut() {
        for (key, value) in object.iter_mut() {
            strip(value, key == "properties");
        }
        object.insert(
            "description".into(),
            "A Kubernetes pod template (PodTemplateSpec).".into(),
        );
    }
    schema
}

#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct GameServerPort {
    /// A name unique among the server's ports (a DNS label of at most 15 characters).
    #[schemars(
        length(min = 1, max = 15),
        regex(pattern = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
    )]
    pub name: String,
    /// The port the game server listens on in its container.
    #[schemars(range(min = 1, max = 65535))]
    pub container_port: i32,
    #[serde(default)]
    pub protocol: Protocol,
}

#[derive(JsonSchema, Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum Protocol {
    #[default]
    #[serde(rename = "UDP")]
    Udp,
    #[serde(rename = "TCP")]
    Tcp,
    /// Both UDP and TCP on the same port number.
    #[serde(rename = "TCPUDP")]
    TcpUdp,
}

#[derive(JsonSchema, Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum Scheduling {
    /// Fill nodes before using new ones, so empty nodes can be scaled away.
    #[default]
    Packed,
    /// Spread servers across nodes.
    Distributed,
}

/// Health checking: the server is Unhealthy when no SDK heartbeat arrives for
/// `failureThreshold × periodSeconds`, counted after `initialDelaySeconds`.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct Health {
    /// Never mark the server Unhealthy for missed heartbeats.
    #[serde(default)]
    pub disabled: bool,
    #[serde(default = "default_initial_delay")]
    #[schemars(range(min = 0, max = 3600))]
    pub initial_delay_seconds: i32,
    #[serde(default = "default_period")]
    #[schemars(range(min = 1, max = 600))]
    pub period_seconds: i32,
    #[serde(default = "default_failure_threshold")]
    #[schemars(range(min = 1, max = 100))]
    pub failure_threshold: i32,
}

fn default_initial_delay() -> i32 {
    5
}
fn default_period() -> i32 {
    5
}
fn default_failure_threshold() -> i32 {
    3
}

impl Default for Health {
    fn default() -> Self {
        Health {
            disabled: false,
            initial_delay_seconds: default_initial_delay(),
            period_seconds: default_period(),
            failure_threshold: default_failure_threshold(),
        }
    }
}

#[derive(KubeSchema, Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct Players {
    /// How many players the server takes at once.
    #[schemars(range(min = 0, max = 100000))]
    pub capacity: i32,
}

/// What the server is doing, written by the operator (the status subresource).
#[derive(JsonSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase")]
pub struct GameServerStatus {
    #[serde(default)]
    pub state: GameServerState,
    /// Where players connect: the pod's address.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub address: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub ports: Vec<PortStatus>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub node_name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub players: Option<PlayerStatus>,
    /// A Reserved server returns to Ready at this time unless allocated first.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reserved_until: Option<Time>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub allocation: Option<Allocation>,
    /// Why the server is in its state, when that needs saying (Unhealthy, Error).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
}

#[derive(JsonSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct PortStatus {
    pub name: String,
    pub port: i32,
    pub protocol: Protocol,
}

#[derive(JsonSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Eq, Default)]
#[serde(rename_all = "camelCase")]
pub struct PlayerStatus {
    pub count: i32,
    pub capacity: i32,
    /// Connected player ids, as reported by the server.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub ids: Vec<String>,
}

/// Who allocated the server, when, and for which session.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct Allocation {
    pub id: String,
    pub time: Time,
    /// The matchmaker's identity, from its credentials.
    pub allocated_by: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub session_id: Option<String>,
    /// The request's idempotency key: a retry with the same key finds this allocation.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub idempotency_key: Option<String>,
}
