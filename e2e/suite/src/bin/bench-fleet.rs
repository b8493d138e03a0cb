//! Fleet start-up at scale: the time from creating a fleet of COUNT servers to all of them
//! Ready (each server's process calls SDK Ready with its own token), and the operator's peak
//! memory. The reference measured in the same run is the raw rate of the same cluster: COUNT
//! plain pods of the same binary, created directly, until all are Running.
//!
//!   FLOTILLA_KUBECONFIG=... bench-fleet [COUNT]

use std::time::{Duration, Instant};

use flotilla_api::{GameServerFleet, Health};
use flotilla_e2e::{Operator, TestNamespace, eventually, install_crds, manifest, phase};
use k8s_openapi::api::core::v1::Pod;
use kube::api::{ListParams, PostParams};

const LIMIT: Duration = Duration::from_secs(600);

#[tokio::main]
async fn main() -> flotilla_e2e::Result<()> {
    let count: usize = std::env::args()
        .nth(1)
        .and_then(|a| a.parse().ok())
        .unwrap_or(1000);

    // Reference: the cluster's raw pod start rate.
    let raw = TestNamespace::create("bench-raw").await?;
    let started = Instant::now();
    let pods = raw.api::<Pod>();
    for i in 0..count {
        let pod: Pod = serde_json::from_value(serde_json::json!({
            "metadata": {"name": format!("raw-{i}"), "labels": {"bench": "raw"}},
            "spec": {"terminationGracePeriodSeconds": 1, "containers": [{
                "name": "app", "image": "flotilla/testpod", "args": ["--port", "0"],
            }]},
        }))
        .expect("valid pod");
        pods.create(&PostParams::default(), &pod).await?;
    }
    let created = started.elapsed();
    eventually(LIMIT, "all raw pods running", || async {
        let list = pods.list(&ListParams::default().labels("bench=raw")).await?;
        Ok((list.items.iter().filter(|p| phase(p) == "Running").count() == count).then_some(()))
    })
    .await?;
    let raw_time = started.elapsed();
    println!(
        "raw pods: {count} created in {:.1}s, all Running after {:.1}s",
        created.as_secs_f64(),
        raw_time.as_secs_f64()
    );
    raw.delete().await?;
    eventually(LIMIT, "raw pods to be gone", || async {
        Ok(pods
            .list(&ListParams::default().labels("bench=raw"))
            .await?
            .items
            .is_empty()
            .then_some(()))
    })
    .await?;

    // The fleet: servers that call Ready and send heartbeats, health checking on.
    let ns = TestNamespace::create("bench-fleet").await?;
    install_crds(&ns.client).await?;
    let operator = Operator::start(&ns.name)?;
    let mut fleet: GameServerFleet = manifest("manifests/examples/fleet.yaml")?;
    fleet.spec.replicas = i32::try_from(count).unwrap_or(i32::MAX);
    fleet.spec.template.spec.health = Health {
        disabled: false,
        initial_delay_seconds: 30,
        period_seconds: 5,
        failure_threshold: 3,
    };
    if let Some(pod) = fleet.spec.template.spec.template.spec.as_mut() {
        pod.containers[0].image = Some("flotilla/testpod".into());
        pod.containers[0].args = Some(vec!["--port".into(), "7777".into(), "--sdk-ready".into()]);
        pod.termination_grace_period_seconds = Some(1);
    }
    let fleets = ns.api::<GameServerFleet>();
    tokio::time::sleep(Duration::from_secs(1)).await;
    let started = Instant::now();
    fleets.create(&PostParams::default(), &fleet).await?;
    let mut peak_kib = 0;
    eventually(LIMIT, "all fleet servers Ready", || async {
        let status = fleets.get("arena").await?.status.unwrap_or_default();
        Ok((status.ready_replicas as usize == count).then_some(()))
    })
    .await?;
    let fleet_time = started.elapsed();
    if let Some(pid) = operator.pid() {
        peak_kib = std::fs::read_to_string(format!("/proc/{pid}/status"))
            .ok()
            .and_then(|s| {
                s.lines()
                    .find(|l| l.starts_with("VmHWM:"))
                    .and_then(|l| l.split_whitespace().nth(1).and_then(|v| v.parse::<u64>().ok()))
            })
            .unwrap_or(0);
    }
    println!(
        "fleet: {count} servers Ready after {:.1}s",
        fleet_time.as_secs_f64()
    );
    println!(
        "ratio fleet/raw: {:.2}",
        fleet_time.as_secs_f64() / raw_time.as_secs_f64()
    );
    println!(
        "operator peak memory (VmHWM): {:.1} MiB",
        peak_kib as f64 / 1024.0
    );
    // Where the operator's share of the API server's work went, by verb and resource.
    let metrics = reqwest::get(format!("{}/metrics", operator.metrics_url))
        .await?
        .text()
        .await?;
    for line in metrics.lines() {
        if let Some(request) = line.strip_prefix("flotilla_kube_api_requests_total") {
            println!("operator API requests {request}");
        }
    }
    ns.delete().await
}
