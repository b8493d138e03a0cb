//! The operator's one error type.

pub type Result<T, E = Error> = std::result::Result<T, E>;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("kubernetes api: {0}")]
    Kube(#[from] kube::Error),

    /// Neither an in-cluster service account nor a kubeconfig to reach the API with.
    #[error("kubernetes client configuration: {0}")]
    ClientConfig(String),

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

    #[error("{0} not found")]
    NotFound(String),

    /// No server matches an allocation request right now.
    #[error("no capacity: {0}")]
    NoCapacity(String),

    /// The connection-token signing key is missing or unusable.
    #[error("signing key: {0}")]
    Signing(String),

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

    /// A request field that is not acceptable; the answer names the field.
    #[error("{field}: {reason}")]
    InvalidField { field: String, reason: String },

    /// The allocation API's certificate, key or client CA is unusable.
    #[error("tls: {0}")]
    Tls(String),

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
            Error::ClientConfig(_) => "client_config",
            Error::InvalidTemplate(_) => "invalid_template",
            Error::Serialize { .. } => "serialize",
            Error::Unauthenticated(_) => "unauthenticated",
            Error::Forbidden(_) => "forbidden",
            Error::NotFound(_) => "not_found",
            Error::NoCapacity(_) => "no_capacity",
            Error::Signing(_) => "signing",
            Error::Tls(_) => "tls",
            Error::Transition { .. } => "transition",
            Error::BadRequest(_) | Error::InvalidField { .. } => "bad_request",
            Error::Conflict(_) => "conflict",
            Error::Serve { .. } => "serve",
            Error::LostLeadership(_) => "lost_leadership",
        }
    }
}

/// Maps errors to HTTP answers in one place (SDK and allocation API): `{"error": message}`,
/// plus `field` for a bad field and `Retry-After` when there is no capacity. Clients get the
/// message, never internals.
impl axum::response::IntoResponse for Error {
    fn into_response(self) -> axum::response::Response {
        use axum::Json;
        use axum::http::{HeaderValue, StatusCode, header::RETRY_AFTER};
        let status = match &self {
            Error::Unauthenticated(_) => StatusCode::UNAUTHORIZED,
            Error::Forbidden(_) => StatusCode::FORBIDDEN,
            Error::NotFound(_) => StatusCode::NOT_FOUND,
            Error::Transition { .. } | Error::Conflict(_) => StatusCode::CONFLICT,
            Error::BadRequest(_) => StatusCode::BAD_REQUEST,
            Error::InvalidField { field, .. } => {
                let body = serde_json::json!({"error": self.to_string(), "field": field});
                return (StatusCode::BAD_REQUEST, Json(body)).into_response();
            }
            Error::NoCapacity(_) => {
                let body = Json(serde_json::json!({"error": self.to_string()}));
                let mut response = (StatusCode::TOO_MANY_REQUESTS, body).into_response();
                // Fleets refill within about a second when an autoscaler is on.
                response
                    .headers_mut()
                    .insert(RETRY_AFTER, HeaderValue::from_static("1"));
                return response;
            }
            Error::Kube(_)
            | Error::ClientConfig(_)
            | Error::InvalidTemplate(_)
            | Error::Serialize { .. }
            | Error::Serve { .. }
            | Error::Signing(_)
            | Error::Tls(_)
            | Error::LostLeadership(_) => {
                tracing::warn!(kind = self.kind(), error = %self, "request failed");
                let body = serde_json::json!({"error": "internal error"});
                return (StatusCode::INTERNAL_SERVER_ERROR, Json(body)).into_response();
            }
        };
        (status, Json(serde_json::json!({"error": self.to_string()}))).into_response()
    }
}
