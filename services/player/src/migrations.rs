//! The player service's schema, as ordered migrations (see `flotilla_storage::migrate`).
//! Never edit a released migration: add the next version.

use flotilla_storage::migrate::{Migration, Migrator};
use flotilla_storage::mongo::Mongo;

use crate::error::Result;
use crate::model::{
    FriendEdge, Identity, MatchResult, Message, Notification, Player, ReadMarker, RefreshToken,
};
use crate::state::Storage;

pub fn all() -> Vec<Migration> {
    vec![
        Migration {
            version: 1,
            name: "accounts",
            run: |mongo| Box::pin(accounts(mongo)),
        },
        Migration {
            version: 2,
            name: "social",
            run: |mongo| Box::pin(social(mongo)),
        },
        Migration {
            version: 3,
            name: "match-results",
            run: |mongo| Box::pin(match_results(mongo)),
        },
    ]
}

/// Applies pending migrations (under the lease, so replicas may race here), then makes sure the
/// search index exists.
pub async fn run(storage: &Storage, holder: &str) -> Result<Vec<u32>> {
    let applied = Migrator::new(storage.mongo.clone(), all(), holder).run().await?;
    storage.search.ensure_index().await?;
    Ok(applied)
}

async fn accounts(mongo: Mongo) -> flotilla_storage::Result<()> {
    mongo.store::<Player>().ensure_indexes().await?;
    mongo.store::<Identity>().ensure_indexes().await?;
    mongo.store::<RefreshToken>().ensure_indexes().await
}

async fn social(mongo: Mongo) -> flotilla_storage::Result<()> {
    mongo.store::<FriendEdge>().ensure_indexes().await?;
    mongo.store::<Message>().ensure_indexes().await?;
    mongo.store::<ReadMarker>().ensure_indexes().await?;
    mongo.store::<Notification>().ensure_indexes().await
}

async fn match_results(mongo: Mongo) -> flotilla_storage::Result<()> {
    mongo.store::<MatchResult>().ensure_indexes().await
}
