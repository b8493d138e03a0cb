//! Sessions and their length, per local day of the session's start.
//!
//! A session a client opens with `session_start` is that session id's events: it starts at the
//! `session_start` and ends at its last event (its `session_end`, normally). A player's other
//! events are cut into sessions by inactivity: an event more than 30 minutes after the previous
//! one starts a new session. Either kind lasts at most 24 hours: an inactivity session's event 24
//! hours after its start starts a new one, and an explicit session's length is capped (a client
//! that never sent `session_end`). The length is from the first event to the last.

use std::collections::{BTreeMap, HashMap, HashSet};

use datafusion::arrow::array::{Array, AsArray};
use datafusion::arrow::datatypes::Int64Type;
use serde::{Deserialize, Serialize};

use super::{Events, KpiQuery, date_of, strings};
use crate::Result;
use crate::state::AppState;

/// Inactivity that ends a session.
pub const INACTIVITY_MS: i64 = 30 * 60 * 1000;
/// The longest session.
pub const MAX_SESSION_MS: i64 = 24 * 3600 * 1000;

#[derive(Debug, Serialize, Deserialize, schemars::JsonSchema, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct SessionReport {
    pub tz: String,
    pub days: Vec<SessionDay>,
}

#[derive(Debug, Serialize, Deserialize, schemars::JsonSchema, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct SessionDay {
    pub date: String,
    /// Sessions that started that day.
    pub sessions: u64,
    /// Players with a session that started that day.
    pub players: u64,
    /// The sessions' lengths added up, in seconds.
    pub total_seconds: u64,
    /// total_seconds / sessions.
    pub average_seconds: f64,
    /// The middle session length (the lower of the two middle ones).
    pub median_seconds: u64,
}

/// One event of a player, as sessions see it.
#[derive(Debug, Clone)]
struct Moment {
    t: i64,
    start: bool,
    session: Option<String>,
}

/// A session: its first and last instant (Unix milliseconds).
#[derive(Debug, PartialEq, Clone, Copy)]
struct Session {
    start: i64,
    end: i64,
}

/// A player's sessions from their events in time order.
fn sessions(moments: &[Moment]) -> Vec<Session> {
    let opened: HashSet<&str> = moments
        .iter()
        .filter(|moment| moment.start)
        .filter_map(|moment| moment.session.as_deref())
        .collect();
    let mut explicit: HashMap<&str, Session> = HashMap::new();
    let mut found = Vec::new();
    let mut current: Option<Session> = None;
    for moment in moments {
        if let Some(id) = moment.session.as_deref().filter(|id| opened.contains(id)) {
            let session = explicit.entry(id).or_insert(Session {
                start: moment.t,
                end: moment.t,
            });
            session.end = moment.t.min(session.start + MAX_SESSION_MS);
            continue;
        }
        match &mut current {
            Some(session)
                if moment.t - session.end <= INACTIVITY_MS && moment.t - session.start < MAX_SESSION_MS =>
            {
                session.end = moment.t;
            }
            _ => {
                found.extend(current.take());
                current = Some(Session {
                    start: moment.t,
                    end: moment.t,
                });
            }
        }
    }
    found.extend(current);
    found.extend(explicit.into_values());
    found
}

