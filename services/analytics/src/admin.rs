//! The admin API: the pipeline's state, KPIs and exports of the event store.

use axum::body::Body;
use axum::extract::State;
use axum::http::header;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use flotilla_service::extract::QueryParams;
use futures::StreamExt;
use redis::AsyncCommands;
use serde::{Deserialize, Serialize};

use crate::caller::AdminCaller;
use crate::event::Stored;
use crate::kpi::custom::{CountQuery, Counts};
use crate::kpi::daily::Report;
use crate::kpi::funnel::{Funnel, FunnelQuery};
use crate::kpi::sessions::SessionReport;
use crate::kpi::{self, KpiQuery};
use crate::pipeline::{self, ShardStatus};
use crate::state::Shared;
use crate::{Error, Result};

pub fn routes() -> Router<Shared> {
    Router::new()
        .route("/v1/admin/pipeline", get(status))
        .route("/v1/admin/exports", get(export))
        .route("/v1/admin/kpis", get(kpis))
        .route("/v1/admin/kpis/sessions", get(sessions))
        .route("/v1/admin/kpis/funnel", get(funnel))
        .route("/v1/admin/kpis/events", get(counts))
}

async fn kpis(
    State(state): State<Shared>,
    _: AdminCaller,
    QueryParams(query): QueryParams<KpiQuery>,
) -> Result<Json<Report>> {
    Ok(Json(kpi::daily::report(&state, &query).await?))
}

async fn sessions(
    State(state): State<Shared>,
    _: AdminCaller,
    QueryParams(query): QueryParams<KpiQuery>,
) -> Result<Json<SessionReport>> {
    Ok(Json(kpi::sessions::report(&state, &query).await?))
}

async fn funnel(
    State(state): State<Shared>,
    _: AdminCaller,
    QueryParams(query): QueryParams<FunnelQuery>,
) -> Result<Json<Funnel>> {
    Ok(Json(kpi::funnel::report(&state, &query).await?))
}

async fn counts(
    State(state): State<Shared>,
    _: AdminCaller,
    QueryParams(query): QueryParams<CountQuery>,
) -> Result<Json<Counts>> {
    Ok(Json(kpi::custom::report(&state, &query).await?))
}

#[derive(Serialize, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct PipelineStatus {
    /// Every shard has committed all it was given.
    pub caught_up: bool,
    pub shards: Vec<ShardStatus>,
    /// Committed files in the event store.
    pub files: u64,
}

async fn status(State(state): State<Shared>, _: AdminCaller) -> Result<Json<PipelineStatus>> {
    let shards = pipeline::status(&state).await?;
    let mut redis = state.log_redis.clone();
    let files: u64 = redis
        .hlen(state.keys.manifest())
        .await
        .map_err(flotilla_storage::Error::from)?;
    Ok(Json(PipelineStatus {
        caught_up: shards.iter().all(|shard| shard.caught_up),
        shards,
        files,
    }))
}

#[derive(Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ExportQuery {
    /// From this client time (RFC 3339), inclusive.
    pub from: String,
    /// Up to this client time (RFC 3339), exclusive.
    pub to: String,
    /// Only events of this name.
    #[serde(default)]
    pub name: Option<String>,
    /// Only this game's events.
    #[serde(default)]
    pub game: Option<String>,
    /// `jsonl` (the default) or `csv`.
    #[serde(default)]
    pub format: Option<String>,
    /// Also events kept out of KPIs (floods; quarantined events are not in date partitions).
    #[serde(default)]
    pub excluded: bool,
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Format {
    Jsonl,
    Csv,
}

/// One exported event: the stored columns, properties as an object.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Exported<'a> {
    id: &'a str,
    game: &'a str,
    name: &'a str,
    player: &'a str,
    session: Option<&'a str>,
    time: String,
    received: String,
    properties: serde_json::Value,
    excluded: Option<&'a str>,
    currency: Option<&'a str>,
    amount: Option<i64>,
}

fn rfc3339(ms: i64) -> String {
    jiff::Timestamp::from_millisecond(ms).map_or_else(|_| ms.to_string(), |at| at.to_string())
}

