//! The storage layer shared by Flotilla's services.
//!
//! - [`mongo`]: the MongoDB connection (pool, timeouts, metrics) and [`model::Store`], the typed query
//!   layer callers use instead of raw documents; [`page`] is its cursor pagination.
//! - [`migrate`]: versioned migrations recorded in the database, serialised across replicas by a lease.
//! - [`cache`], [`presence`], [`rate_limit`], [`pubsub`]: Redis.
//! - [`search`]: OpenSearch, for player search by name.
//! - [`backup`]: export every collection to an archive and restore it into an empty database.
//!
//! Nothing here uses MongoDB features FerretDB lacks (transactions, change streams, TTL indexes, text
//! indexes): expiry is a timestamp compared on read, and search lives in OpenSearch.

pub mod backup;
pub mod cache;
mod error;
pub mod migrate;
pub mod model;
pub mod mongo;
pub mod page;
pub mod presence;
pub mod pubsub;
pub mod rate_limit;
pub mod search;

pub use error::{Error, Result};
