//! One registered node: the Node object with its capacity, addresses and Ready condition, the
//! Lease heartbeat in `kube-node-lease` that the node-lifecycle controller watches, and the
//! watch of pods bound to the node, which starts and stops one [`pod`] task per pod.
//! Each node talks to the API with its own credentials (`system:node:<name>`), so the Node
//! authorizer and the NodeRestriction admission plugin hold it to what a kubelet may do.

use std::{
    collections::{BTreeMap, BTreeSet},
    sync::Arc,
    time::Duration,
};

use futures::StreamExt;
use k8s_openapi::{
    api::{
        coordination::v1::{Lease, LeaseSpec},
        core::v1::{Node, NodeAddress, NodeCondition, NodeDaemonEndpoints, NodeStatus, NodeSystemInfo, Pod},
    },
    apimachinery::pkg::{
        api::resource::Quantity,
        apis::meta::v1::{MicroTime, ObjectMeta, OwnerReference, Time},
    },
};
use kube::{
    Api, ResourceExt,
    api::{Patch, PatchParams, PostParams},
    runtime::watcher,
};
use tokio::{sync::watch, task::JoinHandle};
use tracing::{Instrument, info, info_span, warn};

use crate::{
    error::Result,
    pod::{self, NodeContext, Stop},
};

const FIELD_MANAGER: &str = "flotilla-podrunner";
const LEASE_SECONDS: i32 = 40;
const LEASE_RENEW: Duration = Duration::from_secs(10);
const STATUS_REFRESH: Duration = Duration::from_secs(60);

/// What a node reports about itself.
#[derive(Debug, Clone)]
pub struct NodeSpecifics {
    pub cpu: String,
    pub memory: String,
    pub max_pods: u32,
    pub kubelet_version: String,
}

/// A pod task and the switch that stops it.
#[derive(Debug)]
struct PodHandle {
    stop: watch::Sender<Option<Stop>>,
    task: JoinHandle<()>,
}

#[derive(Debug)]
pub struct RunningNode {
    pub name: String,
    pods: BTreeMap<String, PodHandle>,
}

/// Registers the node and keeps it alive; returns once the node is registered, with the task
/// that watches its pods.
pub async fn start(
    ctx: Arc<NodeContext>,
    specifics: NodeSpecifics,
    shutdown: watch::Receiver<bool>,
) -> Result<JoinHandle<()>> {
    let node = register(&ctx, &specifics).await?;
    let span = info_span!("node", name = %ctx.node_name);
    tokio::spawn(heartbeat(ctx.clone(), node.uid().unwrap_or_default(), specifics).instrument(span.clone()));
    Ok(tokio::spawn(watch_pods(ctx, shutdown).instrument(span)))
}

async fn register(ctx: &NodeContext, specifics: &NodeSpecifics) -> Result<Node> {
    let nodes: Api<Node> = Api::all(ctx.client.clone());
    let node = Node {
        metadata: ObjectMeta {
            name: Some(ctx.node_name.clone()),
            labels: Some(
                [
                    ("kubernetes.io/hostname", ctx.node_name.as_str()),
                    ("kubernetes.io/os", "linux"),
                    ("kubernetes.io/arch", std::env::consts::ARCH),
                    ("flotilla.dev/pod-runner", "true"),
                ]
                .into_iter()
                .map(|(k, v)| (k.to_owned(), v.to_owned()))
                .collect(),
            ),
            ..Default::default()
        },
        ..Default::default()
    };
    let registered = match nodes.create(&PostParams::default(), &node).await {
        Ok(created) => created,
        Err(kube::Error::Api(e)) if e.code == 409 => nodes.get(&ctx.node_name).await?,
        Err(e) => return Err(e.into()),
    };
    patch_node_status(ctx, specifics).await?;
    info!(node = %ctx.node_name, address = %ctx.host_ip, "node registered");
    Ok(registered)
}

