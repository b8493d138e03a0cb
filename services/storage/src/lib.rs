//! The storage layer shared by Flotilla's services.
//!
//! - [`mongo`]: the MongoDB connection (pool, timeouts, metrics) and [`model::Store`], the typed query
//!   layer callers use instead of raw documents; [`page`] is its cursor pagination.
//! - [`sequence`]: append-only sequences of entries keyed by position, the one way shared state
//!   changes here (FerretDB makes only unique inserts and deletes by `_id` atomic).
//! - [`migrate`]: versioned migrations recorded in the database, serialised across replicas by a
//!   [`lease`] (one replica at a time, also for the economy's recovery worker).
//! - [`cache`], [`presence`], [`rate_limit`], [`pubsub`]: Redis.
//! - [`opensearch`]: one OpenSearch index behind an alias, rebuilt beside the one in use;
//!   [`search`]: player search by name on it.
//! - [`backup`]: export every collection to an archive and restore it into an empty database.
//!
//! Nothing here uses MongoDB features FerretDB lacks (transactions, change streams, TTL indexes, text
//! indexes): expiry is a timestamp compared on read, and search lives in OpenSearch.

pub mod backup;
pub mod cache;
mod error;
pub mod lease;
pub mod migrate;
pub mod model;
pub mod mongo;
pub mod opensearch;
pub mod page;
pub mod presence;
pub mod pubsub;
pub mod rate_limit;
pub mod search;
pub mod sequence;

pub use error::{Error, Result};

/// A multiplexed Redis connection that reconnects by itself, shared by a process's tasks.
///
/// An answer may take up to 2 s before the request fails. The driver's default of 500 ms turned a
/// briefly busy Redis (58,000 WebSockets connecting at once in `./x bench player`) into failed
/// requests that a moment's patience would have served.
pub async fn connect_redis(url: &str) -> Result<redis::aio::ConnectionManager> {
    let client = redis::Client::open(url)?;
    let config = redis::aio::ConnectionManagerConfig::new()
        .set_response_timeout(Some(std::time::Duration::from_secs(2)))
        .set_connection_timeout(Some(std::time::Duration::from_secs(2)));
    Ok(redis::aio::ConnectionManager::new_with_config(client, config).await?)
}
