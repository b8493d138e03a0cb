//! The `Idempotency-Key` header every write takes. Bodies and queries are read with
//! [`flotilla_service::extract`].

use axum::extract::FromRequestParts;
use axum::http::request::Parts;

use crate::{Error, Result};

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
