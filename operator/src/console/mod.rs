//! The ops console: one page on the operations listener (`GET /console`) showing fleets, their
//! servers by state, the allocation rate and the autoscaler's recent decisions, kept live by
//! Server-Sent Events (`/console/api/stream`), with a JSON snapshot for scripts and for the
//! page's polling fallback (`/console/api/summary`). See `docs/console.md`.
//!
//! Everything shown comes from what the replica already holds — the watch-fed stores of fleets
//! and servers the allocator reads, and a [`ConsoleFeed`] that the allocation API and the
//! autoscaler write to — so an open console adds no API-server request per view. The one call
//! it makes is a GET of the leader Lease every few seconds, to name the leader on every replica.

mod allocation_rate;
mod api;
mod decisions;
mod feed;
#[cfg(test)]
mod fixtures;
mod lease;
mod page;
mod summary;

use std::sync::Arc;

use axum::Router;
use axum::routing::get;

pub use allocation_rate::AllocationView;
pub use decisions::Decision;
pub use feed::{ConsoleFeed, LeaderView};
pub use lease::follow_lease;
pub use summary::{Console, Counts, FleetRow, Summary, fleet_rows};

pub fn router(console: Arc<Console>) -> Router {
    Router::new()
        .route("/console", get(page::page))
        .route("/console/api/summary", get(api::summary))
        .route("/console/api/stream", get(api::stream))
        .with_state(console)
}