pub async fn report(state: &AppState, query: &KpiQuery) -> Result<SessionReport> {
    let range = query.range()?;
    let mut started: Vec<Vec<(String, u64)>> = vec![Vec::new(); range.len()];
    if let Some(events) = Events::open(state, &range, query.game.as_deref()).await? {
        // A day's sessions can have started up to a day before it; a margin of more than that
        // lets the inactivity cuts before the range fall where they do in a longer report.
        let (from, to) = range.bounds_ms(2 * MAX_SESSION_MS);
        let sql = format!(
            "SELECT player, t, name = 'session_start' AS opens, session FROM kept \
             WHERE t >= {from} AND t < {to} ORDER BY player, t, id"
        );
        let mut player = String::new();
        let mut moments: Vec<Moment> = Vec::new();
        let mut close = |player: &str, moments: &mut Vec<Moment>| {
            for session in sessions(moments) {
                if let Some(i) = range.index(range.day_of(session.start)) {
                    started[i].push((player.to_owned(), ((session.end - session.start) / 1000) as u64));
                }
            }
            moments.clear();
        };
        for batch in events.query(&sql).await? {
            let players = strings(&batch, 0)?;
            let players = players.as_string::<i32>();
            let times = batch.column(1).as_primitive::<Int64Type>();
            let opens = batch.column(2).as_boolean();
            let session_ids = strings(&batch, 3)?;
            let session_ids = session_ids.as_string::<i32>();
            for row in 0..batch.num_rows() {
                if players.value(row) != player {
                    close(&player, &mut moments);
                    player = players.value(row).to_owned();
                }
                moments.push(Moment {
                    t: times.value(row),
                    start: opens.value(row),
                    session: session_ids
                        .is_valid(row)
                        .then(|| session_ids.value(row).to_owned()),
                });
            }
        }
        close(&player, &mut moments);
    }
    let days = started
        .into_iter()
        .enumerate()
        .map(|(i, mut day)| {
            day.sort_unstable_by_key(|(_, seconds)| *seconds);
            let total: u64 = day.iter().map(|(_, seconds)| seconds).sum();
            let players: BTreeMap<&str, ()> = day.iter().map(|(player, _)| (player.as_str(), ())).collect();
            SessionDay {
                date: date_of(range.first + i as i64).to_string(),
                sessions: day.len() as u64,
                players: players.len() as u64,
                total_seconds: total,
                average_seconds: match day.len() {
                    0 => 0.0,
                    n => total as f64 / n as f64,
                },
                median_seconds: day.get(day.len().saturating_sub(1) / 2).map_or(0, |(_, s)| *s),
            }
        })
        .collect();
    Ok(SessionReport {
        tz: range.tz_name.clone(),
        days,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const MINUTE: i64 = 60_000;

    fn at(t: i64) -> Moment {
        Moment {
            t: t * MINUTE,
            start: false,
            session: None,
        }
    }

    fn explicit(t: i64, session: &str, start: bool) -> Moment {
        Moment {
            t: t * MINUTE,
            start,
            session: Some(session.into()),
        }
    }

    fn minutes(found: &[Session]) -> Vec<(i64, i64)> {
        let mut found: Vec<(i64, i64)> = found.iter().map(|s| (s.start / MINUTE, s.end / MINUTE)).collect();
        found.sort_unstable();
        found
    }

    #[test]
    fn inactivity_past_thirty_minutes_starts_a_new_session() {
        let found = sessions(&[at(0), at(30), at(61), at(62)]);
        assert_eq!(
            minutes(&found),
            [(0, 30), (61, 62)],
            "30 minutes is still the same session"
        );
    }

    #[test]
    fn no_session_outlasts_a_day() {
        let every_20_minutes: Vec<Moment> = (0..=80).map(|i| at(i * 20)).collect(); // 26h40m
        assert_eq!(minutes(&sessions(&every_20_minutes)), [(0, 1420), (1440, 1600)]);
        let never_ended = [explicit(0, "s", true), explicit(1500, "s", false)];
        assert_eq!(minutes(&sessions(&never_ended)), [(0, 1440)]);
    }

    #[test]
    fn explicit_sessions_span_idle_time_and_others_use_inactivity() {
        let found = sessions(&[
            explicit(0, "s1", true),
            at(5),
            explicit(50, "s1", false), // 50 idle minutes inside an explicit session
            explicit(55, "s1", false),
            at(100),
            explicit(200, "unopened", false), // a session id without a start: by inactivity
        ]);
        assert_eq!(minutes(&found), [(0, 55), (5, 5), (100, 100), (200, 200)]);
    }
}
