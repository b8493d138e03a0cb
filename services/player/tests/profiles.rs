//! Profiles, search, statistics from game-server reports, and account deletion.

mod support;

use reqwest::Method;
use serde_json::json;
use support::{Deployment, SERVICE_KEY, name};

#[tokio::test]
async fn a_profile_update_is_seen_at_once_through_the_cache_on_every_replica() {
    let deployment = Deployment::new();
    let (one, two) = (deployment.replica().await, deployment.replica().await);
    let ann = one.player(&name("ann")).await;
    let bob = two.player(&name("bob")).await;
    let path = format!("/v1/players/{}", ann.id);
    assert_eq!(
        two.get(&path, &bob.token).await.expect(200)["displayName"],
        json!(two.get(&path, &bob.token).await.body["username"])
    );

    let update = json!({"displayName": "Ann the Great", "avatarUrl": "https://cdn.example/ann.png",
        "language": "pt-BR", "metadata": {"level": 7}});
    let own = one
        .call(Method::PATCH, "/v1/players/me", Some(&ann.token), Some(update))
        .await
        .expect(200);
    assert_eq!(own["metadata"]["level"], 7);
    // Replica two cached the old profile above; the write invalidated it for everyone.
    let seen = two.get(&path, &bob.token).await.expect(200);
    assert_eq!(seen["displayName"], "Ann the Great");
    assert_eq!(seen["language"], "pt-BR");
    assert!(
        seen.get("metadata").is_none() && seen.get("privacy").is_none(),
        "private fields leaked: {seen}"
    );
}

#[tokio::test]
async fn usernames_are_unique_without_regard_to_case() {
    let replica = Deployment::new().replica().await;
    let taken = name("Zed");
    replica.player(&taken).await;
    let other = replica.player(&name("yan")).await;
    let clash = json!({"username": taken.to_lowercase()});
    let answer = replica
        .call(Method::PATCH, "/v1/players/me", Some(&other.token), Some(clash))
        .await;
    assert_eq!(answer.error(409), "conflict");
    for bad in [
        json!({"username": "a"}),
        json!({"avatarUrl": "http://plain"}),
        json!({"metadata": [1]}),
        json!({"nope": 1}),
    ] {
        replica
            .call(Method::PATCH, "/v1/players/me", Some(&other.token), Some(bad))
            .await
            .error(400);
    }
}

#[tokio::test]
async fn search_finds_players_by_prefix_and_despite_typos() {
    let replica = Deployment::new().replica().await;
    let suffix = name("");
    let star = replica.player(&format!("stormbringer{suffix}")).await;
    let _other = replica.player(&format!("moonlight{suffix}")).await;
    let me = replica.player(&name("seeker")).await;
    let renamed = json!({"displayName": format!("Stormbringer {suffix}")});
    replica
        .call(Method::PATCH, "/v1/players/me", Some(&star.token), Some(renamed))
        .await
        .expect(200);
    replica.state.search.refresh().await.expect("refresh");
    for query in ["storm", "stormbrnger", &format!("stormbringer{suffix}")] {
        let hits = replica
            .get(&format!("/v1/players/search?q={query}"), &me.token)
            .await
            .expect(200);
        let ids: Vec<&str> = hits
            .as_array()
            .expect("list")
            .iter()
            .filter_map(|h| h["id"].as_str())
            .collect();
        assert!(ids.contains(&star.id.as_str()), "{query}: {hits}");
    }
    replica.get("/v1/players/search?q=", &me.token).await.error(400);
    replica
        .get(&format!("/v1/players/search?q={}", "x".repeat(65)), &me.token)
        .await
        .error(400);
    // The limit is a u32 (clamped to 1-50); past u32 it is refused, as the OpenAPI document says.
    replica
        .get("/v1/players/search?q=st&limit=29790274070", &me.token)
        .await
        .error(400);
}

