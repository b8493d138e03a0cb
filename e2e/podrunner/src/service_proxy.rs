//! kube-proxy's job for the local cluster, done in user space: every TCP port of every
//! Service with a ClusterIP gets a listener on that ClusterIP, and each accepted connection is
//! relayed to one ready pod of the Service, taken in turn.
//!
//! This works because the cluster's service range is carved out of its own loopback network
//! (`127.B.240.0/20`), and every address in `127.0.0.0/8` is local: a listener can bind a
//! ClusterIP without any routing set-up, and pods reach Services by ClusterIP exactly as they
//! would through kube-proxy. The API server refuses loopback addresses in Endpoints and
//! EndpointSlices, so the endpoints controller cannot publish them here; the proxy selects the
//! ready pods itself, as the endpoints controller would (selector, readiness, named target
//! ports). It runs as `system:kube-proxy`, which `up.sh` allows to read Services and Pods.
//! UDP Service ports are not proxied.

use std::{
    collections::BTreeMap,
    net::{Ipv4Addr, SocketAddr, SocketAddrV4},
    sync::{
        Arc,
        atomic::{AtomicUsize, Ordering},
    },
    time::Duration,
};

use futures::StreamExt;
use k8s_openapi::{
    api::core::v1::{Pod, Service, ServicePort},
    apimachinery::pkg::util::intstr::IntOrString,
};
use kube::{
    Api, Client, ResourceExt,
    runtime::{WatchStreamExt, reflector, watcher},
};
use tokio::{
    net::{TcpListener, TcpStream},
    sync::{Notify, watch},
    task::JoinHandle,
};
use tracing::{debug, info, warn};

/// How long a connection to an endpoint may take before the next endpoint is tried.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);
/// Changes arriving within this window are applied together.
const SETTLE: Duration = Duration::from_millis(20);

/// One Service port as clients address it.
pub type Frontend = SocketAddrV4;

/// Where a frontend's connections go.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Route {
    /// `namespace/name:port`, for logs.
    pub service: String,
    /// Ready endpoints; empty when nothing is ready (connections are then dropped).
    pub backends: Vec<SocketAddr>,
}

pub type RoutingTable = BTreeMap<Frontend, Route>;

/// The routing table for these Services and Pods: pure, so it is tested without a cluster.
pub fn routing_table(services: &[Arc<Service>], pods: &[Arc<Pod>]) -> RoutingTable {
    let mut table = RoutingTable::new();
    for service in services {
        let Some(spec) = &service.spec else { continue };
        let Some(ip) = spec
            .cluster_ip
            .as_deref()
            .and_then(|ip| ip.parse::<Ipv4Addr>().ok())
        else {
            continue; // headless ("None") or not yet assigned
        };
        let namespace = service.namespace().unwrap_or_default();
        // A Service without a selector has hand-made endpoints, which this cluster cannot hold.
        let Some(selector) = spec.selector.as_ref().filter(|s| !s.is_empty()) else {
            continue;
        };
        let ready: Vec<&Pod> = pods
            .iter()
            .map(AsRef::as_ref)
            .filter(|pod| pod.namespace().as_deref() == Some(namespace.as_str()))
            .filter(|pod| selector.iter().all(|(k, v)| pod.labels().get(k) == Some(v)))
            .filter(|pod| is_ready(pod))
            .collect();
        for port in spec.ports.iter().flatten() {
            if port.protocol.as_deref().unwrap_or("TCP") != "TCP" {
                continue;
            }
            let Ok(number) = u16::try_from(port.port) else {
                continue;
            };
            let mut backends: Vec<SocketAddr> = ready.iter().filter_map(|pod| backend(pod, port)).collect();
            backends.sort();
            table.insert(
                SocketAddrV4::new(ip, number),
                Route {
                    service: format!("{namespace}/{}:{}", service.name_any(), port.port),
                    backends,
                },
            );
        }
    }
    table
}

/// Running, Ready and not being deleted: what the endpoints controller counts as ready.
fn is_ready(pod: &Pod) -> bool {
    pod.metadata.deletion_timestamp.is_none()
        && pod
            .status
            .as_ref()
            .and_then(|s| s.conditions.as_ref())
            .is_some_and(|c| c.iter().any(|c| c.type_ == "Ready" && c.status == "True"))
}

