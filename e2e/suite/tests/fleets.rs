//! The operator on the local cluster: fleets become game servers with pods, addresses and
//! nodes; scaling up and down works and never removes an allocated server; a server whose
//! process dies is replaced. Each test runs its own operator, watching only its namespace, and
//! the fleets run the reference game server, which reports Ready itself through the SDK.

use std::{collections::BTreeSet, time::Duration};

use flotilla_api::{GameServer, GameServerState, labels};
use flotilla_e2e::{FleetFixture, Workload, eventually, process_alive};
use k8s_openapi::api::core::v1::Pod;
use kube::{
    Api, ResourceExt,
    api::{Patch, PatchParams},
};
use serde_json::json;

type TestResult = flotilla_e2e::Result<()>;

const WAIT: Duration = Duration::from_secs(60);

/// The fleet fixture with helpers to play the allocator and to scale.
struct FleetTest(FleetFixture);

impl std::ops::Deref for FleetTest {
    type Target = FleetFixture;
    fn deref(&self) -> &FleetFixture {
        &self.0
    }
}

impl FleetTest {
    async fn start(prefix: &str, replicas: i32) -> flotilla_e2e::Result<Self> {
        let health = FleetFixture::no_health();
        Ok(FleetTest(
            FleetFixture::start_with(prefix, replicas, health, Workload::GameServer(vec![])).await?,
        ))
    }

    /// Servers that never report Ready, for tests that decide readiness themselves.
    async fn start_passive(prefix: &str, replicas: i32) -> flotilla_e2e::Result<Self> {
        Ok(FleetTest(
            FleetFixture::start(prefix, replicas, FleetFixture::no_health()).await?,
        ))
    }

    /// Waits for `count` live servers, all Ready.
    async fn all_ready(&self, count: usize) -> flotilla_e2e::Result<Vec<GameServer>> {
        eventually(WAIT, &format!("{count} Ready servers"), || async {
            let live = self.live_servers().await?;
            let ready = live
                .iter()
                .all(|s| s.status.as_ref().map(|st| st.state) == Some(GameServerState::Ready));
            Ok((live.len() == count && ready).then_some(live))
        })
        .await
    }

    /// Sets a server's state the way the allocator will (the allocation API comes later).
    async fn set_state(&self, name: &str, state: GameServerState) -> flotilla_e2e::Result<()> {
        let patch = json!({"status": {"state": state}});
        self.servers
            .patch_status(name, &PatchParams::default(), &Patch::Merge(patch))
            .await?;
        Ok(())
    }

    async fn scale(&self, replicas: i32) -> flotilla_e2e::Result<()> {
        let patch = json!({"spec": {"replicas": replicas}});
        self.fleets
            .patch_scale("arena", &PatchParams::default(), &Patch::Merge(patch))
            .await?;
        Ok(())
    }
}

fn names(servers: &[GameServer]) -> BTreeSet<String> {
    servers.iter().map(ResourceExt::name_any).collect()
}

