//! Typed collections. Each stored type implements [`Model`]: the one place that names its collection
//! and declares its indexes. Services query through [`Store`], never through raw documents.

use futures::TryStreamExt;
use mongodb::bson::{Document, doc};
use mongodb::error::{ErrorKind, WriteFailure};
use mongodb::options::IndexOptions;
use mongodb::{Collection, Database, IndexModel};
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::mongo::retry;
use crate::page::{Page, PageRequest, SortKey};
use crate::{Error, Result};

pub trait Model: Serialize + DeserializeOwned + Send + Sync + Unpin + 'static {
    const COLLECTION: &'static str;

    /// The collection's indexes. Name them: a unique index's name becomes the `field` of
    /// [`Error::Duplicate`], which services show to clients ("a document with this username …").
    fn indexes() -> Vec<IndexModel> {
        Vec::new()
    }
}

/// An index over `keys`, named `name`.
pub fn index(name: &str, keys: Document) -> IndexModel {
    IndexModel::builder()
        .keys(keys)
        .options(IndexOptions::builder().name(name.to_owned()).build())
        .build()
}

/// A unique index over `keys`, named `name`.
pub fn unique_index(name: &str, keys: Document) -> IndexModel {
    let options = IndexOptions::builder().name(name.to_owned()).unique(true).build();
    IndexModel::builder().keys(keys).options(options).build()
}

pub struct Store<M: Model> {
    collection: Collection<M>,
}

impl<M: Model> Clone for Store<M> {
    fn clone(&self) -> Self {
        Self {
            collection: self.collection.clone(),
        }
    }
}

impl<M: Model> Store<M> {
    pub fn new(database: &Database) -> Self {
        Self {
            collection: database.collection(M::COLLECTION),
        }
    }

    /// Creates the model's indexes; existing ones with the same definition are left alone.
    ///
    /// One `createIndexes` per index: FerretDB 1.24 drops the connection (a Go panic, "slice
    /// bounds out of range") when one call names two or more indexes that all exist already, as
    /// when a migration runs again after failing halfway.
    pub async fn ensure_indexes(&self) -> Result<()> {
        for index in M::indexes() {
            retry(|| async { Ok(self.collection.create_index(index.clone()).await?) }).await?;
        }
        Ok(())
    }

    /// Inserts a new document. Not retried: a retry after a lost acknowledgement would report the
    /// document's own first insert as a duplicate.
    pub async fn insert(&self, document: &M) -> Result<()> {
        match self.collection.insert_one(document).await.map_err(duplicate) {
            Ok(_) => Ok(()),
            Err(Error::Duplicate { field }) if field == UNNAMED => Err(Error::Duplicate {
                field: self.clashing_index(document).await?,
            }),
            Err(error) => Err(error),
        }
    }

    /// Which unique index `document` collides with. FerretDB's insert errors do not name the index,
    /// so on that (rare) path the colliding document is looked up by each unique key in turn.
    async fn clashing_index(&self, document: &M) -> Result<String> {
        let document = mongodb::bson::to_document(document)?;
        let raw = self.collection.clone_with_type::<Document>();
        if let Some(id) = document.get("_id")
            && raw.find_one(doc! {"_id": id.clone()}).await?.is_some()
        {
            return Ok("id".into());
        }
        for index in M::indexes() {
            let options = index.options.unwrap_or_default();
            if options.unique != Some(true) {
                continue;
            }
            let filter: Document = index
                .keys
                .keys()
                .map(|key| (key.clone(), document.get(key).cloned().unwrap_or_default()))
                .collect();
            if raw.find_one(filter).await?.is_some() {
                return Ok(options.name.unwrap_or_else(|| UNNAMED.into()));
            }
        }
        Ok(UNNAMED.into())
    }

    pub async fn find_one(&self, filter: Document) -> Result<Option<M>> {
        Ok(self.collection.find_one(filter).await?)
    }

