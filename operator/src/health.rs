//! Health checking without a sidecar and without an API write per heartbeat: game servers post
//! heartbeats to the SDK endpoint, which keeps only the time of the last one in memory. Once a
//! second this monitor marks Unhealthy every server whose last heartbeat (or, before the first
//! one, the moment it was first seen running plus `initialDelaySeconds`) is older than
//! `failureThreshold × periodSeconds`. The fleet then replaces it.

use std::{
    collections::{HashMap, HashSet},
    sync::Arc,
    time::{Duration, Instant},
};

use flotilla_api::{GameServer, GameServerState, Health};
use kube::{
    Api, Client, ResourceExt,
    api::{Patch, PatchParams},
    runtime::reflector::Store,
};
use tracing::warn;

use crate::{
    metrics::{Metrics, NamespaceLabels},
    sdk::Heartbeats,
};

/// Whether a server with these settings has missed its heartbeats at `now`.
pub fn overdue(first_seen: Instant, last_beat: Option<Instant>, health: &Health, now: Instant) -> bool {
    let secs = |s: i32| Duration::from_secs(u64::try_from(s).unwrap_or(0));
    let start = first_seen + secs(health.initial_delay_seconds);
    let reference = last_beat.map_or(start, |beat| beat.max(start));
    now > reference + secs(health.period_seconds) * u32::try_from(health.failure_threshold).unwrap_or(1)
}

/// Runs until the process ends.
pub async fn monitor(
    client: Client,
    servers: Store<GameServer>,
    heartbeats: Heartbeats,
    metrics: Arc<Metrics>,
) {
    let mut first_seen: HashMap<(String, String), Instant> = HashMap::new();
    let mut ticker = tokio::time::interval(Duration::from_secs(1));
    loop {
        ticker.tick().await;
        let now = Instant::now();
        let mut watched = HashSet::new();
        for server in servers.state() {
            let state = server.status.as_ref().map(|s| s.state).unwrap_or_default();
            let health = &server.spec.health;
            if health.disabled
                || state.is_failed()
                || matches!(state, GameServerState::Creating | GameServerState::Shutdown)
            {
                continue;
            }
            let key = (server.namespace().unwrap_or_default(), server.name_any());
            let since = *first_seen.entry(key.clone()).or_insert(now);
            let last = heartbeats.lock().ok().and_then(|b| b.get(&key).copied());
            if overdue(since, last, health, now) {
                let silent = now.duration_since(last.unwrap_or(since)).as_secs();
                let namespace = key.0.clone();
                if mark_unhealthy(&client, &server, &format!("no health heartbeat for {silent}s")).await {
                    metrics
                        .health_failures
                        .get_or_create(&NamespaceLabels { namespace })
                        .inc();
                }
            } else {
                watched.insert(key);
            }
        }
        first_seen.retain(|key, _| watched.contains(key));
        if let Ok(mut beats) = heartbeats.lock() {
            beats.retain(|key, _| watched.contains(key));
        }
    }
}

/// Writes the Unhealthy state; false if the server changed meanwhile or the write failed.
async fn mark_unhealthy(client: &Client, server: &GameServer, message: &str) -> bool {
    let current = server.status.clone().unwrap_or_default();
    if !current.state.can_become(GameServerState::Unhealthy) {
        return false;
    }
    warn!(namespace = %server.namespace().unwrap_or_default(), name = %server.name_any(), message, "game server unhealthy");
    let mut status = current;
    status.state = GameServerState::Unhealthy;
    status.message = Some(message.to_owned());
    let patch = crate::status_patch::status_patch(server, &status);
    let api: Api<GameServer> = Api::namespaced(client.clone(), &server.namespace().unwrap_or_default());
    // A conflict means the server changed meanwhile; the next tick looks again.
    match api
        .patch_status(&server.name_any(), &PatchParams::default(), &Patch::Merge(patch))
        .await
    {
        Ok(_) => true,
        Err(e) => {
            warn!(error = %e, "could not mark game server unhealthy");
            false
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn health() -> Health {
        Health {
            disabled: false,
            initial_delay_seconds: 5,
            period_seconds: 2,
            failure_threshold: 3,
        }
    }

    #[test]
    fn a_new_server_gets_the_initial_delay_plus_the_failure_window() {
        let t0 = Instant::now();
        assert!(!overdue(t0, None, &health(), t0 + Duration::from_secs(11)));
        assert!(overdue(t0, None, &health(), t0 + Duration::from_secs(12)));
    }

    #[test]
    fn each_heartbeat_restarts_the_failure_window() {
        let t0 = Instant::now();
        let beat = t0 + Duration::from_secs(20);
        assert!(!overdue(t0, Some(beat), &health(), beat + Duration::from_secs(6)));
        assert!(overdue(t0, Some(beat), &health(), beat + Duration::from_secs(7)));
    }

    #[test]
    fn early_heartbeats_do_not_shorten_the_initial_delay() {
        let t0 = Instant::now();
        assert!(!overdue(t0, Some(t0), &health(), t0 + Duration::from_secs(11)));
    }
}
