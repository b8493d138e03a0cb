//! The ops console: one page on the operations listener (`GET /console`) showing fleets, their
//! servers by state, the allocation rate and the autoscaler's recent decisions, kept live by
//! Server-Sent Events (`/console/api/stream`), with a JSON snapshot for scripts and for the
//! page's polling fallback (`/console/api/summary`). See `docs/console.md`.
//!
//! Everything shown comes from what the replica already holds — the watch-fed stores of fleets
//! and servers the allocator reads, and a [`ConsoleFeed`] that the allocation API and the
//! autoscaler write to — so an open console adds no API-server request per view. The one call
//! it makes is a GET of the leader Lease every few seconds, to name the leader on every replica.

use std::collections::{BTreeMap, VecDeque};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, LazyLock, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use axum::extract::State;
use axum::http::{HeaderValue, header};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use base64::Engine as _;
use flotilla_api::{GameServer, GameServerFleet, GameServerState, labels};
use futures::Stream;
use jiff::Timestamp;
use k8s_openapi::api::coordination::v1::Lease;
use kube::runtime::reflector::Store;
use kube::{Api, Client, ResourceExt};
use serde::Serialize;
use tokio::sync::watch;
use tracing::debug;

use crate::leader::{Holder, may_take};

/// Autoscaler decisions kept for the page.
const DECISIONS: usize = 20;
/// The allocation-rate window: one minute, in one-second buckets.
const WINDOW_SECONDS: usize = 60;
const WINDOW: u64 = WINDOW_SECONDS as u64;
/// The stream's fastest pace. A burst of changes (a fleet scaling by hundreds of servers, each
/// a watch event) becomes one summary per quarter second, so a page never gets more than four
/// a second however busy the cluster is.
const MIN_PUSH_INTERVAL: Duration = Duration::from_millis(250);
/// While allocations from the last minute are in the window, the rate falls as time passes
/// with no event to say so: the stream then re-sends at this pace so the figure decays on screen.
const DECAY_REFRESH: Duration = Duration::from_secs(5);
/// Comment lines on an otherwise idle stream, so proxies and load balancers (and the browser)
/// do not take a quiet console for a dead connection.
const KEEP_ALIVE: Duration = Duration::from_secs(15);

/// What the allocation API and the autoscaler tell the console, and the change signal the
/// streams wait on. One per replica, shared by `Arc`.
pub struct ConsoleFeed {
    identity: String,
    namespace: Option<String>,
    election: bool,
    started_at: Timestamp,
    /// The rate window's clock: monotonic, so a wall-clock step cannot scramble the buckets.
    epoch: Instant,
    leading: AtomicBool,
    holder: Mutex<Option<String>>,
    allocations: Mutex<AllocationWindow>,
    decisions: Mutex<VecDeque<Decision>>,
    changes: watch::Sender<()>,
}

impl ConsoleFeed {
    /// `namespace` is the one the operator watches (None: all); `election` whether replicas
    /// elect a leader (without it, this replica leads alone).
    pub fn new(identity: &str, namespace: Option<&str>, election: bool) -> Self {
        ConsoleFeed {
            identity: identity.to_owned(),
            namespace: namespace.map(str::to_owned),
            election,
            started_at: Timestamp::now(),
            epoch: Instant::now(),
            leading: AtomicBool::new(false),
            holder: Mutex::new(None),
            allocations: Mutex::default(),
            decisions: Mutex::default(),
            changes: watch::channel(()).0,
        }
    }

    /// Something shown on the page changed: the open streams send a fresh summary.
    pub fn changed(&self) {
        self.changes.send_replace(());
    }

    /// One answered allocation request; `result` is its metric label (`allocated`, …).
    pub fn allocation(&self, result: &'static str) {
        lock(&self.allocations).record(self.epoch.elapsed().as_secs(), result);
        self.changed();
    }

    /// One autoscaler evaluation (made on the leader only).
    pub fn decision(&self, decision: Decision) {
        push_decision(&mut lock(&self.decisions), decision);
        self.changed();
    }

    /// This replica now holds the leader lease, for good: a leader that loses it exits.
    pub fn lead(&self) {
        self.leading.store(true, Ordering::Relaxed);
        *lock(&self.holder) = Some(self.identity.clone());
        self.changed();
    }