#[tokio::test]
async fn match_results_need_the_service_key_count_once_and_notify_players() {
    let replica = Deployment::new().replica().await;
    let (ann, bob) = (
        replica.player(&name("ann")).await,
        replica.player(&name("bob")).await,
    );
    let report = json!({"server": "arena-7x2k", "players": [
        {"id": ann.id, "score": 12, "placement": 1}, {"id": bob.id, "score": 4, "placement": 2}]});
    replica
        .post("/v1/matches/m-1/results", &ann.token, report.clone())
        .await
        .error(401);
    replica
        .post("/v1/matches/m-1/results", SERVICE_KEY, report.clone())
        .await
        .expect(201);
    // A game server retrying after a lost answer: recognised, not counted again.
    replica
        .post("/v1/matches/m-1/results", SERVICE_KEY, report)
        .await
        .expect(200);
    let changed = json!({"server": "arena-7x2k", "players": [{"id": ann.id, "score": 0, "placement": 2}]});
    replica
        .post("/v1/matches/m-1/results", SERVICE_KEY, changed)
        .await
        .error(409);
    let duplicate_players = json!({"server": "s", "players": [{"id": ann.id, "score": 1, "placement": 1}, {"id": ann.id, "score": 1, "placement": 1}]});
    replica
        .post("/v1/matches/m-2/results", SERVICE_KEY, duplicate_players)
        .await
        .error(400);

    let stats = replica
        .get(&format!("/v1/players/{}/stats", ann.id), &bob.token)
        .await
        .expect(200);
    assert_eq!(stats, json!({"matches": 1, "wins": 1}));
    let stats = replica
        .get(&format!("/v1/players/{}/stats", bob.id), &bob.token)
        .await
        .expect(200);
    assert_eq!(stats, json!({"matches": 1, "wins": 0}));
    let notified = replica
        .state
        .notifications
        .count(mongodb::bson::doc! {"player": &ann.id, "kind": "matchResult"})
        .await;
    assert_eq!(notified.expect("count"), 1);
}

#[tokio::test]
async fn deleting_an_account_removes_its_personal_data() {
    let replica = Deployment::new().replica().await;
    let ann = replica.player(&name("ann")).await;
    let bob = replica.player(&name("bob")).await;
    replica.state.search.refresh().await.expect("refresh");
    replica
        .call(Method::DELETE, "/v1/players/me", Some(&ann.token), None)
        .await
        .expect(204);
    replica.get("/v1/players/me", &ann.token).await.error(401);
    replica
        .get(&format!("/v1/players/{}", ann.id), &bob.token)
        .await
        .error(404);
    let device = json!({"id": ann.device, "create": false});
    replica
        .call(Method::POST, "/v1/auth/device", None, Some(device))
        .await
        .error(404);
    let filter = mongodb::bson::doc! {"player": &ann.id};
    assert_eq!(
        replica
            .state
            .identities
            .count(filter.clone())
            .await
            .expect("count"),
        0
    );
    assert_eq!(
        replica.state.refresh_tokens.count(filter).await.expect("count"),
        0
    );
    replica.state.search.refresh().await.expect("refresh");
    let hits = replica.state.search.search(&ann.id, 10).await.expect("search");
    assert!(hits.iter().all(|hit| hit.id != ann.id));
}

#[tokio::test]
async fn health_readiness_and_metrics_answer_on_the_operations_port() {
    let replica = Deployment::new().replica().await;
    let player = replica.player(&name("met")).await;
    replica.get("/v1/players/me", &player.token).await.expect(200);
    let ready = replica
        .http
        .get(format!("http://{}/readyz", replica.ops_addr))
        .send()
        .await
        .expect("readyz");
    assert_eq!(ready.status().as_u16(), 200);
    let metrics = replica.metrics().await;
    for series in [
        "flotilla_player_http_requests_total",
        "flotilla_player_logins_total",
        "flotilla_mongo_pool_open_connections",
        "flotilla_cache_requests_total",
    ] {
        assert!(metrics.contains(series), "{series} missing from /metrics");
    }
    let openapi = replica
        .call(Method::GET, "/v1/openapi.json", None, None)
        .await
        .expect(200);
    assert_eq!(openapi["openapi"], "3.1.0");
    assert!(openapi["paths"]["/v1/auth/device"]["post"].is_object());
}

