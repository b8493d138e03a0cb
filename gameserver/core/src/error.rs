use thiserror::Error;

/// Everything the core can refuse. Decoding errors name the field that was bad, so a closed
/// connection can carry a reason a client developer can act on.
#[derive(Debug, Error, Clone, PartialEq, Eq)]
pub enum Error {
    #[error("message truncated while reading {field}")]
    Truncated { field: &'static str },
    #[error("wire version {0} is not supported (this server speaks version {WIRE_VERSION})", WIRE_VERSION = crate::wire::VERSION)]
    Version(u8),
    #[error("unknown message kind {0}")]
    UnknownKind(u8),
    #[error("{field} is {len} long, more than the limit of {max}")]
    TooLong {
        field: &'static str,
        len: usize,
        max: usize,
    },
    #[error("{field} is invalid: {reason}")]
    Invalid {
        field: &'static str,
        reason: &'static str,
    },
    #[error("{0} trailing bytes after the message")]
    Trailing(usize),
    #[error("checkpoint is invalid: {0}")]
    Checkpoint(&'static str),
}

pub type Result<T, E = Error> = std::result::Result<T, E>;
