//! The Helm chart, installed with the real `helm` on the local cluster: the operator runs as
//! pods with the chart's ServiceAccount (so a missing RBAC rule fails here), game servers reach
//! the leader's SDK through a Service, matchmakers allocate through the allocation Service over
//! TLS, an upgrade keeps allocated servers and the match being played on them, and an uninstall
//! leaves no Flotilla pod behind.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::time::Duration;

use flotilla_allocation_client::{
    AllocationClient, AllocationRequest, ClientOptions, Error as AllocationError,
};
use flotilla_api::{GameServer, GameServerFleet, GameServerState};
use flotilla_e2e::{
    Grant, Result, TestNamespace, chart_dir, client, eventually, failure, helm, helm_ok, helm_uninstall,
    is_ready, manifest, matchmaker_token,
};
use flotilla_gameserver::bots::{self, BotConfig};
use k8s_openapi::api::core::v1::{Pod, Secret, Service};
use kube::api::{ListParams, PostParams};
use kube::{Api, Client, ResourceExt};

type TestResult = Result<()>;

const RELEASE: &str = "flotilla";
const NAMESPACE: &str = "flotilla-system";
const OPERATOR_PODS: &str = "app.kubernetes.io/name=flotilla,app.kubernetes.io/component=operator";
const WAIT: Duration = Duration::from_secs(90);
const ALLOCATOR_HOST: &str = "flotilla-allocator.flotilla-system.svc";

fn kube_version() -> String {
    flotilla_e2e::expected_kubernetes_version()
        .trim_start_matches('v')
        .to_owned()
}

#[tokio::test]
async fn the_chart_lints_renders_least_privilege_rbac_and_rejects_bad_values() -> TestResult {
    let chart = chart_dir();
    let version = kube_version();
    helm_ok(&["lint", &chart, "--strict", "--kube-version", &version]).await?;
    helm_ok(
        &[
            &["lint", &chart, "--strict", "--kube-version", &version],
            PLAYER_VALUES,
        ]
        .concat(),
    )
    .await?;
    let (_, documents) = render(&chart, &version, &["--set", "dashboards.enabled=true"]).await?;
    let kinds: Vec<&str> = documents.iter().filter_map(|d| d["kind"].as_str()).collect();
    for kind in [
        "Deployment",
        "ServiceAccount",
        "ClusterRole",
        "Role",
        "Service",
        "PodDisruptionBudget",
    ] {
        assert!(kinds.contains(&kind), "no {kind} in {kinds:?}");
    }
    for doc in &documents {
        for rule in doc["rules"].as_array().into_iter().flatten() {
            let words = ["verbs", "resources", "apiGroups"]
                .iter()
                .flat_map(|k| rule[k].as_array().cloned().unwrap_or_default());
            for word in words {
                assert_ne!(word, "*", "wildcard in {}: {rule}", doc["metadata"]["name"]);
            }
        }
        assert_ne!(doc["roleRef"]["name"], "cluster-admin");
    }
    let deployment = documents
        .iter()
        .find(|d| d["kind"] == "Deployment")
        .ok_or_else(|| failure("template", "no Deployment"))?;
    let pod = &deployment["spec"]["template"]["spec"];
    assert_eq!(pod["securityContext"]["runAsNonRoot"], true);
    let container = &pod["containers"][0]["securityContext"];
    assert_eq!(container["readOnlyRootFilesystem"], true);
    assert_eq!(container["allowPrivilegeEscalation"], false);
    assert_eq!(deployment["spec"]["replicas"], 2);
    assert!(
        documents
            .iter()
            .all(|d| d["metadata"]["name"] != "flotilla-player"),
        "the player service is off by default"
    );
    player_templates(&chart, &version).await?;
    economy_templates(&chart, &version).await?;

    // Bad values fail the install before anything is created, with the schema's message.
    for (value, expected) in [
        ("operator.replicas=0", "/operator/replicas"),
        ("allocation.tls.clientAuth=maybe", "/allocation/tls/clientAuth"),
        (
            "operator.replica=3",
            "additional properties 'replica' not allowed",
        ),
        ("player.namespace=Players", "/player/namespace"),
        ("economy.enabled=true", "economy.enabled needs player.enabled"),
        // The storage URLs have no default: the template names the first one missing.
        ("player.enabled=true", "player.mongo.url is required"),
        (
            "player.enabled=true,player.storageSecret=urls,player.redis.url=redis://r:6379/",
            "player.redis.url and player.storageSecret are both set",
        ),
    ] {
        let output = helm(&[
            "install",
            "invalid",
            &chart,
            "-n",
            "flotilla-invalid",
            "--create-namespace",
            "--set",
            value,
        ])
        .await?;
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(!output.status.success(), "{value} was accepted");
        assert!(stderr.contains(expected), "{value}: {stderr}");
    }
    assert!(
        helm_ok(&["list", "-A", "-q"])
            .await?
            .lines()
            .all(|r| r != "invalid")
    );
    Ok(())
}

