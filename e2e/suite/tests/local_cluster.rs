//! End-to-end tests of the local cluster: the real control plane with the pod runner as its
//! kubelet. Each test works in a namespace of its own; `./x test` starts the cluster.

use std::{collections::BTreeSet, time::Duration};

use flotilla_e2e::{
    TestNamespace, client, eventually, expected_kubernetes_version, is_ready, phase, pod_ip, process_alive,
};
use k8s_openapi::api::{
    apps::v1::Deployment,
    core::v1::{ConfigMap, Node, Pod, Secret, ServiceAccount},
    rbac::v1::{Role, RoleBinding},
};
use kube::{
    Api, ResourceExt,
    api::{DeleteParams, Patch, PatchParams, PostParams},
};
use serde_json::json;

type TestResult = flotilla_e2e::Result<()>;

const WAIT: Duration = Duration::from_secs(30);

fn from_json<T: serde::de::DeserializeOwned>(value: serde_json::Value) -> T {
    serde_json::from_value(value).expect("test manifests are valid")
}

/// A Deployment of `flotilla/testpod` serving HTTP on its pod IP, with a readiness probe.
fn testpod_deployment(name: &str, replicas: i32, args: &[&str]) -> Deployment {
    from_json(json!({
        "metadata": {"name": name},
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": {"app": name}},
            "template": {
                "metadata": {"labels": {"app": name}},
                "spec": {
                    "terminationGracePeriodSeconds": 5,
                    "containers": [{
                        "name": "web",
                        "image": "flotilla/testpod:e2e",
                        "args": args,
                        "env": [
                            {"name": "POD_IP", "valueFrom": {"fieldRef": {"fieldPath": "status.podIP"}}},
                            {"name": "POD_NAME", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}},
                        ],
                        "ports": [{"name": "http", "containerPort": 8080}],
                        "readinessProbe": {"httpGet": {"path": "/ready", "port": "http"}, "periodSeconds": 1},
                    }],
                },
            },
        },
    }))
}

async fn http_json(url: &str) -> flotilla_e2e::Result<serde_json::Value> {
    Ok(reqwest::Client::new()
        .get(url)
        .timeout(Duration::from_secs(2))
        .send()
        .await?
        .json()
        .await?)
}

async fn ready_pods(ns: &TestNamespace, selector: &str, count: usize) -> flotilla_e2e::Result<Vec<Pod>> {
    eventually(WAIT, &format!("{count} ready pods {selector}"), || async {
        let pods = ns.pods(selector).await?;
        let ready: Vec<Pod> = pods
            .into_iter()
            .filter(|p| is_ready(p) && p.metadata.deletion_timestamp.is_none())
            .collect();
        Ok((ready.len() == count).then_some(ready))
    })
    .await
}

#[tokio::test]
async fn nodes_are_ready_and_the_server_reports_its_real_version() -> TestResult {
    let client = client().await?;
    let version = client.apiserver_version().await?;
    assert_eq!(version.git_version, expected_kubernetes_version());
    let nodes: Api<Node> = Api::all(client);
    let nodes = nodes.list(&Default::default()).await?.items;
    assert!(!nodes.is_empty(), "the runner registers nodes");
    for node in &nodes {
        let status = node.status.as_ref().expect("nodes have status");
        let ready = status.conditions.iter().flatten().find(|c| c.type_ == "Ready");
        assert_eq!(
            ready.map(|c| c.status.as_str()),
            Some("True"),
            "{} is Ready",
            node.name_any()
        );
        let address = &status.addresses.as_ref().expect("addresses")[0].address;
        assert!(
            address.starts_with("127."),
            "node address {address} is on loopback"
        );
    }
    Ok(())
}

#[tokio::test]
async fn deployment_pod_becomes_ready_after_its_probe_passes_and_answers_at_its_pod_ip() -> TestResult {
    let ns = TestNamespace::create("probe").await?;
    let deployments: Api<Deployment> = ns.api();
    deployments
        .create(
            &PostParams::default(),
            &testpod_deployment("web", 1, &["--ready-after-ms", "3000"]),
        )
        .await?;

    // Running but not Ready while /ready answers 503: the readiness probe is honoured.
    let running = eventually(WAIT, "a running pod", || async {
        Ok(ns
            .pods("app=web")
            .await?
            .into_iter()
            .find(|p| phase(p) == "Running"))
    })
    .await?;
    assert!(
        !is_ready(&running),
        "not ready before --ready-after-ms has passed"
    );

    let pod = ready_pods(&ns, "app=web", 1).await?.remove(0);
    let ip = pod_ip(&pod).expect("a ready pod has an IP");
    assert!(ip.starts_with("127."), "pod IP {ip} is a loopback address");
    let answer = http_json(&format!("http://{ip}:8080/")).await?;
    assert_eq!(
        answer["name"],
        pod.name_any(),
        "the downward API gave the pod its name"
    );
    assert_eq!(
        answer["address"],
        format!("{ip}:8080"),
        "the pod listens on its own pod IP"
    );
    ns.delete().await
}

