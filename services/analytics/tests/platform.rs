//! The platform's own events: the player service, pointed at a replica with `--analytics-url`,
//! reports sign-ins, token refreshes and sign-outs, and they are stored once each with the
//! player's id and session (real FerretDB, Redis and OpenSearch from `e2e/storage/up.sh`).

mod support;

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use base64::Engine;
use flotilla_player::tokens::TokenKeys;
use serde_json::{Value, json};
use support::{Deployment, SERVICE_KEY, ago, export, unique};

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
