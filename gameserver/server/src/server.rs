//! The network layer around the sans-IO [`Game`]: one QUIC endpoint, a task per connection
//! that turns streams and datagrams into events, and one game task that owns the game, ticks
//! it at a fixed rate while a session runs, and sends what it asks for.
//!
//! The game task is the only place the game state lives, so there are no locks on the hot
//! path; connection tasks talk to it through a bounded queue, and a full queue drops input
//! datagrams (counted) rather than letting one flooding client stall the loop.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use flotilla_api::connection_token::TokenVerifier;
use flotilla_game::wire::{self, MAX_CONTROL};
use flotilla_game::{ConnId, Game, GameConfig, GameEvent, Output, Phase, TokenClaims};
use tokio::sync::{mpsc, oneshot};
use tokio::time::MissedTickBehavior;
use tracing::{debug, info, warn};

use crate::metrics::Metrics;
use crate::tls::ServerIdentity;
use crate::{Error, Result};

/// Application close code for every close the server initiates; the reason says why.
pub const CLOSE_CODE: u32 = 1;
const NET_QUEUE: usize = 16_384;
const JOIN_TIMEOUT: Duration = Duration::from_secs(5);

pub struct ServerConfig {
    pub bind: SocketAddr,
    /// The GameServer's name: tokens must be issued for it.
    pub name: String,
    pub game: GameConfig,
    pub verifier: TokenVerifier,
}

/// Commands from the platform side to the game task.
enum Command {
    Allocate {
        session: String,
    },
    Restore {
        checkpoint: Vec<u8>,
        reply: oneshot::Sender<Result<(), flotilla_game::Error>>,
    },
    Reset,
    Checkpoint {
        reply: oneshot::Sender<Option<(String, Vec<u8>)>>,
    },
    Status {
        reply: oneshot::Sender<Status>,
    },
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Status {
    pub phase: Phase,
    pub session: Option<String>,
    pub tick: u32,
    pub players: usize,
    /// Every player's score, best first.
    pub results: Vec<flotilla_game::wire::PlayerResult>,
}

/// Talks to a running game task.
#[derive(Clone)]
pub struct GameHandle {
    commands: mpsc::Sender<Command>,
}

impl GameHandle {
    pub async fn allocate(&self, session: &str) -> Result<()> {
        self.send(Command::Allocate {
            session: session.to_owned(),
        })
        .await
    }

    pub async fn restore(&self, checkpoint: Vec<u8>) -> Result<()> {
        let (reply, answer) = oneshot::channel();
        self.send(Command::Restore { checkpoint, reply }).await?;
        Ok(answer.await.map_err(|_| Error::Stopped)??)
    }

    /// Drops every player and returns to idle, ready for the next allocation.
    pub async fn reset(&self) -> Result<()> {
        self.send(Command::Reset).await
    }

    /// The session id and a checkpoint of its match, when one runs.
    pub async fn checkpoint(&self) -> Result<Option<(String, Vec<u8>)>> {
        let (reply, answer) = oneshot::channel();
        self.send(Command::Checkpoint { reply }).await?;
        answer.await.map_err(|_| Error::Stopped)
    }

    pub async fn status(&self) -> Result<Status> {
        let (reply, answer) = oneshot::channel();
        self.send(Command::Status { reply }).await?;
        answer.await.map_err(|_| Error::Stopped)
    }

    async fn send(&self, command: Command) -> Result<()> {
        self.commands.send(command).await.map_err(|_| Error::Stopped)
    }
}

pub struct RunningServer {
    pub addr: SocketAddr,
    pub fingerprint: String,
    pub handle: GameHandle,
    /// Match events for the platform side: players, match start and end.
    pub events: mpsc::UnboundedReceiver<GameEvent>,
    endpoint: quinn::Endpoint,
}

impl RunningServer {
    /// Stops accepting and closes every connection.
    pub fn close(&self) {
        self.endpoint
            .close(quinn::VarInt::from_u32(CLOSE_CODE), b"server shutting down");
    }

