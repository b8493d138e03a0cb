//! `FleetAutoscaler` (`fas`): keeps a fleet's replicas where a policy wants them — a buffer of
//! Ready servers, a webhook's answer, a schedule, or the first of a chain that applies.

// Repeated `printcolumn(type_ = …)` entries in `#[kube(...)]` are separate columns.
#![allow(clippy::duplicated_attributes)]

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use kube::{CustomResource, KubeSchema};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

#[derive(CustomResource, KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[kube(
    group = "flotilla.dev",
    version = "v1alpha1",
    kind = "FleetAutoscaler",
    namespaced,
    shortname = "fas",
    category = "flotilla",
    status = "FleetAutoscalerStatus",
    derive = "PartialEq",
    doc = "Scales a fleet by a policy: a buffer of Ready servers, a webhook, a schedule, or a chain of them.",
    printcolumn(name = "Fleet", type_ = "string", json_path = ".spec.fleetName"),
    printcolumn(name = "Policy", type_ = "string", json_path = ".spec.policy.type"),
    printcolumn(name = "Current", type_ = "integer", json_path = ".status.currentReplicas"),
    printcolumn(name = "Desired", type_ = "integer", json_path = ".status.desiredReplicas"),
    printcolumn(name = "Limited", type_ = "boolean", json_path = ".status.scalingLimited"),
    printcolumn(
        name = "Able",
        type_ = "boolean",
        json_path = ".status.ableToScale",
        priority = 1
    ),
    printcolumn(name = "Age", type_ = "date", json_path = ".metadata.creationTimestamp")
)]
#[serde(rename_all = "camelCase")]
pub struct FleetAutoscalerSpec {
    /// The fleet to scale, in this namespace.
    #[schemars(length(min = 1, max = 253))]
    pub fleet_name: String,
    pub policy: ScalingPolicy,
    /// Besides reacting to every change of the fleet, re-evaluate on this interval (a
    /// schedule's window opening, a webhook's changing mind).
    #[serde(default)]
    pub sync: SyncSettings,
}

#[derive(JsonSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct SyncSettings {
    #[serde(default = "thirty")]
    #[schemars(range(min = 1, max = 86400))]
    pub interval_seconds: i32,
}

fn thirty() -> i32 {
    30
}

impl Default for SyncSettings {
    fn default() -> Self {
        Self {
            interval_seconds: thirty(),
        }
    }
}

#[derive(JsonSchema, Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq)]
pub enum PolicyType {
    Buffer,
    Webhook,
    Schedule,
    Chain,
}

impl PolicyType {
    pub fn as_str(self) -> &'static str {
        match self {
            PolicyType::Buffer => "Buffer",
            PolicyType::Webhook => "Webhook",
            PolicyType::Schedule => "Schedule",
            PolicyType::Chain => "Chain",
        }
    }
}

/// Exactly one of the fields named by `type` is set.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new(
    "(self.type == 'Buffer') == has(self.buffer) && (self.type == 'Webhook') == has(self.webhook) && (self.type == 'Schedule') == has(self.schedule) && (self.type == 'Chain') == has(self.chain)"
).message("set exactly the policy field that type names (buffer, webhook, schedule or chain)"))]
pub struct ScalingPolicy {
    #[serde(rename = "type")]
    pub type_: PolicyType,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub buffer: Option<BufferPolicy>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub webhook: Option<WebhookPolicy>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub schedule: Option<SchedulePolicy>,
    /// Tried in order; the first entry that applies (a schedule only inside its window) wins.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 16))]
    pub chain: Option<Vec<ChainEntry>>,
}

/// A chain entry: any policy but another chain.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new(
    "self.type != 'Chain' && (self.type == 'Buffer') == has(self.buffer) && (self.type == 'Webhook') == has(self.webhook) && (self.type == 'Schedule') == has(self.schedule)"
).message("a chain entry is a Buffer, Webhook or Schedule policy with exactly that field set"))]
pub struct ChainEntry {
    /// Names the entry in the status (`activePolicy`).
    #[schemars(length(min = 1, max = 63))]
    pub id: String,
    #[serde(rename = "type")]
    pub type_: PolicyType,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub buffer: Option<BufferPolicy>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub webhook: Option<WebhookPolicy>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub schedule: Option<SchedulePolicy>,
}