#[tokio::test]
async fn scaling_to_three_gives_three_processes_on_distinct_addresses_and_deleting_removes_them() -> TestResult
{
    let ns = TestNamespace::create("scale").await?;
    let deployments: Api<Deployment> = ns.api();
    deployments
        .create(&PostParams::default(), &testpod_deployment("web", 1, &[]))
        .await?;
    ready_pods(&ns, "app=web", 1).await?;
    deployments
        .patch(
            "web",
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"replicas": 3}})),
        )
        .await?;
    let pods = ready_pods(&ns, "app=web", 3).await?;

    let mut addresses = BTreeSet::new();
    let mut pids = BTreeSet::new();
    for pod in &pods {
        let ip = pod_ip(pod).expect("ready pods have IPs");
        let answer = http_json(&format!("http://{ip}:8080/")).await?;
        addresses.insert(ip);
        pids.insert(answer["pid"].as_u64().expect("pid") as u32);
    }
    assert_eq!(addresses.len(), 3, "three distinct pod IPs: {addresses:?}");
    assert_eq!(pids.len(), 3, "three processes: {pids:?}");
    assert!(pids.iter().all(|pid| process_alive(*pid)));

    // Garbage collection in the controller-manager deletes the ReplicaSet and its pods;
    // the runner stops the processes and finalizes the pods.
    deployments.delete("web", &DeleteParams::foreground()).await?;
    eventually(WAIT, "pods of the deleted deployment to disappear", || async {
        Ok(ns.pods("app=web").await?.is_empty().then_some(()))
    })
    .await?;
    for pid in pids {
        assert!(!process_alive(pid), "process {pid} is gone with its pod");
    }
    ns.delete().await
}

#[tokio::test]
async fn exiting_container_is_restarted_with_a_growing_restart_count() -> TestResult {
    let ns = TestNamespace::create("restart").await?;
    let pods: Api<Pod> = ns.api();
    let pod: Pod = from_json(json!({
        "metadata": {"name": "crasher"},
        "spec": {"containers": [{
            "name": "app",
            "image": "flotilla/testpod",
            "args": ["--port", "0", "--exit-after-ms", "200", "--exit-code", "3"],
        }]},
    }));
    pods.create(&PostParams::default(), &pod).await?;
    let restarted = eventually(WAIT, "two restarts", || async {
        let pod = pods.get("crasher").await?;
        let status = pod
            .status
            .as_ref()
            .and_then(|s| s.container_statuses.as_ref())
            .map(|c| c[0].clone());
        Ok(status.filter(|s| s.restart_count >= 2))
    })
    .await?;
    let last = restarted
        .last_state
        .and_then(|s| s.terminated)
        .expect("last state is terminated");
    assert_eq!(last.exit_code, 3);
    assert_eq!(last.reason.as_deref(), Some("Error"));
    ns.delete().await
}

#[tokio::test]
async fn failing_liveness_probe_restarts_the_container() -> TestResult {
    let ns = TestNamespace::create("liveness").await?;
    let pods: Api<Pod> = ns.api();
    let pod: Pod = from_json(json!({
        "metadata": {"name": "sick"},
        "spec": {"terminationGracePeriodSeconds": 1, "containers": [{
            "name": "app",
            "image": "flotilla/testpod",
            "env": [{"name": "POD_IP", "valueFrom": {"fieldRef": {"fieldPath": "status.podIP"}}}],
            "livenessProbe": {"httpGet": {"path": "/no-such-page", "port": 8080}, "periodSeconds": 1, "failureThreshold": 2},
        }]},
    }));
    pods.create(&PostParams::default(), &pod).await?;
    eventually(WAIT, "a restart after liveness failures", || async {
        let pod = pods.get("sick").await?;
        let restarts = pod
            .status
            .and_then(|s| s.container_statuses)
            .map_or(0, |c| c[0].restart_count);
        Ok((restarts >= 1).then_some(()))
    })
    .await?;
    ns.delete().await
}

