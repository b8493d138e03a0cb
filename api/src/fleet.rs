//! `GameServerFleet` (`gsf`): keeps `replicas` game servers made from one template, never
//! removing an allocated one, and rolls template changes out within surge/unavailable bounds.

// Repeated `printcolumn(type_ = …)` entries in `#[kube(...)]` are separate columns, not
// duplicates: clippy's attribute check cannot tell.
#![allow(clippy::duplicated_attributes)]

use std::collections::BTreeMap;

use k8s_openapi::apimachinery::pkg::{apis::meta::v1::Condition, util::intstr::IntOrString};
use kube::{CustomResource, KubeSchema};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::game_server::{GameServerSpec, Scheduling};

#[derive(CustomResource, KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[kube(
    group = "flotilla.dev",
    version = "v1alpha1",
    kind = "GameServerFleet",
    namespaced,
    shortname = "gsf",
    category = "flotilla",
    status = "GameServerFleetStatus",
    derive = "PartialEq",
    doc = "A fleet of game servers made from one template, scaled by replicas.",
    scale(
        spec_replicas_path = ".spec.replicas",
        status_replicas_path = ".status.replicas",
        label_selector_path = ".status.labelSelector"
    ),
    printcolumn(name = "Scheduling", type_ = "string", json_path = ".spec.scheduling"),
    printcolumn(name = "Desired", type_ = "integer", json_path = ".spec.replicas"),
    printcolumn(name = "Current", type_ = "integer", json_path = ".status.replicas"),
    printcolumn(name = "Ready", type_ = "integer", json_path = ".status.readyReplicas"),
    printcolumn(
        name = "Allocated",
        type_ = "integer",
        json_path = ".status.allocatedReplicas"
    ),
    printcolumn(
        name = "Players",
        type_ = "integer",
        json_path = ".status.players",
        priority = 1
    ),
    printcolumn(name = "Age", type_ = "date", json_path = ".metadata.creationTimestamp")
)]
#[serde(rename_all = "camelCase")]
pub struct GameServerFleetSpec {
    /// How many game servers the fleet keeps, allocated ones included.
    #[schemars(range(min = 0, max = 100000))]
    pub replicas: i32,

    /// Packed bin-packs servers onto few nodes and scales down the least-used nodes first;
    /// Distributed spreads them.
    #[serde(default)]
    pub scheduling: Scheduling,

    /// How a template change replaces servers.
    #[serde(default)]
    pub strategy: FleetStrategy,

    /// The game servers to make.
    pub template: GameServerTemplate,
}

/// A game server's metadata and spec, as the fleet stamps it out.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct GameServerTemplate {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub metadata: Option<TemplateMetadata>,
    pub spec: GameServerSpec,
}

#[derive(JsonSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase")]
pub struct TemplateMetadata {
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub labels: BTreeMap<String, String>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub annotations: BTreeMap<String, String>,
}

#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new("self.type == 'RollingUpdate' || !has(self.rollingUpdate)")
    .message("rollingUpdate may be set only when type is RollingUpdate")
    .field_path(".rollingUpdate"))]
pub struct FleetStrategy {
    #[serde(rename = "type", default)]
    pub type_: StrategyType,
    /// Bounds of a rolling update; 25 % and 25 % when left out.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rolling_update: Option<RollingUpdate>,
}

impl Default for FleetStrategy {
    fn default() -> Self {
        FleetStrategy {
            type_: StrategyType::RollingUpdate,
            rolling_update: Some(RollingUpdate::default()),
        }
    }
}

#[derive(JsonSchema, Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum StrategyType {
    /// Replace servers a few at a time; allocated servers of the old template keep running
    /// until their sessions end.
    #[default]
    RollingUpdate,
    /// Remove every non-allocated old server at once, then create new ones. Allocated servers
    /// are spared here too.
    Recreate,
}

/// Bounds of a rolling update, as counts or percentages of `replicas` (like a Deployment's).
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new("!(string(self.maxSurge) in ['0', '0%'] && string(self.maxUnavailable) in ['0', '0%'])")
    .message("maxSurge and maxUnavailable cannot both be 0: the update could never make progress"))]
pub struct RollingUpdate {
    /// How many servers above `replicas` may exist during the update.
    #[serde(default = "quarter")]
    #[x_kube(validation = Rule::new("type(self) == int ? self >= 0 : self.matches('^[0-9]+%$')")
        .message("must be a non-negative count or a percentage such as 25%"))]
    pub max_surge: IntOrString,
    /// How many of `replicas` may be unavailable (not Ready nor allocated) during the update.
    #[serde(default = "quarter")]
    #[x_kube(validation = Rule::new("type(self) == int ? self >= 0 : self.matches('^[0-9]+%$')")
        .message("must be a non-negative count or a percentage such as 25%"))]
    pub max_unavailable: IntOrString,
}

fn quarter() -> IntOrString {
    IntOrString::String("25%".into())
}

impl Default for RollingUpdate {
    fn default() -> Self {
        RollingUpdate {
            max_surge: quarter(),
            max_unavailable: quarter(),
        }
    }
}

#[derive(JsonSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase")]
pub struct GameServerFleetStatus {
    /// Live servers of the fleet: any state except Shutdown, Unhealthy and Error, and not being
    /// deleted.
    #[serde(default)]
    pub replicas: i32,
    #[serde(default)]
    pub ready_replicas: i32,
    #[serde(default)]
    pub reserved_replicas: i32,
    #[serde(default)]
    pub allocated_replicas: i32,
    /// Players on the fleet's servers.
    #[serde(default)]
    pub players: i32,
    /// Total player capacity of the fleet's servers.
    #[serde(default)]
    pub player_capacity: i32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// The selector of the fleet's servers, for the scale subresource (and so an HPA).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub label_selector: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub conditions: Vec<Condition>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_minimal_fleet_gets_the_documented_defaults() {
        let fleet: GameServerFleetSpec = serde_json::from_value(serde_json::json!({
            "replicas": 2,
            "template": {"spec": {
                "ports": [{"name": "game", "containerPort": 7777}],
                "template": {"spec": {"containers": [{"name": "gs", "image": "flotilla/gameserver"}]}},
            }},
        }))
        .expect("valid fleet");
        assert_eq!(fleet.scheduling, Scheduling::Packed);
        assert_eq!(fleet.strategy.type_, StrategyType::RollingUpdate);
        assert_eq!(fleet.strategy.rolling_update, Some(RollingUpdate::default()));
        let server = &fleet.template.spec;
        assert_eq!(server.health, crate::Health::default());
        assert_eq!(server.ports[0].protocol, crate::Protocol::Udp);
    }

    #[test]
    fn crd_declares_scale_subresource_and_short_name() {
        use kube::CustomResourceExt;
        let crd = GameServerFleet::crd();
        assert_eq!(crd.spec.names.short_names, Some(vec!["gsf".to_owned()]));
        let version = &crd.spec.versions[0];
        let scale = version
            .subresources
            .as_ref()
            .and_then(|s| s.scale.as_ref())
            .expect("scale subresource");
        assert_eq!(scale.spec_replicas_path, ".spec.replicas");
        assert_eq!(
            scale.label_selector_path.as_deref(),
            Some(".status.labelSelector")
        );
    }
}