/// `helm template` of the chart with `extra` arguments: the text and its objects.
async fn render(chart: &str, version: &str, extra: &[&str]) -> Result<(String, Vec<serde_json::Value>)> {
    let args = [
        &[
            "template",
            RELEASE,
            chart,
            "-n",
            NAMESPACE,
            "--kube-version",
            version,
        ],
        extra,
    ]
    .concat();
    let rendered = helm_ok(&args).await?;
    let documents = rendered
        .split("\n---")
        .filter_map(|doc| serde_yaml_ng::from_str::<serde_json::Value>(doc).ok())
        .filter(|doc| doc.is_object())
        .collect();
    Ok((rendered, documents))
}

/// Storage URLs for rendering the chart with the player service (nothing connects to them).
const PLAYER_VALUES: &[&str] = &[
    "--set",
    "player.enabled=true",
    "--set",
    "player.mongo.url=mongodb://mongo:27017/",
    "--set",
    "player.redis.url=redis://redis:6379/",
    "--set",
    "player.opensearch.url=http://opensearch:9200",
];

/// With `player.enabled`, the chart renders the player's Deployment locked down like the
/// operator's, a ServiceAccount no RBAC object grants anything to, a generated key Secret, its
/// Services, PodDisruptionBudget and ServiceMonitor.
async fn player_templates(chart: &str, version: &str) -> TestResult {
    let extra = [&["--set", "metrics.serviceMonitor.enabled=true"], PLAYER_VALUES].concat();
    let (_, documents) = render(chart, version, &extra).await?;
    let find = |kind: &str, name: &str| {
        documents
            .iter()
            .find(|d| d["kind"] == kind && d["metadata"]["name"] == name)
            .ok_or_else(|| failure("template", format!("no {kind} {name}")))
    };
    let deployment = find("Deployment", "flotilla-player")?;
    assert_eq!(deployment["spec"]["replicas"], 2);
    let strategy = &deployment["spec"]["strategy"];
    assert_eq!(strategy["rollingUpdate"]["maxSurge"], 1, "{strategy}");
    assert_eq!(strategy["rollingUpdate"]["maxUnavailable"], 0, "{strategy}");
    let pod = &deployment["spec"]["template"]["spec"];
    assert_eq!(pod["serviceAccountName"], "flotilla-player");
    assert_eq!(pod["automountServiceAccountToken"], false);
    assert_eq!(pod["securityContext"]["runAsNonRoot"], true);
    assert_eq!(pod["securityContext"]["runAsUser"], 65532);
    assert_eq!(pod["securityContext"]["seccompProfile"]["type"], "RuntimeDefault");
    let container = &pod["containers"][0];
    assert_eq!(container["image"], "flotilla/player:0.1.0");
    let security = &container["securityContext"];
    assert_eq!(security["readOnlyRootFilesystem"], true);
    assert_eq!(security["allowPrivilegeEscalation"], false);
    assert_eq!(security["capabilities"]["drop"], serde_json::json!(["ALL"]));
    assert_eq!(container["readinessProbe"]["httpGet"]["path"], "/readyz");
    assert_eq!(container["livenessProbe"]["httpGet"]["path"], "/healthz");
    let env = container["env"].as_array().cloned().unwrap_or_default();
    for (name, key) in [
        ("FLOTILLA_TOKEN_KEY", "token-key"),
        ("FLOTILLA_SERVICE_KEY", "service-key"),
    ] {
        let var = env
            .iter()
            .find(|e| e["name"] == name)
            .ok_or_else(|| failure("template", format!("no {name}")))?;
        let from = &var["valueFrom"]["secretKeyRef"];
        assert_eq!(from["name"], "flotilla-player", "{var}");
        assert_eq!(from["key"], key, "{var}");
    }

    for name in [
        "FLOTILLA_MONGO_URL",
        "FLOTILLA_REDIS_URL",
        "FLOTILLA_OPENSEARCH_URL",
    ] {
        let var = env.iter().find(|e| e["name"] == name);
        assert!(
            var.is_some_and(|v| v["value"].is_string()),
            "{name} from values: {var:?}"
        );
    }
    // With player.storageSecret the URLs, which may carry passwords, come from that Secret.
    let with_secret = [
        &PLAYER_VALUES[..2],
        &["--set", "player.storageSecret=storage-urls"],
    ]
    .concat();
    let (rendered, _) = render(chart, version, &with_secret).await?;
    for (name, key) in [
        ("FLOTILLA_MONGO_URL", "mongo-url"),
        ("FLOTILLA_REDIS_URL", "redis-url"),
        ("FLOTILLA_OPENSEARCH_URL", "opensearch-url"),
    ] {
        let expected = format!(
            "- name: {name}\n              valueFrom: {{secretKeyRef: {{name: storage-urls, key: {key}}}}}"
        );
        assert!(rendered.contains(&expected), "{name} from the Secret: {rendered}");
    }

    let account = find("ServiceAccount", "flotilla-player")?;
    assert_eq!(account["automountServiceAccountToken"], false);
    for doc in &documents {
        for subject in doc["subjects"].as_array().into_iter().flatten() {
            assert_ne!(
                subject["name"], "flotilla-player",
                "{} grants the player service rights",
                doc["metadata"]["name"]
            );
        }
    }
    let secret = find("Secret", "flotilla-player")?;
    for key in ["token-key", "service-key"] {
        assert!(secret["data"][key].is_string(), "no {key} in the player Secret");
    }
    let service = find("Service", "flotilla-player")?;
    assert_eq!(service["spec"]["ports"][0]["port"], 80);
    assert_eq!(service["spec"]["ports"][0]["targetPort"], "http");
    find("Service", "flotilla-player-metrics")?;
    find("PodDisruptionBudget", "flotilla-player")?;
    let monitor = find("ServiceMonitor", "flotilla-player")?;
    assert_eq!(monitor["spec"]["endpoints"][0]["port"], "http-metrics");
    Ok(())
}

