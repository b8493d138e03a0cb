//! A game driven by fuzz input: the input is read as a list of operations ([`Op`]) that a
//! network layer and its clients could cause, and a [`Harness`] applies them to a
//! [`Game`] while playing every client's part and checking each output.
//!
//! # Input format
//!
//! Operations follow each other with no header; each starts with a tag byte, taken modulo
//! [`OPS`], then its fields (integers little-endian). A connection byte picks one of
//! [`CONNS`] connection ids, so inputs reuse connections often. A truncated last operation is
//! ignored.
//!
//! | tag | operation    | fields                                | what happens                          |
//! |-----|--------------|---------------------------------------|---------------------------------------|
//! | 0   | `Control`    | conn, `u16` length, bytes             | raw control message                   |
//! | 1   | `Datagram`   | conn, `u16` length, bytes             | raw datagram                          |
//! | 2   | `Join`       | conn, `u8` length, player id          | well-formed `Join` (token = player)   |
//! | 3   | `Input`      | conn, ack lag, dx, dy                 | well-formed input datagram            |
//! | 4   | `Step`       | `u8` n                                | `n % 8 + 1` ticks                     |
//! | 5   | `Connect`    | conn                                  | transport connection opened           |
//! | 6   | `Disconnect` | conn                                  | transport connection lost             |
//! | 7   | `Chat`       | conn, `u8` length, text               | well-formed `Chat`                    |
//! | 8   | `Leave`      | conn                                  | well-formed `Leave`                   |
//! | 9   | `Reallocate` | —                                     | `reset` then `allocate`               |
//! | 10  | `Failover`   | —                                     | checkpoint, restore on a new server   |
//! | 11  | `Clock`      | `u8` seconds                          | the wall clock moves on               |
//!
//! Raw messages reach every decoding path; the well-formed ones let the fuzzer reach deep game
//! states (many players, a finished match, a match moved to another server) in few bytes.
//!
//! # Tokens
//!
//! Signatures are checked outside the core, so the harness's verifier reads a token as a
//! player id: `!…` fails verification, `~…` is a token for another session, longer than
//! [`MAX_PLAYER_ID`] bytes is refused (the allocation service never signs such ids), and
//! anything else admits that player to the harness's session until [`TOKEN_EXPIRES`].

use std::collections::BTreeMap;

use flotilla_game::replication::Receiver;
use flotilla_game::wire::{
    self, ClientControl, Datagram, EntityId, FIRST_ORB_ID, InputDatagram, InputFrame, MAX_CONTROL,
    MAX_DATAGRAM, MAX_ENTITIES, ServerControl,
};
use flotilla_game::{ArenaConfig, ConnId, Game, GameConfig, Output, Phase, TokenClaims};

pub const SERVER: &str = "fuzz-server";
/// Where a [`Op::Failover`] moves the match.
pub const FAILOVER_SERVER: &str = "fuzz-server-2";
pub const SESSION: &str = "fuzz-session";
pub const START_UNIX: u64 = 1_000_000;
/// Every token the harness admits expires then: ten minutes of [`Op::Clock`] later.
pub const TOKEN_EXPIRES: u64 = START_UNIX + 600;
/// Longest player id the allocation service accepts (`check_player_id` in the operator).
pub const MAX_PLAYER_ID: usize = 128;
/// Connection ids in use are 1 to `CONNS`.
pub const CONNS: u8 = 6;
/// Number of operation kinds; a tag byte is taken modulo this.
pub const OPS: u8 = 12;
/// Ticks one input may ask for, so every input runs in bounded time (a tick with three
/// players costs about 0.3 ms in the instrumented build).
const MAX_TICKS: u32 = 256;
/// Players joined on connections 1, 2, 3 before the input's operations run.
pub const SETUP_PLAYERS: [&str; 3] = ["p1", "p2", "p3"];

/// A small crowded arena, so views hit [`MAX_ENTITIES`], players collide and collect orbs,
/// and a match ends within a few hundred bytes of input. Player limit as the server's default.
pub fn config() -> GameConfig {
    GameConfig {
        arena: ArenaConfig {
            size_mm: 30_000,
            orbs: 96,
            ..ArenaConfig::default()
        },
        match_ticks: 60,
        min_players: 2,
        max_players: 100,
        ..GameConfig::default()
    }
}

