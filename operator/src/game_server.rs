//! The game-server controller: creates each GameServer's pod and moves the server through its
//! states as the pod is scheduled, gets an address, fails or disappears. State changes the game
//! server asks for itself (Ready, Allocate, Shutdown) arrive through the SDK; this controller
//! only confirms them (`RequestReady` → `Ready` once the pod has an address).

use std::{sync::Arc, time::Duration};

use flotilla_api::{GameServer, GameServerState, GameServerStatus, PortStatus};
use k8s_openapi::api::core::v1::{ContainerStatus, Pod, PodSpec, PodStatus};
use kube::{
    Api, ResourceExt,
    api::{DeleteParams, Patch, PatchParams, PostParams},
    runtime::{controller::Action, reflector::ObjectRef},
};
use tracing::{debug, info, instrument, warn};

use crate::status_patch::status_patch;
use crate::{
    context::Context,
    error::{Error, Result},
    pod,
};

#[instrument(skip_all, fields(namespace = %server.namespace().unwrap_or_default(), name = %server.name_any()))]
pub async fn reconcile(server: Arc<GameServer>, ctx: Arc<Context>) -> Result<Action> {
    let started = std::time::Instant::now();
    let result = reconcile_server(&server, &ctx).await;
    ctx.metrics.observe_reconcile("gameserver", started.elapsed());
    result
}

async fn reconcile_server(server: &GameServer, ctx: &Context) -> Result<Action> {
    if server.metadata.deletion_timestamp.is_some() {
        return Ok(Action::await_change());
    }
    let namespace = server.namespace().unwrap_or_default();
    let name = server.name_any();
    let servers: Api<GameServer> = Api::namespaced(ctx.client.clone(), &namespace);
    let pods: Api<Pod> = Api::namespaced(ctx.client.clone(), &namespace);
    let current = server.status.clone().unwrap_or_default();

    if current.state == GameServerState::Shutdown {
        info!("deleting shut-down game server");
        match servers.delete(&name, &DeleteParams::background()).await {
            Ok(_) => {}
            Err(kube::Error::Api(e)) if e.code == 404 => {}
            Err(e) => return Err(e.into()),
        }
        return Ok(Action::await_change());
    }

    // The watch's copy, or a GET when the watch has not seen the pod (yet): a pod is only
    // created after a read says there is none.
    let cached = ctx
        .pods
        .get(&ObjectRef::new(&name).within(&namespace))
        .map(|pod| (*pod).clone());
    let existing = match cached {
        Some(pod) => Some(pod),
        None => pods.get_opt(&name).await?,
    };
    let mut next = next_status(server, existing.as_ref());
    if existing.is_none() && current.state == GameServerState::Creating {
        match create_pod(&pods, server, ctx).await {
            Ok(()) => {}
            Err(reason) => {
                warn!(%reason, "pod cannot be created");
                next.state = GameServerState::Error;
                next.message = Some(reason);
            }
        }
    }
    // A reservation that ran out returns the server to Ready; until then, look again when it ends.
    let mut requeue = None;
    if next.state == GameServerState::Reserved
        && let Some(until) = next.reserved_until.as_ref().map(|t| t.0)
    {
        let left = until.duration_since(jiff::Timestamp::now());
        if left.is_positive() {
            requeue = Some(Duration::try_from(left).unwrap_or(Duration::from_secs(1)));
        } else {
            next.state = GameServerState::Ready;
            next.reserved_until = None;
        }
    }
    if next != current {
        if next.state != current.state {
            info!(from = %current.state, to = %next.state, message = next.message.as_deref(), "state changed");
            let note = match &next.message {
                Some(message) if next.state.is_failed() => message.clone(),
                _ => format!("{} -> {}", current.state, next.state),
            };
            ctx.event(server, next.state.is_failed(), next.state.as_str(), note)
                .await;
        }
        // The status was computed from a cached object: write it only if the object is still
        // that version. The SDK (Ready, Allocate) and the allocator write states too, and a
        // blind write would undo theirs. On a conflict, the newer version's watch event brings
        // us back here with fresh data.
        let patch = status_patch(server, &next);
        match servers
            .patch_status(&name, &PatchParams::default(), &Patch::Merge(patch))
            .await
        {
            Ok(_) => {}
            Err(kube::Error::Api(e)) if e.code == 409 => {
                debug!("status changed meanwhile; reconciling again");
                return Ok(Action::requeue(Duration::from_millis(100)));
            }
            Err(e) => return Err(e.into()),
        }
    }
    Ok(requeue.map_or_else(Action::await_change, Action::requeue))
}