    pub async fn wait_idle(&self) {
        self.endpoint.wait_idle().await;
    }
}

enum NetEvent {
    Connected {
        conn: ConnId,
        connection: quinn::Connection,
        control: mpsc::UnboundedSender<WriterMsg>,
    },
    Control {
        conn: ConnId,
        bytes: Vec<u8>,
    },
    Datagram {
        conn: ConnId,
        bytes: Bytes,
    },
    Disconnected {
        conn: ConnId,
    },
}

enum WriterMsg {
    Frame(Vec<u8>),
    /// Flush what was written, then close the connection with this reason.
    Close(String),
}

pub fn transport_config() -> Arc<quinn::TransportConfig> {
    let mut transport = quinn::TransportConfig::default();
    transport
        .max_idle_timeout(Some(quinn::IdleTimeout::from(quinn::VarInt::from_u32(15_000))))
        .keep_alive_interval(Some(Duration::from_secs(5)))
        // Room for ~a second of snapshots; older ones are worthless anyway.
        .datagram_receive_buffer_size(Some(64 * 1024))
        .datagram_send_buffer_size(64 * 1024)
        // One control stream per connection; nobody needs more.
        .max_concurrent_bidi_streams(quinn::VarInt::from_u32(1))
        .max_concurrent_uni_streams(quinn::VarInt::from_u32(0))
        // Both sides send a datagram every tick, so acknowledgements can ride on those instead
        // of costing packets of their own: ask the peer to acknowledge every 4th packet, or
        // after 50 ms. Loss detection is not needed for datagrams, which are never resent.
        .ack_frequency_config(Some(ack_frequency()));
    Arc::new(transport)
}

fn ack_frequency() -> quinn::AckFrequencyConfig {
    let mut config = quinn::AckFrequencyConfig::default();
    config
        .ack_eliciting_threshold(quinn::VarInt::from_u32(3))
        .max_ack_delay(Some(Duration::from_millis(50)));
    config
}

/// Binds the endpoint and starts the game task.
pub fn start(config: ServerConfig, metrics: Metrics) -> Result<RunningServer> {
    let identity = ServerIdentity::self_signed(vec!["flotilla-gameserver".into(), config.name.clone()])?;
    let server_config = identity.server_config(transport_config())?;
    let endpoint = quinn::Endpoint::server(server_config, config.bind).map_err(|source| Error::Bind {
        addr: config.bind,
        source,
    })?;
    let addr = endpoint.local_addr()?;
    let (net_tx, net_rx) = mpsc::channel(NET_QUEUE);
    let (commands, command_rx) = mpsc::channel(64);
    let (events_tx, events) = mpsc::unbounded_channel();
    tokio::spawn(accept_loop(endpoint.clone(), net_tx, metrics.clone()));
    let game = Game::new(config.game, config.name);
    let task = GameTask {
        game,
        verifier: config.verifier,
        metrics,
        conns: HashMap::new(),
        events: events_tx,
    };
    tokio::spawn(task.run(net_rx, command_rx));
    info!(%addr, fingerprint = %identity.fingerprint, "game server listening");
    Ok(RunningServer {
        addr,
        fingerprint: identity.fingerprint,
        handle: GameHandle { commands },
        events,
        endpoint,
    })
}

async fn accept_loop(endpoint: quinn::Endpoint, net: mpsc::Sender<NetEvent>, metrics: Metrics) {
    let mut next: ConnId = 1;
    while let Some(incoming) = endpoint.accept().await {
        let conn = next;
        next += 1;
        metrics.connections.inc();
        tokio::spawn(serve_connection(conn, incoming, net.clone(), metrics.clone()));
    }
}

/// Turns one connection's control stream and datagrams into events for the game task.
async fn serve_connection(
    conn: ConnId,
    incoming: quinn::Incoming,
    net: mpsc::Sender<NetEvent>,
    metrics: Metrics,
) {
    let connection = match incoming.await {
        Ok(c) => c,
        Err(e) => return debug!(conn, error = %e, "handshake failed"),
    };
    // The client opens the control stream and joins at once; a silent peer is dropped.
    let (send, mut recv) = match tokio::time::timeout(JOIN_TIMEOUT, connection.accept_bi()).await {
        Ok(Ok(streams)) => streams,
        _ => {
            connection.close(quinn::VarInt::from_u32(CLOSE_CODE), b"no control stream opened");
            return;
        }
    };
    let (control_tx, control_rx) = mpsc::unbounded_channel();
    tokio::spawn(write_control(connection.clone(), send, control_rx));
    if net
        .send(NetEvent::Connected {
            conn,
            connection: connection.clone(),
            control: control_tx,
        })
        .await
        .is_err()
    {
        return;
    }
    let datagrams = {
        let (connection, net, metrics) = (connection.clone(), net.clone(), metrics.clone());
        tokio::spawn(async move {
            while let Ok(bytes) = connection.read_datagram().await {
                metrics.bytes("in", bytes.len());
                if net.try_send(NetEvent::Datagram { conn, bytes }).is_err() {
                    metrics.dropped("in");
                }
            }
        })
    };
    let mut buffer = Vec::with_capacity(256);
    let mut chunk = [0u8; 2048];
    loop {
        match wire::control_frame_len(&buffer) {
            Ok(Some(len)) => {
                let bytes = buffer[2..2 + len].to_vec();
                buffer.drain(..2 + len);
                metrics.bytes("in", len + 2);
                if net.send(NetEvent::Control { conn, bytes }).await.is_err() {
                    break;
                }
                continue;
            }
            Ok(None) => {}
            Err(e) => {
                connection.close(quinn::VarInt::from_u32(CLOSE_CODE), e.to_string().as_bytes());
                break;
            }
        }
        match recv.read(&mut chunk).await {
            Ok(Some(n)) if buffer.len() + n <= MAX_CONTROL + 2 => buffer.extend_from_slice(&chunk[..n]),
            Ok(Some(_)) => {
                connection.close(quinn::VarInt::from_u32(CLOSE_CODE), b"control frame too long");
                break;
            }
            Ok(None) | Err(_) => break,
        }
    }
    datagrams.abort();
    let _ = net.send(NetEvent::Disconnected { conn }).await;
}

async fn write_control(
    connection: quinn::Connection,
    mut send: quinn::SendStream,
    mut frames: mpsc::UnboundedReceiver<WriterMsg>,
) {
    while let Some(msg) = frames.recv().await {
        match msg {
            WriterMsg::Frame(bytes) => {
                if send.write_all(&bytes).await.is_err() {
                    return;
                }
            }
            WriterMsg::Close(reason) => {
                // Let the last frames (a refusal, the results) arrive before the close frame.
                let _ = send.finish();
                let _ = tokio::time::timeout(Duration::from_millis(500), send.stopped()).await;
                let reason = &reason.as_bytes()[..reason.len().min(wire::MAX_REASON)];
                connection.close(quinn::VarInt::from_u32(CLOSE_CODE), reason);
                return;
            }
        }
    }
}

struct ConnHandle {
    connection: quinn::Connection,
    control: mpsc::UnboundedSender<WriterMsg>,
}

struct GameTask {
    game: Game,
    verifier: TokenVerifier,
    metrics: Metrics,
    conns: HashMap<ConnId, ConnHandle>,
    events: mpsc::UnboundedSender<GameEvent>,
}

impl GameTask {
    async fn run(mut self, mut net: mpsc::Receiver<NetEvent>, mut commands: mpsc::Receiver<Command>) {
        let period = Duration::from_secs(1) / u32::from(self.game.config().tick_rate.max(1));
        let mut ticker = tokio::time::interval(period);
        // A late tick is run once, not in a burst: a loaded server slows the match down
        // instead of spiralling.
        ticker.set_missed_tick_behavior(MissedTickBehavior::Skip);
        loop {
            tokio::select! {
                event = net.recv() => match event {
                    Some(event) => self.on_net(event),
                    None => return,
                },
                command = commands.recv() => match command {
                    Some(command) => self.on_command(command),
                    None => return,
                },
                _ = ticker.tick(), if self.game.is_ticking() => {
                    let started = Instant::now();
                    self.game.step();
                    self.dispatch();
                    self.metrics.tick_duration.observe(started.elapsed().as_secs_f64());
                    self.metrics.ticks.inc();
                }
            }
            self.dispatch();
        }
    }