    pub async fn get(&self, id: &str) -> Result<Option<M>> {
        self.find_one(doc! {"_id": id}).await
    }

    /// The documents with these ids (missing ones are skipped), as concurrent point reads. Use this
    /// rather than `{"_id": {"$in": …}}`: FerretDB answers `_id` equality from its primary key but
    /// scans the whole collection for `$in` (measured: 2.7 ms against 19 ms at 1,000 documents).
    pub async fn get_many<S: AsRef<str>>(&self, ids: &[S]) -> Result<Vec<M>> {
        use futures::StreamExt;
        const CONCURRENT: usize = 16;
        // Owned futures (no borrow of `ids` or `self`), so callers' futures stay `Send` for axum.
        let reads: Vec<_> = ids
            .iter()
            .map(|id| {
                let collection = self.collection.clone();
                let id = id.as_ref().to_owned();
                async move { collection.find_one(doc! {"_id": id}).await }
            })
            .collect();
        let found: Vec<Option<M>> = futures::stream::iter(reads)
            .buffered(CONCURRENT)
            .collect::<Vec<_>>()
            .await
            .into_iter()
            .collect::<Result<_, _>>()?;
        Ok(found.into_iter().flatten().collect())
    }

    /// Up to `limit` documents matching `filter`, in `sort` order.
    pub async fn find(&self, filter: Document, sort: Document, limit: i64) -> Result<Vec<M>> {
        let cursor = self.collection.find(filter).sort(sort).limit(limit).await?;
        Ok(cursor.try_collect().await?)
    }

    /// One page of documents matching `filter`, ordered by `key` (then `_id`), after `request`'s cursor.
    pub async fn page(&self, filter: Document, key: SortKey, request: &PageRequest) -> Result<Page<M>> {
        let query = key.query(filter, request.cursor.as_deref())?;
        let limit = i64::from(request.limit) + 1;
        let cursor = self.collection.find(query).sort(key.sort()).limit(limit).await?;
        let mut items: Vec<M> = cursor.try_collect().await?;
        let next_cursor = if items.len() > request.limit as usize {
            items.truncate(request.limit as usize);
            items.last().map(|last| key.cursor_after(last)).transpose()?
        } else {
            None
        };
        Ok(Page { items, next_cursor })
    }

    pub async fn count(&self, filter: Document) -> Result<u64> {
        Ok(self.collection.count_documents(filter).await?)
    }

    /// Sets fields of the document with this `_id`; returns whether it exists. Last writer wins: on
    /// FerretDB the whole document is read, changed and written back, so two updates of one document
    /// at once may keep only one's fields. Use it only where that is the intended outcome (a player's
    /// own profile); state that several writers change goes in a [`crate::sequence::Sequence`].
    /// Retried on transport failures, since setting a value twice is setting it once.
    pub async fn set(&self, id: &str, fields: Document) -> Result<bool> {
        let result = retry(|| async {
            self.collection
                .update_one(doc! {"_id": id}, doc! {"$set": fields.clone()})
                .await
                .map_err(duplicate)
        })
        .await?;
        Ok(result.matched_count > 0)
    }

    /// Sets the same constant `fields` on every document matching `filter` (marking notifications
    /// read). The filter holds when each document is read, not when it is written, so it may only
    /// name fields that never change after insert; the values set must be the same for every writer.
    pub async fn set_many(&self, filter: Document, fields: Document) -> Result<u64> {
        let result = retry(|| async {
            self.collection
                .update_many(filter.clone(), doc! {"$set": fields.clone()})
                .await
                .map_err(duplicate)
        })
        .await?;
        Ok(result.modified_count)
    }