/// With `economy.enabled`, the economy's Deployment is locked down like the player's: no token,
/// no RBAC, the service key from the player's Secret, its own admin key, the catalog mounted
/// from a ConfigMap, and storage from the player's values unless it has its own.
async fn economy_templates(chart: &str, version: &str) -> TestResult {
    let extra = [
        &[
            "--set",
            "metrics.serviceMonitor.enabled=true",
            "--set",
            "economy.enabled=true",
        ],
        PLAYER_VALUES,
    ]
    .concat();
    let (_, documents) = render(chart, version, &extra).await?;
    let find = |kind: &str, name: &str| {
        documents
            .iter()
            .find(|d| d["kind"] == kind && d["metadata"]["name"] == name)
            .ok_or_else(|| failure("template", format!("no {kind} {name}")))
    };
    let pod = &find("Deployment", "flotilla-economy")?["spec"]["template"]["spec"];
    assert_eq!(pod["automountServiceAccountToken"], false);
    assert_eq!(pod["securityContext"]["runAsNonRoot"], true);
    let container = &pod["containers"][0];
    assert_eq!(container["image"], "flotilla/economy:0.1.0");
    assert_eq!(container["securityContext"]["readOnlyRootFilesystem"], true);
    let env = container["env"].as_array().cloned().unwrap_or_default();
    let var = |name: &str| {
        env.iter()
            .find(|e| e["name"] == name)
            .cloned()
            .unwrap_or_default()
    };
    assert_eq!(
        var("FLOTILLA_SERVICE_KEY")["valueFrom"]["secretKeyRef"]["name"],
        "flotilla-player"
    );
    assert_eq!(
        var("FLOTILLA_ECONOMY_ADMIN_KEY")["valueFrom"]["secretKeyRef"]["name"],
        "flotilla-economy"
    );
    assert_eq!(var("FLOTILLA_MONGO_URL")["value"], "mongodb://mongo:27017/");
    assert_eq!(var("FLOTILLA_OPENSEARCH_URL")["value"], "http://opensearch:9200");
    assert_eq!(
        var("FLOTILLA_PLAYER_URL")["value"],
        format!("http://flotilla-player.{NAMESPACE}.svc:80")
    );
    assert_eq!(pod["volumes"][0]["configMap"]["name"], "flotilla-economy-catalog");
    let catalog = find("ConfigMap", "flotilla-economy-catalog")?;
    assert!(
        catalog["data"]["catalog.yaml"]
            .as_str()
            .is_some_and(|c| c.contains("code: gold") && c.contains("saleFeeBps: 500"))
    );
    assert!(find("Secret", "flotilla-economy")?["data"]["admin-key"].is_string());
    for doc in &documents {
        for subject in doc["subjects"].as_array().into_iter().flatten() {
            assert_ne!(
                subject["name"], "flotilla-economy",
                "{} grants the economy rights",
                doc["metadata"]["name"]
            );
        }
    }
    find("Service", "flotilla-economy")?;
    find("Service", "flotilla-economy-metrics")?;
    find("PodDisruptionBudget", "flotilla-economy")?;
    find("ServiceMonitor", "flotilla-economy")?;
    Ok(())
}

