//! Any event's counts and sums per local day, optionally grouped by one of its properties:
//! `level_up` by `class`, `purchase` by `currency` summing `amount`.

use std::collections::{BTreeMap, HashSet};

use datafusion::arrow::array::AsArray;
use datafusion::arrow::datatypes::Int64Type;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::{Events, Range, date_of, strings};
use crate::state::AppState;
use crate::{Error, Result};

/// Groups in one report; further values are added up under [`OTHER`].
pub const MAX_GROUPS: usize = 100;
/// The group of events without the grouping property.
pub const MISSING: &str = "(none)";
/// The group of values past [`MAX_GROUPS`].
pub const OTHER: &str = "(other)";

#[derive(Debug, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct CountQuery {
    /// The event's name.
    pub name: String,
    /// A property to group by: its value (string, number or boolean) names the group.
    #[serde(default)]
    pub by: Option<String>,
    /// A numeric property to add up.
    #[serde(default)]
    pub sum: Option<String>,
    pub from: String,
    pub to: String,
    #[serde(default)]
    pub tz: Option<String>,
    #[serde(default)]
    pub game: Option<String>,
}

#[derive(Debug, Serialize, Deserialize, schemars::JsonSchema, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct Counts {
    pub tz: String,
    pub name: String,
    pub days: Vec<CountDay>,
}

#[derive(Debug, Serialize, Deserialize, schemars::JsonSchema, PartialEq)]
pub struct CountDay {
    pub date: String,
    /// By the `by` property's value (all events under `""` without `by`).
    pub groups: BTreeMap<String, Group>,
}

#[derive(Clone, Debug, Default, Serialize, Deserialize, schemars::JsonSchema, PartialEq)]
pub struct Group {
    pub events: u64,
    /// Distinct players.
    pub players: u64,
    /// The `sum` property added up over the events that have it as a number.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sum: Option<f64>,
}

fn group_name(value: Option<&Value>) -> String {
    match value {
        None | Some(Value::Null) => MISSING.into(),
        Some(Value::String(text)) => text.clone(),
        Some(other) => other.to_string(),
    }
}

pub async fn report(state: &AppState, query: &CountQuery) -> Result<Counts> {
    if !crate::event::valid_name(&query.name) {
        return Err(Error::bad("name", "name is an event name (a-z 0-9 _)"));
    }
    for (field, property) in [("by", &query.by), ("sum", &query.sum)] {
        if property.as_ref().is_some_and(|p| p.is_empty() || p.len() > 64) {
            return Err(Error::bad(
                field,
                format!("{field} is a property name (1-64 bytes)"),
            ));
        }
    }
    let range = Range::parse(&query.from, &query.to, query.tz.as_deref(), query.game.as_deref())?;
    let mut days: Vec<BTreeMap<String, (Group, HashSet<String>)>> = vec![BTreeMap::new(); range.len()];
    if let Some(events) = Events::open(state, &range, query.game.as_deref()).await? {
        let (from, to) = range.bounds_ms(0);
        let day = &events.day;
        // The name is checked above: letters, digits and underscores only.
        let sql = format!(
            "SELECT {day} AS day, player, properties FROM kept \
             WHERE name = '{}' AND t >= {from} AND t < {to}",
            query.name
        );
        for batch in events.query(&sql).await? {
            let day = batch.column(0).as_primitive::<Int64Type>();
            let players = strings(&batch, 1)?;
            let players = players.as_string::<i32>();
            let properties = strings(&batch, 2)?;
            let properties = properties.as_string::<i32>();
            for row in 0..batch.num_rows() {
                let Some(i) = range.index(day.value(row)) else {
                    continue;
                };
                let properties: serde_json::Map<String, Value> =
                    serde_json::from_str(properties.value(row)).unwrap_or_default();
                let groups = &mut days[i];
                let mut name = match &query.by {
                    Some(by) => group_name(properties.get(by)),
                    None => String::new(),
                };
                if !groups.contains_key(&name) && groups.len() >= MAX_GROUPS {
                    name = OTHER.into();
                }
                let (group, players_seen) = groups.entry(name).or_default();
                group.events += 1;
                if players_seen.insert(players.value(row).to_owned()) {
                    group.players += 1;
                }
                if let Some(sum) = &query.sum {
                    let value = properties.get(sum).and_then(Value::as_f64).unwrap_or(0.0);
                    *group.sum.get_or_insert(0.0) += value;
                }
            }
        }
    }
    Ok(Counts {
        tz: range.tz_name.clone(),
        name: query.name.clone(),
        days: days
            .into_iter()
            .enumerate()
            .map(|(i, groups)| CountDay {
                date: date_of(range.first + i as i64).to_string(),
                groups: groups
                    .into_iter()
                    .map(|(name, (group, _))| (name, group))
                    .collect(),
            })
            .collect(),
    })
}
