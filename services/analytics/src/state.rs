//! What every request handler and the pipeline share.

use std::sync::Arc;

use flotilla_player::remote::PlayerTokens;

use crate::caller::Keys as CallerKeys;
use crate::event::Limits;
use crate::log::RedisLog;
use crate::metrics::Metrics;
use crate::pipeline::{Keys, Settings};
use crate::schemas::Registry;
use crate::store::EventStore;

pub type Shared = Arc<AppState>;

pub struct AppState {
    pub log: RedisLog,
    /// The durable Redis: the log's engine and the pipeline's state.
    pub log_redis: redis::aio::ConnectionManager,
    pub store: EventStore,
    pub keys: Keys,
    pub caller_keys: CallerKeys,
    pub tokens: Arc<PlayerTokens>,
    pub metrics: Metrics,
    pub limits: Limits,
    pub schemas: Registry,
    pub max_events_per_minute: u64,
    pub settings: Settings,
    /// The game of batches that name none.
    pub game: String,
}
