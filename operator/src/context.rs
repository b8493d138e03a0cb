//! What every reconcile shares.

use std::sync::Arc;

use k8s_openapi::api::core::v1::Pod;
use kube::{
    Client, Resource,
    runtime::{
        events::{Event, EventType, Recorder},
        reflector::Store,
    },
};
use tracing::debug;

use crate::metrics::Metrics;

pub struct Context {
    pub client: Client,
    /// The SDK endpoint's URL as game servers reach it, put into their environment.
    pub sdk_url: String,
    /// Public keys of the connection-token signer, put into game servers' environment.
    pub token_keys: String,
    pub metrics: Arc<Metrics>,
    pub recorder: Recorder,
    /// Game servers' pods from the game-server controller's own pod watch, stripped to what
    /// reconciling reads (`game_server::strip_pod`).
    pub pods: Store<Pod>,
}

impl Context {
    /// Publishes a Kubernetes Event about `object` (what `kubectl describe` shows). Failing to
    /// record an event never fails a reconcile.
    pub async fn event<K>(&self, object: &K, warning: bool, reason: &str, note: String)
    where
        K: Resource<DynamicType = ()>,
    {
        let event = Event {
            type_: if warning {
                EventType::Warning
            } else {
                EventType::Normal
            },
            reason: reason.into(),
            note: Some(note),
            action: reason.into(),
            secondary: None,
        };
        if let Err(e) = self.recorder.publish(&event, &object.object_ref(&())).await {
            debug!(error = %e, reason, "event not recorded");
        }
    }
}
