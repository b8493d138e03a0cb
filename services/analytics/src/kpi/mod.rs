//! Reports over the event store, in any time zone, with DataFusion:
//! - [`daily`] — daily, rolling and calendar active players, new players, revenue, ARPDAU, ARPPU,
//!   the paying share, first-purchase conversion, and retention by install cohort;
//! - [`sessions`] — sessions (explicit start/end, or 30 minutes of inactivity, at most 24 hours)
//!   and their length;
//! - [`funnel`] — players through an ordered list of events within a window;
//! - [`custom`] — any event's counts and sums, grouped by a property.
//!
//! Every report reads the committed Parquet files (the manifest's, never a file a crashed chunk
//! left) as the table `events`, and the events kept in KPIs as the view `kept` (client time `t`
//! in Unix milliseconds). A local day is the event's client time shifted by the zone's UTC offset
//! at that instant: the offsets of the zone are turned into a `CASE` over the instants where they
//! change (from the time-zone database), so a day across a DST change has 23 or 25 hours, as it
//! does for the players.

pub mod custom;
pub mod daily;
pub mod funnel;
pub mod sessions;

use datafusion::arrow::array::RecordBatch;
use datafusion::prelude::{ParquetReadOptions, SessionContext};
use jiff::civil::Date;
use jiff::tz::TimeZone;
use serde::Deserialize;

use crate::state::AppState;
use crate::{Error, Result};

const DAY_MS: i64 = 86_400_000;
/// The longest range one report covers.
pub const MAX_DAYS: i64 = 366;

#[derive(Debug, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct KpiQuery {
    /// The first local day (`YYYY-MM-DD`).
    pub from: String,
    /// The last local day, inclusive.
    pub to: String,
    /// An IANA time zone (`America/Los_Angeles`); UTC when absent.
    #[serde(default)]
    pub tz: Option<String>,
    /// Only this game's events.
    #[serde(default)]
    pub game: Option<String>,
}

/// A query's zone and range, checked.
pub(crate) struct Range {
    tz: TimeZone,
    tz_name: String,
    /// Local days since 1970-01-01, inclusive.
    first: i64,
    last: i64,
}

impl KpiQuery {
    pub(crate) fn range(&self) -> Result<Range> {
        Range::parse(&self.from, &self.to, self.tz.as_deref(), self.game.as_deref())
    }
}

impl Range {
    /// Every report's `from`, `to`, `tz` and `game`, checked. The reports' query types repeat
    /// these four fields rather than flatten one struct: serde's `flatten` cannot be combined
    /// with `deny_unknown_fields`, and an unknown parameter must be a 400, not ignored.
    pub(crate) fn parse(from: &str, to: &str, tz: Option<&str>, game: Option<&str>) -> Result<Range> {
        let tz_name = tz.unwrap_or("UTC").to_owned();
        let tz = TimeZone::get(&tz_name).map_err(|_| Error::bad("tz", "tz is not an IANA time zone"))?;
        let date = |field: &'static str, value: &str| {
            value
                .parse::<Date>()
                .map_err(|_| Error::bad(field, format!("{field} must be a date (YYYY-MM-DD)")))
        };
        let (first, last) = (day_number(date("from", from)?), day_number(date("to", to)?));
        if last < first || last - first >= MAX_DAYS {
            return Err(Error::bad(
                "to",
                format!("to is on or after from, at most {MAX_DAYS} days"),
            ));
        }
        if let Some(game) = game
            && !crate::collector::valid_game(game)
        {
            return Err(Error::bad("game", "game must be 1-32 of a-z 0-9 -"));
        }
        Ok(Range {
            tz,
            tz_name,
            first,
            last,
        })
    }

    /// The position of a local day in the range.
    fn index(&self, day: i64) -> Option<usize> {
        (self.first..=self.last)
            .contains(&day)
            .then(|| (day - self.first) as usize)
    }

    fn len(&self) -> usize {
        (self.last - self.first + 1) as usize
    }

    /// The local day of an instant (Unix milliseconds).
    fn day_of(&self, ms: i64) -> i64 {
        let offset = jiff::Timestamp::from_millisecond(ms)
            .map(|instant| self.tz.to_offset(instant).seconds() as i64 * 1000)
            .unwrap_or(0);
        (ms + offset).div_euclid(DAY_MS)
    }

    /// Unix milliseconds bounding the range's local days, with `margin_ms` on each side: no zone is
    /// more than 26 hours from UTC, so an event outside is on no day of the range.
    fn bounds_ms(&self, margin_ms: i64) -> (i64, i64) {
        (
            self.first * DAY_MS - 2 * DAY_MS - margin_ms,
            (self.last + 2) * DAY_MS + margin_ms,
        )
    }
}

