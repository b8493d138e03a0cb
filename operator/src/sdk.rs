//! The SDK endpoint: the HTTP/JSON API through which a game server reports on itself (see
//! `docs/sdk.md`). No sidecar per pod: every game server calls the operator directly with the
//! token of its own pod, and can change only its own GameServer. State changes are written to
//! the API with the object's resourceVersion as precondition (retried on conflict); health
//! heartbeats are kept in memory and never written.

use std::{
    collections::HashMap,
    sync::{Arc, Mutex},
    time::Instant,
};

use axum::{
    Json, Router,
    extract::{Path, State},
    http::{HeaderMap, StatusCode},
    response::{IntoResponse, Response},
    routing::{get, post, put},
};
use flotilla_api::{Allocation, GameServer, GameServerState, GameServerStatus, PlayerStatus, labels};
use futures::StreamExt;
use jiff::Timestamp;
use k8s_openapi::{api::core::v1::Pod, apimachinery::pkg::apis::meta::v1::Time};
use kube::{
    Api, Client, ResourceExt,
    api::{GetParams, Patch, PatchParams},
    runtime::{
        reflector::{ObjectRef, Store},
        watcher,
    },
};
use serde::Deserialize;
use tracing::info;

use crate::{
    error::{Error, Result},
    metrics::{Metrics, SdkLabels},
    sdk_auth::{Authenticator, Caller},
};

/// Last heartbeat of each game server, by (namespace, name).
pub type Heartbeats = Arc<Mutex<HashMap<(String, String), Instant>>>;

/// Prefix of labels and annotations a game server sets on itself through the SDK.
pub const METADATA_PREFIX: &str = "sdk.flotilla.dev/";

pub struct SdkState {
    pub client: Client,
    pub auth: Authenticator,
    pub heartbeats: Heartbeats,
    pub metrics: Arc<Metrics>,
    pub changes: ServerChanges,
    /// Every GameServer, from the operator's one watch of them.
    pub servers: Store<GameServer>,
}

/// A change to some GameServer, as the operator's one watch of all of them saw it.
#[derive(Clone, Debug)]
pub enum ServerChange {
    Applied(Arc<GameServer>),
    Deleted { namespace: String, name: String },
}

/// Fans the operator's single GameServer watch out to every SDK watch request, so a thousand
/// game servers watching themselves cost one API watch, not a thousand.
#[derive(Clone)]
pub struct ServerChanges {
    sender: tokio::sync::broadcast::Sender<ServerChange>,
}

impl Default for ServerChanges {
    fn default() -> Self {
        // Room for a burst of changes across the fleet; a receiver that falls further behind
        // re-reads its server instead of missing a change.
        Self {
            sender: tokio::sync::broadcast::channel(8192).0,
        }
    }
}

impl ServerChanges {
    pub fn publish(&self, event: &watcher::Event<GameServer>) {
        let change = match event {
            watcher::Event::Apply(gs) | watcher::Event::InitApply(gs) => {
                ServerChange::Applied(Arc::new(gs.clone()))
            }
            watcher::Event::Delete(gs) => ServerChange::Deleted {
                namespace: gs.namespace().unwrap_or_default(),
                name: gs.name_any(),
            },
            watcher::Event::Init | watcher::Event::InitDone => return,
        };
        // No receivers is the normal case when no game server watches.
        let _ = self.sender.send(change);
    }
}

pub fn router(state: Arc<SdkState>) -> Router {
    Router::new()
        .route("/sdk/v1/gameserver", get(get_self))
        .route("/sdk/v1/gameserver/watch", get(watch_self))
        .route("/sdk/v1/ready", post(ready))
        .route("/sdk/v1/health", post(health))
        .route("/sdk/v1/reserve", post(reserve))
        .route("/sdk/v1/allocate", post(allocate))
        .route("/sdk/v1/shutdown", post(shutdown))
        .route("/sdk/v1/labels/{key}", put(set_label))
        .route("/sdk/v1/annotations/{key}", put(set_annotation))
        .route("/sdk/v1/players/capacity", put(set_capacity))
        .route("/sdk/v1/players/{id}/connect", post(player_connect))
        .route("/sdk/v1/players/{id}/disconnect", post(player_disconnect))
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            count_requests,
        ))
        .with_state(state)
}

