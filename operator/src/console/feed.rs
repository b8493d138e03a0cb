//! The console's live state that no store holds: allocations answered, autoscaler decisions
//! and who leads, written by the allocation API, the autoscaler and the lease follower, with
//! the change signal the open streams wait on.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::Instant;

use jiff::Timestamp;
use serde::Serialize;
use tokio::sync::watch;

use super::allocation_rate::{AllocationView, AllocationWindow};
use super::decisions::{Decision, push_decision};

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
        lock(&self.allocations).record(self.second(), result);
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

    /// The lease holder as last read; a change is shown at once.
    pub(super) fn set_holder(&self, holder: Option<String>) {
        let mut current = lock(&self.holder);
        if *current != holder {
            *current = holder;
            drop(current);
            self.changed();
        }
    }

    pub(super) fn leader(&self) -> LeaderView {
        LeaderView {
            this_replica: self.leading.load(Ordering::Relaxed),
            holder: lock(&self.holder).clone(),
            election: self.election,
        }
    }

    pub(super) fn identity(&self) -> &str {
        &self.identity
    }

    pub(super) fn namespace(&self) -> Option<&str> {
        self.namespace.as_deref()
    }

    pub(super) fn started_at(&self) -> Timestamp {
        self.started_at
    }

    /// The allocation rate as of now.
    pub(super) fn allocations(&self) -> AllocationView {
        lock(&self.allocations).view(self.second())
    }

    /// Newest first.
    pub(super) fn decisions(&self) -> Vec<Decision> {
        lock(&self.decisions).iter().cloned().collect()
    }

    /// Whether the allocation rate will still fall with no event to say so.
    pub(super) fn rate_decaying(&self) -> bool {
        lock(&self.allocations).active(self.second())
    }

    /// A receiver marked changed whenever [`changed`](Self::changed) is called.
    pub(super) fn subscribe(&self) -> watch::Receiver<()> {
        self.changes.subscribe()
    }

    /// The current second on the rate window's clock.
    fn second(&self) -> u64 {
        self.epoch.elapsed().as_secs()
    }
}

/// A poisoned lock only means another request panicked mid-update of counters that are still
/// valid to read: the console keeps showing them rather than failing.
fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
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