    fn on_net(&mut self, event: NetEvent) {
        match event {
            NetEvent::Connected {
                conn,
                connection,
                control,
            } => {
                self.conns.insert(conn, ConnHandle { connection, control });
                self.game.connect(conn);
            }
            NetEvent::Control { conn, bytes } => {
                let now = unix_now();
                let verifier = &self.verifier;
                self.game.on_control(conn, &bytes, now, |token| {
                    let claims = verifier.verify(token, now).map_err(|e| e.to_string())?;
                    Ok(TokenClaims {
                        server: claims.server,
                        session: claims.session,
                        player: claims.player,
                        token_id: claims.id,
                        expires_unix: claims.expires_at,
                    })
                });
            }
            NetEvent::Datagram { conn, bytes } => self.game.on_datagram(conn, &bytes),
            NetEvent::Disconnected { conn } => {
                self.conns.remove(&conn);
                self.game.disconnect(conn);
            }
        }
    }

    fn on_command(&mut self, command: Command) {
        match command {
            Command::Allocate { session } => self.game.allocate(&session),
            Command::Restore { checkpoint, reply } => {
                let result = self.game.restore(&checkpoint);
                self.metrics
                    .checkpoint(if result.is_ok() { "restored" } else { "invalid" });
                let _ = reply.send(result);
            }
            Command::Reset => self.game.reset(),
            Command::Checkpoint { reply } => {
                let checkpoint = self.game.session().map(str::to_owned).zip(self.game.checkpoint());
                let _ = reply.send(checkpoint);
            }
            Command::Status { reply } => {
                let _ = reply.send(Status {
                    phase: self.game.phase(),
                    session: self.game.session().map(str::to_owned),
                    tick: self.game.tick(),
                    players: self.game.connected_players(),
                    results: self.game.results(),
                });
            }
        }
    }

