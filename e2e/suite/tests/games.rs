//! The reference QUIC game server in a fleet on the local cluster: it becomes Ready through the
//! SDK, an allocation starts a session, bots join with signed tokens and play the match, the
//! server reports the results to the player service (a real one, on the storage servers `./x
//! test` starts) and then returns to Ready or shuts down; a match survives the death of its
//! server.
//!
//! Until the allocation API exists (issue 5), the test plays the allocator: it commits the
//! allocation to a Ready server's status with a resourceVersion precondition and signs the
//! players' connection tokens with the key the fleet's servers trust.

use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use flotilla_api::connection_token::{ConnectionClaims, TokenSigner};
use flotilla_api::{GameServer, GameServerFleet, GameServerState};
use flotilla_e2e::{Operator, TestNamespace};
use flotilla_e2e::{PlayerService, Redis, Result, eventually, install_crds, manifest};
use flotilla_gameserver::bots::{self, BotConfig};
use flotilla_gameserver::client::{self, GameClient};
use k8s_openapi::api::core::v1::{EnvVar, Pod};
use kube::api::{Patch, PatchParams, PostParams};
use kube::{Api, ResourceExt};
use serde_json::json;

type TestResult = Result<()>;
const WAIT: Duration = Duration::from_secs(60);

/// A namespace with an operator, a Redis for checkpoints and a fleet of the game server.
struct GameFleet {
    ns: TestNamespace,
    _operator: Operator,
    _redis: Redis,
    signer: TokenSigner,
    servers: Api<GameServer>,
}

impl GameFleet {
    async fn start(prefix: &str, replicas: i32, env: &[(&str, &str)]) -> Result<Self> {
        let ns = TestNamespace::create(prefix).await?;
        install_crds(&ns.client).await?;
        let operator = Operator::start(&ns.name)?;
        let redis = Redis::start()?;
        let signer = TokenSigner::from_pkcs8(&TokenSigner::generate_pkcs8().map_err(game)?).map_err(game)?;
        let mut fleet: GameServerFleet = manifest("manifests/examples/fleet.yaml")?;
        fleet.spec.replicas = replicas;
        let mut vars = vec![
            ("FLOTILLA_TOKEN_KEYS", signer.public_key()),
            ("FLOTILLA_REDIS_URL", redis.url.clone()),
            ("FLOTILLA_CHECKPOINT_SECONDS", "1".into()),
            ("FLOTILLA_HEARTBEAT_SECONDS", "1".into()),
            ("RUST_LOG", "info,quinn=warn".into()),
        ];
        vars.extend(env.iter().map(|(k, v)| (*k, (*v).to_owned())));
        if let Some(pod) = fleet.spec.template.spec.template.spec.as_mut() {
            let container = &mut pod.containers[0];
            assert_eq!(
                container.image.as_deref(),
                Some("flotilla/gameserver"),
                "the sample runs the game server"
            );
            container.env = Some(
                vars.into_iter()
                    .map(|(name, value)| EnvVar {
                        name: name.into(),
                        value: Some(value),
                        ..Default::default()
                    })
                    .collect(),
            );
        }
        let fleets: Api<GameServerFleet> = ns.api();
        fleets.create(&PostParams::default(), &fleet).await?;
        Ok(Self {
            servers: ns.api(),
            ns,
            _operator: operator,
            _redis: redis,
            signer,
        })
    }

    /// Waits for `count` Ready servers that announced their certificate.
    async fn ready(&self, count: usize) -> Result<Vec<GameServer>> {
        eventually(WAIT, &format!("{count} Ready game servers"), || async {
            let ready: Vec<_> = self
                .servers
                .list(&Default::default())
                .await?
                .items
                .into_iter()
                .filter(|s| s.metadata.deletion_timestamp.is_none())
                .filter(|s| state(s) == Some(GameServerState::Ready) && fingerprint(s).is_some())
                .collect();
            Ok((ready.len() >= count).then_some(ready))
        })
        .await
    }

    /// Commits an allocation the way the allocation service does: a status write that only
    /// succeeds against the resourceVersion the choice was made from.
    async fn allocate(&self, server: &GameServer, session: &str) -> Result<GameServer> {
        let now = jiff::Timestamp::now().to_string();
        let patch = json!({
            "metadata": {"resourceVersion": server.resource_version()},
            "status": {"state": "Allocated", "allocation": {
                "id": format!("{session}-allocation"), "time": now, "allocatedBy": "e2e-matchmaker", "sessionId": session,
            }},
        });
        Ok(self
            .servers
            .patch_status(&server.name_any(), &PatchParams::default(), &Patch::Merge(patch))
            .await?)
    }

