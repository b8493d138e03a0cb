//! What every request handler shares: the ledger, the catalog in use, the keys that identify
//! callers, and the metrics.

use std::sync::{Arc, RwLock};

use flotilla_player::remote::PlayerTokens;
use flotilla_storage::model::Store;
use flotilla_storage::mongo::Mongo;

use crate::auctions::Auctions;
use crate::caller::Keys;
use crate::catalog::Catalog;
use crate::instances::Instance;
use crate::ledger::engine::Ledger;
use crate::ledger::mongo::MongoLedger;
use crate::market::Market;
use crate::metrics::Metrics;
use crate::players::Players;
use crate::reversals::Policy;
use crate::trades::Trades;

pub type Shared = Arc<AppState>;

pub struct AppState {
    pub ledger: Ledger<MongoLedger>,
    /// Unique items' records: what each instance is ([`crate::instances`]).
    pub instances: Store<Instance>,
    pub market: Market,
    pub trades: Trades,
    pub auctions: Auctions,
    /// The player service, when `--player-url` names it: trades and gifts check players with it.
    pub players: Option<Players>,
    pub mongo: Mongo,
    pub redis: redis::aio::ConnectionManager,
    /// The player service's namespace in Redis (revoked sessions).
    pub namespace: String,
    pub keys: Keys,
    pub metrics: Metrics,
    /// What a reversal does when the proceeds were spent, unless its request says.
    pub reversal_policy: Policy,
    catalog: RwLock<Arc<Catalog>>,
    /// Checks players' access tokens.
    pub tokens: Arc<PlayerTokens>,
}

impl AppState {
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        ledger: Ledger<MongoLedger>,
        market: Market,
        players: Option<Players>,
        mongo: Mongo,
        redis: redis::aio::ConnectionManager,
        namespace: String,
        keys: Keys,
        metrics: Metrics,
        catalog: Catalog,
        tokens: Arc<PlayerTokens>,
        reversal_policy: Policy,
    ) -> Self {
        metrics.catalog_version.set(catalog.version as i64);
        Self {
            ledger,
            instances: mongo.store(),
            market,
            trades: Trades::new(&mongo),
            auctions: Auctions::new(&mongo),
            players,
            mongo,
            redis,
            namespace,
            keys,
            metrics,
            reversal_policy,
            catalog: RwLock::new(Arc::new(catalog)),
            tokens,
        }
    }

    /// The catalog in use. A request keeps the one it started with, whatever reloads meanwhile.
    pub fn catalog(&self) -> Arc<Catalog> {
        self.catalog
            .read()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .clone()
    }

    pub fn set_catalog(&self, catalog: Catalog) {
        self.metrics.catalog_version.set(catalog.version as i64);
        *self
            .catalog
            .write()
            .unwrap_or_else(|poisoned| poisoned.into_inner()) = Arc::new(catalog);
    }
}
