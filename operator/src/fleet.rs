//! The fleet controller: keeps `replicas` game servers of the fleet's template, replaces failed
//! ones, removes surplus ones in the order [`scale_down::victims`] gives, and reports counts.
//!
//! When the template changes, servers are replaced as the fleet's strategy says (see
//! [`rollout`]). Allocated servers count towards `replicas` but are never deleted here. Deletion carries the
//! server's resourceVersion as a precondition, so a server allocated between our read and our
//! delete makes the delete fail instead of losing a match.

use std::{collections::BTreeMap, sync::Arc, time::Duration};

use flotilla_api::{
    GameServer, GameServerFleet, GameServerFleetStatus, GameServerSpec, GameServerState, labels,
};
use futures::{StreamExt, TryStreamExt, stream};
use kube::{
    Api, Resource, ResourceExt,
    api::{DeleteParams, ListParams, Patch, PatchParams, PostParams, Preconditions},
    runtime::controller::Action,
};
use tracing::{info, instrument, warn};

use crate::{
    context::Context,
    error::{Error, Result},
    metrics::FleetStateLabels,
    rollout,
    scale_down::{self, Candidate},
};

/// How many creates or deletes one reconcile has in flight at once.
const PARALLEL_WRITES: usize = 16;

#[instrument(skip_all, fields(namespace = %fleet.namespace().unwrap_or_default(), name = %fleet.name_any()))]
pub async fn reconcile(fleet: Arc<GameServerFleet>, ctx: Arc<Context>) -> Result<Action> {
    let started = std::time::Instant::now();
    let result = reconcile_fleet(&fleet, &ctx).await;
    ctx.metrics.observe_reconcile("fleet", started.elapsed());
    result
}

async fn reconcile_fleet(fleet: &GameServerFleet, ctx: &Context) -> Result<Action> {
    if fleet.metadata.deletion_timestamp.is_some() {
        return Ok(Action::await_change());
    }
    let namespace = fleet.namespace().unwrap_or_default();
    let name = fleet.name_any();
    let servers: Api<GameServer> = Api::namespaced(ctx.client.clone(), &namespace);
    let selector = format!("{}={name}", labels::FLEET);
    let owned: Vec<GameServer> = servers
        .list(&ListParams::default().labels(&selector))
        .await?
        .items
        .into_iter()
        .filter(|gs| gs.metadata.deletion_timestamp.is_none())
        .collect();

    // Failed servers are replaced: delete them, and do not count them.
    let (failed, live): (Vec<&GameServer>, Vec<&GameServer>) = owned
        .iter()
        .partition(|gs| state_of(gs).is_failed() || state_of(gs) == GameServerState::Shutdown);
    for server in &failed {
        if state_of(server).is_failed() {
            info!(server = %server.name_any(), state = %state_of(server), "replacing failed game server");
            delete_unchanged(&servers, server).await?;
        }
    }

    let desired = usize::try_from(fleet.spec.replicas).unwrap_or(0);
    let hash = template_hash(fleet)?;
    let is_current = |gs: &GameServer| gs.labels().get(labels::TEMPLATE_HASH) == Some(&hash);
    let (current, old): (Vec<&GameServer>, Vec<&GameServer>) = live.iter().partition(|gs| is_current(gs));

    // Without old servers this is plain scaling; with them, a rollout step (module rollout).
    let (create, remove) = if old.is_empty() {
        let create = desired.saturating_sub(live.len());
        let remove = choose(&live, live.len().saturating_sub(desired), fleet);
        (create, remove)
    } else {
        let view: Vec<rollout::Server> = live
            .iter()
            .map(|gs| rollout::Server {
                state: state_of(gs),
                current: is_current(gs),
            })
            .collect();
        let rolling = fleet.spec.strategy.rolling_update.clone().unwrap_or_default();
        let plan = rollout::step(&view, desired, fleet.spec.strategy.type_, &rolling);
        let old_starting: Vec<&GameServer> = old
            .iter()
            .copied()
            .filter(|gs| state_of(gs).is_starting())
            .collect();
        let old_ready: Vec<&GameServer> = old
            .iter()
            .copied()
            .filter(|gs| state_of(gs) == GameServerState::Ready)
            .collect();
        let mut remove = choose(&old_starting, plan.remove_old_starting, fleet);
        remove.extend(choose(&old_ready, plan.remove_old_ready, fleet));
        // Fewer replicas wanted mid-rollout: trim the new servers too.
        let protected_old = old.iter().filter(|gs| state_of(gs).is_protected()).count();
        let wanted_new = desired.saturating_sub(protected_old);
        remove.extend(choose(&current, current.len().saturating_sub(wanted_new), fleet));
        info!(
            old = old.len(),
            new = current.len(),
            create = plan.create,
            remove = remove.len(),
            "rolling out a new template"
        );
        (plan.create, remove)
    };
    // Creates and deletes go out a few at a time rather than one after another: a fleet of a
    // thousand is otherwise bound by round-trip time, not by the API server.
    let template = new_server(fleet, &hash);
    let post = PostParams::default();
    stream::iter((0..create).map(|_| servers.create(&post, &template)))
        .buffer_unordered(PARALLEL_WRITES)
        .try_collect::<Vec<_>>()
        .await?;
    let doomed: Vec<GameServer> = remove
        .iter()
        .filter_map(|victim| {
            live.iter()
                .find(|gs| gs.name_any() == *victim)
                .map(|gs| (*gs).clone())
        })
        .collect();
    stream::iter(doomed)
        .map(|server| {
            let servers = servers.clone();
            async move { delete_unchanged(&servers, &server).await }
        })
        .buffer_unordered(PARALLEL_WRITES)
        .try_collect::<Vec<_>>()
        .await?;
    if create > 0 || !remove.is_empty() {
        info!(created = create, removed = remove.len(), "fleet changed");
        let note = format!(
            "created {create} and removed {} game servers (want {desired})",
            remove.len()
        );
        ctx.event(
            fleet,
            false,
            if old.is_empty() { "Scaled" } else { "RollingUpdate" },
            note,
        )
        .await;
    }
    for state in GameServerState::ALL {
        let count = live.iter().filter(|gs| state_of(gs) == state).count();
        ctx.metrics
            .game_servers
            .get_or_create(&FleetStateLabels {
                namespace: namespace.clone(),
                fleet: name.clone(),
                state: state.as_str().into(),
            })
            .set(i64::try_from(count).unwrap_or(i64::MAX));
    }

    let status = fleet_status(fleet, &live, &selector);
    if fleet.status.as_ref() != Some(&status) {
        let fleets: Api<GameServerFleet> = Api::namespaced(ctx.client.clone(), &namespace);
        fleets
            .patch_status(
                &name,
                &PatchParams::default(),
                &Patch::Merge(serde_json::json!({ "status": status })),
            )
            .await?;
    }
    Ok(Action::requeue(Duration::from_secs(60)))
}

