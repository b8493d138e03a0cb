//! The SDK endpoint on the local cluster, called as a game server calls it: with a token of
//! its own pod (audience `flotilla.dev/sdk`), here requested the way the kubelet requests the
//! one it mounts into the pod.

use std::time::Duration;

use flotilla_api::{GameServerState, Health};
use flotilla_e2e::{FleetFixture, eventually};
use k8s_openapi::api::{
    authentication::v1::{BoundObjectReference, TokenRequest, TokenRequestSpec},
    core::v1::{Pod, ServiceAccount},
};
use kube::{Api, ResourceExt, api::PostParams};
use serde_json::json;

type TestResult = flotilla_e2e::Result<()>;

/// A token of `pod`'s service account, bound to the pod, for `audience`.
async fn pod_token(fixture: &FleetFixture, pod: &str, audience: &str) -> flotilla_e2e::Result<String> {
    let pod: Pod = fixture.ns.api::<Pod>().get(pod).await?;
    let request = TokenRequest {
        spec: Some(TokenRequestSpec {
            audiences: Some(vec![audience.to_owned()]),
            expiration_seconds: Some(600),
            bound_object_ref: Some(BoundObjectReference {
                api_version: Some("v1".into()),
                kind: Some("Pod".into()),
                name: pod.metadata.name.clone(),
                uid: pod.metadata.uid.clone(),
            }),
        }),
        ..Default::default()
    };
    let accounts: Api<ServiceAccount> = fixture.ns.api();
    let issued = accounts
        .create_token_request("default", &PostParams::default(), &request)
        .await?;
    Ok(issued.status.and_then(|s| s.token).unwrap_or_default())
}

/// Calls the SDK; returns the status code and the JSON body.
async fn call(
    fixture: &FleetFixture,
    token: Option<&str>,
    method: reqwest::Method,
    path: &str,
    body: Option<serde_json::Value>,
) -> flotilla_e2e::Result<(u16, serde_json::Value)> {
    let mut request = reqwest::Client::new()
        .request(method, format!("{}{path}", fixture.operator.sdk_url))
        .timeout(Duration::from_secs(10));
    if let Some(token) = token {
        request = request.bearer_auth(token);
    }
    if let Some(body) = body {
        request = request.json(&body);
    }
    let response = request.send().await?;
    let status = response.status().as_u16();
    let text = response.text().await?;
    Ok((
        status,
        serde_json::from_str(&text).unwrap_or(serde_json::Value::String(text)),
    ))
}

/// Waits until the operator's SDK endpoint answers at all.
async fn sdk_up(fixture: &FleetFixture) -> flotilla_e2e::Result<()> {
    eventually(Duration::from_secs(30), "the SDK endpoint", || async {
        Ok(
            call(fixture, None, reqwest::Method::GET, "/sdk/v1/gameserver", None)
                .await
                .ok()
                .map(|_| ()),
        )
    })
    .await
}

/// A fleet of one server with the given health settings, the server's name, and an SDK token
/// of its pod, once the SDK endpoint answers.
async fn one_server(prefix: &str, health: Health) -> flotilla_e2e::Result<(FleetFixture, String, String)> {
    let fixture = FleetFixture::start(prefix, 1, health).await?;
    sdk_up(&fixture).await?;
    let name = fixture.scheduled(1).await?.remove(0).name_any();
    let token = pod_token(&fixture, &name, "flotilla.dev/sdk").await?;
    Ok((fixture, name, token))
}

#[tokio::test]
async fn ready_heartbeats_and_silence_move_a_server_through_its_states() -> TestResult {
    let health = Health {
        disabled: false,
        initial_delay_seconds: 2,
        period_seconds: 1,
        failure_threshold: 2,
    };
    let (fixture, name, token) = one_server("sdk-health", health).await?;

    let beats = {
        let (url, token) = (fixture.operator.sdk_url.clone(), token.clone());
        tokio::spawn(async move {
            let client = reqwest::Client::new();
            loop {
                let _ = client
                    .post(format!("{url}/sdk/v1/health"))
                    .bearer_auth(&token)
                    .send()
                    .await;
                tokio::time::sleep(Duration::from_millis(300)).await;
            }
        })
    };
    let (status, body) = call(
        &fixture,
        Some(&token),
        reqwest::Method::POST,
        "/sdk/v1/ready",
        None,
    )
    .await?;
    assert_eq!(status, 200, "{body}");
    fixture.in_state(&name, GameServerState::Ready).await?;

    // Heartbeats keep it Ready well past initialDelay + period × threshold.
    tokio::time::sleep(Duration::from_secs(5)).await;
    let server = fixture.servers.get(&name).await?;
    assert_eq!(
        server.status.map(|s| s.state),
        Some(GameServerState::Ready),
        "heartbeats keep it healthy"
    );

    // Silence turns it Unhealthy, and the fleet replaces it.
    beats.abort();
    let started = std::time::Instant::now();
    let replacement = eventually(
        Duration::from_secs(30),
        "a replacement for the silent server",
        || async {
            let servers = fixture.live_servers().await?;
            Ok(servers.into_iter().find(|s| s.name_any() != name))
        },
    )
    .await?;
    assert!(
        started.elapsed() < Duration::from_secs(15),
        "noticed within the failure window"
    );
    assert_ne!(replacement.name_any(), name);
    fixture.ns.delete().await
}