/// What a schedule applies inside its window: a buffer or a webhook.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new(
    "(self.type == 'Buffer') == has(self.buffer) && (self.type == 'Webhook') == has(self.webhook) && self.type in ['Buffer', 'Webhook']"
).message("a scheduled policy is a Buffer or Webhook policy with exactly that field set"))]
pub struct BasePolicy {
    #[serde(rename = "type")]
    pub type_: PolicyType,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub buffer: Option<BufferPolicy>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub webhook: Option<WebhookPolicy>,
}

/// Keep `bufferSize` servers Ready (or that share of the fleet) on top of the allocated and
/// reserved ones, within `minReplicas..=maxReplicas`.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new("self.maxReplicas >= self.minReplicas").message("maxReplicas must be at least minReplicas"))]
#[x_kube(validation = Rule::new("type(self.bufferSize) == int || self.minReplicas >= 1")
    .message("a percentage buffer needs minReplicas of at least 1, or an empty fleet could never grow"))]
pub struct BufferPolicy {
    /// A count (at least 1) or a percentage of the fleet (1% to 99%).
    #[x_kube(validation = Rule::new("type(self) == int ? self >= 1 : self.matches('^[1-9][0-9]?%$')")
        .message("must be a count of at least 1 or a percentage from 1% to 99%"))]
    #[schemars(schema_with = "short_int_or_string")]
    pub buffer_size: IntOrString,
    #[serde(default)]
    #[schemars(range(min = 0, max = 100000))]
    pub min_replicas: i32,
    #[schemars(range(min = 1, max = 100000))]
    pub max_replicas: i32,
}

/// Ask a service: the fleet's status is POSTed as a `FleetAutoscaleReview` (Agones' format)
/// and the answer says whether to scale and to how many.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct WebhookPolicy {
    #[x_kube(validation = Rule::new("self.startsWith('http://') || self.startsWith('https://')").message("must be an http:// or https:// URL"))]
    #[schemars(length(min = 8, max = 2048))]
    pub url: String,
    #[serde(default = "two")]
    #[schemars(range(min = 1, max = 30))]
    pub timeout_seconds: i32,
}

/// An int-or-string whose string form is at most "99%": the length bound keeps the CEL rule's
/// estimated cost within the API server's budget.
fn short_int_or_string(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
    schemars::json_schema!({"x-kubernetes-int-or-string": true, "maxLength": 3})
}

fn two() -> i32 {
    2
}

/// A policy that applies only inside a time window: between two instants, and/or in periods
/// that start at cron times (in a timezone) and last `duration`.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct SchedulePolicy {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub between: Option<Between>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub active_period: Option<ActivePeriod>,
    pub policy: BasePolicy,
}

#[derive(JsonSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct Between {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub start: Option<Time>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub end: Option<Time>,
}

#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct ActivePeriod {
    /// An IANA timezone such as `Europe/Berlin`; UTC when left out.
    #[serde(default = "utc")]
    #[schemars(length(min = 1, max = 64))]
    pub timezone: String,
    /// When each period starts: five cron fields (minute hour day-of-month month day-of-week)
    /// with `*`, lists, ranges and steps.
    #[x_kube(validation = Rule::new("self.matches('^ *[^ ]+( +[^ ]+){4} *$')")
        .message("must have five fields: minute hour day-of-month month day-of-week"))]
    #[schemars(length(min = 9, max = 100))]
    pub start_cron: String,
    /// How long each period lasts, e.g. `2h`, `90m`, `1h30m` (at most a week).
    #[x_kube(validation = Rule::new("self.matches('^([0-9]+h)?([0-9]+m)?$') && self != ''")
        .message("must be hours and/or minutes, such as 2h, 90m or 1h30m"))]
    #[schemars(length(min = 2, max = 12))]
    pub duration: String,
}

fn utc() -> String {
    "UTC".into()
}

#[derive(JsonSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase")]
pub struct FleetAutoscalerStatus {
    pub current_replicas: i32,
    pub desired_replicas: i32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_scale_time: Option<Time>,
    /// False when the fleet is missing or the policy could not be evaluated (a failing webhook).
    pub able_to_scale: bool,
    /// True when the policy wanted more or fewer replicas than min/max allow.
    pub scaling_limited: bool,
    /// The policy that decided: its type, or the chain entry's id.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub active_policy: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
}