/// The pod's address for a Service port: `targetPort` as a number, or as the name of one of
/// the pod's container ports; the Service port itself when unset.
fn backend(pod: &Pod, port: &ServicePort) -> Option<SocketAddr> {
    let ip: Ipv4Addr = pod.status.as_ref()?.pod_ip.as_deref()?.parse().ok()?;
    let target = match &port.target_port {
        None => port.port,
        Some(IntOrString::Int(number)) => *number,
        Some(IntOrString::String(name)) => {
            pod.spec
                .as_ref()?
                .containers
                .iter()
                .flat_map(|c| c.ports.iter().flatten())
                .find(|p| p.name.as_deref() == Some(name.as_str()))?
                .container_port
        }
    };
    Some(SocketAddr::from((ip, u16::try_from(target).ok()?)))
}

/// Runs the proxy until the task is dropped: watches Services and EndpointSlices and keeps one
/// listener per frontend in the current routing table.
pub async fn run(client: Client) {
    let (services, service_writer) = reflector::store::<Service>();
    let (pods, pod_writer) = reflector::store::<Pod>();
    let changed = Arc::new(Notify::new());
    let watch_services = watcher(Api::<Service>::all(client.clone()), watcher::Config::default())
        .default_backoff()
        .reflect(service_writer)
        .touched_objects();
    let watch_pods = watcher(Api::<Pod>::all(client), watcher::Config::default())
        .default_backoff()
        .reflect(pod_writer)
        .touched_objects();
    let notify = changed.clone();
    tokio::spawn(async move {
        let mut events = futures::stream::select(
            watch_services
                .map(|e| e.map(|_| ()).map_err(|e| e.to_string()))
                .boxed(),
            watch_pods
                .map(|e| e.map(|_| ()).map_err(|e| e.to_string()))
                .boxed(),
        );
        while let Some(event) = events.next().await {
            if let Err(error) = event {
                warn!(%error, "service proxy watch");
            }
            notify.notify_one();
        }
    });
    let _ = services.wait_until_ready().await;
    let _ = pods.wait_until_ready().await;

    let (table_tx, table_rx) = watch::channel(Arc::new(RoutingTable::new()));
    let mut listeners: BTreeMap<Frontend, JoinHandle<()>> = BTreeMap::new();
    info!("service proxy ready");
    loop {
        let table = Arc::new(routing_table(&services.state(), &pods.state()));
        listeners.retain(|frontend, task| {
            let keep = table.contains_key(frontend);
            if !keep {
                task.abort();
                info!(%frontend, "service port removed");
            }
            keep
        });
        for (frontend, route) in table.iter() {
            if !listeners.contains_key(frontend) {
                info!(%frontend, service = %route.service, "service port added");
                listeners.insert(*frontend, tokio::spawn(listen(*frontend, table_rx.clone())));
            }
        }
        table_tx.send_replace(table);
        changed.notified().await;
        tokio::time::sleep(SETTLE).await;
    }
}

/// Accepts connections on one frontend and relays each to a backend.
async fn listen(frontend: Frontend, table: watch::Receiver<Arc<RoutingTable>>) {
    let listener = match TcpListener::bind(frontend).await {
        Ok(listener) => listener,
        Err(error) => {
            warn!(%frontend, %error, "cannot listen on the service port");
            return;
        }
    };
    let turn = Arc::new(AtomicUsize::new(0));
    loop {
        let Ok((client, _)) = listener.accept().await else {
            continue;
        };
        let backends = table
            .borrow()
            .get(&frontend)
            .map(|route| route.backends.clone())
            .unwrap_or_default();
        let first = turn.fetch_add(1, Ordering::Relaxed);
        tokio::spawn(relay(client, backends, first, frontend));
    }
}

/// Connects to the backends starting at `first`, in turn, and copies bytes both ways through
/// the first one that answers; a client with no reachable backend is disconnected.
async fn relay(mut client: TcpStream, backends: Vec<SocketAddr>, first: usize, frontend: Frontend) {
    for i in 0..backends.len() {
        let backend = backends[(first + i) % backends.len()];
        match tokio::time::timeout(CONNECT_TIMEOUT, TcpStream::connect(backend)).await {
            Ok(Ok(mut upstream)) => {
                let _ = client.set_nodelay(true);
                let _ = upstream.set_nodelay(true);
                let _ = tokio::io::copy_bidirectional(&mut client, &mut upstream).await;
                return;
            }
            Ok(Err(error)) => debug!(%frontend, %backend, %error, "backend refused"),
            Err(_) => debug!(%frontend, %backend, "backend timed out"),
        }
    }
    debug!(%frontend, "no reachable backend");
}

