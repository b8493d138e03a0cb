//! The MongoDB connection: pool sizing, timeouts, pool metrics, and the retry rule for writes.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use mongodb::event::EventHandler;
use mongodb::event::cmap::CmapEvent;
use mongodb::options::ClientOptions;
use mongodb::{Client, Database, bson::doc};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

use crate::Result;
use crate::model::{Model, Store};

/// How to reach the database. Defaults suit one service replica; raise `max_pool` with the request
/// concurrency a replica is expected to carry.
#[derive(Clone, Debug)]
pub struct MongoOptions {
    pub url: String,
    pub database: String,
    pub app_name: String,
    pub max_pool: u32,
    pub min_pool: u32,
    /// Bounds connecting, choosing a server and each command, so a dead database turns into an error
    /// a request can answer with instead of a hung request.
    pub timeout: Duration,
}

impl MongoOptions {
    pub fn new(url: impl Into<String>, database: impl Into<String>) -> Self {
        Self {
            url: url.into(),
            database: database.into(),
            app_name: "flotilla".into(),
            max_pool: 32,
            min_pool: 2,
            timeout: Duration::from_secs(5),
        }
    }
}

/// Connection-pool gauges, fed by the driver's connection-monitoring events.
#[derive(Clone, Default)]
struct PoolMetrics {
    open: Gauge,
    in_use: Gauge,
    max: Gauge,
    checkout_failures: Counter,
}

impl PoolMetrics {
    fn register(&self, registry: &mut Registry) {
        registry.register(
            "flotilla_mongo_pool_open_connections",
            "Connections open to MongoDB",
            self.open.clone(),
        );
        registry.register(
            "flotilla_mongo_pool_in_use_connections",
            "Connections checked out by a request",
            self.in_use.clone(),
        );
        registry.register(
            "flotilla_mongo_pool_max_connections",
            "Configured pool size",
            self.max.clone(),
        );
        registry.register(
            "flotilla_mongo_pool_checkout_failures",
            "Requests that could not get a connection (pool exhausted past the timeout, or the server down)",
            self.checkout_failures.clone(),
        );
    }

    fn observe(&self, event: CmapEvent) {
        match event {
            CmapEvent::ConnectionCreated(_) => {
                self.open.inc();
            }
            CmapEvent::ConnectionClosed(_) => {
                self.open.dec();
            }
            CmapEvent::ConnectionCheckedOut(_) => {
                self.in_use.inc();
            }
            CmapEvent::ConnectionCheckedIn(_) => {
                self.in_use.dec();
            }
            CmapEvent::ConnectionCheckoutFailed(_) => {
                self.checkout_failures.inc();
            }
            _ => {}
        }
    }
}

/// A connected database. Cheap to clone: clones share the pool.
#[derive(Clone)]
pub struct Mongo {
    database: Database,
}

impl Mongo {
    /// Connects and pings, so a wrong address fails at start-up rather than on the first request.
    pub async fn connect(options: &MongoOptions, registry: &mut Registry) -> Result<Self> {
        let metrics = PoolMetrics::default();
        metrics.register(registry);
        Self::connect_with(options, metrics).await
    }

    /// Connects without registering metrics: for commands (migrate, backup) and tests.
    pub async fn connect_unmonitored(options: &MongoOptions) -> Result<Self> {
        Self::connect_with(options, PoolMetrics::default()).await
    }

    async fn connect_with(options: &MongoOptions, metrics: PoolMetrics) -> Result<Self> {
        let mut client_options = ClientOptions::parse(&options.url).await?;
        client_options.app_name = Some(options.app_name.clone());
        client_options.max_pool_size = Some(options.max_pool);
        client_options.min_pool_size = Some(options.min_pool.min(options.max_pool));
        client_options.connect_timeout = Some(options.timeout);
        client_options.server_selection_timeout = Some(options.timeout);
        client_options.max_idle_time = Some(Duration::from_secs(300));
        // The driver's retryable writes need server sessions with transaction numbers, which FerretDB
        // does not keep. Flotilla retries writes itself, and only the idempotent ones (see `retry`).
        client_options.retry_writes = Some(false);
        client_options.retry_reads = Some(true);
        metrics.max.set(i64::from(options.max_pool));
        let sink = Arc::new(metrics);
        client_options.cmap_event_handler = Some(EventHandler::callback(move |event| sink.observe(event)));
        let client = Client::with_options(client_options)?;
        let mongo = Self {
            database: client.database(&options.database),
        };
        mongo.ping().await?;
        Ok(mongo)
    }

    pub fn database(&self) -> &Database {
        &self.database
    }

    /// The typed store for one model's collection.
    pub fn store<M: Model>(&self) -> Store<M> {
        Store::new(&self.database)
    }

    pub async fn ping(&self) -> Result<()> {
        self.database.run_command(doc! {"ping": 1}).await?;
        Ok(())
    }
}

/// Runs an idempotent operation, retrying it when the failure was in transport (a dropped connection,
/// no server reachable) rather than an answer from the server. Only idempotent operations may come
/// here: a retried `$inc` whose first attempt did land would count twice.
pub async fn retry<T, F, Fut>(mut operation: F) -> Result<T>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T>>,
{
    const ATTEMPTS: u32 = 3;
    let mut delay = Duration::from_millis(50);
    let mut attempt = 1;
    loop {
        match operation().await {
            Err(error) if attempt < ATTEMPTS && error.is_transient() => {
                tracing::warn!(attempt, %error, "retrying an idempotent database operation");
                tokio::time::sleep(delay).await;
                delay *= 4;
                attempt += 1;
            }
            other => return other,
        }
    }
}

/// Milliseconds since the Unix epoch: how every stored timestamp is kept, so expiry checks are plain
/// integer comparisons that FerretDB evaluates like MongoDB does.
pub fn now_ms() -> i64 {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    i64::try_from(now.as_millis()).unwrap_or(i64::MAX)
}