    /// Waits until the server runs `session` (it annotates itself when players may join).
    async fn session_started(&self, name: &str, session: &str) -> Result<GameServer> {
        eventually(WAIT, &format!("{name} to start session {session}"), || async {
            let server = self.servers.get(name).await?;
            let running = server
                .annotations()
                .get("sdk.flotilla.dev/match-session")
                .map(String::as_str);
            Ok((running == Some(session)).then_some(server))
        })
        .await
    }

    fn token(&self, server: &str, session: &str, player: &str) -> Result<String> {
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        let claims = ConnectionClaims {
            namespace: self.ns.name.clone(),
            server: server.into(),
            session: session.into(),
            player: player.into(),
            issued_at: now,
            expires_at: now + 600,
            id: String::new(),
        };
        self.signer.sign(claims).map_err(game)
    }
}

fn game(e: impl std::fmt::Display) -> flotilla_e2e::Error {
    flotilla_e2e::Error::Manifest("game".into(), e.to_string())
}

fn state(server: &GameServer) -> Option<GameServerState> {
    server.status.as_ref().map(|s| s.state)
}

fn fingerprint(server: &GameServer) -> Option<String> {
    server
        .annotations()
        .get("sdk.flotilla.dev/quic-cert-sha256")
        .cloned()
}

/// The server's QUIC address from its status.
fn quic_addr(server: &GameServer) -> Result<std::net::SocketAddr> {
    let status = server.status.as_ref().ok_or_else(|| game("no status"))?;
    let ip = status.address.clone().ok_or_else(|| game("no address"))?;
    let port = status
        .ports
        .iter()
        .find(|p| p.name == "game")
        .map(|p| p.port)
        .ok_or_else(|| game("no game port"))?;
    format!("{ip}:{port}").parse().map_err(game)
}

/// The game server's process id (the pod runner reports it as the container id).
async fn server_pid(fleet: &GameFleet, name: &str) -> Result<u32> {
    let pods: Api<Pod> = fleet.ns.api();
    pods.get(name)
        .await?
        .status
        .and_then(|s| s.container_statuses)
        .and_then(|c| c[0].container_id.clone())
        .and_then(|id| id.strip_prefix("process://").and_then(|p| p.parse().ok()))
        .ok_or_else(|| game("no process id for the game server"))
}

/// CPU time a process has used (user + system), from /proc.
fn cpu_seconds(pid: u32) -> Result<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).map_err(game)?;
    // Fields after the parenthesised command name; utime and stime are the 12th and 13th.
    let fields: Vec<&str> = stat
        .rsplit_once(')')
        .map(|(_, rest)| rest)
        .unwrap_or("")
        .split_whitespace()
        .collect();
    let ticks: f64 = fields
        .get(11..13)
        .ok_or_else(|| game("short /proc stat"))?
        .iter()
        .filter_map(|f| f.parse::<f64>().ok())
        .sum();
    // Clock ticks of USER_HZ, which Linux fixes at 100 for /proc.
    Ok(ticks / 100.0)
}

