//! The allocation endpoint: `POST /allocation/v1/namespaces/{namespace}/allocations`.
//!
//! Candidates come from the in-memory index the operator's GameServer watch keeps (no list
//! call per request); the choice is committed with a status write carrying the candidate's
//! resourceVersion, so two allocators — or an allocator and the server itself — can never both
//! win the same server. A conflict moves on to the next candidate at once: there is no batching
//! window and no retry delay.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::routing::post;
use axum::{Extension, Json, Router};
use flotilla_api::allocation::{AllocationRequest, AllocationResponse, AllocationState};
use flotilla_api::connection_token::{ConnectionClaims, TokenSigner};
use flotilla_api::{Allocation, GameServer, GameServerFleet, GameServerState, PlayerStatus};
use jiff::Timestamp;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::api::{Patch, PatchParams};
use kube::runtime::reflector::Store;
use kube::{Api, Client, ResourceExt};
use tracing::{debug, info};

use super::auth::AllocationAuth;
use super::membership::Membership;
use super::select::{Query, ranked};
use crate::console::ConsoleFeed;
use crate::error::{Error, Result};
use crate::metrics::Metrics;
use crate::status_patch::status_patch;
use crate::tls::ClientCertificate;

/// Commits tried on one candidate whose conflicts were not allocations.
const RETRIES_PER_CANDIDATE: usize = 3;
/// How long a claim outlives a cache that has not caught up with the write it guards.
const CLAIM_TIMEOUT: Duration = Duration::from_secs(10);
const MAX_PLAYERS: usize = 100;
const MAX_ID: usize = 128;

pub struct AllocatorState {
    pub client: Client,
    pub servers: Store<GameServer>,
    pub fleets: Store<GameServerFleet>,
    pub signer: TokenSigner,
    pub auth: AllocationAuth,
    pub metrics: Arc<Metrics>,
    pub membership: Membership,
    pub token_lifetime: Duration,
    pub claims: Claims,
    /// The ops console's allocation rate.
    pub console: Arc<ConsoleFeed>,
}

/// Servers this replica is committing to, or has just committed to, by the resourceVersion
/// its cache showed: concurrent requests in one replica never race each other for a server,
/// and a server the cache still shows as Ready after it was taken is skipped until the cache
/// catches up.
#[derive(Default)]
pub struct Claims(std::sync::Mutex<HashMap<(String, String), (String, Instant)>>);

impl Claims {
    /// Claims `server` at its cached version; false when already claimed at that version.
    fn take(&self, server: &GameServer) -> bool {
        let key = (server.namespace().unwrap_or_default(), server.name_any());
        let version = server.resource_version().unwrap_or_default();
        let Ok(mut claims) = self.0.lock() else {
            return false;
        };
        if claims.len() > 10_000 {
            claims.retain(|_, (_, at)| at.elapsed() < CLAIM_TIMEOUT);
        }
        match claims.get(&key) {
            Some((claimed, at)) if *claimed == version && at.elapsed() < CLAIM_TIMEOUT => false,
            _ => {
                claims.insert(key, (version, Instant::now()));
                true
            }
        }
    }
}

pub fn router(state: Arc<AllocatorState>) -> Router {
    Router::new()
        .route(
            "/allocation/v1/namespaces/{namespace}/allocations",
            post(allocate),
        )
        .route("/allocation/v1/openapi.json", axum::routing::get(openapi))
        .with_state(state)
}

async fn openapi() -> Json<serde_json::Value> {
    Json(flotilla_api::allocation::openapi())
}

