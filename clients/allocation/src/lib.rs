//! A client of the Flotilla allocation API (docs/allocation.md), for matchmakers.
//!
//! ```no_run
//! # async fn run() -> Result<(), flotilla_allocation_client::Error> {
//! use flotilla_allocation_client::{AllocationClient, AllocationRequest};
//! let client = AllocationClient::new("https://flotilla-allocator.flotilla-system.svc", "token")?;
//! let request = AllocationRequest {
//!     fleet: Some("arena".into()),
//!     session_id: Some("match-42".into()),
//!     players: vec!["ann".into(), "ben".into()],
//!     ..Default::default()
//! };
//! let answer = client.allocate("games", &request).await?;
//! println!("{}:{} {:?}", answer.address, answer.ports[0].port, answer.tokens.keys());
//! # Ok(()) }
//! ```
//!
//! A `429` comes back as [`Error::NoCapacity`] with the server's `Retry-After`;
//! [`AllocationClient::allocate_with_retry`] waits and retries for a while, with an idempotency
//! key so a retry after a lost answer cannot take a second server.

use std::time::Duration;

pub use flotilla_api::allocation::{
    AllocationMetadata, AllocationRequest, AllocationResponse, AllocationState,
};
use thiserror::Error;

#[derive(Debug, Error)]
pub enum Error {
    #[error("invalid allocation URL {0:?}")]
    Url(String),
    #[error("allocation request failed: {0}")]
    Transport(#[from] reqwest::Error),
    #[error("no capacity: {message} (retry after {retry_after:?})")]
    NoCapacity { message: String, retry_after: Duration },
    #[error("bad request ({field}): {message}")]
    BadRequest { field: String, message: String },
    #[error("not found: {0}")]
    NotFound(String),
    #[error("unauthenticated: {0}")]
    Unauthenticated(String),
    #[error("forbidden: {0}")]
    Forbidden(String),
    #[error("allocation failed with {status}: {message}")]
    Server { status: u16, message: String },
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

/// How the client reaches and proves itself to the allocation API beyond the URL.
#[derive(Debug, Clone, Default)]
pub struct ClientOptions {
    /// A Kubernetes token with audience `flotilla.dev/allocation` whose subject may create
    /// `gameserverallocations` in the namespace. Not needed with a client certificate.
    pub token: Option<String>,
    /// PEM CA certificates to trust for the server (the chart's `ca.crt`), instead of the
    /// system roots.
    pub ca_pem: Option<Vec<u8>>,
    /// A PEM client certificate chain followed by its private key, for mTLS.
    pub identity_pem: Option<Vec<u8>>,
    /// Connect to this address for the URL's host name while still checking the certificate
    /// against that name (like `curl --resolve`): for a Service reached by its ClusterIP.
    pub resolve: Option<(String, std::net::SocketAddr)>,
}

#[derive(Clone)]
pub struct AllocationClient {
    http: reqwest::Client,
    base: String,
    token: Option<String>,
}

impl std::fmt::Debug for AllocationClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never print the token.
        f.debug_struct("AllocationClient")
            .field("base", &self.base)
            .finish_non_exhaustive()
    }
}

impl AllocationClient {
    /// `base` is the allocation service (`https://host`); `token` a Kubernetes token with
    /// audience `flotilla.dev/allocation` whose subject may create `gameserverallocations`.
    pub fn new(base: &str, token: &str) -> Result<Self> {
        Self::with_options(
            base,
            ClientOptions {
                token: Some(token.to_owned()),
                ..Default::default()
            },
        )
    }

    /// A client with TLS trust, a client certificate or an address override.
    pub fn with_options(base: &str, options: ClientOptions) -> Result<Self> {
        let base = base.trim_end_matches('/').to_owned();
        if !(base.starts_with("http://") || base.starts_with("https://")) {
            return Err(Error::Url(base));
        }
        let mut builder = reqwest::Client::builder().timeout(Duration::from_secs(10));
        if let Some(pem) = &options.ca_pem {
            builder = builder.tls_built_in_root_certs(false);
            for certificate in reqwest::Certificate::from_pem_bundle(pem)? {
                builder = builder.add_root_certificate(certificate);
            }
        }
        if let Some(pem) = &options.identity_pem {
            builder = builder.identity(reqwest::Identity::from_pem(pem)?);
        }
        if let Some((host, address)) = &options.resolve {
            builder = builder.resolve(host, *address);
        }
        Ok(Self {
            http: builder.build()?,
            base,
            token: options.token.map(|t| t.trim().to_owned()),
        })
    }

    pub async fn allocate(&self, namespace: &str, request: &AllocationRequest) -> Result<AllocationResponse> {
        let url = format!("{}/allocation/v1/namespaces/{namespace}/allocations", self.base);
        let mut post = self.http.post(url).json(request);
        if let Some(token) = &self.token {
            post = post.bearer_auth(token);
        }
        let response = post.send().await?;
        let status = response.status().as_u16();
        let retry_after = response
            .headers()
            .get("retry-after")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse().ok())
            .map_or(Duration::from_secs(1), Duration::from_secs);
        if response.status().is_success() {
            return Ok(response.json().await?);
        }
        let body: serde_json::Value = response.json().await.unwrap_or_default();
        let message = body["error"].as_str().unwrap_or_default().to_owned();
        Err(match status {
            400 => Error::BadRequest {
                field: body["field"].as_str().unwrap_or_default().to_owned(),
                message,
            },
            401 => Error::Unauthenticated(message),
            403 => Error::Forbidden(message),
            404 => Error::NotFound(message),
            429 => Error::NoCapacity { message, retry_after },
            _ => Error::Server { status, message },
        })
    }

    /// Retries on `429` (honouring `Retry-After`) and transport errors until `patience` runs
    /// out. Without an idempotency key, one derived from the session is used, so a retried
    /// request never takes a second server.
    pub async fn allocate_with_retry(
        &self,
        namespace: &str,
        request: &AllocationRequest,
        patience: Duration,
    ) -> Result<AllocationResponse> {
        let mut request = request.clone();
        if request.idempotency_key.is_none() {
            request.idempotency_key = request.session_id.as_ref().map(|s| format!("session-{s}"));
        }
        let deadline = tokio::time::Instant::now() + patience;
        loop {
            let wait = match self.allocate(namespace, &request).await {
                Err(Error::NoCapacity { retry_after, .. }) => retry_after,
                Err(Error::Transport(_)) => Duration::from_millis(500),
                other => return other,
            };
            if tokio::time::Instant::now() + wait > deadline {
                return self.allocate(namespace, &request).await;
            }
            tokio::time::sleep(wait).await;
        }
    }
}
