//! The service's clock for everything that expires (tokens, sessions): the system time plus an
//! offset, so tests move time forward instead of sleeping through an expiry.

use std::sync::atomic::{AtomicI64, Ordering};
use std::time::Duration;

#[derive(Debug, Default)]
pub struct Clock {
    offset_ms: AtomicI64,
}

impl Clock {
    /// Milliseconds since the Unix epoch, as this clock tells them.
    pub fn now_ms(&self) -> i64 {
        flotilla_storage::mongo::now_ms().saturating_add(self.offset_ms.load(Ordering::Relaxed))
    }

    pub fn now_secs(&self) -> i64 {
        self.now_ms() / 1000
    }

    /// Moves this clock forward by `by`: what a test of expiry does instead of waiting.
    pub fn advance(&self, by: Duration) {
        let by = i64::try_from(by.as_millis()).unwrap_or(i64::MAX);
        self.offset_ms.fetch_add(by, Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn advancing_moves_the_clock_forward_by_that_much() {
        let clock = Clock::default();
        let before = clock.now_ms();
        clock.advance(Duration::from_secs(3600));
        let after = clock.now_ms();
        assert!(
            (3_600_000..3_601_000).contains(&(after - before)),
            "{}",
            after - before
        );
    }
}
