//! The event store: Parquet files partitioned by game, date and hour of the event's client time
//! (UTC), under `--data-dir`:
//!
//! ```text
//! events/game=<game>/date=<YYYY-MM-DD>/hour=<HH>/<shard>-<first offset>-<claim>.parquet
//! quarantine/date=<YYYY-MM-DD of receipt>/<shard>-<first offset>-<claim>.parquet
//! ```
//!
//! A file counts only once the pipeline's commit lists it in the manifest ([`crate::pipeline`]):
//! a file written by a process that died before committing, or by one that lost its shard, is
//! never read. Files are fsynced and renamed into place before the commit, so a committed file
//! survives a crash.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use arrow_array::builder::{Int64Builder, StringBuilder, TimestampMillisecondBuilder};
use arrow_array::{Array, ArrayRef, Int64Array, RecordBatch, StringArray, TimestampMillisecondArray};
use arrow_schema::{DataType, Field, Schema, SchemaRef, TimeUnit};
use parquet::arrow::ArrowWriter;
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use parquet::basic::{Compression, ZstdLevel};
use parquet::file::properties::WriterProperties;

use crate::event::Stored;
use crate::{Error, Result};

/// The columns of every event file.
pub fn schema() -> SchemaRef {
    let time = DataType::Timestamp(TimeUnit::Millisecond, Some("UTC".into()));
    Arc::new(Schema::new(vec![
        Field::new("id", DataType::Utf8, false),
        Field::new("game", DataType::Utf8, false),
        Field::new("name", DataType::Utf8, false),
        Field::new("player", DataType::Utf8, false),
        Field::new("session", DataType::Utf8, true),
        Field::new("time", time.clone(), false),
        Field::new("received", time, false),
        Field::new("properties", DataType::Utf8, false),
        Field::new("excluded", DataType::Utf8, true),
        Field::new("currency", DataType::Utf8, true),
        Field::new("amount", DataType::Int64, true),
    ]))
}

/// The partition an event belongs to (a directory relative to the data dir).
pub fn partition(event: &Stored) -> String {
    let civil = |ms: i64| {
        jiff::Timestamp::from_millisecond(ms)
            .unwrap_or(jiff::Timestamp::UNIX_EPOCH)
            .to_zoned(jiff::tz::TimeZone::UTC)
    };
    match event.excluded.as_deref() {
        Some(crate::event::LATE) => format!("quarantine/date={}", civil(event.received_ms).date()),
        _ => {
            let at = civil(event.time_ms);
            format!(
                "events/game={}/date={}/hour={:02}",
                event.game,
                at.date(),
                at.hour()
            )
        }
    }
}

/// A committed file of an hour partition.
#[derive(Debug, PartialEq, Eq)]
pub struct Committed {
    /// Relative to the data dir.
    pub path: String,
    pub game: String,
    /// When its hour starts (UTC), Unix milliseconds.
    pub hour_ms: i64,
}

/// The files the pipeline committed to hour partitions (quarantine left out), by path.
pub async fn committed(state: &crate::state::AppState) -> Result<Vec<Committed>> {
    let mut redis = state.log_redis.clone();
    let paths: Vec<String> = redis::AsyncCommands::hkeys(&mut redis, state.keys.manifest())
        .await
        .map_err(flotilla_storage::Error::from)?;
    let mut files: Vec<Committed> = paths
        .into_iter()
        .filter_map(|path| {
            let (game, hour_ms) = partition_start(&path)?;
            Some(Committed {
                game: game.to_owned(),
                hour_ms,
                path,
            })
        })
        .collect();
    files.sort_by(|a, b| a.path.cmp(&b.path));
    Ok(files)
}

/// The game and start (Unix ms) of an event file's hour partition; `None` for quarantine.
fn partition_start(path: &str) -> Option<(&str, i64)> {
    let mut parts = path.split('/');
    if parts.next()? != "events" {
        return None;
    }
    let game = parts.next()?.strip_prefix("game=")?;
    let date: jiff::civil::Date = parts.next()?.strip_prefix("date=")?.parse().ok()?;
    let hour: i8 = parts.next()?.strip_prefix("hour=")?.parse().ok()?;
    let start = date
        .at(hour, 0, 0, 0)
        .to_zoned(jiff::tz::TimeZone::UTC)
        .ok()?
        .timestamp()
        .as_millisecond();
    Some((game, start))
}

pub struct EventStore {
    root: PathBuf,
}

