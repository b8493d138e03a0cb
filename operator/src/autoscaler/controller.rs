//! The FleetAutoscaler controller: on every change of its fleet (an allocation changes the
//! fleet's counts within milliseconds) and on the sync interval, decide the replicas and set
//! them on the fleet.

use std::sync::Arc;
use std::time::{Duration, Instant};

use flotilla_api::GameServerFleet;
use flotilla_api::autoscaler::{FleetAutoscaler, FleetAutoscalerStatus};
use jiff::Timestamp;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::api::{Patch, PatchParams};
use kube::runtime::controller::Action;
use kube::{Api, ResourceExt};
use tracing::{info, instrument, warn};

use super::policy::{Decision, FleetNumbers, decide};
use super::webhook;
use crate::console::{self, ConsoleFeed};
use crate::context::Context;
use crate::error::{Error, Result};

/// What the controller shares: the operator's context, an HTTP client for webhooks and the
/// ops console's list of decisions.
pub struct AutoscalerContext {
    pub ctx: Arc<Context>,
    pub http: reqwest::Client,
    pub console: Arc<ConsoleFeed>,
}

#[instrument(skip_all, fields(namespace = %autoscaler.namespace().unwrap_or_default(), name = %autoscaler.name_any()))]
pub async fn reconcile(autoscaler: Arc<FleetAutoscaler>, actx: Arc<AutoscalerContext>) -> Result<Action> {
    let started = Instant::now();
    let result = reconcile_autoscaler(&autoscaler, &actx).await;
    actx.ctx
        .metrics
        .observe_reconcile("autoscaler", started.elapsed());
    result
}