#[tokio::test]
async fn service_account_without_rights_gets_403_and_with_a_role_gets_200() -> TestResult {
    let ns = TestNamespace::create("rbac").await?;
    ns.api::<ServiceAccount>()
        .create(
            &PostParams::default(),
            &from_json(json!({"metadata": {"name": "reader"}})),
        )
        .await?;
    let mut deployment = testpod_deployment("asker", 1, &[]);
    if let Some(spec) = deployment.spec.as_mut().and_then(|s| s.template.spec.as_mut()) {
        spec.service_account_name = Some("reader".into());
    }
    ns.api::<Deployment>()
        .create(&PostParams::default(), &deployment)
        .await?;
    let pod = ready_pods(&ns, "app=asker", 1).await?.remove(0);
    let ip = pod_ip(&pod).expect("ip");
    let url = format!("http://{ip}:8080/kube?path=/api/v1/namespaces/{}/pods", ns.name);
    let ask = || async { Ok::<_, flotilla_e2e::Error>(reqwest::get(&url).await?.text().await?) };
    assert_eq!(ask().await?, "403", "a service account with no role is forbidden");

    ns.api::<Role>()
        .create(
            &PostParams::default(),
            &from_json(json!({
                "metadata": {"name": "pod-reader"},
                "rules": [{"apiGroups": [""], "resources": ["pods"], "verbs": ["get", "list"]}],
            })),
        )
        .await?;
    ns.api::<RoleBinding>()
        .create(
            &PostParams::default(),
            &from_json(json!({
                "metadata": {"name": "reader-reads-pods"},
                "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": "pod-reader"},
                "subjects": [{"kind": "ServiceAccount", "name": "reader", "namespace": ns.name}],
            })),
        )
        .await?;
    eventually(WAIT, "the role to take effect", || async {
        Ok((ask().await? == "200").then_some(()))
    })
    .await?;
    ns.delete().await
}

#[tokio::test]
async fn env_from_secrets_and_configmaps_and_mounted_volumes_reach_the_container() -> TestResult {
    let ns = TestNamespace::create("config").await?;
    ns.api::<ConfigMap>()
        .create(
            &PostParams::default(),
            &from_json(json!({"metadata": {"name": "settings"}, "data": {"mode": "arena"}})),
        )
        .await?;
    ns.api::<Secret>()
        .create(
            &PostParams::default(),
            &from_json(json!({"metadata": {"name": "creds"}, "stringData": {"token": "s3cret"}})),
        )
        .await?;
    // The exec readiness probe runs in the container's environment and mount namespace, so the
    // pod becomes Ready only if both the variables and the mounted files are what they should be.
    let check = r#"test "$TOKEN" = s3cret && test "$CFG_mode" = arena && grep -qx arena /etc/settings/mode && test -s /var/run/secrets/kubernetes.io/serviceaccount/token"#;
    let pod: Pod = from_json(json!({
        "metadata": {"name": "configured", "labels": {"app": "configured"}},
        "spec": {
            "volumes": [{"name": "settings", "configMap": {"name": "settings"}}],
            "containers": [{
                "name": "app",
                "image": "flotilla/testpod",
                "command": ["sh", "-c", "exec sleep 3600"],
                "envFrom": [{"prefix": "CFG_", "configMapRef": {"name": "settings"}}],
                "env": [{"name": "TOKEN", "valueFrom": {"secretKeyRef": {"name": "creds", "key": "token"}}}],
                "volumeMounts": [{"name": "settings", "mountPath": "/etc/settings", "readOnly": true}],
                "readinessProbe": {"exec": {"command": ["sh", "-c", check]}, "periodSeconds": 1},
            }],
        },
    }));
    ns.api::<Pod>().create(&PostParams::default(), &pod).await?;
    ready_pods(&ns, "app=configured", 1).await?;
    assert!(
        !std::path::Path::new("/etc/settings/mode").exists(),
        "the mount is private to the container"
    );
    ns.delete().await
}