impl EventStore {
    pub fn new(root: &Path) -> Self {
        Self {
            root: root.to_owned(),
        }
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Writes `events` as the Parquet file `path` (relative to the data dir), durably: the file
    /// is fsynced, renamed into place and its directory fsynced before this returns.
    pub async fn write(&self, path: &str, events: Vec<Stored>) -> Result<()> {
        let target = self.root.join(path);
        tokio::task::spawn_blocking(move || write_file(&target, &events))
            .await
            .map_err(|e| Error::Internal(e.to_string()))?
    }

    /// The events of the file `path` (relative to the data dir).
    pub async fn read(&self, path: &str) -> Result<Vec<Stored>> {
        let source = self.root.join(path);
        tokio::task::spawn_blocking(move || read_file(&source))
            .await
            .map_err(|e| Error::Internal(e.to_string()))?
    }
}

fn write_file(target: &Path, events: &[Stored]) -> Result<()> {
    let directory = target
        .parent()
        .ok_or_else(|| Error::Internal("an event file has no directory".into()))?;
    std::fs::create_dir_all(directory)?;
    let batch = to_batch(events)?;
    let properties = WriterProperties::builder()
        .set_compression(Compression::ZSTD(ZstdLevel::default()))
        .build();
    let temporary = target.with_extension("parquet.tmp");
    let file = std::fs::File::create(&temporary)?;
    let mut writer = ArrowWriter::try_new(file, batch.schema(), Some(properties)).map_err(parquet_error)?;
    writer.write(&batch).map_err(parquet_error)?;
    let file = writer.into_inner().map_err(parquet_error)?;
    file.sync_all()?;
    std::fs::rename(&temporary, target)?;
    std::fs::File::open(directory)?.sync_all()?;
    Ok(())
}

/// A Parquet file written as a stream (an export): each [`write`](Self::write) adds a row group
/// and returns the bytes that completes, [`finish`](Self::finish) the footer. The writer counts
/// the bytes it has written, so handing them on as they come leaves its offsets right.
pub struct ParquetStream {
    writer: ArrowWriter<Vec<u8>>,
}

impl ParquetStream {
    pub fn new() -> Result<Self> {
        let properties = WriterProperties::builder()
            .set_compression(Compression::ZSTD(ZstdLevel::default()))
            .build();
        let writer = ArrowWriter::try_new(Vec::new(), schema(), Some(properties)).map_err(parquet_error)?;
        Ok(Self { writer })
    }

    pub fn write(&mut self, events: &[&Stored]) -> Result<bytes::Bytes> {
        if !events.is_empty() {
            let batch = to_batch(events.iter().copied())?;
            self.writer.write(&batch).map_err(parquet_error)?;
            self.writer.flush().map_err(parquet_error)?;
            self.writer.sync()?;
        }
        Ok(bytes::Bytes::from(std::mem::take(self.writer.inner_mut())))
    }

    pub fn finish(self) -> Result<bytes::Bytes> {
        let rest = self.writer.into_inner().map_err(parquet_error)?;
        Ok(bytes::Bytes::from(rest))
    }
}

fn parquet_error(error: parquet::errors::ParquetError) -> Error {
    Error::Internal(format!("parquet: {error}"))
}

fn to_batch<'a>(events: impl IntoIterator<Item = &'a Stored>) -> Result<RecordBatch> {
    let mut id = StringBuilder::new();
    let mut game = StringBuilder::new();
    let mut name = StringBuilder::new();
    let mut player = StringBuilder::new();
    let mut session = StringBuilder::new();
    let mut time = TimestampMillisecondBuilder::new().with_timezone("UTC");
    let mut received = TimestampMillisecondBuilder::new().with_timezone("UTC");
    let mut properties = StringBuilder::new();
    let mut excluded = StringBuilder::new();
    let mut currency = StringBuilder::new();
    let mut amount = Int64Builder::new();
    for event in events {
        id.append_value(&event.id);
        game.append_value(&event.game);
        name.append_value(&event.name);
        player.append_value(&event.player);
        session.append_option(event.session.as_deref());
        time.append_value(event.time_ms);
        received.append_value(event.received_ms);
        properties.append_value(&event.properties);
        excluded.append_option(event.excluded.as_deref());
        currency.append_option(event.currency.as_deref());
        amount.append_option(event.amount);
    }
    let columns: Vec<ArrayRef> = vec![
        Arc::new(id.finish()),
        Arc::new(game.finish()),
        Arc::new(name.finish()),
        Arc::new(player.finish()),
        Arc::new(session.finish()),
        Arc::new(time.finish()),
        Arc::new(received.finish()),
        Arc::new(properties.finish()),
        Arc::new(excluded.finish()),
        Arc::new(currency.finish()),
        Arc::new(amount.finish()),
    ];
    RecordBatch::try_new(schema(), columns).map_err(|e| Error::Internal(format!("arrow: {e}")))
}

