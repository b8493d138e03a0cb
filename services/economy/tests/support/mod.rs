//! Starts economy-service replicas in-process against the real FerretDB and Redis that
//! `e2e/storage/up.sh` runs (addresses from its env file's variables). Each test gets its own
//! database and namespace. Players' tokens are real: signed with a key of the player service's
//! kind, verified by the economy with the public half.

#![allow(dead_code)] // each test binary uses its own subset

use std::net::SocketAddr;
use std::sync::{Arc, OnceLock};

use flotilla_economy::args::{ServeArgs, StorageArgs};
use flotilla_economy::state::Shared;
use flotilla_player::tokens::{AUDIENCE, Claims, ISSUER, TokenKeys};
use reqwest::StatusCode;
use serde_json::Value;

pub const SERVICE_KEY: &str = "test-service-key-0123456789";
pub const ADMIN_KEY: &str = "test-admin-key-0123456789";

pub const CATALOG: &str = r#"
version: 1
currencies:
  - code: gold
    maxBalance: 1000000
    transferable: true
  - code: gems
items:
  - id: potion
    maxStack: 5
    maxCount: 10
    consumable: true
    tradeable: true
  - id: sword
    stackable: false
offers:
  - id: potion
    cost: {currencies: {gold: 10}}
    reward: {items: {potion: 1}}
  - id: starter
    cost: {currencies: {gold: 1}}
    reward: {currencies: {gems: 5}}
    purchaseLimit: 3
"#;

fn env(name: &str) -> String {
    std::env::var(name)
        .unwrap_or_else(|_| panic!("{name} is not set: run e2e/storage/up.sh and load its env file"))
}

fn token_keys() -> &'static TokenKeys {
    static KEYS: OnceLock<TokenKeys> = OnceLock::new();
    KEYS.get_or_init(|| TokenKeys::new(&TokenKeys::generate_pkcs8().expect("key"), &[]).expect("keys"))
}

pub fn unique(prefix: &str) -> String {
    use std::sync::atomic::{AtomicU64, Ordering};
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    format!(
        "{prefix}{}{}{n}",
        std::process::id(),
        flotilla_storage::mongo::now_ms()
    )
}

/// A player's access token, as the player service would sign it; `expires_in` seconds from now.
pub fn token_for(player: &str, session: &str, expires_in: i64) -> String {
    let now = flotilla_storage::mongo::now_ms() / 1000;
    let claims = Claims {
        iss: ISSUER.into(),
        aud: AUDIENCE.into(),
        sub: player.into(),
        sid: session.into(),
        iat: now,
        exp: now + expires_in,
    };
    token_keys().sign(&claims).expect("sign")
}

/// One deployment: a database, a namespace and a catalog file, served by any number of replicas.
pub struct Deployment {
    pub database: String,
    pub namespace: String,
    pub catalog: std::path::PathBuf,
    _dir: Arc<TempDir>,
}

struct TempDir(std::path::PathBuf);

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

impl Deployment {
    pub fn new() -> Self {
        let dir = std::env::temp_dir().join(unique("economy-test-"));
        std::fs::create_dir_all(&dir).expect("temp dir");
        let catalog = dir.join("catalog.yaml");
        std::fs::write(&catalog, CATALOG).expect("catalog");
        Self {
            database: unique("e"),
            namespace: unique("ns"),
            catalog,
            _dir: Arc::new(TempDir(dir)),
        }
    }

    pub fn storage_args(&self) -> StorageArgs {
        StorageArgs {
            mongo_url: env("FLOTILLA_MONGO_URL"),
            database: self.database.clone(),
            mongo_pool: 64,
            replica: unique("replica-"),
        }
    }

    pub fn serve_args(&self) -> ServeArgs {
        ServeArgs {
            storage: self.storage_args(),
            redis_url: env("FLOTILLA_REDIS_URL"),
            namespace: self.namespace.clone(),
            addr: "127.0.0.1:0".parse().expect("addr"),
            metrics_addr: "127.0.0.1:0".parse().expect("addr"),
            catalog: self.catalog.clone(),
            player_token_keys: token_keys().public_keys(),
            player_url: None,
            service_key: SERVICE_KEY.into(),
            admin_key: ADMIN_KEY.into(),
            recovery_grace_seconds: 30,
            recovery_interval_seconds: 1,
            audit_interval_seconds: 0,
        }
    }

