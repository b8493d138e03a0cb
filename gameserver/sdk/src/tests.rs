//! The client against a small in-process endpoint on 127.0.0.1 that records every request:
//! exact methods, paths, tokens and bodies, and how answers map to results and errors. The
//! real endpoint is exercised by the cluster suites (`e2e/`), through `flotilla/testpod`.

use std::{
    collections::VecDeque,
    convert::Infallible,
    path::PathBuf,
    sync::{
        Arc, Mutex,
        atomic::{AtomicUsize, Ordering},
    },
    time::Duration,
};

use axum::{
    Router,
    body::{Body, Bytes},
    extract::State,
    http::{HeaderMap, Method, StatusCode, Uri},
    response::{IntoResponse, Response},
};
use futures::StreamExt;
use serde_json::{Value, json};

use crate::{Error, GameServerState, Sdk, TokenSource};

/// A request as the endpoint saw it.
#[derive(Debug, Clone, PartialEq)]
struct Seen {
    method: Method,
    path: String,
    authorization: Option<String>,
    body: Option<Value>,
}

impl Seen {
    fn new(method: Method, path: &str, token: &str, body: Option<Value>) -> Self {
        Seen {
            method,
            path: path.to_owned(),
            authorization: Some(format!("Bearer {token}")),
            body,
        }
    }
}

#[derive(Default)]
struct Mock {
    seen: Mutex<Vec<Seen>>,
    /// Answers to give, in order, before the default ones (a GameServer; `204` for health).
    replies: Mutex<VecDeque<(StatusCode, String)>>,
    /// What the watch streams, one chunk at a time.
    watch_chunks: Mutex<Vec<Vec<u8>>>,
}

impl Mock {
    fn reply(&self, status: StatusCode, body: impl Into<String>) {
        self.replies
            .lock()
            .expect("replies")
            .push_back((status, body.into()));
    }

    fn seen(&self) -> Vec<Seen> {
        self.seen.lock().expect("seen").clone()
    }

    fn count(&self, path: &str) -> usize {
        self.seen().iter().filter(|s| s.path == path).count()
    }
}

/// A GameServer as the endpoint would answer it.
fn server_json(state: &str) -> Value {
    json!({
        "apiVersion": "flotilla.dev/v1alpha1",
        "kind": "GameServer",
        "metadata": {"name": "arena-x1", "namespace": "games", "labels": {"sdk.flotilla.dev/mode": "ranked"}},
        "spec": {"ports": [{"name": "game", "containerPort": 7777}], "template": {}},
        "status": {"state": state, "address": "10.0.0.7"},
    })
}

async fn record(
    State(mock): State<Arc<Mock>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let path = uri.path().to_owned();
    mock.seen.lock().expect("seen").push(Seen {
        method,
        path: path.clone(),
        authorization: headers
            .get("authorization")
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned),
        body: (!body.is_empty()).then(|| serde_json::from_slice(&body).expect("request bodies are json")),
    });
    if let Some((status, body)) = mock.replies.lock().expect("replies").pop_front() {
        return (status, body).into_response();
    }
    match path.as_str() {
        "/sdk/v1/health" => StatusCode::NO_CONTENT.into_response(),
        "/sdk/v1/gameserver/watch" => {
            let chunks = std::mem::take(&mut *mock.watch_chunks.lock().expect("chunks"));
            // A pause between chunks, so they travel as separate reads.
            let stream = futures::stream::iter(chunks).then(|chunk| async move {
                tokio::time::sleep(Duration::from_millis(5)).await;
                Ok::<_, Infallible>(chunk)
            });
            (
                [("content-type", "application/x-ndjson")],
                Body::from_stream(stream),
            )
                .into_response()
        }
        _ => axum::Json(server_json("Ready")).into_response(),
    }
}

