//! Listings in OpenSearch, for browsing: by item, category, properties, seller, currency and
//! price range, sorted by price or age, in pages. One document per listing, written after every
//! change with the escrow account's position as its version, so a slow writer's older state never
//! replaces a newer one. The store stays the truth: `POST /v1/admin/market/reindex` rebuilds the
//! index from it.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use flotilla_storage::opensearch::{Doc, Index};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use crate::market::listings::ListingView;
use crate::{Error, Result};

/// The most listings one page returns.
pub const MAX_PAGE: usize = 100;

/// A listing as indexed, and as browsing answers it (within a second of its latest change).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ListingDoc {
    pub id: String,
    pub seller: String,
    pub item: String,
    pub category: Option<String>,
    /// Each scalar property as `name=value`, for exact filters (`rarity=epic`).
    pub attributes: Vec<String>,
    pub currency: String,
    pub unit_price: i64,
    pub remaining: i64,
    pub created_ms: i64,
    pub expires_ms: i64,
}

impl ListingDoc {
    pub fn new(view: &ListingView, category: Option<String>) -> Self {
        Self {
            id: view.id.clone(),
            seller: view.seller.clone(),
            item: view.item.clone(),
            category,
            attributes: view
                .properties
                .iter()
                .filter_map(|(name, value)| Some(format!("{name}={}", scalar(value)?)))
                .collect(),
            currency: view.currency.clone(),
            unit_price: view.unit_price,
            remaining: view.remaining,
            created_ms: view.created_ms,
            expires_ms: view.expires_ms,
        }
    }
}

/// A property's value as filters name it: strings bare, numbers and booleans as JSON.
fn scalar(value: &Value) -> Option<String> {
    match value {
        Value::String(text) => Some(text.clone()),
        Value::Number(_) | Value::Bool(_) => Some(value.to_string()),
        _ => None,
    }
}

/// How results are ordered; ties by id, so pages never skip or repeat one.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
pub enum Sort {
    PriceAsc,
    PriceDesc,
    Newest,
    Oldest,
}

/// What a browse asks for.
#[derive(Clone, Debug, Default)]
pub struct Query {
    pub item: Option<String>,
    pub category: Option<String>,
    pub seller: Option<String>,
    pub currency: Option<String>,
    pub attributes: Vec<String>,
    pub min_price: Option<i64>,
    pub max_price: Option<i64>,
    pub sort: Option<Sort>,
    pub limit: usize,
    pub cursor: Option<String>,
}

#[derive(Clone)]
pub struct ListingIndex {
    index: Index,
}

impl ListingIndex {
    /// The alias is `{prefix}-market-listings`.
    pub fn new(base_url: &str, prefix: &str) -> Result<Self> {
        Ok(Self {
            index: Index::new(base_url, format!("{prefix}-market-listings"), index_body)?,
        })
    }

    pub async fn ensure(&self) -> Result<()> {
        Ok(self.index.ensure().await?)
    }

    /// Writes a listing's state; an older state than the one indexed is dropped.
    pub async fn put(&self, doc: ListingDoc, version: i64) -> Result<()> {
        let doc = Doc {
            id: doc.id.clone(),
            version: Some(version),
            body: doc,
        };
        self.index.put(&doc).await?;
        Ok(())
    }

    pub async fn refresh(&self) -> Result<()> {
        Ok(self.index.refresh().await?)
    }

    /// Replaces the index with `docs` (each with its version).
    pub async fn rebuild(&self, docs: Vec<(ListingDoc, i64)>) -> Result<u64> {
        let docs = docs.into_iter().map(|(doc, version)| {
            Ok(Doc {
                id: doc.id.clone(),
                version: Some(version),
                body: doc,
            })
        });
        Ok(self.index.rebuild(futures::stream::iter(docs)).await?)
    }

    /// Open listings matching `query` at `now_ms`, and the cursor of the next page.
    pub async fn search(&self, query: &Query, now_ms: i64) -> Result<(Vec<ListingDoc>, Option<String>)> {
        let limit = query.limit.clamp(1, MAX_PAGE);
        let mut body = query_body(query, now_ms, limit);
        if let Some(cursor) = &query.cursor {
            body["search_after"] = decode_cursor(cursor)?;
        }
        let hits = self.index.search::<ListingDoc>(&body).await?;
        let next = match hits.len() == limit {
            true => hits.last().map(|hit| encode_cursor(&hit.sort)),
            false => None,
        };
        Ok((hits.into_iter().map(|hit| hit.source).collect(), next))
    }
}

