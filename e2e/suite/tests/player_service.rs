//! The player service as the Helm chart installs it on the local cluster: `player.enabled=true`
//! with the storage URLs `./x test` exports (FerretDB, Redis and OpenSearch from
//! `e2e/storage/up.sh`; pods are local processes on 127.x.y.z, so they reach those loopback
//! URLs), first from values and, after an upgrade, from a Secret (`player.storageSecret`). Two replicas serve players through the `flotilla-player` Service's ClusterIP, which
//! the pod runner's service proxy relays, one connection to each ready pod in turn. A game
//! server reports a match with the service key from the Secret the chart generated; an upgrade
//! rolls the pods but keeps the Secret, so an access token issued before it still works; an
//! uninstall leaves no player pod.
//!
//! The chart also installs the operator, whose cluster-wide RBAC objects have fixed names: this
//! suite must not run at the same time as `chart.rs` (cargo runs test binaries one at a time).

use std::panic::AssertUnwindSafe;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use flotilla_e2e::{
    Result, chart_dir, client, eventually, failure, helm_ok, helm_uninstall, is_ready, pod_ip,
};
use futures::FutureExt;
use k8s_openapi::api::core::v1::{Namespace, Pod, Secret, Service};
use kube::api::{ListParams, Patch, PatchParams};
use kube::{Api, Client, ResourceExt};
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

type TestResult = Result<()>;

const RELEASE: &str = "flotilla-players";
const NAMESPACE: &str = "flotilla-players";
const PLAYER_PODS: &str = "app.kubernetes.io/instance=flotilla-players,app.kubernetes.io/component=player";
const WAIT: Duration = Duration::from_secs(120);
const METRICS_PORT: u16 = 9090;

/// A storage server's URL from the environment `./x test` loads from `e2e/storage/up.sh`.
fn storage_url(name: &str) -> String {
    std::env::var(name).unwrap_or_else(|_| {
        panic!(
            "{name} is not set: start the storage servers with e2e/storage/up.sh --dir DIR and load \
             DIR/env (set -a; source DIR/env; set +a), as ./x test does"
        )
    })
}

/// The Secret the storage URLs come from (`player.storageSecret`): URLs may carry passwords.
const STORAGE_SECRET: &str = "flotilla-player-storage";

/// The chart's values for this test: its own database and key prefix, so runs never share data,
/// and one operator replica (the operator is not what is tested here).
fn values(suffix: &str) -> Value {
    json!({
        "operator": {"replicas": 1},
        "player": {
            "enabled": true,
            "mongo": {"url": storage_url("FLOTILLA_MONGO_URL"), "database": format!("chart{suffix}")},
            "redis": {"url": storage_url("FLOTILLA_REDIS_URL")},
            "opensearch": {"url": storage_url("FLOTILLA_OPENSEARCH_URL")},
            "namespace": format!("chart{suffix}"),
        },
    })
}