/// One thing that can happen to a game server; see the module docs for the byte format.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Op<'a> {
    Control { conn: u8, bytes: &'a [u8] },
    Datagram { conn: u8, bytes: &'a [u8] },
    Join { conn: u8, player: &'a [u8] },
    Input { conn: u8, ack_lag: u8, dx: i8, dy: i8 },
    Step { ticks: u8 },
    Connect { conn: u8 },
    Disconnect { conn: u8 },
    Chat { conn: u8, text: &'a [u8] },
    Leave { conn: u8 },
    Reallocate,
    Failover,
    Clock { seconds: u8 },
}

impl<'a> Op<'a> {
    /// The operations in `data`, in order.
    pub fn parse(data: &'a [u8]) -> impl Iterator<Item = Op<'a>> {
        let mut rest = data;
        std::iter::from_fn(move || Op::read(&mut rest))
    }

    fn read(r: &mut &'a [u8]) -> Option<Op<'a>> {
        let op = match u8_at(r)? % OPS {
            0 => Op::Control {
                conn: u8_at(r)?,
                bytes: u16_prefixed(r)?,
            },
            1 => Op::Datagram {
                conn: u8_at(r)?,
                bytes: u16_prefixed(r)?,
            },
            2 => Op::Join {
                conn: u8_at(r)?,
                player: u8_prefixed(r)?,
            },
            3 => Op::Input {
                conn: u8_at(r)?,
                ack_lag: u8_at(r)?,
                dx: i8::from_le_bytes([u8_at(r)?]),
                dy: i8::from_le_bytes([u8_at(r)?]),
            },
            4 => Op::Step { ticks: u8_at(r)? },
            5 => Op::Connect { conn: u8_at(r)? },
            6 => Op::Disconnect { conn: u8_at(r)? },
            7 => Op::Chat {
                conn: u8_at(r)?,
                text: u8_prefixed(r)?,
            },
            8 => Op::Leave { conn: u8_at(r)? },
            9 => Op::Reallocate,
            10 => Op::Failover,
            _ => Op::Clock { seconds: u8_at(r)? },
        };
        Some(op)
    }

    /// Appends the operation in the input format. Lengths over a field's limit are cut.
    pub fn encode(&self, out: &mut Vec<u8>) {
        fn put_u16_prefixed(out: &mut Vec<u8>, bytes: &[u8]) {
            let len = u16::try_from(bytes.len()).unwrap_or(u16::MAX);
            out.extend_from_slice(&len.to_le_bytes());
            out.extend_from_slice(&bytes[..usize::from(len)]);
        }
        fn put_u8_prefixed(out: &mut Vec<u8>, bytes: &[u8]) {
            let len = u8::try_from(bytes.len()).unwrap_or(u8::MAX);
            out.push(len);
            out.extend_from_slice(&bytes[..usize::from(len)]);
        }
        match *self {
            Op::Control { conn, bytes } => {
                out.extend_from_slice(&[0, conn]);
                put_u16_prefixed(out, bytes);
            }
            Op::Datagram { conn, bytes } => {
                out.extend_from_slice(&[1, conn]);
                put_u16_prefixed(out, bytes);
            }
            Op::Join { conn, player } => {
                out.extend_from_slice(&[2, conn]);
                put_u8_prefixed(out, player);
            }
            Op::Input {
                conn,
                ack_lag,
                dx,
                dy,
            } => {
                out.extend_from_slice(&[3, conn, ack_lag, dx.to_le_bytes()[0], dy.to_le_bytes()[0]]);
            }
            Op::Step { ticks } => out.extend_from_slice(&[4, ticks]),
            Op::Connect { conn } => out.extend_from_slice(&[5, conn]),
            Op::Disconnect { conn } => out.extend_from_slice(&[6, conn]),
            Op::Chat { conn, text } => {
                out.extend_from_slice(&[7, conn]);
                put_u8_prefixed(out, text);
            }
            Op::Leave { conn } => out.extend_from_slice(&[8, conn]),
            Op::Reallocate => out.push(9),
            Op::Failover => out.push(10),
            Op::Clock { seconds } => out.extend_from_slice(&[11, seconds]),
        }
    }
}

/// Encodes a list of operations as one input.
pub fn encode(ops: &[Op<'_>]) -> Vec<u8> {
    let mut out = Vec::new();
    for op in ops {
        op.encode(&mut out);
    }
    out
}

fn u8_at(r: &mut &[u8]) -> Option<u8> {
    let (&first, rest) = r.split_first()?;
    *r = rest;
    Some(first)
}

fn u16_at(r: &mut &[u8]) -> Option<u16> {
    Some(u16::from_le_bytes([u8_at(r)?, u8_at(r)?]))
}

fn u8_prefixed<'a>(r: &mut &'a [u8]) -> Option<&'a [u8]> {
    let len = u8_at(r)?;
    bytes_at(r, usize::from(len))
}

fn u16_prefixed<'a>(r: &mut &'a [u8]) -> Option<&'a [u8]> {
    let len = u16_at(r)?;
    bytes_at(r, usize::from(len))
}

fn bytes_at<'a>(r: &mut &'a [u8], len: usize) -> Option<&'a [u8]> {
    let bytes = r.get(..len)?;
    *r = &r[len..];
    Some(bytes)
}

