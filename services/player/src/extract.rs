//! Request extractors whose rejections are this service's JSON errors ([`crate::Error`]) rather than
//! axum's plain-text answers: every handler takes its body and query through these.

use axum::Json;
use axum::extract::rejection::JsonRejection;
use axum::extract::{FromRequest, FromRequestParts, Query, Request};
use axum::http::StatusCode;
use axum::http::request::Parts;
use serde::de::DeserializeOwned;

use crate::error::{Error, Result};

/// `Json<T>` whose rejections (bad JSON, wrong content type, unknown fields) become this service's
/// 400 answer, naming what was wrong.
pub struct JsonBody<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned> FromRequest<S> for JsonBody<T> {
    type Rejection = Error;

    async fn from_request(request: Request, state: &S) -> Result<Self> {
        // Every body is a JSON object. Read as a value first: serde would also take an array for a
        // struct, filling the fields in order.
        match Json::<serde_json::Value>::from_request(request, state).await {
            Ok(Json(value)) if !value.is_object() => Err(Error::BadRequest {
                field: None,
                message: "the request body must be a JSON object".into(),
            }),
            Ok(Json(value)) => {
                serde_json::from_value(value)
                    .map(JsonBody)
                    .map_err(|error| Error::BadRequest {
                        field: None,
                        message: error.to_string(),
                    })
            }
            Err(JsonRejection::MissingJsonContentType(_)) => Err(Error::BadRequest {
                field: None,
                message: "send Content-Type: application/json".into(),
            }),
            Err(JsonRejection::JsonDataError(e)) => Err(Error::BadRequest {
                field: None,
                message: e.body_text(),
            }),
            Err(JsonRejection::JsonSyntaxError(_)) => Err(Error::BadRequest {
                field: None,
                message: "request body is not valid JSON".into(),
            }),
            Err(rejection) if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE => Err(Error::BadRequest {
                field: None,
                message: "request body is too large".into(),
            }),
            Err(rejection) => Err(Error::BadRequest {
                field: None,
                message: rejection.body_text(),
            }),
        }
    }
}

/// `Query<T>` whose rejection (a `limit` that is not a number, say) is this service's JSON 400 rather
/// than axum's plain text.
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