/// Counts requests by route (not by raw path: player ids would make labels unbounded).
async fn count_requests(
    State(state): State<Arc<SdkState>>,
    request: axum::extract::Request,
    next: axum::middleware::Next,
) -> Response {
    let route = request
        .extensions()
        .get::<axum::extract::MatchedPath>()
        .map_or("unknown", |p| p.as_str())
        .to_owned();
    let response = next.run(request).await;
    state
        .metrics
        .sdk_requests
        .get_or_create(&SdkLabels {
            request: route,
            code: response.status().as_u16(),
        })
        .inc();
    response
}

async fn caller(state: &SdkState, headers: &HeaderMap) -> Result<Caller> {
    let token = headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .ok_or_else(|| Error::Unauthenticated("missing bearer token".into()))?;
    state.auth.authenticate(token.trim()).await
}

/// How fresh a read must be.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Read {
    /// The latest state (a quorum read): what a caller is shown.
    Fresh,
    /// From the API server's watch cache and the operator's own: good enough for a write that
    /// carries the resourceVersion it was computed from, since a stale read then fails with a
    /// conflict and is retried fresh. Saves two etcd reads per SDK state change, which adds up
    /// when a thousand servers report Ready at once.
    Cached,
}

/// The caller's GameServer, after checking the caller's pod is that server's current pod.
async fn server_of(state: &SdkState, caller: &Caller, read: Read) -> Result<GameServer> {
    let pods: Api<Pod> = Api::namespaced(state.client.clone(), &caller.namespace);
    let is_caller = |p: &Pod| p.uid().as_deref() == Some(caller.pod_uid.as_str());
    let cached = match read {
        // A pod that just started may not be in the watch cache yet: then read it fresh.
        Read::Cached => pods
            .get_with(&caller.pod_name, &GetParams::any())
            .await
            .ok()
            .filter(|p| is_caller(p)),
        Read::Fresh => None,
    };
    let pod = match cached {
        Some(pod) => pod,
        None => pods
            .get_opt(&caller.pod_name)
            .await?
            .filter(|p| is_caller(p))
            .ok_or_else(|| Error::Forbidden("the calling pod no longer exists".into()))?,
    };
    let server_name = pod
        .labels()
        .get(labels::GAME_SERVER)
        .cloned()
        .ok_or_else(|| Error::Forbidden(format!("pod {} is not a game server's pod", caller.pod_name)))?;
    if read == Read::Cached
        && let Some(server) = state
            .servers
            .get(&ObjectRef::new(&server_name).within(&caller.namespace))
    {
        return Ok((*server).clone());
    }
    let servers: Api<GameServer> = Api::namespaced(state.client.clone(), &caller.namespace);
    servers
        .get_opt(&server_name)
        .await?
        .ok_or_else(|| Error::NotFound(format!("game server {}/{server_name}", caller.namespace)))
}

