//! Funnels: how many players went through an ordered list of events within a window.
//!
//! A player enters with a first-step event on a day of the range; they reach step `n` if they
//! then did step 2, 3, … `n` in that order (each at or after the one before) before the window
//! from their entry closed. A player who entered several times counts once, at the furthest step
//! any entry reached.

use datafusion::arrow::array::AsArray;
use datafusion::arrow::datatypes::Int64Type;
use serde::{Deserialize, Serialize};

use super::{Events, Range, strings};
use crate::state::AppState;
use crate::{Error, Result};

/// Steps in one funnel.
pub const MAX_STEPS: usize = 10;
/// The longest window, in minutes (30 days).
pub const MAX_WINDOW_MINUTES: i64 = 30 * 24 * 60;

#[derive(Debug, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct FunnelQuery {
    /// Event names, in order, separated by commas (`session_start,tutorial_done,purchase`).
    pub steps: String,
    /// From entering to the last step, in minutes (1 to 43200; a day when absent).
    #[serde(default)]
    pub window_minutes: Option<i64>,
    pub from: String,
    pub to: String,
    #[serde(default)]
    pub tz: Option<String>,
    #[serde(default)]
    pub game: Option<String>,
}

#[derive(Debug, Serialize, Deserialize, schemars::JsonSchema, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct Funnel {
    pub tz: String,
    pub window_minutes: i64,
    pub steps: Vec<Step>,
}

#[derive(Debug, Serialize, Deserialize, schemars::JsonSchema, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct Step {
    pub name: String,
    /// Players who reached this step.
    pub players: u64,
    /// players / the first step's players.
    pub from_first: f64,
    /// players / the previous step's players.
    pub from_previous: f64,
}

/// How far one player got: the furthest step (1-based) any entry reached, 0 if they never entered.
/// `events` are the player's events in time order, each as the steps it can be (a bit per step:
/// a name may be listed twice) and its time; `enters` says whether an event at that time may
/// start the funnel (its day is in the range). Each event serves as one step at most.
fn furthest(events: &[(u16, i64)], steps: usize, window_ms: i64, enters: impl Fn(i64) -> bool) -> usize {
    let mut best = 0;
    for (i, &(can_be, entered)) in events.iter().enumerate() {
        if can_be & 1 == 0 || !enters(entered) {
            continue;
        }
        let mut reached = 1;
        for &(can_be, t) in &events[i + 1..] {
            if reached == steps || t > entered + window_ms {
                break;
            }
            if can_be & (1 << reached) != 0 {
                reached += 1;
            }
        }
        best = best.max(reached);
        if best == steps {
            break;
        }
    }
    best
}

pub async fn report(state: &AppState, query: &FunnelQuery) -> Result<Funnel> {
    let steps: Vec<&str> = query.steps.split(',').map(str::trim).collect();
    if !(2..=MAX_STEPS).contains(&steps.len()) || !steps.iter().all(|name| crate::event::valid_name(name)) {
        return Err(Error::bad(
            "steps",
            format!("steps are 2-{MAX_STEPS} event names separated by commas"),
        ));
    }
    let window_minutes = query.window_minutes.unwrap_or(24 * 60);
    if !(1..=MAX_WINDOW_MINUTES).contains(&window_minutes) {
        return Err(Error::bad(
            "windowMinutes",
            format!("windowMinutes is 1-{MAX_WINDOW_MINUTES}"),
        ));
    }
    let window_ms = window_minutes * 60_000;
    let range = Range::parse(&query.from, &query.to, query.tz.as_deref(), query.game.as_deref())?;
    let mut reached = vec![0u64; steps.len()];
    if let Some(events) = Events::open(state, &range, query.game.as_deref()).await? {
        let (from, to) = range.bounds_ms(window_ms);
        // Names are checked above: letters, digits and underscores only.
        let names = steps
            .iter()
            .map(|name| format!("'{name}'"))
            .collect::<Vec<_>>()
            .join(", ");
        let sql = format!(
            "SELECT player, name, t FROM kept WHERE name IN ({names}) AND t >= {from} AND t < {to} \
             ORDER BY player, t, id"
        );
        let mut player = String::new();
        let mut moments: Vec<(u16, i64)> = Vec::new();
        let mut close = |moments: &mut Vec<(u16, i64)>| {
            let depth = furthest(moments, steps.len(), window_ms, |t| {
                range.index(range.day_of(t)).is_some()
            });
            for count in &mut reached[..depth] {
                *count += 1;
            }
            moments.clear();
        };
        for batch in events.query(&sql).await? {
            let players = strings(&batch, 0)?;
            let players = players.as_string::<i32>();
            let names = strings(&batch, 1)?;
            let names = names.as_string::<i32>();
            let times = batch.column(2).as_primitive::<Int64Type>();
            for row in 0..batch.num_rows() {
                if players.value(row) != player {
                    close(&mut moments);
                    player = players.value(row).to_owned();
                }
                let can_be = steps
                    .iter()
                    .enumerate()
                    .filter(|(_, name)| **name == names.value(row))
                    .fold(0u16, |bits, (step, _)| bits | 1 << step);
                moments.push((can_be, times.value(row)));
            }
        }
        close(&mut moments);
    }
    let ratio = |count: u64, of: u64| if of == 0 { 0.0 } else { count as f64 / of as f64 };
    Ok(Funnel {
        tz: range.tz_name.clone(),
        window_minutes,
        steps: steps
            .iter()
            .enumerate()
            .map(|(i, name)| Step {
                name: (*name).to_owned(),
                players: reached[i],
                from_first: ratio(reached[i], reached[0]),
                from_previous: ratio(reached[i], reached[i.saturating_sub(1)]),
            })
            .collect(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn steps_count_only_in_order_and_within_the_window() {
        let always = |_| true;
        let (a, b, c) = (1, 2, 4);
        assert_eq!(furthest(&[(a, 0), (b, 5), (c, 9)], 3, 10, always), 3);
        assert_eq!(
            furthest(&[(a, 0), (c, 5), (b, 9)], 3, 10, always),
            2,
            "c before b"
        );
        assert_eq!(
            furthest(&[(a, 0), (b, 5), (c, 11)], 3, 10, always),
            2,
            "c after the window"
        );
        assert_eq!(
            furthest(&[(a, 0), (a, 8), (b, 12), (c, 17)], 3, 10, always),
            3,
            "a later entry"
        );
        assert_eq!(furthest(&[(b, 0), (c, 5)], 3, 10, always), 0, "never entered");
        assert_eq!(
            furthest(&[(a, 0), (b, 5)], 3, 10, |t| t > 0),
            0,
            "entered outside the range"
        );
    }

    #[test]
    fn a_repeated_name_takes_one_event_per_step() {
        // Steps a, b, a: an `a` event can be the first or the third step.
        let (a, b) = (1 | 4, 2);
        assert_eq!(furthest(&[(a, 0), (b, 3), (a, 6)], 3, 10, |_| true), 3);
        assert_eq!(
            furthest(&[(a, 0), (b, 3)], 3, 10, |_| true),
            2,
            "the entry is not also the third step"
        );
        // Steps a, a: one event is not both.
        assert_eq!(furthest(&[(1 | 2, 0)], 2, 10, |_| true), 1);
    }
}
