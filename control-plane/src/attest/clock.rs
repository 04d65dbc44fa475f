//! The session clock: the controller's wall time when the stream began, advanced by the
//! monotonic clock. Freshness and re-attestation schedules read it, so a step of the wall clock
//! while a stream is up (NTP correcting a drift, an operator's `date -s`) neither makes every
//! report look stale nor makes a schedule fire early or never.

use std::time::{Instant, UNIX_EPOCH};

/// Wall time at the start, plus monotonic time since.
#[derive(Debug, Clone, Copy)]
pub struct SessionClock {
    start_wall_ns: u64,
    start: Instant,
}

impl SessionClock {
    /// Anchored at the system's wall clock now.
    pub fn start() -> SessionClock {
        let wall = crate::test_fault::wall_now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX));
        SessionClock::anchored(wall, Instant::now())
    }

    /// Anchored at a given wall time and instant (tests).
    pub fn anchored(start_wall_ns: u64, start: Instant) -> SessionClock {
        SessionClock {
            start_wall_ns,
            start,
        }
    }

    /// Nanoseconds since the Unix epoch, by this clock, at `at`.
    pub fn ns_at(&self, at: Instant) -> u64 {
        let since = at.saturating_duration_since(self.start).as_nanos();
        self.start_wall_ns
            .saturating_add(u64::try_from(since).unwrap_or(u64::MAX))
    }

    pub fn now_ns(&self) -> u64 {
        self.ns_at(Instant::now())
    }

    pub fn now_ms(&self) -> i64 {
        i64::try_from(self.now_ns() / 1_000_000).unwrap_or(i64::MAX)
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[test]
    fn advances_with_the_monotonic_clock_only() {
        let t0 = Instant::now();
        let c = SessionClock::anchored(1_000_000_000_000, t0);
        assert_eq!(c.ns_at(t0), 1_000_000_000_000);
        assert_eq!(
            c.ns_at(t0 + Duration::from_millis(1500)),
            1_000_000_000_000 + 1_500_000_000
        );
        // An instant before the anchor reads as the anchor, never earlier.
        assert_eq!(
            c.ns_at(t0.checked_sub(Duration::from_millis(5)).unwrap_or(t0)),
            1_000_000_000_000
        );
    }

    #[test]
    fn now_is_never_before_the_anchor() {
        let c = SessionClock::start();
        let a = c.now_ns();
        let b = c.now_ns();
        assert!(b >= a);
        assert!(c.now_ms() >= 0);
    }
}
