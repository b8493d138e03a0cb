//! Checkpoints come back from storage another process could have written.
//!
//! - `restore` on an idle server never panics, and one it refuses leaves the server idle;
//! - a restored game checkpoints to bytes that restore on another fresh server and give the
//!   same checkpoint again;
//! - the restored server can go on with the match: players from the checkpoint reconnect,
//!   steer and tick, with every output checked as in `game_session`.
#![no_main]

use flotilla_fuzz::session::{self, Harness, Op};
use flotilla_game::{Game, Phase};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let mut game = Game::new(session::config(), session::SERVER);
    if game.restore(data).is_err() {
        assert_eq!(
            game.phase(),
            Phase::Idle,
            "a refused checkpoint changed the phase"
        );
        assert_eq!(game.checkpoint(), None, "a refused checkpoint left a session");
        return;
    }
    let saved = game
        .checkpoint()
        .expect("a restored game has a session to checkpoint");
    let mut again = Game::new(session::config(), session::SERVER);
    if let Err(e) = again.restore(&saved) {
        panic!("the checkpoint of a restored game does not restore: {e}");
    }
    assert_eq!(
        again.checkpoint(),
        Some(saved),
        "checkpoint, restore, checkpoint changed it"
    );

    let players: Vec<String> = game.results().into_iter().take(2).map(|r| r.player).collect();
    let mut harness = Harness::with_game(game);
    for (conn, player) in (0..).zip(&players) {
        harness.apply(Op::Connect { conn });
        harness.apply(Op::Join {
            conn,
            player: player.as_bytes(),
        });
        harness.apply(Op::Input {
            conn,
            ack_lag: 0,
            dx: 127,
            dy: -128,
        });
    }
    harness.apply(Op::Step { ticks: 2 });
});
