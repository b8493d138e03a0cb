//! Command-line arguments, each with an environment-variable fallback.

use std::{net::SocketAddr, path::PathBuf};

use clap::Parser;

#[derive(Debug, Parser)]
#[command(
    name = "flotilla-operator",
    version,
    about = "Runs fleets of game servers on Kubernetes"
)]
pub struct Args {
    /// Watch only this namespace (default: all namespaces).
    #[arg(long, env = "FLOTILLA_WATCH_NAMESPACE")]
    pub namespace: Option<String>,

    /// Where the SDK endpoint listens.
    #[arg(long, env = "FLOTILLA_SDK_ADDR", default_value = "0.0.0.0:9358")]
    pub sdk_addr: SocketAddr,

    /// Where `/metrics`, `/healthz` and `/readyz` are served.
    #[arg(long, env = "FLOTILLA_METRICS_ADDR", default_value = "0.0.0.0:8080")]
    pub metrics_addr: SocketAddr,

    /// Elect a leader among replicas with a Lease; off only for a single replica.
    #[arg(long, env = "FLOTILLA_LEADER_ELECTION", default_value_t = true, action = clap::ArgAction::Set)]
    pub leader_election: bool,

    /// Namespace of the leader-election Lease (the operator's own namespace in a pod).
    #[arg(long, env = "POD_NAMESPACE", default_value = "default")]
    pub lease_namespace: String,

    /// Name of the leader-election Lease.
    #[arg(long, env = "FLOTILLA_LEASE_NAME", default_value = "flotilla-operator")]
    pub lease_name: String,

    /// How long a lease lasts without renewal: the longest a crashed leader goes unreplaced.
    #[arg(long, env = "FLOTILLA_LEASE_SECONDS", default_value_t = 15)]
    pub lease_seconds: u64,

    /// This replica's identity in the lease (the pod name in a pod).
    #[arg(long, env = "POD_NAME")]
    pub identity: Option<String>,

    /// The SDK endpoint's URL as game-server pods reach it (the operator's Service).
    #[arg(
        long,
        env = "FLOTILLA_SDK_URL",
        default_value = "http://flotilla-operator.flotilla-system.svc:9358"
    )]
    pub sdk_url: String,

    /// Where the allocation API listens.
    #[arg(long, env = "FLOTILLA_ALLOCATION_ADDR", default_value = "0.0.0.0:8443")]
    pub allocation_addr: SocketAddr,

    /// The Secret (in the lease namespace) holding the connection-token signing key; created
    /// with a new key when missing.
    #[arg(
        long,
        env = "FLOTILLA_SIGNING_KEY_SECRET",
        default_value = "flotilla-token-signing-key"
    )]
    pub signing_key_secret: String,

    /// Split allocation candidates between the live replicas (each reaches for its own share
    /// first). Off only to measure what it saves.
    #[arg(long, env = "FLOTILLA_ALLOCATION_PARTITIONS", default_value_t = true, action = clap::ArgAction::Set)]
    pub allocation_partitions: bool,

    /// How long players' connection tokens are valid.
    #[arg(long, env = "FLOTILLA_TOKEN_SECONDS", default_value_t = 600)]
    pub token_seconds: u64,

    /// Take the SDK URL from this Service's ClusterIP (in the lease namespace) instead of
    /// `--sdk-url`; the chart sets it to its leader-only SDK Service.
    #[arg(long, env = "FLOTILLA_SDK_SERVICE")]
    pub sdk_service: Option<String>,

    /// Label this replica's pod (named by `--identity`) `flotilla.dev/leader=true` while it
    /// leads, so a Service can send SDK traffic to the leader only.
    #[arg(long, env = "FLOTILLA_LABEL_LEADER_POD", default_value_t = false, action = clap::ArgAction::Set)]
    pub label_leader_pod: bool,

    /// Serve the allocation API over TLS with this certificate chain (PEM); plain HTTP without.
    #[arg(long, env = "FLOTILLA_ALLOCATION_TLS_CERT", requires = "allocation_tls_key")]
    pub allocation_tls_cert: Option<PathBuf>,

    /// The private key of `--allocation-tls-cert` (PEM).
    #[arg(long, env = "FLOTILLA_ALLOCATION_TLS_KEY", requires = "allocation_tls_cert")]
    pub allocation_tls_key: Option<PathBuf>,

    /// CA certificates (PEM) that sign matchmakers' client certificates.
    #[arg(long, env = "FLOTILLA_ALLOCATION_CLIENT_CA")]
    pub allocation_client_ca: Option<PathBuf>,

    /// Which client certificates the allocation API asks for (with TLS only).
    #[arg(
        long,
        env = "FLOTILLA_ALLOCATION_CLIENT_AUTH",
        value_enum,
        default_value = "optional"
    )]
    pub allocation_client_auth: crate::tls::ClientAuth,
}
