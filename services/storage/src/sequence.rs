//! Append-only sequences: how shared state changes safely on every MongoDB-compatible store.
//!
//! FerretDB 1.24 applies an update by reading the document, applying the operators in Go and writing
//! it back with no check in between: a filter (`state == "x"`, `balance >= 5`) holds only when the
//! document was read, and two concurrent `$inc`s can lose one (32 writers × 200 `$inc` left 274 of
//! 6,400). What it does make atomic is inserting a document against a unique index, and deleting one
//! by `_id`. So anything several writers may change at once — a relationship, a lease, a read marker,
//! later an account's balance — is kept as a sequence of entries per key, entry `n` stored under the
//! unique `_id` `key#n`. To change it, a writer reads the newest entry `n`, decides what follows and
//! inserts entry `n + 1`; when two writers decide at once, the second insert is a duplicate and that
//! writer reads again and decides afresh. The entries are a total order of changes with no lost update
//! and no gap, and the same design is correct on a sharded MongoDB without transactions.
//!
//! Finding the newest entry costs point reads by `_id` (the only query FerretDB answers without a
//! scan): from a `hint`, a position known to have existed, it reads forward until a position is
//! missing. Callers keep the hint in the documents they query by other fields (a friend list reads
//! the edges, not the sequence); [`Sequence::settle`] keeps such a projection in step with the head.
//! Without a hint, or when the hinted entry is gone, an index on `(key, seq)` gives the newest.

use std::future::Future;

use mongodb::IndexModel;
use mongodb::bson::doc;

use crate::model::{Model, Store, index};
use crate::{Error, Result};

/// One entry of a sequence. Implementors store `_id` = [`entry_id`]`(key, seq)` and the fields `key`
/// and `seq` themselves (the index [`sequence_index`] covers them), so both point reads and the
/// fallback query find them.
pub trait Entry: Model + Clone {
    /// What the sequence is of: an account, a relationship, a lease.
    fn key(&self) -> &str;
    /// Position in the key's sequence, from 1.
    fn seq(&self) -> i64;
}

/// The `_id` of entry `seq` of `key`. Zero-padded, so ids of one key sort by position.
pub fn entry_id(key: &str, seq: i64) -> String {
    format!("{key}#{seq:020}")
}

/// The index every entry model declares: finds a key's newest entry without a hint.
pub fn sequence_index() -> IndexModel {
    index("key_seq", doc! {"key": 1, "seq": -1})
}

/// What [`Sequence::append`] did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Append {
    /// The entry is stored; this writer made the change.
    Appended,
    /// Another writer stored that position first: read the head again and decide afresh.
    Taken,
}

/// What [`Sequence::advance`] left.
#[derive(Clone, Debug, PartialEq)]
pub struct Advanced<E> {
    /// The newest entry: this call's, or the one that made appending unnecessary.
    pub head: Option<E>,
    /// Whether this call appended `head`.
    pub appended: bool,
    /// Whether another writer took a position this call tried to append (it decided again then).
    pub raced: bool,
}

/// Entries are never deleted one by one: a writer that read the head may insert long after, and an
/// insert at a position freed by deleting it would succeed behind the head (measured: pruning old
/// entries while eight writers appended lost 24 of 200 increments). Only a whole key goes at once
/// ([`Sequence::delete_all`], with the account it belongs to).
pub struct Sequence<E: Entry> {
    store: Store<E>,
}

impl<E: Entry> Clone for Sequence<E> {
    fn clone(&self) -> Self {
        Self {
            store: self.store.clone(),
        }
    }
}

/// Attempts [`Sequence::advance`] makes before giving up: each failed one means another writer
/// changed the same key in between.
const ATTEMPTS: usize = 64;

impl<E: Entry> Sequence<E> {
    pub fn new(store: Store<E>) -> Self {
        Self { store }
    }

    /// The entries' store, for queries over them (a ledger's history).
    pub fn store(&self) -> &Store<E> {
        &self.store
    }

    /// The newest entry of `key`, or `None` when it has none. `hint` is a position known to have
    /// existed (0 for none): reading starts there and goes forward by `_id`.
    pub async fn head(&self, key: &str, hint: i64) -> Result<Option<E>> {
        let mut newest = if hint > 0 {
            self.store.get(&entry_id(key, hint)).await?
        } else {
            None
        };
        if newest.is_none() {
            newest = self.newest_by_index(key).await?;
        }
        loop {
            let next = newest.as_ref().map_or(1, |entry| entry.seq() + 1);
            if let Some(entry) = self.store.get(&entry_id(key, next)).await? {
                newest = Some(entry);
                continue;
            }
            return Ok(newest);
        }
    }