pub fn error_policy(_fleet: Arc<GameServerFleet>, error: &Error, ctx: Arc<Context>) -> Action {
    warn!(kind = error.kind(), %error, "fleet reconcile failed");
    ctx.metrics.count_error("fleet", error.kind());
    Action::requeue(Duration::from_secs(2))
}

/// Up to `count` of `servers` to remove, in scale-down order (never allocated ones).
fn choose(servers: &[&GameServer], count: usize, fleet: &GameServerFleet) -> Vec<String> {
    if count == 0 {
        return Vec::new();
    }
    let candidates: Vec<Candidate> = servers
        .iter()
        .map(|gs| Candidate {
            name: gs.name_any(),
            state: state_of(gs),
            node: gs.status.as_ref().and_then(|s| s.node_name.clone()),
        })
        .collect();
    scale_down::victims(&candidates, count, fleet.spec.scheduling)
}

fn state_of(server: &GameServer) -> GameServerState {
    server.status.as_ref().map(|s| s.state).unwrap_or_default()
}

/// Deletes `server` only if it has not changed since we read it (it may just have been
/// allocated). A conflict or a server already gone is not an error: the next reconcile
/// sees the new state.
async fn delete_unchanged(servers: &Api<GameServer>, server: &GameServer) -> Result<()> {
    let params = DeleteParams {
        preconditions: Some(Preconditions {
            resource_version: server.resource_version(),
            uid: server.uid(),
        }),
        ..DeleteParams::background()
    };
    match servers.delete(&server.name_any(), &params).await {
        Ok(_) => Ok(()),
        Err(kube::Error::Api(e)) if e.code == 404 || e.code == 409 => Ok(()),
        Err(e) => Err(e.into()),
    }
}

/// A new GameServer from the fleet's template, owned by the fleet.
pub fn new_server(fleet: &GameServerFleet, template_hash: &str) -> GameServer {
    let template = &fleet.spec.template;
    let metadata = template.metadata.clone().unwrap_or_default();
    let mut server_labels = metadata.labels;
    server_labels.insert(labels::FLEET.into(), fleet.name_any());
    server_labels.insert(labels::TEMPLATE_HASH.into(), template_hash.into());
    let spec = GameServerSpec {
        scheduling: fleet.spec.scheduling,
        ..template.spec.clone()
    };
    let mut server = GameServer::new("", spec);
    server.metadata.name = None;
    server.metadata.generate_name = Some(format!("{}-", fleet.name_any()));
    server.metadata.namespace = fleet.namespace();
    server.metadata.labels = Some(server_labels);
    server.metadata.annotations = (!metadata.annotations.is_empty()).then_some(metadata.annotations);
    server.metadata.owner_references = fleet.controller_owner_ref(&()).map(|r| vec![r]);
    server
}