pub fn error_policy(_server: Arc<GameServer>, error: &Error, ctx: Arc<Context>) -> Action {
    warn!(kind = error.kind(), %error, "game server reconcile failed");
    ctx.metrics.count_error("gameserver", error.kind());
    Action::requeue(Duration::from_secs(2))
}

/// Creates the pod; `Err` carries why it can never be created (an invalid template).
async fn create_pod(pods: &Api<Pod>, server: &GameServer, ctx: &Context) -> std::result::Result<(), String> {
    let pod = pod::build(server, &ctx.sdk_url, &ctx.token_keys).map_err(|e| e.to_string())?;
    match pods.create(&PostParams::default(), &pod).await {
        Ok(_) => Ok(()),
        Err(kube::Error::Api(e)) if e.code == 409 => Ok(()),
        Err(kube::Error::Api(e)) if e.code == 422 || e.code == 400 => {
            Err(format!("pod rejected: {}", e.message))
        }
        // Anything else (a timeout, a conflict) is retried by the controller's error policy.
        Err(e) => {
            warn!(error = %e, "pod creation failed, will retry");
            Ok(())
        }
    }
}

/// The status the server should have, given its pod (or the lack of one). Moves only along
/// the state machine: a failed server never recovers, an allocated one keeps its allocation.
pub fn next_status(server: &GameServer, pod: Option<&Pod>) -> GameServerStatus {
    let mut status = server.status.clone().unwrap_or_default();
    let Some(pod) = pod else {
        if status.state != GameServerState::Creating {
            transition(
                &mut status,
                GameServerState::Unhealthy,
                Some("the game server's pod is gone".into()),
            );
        }
        return status;
    };

    let phase = pod
        .status
        .as_ref()
        .and_then(|s| s.phase.as_deref())
        .unwrap_or("Pending");
    if pod.metadata.deletion_timestamp.is_some() {
        transition(
            &mut status,
            GameServerState::Unhealthy,
            Some("the game server's pod is being deleted".into()),
        );
        return status;
    }
    if matches!(phase, "Failed" | "Succeeded") {
        transition(
            &mut status,
            GameServerState::Unhealthy,
            Some(format!("the game server's pod has {}", phase.to_lowercase())),
        );
        return status;
    }
    let restarts = pod
        .status
        .as_ref()
        .and_then(|s| s.container_statuses.as_ref())
        .map_or(0, |c| c.iter().map(|c| c.restart_count).sum::<i32>());
    if restarts > 0 {
        transition(
            &mut status,
            GameServerState::Unhealthy,
            Some("a container of the game server restarted".into()),
        );
        return status;
    }

    // Scheduled is written together with the address: the kubelet reports a bound pod's IP
    // moments after the bind, and one status write per server instead of two counts when a
    // fleet of a thousand starts (docs/benchmarks.md). Until then the server stays Creating.
    let node = pod.spec.as_ref().and_then(|s| s.node_name.clone());
    let address = pod.status.as_ref().and_then(|s| s.pod_ip.clone());
    if let (Some(node), Some(address)) = (node, address) {
        status.node_name = Some(node);
        transition(&mut status, GameServerState::Scheduled, None);
        status.address = Some(address);
        // The template's capacity until the server reports its own through the SDK, so player
        // tracking works without that call.
        if status.players.is_none()
            && let Some(players) = &server.spec.players
        {
            status.players = Some(flotilla_api::PlayerStatus {
                capacity: players.capacity,
                ..Default::default()
            });
        }
        status.ports = server
            .spec
            .ports
            .iter()
            .map(|p| PortStatus {
                name: p.name.clone(),
                port: p.container_port,
                protocol: p.protocol,
            })
            .collect();
        if status.state == GameServerState::RequestReady {
            transition(&mut status, GameServerState::Ready, None);
        }
    }
    status
}

/// What the controller keeps of a pod: identity, owner, node, phase, address and container
/// restarts. The rest (the spec, managed fields, conditions) would make a cache of a thousand
/// pods cost tens of MiB.
pub fn strip_pod(pod: &mut Pod) {
    pod.metadata.managed_fields = None;
    pod.metadata.annotations = None;
    let node_name = pod.spec.as_ref().and_then(|s| s.node_name.clone());
    pod.spec = Some(PodSpec {
        node_name,
        ..Default::default()
    });
    if let Some(status) = pod.status.as_mut() {
        let restarts = status.container_statuses.take().map(|statuses| {
            statuses
                .into_iter()
                .map(|c| ContainerStatus {
                    name: c.name,
                    restart_count: c.restart_count,
                    ..Default::default()
                })
                .collect()
        });
        *status = PodStatus {
            phase: status.phase.take(),
            pod_ip: status.pod_ip.take(),
            container_statuses: restarts,
            ..Default::default()
        };
    }
}

