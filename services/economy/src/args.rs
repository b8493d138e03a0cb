//! Command-line arguments, each with an environment-variable fallback (how the chart configures it).

use std::net::SocketAddr;
use std::path::PathBuf;

use clap::{Parser, Subcommand};

#[derive(Debug, Parser)]
#[command(name = "flotilla-economy", version, about = "Flotilla's economy service")]
pub struct Args {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Serve the HTTP API, the recovery worker and the continuous audit.
    Serve(Box<ServeArgs>),
    /// Check a catalog document and exit: 0 when it would load, else the field that is wrong.
    CheckCatalog { path: PathBuf },
    /// Recompute the books from every stored record and print the audit; exit 1 when not clean.
    Audit(StorageArgs),
}

#[derive(Debug, clap::Args, Clone)]
pub struct StorageArgs {
    #[arg(long, env = "FLOTILLA_MONGO_URL")]
    pub mongo_url: String,
    #[arg(long, env = "FLOTILLA_MONGO_DATABASE", default_value = "flotilla")]
    pub database: String,
    /// Connections per replica; size it to the requests a replica serves at once.
    #[arg(long, env = "FLOTILLA_MONGO_POOL", default_value_t = 64)]
    pub mongo_pool: u32,
    /// This replica's name (the pod name), in the recovery lease and logs.
    #[arg(long, env = "POD_NAME", default_value = "flotilla-economy")]
    pub replica: String,
}

#[derive(Debug, clap::Args)]
pub struct ServeArgs {
    #[command(flatten)]
    pub storage: StorageArgs,

    #[arg(long, env = "FLOTILLA_REDIS_URL")]
    pub redis_url: String,

    /// OpenSearch, where market listings are indexed for browsing (`{namespace}-market-listings`).
    #[arg(long, env = "FLOTILLA_OPENSEARCH_URL")]
    pub opensearch_url: String,

    /// The player service's namespace: its revoked sessions are checked in Redis under it.
    #[arg(long, env = "FLOTILLA_NAMESPACE", default_value = "flotilla")]
    pub namespace: String,

    #[arg(long, env = "FLOTILLA_ECONOMY_ADDR", default_value = "0.0.0.0:8080")]
    pub addr: SocketAddr,

    /// Where `/metrics`, `/healthz` and `/readyz` are served (kept off the public port).
    #[arg(long, env = "FLOTILLA_ECONOMY_METRICS_ADDR", default_value = "0.0.0.0:9090")]
    pub metrics_addr: SocketAddr,

    /// The catalog document (YAML or JSON; a mounted ConfigMap). Re-read when it changes; a catalog
    /// that fails validation is refused and the running one stays.
    #[arg(long, env = "FLOTILLA_ECONOMY_CATALOG")]
    pub catalog: PathBuf,

    /// The player service's token verification keys (base64 Ed25519 public keys, comma-separated).
    #[arg(long, env = "FLOTILLA_PLAYER_TOKEN_KEYS", value_delimiter = ',')]
    pub player_token_keys: Vec<String>,

    /// Or where to fetch them: the player service's base URL (`GET /v1/auth/keys`).
    #[arg(long, env = "FLOTILLA_PLAYER_URL")]
    pub player_url: Option<String>,

    /// The key game servers and back-ends present for grants (at least 16 characters).
    #[arg(long, env = "FLOTILLA_SERVICE_KEY", hide_env_values = true)]
    pub service_key: String,

    /// The key admins present (at least 16 characters).
    #[arg(long, env = "FLOTILLA_ECONOMY_ADMIN_KEY", hide_env_values = true)]
    pub admin_key: String,

    /// The analytics service's URL: each committed purchase, grant, consumption and gift is sent
    /// there as resource events, one per currency leg (with the service key). None: not sent.
    #[arg(long, env = "FLOTILLA_ANALYTICS_URL")]
    pub analytics_url: Option<String>,

    /// Transactions unfinished for this long are completed or voided by the recovery worker.
    #[arg(long, env = "FLOTILLA_ECONOMY_RECOVERY_GRACE_SECONDS", default_value_t = 30)]
    pub recovery_grace_seconds: u64,

    /// Seconds between recovery rounds (on the replica that holds the lease).
    #[arg(long, env = "FLOTILLA_ECONOMY_RECOVERY_INTERVAL_SECONDS", default_value_t = 5)]
    pub recovery_interval_seconds: u64,

    /// What a reversal does when the proceeds were spent, unless the request says: `fail`,
    /// `debt` (the payer's balance goes below zero) or `clawback` (take what is left).
    #[arg(
        long,
        env = "FLOTILLA_ECONOMY_REVERSAL_POLICY",
        value_enum,
        default_value = "fail"
    )]
    pub reversal_policy: crate::reversals::Policy,

    /// Seconds between audits of the whole ledger (0: never). Each reads every record.
    #[arg(long, env = "FLOTILLA_ECONOMY_AUDIT_INTERVAL_SECONDS", default_value_t = 300)]
    pub audit_interval_seconds: u64,
}
