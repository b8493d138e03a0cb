//! Command-line arguments, each with an environment-variable fallback (how the chart configures it).

use std::net::SocketAddr;
use std::path::PathBuf;

use clap::{Parser, Subcommand};

#[derive(Debug, Parser)]
#[command(name = "flotilla-analytics", version, about = "Flotilla's analytics service")]
pub struct Args {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Serve the collector and the admin API, and work this replica's share of the pipeline.
    Serve(Box<ServeArgs>),
}

#[derive(Debug, clap::Args, Clone)]
pub struct ServeArgs {
    /// The player service's Redis: revoked sessions are checked there.
    #[arg(long, env = "FLOTILLA_REDIS_URL")]
    pub redis_url: String,

    /// The durable Redis of the log and the pipeline's state (offsets, seen ids, the file
    /// manifest, live counters). Must run with `appendonly yes` and `appendfsync always`.
    #[arg(long, env = "FLOTILLA_ANALYTICS_LOG_REDIS_URL")]
    pub log_redis_url: String,

    /// Start even when the log's Redis could lose acknowledged batches (development only).
    #[arg(long, env = "FLOTILLA_ANALYTICS_ALLOW_VOLATILE_LOG")]
    pub allow_volatile_log: bool,

    /// Where the event store's Parquet files are kept (a persistent volume).
    #[arg(long, env = "FLOTILLA_ANALYTICS_DATA_DIR")]
    pub data_dir: PathBuf,

    /// The player service's namespace (revoked sessions), also the prefix of this service's keys.
    #[arg(long, env = "FLOTILLA_NAMESPACE", default_value = "flotilla")]
    pub namespace: String,

    /// The game of batches that do not name one.
    #[arg(long, env = "FLOTILLA_ANALYTICS_GAME", default_value = "default")]
    pub game: String,

    /// Shards of the log: the most replicas that can process at once. Fixed for a deployment.
    #[arg(long, env = "FLOTILLA_ANALYTICS_SHARDS", default_value_t = 8)]
    pub shards: u32,

    #[arg(long, env = "FLOTILLA_ANALYTICS_ADDR", default_value = "0.0.0.0:8080")]
    pub addr: SocketAddr,

    /// Where `/metrics`, `/healthz` and `/readyz` are served (kept off the public port).
    #[arg(long, env = "FLOTILLA_ANALYTICS_METRICS_ADDR", default_value = "0.0.0.0:9090")]
    pub metrics_addr: SocketAddr,

    /// The player service's token verification keys (base64 Ed25519 public keys, comma-separated).
    #[arg(long, env = "FLOTILLA_PLAYER_TOKEN_KEYS", value_delimiter = ',')]
    pub player_token_keys: Vec<String>,

    /// Or where to fetch them: the player service's base URL (`GET /v1/auth/keys`).
    #[arg(long, env = "FLOTILLA_PLAYER_URL")]
    pub player_url: Option<String>,

    /// The key game servers and back-ends present (at least 16 characters).
    #[arg(long, env = "FLOTILLA_SERVICE_KEY", hide_env_values = true)]
    pub service_key: String,

    /// The key admins and dashboards present (at least 16 characters).
    #[arg(long, env = "FLOTILLA_ANALYTICS_ADMIN_KEY", hide_env_values = true)]
    pub admin_key: String,

    /// This replica's name (the pod name), in shard leases and logs.
    #[arg(long, env = "POD_NAME", default_value = "flotilla-analytics")]
    pub replica: String,

    /// Events a player may send per minute; the rest are kept but flagged `flood`, out of KPIs.
    #[arg(long, env = "FLOTILLA_ANALYTICS_MAX_EVENTS_PER_MINUTE", default_value_t = 600)]
    pub max_events_per_minute: u64,

    /// Events whose client time is older than this many days are quarantined: kept, counted
    /// as `late`, not in KPIs.
    #[arg(long, env = "FLOTILLA_ANALYTICS_MAX_EVENT_AGE_DAYS", default_value_t = 7)]
    pub max_event_age_days: u32,

    #[arg(long, env = "FLOTILLA_ANALYTICS_MAX_PROPERTIES", default_value_t = 32)]
    pub max_properties: usize,

    #[arg(long, env = "FLOTILLA_ANALYTICS_MAX_STRING_BYTES", default_value_t = 256)]
    pub max_string_bytes: usize,

    /// Work a share of the pipeline; false: collect only (collectors and processors scaled apart).
    #[arg(long, env = "FLOTILLA_ANALYTICS_PIPELINE", default_value_t = true, action = clap::ArgAction::Set)]
    pub pipeline: bool,

    /// A shard lease lasts this long without renewal: how soon a dead replica's shards move.
    #[arg(long, env = "FLOTILLA_ANALYTICS_LEASE_SECONDS", default_value_t = 10)]
    pub lease_seconds: u64,

    /// Log records processed per chunk (one file per partition and chunk).
    #[arg(long, env = "FLOTILLA_ANALYTICS_CHUNK_RECORDS", default_value_t = 200)]
    pub chunk_records: usize,
}
