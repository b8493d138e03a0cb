//! Starts player-service replicas in-process against the real FerretDB, Redis and OpenSearch that
//! `e2e/storage/up.sh` runs (their addresses come from its env file's variables). Each test gets its
//! own database and namespace, so tests run in parallel without seeing each other.

#![allow(dead_code)] // each test binary uses its own subset

use std::net::SocketAddr;
use std::sync::OnceLock;

use base64::Engine;
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use flotilla_player::args::{ServeArgs, StorageArgs};
use flotilla_player::model::{FriendEdge, FriendState};

pub const SERVICE_KEY: &str = "test-service-key-0123456789";

fn env(name: &str) -> String {
    std::env::var(name)
        .unwrap_or_else(|_| panic!("{name} is not set: run e2e/storage/up.sh and load its env file"))
}

/// A signing key shared by every replica of every test, as a deployment's Secret would be.
fn token_key() -> String {
    static KEY: OnceLock<String> = OnceLock::new();
    KEY.get_or_init(|| {
        base64::engine::general_purpose::STANDARD
            .encode(flotilla_player::tokens::TokenKeys::generate_pkcs8().expect("token key"))
    })
    .clone()
}

fn unique(prefix: &str) -> String {
    format!(
        "{prefix}{}",
        flotilla_player::model::new_sortable_id(flotilla_storage::mongo::now_ms())
            .expect("random")
            .to_lowercase()
    )
}

/// One deployment: a database and namespace, served by any number of replicas.
#[derive(Clone)]
pub struct Deployment {
    pub database: String,
    pub namespace: String,
    pub login_limit_account: u32,
    pub login_limit_address: u32,
    pub access_token_seconds: u64,
    pub friend_limit: u32,
}

impl Deployment {
    pub fn new() -> Self {
        Self {
            database: unique("t"),
            namespace: unique("ns"),
            login_limit_account: 1000,
            login_limit_address: 100_000,
            access_token_seconds: 900,
            friend_limit: 500,
        }
    }

    pub fn storage_args(&self) -> StorageArgs {
        StorageArgs {
            mongo_url: env("FLOTILLA_MONGO_URL"),
            database: self.database.clone(),
            mongo_pool: 16,
            redis_url: env("FLOTILLA_REDIS_URL"),
            opensearch_url: env("FLOTILLA_OPENSEARCH_URL"),
            namespace: self.namespace.clone(),
            replica: unique("replica-"),
        }
    }

    /// Forgets that migration `version` was applied and runs the migrations again, as the next
    /// start after an upgrade would; returns the versions applied.
    pub async fn migrate_again(&self, version: u32) -> Vec<u32> {
        let storage = flotilla_player::state::Storage::connect(&self.storage_args(), None)
            .await
            .expect("storage");
        storage
            .mongo
            .database()
            .collection::<mongodb::bson::Document>("flotilla_migrations")
            .delete_one(mongodb::bson::doc! {"_id": version})
            .await
            .expect("forget the version");
        flotilla_player::migrations::run(&storage, "test")
            .await
            .expect("migrate")
    }

    /// Starts a replica (migrating on start, like the chart does) and returns it once it listens.
    pub async fn replica(&self) -> Replica {
        let _ = tracing_subscriber::fmt()
            .with_test_writer()
            .with_env_filter("warn")
            .try_init();
        let args = ServeArgs {
            storage: self.storage_args(),
            addr: "127.0.0.1:0".parse().expect("addr"),
            metrics_addr: "127.0.0.1:0".parse().expect("addr"),
            migrate: true,
            token_key: Some(token_key()),
            token_key_file: None,
            token_previous_keys: Vec::new(),
            service_key: SERVICE_KEY.into(),
            analytics_url: None,
            access_token_seconds: self.access_token_seconds,
            refresh_token_days: 30,
            friend_limit: self.friend_limit,
            profile_cache_seconds: 300,
            client_ip_header: Some("x-test-client".into()),
            trusted_proxy_hops: 1,
            login_limit_account: self.login_limit_account,
            login_limit_address: self.login_limit_address,
        };
        let (state, api, ops) = flotilla_player::build(args).await.expect("player service starts");
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        tokio::spawn(async move {
            axum::serve(listener, api.into_make_service_with_connect_info::<SocketAddr>())
                .await
                .expect("serve");
        });
        let ops_listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let ops_addr = ops_listener.local_addr().expect("addr");
        tokio::spawn(async move { axum::serve(ops_listener, ops).await.expect("serve ops") });
        Replica {
            addr,
            ops_addr,
            http: reqwest::Client::new(),
            state,
        }
    }
}

pub struct Replica {
    pub addr: SocketAddr,
    pub ops_addr: SocketAddr,
    pub http: reqwest::Client,
    pub state: flotilla_player::state::Shared,
}

