//! Request extractors whose rejections are this service's JSON errors rather than axum's plain
//! text: bodies, queries and the `Idempotency-Key` header.

use axum::Json;
use axum::extract::rejection::JsonRejection;
use axum::extract::{FromRequest, FromRequestParts, Query, Request};
use axum::http::request::Parts;
use serde::de::DeserializeOwned;

use crate::{Error, Result};

/// `Json<T>` whose rejections (bad JSON, wrong content type, unknown fields, too large) are 400s
/// that say what was wrong.
pub struct JsonBody<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned> FromRequest<S> for JsonBody<T> {
    type Rejection = Error;

    async fn from_request(request: Request, state: &S) -> Result<Self> {
        let bad = |message: String| Error::BadRequest { field: None, message };
        // Read as a value first: serde would also take an array for a struct, filling fields in order.
        match Json::<serde_json::Value>::from_request(request, state).await {
            Ok(Json(value)) if !value.is_object() => {
                Err(bad("the request body must be a JSON object".into()))
            }
            Ok(Json(value)) => serde_json::from_value(value)
                .map(JsonBody)
                .map_err(|e| bad(e.to_string())),
            Err(JsonRejection::MissingJsonContentType(_)) => {
                Err(bad("send Content-Type: application/json".into()))
            }
            Err(JsonRejection::JsonSyntaxError(_)) => Err(bad("request body is not valid JSON".into())),
            Err(rejection) => Err(bad(rejection.body_text())),
        }
    }
}

/// `Query<T>` with this service's 400.
pub struct QueryParams<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned> FromRequestParts<S> for QueryParams<T> {
    type Rejection = Error;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self> {
        match Query::<T>::from_request_parts(parts, state).await {
            Ok(Query(value)) => Ok(QueryParams(value)),
            Err(rejection) => Err(Error::BadRequest {
                field: None,
                message: rejection.body_text(),
            }),
        }
    }
}

/// The client's `Idempotency-Key`: 1–64 characters of `[A-Za-z0-9_.:-]`. Every write takes one;
/// the same key and request return the stored answer, the same key with another request is 409.
pub struct IdempotencyKey(pub String);

impl<S: Send + Sync> FromRequestParts<S> for IdempotencyKey {
    type Rejection = Error;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self> {
        let missing = || {
            Error::bad(
                "Idempotency-Key",
                "send an Idempotency-Key header (1-64 of A-Z a-z 0-9 _ . : -)",
            )
        };
        let key = parts.headers.get("idempotency-key").ok_or_else(missing)?;
        let key = key.to_str().map_err(|_| missing())?;
        let valid = (1..=64).contains(&key.len())
            && key
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b':' | b'-'));
        match valid {
            true => Ok(IdempotencyKey(key.to_owned())),
            false => Err(missing()),
        }
    }
}
