//! The wire format between players and the server (documented in docs/game-protocol.md).
//!
//! Two channels: unreliable QUIC datagrams carry inputs and snapshots, where a late packet is
//! worthless; one reliable bidirectional stream carries control messages (join, chat, match
//! events), each framed by a `u16` length. Every message starts with the wire version and a
//! kind byte; every length and count is checked against a limit before anything is allocated.

use crate::codec::{Reader, Writer};
use crate::{Error, Result};

pub const VERSION: u8 = 1;

/// Largest datagram either side sends: fits the minimum QUIC datagram payload on any path.
pub const MAX_DATAGRAM: usize = 1150;
/// Largest control frame body.
pub const MAX_CONTROL: usize = 4096;
pub const MAX_TOKEN: usize = 2048;
pub const MAX_CHAT: usize = 200;
pub const MAX_REASON: usize = 200;
/// Inputs repeated in each input datagram, so one lost packet loses no input.
pub const MAX_INPUTS: usize = 8;
/// Entities in one snapshot; interest management keeps each player's view under this.
pub const MAX_ENTITIES: usize = 64;
/// Lines in a MatchEnded table: 17 lines of at most 136 bytes fit a control frame.
pub const MAX_RESULTS: usize = 17;

/// Entity ids: players count up from 1, orbs live in the upper half.
pub type EntityId = u16;
pub const FIRST_ORB_ID: EntityId = 0x8000;

/// One tick's worth of a player's intent: a direction whose components are scaled to ±127.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct InputFrame {
    pub seq: u32,
    pub dx: i8,
    pub dy: i8,
}

/// Client → server datagram.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InputDatagram {
    /// The newest snapshot tick the client has reconstructed; the server deltas against it.
    pub ack_tick: u32,
    /// Newest last; older frames repeat for loss tolerance.
    pub inputs: Vec<InputFrame>,
}

/// Which fields of an entity a snapshot carries.
pub mod fields {
    pub const X: u8 = 1;
    pub const Y: u8 = 2;
    pub const SCORE: u8 = 4;
    pub const ALL: u8 = X | Y | SCORE;
}

/// Full state of an entity as a player sees it. Positions are millimetres.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EntityState {
    pub x: i32,
    pub y: i32,
    pub score: u32,
}

/// An entity in a snapshot: the fields that changed against the baseline (all of them when
/// the entity is new to the player). Fields not in `mask` are zero and meaningless.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EntityDelta {
    pub id: EntityId,
    pub mask: u8,
    pub state: EntityState,
}

/// Server → client datagram.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SnapshotDatagram {
    pub tick: u32,
    /// The snapshot this one is a delta against; 0 means a full snapshot.
    pub baseline: u32,
    /// The newest input sequence the server has applied for this player.
    pub input_seq: u32,
    pub entities: Vec<EntityDelta>,
    /// Entities in the baseline that this player no longer sees.
    pub removed: Vec<EntityId>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Datagram {
    Input(InputDatagram),
    Snapshot(SnapshotDatagram),
}

const DATAGRAM_INPUT: u8 = 1;
const DATAGRAM_SNAPSHOT: u8 = 2;

impl Datagram {
    pub fn encode(&self) -> Vec<u8> {
        let capacity = match self {
            Datagram::Input(input) => 7 + 6 * input.inputs.len(),
            Datagram::Snapshot(snap) => 18 + 15 * snap.entities.len() + 2 * snap.removed.len(),
        };
        let mut w = Writer {
            bytes: Vec::with_capacity(capacity),
        };
        w.u8(VERSION);
        match self {
            Datagram::Input(input) => {
                w.u8(DATAGRAM_INPUT);
                w.u32(input.ack_tick);
                w.u8(u8::try_from(input.inputs.len().min(MAX_INPUTS)).unwrap_or(0));
                for frame in input.inputs.iter().take(MAX_INPUTS) {
                    w.u32(frame.seq);
                    w.i8(frame.dx);
                    w.i8(frame.dy);
                }
            }
            Datagram::Snapshot(snap) => {
                w.u8(DATAGRAM_SNAPSHOT);
                w.u32(snap.tick);
                w.u32(snap.baseline);
                w.u32(snap.input_seq);
                w.count(snap.entities.len());
                for e in &snap.entities {
                    w.u16(e.id);
                    w.u8(e.mask);
                    if e.mask & fields::X != 0 {
                        w.i32(e.state.x);
                    }
                    if e.mask & fields::Y != 0 {
                        w.i32(e.state.y);
                    }
                    if e.mask & fields::SCORE != 0 {
                        w.u32(e.state.score);
                    }
                }
                w.count(snap.removed.len());
                for id in &snap.removed {
                    w.u16(*id);
                }
            }
        }
        w.bytes
    }

