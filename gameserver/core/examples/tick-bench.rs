//! The game core alone, without a network: N players steering at random, every tick simulated
//! and every player's snapshot built and encoded. Prints tick-time percentiles and snapshot
//! sizes, the cost the network layer adds nothing to.
//!
//!     cargo run --release -p flotilla-game --example tick-bench -- [PLAYERS] [TICKS]

use std::time::Instant;

use flotilla_game::wire::{ClientControl, Datagram, InputDatagram, InputFrame};
use flotilla_game::{Game, GameConfig, Output, TokenClaims};

fn main() {
    let mut args = std::env::args().skip(1);
    let players: u64 = args.next().and_then(|a| a.parse().ok()).unwrap_or(1000);
    let ticks: u32 = args.next().and_then(|a| a.parse().ok()).unwrap_or(900);
    let config = GameConfig {
        max_players: u16::try_from(players).unwrap_or(u16::MAX),
        ..GameConfig::default()
    };
    let mut game = Game::new(config, "bench");
    game.allocate("bench");
    let join = ClientControl::Join { token: String::new() }.encode();
    for conn in 0..players {
        game.connect(conn);
        let claims = TokenClaims {
            server: "bench".into(),
            session: "bench".into(),
            player: format!("p{conn}"),
            token_id: format!("t{conn}"),
            expires_unix: u64::MAX,
        };
        game.on_control(conn, &join, 0, |_| Ok(claims));
    }
    while game.poll_output().is_some() {}

    let mut durations = Vec::with_capacity(ticks as usize);
    let (mut snapshot_bytes, mut snapshots) = (0usize, 0usize);
    let mut acks = vec![0u32; players as usize];
    let mut seed = 0x2545_F491_4F6C_DD1Du64;
    for tick in 1..=ticks {
        // Inputs as the network would deliver them: every player, every tick, acking the
        // snapshot it last received.
        for conn in 0..players {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            let [dx, dy, ..] = seed.to_le_bytes();
            let input = InputDatagram {
                ack_tick: acks[conn as usize],
                inputs: vec![InputFrame {
                    seq: tick,
                    dx: dx as i8,
                    dy: dy as i8,
                }],
            };
            game.on_datagram(conn, &Datagram::Input(input).encode());
        }
        let started = Instant::now();
        game.step();
        let mut outputs = Vec::new();
        while let Some(output) = game.poll_output() {
            outputs.push(output);
        }
        durations.push(started.elapsed().as_secs_f64() * 1000.0);
        for output in outputs {
            if let Output::Datagram { conn, bytes } = output {
                snapshot_bytes += bytes.len();
                snapshots += 1;
                acks[conn as usize] = tick;
            }
        }
    }
    durations.sort_by(f64::total_cmp);
    let pct = |p: f64| durations[((durations.len() - 1) as f64 * p) as usize];
    let budget = 1000.0 / 30.0;
    println!(
        "core: players={players} ticks={ticks} tick_ms p50={:.3} p99={:.3} max={:.3} (budget {budget:.1} ms, p99 = {:.1}% of it) \
         snapshot_bytes_mean={:.0} bytes/player/s={:.0}",
        pct(0.5),
        pct(0.99),
        pct(1.0),
        pct(0.99) / budget * 100.0,
        snapshot_bytes as f64 / snapshots.max(1) as f64,
        snapshot_bytes as f64 / snapshots.max(1) as f64 * 30.0,
    );
}
