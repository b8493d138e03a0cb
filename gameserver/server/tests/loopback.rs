//! Real QUIC clients against a real server on loopback: joining with tokens, playing a match,
//! and what happens to garbage, forged tokens and untrusted certificates.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use flotilla_api::connection_token::{ConnectionClaims, TokenSigner, TokenVerifier};
use flotilla_game::wire::{self, ClientControl, ServerControl};
use flotilla_game::{ArenaConfig, GameConfig, GameEvent, Phase};
use flotilla_gameserver::Error;
use flotilla_gameserver::bots::{self, BotConfig};
use flotilla_gameserver::client::{self, GameClient};
use flotilla_gameserver::metrics::Metrics;
use flotilla_gameserver::server::{self, RunningServer, ServerConfig};

struct Fixture {
    server: RunningServer,
    signer: TokenSigner,
    endpoint: quinn::Endpoint,
}

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("clock")
        .as_secs()
}

impl Fixture {
    async fn start(match_ticks: u32, min_players: u16) -> Self {
        let signer = TokenSigner::from_pkcs8(&TokenSigner::generate_pkcs8().expect("key")).expect("signer");
        let verifier = TokenVerifier::from_base64_list(&signer.public_key()).expect("verifier");
        let game = GameConfig {
            arena: ArenaConfig {
                size_mm: 30_000,
                orbs: 64,
                ..ArenaConfig::default()
            },
            match_ticks,
            min_players,
            ..GameConfig::default()
        };
        let config = ServerConfig {
            bind: "127.0.0.1:0".parse().expect("addr"),
            name: "arena-1".into(),
            game,
            verifier,
        };
        let mut registry = prometheus_client::registry::Registry::default();
        let server = server::start(config, Metrics::new(&mut registry)).expect("server starts");
        server.handle.allocate("match-1").await.expect("allocate");
        let endpoint = client::endpoint("127.0.0.1:0".parse().expect("addr")).expect("client endpoint");
        Self {
            server,
            signer,
            endpoint,
        }
    }

    fn token(&self, player: &str) -> String {
        self.token_with(player, |_| {})
    }

    fn token_with(&self, player: &str, edit: impl FnOnce(&mut ConnectionClaims)) -> String {
        let mut claims = ConnectionClaims {
            namespace: "games".into(),
            server: "arena-1".into(),
            session: "match-1".into(),
            player: player.into(),
            issued_at: now(),
            expires_at: now() + 600,
            id: String::new(),
        };
        edit(&mut claims);
        self.signer.sign(claims).expect("sign")
    }

    async fn join(&self, player: &str) -> GameClient {
        self.try_join(&self.token(player)).await.expect("joins")
    }

    async fn try_join(&self, token: &str) -> Result<GameClient, Error> {
        GameClient::join(&self.endpoint, self.server.addr, &self.server.fingerprint, token).await
    }
}

#[tokio::test]
async fn bots_join_play_a_match_and_get_results() {
    let mut f = Fixture::start(60, 3).await;
    let tokens = ["ann", "ben", "cat"].iter().map(|p| f.token(p)).collect();
    let config = BotConfig {
        addr: f.server.addr,
        fingerprint: f.server.fingerprint.clone(),
        tokens,
        duration: Duration::from_secs(20),
        input_rate_hz: 30,
        bots_per_endpoint: 2,
    };
    let report = bots::run(config).await.expect("bots run");
    assert_eq!(report.joined, 3, "{:?}", report.refused);
    assert_eq!(report.inconsistent(), 0, "every delta applied");
    assert!(report.snapshots() >= 3 * 50, "{}", report.summary());
    assert!(report.loss() < 0.05, "{}", report.summary());
    for bot in &report.bots {
        let results = bot.results.as_ref().expect("every bot saw the match end");
        assert_eq!(results.len(), 3);
        assert_eq!(
            results.iter().find(|r| r.entity == bot.entity).map(|r| r.score),
            Some(bot.score)
        );
    }
    let status = f.server.handle.status().await.expect("status");
    assert_eq!(status.phase, Phase::Ended);
    let mut events = Vec::new();
    while let Ok(e) = f.server.events.try_recv() {
        events.push(e);
    }
    assert!(events.iter().any(|e| matches!(e, GameEvent::MatchEnded { .. })));
    assert_eq!(
        events
            .iter()
            .filter(|e| matches!(e, GameEvent::PlayerConnected { .. }))
            .count(),
        3
    );
}

