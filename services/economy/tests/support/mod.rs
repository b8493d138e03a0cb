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
    category: potions
    maxStack: 5
    maxCount: 10
    consumable: true
    tradeable: true
  - id: ore
    maxStack: 100
    tradeable: true
  - id: sword
    stackable: false
  - id: relic
    category: relics
    unique: true
    stackable: false
    maxCount: 3
    consumable: true
    tradeable: true
    properties: {rarity: common, level: 1}
offers:
  - id: potion
    cost: {currencies: {gold: 10}}
    reward: {items: {potion: 1}}
  - id: starter
    cost: {currencies: {gold: 1}}
    reward: {currencies: {gems: 5}}
    purchaseLimit: 3
  - id: relic-box
    cost: {currencies: {gold: 5}}
    reward: {items: {relic: 1}}
market:
  currencies: [gold]
  listingFee: {currency: gold, amount: 1}
  saleFeeBps: 1000
  maxDurationHours: 24
auctions:
  currencies: [gold]
  listingFee: {currency: gold, amount: 1}
  saleFeeBps: 1000
  minIncrement: 5
  snipingWindowSeconds: 5
  snipingExtensionSeconds: 2
  maxExtensionSeconds: 4
"#;

fn env(name: &str) -> String {
    std::env::var(name)
        .unwrap_or_else(|_| panic!("{name} is not set: run e2e/storage/up.sh and load its env file"))
}

/// The signing key of the players' tokens, the player service's when a test starts one.
fn token_pkcs8() -> &'static [u8] {
    static KEY: OnceLock<Vec<u8>> = OnceLock::new();
    KEY.get_or_init(|| TokenKeys::generate_pkcs8().expect("key"))
}

fn token_keys() -> &'static TokenKeys {
    static KEYS: OnceLock<TokenKeys> = OnceLock::new();
    KEYS.get_or_init(|| TokenKeys::new(token_pkcs8(), &[]).expect("keys"))
}

/// Signs up a player with the player service (a device sign-in); their id and access token.
pub async fn sign_up(player_url: &str, username: &str) -> (String, String) {
    let answer: Value = reqwest::Client::new()
        .post(format!("{player_url}/v1/auth/device"))
        .json(&serde_json::json!({"id": unique("device-"), "username": username}))
        .send()
        .await
        .expect("sign up")
        .json()
        .await
        .expect("answer");
    let id = answer["player"]["id"].as_str().expect("id").to_owned();
    (id, answer["accessToken"].as_str().expect("token").to_owned())
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
    token_created(player, session, expires_in, None)
}

