//! KPIs over the event store, in any time zone: daily, rolling and calendar active players, new
//! players, revenue, ARPDAU, ARPPU, the paying share, first-purchase conversion, and retention by
//! install cohort (strict "on day N" and "on or after day N").
//!
//! DataFusion scans the committed Parquet files (the manifest's, never a file a crashed chunk
//! left) and reduces the events to one row per player and local day; the KPIs are computed from
//! those rows here. A local day is the event's client time shifted by the zone's UTC offset at
//! that instant: the offsets of the zone are turned into a `CASE` over the instants where they
//! change (from the time-zone database), so a day across a DST change has 23 or 25 hours, as it
//! does for the players. Events kept out of KPIs (`excluded`) are not counted.

use std::collections::{BTreeMap, HashMap, HashSet};

use datafusion::arrow::array::{Array, AsArray};
use datafusion::arrow::compute::cast;
use datafusion::arrow::datatypes::{DataType, Int64Type};
use datafusion::prelude::{ParquetReadOptions, SessionContext};
use jiff::civil::Date;
use jiff::tz::TimeZone;
use serde::{Deserialize, Serialize};

use crate::state::AppState;
use crate::{Error, Result};

const DAY_MS: i64 = 86_400_000;
/// The longest range one report covers.
pub const MAX_DAYS: i64 = 366;
/// Retention is reported for days 0 to this after install.
pub const RETENTION_DAYS: usize = 30;

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

#[derive(Debug, Serialize, Deserialize, schemars::JsonSchema, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct Report {
    pub tz: String,
    pub days: Vec<Day>,
    /// Distinct players per ISO week (`2027-W03`) and calendar month (`2027-01`) of the range
    /// (weeks and months cut at the range's ends).
    pub weeks: BTreeMap<String, u64>,
    pub months: BTreeMap<String, u64>,
    pub cohorts: Vec<Cohort>,
}

#[derive(Debug, Serialize, Deserialize, schemars::JsonSchema, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct Day {
    pub date: String,
    /// Players with an event that day.
    pub dau: u64,
    /// Players with an event in the 7 days ending that day.
    pub wau: u64,
    /// Players with an event in the 30 days ending that day.
    pub mau: u64,
    /// Players whose first event ever was that day.
    pub new_players: u64,
    /// Players who bought that day.
    pub payers: u64,
    /// Players whose first purchase ever was that day.
    pub first_time_payers: u64,
    /// Purchases' amounts by currency, in minor units.
    pub revenue: BTreeMap<String, i64>,
    /// Revenue per daily active player, by currency (minor units).
    pub arpdau: BTreeMap<String, f64>,
    /// Revenue per paying player, by currency (minor units).
    pub arppu: BTreeMap<String, f64>,
    /// payers / dau.
    pub paying_share: f64,
    /// first-time payers / dau.
    pub conversion: f64,
}

/// Players who installed (had their first event) on `date`, and how many came back.
#[derive(Debug, Serialize, Deserialize, schemars::JsonSchema, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct Cohort {
    pub date: String,
    pub size: u64,
    /// `strict[n]`: players active on exactly day `n` after install; `null` past the range's end.
    pub strict: Vec<Option<u64>>,
    /// `on_or_after[n]`: players active on day `n` or any later day up to the range's end.
    pub on_or_after: Vec<Option<u64>>,
}

/// A query's zone and range, checked.
struct Range {
    tz: TimeZone,
    tz_name: String,
    /// Local days since 1970-01-01, inclusive.
    first: i64,
    last: i64,
}

fn day_number(date: Date) -> i64 {
    (date - Date::constant(1970, 1, 1)).get_days() as i64
}

fn date_of(day: i64) -> Date {
    Date::constant(1970, 1, 1)
        .checked_add(jiff::Span::new().days(day))
        .unwrap_or(Date::constant(1970, 1, 1))
}

