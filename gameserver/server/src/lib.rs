//! The Flotilla reference QUIC game server.
//!
//! The game itself is the sans-IO core in `flotilla-game`; this crate puts it on the network
//! and on the platform:
//!
//! - [`server`]: the QUIC endpoint (quinn) and the game task that ticks the core;
//! - [`tls`]: self-signed certificates and fingerprint pinning;
//! - [`client`]: the player side, used by [`bots`] and the tests;
//! - [`metrics`]: Prometheus metrics.

pub mod bots;
pub mod checkpoint_store;
pub mod client;
mod error;
pub mod metrics;
pub mod platform;
pub mod results_report;
pub mod runtime;
pub mod server;
pub mod tls;

pub use error::{Error, Result};
