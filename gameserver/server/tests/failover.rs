//! A match survives its server: checkpoints go to a real redis-server, the server is killed,
//! a replacement restores the checkpoint and the players reconnect with their old tokens.

use std::net::TcpListener;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use flotilla_api::connection_token::{ConnectionClaims, TokenSigner, TokenVerifier};
use flotilla_game::wire::{InputDatagram, InputFrame};
use flotilla_game::{ArenaConfig, GameConfig, Phase};
use flotilla_gameserver::checkpoint_store::CheckpointStore;
use flotilla_gameserver::client::{self, GameClient};
use flotilla_gameserver::metrics::Metrics;
use flotilla_gameserver::server::{self, RunningServer, ServerConfig};

/// A throwaway redis-server on a free loopback port, killed on drop.
struct Redis {
    child: Child,
    url: String,
}

impl Redis {
    fn start() -> Self {
        let port = TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("free port")
            .port();
        let child = Command::new("redis-server")
            .args([
                "--port",
                &port.to_string(),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
            ])
            .stdout(Stdio::null())
            .spawn()
            .expect("redis-server is installed (.ci/run installs it)");
        Self {
            child,
            url: format!("redis://127.0.0.1:{port}"),
        }
    }
}

impl Drop for Redis {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("clock")
        .as_secs()
}

fn start_server(name: &str, verifier: TokenVerifier) -> RunningServer {
    let game = GameConfig {
        arena: ArenaConfig {
            size_mm: 10_000,
            orbs: 200,
            ..ArenaConfig::default()
        },
        match_ticks: 30 * 600,
        min_players: 1,
        ..GameConfig::default()
    };
    let config = ServerConfig {
        bind: "127.0.0.1:0".parse().expect("addr"),
        name: name.into(),
        game,
        verifier,
    };
    let mut registry = prometheus_client::registry::Registry::default();
    server::start(config, Metrics::new(&mut registry)).expect("server starts")
}

async fn connect_store(url: &str) -> CheckpointStore {
    for _ in 0..50 {
        if let Ok(store) = CheckpointStore::connect(url, "games").await {
            return store;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("redis at {url} did not come up");
}

#[tokio::test]
async fn a_replacement_server_continues_the_match_from_the_checkpoint_and_scores_survive() {
    let redis = Redis::start();
    let store = connect_store(&redis.url).await;
    let signer = TokenSigner::from_pkcs8(&TokenSigner::generate_pkcs8().expect("key")).expect("signer");
    let verifier = TokenVerifier::from_base64_list(&signer.public_key()).expect("verifier");
    let token = |player: &str| {
        signer
            .sign(ConnectionClaims {
                namespace: "games".into(),
                server: "arena-1".into(),
                session: "match-9".into(),
                player: player.into(),
                issued_at: now(),
                expires_at: now() + 600,
                id: String::new(),
            })
            .expect("sign")
    };
    let tokens = [token("ann"), token("ben")];
    let endpoint = client::endpoint("127.0.0.1:0".parse().expect("addr")).expect("endpoint");

    let first = start_server("arena-1", verifier.clone());
    first.handle.allocate("match-9").await.expect("allocate");
    let ann = GameClient::join(&endpoint, first.addr, &first.fingerprint, &tokens[0])
        .await
        .expect("ann joins");
    let ben = GameClient::join(&endpoint, first.addr, &first.fingerprint, &tokens[1])
        .await
        .expect("ben joins");
    // Ann sweeps the small, orb-dense arena and scores; Ben stands still.
    for seq in 1..=90u32 {
        let dx = if (seq / 30) % 2 == 0 { 127 } else { -127 };
        ann.send_input(InputDatagram {
            ack_tick: 0,
            inputs: vec![InputFrame { seq, dx, dy: 40 }],
        })
        .expect("input");
        tokio::time::sleep(Duration::from_millis(33)).await;
    }
    ann.send_input(InputDatagram {
        ack_tick: 0,
        inputs: vec![InputFrame {
            seq: 91,
            dx: 0,
            dy: 0,
        }],
    })
    .expect("stop");
    tokio::time::sleep(Duration::from_millis(100)).await;
    let (session, checkpoint) = first
        .handle
        .checkpoint()
        .await
        .expect("game runs")
        .expect("session");
    store.save(&session, &checkpoint).await.expect("checkpoint saved");
    let before = first.handle.status().await.expect("status");
    let (ann_entity, ben_entity) = (ann.welcome.entity, ben.welcome.entity);
    let ann_score = |status: &flotilla_gameserver::server::Status| {
        status
            .results
            .iter()
            .find(|r| r.player == "ann")
            .map_or(0, |r| r.score)
    };
    assert!(ann_score(&before) > 0, "ann scored: {:?}", before.results);

    // The server dies; its players are cut off.
    first.close();
    drop(first);
    assert!(ann.closed().await.contains("shutting down"));

    let second = start_server("arena-2", verifier);
    let saved = store
        .load("match-9")
        .await
        .expect("redis answers")
        .expect("checkpoint exists");
    second.handle.restore(saved).await.expect("restores");
    let after = second.handle.status().await.expect("status");
    assert!(matches!(after.phase, Phase::Playing { .. }));
    assert!(
        after.tick >= before.tick,
        "the match continues where the checkpoint left it"
    );

    // Same tokens (issued for arena-1) admit them to the replacement, with their scores.
    let ann = GameClient::join(&endpoint, second.addr, &second.fingerprint, &tokens[0])
        .await
        .expect("ann rejoins");
    let ben = GameClient::join(&endpoint, second.addr, &second.fingerprint, &tokens[1])
        .await
        .expect("ben rejoins");
    assert!(ann.welcome.resumed && ben.welcome.resumed);
    assert_eq!((ann.welcome.entity, ben.welcome.entity), (ann_entity, ben_entity));
    // Restored, not reset: scores carry on from the checkpoint (they can only grow).
    assert!(
        ann.welcome.score >= ann_score(&before),
        "ann's score survived: {:?}",
        ann.welcome
    );
    let now = second.handle.status().await.expect("status");
    assert!(ann_score(&now) >= ann_score(&before));
    assert_eq!(now.results.len(), 2);

    store.delete("match-9").await.expect("delete");
    assert_eq!(store.load("match-9").await.expect("redis answers"), None);
}
