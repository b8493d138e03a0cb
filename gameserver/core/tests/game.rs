//! The game driven tick by tick, without a network: what players see, what the server refuses,
//! and how a match survives a move to another server.

use flotilla_game::replication::Receiver;
use flotilla_game::wire::{ClientControl, Datagram, InputDatagram, InputFrame, ServerControl};
use flotilla_game::{ArenaConfig, ConnId, Game, GameConfig, GameEvent, Output, Phase, TokenClaims};

const NOW: u64 = 1_000_000;

fn config() -> GameConfig {
    GameConfig {
        arena: ArenaConfig {
            size_mm: 20_000,
            orbs: 8,
            ..ArenaConfig::default()
        },
        match_ticks: 100,
        min_players: 2,
        ..GameConfig::default()
    }
}

fn claims(player: &str) -> TokenClaims {
    TokenClaims {
        server: "arena-1".into(),
        session: "match-7".into(),
        player: player.into(),
        token_id: format!("tok-{player}"),
        expires_unix: NOW + 600,
    }
}

/// A test player: its connection and what it has reconstructed from snapshots.
struct Player {
    conn: ConnId,
    receiver: Receiver,
    entity: u16,
    seq: u32,
    control: Vec<ServerControl>,
    closed: Option<String>,
}

struct Table {
    game: Game,
    players: Vec<Player>,
    events: Vec<GameEvent>,
}

impl Table {
    fn new() -> Self {
        let mut game = Game::new(config(), "arena-1");
        game.allocate("match-7");
        Self {
            game,
            players: Vec::new(),
            events: Vec::new(),
        }
    }

    fn join_with(&mut self, conn: ConnId, claims: TokenClaims) -> usize {
        self.game.connect(conn);
        let join = ClientControl::Join {
            token: "signed".into(),
        }
        .encode();
        self.game.on_control(conn, &join, NOW, |_| Ok(claims));
        self.players.push(Player {
            conn,
            receiver: Receiver::default(),
            entity: 0,
            seq: 0,
            control: vec![],
            closed: None,
        });
        self.pump();
        self.players.len() - 1
    }

    fn join(&mut self, conn: ConnId, player: &str) -> usize {
        self.join_with(conn, claims(player))
    }

    fn input(&mut self, p: usize, dx: i8, dy: i8) {
        let player = &mut self.players[p];
        player.seq += 1;
        let input = InputDatagram {
            ack_tick: player.receiver.latest_tick(),
            inputs: vec![InputFrame {
                seq: player.seq,
                dx,
                dy,
            }],
        };
        self.game
            .on_datagram(player.conn, &Datagram::Input(input).encode());
        self.pump();
    }

    fn step(&mut self, ticks: u32) {
        for _ in 0..ticks {
            self.game.step();
            self.pump();
        }
    }

    /// Delivers everything the game wants sent to the test players.
    fn pump(&mut self) {
        while let Some(output) = self.game.poll_output() {
            match output {
                Output::Datagram { conn, bytes } => {
                    let Ok(Datagram::Snapshot(snap)) = Datagram::decode(&bytes) else {
                        panic!("bad snapshot")
                    };
                    let player = self.player(conn);
                    player
                        .receiver
                        .apply(&snap)
                        .expect("every snapshot applies on a lossless link");
                    // Acknowledge right away, as a client's next input would.
                    let ack = InputDatagram {
                        ack_tick: snap.tick,
                        inputs: vec![InputFrame { seq: 0, dx: 0, dy: 0 }],
                    };
                    self.game.on_datagram(conn, &Datagram::Input(ack).encode());
                }
                Output::Control { conn, message } => {
                    let player = self.player(conn);
                    if let ServerControl::Welcome { entity, .. } = message {
                        player.entity = entity;
                    }
                    player.control.push(message);
                }
                Output::Close { conn, reason } => self.player(conn).closed = Some(reason),
                Output::Event(event) => self.events.push(event),
            }
        }
    }

    fn player(&mut self, conn: ConnId) -> &mut Player {
        self.players
            .iter_mut()
            .find(|p| p.conn == conn)
            .expect("known connection")
    }

    fn seen_by(&self, p: usize, entity: u16) -> Option<(i32, i32, u32)> {
        let view = self.players[p].receiver.latest()?;
        view.get(&entity).map(|e| (e.x, e.y, e.score))
    }
}