    fn set_holder(&self, holder: Option<String>) {
        let mut current = lock(&self.holder);
        if *current != holder {
            *current = holder;
            drop(current);
            self.changed();
        }
    }

    fn leader(&self) -> LeaderView {
        LeaderView {
            this_replica: self.leading.load(Ordering::Relaxed),
            holder: lock(&self.holder).clone(),
            election: self.election,
        }
    }
}

/// A poisoned lock only means another request panicked mid-update of counters that are still
/// valid to read: the console keeps showing them rather than failing.
fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

/// Allocation requests by result: a one-minute window of per-second buckets for the rate,
/// and totals since the replica started. Memory stays at sixty buckets whatever the load.
#[derive(Debug, Default)]
struct AllocationWindow {
    /// (second, counts by result), oldest first, only seconds with requests.
    buckets: VecDeque<(u64, BTreeMap<&'static str, u64>)>,
    totals: BTreeMap<&'static str, u64>,
}

impl AllocationWindow {
    fn record(&mut self, second: u64, result: &'static str) {
        match self.buckets.back_mut() {
            Some((last, counts)) if *last == second => *counts.entry(result).or_default() += 1,
            _ => self.buckets.push_back((second, BTreeMap::from([(result, 1)]))),
        }
        *self.totals.entry(result).or_default() += 1;
        while self.buckets.front().is_some_and(|(s, _)| s + WINDOW <= second) {
            self.buckets.pop_front();
        }
    }

    /// The window as of `now`: seconds `now - 59 ..= now`.
    fn view(&self, now: u64) -> AllocationView {
        let mut last_minute: BTreeMap<&'static str, u64> = BTreeMap::new();
        let mut per_second = vec![0; WINDOW_SECONDS];
        for (second, counts) in &self.buckets {
            let Some(age) = now.checked_sub(*second).filter(|age| *age < WINDOW) else {
                continue;
            };
            for (result, count) in counts {
                *last_minute.entry(result).or_default() += count;
            }
            // Oldest first: `now` is the last bar.
            let slot = usize::try_from(WINDOW - 1 - age).unwrap_or(0);
            if let Some(bar) = per_second.get_mut(slot) {
                *bar = counts.get(ALLOCATED).copied().unwrap_or(0);
            }
        }
        AllocationView {
            per_minute: last_minute.get(ALLOCATED).copied().unwrap_or(0),
            last_minute,
            total: self.totals.clone(),
            per_second,
        }
    }

    /// Whether anything is in the window at `now`, i.e. whether the rate will still fall.
    fn active(&self, now: u64) -> bool {
        self.buckets.back().is_some_and(|(s, _)| s + WINDOW > now)
    }
}

/// The allocation result that hands out a server; the rate counts these.
const ALLOCATED: &str = "allocated";

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct AllocationView {
    /// Servers allocated in the last minute (the `allocated` result): the allocation rate.
    pub per_minute: u64,
    /// Requests in the last minute, by result.
    pub last_minute: BTreeMap<&'static str, u64>,
    /// Requests since this replica started, by result.
    pub total: BTreeMap<&'static str, u64>,
    /// Servers allocated in each of the last sixty seconds, oldest first.
    pub per_second: Vec<u64>,
}

/// One autoscaler evaluation as the page lists it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Decision {
    /// RFC 3339, of the latest evaluation folded into this entry.
    pub time: String,
    pub namespace: String,
    pub autoscaler: String,
    pub fleet: String,
    pub from: i32,
    pub to: i32,
    /// The metric's result label: scaled_up, scaled_down, unchanged, limited, error.
    pub result: &'static str,
    pub policy: Option<String>,
    /// Why, when the result needs it (the policy's error).
    pub reason: Option<String>,
    /// Consecutive evaluations with this outcome: an autoscaler re-evaluates on every sync
    /// and every fleet change, and a list of twenty identical "unchanged" lines says nothing.
    pub times: u32,
}

impl Decision {
    pub fn now(
        namespace: &str,
        autoscaler: &str,
        fleet: &str,
        from: i32,
        to: i32,
        result: &'static str,
    ) -> Self {
        Decision {
            time: Timestamp::now().to_string(),
            namespace: namespace.to_owned(),
            autoscaler: autoscaler.to_owned(),
            fleet: fleet.to_owned(),
            from,
            to,
            result,
            policy: None,
            reason: None,
            times: 1,
        }
    }

