//! Match checkpoints: everything needed to continue a match on another server — session,
//! phase, arena (positions, scores, orbs, random state) and who holds which entity and token.
//! Connections are not saved: players reconnect to the replacement with their tokens.
//!
//! A compact versioned binary format; decoding validates every count and field, since a
//! checkpoint comes back from storage another process could have written.

use crate::arena::{Arena, Avatar};
use crate::codec::{Reader, Writer};
use crate::game::{Game, Phase, Session, Slot};
use crate::rng::SplitMix64;
use crate::{Error, Result};

const MAGIC: &[u8; 4] = b"FLCP";
const CHECKPOINT_VERSION: u8 = 1;
const MAX_NAME: usize = 256;
const MAX_SERVERS: usize = 64;
const MAX_PLAYERS: usize = 65_535;
const MAX_ORBS: usize = 65_535;

impl Game {
    /// A checkpoint of the running match, or `None` when there is no session.
    pub fn checkpoint(&self) -> Option<Vec<u8>> {
        let session = self.session.as_ref()?;
        let mut w = Writer::default();
        w.bytes.extend_from_slice(MAGIC);
        w.u8(CHECKPOINT_VERSION);
        w.bytes(session.id.as_bytes());
        w.count(session.servers.len());
        for server in &session.servers {
            w.bytes(server.as_bytes());
        }
        match self.phase {
            Phase::Idle | Phase::Waiting => w.u8(0),
            Phase::Playing { ends_at } => {
                w.u8(1);
                w.u32(ends_at);
            }
            Phase::Ended => w.u8(2),
        }
        w.u32(self.arena.tick);
        w.u64(self.arena.rng.state);
        w.u16(self.next_entity);
        w.count(self.arena.orbs.len());
        for (x, y) in &self.arena.orbs {
            w.i32(*x);
            w.i32(*y);
        }
        w.count(self.slots.len());
        for (player, slot) in &self.slots {
            let a = self.arena.avatar(slot.entity).copied().unwrap_or(Avatar {
                x: 0,
                y: 0,
                score: 0,
                dx: 0,
                dy: 0,
            });
            w.bytes(player.as_bytes());
            w.bytes(slot.token_id.as_bytes());
            w.u16(slot.entity);
            w.i32(a.x);
            w.i32(a.y);
            w.u32(a.score);
        }
        w.count(self.spent_tokens.len());
        for token in &self.spent_tokens {
            w.bytes(token.as_bytes());
        }
        Some(w.bytes)
    }

    /// Continues a checkpointed match on this (idle) server. Tokens issued for the servers the
    /// match ran on before are accepted here too.
    pub fn restore(&mut self, bytes: &[u8]) -> Result<()> {
        if self.phase != Phase::Idle {
            return Err(Error::Checkpoint("this server already runs a session"));
        }
        let mut r = Reader::new(bytes);
        let magic = [r.u8("magic")?, r.u8("magic")?, r.u8("magic")?, r.u8("magic")?];
        if &magic != MAGIC {
            return Err(Error::Checkpoint("not a checkpoint"));
        }
        if r.u8("checkpoint version")? != CHECKPOINT_VERSION {
            return Err(Error::Checkpoint("unsupported checkpoint version"));
        }
        let id = r.string("session", MAX_NAME)?;
        let mut servers = Vec::new();
        for _ in 0..r.count("servers", MAX_SERVERS)? {
            servers.push(r.string("server", MAX_NAME)?);
        }
        let phase = match r.u8("phase")? {
            0 => Phase::Waiting,
            1 => Phase::Playing {
                ends_at: r.u32("ends_at")?,
            },
            2 => Phase::Ended,
            _ => return Err(Error::Checkpoint("unknown phase")),
        };
        let mut arena = Arena::new(crate::ArenaConfig {
            orbs: 0,
            ..self.config.arena.clone()
        });
        arena.tick = r.u32("tick")?;
        // Ticks count up from 0 for the life of a match; near the top of the range they would
        // wrap to 0, which clients read as "no snapshot yet".
        if arena.tick >= 1 << 31 {
            return Err(Error::Checkpoint("tick out of range"));
        }
        // Positions must lie in this server's arena, or the next step's arithmetic could overflow.
        let size = self.config.arena.size_mm;
        let inside = |x: i32, y: i32| (0..=size).contains(&x) && (0..=size).contains(&y);
        arena.rng = SplitMix64 { state: r.u64("rng")? };
        let next_entity = r.u16("next entity")?;
        for _ in 0..r.count("orbs", MAX_ORBS)? {
            let (x, y) = (r.i32("orb x")?, r.i32("orb y")?);
            if !inside(x, y) {
                return Err(Error::Checkpoint("orb outside the arena"));
            }
            arena.orbs.push((x, y));
        }
        let mut slots = std::collections::BTreeMap::new();
        for _ in 0..r.count("players", MAX_PLAYERS)? {
            let player = r.string("player", MAX_NAME)?;
            let token_id = r.string("token id", MAX_NAME)?;
            let entity = r.u16("entity")?;
            if entity == 0 || entity >= next_entity || entity >= crate::wire::FIRST_ORB_ID {
                return Err(Error::Checkpoint("player entity out of range"));
            }
            let avatar = Avatar {
                x: r.i32("x")?,
                y: r.i32("y")?,
                score: r.u32("score")?,
                dx: 0,
                dy: 0,
            };
            if !inside(avatar.x, avatar.y) {
                return Err(Error::Checkpoint("player outside the arena"));
            }
            arena.place(entity, avatar);
            slots.insert(
                player,
                Slot {
                    entity,
                    token_id,
                    conn: None,
                },
            );
        }
        let mut spent = std::collections::BTreeSet::new();
        for _ in 0..r.count("spent tokens", MAX_PLAYERS)? {
            spent.insert(r.string("spent token", MAX_NAME)?);
        }
        r.finish()?;
        if !servers.contains(&self.server) {
            servers.push(self.server.clone());
        }
        if servers.len() > MAX_SERVERS {
            return Err(Error::Checkpoint("session moved between too many servers"));
        }
        self.session = Some(Session { id, servers });
        self.phase = phase;
        self.arena = arena;
        self.slots = slots;
        self.spent_tokens = spent;
        self.next_entity = next_entity;
        Ok(())
    }
}