#[tokio::test]
async fn bots_play_a_match_on_an_allocated_server_which_then_returns_to_ready() -> TestResult {
    // The players are real accounts of a real player service, to which the server reports the
    // match with the service key.
    let run = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis());
    let players = PlayerService::start(&format!("game-match-{run}")).await?;
    let mut accounts = Vec::new();
    for name in ["ann", "ben", "cat"] {
        accounts.push(players.sign_in(&format!("device-{name}-{run}")).await?);
    }
    let fleet = GameFleet::start(
        "game-match",
        2,
        &[
            ("FLOTILLA_MATCH_SECONDS", "4"),
            ("FLOTILLA_MIN_PLAYERS", "3"),
            ("FLOTILLA_AFTER_MATCH", "ready"),
            ("FLOTILLA_PLAYER_SERVICE_URL", &players.url),
            ("FLOTILLA_PLAYER_SERVICE_KEY", &players.service_key),
        ],
    )
    .await?;
    let mut ready = fleet.ready(2).await?;
    let (chosen, idle) = (ready.remove(0), ready.remove(0));
    let name = chosen.name_any();

    // A Ready server without a session does not tick: its process is all but idle.
    let pid = server_pid(&fleet, &idle.name_any()).await?;
    let (cpu_before, started) = (cpu_seconds(pid)?, std::time::Instant::now());
    tokio::time::sleep(Duration::from_secs(5)).await;
    let idle_share = (cpu_seconds(pid)? - cpu_before) / started.elapsed().as_secs_f64();
    println!("idle Ready game server: {:.2}% of a core", idle_share * 100.0);
    assert!(
        idle_share < 0.01,
        "a Ready server with no session used {:.2}% of a core",
        idle_share * 100.0
    );

    fleet.allocate(&chosen, "match-1").await?;
    let server = fleet.session_started(&name, "match-1").await?;

    let tokens = accounts
        .iter()
        .map(|(player, _)| fleet.token(&name, "match-1", player))
        .collect::<Result<Vec<_>>>()?;
    let report = bots::run(BotConfig {
        addr: quic_addr(&server)?,
        fingerprint: fingerprint(&server).unwrap_or_default(),
        tokens,
        duration: Duration::from_secs(30),
        input_rate_hz: 30,
        bots_per_endpoint: 3,
    })
    .await?;
    assert_eq!(report.joined, 3, "refused: {:?}", report.refused);
    assert_eq!(report.inconsistent(), 0, "{}", report.summary());
    assert!(
        report
            .bots
            .iter()
            .all(|b| b.results.as_ref().is_some_and(|r| r.len() == 3)),
        "{}",
        report.summary()
    );

    // Results reported, allocation cleared, Ready for the next session.
    let back = eventually(WAIT, "the server back to Ready", || async {
        let s = fleet.servers.get(&name).await?;
        let ready = state(&s) == Some(GameServerState::Ready)
            && s.status.as_ref().is_some_and(|st| st.allocation.is_none())
            && s.annotations().contains_key("sdk.flotilla.dev/match-results");
        Ok(ready.then_some(s))
    })
    .await?;
    let results: serde_json::Value =
        serde_json::from_str(&back.annotations()["sdk.flotilla.dev/match-results"]).map_err(game)?;
    assert_eq!(results.as_array().map(Vec::len), Some(3), "{results}");

    // The player service counted the match for each player, and a win for the best score(s).
    let scores: Vec<(String, u64)> = results
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|r| Some((r["player"].as_str()?.to_owned(), r["score"].as_u64()?)))
        .collect();
    let best = scores.iter().map(|(_, score)| *score).max().unwrap_or_default();
    let (_, reader) = &accounts[0];
    let http = reqwest::Client::new();
    for (player, _) in &accounts {
        let score = scores.iter().find(|(p, _)| p == player).map(|(_, s)| *s);
        assert!(score.is_some(), "{player} is missing from the results {results}");
        let expected = json!({"matches": 1, "wins": u64::from(score == Some(best))});
        let url = format!("{}/v1/players/{player}/stats", players.url);
        eventually(WAIT, &format!("{player}'s stats to count the match"), || async {
            let stats: serde_json::Value = http.get(&url).bearer_auth(reader).send().await?.json().await?;
            Ok((stats == expected).then_some(()))
        })
        .await?;
    }
    fleet.ns.delete().await
}

#[tokio::test]
async fn a_server_configured_to_shut_down_after_its_match_is_replaced() -> TestResult {
    let fleet = GameFleet::start(
        "game-shutdown",
        1,
        &[
            ("FLOTILLA_MATCH_SECONDS", "2"),
            ("FLOTILLA_AFTER_MATCH", "shutdown"),
        ],
    )
    .await?;
    let chosen = fleet.ready(1).await?.remove(0);
    let name = chosen.name_any();
    fleet.allocate(&chosen, "short").await?;
    let server = fleet.session_started(&name, "short").await?;
    let report = bots::run(BotConfig {
        addr: quic_addr(&server)?,
        fingerprint: fingerprint(&server).unwrap_or_default(),
        tokens: vec![fleet.token(&name, "short", "solo")?],
        duration: Duration::from_secs(20),
        input_rate_hz: 30,
        bots_per_endpoint: 1,
    })
    .await?;
    assert!(
        report.bots.first().is_some_and(|b| b.results.is_some()),
        "{}",
        report.summary()
    );
    eventually(WAIT, "the finished server gone and a fresh one Ready", || async {
        let gone = fleet
            .servers
            .get_opt(&name)
            .await?
            .is_none_or(|s| s.metadata.deletion_timestamp.is_some());
        let fresh = fleet.ready(1).await?.into_iter().any(|s| s.name_any() != name);
        Ok((gone && fresh).then_some(()))
    })
    .await?;
    fleet.ns.delete().await
}