    pub fn decode(bytes: &[u8]) -> Result<Self> {
        if bytes.len() > MAX_DATAGRAM {
            return Err(Error::TooLong {
                field: "datagram",
                len: bytes.len(),
                max: MAX_DATAGRAM,
            });
        }
        let mut r = Reader::new(bytes);
        check_version(r.u8("version")?)?;
        let datagram = match r.u8("kind")? {
            DATAGRAM_INPUT => {
                let ack_tick = r.u32("ack_tick")?;
                let count = usize::from(r.u8("input count")?);
                if count == 0 || count > MAX_INPUTS {
                    return Err(Error::Invalid {
                        field: "input count",
                        reason: "must be 1 to 8",
                    });
                }
                let mut inputs = Vec::with_capacity(count);
                for _ in 0..count {
                    inputs.push(InputFrame {
                        seq: r.u32("input seq")?,
                        dx: r.i8("input dx")?,
                        dy: r.i8("input dy")?,
                    });
                }
                Datagram::Input(InputDatagram { ack_tick, inputs })
            }
            DATAGRAM_SNAPSHOT => {
                let tick = r.u32("tick")?;
                let baseline = r.u32("baseline")?;
                let input_seq = r.u32("input_seq")?;
                let count = r.count("entity count", MAX_ENTITIES)?;
                let mut entities = Vec::with_capacity(count);
                for _ in 0..count {
                    let id = r.u16("entity id")?;
                    let mask = r.u8("entity mask")?;
                    if mask & !fields::ALL != 0 || mask == 0 {
                        return Err(Error::Invalid {
                            field: "entity mask",
                            reason: "unknown or no fields",
                        });
                    }
                    let mut state = EntityState { x: 0, y: 0, score: 0 };
                    if mask & fields::X != 0 {
                        state.x = r.i32("entity x")?;
                    }
                    if mask & fields::Y != 0 {
                        state.y = r.i32("entity y")?;
                    }
                    if mask & fields::SCORE != 0 {
                        state.score = r.u32("entity score")?;
                    }
                    entities.push(EntityDelta { id, mask, state });
                }
                let count = r.count("removed count", MAX_ENTITIES)?;
                let mut removed = Vec::with_capacity(count);
                for _ in 0..count {
                    removed.push(r.u16("removed id")?);
                }
                Datagram::Snapshot(SnapshotDatagram {
                    tick,
                    baseline,
                    input_seq,
                    entities,
                    removed,
                })
            }
            kind => return Err(Error::UnknownKind(kind)),
        };
        r.finish()?;
        Ok(datagram)
    }
}

/// Client → server on the control stream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ClientControl {
    /// The connection token from allocation; must be the first message.
    Join {
        token: String,
    },
    Chat {
        text: String,
    },
    /// Leaving for good: the player's token cannot be used again.
    Leave,
}

/// How a match ended for one player.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PlayerResult {
    pub entity: EntityId,
    pub player: String,
    pub score: u32,
}

/// Server → client on the control stream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ServerControl {
    Welcome {
        entity: EntityId,
        tick_rate: u16,
        tick: u32,
        resumed: bool,
        score: u32,
    },
    /// Join refused; the server closes the connection after sending it.
    Refused {
        reason: String,
    },
    Chat {
        from: EntityId,
        text: String,
    },
    MatchStarted {
        ends_at_tick: u32,
    },
    MatchEnded {
        results: Vec<PlayerResult>,
    },
}

const JOIN: u8 = 1;
const CHAT: u8 = 2;
const LEAVE: u8 = 3;
const WELCOME: u8 = 1;
const REFUSED: u8 = 2;
const SERVER_CHAT: u8 = 3;
const MATCH_STARTED: u8 = 4;
const MATCH_ENDED: u8 = 5;
const MAX_PLAYER_ID: usize = 128;

impl ClientControl {
    pub fn encode(&self) -> Vec<u8> {
        let mut w = Writer::default();
        w.u8(VERSION);
        match self {
            ClientControl::Join { token } => {
                w.u8(JOIN);
                w.bytes(token.as_bytes());
            }
            ClientControl::Chat { text } => {
                w.u8(CHAT);
                w.bytes(text.as_bytes());
            }
            ClientControl::Leave => w.u8(LEAVE),
        }
        w.bytes
    }

