//! The client: one method per SDK request (see `docs/sdk.md`).

use std::{fmt, path::PathBuf, sync::Arc, time::Duration};

use flotilla_api::GameServer;
use reqwest::Method;
use serde::de::DeserializeOwned;
use serde_json::json;

use crate::{
    error::{Error, Result},
    watch::Watch,
};

/// The variable holding the SDK endpoint's URL.
pub const URL_ENV: &str = "FLOTILLA_SDK_URL";
/// The variable holding the path of the pod's SDK token.
pub const TOKEN_FILE_ENV: &str = "FLOTILLA_SDK_TOKEN_FILE";
/// The longest reservation the endpoint accepts.
pub const MAX_RESERVATION: Duration = Duration::from_secs(86_400);
/// The largest player capacity the endpoint accepts.
pub const MAX_PLAYER_CAPACITY: u32 = 100_000;

/// Every request but the watch gives up after this long.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// Keepalive probes let a watch notice a peer that vanished without closing.
const TCP_KEEPALIVE: Duration = Duration::from_secs(30);
/// Error bodies that are not the endpoint's JSON (a proxy's page, say) are cut to this.
const MAX_MESSAGE_CHARS: usize = 200;

/// Where the bearer token comes from.
#[derive(Clone, PartialEq, Eq)]
pub enum TokenSource {
    /// A file read for every request: the kubelet rotates the pod's projected token in place
    /// (it lives 10 minutes), and a read of a small file costs next to nothing.
    File(PathBuf),
    /// A fixed token: tests, or tools run outside a pod.
    Static(String),
}

/// Never prints the token itself.
impl fmt::Debug for TokenSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TokenSource::File(path) => f.debug_tuple("File").field(path).finish(),
            TokenSource::Static(_) => f.write_str("Static(..)"),
        }
    }
}

impl TokenSource {
    async fn token(&self) -> Result<String> {
        match self {
            TokenSource::Static(token) => Ok(token.trim().to_owned()),
            TokenSource::File(path) => {
                let text = tokio::fs::read_to_string(path)
                    .await
                    .map_err(|source| Error::Token {
                        path: path.clone(),
                        source,
                    })?;
                let token = text.trim();
                if token.is_empty() {
                    return Err(Error::Token {
                        path: path.clone(),
                        source: std::io::Error::new(std::io::ErrorKind::InvalidData, "the file is empty"),
                    });
                }
                Ok(token.to_owned())
            }
        }
    }
}

/// A client of the SDK endpoint, acting on the GameServer of the pod whose token it sends.
/// Cheap to clone (clones share connections).
#[derive(Debug, Clone)]
pub struct Sdk {
    http: reqwest::Client,
    /// The endpoint's URL without a trailing `/`.
    base: Arc<str>,
    token: TokenSource,
}

impl Sdk {
    /// The client a game-server container is set up for: the URL from `FLOTILLA_SDK_URL` and
    /// the token file named by `FLOTILLA_SDK_TOKEN_FILE`, both set by the operator.
    pub fn from_env() -> Result<Self> {
        Self::from_vars(|name| std::env::var(name).ok())
    }

    fn from_vars(var: impl Fn(&str) -> Option<String>) -> Result<Self> {
        let url = var(URL_ENV).ok_or(Error::MissingEnv { name: URL_ENV })?;
        let token_file = var(TOKEN_FILE_ENV).ok_or(Error::MissingEnv { name: TOKEN_FILE_ENV })?;
        Self::new(url, TokenSource::File(token_file.into()))
    }

    /// A client of the endpoint at `url` (`http://host:port`, any path prefix kept).
    pub fn new(url: impl Into<String>, token: TokenSource) -> Result<Self> {
        let url = url.into();
        let parsed = reqwest::Url::parse(&url).map_err(|e| Error::InvalidUrl {
            url: url.clone(),
            reason: e.to_string(),
        })?;
        if !matches!(parsed.scheme(), "http" | "https") {
            return Err(Error::InvalidUrl {
                url,
                reason: "the scheme must be http or https".into(),
            });
        }
        if parsed.query().is_some() || parsed.fragment().is_some() {
            return Err(Error::InvalidUrl {
                url,
                reason: "a query or fragment cannot be followed by a path".into(),
            });
        }
        let http = reqwest::Client::builder()
            .user_agent(concat!("flotilla-sdk/", env!("CARGO_PKG_VERSION")))
            .connect_timeout(CONNECT_TIMEOUT)
            .tcp_keepalive(TCP_KEEPALIVE)
            .build()
            .map_err(Error::Client)?;
        Ok(Sdk {
            http,
            base: url.trim_end_matches('/').into(),
            token,
        })
    }

    /// The endpoint's URL.
    pub fn url(&self) -> &str {
        &self.base
    }

    /// The caller's GameServer.
    pub async fn game_server(&self) -> Result<GameServer> {
        self.call(Method::GET, "/sdk/v1/gameserver".into(), None).await
    }