async fn patch_node_status(ctx: &NodeContext, specifics: &NodeSpecifics) -> Result<()> {
    let now = Time(jiff::Timestamp::now());
    let condition = |type_: &str, status: &str, reason: &str, message: &str| NodeCondition {
        type_: type_.to_owned(),
        status: status.to_owned(),
        reason: Some(reason.to_owned()),
        message: Some(message.to_owned()),
        last_heartbeat_time: Some(now.clone()),
        last_transition_time: Some(now.clone()),
    };
    let resources: BTreeMap<String, Quantity> = [
        ("cpu", specifics.cpu.clone()),
        ("memory", specifics.memory.clone()),
        ("pods", specifics.max_pods.to_string()),
        ("ephemeral-storage", "100Gi".to_owned()),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), Quantity(v)))
    .collect();
    let status = NodeStatus {
        capacity: Some(resources.clone()),
        allocatable: Some(resources),
        addresses: Some(vec![
            NodeAddress {
                type_: "InternalIP".into(),
                address: ctx.host_ip.to_string(),
            },
            NodeAddress {
                type_: "Hostname".into(),
                address: ctx.node_name.clone(),
            },
        ]),
        conditions: Some(vec![
            condition(
                "MemoryPressure",
                "False",
                "KubeletHasSufficientMemory",
                "pod runner has sufficient memory available",
            ),
            condition(
                "DiskPressure",
                "False",
                "KubeletHasNoDiskPressure",
                "pod runner has no disk pressure",
            ),
            condition(
                "PIDPressure",
                "False",
                "KubeletHasSufficientPID",
                "pod runner has sufficient PID available",
            ),
            condition(
                "Ready",
                "True",
                "KubeletReady",
                "flotilla pod runner is posting ready status",
            ),
        ]),
        daemon_endpoints: Some(NodeDaemonEndpoints::default()),
        node_info: Some(NodeSystemInfo {
            architecture: std::env::consts::ARCH.into(),
            operating_system: "linux".into(),
            os_image: "flotilla pod runner (containers are local processes)".into(),
            kernel_version: kernel_release(),
            container_runtime_version: format!("flotilla-podrunner://{}", env!("CARGO_PKG_VERSION")),
            kubelet_version: specifics.kubelet_version.clone(),
            machine_id: ctx.node_name.clone(),
            system_uuid: ctx.node_name.clone(),
            boot_id: std::process::id().to_string(),
            ..Default::default()
        }),
        ..Default::default()
    };
    let nodes: Api<Node> = Api::all(ctx.client.clone());
    nodes
        .patch_status(
            &ctx.node_name,
            &PatchParams::default(),
            &Patch::Strategic(serde_json::json!({ "status": status })),
        )
        .await?;
    Ok(())
}

/// Renews the node's Lease every 10 s and refreshes its status every minute, as a kubelet does.
async fn heartbeat(ctx: Arc<NodeContext>, node_uid: String, specifics: NodeSpecifics) {
    let leases: Api<Lease> = Api::namespaced(ctx.client.clone(), "kube-node-lease");
    let mut last_status = tokio::time::Instant::now();
    loop {
        let lease = Lease {
            metadata: ObjectMeta {
                name: Some(ctx.node_name.clone()),
                owner_references: Some(vec![OwnerReference {
                    api_version: "v1".into(),
                    kind: "Node".into(),
                    name: ctx.node_name.clone(),
                    uid: node_uid.clone(),
                    ..Default::default()
                }]),
                ..Default::default()
            },
            spec: Some(LeaseSpec {
                holder_identity: Some(ctx.node_name.clone()),
                lease_duration_seconds: Some(LEASE_SECONDS),
                renew_time: Some(MicroTime(jiff::Timestamp::now())),
                ..Default::default()
            }),
        };
        let mut value = serde_json::to_value(&lease).unwrap_or_default();
        value["apiVersion"] = "coordination.k8s.io/v1".into();
        value["kind"] = "Lease".into();
        if let Err(e) = leases
            .patch(
                &ctx.node_name,
                &PatchParams::apply(FIELD_MANAGER).force(),
                &Patch::Apply(value),
            )
            .await
        {
            warn!(error = %e, "lease renewal failed");
        }
        if last_status.elapsed() >= STATUS_REFRESH {
            if let Err(e) = patch_node_status(&ctx, &specifics).await {
                warn!(error = %e, "node status refresh failed");
            }
            last_status = tokio::time::Instant::now();
        }
        tokio::time::sleep(LEASE_RENEW).await;
    }
}

