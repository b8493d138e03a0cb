//! The crate's one error type.

use std::path::PathBuf;

pub use reqwest::StatusCode;

pub type Result<T, E = Error> = std::result::Result<T, E>;

/// What went wrong with an SDK call. Three families: the client's configuration
/// ([`MissingEnv`](Error::MissingEnv), [`InvalidUrl`](Error::InvalidUrl),
/// [`InvalidArgument`](Error::InvalidArgument), [`Token`](Error::Token), ...), the transport
/// ([`Transport`](Error::Transport)), and the endpoint's answer ([`Rejected`](Error::Rejected)
/// with the status and the server's message, [`Decode`](Error::Decode)).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// An environment variable [`Sdk::from_env`](crate::Sdk::from_env) needs is not set (or is
    /// not valid UTF-8).
    #[error("environment variable {name} is not set (the operator sets it in game-server containers)")]
    MissingEnv { name: &'static str },

    /// The SDK endpoint's URL cannot be used.
    #[error("invalid sdk url {url:?}: {reason}")]
    InvalidUrl { url: String, reason: String },

    /// The HTTP client could not be built (its TLS configuration, say).
    #[error("building the http client: {0}")]
    Client(#[source] reqwest::Error),

    /// An argument the endpoint would refuse, caught before sending.
    #[error("invalid argument: {0}")]
    InvalidArgument(String),

    /// The token file could not be read, or is empty.
    #[error("reading the sdk token from {}: {source}", path.display())]
    Token {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },

    /// The request did not get an answer: connection refused, timeout, a dropped stream.
    #[error("sdk request {request} failed: {}", chain(.source))]
    Transport {
        request: String,
        #[source]
        source: reqwest::Error,
    },

    /// The endpoint answered with an error status and this message (its `{"error": ...}`).
    #[error("sdk request {request} rejected with {status}: {message}")]
    Rejected {
        request: String,
        status: StatusCode,
        message: String,
    },

    /// The endpoint's answer, or a line of a watch, is not the JSON expected.
    #[error("sdk request {request} answered unreadable json: {source}")]
    Decode {
        request: String,
        #[source]
        source: serde_json::Error,
    },
}

impl Error {
    /// A short, bounded name of the kind of error, fit for a metric label.
    pub fn kind(&self) -> &'static str {
        match self {
            Error::MissingEnv { .. }
            | Error::InvalidUrl { .. }
            | Error::Client(_)
            | Error::InvalidArgument(_) => "config",
            Error::Token { .. } => "token",
            Error::Transport { .. } => "transport",
            Error::Rejected { .. } => "rejected",
            Error::Decode { .. } => "decode",
        }
    }

    /// The status the endpoint answered with, for [`Rejected`](Error::Rejected).
    pub fn status(&self) -> Option<StatusCode> {
        match self {
            Error::Rejected { status, .. } => Some(*status),
            _ => None,
        }
    }

    /// `409`: the state machine forbids the change (e.g. `Allocated` to `Reserved`), or the
    /// server kept changing under the endpoint's retries.
    pub fn is_conflict(&self) -> bool {
        self.status() == Some(StatusCode::CONFLICT)
    }

    /// `400`: a bad field (the message names it), or a full server on player connect.
    pub fn is_bad_request(&self) -> bool {
        self.status() == Some(StatusCode::BAD_REQUEST)
    }

    /// `401`: the token was missing, expired, or not for audience `flotilla.dev/sdk`.
    pub fn is_unauthorized(&self) -> bool {
        self.status() == Some(StatusCode::UNAUTHORIZED)
    }

    /// `404`: the calling pod's GameServer does not exist.
    pub fn is_not_found(&self) -> bool {
        self.status() == Some(StatusCode::NOT_FOUND)
    }
}

/// An error with its causes: reqwest's own message ("error sending request for url ...")
/// leaves out the one that matters ("connection refused").
fn chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        let cause_text = cause.to_string();
        if !text.contains(&cause_text) {
            text.push_str(": ");
            text.push_str(&cause_text);
        }
        source = cause.source();
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rejections_say_which_request_and_what_the_server_said() {
        let err = Error::Rejected {
            request: "POST /sdk/v1/reserve".into(),
            status: StatusCode::CONFLICT,
            message: "a game server cannot go from Allocated to Reserved".into(),
        };
        assert_eq!(
            err.to_string(),
            "sdk request POST /sdk/v1/reserve rejected with 409 Conflict: \
             a game server cannot go from Allocated to Reserved"
        );
        assert!(err.is_conflict());
        assert!(!err.is_bad_request());
        assert_eq!(err.kind(), "rejected");
    }

    #[test]
    fn errors_without_a_status_are_not_conflicts() {
        let err = Error::MissingEnv {
            name: "FLOTILLA_SDK_URL",
        };
        assert_eq!(err.status(), None);
        assert!(!err.is_conflict());
        assert_eq!(err.kind(), "config");
    }
}