    /// Writes `document` whole under `id`, creating it if missing: for projections that
    /// [`crate::sequence::Sequence::settle`] keeps in step with a sequence. Two writers creating the
    /// same document at once both succeed (the second replaces the first).
    pub async fn replace(&self, id: &str, document: &M) -> Result<()> {
        let mut attempts = 0;
        loop {
            attempts += 1;
            let written = retry(|| async {
                self.collection
                    .replace_one(doc! {"_id": id}, document)
                    .upsert(true)
                    .await
                    .map_err(duplicate)
            })
            .await;
            match written {
                // FerretDB upserts by inserting when its read found nothing, so a concurrent creation
                // makes this one a duplicate: the document exists now, and replacing it is what is wanted.
                Err(Error::Duplicate { .. }) if attempts < 3 => continue,
                other => return other.map(|_| ()),
            }
        }
    }

    /// Deletes every matching document; deleting twice is the same as once, so retried.
    pub async fn delete_many(&self, filter: Document) -> Result<u64> {
        let result = retry(|| async { Ok(self.collection.delete_many(filter.clone()).await?) }).await?;
        Ok(result.deleted_count)
    }

    /// Deletes one matching document; true when this call deleted it. The delete itself is by `_id` and
    /// atomic (of two callers, one gets true), but other conditions in `filter` hold when the document
    /// was read: name only fields that never change after insert (an owner), never a state.
    pub async fn delete_one(&self, filter: Document) -> Result<bool> {
        let result = retry(|| async { Ok(self.collection.delete_one(filter.clone()).await?) }).await?;
        Ok(result.deleted_count > 0)
    }
}

/// The `field` of a duplicate whose index the server did not name.
const UNNAMED: &str = "key";

/// Turns a unique-index violation into [`Error::Duplicate`] naming the index.
fn duplicate(error: mongodb::error::Error) -> Error {
    const DUPLICATE_KEY: i32 = 11000;
    // FerretDB's SQLite backend reports a unique violation from an update as InternalError (code 1)
    // carrying SQLite's message, not as E11000; both mean the same to callers.
    const SQLITE_UNIQUE: &str = "UNIQUE constraint failed: index '";
    let field = match &*error.kind {
        ErrorKind::Write(WriteFailure::WriteError(write)) if write.code == DUPLICATE_KEY => {
            Some(index_name(&write.message).unwrap_or(UNNAMED).to_owned())
        }
        ErrorKind::Command(command) if command.code == DUPLICATE_KEY => {
            Some(index_name(&command.message).unwrap_or(UNNAMED).to_owned())
        }
        ErrorKind::Command(command) if command.message.contains(SQLITE_UNIQUE) => {
            Some(sqlite_index_name(&command.message).unwrap_or(UNNAMED).to_owned())
        }
        _ => None,
    };
    match field {
        Some(field) => Error::Duplicate { field },
        None => Error::Mongo(error),
    }
}

/// The index name in FerretDB's SQLite message: "... index 'players_a90eae09_username' ...", where
/// the table name is the collection and a hash.
fn sqlite_index_name(message: &str) -> Option<&str> {
    let quoted = message
        .split("UNIQUE constraint failed: index '")
        .nth(1)?
        .split('\'')
        .next()?;
    let (_collection, rest) = quoted.split_once('_')?;
    let (_hash, name) = rest.split_once('_')?;
    Some(name)
}

/// The index name in a duplicate-key message: "E11000 duplicate key error collection: db.c index: NAME dup key".
fn index_name(message: &str) -> Option<&str> {
    let rest = message.split("index: ").nth(1)?;
    rest.split_whitespace().next()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn duplicate_key_message_names_the_index() {
        let message =
            "E11000 duplicate key error collection: flotilla.players index: username dup key: { : \"x\" }";
        assert_eq!(index_name(message), Some("username"));
        assert_eq!(index_name("something else"), None);
        let sqlite = "[update.go:114] constraint failed: UNIQUE constraint failed: index 'players_a90eae09_owner_state' (2067)";
        assert_eq!(sqlite_index_name(sqlite), Some("owner_state"));
    }
}