fn range(query: &KpiQuery) -> Result<Range> {
    let tz_name = query.tz.clone().unwrap_or_else(|| "UTC".into());
    let tz = TimeZone::get(&tz_name).map_err(|_| Error::bad("tz", "tz is not an IANA time zone"))?;
    let date = |field: &'static str, value: &str| {
        value
            .parse::<Date>()
            .map_err(|_| Error::bad(field, format!("{field} must be a date (YYYY-MM-DD)")))
    };
    let (first, last) = (
        day_number(date("from", &query.from)?),
        day_number(date("to", &query.to)?),
    );
    if last < first || last - first >= MAX_DAYS {
        return Err(Error::bad(
            "to",
            format!("to is on or after from, at most {MAX_DAYS} days"),
        ));
    }
    if let Some(game) = &query.game
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

/// One player's activity: their active local days (ascending) and the days they bought.
#[derive(Default)]
struct Player {
    days: Vec<i64>,
    bought: Vec<i64>,
}

pub async fn report(state: &AppState, query: &KpiQuery) -> Result<Report> {
    let range = range(query)?;
    let game = query.game.as_deref();
    let files: Vec<crate::store::Committed> = crate::store::committed(state)
        .await?
        .into_iter()
        .filter(|file| game.is_none_or(|game| game == file.game))
        .collect();
    // The zone's offsets are needed from the earliest partition on: few transitions, a short CASE.
    let earliest = files.iter().map(|file| file.hour_ms).min().unwrap_or(0);
    let paths: Vec<String> = files
        .into_iter()
        .map(|file| state.store.root().join(file.path).display().to_string())
        .collect();
    let (players, revenue) = match paths.is_empty() {
        true => (HashMap::new(), BTreeMap::new()),
        false => scan(paths, &range, earliest).await?,
    };
    Ok(compute(&range, &players, &revenue))
}

/// Per player and local day (all history: installs need it), and revenue per local day.
async fn scan(
    files: Vec<String>,
    range: &Range,
    earliest_ms: i64,
) -> Result<(HashMap<String, Player>, BTreeMap<(i64, String), i64>)> {
    let engine = |e: datafusion::error::DataFusionError| Error::Internal(format!("query: {e}"));
    let context = SessionContext::new();
    let schema = crate::store::schema();
    let options = ParquetReadOptions::default().schema(&schema);
    let events = context.read_parquet(files, options).await.map_err(engine)?;
    context
        .register_table("events", events.into_view())
        .map_err(engine)?;
    // Offsets from the earliest partition to a day past the range; later events fall in no day
    // of the range whatever their offset.
    let last_ms = (range.last + 2) * DAY_MS;
    let day = local_day_sql(&range.tz, "t", earliest_ms, last_ms);
    let activity = format!(
        "SELECT player, day, SUM(bought) AS bought FROM (\
           SELECT player, {day} AS day, CASE WHEN name = 'purchase' THEN 1 ELSE 0 END AS bought \
           FROM (SELECT player, name, CAST(time AS BIGINT) AS t FROM events WHERE excluded IS NULL)) \
         GROUP BY player, day"
    );
    let mut players: HashMap<String, Player> = HashMap::new();
    for batch in context
        .sql(&activity)
        .await
        .map_err(engine)?
        .collect()
        .await
        .map_err(engine)?
    {
        let player = cast(batch.column(0), &DataType::Utf8).map_err(|e| Error::Internal(e.to_string()))?;
        let player = player.as_string::<i32>();
        let day = batch.column(1).as_primitive::<Int64Type>();
        let bought = batch.column(2).as_primitive::<Int64Type>();
        for row in 0..batch.num_rows() {
            let entry = players.entry(player.value(row).to_owned()).or_default();
            entry.days.push(day.value(row));
            if bought.value(row) > 0 {
                entry.bought.push(day.value(row));
            }
        }
    }
    for player in players.values_mut() {
        player.days.sort_unstable();
        player.bought.sort_unstable();
    }
    let sales = format!(
        "SELECT day, currency, SUM(amount) AS revenue FROM (\
           SELECT {day} AS day, currency, amount \
           FROM (SELECT currency, amount, CAST(time AS BIGINT) AS t FROM events \
                 WHERE excluded IS NULL AND name = 'purchase')) \
         GROUP BY day, currency"
    );
    let mut revenue = BTreeMap::new();
    for batch in context
        .sql(&sales)
        .await
        .map_err(engine)?
        .collect()
        .await
        .map_err(engine)?
    {
        let currency = cast(batch.column(1), &DataType::Utf8).map_err(|e| Error::Internal(e.to_string()))?;
        let currency = currency.as_string::<i32>();
        let day = batch.column(0).as_primitive::<Int64Type>();
        let amount = batch.column(2).as_primitive::<Int64Type>();
        for row in 0..batch.num_rows() {
            if currency.is_valid(row) {
                revenue.insert(
                    (day.value(row), currency.value(row).to_owned()),
                    amount.value(row),
                );
            }
        }
    }
    Ok((players, revenue))
}

