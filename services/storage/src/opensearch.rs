//! One OpenSearch index behind an alias, for any kind of document: what player search and the
//! economy's market listings share.
//!
//! Readers and writers use the alias (`{prefix}-players`), which points at one versioned index
//! `{alias}-v{n}`; a rebuild fills version n + 1 and moves the alias in one atomic `_aliases` call,
//! so searches never see a half-filled index. Writes made while a rebuild runs go to the old index
//! and are lost with it if the rebuild had already read those documents: run a rebuild when writes
//! are quiet, and one at a time (a rebuild deletes every older version when it finishes).

use std::time::Duration;

use futures::{Stream, StreamExt};
use reqwest::{Client, Method, RequestBuilder, StatusCode, Url};
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::{Value, json};

use crate::{Error, Result};

/// Documents per `_bulk` request in a rebuild.
const BULK_BATCH: usize = 500;
/// OpenSearch error texts kept in an [`Error::Search`], in characters.
const MAX_REASON: usize = 300;

/// A document to index: its id, its version when writers may race (OpenSearch keeps the highest:
/// `version_type=external`), and its body.
pub struct Doc<D> {
    pub id: String,
    pub version: Option<i64>,
    pub body: D,
}

/// What a write of a versioned document did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Written {
    Written,
    /// The index holds this version or a newer one: the write was dropped.
    Stale,
}

/// The settings and mappings of a version of the index; `filling` while a rebuild fills it (then
/// refreshing should be off).
pub type IndexBody = fn(filling: bool) -> Value;

#[derive(Clone)]
pub struct Index {
    http: Client,
    base: Url,
    alias: String,
    body: IndexBody,
}

#[derive(serde::Deserialize)]
struct BulkResponse {
    errors: bool,
    items: Vec<serde_json::Map<String, Value>>,
}

/// `GET /{pattern}/_alias` and `GET /_alias/{alias}`: the names of the indices found (their aliases
/// are not needed).
type IndexAliases = std::collections::HashMap<String, serde::de::IgnoredAny>;

#[derive(serde::Deserialize)]
struct SearchResponse<D> {
    hits: Hits<D>,
}

#[derive(serde::Deserialize)]
struct Hits<D> {
    hits: Vec<Hit<D>>,
}

/// One search result.
#[derive(serde::Deserialize)]
pub struct Hit<D> {
    #[serde(rename = "_score")]
    pub score: Option<f64>,
    #[serde(rename = "_source")]
    pub source: D,
    /// The sort values, when the query sorts (pass them back as `search_after` for the next page).
    #[serde(default)]
    pub sort: Vec<Value>,
}

impl Index {
    /// `base_url` is OpenSearch's address (`http://host:9200`).
    pub fn new(base_url: &str, alias: String, body: IndexBody) -> Result<Self> {
        let invalid = |message: String| Error::Search {
            operation: "connect",
            message,
        };
        let mut base = Url::parse(base_url).map_err(|error| invalid(format!("url {base_url:?}: {error}")))?;
        if base.path_segments_mut().is_err() {
            return Err(invalid(format!("url {base_url:?} cannot have a path")));
        }
        let http = Client::builder()
            .connect_timeout(Duration::from_secs(5))
            // A rebuild's bulk requests are the slowest calls.
            .timeout(Duration::from_secs(60))
            .build()
            .map_err(|error| invalid(error_chain(&error)))?;
        Ok(Self {
            http,
            base,
            alias,
            body,
        })
    }

    /// The alias searches and writes go through.
    pub fn alias(&self) -> &str {
        &self.alias
    }

    /// Creates `{alias}-v1` and the alias unless the alias exists. Safe to run from every replica at
    /// start-up: index and alias are created in one request, and a replica that loses the race to
    /// create them finds the winner's.
    pub async fn ensure(&self) -> Result<()> {
        const OPERATION: &str = "ensure index";
        if self.alias_exists(OPERATION).await? {
            return Ok(());
        }
        let index = format!("{}-v1", self.alias);
        let mut body = (self.body)(false);
        body["aliases"] = json!({ &self.alias: {} });
        let response = self
            .send(OPERATION, self.request(Method::PUT, &[&index]).json(&body))
            .await?;
        let status = response.status();
        if status.is_success() {
            return Ok(());
        }
        let error = response_error(OPERATION, status, &response.bytes().await.unwrap_or_default());
        if status == StatusCode::BAD_REQUEST && self.alias_exists(OPERATION).await? {
            // Another replica created them first.
            return Ok(());
        }
        Err(error)
    }

    async fn alias_exists(&self, operation: &'static str) -> Result<bool> {
        let response = self
            .send(operation, self.request(Method::HEAD, &["_alias", &self.alias]))
            .await?;
        match response.status() {
            StatusCode::OK => Ok(true),
            StatusCode::NOT_FOUND => Ok(false),
            status => Err(response_error(operation, status, b"")),
        }
    }