/// A stable hash of the fleet's template (FNV-1a over its JSON, whose maps are ordered), so
/// servers made from an older template can be told apart across operator restarts.
pub fn template_hash(fleet: &GameServerFleet) -> Result<String> {
    let json = serde_json::to_vec(&fleet.spec.template).map_err(|source| Error::Serialize {
        what: "fleet template",
        source,
    })?;
    let hash = json.iter().fold(0xcbf2_9ce4_8422_2325_u64, |h, b| {
        (h ^ u64::from(*b)).wrapping_mul(0x0100_0000_01b3)
    });
    Ok(format!("{hash:016x}"))
}

fn fleet_status(fleet: &GameServerFleet, live: &[&GameServer], selector: &str) -> GameServerFleetStatus {
    let mut counts: BTreeMap<GameServerState, i32> = BTreeMap::new();
    let (mut players, mut capacity) = (0, 0);
    for server in live {
        *counts.entry(state_of(server)).or_default() += 1;
        if let Some(p) = server.status.as_ref().and_then(|s| s.players.as_ref()) {
            players += p.count;
            capacity += p.capacity;
        } else if let Some(p) = server.spec.players {
            capacity += p.capacity;
        }
    }
    let count = |state| counts.get(&state).copied().unwrap_or(0);
    GameServerFleetStatus {
        replicas: i32::try_from(live.len()).unwrap_or(i32::MAX),
        ready_replicas: count(GameServerState::Ready),
        reserved_replicas: count(GameServerState::Reserved),
        allocated_replicas: count(GameServerState::Allocated),
        players,
        player_capacity: capacity,
        observed_generation: fleet.metadata.generation,
        label_selector: Some(selector.to_owned()),
        conditions: fleet
            .status
            .as_ref()
            .map(|s| s.conditions.clone())
            .unwrap_or_default(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fleet() -> GameServerFleet {
        let mut fleet: GameServerFleet = serde_json::from_value(serde_json::json!({
            "apiVersion": "flotilla.dev/v1alpha1",
            "kind": "GameServerFleet",
            "metadata": {"name": "arena", "namespace": "games", "uid": "fleet-uid"},
            "spec": {
                "replicas": 2,
                "scheduling": "Distributed",
                "template": {
                    "metadata": {"labels": {"game": "arena"}},
                    "spec": {
                        "ports": [{"name": "game", "containerPort": 7777}],
                        "template": {"spec": {"containers": [{"name": "gs", "image": "flotilla/gameserver"}]}},
                    },
                },
            },
        }))
        .expect("fleet");
        fleet.metadata.generation = Some(4);
        fleet
    }

    #[test]
    fn new_servers_carry_fleet_labels_owner_and_scheduling() {
        let fleet = fleet();
        let server = new_server(&fleet, "abc");
        let labels = server.metadata.labels.clone().expect("labels");
        assert_eq!(labels.get(labels::FLEET).map(String::as_str), Some("arena"));
        assert_eq!(labels.get(labels::TEMPLATE_HASH).map(String::as_str), Some("abc"));
        assert_eq!(labels.get("game").map(String::as_str), Some("arena"));
        assert_eq!(server.metadata.generate_name.as_deref(), Some("arena-"));
        assert_eq!(
            server.metadata.owner_references.expect("owner")[0].uid,
            "fleet-uid"
        );
        assert_eq!(server.spec.scheduling, flotilla_api::Scheduling::Distributed);
    }

    #[test]
    fn template_hash_changes_with_the_template_only() {
        let a = fleet();
        let mut scaled = fleet();
        scaled.spec.replicas = 50;
        let mut changed = fleet();
        changed.spec.template.spec.ports[0].container_port = 7778;
        let hash = |f: &GameServerFleet| template_hash(f).expect("hash");
        assert_eq!(hash(&a), hash(&scaled));
        assert_ne!(hash(&a), hash(&changed));
    }

    #[test]
    fn status_counts_servers_by_state() {
        let fleet = fleet();
        let servers: Vec<GameServer> = [
            GameServerState::Ready,
            GameServerState::Allocated,
            GameServerState::Ready,
        ]
        .into_iter()
        .map(|state| {
            let mut gs = new_server(&fleet, "h");
            gs.status = Some(flotilla_api::GameServerStatus {
                state,
                ..Default::default()
            });
            gs
        })
        .collect();
        let refs: Vec<&GameServer> = servers.iter().collect();
        let status = fleet_status(&fleet, &refs, "flotilla.dev/fleet=arena");
        assert_eq!(
            (status.replicas, status.ready_replicas, status.allocated_replicas),
            (3, 2, 1)
        );
        assert_eq!(status.observed_generation, Some(4));
        assert_eq!(status.label_selector.as_deref(), Some("flotilla.dev/fleet=arena"));
    }
}