    /// Starts a replica and returns it once it listens.
    pub async fn replica(&self) -> Replica {
        self.replica_with(self.serve_args()).await
    }

    pub async fn replica_with(&self, args: ServeArgs) -> Replica {
        let _ = tracing_subscriber::fmt()
            .with_test_writer()
            .with_env_filter("warn")
            .try_init();
        let (state, api, ops) = flotilla_economy::build(args)
            .await
            .expect("economy service starts");
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        tokio::spawn(async move { axum::serve(listener, api).await });
        let ops_listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let ops_addr = ops_listener.local_addr().expect("addr");
        tokio::spawn(async move { axum::serve(ops_listener, ops).await });
        Replica {
            addr,
            ops_addr,
            state,
            http: reqwest::Client::new(),
        }
    }
}

pub struct Replica {
    pub addr: SocketAddr,
    pub ops_addr: SocketAddr,
    pub state: Shared,
    pub http: reqwest::Client,
}

/// Who a request is sent as.
#[derive(Clone, Copy)]
pub enum As<'a> {
    Player(&'a str),
    Token(&'a str),
    Service,
    Admin,
    Nobody,
}

impl Replica {
    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    /// Sends a request; `key` becomes the `Idempotency-Key`.
    pub async fn send(
        &self,
        method: reqwest::Method,
        path: &str,
        who: As<'_>,
        key: Option<&str>,
        body: Option<&Value>,
    ) -> (StatusCode, Value) {
        let mut request = self.http.request(method, self.url(path));
        let token;
        match who {
            As::Player(player) => {
                token = token_for(player, &format!("session-{player}"), 900);
                request = request.bearer_auth(&token);
            }
            As::Token(token) => request = request.bearer_auth(token),
            As::Service => request = request.bearer_auth(SERVICE_KEY),
            As::Admin => request = request.bearer_auth(ADMIN_KEY),
            As::Nobody => {}
        }
        if let Some(key) = key {
            request = request.header("idempotency-key", key);
        }
        if let Some(body) = body {
            request = request.json(body);
        }
        let response = request.send().await.expect("request");
        let status = response.status();
        let text = response.text().await.expect("body");
        (status, serde_json::from_str(&text).unwrap_or(Value::String(text)))
    }

    pub async fn post(&self, path: &str, who: As<'_>, key: &str, body: Value) -> (StatusCode, Value) {
        self.send(reqwest::Method::POST, path, who, Some(key), Some(&body))
            .await
    }

    pub async fn get(&self, path: &str, who: As<'_>) -> (StatusCode, Value) {
        self.send(reqwest::Method::GET, path, who, None, None).await
    }

    /// Grants `gold` to `player` from a game server.
    pub async fn grant_gold(&self, player: &str, gold: i64) {
        let key = unique("grant-");
        let body = serde_json::json!({"player": player, "currencies": {"gold": gold}, "reason": "test"});
        let (status, answer) = self.post("/v1/grants", As::Service, &key, body).await;
        assert_eq!(status, StatusCode::OK, "{answer}");
    }

    /// `(available, reserved)` of a currency, or `(count, reserved)` of an item.
    pub async fn holding(&self, player: &str, asset: &str) -> (i64, i64) {
        let (status, wallet) = self
            .get(&format!("/v1/players/{player}/wallet"), As::Service)
            .await;
        assert_eq!(status, StatusCode::OK, "{wallet}");
        for currency in wallet["currencies"].as_array().expect("currencies") {
            if currency["code"] == asset {
                return (
                    currency["available"].as_i64().expect("n"),
                    currency["reserved"].as_i64().expect("n"),
                );
            }
        }
        for item in wallet["items"].as_array().expect("items") {
            if item["id"] == asset {
                return (
                    item["count"].as_i64().expect("n"),
                    item["reserved"].as_i64().expect("n"),
                );
            }
        }
        (0, 0)
    }

    /// The audit of the whole ledger, which must balance.
    pub async fn audit(&self) -> Value {
        let (status, report) = self
            .send(reqwest::Method::POST, "/v1/admin/audit", As::Admin, None, None)
            .await;
        assert_eq!(status, StatusCode::OK, "{report}");
        report
    }
}