    pub fn decode(bytes: &[u8]) -> Result<Self> {
        let mut r = Reader::new(bytes);
        check_version(r.u8("version")?)?;
        let msg = match r.u8("kind")? {
            JOIN => ClientControl::Join {
                token: r.string("token", MAX_TOKEN)?,
            },
            CHAT => ClientControl::Chat {
                text: r.string("chat text", MAX_CHAT)?,
            },
            LEAVE => ClientControl::Leave,
            kind => return Err(Error::UnknownKind(kind)),
        };
        r.finish()?;
        Ok(msg)
    }
}

impl ServerControl {
    pub fn encode(&self) -> Vec<u8> {
        let mut w = Writer::default();
        w.u8(VERSION);
        match self {
            ServerControl::Welcome {
                entity,
                tick_rate,
                tick,
                resumed,
                score,
            } => {
                w.u8(WELCOME);
                w.u16(*entity);
                w.u16(*tick_rate);
                w.u32(*tick);
                w.u8(u8::from(*resumed));
                w.u32(*score);
            }
            ServerControl::Refused { reason } => {
                w.u8(REFUSED);
                w.bytes(reason.as_bytes());
            }
            ServerControl::Chat { from, text } => {
                w.u8(SERVER_CHAT);
                w.u16(*from);
                w.bytes(text.as_bytes());
            }
            ServerControl::MatchStarted { ends_at_tick } => {
                w.u8(MATCH_STARTED);
                w.u32(*ends_at_tick);
            }
            ServerControl::MatchEnded { results } => {
                w.u8(MATCH_ENDED);
                w.count(results.len().min(MAX_RESULTS));
                for result in results.iter().take(MAX_RESULTS) {
                    w.u16(result.entity);
                    w.bytes(result.player.as_bytes());
                    w.u32(result.score);
                }
            }
        }
        w.bytes
    }

    pub fn decode(bytes: &[u8]) -> Result<Self> {
        let mut r = Reader::new(bytes);
        check_version(r.u8("version")?)?;
        let msg = match r.u8("kind")? {
            WELCOME => ServerControl::Welcome {
                entity: r.u16("entity")?,
                tick_rate: r.u16("tick_rate")?,
                tick: r.u32("tick")?,
                resumed: r.u8("resumed")? != 0,
                score: r.u32("score")?,
            },
            REFUSED => ServerControl::Refused {
                reason: r.string("reason", MAX_REASON)?,
            },
            SERVER_CHAT => ServerControl::Chat {
                from: r.u16("from")?,
                text: r.string("chat text", MAX_CHAT)?,
            },
            MATCH_STARTED => ServerControl::MatchStarted {
                ends_at_tick: r.u32("ends_at_tick")?,
            },
            MATCH_ENDED => {
                let count = r.count("result count", MAX_RESULTS)?;
                let mut results = Vec::with_capacity(count);
                for _ in 0..count {
                    results.push(PlayerResult {
                        entity: r.u16("result entity")?,
                        player: r.string("result player", MAX_PLAYER_ID)?,
                        score: r.u32("result score")?,
                    });
                }
                ServerControl::MatchEnded { results }
            }
            kind => return Err(Error::UnknownKind(kind)),
        };
        r.finish()?;
        Ok(msg)
    }
}

fn check_version(version: u8) -> Result<()> {
    if version == VERSION {
        Ok(())
    } else {
        Err(Error::Version(version))
    }
}

/// Control frames on the stream: a `u16` length, then the message. Returns the frame length
/// when a whole frame is buffered, `None` when more bytes are needed, an error when the
/// announced length is over the limit (the connection is then closed).
pub fn control_frame_len(buffered: &[u8]) -> Result<Option<usize>> {
    let Some(prefix) = buffered.get(..2) else {
        return Ok(None);
    };
    let len = usize::from(u16::from_le_bytes([prefix[0], prefix[1]]));
    if len > MAX_CONTROL {
        return Err(Error::TooLong {
            field: "control frame",
            len,
            max: MAX_CONTROL,
        });
    }
    Ok((buffered.len() >= 2 + len).then_some(len))
}