    /// Indexes or replaces a document (searchable after the next refresh, within a second). A
    /// versioned one replaces only an older version.
    pub async fn put<D: Serialize>(&self, doc: &Doc<D>) -> Result<Written> {
        const OPERATION: &str = "upsert";
        // Without `require_alias` OpenSearch would create an index named like the alias, with
        // guessed mappings, and the alias could never be created.
        let mut request = self
            .request(Method::PUT, &[&self.alias, "_doc", &doc.id])
            .query(&[("require_alias", "true")]);
        if let Some(version) = doc.version {
            request = request.query(&[
                ("version", version.to_string().as_str()),
                ("version_type", "external"),
            ]);
        }
        let response = self.send(OPERATION, request.json(&doc.body)).await?;
        if response.status() == StatusCode::CONFLICT && doc.version.is_some() {
            return Ok(Written::Stale);
        }
        checked(OPERATION, response).await?;
        Ok(Written::Written)
    }

    /// Removes a document; one not indexed is not an error.
    pub async fn delete(&self, id: &str) -> Result<()> {
        const OPERATION: &str = "delete";
        let response = self
            .send(
                OPERATION,
                self.request(Method::DELETE, &[&self.alias, "_doc", id]),
            )
            .await?;
        let status = response.status();
        let body = response
            .bytes()
            .await
            .map_err(|error| transport_error(OPERATION, &error))?;
        if status.is_success() {
            return Ok(());
        }
        // A missing document answers 404 with a result; a missing index answers 404 with an error.
        if status == StatusCode::NOT_FOUND
            && serde_json::from_slice::<Value>(&body).is_ok_and(|body| body["result"] == "not_found")
        {
            return Ok(());
        }
        Err(response_error(OPERATION, status, &body))
    }

    /// Runs a `_search` request body and returns its hits.
    pub async fn search<D: DeserializeOwned>(&self, query: &Value) -> Result<Vec<Hit<D>>> {
        let request = self.request(Method::POST, &[&self.alias, "_search"]).json(query);
        let response: SearchResponse<D> = serde_json::from_value(self.call("search", request).await?)?;
        Ok(response.hits.hits)
    }

    /// Makes every write so far visible to searches now, rather than within the next second.
    pub async fn refresh(&self) -> Result<()> {
        self.call("refresh", self.request(Method::POST, &[&self.alias, "_refresh"]))
            .await?;
        Ok(())
    }

    /// Rebuilds the index from `docs` (every document, from the database): fills a new version in
    /// batches, points the alias at it, then deletes the older versions. Returns the documents
    /// indexed. On failure the new version is deleted and the alias left as it was.
    pub async fn rebuild<D, S>(&self, docs: S) -> Result<u64>
    where
        D: Serialize,
        S: Stream<Item = Result<Doc<D>>> + Send,
    {
        const OPERATION: &str = "rebuild";
        let older = self.versions(OPERATION).await?;
        let version = older
            .iter()
            .map(|(version, _)| version)
            .max()
            .map_or(1, |latest| latest + 1);
        let index = format!("{}-v{version}", self.alias);
        // Fails if the index exists: another rebuild is filling it.
        self.call(
            OPERATION,
            self.request(Method::PUT, &[&index]).json(&(self.body)(true)),
        )
        .await?;
        let indexed = match self.fill_and_swap(&index, docs).await {
            Ok(indexed) => indexed,
            Err(error) => {
                if let Err(cleanup) = self
                    .call(OPERATION, self.request(Method::DELETE, &[&index]))
                    .await
                {
                    tracing::warn!(%index, error = %cleanup, "cannot delete a failed rebuild's index");
                }
                return Err(error);
            }
        };
        for (_, old) in older {
            if let Err(error) = self.call(OPERATION, self.request(Method::DELETE, &[&old])).await {
                tracing::warn!(index = %old, %error, "cannot delete a replaced index");
            }
        }
        Ok(indexed)
    }

    async fn fill_and_swap<D, S>(&self, index: &str, docs: S) -> Result<u64>
    where
        D: Serialize,
        S: Stream<Item = Result<Doc<D>>> + Send,
    {
        const OPERATION: &str = "rebuild";
        let mut batches = std::pin::pin!(docs.chunks(BULK_BATCH));
        let mut indexed = 0;
        while let Some(batch) = batches.next().await {
            let batch = batch.into_iter().collect::<Result<Vec<_>>>()?;
            indexed += self.bulk(index, &batch).await?;
        }
        // Refreshing was off while filling; `null` restores the default.
        let settings = json!({ "index": { "refresh_interval": null } });
        self.call(
            OPERATION,
            self.request(Method::PUT, &[index, "_settings"]).json(&settings),
        )
        .await?;
        self.call(OPERATION, self.request(Method::POST, &[index, "_refresh"]))
            .await?;

        let response = self
            .send(OPERATION, self.request(Method::GET, &["_alias", &self.alias]))
            .await?;
        let current: IndexAliases = match response.status() {
            StatusCode::NOT_FOUND => IndexAliases::new(),
            _ => serde_json::from_value(checked(OPERATION, response).await?)?,
        };
        let mut actions: Vec<Value> = current
            .keys()
            .map(|old| json!({ "remove": { "index": old, "alias": &self.alias } }))
            .collect();
        actions.push(json!({ "add": { "index": index, "alias": &self.alias } }));
        let swap = json!({ "actions": actions });
        self.call(OPERATION, self.request(Method::POST, &["_aliases"]).json(&swap))
            .await?;
        Ok(indexed)
    }

