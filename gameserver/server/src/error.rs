use thiserror::Error;

#[derive(Debug, Error)]
pub enum Error {
    #[error("tls setup failed: {0}")]
    Tls(String),
    #[error("could not bind {addr}: {source}")]
    Bind {
        addr: std::net::SocketAddr,
        source: std::io::Error,
    },
    #[error("invalid configuration: {0}")]
    Config(String),
    #[error("could not connect to the game server: {0}")]
    Connect(String),
    #[error("join refused: {0}")]
    Refused(String),
    #[error("connection closed: {0}")]
    Closed(String),
    #[error("protocol error from the server: {0}")]
    Protocol(#[from] flotilla_game::Error),
    #[error("checkpoint store: {0}")]
    Checkpoint(#[from] redis::RedisError),
    #[error("platform sdk: {0}")]
    Sdk(#[from] flotilla_sdk::Error),
    #[error("io: {0}")]
    Io(#[from] std::io::Error),
    #[error("the game loop stopped")]
    Stopped,
}

pub type Result<T, E = Error> = std::result::Result<T, E>;