fn conn_id(conn: u8) -> ConnId {
    ConnId::from(conn % CONNS) + 1
}

/// What a well-behaved client on one connection knows.
#[derive(Debug, Default)]
struct Client {
    receiver: Receiver,
    /// From the `Welcome`.
    entity: Option<EntityId>,
    input_seq: u32,
}

/// A game and the clients on its connections. Every output is checked as it is produced:
///
/// - a datagram fits [`MAX_DATAGRAM`], decodes, is a snapshot, and the client it is for can
///   apply it to what it has; the view it rebuilds has at most [`MAX_ENTITIES`] entities,
///   contains the client's own entity, and every player in it is exactly where the server's
///   arena has it (delta replication loses nothing);
/// - a control message encodes to at most [`MAX_CONTROL`] bytes that the client decodes back
///   to the same message, and frames as one whole frame;
/// - no more players are connected than the configuration allows.
pub struct Harness {
    pub game: Game,
    /// The session the harness's tokens are for.
    session: String,
    clients: BTreeMap<ConnId, Client>,
    now: u64,
    ticks: u32,
}

impl Default for Harness {
    fn default() -> Self {
        Self::new()
    }
}

impl Harness {
    /// A game allocated to [`SESSION`] with [`SETUP_PLAYERS`] joined on connections 1 to 3.
    pub fn new() -> Self {
        let mut game = Game::new(config(), SERVER);
        game.allocate(SESSION);
        let mut harness = Self::with_game(game);
        for (conn, player) in (0..).zip(SETUP_PLAYERS) {
            harness.apply(Op::Connect { conn });
            harness.apply(Op::Join {
                conn,
                player: player.as_bytes(),
            });
        }
        harness
    }

    /// Drives an existing game; tokens are for its session.
    pub fn with_game(game: Game) -> Self {
        Self {
            session: game.session().unwrap_or(SESSION).to_owned(),
            game,
            clients: BTreeMap::new(),
            now: START_UNIX,
            ticks: 0,
        }
    }

    /// Applies the operations in `data` until they end or have asked for [`MAX_TICKS`] ticks.
    pub fn run(&mut self, data: &[u8]) {
        for op in Op::parse(data) {
            if self.ticks >= MAX_TICKS {
                break;
            }
            self.apply(op);
        }
    }

    pub fn apply(&mut self, op: Op<'_>) {
        match op {
            Op::Control { conn, bytes } => self.control(conn_id(conn), bytes),
            Op::Datagram { conn, bytes } => self.game.on_datagram(conn_id(conn), bytes),
            Op::Join { conn, player } => {
                let token = String::from_utf8_lossy(player).into_owned();
                self.control(conn_id(conn), &ClientControl::Join { token }.encode());
            }
            Op::Input {
                conn,
                ack_lag,
                dx,
                dy,
            } => {
                let conn = conn_id(conn);
                let client = self.clients.entry(conn).or_default();
                client.input_seq = client.input_seq.wrapping_add(1);
                let input = InputDatagram {
                    ack_tick: client.receiver.latest_tick().saturating_sub(u32::from(ack_lag)),
                    inputs: vec![InputFrame {
                        seq: client.input_seq,
                        dx,
                        dy,
                    }],
                };
                self.game.on_datagram(conn, &Datagram::Input(input).encode());
            }
            Op::Step { ticks } => {
                for _ in 0..=ticks % 8 {
                    self.game.step();
                    self.ticks += 1;
                    self.check_outputs();
                }
            }
            Op::Connect { conn } => self.game.connect(conn_id(conn)),
            Op::Disconnect { conn } => {
                self.game.disconnect(conn_id(conn));
                self.clients.remove(&conn_id(conn));
            }
            Op::Chat { conn, text } => {
                let text = String::from_utf8_lossy(text).into_owned();
                self.control(conn_id(conn), &ClientControl::Chat { text }.encode());
            }
            Op::Leave { conn } => self.control(conn_id(conn), &ClientControl::Leave.encode()),
            Op::Reallocate => {
                self.game.reset();
                self.game.allocate(SESSION);
                self.session = SESSION.to_owned();
            }
            Op::Failover => self.failover(),
            Op::Clock { seconds } => self.now += u64::from(seconds),
        }
        self.check_outputs();
    }