/// Moves to `next` if the state machine allows it, recording why.
fn transition(status: &mut GameServerStatus, next: GameServerState, message: Option<String>) {
    if status.state != next && status.state.can_become(next) {
        status.state = next;
        if message.is_some() {
            status.message = message;
        }
    }
}

#[cfg(test)]
mod tests {
    use flotilla_api::GameServerSpec;

    use super::*;
    use GameServerState::*;

    fn server(state: GameServerState) -> GameServer {
        let spec: GameServerSpec = serde_json::from_value(serde_json::json!({
            "ports": [{"name": "game", "containerPort": 7777}],
            "players": {"capacity": 16},
            "template": {"spec": {"containers": [{"name": "gs", "image": "flotilla/gameserver"}]}},
        }))
        .expect("spec");
        let mut gs = GameServer::new("gs-1", spec);
        gs.status = Some(GameServerStatus {
            state,
            ..Default::default()
        });
        gs
    }

    fn pod(node: Option<&str>, ip: Option<&str>, phase: &str, restarts: i32) -> Pod {
        Pod {
            spec: Some(PodSpec {
                node_name: node.map(Into::into),
                ..Default::default()
            }),
            status: Some(PodStatus {
                phase: Some(phase.into()),
                pod_ip: ip.map(Into::into),
                container_statuses: Some(vec![ContainerStatus {
                    restart_count: restarts,
                    ..Default::default()
                }]),
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    #[test]
    fn a_bound_pod_makes_the_server_scheduled_with_its_address() {
        let next = next_status(
            &server(Creating),
            Some(&pod(Some("node-1"), Some("127.9.1.4"), "Running", 0)),
        );
        assert_eq!(next.state, Scheduled);
        assert_eq!(next.address.as_deref(), Some("127.9.1.4"));
        assert_eq!(next.node_name.as_deref(), Some("node-1"));
        assert_eq!(next.ports[0].port, 7777);
        assert_eq!(
            next.players.map(|p| p.capacity),
            Some(16),
            "capacity from the template"
        );
    }

    #[test]
    fn a_bound_pod_without_an_address_yet_leaves_the_server_creating() {
        let next = next_status(&server(Creating), Some(&pod(Some("node-1"), None, "Pending", 0)));
        assert_eq!(next.state, Creating);
        assert_eq!(next.node_name, None, "no write until the address is known too");
    }

    #[test]
    fn request_ready_becomes_ready_once_the_pod_has_an_address() {
        let waiting = next_status(&server(RequestReady), Some(&pod(Some("n"), None, "Pending", 0)));
        assert_eq!(waiting.state, RequestReady);
        let ready = next_status(
            &server(RequestReady),
            Some(&pod(Some("n"), Some("127.9.1.4"), "Running", 0)),
        );
        assert_eq!(ready.state, Ready);
    }

    #[test]
    fn a_failed_restarted_or_missing_pod_makes_the_server_unhealthy() {
        for (state, pod) in [
            (Ready, Some(pod(Some("n"), Some("ip"), "Failed", 0))),
            (Allocated, Some(pod(Some("n"), Some("ip"), "Running", 1))),
            (Scheduled, None),
        ] {
            let next = next_status(&server(state), pod.as_ref());
            assert_eq!(next.state, Unhealthy, "from {state}");
            assert!(next.message.is_some(), "says why");
        }
    }

    #[test]
    fn a_new_server_without_a_pod_stays_creating() {
        assert_eq!(next_status(&server(Creating), None).state, Creating);
    }

    #[test]
    fn a_stripped_pod_gives_the_same_status() {
        let mut full = pod(Some("node-1"), Some("127.9.1.4"), "Running", 0);
        full.metadata.annotations = Some([("a".to_owned(), "b".to_owned())].into());
        let mut stripped = full.clone();
        strip_pod(&mut stripped);
        assert!(stripped.metadata.annotations.is_none());
        assert_eq!(
            next_status(&server(RequestReady), Some(&stripped)),
            next_status(&server(RequestReady), Some(&full))
        );
    }

    #[test]
    fn an_allocated_server_stays_allocated_while_its_pod_runs() {
        let next = next_status(
            &server(Allocated),
            Some(&pod(Some("n"), Some("ip"), "Running", 0)),
        );
        assert_eq!(next.state, Allocated);
    }
}
