//! Request extractors whose rejections are the services' JSON errors
//! (`{"error": {"code": "bad_request", "message", "field"?}}`) rather than axum's plain text, and
//! the bearer credential of a request.

use axum::Json;
use axum::extract::rejection::JsonRejection;
use axum::extract::{FromRequest, FromRequestParts, Query, Request};
use axum::http::StatusCode;
use axum::http::header::AUTHORIZATION;
use axum::http::request::Parts;
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use serde::de::DeserializeOwned;

/// Input the service cannot take: answered 400 with what was wrong, and which field when known.
/// Services convert it into their own error enum where a handler finds bad input itself.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BadRequest {
    pub field: Option<&'static str>,
    pub message: String,
}

impl BadRequest {
    pub fn new(message: impl Into<String>) -> Self {
        Self {
            field: None,
            message: message.into(),
        }
    }
}

#[derive(Serialize)]
struct Body<'a> {
    error: Detail<'a>,
}

#[derive(Serialize)]
struct Detail<'a> {
    code: &'static str,
    message: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    field: Option<&'static str>,
}

impl IntoResponse for BadRequest {
    fn into_response(self) -> Response {
        let body = Body {
            error: Detail {
                code: "bad_request",
                message: &self.message,
                field: self.field,
            },
        };
        (StatusCode::BAD_REQUEST, Json(body)).into_response()
    }
}

/// `Json<T>` whose rejections (bad JSON, wrong content type, unknown fields, too large) are 400s
/// that say what was wrong. Every body is a JSON object.
pub struct JsonBody<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned> FromRequest<S> for JsonBody<T> {
    type Rejection = BadRequest;

    async fn from_request(request: Request, state: &S) -> Result<Self, BadRequest> {
        // Read as a value first: serde would also take an array for a struct, filling fields in order.
        match Json::<serde_json::Value>::from_request(request, state).await {
            Ok(Json(value)) if !value.is_object() => {
                Err(BadRequest::new("the request body must be a JSON object"))
            }
            Ok(Json(value)) => serde_json::from_value(value)
                .map(JsonBody)
                .map_err(|e| BadRequest::new(e.to_string())),
            Err(JsonRejection::MissingJsonContentType(_)) => {
                Err(BadRequest::new("send Content-Type: application/json"))
            }
            Err(JsonRejection::JsonSyntaxError(_)) => Err(BadRequest::new("request body is not valid JSON")),
            Err(rejection) if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE => {
                Err(BadRequest::new("request body is too large"))
            }
            Err(rejection) => Err(BadRequest::new(rejection.body_text())),
        }
    }
}

/// `Query<T>` with the services' 400.
pub struct QueryParams<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned> FromRequestParts<S> for QueryParams<T> {
    type Rejection = BadRequest;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, BadRequest> {
        match Query::<T>::from_request_parts(parts, state).await {
            Ok(Query(value)) => Ok(QueryParams(value)),
            Err(rejection) => Err(BadRequest::new(rejection.body_text())),
        }
    }
}

/// The credential of `Authorization: Bearer <credential>`, when one is sent.
pub fn bearer(parts: &Parts) -> Option<&str> {
    let value = parts.headers.get(AUTHORIZATION)?.to_str().ok()?;
    value
        .strip_prefix("Bearer ")
        .map(str::trim)
        .filter(|t| !t.is_empty())
}