#[tokio::test]
async fn an_export_holds_the_players_own_data_and_no_secrets() {
    let replica = Deployment::new().replica().await;
    let [ann, bob, eve] = [
        replica.player(&name("ann")).await,
        replica.player(&name("bob")).await,
        replica.player(&name("eve")).await,
    ];
    let email = format!("{}@example.com", name("ann"));
    let password = "correct horse battery";
    replica
        .post(
            "/v1/auth/link/email",
            &ann.token,
            json!({"email": email, "password": password}),
        )
        .await
        .expect(204);
    replica.befriend(&ann, &bob).await;
    replica.befriend(&bob, &eve).await;
    for (from, to, body) in [
        (&ann, &bob, "hi bob"),
        (&bob, &ann, "hi ann"),
        (&bob, &eve, "not ann's"),
    ] {
        replica
            .post(
                &format!("/v1/players/{}/messages", to.id),
                &from.token,
                json!({"body": body}),
            )
            .await
            .expect(201);
    }
    let report = json!({"server": "arena-1", "players": [
        {"id": ann.id, "score": 12, "placement": 1},
        {"id": bob.id, "score": 3, "placement": 2},
    ]});
    replica
        .post(
            &format!("/v1/matches/{}/results", name("match")),
            SERVICE_KEY,
            report,
        )
        .await
        .expect(201);

    let answer = replica.get("/v1/players/me/export", &ann.token).await;
    let text = answer.body.to_string();
    let export = answer.expect(200);
    assert_eq!(export["profile"]["id"], ann.id.as_str());
    let sign_ins = export["signIns"].as_array().expect("signIns");
    let methods: Vec<(&str, &str)> = sign_ins
        .iter()
        .map(|s| {
            (
                s["method"].as_str().expect("method"),
                s["identifier"].as_str().expect("id"),
            )
        })
        .collect();
    assert!(methods.contains(&("device", ann.device.as_str())), "{methods:?}");
    assert!(methods.contains(&("email", email.as_str())), "{methods:?}");
    assert!(!export["sessions"].as_array().expect("sessions").is_empty());
    assert_eq!(export["relationships"][0]["player"], bob.id.as_str());
    assert_eq!(export["relationships"][0]["state"], "mutual");
    let bodies: Vec<&str> = export["messages"]
        .as_array()
        .expect("messages")
        .iter()
        .map(|m| m["body"].as_str().expect("body"))
        .collect();
    assert_eq!(bodies, ["hi bob", "hi ann"], "oldest first, and only ann's");
    assert!(
        !export["notifications"]
            .as_array()
            .expect("notifications")
            .is_empty()
    );
    assert_eq!(export["matches"][0]["score"], 12, "{}", export["matches"]);
    assert_eq!(export["matches"][0]["placement"], 1);
    assert_eq!(export["truncated"], json!([]));
    // No password hash, refresh token or its hash, and nothing of other players' conversations.
    for secret in ["$argon2id$", password, &ann.refresh, "not ann's"] {
        assert!(!text.contains(secret), "the export holds {secret:?}");
    }
    let refresh_hash = replica
        .state
        .refresh_tokens
        .find(
            mongodb::bson::doc! {"player": &ann.id},
            mongodb::bson::doc! {},
            10,
        )
        .await
        .expect("tokens");
    assert!(refresh_hash.iter().all(|t| !text.contains(&t.hash)));

    // A few a minute.
    replica.get("/v1/players/me/export", &ann.token).await.expect(200);
    replica.get("/v1/players/me/export", &ann.token).await.expect(200);
    replica.get("/v1/players/me/export", &ann.token).await.error(429);
    replica.get("/v1/players/me/export", &bob.token).await.expect(200);
    replica
        .get("/v1/players/me/export", "not-a-token")
        .await
        .error(401);
}
