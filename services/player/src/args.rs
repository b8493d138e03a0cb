//! Command-line arguments, each with an environment-variable fallback (how the chart configures it).

use std::net::SocketAddr;
use std::path::PathBuf;

use clap::{Parser, Subcommand};

#[derive(Debug, Parser)]
#[command(name = "flotilla-player", version, about = "Flotilla's player service")]
pub struct Args {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Serve the HTTP/WebSocket API.
    Serve(Box<ServeArgs>),
    /// Apply pending database migrations and exit.
    Migrate(StorageArgs),
    /// Rebuild the player search index from the database.
    SearchRebuild(StorageArgs),
    /// Print a new token signing key (PKCS#8, base64) for `--token-key`.
    GenerateTokenKey,
}

#[derive(Debug, clap::Args, Clone)]
pub struct StorageArgs {
    #[arg(long, env = "FLOTILLA_MONGO_URL")]
    pub mongo_url: String,
    #[arg(long, env = "FLOTILLA_MONGO_DATABASE", default_value = "flotilla")]
    pub database: String,
    /// Connections per replica; size it to the requests a replica serves at once.
    #[arg(long, env = "FLOTILLA_MONGO_POOL", default_value_t = 32)]
    pub mongo_pool: u32,
    #[arg(long, env = "FLOTILLA_REDIS_URL")]
    pub redis_url: String,
    #[arg(long, env = "FLOTILLA_OPENSEARCH_URL")]
    pub opensearch_url: String,
    /// Prefixes the search index, Redis channels and keys, so deployments can share servers.
    #[arg(long, env = "FLOTILLA_NAMESPACE", default_value = "flotilla")]
    pub namespace: String,
    /// This replica's name (the pod name), in migration locks and logs.
    #[arg(long, env = "POD_NAME", default_value = "flotilla-player")]
    pub replica: String,
}

#[derive(Debug, clap::Args)]
pub struct ServeArgs {
    #[command(flatten)]
    pub storage: StorageArgs,

    #[arg(long, env = "FLOTILLA_PLAYER_ADDR", default_value = "0.0.0.0:8080")]
    pub addr: SocketAddr,

    /// Where `/metrics`, `/healthz` and `/readyz` are served (kept off the public port).
    #[arg(long, env = "FLOTILLA_PLAYER_METRICS_ADDR", default_value = "0.0.0.0:9090")]
    pub metrics_addr: SocketAddr,

    /// Apply pending migrations before serving (safe with several replicas: they take turns).
    #[arg(long, env = "FLOTILLA_MIGRATE", default_value_t = false, action = clap::ArgAction::Set)]
    pub migrate: bool,

    /// The access-token signing key: Ed25519 PKCS#8, base64 (`flotilla-player generate-token-key`).
    /// Every replica must have the same one.
    #[arg(long, env = "FLOTILLA_TOKEN_KEY", hide_env_values = true)]
    pub token_key: Option<String>,

    /// A file holding the signing key instead (a mounted Secret).
    #[arg(long, env = "FLOTILLA_TOKEN_KEY_FILE")]
    pub token_key_file: Option<PathBuf>,

    /// Former public keys (base64, comma-separated) still accepted while their tokens live out.
    #[arg(long, env = "FLOTILLA_TOKEN_PREVIOUS_KEYS", value_delimiter = ',')]
    pub token_previous_keys: Vec<String>,

    /// Credential game servers and operators present to the service endpoints (match results, bans).
    #[arg(long, env = "FLOTILLA_SERVICE_KEY", hide_env_values = true)]
    pub service_key: String,

    /// The analytics service's URL: sign-ins, token refreshes and sign-outs are sent there as
    /// session events (with the service key). None: not sent.
    #[arg(long, env = "FLOTILLA_ANALYTICS_URL")]
    pub analytics_url: Option<String>,

    #[arg(long, env = "FLOTILLA_ACCESS_TOKEN_SECONDS", default_value_t = 900)]
    pub access_token_seconds: u64,

    #[arg(long, env = "FLOTILLA_REFRESH_TOKEN_DAYS", default_value_t = 30)]
    pub refresh_token_days: u64,

    /// How long profiles stay in the Redis read-through cache; 0 turns the cache off.
    #[arg(long, env = "FLOTILLA_PROFILE_CACHE_SECONDS", default_value_t = 300)]
    pub profile_cache_seconds: u64,

    #[arg(long, env = "FLOTILLA_FRIEND_LIMIT", default_value_t = 500)]
    pub friend_limit: u32,

    /// Take the client address from this header (set by a trusted ingress), for per-address limits.
    #[arg(long, env = "FLOTILLA_CLIENT_IP_HEADER")]
    pub client_ip_header: Option<String>,

    /// How many proxies in front of the service append to the client-address header: the address
    /// used is that many entries from the right, since entries to its left are the client's to
    /// choose.
    #[arg(long, env = "FLOTILLA_TRUSTED_PROXY_HOPS", default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..=16))]
    pub trusted_proxy_hops: u32,

    /// Login attempts allowed per account per 5 minutes.
    #[arg(long, env = "FLOTILLA_LOGIN_LIMIT_ACCOUNT", default_value_t = 10)]
    pub login_limit_account: u32,

    /// Login attempts allowed per client address per minute.
    #[arg(long, env = "FLOTILLA_LOGIN_LIMIT_ADDRESS", default_value_t = 60)]
    pub login_limit_address: u32,
}