fn read_file(source: &Path) -> Result<Vec<Stored>> {
    let file = std::fs::File::open(source)?;
    let reader = ParquetRecordBatchReaderBuilder::try_new(file)
        .and_then(|builder| builder.build())
        .map_err(parquet_error)?;
    let mut events = Vec::new();
    for batch in reader {
        let batch = batch.map_err(|e| Error::Internal(format!("arrow: {e}")))?;
        events.extend(from_batch(&batch)?);
    }
    Ok(events)
}

fn from_batch(batch: &RecordBatch) -> Result<Vec<Stored>> {
    let bad = || Error::Internal("an event file does not have the event columns".into());
    let strings = |name: &str| {
        batch
            .column_by_name(name)
            .and_then(|column| column.as_any().downcast_ref::<StringArray>())
            .ok_or_else(bad)
    };
    let times = |name: &str| {
        batch
            .column_by_name(name)
            .and_then(|column| column.as_any().downcast_ref::<TimestampMillisecondArray>())
            .ok_or_else(bad)
    };
    let (id, game, name, player) = (
        strings("id")?,
        strings("game")?,
        strings("name")?,
        strings("player")?,
    );
    let (session, properties, excluded, currency) = (
        strings("session")?,
        strings("properties")?,
        strings("excluded")?,
        strings("currency")?,
    );
    let (time, received) = (times("time")?, times("received")?);
    let amount = batch
        .column_by_name("amount")
        .and_then(|column| column.as_any().downcast_ref::<Int64Array>())
        .ok_or_else(bad)?;
    let optional =
        |column: &StringArray, row: usize| column.is_valid(row).then(|| column.value(row).to_owned());
    Ok((0..batch.num_rows())
        .map(|row| Stored {
            id: id.value(row).to_owned(),
            game: game.value(row).to_owned(),
            name: name.value(row).to_owned(),
            player: player.value(row).to_owned(),
            session: optional(session, row),
            time_ms: time.value(row),
            received_ms: received.value(row),
            properties: properties.value(row).to_owned(),
            excluded: optional(excluded, row),
            currency: optional(currency, row),
            amount: amount.is_valid(row).then(|| amount.value(row)),
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stored(id: &str, excluded: Option<&str>) -> Stored {
        Stored {
            id: id.into(),
            game: "demo".into(),
            name: "purchase".into(),
            player: "p1".into(),
            session: None,
            time_ms: 1_800_000_000_000,
            received_ms: 1_800_000_100_000,
            properties: r#"{"currency":"USD","amount":499}"#.into(),
            excluded: excluded.map(Into::into),
            currency: Some("USD".into()),
            amount: Some(499),
        }
    }

    #[test]
    fn events_are_partitioned_by_their_utc_hour_and_late_ones_by_receipt() {
        assert_eq!(
            partition(&stored("a", None)),
            "events/game=demo/date=2027-01-15/hour=08"
        );
        assert_eq!(
            partition(&stored("a", Some(crate::event::LATE))),
            "quarantine/date=2027-01-15"
        );
    }

    #[test]
    fn a_partition_path_names_its_game_and_hour() {
        let (game, start) =
            partition_start("events/game=demo/date=2027-01-15/hour=08/3-1-0-ab.parquet").expect("hour");
        assert_eq!((game, start), ("demo", 1_800_000_000_000));
        assert!(partition_start("quarantine/date=2027-01-15/3-1-0-ab.parquet").is_none());
    }

    #[tokio::test]
    async fn a_file_reads_back_exactly_what_was_written() {
        let root = std::env::temp_dir().join(format!("flotilla-store-{}", std::process::id()));
        let store = EventStore::new(&root);
        let events = vec![stored("a", None), stored("b", Some("flood"))];
        store.write("x/y.parquet", events.clone()).await.expect("written");
        assert_eq!(store.read("x/y.parquet").await.expect("read"), events);
        assert!(!root.join("x/y.parquet.tmp").exists());
        let _ = std::fs::remove_dir_all(root);
    }
}