async fn allocate(
    State(state): State<Arc<AllocatorState>>,
    Path(namespace): Path<String>,
    certificate: Option<Extension<ClientCertificate>>,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> Result<(StatusCode, Json<AllocationResponse>)> {
    let started = Instant::now();
    let parsed: Result<AllocationRequest> = serde_json::from_slice(&body).map_err(|e| Error::InvalidField {
        field: "body".into(),
        reason: e.to_string(),
    });
    let fleet = parsed
        .as_ref()
        .ok()
        .and_then(|r| r.fleet.clone())
        .unwrap_or_default();
    let result = match parsed {
        Ok(request) => {
            let certificate = certificate.map(|Extension(c)| c);
            serve(&state, &namespace, certificate.as_ref(), &headers, request).await
        }
        Err(e) => Err(e),
    };
    state
        .metrics
        .allocation_duration
        .observe(started.elapsed().as_secs_f64());
    let outcome = match &result {
        Ok((StatusCode::OK, _)) => "idempotent",
        Ok(_) => "allocated",
        Err(e) => match e {
            Error::NoCapacity(_) => "no_capacity",
            Error::InvalidField { .. } | Error::BadRequest(_) => "bad_request",
            Error::NotFound(_) => "not_found",
            Error::Unauthenticated(_) => "unauthenticated",
            Error::Forbidden(_) => "forbidden",
            _ => "error",
        },
    };
    // Only known fleets become label values; anything else is counted without one.
    let fleet_label = if state
        .fleets
        .get(&kube::runtime::reflector::ObjectRef::new(&fleet).within(&namespace))
        .is_some()
    {
        fleet
    } else {
        String::new()
    };
    state.metrics.count_allocation(&namespace, &fleet_label, outcome);
    state.console.allocation(outcome);
    result
}

async fn serve(
    state: &AllocatorState,
    namespace: &str,
    certificate: Option<&ClientCertificate>,
    headers: &HeaderMap,
    request: AllocationRequest,
) -> Result<(StatusCode, Json<AllocationResponse>)> {
    // A client certificate the TLS layer verified against the CA authorizes on its own.
    let caller = match certificate {
        Some(ClientCertificate(sha256)) => format!("client-certificate:sha256:{}", &sha256[..16]),
        None => {
            let token = headers
                .get("authorization")
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.strip_prefix("Bearer "))
                .ok_or_else(|| Error::Unauthenticated("missing bearer token or client certificate".into()))?;
            state.auth.authorize(token, namespace).await?
        }
    };
    validate(&request)?;
    if let Some(fleet) = &request.fleet {
        let key = kube::runtime::reflector::ObjectRef::new(fleet).within(namespace);
        if state.fleets.get(&key).is_none() {
            return Err(Error::NotFound(format!("fleet {namespace}/{fleet}")));
        }
    }
    let query = Query::new(namespace, &request)?;
    let servers = state.servers.state();
    if let Some(key) = &request.idempotency_key
        && let Some(existing) = servers.iter().find(|s| {
            s.namespace().as_deref() == Some(namespace)
                && s.status
                    .as_ref()
                    .and_then(|st| st.allocation.as_ref())
                    .and_then(|a| a.idempotency_key.as_ref())
                    == Some(key)
        })
    {
        debug!(namespace, key, server = %existing.name_any(), "idempotent retry");
        return Ok((StatusCode::OK, Json(answer(state, existing, &request)?)));
    }
    // Every admitted server is tried at most once: a conflict means it was taken (or changed)
    // by someone else, so the next one is tried at once; the list is finite, so is the loop.
    for candidate in ranked(&servers, &query, state.membership.partition()) {
        if !state.claims.take(&candidate) {
            continue;
        }
        // A conflict may come from the server's own write (an annotation, a player report)
        // rather than another allocation: re-read it, and try again while it still qualifies.
        let mut current = (*candidate).clone();
        for _ in 0..RETRIES_PER_CANDIDATE {
            if let Some(server) = commit(state, &current, &request, &caller).await? {
                label(state, &server, &request).await?;
                caught_up(state, &candidate).await;
                info!(namespace, server = %server.name_any(), by = %caller, "allocated");
                return Ok((StatusCode::CREATED, Json(answer(state, &server, &request)?)));
            }
            state.metrics.allocation_conflicts.inc();
            let api: Api<GameServer> = Api::namespaced(state.client.clone(), namespace);
            match api.get_opt(&current.name_any()).await? {
                Some(fresh) if query.admits(&fresh) => current = fresh,
                _ => break,
            }
        }
    }
    let in_namespace: Vec<_> = servers
        .iter()
        .filter(|s| s.namespace().as_deref() == Some(namespace))
        .collect();
    let by_state = |state: GameServerState| {
        in_namespace
            .iter()
            .filter(|s| s.status.as_ref().map(|st| st.state) == Some(state))
            .count()
    };
    info!(
        namespace,
        servers = in_namespace.len(),
        ready = by_state(GameServerState::Ready),
        allocated = by_state(GameServerState::Allocated),
        "no capacity for an allocation"
    );
    debug!(namespace, candidates = ?in_namespace.iter().map(|s| (s.name_any(), s.resource_version(), s.status.clone())).collect::<Vec<_>>(), "servers seen");
    Err(Error::NoCapacity(match &request.fleet {
        Some(fleet) => format!("no server of fleet {namespace}/{fleet} matches the request"),
        None => format!("no server in namespace {namespace} matches the request"),
    }))
}

