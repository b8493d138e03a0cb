//! The player service's schema, as ordered migrations (see `flotilla_storage::migrate`).
//! Never edit a released migration: add the next version.

use flotilla_storage::migrate::{Migration, Migrator};
use flotilla_storage::mongo::Mongo;

use crate::error::Result;
use flotilla_storage::page::{PageRequest, SortKey};

use crate::messages;
use crate::model::{
    ConversationEntry, FriendEdge, Identity, MatchResult, Message, Notification, Player, ReadMarker,
    RefreshToken,
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
        Migration {
            version: 4,
            name: "conversations",
            run: |mongo| Box::pin(conversations(mongo)),
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

/// The conversation list's entries, filled from the messages already sent. Safe to run again
/// after a failure halfway: an entry only ever moves to a newer message.
async fn conversations(mongo: Mongo) -> flotilla_storage::Result<()> {
    let entries = mongo.store::<ConversationEntry>();
    entries.ensure_indexes().await?;
    let messages = mongo.store::<Message>();
    let mut cursor = None;
    loop {
        let request = PageRequest::new(Some(flotilla_storage::page::MAX_PAGE), cursor);
        let page = messages
            .page(mongodb::bson::doc! {}, SortKey::ascending("_id"), &request)
            .await?;
        for message in &page.items {
            messages::record_in_conversations(&entries, message).await?;
        }
        match page.next_cursor {
            Some(next) => cursor = Some(next),
            None => return Ok(()),
        }
    }
}