/// Prefixes a control message with its length.
pub fn frame(message: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(message.len() + 2);
    out.extend_from_slice(&u16::try_from(message.len()).unwrap_or(u16::MAX).to_le_bytes());
    out.extend_from_slice(message);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn snapshot() -> SnapshotDatagram {
        SnapshotDatagram {
            tick: 42,
            baseline: 40,
            input_seq: 7,
            entities: vec![
                EntityDelta {
                    id: 1,
                    mask: fields::ALL,
                    state: EntityState {
                        x: -5,
                        y: 9,
                        score: 3,
                    },
                },
                EntityDelta {
                    id: FIRST_ORB_ID,
                    mask: fields::Y,
                    state: EntityState {
                        x: 0,
                        y: 12,
                        score: 0,
                    },
                },
            ],
            removed: vec![2, 3],
        }
    }

    #[test]
    fn every_message_survives_a_round_trip() {
        let datagrams = [
            Datagram::Input(InputDatagram {
                ack_tick: 9,
                inputs: vec![
                    InputFrame {
                        seq: 1,
                        dx: -127,
                        dy: 127,
                    },
                    InputFrame { seq: 2, dx: 0, dy: 5 },
                ],
            }),
            Datagram::Snapshot(snapshot()),
        ];
        for d in datagrams {
            assert_eq!(Datagram::decode(&d.encode()), Ok(d));
        }
        let client = [
            ClientControl::Join {
                token: "abc.def".into(),
            },
            ClientControl::Chat {
                text: "gg ✓".into()
            },
            ClientControl::Leave,
        ];
        for m in client {
            assert_eq!(ClientControl::decode(&m.encode()), Ok(m));
        }
        let server = [
            ServerControl::Welcome {
                entity: 4,
                tick_rate: 30,
                tick: 100,
                resumed: true,
                score: 2,
            },
            ServerControl::Refused {
                reason: "token expired".into(),
            },
            ServerControl::Chat {
                from: 1,
                text: "hi".into(),
            },
            ServerControl::MatchStarted { ends_at_tick: 900 },
            ServerControl::MatchEnded {
                results: vec![PlayerResult {
                    entity: 1,
                    player: "p-1".into(),
                    score: 12,
                }],
            },
        ];
        for m in server {
            assert_eq!(ServerControl::decode(&m.encode()), Ok(m));
        }
    }

    #[test]
    fn every_truncation_of_a_snapshot_is_an_error_not_a_panic() {
        let bytes = Datagram::Snapshot(snapshot()).encode();
        for len in 0..bytes.len() {
            assert!(
                Datagram::decode(&bytes[..len]).is_err(),
                "prefix of {len} bytes decoded"
            );
        }
    }

    #[test]
    fn hostile_counts_and_lengths_are_refused_before_allocating() {
        let mut bytes = vec![VERSION, DATAGRAM_SNAPSHOT];
        bytes.extend_from_slice(&[0; 12]);
        bytes.extend_from_slice(&u16::MAX.to_le_bytes());
        assert_eq!(
            Datagram::decode(&bytes),
            Err(Error::TooLong {
                field: "entity count",
                len: 65535,
                max: MAX_ENTITIES
            })
        );
        let mut join = vec![VERSION, JOIN];
        join.extend_from_slice(&5000u16.to_le_bytes());
        assert!(matches!(
            ClientControl::decode(&join),
            Err(Error::TooLong { field: "token", .. })
        ));
        assert!(matches!(
            control_frame_len(&[0xff, 0xff]),
            Err(Error::TooLong {
                field: "control frame",
                ..
            })
        ));
        assert!(matches!(
            Datagram::decode(&vec![0; MAX_DATAGRAM + 1]),
            Err(Error::TooLong { .. })
        ));
    }

    #[test]
    fn wrong_version_unknown_kind_and_trailing_bytes_are_named() {
        assert_eq!(Datagram::decode(&[9, 1]), Err(Error::Version(9)));
        assert_eq!(ClientControl::decode(&[VERSION, 77]), Err(Error::UnknownKind(77)));
        let mut leave = ClientControl::Leave.encode();
        leave.push(0);
        assert_eq!(ClientControl::decode(&leave), Err(Error::Trailing(1)));
    }

    #[test]
    fn control_frames_wait_for_the_whole_body() {
        let framed = frame(&ClientControl::Leave.encode());
        assert_eq!(control_frame_len(&framed[..1]), Ok(None));
        assert_eq!(control_frame_len(&framed[..3]), Ok(None));
        assert_eq!(control_frame_len(&framed), Ok(Some(2)));
    }
}