/// Applies `change` to the caller's server status and writes it with the resourceVersion it
/// was read at, retrying from a fresh read when someone else wrote in between.
async fn update_status(
    state: &SdkState,
    headers: &HeaderMap,
    change: impl Fn(&mut GameServerStatus) -> Result<()>,
) -> Result<Json<GameServer>> {
    let caller = caller(state, headers).await?;
    for attempt in 0..5 {
        let read = if attempt == 0 { Read::Cached } else { Read::Fresh };
        let server = server_of(state, &caller, read).await?;
        let mut status = server.status.clone().unwrap_or_default();
        change(&mut status)?;
        if server.status.as_ref() == Some(&status) {
            return Ok(Json(server));
        }
        let patch = crate::status_patch::status_patch(&server, &status);
        let servers: Api<GameServer> = Api::namespaced(state.client.clone(), &caller.namespace);
        match servers
            .patch_status(&server.name_any(), &PatchParams::default(), &Patch::Merge(patch))
            .await
        {
            Ok(updated) => {
                info!(namespace = %caller.namespace, name = %server.name_any(), state = %status.state, "sdk update");
                return Ok(Json(updated));
            }
            Err(kube::Error::Api(e)) if e.code == 409 => continue,
            Err(e) => return Err(e.into()),
        }
    }
    Err(Error::Conflict("the game server kept changing; try again".into()))
}

fn to_state(status: &mut GameServerStatus, next: GameServerState) -> Result<()> {
    if !status.state.can_become(next) {
        return Err(Error::Transition {
            from: status.state,
            to: next,
        });
    }
    status.state = next;
    Ok(())
}

async fn get_self(State(state): State<Arc<SdkState>>, headers: HeaderMap) -> Result<Json<GameServer>> {
    let caller = caller(&state, &headers).await?;
    Ok(Json(server_of(&state, &caller, Read::Fresh).await?))
}

/// A stream of the caller's GameServer, one JSON object per line (`application/x-ndjson`):
/// its current state first, then every change, until it is deleted.
async fn watch_self(State(state): State<Arc<SdkState>>, headers: HeaderMap) -> Result<Response> {
    let caller = caller(&state, &headers).await?;
    // Subscribe before reading the current object, so no change can fall in between.
    let changes = state.changes.sender.subscribe();
    let server = server_of(&state, &caller, Read::Fresh).await?;
    let api: Api<GameServer> = Api::namespaced(state.client.clone(), &caller.namespace);
    let (namespace, name) = (caller.namespace.clone(), server.name_any());
    let first = futures::stream::once(std::future::ready(Some(server.clone())));
    let rest = futures::stream::unfold(
        (changes, server.resource_version(), false),
        move |(mut changes, mut last, done)| {
            let (api, namespace, name) = (api.clone(), namespace.clone(), name.clone());
            async move {
                if done {
                    return None;
                }
                loop {
                    match changes.recv().await {
                        Ok(ServerChange::Applied(gs))
                            if gs.name_any() == name && gs.namespace().as_deref() == Some(&namespace) =>
                        {
                            if gs.resource_version() != last {
                                last = gs.resource_version();
                                return Some((Some((*gs).clone()), (changes, last, false)));
                            }
                        }
                        Ok(ServerChange::Deleted {
                            namespace: ns,
                            name: n,
                        }) if n == name && ns == namespace => {
                            return None;
                        }
                        Ok(_) => {}
                        // Fell behind the fan-out: read the object again rather than miss a change.
                        Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => {
                            match api.get_opt(&name).await {
                                Ok(Some(gs)) => {
                                    last = gs.resource_version();
                                    return Some((Some(gs), (changes, last, false)));
                                }
                                Ok(None) => return None,
                                Err(_) => return Some((None, (changes, last, true))),
                            }
                        }
                        Err(tokio::sync::broadcast::error::RecvError::Closed) => return None,
                    }
                }
            }
        },
    );
    let lines = first.chain(rest).filter_map(|gs| {
        std::future::ready(gs.and_then(|gs| serde_json::to_vec(&gs).ok()).map(|mut line| {
            line.push(b'\n');
            Ok::<_, std::convert::Infallible>(line)
        }))
    });
    Ok((
        [(axum::http::header::CONTENT_TYPE, "application/x-ndjson")],
        axum::body::Body::from_stream(lines),
    )
        .into_response())
}

