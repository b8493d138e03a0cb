//! Sign-in against the real FerretDB, Redis and OpenSearch: every method, token rotation and reuse
//! detection, sign-out, bans, links, limits, and bad input.

mod support;

use reqwest::Method;
use serde_json::{Value, json};
use support::{Deployment, SERVICE_KEY, name};

#[tokio::test]
async fn email_registration_signs_in_and_the_password_is_stored_hashed() {
    let replica = Deployment::new().replica().await;
    let username = name("ann");
    let email = format!("{username}@Example.com");
    let body = json!({"email": email, "password": "correct horse", "username": username});
    let created = replica
        .call(Method::POST, "/v1/auth/email/register", None, Some(body))
        .await
        .expect(201);
    assert_eq!(created["created"], true);
    let token = created["accessToken"].as_str().expect("token");
    let me = replica.get("/v1/players/me", token).await.expect(200);
    assert_eq!(me["username"], username.as_str());

    let login = json!({"email": email.to_lowercase(), "password": "correct horse"});
    let signed_in = replica
        .call(Method::POST, "/v1/auth/email/login", None, Some(login))
        .await
        .expect(200);
    assert_eq!(signed_in["player"]["id"], created["player"]["id"]);
    let wrong = json!({"email": email, "password": "wrong horse!"});
    assert_eq!(
        replica
            .call(Method::POST, "/v1/auth/email/login", None, Some(wrong))
            .await
            .error(401),
        "unauthenticated"
    );
    let unknown = json!({"email": "nobody@example.com", "password": "whatever1"});
    assert_eq!(
        replica
            .call(Method::POST, "/v1/auth/email/login", None, Some(unknown))
            .await
            .error(401),
        "unauthenticated"
    );

    let identity = replica
        .state
        .identities
        .get(&format!("email:{}", email.to_lowercase()))
        .await
        .expect("read")
        .expect("identity stored");
    assert!(
        identity.secret_hash.starts_with("$argon2id$"),
        "{}",
        identity.secret_hash
    );
    assert!(!identity.secret_hash.contains("correct horse"));
}

#[tokio::test]
async fn a_second_account_with_the_same_email_or_username_is_refused() {
    let replica = Deployment::new().replica().await;
    let username = name("bob");
    let first =
        json!({"email": format!("{username}@example.com"), "password": "password1", "username": username});
    replica
        .call(Method::POST, "/v1/auth/email/register", None, Some(first.clone()))
        .await
        .expect(201);
    let same_email = json!({"email": format!("{}@EXAMPLE.com", username.to_uppercase()), "password": "password1", "username": name("other")});
    assert_eq!(
        replica
            .call(Method::POST, "/v1/auth/email/register", None, Some(same_email))
            .await
            .error(409),
        "conflict"
    );
    let same_name =
        json!({"email": "x@example.com", "password": "password1", "username": username.to_uppercase()});
    assert_eq!(
        replica
            .call(Method::POST, "/v1/auth/email/register", None, Some(same_name))
            .await
            .error(409),
        "conflict"
    );
    // The losing registration left no account behind for its email.
    let login = json!({"email": "x@example.com", "password": "password1"});
    replica
        .call(Method::POST, "/v1/auth/email/login", None, Some(login))
        .await
        .error(401);
}

#[tokio::test]
async fn device_sign_in_creates_the_account_once_and_then_signs_in() {
    let replica = Deployment::new().replica().await;
    let device = json!({"id": "device-0123456789-abc"});
    let first = replica
        .call(Method::POST, "/v1/auth/device", None, Some(device.clone()))
        .await
        .expect(201);
    let again = replica
        .call(Method::POST, "/v1/auth/device", None, Some(device))
        .await
        .expect(200);
    assert_eq!(first["player"]["id"], again["player"]["id"]);
    assert_eq!(again["created"], false);
    let no_create = json!({"id": "another-device-0123", "create": false});
    assert_eq!(
        replica
            .call(Method::POST, "/v1/auth/device", None, Some(no_create))
            .await
            .error(404),
        "not_found"
    );
    let custom = json!({"id": "steam:76561198", "username": name("cus")});
    replica
        .call(Method::POST, "/v1/auth/custom", None, Some(custom))
        .await
        .expect(201);
}

