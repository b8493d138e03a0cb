//! The platform's own events (real FerretDB, Redis and OpenSearch from `e2e/storage/up.sh`): the
//! player service, pointed at a replica with `--analytics-url`, reports sign-ins, token refreshes
//! and sign-outs, stored once each with the player's id and session; the economy reports every
//! currency movement of grants and market sales (through escrow), and each player's sources less
//! sinks add up to their wallet, retries included.

mod support;

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use base64::Engine;
use flotilla_player::tokens::TokenKeys;
use serde_json::{Value, json};
use support::{Deployment, SERVICE_KEY, ago, export, token_for, token_keys, unique};

fn env(name: &str) -> String {
    std::env::var(name).unwrap_or_else(|_| panic!("{name} (e2e/storage/up.sh)"))
}

/// The player service in this process, sending its events to `analytics_url`.
async fn player_service(analytics_url: &str) -> String {
    let key = TokenKeys::generate_pkcs8().expect("token key");
    let args = flotilla_player::args::ServeArgs {
        storage: flotilla_player::args::StorageArgs {
            mongo_url: env("FLOTILLA_MONGO_URL"),
            database: unique("analytics_players_"),
            mongo_pool: 8,
            redis_url: env("FLOTILLA_REDIS_URL"),
            opensearch_url: env("FLOTILLA_OPENSEARCH_URL"),
            namespace: unique("players"),
            replica: unique("player-"),
        },
        addr: "127.0.0.1:0".parse().expect("address"),
        metrics_addr: "127.0.0.1:0".parse().expect("address"),
        migrate: true,
        token_key: Some(base64::engine::general_purpose::STANDARD.encode(key)),
        token_key_file: None,
        token_previous_keys: Vec::new(),
        service_key: SERVICE_KEY.into(),
        analytics_url: Some(analytics_url.to_owned()),
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
    let url = format!("http://{}", listener.local_addr().expect("address"));
    tokio::spawn(async move {
        axum::serve(listener, api.into_make_service_with_connect_info::<SocketAddr>()).await
    });
    url
}

async fn post(url: &str, bearer: Option<&str>, body: Value) -> Value {
    let mut request = reqwest::Client::new().post(url).json(&body);
    if let Some(token) = bearer {
        request = request.bearer_auth(token);
    }
    let answer = request.send().await.expect("request");
    assert!(answer.status().is_success(), "{url}: {}", answer.status());
    answer.json().await.unwrap_or(Value::Null)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_player_service_reports_sign_ins_refreshes_and_sign_outs_once_each() {
    let deployment = Deployment::new();
    let replica = deployment.replica("a").await;
    let players = player_service(&replica.url).await;

    let device = json!({"id": unique("device-")});
    let first = post(&format!("{players}/v1/auth/device"), None, device.clone()).await;
    let second = post(&format!("{players}/v1/auth/device"), None, device).await;
    let player = first["player"]["id"].as_str().expect("player id").to_owned();
    let refreshed = post(
        &format!("{players}/v1/auth/refresh"),
        None,
        json!({"refreshToken": first["refreshToken"]}),
    )
    .await;
    let access = refreshed["accessToken"].as_str().expect("access token");
    post(&format!("{players}/v1/auth/logout"), Some(access), json!({})).await;

    // Sent within half a second, collected, then committed by the pipeline.
    let started = Instant::now();
    let events = loop {
        let events = export(&replica.url, &format!("from={}&to={}", ago(3600), ago(-60))).await;
        if events.len() >= 4 || started.elapsed() > Duration::from_secs(30) {
            break events;
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    };
    let mut seen: Vec<(String, Value)> = events
        .iter()
        .map(|event| {
            assert_eq!(event["player"], json!(player), "{event}");
            (
                event["name"].as_str().expect("name").to_owned(),
                event["properties"].clone(),
            )
        })
        .collect();
    seen.sort_by(|a, b| a.0.cmp(&b.0).then(a.1.to_string().cmp(&b.1.to_string())));
    assert_eq!(
        seen,
        [
            ("design".to_owned(), json!({"event": "account:refresh"})),
            ("session_end".to_owned(), json!({})),
            (
                "session_start".to_owned(),
                json!({"created": false, "method": "device"})
            ),
            (
                "session_start".to_owned(),
                json!({"created": true, "method": "device"})
            ),
        ],
        "{events:?}"
    );
    // The refresh and the sign-out belong to the first sign-in's session; the second is its own.
    let sessions: Vec<&str> = events
        .iter()
        .filter_map(|event| event["session"].as_str())
        .collect();
    assert_eq!(sessions.len(), 4);
    let distinct: std::collections::BTreeSet<&str> = sessions.iter().copied().collect();
    assert_eq!(distinct.len(), 2, "{sessions:?}");
    assert_ne!(first["refreshToken"], second["refreshToken"]);
}

const CATALOG: &str = r#"
version: 1
currencies:
  - code: gold
items:
  - id: potion
    maxStack: 10
    tradeable: true
market:
  currencies: [gold]
  listingFee: {currency: gold, amount: 1}
  saleFeeBps: 1000
"#;

/// The economy in this process, sending its events to `analytics_url`; its base URL.
async fn economy_service(analytics_url: &str) -> String {
    let dir = std::env::temp_dir().join(unique("analytics-economy-"));
    std::fs::create_dir_all(&dir).expect("a directory");
    let catalog = dir.join("catalog.yaml");
    std::fs::write(&catalog, CATALOG).expect("the catalog");
    let args = flotilla_economy::args::ServeArgs {
        storage: flotilla_economy::args::StorageArgs {
            mongo_url: env("FLOTILLA_MONGO_URL"),
            database: unique("analytics_economy_"),
            mongo_pool: 16,
            replica: unique("economy-"),
        },
        redis_url: env("FLOTILLA_REDIS_URL"),
        opensearch_url: env("FLOTILLA_OPENSEARCH_URL"),
        namespace: unique("economy"),
        addr: "127.0.0.1:0".parse().expect("address"),
        metrics_addr: "127.0.0.1:0".parse().expect("address"),
        catalog,
        player_token_keys: token_keys().public_keys(),
        player_url: None,
        service_key: SERVICE_KEY.into(),
        admin_key: "economy-admin-key-0123456789".into(),
        analytics_url: Some(analytics_url.to_owned()),
        recovery_grace_seconds: 30,
        recovery_interval_seconds: 1,
        reversal_policy: flotilla_economy::reversals::Policy::Fail,
        audit_interval_seconds: 0,
    };
    let (_, api, _) = flotilla_economy::build(args).await.expect("economy starts");
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let url = format!("http://{}", listener.local_addr().expect("address"));
    tokio::spawn(async move { axum::serve(listener, api).await });
    url
}

/// A write to the economy with an idempotency key; its answer.
async fn economy_post(url: &str, credential: &str, key: &str, body: Value) -> Value {
    let answer = reqwest::Client::new()
        .post(url)
        .bearer_auth(credential)
        .header("idempotency-key", key)
        .json(&body)
        .send()
        .await
        .expect("request");
    let status = answer.status();
    let body: Value = answer.json().await.unwrap_or(Value::Null);
    assert!(status.is_success(), "{url}: {status} {body}");
    body
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_economy_reports_grants_and_market_sales_and_they_add_up_to_the_wallets() {
    let deployment = Deployment::new();
    let replica = deployment.replica("a").await;
    let economy = economy_service(&replica.url).await;
    let (ann, bob) = (unique("ann"), unique("bob"));
    for (player, grant) in [
        (&ann, json!({"currencies": {"gold": 10}, "items": {"potion": 6}})),
        (&bob, json!({"currencies": {"gold": 100}})),
    ] {
        let mut body = grant;
        body["player"] = json!(player);
        body["reason"] = json!("test");
        economy_post(
            &format!("{economy}/v1/grants"),
            SERVICE_KEY,
            &unique("grant-"),
            body,
        )
        .await;
    }
    let listed = economy_post(
        &format!("{economy}/v1/market/listings"),
        &token_for(&ann),
        "list-1",
        json!({"item": "potion", "amount": 5, "currency": "gold", "unitPrice": 10}),
    )
    .await;
    let listing = listed["listing"]["id"].as_str().expect("a listing id");
    // Bought twice with the same key: one purchase, reported once.
    for _ in 0..2 {
        economy_post(
            &format!("{economy}/v1/market/listings/{listing}/purchases"),
            &token_for(&bob),
            "buy-1",
            json!({"amount": 2}),
        )
        .await;
    }

    // Ann: +10 granted, -1 listing fee, +18 for two potions at 10 less the 10 % fee. Bob: +100, -20.
    let expected = [(ann.clone(), 27), (bob.clone(), 80)];
    let started = Instant::now();
    let (net, events) = loop {
        let events = export(
            &replica.url,
            &format!("from={}&to={}&name=resource", ago(3600), ago(-60)),
        )
        .await;
        let mut net = std::collections::BTreeMap::new();
        for event in &events {
            let amount = event["properties"]["amount"].as_i64().expect("an amount");
            let sign = match event["properties"]["flow"].as_str() {
                Some("source") => 1,
                _ => -1,
            };
            *net.entry(event["player"].as_str().expect("a player").to_owned())
                .or_insert(0) += sign * amount;
        }
        if net == std::collections::BTreeMap::from(expected.clone())
            || started.elapsed() > Duration::from_secs(30)
        {
            break (net, events);
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    };
    assert_eq!(net, std::collections::BTreeMap::from(expected), "{events:#?}");
    let mut kinds: Vec<&str> = events
        .iter()
        .filter_map(|event| event["properties"]["kind"].as_str())
        .collect();
    kinds.sort_unstable();
    kinds.dedup();
    assert!(kinds.len() >= 2, "grants and market transactions: {kinds:?}");
    // Every event is in gold, and none was counted twice (the retry sent the same ids).
    assert!(
        events
            .iter()
            .all(|event| event["properties"]["currency"] == "gold")
    );
    let ids: std::collections::BTreeSet<&str> = events.iter().filter_map(|e| e["id"].as_str()).collect();
    assert_eq!(ids.len(), events.len());
}
