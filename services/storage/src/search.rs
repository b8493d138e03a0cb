//! Player search by name, in OpenSearch.
//!
//! The index is an [`Index`] under the alias `{prefix}-players`: versioned, rebuilt beside the
//! one in use and swapped in atomically.
//!
//! Each name is indexed three ways: an `exact` keyword (lowercased, accents folded), edge n-grams
//! of each word for prefixes (`ali` finds `alice`), and plain words for fuzzy matching (`alcie`
//! finds `alice`). A query scores exact > prefix > fuzzy, usernames above display names.
//!
//! The service keeps the index in sync on writes ([`PlayerSearch::upsert`],
//! [`PlayerSearch::delete`]).

use futures::{Stream, StreamExt};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use crate::Result;
use crate::opensearch::{Doc, Index};

/// A player as indexed.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
pub struct PlayerDoc {
    pub id: String,
    pub username: String,
    pub display_name: String,
}

/// A search result, best first.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
pub struct PlayerHit {
    pub id: String,
    pub username: String,
    pub display_name: String,
    pub score: f64,
}

/// Longer queries are cut to this many characters: no name is longer, and the cost of a fuzzy query
/// grows with its length.
pub const MAX_QUERY_CHARS: usize = 64;
/// The most hits one search returns.
pub const MAX_LIMIT: usize = 50;
/// Prefixes longer than this are not indexed; usernames are at most 24 characters.
const MAX_PREFIX: u32 = 24;

#[derive(Clone)]
pub struct PlayerSearch {
    index: Index,
}

impl PlayerSearch {
    /// `base_url` is OpenSearch's address (`http://host:9200`); the alias is `{index_prefix}-players`.
    pub fn new(base_url: &str, index_prefix: &str) -> Result<Self> {
        Ok(Self {
            index: Index::new(base_url, format!("{index_prefix}-players"), index_body)?,
        })
    }

    /// The alias searches and writes go through.
    pub fn alias(&self) -> &str {
        self.index.alias()
    }

    /// Creates the index and its alias unless they exist; safe to run from every replica at once.
    pub async fn ensure_index(&self) -> Result<()> {
        self.index.ensure().await
    }

    /// Indexes or replaces `doc` (searchable after the next refresh, within a second).
    pub async fn upsert(&self, doc: &PlayerDoc) -> Result<()> {
        let doc = Doc {
            id: doc.id.clone(),
            version: None,
            body: doc,
        };
        self.index.put(&doc).await?;
        Ok(())
    }

    /// Removes the player `id`; a player not indexed is not an error.
    pub async fn delete(&self, id: &str) -> Result<()> {
        self.index.delete(id).await
    }

    /// Players whose username or display name matches `query`: exactly, by prefix, or with a typo
    /// or two (fuzziness AUTO), best first. `query` is cut to [`MAX_QUERY_CHARS`] and `limit` to
    /// [`MAX_LIMIT`]; an empty query finds nobody.
    pub async fn search(&self, query: &str, limit: usize) -> Result<Vec<PlayerHit>> {
        let query: String = query.trim().chars().take(MAX_QUERY_CHARS).collect();
        let limit = limit.min(MAX_LIMIT);
        if query.is_empty() || limit == 0 {
            return Ok(Vec::new());
        }
        let hits = self.index.search::<PlayerDoc>(&query_body(&query, limit)).await?;
        Ok(hits
            .into_iter()
            .map(|hit| PlayerHit {
                id: hit.source.id,
                username: hit.source.username,
                display_name: hit.source.display_name,
                score: hit.score.unwrap_or_default(),
            })
            .collect())
    }

    /// Makes every write so far visible to searches now, rather than within the next second.
    pub async fn refresh(&self) -> Result<()> {
        self.index.refresh().await
    }

    /// Rebuilds the index from `docs` (every player, from the database), as [`Index::rebuild`].
    pub async fn rebuild<S>(&self, docs: S) -> Result<u64>
    where
        S: Stream<Item = Result<PlayerDoc>> + Send,
    {
        let docs = docs.map(|doc| {
            doc.map(|doc| Doc {
                id: doc.id.clone(),
                version: None,
                body: doc,
            })
        });
        self.index.rebuild(docs).await
    }
}

/// Settings and mappings of a version of the index. While a rebuild fills it, refreshing is off.
fn index_body(filling: bool) -> Value {
    let name = || {
        json!({
            "type": "text",
            "analyzer": "name_words",
            "fields": {
                "prefix": { "type": "text", "analyzer": "name_prefixes", "search_analyzer": "name_words" },
                "exact": { "type": "keyword", "normalizer": "name_exact" },
            },
        })
    };
    let mut index = json!({
        // One shard: a few million short names fit, and term statistics (hence scores) are exact.
        "number_of_shards": 1,
    });
    if filling {
        index["refresh_interval"] = json!("-1");
    }
    json!({
        "settings": {
            "index": index,
            "analysis": {
                "filter": {
                    "name_prefix": { "type": "edge_ngram", "min_gram": 1, "max_gram": MAX_PREFIX },
                },
                "analyzer": {
                    "name_words": {
                        "type": "custom",
                        "tokenizer": "standard",
                        "filter": ["lowercase", "asciifolding"],
                    },
                    "name_prefixes": {
                        "type": "custom",
                        "tokenizer": "standard",
                        "filter": ["lowercase", "asciifolding", "name_prefix"],
                    },
                },
                "normalizer": {
                    "name_exact": { "type": "custom", "filter": ["lowercase", "asciifolding"] },
                },
            },
        },
        "mappings": {
            "dynamic": "strict",
            "properties": {
                "id": { "type": "keyword" },
                "username": name(),
                "display_name": name(),
            },
        },
    })
}

/// Exact matches score a constant far above the rest, prefixes score by BM25 (shorter names
/// first), typos least; usernames outweigh display names. `query` is a JSON value throughout.
fn query_body(query: &str, limit: usize) -> Value {
    let exact = |field: &str, boost: f64| json!({ "constant_score": { "filter": { "term": { field: query } }, "boost": boost } });
    let matching = |field: &str, boost: f64, fuzzy: bool| {
        let mut clause = json!({ "query": query, "operator": "and", "boost": boost });
        if fuzzy {
            clause["fuzziness"] = json!("AUTO");
        }
        json!({ "match": { field: clause } })
    };
    json!({
        "size": limit,
        "track_total_hits": false,
        "_source": ["id", "username", "display_name"],
        "query": {
            "bool": {
                "should": [
                    exact("username.exact", 100.0),
                    exact("display_name.exact", 50.0),
                    matching("username.prefix", 5.0, false),
                    matching("display_name.prefix", 3.0, false),
                    matching("username", 1.0, true),
                    matching("display_name", 0.5, true),
                ],
                "minimum_should_match": 1,
            },
        },
        // Ties (equal names) in a stable order.
        "sort": [{ "_score": "desc" }, { "username.exact": "asc" }, { "id": "asc" }],
    })
}