/// The report from per-player activity; pure, so the definitions are tested on their own.
fn compute(
    range: &Range,
    players: &HashMap<String, Player>,
    revenue: &BTreeMap<(i64, String), i64>,
) -> Report {
    let span = (range.last - range.first + 1) as usize;
    let index = |day: i64| {
        (range.first..=range.last)
            .contains(&day)
            .then(|| (day - range.first) as usize)
    };
    let (mut dau, mut wau, mut mau) = (vec![0u64; span], vec![0u64; span], vec![0u64; span]);
    let (mut new_players, mut payers, mut first_payers) =
        (vec![0u64; span], vec![0u64; span], vec![0u64; span]);
    let mut weeks: BTreeMap<String, u64> = BTreeMap::new();
    let mut months: BTreeMap<String, u64> = BTreeMap::new();
    let mut cohorts: Vec<(u64, Vec<u64>, Vec<u64>)> =
        vec![(0, vec![0; RETENTION_DAYS + 1], vec![0; RETENTION_DAYS + 1]); span];

    for player in players.values() {
        let Some(&install) = player.days.first() else {
            continue;
        };
        let mut player_weeks = HashSet::new();
        let mut player_months = HashSet::new();
        for &day in &player.days {
            if let Some(i) = index(day) {
                dau[i] += 1;
                let date = date_of(day);
                let week = date.iso_week_date();
                player_weeks.insert(format!("{}-W{:02}", week.year(), week.week()));
                player_months.insert(format!("{}-{:02}", date.year(), date.month()));
            }
        }
        for (window, counts) in [(7, &mut wau), (30, &mut mau)] {
            let mut counted_to = i64::MIN; // the last day this player already counts for
            for &day in &player.days {
                for covered in day.max(counted_to + 1)..day + window {
                    if let Some(i) = index(covered) {
                        counts[i] += 1;
                    }
                }
                counted_to = counted_to.max(day + window - 1);
            }
        }
        for week in player_weeks {
            *weeks.entry(week).or_default() += 1;
        }
        for month in player_months {
            *months.entry(month).or_default() += 1;
        }
        for &day in &player.bought {
            if let Some(i) = index(day) {
                payers[i] += 1;
            }
        }
        if let Some(i) = player.bought.first().and_then(|&day| index(day)) {
            first_payers[i] += 1;
        }
        if let Some(i) = index(install) {
            new_players[i] += 1;
            let cohort = &mut cohorts[i];
            cohort.0 += 1;
            let last_active = player.days.iter().rev().find(|&&day| day <= range.last).copied();
            for n in 0..=RETENTION_DAYS {
                let target = install + n as i64;
                if player.days.binary_search(&target).is_ok() {
                    cohort.1[n] += 1;
                }
                if last_active.is_some_and(|last| last >= target) {
                    cohort.2[n] += 1;
                }
            }
        }
    }

    let days = (0..span)
        .map(|i| {
            let day = range.first + i as i64;
            let revenue: BTreeMap<String, i64> = revenue
                .range((day, String::new())..(day + 1, String::new()))
                .map(|((_, currency), amount)| (currency.clone(), *amount))
                .collect();
            let per = |count: u64| {
                revenue
                    .iter()
                    .map(|(currency, amount)| {
                        (
                            currency.clone(),
                            if count == 0 {
                                0.0
                            } else {
                                *amount as f64 / count as f64
                            },
                        )
                    })
                    .collect::<BTreeMap<_, _>>()
            };
            let share = |count: u64| {
                if dau[i] == 0 {
                    0.0
                } else {
                    count as f64 / dau[i] as f64
                }
            };
            Day {
                date: date_of(day).to_string(),
                dau: dau[i],
                wau: wau[i],
                mau: mau[i],
                new_players: new_players[i],
                payers: payers[i],
                first_time_payers: first_payers[i],
                arpdau: per(dau[i]),
                arppu: per(payers[i]),
                paying_share: share(payers[i]),
                conversion: share(first_payers[i]),
                revenue,
            }
        })
        .collect();
    let cohorts = cohorts
        .into_iter()
        .enumerate()
        .map(|(i, (size, strict, on_or_after))| {
            let install = range.first + i as i64;
            let known = |n: usize| install + n as i64 <= range.last;
            Cohort {
                date: date_of(install).to_string(),
                size,
                strict: (0..=RETENTION_DAYS)
                    .map(|n| known(n).then_some(strict[n]))
                    .collect(),
                on_or_after: (0..=RETENTION_DAYS)
                    .map(|n| known(n).then_some(on_or_after[n]))
                    .collect(),
            }
        })
        .collect();
    Report {
        tz: range.tz_name.clone(),
        days,
        weeks,
        months,
        cohorts,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn range(from: &str, to: &str, tz: &str) -> Range {
        let query = KpiQuery {
            from: from.into(),
            to: to.into(),
            tz: Some(tz.into()),
            game: None,
        };
        super::range(&query).expect("valid")
    }

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

    fn player(days: &[i64], bought: &[i64]) -> Player {
        Player {
            days: days.to_vec(),
            bought: bought.to_vec(),
        }
    }

    #[test]
    fn rolling_actives_and_retention_follow_their_definitions() {
        let range = range("1970-01-01", "1970-01-10", "UTC");
        let players: HashMap<String, Player> = [
            ("a".to_owned(), player(&[0, 1, 7], &[1])),
            ("b".to_owned(), player(&[0, 3], &[])),
            ("c".to_owned(), player(&[2], &[2])),
        ]
        .into_iter()
        .collect();
        let revenue = [((1, "USD".to_owned()), 499), ((2, "USD".to_owned()), 100)]
            .into_iter()
            .collect();
        let report = compute(&range, &players, &revenue);
        let dau: Vec<u64> = report.days.iter().map(|d| d.dau).collect();
        assert_eq!(dau, [2, 1, 1, 1, 0, 0, 0, 1, 0, 0]);
        let wau: Vec<u64> = report.days.iter().map(|d| d.wau).collect();
        assert_eq!(wau, [2, 2, 3, 3, 3, 3, 3, 3, 3, 2]);
        assert_eq!(report.days[0].new_players, 2);
        assert_eq!(report.days[2].new_players, 1);
        assert_eq!((report.days[1].payers, report.days[1].first_time_payers), (1, 1));
        assert_eq!(report.days[1].arpdau["USD"], 499.0);
        assert_eq!(report.days[2].arppu["USD"], 100.0);
        assert_eq!(report.days[1].paying_share, 1.0);
        let day0 = &report.cohorts[0];
        assert_eq!(day0.size, 2);
        assert_eq!(&day0.strict[..4], [Some(2), Some(1), Some(0), Some(1)]);
        assert_eq!(&day0.on_or_after[..9], [2, 2, 2, 2, 1, 1, 1, 1, 0].map(Some));
        assert_eq!(day0.strict[9], Some(0));
        assert_eq!(day0.strict[10], None, "day 10 is past the range");
        assert_eq!(
            report.weeks.values().sum::<u64>(),
            4,
            "a, b and c in the first ISO week, a in the next"
        );
    }
}
