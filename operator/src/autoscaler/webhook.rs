//! The webhook policy's question: the fleet's numbers are POSTed as a `FleetAutoscaleReview`
//! (the shape Agones uses, under our API group) and the answer says whether to scale and to
//! how many. A slow, failing or nonsensical answer is an error: the fleet is left as it is.

use std::time::Duration;

use flotilla_api::autoscaler::WebhookPolicy;
use serde::Deserialize;
use serde_json::json;

use super::policy::FleetNumbers;

#[derive(Deserialize)]
struct Review {
    response: Option<Answer>,
}

#[derive(Deserialize)]
struct Answer {
    uid: Option<String>,
    scale: bool,
    replicas: Option<i64>,
}

/// The replicas the webhook wants; `None` when it answers "do not scale".
pub async fn ask(
    http: &reqwest::Client,
    webhook: &WebhookPolicy,
    namespace: &str,
    fleet: &str,
    numbers: FleetNumbers,
    uid: &str,
) -> Result<Option<i32>, String> {
    let review = json!({
        "apiVersion": "flotilla.dev/v1alpha1",
        "kind": "FleetAutoscaleReview",
        "request": {
            "uid": uid,
            "name": fleet,
            "namespace": namespace,
            "status": {
                "replicas": numbers.replicas,
                "readyReplicas": numbers.ready,
                "reservedReplicas": numbers.reserved,
                "allocatedReplicas": numbers.allocated,
            },
        },
    });
    let response = http
        .post(&webhook.url)
        .timeout(Duration::from_secs(
            webhook.timeout_seconds.clamp(1, 30).unsigned_abs().into(),
        ))
        .json(&review)
        .send()
        .await
        .map_err(|e| {
            format!(
                "webhook {} failed: {}",
                webhook.url,
                if e.is_timeout() {
                    "timed out".to_owned()
                } else {
                    e.to_string()
                }
            )
        })?;
    if !response.status().is_success() {
        return Err(format!("webhook {} answered {}", webhook.url, response.status()));
    }
    let review: Review = response.json().await.map_err(|e| {
        format!(
            "webhook {} answered something that is not a review: {e}",
            webhook.url
        )
    })?;
    let answer = review
        .response
        .ok_or_else(|| format!("webhook {} answered without a response", webhook.url))?;
    if answer.uid.as_deref().is_some_and(|u| u != uid) {
        return Err(format!("webhook {} answered a different request", webhook.url));
    }
    if !answer.scale {
        return Ok(None);
    }
    // Scaling without a number is a broken answer, not a request to empty the fleet.
    let wanted = answer
        .replicas
        .ok_or_else(|| format!("webhook {} answered scale without replicas", webhook.url))?;
    match i32::try_from(wanted) {
        Ok(n) if (0..=100_000).contains(&n) => Ok(Some(n)),
        _ => Err(format!(
            "webhook {} asked for {wanted} replicas, outside 0-100000",
            webhook.url
        )),
    }
}
