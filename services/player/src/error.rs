//! The player service's one error type, and the one place errors become HTTP answers.
//!
//! Clients get `{"error": {"code", "message", "field"?}}` with a status that says whose fault it was.
//! Storage failures are logged here and answered with a bare 500/503: their text may hold internals.

use axum::Json;
use axum::http::{HeaderValue, StatusCode, header};
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
    Conflict(String),
    #[error("too many attempts; retry in {retry_after_secs} s")]
    RateLimited { retry_after_secs: u64 },
    #[error("account is banned")]
    Banned,
    #[error("storage: {0}")]
    Storage(#[from] flotilla_storage::Error),
    #[error("password hashing: {0}")]
    Hashing(String),
    #[error("configuration: {0}")]
    Config(String),
    #[error("the operating system's random source failed")]
    NoRandomness,
    #[error("io: {0}")]
    Io(#[from] std::io::Error),
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    pub fn bad(field: &'static str, message: impl Into<String>) -> Self {
        Error::BadRequest {
            field: Some(field),
            message: message.into(),
        }
    }

    /// For `map_err`: a unique-index violation becomes 409 with `message`; other storage errors
    /// pass through.
    pub fn taken(message: &'static str) -> impl FnOnce(flotilla_storage::Error) -> Self {
        move |error| match error {
            flotilla_storage::Error::Duplicate { .. } => Error::Conflict(message.into()),
            other => other.into(),
        }
    }

    fn status(&self) -> StatusCode {
        match self {
            Error::BadRequest { .. } => StatusCode::BAD_REQUEST,
            Error::Unauthenticated(_) => StatusCode::UNAUTHORIZED,
            Error::Forbidden(_) | Error::Banned => StatusCode::FORBIDDEN,
            Error::NotFound(_) => StatusCode::NOT_FOUND,
            Error::Conflict(_) => StatusCode::CONFLICT,
            Error::RateLimited { .. } => StatusCode::TOO_MANY_REQUESTS,
            Error::Storage(
                flotilla_storage::Error::Duplicate { .. } | flotilla_storage::Error::Contended { .. },
            ) => StatusCode::CONFLICT,
            Error::Storage(flotilla_storage::Error::BadCursor) => StatusCode::BAD_REQUEST,
            Error::Storage(flotilla_storage::Error::Mongo(_) | flotilla_storage::Error::Redis(_)) => {
                StatusCode::SERVICE_UNAVAILABLE
            }
            Error::Storage(_) | Error::Hashing(_) | Error::Config(_) | Error::NoRandomness | Error::Io(_) => {
                StatusCode::INTERNAL_SERVER_ERROR
            }
        }
    }

    /// A stable machine-readable code; also the bounded metric label.
    pub fn code(&self) -> &'static str {
        match self {
            Error::BadRequest { .. } => "bad_request",
            Error::Unauthenticated(_) => "unauthenticated",
            Error::Forbidden(_) => "forbidden",
            Error::NotFound(_) => "not_found",
            Error::Conflict(_)
            | Error::Storage(
                flotilla_storage::Error::Duplicate { .. } | flotilla_storage::Error::Contended { .. },
            ) => "conflict",
            Error::RateLimited { .. } => "rate_limited",
            Error::Banned => "banned",
            Error::Storage(flotilla_storage::Error::BadCursor) => "bad_request",
            Error::Storage(flotilla_storage::Error::Mongo(_) | flotilla_storage::Error::Redis(_)) => {
                "unavailable"
            }
            Error::Storage(_) | Error::Hashing(_) | Error::Config(_) | Error::NoRandomness | Error::Io(_) => {
                "internal"
            }
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
            Error::Storage(flotilla_storage::Error::Duplicate { field }) => {
                (format!("that {field} is already taken"), None)
            }
            Error::Storage(flotilla_storage::Error::BadCursor) => {
                ("cursor is invalid".into(), Some("cursor"))
            }
            Error::Storage(flotilla_storage::Error::Contended { .. }) => {
                ("it changed while being updated; retry".into(), None)
            }
            _ if status.is_server_error() => {
                tracing::error!(error = %self, "request failed");
                let message = if status == StatusCode::SERVICE_UNAVAILABLE {
                    "storage is unavailable; retry"
                } else {
                    "internal error"
                };
                (message.into(), None)
            }
            Error::BadRequest { field, message } => (message.clone(), *field),
            _ => (self.to_string(), None),
        };
        let mut response = (
            status,
            Json(Body {
                error: Detail {
                    code: self.code(),
                    message,
                    field,
                },
            }),
        )
            .into_response();
        if let Error::RateLimited { retry_after_secs } = self {
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(retry_after_secs.max(1)));
        }
        response
    }
}