    /// The caller's GameServer now and at every change, until it is deleted: how a server
    /// learns it was allocated, and with which labels. Errors of the request itself (a bad
    /// token, say) are returned here; those of the stream are its items (see [`Watch`]).
    pub async fn watch(&self) -> Result<Watch> {
        let path = "/sdk/v1/gameserver/watch".to_owned();
        let (request, response) = self.send(Method::GET, path, None, None).await?;
        Ok(Watch::new(request, response))
    }

    /// Ready for players (`RequestReady`, confirmed as `Ready` by the operator once the pod has
    /// its address). Called again after a session, from `Allocated`, to be reused: that clears
    /// the allocation.
    pub async fn ready(&self) -> Result<GameServer> {
        self.call(Method::POST, "/sdk/v1/ready".into(), None).await
    }

    /// One heartbeat. See [`spawn_health`](Sdk::spawn_health) to send them periodically.
    pub async fn health(&self) -> Result<()> {
        let path = "/sdk/v1/health".to_owned();
        self.send(Method::POST, path, None, Some(REQUEST_TIMEOUT))
            .await
            .map(drop)
    }

    /// `Reserved` for `duration` (whole seconds, rounded up; 1 s to [`MAX_RESERVATION`]): not
    /// allocatable and not removed by scale-down, then back to `Ready`.
    pub async fn reserve(&self, duration: Duration) -> Result<GameServer> {
        let seconds = duration.as_secs() + u64::from(duration.subsec_nanos() > 0);
        if !(1..=MAX_RESERVATION.as_secs()).contains(&seconds) {
            return Err(Error::InvalidArgument(format!(
                "a reservation of {duration:?} is not between 1 s and {} s",
                MAX_RESERVATION.as_secs()
            )));
        }
        let body = json!({ "seconds": seconds });
        self.call(Method::POST, "/sdk/v1/reserve".into(), Some(body))
            .await
    }

    /// The server allocates itself (`Allocated`), e.g. a lobby that finds its own players.
    pub async fn allocate(&self) -> Result<GameServer> {
        self.call(Method::POST, "/sdk/v1/allocate".into(), None).await
    }

    /// `Shutdown`: the operator deletes the server and its pod.
    pub async fn shutdown(&self) -> Result<GameServer> {
        self.call(Method::POST, "/sdk/v1/shutdown".into(), None).await
    }

    /// Sets label `sdk.flotilla.dev/{key}` on the GameServer, usable in allocation selectors.
    /// Keys are 1-63 letters, digits, `-`, `_` or `.`, starting and ending with a letter or
    /// digit; values at most 63 such characters (the endpoint checks, answering `400`).
    pub async fn set_label(&self, key: &str, value: &str) -> Result<GameServer> {
        let path = format!("/sdk/v1/labels/{}", segment("label key", key)?);
        self.call(Method::PUT, path, Some(json!({ "value": value })))
            .await
    }

    /// Sets annotation `sdk.flotilla.dev/{key}` on the GameServer (values up to 4096 bytes).
    pub async fn set_annotation(&self, key: &str, value: &str) -> Result<GameServer> {
        let path = format!("/sdk/v1/annotations/{}", segment("annotation key", key)?);
        self.call(Method::PUT, path, Some(json!({ "value": value })))
            .await
    }

    /// How many players the server takes (0 to [`MAX_PLAYER_CAPACITY`]).
    pub async fn set_player_capacity(&self, capacity: u32) -> Result<GameServer> {
        if capacity > MAX_PLAYER_CAPACITY {
            return Err(Error::InvalidArgument(format!(
                "a player capacity of {capacity} is over {MAX_PLAYER_CAPACITY}"
            )));
        }
        let body = json!({ "capacity": capacity });
        self.call(Method::PUT, "/sdk/v1/players/capacity".into(), Some(body))
            .await
    }

    /// Adds a player (ids are 1-128 printable characters). A full server answers `400`
    /// ([`Error::is_bad_request`]); a player already connected is no change.
    pub async fn player_connect(&self, id: &str) -> Result<GameServer> {
        let path = format!("/sdk/v1/players/{}/connect", segment("player id", id)?);
        self.call(Method::POST, path, None).await
    }

    /// Removes a player.
    pub async fn player_disconnect(&self, id: &str) -> Result<GameServer> {
        let path = format!("/sdk/v1/players/{}/disconnect", segment("player id", id)?);
        self.call(Method::POST, path, None).await
    }

    /// A request whose answer is JSON.
    async fn call<T: DeserializeOwned>(
        &self,
        method: Method,
        path: String,
        body: Option<serde_json::Value>,
    ) -> Result<T> {
        let (request, response) = self.send(method, path, body, Some(REQUEST_TIMEOUT)).await?;
        let bytes = response.bytes().await.map_err(|source| Error::Transport {
            request: request.clone(),
            source,
        })?;
        serde_json::from_slice(&bytes).map_err(|source| Error::Decode { request, source })
    }