/// A token for an account created at `created` (Unix seconds).
pub fn token_created(player: &str, session: &str, expires_in: i64, created: Option<i64>) -> String {
    let now = flotilla_storage::mongo::now_ms() / 1000;
    let claims = Claims {
        iss: ISSUER.into(),
        aud: AUDIENCE.into(),
        sub: player.into(),
        sid: session.into(),
        iat: now,
        exp: now + expires_in,
        created,
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
        Self::with_catalog(CATALOG)
    }

    /// A deployment whose catalog document is `text`.
    pub fn with_catalog(text: &str) -> Self {
        let dir = std::env::temp_dir().join(unique("economy-test-"));
        std::fs::create_dir_all(&dir).expect("temp dir");
        let catalog = dir.join("catalog.yaml");
        std::fs::write(&catalog, text).expect("catalog");
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
            opensearch_url: env("FLOTILLA_OPENSEARCH_URL"),
            namespace: self.namespace.clone(),
            addr: "127.0.0.1:0".parse().expect("addr"),
            metrics_addr: "127.0.0.1:0".parse().expect("addr"),
            catalog: self.catalog.clone(),
            player_token_keys: token_keys().public_keys(),
            player_url: None,
            service_key: SERVICE_KEY.into(),
            admin_key: ADMIN_KEY.into(),
            analytics_url: None,
            recovery_grace_seconds: 30,
            recovery_interval_seconds: 1,
            reversal_policy: flotilla_economy::reversals::Policy::Fail,
            audit_interval_seconds: 0,
        }
    }

    /// Starts the player service on this deployment's database and namespace (with the key the
    /// tests sign with), and returns its base URL.
    pub async fn player_service(&self) -> String {
        use base64::Engine;
        let args = flotilla_player::args::ServeArgs {
            storage: flotilla_player::args::StorageArgs {
                mongo_url: env("FLOTILLA_MONGO_URL"),
                database: self.database.clone(),
                mongo_pool: 8,
                redis_url: env("FLOTILLA_REDIS_URL"),
                opensearch_url: env("FLOTILLA_OPENSEARCH_URL"),
                namespace: self.namespace.clone(),
                replica: unique("player-"),
            },
            addr: "127.0.0.1:0".parse().expect("addr"),
            metrics_addr: "127.0.0.1:0".parse().expect("addr"),
            migrate: true,
            token_key: Some(base64::engine::general_purpose::STANDARD.encode(token_pkcs8())),
            token_key_file: None,
            token_previous_keys: Vec::new(),
            service_key: SERVICE_KEY.into(),
            analytics_url: None,
            access_token_seconds: 900,
            refresh_token_days: 30,
            friend_limit: 100,
            profile_cache_seconds: 300,
            client_ip_header: None,
            trusted_proxy_hops: 1,
            login_limit_account: 100,
            login_limit_address: 10_000,
        };
        let (_, api, _) = flotilla_player::build(args).await.expect("player service starts");
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        tokio::spawn(async move {
            axum::serve(listener, api.into_make_service_with_connect_info::<SocketAddr>()).await
        });
        format!("http://{addr}")
    }

    /// A replica that asks the player service at `player_url` about players (and fetches its keys).
    pub async fn replica_with_players(&self, player_url: &str) -> Replica {
        let mut args = self.serve_args();
        args.player_url = Some(player_url.to_owned());
        args.player_token_keys = Vec::new();
        self.replica_with(args).await
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
        self.grant(player, serde_json::json!({"currencies": {"gold": gold}}))
            .await;
    }

    /// Grants `body` (`currencies`, `items`, `instances`) to `player` from a game server.
    pub async fn grant(&self, player: &str, mut body: Value) {
        body["player"] = serde_json::json!(player);
        body["reason"] = serde_json::json!("test");
        let (status, answer) = self
            .post("/v1/grants", As::Service, &unique("grant-"), body)
            .await;
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

/// What a writer was told about one request: the transaction's id and whether it was committed
/// (200) or refused (422). Requests answered otherwise (given up on) may have taken effect or not.
#[derive(Clone, Debug)]
pub struct Ack {
    pub tx: String,
    pub committed: bool,
}

/// The conservation tests' players.
pub fn players(count: usize, run: &str) -> Vec<String> {
    (0..count).map(|i| format!("{run}p{i}")).collect()
}

/// One of 64 writers: random grants, gifts, purchases and consumption against `base` until
/// `deadline`, retrying a request with its idempotency key while the service or store is down
/// (connection refused, 503), as a client should. Sometimes sends a request twice on purpose.
pub async fn writer(
    base: String,
    writer: usize,
    players: Vec<String>,
    deadline: std::time::Instant,
) -> Vec<Ack> {
    let http = reqwest::Client::builder()
        .timeout(std::time::Duration::from_secs(20))
        .build()
        .expect("client");
    let mut rng = flotilla_economy::ledger::memory::Rng::new(writer as u64 * 7919 + 1);
    let mut acks = Vec::new();
    let mut n = 0;
    while std::time::Instant::now() < deadline {
        n += 1;
        let player = &players[rng.below(players.len() as u64) as usize];
        let other = &players[rng.below(players.len() as u64) as usize];
        let key = format!("w{writer}-{n}");
        let (path, caller, body, auth) = match rng.below(12) {
            0..=1 => (
                "/v1/grants",
                "service".to_owned(),
                serde_json::json!({"player": player, "currencies": {"gold": 1 + rng.below(50)}, "reason": "soak"}),
                SERVICE_KEY.to_owned(),
            ),
            2..=4 if other != player => (
                "/v1/gifts",
                player.clone(),
                serde_json::json!({"to": other, "currency": "gold", "amount": 1 + rng.below(30)}),
                token_for(player, "soak", 3600),
            ),
            2..=4 => continue,
            5..=7 => (
                "/v1/purchases",
                player.clone(),
                serde_json::json!({"offer": if rng.chance(200) { "starter" } else { "potion" }}),
                token_for(player, "soak", 3600),
            ),
            10 => (
                "/v1/grants",
                "service".to_owned(),
                serde_json::json!({"player": player, "instances": [{"item": "relic", "properties": {"writer": writer}}], "reason": "soak"}),
                SERVICE_KEY.to_owned(),
            ),
            11 if other != player => match held_relic(&http, &base, player).await {
                Some(relic) => (
                    "/v1/gifts",
                    player.clone(),
                    serde_json::json!({"to": other, "instances": [relic]}),
                    token_for(player, "soak", 3600),
                ),
                None => continue,
            },
            11 => continue,
            _ => (
                "/v1/consumptions",
                player.clone(),
                serde_json::json!({"item": "potion", "amount": 1}),
                token_for(player, "soak", 3600),
            ),
        };
        let sends = if rng.chance(50) { 2 } else { 1 };
        for _ in 0..sends {
            if let Some(committed) =
                send_until_answered(&http, &base, path, &auth, &key, &body, deadline).await
            {
                acks.push(Ack {
                    tx: format!("{caller}:{key}"),
                    committed,
                });
            }
        }
    }
    acks
}

/// One of the relics `player` holds, or `None` (also when the service does not answer).
async fn held_relic(http: &reqwest::Client, base: &str, player: &str) -> Option<String> {
    let wallet: Value = http
        .get(format!("{base}/v1/players/{player}/wallet"))
        .bearer_auth(SERVICE_KEY)
        .send()
        .await
        .ok()?
        .json()
        .await
        .ok()?;
    let relic = wallet["items"]
        .as_array()?
        .iter()
        .find(|item| item["id"] == "relic")?;
    let instance = relic["instances"].as_array()?.first()?;
    instance["id"].as_str().map(str::to_owned)
}

/// Sends until the service answers 200 or 422 (`Some(committed)`), or gives up after the deadline
/// plus a minute (`None`).
async fn send_until_answered(
    http: &reqwest::Client,
    base: &str,
    path: &str,
    auth: &str,
    key: &str,
    body: &Value,
    deadline: std::time::Instant,
) -> Option<bool> {
    let give_up = deadline + std::time::Duration::from_secs(60);
    while std::time::Instant::now() < give_up {
        let sent = http
            .post(format!("{base}{path}"))
            .bearer_auth(auth)
            .header("idempotency-key", key)
            .json(body)
            .send()
            .await;
        match sent.map(|response| response.status()) {
            Ok(StatusCode::OK) => return Some(true),
            Ok(StatusCode::UNPROCESSABLE_ENTITY) => return Some(false),
            Ok(status) if status.is_client_error() && status != StatusCode::CONFLICT => {
                panic!("{path} {body} answered {status}")
            }
            _ => tokio::time::sleep(std::time::Duration::from_millis(100)).await,
        }
    }
    None
}

/// Checks the books after a run: clean, settled (players own exactly what was minted minus what
/// was burned, nothing reserved), every acknowledgement true, no limit exceeded.
pub fn check_books(books: &flotilla_economy::ledger::audit::Books, acks: &[Ack]) {
    let report = flotilla_economy::ledger::audit::audit(books);
    assert!(
        report.is_clean(),
        "drift {}: {:?}",
        report.drift,
        &report.violations[..report.violations.len().min(10)]
    );
    assert!(
        report.is_settled(),
        "not settled: {:?}, {} unfinished",
        report.totals,
        report.unfinished
    );
    let outcomes: std::collections::HashMap<&str, bool> = books
        .outcomes
        .iter()
        .map(|o| (o.tx.as_str(), o.committed))
        .collect();
    for ack in acks {
        assert_eq!(
            outcomes.get(ack.tx.as_str()),
            Some(&ack.committed),
            "{} was acknowledged otherwise",
            ack.tx
        );
    }
    for posting in &books.postings {
        let held = posting.balance.available + posting.balance.reserved + posting.balance.incoming;
        let limit = match posting.asset.as_str() {
            "i:potion" => 10,
            "i:relic" => 3,
            "o:starter" => 3,
            unique if unique.starts_with("u:") => 1,
            _ => i64::MAX,
        };
        assert!(held <= limit, "{} held {held}", posting.id);
    }
    // A unique item's count is the instances held, player by player.
    let mut newest: std::collections::HashMap<&str, &flotilla_economy::ledger::model::Posting> =
        std::collections::HashMap::new();
    for posting in &books.postings {
        let entry = newest.entry(posting.key.as_str()).or_insert(posting);
        if posting.seq > entry.seq {
            *entry = posting;
        }
    }
    let mut relics: std::collections::HashMap<&str, (i64, i64)> = std::collections::HashMap::new();
    for posting in newest.values() {
        let held = posting.balance.available + posting.balance.reserved;
        let entry = relics.entry(posting.player.as_str()).or_default();
        match posting.asset.as_str() {
            "i:relic" => entry.0 += held,
            asset if asset.starts_with("u:relic:") => entry.1 += held,
            _ => {}
        }
    }
    for (player, (count, instances)) in relics {
        assert_eq!(count, instances, "{player}'s relic count is not the relics held");
    }
    let committed = books.outcomes.iter().filter(|o| o.committed).count();
    let mut kinds: std::collections::BTreeMap<&str, (usize, usize)> = std::collections::BTreeMap::new();
    let committed_ids: std::collections::HashSet<&str> = books
        .outcomes
        .iter()
        .filter(|o| o.committed)
        .map(|o| o.tx.as_str())
        .collect();
    for tx in &books.transactions {
        let entry = kinds.entry(tx.kind.as_str()).or_default();
        entry.0 += 1;
        entry.1 += usize::from(committed_ids.contains(tx.id.as_str()));
    }
    eprintln!("transactions by kind (all, committed): {kinds:?}");
    let (instances, totals): (Vec<_>, Vec<_>) = report
        .totals
        .iter()
        .partition(|(asset, _)| asset.starts_with("u:"));
    eprintln!(
        "{} transactions ({committed} committed), {} postings, {} acknowledgements; {} instances; totals {totals:?}",
        books.transactions.len(),
        books.postings.len(),
        acks.len(),
        instances.len(),
    );
}