    fn same_outcome(&self, other: &Decision) -> bool {
        (
            self.fleet.as_str(),
            self.from,
            self.to,
            self.result,
            &self.policy,
            &self.reason,
        ) == (
            other.fleet.as_str(),
            other.from,
            other.to,
            other.result,
            &other.policy,
            &other.reason,
        )
    }
}

/// Newest first, at most [`DECISIONS`]; an outcome that repeats the autoscaler's previous one
/// moves that entry to the top with its count raised instead of adding a line.
fn push_decision(list: &mut VecDeque<Decision>, mut decision: Decision) {
    let previous = list
        .iter()
        .position(|d| d.namespace == decision.namespace && d.autoscaler == decision.autoscaler);
    if let Some(index) = previous
        && list[index].same_outcome(&decision)
        && let Some(repeated) = list.remove(index)
    {
        decision.times = repeated.times.saturating_add(1);
    }
    list.push_front(decision);
    list.truncate(DECISIONS);
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct LeaderView {
    /// Whether this replica holds the lease (and so runs the controllers and the autoscaler).
    pub this_replica: bool,
    /// The lease holder's identity, as of the last read; None when the lease is free or expired.
    pub holder: Option<String>,
    /// False when leader election is off: this replica leads alone.
    pub election: bool,
}

/// Servers by state with their players, for one fleet or the total.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Counts {
    /// Every state, zeros included, so the page need not know which ones exist.
    pub servers: BTreeMap<&'static str, u32>,
    pub total: u32,
    pub players: i64,
    pub capacity: i64,
}

impl Default for Counts {
    fn default() -> Self {
        Counts {
            servers: GameServerState::ALL.iter().map(|s| (s.as_str(), 0)).collect(),
            total: 0,
            players: 0,
            capacity: 0,
        }
    }
}

impl Counts {
    fn add(&mut self, server: &GameServer) {
        // A server with a deletion timestamp is on its way out whatever its last state said.
        let state = if server.metadata.deletion_timestamp.is_some() {
            GameServerState::Shutdown
        } else {
            server.status.as_ref().map(|s| s.state).unwrap_or_default()
        };
        *self.servers.entry(state.as_str()).or_default() += 1;
        self.total += 1;
        if state == GameServerState::Shutdown {
            return;
        }
        // As the fleet's status counts them: reported players, else the declared capacity.
        match (
            server.status.as_ref().and_then(|s| s.players.as_ref()),
            &server.spec.players,
        ) {
            (Some(reported), _) => {
                self.players += i64::from(reported.count);
                self.capacity += i64::from(reported.capacity);
            }
            (None, Some(declared)) => self.capacity += i64::from(declared.capacity),
            (None, None) => {}
        }
    }