    /// Sends a request with a freshly read token; returns its description (`POST /sdk/v1/…`,
    /// for errors) and the response, if its status is a success.
    async fn send(
        &self,
        method: Method,
        path: String,
        body: Option<serde_json::Value>,
        timeout: Option<Duration>,
    ) -> Result<(String, reqwest::Response)> {
        let token = self.token.token().await?;
        let mut builder = self
            .http
            .request(method.clone(), format!("{}{path}", self.base))
            .bearer_auth(token);
        if let Some(timeout) = timeout {
            builder = builder.timeout(timeout);
        }
        if let Some(body) = body {
            builder = builder.json(&body);
        }
        let request = format!("{method} {path}");
        let response = match builder.send().await {
            Ok(response) => response,
            Err(source) => return Err(Error::Transport { request, source }),
        };
        let status = response.status();
        if status.is_success() {
            return Ok((request, response));
        }
        let text = response.text().await.unwrap_or_default();
        Err(Error::Rejected {
            request,
            status,
            message: message_of(status, &text),
        })
    }
}

/// The message of an error answer: the endpoint's `{"error": "..."}`, else the start of
/// whatever the body is, else the status's reason.
fn message_of(status: reqwest::StatusCode, body: &str) -> String {
    #[derive(serde::Deserialize)]
    struct ErrorBody {
        error: String,
    }
    if let Ok(ErrorBody { error }) = serde_json::from_str(body) {
        return error;
    }
    let body = body.trim();
    if body.is_empty() {
        return status.canonical_reason().unwrap_or("no message").to_owned();
    }
    match body.char_indices().nth(MAX_MESSAGE_CHARS) {
        Some((end, _)) => format!("{}...", &body[..end]),
        None => body.to_owned(),
    }
}

/// `value` as one path segment: everything but unreserved characters percent-encoded, so a
/// `/` or `?` in a player id stays part of the id. Empty values are refused here, since the
/// endpoint would answer them with a bare `404`, as if the GameServer were missing.
fn segment(what: &str, value: &str) -> Result<String> {
    if value.is_empty() {
        return Err(Error::InvalidArgument(format!("the {what} is empty")));
    }
    let mut encoded = String::with_capacity(value.len());
    for byte in value.bytes() {
        if byte.is_ascii_alphanumeric() || b"-._~".contains(&byte) {
            encoded.push(char::from(byte));
        } else {
            encoded.push_str(&format!("%{byte:02X}"));
        }
    }
    Ok(encoded)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn path_segments_keep_slashes_and_spaces_inside_the_segment() {
        assert_eq!(segment("id", "p-1.x_~").expect("valid"), "p-1.x_~");
        assert_eq!(segment("id", "a/b c?é").expect("valid"), "a%2Fb%20c%3F%C3%A9");
        assert_eq!(
            segment("player id", "").expect_err("empty").to_string(),
            "invalid argument: the player id is empty"
        );
    }

    #[test]
    fn error_messages_come_from_the_json_body_or_the_text_or_the_status() {
        let status = reqwest::StatusCode::BAD_REQUEST;
        assert_eq!(
            message_of(status, r#"{"error":"the server is full (1 players)"}"#),
            "the server is full (1 players)"
        );
        assert_eq!(message_of(status, " plain text\n"), "plain text");
        assert_eq!(message_of(status, ""), "Bad Request");
        let long = "x".repeat(500);
        assert_eq!(message_of(status, &long).len(), MAX_MESSAGE_CHARS + 3);
    }

    #[test]
    fn the_environment_names_the_missing_variable() {
        let err = Sdk::from_vars(|_| None).expect_err("no variables");
        assert_eq!(
            err.to_string(),
            "environment variable FLOTILLA_SDK_URL is not set (the operator sets it in game-server containers)"
        );
        let err = Sdk::from_vars(|name| (name == URL_ENV).then(|| "http://sdk:9358".to_owned()))
            .expect_err("no token file");
        assert!(
            matches!(err, Error::MissingEnv { name } if name == TOKEN_FILE_ENV),
            "{err}"
        );
        let sdk = Sdk::from_vars(|name| {
            Some(match name {
                URL_ENV => "http://sdk:9358/".to_owned(),
                _ => "/var/run/secrets/flotilla.dev/sdk/token".to_owned(),
            })
        })
        .expect("both set");
        assert_eq!(sdk.url(), "http://sdk:9358");
        assert_eq!(
            sdk.token,
            TokenSource::File("/var/run/secrets/flotilla.dev/sdk/token".into())
        );
    }

    #[test]
    fn urls_must_be_http_and_able_to_take_a_path() {
        let token = || TokenSource::Static("t".into());
        assert!(Sdk::new("http://127.0.0.1:9358", token()).is_ok());
        assert!(Sdk::new("https://sdk.example/prefix/", token()).is_ok());
        for bad in ["sdk:9358", "ftp://sdk", "http://sdk/?x=1", "not a url"] {
            let err = Sdk::new(bad, token()).expect_err(bad);
            assert_eq!(err.kind(), "config", "{bad}: {err}");
        }
    }

    #[test]
    fn static_tokens_are_not_printed() {
        let sdk = Sdk::new("http://sdk", TokenSource::Static("secret".into())).expect("valid");
        assert!(!format!("{sdk:?}").contains("secret"));
    }
}