#[test]
fn joined_players_see_each_other_move_and_the_match_starts_with_enough_players() {
    let mut t = Table::new();
    let a = t.join(1, "alice");
    t.step(1);
    assert_eq!(t.game.phase(), Phase::Waiting, "one player is not enough");
    let b = t.join(2, "bob");
    assert!(matches!(
        t.players[b].control[0],
        ServerControl::Welcome { resumed: false, .. }
    ));
    t.step(1);
    assert!(matches!(t.game.phase(), Phase::Playing { .. }));
    assert!(
        t.players[a]
            .control
            .iter()
            .any(|m| matches!(m, ServerControl::MatchStarted { .. }))
    );
    assert!(t.events.contains(&GameEvent::MatchStarted {
        session: "match-7".into()
    }));

    let alice = t.players[a].entity;
    let before = t.seen_by(b, alice).map(|(x, y, _)| (x, y));
    t.input(a, 127, 0);
    t.step(3);
    let after = t.seen_by(b, alice).map(|(x, y, _)| (x, y));
    let arena = t.game.arena().avatar(alice).map(|av| (av.x, av.y));
    assert_eq!(after, arena, "bob's reconstructed view matches the server");
    assert_ne!(before, after, "alice moved");
}

#[test]
fn deltas_carry_only_what_changed_since_the_acknowledged_snapshot() {
    let mut t = Table::new();
    t.join(1, "alice");
    t.join(2, "bob");
    t.step(2);
    // Both stand still and were acknowledged: the next snapshot is an empty delta.
    t.game.step();
    let mut sizes = Vec::new();
    while let Some(output) = t.game.poll_output() {
        if let Output::Datagram { bytes, .. } = output {
            let Ok(Datagram::Snapshot(snap)) = Datagram::decode(&bytes) else {
                panic!("bad snapshot")
            };
            assert_ne!(snap.baseline, 0, "delta against the acknowledged snapshot");
            assert!(
                snap.entities.is_empty() && snap.removed.is_empty(),
                "nothing changed: {snap:?}"
            );
            sizes.push(bytes.len());
        }
    }
    assert_eq!(sizes.len(), 2);
    assert!(
        sizes.iter().all(|&s| s <= 20),
        "an idle snapshot is a header only: {sizes:?}"
    );
}

#[test]
fn colliding_players_do_not_overlap() {
    let mut t = Table::new();
    let a = t.join(1, "alice");
    let b = t.join(2, "bob");
    let (ea, eb) = (t.players[a].entity, t.players[b].entity);
    // Steer both towards the arena's corner: they end up pressed together there.
    t.input(a, -127, -127);
    t.input(b, -127, -127);
    t.step(200);
    let (pa, pb) = (
        t.game.arena().avatar(ea).copied(),
        t.game.arena().avatar(eb).copied(),
    );
    let (pa, pb) = (pa.expect("alice"), pb.expect("bob"));
    let dist_sq = i64::from(pa.x - pb.x).pow(2) + i64::from(pa.y - pb.y).pow(2);
    assert!(dist_sq >= 990 * 990, "players overlap: {pa:?} {pb:?}");
}

#[test]
fn the_match_ends_with_results_sorted_by_score() {
    let mut t = Table::new();
    t.join(1, "alice");
    t.join(2, "bob");
    t.input(0, 127, 90);
    t.step(101);
    assert_eq!(t.game.phase(), Phase::Ended);
    let ended = t.events.iter().find_map(|e| match e {
        GameEvent::MatchEnded { results, .. } => Some(results.clone()),
        _ => None,
    });
    let results = ended.expect("match ended event");
    assert_eq!(results.len(), 2);
    assert!(results[0].score >= results[1].score);
    assert!(
        t.players[1]
            .control
            .iter()
            .any(|m| matches!(m, ServerControl::MatchEnded { .. }))
    );
    let ticks = t.game.tick();
    t.step(5);
    assert_eq!(t.game.tick(), ticks, "an ended match does not tick");
}

