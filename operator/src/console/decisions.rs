//! The autoscaler's recent decisions as the page lists them: newest first, bounded, with
//! repeats of an unchanged outcome folded into one line.

use std::collections::VecDeque;

use jiff::Timestamp;
use serde::Serialize;

/// Autoscaler decisions kept for the page.
const DECISIONS: usize = 20;

/// One autoscaler evaluation as the page lists it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Decision {
    /// RFC 3339, of the latest evaluation folded into this entry.
    pub time: String,
    pub namespace: String,
    pub autoscaler: String,
    pub fleet: String,
    pub from: i32,
    pub to: i32,
    /// The metric's result label: scaled_up, scaled_down, unchanged, limited, error.
    pub result: &'static str,
    pub policy: Option<String>,
    /// Why, when the result needs it (the policy's error).
    pub reason: Option<String>,
    /// Consecutive evaluations with this outcome: an autoscaler re-evaluates on every sync
    /// and every fleet change, and a list of twenty identical "unchanged" lines says nothing.
    pub times: u32,
}

impl Decision {
    pub fn now(
        namespace: &str,
        autoscaler: &str,
        fleet: &str,
        from: i32,
        to: i32,
        result: &'static str,
    ) -> Self {
        Decision {
            time: Timestamp::now().to_string(),
            namespace: namespace.to_owned(),
            autoscaler: autoscaler.to_owned(),
            fleet: fleet.to_owned(),
            from,
            to,
            result,
            policy: None,
            reason: None,
            times: 1,
        }
    }

    fn same_outcome(&self, other: &Decision) -> bool {
        (
            self.fleet.as_str(),
            self.from,
            self.to,
            self.result,
            &self.policy,
            &self.reason,
        ) == (
            other.fleet.as_str(),
            other.from,
            other.to,
            other.result,
            &other.policy,
            &other.reason,
        )
    }
}

/// Newest first, at most [`DECISIONS`]; an outcome that repeats the autoscaler's previous one
/// moves that entry to the top with its count raised instead of adding a line.
pub(super) fn push_decision(list: &mut VecDeque<Decision>, mut decision: Decision) {
    let previous = list
        .iter()
        .position(|d| d.namespace == decision.namespace && d.autoscaler == decision.autoscaler);
    if let Some(index) = previous
        && list[index].same_outcome(&decision)
        && let Some(repeated) = list.remove(index)
    {
        decision.times = repeated.times.saturating_add(1);
    }
    list.push_front(decision);
    list.truncate(DECISIONS);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn decision(autoscaler: &str, from: i32, to: i32, result: &'static str) -> Decision {
        Decision::now("games", autoscaler, "arena", from, to, result)
    }

    #[test]
    fn repeated_outcomes_fold_into_one_entry_and_the_list_is_bounded() {
        let mut list = VecDeque::new();
        push_decision(&mut list, decision("a", 2, 2, "unchanged"));
        push_decision(&mut list, decision("b", 2, 3, "scaled_up"));
        push_decision(&mut list, decision("a", 2, 2, "unchanged"));
        let summary: Vec<_> = list.iter().map(|d| (d.autoscaler.as_str(), d.times)).collect();
        assert_eq!(summary, [("a", 2), ("b", 1)], "newest first, the repeat folded");

        push_decision(&mut list, decision("a", 2, 3, "scaled_up"));
        push_decision(&mut list, decision("a", 3, 3, "unchanged"));
        let results: Vec<_> = list.iter().map(|d| (d.result, d.times)).collect();
        assert_eq!(
            results,
            [
                ("unchanged", 1),
                ("scaled_up", 1),
                ("unchanged", 2),
                ("scaled_up", 1)
            ]
        );

        for to in 0..100 {
            push_decision(&mut list, decision("c", to, to + 1, "scaled_up"));
        }
        assert_eq!(list.len(), DECISIONS);
        assert_eq!(list.front().map(|d| d.to), Some(100));
    }
}
