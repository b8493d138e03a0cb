//! The economy service's one error type, and the one place errors become HTTP answers.
//!
//! Clients get `{"error": {"code", "message", "field"?}}` with a status that says whose fault it was.
//! Storage failures are logged here and answered with a bare 503/500: their text may hold internals.

use axum::Json;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use thiserror::Error;

#[derive(Debug, Error)]
pub enum Error {
    #[error("{message}")]
    BadRequest {
        field: Option<&'static str>,
        message: String,
    },
    #[error("authentication required: {0}")]
    Unauthenticated(&'static str),
    #[error("{0}")]
    Forbidden(&'static str),
    #[error("{0} not found")]
    NotFound(&'static str),
    #[error("this idempotency key was used for a different request")]
    KeyReused,
    #[error("{0}")]
    Conflict(String),
    /// Not a failure: the answer for a transaction a fraud rule holds for review (202), its value
    /// reserved meanwhile.
    #[error("held by fraud rule {rule}")]
    Held {
        tx: Box<crate::ledger::model::Transaction>,
        rule: String,
    },
    /// The transaction was decided against (not enough funds, a limit): the same answer every time
    /// its idempotency key is sent again.
    #[error("{0}")]
    Refused(String),
    /// A store call failed in transport: it may or may not have landed.
    #[error("store unavailable: {0}")]
    Unavailable(String),
    #[error("storage: {0}")]
    Storage(#[from] flotilla_storage::Error),
    /// The ledger found a state its rules cannot produce: reported, never papered over.
    #[error("ledger invariant broken: {0}")]
    Invariant(String),
    #[error("{key} changed {attempts} times while being posted to")]
    Contended { key: String, attempts: usize },
    #[error("catalog: {0}")]
    Catalog(String),
    #[error("configuration: {0}")]
    Config(String),
    #[error("io: {0}")]
    Io(#[from] std::io::Error),
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

impl From<flotilla_service::BadRequest> for Error {
    fn from(bad: flotilla_service::BadRequest) -> Self {
        Error::BadRequest {
            field: bad.field,
            message: bad.message,
        }
    }
}

impl Error {
    pub fn bad(field: &'static str, message: impl Into<String>) -> Self {
        Error::BadRequest {
            field: Some(field),
            message: message.into(),
        }
    }

    /// Whether a store call may have landed although it failed: the ledger reads back before
    /// deciding what happened.
    pub fn is_transient(&self) -> bool {
        match self {
            Error::Unavailable(_) => true,
            Error::Storage(error) => error.is_transient(),
            _ => false,
        }
    }

    fn status(&self) -> StatusCode {
        match self {
            Error::BadRequest { .. } | Error::Catalog(_) => StatusCode::BAD_REQUEST,
            Error::Unauthenticated(_) => StatusCode::UNAUTHORIZED,
            Error::Forbidden(_) => StatusCode::FORBIDDEN,
            Error::NotFound(_) => StatusCode::NOT_FOUND,
            Error::Held { .. } => StatusCode::ACCEPTED,
            Error::KeyReused | Error::Conflict(_) | Error::Contended { .. } => StatusCode::CONFLICT,
            Error::Refused(_) => StatusCode::UNPROCESSABLE_ENTITY,
            Error::Storage(flotilla_storage::Error::BadCursor) => StatusCode::BAD_REQUEST,
            Error::Unavailable(_)
            | Error::Storage(flotilla_storage::Error::Mongo(_) | flotilla_storage::Error::Redis(_)) => {
                StatusCode::SERVICE_UNAVAILABLE
            }
            Error::Storage(_) | Error::Invariant(_) | Error::Config(_) | Error::Io(_) => {
                StatusCode::INTERNAL_SERVER_ERROR
            }
        }
    }

    /// A stable machine-readable code; also the bounded metric label.
    pub fn code(&self) -> &'static str {
        match self {
            Error::BadRequest { .. } | Error::Storage(flotilla_storage::Error::BadCursor) => "bad_request",
            Error::Catalog(_) => "bad_catalog",
            Error::Unauthenticated(_) => "unauthenticated",
            Error::Forbidden(_) => "forbidden",
            Error::NotFound(_) => "not_found",
            Error::Held { .. } => "held",
            Error::KeyReused => "idempotency_key_reused",
            Error::Conflict(_) | Error::Contended { .. } => "conflict",
            Error::Refused(_) => "refused",
            Error::Unavailable(_)
            | Error::Storage(flotilla_storage::Error::Mongo(_) | flotilla_storage::Error::Redis(_)) => {
                "unavailable"
            }
            Error::Storage(_) | Error::Invariant(_) | Error::Config(_) | Error::Io(_) => "internal",
        }
    }
}

#[derive(Serialize)]
struct Body {
    error: Detail,
}

#[derive(Serialize)]
struct Detail {
    code: &'static str,
    message: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    field: Option<&'static str>,
}

impl IntoResponse for Error {
    fn into_response(self) -> Response {
        if let Error::Held { tx, .. } = &self {
            return (
                StatusCode::ACCEPTED,
                Json(crate::transactions::TransactionView::new(tx, None)),
            )
                .into_response();
        }
        let status = self.status();
        let (message, field) = match &self {
            Error::Storage(flotilla_storage::Error::BadCursor) => {
                ("cursor is invalid".into(), Some("cursor"))
            }
            Error::Contended { .. } => ("the account changed while being updated; retry".into(), None),
            _ if status.is_server_error() => {
                tracing::error!(error = %self, "request failed");
                let message = if status == StatusCode::SERVICE_UNAVAILABLE {
                    "storage is unavailable; retry with the same idempotency key"
                } else {
                    "internal error"
                };
                (message.into(), None)
            }
            Error::BadRequest { field, message } => (message.clone(), *field),
            _ => (self.to_string(), None),
        };
        let body = Body {
            error: Detail {
                code: self.code(),
                message,
                field,
            },
        };
        (status, Json(body)).into_response()
    }
}