#[test]
fn wrong_server_session_expired_or_spent_tokens_are_refused_with_a_reason() {
    let mut t = Table::new();
    let cases = [
        (
            TokenClaims {
                server: "arena-2".into(),
                ..claims("x")
            },
            "token is for server",
        ),
        (
            TokenClaims {
                session: "other".into(),
                ..claims("x")
            },
            "token is for session",
        ),
        (
            TokenClaims {
                expires_unix: NOW,
                ..claims("x")
            },
            "token expired",
        ),
    ];
    for (i, (claims, reason)) in cases.into_iter().enumerate() {
        let p = t.join_with(10 + i as u64, claims);
        let closed = t.players[p].closed.clone().unwrap_or_default();
        assert!(closed.contains(reason), "{closed:?} should say {reason:?}");
        assert!(
            matches!(&t.players[p].control[0], ServerControl::Refused { reason: r } if r.contains(reason))
        );
    }
    let a = t.join(1, "alice");
    let again = t.join(2, "alice");
    assert_eq!(
        t.players[again].closed.as_deref(),
        Some("player is already connected")
    );
    assert_eq!(t.players[a].closed, None, "the first connection is untouched");

    t.game
        .on_control(1, &ClientControl::Leave.encode(), NOW, |_| unreachable!());
    t.pump();
    let replay = t.join(3, "alice");
    assert_eq!(
        t.players[replay].closed.as_deref(),
        Some("token already used by a player who left")
    );
}

#[test]
fn garbage_closes_only_the_offending_connection() {
    let mut t = Table::new();
    let a = t.join(1, "alice");
    let b = t.join(2, "bob");
    t.step(2);
    let bob_tick = t.players[b].receiver.latest_tick();
    t.game.on_datagram(1, &[1, 2, 3]);
    t.pump();
    let reason = t.players[a].closed.clone().unwrap_or_default();
    assert!(reason.starts_with("bad datagram"), "{reason}");
    t.step(2);
    assert_eq!(t.players[b].closed, None);
    assert_eq!(
        t.players[b].receiver.latest_tick(),
        bob_tick + 2,
        "bob kept getting snapshots"
    );

    let c = t.join(3, "carol");
    t.game.on_control(3, &[1, 99], NOW, |_| unreachable!());
    t.pump();
    assert!(
        t.players[c]
            .closed
            .clone()
            .unwrap_or_default()
            .contains("unknown message kind 99")
    );
}

#[test]
fn a_dropped_player_reconnects_to_its_avatar_and_score() {
    let mut t = Table::new();
    let a = t.join(1, "alice");
    t.join(2, "bob");
    t.step(1);
    let entity = t.players[a].entity;
    t.game.disconnect(1);
    t.pump();
    assert!(t.events.contains(&GameEvent::PlayerDisconnected {
        player: "alice".into()
    }));
    let back = t.join(3, "alice");
    assert!(
        matches!(t.players[back].control[0], ServerControl::Welcome { resumed: true, entity: e, .. } if e == entity)
    );
}

#[test]
fn same_inputs_give_the_same_states() {
    let run = || {
        let mut t = Table::new();
        for (i, name) in ["a", "b", "c", "d"].iter().enumerate() {
            t.join(i as u64 + 1, name);
        }
        for tick in 0..150i32 {
            for p in 0..4usize {
                let dx = ((tick * 7 + p as i32 * 31) % 255 - 127) as i8;
                let dy = ((tick * 13 + p as i32 * 17) % 255 - 127) as i8;
                t.input(p, dx, dy);
            }
            t.step(1);
        }
        t.game.checkpoint().expect("session running")
    };
    assert_eq!(run(), run());
}

#[test]
fn a_checkpoint_restores_the_match_on_another_server_and_old_tokens_still_work() {
    let mut t = Table::new();
    let a = t.join(1, "alice");
    t.join(2, "bob");
    t.input(a, 127, 60);
    t.step(60);
    let scores: Vec<_> = t
        .game
        .results()
        .iter()
        .map(|r| (r.player.clone(), r.score))
        .collect();
    let tick = t.game.tick();
    let checkpoint = t.game.checkpoint().expect("session running");

    let mut replacement = Game::new(config(), "arena-2");
    replacement.restore(&checkpoint).expect("restores");
    assert_eq!(replacement.session(), Some("match-7"));
    assert_eq!(replacement.tick(), tick);
    assert!(matches!(replacement.phase(), Phase::Playing { .. }));
    let restored: Vec<_> = replacement
        .results()
        .iter()
        .map(|r| (r.player.clone(), r.score))
        .collect();
    assert_eq!(restored, scores, "scores survive");

    let mut t2 = Table {
        game: replacement,
        players: vec![],
        events: vec![],
    };
    let alice = t2.join(5, "alice");
    assert!(matches!(
        t2.players[alice].control[0],
        ServerControl::Welcome { resumed: true, .. }
    ));
    assert_eq!(
        t2.players[alice].closed, None,
        "a token for arena-1 is accepted by its replacement"
    );
    let stranger = t2.join_with(
        6,
        TokenClaims {
            server: "arena-9".into(),
            ..claims("eve")
        },
    );
    assert!(t2.players[stranger].closed.is_some());
}

