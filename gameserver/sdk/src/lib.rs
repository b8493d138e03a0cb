//! Client for the Flotilla game-server SDK endpoint (`docs/sdk.md`): how a game server tells
//! Flotilla it is ready, alive, full or done, and learns that it was allocated.
//!
//! The operator gives every game-server container `FLOTILLA_SDK_URL` and
//! `FLOTILLA_SDK_TOKEN_FILE`; [`Sdk::from_env`] reads them. Every request carries the pod's
//! token, read from the file each time (the kubelet rotates it), and acts on the pod's own
//! GameServer only.
//!
//! ```no_run
//! use std::time::Duration;
//!
//! use flotilla_sdk::{GameServerState, Sdk};
//! use futures::StreamExt;
//!
//! # async fn run() -> flotilla_sdk::Result<()> {
//! let sdk = Sdk::from_env()?;
//! // Heartbeats for as long as `_health` lives; well under the server's health.periodSeconds.
//! let _health = sdk.spawn_health(Duration::from_secs(2));
//! sdk.set_player_capacity(16).await?;
//! sdk.ready().await?;
//!
//! // Wait to be allocated; the allocation's labels say what to host.
//! let mut changes = sdk.watch().await?;
//! while let Some(server) = changes.next().await {
//!     let state = server?.status.map(|s| s.state).unwrap_or_default();
//!     if state == GameServerState::Allocated {
//!         break;
//!     }
//! }
//! sdk.player_connect("player-1").await?;
//! // ... the session ...
//! sdk.shutdown().await?;
//! # Ok(())
//! # }
//! ```
//!
//! Errors say which request failed and keep what the endpoint answered: see [`Error`], e.g.
//! [`Error::is_conflict`] for a change the state machine refuses.

mod client;
mod error;
mod health;
mod watch;

pub use client::{MAX_PLAYER_CAPACITY, MAX_RESERVATION, Sdk, TOKEN_FILE_ENV, TokenSource, URL_ENV};
pub use error::{Error, Result, StatusCode};
pub use flotilla_api::{GameServer, GameServerState, GameServerStatus};
pub use health::{HealthTask, MIN_HEALTH_PERIOD};
pub use watch::Watch;

#[cfg(test)]
mod tests;
