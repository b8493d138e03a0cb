//! Helpers for the end-to-end suites: a client for the cluster the test command started, a
//! namespace per test, and waits with deadlines that fail with a message saying what was
//! awaited. The suites need a running cluster: `./x test` starts one and sets
//! `FLOTILLA_KUBECONFIG`.

use std::{future::Future, time::Duration};

use k8s_openapi::api::core::v1::{Namespace, Pod};
use kube::{
    Api, Client, Config, ResourceExt,
    api::{DeleteParams, ListParams, PostParams},
    config::{KubeConfigOptions, Kubeconfig},
};

pub type Result<T, E = Error> = std::result::Result<T, E>;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("FLOTILLA_KUBECONFIG is not set: run the suites with ./x test, which starts a cluster")]
    NoCluster,
    #[error("kubeconfig {0}: {1}")]
    Kubeconfig(String, kube::config::KubeconfigError),
    #[error("kubernetes api: {0}")]
    Kube(#[from] kube::Error),
    #[error("timed out after {0:?} waiting for {1}")]
    Timeout(Duration, String),
    #[error("http: {0}")]
    Http(#[from] reqwest::Error),
    #[error("manifest {0}: {1}")]
    Manifest(String, String),
    #[error("game: {0}")]
    Game(#[from] flotilla_gameserver::Error),
    #[error("{0}: {1}")]
    Command(String, String),
}

/// A client for the cluster under test.
pub async fn client() -> Result<Client> {
    let path = std::env::var("FLOTILLA_KUBECONFIG").map_err(|_| Error::NoCluster)?;
    let kubeconfig = Kubeconfig::read_from(&path).map_err(|e| Error::Kubeconfig(path.clone(), e))?;
    let config = Config::from_custom_kubeconfig(kubeconfig, &KubeConfigOptions::default())
        .await
        .map_err(|e| Error::Kubeconfig(path, e))?;
    Ok(Client::try_from(config)?)
}

/// A namespace of its own for one test, so tests run in parallel without seeing each other.
#[derive(Clone)]
pub struct TestNamespace {
    pub client: Client,
    pub name: String,
}

impl TestNamespace {
    pub async fn create(prefix: &str) -> Result<Self> {
        let client = client().await?;
        let namespaces: Api<Namespace> = Api::all(client.clone());
        let mut ns = Namespace::default();
        ns.metadata.generate_name = Some(format!("{prefix}-"));
        let created = namespaces.create(&PostParams::default(), &ns).await?;
        let name = created.name_any();
        // Pods are refused until the namespace's default ServiceAccount exists.
        let accounts: Api<k8s_openapi::api::core::v1::ServiceAccount> =
            Api::namespaced(client.clone(), &name);
        eventually(Duration::from_secs(30), "the default ServiceAccount", || async {
            Ok(accounts.get_opt("default").await?.map(|_| ()))
        })
        .await?;
        Ok(TestNamespace { client, name })
    }

    pub fn api<K>(&self) -> Api<K>
    where
        K: kube::Resource<Scope = k8s_openapi::NamespaceResourceScope>,
        <K as kube::Resource>::DynamicType: Default,
    {
        Api::namespaced(self.client.clone(), &self.name)
    }

    /// Pods matching a label selector.
    pub async fn pods(&self, selector: &str) -> Result<Vec<Pod>> {
        Ok(self
            .api::<Pod>()
            .list(&ListParams::default().labels(selector))
            .await?
            .items)
    }

    /// Deletes the namespace; the namespace controller and garbage collector do the rest.
    pub async fn delete(&self) -> Result<()> {
        let namespaces: Api<Namespace> = Api::all(self.client.clone());
        namespaces.delete(&self.name, &DeleteParams::default()).await?;
        Ok(())
    }
}

/// Polls `check` every 100 ms until it returns `Some`, or fails after `limit` naming `what`.
pub async fn eventually<T, F, Fut>(limit: Duration, what: &str, mut check: F) -> Result<T>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<Option<T>>>,
{
    let deadline = tokio::time::Instant::now() + limit;
    loop {
        if let Some(value) = check().await? {
            return Ok(value);
        }
        if tokio::time::Instant::now() >= deadline {
            return Err(Error::Timeout(limit, what.to_owned()));
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// The pod's phase, or "" before it has one.
pub fn phase(pod: &Pod) -> &str {
    pod.status.as_ref().and_then(|s| s.phase.as_deref()).unwrap_or("")
}

/// Whether the pod's Ready condition is True.
pub fn is_ready(pod: &Pod) -> bool {
    pod.status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .is_some_and(|c| c.iter().any(|c| c.type_ == "Ready" && c.status == "True"))
}

pub fn pod_ip(pod: &Pod) -> Option<String> {
    pod.status.as_ref()?.pod_ip.clone()
}

/// Whether a process with this pid is alive (and not a zombie).
pub fn process_alive(pid: u32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/status")) {
        Ok(status) => !status.lines().any(|l| l.starts_with("State:") && l.contains('Z')),
        Err(_) => false,
    }
}

/// The Kubernetes version the cluster scripts build, from `e2e/cluster/versions.env`.
pub fn expected_kubernetes_version() -> &'static str {
    include_str!("../../cluster/versions.env")
        .lines()
        .find_map(|l| l.strip_prefix("K8S_VERSION="))
        .unwrap_or("unknown")
}

/// Installs Flotilla's CRDs from the committed `crds/*.yaml` (what users apply) with
/// server-side apply, and waits until the API serves them. Safe to call from many tests.
pub async fn install_crds(client: &Client) -> Result<()> {
    use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
    use kube::api::{Patch, PatchParams};

    let crds: Api<CustomResourceDefinition> = Api::all(client.clone());
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../crds");
    let mut names = Vec::new();
    for file in [
        "gameserverfleets.yaml",
        "gameservers.yaml",
        "fleetautoscalers.yaml",
    ] {
        let path = dir.join(file);
        let text = std::fs::read_to_string(&path)
            .map_err(|e| Error::Manifest(path.display().to_string(), e.to_string()))?;
        let crd: CustomResourceDefinition = serde_yaml_ng::from_str(&text)
            .map_err(|e| Error::Manifest(path.display().to_string(), e.to_string()))?;
        let name = crd.name_any();
        crds.patch(
            &name,
            &PatchParams::apply("flotilla-e2e").force(),
            &Patch::Apply(&crd),
        )
        .await?;
        names.push(name);
    }
    for name in names {
        eventually(
            Duration::from_secs(30),
            &format!("CRD {name} to be established"),
            || async {
                let crd = crds.get(&name).await?;
                let established = crd
                    .status
                    .and_then(|s| s.conditions)
                    .is_some_and(|c| c.iter().any(|c| c.type_ == "Established" && c.status == "True"));
                Ok(established.then_some(()))
            },
        )
        .await?;
    }
    Ok(())
}

/// Reads a YAML manifest of the repository, relative to its root.
pub fn manifest<T: serde::de::DeserializeOwned>(path: &str) -> Result<T> {
    let full = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../..")
        .join(path);
    let text = std::fs::read_to_string(&full).map_err(|e| Error::Manifest(path.to_owned(), e.to_string()))?;
    serde_yaml_ng::from_str(&text).map_err(|e| Error::Manifest(path.to_owned(), e.to_string()))
}

/// An operator process watching one namespace, stopped when dropped. Its SDK endpoint listens
/// on a free loopback port; its log goes to `$CARGO_TARGET_DIR/e2e-logs/operator-<namespace>.log`.
pub struct Operator {
    child: tokio::process::Child,
    pub sdk_url: String,
    /// Where `/metrics`, `/healthz` and `/readyz` are served.
    pub metrics_url: String,
    /// The allocation API.
    pub allocation_url: String,
}

impl Operator {
    pub fn start(namespace: &str) -> Result<Self> {
        Self::start_with(namespace, &[])
    }

    /// An operator with extra command-line arguments.
    pub fn start_with(namespace: &str, extra: &[&str]) -> Result<Self> {
        let target = std::env::var("CARGO_TARGET_DIR").unwrap_or_else(|_| "target".into());
        let binary = std::env::var("FLOTILLA_OPERATOR_BIN")
            .unwrap_or_else(|_| format!("{target}/debug/flotilla-operator"));
        let kubeconfig = std::env::var("FLOTILLA_KUBECONFIG").map_err(|_| Error::NoCluster)?;
        let io = |what: &str, e: std::io::Error| Error::Manifest(what.to_owned(), e.to_string());
        let logs = std::path::Path::new(&target).join("e2e-logs");
        std::fs::create_dir_all(&logs).map_err(|e| io("e2e-logs", e))?;
        let log = std::fs::File::create(logs.join(format!("operator-{namespace}.log")))
            .map_err(|e| io("log", e))?;
        let log_err = log.try_clone().map_err(|e| io("log", e))?;
        let (port, metrics_port, allocation_port) = (free_port()?, free_port()?, free_port()?);
        let sdk_url = format!("http://127.0.0.1:{port}");
        let metrics_url = format!("http://127.0.0.1:{metrics_port}");
        let child = tokio::process::Command::new(&binary)
            .args([
                "--namespace",
                namespace,
                "--sdk-addr",
                &format!("127.0.0.1:{port}"),
                "--sdk-url",
                &sdk_url,
            ])
            // The test's own lease, short so that a failover test need not wait long.
            .args(["--lease-namespace", namespace, "--lease-seconds", "4"])
            .args(["--metrics-addr", &format!("127.0.0.1:{metrics_port}")])
            .args(["--allocation-addr", &format!("127.0.0.1:{allocation_port}")])
            .args(extra)
            .env("KUBECONFIG", kubeconfig)
            .env("RUST_LOG", "info,kube=warn,flotilla_operator::allocation=debug")
            .stdout(log)
            .stderr(log_err)
            .kill_on_drop(true)
            .spawn()
            .map_err(|e| io(&binary, e))?;
        Ok(Operator {
            child,
            sdk_url,
            metrics_url,
            allocation_url: format!("http://127.0.0.1:{allocation_port}"),
        })
    }

    /// The operator's process id, to kill it like a crash would.
    pub fn pid(&self) -> Option<u32> {
        self.child.id()
    }
}

/// A free loopback port, below the kernel's ephemeral range (32768-60999): a port taken from that
/// range is soon reused as the local port of one of the many outgoing connections on this
/// machine, and a server's later bind then fails.
pub fn free_port() -> Result<u16> {
    use std::hash::{BuildHasher, Hasher};
    for _ in 0..100 {
        let mut hasher = std::collections::hash_map::RandomState::new().build_hasher();
        hasher.write_u32(std::process::id());
        let port = 20_000 + (hasher.finish() % 12_000) as u16;
        if std::net::TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return Ok(port);
        }
    }
    Err(failure("free port", "no free port in 20000-31999"))
}

/// The player service (`flotilla-player serve`, the debug build) as a local process on the
/// storage servers `./x test` started (`FLOTILLA_MONGO_URL`, `_REDIS_URL`, `_OPENSEARCH_URL`),
/// with a database and key prefix of its own. Pods are local processes too, so game servers
/// reach it on its loopback URL.
pub struct PlayerService {
    /// Killed when the fixture is dropped.
    _child: tokio::process::Child,
    /// `http://127.0.0.1:port`, the HTTP API.
    pub url: String,
    /// What game servers present to report match results.
    pub service_key: String,
}

impl PlayerService {
    pub async fn start(name: &str) -> Result<Self> {
        for var in [
            "FLOTILLA_MONGO_URL",
            "FLOTILLA_REDIS_URL",
            "FLOTILLA_OPENSEARCH_URL",
        ] {
            if std::env::var(var).is_err() {
                return Err(failure(
                    var,
                    "not set: start the storage servers with e2e/storage/up.sh and load its env, as ./x test does",
                ));
            }
        }
        let target = std::env::var("CARGO_TARGET_DIR").unwrap_or_else(|_| "target".into());
        let binary = format!("{target}/debug/flotilla-player");
        let key = tokio::process::Command::new(&binary)
            .arg("generate-token-key")
            .output()
            .await
            .map_err(|e| failure(&binary, e))?;
        let token_key = String::from_utf8_lossy(&key.stdout).trim().to_owned();
        let logs = std::path::Path::new(&target).join("e2e-logs");
        std::fs::create_dir_all(&logs).map_err(|e| failure("e2e-logs", e))?;
        let log =
            std::fs::File::create(logs.join(format!("player-{name}.log"))).map_err(|e| failure("log", e))?;
        let log_err = log.try_clone().map_err(|e| failure("log", e))?;
        let (port, metrics_port) = (free_port()?, free_port()?);
        let service_key = format!("e2e-service-key-{name}");
        let database = name.replace('-', "_");
        let child = tokio::process::Command::new(&binary)
            .arg("serve")
            .args(["--addr", &format!("127.0.0.1:{port}")])
            .args(["--metrics-addr", &format!("127.0.0.1:{metrics_port}")])
            .args([
                "--migrate",
                "true",
                "--database",
                &database,
                "--namespace",
                &database,
            ])
            .args(["--token-key", &token_key, "--service-key", &service_key])
            .env("RUST_LOG", "info")
            .stdout(log)
            .stderr(log_err)
            .kill_on_drop(true)
            .spawn()
            .map_err(|e| failure(&binary, e))?;
        let ready = format!("http://127.0.0.1:{metrics_port}/readyz");
        let http = reqwest::Client::new();
        eventually(
            Duration::from_secs(60),
            "the player service to be ready",
            || async {
                Ok(http
                    .get(&ready)
                    .send()
                    .await
                    .is_ok_and(|r| r.status().is_success())
                    .then_some(()))
            },
        )
        .await?;
        Ok(Self {
            _child: child,
            url: format!("http://127.0.0.1:{port}"),
            service_key,
        })
    }

    /// Signs in by device id, creating the account: the player's id and access token.
    pub async fn sign_in(&self, device: &str) -> Result<(String, String)> {
        let body: serde_json::Value = reqwest::Client::new()
            .post(format!("{}/v1/auth/device", self.url))
            .json(&serde_json::json!({"id": device}))
            .send()
            .await?
            .error_for_status()?
            .json()
            .await?;
        let field = |value: &serde_json::Value| value.as_str().map(str::to_owned);
        match (field(&body["player"]["id"]), field(&body["accessToken"])) {
            (Some(id), Some(token)) => Ok((id, token)),
            _ => Err(failure("device sign-in", body)),
        }
    }
}

/// What the fixture's fleet runs in each pod.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Workload {
    /// The reference QUIC game server, with these environment variables: it reports Ready and
    /// heartbeats through the SDK, and trusts the operator's token-signing key.
    GameServer(Vec<(&'static str, String)>),
    /// `flotilla/testpod`, an HTTP server that never calls the SDK, for tests that play the
    /// game server's part themselves or need servers that stay not-ready.
    Passive,
}

/// A namespace with the CRDs, its own operator, and the sample fleet `arena` running `workload`.
/// `health` replaces the sample's health settings.
pub struct FleetFixture {
    pub ns: TestNamespace,
    pub operator: Operator,
    pub fleets: Api<flotilla_api::GameServerFleet>,
    pub servers: Api<flotilla_api::GameServer>,
}

impl FleetFixture {
    pub async fn start(prefix: &str, replicas: i32, health: flotilla_api::Health) -> Result<Self> {
        Self::start_with(prefix, replicas, health, Workload::Passive).await
    }

    pub async fn start_with(
        prefix: &str,
        replicas: i32,
        health: flotilla_api::Health,
        workload: Workload,
    ) -> Result<Self> {
        let ns = TestNamespace::create(prefix).await?;
        install_crds(&ns.client).await?;
        let operator = Operator::start(&ns.name)?;
        let mut fleet: flotilla_api::GameServerFleet = manifest("manifests/examples/fleet.yaml")?;
        fleet.spec.replicas = replicas;
        fleet.spec.template.spec.health = health;
        if let Some(pod) = fleet.spec.template.spec.template.spec.as_mut() {
            let container = &mut pod.containers[0];
            match workload {
                Workload::GameServer(env) => {
                    let env = env
                        .into_iter()
                        .map(|(name, value)| k8s_openapi::api::core::v1::EnvVar {
                            name: name.into(),
                            value: Some(value),
                            ..Default::default()
                        });
                    container.env = Some(env.collect());
                }
                Workload::Passive => {
                    container.image = Some("flotilla/testpod".into());
                    container.args = Some(vec!["--port".into(), "7777".into()]);
                }
            }
        }
        let fleets: Api<flotilla_api::GameServerFleet> = ns.api();
        fleets.create(&PostParams::default(), &fleet).await?;
        Ok(FleetFixture {
            servers: ns.api(),
            fleets,
            ns,
            operator,
        })
    }

    /// Health checking off: for tests whose servers never send heartbeats.
    pub fn no_health() -> flotilla_api::Health {
        flotilla_api::Health {
            disabled: true,
            ..Default::default()
        }
    }

    /// The fleet's servers that are not being deleted.
    pub async fn live_servers(&self) -> Result<Vec<flotilla_api::GameServer>> {
        let selector = format!("{}=arena", flotilla_api::labels::FLEET);
        Ok(self
            .servers
            .list(&ListParams::default().labels(&selector))
            .await?
            .items
            .into_iter()
            .filter(|s| s.metadata.deletion_timestamp.is_none())
            .collect())
    }

    /// Waits for exactly `count` live servers, each placed on a node with an address.
    pub async fn scheduled(&self, count: usize) -> Result<Vec<flotilla_api::GameServer>> {
        eventually(
            Duration::from_secs(60),
            &format!("{count} scheduled game servers"),
            || async {
                let servers = self.live_servers().await?;
                let placed = servers.iter().all(|s| {
                    s.status.as_ref().is_some_and(|st| {
                        st.address.is_some()
                            && st.node_name.is_some()
                            && st.state != flotilla_api::GameServerState::Creating
                    })
                });
                Ok((servers.len() == count && placed).then_some(servers))
            },
        )
        .await
    }

    /// Waits until at least `count` live servers are Ready; returns the Ready ones.
    pub async fn ready(&self, count: usize) -> Result<Vec<flotilla_api::GameServer>> {
        let ready = flotilla_api::GameServerState::Ready;
        eventually(
            Duration::from_secs(60),
            &format!("{count} Ready servers"),
            || async {
                let live = self.live_servers().await?;
                let servers: Vec<_> = live
                    .into_iter()
                    .filter(|s| s.status.as_ref().map(|st| st.state) == Some(ready))
                    .collect();
                Ok((servers.len() >= count).then_some(servers))
            },
        )
        .await
    }

    /// Waits until the server `name` is in `state`.
    pub async fn in_state(
        &self,
        name: &str,
        state: flotilla_api::GameServerState,
    ) -> Result<flotilla_api::GameServer> {
        eventually(
            Duration::from_secs(60),
            &format!("{name} to be {state}"),
            || async {
                let server = self.servers.get_opt(name).await?;
                Ok(server.filter(|s| s.status.as_ref().map(|st| st.state) == Some(state)))
            },
        )
        .await
    }
}

/// A redis-server on a free loopback port for the test's game servers (match checkpoints),
/// killed when dropped.
pub struct Redis {
    child: std::process::Child,
    pub url: String,
}

impl Redis {
    pub fn start() -> Result<Self> {
        let io = |e: std::io::Error| Error::Manifest("redis-server".into(), e.to_string());
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .map_err(io)?
            .port();
        let child = std::process::Command::new("redis-server")
            .args([
                "--port",
                &port.to_string(),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
            ])
            .stdout(std::process::Stdio::null())
            .spawn()
            .map_err(io)?;
        Ok(Self {
            child,
            url: format!("redis://127.0.0.1:{port}"),
        })
    }
}

impl Drop for Redis {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// What a matchmaker's ServiceAccount may do, for [`matchmaker_token`].
#[derive(Debug, Clone, Copy)]
pub enum Grant<'a> {
    /// Nothing: its allocations are refused.
    Nothing,
    /// A Role of its own allowing `create` on `gameserverallocations.flotilla.dev`.
    OwnRole,
    /// A RoleBinding to this ClusterRole (the chart's `flotilla-allocator-client`).
    ClusterRole(&'a str),
}

/// A ServiceAccount `name` for a matchmaker in `ns`, with `grant`, and a token for it with the
/// allocation API's audience.
pub async fn matchmaker_token(ns: &TestNamespace, name: &str, grant: Grant<'_>) -> Result<String> {
    use k8s_openapi::api::authentication::v1::{TokenRequest, TokenRequestSpec};
    use k8s_openapi::api::core::v1::ServiceAccount;
    use k8s_openapi::api::rbac::v1::{PolicyRule, Role, RoleBinding, RoleRef, Subject};
    use kube::api::ObjectMeta;

    let meta = || ObjectMeta {
        name: Some(name.into()),
        ..Default::default()
    };
    let accounts: Api<ServiceAccount> = ns.api();
    let account = ServiceAccount {
        metadata: meta(),
        ..Default::default()
    };
    accounts.create(&PostParams::default(), &account).await?;
    let role_ref = match grant {
        Grant::Nothing => None,
        Grant::OwnRole => {
            let role = Role {
                metadata: meta(),
                rules: Some(vec![PolicyRule {
                    api_groups: Some(vec!["flotilla.dev".into()]),
                    resources: Some(vec!["gameserverallocations".into()]),
                    verbs: vec!["create".into()],
                    ..Default::default()
                }]),
            };
            ns.api::<Role>().create(&PostParams::default(), &role).await?;
            Some(("Role", name))
        }
        Grant::ClusterRole(role) => Some(("ClusterRole", role)),
    };
    if let Some((kind, role)) = role_ref {
        let binding = RoleBinding {
            metadata: meta(),
            role_ref: RoleRef {
                api_group: Some("rbac.authorization.k8s.io".into()),
                kind: kind.into(),
                name: role.into(),
            },
            subjects: Some(vec![Subject {
                kind: "ServiceAccount".into(),
                name: name.into(),
                namespace: Some(ns.name.clone()),
                ..Default::default()
            }]),
        };
        ns.api::<RoleBinding>()
            .create(&PostParams::default(), &binding)
            .await?;
    }
    let request = TokenRequest {
        spec: Some(TokenRequestSpec {
            audiences: Some(vec!["flotilla.dev/allocation".into()]),
            expiration_seconds: Some(3600),
            ..Default::default()
        }),
        ..Default::default()
    };
    let issued = accounts
        .create_token_request(name, &PostParams::default(), &request)
        .await?;
    Ok(issued.status.and_then(|s| s.token).unwrap_or_default())
}

/// A test failure: what failed and why.
pub fn failure(what: &str, message: impl std::fmt::Display) -> Error {
    Error::Command(what.to_owned(), message.to_string())
}

/// The repository's Helm chart, `charts/flotilla`.
pub fn chart_dir() -> String {
    format!("{}/../../charts/flotilla", env!("CARGO_MANIFEST_DIR"))
}

/// Runs the cluster's `helm` (`FLOTILLA_HELM`, set by `./x test`) against the test cluster, with
/// its caches and configuration in a temporary directory rather than `$HOME`.
pub async fn helm(args: &[&str]) -> Result<std::process::Output> {
    let binary = std::env::var("FLOTILLA_HELM").unwrap_or_else(|_| "helm".into());
    let kubeconfig = std::env::var("FLOTILLA_KUBECONFIG").map_err(|_| Error::NoCluster)?;
    let home = std::env::temp_dir().join("flotilla-helm");
    tokio::process::Command::new(&binary)
        .args(args)
        .env("KUBECONFIG", kubeconfig)
        .env("HELM_CACHE_HOME", home.join("cache"))
        .env("HELM_CONFIG_HOME", home.join("config"))
        .env("HELM_DATA_HOME", home.join("data"))
        .output()
        .await
        .map_err(|e| Error::Command(binary, e.to_string()))
}

/// `helm uninstall --wait` of a release: what a chart test runs however it ended, so a failure
/// leaves no cluster-wide operator or service pods for the suites after it.
pub async fn helm_uninstall(release: &str, namespace: &str) -> Result<String> {
    helm_ok(&[
        "uninstall",
        release,
        "-n",
        namespace,
        "--wait",
        "--timeout",
        "90s",
    ])
    .await
}

/// [`helm`], failing with its stderr unless it succeeds; its stdout.
pub async fn helm_ok(args: &[&str]) -> Result<String> {
    let output = helm(args).await?;
    if !output.status.success() {
        return Err(Error::Command(
            format!("helm {}", args.join(" ")),
            String::from_utf8_lossy(&output.stderr).into_owned(),
        ));
    }
    Ok(String::from_utf8_lossy(&output.stdout).into_owned())
}
