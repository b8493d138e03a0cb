//! The daily report: active players (daily, rolling 7 and 30 days, ISO weeks and calendar
//! months), new players, revenue, ARPDAU, ARPPU, the paying share, first-purchase conversion, and
//! retention by install cohort (strict "on day N" and "on or after day N").
//!
//! DataFusion reduces the events to one row per player and local day; the KPIs are computed from
//! those rows here, so their definitions are plain code, tested on their own.

use std::collections::{BTreeMap, HashMap, HashSet};

use datafusion::arrow::array::{Array, AsArray};
use datafusion::arrow::datatypes::Int64Type;
use serde::{Deserialize, Serialize};

use super::{Events, KpiQuery, Range, date_of, strings};
use crate::Result;
use crate::state::AppState;

/// Retention is reported for days 0 to this after install.
pub const RETENTION_DAYS: usize = 30;

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

/// One player's activity: their active local days (ascending) and the days they bought.
#[derive(Default)]
struct Player {
    days: Vec<i64>,
    bought: Vec<i64>,
}

pub async fn report(state: &AppState, query: &KpiQuery) -> Result<Report> {
    let range = query.range()?;
    let (players, revenue) = match Events::open(state, &range, query.game.as_deref()).await? {
        Some(events) => scan(&events).await?,
        None => (HashMap::new(), BTreeMap::new()),
    };
    Ok(compute(&range, &players, &revenue))
}

/// Per player and local day (all history: installs need it), and revenue per local day.
async fn scan(events: &Events) -> Result<(HashMap<String, Player>, BTreeMap<(i64, String), i64>)> {
    let day = &events.day;
    let activity = format!(
        "SELECT player, {day} AS day, SUM(CASE WHEN name = 'purchase' THEN 1 ELSE 0 END) AS bought \
         FROM kept GROUP BY player, {day}"
    );
    let mut players: HashMap<String, Player> = HashMap::new();
    for batch in events.query(&activity).await? {
        let player = strings(&batch, 0)?;
        let player = player.as_string::<i32>();
        let day = batch.column(1).as_primitive::<Int64Type>();
        let bought = batch.column(2).as_primitive::<Int64Type>();
        for row in 0..batch.num_rows() {
            // A row per player and day: look the player up before allocating a key for them.
            let name = player.value(row);
            let entry = match players.get_mut(name) {
                Some(entry) => entry,
                None => players.entry(name.to_owned()).or_default(),
            };
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
        "SELECT {day} AS day, currency, SUM(amount) AS revenue FROM kept \
         WHERE name = 'purchase' GROUP BY {day}, currency"
    );
    let mut revenue = BTreeMap::new();
    for batch in events.query(&sales).await? {
        let currency = strings(&batch, 1)?;
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
    let span = range.len();
    let index = |day: i64| range.index(day);
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
        Range::parse(from, to, Some(tz), None).expect("valid")
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
