//! A player's side of the protocol: connect with a pinned certificate, join with a token, send
//! inputs, receive snapshots and control messages. Used by the bots and the tests, and the
//! reference for client developers.

use std::net::SocketAddr;
use std::time::Duration;

use bytes::Bytes;
use flotilla_game::wire::{self, ClientControl, Datagram, InputDatagram, ServerControl, SnapshotDatagram};
use tokio::sync::mpsc;

use crate::server::transport_config;
use crate::tls;
use crate::{Error, Result};

const JOIN_TIMEOUT: Duration = Duration::from_secs(10);

/// What the server said when it let the player in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Welcome {
    pub entity: u16,
    pub tick_rate: u16,
    pub tick: u32,
    pub resumed: bool,
    pub score: u32,
}

pub struct GameClient {
    connection: quinn::Connection,
    send: quinn::SendStream,
    control: mpsc::UnboundedReceiver<ServerControl>,
    pub welcome: Welcome,
}

/// A client endpoint on an ephemeral loopback or wildcard port; many connections can share it.
pub fn endpoint(bind: SocketAddr) -> Result<quinn::Endpoint> {
    quinn::Endpoint::client(bind).map_err(|source| Error::Bind { addr: bind, source })
}

impl GameClient {
    /// Connects to `addr`, trusting only the certificate with `fingerprint`, and joins with
    /// `token`. A refusal comes back as [`Error::Refused`] with the server's reason.
    pub async fn join(
        endpoint: &quinn::Endpoint,
        addr: SocketAddr,
        fingerprint: &str,
        token: &str,
    ) -> Result<Self> {
        let config = tls::client_config(fingerprint, transport_config())?;
        let connecting = endpoint
            .connect_with(config, addr, "flotilla-gameserver")
            .map_err(|e| Error::Connect(e.to_string()))?;
        let connection = connecting.await.map_err(|e| Error::Connect(e.to_string()))?;
        let (mut send, recv) = connection
            .open_bi()
            .await
            .map_err(|e| Error::Connect(e.to_string()))?;
        let join = wire::frame(
            &ClientControl::Join {
                token: token.to_owned(),
            }
            .encode(),
        );
        send.write_all(&join)
            .await
            .map_err(|e| Error::Connect(e.to_string()))?;
        let (tx, mut control) = mpsc::unbounded_channel();
        tokio::spawn(read_control(recv, tx));
        let first = tokio::time::timeout(JOIN_TIMEOUT, control.recv())
            .await
            .map_err(|_| Error::Connect("no answer to join".into()))?;
        match first {
            Some(ServerControl::Welcome {
                entity,
                tick_rate,
                tick,
                resumed,
                score,
            }) => {
                let welcome = Welcome {
                    entity,
                    tick_rate,
                    tick,
                    resumed,
                    score,
                };
                Ok(Self {
                    connection,
                    send,
                    control,
                    welcome,
                })
            }
            Some(ServerControl::Refused { reason }) => Err(Error::Refused(reason)),
            Some(other) => Err(Error::Connect(format!("expected a welcome, got {other:?}"))),
            None => Err(Error::Closed(close_reason(&connection).await)),
        }
    }

    pub fn send_input(&self, input: InputDatagram) -> Result<usize> {
        let bytes = Datagram::Input(input).encode();
        let len = bytes.len();
        self.connection
            .send_datagram(Bytes::from(bytes))
            .map_err(|e| Error::Closed(e.to_string()))?;
        Ok(len)
    }

    /// Sends raw bytes as a datagram: for tests of what the server does with garbage.
    pub fn send_raw_datagram(&self, bytes: Vec<u8>) -> Result<()> {
        self.connection
            .send_datagram(Bytes::from(bytes))
            .map_err(|e| Error::Closed(e.to_string()))
    }

    /// Writes raw bytes to the control stream: for tests of malformed frames.
    pub async fn send_raw_control(&mut self, bytes: &[u8]) -> Result<()> {
        self.send
            .write_all(bytes)
            .await
            .map_err(|e| Error::Closed(e.to_string()))
    }

    pub async fn send_control(&mut self, message: &ClientControl) -> Result<()> {
        self.send_raw_control(&wire::frame(&message.encode())).await
    }

    /// The next snapshot and its size on the wire; an error once the connection is closed.
    pub async fn next_snapshot(&self) -> Result<(SnapshotDatagram, usize)> {
        loop {
            let bytes = match self.connection.read_datagram().await {
                Ok(bytes) => bytes,
                Err(_) => return Err(Error::Closed(close_reason(&self.connection).await)),
            };
            if let Datagram::Snapshot(snapshot) = Datagram::decode(&bytes)? {
                return Ok((snapshot, bytes.len()));
            }
        }
    }

    /// The next control message, `None` once the stream ends.
    pub async fn next_control(&mut self) -> Option<ServerControl> {
        self.control.recv().await
    }

    /// Takes the control-message queue, to wait on it while also reading snapshots.
    pub fn take_control(&mut self) -> mpsc::UnboundedReceiver<ServerControl> {
        let (_, closed) = mpsc::unbounded_channel();
        std::mem::replace(&mut self.control, closed)
    }

    /// Why the server closed the connection (waits for the close).
    pub async fn closed(&self) -> String {
        close_reason(&self.connection).await
    }

    pub fn close(&self) {
        self.connection.close(quinn::VarInt::from_u32(0), b"bye");
    }
}

async fn close_reason(connection: &quinn::Connection) -> String {
    match connection.closed().await {
        quinn::ConnectionError::ApplicationClosed(close) => {
            String::from_utf8_lossy(&close.reason).into_owned()
        }
        other => other.to_string(),
    }
}

async fn read_control(mut recv: quinn::RecvStream, messages: mpsc::UnboundedSender<ServerControl>) {
    let mut buffer = Vec::new();
    let mut chunk = [0u8; 4096];
    loop {
        while let Ok(Some(len)) = wire::control_frame_len(&buffer) {
            let Ok(message) = ServerControl::decode(&buffer[2..2 + len]) else {
                return;
            };
            buffer.drain(..2 + len);
            if messages.send(message).is_err() {
                return;
            }
        }
        match recv.read(&mut chunk).await {
            Ok(Some(n)) => buffer.extend_from_slice(&chunk[..n]),
            Ok(None) | Err(_) => return,
        }
    }
}
