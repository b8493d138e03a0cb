//! Writes the seed corpora, `corpus/<target>/seed-<name>`, from the real encoders, so the seeds
//! stay valid when a format changes. Run from anywhere, then commit the result:
//!
//!     cargo run --manifest-path gameserver/fuzz/Cargo.toml --example seeds
//!
//! The output is deterministic (the token key is fixed and Ed25519 signing is deterministic):
//! rerunning it changes no file unless a format or a scenario changed.

use std::path::Path;

use flotilla_api::connection_token::ConnectionClaims;
use flotilla_fuzz::session::{self, Harness, Op};
use flotilla_fuzz::token;
use flotilla_game::wire::{
    self, ClientControl, Datagram, EntityDelta, EntityState, FIRST_ORB_ID, InputDatagram, InputFrame,
    PlayerResult, ServerControl, SnapshotDatagram, fields,
};

fn main() -> std::io::Result<()> {
    let corpus = Path::new(env!("CARGO_MANIFEST_DIR")).join("corpus");
    let targets = [
        ("wire_datagram", datagrams()),
        ("wire_control", controls()),
        ("game_session", sessions()),
        ("checkpoint_restore", checkpoints()),
        ("connection_token", tokens()),
    ];
    for (target, seeds) in targets {
        let dir = corpus.join(target);
        std::fs::create_dir_all(&dir)?;
        for entry in std::fs::read_dir(&dir)? {
            let path = entry?.path();
            if path
                .file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.starts_with("seed-"))
            {
                std::fs::remove_file(path)?;
            }
        }
        for (name, bytes) in &seeds {
            std::fs::write(dir.join(format!("seed-{name}")), bytes)?;
        }
        println!("{target}: {} seeds", seeds.len());
    }
    Ok(())
}

type Seeds = Vec<(&'static str, Vec<u8>)>;

fn input(frames: &[(u32, i8, i8)]) -> Datagram {
    Datagram::Input(InputDatagram {
        ack_tick: 41,
        inputs: frames
            .iter()
            .map(|&(seq, dx, dy)| InputFrame { seq, dx, dy })
            .collect(),
    })
}

fn snapshot() -> SnapshotDatagram {
    let state = |x, y, score| EntityState { x, y, score };
    SnapshotDatagram {
        tick: 42,
        baseline: 40,
        input_seq: 7,
        entities: vec![
            EntityDelta {
                id: 1,
                mask: fields::ALL,
                state: state(-5, 9, 3),
            },
            EntityDelta {
                id: 2,
                mask: fields::X,
                state: state(1200, 0, 0),
            },
            EntityDelta {
                id: FIRST_ORB_ID,
                mask: fields::Y | fields::SCORE,
                state: state(0, 12, 1),
            },
        ],
        removed: vec![3, FIRST_ORB_ID + 1],
    }
}

fn datagrams() -> Seeds {
    let full = SnapshotDatagram {
        baseline: 0,
        entities: (0..wire::MAX_ENTITIES)
            .map(|i| EntityDelta {
                id: u16::try_from(i).unwrap_or(0) + 1,
                mask: fields::ALL,
                state: EntityState {
                    x: i32::try_from(i).unwrap_or(0) * 1000,
                    y: -1,
                    score: u32::MAX,
                },
            })
            .collect(),
        removed: Vec::new(),
        ..snapshot()
    };
    vec![
        ("input-one", input(&[(1, 127, -128)]).encode()),
        (
            "input-eight",
            input(&(1..=8).map(|s| (s, 0, 1)).collect::<Vec<_>>()).encode(),
        ),
        ("snapshot-delta", Datagram::Snapshot(snapshot()).encode()),
        ("snapshot-full", Datagram::Snapshot(full).encode()),
        ("wrong-version", vec![wire::VERSION + 1, 1, 0, 0, 0, 0]),
    ]
}

fn controls() -> Seeds {
    let client = [
        ClientControl::Join {
            token: "v1.e30.c2ln".into(),
        },
        ClientControl::Chat {
            text: "gg ✓".into()
        },
        ClientControl::Leave,
    ];
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
            results: vec![
                PlayerResult {
                    entity: 1,
                    player: "p-1".into(),
                    score: 12,
                },
                PlayerResult {
                    entity: 2,
                    player: "p-2".into(),
                    score: 0,
                },
            ],
        },
    ];
    let mut stream = Vec::new();
    for message in &client {
        stream.extend(wire::frame(&message.encode()));
    }
    vec![
        ("client-join", client[0].encode()),
        ("client-chat", client[1].encode()),
        ("client-leave", client[2].encode()),
        ("server-welcome", server[0].encode()),
        ("server-refused", server[1].encode()),
        ("server-chat", server[2].encode()),
        ("server-match-started", server[3].encode()),
        ("server-match-ended", server[4].encode()),
        ("client-stream", stream),
    ]
}