/// An answer: status and JSON body (Null when empty or not JSON).
#[derive(Debug)]
pub struct Answer {
    pub status: StatusCode,
    pub body: Value,
    pub headers: reqwest::header::HeaderMap,
}

impl Answer {
    /// The body, after asserting the status.
    pub fn expect(self, status: u16) -> Value {
        assert_eq!(self.status.as_u16(), status, "unexpected answer: {:?}", self.body);
        self.body
    }

    /// The error code, after asserting the status.
    pub fn error(self, status: u16) -> String {
        let body = self.expect(status);
        body["error"]["code"]
            .as_str()
            .unwrap_or_else(|| panic!("no error code in {body}"))
            .to_owned()
    }
}

impl Replica {
    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    pub fn ws_url(&self, path: &str) -> String {
        format!("ws://{}{path}", self.addr)
    }

    /// Sends a request with an optional bearer token and JSON body.
    pub async fn call(&self, method: Method, path: &str, token: Option<&str>, body: Option<Value>) -> Answer {
        let mut request = self.http.request(method, self.url(path));
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        if let Some(body) = body {
            request = request.json(&body);
        }
        let response = request.send().await.expect("request sent");
        let status = response.status();
        let headers = response.headers().clone();
        let bytes = response.bytes().await.expect("body");
        let body = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
        Answer {
            status,
            body,
            headers,
        }
    }

    pub async fn get(&self, path: &str, token: &str) -> Answer {
        self.call(Method::GET, path, Some(token), None).await
    }

    pub async fn post(&self, path: &str, token: &str, body: Value) -> Answer {
        self.call(Method::POST, path, Some(token), Some(body)).await
    }

    pub async fn delete(&self, path: &str, token: &str) -> Answer {
        self.call(Method::DELETE, path, Some(token), None).await
    }

    /// `POST /v1/auth/refresh` with `token`.
    pub async fn refresh(&self, token: &str) -> Answer {
        let body = json!({"refreshToken": token});
        self.call(Method::POST, "/v1/auth/refresh", None, Some(body))
            .await
    }

    /// `from` asks `to` to be friends.
    pub async fn ask(&self, from: &Player, to: &Player) -> Answer {
        self.post(&format!("/v1/friends/{}", to.id), &from.token, json!({}))
            .await
    }

    /// Makes `a` and `b` friends through the friends API: `a` asks, `b` accepts.
    pub async fn befriend(&self, a: &Player, b: &Player) {
        self.post(&format!("/v1/friends/{}", b.id), &a.token, json!({}))
            .await
            .expect(201);
        self.post(&format!("/v1/friends/{}/accept", a.id), &b.token, json!({}))
            .await
            .expect(200);
    }

    pub async fn block(&self, blocker: &Player, blocked: &Player) {
        self.post(
            &format!("/v1/friends/{}/block", blocked.id),
            &blocker.token,
            json!({}),
        )
        .await
        .expect(204);
    }

    /// Writes `owner`'s friend edge to `other` directly, with no relationship step behind it: what
    /// releases before migration 5 wrote, including the half-written pairs their crashes could
    /// leave, and what a projection shows for a moment while it is written.
    pub async fn write_edge(&self, owner: &Player, other: &Player, state: FriendState) {
        let edge = FriendEdge {
            id: FriendEdge::id_of(&owner.id, &other.id),
            owner: owner.id.clone(),
            other: other.id.clone(),
            state,
            updated_ms: flotilla_storage::mongo::now_ms(),
            seq: 0,
        };
        self.state
            .edges
            .replace(&edge.id, &edge)
            .await
            .expect("edge stored");
    }

    /// A new player signed in by device id; returns (player id, access token, refresh token).
    pub async fn player(&self, username: &str) -> Player {
        let device = unique("device-");
        let body = self
            .call(
                Method::POST,
                "/v1/auth/device",
                None,
                Some(json!({"id": device, "username": username})),
            )
            .await
            .expect(201);
        Player {
            id: body["player"]["id"].as_str().expect("id").to_owned(),
            token: body["accessToken"].as_str().expect("token").to_owned(),
            refresh: body["refreshToken"].as_str().expect("refresh").to_owned(),
            device,
        }
    }

    /// Fetches `/metrics` from the operations port.
    pub async fn metrics(&self) -> String {
        self.http
            .get(format!("http://{}/metrics", self.ops_addr))
            .send()
            .await
            .expect("metrics")
            .text()
            .await
            .expect("text")
    }
}

#[derive(Clone, Debug)]
pub struct Player {
    pub id: String,
    pub token: String,
    pub refresh: String,
    pub device: String,
}

/// A username unique to this test run (usernames are unique per deployment, but short and readable).
pub fn name(prefix: &str) -> String {
    let id = unique("");
    format!("{prefix}{}", &id[id.len() - 8..])
}
