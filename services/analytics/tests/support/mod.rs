//! Test deployments of the analytics service on real servers: a durable redis-server started per
//! test (AOF fsynced on every write, as production requires), the player service's Redis from
//! `FLOTILLA_REDIS_URL` (started by `e2e/storage/up.sh`), and a data directory of its own.

#![allow(dead_code)] // each test binary uses its part

use std::net::TcpListener;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use flotilla_analytics::args::ServeArgs;
use flotilla_player::tokens::{AUDIENCE, Claims, ISSUER, TokenKeys};
use reqwest::StatusCode;
use serde_json::Value;

pub const SERVICE_KEY: &str = "test-service-key-0123456789";
pub const ADMIN_KEY: &str = "test-admin-key-0123456789";

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|listener| listener.local_addr())
        .expect("a free port")
        .port()
}

pub fn unique(prefix: &str) -> String {
    static COUNTER: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let n = COUNTER.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    format!(
        "{prefix}{}-{}-{n}",
        std::process::id(),
        flotilla_storage::mongo::now_ms()
    )
}

/// A redis-server of this test's own, with `appendonly yes` and `appendfsync always`.
pub struct DurableRedis {
    pub url: String,
    dir: PathBuf,
    child: Child,
}

impl DurableRedis {
    pub fn start() -> Self {
        let port = free_port();
        let dir = std::env::temp_dir().join(unique("flotilla-analytics-redis-"));
        std::fs::create_dir_all(&dir).expect("redis dir");
        let child = Command::new("redis-server")
            .args(["--bind", "127.0.0.1", "--port", &port.to_string(), "--save", ""])
            .args(["--appendonly", "yes", "--appendfsync", "always"])
            .arg("--dir")
            .arg(&dir)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("redis-server (run e2e/install-packages.sh)");
        let url = format!("redis://127.0.0.1:{port}/");
        let started = Instant::now();
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(
                started.elapsed() < Duration::from_secs(10),
                "redis-server did not start"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        Self { url, dir, child }
    }
}

impl Drop for DurableRedis {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

pub fn token_keys() -> &'static TokenKeys {
    static KEYS: OnceLock<TokenKeys> = OnceLock::new();
    KEYS.get_or_init(|| TokenKeys::new(&TokenKeys::generate_pkcs8().expect("key"), &[]).expect("keys"))
}

/// A player access token signed with the keys the deployment trusts.
pub fn token_for(player: &str) -> String {
    let now = flotilla_storage::mongo::now_ms() / 1000;
    let claims = Claims {
        iss: ISSUER.into(),
        aud: AUDIENCE.into(),
        sub: player.into(),
        sid: unique("session-"),
        iat: now,
        exp: now + 600,
        created: None,
    };
    token_keys().sign(&claims).expect("sign")
}

/// One deployment: a durable Redis, a namespace and a data directory, served by any number of
/// replicas (in-process or as the binary).
pub struct Deployment {
    pub redis: DurableRedis,
    pub data_dir: PathBuf,
    pub namespace: String,
}

impl Deployment {
    pub fn new() -> Self {
        // The service's logs (a 500's cause) show with a failing test's output.
        let _ = tracing_subscriber::fmt()
            .with_test_writer()
            .with_env_filter("warn")
            .try_init();
        Self {
            redis: DurableRedis::start(),
            data_dir: std::env::temp_dir().join(unique("flotilla-analytics-data-")),
            namespace: unique("t"),
        }
    }

    pub fn args(&self, replica: &str, api: u16, ops: u16) -> Vec<(String, String)> {
        let player_redis =
            std::env::var("FLOTILLA_REDIS_URL").expect("FLOTILLA_REDIS_URL (e2e/storage/up.sh)");
        [
            ("FLOTILLA_REDIS_URL", player_redis),
            ("FLOTILLA_ANALYTICS_LOG_REDIS_URL", self.redis.url.clone()),
            ("FLOTILLA_ANALYTICS_DATA_DIR", self.data_dir.display().to_string()),
            ("FLOTILLA_NAMESPACE", self.namespace.clone()),
            ("FLOTILLA_ANALYTICS_GAME", "test".into()),
            ("FLOTILLA_ANALYTICS_SHARDS", "4".into()),
            ("FLOTILLA_ANALYTICS_ADDR", format!("127.0.0.1:{api}")),
            ("FLOTILLA_ANALYTICS_METRICS_ADDR", format!("127.0.0.1:{ops}")),
            ("FLOTILLA_PLAYER_TOKEN_KEYS", token_keys().public_keys().join(",")),
            ("FLOTILLA_SERVICE_KEY", SERVICE_KEY.into()),
            ("FLOTILLA_ANALYTICS_ADMIN_KEY", ADMIN_KEY.into()),
            ("POD_NAME", replica.into()),
            ("FLOTILLA_ANALYTICS_LEASE_SECONDS", "3".into()),
            ("FLOTILLA_ANALYTICS_MAX_EVENTS_PER_MINUTE", "100000".into()),
        ]
        .into_iter()
        .map(|(key, value)| (key.to_owned(), value))
        .collect()
    }