fn encode_cursor(sort: &[Value]) -> String {
    URL_SAFE_NO_PAD.encode(serde_json::to_vec(sort).unwrap_or_default())
}

fn decode_cursor(cursor: &str) -> Result<Value> {
    let bad = || Error::bad("cursor", "is not a cursor this service gave");
    let bytes = URL_SAFE_NO_PAD.decode(cursor).map_err(|_| bad())?;
    match serde_json::from_slice::<Value>(&bytes) {
        Ok(Value::Array(values))
            if values.len() == 2 && values.iter().all(|v| v.is_i64() || v.is_string()) =>
        {
            Ok(Value::Array(values))
        }
        _ => Err(bad()),
    }
}

fn query_body(query: &Query, now_ms: i64, limit: usize) -> Value {
    // Whole seconds, so the same filter repeats and OpenSearch can cache it; a listing shown for
    // under a second past its expiry is refused when bought.
    let now_ms = now_ms - now_ms.rem_euclid(1_000);
    let mut filters = vec![
        json!({"range": {"remaining": {"gt": 0}}}),
        json!({"range": {"expiresMs": {"gt": now_ms}}}),
    ];
    for (field, value) in [
        ("item", &query.item),
        ("category", &query.category),
        ("seller", &query.seller),
        ("currency", &query.currency),
    ] {
        if let Some(value) = value {
            filters.push(json!({"term": {field: value}}));
        }
    }
    for attribute in &query.attributes {
        filters.push(json!({"term": {"attributes": attribute}}));
    }
    let mut price = serde_json::Map::new();
    if let Some(min) = query.min_price {
        price.insert("gte".into(), json!(min));
    }
    if let Some(max) = query.max_price {
        price.insert("lte".into(), json!(max));
    }
    if !price.is_empty() {
        filters.push(json!({"range": {"unitPrice": price}}));
    }
    let first = match query.sort.unwrap_or(Sort::Newest) {
        Sort::PriceAsc => json!({"unitPrice": "asc"}),
        Sort::PriceDesc => json!({"unitPrice": "desc"}),
        Sort::Newest => json!({"createdMs": "desc"}),
        Sort::Oldest => json!({"createdMs": "asc"}),
    };
    json!({
        "size": limit,
        "track_total_hits": false,
        "query": {"bool": {"filter": filters}},
        "sort": [first, {"id": "asc"}],
    })
}

fn index_body(filling: bool) -> Value {
    let mut index = json!({"number_of_shards": 1});
    if filling {
        index["refresh_interval"] = json!("-1");
    }
    let keyword = || json!({"type": "keyword"});
    json!({
        "settings": {"index": index},
        "mappings": {
            "dynamic": "strict",
            "properties": {
                "id": keyword(),
                "seller": keyword(),
                "item": keyword(),
                "category": keyword(),
                "attributes": keyword(),
                "currency": keyword(),
                "unitPrice": {"type": "long"},
                "remaining": {"type": "long"},
                "createdMs": {"type": "long"},
                "expiresMs": {"type": "long"},
            },
        },
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cursors_round_trip_and_forged_ones_are_refused() {
        let sort = vec![json!(120), json!("abc")];
        let cursor = encode_cursor(&sort);
        assert_eq!(decode_cursor(&cursor).expect("valid"), json!(sort));
        assert!(decode_cursor("!!").is_err());
        let forged = URL_SAFE_NO_PAD.encode(br#"[{"script": 1}, "x"]"#);
        assert!(decode_cursor(&forged).is_err());
    }

    #[test]
    fn a_query_filters_open_listings_and_sorts_with_a_tie_breaker() {
        let query = Query {
            item: Some("potion".into()),
            attributes: vec!["rarity=epic".into()],
            min_price: Some(5),
            sort: Some(Sort::PriceAsc),
            ..Query::default()
        };
        let body = query_body(&query, 1_000, 20);
        let filters = body["query"]["bool"]["filter"].as_array().expect("filters");
        assert!(filters.contains(&json!({"term": {"item": "potion"}})));
        assert!(filters.contains(&json!({"term": {"attributes": "rarity=epic"}})));
        assert!(filters.contains(&json!({"range": {"unitPrice": {"gte": 5}}})));
        assert!(filters.contains(&json!({"range": {"expiresMs": {"gt": 1_000}}})));
        let later = query_body(&query, 1_999, 20);
        assert_eq!(later, body, "within a second, the same query: cacheable");
        assert_eq!(body["sort"], json!([{"unitPrice": "asc"}, {"id": "asc"}]));
    }
}