/// Ready: the server can take players. After a session it calls Ready again to be reused.
async fn ready(State(state): State<Arc<SdkState>>, headers: HeaderMap) -> Result<Json<GameServer>> {
    update_status(&state, &headers, |status| {
        if status.state == GameServerState::Ready {
            return Ok(());
        }
        to_state(status, GameServerState::RequestReady)?;
        status.allocation = None;
        status.reserved_until = None;
        Ok(())
    })
    .await
}

async fn health(State(state): State<Arc<SdkState>>, headers: HeaderMap) -> Result<StatusCode> {
    let caller = caller(&state, &headers).await?;
    if let Ok(mut beats) = state.heartbeats.lock() {
        beats.insert((caller.namespace, caller.pod_name), Instant::now());
    }
    Ok(StatusCode::NO_CONTENT)
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ReserveRequest {
    seconds: u32,
}

async fn reserve(
    State(state): State<Arc<SdkState>>,
    headers: HeaderMap,
    Json(request): Json<ReserveRequest>,
) -> Result<Json<GameServer>> {
    if !(1..=86_400).contains(&request.seconds) {
        return Err(Error::BadRequest("seconds must be between 1 and 86400".into()));
    }
    update_status(&state, &headers, |status| {
        to_state(status, GameServerState::Reserved)?;
        // The API keeps whole seconds: round up, so the reservation lasts at least as asked.
        let until = Timestamp::now() + jiff::SignedDuration::from_secs(i64::from(request.seconds) + 1);
        status.reserved_until = Some(Time(Timestamp::from_second(until.as_second()).unwrap_or(until)));
        Ok(())
    })
    .await
}

/// The server allocates itself (a lobby-style server that finds its own players).
async fn allocate(State(state): State<Arc<SdkState>>, headers: HeaderMap) -> Result<Json<GameServer>> {
    update_status(&state, &headers, |status| {
        if status.state == GameServerState::Allocated {
            return Ok(());
        }
        to_state(status, GameServerState::Allocated)?;
        let now = Timestamp::now();
        status.reserved_until = None;
        status.allocation = Some(Allocation {
            id: format!("sdk-{}", now.as_nanosecond()),
            time: Time(now),
            allocated_by: "sdk".into(),
            session_id: None,
            idempotency_key: None,
        });
        Ok(())
    })
    .await
}

async fn shutdown(State(state): State<Arc<SdkState>>, headers: HeaderMap) -> Result<Json<GameServer>> {
    update_status(&state, &headers, |status| {
        to_state(status, GameServerState::Shutdown)
    })
    .await
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ValueRequest {
    value: String,
}

async fn set_label(
    State(state): State<Arc<SdkState>>,
    headers: HeaderMap,
    Path(key): Path<String>,
    Json(request): Json<ValueRequest>,
) -> Result<Json<GameServer>> {
    check_key(&key)?;
    if request.value.len() > 63
        || !request
            .value
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c))
    {
        return Err(Error::BadRequest(
            "label values are at most 63 letters, digits, '-', '_' or '.'".into(),
        ));
    }
    set_metadata(&state, &headers, "labels", &key, &request.value).await
}

async fn set_annotation(
    State(state): State<Arc<SdkState>>,
    headers: HeaderMap,
    Path(key): Path<String>,
    Json(request): Json<ValueRequest>,
) -> Result<Json<GameServer>> {
    check_key(&key)?;
    if request.value.len() > 4096 {
        return Err(Error::BadRequest(
            "annotation values are at most 4096 bytes".into(),
        ));
    }
    set_metadata(&state, &headers, "annotations", &key, &request.value).await
}

/// SDK keys become `sdk.flotilla.dev/<key>`, so a server cannot touch the labels Flotilla
/// relies on (its fleet, its template hash).
fn check_key(key: &str) -> Result<()> {
    let valid = !key.is_empty()
        && key.len() <= 63
        && key
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c))
        && key.starts_with(|c: char| c.is_ascii_alphanumeric())
        && key.ends_with(|c: char| c.is_ascii_alphanumeric());
    if valid {
        Ok(())
    } else {
        Err(Error::BadRequest(format!(
            "key {key:?} must be 1-63 letters, digits, '-', '_' or '.', starting and ending with a letter or digit"
        )))
    }
}