#[tokio::test]
async fn refresh_tokens_rotate_and_a_reused_one_revokes_the_session() {
    let replica = Deployment::new().replica().await;
    let player = replica.player(&name("cat")).await;
    let refresh = |token: &str| json!({"refreshToken": token});
    let next = replica
        .call(
            Method::POST,
            "/v1/auth/refresh",
            None,
            Some(refresh(&player.refresh)),
        )
        .await
        .expect(200);
    let next_refresh = next["refreshToken"].as_str().expect("refresh").to_owned();
    let next_access = next["accessToken"].as_str().expect("access").to_owned();
    replica.get("/v1/players/me", &next_access).await.expect(200);

    // The first token again: a copy is in someone else's hands. The whole session ends.
    let reuse = replica
        .call(
            Method::POST,
            "/v1/auth/refresh",
            None,
            Some(refresh(&player.refresh)),
        )
        .await;
    assert_eq!(reuse.error(401), "unauthenticated");
    replica
        .call(
            Method::POST,
            "/v1/auth/refresh",
            None,
            Some(refresh(&next_refresh)),
        )
        .await
        .error(401);
    replica.get("/v1/players/me", &next_access).await.error(401);
    replica.get("/v1/players/me", &player.token).await.error(401);

    for garbage in ["", "x", &"a".repeat(500)] {
        replica
            .call(Method::POST, "/v1/auth/refresh", None, Some(refresh(garbage)))
            .await
            .error(401);
    }
}

#[tokio::test]
async fn sign_out_revokes_that_session_only() {
    let replica = Deployment::new().replica().await;
    let player = replica.player(&name("dan")).await;
    let device = json!({"id": player.device});
    let second = replica
        .call(Method::POST, "/v1/auth/device", None, Some(device))
        .await
        .expect(200);
    let second_token = second["accessToken"].as_str().expect("token");
    replica
        .call(Method::POST, "/v1/auth/logout", Some(&player.token), None)
        .await
        .expect(204);
    replica.get("/v1/players/me", &player.token).await.error(401);
    let refresh = json!({"refreshToken": player.refresh});
    replica
        .call(Method::POST, "/v1/auth/refresh", None, Some(refresh))
        .await
        .error(401);
    replica.get("/v1/players/me", second_token).await.expect(200);
}

#[tokio::test]
async fn forged_expired_and_malformed_access_tokens_are_refused() {
    let mut deployment = Deployment::new();
    deployment.access_token_seconds = 1;
    let replica = deployment.replica().await;
    let player = replica.player(&name("eve")).await;
    let parts: Vec<&str> = player.token.split('.').collect();
    let forged_claims = base64_url(&format!(
        r#"{{"iss":"flotilla-player","aud":"flotilla","sub":"someone","sid":"x","iat":0,"exp":{}}}"#,
        i64::MAX / 2
    ));
    let forged = format!("{}.{forged_claims}.{}", parts[0], parts[2]);
    for token in [forged.as_str(), "", "not-a-token", "a.b.c", &"x".repeat(4096)] {
        assert_eq!(
            replica.get("/v1/players/me", token).await.error(401),
            "unauthenticated",
            "{token}"
        );
    }
    let missing = replica.call(Method::GET, "/v1/players/me", None, None).await;
    assert_eq!(missing.error(401), "unauthenticated");
    replica.state.clock.advance(std::time::Duration::from_secs(2));
    let expired = replica.get("/v1/players/me", &player.token).await;
    assert_eq!(
        expired.body["error"]["message"],
        "authentication required: access token expired"
    );
}

fn base64_url(text: &str) -> String {
    use base64::Engine;
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(text)
}