    fn control(&mut self, conn: ConnId, bytes: &[u8]) {
        let session = &self.session;
        self.game
            .on_control(conn, bytes, self.now, |token| claims(session, token));
    }

    /// The match moves to a new server through a checkpoint, as when a node fails; the
    /// connections do not move, players reconnect with their tokens.
    fn failover(&mut self) {
        let Some(saved) = self.game.checkpoint() else {
            return;
        };
        let mut replacement = Game::new(config(), FAILOVER_SERVER);
        if let Err(e) = replacement.restore(&saved) {
            panic!("a checkpoint the game wrote does not restore: {e}");
        }
        self.game = replacement;
        self.clients.clear();
    }

    fn check_outputs(&mut self) {
        while let Some(output) = self.game.poll_output() {
            match output {
                Output::Datagram { conn, bytes } => self.check_snapshot(conn, &bytes),
                Output::Control { conn, message } => {
                    check_control(&message);
                    if let ServerControl::Welcome { entity, .. } = message {
                        self.clients.entry(conn).or_default().entity = Some(entity);
                    }
                }
                // The game forgets a connection it closes; so does its client.
                Output::Close { conn, .. } => {
                    self.clients.remove(&conn);
                }
                Output::Event(_) => {}
            }
        }
        let max = usize::from(self.game.config().max_players);
        assert!(
            self.game.connected_players() <= max,
            "{} players connected, more than the limit of {max}",
            self.game.connected_players()
        );
    }

    fn check_snapshot(&mut self, conn: ConnId, bytes: &[u8]) {
        assert!(
            bytes.len() <= MAX_DATAGRAM,
            "a snapshot of {} bytes is over MAX_DATAGRAM ({MAX_DATAGRAM})",
            bytes.len()
        );
        let snapshot = match Datagram::decode(bytes) {
            Ok(Datagram::Snapshot(snapshot)) => snapshot,
            other => panic!("the server sent a datagram that is not a snapshot: {other:?}"),
        };
        let client = self.clients.entry(conn).or_default();
        let view = match client.receiver.apply(&snapshot) {
            Ok(view) => view,
            Err(e) => panic!(
                "the client on connection {conn} cannot apply the snapshot of tick {} against {}: {e:?}",
                snapshot.tick, snapshot.baseline
            ),
        };
        assert!(
            view.len() <= MAX_ENTITIES,
            "a view of {} entities is over MAX_ENTITIES",
            view.len()
        );
        if let Some(me) = client.entity {
            assert!(
                view.contains_key(&me),
                "player entity {me} is not in its own view"
            );
        }
        for (&id, seen) in view.range(..FIRST_ORB_ID) {
            let Some(avatar) = self.game.arena().avatar(id) else {
                panic!("connection {conn} sees player entity {id}, which the arena does not have");
            };
            assert_eq!(
                (seen.x, seen.y, seen.score),
                (avatar.x, avatar.y, avatar.score),
                "connection {conn} sees entity {id} other than the arena has it at tick {}",
                snapshot.tick
            );
        }
    }
}

/// What the harness's verifier says about a token (see the module docs).
fn claims(session: &str, token: &str) -> Result<TokenClaims, String> {
    if token.len() > MAX_PLAYER_ID {
        return Err(format!("player id of {} bytes is too long", token.len()));
    }
    if token.starts_with('!') {
        return Err("connection token signature does not match any trusted key".into());
    }
    let (session, player) = match token.strip_prefix('~') {
        Some(player) => ("another-session", player),
        None => (session, token),
    };
    Ok(TokenClaims {
        server: SERVER.into(),
        session: session.into(),
        player: player.into(),
        token_id: format!("token-{player}"),
        expires_unix: TOKEN_EXPIRES,
    })
}

/// A control message the server sends must reach the client whole: within the frame limit,
/// framed as one frame, and decoded to the same message.
pub fn check_control(message: &ServerControl) {
    let bytes = message.encode();
    assert!(
        bytes.len() <= MAX_CONTROL,
        "a control message of {} bytes is over MAX_CONTROL ({MAX_CONTROL}): {message:?}",
        bytes.len()
    );
    assert_eq!(
        ServerControl::decode(&bytes).as_ref(),
        Ok(message),
        "the client cannot decode a control message the server sent"
    );
    assert_eq!(
        wire::control_frame_len(&wire::frame(&bytes)),
        Ok(Some(bytes.len()))
    );
}