#[tokio::test]
async fn unmapped_image_waits_with_err_image_pull_and_a_clear_message() -> TestResult {
    let ns = TestNamespace::create("badimage").await?;
    let pods: Api<Pod> = ns.api();
    let pod: Pod = from_json(json!({
        "metadata": {"name": "nope"},
        "spec": {"containers": [{"name": "app", "image": "example.com/no-such-image:1.0"}]},
    }));
    pods.create(&PostParams::default(), &pod).await?;
    let waiting = eventually(WAIT, "the container to report the missing image", || async {
        let pod = pods.get("nope").await?;
        let waiting = pod
            .status
            .and_then(|s| s.container_statuses)
            .and_then(|c| c[0].state.clone())
            .and_then(|s| s.waiting)
            .filter(|w| matches!(w.reason.as_deref(), Some("ErrImagePull" | "ImagePullBackOff")));
        Ok(waiting)
    })
    .await?;
    let message = waiting.message.unwrap_or_default();
    assert!(
        message.contains(r#"image "example.com/no-such-image:1.0" has no entry in the image map"#),
        "message says which image and where to map it: {message}"
    );
    assert_eq!(phase(&pods.get("nope").await?), "Pending");
    ns.delete().await
}

#[tokio::test]
async fn missing_configmap_is_a_config_error_until_it_is_created() -> TestResult {
    let ns = TestNamespace::create("missingcm").await?;
    let pods: Api<Pod> = ns.api();
    let pod: Pod = from_json(json!({
        "metadata": {"name": "waits", "labels": {"app": "waits"}},
        "spec": {"containers": [{
            "name": "app",
            "image": "flotilla/testpod",
            "env": [
                {"name": "MODE", "valueFrom": {"configMapKeyRef": {"name": "later", "key": "mode"}}},
                {"name": "POD_IP", "valueFrom": {"fieldRef": {"fieldPath": "status.podIP"}}},
            ],
        }]},
    }));
    pods.create(&PostParams::default(), &pod).await?;
    eventually(WAIT, "CreateContainerConfigError", || async {
        let pod = pods.get("waits").await?;
        let reason = pod
            .status
            .and_then(|s| s.container_statuses)
            .and_then(|c| c[0].state.clone())
            .and_then(|s| s.waiting)
            .and_then(|w| w.reason);
        Ok((reason.as_deref() == Some("CreateContainerConfigError")).then_some(()))
    })
    .await?;
    ns.api::<ConfigMap>()
        .create(
            &PostParams::default(),
            &from_json(json!({"metadata": {"name": "later"}, "data": {"mode": "x"}})),
        )
        .await?;
    ready_pods(&ns, "app=waits", 1).await?;
    ns.delete().await
}

#[tokio::test]
async fn deletion_sends_sigterm_and_kills_after_the_grace_period() -> TestResult {
    let ns = TestNamespace::create("grace").await?;
    let pods: Api<Pod> = ns.api();
    // This container ignores SIGTERM, so only SIGKILL after the 2 s grace period stops it.
    let pod: Pod = from_json(json!({
        "metadata": {"name": "stubborn", "labels": {"app": "stubborn"}},
        "spec": {"terminationGracePeriodSeconds": 2, "containers": [{
            "name": "app",
            "image": "flotilla/testpod",
            "command": ["sh", "-c", "trap '' TERM; echo $$ > pid; while true; do sleep 0.1; done"],
        }]},
    }));
    pods.create(&PostParams::default(), &pod).await?;
    let running = eventually(WAIT, "the stubborn pod to run", || async {
        Ok(ns.pods("app=stubborn").await?.into_iter().find(is_ready))
    })
    .await?;
    let pid: u32 = running
        .status
        .and_then(|s| s.container_statuses)
        .and_then(|c| c[0].container_id.clone())
        .and_then(|id| id.strip_prefix("process://").and_then(|p| p.parse().ok()))
        .expect("container id carries the pid");
    assert!(process_alive(pid));

    let started = std::time::Instant::now();
    pods.delete("stubborn", &DeleteParams::default()).await?;
    eventually(WAIT, "the pod object to be finalized", || async {
        Ok(pods.get_opt("stubborn").await?.is_none().then_some(()))
    })
    .await?;
    let took = started.elapsed();
    assert!(
        took >= Duration::from_secs(2),
        "the grace period was honoured ({took:?})"
    );
    assert!(
        took < Duration::from_secs(10),
        "SIGKILL followed the grace period ({took:?})"
    );
    assert!(!process_alive(pid), "the process is gone");
    ns.delete().await
}