#[tokio::test]
async fn linked_methods_sign_in_to_one_account_and_the_last_cannot_be_unlinked() {
    let replica = Deployment::new().replica().await;
    let player = replica.player(&name("fay")).await;
    let email = format!("{}@example.com", name("fay"));
    replica
        .post(
            "/v1/auth/link/email",
            &player.token,
            json!({"email": email, "password": "linked-pass"}),
        )
        .await
        .expect(204);
    replica
        .post(
            "/v1/auth/link/custom",
            &player.token,
            json!({"id": "custom-fay-1"}),
        )
        .await
        .expect(204);
    let login = json!({"email": email, "password": "linked-pass"});
    let by_email = replica
        .call(Method::POST, "/v1/auth/email/login", None, Some(login))
        .await
        .expect(200);
    assert_eq!(by_email["player"]["id"], player.id.as_str());

    let other = replica.player(&name("gus")).await;
    let taken = replica
        .post(
            "/v1/auth/link/custom",
            &other.token,
            json!({"id": "custom-fay-1"}),
        )
        .await;
    assert_eq!(taken.error(409), "conflict");
    assert_eq!(
        replica
            .post("/v1/auth/link/phone", &player.token, json!({"id": "x"}))
            .await
            .status,
        reqwest::StatusCode::NOT_FOUND,
        "no such method"
    );

    replica
        .post(
            "/v1/auth/unlink/custom",
            &player.token,
            json!({"id": "custom-fay-1"}),
        )
        .await
        .expect(204);
    replica
        .post("/v1/auth/unlink/email", &player.token, json!({"email": email}))
        .await
        .expect(204);
    let last = replica
        .post(
            "/v1/auth/unlink/device",
            &player.token,
            json!({"id": player.device}),
        )
        .await;
    assert_eq!(last.error(409), "conflict");
    let not_mine = replica
        .post(
            "/v1/auth/unlink/device",
            &player.token,
            json!({"id": "not-linked-device"}),
        )
        .await;
    assert!(not_mine.status.is_client_error());
}

#[tokio::test]
async fn a_ban_refuses_sign_in_and_revokes_live_tokens() {
    let replica = Deployment::new().replica().await;
    let player = replica.player(&name("hal")).await;
    let path = format!("/v1/admin/players/{}/ban", player.id);
    // A player's own token is not a service credential.
    replica
        .post(&path, &player.token, json!({"reason": "cheating"}))
        .await
        .error(401);
    replica
        .post(&path, SERVICE_KEY, json!({"reason": "cheating"}))
        .await
        .expect(204);
    replica.get("/v1/players/me", &player.token).await.error(401);
    let device = json!({"id": player.device});
    assert_eq!(
        replica
            .call(Method::POST, "/v1/auth/device", None, Some(device.clone()))
            .await
            .error(403),
        "banned"
    );
    let other = replica.player(&name("ivy")).await;
    replica
        .get(&format!("/v1/players/{}", player.id), &other.token)
        .await
        .error(404);

    replica
        .call(Method::DELETE, &path, Some(SERVICE_KEY), None)
        .await
        .expect(204);
    replica
        .call(Method::POST, "/v1/auth/device", None, Some(device))
        .await
        .expect(200);
}