/// A player that keeps reading its snapshots and publishes its latest score.
struct Player {
    client: Arc<GameClient>,
    score: Arc<AtomicU32>,
}

impl Player {
    async fn join(endpoint: &quinn::Endpoint, server: &GameServer, token: &str) -> Result<Self> {
        let client = Arc::new(
            GameClient::join(
                endpoint,
                quic_addr(server)?,
                &fingerprint(server).unwrap_or_default(),
                token,
            )
            .await?,
        );
        let score = Arc::new(AtomicU32::new(client.welcome.score));
        let (reader, latest, me) = (client.clone(), score.clone(), client.welcome.entity);
        tokio::spawn(async move {
            let mut receiver = flotilla_game::replication::Receiver::default();
            while let Ok((snapshot, _)) = reader.next_snapshot().await {
                if let Ok(view) = receiver.apply(&snapshot)
                    && let Some(e) = view.get(&me)
                {
                    latest.store(e.score, Ordering::Relaxed);
                }
            }
        });
        Ok(Self { client, score })
    }
}

#[tokio::test]
async fn a_match_continues_on_a_replacement_server_after_its_server_dies() -> TestResult {
    let fleet = GameFleet::start(
        "game-failover",
        2,
        &[
            ("FLOTILLA_MATCH_SECONDS", "300"),
            ("FLOTILLA_MIN_PLAYERS", "2"),
            ("FLOTILLA_ARENA_METRES", "12"),
        ],
    )
    .await?;
    let first = fleet.ready(2).await?.remove(0);
    let first_name = first.name_any();
    fleet.allocate(&first, "long-match").await?;
    let first = fleet.session_started(&first_name, "long-match").await?;
    let tokens = [
        fleet.token(&first_name, "long-match", "ann")?,
        fleet.token(&first_name, "long-match", "ben")?,
    ];
    let endpoint = client::endpoint("0.0.0.0:0".parse().map_err(game)?)?;
    let ann = Player::join(&endpoint, &first, &tokens[0]).await?;
    let _ben = Player::join(&endpoint, &first, &tokens[1]).await?;
    // Ann sweeps the small arena and scores; then stands still while a checkpoint is taken.
    for seq in 1..=120u32 {
        let dx = if (seq / 20) % 2 == 0 { 127 } else { -127 };
        let input = flotilla_game::wire::InputDatagram {
            ack_tick: 0,
            inputs: vec![flotilla_game::wire::InputFrame {
                seq,
                dx,
                dy: if seq % 40 < 20 { 60 } else { -60 },
            }],
        };
        ann.client.send_input(input)?;
        tokio::time::sleep(Duration::from_millis(33)).await;
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    let score_before = ann.score.load(Ordering::Relaxed);
    assert!(score_before > 0, "ann scored before the crash");
    // Checkpoints are taken every second: wait for two, so the last one holds at least this.
    tokio::time::sleep(Duration::from_millis(2500)).await;

    // The server process dies mid-match.
    let pid = server_pid(&fleet, &first_name).await?;
    std::process::Command::new("kill")
        .args(["-KILL", &pid.to_string()])
        .status()
        .map_err(game)?;

    // The matchmaker allocates a replacement for the same session.
    let second = eventually(WAIT, "another Ready server", || async {
        Ok(fleet
            .ready(1)
            .await?
            .into_iter()
            .find(|s| s.name_any() != first_name))
    })
    .await?;
    let second_name = second.name_any();
    fleet.allocate(&second, "long-match").await?;
    let second = fleet.session_started(&second_name, "long-match").await?;

    // The players come back with the tokens they had, and the match goes on from the checkpoint.
    let ann = Player::join(&endpoint, &second, &tokens[0]).await?;
    let ben = Player::join(&endpoint, &second, &tokens[1]).await?;
    assert!(
        ann.client.welcome.resumed && ben.client.welcome.resumed,
        "players resume their places"
    );
    assert!(
        ann.client.welcome.score >= score_before,
        "scores survive: {} before, {} after",
        score_before,
        ann.client.welcome.score
    );
    fleet.ns.delete().await
}
