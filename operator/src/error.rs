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
}

impl Error {
    /// A bounded label for metrics and logs: the kind of failure, never its free text.
    pub fn kind(&self) -> &'static str {
        match self {
            Error::Kube(_) => "kube",
            Error::InvalidTemplate(_) => "invalid_template",
            Error::Serialize { .. } => "serialize",
        }
    }
}
