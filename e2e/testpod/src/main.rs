//! `flotilla/testpod`: a small HTTP server the cluster tests run as a pod.
//!
//! - `GET /` answers with the pod's name, address and process id;
//! - `GET /healthz` is always 200; `GET /ready` is 503 until `--ready-after-ms` has passed;
//! - `GET /kube?path=/api/...` calls the API server with the pod's in-cluster credentials and
//!   answers with the status code it got, so a test can see what the service account may do;
//! - `--exit-after-ms`/`--exit-code` make the process exit on its own, to test restarts;
//! - `--sdk-ready` makes it behave as a minimal game server: through `flotilla-sdk`, it calls
//!   the Flotilla SDK's Ready with its pod's token, then sends a health heartbeat every
//!   `--heartbeat-ms` (failures are logged to stderr; `RUST_LOG` sets the level).

use std::{
    net::{IpAddr, SocketAddr},
    sync::Arc,
    time::{Duration, Instant},
};

use axum::{
    Json, Router,
    extract::{Query, State},
    http::StatusCode,
    routing::get,
};
use clap::Parser;

#[derive(Debug, Parser)]
struct Args {
    /// Address to listen on: the pod IP (downward API) in a pod.
    #[arg(long, env = "POD_IP", default_value = "127.0.0.1")]
    host: IpAddr,
    #[arg(long, env = "PORT", default_value_t = 8080)]
    port: u16,
    /// Name reported by `GET /`.
    #[arg(long, env = "POD_NAME", default_value = "testpod")]
    name: String,
    /// `GET /ready` answers 503 until this many milliseconds after start.
    #[arg(long, default_value_t = 0)]
    ready_after_ms: u64,
    /// Exit by itself after this many milliseconds.
    #[arg(long)]
    exit_after_ms: Option<u64>,
    /// Exit code used with `--exit-after-ms`.
    #[arg(long, default_value_t = 1)]
    exit_code: u8,
    /// Call SDK Ready, then send heartbeats (uses FLOTILLA_SDK_URL and FLOTILLA_SDK_TOKEN_FILE).
    #[arg(long)]
    sdk_ready: bool,
    #[arg(long, default_value_t = 3000)]
    heartbeat_ms: u64,
}

#[derive(Debug, thiserror::Error)]
enum Error {
    #[error("listening on {address}: {source}")]
    Listen {
        address: SocketAddr,
        source: std::io::Error,
    },
    #[error("serving http: {0}")]
    Serve(std::io::Error),
}

#[derive(Debug)]
struct AppState {
    name: String,
    address: SocketAddr,
    started: Instant,
    ready_after: Duration,
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> std::process::ExitCode {
    // Warnings (failed heartbeats) to stderr, like the rest of the pod's complaints.
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "warn".into()),
        )
        .init();
    match run(Args::parse()).await {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("testpod: {e}");
            std::process::ExitCode::FAILURE
        }
    }
}

async fn run(args: Args) -> Result<(), Error> {
    let Args {
        host,
        port,
        name,
        ready_after_ms,
        exit_after_ms,
        exit_code,
        sdk_ready,
        heartbeat_ms,
    } = args;
    let address = SocketAddr::new(host, port);
    let listener = tokio::net::TcpListener::bind(address)
        .await
        .map_err(|source| Error::Listen { address, source })?;
    println!("testpod {name} listening on {address}");
    if let Some(ms) = exit_after_ms {
        tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(ms)).await;
            println!("testpod exiting with code {exit_code} as asked");
            std::process::exit(i32::from(exit_code));
        });
    }
    if sdk_ready {
        tokio::spawn(play_game_server(Duration::from_millis(heartbeat_ms)));
    }
    let state = Arc::new(AppState {
        name,
        address,
        started: Instant::now(),
        ready_after: Duration::from_millis(ready_after_ms),
    });
    let app = Router::new()
        .route("/", get(identity))
        .route("/healthz", get(|| async { "ok" }))
        .route("/ready", get(ready))
        .route("/kube", get(kube_status))
        .with_state(state);
    axum::serve(listener, app)
        .with_graceful_shutdown(async {
            if let Ok(mut term) = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                term.recv().await;
            }
            println!("testpod got SIGTERM, shutting down");
        })
        .await
        .map_err(Error::Serve)
}

async fn identity(State(state): State<Arc<AppState>>) -> Json<serde_json::Value> {
    Json(serde_json::json!({
        "name": state.name,
        "address": state.address.to_string(),
        "pid": std::process::id(),
    }))
}

async fn ready(State(state): State<Arc<AppState>>) -> StatusCode {
    if state.started.elapsed() >= state.ready_after {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    }
}

#[derive(Debug, serde::Deserialize)]
struct KubeQuery {
    path: String,
}

/// Calls the API with the pod's own service-account token (in-cluster configuration: the
/// token and CA mounted at /var/run/secrets/kubernetes.io/serviceaccount).
async fn kube_status(Query(query): Query<KubeQuery>) -> (StatusCode, String) {
    let config = match kube::Config::incluster() {
        Ok(config) => config,
        Err(e) => {
            return (
                StatusCode::INTERNAL_SERVER_ERROR,
                format!("no in-cluster config: {e}"),
            );
        }
    };
    let client = match kube::Client::try_from(config) {
        Ok(client) => client,
        Err(e) => {
            return (
                StatusCode::INTERNAL_SERVER_ERROR,
                format!("building the client: {e}"),
            );
        }
    };
    let request = match axum::http::Request::get(&query.path).body(Vec::<u8>::new()) {
        Ok(r) => r,
        Err(e) => return (StatusCode::BAD_REQUEST, format!("bad path: {e}")),
    };
    match client.send(request.map(kube::client::Body::from)).await {
        Ok(response) => (StatusCode::OK, response.status().as_u16().to_string()),
        Err(e) => (StatusCode::BAD_GATEWAY, format!("api request failed: {e}")),
    }
}

/// The SDK calls a game server makes: Ready, retried until it gets through (as a real server
/// would), then heartbeats every `heartbeat` for as long as the process lives. The client
/// reads the token file for every call, since the kubelet renews it.
async fn play_game_server(heartbeat: Duration) {
    let sdk = match flotilla_sdk::Sdk::from_env() {
        Ok(sdk) => sdk,
        Err(e) => {
            eprintln!("testpod: --sdk-ready: {e}");
            return;
        }
    };
    let mut backoff = Duration::from_millis(100);
    while let Err(e) = sdk.ready().await {
        eprintln!("testpod: sdk ready failed, retrying: {e}");
        tokio::time::sleep(backoff).await;
        backoff = (backoff * 2).min(Duration::from_secs(2));
    }
    println!("testpod: sdk ready");
    // Heartbeats stop when this is dropped, so this task holds it until the process ends.
    let _heartbeats = sdk.spawn_health(heartbeat);
    std::future::pending::<()>().await;
}