    fn dispatch(&mut self) {
        while let Some(output) = self.game.poll_output() {
            match output {
                Output::Datagram { conn, bytes } => {
                    let Some(handle) = self.conns.get(&conn) else {
                        continue;
                    };
                    let len = bytes.len();
                    match handle.connection.send_datagram(Bytes::from(bytes)) {
                        Ok(()) => self.metrics.bytes("out", len),
                        Err(_) => self.metrics.dropped("out"),
                    }
                }
                Output::Control { conn, message } => {
                    if matches!(message, wire::ServerControl::Refused { .. }) {
                        self.metrics.joins_refused.inc();
                    }
                    let Some(handle) = self.conns.get(&conn) else {
                        continue;
                    };
                    let frame = wire::frame(&message.encode());
                    self.metrics.bytes("out", frame.len());
                    let _ = handle.control.send(WriterMsg::Frame(frame));
                }
                Output::Close { conn, reason } => {
                    if let Some(handle) = self.conns.remove(&conn) {
                        debug!(conn, %reason, "closing connection");
                        let _ = handle.control.send(WriterMsg::Close(reason));
                    }
                }
                Output::Event(event) => {
                    match &event {
                        GameEvent::PlayerConnected { .. } | GameEvent::PlayerDisconnected { .. } => {
                            self.metrics
                                .players
                                .set(i64::try_from(self.game.connected_players()).unwrap_or(0));
                        }
                        GameEvent::MatchStarted { session } => info!(%session, "match started"),
                        GameEvent::MatchEnded { session, results } => {
                            info!(%session, players = results.len(), "match ended")
                        }
                    }
                    if self.events.send(event).is_err() {
                        warn!("nobody listens to game events");
                    }
                }
            }
        }
    }
}

pub fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}