    fn merge(&mut self, other: &Counts) {
        for (state, count) in &other.servers {
            *self.servers.entry(state).or_default() += count;
        }
        self.total += other.total;
        self.players += other.players;
        self.capacity += other.capacity;
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct FleetRow {
    pub namespace: String,
    /// The fleet's name; "" for servers that belong to no fleet.
    pub name: String,
    /// The fleet's spec.replicas; None for servers whose fleet is gone (or never was).
    pub desired: Option<i32>,
    #[serde(flatten)]
    pub counts: Counts,
}

/// One row per fleet, and one per namespace for servers of no known fleet (standalone ones, or
/// those of a fleet being deleted), sorted by namespace and name.
pub fn fleet_rows(fleets: &[Arc<GameServerFleet>], servers: &[Arc<GameServer>]) -> Vec<FleetRow> {
    let row = |namespace: String, name: String, desired| FleetRow {
        namespace,
        name,
        desired,
        counts: Counts::default(),
    };
    let mut rows: BTreeMap<(String, String), FleetRow> = fleets
        .iter()
        .map(|fleet| {
            let key = (fleet.namespace().unwrap_or_default(), fleet.name_any());
            (key.clone(), row(key.0, key.1, Some(fleet.spec.replicas)))
        })
        .collect();
    for server in servers {
        let namespace = server.namespace().unwrap_or_default();
        let owner = server.labels().get(labels::FLEET).cloned().unwrap_or_default();
        let key = (namespace, owner);
        let known = if rows.contains_key(&key) {
            key
        } else {
            (key.0, String::new())
        };
        rows.entry(known.clone())
            .or_insert_with(|| row(known.0, known.1, None))
            .counts
            .add(server);
    }
    rows.into_values().collect()
}

/// What `/console/api/summary` answers and the stream sends.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Summary {
    /// This replica's identity (its pod name in a cluster).
    pub identity: String,
    /// The namespace the operator watches; None for all.
    pub namespace: Option<String>,
    pub leader: LeaderView,
    pub started_at: String,
    pub generated_at: String,
    pub fleets: Vec<FleetRow>,
    pub totals: Counts,
    /// Answered by this replica only: every replica serves allocations.
    pub allocations: AllocationView,
    /// Made on the leader only; empty on the other replicas.
    pub decisions: Vec<Decision>,
}

/// What the console's handlers read.
pub struct Console {
    pub feed: Arc<ConsoleFeed>,
    pub fleets: Store<GameServerFleet>,
    pub servers: Store<GameServer>,
}

impl Console {
    pub fn summary(&self) -> Summary {
        let fleets = fleet_rows(&self.fleets.state(), &self.servers.state());
        let mut totals = Counts::default();
        for row in &fleets {
            totals.merge(&row.counts);
        }
        let feed = &self.feed;
        Summary {
            identity: feed.identity.clone(),
            namespace: feed.namespace.clone(),
            leader: feed.leader(),
            started_at: feed.started_at.to_string(),
            generated_at: Timestamp::now().to_string(),
            fleets,
            totals,
            allocations: lock(&feed.allocations).view(feed.epoch.elapsed().as_secs()),
            decisions: lock(&feed.decisions).iter().cloned().collect(),
        }
    }