fn day_number(date: Date) -> i64 {
    (date - Date::constant(1970, 1, 1)).get_days() as i64
}

fn date_of(day: i64) -> Date {
    Date::constant(1970, 1, 1)
        .checked_add(jiff::Span::new().days(day))
        .unwrap_or(Date::constant(1970, 1, 1))
}

/// SQL for the local day number of `ms` (Unix milliseconds): the zone's offset is constant
/// between transitions, so it is a `CASE` over the transitions between `from_ms` and `to_ms`.
fn local_day_sql(tz: &TimeZone, ms: &str, from_ms: i64, to_ms: i64) -> String {
    let start = jiff::Timestamp::from_millisecond(from_ms).unwrap_or(jiff::Timestamp::UNIX_EPOCH);
    let mut pieces: Vec<(i64, i64)> = Vec::new(); // (until this instant, offset ms)
    let mut offset = tz.to_offset(start).seconds() as i64 * 1000;
    for transition in tz.following(start) {
        let at = transition.timestamp().as_millisecond();
        if at > to_ms {
            break;
        }
        pieces.push((at, offset));
        offset = transition.offset().seconds() as i64 * 1000;
    }
    if pieces.is_empty() {
        return format!("({ms} + {offset}) / {DAY_MS}");
    }
    let mut sql = String::from("CASE");
    for (until, offset) in pieces {
        sql.push_str(&format!(" WHEN {ms} < {until} THEN ({ms} + {offset}) / {DAY_MS}"));
    }
    sql.push_str(&format!(" ELSE ({ms} + {offset}) / {DAY_MS} END"));
    sql
}

/// The committed events of one game (or all), ready for SQL: the table `events` and the view
/// `kept` (the events in KPIs, client time as `t`), with `day`, the SQL of `t`'s local day.
pub(crate) struct Events {
    context: SessionContext,
    pub day: String,
}

fn engine(error: datafusion::error::DataFusionError) -> Error {
    Error::Internal(format!("query: {error}"))
}

impl Events {
    /// `None` when no file is committed yet.
    pub(crate) async fn open(state: &AppState, range: &Range, game: Option<&str>) -> Result<Option<Events>> {
        let files: Vec<crate::store::Committed> = crate::store::committed(state)
            .await?
            .into_iter()
            .filter(|file| game.is_none_or(|game| game == file.game))
            .collect();
        // The zone's offsets are needed from the earliest partition on: few transitions, a short CASE.
        let Some(earliest) = files.iter().map(|file| file.hour_ms).min() else {
            return Ok(None);
        };
        let paths: Vec<String> = files
            .into_iter()
            .map(|file| state.store.root().join(file.path).display().to_string())
            .collect();
        let context = SessionContext::new();
        let schema = crate::store::schema();
        let options = ParquetReadOptions::default().schema(&schema);
        let events = context.read_parquet(paths, options).await.map_err(engine)?;
        context
            .register_table("events", events.into_view())
            .map_err(engine)?;
        let events = Events {
            context,
            // Offsets up to a few days past the range: later events fall in no day of the range
            // whatever their offset.
            day: local_day_sql(&range.tz, "t", earliest, (range.last + 3) * DAY_MS),
        };
        events
            .query(
                "CREATE VIEW kept AS SELECT id, name, player, session, properties, currency, amount, \
                 CAST(time AS BIGINT) AS t FROM events WHERE excluded IS NULL",
            )
            .await?;
        Ok(Some(events))
    }

