//! Documents written once and never changed — listings, trades, auctions — remembered once read.
//! Exact, because they never change; worth it, because on FerretDB every read by `_id` scans its
//! collection.

use std::collections::HashMap;
use std::sync::Mutex;

use flotilla_storage::model::{Model, Store};

use crate::Result;

/// Documents remembered per kind; past this many the memory starts afresh.
const REMEMBERED: usize = 100_000;

pub struct Remembered<M: Model + Clone> {
    store: Store<M>,
    known: Mutex<HashMap<String, M>>,
}

impl<M: Model + Clone> Remembered<M> {
    pub fn new(store: Store<M>) -> Self {
        Self {
            store,
            known: Mutex::default(),
        }
    }

    /// The document with `_id` `id`, from memory or the store.
    pub async fn get(&self, id: &str) -> Result<Option<M>> {
        if let Some(known) = self.lock().get(id) {
            return Ok(Some(known.clone()));
        }
        let found = self.store.get(id).await?;
        if let Some(document) = &found {
            let mut known = self.lock();
            if known.len() >= REMEMBERED {
                known.clear();
            }
            known.insert(id.to_owned(), document.clone());
        }
        Ok(found)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, M>> {
        self.known.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}
