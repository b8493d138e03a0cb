//! The player service's schema, as ordered migrations (see `flotilla_storage::migrate`).
//! Never edit a released migration: add the next version.

use flotilla_storage::migrate::{Migration, Migrator};
use flotilla_storage::mongo::Mongo;

use crate::error::Result;
use flotilla_storage::page::{PageRequest, SortKey};
use flotilla_storage::sequence::Sequence;
use mongodb::bson::doc;

use crate::messages;
use crate::model::{
    BanRecord, ConversationEntry, FriendEdge, Identity, MatchResult, Message, Notification, Player,
    PointerStep, ReadMarker, RefreshToken, RelationshipStep, RevokedSession,
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
        Migration {
            version: 5,
            name: "atomic-writes",
            run: |mongo| Box::pin(atomic_writes(mongo)),
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
    let pointers = Sequence::new(mongo.store::<PointerStep>());
    pointers.store().ensure_indexes().await?;
    let messages = mongo.store::<Message>();
    let mut cursor = None;
    loop {
        let request = PageRequest::new(Some(flotilla_storage::page::MAX_PAGE), cursor);
        let page = messages
            .page(mongodb::bson::doc! {}, SortKey::ascending("_id"), &request)
            .await?;
        for message in &page.items {
            messages::record_in_conversations(&pointers, &entries, message).await?;
        }
        match page.next_cursor {
            Some(next) => cursor = Some(next),
            None => return Ok(()),
        }
    }
}

/// What changed when every write became atomic on FerretDB (docs/storage.md, "Writes that hold
/// under concurrency"): refresh tokens are numbered within their family instead of marked used, bans
/// have their own collection, and relationships and message pointers are sequences. Safe to run
/// again after a failure halfway.
async fn atomic_writes(mongo: Mongo) -> flotilla_storage::Result<()> {
    let tokens = mongo.store::<RefreshToken>();
    // Used tokens were kept only to notice their reuse. The unused token of each family becomes
    // generation 0, which the unique (family, generation) index needs to be unique; a family can
    // hold several (two refreshes at once both won under the old conditional update), so only its
    // newest is kept.
    tokens.delete_many(doc! {"used": true}).await?;
    let mut newest: std::collections::HashMap<String, RefreshToken> = std::collections::HashMap::new();
    let mut older = Vec::new();
    for token in tokens
        .find(doc! {"generation": null}, doc! {"created_ms": 1}, i64::MAX)
        .await?
    {
        if let Some(previous) = newest.insert(token.family.clone(), token) {
            older.push(previous.hash);
        }
    }
    for hash in older {
        tokens.delete_one(doc! {"_id": hash}).await?;
    }
    tokens
        .set_many(doc! {"generation": null}, doc! {"generation": 0_i64})
        .await?;
    tokens.ensure_indexes().await?;
    mongo.store::<RevokedSession>().ensure_indexes().await?;
    let bans = mongo.store::<BanRecord>();
    for player in mongo
        .store::<Player>()
        .find(doc! {"banned": {"$ne": null}}, doc! {}, i64::MAX)
        .await?
    {
        if let Some(ban) = player.banned {
            let record = BanRecord {
                player: player.id.clone(),
                reason: ban.reason,
                since_ms: ban.since_ms,
            };
            bans.replace(&player.id, &record).await?;
        }
    }
    mongo.store::<RelationshipStep>().ensure_indexes().await?;
    mongo.store::<PointerStep>().ensure_indexes().await
}
