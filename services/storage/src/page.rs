//! Cursor pagination: a page ends with an opaque cursor naming the last item's sort value and id, and
//! the next page starts strictly after it. Unlike skip/limit, pages stay stable while items are added,
//! and reading page 100 costs what page 1 does.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use mongodb::bson::{Bson, Document, doc};
use serde::{Deserialize, Serialize};

use crate::{Error, Result};

pub const MAX_PAGE: u32 = 100;

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PageRequest {
    pub limit: u32,
    pub cursor: Option<String>,
}

impl PageRequest {
    /// Clamps `limit` to 1..=[`MAX_PAGE`] (20 when absent), so a client cannot ask for the whole table.
    pub fn new(limit: Option<u32>, cursor: Option<String>) -> Self {
        Self {
            limit: limit.unwrap_or(20).clamp(1, MAX_PAGE),
            cursor: cursor.filter(|c| !c.is_empty()),
        }
    }
}

#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Page<T> {
    pub items: Vec<T>,
    /// Pass back to get the next page; absent on the last one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub next_cursor: Option<String>,
}

impl<T> Page<T> {
    pub fn map<U>(self, f: impl FnMut(T) -> U) -> Page<U> {
        Page {
            items: self.items.into_iter().map(f).collect(),
            next_cursor: self.next_cursor,
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Order {
    Ascending,
    Descending,
}

/// The field a page is ordered by; `_id` breaks ties, so the order is total.
#[derive(Clone, Copy, Debug)]
pub struct SortKey {
    pub field: &'static str,
    pub order: Order,
}

#[derive(Serialize, Deserialize)]
struct Position {
    value: serde_json::Value,
    id: serde_json::Value,
}

impl SortKey {
    pub const fn ascending(field: &'static str) -> Self {
        Self {
            field,
            order: Order::Ascending,
        }
    }

    pub const fn descending(field: &'static str) -> Self {
        Self {
            field,
            order: Order::Descending,
        }
    }

    pub(crate) fn sort(&self) -> Document {
        let direction = match self.order {
            Order::Ascending => 1,
            Order::Descending => -1,
        };
        if self.field == "_id" {
            doc! {"_id": direction}
        } else {
            doc! {self.field: direction, "_id": direction}
        }
    }

    /// `filter` narrowed to the items after `cursor`.
    pub(crate) fn query(&self, filter: Document, cursor: Option<&str>) -> Result<Document> {
        let Some(cursor) = cursor else { return Ok(filter) };
        let (value, id) = decode(cursor)?;
        let after = match self.order {
            Order::Ascending => "$gt",
            Order::Descending => "$lt",
        };
        let position = if self.field == "_id" {
            doc! {"_id": {after: id}}
        } else {
            doc! {"$or": [
                {self.field: {after: value.clone()}},
                {self.field: value, "_id": {after: id}},
            ]}
        };
        Ok(doc! {"$and": [filter, position]})
    }

    pub(crate) fn cursor_after<M: Serialize>(&self, last: &M) -> Result<String> {
        let document = mongodb::bson::to_document(last)?;
        let id = document.get("_id").cloned().unwrap_or(Bson::Null);
        let value = document.get(self.field).cloned().unwrap_or(Bson::Null);
        let position = Position {
            value: value.into_canonical_extjson(),
            id: id.into_canonical_extjson(),
        };
        Ok(URL_SAFE_NO_PAD.encode(serde_json::to_vec(&position)?))
    }
}

fn decode(cursor: &str) -> Result<(Bson, Bson)> {
    let bytes = URL_SAFE_NO_PAD.decode(cursor).map_err(|_| Error::BadCursor)?;
    let position: Position = serde_json::from_slice(&bytes).map_err(|_| Error::BadCursor)?;
    let value = Bson::try_from(position.value).map_err(|_| Error::BadCursor)?;
    let id = Bson::try_from(position.id).map_err(|_| Error::BadCursor)?;
    Ok((value, id))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Serialize)]
    struct Item {
        _id: String,
        at: i64,
    }

    #[test]
    fn a_cursor_names_the_last_items_sort_value_and_id() {
        let key = SortKey::descending("at");
        let cursor = key
            .cursor_after(&Item {
                _id: "b".into(),
                at: 7,
            })
            .expect("cursor");
        let query = key.query(doc! {"owner": "p"}, Some(&cursor)).expect("query");
        assert_eq!(
            query,
            doc! {"$and": [{"owner": "p"}, {"$or": [{"at": {"$lt": 7_i64}}, {"at": 7_i64, "_id": {"$lt": "b"}}]}]}
        );
    }

    #[test]
    fn garbage_cursors_are_refused() {
        let key = SortKey::ascending("_id");
        for cursor in ["!!", "bm90IGpzb24", "e30"] {
            assert!(
                matches!(key.query(doc! {}, Some(cursor)), Err(Error::BadCursor)),
                "{cursor}"
            );
        }
    }

    #[test]
    fn page_size_is_clamped() {
        assert_eq!(PageRequest::new(Some(0), None).limit, 1);
        assert_eq!(PageRequest::new(Some(10_000), None).limit, MAX_PAGE);
        assert_eq!(
            PageRequest::new(None, Some(String::new())),
            PageRequest {
                limit: 20,
                cursor: None
            }
        );
    }
}
