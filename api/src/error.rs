use thiserror::Error;

#[derive(Debug, Error, Clone, PartialEq, Eq)]
pub enum Error {
    #[error("connection token is malformed: {0}")]
    MalformedToken(&'static str),
    #[error("connection token signature does not match any trusted key")]
    BadSignature,
    #[error("connection token expired at {expired_at} (now {now})")]
    Expired { expired_at: u64, now: u64 },
    #[error("signing key is invalid: {0}")]
    InvalidKey(String),
}

pub type Result<T, E = Error> = std::result::Result<T, E>;