#[tokio::test]
async fn login_attempts_are_limited_per_account_and_per_address() {
    let mut deployment = Deployment::new();
    deployment.login_limit_account = 3;
    deployment.login_limit_address = 5;
    let replica = deployment.replica().await;
    // Limits live in the shared Redis: a fresh email and fresh addresses (IPv6 documentation
    // range) per run keep runs, and other tests signing in from 127.0.0.1, from counting each other.
    let fresh_address = || {
        let now = flotilla_storage::mongo::now_ms();
        format!("2001:db8::{:x}:{:x}", (now >> 16) & 0xffff, now & 0xffff)
    };
    let from = |address: &str, path: &str, body: Value| {
        replica
            .http
            .post(replica.url(path))
            .header("x-test-client", address)
            .json(&body)
            .send()
    };
    let answer = async |sent: reqwest::Result<reqwest::Response>| {
        let response = sent.expect("sent");
        let status = response.status().as_u16();
        let retry_after = response
            .headers()
            .get("retry-after")
            .map(|value| value.to_str().expect("header").parse::<u64>().expect("seconds"));
        let body: Value = response.json().await.unwrap_or(Value::Null);
        (status, retry_after, body["error"]["code"].clone())
    };

    let address = fresh_address();
    let wrong = json!({"email": format!("{}@example.com", name("target")), "password": "guess-000"});
    for _ in 0..3 {
        let (status, _, _) = answer(from(&address, "/v1/auth/email/login", wrong.clone()).await).await;
        assert_eq!(status, 401);
    }
    let (status, retry_after, code) = answer(from(&address, "/v1/auth/email/login", wrong).await).await;
    assert_eq!((status, code), (429, json!("rate_limited")));
    let retry_after = retry_after.expect("Retry-After");
    assert!((1..=300).contains(&retry_after), "{retry_after}");

    // Per address: appended by the one trusted proxy to whatever the client sent. A new made-up
    // address on the left each time changes nothing.
    tokio::time::sleep(std::time::Duration::from_millis(2)).await;
    let address = fresh_address();
    let mut answers = Vec::new();
    for i in 0..7 {
        let body = json!({"id": format!("device-{}-{i}", name("limit"))});
        let forwarded = format!("198.51.100.{i}, {address}");
        let (status, _, _) = answer(from(&forwarded, "/v1/auth/device", body).await).await;
        answers.push(status);
    }
    assert_eq!(answers, [201, 201, 201, 201, 201, 429, 429]);
}

#[tokio::test]
async fn malformed_and_oversized_bodies_get_a_clear_400_and_change_nothing() {
    let replica = Deployment::new().replica().await;
    let raw = |body: &'static str| {
        replica
            .http
            .post(replica.url("/v1/auth/email/register"))
            .header("content-type", "application/json")
            .body(body)
    };
    for body in [
        "{",
        "[]",
        "null",
        r#"{"email": 1}"#,
        r#"{"email":"a@b.co","password":"password1","username":"ok_name","admin":true}"#,
    ] {
        let response = raw(body).send().await.expect("sent");
        assert_eq!(response.status().as_u16(), 400, "{body}");
        let error: serde_json::Value = response.json().await.expect("json");
        assert_eq!(error["error"]["code"], "bad_request");
    }
    let huge = format!(
        r#"{{"email":"a@b.co","password":"{}","username":"huge"}}"#,
        "x".repeat(100_000)
    );
    let response = replica
        .http
        .post(replica.url("/v1/auth/email/register"))
        .header("content-type", "application/json")
        .body(huge)
        .send()
        .await
        .expect("sent");
    assert!(
        response.status().as_u16() == 400 || response.status().as_u16() == 413,
        "{}",
        response.status()
    );
    let bad_fields = [
        (
            json!({"email": "not-an-email", "password": "password1", "username": "okname"}),
            "email",
        ),
        (
            json!({"email": "a@b.co", "password": "short", "username": "okname"}),
            "password",
        ),
        (
            json!({"email": "a@b.co", "password": "password1", "username": "no spaces"}),
            "username",
        ),
        (
            json!({"email": "a@b.co", "password": "password1", "username": "okname", "displayName": ""}),
            "displayName",
        ),
    ];
    for (body, field) in bad_fields {
        let answer = replica
            .call(Method::POST, "/v1/auth/email/register", None, Some(body))
            .await;
        assert_eq!(answer.body["error"]["field"], field);
        answer.error(400);
    }
    let players = replica
        .state
        .players
        .count(mongodb::bson::doc! {})
        .await
        .expect("count");
    assert_eq!(players, 0, "no bad request created a player");
}