#[tokio::test]
async fn sdk_calls_change_only_the_callers_server_and_bad_calls_get_clear_errors() -> TestResult {
    let fixture = FleetFixture::start("sdk-calls", 2, FleetFixture::no_health()).await?;
    sdk_up(&fixture).await?;
    let servers = fixture.scheduled(2).await?;
    let (mine, other) = (servers[0].name_any(), servers[1].name_any());
    let token = pod_token(&fixture, &mine, "flotilla.dev/sdk").await?;
    let sdk = |method, path: &'static str, body| {
        let (fixture, token) = (&fixture, token.clone());
        async move { call(fixture, Some(&token), method, path, body).await }
    };

    // Who am I: the server of the pod the token is bound to.
    let (status, body) = sdk(reqwest::Method::GET, "/sdk/v1/gameserver", None).await?;
    assert_eq!(
        (status, body["metadata"]["name"].as_str()),
        (200, Some(mine.as_str()))
    );

    // Labels land on this server only, under the SDK prefix.
    let (status, _) = sdk(
        reqwest::Method::PUT,
        "/sdk/v1/labels/mode",
        Some(json!({"value": "ranked"})),
    )
    .await?;
    assert_eq!(status, 200);
    let labelled = fixture.servers.get(&mine).await?;
    assert_eq!(
        labelled.labels().get("sdk.flotilla.dev/mode").map(String::as_str),
        Some("ranked")
    );
    assert!(
        !fixture
            .servers
            .get(&other)
            .await?
            .labels()
            .contains_key("sdk.flotilla.dev/mode")
    );

    // Players: capacity, connect, and a full server refuses the next one.
    assert_eq!(
        sdk(
            reqwest::Method::PUT,
            "/sdk/v1/players/capacity",
            Some(json!({"capacity": 1}))
        )
        .await?
        .0,
        200
    );
    assert_eq!(
        sdk(reqwest::Method::POST, "/sdk/v1/players/p1/connect", None)
            .await?
            .0,
        200
    );
    let (status, body) = sdk(reqwest::Method::POST, "/sdk/v1/players/p2/connect", None).await?;
    assert_eq!(status, 400);
    assert!(
        body["error"].as_str().unwrap_or_default().contains("full"),
        "{body}"
    );
    let players = fixture
        .servers
        .get(&mine)
        .await?
        .status
        .and_then(|s| s.players)
        .expect("players");
    assert_eq!((players.count, players.ids), (1, vec!["p1".to_owned()]));

    // Ready, then allocate itself, then a reservation is refused: Allocated cannot go back to Reserved.
    assert_eq!(sdk(reqwest::Method::POST, "/sdk/v1/ready", None).await?.0, 200);
    fixture.in_state(&mine, GameServerState::Ready).await?;
    assert_eq!(sdk(reqwest::Method::POST, "/sdk/v1/allocate", None).await?.0, 200);
    let (status, body) = sdk(
        reqwest::Method::POST,
        "/sdk/v1/reserve",
        Some(json!({"seconds": 5})),
    )
    .await?;
    assert_eq!(status, 409, "{body}");
    assert_eq!(
        body["error"],
        "a game server cannot go from Allocated to Reserved"
    );

    // Bad input is refused with a message, and changes nothing.
    let (status, body) = sdk(
        reqwest::Method::PUT,
        "/sdk/v1/labels/flotilla.dev%2Ffleet",
        Some(json!({"value": "x"})),
    )
    .await?;
    assert_eq!(status, 400, "{body}");
    let (status, _) = sdk(
        reqwest::Method::POST,
        "/sdk/v1/reserve",
        Some(json!({"seconds": "soon"})),
    )
    .await?;
    assert!((400..500).contains(&status), "a malformed body is a client error");
    assert_eq!(
        fixture.servers.get(&mine).await?.status.map(|s| s.state),
        Some(GameServerState::Allocated)
    );

    // No token, a garbage token, or a token for the API server's audience: 401.
    assert_eq!(
        call(&fixture, None, reqwest::Method::POST, "/sdk/v1/ready", None)
            .await?
            .0,
        401
    );
    assert_eq!(
        call(
            &fixture,
            Some("not-a-token"),
            reqwest::Method::POST,
            "/sdk/v1/ready",
            None
        )
        .await?
        .0,
        401
    );
    let api_token = pod_token(&fixture, &other, "https://kubernetes.default.svc.cluster.local").await?;
    assert_eq!(
        call(
            &fixture,
            Some(&api_token),
            reqwest::Method::POST,
            "/sdk/v1/ready",
            None
        )
        .await?
        .0,
        401
    );
    assert_eq!(
        fixture.servers.get(&other).await?.status.map(|s| s.state),
        Some(GameServerState::Scheduled)
    );
    fixture.ns.delete().await
}