/// The ClusterIP and port of a Service.
async fn service_address(client: &Client, name: &str) -> Result<SocketAddr> {
    let service = Api::<Service>::namespaced(client.clone(), NAMESPACE)
        .get(name)
        .await?;
    let spec = service.spec.unwrap_or_default();
    let port = spec.ports.unwrap_or_default().first().map_or(0, |p| p.port);
    format!("{}:{port}", spec.cluster_ip.unwrap_or_default())
        .parse()
        .map_err(|e| failure(name, e))
}

/// Two Ready operator pods, exactly one labelled leader; their names.
async fn operator_pods_ready(client: &Client) -> Result<Vec<String>> {
    let pods: Api<Pod> = Api::namespaced(client.clone(), NAMESPACE);
    eventually(
        WAIT,
        "two Ready operator pods, one of them the labelled leader",
        || async {
            let list = pods.list(&ListParams::default().labels(OPERATOR_PODS)).await?;
            let live: Vec<&Pod> = list
                .items
                .iter()
                .filter(|p| p.metadata.deletion_timestamp.is_none())
                .collect();
            let leaders = live
                .iter()
                .filter(|p| p.labels().get("flotilla.dev/leader").map(String::as_str) == Some("true"))
                .count();
            let ready = live.iter().all(|p| is_ready(p));
            Ok((live.len() == 2 && ready && leaders == 1)
                .then(|| live.iter().map(|p| p.name_any()).collect()))
        },
    )
    .await
}

/// The chart's CA and matchmaker client certificate, from the Secret the chart generated.
async fn client_credentials(client: &Client) -> Result<(Vec<u8>, Vec<u8>)> {
    let secret = Api::<Secret>::namespaced(client.clone(), NAMESPACE)
        .get("flotilla-allocation-client")
        .await?;
    let data = secret.data.unwrap_or_default();
    let field = |key: &str| {
        data.get(key)
            .map(|b| b.0.clone())
            .ok_or_else(|| failure("flotilla-allocation-client", format!("no {key}")))
    };
    let mut identity = field("tls.crt")?;
    identity.push(b'\n');
    identity.extend(field("tls.key")?);
    Ok((field("ca.crt")?, identity))
}