/// The namespace and, in it, the Secret with the storage URLs, as an operator of the platform
/// would create them.
async fn storage_secret(client: &Client) -> TestResult {
    let apply = PatchParams::apply("flotilla-e2e").force();
    Api::<Namespace>::all(client.clone())
        .patch(
            NAMESPACE,
            &apply,
            &Patch::Apply(json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": NAMESPACE}})),
        )
        .await?;
    let secret = json!({
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {"name": STORAGE_SECRET, "namespace": NAMESPACE},
        "stringData": {
            "mongo-url": storage_url("FLOTILLA_MONGO_URL"),
            "redis-url": storage_url("FLOTILLA_REDIS_URL"),
            "opensearch-url": storage_url("FLOTILLA_OPENSEARCH_URL"),
        },
    });
    Api::<Secret>::namespaced(client.clone(), NAMESPACE)
        .patch(STORAGE_SECRET, &apply, &Patch::Apply(secret))
        .await?;
    Ok(())
}

/// The player API through one base URL, a new connection per request: the service proxy picks
/// the pod per connection, so requests spread over the replicas.
struct PlayerApi {
    http: reqwest::Client,
    base: String,
}

impl PlayerApi {
    fn new(base: String) -> Result<Self> {
        let http = reqwest::Client::builder()
            .pool_max_idle_per_host(0)
            .timeout(Duration::from_secs(15))
            .build()?;
        Ok(Self { http, base })
    }

    async fn call(
        &self,
        method: Method,
        path: &str,
        bearer: Option<&str>,
        body: Option<Value>,
    ) -> Result<(StatusCode, Value)> {
        let mut request = self.http.request(method, format!("{}{path}", self.base));
        if let Some(token) = bearer {
            request = request.bearer_auth(token);
        }
        if let Some(body) = body {
            request = request.json(&body);
        }
        let response = request.send().await?;
        let status = response.status();
        let text = response.text().await?;
        Ok((status, serde_json::from_str(&text).unwrap_or(Value::String(text))))
    }

    /// Signs in by device id (creating the account); the player's id and access token.
    async fn sign_in(&self, device: &str) -> Result<(String, String)> {
        let (status, body) = self
            .call(Method::POST, "/v1/auth/device", None, Some(json!({"id": device})))
            .await?;
        assert_eq!(
            status,
            StatusCode::CREATED,
            "device sign-in creates the account: {body}"
        );
        let field = |value: &Value| value.as_str().map(str::to_owned);
        let id = field(&body["player"]["id"]).ok_or_else(|| failure("sign-in", format!("no id: {body}")))?;
        let token =
            field(&body["accessToken"]).ok_or_else(|| failure("sign-in", format!("no token: {body}")))?;
        Ok((id, token))
    }

    /// `GET path` as a signed-in player, expecting 200; the body.
    async fn get(&self, path: &str, token: &str) -> Result<Value> {
        let (status, body) = self.call(Method::GET, path, Some(token), None).await?;
        assert_eq!(status, StatusCode::OK, "GET {path}: {body}");
        Ok(body)
    }
}

/// Exactly two live player pods, both Ready, none of them in `not`.
async fn player_pods_ready(client: &Client, not: &[String]) -> Result<Vec<Pod>> {
    let pods: Api<Pod> = Api::namespaced(client.clone(), NAMESPACE);
    eventually(WAIT, "exactly two Ready player pods", || async {
        let list = pods.list(&ListParams::default().labels(PLAYER_PODS)).await?;
        let all_new = list.items.iter().all(|p| !not.contains(&p.name_any()));
        let live: Vec<Pod> = list
            .items
            .into_iter()
            .filter(|p| p.metadata.deletion_timestamp.is_none())
            .collect();
        Ok((all_new && live.len() == 2 && live.iter().all(is_ready)).then_some(live))
    })
    .await
}

/// The ClusterIP and port of the `flotilla-player` Service, as a base URL.
async fn service_url(client: &Client) -> Result<String> {
    let service = Api::<Service>::namespaced(client.clone(), NAMESPACE)
        .get("flotilla-player")
        .await?;
    let spec = service.spec.unwrap_or_default();
    let port = spec.ports.unwrap_or_default().first().map_or(0, |p| p.port);
    let ip = spec
        .cluster_ip
        .ok_or_else(|| failure("Service flotilla-player", "no ClusterIP"))?;
    Ok(format!("http://{ip}:{port}"))
}

/// The chart-generated Secret's data, key by key.
async fn player_secret(client: &Client) -> Result<Vec<(String, Vec<u8>)>> {
    let secret = Api::<Secret>::namespaced(client.clone(), NAMESPACE)
        .get("flotilla-player")
        .await?;
    Ok(secret
        .data
        .unwrap_or_default()
        .into_iter()
        .map(|(key, value)| (key, value.0))
        .collect())
}

/// API requests a replica has answered, from its own `/metrics` on the pod's address.
async fn requests_served(http: &reqwest::Client, pod: &Pod) -> Result<f64> {
    let ip = pod_ip(pod).ok_or_else(|| failure(&pod.name_any(), "no pod IP"))?;
    let text = http
        .get(format!("http://{ip}:{METRICS_PORT}/metrics"))
        .send()
        .await?
        .error_for_status()?
        .text()
        .await?;
    Ok(text
        .lines()
        .filter(|line| line.starts_with("flotilla_player_http_requests_total{"))
        .filter_map(|line| line.rsplit(' ').next()?.parse::<f64>().ok())
        .sum())
}

/// Reads the player's own profile with `token` through the Service until every pod in `pods`
/// has answered API requests (each one's own counters, read on the pod's address): each read
/// must succeed, so every replica accepts the token. The requests each pod served.
async fn both_serve(api: &PlayerApi, pods: &[Pod], player: &str, token: &str) -> Result<Vec<f64>> {
    let metrics = reqwest::Client::builder()
        .timeout(Duration::from_secs(5))
        .build()?;
    eventually(
        Duration::from_secs(30),
        "every player replica to serve API requests",
        || async {
            let me = api.get("/v1/players/me", token).await?;
            assert_eq!(me["id"], player, "{me}");
            let mut served = Vec::new();
            for pod in pods {
                served.push(requests_served(&metrics, pod).await?);
            }
            Ok(served.iter().all(|&n| n > 0.0).then_some(served))
        },
    )
    .await
}

#[tokio::test]
async fn the_chart_runs_two_player_replicas_behind_a_service_and_an_upgrade_keeps_tokens_valid() -> TestResult
{
    let started = std::time::Instant::now();
    let client = client().await?;
    let suffix = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_err(|e| failure("clock", e))?
        .as_millis()
        .to_string();
    let values_file = std::env::temp_dir().join(format!("flotilla-player-values-{suffix}.json"));
    std::fs::write(&values_file, values(&suffix).to_string()).map_err(|e| failure("values file", e))?;
    let values_path = values_file.display().to_string();

    // Uninstall whatever happened, a failed assertion included, so that no operator or player
    // pods are left behind for the suites that run after this one.
    let result = AssertUnwindSafe(install_play_upgrade(&client, &values_path, &suffix))
        .catch_unwind()
        .await;
    let uninstalled = helm_uninstall(RELEASE, NAMESPACE).await;
    let _ = std::fs::remove_file(&values_file);
    match result {
        Ok(result) => result?,
        Err(panic) => std::panic::resume_unwind(panic),
    }
    uninstalled?;
    let pods: Api<Pod> = Api::namespaced(client.clone(), NAMESPACE);
    eventually(WAIT, "no player pods after helm uninstall", || async {
        let left = pods.list(&ListParams::default().labels(PLAYER_PODS)).await?;
        Ok(left.items.is_empty().then_some(()))
    })
    .await?;
    eprintln!("player service chart test: {:?}", started.elapsed());
    Ok(())
}

async fn install_play_upgrade(client: &Client, values: &str, suffix: &str) -> TestResult {
    storage_secret(client).await?;
    let chart = chart_dir();
    let notes = helm_ok(&[
        "install",
        RELEASE,
        &chart,
        "-n",
        NAMESPACE,
        "--create-namespace",
        "-f",
        values,
        "--wait",
        "--timeout",
        "180s",
    ])
    .await?;
    assert!(
        notes.contains(&format!("http://flotilla-player.{NAMESPACE}.svc/v1/")),
        "the notes say where the player API is: {notes}"
    );
    let first_pods = player_pods_ready(client, &[]).await?;
    for pod in &first_pods {
        let spec = pod.spec.clone().unwrap_or_default();
        let volumes = spec.volumes.unwrap_or_default();
        assert!(
            volumes.iter().all(|v| !v.name.starts_with("kube-api-access")),
            "no Kubernetes API token is mounted into {}: {volumes:?}",
            pod.name_any()
        );
    }

    // Through the Service: it may take the proxy a moment to listen on a new ClusterIP.
    let api = PlayerApi::new(service_url(client).await?)?;
    eventually(WAIT, "the player API through the Service", || async {
        Ok(
            match api.call(Method::GET, "/v1/openapi.json", None, None).await {
                Ok((status, _)) if status == StatusCode::OK => Some(()),
                _ => None,
            },
        )
    })
    .await?;
    let (ann, ann_token) = api.sign_in(&format!("device-ann-{suffix}")).await?;
    let me = api.get("/v1/players/me", &ann_token).await?;
    assert_eq!(me["id"], ann.as_str(), "{me}");
    let (ben, ben_token) = api.sign_in(&format!("device-ben-{suffix}")).await?;
    assert_ne!(ann, ben);
    let profile = api.get(&format!("/v1/players/{ann}"), &ben_token).await?;
    assert_eq!(profile["id"], ann.as_str(), "{profile}");
    assert_eq!(profile["username"], me["username"], "{profile}");

    // A game server reports the match with the service key from the chart's Secret; a player's
    // token is no service key.
    let secret = player_secret(client).await?;
    let service_key = secret
        .iter()
        .find(|(key, _)| key == "service-key")
        .map(|(_, value)| String::from_utf8_lossy(value).into_owned())
        .ok_or_else(|| failure("Secret flotilla-player", "no service-key"))?;
    let report = json!({
        "server": "arena-e2e",
        "players": [
            {"id": ann, "score": 10, "placement": 1},
            {"id": ben, "score": 4, "placement": 2},
        ],
    });
    let path = format!("/v1/matches/match-{suffix}/results");
    let (status, body) = api
        .call(Method::POST, &path, Some(&ann_token), Some(report.clone()))
        .await?;
    assert_eq!(
        status,
        StatusCode::UNAUTHORIZED,
        "a player token reported a match: {body}"
    );
    let (status, body) = api
        .call(Method::POST, &path, Some(&service_key), Some(report))
        .await?;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    let stats = api.get(&format!("/v1/players/{ann}/stats"), &ben_token).await?;
    assert_eq!(stats, json!({"matches": 1, "wins": 1}));

    let served = both_serve(&api, &first_pods, &ann, &ann_token).await?;
    eprintln!("API requests per replica before the upgrade: {served:?}");

    // An upgrade replaces both pods, now reading the storage URLs from a Secret, and keeps the
    // key Secret: the token issued before still works.
    let first_names: Vec<String> = first_pods.iter().map(|p| p.name_any()).collect();
    helm_ok(&[
        "upgrade",
        RELEASE,
        &chart,
        "-n",
        NAMESPACE,
        "-f",
        values,
        "--set",
        "player.image.tag=0.1.1",
        // From here on the URLs come from the Secret instead of the values.
        "--set",
        &format!("player.storageSecret={STORAGE_SECRET}"),
        "--set",
        "player.mongo.url=,player.redis.url=,player.opensearch.url=",
        "--wait",
        "--timeout",
        "180s",
    ])
    .await?;
    let upgraded = player_pods_ready(client, &first_names).await?;
    let upgraded_names: Vec<String> = upgraded.iter().map(|p| p.name_any()).collect();
    eprintln!("player pods {first_names:?} -> {upgraded_names:?}");
    let served = both_serve(&api, &upgraded, &ann, &ann_token).await?;
    eprintln!("API requests per replica after the upgrade, with the token from before: {served:?}");
    // Compared without printing: the values are keys.
    assert!(
        player_secret(client).await? == secret,
        "the upgrade replaced the keys in Secret flotilla-player"
    );
    let stats = api.get(&format!("/v1/players/{ben}/stats"), &ben_token).await?;
    assert_eq!(stats, json!({"matches": 1, "wins": 0}));
    Ok(())
}
