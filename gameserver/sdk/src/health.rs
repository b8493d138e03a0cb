//! Heartbeats: `POST /sdk/v1/health` every period, on a task of their own.

use std::time::{Duration, Instant};

use tokio::task::JoinHandle;
use tracing::{debug, info, warn};

use crate::Sdk;

/// The shortest heartbeat period; shorter ones are raised to it.
pub const MIN_HEALTH_PERIOD: Duration = Duration::from_millis(10);

/// At most one warning about failed heartbeats per this long.
const WARN_EVERY: Duration = Duration::from_secs(60);

/// Heartbeats running on a tokio task (see [`Sdk::spawn_health`]). They stop when this is
/// dropped, or with [`stop`](HealthTask::stop).
#[derive(Debug)]
#[must_use = "heartbeats stop when the HealthTask is dropped"]
pub struct HealthTask {
    handle: JoinHandle<()>,
}

impl HealthTask {
    pub(crate) fn spawn(sdk: Sdk, period: Duration) -> Self {
        HealthTask {
            handle: tokio::spawn(async move { sdk.heartbeats(period).await }),
        }
    }

    /// Stops the heartbeats (the same as dropping this).
    pub fn stop(self) {}

    /// Whether the task has ended: only once stopped, or if the runtime is shutting down.
    pub fn is_finished(&self) -> bool {
        self.handle.is_finished()
    }
}

impl Drop for HealthTask {
    fn drop(&mut self) {
        self.handle.abort();
    }
}

impl Sdk {
    /// Sends a heartbeat every `period` (at least [`MIN_HEALTH_PERIOD`]) on a new tokio task,
    /// the first one at once, until the returned [`HealthTask`] is dropped. Must be called
    /// within a tokio runtime.
    ///
    /// Pick a period well under the server's `health.periodSeconds`: the operator marks the
    /// server `Unhealthy` after `failureThreshold × periodSeconds` without one. Failures are
    /// retried at the next period and logged at `warn` at most once a minute (with the count),
    /// and once more at `info` when heartbeats get through again.
    pub fn spawn_health(&self, period: Duration) -> HealthTask {
        HealthTask::spawn(self.clone(), period)
    }

    /// The loop [`spawn_health`](Sdk::spawn_health) runs: heartbeats every `period`, forever.
    /// For callers that manage their own tasks (cancel it by dropping the future).
    pub async fn heartbeats(&self, period: Duration) {
        let mut ticks = tokio::time::interval(period.max(MIN_HEALTH_PERIOD));
        // A slow heartbeat delays the next ones rather than causing a burst.
        ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut log = FailureLog::default();
        loop {
            ticks.tick().await;
            match self.health().await {
                Ok(()) => {
                    if let Some(failures) = log.succeeded() {
                        info!(failures, "sdk heartbeats get through again");
                    }
                }
                Err(error) => match log.failed(Instant::now()) {
                    Some(Warning {
                        consecutive,
                        since_last_warning,
                    }) => warn!(
                        consecutive,
                        since_last_warning,
                        kind = error.kind(),
                        %error,
                        "sdk heartbeat failed"
                    ),
                    None => debug!(kind = error.kind(), %error, "sdk heartbeat failed"),
                },
            }
        }
    }
}

#[derive(Debug, PartialEq, Eq)]
struct Warning {
    /// Failures in a row, this one included.
    consecutive: u32,
    /// Failures since the last warning, this one included.
    since_last_warning: u32,
}

/// Which heartbeat failures are worth a warning: at most one a minute, so a server cut off
/// from the operator does not flood its log, with counts so nothing is hidden; and a note
/// when a run of failures that was warned about ends.
#[derive(Debug, Default)]
struct FailureLog {
    consecutive: u32,
    since_last_warning: u32,
    last_warning: Option<Instant>,
    warned_this_run: bool,
}

impl FailureLog {
    fn failed(&mut self, now: Instant) -> Option<Warning> {
        self.consecutive = self.consecutive.saturating_add(1);
        self.since_last_warning = self.since_last_warning.saturating_add(1);
        let due = self
            .last_warning
            .is_none_or(|last| now.saturating_duration_since(last) >= WARN_EVERY);
        if !due {
            return None;
        }
        self.last_warning = Some(now);
        self.warned_this_run = true;
        Some(Warning {
            consecutive: self.consecutive,
            since_last_warning: std::mem::take(&mut self.since_last_warning),
        })
    }

    /// `Some(failures in the run)` when a warned-about run of failures ends.
    fn succeeded(&mut self) -> Option<u32> {
        let run = std::mem::take(&mut self.consecutive);
        std::mem::take(&mut self.warned_this_run).then_some(run)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_first_failure_warns_then_at_most_one_warning_a_minute() {
        let start = Instant::now();
        let at = |secs| start + Duration::from_secs(secs);
        let mut log = FailureLog::default();
        assert_eq!(
            log.failed(at(0)),
            Some(Warning {
                consecutive: 1,
                since_last_warning: 1
            })
        );
        for secs in 1..60 {
            assert_eq!(log.failed(at(secs)), None, "quiet at {secs} s");
        }
        assert_eq!(
            log.failed(at(60)),
            Some(Warning {
                consecutive: 61,
                since_last_warning: 60
            })
        );
        assert_eq!(log.succeeded(), Some(61), "the recovery is told");
        assert_eq!(log.succeeded(), None, "and only once");
    }

    #[test]
    fn flapping_heartbeats_warn_no_more_than_once_a_minute() {
        let start = Instant::now();
        let mut log = FailureLog::default();
        let mut warnings = 0;
        let mut recoveries = 0;
        for secs in 0..120 {
            if log.failed(start + Duration::from_secs(secs)).is_some() {
                warnings += 1;
            }
            if log.succeeded().is_some() {
                recoveries += 1;
            }
        }
        assert_eq!((warnings, recoveries), (2, 2));
    }

    #[test]
    fn a_new_run_after_a_quiet_minute_warns_at_once() {
        let start = Instant::now();
        let mut log = FailureLog::default();
        assert!(log.failed(start).is_some());
        assert!(log.succeeded().is_some());
        assert_eq!(
            log.failed(start + Duration::from_secs(300)),
            Some(Warning {
                consecutive: 1,
                since_last_warning: 1
            })
        );
    }
}
