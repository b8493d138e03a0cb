//! Who is calling the SDK endpoint. Every game-server pod gets a service-account token bound
//! to the pod, with audience [`AUDIENCE`], projected at [`TOKEN_PATH`]; the server sends it as
//! a bearer token. The API server's TokenReview says which pod it is bound to, and the caller
//! can act only on the game server of that pod. Reviews are cached until the token expires,
//! so heartbeats cost no API request.

use std::{collections::HashMap, sync::Mutex};

use base64::Engine;
use jiff::Timestamp;
use k8s_openapi::api::authentication::v1::{TokenReview, TokenReviewSpec, UserInfo};
use kube::{Api, Client, api::PostParams};

use crate::error::{Error, Result};

/// The audience of SDK tokens: a token for the API server is refused, and vice versa.
pub const AUDIENCE: &str = "flotilla.dev/sdk";
/// Where the SDK token is mounted in game-server containers.
pub const TOKEN_PATH: &str = "/var/run/secrets/flotilla.dev/sdk/token";
/// How long an SDK token lives; the kubelet renews it at 80 %.
pub const TOKEN_SECONDS: i64 = 600;

/// The pod a token is bound to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Caller {
    pub namespace: String,
    pub pod_name: String,
    pub pod_uid: String,
}

pub struct Authenticator {
    client: Client,
    cache: Mutex<HashMap<String, (Caller, Timestamp)>>,
}

impl Authenticator {
    pub fn new(client: Client) -> Self {
        Authenticator {
            client,
            cache: Mutex::new(HashMap::new()),
        }
    }

    pub async fn authenticate(&self, token: &str) -> Result<Caller> {
        let now = Timestamp::now();
        if let Ok(cache) = self.cache.lock()
            && let Some((caller, expires)) = cache.get(token)
            && *expires > now
        {
            return Ok(caller.clone());
        }
        let user = review_token(&self.client, token, AUDIENCE).await?;
        let caller = caller_of(user.username.as_deref(), user.extra.as_ref())?;
        let expires = expiry(token).unwrap_or(now + jiff::SignedDuration::from_secs(60));
        if let Ok(mut cache) = self.cache.lock() {
            if cache.len() > 50_000 {
                cache.retain(|_, (_, e)| *e > now);
            }
            cache.insert(token.to_owned(), (caller.clone(), expires));
        }
        Ok(caller)
    }
}

/// Who a bearer token belongs to, as the API server says (TokenReview), if it is valid for
/// `audience`. Shared by the SDK endpoint and the allocation API.
pub async fn review_token(client: &Client, token: &str, audience: &str) -> Result<UserInfo> {
    let review = TokenReview {
        spec: TokenReviewSpec {
            audiences: Some(vec![audience.to_owned()]),
            token: token.to_owned(),
        },
        ..Default::default()
    };
    let status = Api::<TokenReview>::all(client.clone())
        .create(&PostParams::default(), &review)
        .await?
        .status
        .unwrap_or_default();
    if status.authenticated != Some(true) {
        return Err(Error::Unauthenticated(
            status
                .error
                .unwrap_or_else(|| "the token was not accepted".into()),
        ));
    }
    Ok(status.user.unwrap_or_default())
}

/// The pod behind an authenticated service-account user.
fn caller_of(
    username: Option<&str>,
    extra: Option<&std::collections::BTreeMap<String, Vec<String>>>,
) -> Result<Caller> {
    let namespace = username
        .and_then(|u| u.strip_prefix("system:serviceaccount:"))
        .and_then(|rest| rest.split(':').next())
        .ok_or_else(|| Error::Forbidden("the token is not a service-account token".into()))?;
    let claim = |key: &str| {
        extra
            .and_then(|e| e.get(key))
            .and_then(|v| v.first())
            .cloned()
            .ok_or_else(|| Error::Forbidden("the token is not bound to a pod".into()))
    };
    Ok(Caller {
        namespace: namespace.to_owned(),
        pod_name: claim("authentication.kubernetes.io/pod-name")?,
        pod_uid: claim("authentication.kubernetes.io/pod-uid")?,
    })
}

/// The `exp` claim of a JWT, read without checking the signature: only ever used for a token
/// the API server has just accepted.
fn expiry(token: &str) -> Option<Timestamp> {
    let payload = token.split('.').nth(1)?;
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(payload)
        .ok()?;
    let claims: serde_json::Value = serde_json::from_slice(&bytes).ok()?;
    Timestamp::from_second(claims.get("exp")?.as_i64()?).ok()
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;

    #[test]
    fn a_pod_bound_service_account_token_names_its_pod() {
        let extra = BTreeMap::from([
            (
                "authentication.kubernetes.io/pod-name".to_owned(),
                vec!["arena-x1".to_owned()],
            ),
            (
                "authentication.kubernetes.io/pod-uid".to_owned(),
                vec!["u-1".to_owned()],
            ),
        ]);
        let caller = caller_of(Some("system:serviceaccount:games:default"), Some(&extra)).expect("caller");
        assert_eq!(
            caller,
            Caller {
                namespace: "games".into(),
                pod_name: "arena-x1".into(),
                pod_uid: "u-1".into(),
            }
        );
    }

    #[test]
    fn unbound_or_non_service_account_tokens_are_refused() {
        assert!(caller_of(Some("system:serviceaccount:games:default"), None).is_err());
        assert!(caller_of(Some("alice"), None).is_err());
    }

    #[test]
    fn expiry_is_read_from_the_jwt_claims() {
        let claims = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(br#"{"exp":2000000000}"#);
        let token = format!("header.{claims}.signature");
        assert_eq!(expiry(&token), Timestamp::from_second(2_000_000_000).ok());
        assert_eq!(expiry("garbage"), None);
    }
}
