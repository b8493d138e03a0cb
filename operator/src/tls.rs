//! TLS for the allocation API, with optional client certificates (mTLS).
//!
//! Matchmakers often run outside the cluster, so allocation traffic crosses machines and is
//! encrypted. A matchmaker proves who it is in one of two ways: a client certificate signed by
//! the configured CA (the Agones way: whoever holds one may allocate), or a Kubernetes bearer
//! token checked by TokenReview and RBAC (see `allocation::auth`). Which certificates are
//! asked for is [`ClientAuth`]. The certificate files are read at start-up; a rotated Secret
//! takes effect when the pods restart.

use std::{path::Path, sync::Arc, time::Duration};

use axum::{Extension, Router};
use hyper_util::{
    rt::{TokioExecutor, TokioIo},
    server::conn::auto,
    service::TowerToHyperService,
};
use rustls::{
    RootCertStore, ServerConfig,
    pki_types::{CertificateDer, PrivateKeyDer, pem::PemObject},
    server::WebPkiClientVerifier,
};
use tokio::net::TcpListener;
use tokio_rustls::TlsAcceptor;
use tracing::debug;

use crate::error::{Error, Result};

/// How long a client may take to finish the handshake.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// Which client certificates the server asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum ClientAuth {
    /// No client certificates: every caller sends a bearer token.
    None,
    /// A certificate signed by the CA is enough; callers without one send a bearer token.
    /// Without a CA, the same as `None`.
    Optional,
    /// Every connection must present a certificate signed by the CA.
    Required,
}

/// The verified client certificate of the connection a request came on, as the SHA-256 of its
/// DER encoding in hex; absent for plain HTTP or a connection without a certificate.
#[derive(Debug, Clone)]
pub struct ClientCertificate(pub String);

/// The server's TLS configuration from PEM files.
pub fn server_config(
    cert: &Path,
    key: &Path,
    client_ca: Option<&Path>,
    client_auth: ClientAuth,
) -> Result<Arc<ServerConfig>> {
    let chain = CertificateDer::pem_file_iter(cert)
        .and_then(|certs| certs.collect::<Result<Vec<_>, _>>())
        .map_err(|e| tls_error(cert, e))?;
    let key_der = PrivateKeyDer::from_pem_file(key).map_err(|e| tls_error(key, e))?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = ServerConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(|e| Error::Tls(e.to_string()))?;
    let builder = match (client_auth, client_ca) {
        (ClientAuth::None, _) | (ClientAuth::Optional, None) => builder.with_no_client_auth(),
        (ClientAuth::Required, None) => {
            return Err(Error::Tls(format!(
                "client authentication {client_auth:?} needs a client CA"
            )));
        }
        (_, Some(ca)) => {
            let mut roots = RootCertStore::empty();
            for cert in CertificateDer::pem_file_iter(ca).map_err(|e| tls_error(ca, e))? {
                roots
                    .add(cert.map_err(|e| tls_error(ca, e))?)
                    .map_err(|e| Error::Tls(format!("{}: {e}", ca.display())))?;
            }
            let verifier = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider);
            let verifier = if client_auth == ClientAuth::Optional {
                verifier.allow_unauthenticated()
            } else {
                verifier
            };
            builder.with_client_cert_verifier(verifier.build().map_err(|e| Error::Tls(e.to_string()))?)
        }
    };
    let mut config = builder
        .with_single_cert(chain, key_der)
        .map_err(|e| Error::Tls(format!("{}: {e}", cert.display())))?;
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}

fn tls_error(path: &Path, error: impl std::fmt::Display) -> Error {
    Error::Tls(format!("{}: {error}", path.display()))
}

/// Serves `app` over TLS until the listener fails; each request carries the connection's
/// [`ClientCertificate`] as an extension when the client presented one.
pub async fn serve(listener: TcpListener, config: Arc<ServerConfig>, app: Router) -> std::io::Result<()> {
    let acceptor = TlsAcceptor::from(config);
    loop {
        let (tcp, peer) = match listener.accept().await {
            Ok(accepted) => accepted,
            // A full accept queue or a file-descriptor limit passes; keep serving.
            Err(error) => {
                debug!(%error, "accept");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let acceptor = acceptor.clone();
        let app = app.clone();
        tokio::spawn(async move {
            let tls = match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(tcp)).await {
                Ok(Ok(tls)) => tls,
                Ok(Err(error)) => return debug!(%peer, %error, "tls handshake failed"),
                Err(_) => return debug!(%peer, "tls handshake timed out"),
            };
            let certificate = tls
                .get_ref()
                .1
                .peer_certificates()
                .and_then(|chain| chain.first())
                .map(|leaf| ClientCertificate(hex_sha256(leaf)));
            let app = match certificate {
                Some(certificate) => app.layer(Extension(certificate)),
                None => app,
            };
            let service = TowerToHyperService::new(app);
            if let Err(error) = auto::Builder::new(TokioExecutor::new())
                .serve_connection_with_upgrades(TokioIo::new(tls), service)
                .await
            {
                debug!(%peer, %error, "connection");
            }
        });
    }
}

fn hex_sha256(der: &[u8]) -> String {
    ring::digest::digest(&ring::digest::SHA256, der)
        .as_ref()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}