async fn reconcile_autoscaler(autoscaler: &FleetAutoscaler, actx: &AutoscalerContext) -> Result<Action> {
    let ctx = &actx.ctx;
    let namespace = autoscaler.namespace().unwrap_or_default();
    let interval = Duration::from_secs(
        autoscaler
            .spec
            .sync
            .interval_seconds
            .clamp(1, 86_400)
            .unsigned_abs()
            .into(),
    );
    let fleets: Api<GameServerFleet> = Api::namespaced(ctx.client.clone(), &namespace);
    let previous = autoscaler.status.clone().unwrap_or_default();
    let Some(fleet) = fleets.get_opt(&autoscaler.spec.fleet_name).await? else {
        let status = FleetAutoscalerStatus {
            able_to_scale: false,
            message: Some(format!("fleet {} not found", autoscaler.spec.fleet_name)),
            ..previous
        };
        write_status(ctx, autoscaler, &status).await?;
        return Ok(Action::requeue(interval));
    };
    let fleet_status = fleet.status.clone().unwrap_or_default();
    let numbers = FleetNumbers {
        replicas: fleet.spec.replicas,
        ready: fleet_status.ready_replicas,
        reserved: fleet_status.reserved_replicas,
        allocated: fleet_status.allocated_replicas,
    };
    // A new id per review, as Agones does, so a webhook can tell requests apart.
    let uid = review_id();
    let outcome = match decide(&autoscaler.spec.policy, numbers, Timestamp::now()) {
        Ok(Decision::Replicas {
            replicas,
            limited,
            policy,
        }) => Ok((Some(replicas), limited, Some(policy))),
        Ok(Decision::Ask { webhook, policy }) => {
            match webhook::ask(&actx.http, &webhook, &namespace, &fleet.name_any(), numbers, &uid).await {
                Ok(replicas) => Ok((replicas, false, Some(policy))),
                Err(e) => Err(e),
            }
        }
        Ok(Decision::Nothing) => Ok((None, false, None)),
        Err(e) => Err(e),
    };
    let mut status = FleetAutoscalerStatus {
        current_replicas: numbers.replicas,
        ..previous.clone()
    };
    // Every evaluation is counted in the metric and listed on the console, alike.
    let record = |result: &'static str, to: i32, policy: &Option<String>, reason: Option<String>| {
        ctx.metrics.count_autoscale(&namespace, result);
        actx.console.decision(console::Decision {
            policy: policy.clone(),
            reason,
            ..console::Decision::now(
                &namespace,
                &autoscaler.name_any(),
                &fleet.name_any(),
                numbers.replicas,
                to,
                result,
            )
        });
    };
    match outcome {
        Err(message) => {
            warn!(%message, "autoscaler cannot decide");
            record("error", numbers.replicas, &None, Some(message.clone()));
            if previous.message.as_deref() != Some(message.as_str()) {
                ctx.event(autoscaler, true, "PolicyFailed", message.clone()).await;
            }
            status.able_to_scale = false;
            status.message = Some(message);
        }
        Ok((wanted, limited, policy)) => {
            let desired = wanted.unwrap_or(numbers.replicas);
            status.able_to_scale = true;
            status.scaling_limited = limited;
            status.desired_replicas = desired;
            status.message = None;
            status.active_policy = policy.clone();
            if desired != numbers.replicas {
                // The autoscaler owns the fleet's replicas; the fleet controller does the rest.
                let patch = serde_json::json!({"spec": {"replicas": desired}});
                fleets
                    .patch(&fleet.name_any(), &PatchParams::default(), &Patch::Merge(patch))
                    .await?;
                status.current_replicas = desired;
                status.last_scale_time = Some(Time(Timestamp::now()));
                let direction = if desired > numbers.replicas { "up" } else { "down" };
                record(
                    if direction == "up" {
                        "scaled_up"
                    } else {
                        "scaled_down"
                    },
                    desired,
                    &policy,
                    None,
                );
                let note = format!(
                    "scaled fleet {} from {} to {} ({} allocated, {} reserved; policy {})",
                    fleet.name_any(),
                    numbers.replicas,
                    desired,
                    numbers.allocated,
                    numbers.reserved,
                    policy.unwrap_or_default()
                );
                info!(%note);
                ctx.event(autoscaler, false, "Scaled", note).await;
            } else {
                record(
                    if limited { "limited" } else { "unchanged" },
                    desired,
                    &policy,
                    None,
                );
            }
        }
    }
    if autoscaler.status.as_ref() != Some(&status) {
        write_status(ctx, autoscaler, &status).await?;
    }
    Ok(Action::requeue(interval))
}

async fn write_status(
    ctx: &Context,
    autoscaler: &FleetAutoscaler,
    status: &FleetAutoscalerStatus,
) -> Result<()> {
    let api: Api<FleetAutoscaler> =
        Api::namespaced(ctx.client.clone(), &autoscaler.namespace().unwrap_or_default());
    let mut value = serde_json::to_value(status).map_err(|source| Error::Serialize {
        what: "autoscaler status",
        source,
    })?;
    // Cleared optional fields must be sent as null to leave a merge patch.
    if let Some(map) = value.as_object_mut() {
        for key in ["message", "activePolicy"] {
            map.entry(key).or_insert(serde_json::Value::Null);
        }
    }
    api.patch_status(
        &autoscaler.name_any(),
        &PatchParams::default(),
        &Patch::Merge(serde_json::json!({"status": value})),
    )
    .await?;
    Ok(())
}

pub fn error_policy(
    _autoscaler: Arc<FleetAutoscaler>,
    error: &Error,
    actx: Arc<AutoscalerContext>,
) -> Action {
    warn!(kind = error.kind(), %error, "autoscaler reconcile failed");
    actx.ctx.metrics.count_error("autoscaler", error.kind());
    Action::requeue(Duration::from_secs(2))
}

/// 128 random bits in hex: the `uid` of one webhook review.
fn review_id() -> String {
    let mut bytes = [0u8; 16];
    // The system's random source does not fail on Linux; a zero id would still be answered.
    let _ = ring::rand::SecureRandom::fill(&ring::rand::SystemRandom::new(), &mut bytes);
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}
