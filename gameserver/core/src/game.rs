//! The authoritative game as a state machine: connections, admission, the match and
//! replication. No sockets and no clock: the network layer feeds it bytes and ticks and sends
//! what it asks for ([`Output`]); tests do the same, tick by tick.

use std::collections::{BTreeMap, BTreeSet, VecDeque};

use crate::arena::{Arena, ArenaConfig, Spatial};
use crate::replication::Replicator;
use crate::wire::{
    ClientControl, Datagram, EntityId, EntityState, InputDatagram, MAX_DATAGRAM, MAX_ENTITIES, PlayerResult,
    ServerControl,
};

/// Lines of the results table each player is sent (plus its own when lower).
const RESULTS_SHOWN: usize = 16;

/// A transport connection, numbered by the network layer.
pub type ConnId = u64;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GameConfig {
    pub arena: ArenaConfig,
    pub tick_rate: u16,
    /// Length of a match once it starts.
    pub match_ticks: u32,
    /// Connected players needed to start the match.
    pub min_players: u16,
    pub max_players: u16,
    pub view_radius_mm: i32,
    pub max_visible: usize,
}

impl Default for GameConfig {
    fn default() -> Self {
        Self {
            arena: ArenaConfig::default(),
            tick_rate: 30,
            match_ticks: 30 * 120,
            min_players: 1,
            max_players: 1_000,
            view_radius_mm: 20_000,
            max_visible: MAX_ENTITIES,
        }
    }
}

