//! Pod start latency on the local cluster: the time from a pod's create request to the moment
//! a watch sees it `Running`, for pods created one at a time and in a burst. The floor it is
//! compared with is measured in the same run: starting the same binary directly as a process
//! until it accepts connections.
//!
//!   FLOTILLA_KUBECONFIG=... bench-pod-start [COUNT] [TESTPOD_BINARY]

use std::{
    collections::BTreeMap,
    time::{Duration, Instant},
};

use flotilla_e2e::{TestNamespace, phase};
use futures::StreamExt;
use k8s_openapi::api::core::v1::Pod;
use kube::{Api, ResourceExt, api::PostParams, runtime::watcher};
use tokio::sync::mpsc;

#[tokio::main]
async fn main() -> flotilla_e2e::Result<()> {
    let mut args = std::env::args().skip(1);
    let count: usize = args.next().and_then(|a| a.parse().ok()).unwrap_or(20);
    let binary = args.next();

    if let Some(binary) = binary {
        let floor = direct_start(&binary, count).await;
        report("direct process start (spawn -> accepting)", &floor);
    }

    let ns = TestNamespace::create("bench").await?;
    let pods: Api<Pod> = ns.api();
    let (tx, mut running) = mpsc::unbounded_channel::<(String, Instant)>();
    let watch_pods = pods.clone();
    tokio::spawn(async move {
        let mut seen = std::collections::BTreeSet::new();
        let mut events = watcher(watch_pods, watcher::Config::default()).boxed();
        while let Some(Ok(event)) = events.next().await {
            if let watcher::Event::Apply(pod) | watcher::Event::InitApply(pod) = event
                && phase(&pod) == "Running"
                && seen.insert(pod.name_any())
            {
                let _ = tx.send((pod.name_any(), Instant::now()));
            }
        }
    });
    tokio::time::sleep(Duration::from_millis(500)).await;

    // One at a time: the latency a single scale-up sees.
    let mut sequential = Vec::new();
    for i in 0..count {
        let name = format!("seq-{i}");
        let created = Instant::now();
        pods.create(&PostParams::default(), &pod(&name)).await?;
        let (seen, at) = running.recv().await.expect("watch runs");
        assert_eq!(seen, name);
        sequential.push(at - created);
    }
    report("pod create -> Running, one at a time", &sequential);

    // A burst: `count` pods created back to back, as a fleet scale-up does.
    let mut created = BTreeMap::new();
    for i in 0..count {
        let name = format!("burst-{i}");
        created.insert(name.clone(), Instant::now());
        pods.create(&PostParams::default(), &pod(&name)).await?;
    }
    let mut burst = Vec::new();
    while burst.len() < count {
        let (name, at) = running.recv().await.expect("watch runs");
        if let Some(start) = created.get(&name) {
            burst.push(at - *start);
        }
    }
    report(&format!("pod create -> Running, burst of {count}"), &burst);
    ns.delete().await
}

fn pod(name: &str) -> Pod {
    serde_json::from_value(serde_json::json!({
        "metadata": {"name": name},
        "spec": {"terminationGracePeriodSeconds": 1, "containers": [{
            "name": "app",
            "image": "flotilla/testpod",
            "args": ["--port", "0"],
        }]},
    }))
    .expect("valid pod")
}

/// Starts the binary `count` times and measures until it accepts TCP connections.
async fn direct_start(binary: &str, count: usize) -> Vec<Duration> {
    let mut samples = Vec::new();
    for i in 0..count {
        let port = 20000 + (std::process::id() as usize % 20000) + i;
        let started = Instant::now();
        let mut child = tokio::process::Command::new(binary)
            .args(["--port", &port.to_string()])
            .stdout(std::process::Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .expect("testpod binary starts");
        while tokio::net::TcpStream::connect(("127.0.0.1", port as u16))
            .await
            .is_err()
        {
            tokio::time::sleep(Duration::from_micros(200)).await;
        }
        samples.push(started.elapsed());
        let _ = child.kill().await;
    }
    samples
}

fn report(what: &str, samples: &[Duration]) {
    let mut sorted = samples.to_vec();
    sorted.sort();
    let at = |q: f64| sorted[((sorted.len() - 1) as f64 * q).round() as usize];
    println!(
        "{what}: n={} p50={:.0}ms p95={:.0}ms max={:.0}ms",
        sorted.len(),
        at(0.5).as_secs_f64() * 1000.0,
        at(0.95).as_secs_f64() * 1000.0,
        at(1.0).as_secs_f64() * 1000.0,
    );
}