#[cfg(test)]
mod tests {
    use k8s_openapi::{
        api::core::v1::{Container, ContainerPort, PodCondition, PodSpec, PodStatus, ServiceSpec},
        apimachinery::pkg::apis::meta::v1::ObjectMeta,
    };

    use super::*;

    fn service(name: &str, ip: &str, ports: &[(i32, Option<IntOrString>, &str)]) -> Arc<Service> {
        Arc::new(Service {
            metadata: ObjectMeta {
                name: Some(name.into()),
                namespace: Some("ns".into()),
                ..Default::default()
            },
            spec: Some(ServiceSpec {
                cluster_ip: Some(ip.into()),
                selector: Some([("app".to_owned(), name.to_owned())].into()),
                ports: Some(
                    ports
                        .iter()
                        .map(|(port, target, proto)| ServicePort {
                            port: *port,
                            target_port: target.clone(),
                            protocol: Some((*proto).into()),
                            ..Default::default()
                        })
                        .collect(),
                ),
                ..Default::default()
            }),
            status: None,
        })
    }

    fn pod(app: &str, ip: &str, ready: bool) -> Arc<Pod> {
        Arc::new(Pod {
            metadata: ObjectMeta {
                name: Some(format!("{app}-{ip}")),
                namespace: Some("ns".into()),
                labels: Some([("app".to_owned(), app.to_owned())].into()),
                ..Default::default()
            },
            spec: Some(PodSpec {
                containers: vec![Container {
                    ports: Some(vec![ContainerPort {
                        name: Some("alloc".into()),
                        container_port: 8443,
                        ..Default::default()
                    }]),
                    ..Default::default()
                }],
                ..Default::default()
            }),
            status: Some(PodStatus {
                pod_ip: Some(ip.into()),
                conditions: Some(vec![PodCondition {
                    type_: "Ready".into(),
                    status: if ready { "True" } else { "False" }.into(),
                    ..Default::default()
                }]),
                ..Default::default()
            }),
        })
    }

    fn addr(s: &str) -> SocketAddr {
        s.parse().expect("socket address")
    }

    #[test]
    fn ports_route_to_ready_selected_pods_by_named_or_numbered_target_port() {
        let services = [service(
            "op",
            "127.9.240.10",
            &[
                (443, Some(IntOrString::String("alloc".into())), "TCP"),
                (9358, None, "TCP"),
                (80, Some(IntOrString::Int(8080)), "TCP"),
            ],
        )];
        let pods = [
            pod("op", "127.9.1.2", true),
            pod("op", "127.9.2.2", true),
            pod("op", "127.9.3.2", false),
        ];
        let table = routing_table(&services, &pods);
        let alloc = &table[&"127.9.240.10:443".parse().expect("frontend")];
        assert_eq!(
            alloc.backends,
            vec![addr("127.9.1.2:8443"), addr("127.9.2.2:8443")]
        );
        assert_eq!(alloc.service, "ns/op:443");
        let sdk = &table[&"127.9.240.10:9358".parse().expect("frontend")];
        assert_eq!(sdk.backends, vec![addr("127.9.1.2:9358"), addr("127.9.2.2:9358")]);
        let web = &table[&"127.9.240.10:80".parse().expect("frontend")];
        assert_eq!(web.backends[0], addr("127.9.1.2:8080"));
    }

    #[test]
    fn headless_udp_and_unselected_pods_are_ignored() {
        let services = [
            service("headless", "None", &[(80, None, "TCP")]),
            service("game", "127.9.240.11", &[(7777, None, "UDP"), (80, None, "TCP")]),
        ];
        let pods = [pod("other", "127.9.1.9", true)];
        let table = routing_table(&services, &pods);
        assert_eq!(
            table.len(),
            1,
            "only the TCP port of the ClusterIP service: {table:?}"
        );
        let route = table.values().next().expect("one route");
        assert!(
            route.backends.is_empty(),
            "another app's pod must not be selected"
        );
    }
}
