//! `GET /v1/admin/exports`: any range of client time and event filter as JSON lines, CSV (either
//! gzip-compressed on request) or Parquet (zstd), streamed a committed file at a time so an
//! export of months holds one file's events in memory, not the export's.

use std::io::Write;

use axum::Router;
use axum::body::Body;
use axum::extract::State;
use axum::http::{HeaderValue, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use bytes::Bytes;
use flate2::write::GzEncoder;
use flotilla_service::extract::QueryParams;
use serde::{Deserialize, Serialize};

use crate::caller::AdminCaller;
use crate::event::Stored;
use crate::state::Shared;
use crate::store::ParquetStream;
use crate::{Error, Result};

pub fn routes() -> Router<Shared> {
    Router::new().route("/v1/admin/exports", get(export))
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
    /// `jsonl` (the default), `csv` or `parquet` (zstd-compressed, the event store's columns).
    #[serde(default)]
    pub format: Option<String>,
    /// Compress a `jsonl` or `csv` export with gzip (a `.gz` file, not a transfer encoding).
    #[serde(default)]
    pub gzip: bool,
    /// Also events kept out of KPIs (floods; quarantined events are not in date partitions).
    #[serde(default)]
    pub excluded: bool,
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Format {
    Jsonl,
    Csv,
    Parquet,
}

impl Format {
    fn parse(query: &ExportQuery) -> Result<Self> {
        let format = match query.format.as_deref() {
            None | Some("jsonl") => Format::Jsonl,
            Some("csv") => Format::Csv,
            Some("parquet") => Format::Parquet,
            Some(_) => return Err(Error::bad("format", "format is jsonl, csv or parquet")),
        };
        if query.gzip && format == Format::Parquet {
            return Err(Error::bad(
                "gzip",
                "a Parquet export is compressed already (zstd); gzip is for jsonl and csv",
            ));
        }
        Ok(format)
    }

    fn content_type(self, gzip: bool) -> &'static str {
        match (self, gzip) {
            (_, true) => "application/gzip",
            (Format::Jsonl, false) => "application/jsonl",
            (Format::Csv, false) => "text/csv",
            (Format::Parquet, false) => "application/vnd.apache.parquet",
        }
    }

    fn extension(self, gzip: bool) -> &'static str {
        match (self, gzip) {
            (Format::Jsonl, false) => "jsonl",
            (Format::Jsonl, true) => "jsonl.gz",
            (Format::Csv, false) => "csv",
            (Format::Csv, true) => "csv.gz",
            (Format::Parquet, _) => "parquet",
        }
    }
}

/// One exported event in JSON lines: the stored columns, properties as an object.
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

/// One event as a JSON line or a CSV row.
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
    if format == Format::Jsonl {
        if serde_json::to_writer(&mut *out, &exported).is_ok() {
            out.push(b'\n');
        }
        return;
    }
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

/// Turns the export's events into the bytes of the answer, a committed file's worth at a time.
enum Encoder {
    Text(Format),
    Gzip(Format, GzEncoder<Vec<u8>>),
    Parquet(ParquetStream),
}

impl Encoder {
    fn new(format: Format, gzip: bool) -> Result<Self> {
        Ok(match (format, gzip) {
            (Format::Parquet, _) => Encoder::Parquet(ParquetStream::new()?),
            (_, true) => Encoder::Gzip(format, GzEncoder::new(Vec::new(), flate2::Compression::default())),
            (_, false) => Encoder::Text(format),
        })
    }

    /// The bytes that start the answer.
    fn start(&mut self) -> Result<Bytes> {
        match self {
            Encoder::Text(Format::Csv) => Ok(Bytes::from_static(CSV_HEADER.as_bytes())),
            Encoder::Gzip(Format::Csv, gzip) => {
                gzip.write_all(CSV_HEADER.as_bytes())?;
                Ok(Bytes::new())
            }
            _ => Ok(Bytes::new()),
        }
    }

    /// The bytes for `events`: whole rows (text), the compressed stream so far (gzip, flushed so
    /// a client sees progress), or one more row group (Parquet).
    fn events(&mut self, events: &[&Stored]) -> Result<Bytes> {
        match self {
            Encoder::Text(format) => {
                let mut out = Vec::new();
                for event in events {
                    render(event, *format, &mut out);
                }
                Ok(Bytes::from(out))
            }
            Encoder::Gzip(format, gzip) => {
                let mut out = Vec::new();
                for event in events {
                    render(event, *format, &mut out);
                }
                gzip.write_all(&out)?;
                gzip.flush()?;
                Ok(Bytes::from(std::mem::take(gzip.get_mut())))
            }
            Encoder::Parquet(parquet) => parquet.write(events),
        }
    }

    /// The bytes that end the answer: the gzip trailer, the Parquet footer.
    fn finish(self) -> Result<Bytes> {
        match self {
            Encoder::Text(_) => Ok(Bytes::new()),
            Encoder::Gzip(_, gzip) => Ok(Bytes::from(gzip.finish()?)),
            Encoder::Parquet(parquet) => parquet.finish(),
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

/// What is left to send: the files not read yet, and the encoder (None once finished).
struct Progress {
    state: Shared,
    files: std::vec::IntoIter<String>,
    encoder: Option<Encoder>,
    query: ExportQuery,
    from_ms: i64,
    to_ms: i64,
}

impl Progress {
    /// The next piece of the answer, or None when it has all been sent. A failure ends the
    /// stream with an error, so the client sees a broken transfer, never a short file.
    async fn next(&mut self) -> Option<Result<Bytes>> {
        let path = match self.files.next() {
            Some(path) => path,
            None => return self.encoder.take().map(Encoder::finish),
        };
        let encoder = self.encoder.as_mut()?;
        let events = match self.state.store.read(&path).await {
            Ok(events) => events,
            Err(error) => return Some(Err(error)),
        };
        let chosen: Vec<&Stored> = events
            .iter()
            .filter(|event| {
                (self.from_ms..self.to_ms).contains(&event.time_ms)
                    && self.query.name.as_deref().is_none_or(|name| name == event.name)
                    && (self.query.excluded || event.excluded.is_none())
            })
            .collect();
        Some(encoder.events(&chosen))
    }
}

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
    let format = Format::parse(&query)?;
    let files = files_between(&state, from_ms, to_ms, query.game.as_deref()).await?;
    let mut encoder = Encoder::new(format, query.gzip)?;
    let start = encoder.start()?;
    let content_type = format.content_type(query.gzip);
    let disposition = format!("attachment; filename=\"events.{}\"", format.extension(query.gzip));
    let progress = Progress {
        state,
        files: files.into_iter(),
        encoder: Some(encoder),
        query,
        from_ms,
        to_ms,
    };
    let rest = futures::stream::unfold(progress, |mut progress| async move {
        progress.next().await.map(|piece| (piece, progress))
    });
    let body = futures::StreamExt::chain(futures::stream::iter([Ok::<_, Error>(start)]), rest);
    Ok((
        [
            (header::CONTENT_TYPE, HeaderValue::from_static(content_type)),
            (
                header::CONTENT_DISPOSITION,
                HeaderValue::from_str(&disposition).map_err(|e| Error::Internal(e.to_string()))?,
            ),
        ],
        Body::from_stream(body),
    )
        .into_response())
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
