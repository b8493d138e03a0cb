//! Sans-IO core of the Flotilla game server.
//!
//! Everything that decides what happens in a match lives here, with no sockets and no clock:
//! the [`wire`] format, the [`arena`] simulation, [`replication`] of state to players, and the
//! [`Game`] that admits players, runs the match and says what to send. The network layer in
//! `flotilla-gameserver` drives it with received bytes and fixed ticks; tests drive it the
//! same way, tick by tick, without a network.

pub mod arena;
mod checkpoint;
mod codec;
mod error;
mod game;
mod grid;
pub mod replication;
mod rng;
pub mod wire;

pub use arena::ArenaConfig;
pub use error::{Error, Result};
pub use game::{ConnId, Game, GameConfig, GameEvent, Output, Phase, TokenClaims};