    async fn bulk<D: Serialize>(&self, index: &str, docs: &[Doc<D>]) -> Result<u64> {
        const OPERATION: &str = "rebuild";
        if docs.is_empty() {
            return Ok(0);
        }
        let mut body = Vec::new();
        for doc in docs {
            let action = match doc.version {
                Some(version) => {
                    json!({ "index": { "_id": &doc.id, "version": version, "version_type": "external" } })
                }
                None => json!({ "index": { "_id": &doc.id } }),
            };
            serde_json::to_writer(&mut body, &action)?;
            body.push(b'\n');
            serde_json::to_writer(&mut body, &doc.body)?;
            body.push(b'\n');
        }
        let request = self
            .request(Method::POST, &[index, "_bulk"])
            .header(reqwest::header::CONTENT_TYPE, "application/x-ndjson")
            .body(body);
        let response: BulkResponse = serde_json::from_value(self.call(OPERATION, request).await?)?;
        if response.errors {
            let failure = response
                .items
                .iter()
                .filter_map(|item| item.values().next())
                .find_map(|result| {
                    let error = result.get("error")?;
                    Some(format!("document {}: {}", result["_id"], reason(error)))
                });
            return Err(Error::Search {
                operation: OPERATION,
                message: failure.unwrap_or_else(|| "bulk request reported errors".to_owned()),
            });
        }
        Ok(u64::try_from(response.items.len()).unwrap_or(u64::MAX))
    }

    /// The versions `{alias}-v{n}` that exist, with their index names.
    async fn versions(&self, operation: &'static str) -> Result<Vec<(u64, String)>> {
        let pattern = format!("{}-v*", self.alias);
        let indices: IndexAliases = serde_json::from_value(
            self.call(operation, self.request(Method::GET, &[&pattern, "_alias"]))
                .await?,
        )?;
        let prefix = format!("{}-v", self.alias);
        Ok(indices
            .into_keys()
            .filter_map(|index| {
                let version = index.strip_prefix(&prefix)?.parse().ok()?;
                Some((version, index))
            })
            .collect())
    }

    fn request(&self, method: Method, segments: &[&str]) -> RequestBuilder {
        let mut url = self.base.clone();
        // Checked in `new`; segments are percent-encoded, so an id cannot reach another endpoint.
        if let Ok(mut path) = url.path_segments_mut() {
            path.pop_if_empty().extend(segments);
        }
        self.http.request(method, url)
    }

    async fn send(&self, operation: &'static str, request: RequestBuilder) -> Result<reqwest::Response> {
        request
            .send()
            .await
            .map_err(|error| transport_error(operation, &error))
    }

    /// Sends `request` and returns its JSON body, or the error OpenSearch answered.
    async fn call(&self, operation: &'static str, request: RequestBuilder) -> Result<Value> {
        checked(operation, self.send(operation, request).await?).await
    }
}

async fn checked(operation: &'static str, response: reqwest::Response) -> Result<Value> {
    let status = response.status();
    let body = response
        .bytes()
        .await
        .map_err(|error| transport_error(operation, &error))?;
    if !status.is_success() {
        return Err(response_error(operation, status, &body));
    }
    if body.is_empty() {
        return Ok(Value::Null);
    }
    Ok(serde_json::from_slice(&body)?)
}

/// The status and OpenSearch's own explanation (`error.type: error.reason`), not the whole body.
fn response_error(operation: &'static str, status: StatusCode, body: &[u8]) -> Error {
    let explanation = serde_json::from_slice::<Value>(body)
        .ok()
        .and_then(|body| match &body["error"] {
            Value::Null => None,
            error => Some(reason(error)),
        });
    let mut message = match explanation {
        Some(explanation) => format!("{status}: {explanation}"),
        None => status.to_string(),
    };
    if let Some((cut, _)) = message.char_indices().nth(MAX_REASON) {
        message.truncate(cut);
        message.push('…');
    }
    Error::Search { operation, message }
}

fn reason(error: &Value) -> String {
    match (error["type"].as_str(), error["reason"].as_str(), error.as_str()) {
        (Some(kind), Some(reason), _) => format!("{kind}: {reason}"),
        (Some(kind), None, _) => kind.to_owned(),
        (None, _, Some(text)) => text.to_owned(),
        _ => "no reason given".to_owned(),
    }
}

fn transport_error(operation: &'static str, error: &reqwest::Error) -> Error {
    Error::Search {
        operation,
        message: error_chain(error),
    }
}

/// reqwest's own message omits the cause ("error sending request"), which is in its sources.
fn error_chain(error: &dyn std::error::Error) -> String {
    let mut message = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        message.push_str(": ");
        message.push_str(&cause.to_string());
        source = cause.source();
    }
    message
}
