//! Shared parts of the fuzz targets in `fuzz_targets/` (see docs/fuzzing.md).
//!
//! - [`session`]: the byte format a `game_session` input is read as (a list of operations on
//!   a [`flotilla_game::Game`]) and the [`session::Harness`] that applies them while modelling
//!   each client and checking everything the game sends;
//! - [`token`]: a fixed Ed25519 key, so the token target can sign what it wants verified.
//!
//! `examples/seeds.rs` uses the same encoders to write the seed corpora, so seeds follow the
//! formats as they change.

pub mod session;
pub mod token;