/// Waits (briefly) until the watch-fed cache shows the write that replaced `before`, so the
/// caller's next request — a backfill of this very server, say — sees its own allocation.
async fn caught_up(state: &AllocatorState, before: &GameServer) {
    let key = kube::runtime::reflector::ObjectRef::from(before);
    // Normally milliseconds; on an overloaded API server it can take longer, and the caller
    // is better served a little late than with a view that misses its own allocation.
    let deadline = Instant::now() + Duration::from_secs(5);
    while Instant::now() < deadline {
        match state.servers.get(&key) {
            Some(now) if now.resource_version() != before.resource_version() => return,
            None => return,
            Some(_) => tokio::time::sleep(Duration::from_millis(2)).await,
        }
    }
}

/// Limits on the free-form fields, checked before anything is touched.
fn validate(request: &AllocationRequest) -> Result<()> {
    let invalid = |field: &str, reason: &str| {
        Err(Error::InvalidField {
            field: field.into(),
            reason: reason.into(),
        })
    };
    let id_ok = |s: &str| !s.is_empty() && s.len() <= MAX_ID && s.chars().all(|c| c.is_ascii_graphic());
    if request.players.len() > MAX_PLAYERS {
        return invalid("players", "at most 100 players per allocation");
    }
    if let Some(i) = request.players.iter().position(|p| !id_ok(p)) {
        return invalid(&format!("players[{i}]"), "1-128 printable ASCII characters");
    }
    if request.session_id.as_deref().is_some_and(|s| !id_ok(s)) {
        return invalid("sessionId", "1-128 printable ASCII characters");
    }
    if request.idempotency_key.as_deref().is_some_and(|s| !id_ok(s)) {
        return invalid("idempotencyKey", "1-128 printable ASCII characters");
    }
    if request.state == AllocationState::Allocated && request.players.is_empty() {
        return invalid(
            "players",
            "backfill (state Allocated) names the players who take the free slots",
        );
    }
    for (kind, map) in [
        ("labels", &request.metadata.labels),
        ("annotations", &request.metadata.annotations),
    ] {
        for (key, value) in map {
            let field = format!("metadata.{kind}.{key}");
            if key.starts_with(flotilla_api::GROUP) || key.contains("flotilla.dev/") {
                return invalid(&field, "the flotilla.dev prefixes are reserved");
            }
            if !label_key_ok(key) {
                return invalid(
                    &field,
                    "not a valid key: [prefix/]name, name 1-63 alphanumerics, '-', '_' or '.'",
                );
            }
            if kind == "labels" && !label_value_ok(value) {
                return invalid(
                    &field,
                    "a label value has at most 63 alphanumerics, '-', '_' or '.'",
                );
            }
        }
    }
    Ok(())
}

fn label_value_ok(value: &str) -> bool {
    value.is_empty()
        || (value.len() <= 63
            && value
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c))
            && value.starts_with(|c: char| c.is_ascii_alphanumeric())
            && value.ends_with(|c: char| c.is_ascii_alphanumeric()))
}

fn label_key_ok(key: &str) -> bool {
    let (prefix, name) = key.rsplit_once('/').map_or((None, key), |(p, n)| (Some(p), n));
    let prefix_ok = prefix.is_none_or(|p| {
        !p.is_empty()
            && p.len() <= 253
            && p.chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || "-.".contains(c))
    });
    prefix_ok && !name.is_empty() && label_value_ok(name)
}

/// Writes the allocation onto `candidate` if it is still the version the choice was made
/// from; `None` when someone else changed it first.
async fn commit(
    state: &AllocatorState,
    candidate: &GameServer,
    request: &AllocationRequest,
    caller: &str,
) -> Result<Option<GameServer>> {
    let mut status = candidate.status.clone().unwrap_or_default();
    match request.state {
        AllocationState::Ready => {
            status.state = GameServerState::Allocated;
            status.allocation = Some(Allocation {
                id: allocation_id(),
                time: Time(Timestamp::now()),
                allocated_by: caller.to_owned(),
                session_id: request.session_id.clone(),
                idempotency_key: request.idempotency_key.clone(),
            });
        }
        AllocationState::Allocated => {
            // Backfill: hold the slots by naming the players now; the server's own connect
            // reports for them are then no-ops, and capacity cannot be handed out twice.
            let players = status.players.get_or_insert_with(PlayerStatus::default);
            for player in &request.players {
                if !players.ids.contains(player) {
                    players.ids.push(player.clone());
                }
            }
            players.count = i32::try_from(players.ids.len()).unwrap_or(i32::MAX);
        }
    }
    let api: Api<GameServer> =
        Api::namespaced(state.client.clone(), &candidate.namespace().unwrap_or_default());
    match api
        .patch_status(
            &candidate.name_any(),
            &PatchParams::default(),
            &Patch::Merge(status_patch(candidate, &status)),
        )
        .await
    {
        Ok(server) => Ok(Some(server)),
        Err(kube::Error::Api(e)) if e.code == 409 => Ok(None),
        Err(e) => Err(e.into()),
    }
}