/// Each of the three set-up players steers, then the match ticks `ticks` times.
fn play(ticks: usize) -> Vec<Op<'static>> {
    let mut ops = Vec::new();
    for conn in 0..3 {
        ops.push(Op::Input {
            conn,
            ack_lag: 0,
            dx: 127,
            dy: [-100, 0, 100][usize::from(conn)],
        });
    }
    for _ in 0..ticks.div_ceil(8) {
        ops.push(Op::Step { ticks: 7 });
        ops.push(Op::Input {
            conn: 0,
            ack_lag: 0,
            dx: -60,
            dy: 127,
        });
    }
    ops
}

fn session_scenarios() -> Vec<(&'static str, Vec<Op<'static>>)> {
    let join = |conn, player: &'static str| Op::Join {
        conn,
        player: player.as_bytes(),
    };
    // Leaked: a one-shot program, and `Op` borrows its bytes.
    let raw_input = input(&[(9, 100, 100)]).encode().leak();
    let raw_chat = ClientControl::Chat { text: "raw".into() }.encode().leak();
    vec![
        ("play", play(40)),
        ("match-ends", play(100)),
        (
            "join-chat-leave-rejoin",
            vec![
                Op::Connect { conn: 3 },
                join(3, "p4"),
                Op::Step { ticks: 2 },
                Op::Chat {
                    conn: 3,
                    text: b"hello",
                },
                Op::Leave { conn: 3 },
                Op::Connect { conn: 3 },
                join(3, "p4"),
                join(4, "~p5"),
                join(5, "!p6"),
                Op::Step { ticks: 2 },
            ],
        ),
        (
            "disconnect-resume",
            vec![
                Op::Step { ticks: 3 },
                Op::Disconnect { conn: 1 },
                Op::Step { ticks: 3 },
                Op::Connect { conn: 1 },
                join(1, "p2"),
                Op::Input {
                    conn: 1,
                    ack_lag: 0,
                    dx: 5,
                    dy: 5,
                },
                Op::Step { ticks: 3 },
            ],
        ),
        (
            "failover",
            vec![
                Op::Step { ticks: 7 },
                Op::Failover,
                Op::Connect { conn: 0 },
                join(0, "p1"),
                Op::Connect { conn: 1 },
                join(1, "p2"),
                Op::Step { ticks: 7 },
            ],
        ),
        (
            "raw-messages",
            vec![
                Op::Control {
                    conn: 0,
                    bytes: raw_chat,
                },
                Op::Datagram {
                    conn: 1,
                    bytes: raw_input,
                },
                Op::Step { ticks: 0 },
                Op::Datagram {
                    conn: 2,
                    bytes: &[wire::VERSION, 2, 0, 0],
                },
            ],
        ),
        (
            "expiry-and-reallocate",
            vec![
                Op::Clock { seconds: 255 },
                Op::Clock { seconds: 255 },
                Op::Clock { seconds: 255 },
                Op::Connect { conn: 3 },
                join(3, "late"),
                Op::Reallocate,
                Op::Step { ticks: 0 },
            ],
        ),
    ]
}

fn sessions() -> Seeds {
    session_scenarios()
        .into_iter()
        .map(|(name, ops)| (name, session::encode(&ops)))
        .collect()
}

fn checkpoints() -> Seeds {
    let mut seeds = Vec::new();
    for (name, ops) in session_scenarios() {
        let mut harness = Harness::new();
        harness.run(&session::encode(&ops));
        if let Some(saved) = harness.game.checkpoint() {
            seeds.push((name, saved));
        }
    }
    seeds
}

fn tokens() -> Seeds {
    let claims = |expires_at| ConnectionClaims {
        namespace: "games".into(),
        server: session::SERVER.into(),
        session: session::SESSION.into(),
        player: "alice".into(),
        issued_at: token::NOW - 60,
        expires_at,
        id: "dG9rZW4taWQtMDAx".into(),
    };
    let json = |c: ConnectionClaims| serde_json::to_vec(&c).unwrap_or_default();
    vec![
        (
            "token-valid",
            token::sign(&json(claims(token::NOW + 300))).into_bytes(),
        ),
        (
            "token-expired",
            token::sign(&json(claims(token::NOW))).into_bytes(),
        ),
        ("claims-valid", json(claims(token::NOW + 300))),
        ("claims-expired", json(claims(token::NOW - 1))),
        ("garbage", b"v1.e30.AAAA".to_vec()),
    ]
}
