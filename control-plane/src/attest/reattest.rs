//! Re-attestation schedules (DESIGN.md §4.5), as pure functions of the tracked enclaves and
//! the time: which enclaves are due for fresh evidence, and which did not answer in time.

use std::collections::HashMap;
use std::time::{Duration, Instant};

/// Default re-attestation interval when no policy sets one.
pub const DEFAULT_EVERY_MS: f64 = 60_000.0;
/// An `AttestNow` unanswered this long is a failed re-attestation.
pub const ANSWER_WITHIN: Duration = Duration::from_secs(10);

/// One tracked enclave's schedule.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Schedule {
    /// When its evidence was last verified (or the enclave re-keyed).
    pub attested_at: Instant,
    /// The nonce of an outstanding `AttestNow` and when it was sent.
    pub pending: Option<([u8; 32], Instant)>,
}

impl Schedule {
    pub fn new(now: Instant) -> Schedule {
        Schedule {
            attested_at: now,
            pending: None,
        }
    }
}

/// The enclaves whose interval (`every_ms`, else [`DEFAULT_EVERY_MS`]) has passed and that have
/// no request outstanding, sorted.
pub fn due<'a>(
    schedules: impl IntoIterator<Item = (&'a String, &'a Schedule)>,
    every_ms: &HashMap<String, f64>,
    now: Instant,
) -> Vec<String> {
    let mut out: Vec<String> = schedules
        .into_iter()
        .filter(|(id, s)| {
            s.pending.is_none() && {
                let every = every_ms.get(*id).copied().unwrap_or(DEFAULT_EVERY_MS);
                now.saturating_duration_since(s.attested_at).as_secs_f64() * 1000.0 >= every
            }
        })
        .map(|(id, _)| id.clone())
        .collect();
    out.sort();
    out
}

/// The enclaves whose outstanding request went unanswered for longer than [`ANSWER_WITHIN`],
/// sorted.
pub fn overdue<'a>(
    schedules: impl IntoIterator<Item = (&'a String, &'a Schedule)>,
    now: Instant,
) -> Vec<String> {
    let mut out: Vec<String> = schedules
        .into_iter()
        .filter(|(_, s)| {
            s.pending
                .is_some_and(|(_, at)| now.saturating_duration_since(at) > ANSWER_WITHIN)
        })
        .map(|(id, _)| id.clone())
        .collect();
    out.sort();
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(t0: Instant, ms: u64) -> Instant {
        t0 + Duration::from_millis(ms)
    }

    #[test]
    fn due_after_the_policy_interval_or_the_default() {
        let t0 = Instant::now();
        let s: HashMap<String, Schedule> = [
            ("a".to_string(), Schedule::new(t0)),
            ("b".to_string(), Schedule::new(t0)),
        ]
        .into();
        let every: HashMap<String, f64> = [("a".to_string(), 5_000.0)].into();
        assert!(due(&s, &every, at(t0, 4_999)).is_empty());
        assert_eq!(due(&s, &every, at(t0, 5_000)), vec!["a"]);
        assert_eq!(due(&s, &every, at(t0, 59_999)), vec!["a"]);
        assert_eq!(due(&s, &every, at(t0, 60_000)), vec!["a", "b"]);
    }

    #[test]
    fn an_outstanding_request_is_not_due_again_and_is_overdue_after_10_s() {
        let t0 = Instant::now();
        let mut s = Schedule::new(t0);
        s.pending = Some(([1; 32], at(t0, 60_000)));
        let m: HashMap<String, Schedule> = [("a".to_string(), s)].into();
        assert!(due(&m, &HashMap::new(), at(t0, 120_000)).is_empty());
        assert!(overdue(&m, at(t0, 70_000)).is_empty());
        assert_eq!(overdue(&m, at(t0, 70_001)), vec!["a"]);
    }

    #[test]
    fn nothing_pending_is_never_overdue() {
        let t0 = Instant::now();
        let m: HashMap<String, Schedule> = [("a".to_string(), Schedule::new(t0))].into();
        for ms in [0, 10_001, 1_000_000] {
            assert!(overdue(&m, at(t0, ms)).is_empty());
        }
    }
}