#[tokio::test]
async fn forged_expired_foreign_and_replayed_tokens_are_refused_with_a_reason() {
    let f = Fixture::start(10_000, 1).await;
    let alice = f.join("alice").await;
    let other_key = TokenSigner::from_pkcs8(&TokenSigner::generate_pkcs8().expect("key")).expect("signer");
    let forged = other_key
        .sign(ConnectionClaims {
            namespace: "games".into(),
            server: "arena-1".into(),
            session: "match-1".into(),
            player: "mallory".into(),
            issued_at: now(),
            expires_at: now() + 600,
            id: String::new(),
        })
        .expect("sign");
    let cases = [
        (forged, "signature does not match"),
        (f.token_with("bob", |c| c.expires_at = now() - 1), "expired"),
        (
            f.token_with("bob", |c| c.server = "arena-2".into()),
            "token is for server",
        ),
        (
            f.token_with("bob", |c| c.session = "match-2".into()),
            "token is for session",
        ),
        (f.token("alice"), "already connected"),
        ("garbage".to_string(), "malformed"),
    ];
    for (token, reason) in cases {
        match f.try_join(&token).await {
            Err(Error::Refused(r)) | Err(Error::Closed(r)) => {
                assert!(r.contains(reason), "{r:?} should say {reason:?}")
            }
            Err(e) => panic!("expected a refusal saying {reason:?}, got {e}"),
            Ok(_) => panic!("token accepted, expected {reason:?}"),
        }
    }
    // A player who leaves cannot come back with the same token.
    let token = f.token("carol");
    let mut carol = f.try_join(&token).await.expect("carol joins");
    carol.send_control(&ClientControl::Leave).await.expect("leave");
    assert_eq!(carol.closed().await, "left the match");
    let replay = f
        .try_join(&token)
        .await
        .err()
        .map(|e| e.to_string())
        .unwrap_or_default();
    assert!(replay.contains("token already used"), "{replay}");
    // Alice never noticed.
    let (snapshot, _) = tokio::time::timeout(Duration::from_secs(2), alice.next_snapshot())
        .await
        .expect("alice still gets snapshots")
        .expect("snapshot");
    assert!(snapshot.tick > 0);
}

#[tokio::test]
async fn garbage_truncated_and_oversized_input_closes_only_that_connection() {
    let f = Fixture::start(10_000, 1).await;
    let watcher = f.join("watcher").await;

    let garbage = f.join("garbage").await;
    garbage
        .send_raw_datagram(vec![0xde, 0xad, 0xbe, 0xef])
        .expect("send");
    assert!(
        garbage.closed().await.starts_with("bad datagram"),
        "garbage datagram"
    );

    let truncated = f.join("truncated").await;
    let input = wire::Datagram::Input(wire::InputDatagram {
        ack_tick: 0,
        inputs: vec![wire::InputFrame { seq: 1, dx: 1, dy: 1 }],
    })
    .encode();
    truncated
        .send_raw_datagram(input[..input.len() - 1].to_vec())
        .expect("send");
    assert!(
        truncated.closed().await.contains("truncated"),
        "truncated datagram"
    );

    let mut oversized = f.join("oversized").await;
    oversized
        .send_raw_control(&[0xff, 0xff, 1, 2, 3])
        .await
        .expect("send");
    assert!(
        oversized.closed().await.contains("control frame"),
        "oversized frame"
    );

    let mut bad_frame = f.join("bad-frame").await;
    bad_frame
        .send_raw_control(&wire::frame(&[wire::VERSION, 42]))
        .await
        .expect("send");
    assert!(bad_frame.closed().await.contains("unknown message kind 42"));

    // The watcher's snapshots kept coming at the tick rate all along.
    let mut ticks = Vec::new();
    for _ in 0..10 {
        let (snapshot, _) = tokio::time::timeout(Duration::from_millis(500), watcher.next_snapshot())
            .await
            .expect("no hiccup for other players")
            .expect("snapshot");
        ticks.push(snapshot.tick);
    }
    assert!(ticks.windows(2).all(|w| w[1] > w[0]));
}

#[tokio::test]
async fn a_client_refuses_a_server_whose_certificate_is_not_the_pinned_one() {
    let f = Fixture::start(10_000, 1).await;
    let wrong = "00".repeat(32);
    let err = GameClient::join(&f.endpoint, f.server.addr, &wrong, &f.token("alice"))
        .await
        .err();
    let err = err.map(|e| e.to_string()).unwrap_or_default();
    assert!(err.contains("could not connect"), "{err}");
    assert!(
        GameClient::join(&f.endpoint, f.server.addr, "not-hex", &f.token("alice"))
            .await
            .is_err()
    );
}

#[tokio::test]
async fn chat_reaches_every_player() {
    let f = Fixture::start(10_000, 1).await;
    let mut a = f.join("a").await;
    let mut b = f.join("b").await;
    a.send_control(&ClientControl::Chat { text: "gl hf".into() })
        .await
        .expect("chat");
    let deadline = tokio::time::Instant::now() + Duration::from_secs(3);
    loop {
        let message = tokio::time::timeout_at(deadline, b.next_control())
            .await
            .expect("chat arrives");
        if let Some(ServerControl::Chat { from, text }) = message {
            assert_eq!((from, text.as_str()), (a.welcome.entity, "gl hf"));
            break;
        }
    }
}