/// What a verified connection token says. Signature checking happens outside the core
/// (it needs keys); the core checks the token is meant for this server, session and moment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenClaims {
    pub server: String,
    pub session: String,
    pub player: String,
    pub token_id: String,
    pub expires_unix: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    /// Not allocated: nothing to simulate, the server does not tick.
    Idle,
    /// Allocated, waiting for `min_players`.
    Waiting,
    Playing {
        ends_at: u32,
    },
    /// Results sent; the network layer decides between reuse and shutdown.
    Ended,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum GameEvent {
    PlayerConnected {
        player: String,
    },
    PlayerDisconnected {
        player: String,
    },
    MatchStarted {
        session: String,
    },
    MatchEnded {
        session: String,
        results: Vec<PlayerResult>,
    },
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Output {
    Datagram {
        conn: ConnId,
        bytes: Vec<u8>,
    },
    Control {
        conn: ConnId,
        message: ServerControl,
    },
    /// Close the connection, telling the peer why.
    Close {
        conn: ConnId,
        reason: String,
    },
    Event(GameEvent),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Session {
    pub(crate) id: String,
    /// Every server this session has run on: after a failover, tokens issued for the
    /// original server stay valid on its replacement.
    pub(crate) servers: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Slot {
    pub(crate) entity: EntityId,
    pub(crate) token_id: String,
    pub(crate) conn: Option<ConnId>,
}

#[derive(Debug, Default)]
struct Conn {
    player: Option<String>,
    replicator: Replicator,
    input_seq: u32,
}

pub struct Game {
    pub(crate) config: GameConfig,
    pub(crate) server: String,
    pub(crate) session: Option<Session>,
    pub(crate) phase: Phase,
    pub(crate) arena: Arena,
    pub(crate) slots: BTreeMap<String, Slot>,
    /// Tokens of players who left for good: refused if presented again.
    pub(crate) spent_tokens: BTreeSet<String>,
    pub(crate) next_entity: EntityId,
    spatial: Spatial,
    conns: BTreeMap<ConnId, Conn>,
    outputs: VecDeque<Output>,
    view: Vec<(EntityId, EntityState)>,
}

impl Game {
    pub fn new(config: GameConfig, server: impl Into<String>) -> Self {
        let spatial = Spatial::new(config.view_radius_mm, config.arena.size_mm);
        Self {
            arena: Arena::new(config.arena.clone()),
            config,
            server: server.into(),
            session: None,
            phase: Phase::Idle,
            slots: BTreeMap::new(),
            spent_tokens: BTreeSet::new(),
            next_entity: 1,
            spatial,
            conns: BTreeMap::new(),
            outputs: VecDeque::new(),
            view: Vec::new(),
        }
    }

    pub fn phase(&self) -> Phase {
        self.phase
    }

    pub fn session(&self) -> Option<&str> {
        self.session.as_ref().map(|s| s.id.as_str())
    }

    pub fn tick(&self) -> u32 {
        self.arena.tick()
    }

    pub fn arena(&self) -> &Arena {
        &self.arena
    }

    pub fn config(&self) -> &GameConfig {
        &self.config
    }

    /// Players with a live connection.
    pub fn connected_players(&self) -> usize {
        self.slots.values().filter(|s| s.conn.is_some()).count()
    }

    /// Only an allocated server simulates; an idle one costs no CPU.
    pub fn is_ticking(&self) -> bool {
        matches!(self.phase, Phase::Waiting | Phase::Playing { .. })
    }

    pub fn poll_output(&mut self) -> Option<Output> {
        self.outputs.pop_front()
    }

    /// The platform allocated this server for `session`. Repeating it is harmless; a second
    /// session while one is running is ignored (the operator never does that).
    pub fn allocate(&mut self, session: &str) {
        if self.phase != Phase::Idle {
            return;
        }
        self.session = Some(Session {
            id: session.to_owned(),
            servers: vec![self.server.clone()],
        });
        self.arena = Arena::new(self.config.arena.clone());
        self.phase = Phase::Waiting;
    }

    /// Back to idle for reuse: everyone still connected is told and dropped.
    pub fn reset(&mut self) {
        for (&conn, c) in &self.conns {
            if c.player.is_some() {
                self.outputs.push_back(Output::Close {
                    conn,
                    reason: "the match is over".into(),
                });
            }
        }
        self.conns.retain(|_, c| c.player.is_none());
        self.session = None;
        self.phase = Phase::Idle;
        self.slots.clear();
        self.spent_tokens.clear();
        self.next_entity = 1;
        self.arena = Arena::new(self.config.arena.clone());
    }

    pub fn connect(&mut self, conn: ConnId) {
        self.conns.entry(conn).or_default();
    }

    /// The transport connection is gone (closed, timed out). The player keeps its place and
    /// may reconnect with the same token.
    pub fn disconnect(&mut self, conn: ConnId) {
        let Some(c) = self.conns.remove(&conn) else { return };
        if let Some(player) = c.player
            && let Some(slot) = self.slots.get_mut(&player)
            && slot.conn == Some(conn)
        {
            slot.conn = None;
            self.outputs
                .push_back(Output::Event(GameEvent::PlayerDisconnected { player }));
        }
    }

    /// A control message from `conn`. `verify` checks a join token's signature and returns its
    /// claims; `now_unix` is the wall clock, for token expiry.
    pub fn on_control(
        &mut self,
        conn: ConnId,
        bytes: &[u8],
        now_unix: u64,
        verify: impl FnOnce(&str) -> Result<TokenClaims, String>,
    ) {
        let message = match ClientControl::decode(bytes) {
            Ok(m) => m,
            Err(e) => return self.close(conn, format!("bad control message: {e}")),
        };
        let joined = self.conns.get(&conn).and_then(|c| c.player.clone());
        match (message, joined) {
            (ClientControl::Join { .. }, Some(_)) => self.close(conn, "already joined".into()),
            (ClientControl::Join { token }, None) => {
                let admitted = verify(&token).and_then(|claims| self.admit(conn, &claims, now_unix));
                if let Err(reason) = admitted {
                    self.outputs.push_back(Output::Control {
                        conn,
                        message: ServerControl::Refused {
                            reason: reason.clone(),
                        },
                    });
                    self.close(conn, reason);
                }
            }
            (_, None) => self.close(conn, "join first".into()),
            (ClientControl::Chat { text }, Some(player)) => {
                let from = self.slots.get(&player).map_or(0, |s| s.entity);
                self.broadcast(&ServerControl::Chat { from, text });
            }
            (ClientControl::Leave, Some(player)) => {
                if let Some(slot) = self.slots.remove(&player) {
                    self.spent_tokens.insert(slot.token_id);
                    self.arena.remove(slot.entity);
                }
                self.outputs
                    .push_back(Output::Event(GameEvent::PlayerDisconnected { player }));
                self.close(conn, "left the match".into());
            }
        }
    }

    fn admit(&mut self, conn: ConnId, claims: &TokenClaims, now_unix: u64) -> Result<(), String> {
        let session = self
            .session
            .as_ref()
            .ok_or("this server is not allocated to a session")?;
        if claims.session != session.id {
            return Err(format!(
                "token is for session {:?}, not this server's session",
                claims.session
            ));
        }
        if !session.servers.contains(&claims.server) {
            return Err(format!("token is for server {:?}, not this one", claims.server));
        }
        if claims.expires_unix <= now_unix {
            return Err("token expired".into());
        }
        if self.spent_tokens.contains(&claims.token_id) {
            return Err("token already used by a player who left".into());
        }
        if self.phase == Phase::Ended {
            return Err("the match is over".into());
        }
        let resumed = match self.slots.get(&claims.player) {
            Some(slot) if slot.conn.is_some() => return Err("player is already connected".into()),
            Some(_) => true,
            None if self.slots.len() >= usize::from(self.config.max_players) => {
                return Err("server is full".into());
            }
            None => false,
        };
        let entity = match self.slots.get_mut(&claims.player) {
            Some(slot) => {
                slot.conn = Some(conn);
                slot.token_id.clone_from(&claims.token_id);
                slot.entity
            }
            None => {
                let entity = self.next_entity;
                self.next_entity = self.next_entity.checked_add(1).ok_or("no entity ids left")?;
                self.arena.spawn(entity);
                let slot = Slot {
                    entity,
                    token_id: claims.token_id.clone(),
                    conn: Some(conn),
                };
                self.slots.insert(claims.player.clone(), slot);
                entity
            }
        };
        let c = self.conns.entry(conn).or_default();
        c.player = Some(claims.player.clone());
        let score = self.arena.avatar(entity).map_or(0, |a| a.score);
        let welcome = ServerControl::Welcome {
            entity,
            tick_rate: self.config.tick_rate,
            tick: self.arena.tick(),
            resumed,
            score,
        };
        self.outputs.push_back(Output::Control {
            conn,
            message: welcome,
        });
        if let Phase::Playing { ends_at } = self.phase {
            self.outputs.push_back(Output::Control {
                conn,
                message: ServerControl::MatchStarted {
                    ends_at_tick: ends_at,
                },
            });
        }
        self.outputs.push_back(Output::Event(GameEvent::PlayerConnected {
            player: claims.player.clone(),
        }));
        Ok(())
    }

    /// An input datagram. Anything else, or garbage, closes the connection with the reason.
    pub fn on_datagram(&mut self, conn: ConnId, bytes: &[u8]) {
        let input = match Datagram::decode(bytes) {
            Ok(Datagram::Input(input)) => input,
            Ok(Datagram::Snapshot(_)) => return self.close(conn, "clients do not send snapshots".into()),
            Err(e) => return self.close(conn, format!("bad datagram: {e}")),
        };
        self.apply_input(conn, &input);
    }

    fn apply_input(&mut self, conn: ConnId, input: &InputDatagram) {
        let Some(c) = self.conns.get_mut(&conn) else {
            return;
        };
        // Inputs can beat the join over the network; they mean nothing before it.
        let Some(player) = &c.player else { return };
        c.replicator.ack(input.ack_tick);
        let newest = input
            .inputs
            .iter()
            .filter(|f| f.seq > c.input_seq)
            .max_by_key(|f| f.seq);
        if let Some(frame) = newest {
            c.input_seq = frame.seq;
            if let Some(slot) = self.slots.get(player) {
                self.arena.steer(slot.entity, frame.dx, frame.dy);
            }
        }
    }

    /// One fixed step: simulate, advance the match, send each player its snapshot.
    pub fn step(&mut self) {
        if !self.is_ticking() {
            return;
        }
        self.arena.step(&mut self.spatial);
        self.advance_match();
        self.replicate();
    }

    fn advance_match(&mut self) {
        let tick = self.arena.tick();
        match self.phase {
            Phase::Waiting if self.connected_players() >= usize::from(self.config.min_players.max(1)) => {
                let ends_at = tick.saturating_add(self.config.match_ticks);
                self.phase = Phase::Playing { ends_at };
                self.arena.reset_scores();
                // This tick's snapshots read the index: it must see the scores just reset.
                self.spatial.index(&self.arena);
                self.broadcast(&ServerControl::MatchStarted {
                    ends_at_tick: ends_at,
                });
                let session = self.session().unwrap_or_default().to_owned();
                self.outputs
                    .push_back(Output::Event(GameEvent::MatchStarted { session }));
            }
            Phase::Playing { ends_at } if tick >= ends_at => {
                self.phase = Phase::Ended;
                let results = self.results();
                self.send_results(&results);
                let session = self.session().unwrap_or_default().to_owned();
                self.outputs
                    .push_back(Output::Event(GameEvent::MatchEnded { session, results }));
            }
            _ => {}
        }
    }

    /// Scores, best first (ties by entity, so the order is stable).
    pub fn results(&self) -> Vec<PlayerResult> {
        let mut results: Vec<PlayerResult> = self
            .slots
            .iter()
            .map(|(player, slot)| PlayerResult {
                entity: slot.entity,
                player: player.clone(),
                score: self.arena.avatar(slot.entity).map_or(0, |a| a.score),
            })
            .collect();
        results.sort_by_key(|r| (std::cmp::Reverse(r.score), r.entity));
        results
    }

    fn replicate(&mut self) {
        let tick = self.arena.tick();
        for (&conn, c) in &mut self.conns {
            let Some(slot) = c.player.as_ref().and_then(|p| self.slots.get(p)) else {
                continue;
            };
            self.arena.visible(
                &mut self.spatial,
                slot.entity,
                self.config.view_radius_mm,
                self.config.max_visible.min(MAX_ENTITIES),
                &mut self.view,
            );
            let snapshot = c.replicator.snapshot(tick, c.input_seq, &self.view);
            let bytes = Datagram::Snapshot(snapshot).encode();
            debug_assert!(bytes.len() <= MAX_DATAGRAM, "snapshot of {} bytes", bytes.len());
            self.outputs.push_back(Output::Datagram { conn, bytes });
        }
    }

    /// Each player gets the top of the table and its own line: the message stays within a
    /// control frame whatever the number of players (the full table goes to the platform).
    fn send_results(&mut self, results: &[PlayerResult]) {
        for (&conn, c) in &self.conns {
            let Some(player) = &c.player else { continue };
            let mut table: Vec<PlayerResult> = results.iter().take(RESULTS_SHOWN).cloned().collect();
            if let Some(own) = results.iter().skip(RESULTS_SHOWN).find(|r| &r.player == player) {
                table.push(own.clone());
            }
            self.outputs.push_back(Output::Control {
                conn,
                message: ServerControl::MatchEnded { results: table },
            });
        }
    }

    fn broadcast(&mut self, message: &ServerControl) {
        for (&conn, c) in &self.conns {
            if c.player.is_some() {
                self.outputs.push_back(Output::Control {
                    conn,
                    message: message.clone(),
                });
            }
        }
    }

    fn close(&mut self, conn: ConnId, reason: String) {
        if let Some(c) = self.conns.remove(&conn)
            && let Some(player) = c.player
            && let Some(slot) = self.slots.get_mut(&player)
            && slot.conn == Some(conn)
        {
            slot.conn = None;
            self.outputs
                .push_back(Output::Event(GameEvent::PlayerDisconnected { player }));
        }
        self.outputs.push_back(Output::Close { conn, reason });
    }
}