    fn rate_decaying(&self) -> bool {
        lock(&self.feed.allocations).active(self.feed.epoch.elapsed().as_secs())
    }
}

/// Keeps every replica's idea of the leader current: the lease is read every `period` (the
/// chart grants `get` on leases, not `watch`). A lease past its renewal deadline names nobody:
/// its holder is gone and a successor is about to take over.
pub async fn follow_lease(
    client: Client,
    namespace: String,
    name: String,
    feed: Arc<ConsoleFeed>,
    period: Duration,
) {
    let leases: Api<Lease> = Api::namespaced(client, &namespace);
    loop {
        match leases.get_opt(&name).await {
            Ok(lease) => {
                let spec = lease.and_then(|l| l.spec).unwrap_or_default();
                let holder = Holder {
                    identity: spec.holder_identity,
                    renewed: spec.renew_time.map(|t| t.0),
                    duration: Duration::from_secs(
                        u64::try_from(spec.lease_duration_seconds.unwrap_or(0)).unwrap_or(0),
                    ),
                };
                // An empty identity can take exactly the leases that are free or expired.
                let live = !may_take(&holder, "", Timestamp::now());
                feed.set_holder(holder.identity.filter(|_| live));
            }
            Err(e) => debug!(error = %e, "console: leader lease not read"),
        }
        tokio::time::sleep(period).await;
    }
}

pub fn router(console: Arc<Console>) -> Router {
    Router::new()
        .route("/console", get(page))
        .route("/console/api/summary", get(summary))
        .route("/console/api/stream", get(stream))
        .with_state(console)
}

/// The page, assembled once: the script and style are inlined so the page needs nothing but
/// this replica, and a Content-Security-Policy allows exactly those two (by hash) and requests
/// back to this origin — no other script can run even if a name in the data were hostile.
struct Page {
    html: String,
    policy: HeaderValue,
}

static PAGE: LazyLock<Page> = LazyLock::new(|| {
    let script = include_str!("console/console.js");
    let style = include_str!("console/console.css");
    let hash = |text: &str| {
        let digest = ring::digest::digest(&ring::digest::SHA256, text.as_bytes());
        format!(
            "'sha256-{}'",
            base64::engine::general_purpose::STANDARD.encode(digest)
        )
    };
    let policy = format!(
        "default-src 'none'; script-src {}; style-src {}; connect-src 'self'; img-src data:; \
         base-uri 'none'; form-action 'none'; frame-ancestors 'none'",
        hash(script),
        hash(style)
    );
    let html = include_str!("console/index.html")
        .replace("/*STYLE*/", style)
        .replace("/*SCRIPT*/", script);
    Page {
        html,
        policy: HeaderValue::from_str(&policy).expect("the policy is ASCII: base64 and literals"),
    }
});

async fn page() -> Response {
    (
        [
            (
                header::CONTENT_TYPE,
                HeaderValue::from_static("text/html; charset=utf-8"),
            ),
            (header::CONTENT_SECURITY_POLICY, PAGE.policy.clone()),
            (
                header::X_CONTENT_TYPE_OPTIONS,
                HeaderValue::from_static("nosniff"),
            ),
            (header::CACHE_CONTROL, HeaderValue::from_static("no-store")),
        ],
        PAGE.html.as_str(),
    )
        .into_response()
}

async fn summary(State(console): State<Arc<Console>>) -> Response {
    (
        [(header::CACHE_CONTROL, HeaderValue::from_static("no-store"))],
        Json(console.summary()),
    )
        .into_response()
}

/// A summary at once, then one after each change (no faster than [`MIN_PUSH_INTERVAL`]), and
/// every [`DECAY_REFRESH`] while the allocation rate is falling. Each stream builds its own
/// summaries: a handful of people watching costs a handful of passes over the stores.
async fn stream(State(console): State<Arc<Console>>) -> Sse<impl Stream<Item = Result<Event, axum::Error>>> {
    let changes = console.feed.changes.subscribe();
    let events = futures::stream::unfold(
        (console, changes, true),
        |(console, mut changes, first)| async move {
            if !first {
                tokio::time::sleep(MIN_PUSH_INTERVAL).await;
                if console.rate_decaying() {
                    // Elapsing is the point here: either way a summary goes out.
                    let _ = tokio::time::timeout(DECAY_REFRESH, changes.changed()).await;
                } else if changes.changed().await.is_err() {
                    // The feed is gone: the operator is shutting down.
                    return None;
                }
            }
            changes.borrow_and_update();
            let event = Event::default().event("summary").json_data(console.summary());
            Some((event, (console, changes, false)))
        },
    );
    Sse::new(events).keep_alive(KeepAlive::new().interval(KEEP_ALIVE))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fleet(namespace: &str, name: &str, replicas: i32) -> Arc<GameServerFleet> {
        let fleet: GameServerFleet = serde_json::from_value(serde_json::json!({
            "apiVersion": "flotilla.dev/v1alpha1",
            "kind": "GameServerFleet",
            "metadata": {"name": name, "namespace": namespace},
            "spec": {
                "replicas": replicas,
                "template": {"spec": {
                    "ports": [{"name": "game", "containerPort": 7777}],
                    "template": {"spec": {"containers": [{"name": "game", "image": "game"}]}},
                }},
            },
        }))
        .expect("a valid fleet");
        Arc::new(fleet)
    }

    fn server(
        namespace: &str,
        fleet: Option<&str>,
        state: &str,
        players: Option<(i32, i32)>,
    ) -> Arc<GameServer> {
        let mut value = serde_json::json!({
            "apiVersion": "flotilla.dev/v1alpha1",
            "kind": "GameServer",
            "metadata": {"name": format!("s-{state}"), "namespace": namespace, "labels": {}},
            "spec": {
                "ports": [{"name": "game", "containerPort": 7777}],
                "players": {"capacity": 8},
                "template": {"spec": {"containers": [{"name": "game", "image": "game"}]}},
            },
            "status": {"state": state},
        });
        if let Some(fleet) = fleet {
            value["metadata"]["labels"][labels::FLEET] = fleet.into();
        }
        if let Some((count, capacity)) = players {
            value["status"]["players"] = serde_json::json!({"count": count, "capacity": capacity});
        }
        Arc::new(serde_json::from_value(value).expect("a valid game server"))
    }

    fn count(row: &FleetRow, state: &str) -> u32 {
        row.counts.servers.get(state).copied().unwrap_or(99)
    }

    #[test]
    fn servers_are_counted_by_state_under_their_fleet() {
        let fleets = [fleet("games", "arena", 3), fleet("games", "duel", 1)];
        let mut leaving = (*server("games", Some("arena"), "Ready", None)).clone();
        leaving.metadata.deletion_timestamp = Some(k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(
            Timestamp::UNIX_EPOCH,
        ));
        let servers = [
            server("games", Some("arena"), "Ready", Some((0, 10))),
            server("games", Some("arena"), "Allocated", Some((4, 10))),
            server("games", Some("arena"), "Scheduled", None),
            Arc::new(leaving),
        ];
        let rows = fleet_rows(&fleets, &servers);
        assert_eq!(
            rows.iter().map(|r| r.name.as_str()).collect::<Vec<_>>(),
            ["arena", "duel"]
        );
        let arena = &rows[0];
        assert_eq!(arena.desired, Some(3));
        assert_eq!(
            (
                count(arena, "Ready"),
                count(arena, "Allocated"),
                count(arena, "Scheduled")
            ),
            (1, 1, 1)
        );
        assert_eq!(
            count(arena, "Shutdown"),
            1,
            "a server being deleted is shutting down"
        );
        assert_eq!(arena.counts.total, 4);
        // Reported players where the server reports them, declared capacity otherwise; a
        // server on its way out counts for neither.
        assert_eq!((arena.counts.players, arena.counts.capacity), (4, 28));
        let duel = &rows[1];
        assert_eq!((duel.desired, duel.counts.total), (Some(1), 0));
        assert_eq!(
            duel.counts.servers.len(),
            GameServerState::ALL.len(),
            "zeros included"
        );
    }

    #[test]
    fn servers_of_no_known_fleet_are_grouped_per_namespace() {
        let fleets = [fleet("games", "arena", 1)];
        let servers = [
            server("games", None, "Ready", None),
            server("games", Some("deleted"), "Allocated", None),
            server("other", Some("arena"), "Ready", None),
        ];
        let rows = fleet_rows(&fleets, &servers);
        let keys: Vec<_> = rows
            .iter()
            .map(|r| (r.namespace.as_str(), r.name.as_str(), r.desired, r.counts.total))
            .collect();
        assert_eq!(
            keys,
            [
                ("games", "", None, 2),
                ("games", "arena", Some(1), 0),
                ("other", "", None, 1)
            ]
        );
    }

    #[test]
    fn the_rate_counts_the_last_sixty_seconds_and_totals_everything() {
        let mut window = AllocationWindow::default();
        window.record(10, "allocated");
        window.record(10, "allocated");
        window.record(10, "no_capacity");
        window.record(40, "allocated");
        let view = window.view(40);
        assert_eq!(view.per_minute, 3);
        assert_eq!(view.last_minute.get("no_capacity"), Some(&1));
        assert_eq!(view.per_second.len(), 60);
        assert_eq!(view.per_second[59], 1, "the newest second is last");
        assert_eq!(view.per_second[59 - 30], 2);

        // A minute after second 10, its requests leave the rate but stay in the totals.
        let later = window.view(70);
        assert_eq!(later.per_minute, 1);
        assert_eq!(later.last_minute.get("no_capacity"), None);
        assert_eq!(later.total.get("allocated"), Some(&3));
        assert_eq!(later.total.get("no_capacity"), Some(&1));
        assert!(window.active(99));
        assert!(!window.active(100), "nothing left to decay");
        assert_eq!(window.view(100).per_minute, 0);
    }

    #[test]
    fn the_rate_window_keeps_at_most_a_minute_of_buckets() {
        let mut window = AllocationWindow::default();
        for second in 0..1_000 {
            window.record(second, "allocated");
        }
        assert_eq!(window.buckets.len(), 60);
        assert_eq!(window.view(999).per_minute, 60);
        assert_eq!(
            window.view(0).per_minute,
            0,
            "seconds ahead of now are not counted"
        );
    }

    fn decision(autoscaler: &str, from: i32, to: i32, result: &'static str) -> Decision {
        Decision::now("games", autoscaler, "arena", from, to, result)
    }

    #[test]
    fn repeated_outcomes_fold_into_one_entry_and_the_list_is_bounded() {
        let mut list = VecDeque::new();
        push_decision(&mut list, decision("a", 2, 2, "unchanged"));
        push_decision(&mut list, decision("b", 2, 3, "scaled_up"));
        push_decision(&mut list, decision("a", 2, 2, "unchanged"));
        let summary: Vec<_> = list.iter().map(|d| (d.autoscaler.as_str(), d.times)).collect();
        assert_eq!(summary, [("a", 2), ("b", 1)], "newest first, the repeat folded");

        push_decision(&mut list, decision("a", 2, 3, "scaled_up"));
        push_decision(&mut list, decision("a", 3, 3, "unchanged"));
        let results: Vec<_> = list.iter().map(|d| (d.result, d.times)).collect();
        assert_eq!(
            results,
            [
                ("unchanged", 1),
                ("scaled_up", 1),
                ("unchanged", 2),
                ("scaled_up", 1)
            ]
        );

        for to in 0..100 {
            push_decision(&mut list, decision("c", to, to + 1, "scaled_up"));
        }
        assert_eq!(list.len(), DECISIONS);
        assert_eq!(list.front().map(|d| d.to), Some(100));
    }

    /// The next `summary` event's data from an SSE body, reading more of it as needed.
    async fn next_summary(response: &mut reqwest::Response, buffer: &mut String) -> serde_json::Value {
        loop {
            if let Some(end) = buffer.find("\n\n") {
                let block: String = buffer.drain(..end + 2).collect();
                if block.lines().any(|l| l == "event: summary")
                    && let Some(data) = block.lines().find_map(|l| l.strip_prefix("data: "))
                {
                    return serde_json::from_str(data).expect("a summary is JSON");
                }
                continue;
            }
            let chunk = response
                .chunk()
                .await
                .expect("the stream goes on")
                .expect("the stream is not closed");
            buffer.push_str(std::str::from_utf8(&chunk).expect("events are UTF-8"));
        }
    }

    #[tokio::test]
    async fn the_stream_sends_a_summary_at_once_and_a_fresh_one_after_an_allocation() {
        use kube::runtime::{reflector, watcher};
        let (fleets, mut fleet_writer) = reflector::store();
        fleet_writer.apply_watcher_event(&watcher::Event::Apply((*fleet("games", "arena", 2)).clone()));
        let (servers, mut server_writer) = reflector::store();
        for state in ["Ready", "Allocated"] {
            let server = server("games", Some("arena"), state, None);
            server_writer.apply_watcher_event(&watcher::Event::Apply((*server).clone()));
        }
        let feed = Arc::new(ConsoleFeed::new("replica-a", Some("games"), true));
        let console = Arc::new(Console {
            feed: feed.clone(),
            fleets,
            servers,
        });
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("a free port");
        let address = listener.local_addr().expect("a bound address");
        tokio::spawn(async move { axum::serve(listener, router(console)).await });

        let mut response = reqwest::get(format!("http://{address}/console/api/stream"))
            .await
            .expect("the stream answers");
        assert_eq!(
            response
                .headers()
                .get(header::CONTENT_TYPE)
                .map(HeaderValue::as_bytes),
            Some(&b"text/event-stream"[..])
        );
        let mut buffer = String::new();
        let first = next_summary(&mut response, &mut buffer).await;
        assert_eq!(first["identity"], "replica-a");
        assert_eq!(first["fleets"][0]["servers"]["Ready"], 1, "{first}");
        assert_eq!(first["fleets"][0]["servers"]["Allocated"], 1, "{first}");
        assert_eq!(first["allocations"]["perMinute"], 0);
        assert_eq!(first["leader"]["thisReplica"], false);

        feed.allocation("allocated");
        let second = tokio::time::timeout(Duration::from_secs(2), next_summary(&mut response, &mut buffer))
            .await
            .expect("a summary follows the allocation within the push interval");
        assert_eq!(second["allocations"]["perMinute"], 1, "{second}");
        assert_eq!(second["allocations"]["total"]["allocated"], 1, "{second}");

        let page = reqwest::get(format!("http://{address}/console"))
            .await
            .expect("the page answers");
        assert!(page.headers().contains_key(header::CONTENT_SECURITY_POLICY));
    }

    #[test]
    fn the_page_inlines_its_script_and_style_and_allows_only_them() {
        let page = &*PAGE;
        assert!(!page.html.contains("/*SCRIPT*/") && !page.html.contains("/*STYLE*/"));
        assert!(page.html.contains("EventSource"));
        let policy = page.policy.to_str().expect("ascii");
        assert_eq!(policy.matches("'sha256-").count(), 2, "{policy}");
        assert!(!policy.contains("unsafe"), "{policy}");
        // Nothing loaded from elsewhere: no src attributes, no CSS urls, links only to data.
        assert!(!page.html.contains("src=") && !page.html.contains("url("));
        assert!(page.html.matches("href=\"").count() == page.html.matches("href=\"data:").count());
    }
}