#[tokio::test]
async fn the_atomic_writes_migration_keeps_sign_ins_and_bans_written_before_it() {
    use base64::Engine;
    use mongodb::bson::{Document, doc};
    let deployment = Deployment::new();
    let replica = deployment.replica().await;
    let database = replica.state.mongo.database();
    let tokens = database.collection::<Document>("refresh_tokens");
    let hash = |token: &str| {
        base64::engine::general_purpose::URL_SAFE_NO_PAD
            .encode(ring::digest::digest(&ring::digest::SHA256, token.as_bytes()))
    };

    // As a release before migration 5 left things: a sign-in's used and current refresh tokens,
    // marked rather than numbered, and a ban kept only in the player document.
    let kept = replica.player(&name("kim")).await;
    let banned = replica.player(&name("lou")).await;
    tokens
        .drop_index("family_generation")
        .await
        .expect("drop the new index");
    let now = flotilla_storage::mongo::now_ms();
    // Used and unused, older and newer; two unused in one family, as two refreshes at once could
    // both win under the old conditional update.
    for (token, used, created_ms) in [
        ("legacy-used-token", true, now - 2),
        ("legacy-twin-token", false, now - 1),
        ("legacy-current-token", false, now),
    ] {
        let document = doc! {"_id": hash(token), "family": "legacy-family", "player": &kept.id,
        "used": used, "expires_ms": now + 3_600_000, "created_ms": created_ms};
        tokens.insert_one(document).await.expect("legacy token");
    }
    database
        .collection::<Document>("players")
        .update_one(
            doc! {"_id": &banned.id},
            doc! {"$set": {"banned": {"reason": "cheating", "since_ms": now}}},
        )
        .await
        .expect("ban as before");
    // The old ban handler dropped the cached profile too.
    flotilla_player::players::invalidate(&replica.state, &banned.id)
        .await
        .expect("invalidate");
    assert_eq!(deployment.migrate_again(5).await, [5]);
    for dropped in ["legacy-used-token", "legacy-twin-token"] {
        let filter = doc! {"_id": hash(dropped)};
        assert_eq!(
            tokens.count_documents(filter).await.expect("count"),
            0,
            "{dropped} is dropped"
        );
    }

    let next = replica.refresh("legacy-current-token").await.expect(200);
    assert_eq!(next["player"]["id"], kept.id.as_str());
    replica.refresh("legacy-used-token").await.error(401);

    let device = json!({"id": banned.device});
    let refused = replica
        .call(Method::POST, "/v1/auth/device", None, Some(device.clone()))
        .await;
    assert_eq!(refused.error(403), "banned");
    replica
        .call(
            Method::DELETE,
            &format!("/v1/admin/players/{}/ban", banned.id),
            Some(SERVICE_KEY),
            None,
        )
        .await
        .expect(204);
    replica
        .call(Method::POST, "/v1/auth/device", None, Some(device))
        .await
        .expect(200);
}

#[tokio::test]
async fn access_tokens_carry_the_accounts_creation_time_and_the_keys_that_verify_them_are_published() {
    use base64::Engine;
    let replica = Deployment::new().replica().await;
    let device = json!({"id": format!("device-{}", name("d"))});
    let signed_in = replica
        .call(Method::POST, "/v1/auth/device", None, Some(device))
        .await
        .expect(201);
    let token = signed_in["accessToken"].as_str().expect("token");
    let payload = token.split('.').nth(1).expect("a JWT");
    let claims: Value = serde_json::from_slice(
        &base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(payload)
            .expect("base64url"),
    )
    .expect("json");
    let created_ms = signed_in["player"]["createdMs"].as_i64().expect("createdMs");
    assert_eq!(claims["created"], created_ms / 1000);

    let keys = replica
        .call(Method::GET, "/v1/auth/keys", None, None)
        .await
        .expect(200);
    let keys: Vec<String> = serde_json::from_value(keys["keys"].clone()).expect("keys");
    let verifier = flotilla_player::tokens::Verifier::from_public_keys(&keys).expect("keys");
    let verified = verifier
        .verify(token, flotilla_storage::mongo::now_ms() / 1000)
        .expect("verified with the published keys");
    assert_eq!(verified.created, Some(created_ms / 1000));
}