#[tokio::test]
async fn a_reservation_returns_the_server_to_ready_when_it_runs_out() -> TestResult {
    let (fixture, name, token) = one_server("sdk-reserve", FleetFixture::no_health()).await?;
    assert_eq!(
        call(
            &fixture,
            Some(&token),
            reqwest::Method::POST,
            "/sdk/v1/ready",
            None
        )
        .await?
        .0,
        200
    );
    fixture.in_state(&name, GameServerState::Ready).await?;
    let (status, body) = call(
        &fixture,
        Some(&token),
        reqwest::Method::POST,
        "/sdk/v1/reserve",
        Some(json!({"seconds": 2})),
    )
    .await?;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["status"]["state"], "Reserved");
    let reserved_at = std::time::Instant::now();
    fixture.in_state(&name, GameServerState::Ready).await?;
    assert!(
        reserved_at.elapsed() >= Duration::from_millis(1500),
        "held for the reservation"
    );
    fixture.ns.delete().await
}

#[tokio::test]
async fn watching_its_own_server_streams_its_state_changes() -> TestResult {
    let (fixture, name, token) = one_server("sdk-watch", FleetFixture::no_health()).await?;
    let mut stream = reqwest::Client::new()
        .get(format!("{}/sdk/v1/gameserver/watch", fixture.operator.sdk_url))
        .bearer_auth(&token)
        .send()
        .await?;
    assert_eq!(stream.status().as_u16(), 200);
    assert_eq!(
        stream.headers().get("content-type").and_then(|v| v.to_str().ok()),
        Some("application/x-ndjson")
    );

    let mut buffer = String::new();
    let mut states = Vec::new();
    let mut called_ready = false;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    while !states.iter().any(|s| s == "Ready") {
        let chunk = tokio::time::timeout_at(deadline, stream.chunk())
            .await
            .map_err(|_| flotilla_e2e::Error::Timeout(Duration::from_secs(30), "watch lines".into()))??;
        let Some(chunk) = chunk else { break };
        buffer.push_str(&String::from_utf8_lossy(&chunk));
        while let Some((line, rest)) = buffer.split_once('\n') {
            let server: serde_json::Value = serde_json::from_str(line).expect("each line is a GameServer");
            assert_eq!(
                server["metadata"]["name"],
                name.as_str(),
                "only the caller's own server"
            );
            states.push(server["status"]["state"].as_str().unwrap_or_default().to_owned());
            buffer = rest.to_owned();
        }
        if !called_ready && !states.is_empty() {
            called_ready = true;
            assert_eq!(
                call(
                    &fixture,
                    Some(&token),
                    reqwest::Method::POST,
                    "/sdk/v1/ready",
                    None
                )
                .await?
                .0,
                200
            );
        }
    }
    assert_eq!(
        states.first().map(String::as_str),
        Some("Scheduled"),
        "the current state comes first: {states:?}"
    );
    assert!(
        states.iter().any(|s| s == "RequestReady"),
        "every change is streamed: {states:?}"
    );
    assert_eq!(states.last().map(String::as_str), Some("Ready"));
    fixture.ns.delete().await
}