/// The request's labels and annotations on the allocated server. The server is ours now, so
/// no precondition: nobody else writes these keys.
async fn label(state: &AllocatorState, server: &GameServer, request: &AllocationRequest) -> Result<()> {
    let metadata = &request.metadata;
    if metadata.labels.is_empty() && metadata.annotations.is_empty() {
        return Ok(());
    }
    let patch =
        serde_json::json!({"metadata": {"labels": metadata.labels, "annotations": metadata.annotations}});
    let api: Api<GameServer> = Api::namespaced(state.client.clone(), &server.namespace().unwrap_or_default());
    api.patch(&server.name_any(), &PatchParams::default(), &Patch::Merge(patch))
        .await?;
    Ok(())
}

fn answer(
    state: &AllocatorState,
    server: &GameServer,
    request: &AllocationRequest,
) -> Result<AllocationResponse> {
    let status = server.status.clone().unwrap_or_default();
    let allocation = status.allocation.clone();
    let allocation_id = allocation.as_ref().map(|a| a.id.clone()).unwrap_or_default();
    let session = allocation.as_ref().and_then(|a| a.session_id.clone());
    let now = Timestamp::now();
    let expires =
        now + jiff::SignedDuration::from_secs(state.token_lifetime.as_secs().try_into().unwrap_or(600));
    let mut tokens = BTreeMap::new();
    for player in &request.players {
        let claims = ConnectionClaims {
            namespace: server.namespace().unwrap_or_default(),
            server: server.name_any(),
            // The game server names the session by its id, or by the allocation id without one.
            session: session.clone().unwrap_or_else(|| allocation_id.clone()),
            player: player.clone(),
            issued_at: u64::try_from(now.as_second()).unwrap_or(0),
            expires_at: u64::try_from(expires.as_second()).unwrap_or(0),
            id: String::new(),
        };
        let token = state
            .signer
            .sign(claims)
            .map_err(|e| Error::Signing(e.to_string()))?;
        tokens.insert(player.clone(), token);
    }
    Ok(AllocationResponse {
        allocation_id,
        game_server: server.name_any(),
        namespace: server.namespace().unwrap_or_default(),
        address: status.address.unwrap_or_default(),
        ports: status.ports,
        node_name: status.node_name.unwrap_or_default(),
        session_id: session,
        certificate_sha256: server
            .annotations()
            .get("sdk.flotilla.dev/quic-cert-sha256")
            .cloned(),
        tokens_expire_at: (!tokens.is_empty()).then(|| expires.to_string()),
        tokens,
    })
}

/// A random allocation id: 16 bytes from the OS, hex.
fn allocation_id() -> String {
    use ring::rand::SecureRandom;
    let mut bytes = [0u8; 16];
    let _ = ring::rand::SystemRandom::new().fill(&mut bytes);
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use flotilla_api::allocation::AllocationMetadata;

    #[test]
    fn bad_fields_are_named() {
        let field = |request: AllocationRequest| match validate(&request) {
            Err(Error::InvalidField { field, .. }) => field,
            other => panic!("expected a field error, got {other:?}"),
        };
        assert_eq!(
            field(AllocationRequest {
                players: vec!["ok".into(), "".into()],
                ..Default::default()
            }),
            "players[1]"
        );
        assert_eq!(
            field(AllocationRequest {
                session_id: Some("a b".into()),
                ..Default::default()
            }),
            "sessionId"
        );
        assert_eq!(
            field(AllocationRequest {
                state: AllocationState::Allocated,
                ..Default::default()
            }),
            "players"
        );
        let metadata = |labels: &[(&str, &str)]| AllocationMetadata {
            labels: labels.iter().map(|(k, v)| ((*k).into(), (*v).into())).collect(),
            ..Default::default()
        };
        assert_eq!(
            field(AllocationRequest {
                metadata: metadata(&[("flotilla.dev/fleet", "x")]),
                ..Default::default()
            }),
            "metadata.labels.flotilla.dev/fleet"
        );
        assert_eq!(
            field(AllocationRequest {
                metadata: metadata(&[("mode", "not ok")]),
                ..Default::default()
            }),
            "metadata.labels.mode"
        );
        assert!(
            validate(&AllocationRequest {
                metadata: metadata(&[("example.com/mode", "ranked")]),
                ..Default::default()
            })
            .is_ok()
        );
    }
}