    pub(crate) async fn query(&self, sql: &str) -> Result<Vec<RecordBatch>> {
        self.context
            .sql(sql)
            .await
            .map_err(engine)?
            .collect()
            .await
            .map_err(engine)
    }
}

/// A column as strings (dictionary-encoded or not), for reading rows back.
fn strings(batch: &RecordBatch, column: usize) -> Result<datafusion::arrow::array::ArrayRef> {
    datafusion::arrow::compute::cast(
        batch.column(column),
        &datafusion::arrow::datatypes::DataType::Utf8,
    )
    .map_err(|e| Error::Internal(e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Evaluates the generated CASE the way the engine will (integer division of positive values).
    fn local_day(sql: &str, ms: i64) -> i64 {
        if let Some(fixed) = sql.strip_prefix("(t + ") {
            let offset = fixed.split(')').next().expect("offset");
            return (ms + offset.parse::<i64>().expect("offset")) / DAY_MS;
        }
        let mut rest = sql.trim_start_matches("CASE");
        loop {
            rest = rest.trim_start();
            if let Some(when) = rest.strip_prefix("WHEN t < ") {
                let (until, after) = when.split_once(" THEN (t + ").expect("then");
                let (offset, after) = after.split_once(')').expect("offset");
                rest = after.split_once(&format!("/ {DAY_MS}")).expect("day").1;
                if ms < until.parse::<i64>().expect("until") {
                    return (ms + offset.parse::<i64>().expect("offset")) / DAY_MS;
                }
            } else {
                let offset = rest
                    .trim_start_matches("ELSE (t + ")
                    .split(')')
                    .next()
                    .expect("offset");
                return (ms + offset.parse::<i64>().expect("offset")) / DAY_MS;
            }
        }
    }

    #[test]
    fn local_days_follow_the_zone_across_dst() {
        let la = TimeZone::get("America/Los_Angeles").expect("zone");
        let sql = local_day_sql(&la, "t", 0, 1_900_000_000_000);
        let range =
            Range::parse("2027-03-01", "2027-03-02", Some("America/Los_Angeles"), None).expect("valid");
        for (instant, expected) in [
            // 2027-03-14 (DST starts at 02:00 local): 01:59 PST and 03:00 PDT are the same day.
            ("2027-03-14T09:59:00Z", "2027-03-14"),
            ("2027-03-14T10:00:00Z", "2027-03-14"),
            // 23:30 PDT on the 14th is 06:30 UTC on the 15th.
            ("2027-03-15T06:30:00Z", "2027-03-14"),
            ("2027-03-15T07:00:00Z", "2027-03-15"),
            // 2027-11-07 (DST ends): 23:59 PST is 07:59 UTC the next day.
            ("2027-11-08T07:59:00Z", "2027-11-07"),
            ("2027-11-08T08:00:00Z", "2027-11-08"),
        ] {
            let ms = instant
                .parse::<jiff::Timestamp>()
                .expect("instant")
                .as_millisecond();
            assert_eq!(date_of(local_day(&sql, ms)).to_string(), expected, "{instant}");
            assert_eq!(
                date_of(range.day_of(ms)).to_string(),
                expected,
                "day_of at {instant}"
            );
            let zoned = jiff::Timestamp::from_millisecond(ms)
                .expect("ms")
                .to_zoned(la.clone());
            assert_eq!(zoned.date().to_string(), expected, "jiff agrees at {instant}");
        }
        let shanghai = TimeZone::get("Asia/Shanghai").expect("zone");
        // No transition since 1991: a fixed offset, no CASE.
        let sql = local_day_sql(&shanghai, "t", 1_700_000_000_000, 1_900_000_000_000);
        assert!(!sql.contains("CASE"), "{sql}");
        let ms = "2027-01-15T16:00:00Z"
            .parse::<jiff::Timestamp>()
            .expect("t")
            .as_millisecond();
        assert_eq!(date_of(local_day(&sql, ms)).to_string(), "2027-01-16");
    }
}