/// The Ready servers of the fleet, by name, with their pods' uids.
async fn ready_servers(servers: &Api<GameServer>, count: usize) -> Result<Vec<GameServer>> {
    eventually(WAIT, &format!("{count} Ready game servers"), || async {
        let ready: Vec<GameServer> = servers
            .list(&ListParams::default())
            .await?
            .items
            .into_iter()
            .filter(|s| s.status.as_ref().map(|st| st.state) == Some(GameServerState::Ready))
            .collect();
        Ok((ready.len() >= count).then_some(ready))
    })
    .await
}

async fn pod_uids(ns: &TestNamespace) -> Result<BTreeMap<String, String>> {
    Ok(ns
        .api::<Pod>()
        .list(&ListParams::default())
        .await?
        .items
        .into_iter()
        .map(|p| (p.name_any(), p.uid().unwrap_or_default()))
        .collect())
}

#[tokio::test]
async fn helm_install_serves_fleets_and_allocation_survives_an_upgrade_and_uninstalls_cleanly() -> TestResult
{
    let client = client().await?;
    let result = install_play_upgrade(&client).await;
    // Uninstall whatever happened, so a failure leaves no cluster-wide operator behind for
    // the suites that run after this one.
    let uninstalled = helm_uninstall(RELEASE, NAMESPACE).await;
    result?;
    uninstalled?;
    let pods: Api<Pod> = Api::namespaced(client.clone(), NAMESPACE);
    eventually(WAIT, "no Flotilla pods after helm uninstall", || async {
        let left = pods
            .list(&ListParams::default().labels("app.kubernetes.io/name=flotilla"))
            .await?;
        Ok(left.items.is_empty().then_some(()))
    })
    .await?;
    Ok(())
}

