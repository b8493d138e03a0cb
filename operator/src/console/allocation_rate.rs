//! The allocation rate: a one-minute window of per-second buckets of answered allocation
//! requests, and their totals since the replica started.

use std::collections::{BTreeMap, VecDeque};

use serde::Serialize;

/// The allocation-rate window: one minute, in one-second buckets.
const WINDOW_SECONDS: usize = 60;
const WINDOW: u64 = WINDOW_SECONDS as u64;

/// The allocation result that hands out a server; the rate counts these.
const ALLOCATED: &str = "allocated";

/// Allocation requests by result: a one-minute window of per-second buckets for the rate,
/// and totals since the replica started. Memory stays at sixty buckets whatever the load.
#[derive(Debug, Default)]
pub(super) struct AllocationWindow {
    /// (second, counts by result), oldest first, only seconds with requests.
    buckets: VecDeque<(u64, BTreeMap<&'static str, u64>)>,
    totals: BTreeMap<&'static str, u64>,
}

impl AllocationWindow {
    pub(super) fn record(&mut self, second: u64, result: &'static str) {
        match self.buckets.back_mut() {
            Some((last, counts)) if *last == second => *counts.entry(result).or_default() += 1,
            _ => self.buckets.push_back((second, BTreeMap::from([(result, 1)]))),
        }
        *self.totals.entry(result).or_default() += 1;
        while self.buckets.front().is_some_and(|(s, _)| s + WINDOW <= second) {
            self.buckets.pop_front();
        }
    }

    /// The window as of `now`: seconds `now - 59 ..= now`.
    pub(super) fn view(&self, now: u64) -> AllocationView {
        let mut last_minute: BTreeMap<&'static str, u64> = BTreeMap::new();
        let mut per_second = vec![0; WINDOW_SECONDS];
        for (second, counts) in &self.buckets {
            let Some(age) = now.checked_sub(*second).filter(|age| *age < WINDOW) else {
                continue;
            };
            for (result, count) in counts {
                *last_minute.entry(result).or_default() += count;
            }
            // Oldest first: `now` is the last bar.
            let slot = usize::try_from(WINDOW - 1 - age).unwrap_or(0);
            if let Some(bar) = per_second.get_mut(slot) {
                *bar = counts.get(ALLOCATED).copied().unwrap_or(0);
            }
        }
        AllocationView {
            per_minute: last_minute.get(ALLOCATED).copied().unwrap_or(0),
            last_minute,
            total: self.totals.clone(),
            per_second,
        }
    }

    /// Whether anything is in the window at `now`, i.e. whether the rate will still fall.
    pub(super) fn active(&self, now: u64) -> bool {
        self.buckets.back().is_some_and(|(s, _)| s + WINDOW > now)
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct AllocationView {
    /// Servers allocated in the last minute (the `allocated` result): the allocation rate.
    pub per_minute: u64,
    /// Requests in the last minute, by result.
    pub last_minute: BTreeMap<&'static str, u64>,
    /// Requests since this replica started, by result.
    pub total: BTreeMap<&'static str, u64>,
    /// Servers allocated in each of the last sixty seconds, oldest first.
    pub per_second: Vec<u64>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_rate_counts_the_last_sixty_seconds_and_totals_everything() {
        let mut window = AllocationWindow::default();
        window.record(10, "allocated");
        window.record(10, "allocated");
        window.record(10, "no_capacity");
        window.record(40, "allocated");
        let view = window.view(40);
        assert_eq!(view.per_minute, 3);
        assert_eq!(view.last_minute.get("no_capacity"), Some(&1));
        assert_eq!(view.per_second.len(), 60);
        assert_eq!(view.per_second[59], 1, "the newest second is last");
        assert_eq!(view.per_second[59 - 30], 2);

        // A minute after second 10, its requests leave the rate but stay in the totals.
        let later = window.view(70);
        assert_eq!(later.per_minute, 1);
        assert_eq!(later.last_minute.get("no_capacity"), None);
        assert_eq!(later.total.get("allocated"), Some(&3));
        assert_eq!(later.total.get("no_capacity"), Some(&1));
        assert!(window.active(99));
        assert!(!window.active(100), "nothing left to decay");
        assert_eq!(window.view(100).per_minute, 0);
    }

    #[test]
    fn the_rate_window_keeps_at_most_a_minute_of_buckets() {
        let mut window = AllocationWindow::default();
        for second in 0..1_000 {
            window.record(second, "allocated");
        }
        assert_eq!(window.buckets.len(), 60);
        assert_eq!(window.view(999).per_minute, 60);
        assert_eq!(
            window.view(0).per_minute,
            0,
            "seconds ahead of now are not counted"
        );
    }
}