    /// The settings of an in-process replica named `name`.
    pub fn serve_args(&self, name: &str) -> ServeArgs {
        ServeArgs {
            redis_url: std::env::var("FLOTILLA_REDIS_URL").expect("FLOTILLA_REDIS_URL (e2e/storage/up.sh)"),
            log_redis_url: self.redis.url.clone(),
            allow_volatile_log: false,
            data_dir: self.data_dir.clone(),
            namespace: self.namespace.clone(),
            game: "test".into(),
            shards: 4,
            addr: "127.0.0.1:0".parse().expect("address"),
            metrics_addr: "127.0.0.1:0".parse().expect("address"),
            player_token_keys: token_keys().public_keys(),
            player_url: None,
            service_key: SERVICE_KEY.into(),
            admin_key: ADMIN_KEY.into(),
            replica: name.into(),
            max_events_per_minute: 100_000,
            max_event_age_days: 7,
            max_properties: 32,
            max_string_bytes: 256,
            pipeline: true,
            lease_seconds: 3,
            chunk_records: 200,
        }
    }

    /// A replica served in this process.
    pub async fn replica(&self, name: &str) -> Replica {
        self.replica_with(self.serve_args(name)).await
    }

    pub async fn replica_with(&self, args: ServeArgs) -> Replica {
        let (_state, api, _ops) = flotilla_analytics::build(args).await.expect("replica starts");
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let url = format!("http://{}", listener.local_addr().expect("address"));
        tokio::spawn(async move { axum::serve(listener, api).await });
        Replica { url }
    }

    /// The service binary as a child process, listening on `api`.
    pub fn binary(&self, name: &str, api: u16) -> Child {
        Command::new(env!("CARGO_BIN_EXE_flotilla-analytics"))
            .arg("serve")
            .envs(self.args(name, api, free_port()))
            .env("RUST_LOG", "warn")
            .stdout(Stdio::null())
            .spawn()
            .expect("flotilla-analytics")
    }

    pub fn free_port() -> u16 {
        free_port()
    }
}

pub struct Replica {
    pub url: String,
}

fn client() -> &'static reqwest::Client {
    static CLIENT: OnceLock<reqwest::Client> = OnceLock::new();
    CLIENT.get_or_init(|| {
        reqwest::Client::builder()
            .timeout(Duration::from_secs(30))
            .build()
            .expect("client")
    })
}

/// Sends a batch; the status and the answer.
pub async fn send(url: &str, credential: &str, body: &Value) -> (StatusCode, Value) {
    let answer = client()
        .post(format!("{url}/v1/events"))
        .bearer_auth(credential)
        .json(body)
        .send()
        .await
        .expect("send");
    let status = answer.status();
    (status, answer.json().await.unwrap_or(Value::Null))
}

pub async fn admin_get(url: &str, path: &str) -> Value {
    let answer = client()
        .get(format!("{url}{path}"))
        .bearer_auth(ADMIN_KEY)
        .send()
        .await
        .expect("get");
    assert!(answer.status().is_success(), "{path}: {}", answer.status());
    answer.json().await.expect("json")
}

/// Waits until every shard has committed all it was given.
pub async fn caught_up(url: &str, within: Duration) -> Value {
    let started = Instant::now();
    loop {
        let mut last = Value::Null;
        if let Ok(answer) = client()
            .get(format!("{url}/v1/admin/pipeline"))
            .bearer_auth(ADMIN_KEY)
            .send()
            .await
            && let Ok(status) = answer.json::<Value>().await
        {
            let shards = status["shards"].as_array().cloned().unwrap_or_default();
            if status["caughtUp"] == true && shards.iter().all(|shard| !shard["owner"].is_null()) {
                return status;
            }
            last = status;
        }
        assert!(
            started.elapsed() < within,
            "the pipeline did not catch up: {last}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Every exported event of `[from, to)` (JSON lines).
pub async fn export(url: &str, query: &str) -> Vec<Value> {
    let answer = client()
        .get(format!("{url}/v1/admin/exports?{query}"))
        .bearer_auth(ADMIN_KEY)
        .send()
        .await
        .expect("export");
    assert!(answer.status().is_success(), "export: {}", answer.status());
    let text = answer.text().await.expect("body");
    text.lines()
        .map(|line| serde_json::from_str(line).expect("a JSON line"))
        .collect()
}

/// An RFC 3339 time `seconds_ago` before now.
pub fn ago(seconds_ago: i64) -> String {
    jiff::Timestamp::now()
        .checked_sub(jiff::SignedDuration::from_secs(seconds_ago))
        .expect("time")
        .to_string()
}