async fn set_metadata(
    state: &SdkState,
    headers: &HeaderMap,
    field: &str,
    key: &str,
    value: &str,
) -> Result<Json<GameServer>> {
    let caller = caller(state, headers).await?;
    // A merge patch of one label or annotation needs only the name, which cannot change.
    let server = server_of(state, &caller, Read::Cached).await?;
    let patch = serde_json::json!({"metadata": {field: {format!("{METADATA_PREFIX}{key}"): value}}});
    let servers: Api<GameServer> = Api::namespaced(state.client.clone(), &caller.namespace);
    let updated = servers
        .patch(&server.name_any(), &PatchParams::default(), &Patch::Merge(patch))
        .await?;
    Ok(Json(updated))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct CapacityRequest {
    capacity: i32,
}

async fn set_capacity(
    State(state): State<Arc<SdkState>>,
    headers: HeaderMap,
    Json(request): Json<CapacityRequest>,
) -> Result<Json<GameServer>> {
    if !(0..=100_000).contains(&request.capacity) {
        return Err(Error::BadRequest("capacity must be between 0 and 100000".into()));
    }
    update_status(&state, &headers, |status| {
        players(status).capacity = request.capacity;
        Ok(())
    })
    .await
}

async fn player_connect(
    State(state): State<Arc<SdkState>>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Result<Json<GameServer>> {
    check_player_id(&id)?;
    update_status(&state, &headers, |status| {
        let players = players(status);
        if players.ids.contains(&id) {
            return Ok(());
        }
        if players.count >= players.capacity {
            return Err(Error::BadRequest(format!(
                "the server is full ({} players)",
                players.capacity
            )));
        }
        players.ids.push(id.clone());
        players.count = players.ids.len() as i32;
        Ok(())
    })
    .await
}

async fn player_disconnect(
    State(state): State<Arc<SdkState>>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Result<Json<GameServer>> {
    check_player_id(&id)?;
    update_status(&state, &headers, |status| {
        let players = players(status);
        players.ids.retain(|p| *p != id);
        players.count = players.ids.len() as i32;
        Ok(())
    })
    .await
}

fn check_player_id(id: &str) -> Result<()> {
    if id.is_empty() || id.len() > 128 || id.chars().any(char::is_control) {
        return Err(Error::BadRequest(
            "player ids are 1-128 printable characters".into(),
        ));
    }
    Ok(())
}

fn players(status: &mut GameServerStatus) -> &mut PlayerStatus {
    status.players.get_or_insert_with(PlayerStatus::default)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sdk_keys_are_label_names_without_prefixes() {
        assert!(check_key("mode").is_ok());
        assert!(check_key("map.v2").is_ok());
        assert!(
            check_key("flotilla.dev/fleet").is_err(),
            "no prefix can be smuggled in"
        );
        assert!(check_key("-x").is_err());
        assert!(check_key("").is_err());
        assert!(check_key(&"k".repeat(64)).is_err());
    }

    #[test]
    fn transitions_outside_the_state_machine_are_conflicts() {
        let mut status = GameServerStatus {
            state: GameServerState::Unhealthy,
            ..Default::default()
        };
        let err = to_state(&mut status, GameServerState::RequestReady).expect_err("refused");
        assert_eq!(
            err.to_string(),
            "a game server cannot go from Unhealthy to RequestReady"
        );
        assert_eq!(err.into_response().status(), StatusCode::CONFLICT);
    }

    #[test]
    fn player_ids_must_be_printable_and_bounded() {
        assert!(check_player_id("player-1").is_ok());
        assert!(check_player_id("").is_err());
        assert!(check_player_id("a\nb").is_err());
        assert!(check_player_id(&"x".repeat(129)).is_err());
    }
}
