//! The analytics service's one error type, and the one place errors become HTTP answers:
//! `{"error": {"code", "message", "field"?}}`. Storage failures are logged and answered with a bare
//! 503/500: their text may hold internals.

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
    #[error("{0}")]
    TooLarge(String),
    #[error("storage: {0}")]
    Storage(#[from] flotilla_storage::Error),
    #[error("configuration: {0}")]
    Config(String),
    #[error("internal: {0}")]
    Internal(String),
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

    fn status(&self) -> StatusCode {
        match self {
            Error::BadRequest { .. } => StatusCode::BAD_REQUEST,
            Error::Unauthenticated(_) => StatusCode::UNAUTHORIZED,
            Error::Forbidden(_) => StatusCode::FORBIDDEN,
            Error::NotFound(_) => StatusCode::NOT_FOUND,
            Error::TooLarge(_) => StatusCode::PAYLOAD_TOO_LARGE,
            Error::Storage(flotilla_storage::Error::Mongo(_) | flotilla_storage::Error::Redis(_)) => {
                StatusCode::SERVICE_UNAVAILABLE
            }
            Error::Storage(_) | Error::Config(_) | Error::Internal(_) | Error::Io(_) => {
                StatusCode::INTERNAL_SERVER_ERROR
            }
        }
    }

    /// A stable machine-readable code.
    pub fn code(&self) -> &'static str {
        match self.status() {
            StatusCode::BAD_REQUEST => "bad_request",
            StatusCode::UNAUTHORIZED => "unauthenticated",
            StatusCode::FORBIDDEN => "forbidden",
            StatusCode::NOT_FOUND => "not_found",
            StatusCode::PAYLOAD_TOO_LARGE => "too_large",
            StatusCode::SERVICE_UNAVAILABLE => "unavailable",
            _ => "internal",
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
        let status = self.status();
        let (message, field) = match &self {
            _ if status.is_server_error() => {
                tracing::error!(error = %self, "request failed");
                let message = match status {
                    StatusCode::SERVICE_UNAVAILABLE => "storage is unavailable; send the batch again",
                    _ => "internal error",
                };
                (message.to_owned(), None)
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