    async fn newest_by_index(&self, key: &str) -> Result<Option<E>> {
        let newest = self.store.find(doc! {"key": key}, doc! {"seq": -1}, 1).await?;
        Ok(newest.into_iter().next())
    }

    /// Stores `entry` at its position, unless another writer got there first. A transport failure
    /// (the insert may or may not have landed) is settled by reading the position back; after one,
    /// a duplicate may be this call's own earlier attempt, so it too is read back and compared.
    pub async fn append(&self, entry: &E) -> Result<Append> {
        let id = entry_id(entry.key(), entry.seq());
        let mut uncertain = false;
        let mut attempt = 0;
        loop {
            attempt += 1;
            match self.store.insert(entry).await {
                Ok(()) => return Ok(Append::Appended),
                Err(Error::Duplicate { .. }) if !uncertain => return Ok(Append::Taken),
                Err(Error::Duplicate { .. }) => {
                    return match self.store.get(&id).await? {
                        Some(stored) if same(&stored, entry)? => Ok(Append::Appended),
                        _ => Ok(Append::Taken),
                    };
                }
                Err(error) if error.is_transient() && attempt < 3 => {
                    uncertain = true;
                    match self.store.get(&id).await {
                        Ok(Some(stored)) if same(&stored, entry)? => return Ok(Append::Appended),
                        Ok(Some(_)) => return Ok(Append::Taken),
                        Ok(None) | Err(_) => tokio::time::sleep(std::time::Duration::from_millis(50)).await,
                    }
                }
                Err(error) => return Err(error),
            }
        }
    }

    /// Reads the head of `key` and asks `next` what follows it: `Ok(None)` when nothing needs to
    /// change, else the entry to append (its `seq` must be the head's plus one). When another writer
    /// took that position, reads again and asks again, so `next` always decides on the newest state.
    pub async fn advance<F>(&self, key: &str, hint: i64, mut next: F) -> Result<Advanced<E>>
    where
        F: FnMut(Option<&E>) -> Result<Option<E>>,
    {
        let mut hint = hint;
        let mut raced = false;
        for _ in 0..ATTEMPTS {
            let head = self.head(key, hint).await?;
            let Some(entry) = next(head.as_ref())? else {
                return Ok(Advanced {
                    head,
                    appended: false,
                    raced,
                });
            };
            debug_assert_eq!(entry.seq(), head.as_ref().map_or(1, |h| h.seq() + 1));
            match self.append(&entry).await? {
                Append::Appended => {
                    return Ok(Advanced {
                        head: Some(entry),
                        appended: true,
                        raced,
                    });
                }
                Append::Taken => {
                    raced = true;
                    hint = entry.seq();
                }
            }
        }
        Err(Error::Contended {
            key: key.to_owned(),
            attempts: ATTEMPTS,
        })
    }

    /// Brings a projection of `key` (documents queried by other fields, derived from the head) in
    /// step with the head: `write` stores what `head` implies, then the head is read again, and while
    /// it has moved the projection is written again. Writes of a projection may land out of order
    /// (an older one last), but the writer whose write lands last then reads the newer head and
    /// writes again, so once writers stop the projection matches the head. Returns the head written.
    pub async fn settle<F, Fut>(&self, key: &str, mut head: E, mut write: F) -> Result<E>
    where
        F: FnMut(&E) -> Fut,
        Fut: Future<Output = Result<()>>,
    {
        loop {
            write(&head).await?;
            match self.head(key, head.seq()).await? {
                Some(newer) if newer.seq() != head.seq() => head = newer,
                _ => return Ok(head),
            }
        }
    }

    /// Deletes every entry of `key` (with the account or relationship it belongs to).
    pub async fn delete_all(&self, key: &str) -> Result<u64> {
        self.store.delete_many(doc! {"key": key}).await
    }
}

fn same<E: Entry>(stored: &E, entry: &E) -> Result<bool> {
    Ok(mongodb::bson::to_document(stored)? == mongodb::bson::to_document(entry)?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entry_ids_sort_by_position() {
        assert_eq!(entry_id("a:b", 7), "a:b#00000000000000000007");
        assert!(entry_id("k", 9) < entry_id("k", 10));
        assert!(entry_id("k", 99_999) < entry_id("k", 100_000));
    }
}