#[test]
fn a_corrupt_checkpoint_is_refused_and_leaves_the_server_idle() {
    let mut t = Table::new();
    t.join(1, "alice");
    t.step(3);
    let checkpoint = t.game.checkpoint().expect("session running");
    for len in [0, 3, 10, checkpoint.len() - 1] {
        let mut game = Game::new(config(), "arena-2");
        assert!(game.restore(&checkpoint[..len]).is_err(), "prefix {len}");
        assert_eq!(game.phase(), Phase::Idle);
    }
    let mut flipped = checkpoint.clone();
    flipped[0] ^= 0xff;
    assert!(Game::new(config(), "x").restore(&flipped).is_err());
}

#[test]
fn an_idle_server_does_not_tick_and_reset_returns_it_to_idle() {
    let mut game = Game::new(config(), "arena-1");
    game.step();
    assert_eq!((game.tick(), game.is_ticking()), (0, false));
    game.allocate("s");
    game.step();
    assert_eq!(game.tick(), 1);
    game.reset();
    assert_eq!((game.phase(), game.session()), (Phase::Idle, None));
}

fn unhex(s: &str) -> Vec<u8> {
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).expect("hex"))
        .collect()
}

#[test]
fn checkpoints_with_positions_outside_the_arena_or_a_wrapping_tick_are_refused() {
    // Found by the checkpoint_restore fuzz target: an orb at i32::MIN, a player at i32::MAX,
    // and a tick about to wrap to 0.
    let found = [
        "464c43500101007300000000000000000000000000000002000100000000800000000001000100700100740100f4010000f4010000000000000000",
        "464c4350010100730000000000000000000000000000000200000001000100700100740100ffffff7ff4010000000000000000",
        "464c435001010073000000ffffffff00000000000000000200000001000100700100740100f4010000f4010000000000000000",
    ];
    for input in found {
        let mut game = Game::new(config(), "arena-2");
        assert!(game.restore(&unhex(input)).is_err(), "{input} was accepted");
        assert_eq!(game.phase(), Phase::Idle);
    }
}

#[test]
fn scores_reset_at_match_start_are_what_that_ticks_snapshots_show() {
    let dense = GameConfig {
        arena: ArenaConfig {
            size_mm: 20_000,
            orbs: 400,
            ..ArenaConfig::default()
        },
        ..config()
    };
    let mut game = Game::new(dense, "arena-1");
    game.allocate("match-7");
    let mut t = Table {
        game,
        players: vec![],
        events: vec![],
    };
    let a = t.join(1, "alice");
    // Alice collects orbs while waiting for a second player.
    t.input(a, 127, 60);
    t.step(90);
    let alice = t.players[a].entity;
    assert!(
        t.game.arena().avatar(alice).is_some_and(|av| av.score > 0),
        "alice scored while waiting"
    );
    t.join(2, "bob");
    t.step(1);
    assert!(matches!(t.game.phase(), Phase::Playing { .. }));
    let server_score = t.game.arena().avatar(alice).map(|av| av.score);
    assert_eq!(
        t.seen_by(a, alice).map(|(_, _, s)| s),
        server_score,
        "the start tick's snapshot is current"
    );
}

#[test]
fn the_results_table_fits_a_control_frame_however_many_players_there_are() {
    let mut game = Game::new(
        GameConfig {
            match_ticks: 3,
            min_players: 1,
            ..config()
        },
        "arena-1",
    );
    game.allocate("match-7");
    for i in 0..40u64 {
        game.connect(i);
        let player = format!("{i:0>128}");
        let join = ClientControl::Join { token: "t".into() }.encode();
        game.on_control(i, &join, NOW, |_| {
            Ok(TokenClaims {
                player: player.clone(),
                token_id: player.clone(),
                ..claims("x")
            })
        });
    }
    for _ in 0..5 {
        game.step();
    }
    let mut tables = 0;
    while let Some(output) = game.poll_output() {
        if let Output::Control {
            message: message @ ServerControl::MatchEnded { .. },
            ..
        } = output
        {
            let bytes = message.encode();
            assert!(
                bytes.len() <= flotilla_game::wire::MAX_CONTROL,
                "{} bytes",
                bytes.len()
            );
            assert_eq!(ServerControl::decode(&bytes), Ok(message));
            tables += 1;
        }
    }
    assert_eq!(tables, 40, "every player got the table");
}