async fn install_play_upgrade(client: &Client) -> TestResult {
    let chart = chart_dir();
    helm_ok(&[
        "install",
        RELEASE,
        &chart,
        "-n",
        NAMESPACE,
        "--create-namespace",
        "--wait",
        "--timeout",
        "120s",
    ])
    .await?;
    let first_pods = operator_pods_ready(client).await?;

    // A fleet of the real game server: its pods are told the SDK Service's ClusterIP, and
    // report Ready through it to the leader.
    let ns = TestNamespace::create("chart").await?;
    let mut fleet: GameServerFleet = manifest("manifests/examples/fleet.yaml")?;
    fleet.spec.replicas = 2;
    if let Some(pod) = fleet.spec.template.spec.template.spec.as_mut() {
        pod.containers[0].env = Some(vec![k8s_openapi::api::core::v1::EnvVar {
            name: "FLOTILLA_MATCH_SECONDS".into(),
            value: Some("40".into()),
            ..Default::default()
        }]);
    }
    ns.api::<GameServerFleet>()
        .create(&PostParams::default(), &fleet)
        .await?;
    let servers: Api<GameServer> = ns.api();
    ready_servers(&servers, 2).await?;

    // Allocation through the Service, over TLS, by client certificate and by token.
    let address = service_address(client, "flotilla-allocator").await?;
    let url = format!("https://{ALLOCATOR_HOST}");
    let (ca, identity) = client_credentials(client).await?;
    let options = |token: Option<String>, identity: Option<Vec<u8>>| ClientOptions {
        token,
        ca_pem: Some(ca.clone()),
        identity_pem: identity,
        resolve: Some((ALLOCATOR_HOST.to_owned(), address)),
    };
    let anonymous =
        AllocationClient::with_options(&url, options(None, None)).map_err(|e| failure("client", e))?;
    let request = AllocationRequest {
        fleet: Some("arena".into()),
        session_id: Some("chart-match".into()),
        players: vec!["ann".into(), "ben".into()],
        ..Default::default()
    };
    match anonymous.allocate(&ns.name, &request).await {
        Err(AllocationError::Unauthenticated(_)) => {}
        other => panic!("no certificate and no token must be refused, got {other:?}"),
    }
    let by_token = AllocationClient::with_options(
        &url,
        options(
            Some(matchmaker_token(&ns, "matchmaker", Grant::ClusterRole("flotilla-allocator-client")).await?),
            None,
        ),
    )
    .map_err(|e| failure("client", e))?;
    let by_certificate = AllocationClient::with_options(&url, options(None, Some(identity)))
        .map_err(|e| failure("client", e))?;
    let token_answer = by_token
        .allocate_with_retry(
            &ns.name,
            &AllocationRequest {
                session_id: Some("chart-token".into()),
                ..request.clone()
            },
            WAIT,
        )
        .await
        .map_err(|e| failure("allocation by token", e))?;
    let answer = by_certificate
        .allocate_with_retry(&ns.name, &request, WAIT)
        .await
        .map_err(|e| failure("allocation by client certificate", e))?;
    assert_ne!(answer.game_server, token_answer.game_server);
    let before = pod_uids(&ns).await?;
    let allocation_id = |server: &GameServer| {
        server
            .status
            .as_ref()
            .and_then(|s| s.allocation.clone())
            .map(|a| a.id)
    };
    let token_allocation = allocation_id(&servers.get(&token_answer.game_server).await?);

    // Players play the match while the operator is upgraded under them.
    let port = answer.ports.first().map_or(0, |p| p.port);
    let game_address: SocketAddr = format!("{}:{port}", answer.address)
        .parse()
        .map_err(|e| failure("address", e))?;
    let play = tokio::spawn(bots::run(BotConfig {
        addr: game_address,
        fingerprint: answer.certificate_sha256.clone().unwrap_or_default(),
        tokens: answer.tokens.values().cloned().collect(),
        duration: Duration::from_secs(50),
        input_rate_hz: 30,
        bots_per_endpoint: 2,
    }));
    tokio::time::sleep(Duration::from_secs(3)).await;
    helm_ok(&[
        "upgrade",
        RELEASE,
        &chart,
        "-n",
        NAMESPACE,
        "--set",
        "image.tag=0.1.1",
        "--wait",
        "--timeout",
        "120s",
    ])
    .await?;
    let upgraded_pods = operator_pods_ready(client).await?;
    assert!(
        upgraded_pods.iter().all(|p| !first_pods.contains(p)),
        "the upgrade replaced every operator pod: {first_pods:?} -> {upgraded_pods:?}"
    );
    let report = play.await.map_err(|e| failure("bots", e))??;
    assert_eq!(report.joined, 2, "{:?}", report.refused);
    assert!(
        report.bots.iter().all(|b| b.results.is_some()),
        "the match must finish with results for every player: {}",
        report.summary()
    );
    assert_eq!(
        report.inconsistent(),
        0,
        "snapshots stayed consistent: {}",
        report.summary()
    );

    // The allocated servers kept their pods; the allocation of the one that did not finish its
    // match yet is unchanged; the others are still healthy, heartbeating to the new leader.
    let after = pod_uids(&ns).await?;
    for (name, uid) in &before {
        assert_eq!(
            after.get(name),
            Some(uid),
            "pod {name} was replaced during the upgrade"
        );
    }
    let token_server = servers.get(&token_answer.game_server).await?;
    let token_state = token_server.status.as_ref().map(|s| s.state);
    assert_eq!(
        token_state,
        Some(GameServerState::Allocated),
        "the idle allocated server stays allocated"
    );
    assert_eq!(
        allocation_id(&token_server),
        token_allocation,
        "and keeps its allocation"
    );
    let unhealthy: Vec<String> = servers
        .list(&ListParams::default())
        .await?
        .items
        .iter()
        .filter(|s| s.status.as_ref().is_some_and(|st| st.state.is_failed()))
        .map(|s| s.name_any())
        .collect();
    assert!(
        unhealthy.is_empty(),
        "servers failed across the upgrade: {unhealthy:?}"
    );

    // The new operator version allocates too.
    by_certificate
        .allocate_with_retry(
            &ns.name,
            &AllocationRequest {
                session_id: Some("after-upgrade".into()),
                ..request.clone()
            },
            WAIT,
        )
        .await
        .map_err(|e| failure("allocation after the upgrade", e))?;
    ns.delete().await?;
    Ok(())
}