/// Follows the pods bound to this node and keeps one task per pod.
async fn watch_pods(ctx: Arc<NodeContext>, mut shutdown: watch::Receiver<bool>) {
    let pods: Api<Pod> = Api::all(ctx.client.clone());
    let config = watcher::Config::default().fields(&format!("spec.nodeName={}", ctx.node_name));
    let mut events = watcher(pods, config).boxed();
    let mut node = RunningNode {
        name: ctx.node_name.clone(),
        pods: BTreeMap::new(),
    };
    let mut listed: Option<BTreeSet<String>> = None;
    loop {
        let event = tokio::select! {
            event = events.next() => event,
            _ = shutdown.wait_for(|s| *s) => break,
        };
        match event {
            Some(Ok(watcher::Event::Init)) => listed = Some(BTreeSet::new()),
            Some(Ok(watcher::Event::InitApply(pod))) => {
                if let Some(seen) = listed.as_mut() {
                    seen.insert(pod.uid().unwrap_or_default());
                }
                node.apply(&ctx, pod);
            }
            Some(Ok(watcher::Event::InitDone)) => {
                // A pod that vanished while the watch was down is gone from the API.
                if let Some(seen) = listed.take() {
                    let gone: Vec<String> = node
                        .pods
                        .keys()
                        .filter(|uid| !seen.contains(*uid))
                        .cloned()
                        .collect();
                    for uid in gone {
                        node.stop(
                            &uid,
                            Stop {
                                grace: Duration::ZERO,
                                object_gone: true,
                            },
                        );
                    }
                }
            }
            Some(Ok(watcher::Event::Apply(pod))) => node.apply(&ctx, pod),
            Some(Ok(watcher::Event::Delete(pod))) => {
                node.stop(
                    &pod.uid().unwrap_or_default(),
                    Stop {
                        grace: Duration::ZERO,
                        object_gone: true,
                    },
                );
            }
            Some(Err(e)) => {
                warn!(error = %e, "pod watch failed, retrying");
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
            None => break,
        }
        node.pods.retain(|_, handle| !handle.task.is_finished());
    }
    node.shutdown().await;
}

impl RunningNode {
    fn apply(&mut self, ctx: &Arc<NodeContext>, pod: Pod) {
        let uid = pod.uid().unwrap_or_default();
        let deletion =
            pod.metadata.deletion_timestamp.as_ref().map(|_| Stop {
                grace: Duration::from_secs(
                    pod.metadata.deletion_grace_period_seconds.unwrap_or(30).max(0) as u64
                ),
                object_gone: false,
            });
        if !self.pods.contains_key(&uid) {
            let (stop_tx, stop_rx) = watch::channel(None);
            let task = tokio::spawn(pod::run(ctx.clone(), pod, stop_rx));
            self.pods.insert(uid.clone(), PodHandle { stop: stop_tx, task });
        }
        if let Some(stop) = deletion {
            self.stop(&uid, stop);
        }
    }

    /// Asks a pod task to stop; a shorter grace period replaces a longer one (a second
    /// `kubectl delete --grace-period=0` hurries a slow deletion along).
    fn stop(&mut self, uid: &str, stop: Stop) {
        if let Some(handle) = self.pods.get(uid) {
            handle.stop.send_if_modified(|current| match current {
                Some(existing)
                    if existing.grace <= stop.grace && existing.object_gone >= stop.object_gone =>
                {
                    false
                }
                _ => {
                    *current = Some(stop);
                    true
                }
            });
        }
    }

    /// The runner is going away: stop every pod quickly without touching the API objects.
    async fn shutdown(mut self) {
        info!(node = %self.name, pods = self.pods.len(), "stopping all pods");
        let uids: Vec<String> = self.pods.keys().cloned().collect();
        for uid in &uids {
            self.stop(
                uid,
                Stop {
                    grace: Duration::from_secs(2),
                    object_gone: true,
                },
            );
        }
        for (_, handle) in std::mem::take(&mut self.pods) {
            let _ = tokio::time::timeout(Duration::from_secs(5), handle.task).await;
        }
    }
}

fn kernel_release() -> String {
    std::fs::read_to_string("/proc/sys/kernel/osrelease")
        .map(|s| s.trim().to_owned())
        .unwrap_or_default()
}
