//! What every request handler shares: the stores, the Redis-backed parts, the token keys, the local
//! WebSocket connections and the settings.

use std::sync::Arc;
use std::time::Duration;

use flotilla_storage::cache::{Cache, CacheMetrics};
use flotilla_storage::model::Store;
use flotilla_storage::mongo::{Mongo, MongoOptions};
use flotilla_storage::presence::Presence;
use flotilla_storage::pubsub::Bus;
use flotilla_storage::rate_limit::{Check, Decision, Limit, RateLimiter};
use flotilla_storage::search::PlayerSearch;
use flotilla_storage::sequence::Sequence;
use prometheus_client::registry::Registry;

use crate::args::StorageArgs;
use crate::clock::Clock;
use crate::error::{Error, Result};
use crate::hub::Hub;
use crate::metrics::Metrics;
use crate::model::{
    BanRecord, ConversationEntry, FriendEdge, Identity, MatchResult, Message, Notification, Player,
    PointerStep, ReadMarker, RefreshToken, RelationshipStep, RevokedSession,
};
use crate::presence_refresh::PresenceRefresher;
use crate::tokens::TokenKeys;

pub type Shared = Arc<AppState>;

/// Presence entries outlive their last heartbeat by this much: a replica that dies takes its players
/// offline within it.
pub const PRESENCE_TTL: Duration = Duration::from_secs(30);

pub struct Config {
    pub access_token_ttl: Duration,
    pub refresh_token_ttl: Duration,
    pub friend_limit: u32,
    /// Zero: profiles are read from the database every time.
    pub profile_cache_ttl: Duration,
    /// A per-process HMAC key and the service key's tag under it: presented keys are checked with
    /// `ring::hmac::verify`, which compares in constant time.
    pub service_key: (ring::hmac::Key, ring::hmac::Tag),
    /// Sign-ins, refreshes and sign-outs go to the analytics service as session events.
    pub analytics: flotilla_service::analytics::Emitter,
    /// Where the client's address comes from behind proxies; `None`: the TCP peer.
    pub client_address: Option<ClientAddressSource>,
    pub login_per_account: Limit,
    pub login_per_address: Limit,
}

/// A header that trusted proxies append the client's address to (`X-Forwarded-For`), and how many
/// of them there are.
pub struct ClientAddressSource {
    pub header: String,
    pub trusted_hops: usize,
}

/// The database, Redis and OpenSearch handles, as the commands (serve, migrate, rebuild) need them.
#[derive(Clone)]
pub struct Storage {
    pub mongo: Mongo,
    pub redis: redis::aio::ConnectionManager,
    pub search: PlayerSearch,
    pub namespace: String,
}

impl Storage {
    pub async fn connect(args: &StorageArgs, registry: Option<&mut Registry>) -> Result<Self> {
        let mut options = MongoOptions::new(&args.mongo_url, &args.database);
        options.max_pool = args.mongo_pool;
        options.app_name = format!("flotilla-player/{}", args.replica);
        let mongo = match registry {
            Some(registry) => Mongo::connect(&options, registry).await?,
            None => Mongo::connect_unmonitored(&options).await?,
        };
        let redis = flotilla_storage::connect_redis(&args.redis_url).await?;
        let search = PlayerSearch::new(&args.opensearch_url, &args.namespace)?;
        Ok(Self {
            mongo,
            redis,
            search,
            namespace: args.namespace.clone(),
        })
    }
}

pub struct AppState {
    pub players: Store<Player>,
    pub identities: Store<Identity>,
    pub refresh_tokens: Store<RefreshToken>,
    pub revoked_sessions: Store<RevokedSession>,
    pub bans: Store<BanRecord>,
    pub relationships: Sequence<RelationshipStep>,
    pub edges: Store<FriendEdge>,
    pub pointers: Sequence<PointerStep>,
    pub messages: Store<Message>,
    pub read_markers: Store<ReadMarker>,
    pub conversations: Store<ConversationEntry>,
    pub notifications: Store<Notification>,
    pub match_results: Store<MatchResult>,
    pub profiles: Cache,
    pub presence: Presence,
    pub presence_refresher: PresenceRefresher,
    pub limiter: RateLimiter,
    pub bus: Bus,
    pub search: PlayerSearch,
    pub redis: redis::aio::ConnectionManager,
    pub tokens: TokenKeys,
    /// What tokens and sessions expire by.
    pub clock: Clock,
    pub hub: Hub,
    pub config: Config,
    pub metrics: Metrics,
    pub namespace: String,
    pub mongo: Mongo,
}

impl AppState {
    pub fn new(
        storage: Storage,
        bus: Bus,
        tokens: TokenKeys,
        config: Config,
        registry: &mut Registry,
    ) -> Self {
        let Storage {
            mongo,
            redis,
            search,
            namespace,
        } = storage;
        let cache_metrics = CacheMetrics::register(registry);
        let presence = Presence::new(redis.clone(), PRESENCE_TTL);
        Self {
            players: mongo.store(),
            identities: mongo.store(),
            refresh_tokens: mongo.store(),
            revoked_sessions: mongo.store(),
            bans: mongo.store(),
            relationships: Sequence::new(mongo.store()),
            edges: mongo.store(),
            pointers: Sequence::new(mongo.store()),
            messages: mongo.store(),
            read_markers: mongo.store(),
            conversations: mongo.store(),
            notifications: mongo.store(),
            match_results: mongo.store(),
            profiles: Cache::new(redis.clone(), "profiles", config.profile_cache_ttl, cache_metrics),
            presence: presence.clone(),
            presence_refresher: PresenceRefresher::spawn(presence),
            limiter: RateLimiter::new(redis.clone()),
            bus,
            search,
            redis,
            tokens,
            clock: Clock::default(),
            hub: Hub::default(),
            config,
            metrics: Metrics::register(registry),
            namespace,
            mongo,
        }
    }

    /// Counts an attempt against every limit in `checks` (one Redis round trip), refusing it with
    /// a 429 and its retry delay if any limit is reached.
    pub async fn limit(&self, checks: &[Check<'_>]) -> Result<()> {
        match self.limiter.check_all(checks).await? {
            Decision::Allowed { .. } => Ok(()),
            // Rounded up: a client that waits the advertised whole seconds is admitted.
            Decision::Limited { retry_after } => Err(Error::RateLimited {
                retry_after_secs: u64::try_from(retry_after.as_millis().div_ceil(1000)).unwrap_or(u64::MAX),
            }),
        }
    }

    /// Counts an attempt by `player` against a per-player `limit` in `bucket`, keyed in this
    /// deployment's namespace.
    pub async fn limit_player(&self, bucket: &'static str, player: &str, limit: Limit) -> Result<()> {
        self.limit(&[Check {
            bucket,
            key: &self.key(player),
            limit,
        }])
        .await
    }

    /// A Redis key in this deployment's namespace.
    pub fn key(&self, suffix: &str) -> String {
        format!("{}:{suffix}", self.namespace)
    }
}