/// Starts the endpoint on a free port; returns its URL.
async fn serve(mock: &Arc<Mock>) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let address = listener.local_addr().expect("address");
    let app = Router::new().fallback(record).with_state(mock.clone());
    tokio::spawn(async move { axum::serve(listener, app).await });
    format!("http://{address}")
}

/// A token file, removed when dropped.
struct TokenFile(PathBuf);

impl TokenFile {
    fn new(token: &str) -> Self {
        static NEXT: AtomicUsize = AtomicUsize::new(0);
        let path = std::env::temp_dir().join(format!(
            "flotilla-sdk-test-{}-{}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        ));
        let file = TokenFile(path);
        file.write(token);
        file
    }

    fn write(&self, token: &str) {
        std::fs::write(&self.0, token).expect("write token");
    }

    fn source(&self) -> TokenSource {
        TokenSource::File(self.0.clone())
    }
}

impl Drop for TokenFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

async fn client(token: &str) -> (Arc<Mock>, Sdk, TokenFile) {
    let mock = Arc::new(Mock::default());
    let url = serve(&mock).await;
    let file = TokenFile::new(token);
    let sdk = Sdk::new(format!("{url}/"), file.source()).expect("client");
    (mock, sdk, file)
}

#[tokio::test]
async fn every_call_sends_the_request_the_protocol_names() {
    let (mock, sdk, _file) = client("t1\n").await;

    let server = sdk.game_server().await.expect("gameserver");
    assert_eq!(server.metadata.name.as_deref(), Some("arena-x1"));
    let ready = sdk.ready().await.expect("ready");
    assert_eq!(
        ready.status.map(|s| s.state),
        Some(GameServerState::Ready),
        "state changes return the updated GameServer"
    );
    sdk.health().await.expect("health");
    sdk.reserve(Duration::from_millis(1500)).await.expect("reserve");
    sdk.allocate().await.expect("allocate");
    sdk.set_label("mode", "ranked").await.expect("label");
    sdk.set_annotation("map", "dust / 2").await.expect("annotation");
    sdk.set_player_capacity(16).await.expect("capacity");
    sdk.player_connect("p/1 é").await.expect("connect");
    sdk.player_disconnect("p/1 é").await.expect("disconnect");
    sdk.shutdown().await.expect("shutdown");

    let t = "t1";
    assert_eq!(
        mock.seen(),
        vec![
            Seen::new(Method::GET, "/sdk/v1/gameserver", t, None),
            Seen::new(Method::POST, "/sdk/v1/ready", t, None),
            Seen::new(Method::POST, "/sdk/v1/health", t, None),
            Seen::new(Method::POST, "/sdk/v1/reserve", t, Some(json!({"seconds": 2}))),
            Seen::new(Method::POST, "/sdk/v1/allocate", t, None),
            Seen::new(
                Method::PUT,
                "/sdk/v1/labels/mode",
                t,
                Some(json!({"value": "ranked"}))
            ),
            Seen::new(
                Method::PUT,
                "/sdk/v1/annotations/map",
                t,
                Some(json!({"value": "dust / 2"}))
            ),
            Seen::new(
                Method::PUT,
                "/sdk/v1/players/capacity",
                t,
                Some(json!({"capacity": 16}))
            ),
            Seen::new(Method::POST, "/sdk/v1/players/p%2F1%20%C3%A9/connect", t, None),
            Seen::new(Method::POST, "/sdk/v1/players/p%2F1%20%C3%A9/disconnect", t, None),
            Seen::new(Method::POST, "/sdk/v1/shutdown", t, None),
        ]
    );
}

#[tokio::test]
async fn the_token_file_is_read_again_for_every_request() {
    let (mock, sdk, file) = client("first-token").await;
    sdk.health().await.expect("first");
    file.write("rotated-token\n");
    sdk.health().await.expect("second");
    let tokens: Vec<_> = mock.seen().into_iter().map(|s| s.authorization).collect();
    assert_eq!(
        tokens,
        vec![
            Some("Bearer first-token".to_owned()),
            Some("Bearer rotated-token".to_owned())
        ]
    );
}

#[tokio::test]
async fn a_missing_or_empty_token_file_fails_before_any_request() {
    let (mock, sdk, file) = client("").await;
    let err = sdk.ready().await.expect_err("empty token");
    assert!(matches!(err, Error::Token { .. }), "{err}");
    assert!(err.to_string().contains("is empty"), "{err}");
    drop(file);
    let err = sdk.ready().await.expect_err("no token file");
    assert_eq!(err.kind(), "token", "{err}");
    assert!(
        err.to_string().starts_with("reading the sdk token from "),
        "{err}"
    );
    assert!(mock.seen().is_empty());
}

#[tokio::test]
async fn rejections_keep_the_status_and_the_endpoints_message() {
    let (mock, sdk, _file) = client("t").await;

    mock.reply(
        StatusCode::CONFLICT,
        r#"{"error":"a game server cannot go from Allocated to Reserved"}"#,
    );
    let err = sdk.reserve(Duration::from_secs(5)).await.expect_err("conflict");
    assert!(err.is_conflict(), "{err}");
    assert_eq!(
        err.to_string(),
        "sdk request POST /sdk/v1/reserve rejected with 409 Conflict: \
         a game server cannot go from Allocated to Reserved"
    );

    mock.reply(
        StatusCode::BAD_REQUEST,
        r#"{"error":"the server is full (1 players)"}"#,
    );
    let err = sdk.player_connect("p2").await.expect_err("full");
    assert!(err.is_bad_request());
    assert!(
        matches!(&err, Error::Rejected { message, .. } if message == "the server is full (1 players)"),
        "{err}"
    );

    mock.reply(
        StatusCode::UNAUTHORIZED,
        r#"{"error":"unauthenticated: missing bearer token"}"#,
    );
    assert!(sdk.health().await.expect_err("401").is_unauthorized());

    mock.reply(StatusCode::NOT_FOUND, "");
    let err = sdk.game_server().await.expect_err("404");
    assert!(err.is_not_found());
    assert!(err.to_string().ends_with("404 Not Found: Not Found"), "{err}");

    mock.reply(StatusCode::BAD_GATEWAY, "upstream went away");
    let err = sdk.allocate().await.expect_err("502");
    assert_eq!(err.status(), Some(StatusCode::BAD_GATEWAY));
    assert!(err.to_string().ends_with(": upstream went away"), "{err}");
}

#[tokio::test]
async fn a_success_that_is_not_a_game_server_is_a_decode_error() {
    let (mock, sdk, _file) = client("t").await;
    mock.reply(StatusCode::OK, r#"{"kind":"Pod"}"#);
    let err = sdk.ready().await.expect_err("not a GameServer");
    assert_eq!(err.kind(), "decode", "{err}");
    assert!(
        err.to_string()
            .starts_with("sdk request POST /sdk/v1/ready answered unreadable json"),
        "{err}"
    );
}

#[tokio::test]
async fn arguments_the_endpoint_would_refuse_are_not_sent() {
    let (mock, sdk, _file) = client("t").await;
    let refused = [
        sdk.reserve(Duration::ZERO).await,
        sdk.reserve(Duration::from_secs(86_401)).await,
        sdk.reserve(Duration::from_millis(86_400_001)).await,
        sdk.set_player_capacity(100_001).await,
        sdk.set_label("", "x").await,
        sdk.player_connect("").await,
    ];
    for result in refused {
        let err = result.expect_err("refused");
        assert!(matches!(err, Error::InvalidArgument(_)), "{err}");
    }
    assert!(mock.seen().is_empty());

    sdk.reserve(Duration::from_secs(86_400))
        .await
        .expect("the longest");
    sdk.reserve(Duration::from_nanos(1)).await.expect("the shortest");
    let bodies: Vec<_> = mock.seen().into_iter().map(|s| s.body).collect();
    assert_eq!(
        bodies,
        vec![Some(json!({"seconds": 86_400})), Some(json!({"seconds": 1}))]
    );
}

#[tokio::test]
async fn an_endpoint_that_is_not_there_is_a_transport_error() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let address = listener.local_addr().expect("address");
    drop(listener);
    let sdk = Sdk::new(format!("http://{address}"), TokenSource::Static("t".into())).expect("client");
    let err = sdk.ready().await.expect_err("nobody listens");
    assert_eq!(err.kind(), "transport", "{err}");
    let text = err.to_string();
    assert!(
        text.starts_with("sdk request POST /sdk/v1/ready failed: "),
        "{text}"
    );
    assert!(
        text.to_lowercase().contains("connection refused"),
        "the cause is in the message: {text}"
    );
}

#[tokio::test]
async fn the_watch_parses_lines_split_across_chunks_and_reports_bad_ones() {
    let (mock, sdk, _file) = client("t").await;
    let first = format!("{}\n", server_json("Scheduled"));
    let second = format!("{}\n", server_json("Allocated"));
    let (head, tail) = first.split_at(first.len() / 2);
    *mock.watch_chunks.lock().expect("chunks") = vec![
        head.as_bytes().to_vec(),
        tail.as_bytes().to_vec(),
        b"not json\n\n".to_vec(),
        second.as_bytes()[..10].to_vec(),
        second.as_bytes()[10..].to_vec(),
    ];

    let mut watch = sdk.watch().await.expect("watch");
    let state = |item: Option<crate::Result<crate::GameServer>>| {
        item.expect("an item")
            .expect("a GameServer")
            .status
            .map(|s| s.state)
    };
    assert_eq!(state(watch.next().await), Some(GameServerState::Scheduled));
    let err = watch.next().await.expect("an item").expect_err("a bad line");
    assert_eq!(err.kind(), "decode", "{err}");
    assert!(
        err.to_string()
            .starts_with("sdk request GET /sdk/v1/gameserver/watch answered unreadable json"),
        "{err}"
    );
    assert_eq!(
        state(watch.next().await),
        Some(GameServerState::Allocated),
        "the stream goes on after a bad line; blank lines are skipped"
    );
    assert!(watch.next().await.is_none(), "ends with the response");
    assert_eq!(
        mock.seen(),
        vec![Seen::new(Method::GET, "/sdk/v1/gameserver/watch", "t", None)]
    );
}

#[tokio::test]
async fn a_refused_watch_fails_before_streaming() {
    let (mock, sdk, _file) = client("t").await;
    mock.reply(
        StatusCode::FORBIDDEN,
        r#"{"error":"forbidden: the calling pod no longer exists"}"#,
    );
    let err = sdk.watch().await.expect_err("403");
    assert_eq!(err.status(), Some(StatusCode::FORBIDDEN), "{err}");
}

#[tokio::test]
async fn heartbeats_go_on_through_failures_and_stop_when_dropped() {
    let (mock, sdk, _file) = client("t").await;
    // The first two heartbeats fail; the task keeps going.
    mock.reply(StatusCode::INTERNAL_SERVER_ERROR, r#"{"error":"internal error"}"#);
    mock.reply(StatusCode::INTERNAL_SERVER_ERROR, r#"{"error":"internal error"}"#);
    let health = sdk.spawn_health(Duration::from_millis(20));
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(!health.is_finished());
    let sent = mock.count("/sdk/v1/health");
    assert!(sent >= 4, "about one per period: {sent}");

    health.stop();
    tokio::time::sleep(Duration::from_millis(30)).await;
    let after_stop = mock.count("/sdk/v1/health");
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(
        mock.count("/sdk/v1/health"),
        after_stop,
        "no heartbeat after stop"
    );
    assert!(mock.seen().iter().all(|s| s.method == Method::POST));
}