fn csv_field(value: &str) -> String {
    match value.contains([',', '"', '\n', '\r']) {
        true => format!("\"{}\"", value.replace('"', "\"\"")),
        false => value.to_owned(),
    }
}

const CSV_HEADER: &str = "id,game,name,player,session,time,received,properties,excluded,currency,amount\n";

fn render(event: &Stored, format: Format, out: &mut Vec<u8>) {
    let exported = Exported {
        id: &event.id,
        game: &event.game,
        name: &event.name,
        player: &event.player,
        session: event.session.as_deref(),
        time: rfc3339(event.time_ms),
        received: rfc3339(event.received_ms),
        properties: serde_json::from_str(&event.properties).unwrap_or_default(),
        excluded: event.excluded.as_deref(),
        currency: event.currency.as_deref(),
        amount: event.amount,
    };
    match format {
        Format::Jsonl => {
            if serde_json::to_writer(&mut *out, &exported).is_ok() {
                out.push(b'\n');
            }
        }
        Format::Csv => {
            let fields = [
                csv_field(exported.id),
                csv_field(exported.game),
                csv_field(exported.name),
                csv_field(exported.player),
                csv_field(exported.session.unwrap_or("")),
                exported.time,
                exported.received,
                csv_field(&event.properties),
                csv_field(exported.excluded.unwrap_or("")),
                csv_field(exported.currency.unwrap_or("")),
                exported.amount.map(|a| a.to_string()).unwrap_or_default(),
            ];
            out.extend_from_slice(fields.join(",").as_bytes());
            out.push(b'\n');
        }
    }
}

/// The committed files whose partition (game, UTC date and hour) can hold events in `[from, to)`.
async fn files_between(state: &Shared, from_ms: i64, to_ms: i64, game: Option<&str>) -> Result<Vec<String>> {
    Ok(crate::store::committed(state)
        .await?
        .into_iter()
        .filter(|file| {
            file.hour_ms + 3_600_000 > from_ms && file.hour_ms < to_ms && game.is_none_or(|g| g == file.game)
        })
        .map(|file| file.path)
        .collect())
}

/// Streams the events of `[from, to)` as JSON lines or CSV, a file at a time.
async fn export(
    State(state): State<Shared>,
    _: AdminCaller,
    QueryParams(query): QueryParams<ExportQuery>,
) -> Result<Response> {
    let instant = |field: &'static str, value: &str| {
        value
            .parse::<jiff::Timestamp>()
            .map(|at| at.as_millisecond())
            .map_err(|_| Error::bad(field, format!("{field} must be an RFC 3339 timestamp")))
    };
    let (from_ms, to_ms) = (instant("from", &query.from)?, instant("to", &query.to)?);
    let format = match query.format.as_deref() {
        None | Some("jsonl") => Format::Jsonl,
        Some("csv") => Format::Csv,
        Some(_) => return Err(Error::bad("format", "format is jsonl or csv")),
    };
    let files = files_between(&state, from_ms, to_ms, query.game.as_deref()).await?;
    let header_line = (format == Format::Csv).then(|| Ok::<_, Error>(bytes::Bytes::from(CSV_HEADER)));
    let chunks = futures::stream::iter(files).then(move |path: String| {
        let state = state.clone();
        let name = query.name.clone();
        async move {
            let events = state.store.read(&path).await?;
            let mut out = Vec::new();
            for event in events.iter().filter(|event| {
                (from_ms..to_ms).contains(&event.time_ms)
                    && name.as_deref().is_none_or(|name| name == event.name)
                    && (query.excluded || event.excluded.is_none())
            }) {
                render(event, format, &mut out);
            }
            Ok::<_, Error>(bytes::Bytes::from(out))
        }
    });
    let body = futures::stream::iter(header_line).chain(chunks);
    let content_type = match format {
        Format::Jsonl => "application/jsonl",
        Format::Csv => "text/csv",
    };
    Ok(([(header::CONTENT_TYPE, content_type)], Body::from_stream(body)).into_response())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn csv_fields_are_quoted_only_when_needed() {
        assert_eq!(csv_field("plain"), "plain");
        assert_eq!(csv_field(r#"{"a":1,"b":"x"}"#), r#""{""a"":1,""b"":""x""}""#);
    }
}
