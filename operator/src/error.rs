//! The operator's one error type.

pub type Result<T, E = Error> = std::result::Result<T, E>;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("kubernetes api: {0}")]
    Kube(#[from] kube::Error),

    #[error("invalid game server template: {0}")]
    InvalidTemplate(String),

    #[error("serializing {what}: {source}")]
    Serialize {
        what: &'static str,
        source: serde_json::Error,
    },

    /// An SDK caller without a valid token of its pod (audience `flotilla.dev/sdk`).
    #[error("unauthenticated: {0}")]
    Unauthenticated(String),

    /// An SDK caller whose pod is not a game server's.
    #[error("forbidden: {0}")]
    Forbidden(String),

    #[error("game server {0} not found")]
    NotFound(String),

    /// A state change the state machine does not allow.
    #[error("a game server cannot go from {from} to {to}")]
    Transition {
        from: flotilla_api::GameServerState,
        to: flotilla_api::GameServerState,
    },

    /// Others kept writing the same object; the caller may retry.
    #[error("{0}")]
    Conflict(String),

    /// An SDK request that cannot be carried out as asked (bad field, full server).
    #[error("{0}")]
    BadRequest(String),

    #[error("leadership lost: {0}")]
    LostLeadership(String),

    #[error("serving on {address}: {source}")]
    Serve { address: String, source: std::io::Error },
}

impl Error {
    /// A bounded label for metrics and logs: the kind of failure, never its free text.
    pub fn kind(&self) -> &'static str {
        match self {
            Error::Kube(_) => "kube",
            Error::InvalidTemplate(_) => "invalid_template",
            Error::Serialize { .. } => "serialize",
            Error::Unauthenticated(_) => "unauthenticated",
            Error::Forbidden(_) => "forbidden",
            Error::NotFound(_) => "not_found",
            Error::Transition { .. } => "transition",
            Error::BadRequest(_) => "bad_request",
            Error::Conflict(_) => "conflict",
            Error::Serve { .. } => "serve",
            Error::LostLeadership(_) => "lost_leadership",
        }
    }
}