#[tokio::test]
async fn fleet_servers_get_pods_addresses_and_nodes_and_the_fleet_counts_them() -> TestResult {
    let test = FleetTest::start("fleet-basic", 3).await?;
    let servers = test.all_ready(3).await?;
    let pods: Api<Pod> = test.ns.api();
    for server in &servers {
        let pod = pods.get(&server.name_any()).await?;
        let status = server.status.as_ref().expect("status");
        assert_eq!(
            pod.status.and_then(|s| s.pod_ip),
            status.address,
            "the address is the pod's"
        );
        assert_eq!(
            pod.metadata.owner_references.expect("owned")[0].name,
            server.name_any()
        );
        assert_eq!(status.ports[0].port, 7777);
    }
    eventually(WAIT, "fleet status to count 3 servers", || async {
        let fleet = test.fleets.get("arena").await?;
        Ok(fleet
            .status
            .filter(|s| s.replicas == 3 && s.ready_replicas == 3)
            .map(|_| ()))
    })
    .await?;

    // Operators see it too: metrics per fleet and state, and Events on the servers.
    let expected = format!(
        r#"flotilla_game_servers{{namespace="{}",fleet="arena",state="Ready"}} 3"#,
        test.ns.name
    );
    eventually(WAIT, "the game-server gauge", || async {
        let text = reqwest::get(format!("{}/metrics", test.operator.metrics_url))
            .await?
            .text()
            .await?;
        Ok(text.contains(&expected).then_some(()))
    })
    .await?;
    // What that cost the API server, by verb and resource: three servers and three pods
    // created, and no write per heartbeat.
    let text = reqwest::get(format!("{}/metrics", test.operator.metrics_url))
        .await?
        .text()
        .await?;
    let requests = |verb: &str, resource: &str| -> f64 {
        let prefix = format!(r#"flotilla_kube_api_requests_total{{verb="{verb}",resource="{resource}"}} "#);
        text.lines()
            .find_map(|l| l.strip_prefix(&prefix))
            .and_then(|v| v.parse().ok())
            .unwrap_or(0.0)
    };
    assert!(requests("create", "gameservers") >= 3.0, "{text}");
    assert!(requests("create", "pods") >= 3.0, "{text}");
    assert!(requests("watch", "gameservers") >= 1.0, "{text}");
    let events: Api<k8s_openapi::api::events::v1::Event> = test.ns.api();
    let reasons: Vec<String> = events
        .list(&Default::default())
        .await?
        .items
        .into_iter()
        .filter(|e| e.regarding.as_ref().and_then(|r| r.kind.as_deref()) == Some("GameServer"))
        .filter_map(|e| e.reason)
        .collect();
    assert!(
        ["Scheduled", "Ready"]
            .iter()
            .all(|state| reasons.iter().any(|r| r == state)),
        "Events say what happened: {reasons:?}"
    );
    test.ns.delete().await
}

#[tokio::test]
async fn allocated_servers_survive_scale_to_zero() -> TestResult {
    let test = FleetTest::start("fleet-alloc", 4).await?;
    // Allocate only once the servers have reported Ready themselves.
    let servers = test.all_ready(4).await?;
    let allocated: BTreeSet<String> = names(&servers).into_iter().take(2).collect();
    for name in &allocated {
        test.set_state(name, GameServerState::Allocated).await?;
    }
    test.scale(0).await?;
    let left = eventually(WAIT, "only the allocated servers to remain", || async {
        let live = test.live_servers().await?;
        Ok((live.len() == 2).then_some(live))
    })
    .await?;
    assert_eq!(names(&left), allocated, "exactly the allocated servers survive");
    let status = eventually(WAIT, "fleet status after scale-down", || async {
        let status = test.fleets.get("arena").await?.status;
        Ok(status.filter(|s| s.replicas == 2 && s.allocated_replicas == 2))
    })
    .await?;
    assert_eq!(status.ready_replicas, 0);
    test.ns.delete().await
}

#[tokio::test]
async fn scale_down_removes_servers_that_are_not_ready_before_ready_ones() -> TestResult {
    let test = FleetTest::start_passive("fleet-order", 3).await?;
    let servers = test.scheduled(3).await?;
    let ready = servers[1].name_any();
    test.set_state(&ready, GameServerState::RequestReady).await?;
    eventually(WAIT, "the server to be confirmed Ready", || async {
        let server = test.servers.get(&ready).await?;
        Ok((server.status.map(|s| s.state) == Some(GameServerState::Ready)).then_some(()))
    })
    .await?;
    test.scale(1).await?;
    let left = test.scheduled(1).await?;
    assert_eq!(left[0].name_any(), ready, "the Ready server is the one kept");
    test.ns.delete().await
}

#[tokio::test]
async fn a_server_whose_process_dies_turns_unhealthy_and_is_replaced() -> TestResult {
    let test = FleetTest::start("fleet-heal", 1).await?;
    let original = test.scheduled(1).await?.remove(0);
    let pods: Api<Pod> = test.ns.api();
    let pid: u32 = eventually(WAIT, "the game server process", || async {
        let pod = pods.get(&original.name_any()).await?;
        Ok(pod
            .status
            .and_then(|s| s.container_statuses)
            .and_then(|c| c[0].container_id.clone())
            .and_then(|id| id.strip_prefix("process://").and_then(|p| p.parse().ok())))
    })
    .await?;
    assert!(process_alive(pid));
    std::process::Command::new("kill")
        .args(["-KILL", &pid.to_string()])
        .status()
        .map_err(|e| flotilla_e2e::Error::Manifest("kill".into(), e.to_string()))?;

    let replacement = eventually(WAIT, "a replacement server", || async {
        let servers = test.scheduled(1).await?;
        Ok(servers.into_iter().find(|s| s.name_any() != original.name_any()))
    })
    .await?;
    assert_ne!(replacement.name_any(), original.name_any());
    assert!(
        test.servers
            .get_opt(&original.name_any())
            .await?
            .is_none_or(|s| s.metadata.deletion_timestamp.is_some()),
        "the unhealthy server is deleted"
    );
    test.ns.delete().await
}

#[tokio::test]
async fn a_template_change_rolls_within_its_bounds_and_keeps_allocated_servers() -> TestResult {
    let test = FleetTest::start("fleet-roll", 4).await?;
    let available = |s: &GameServer| {
        matches!(
            s.status.as_ref().map(|st| st.state),
            Some(GameServerState::Ready | GameServerState::Allocated | GameServerState::Reserved)
        )
    };
    let servers = eventually(WAIT, "4 ready servers", || async {
        let live = test.live_servers().await?;
        Ok((live.len() == 4 && live.iter().all(available)).then_some(live))
    })
    .await?;
    let allocated = servers[0].name_any();
    test.set_state(&allocated, GameServerState::Allocated).await?;

    // maxSurge 1, maxUnavailable 1: at most 5 servers, at least 3 available, at every moment.
    let patch = json!({"spec": {
        "strategy": {"type": "RollingUpdate", "rollingUpdate": {"maxSurge": 1, "maxUnavailable": 1}},
        "template": {"metadata": {"labels": {"game": "arena", "version": "2"}}},
    }});
    test.fleets
        .patch("arena", &PatchParams::default(), &Patch::Merge(patch))
        .await?;
    let new_hash = eventually(WAIT, "a server of the new template", || async {
        let live = test.live_servers().await?;
        Ok(live
            .iter()
            .find(|s| s.labels().get("version").map(String::as_str) == Some("2"))
            .and_then(|s| s.labels().get(labels::TEMPLATE_HASH).cloned()))
    })
    .await?;
    let deadline = std::time::Instant::now() + WAIT;
    let (mut most, mut fewest_available, mut samples) = (0, usize::MAX, 0);
    loop {
        let live = test.live_servers().await?;
        let up = live.iter().filter(|s| available(s)).count();
        most = most.max(live.len());
        fewest_available = fewest_available.min(up);
        samples += 1;
        let new_ready = live
            .iter()
            .filter(|s| s.labels().get(labels::TEMPLATE_HASH) == Some(&new_hash) && available(s))
            .count();
        let others: Vec<String> = live
            .iter()
            .filter(|s| s.labels().get(labels::TEMPLATE_HASH) != Some(&new_hash))
            .map(ResourceExt::name_any)
            .collect();
        if new_ready == 3 && others == vec![allocated.clone()] {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "rollout did not finish: {live:#?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(
        most <= 5,
        "never more than replicas + maxSurge servers (saw {most})"
    );
    assert!(
        fewest_available >= 3,
        "never fewer than replicas - maxUnavailable available (saw {fewest_available})"
    );
    assert!(
        samples > 3,
        "the rollout was observed while it ran ({samples} samples)"
    );
    test.ns.delete().await
}

#[tokio::test]
async fn when_the_leader_dies_the_standby_takes_over_without_duplicating_servers() -> TestResult {
    let test = FleetTest::start("fleet-leader", 2).await?;
    let standby = flotilla_e2e::Operator::start(&test.ns.name)?;
    test.scheduled(2).await?;

    let leases: Api<k8s_openapi::api::coordination::v1::Lease> = test.ns.api();
    let holder = || async {
        let lease = leases.get_opt("flotilla-operator").await?;
        Ok::<_, flotilla_e2e::Error>(lease.and_then(|l| l.spec).and_then(|s| s.holder_identity))
    };
    let first = holder().await?.expect("a leader holds the lease");
    let first_pid = test.operator.pid().expect("pid").to_string();
    let standby_pid = standby.pid().expect("pid").to_string();
    let leader_pid = if first.ends_with(&format!("-{first_pid}")) {
        first_pid
    } else {
        standby_pid.clone()
    };
    std::process::Command::new("kill")
        .args(["-KILL", &leader_pid])
        .status()
        .map_err(|e| flotilla_e2e::Error::Manifest("kill".into(), e.to_string()))?;

    test.scale(4).await?;
    let started = std::time::Instant::now();
    test.scheduled(4).await?;
    let new_leader = holder().await?.expect("a leader holds the lease");
    assert_ne!(new_leader, first, "the standby took the lease");
    assert!(
        started.elapsed() < Duration::from_secs(30),
        "failover within the lease time and a reconcile"
    );
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(
        test.live_servers().await?.len(),
        4,
        "no duplicate servers after the failover"
    );
    drop(standby);
    test.ns.delete().await
}
