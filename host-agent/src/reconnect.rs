//! When the link reconnects and what it reports while no controller answers: **pure** (no
//! clock, no randomness — the caller passes the jitter), so it is tested exhaustively.
//!
//! - One outage is one `controller_link_down` event, however many attempts fail during it,
//!   and the stream that ends it is one `controller_link_up`.
//! - After every controller in the list failed once (a round), the link pauses: capped
//!   exponential back-off with jitter, [`BASE`] doubling up to [`CAP`], each pause drawn from
//!   its upper half (`[d/2, d]`) so agents that lost the same controller do not all come back
//!   in step. A stream that comes up resets it.
//!
//! Hand-written rather than the `backon` crate: the link's pause is a `select!` that keeps
//! sealing windows while it waits, which `backon`'s retry wrappers do not fit, and what is
//! needed here is a dozen lines with no new dependency.

use std::time::Duration;

/// The first pause after a failed round.
pub const BASE: Duration = Duration::from_millis(200);
/// The longest pause: also the longest a controller that came back waits for this agent.
pub const CAP: Duration = Duration::from_secs(5);

/// The outage and back-off state of one link.
#[derive(Clone, Debug, Default)]
pub struct Reconnect {
    /// Failed rounds since the last stream came up.
    rounds: u32,
    /// Whether an outage has been reported and has not ended.
    down: bool,
}

impl Reconnect {
    pub fn new() -> Reconnect {
        Reconnect::default()
    }

    /// A stream failed (or could not be opened). True when this starts an outage: the one
    /// time a link-down event is recorded for it.
    pub fn failed(&mut self) -> bool {
        !std::mem::replace(&mut self.down, true)
    }

    /// A stream came up: the outage (if any) is over and the back-off starts again from
    /// [`BASE`]. True when this ended an outage.
    pub fn up(&mut self) -> bool {
        self.rounds = 0;
        std::mem::replace(&mut self.down, false)
    }

    /// The pause after a round of failures; `jitter` in `[0, 1]` picks where in `[d/2, d]`.
    pub fn next_pause(&mut self, jitter: f64) -> Duration {
        let ceiling = BASE.saturating_mul(1u32 << self.rounds.min(16)).min(CAP);
        self.rounds = self.rounds.saturating_add(1);
        let jitter = if jitter.is_finite() {
            jitter.clamp(0.0, 1.0)
        } else {
            1.0
        };
        ceiling.mul_f64(0.5 + 0.5 * jitter)
    }
}

/// A jitter in `[0, 1]` from the standard library's per-process random hash keys (no
/// dependency for a few random bits a minute).
pub fn jitter() -> f64 {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u64(0);
    (h.finish() >> 11) as f64 / (1u64 << 53) as f64
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_down_per_outage_and_one_up_when_it_ends() {
        let mut r = Reconnect::new();
        // The first failure (at start or after a stream) starts the outage; no more after it.
        assert!(r.failed());
        assert_eq!((0..1000).filter(|_| r.failed()).count(), 0);
        assert!(r.up(), "the stream that comes back ends the outage");
        assert!(!r.up(), "an up without an outage is not a reconnection");
        assert!(r.failed(), "the next failure is a new outage");
        assert!(!r.failed());
    }

    #[test]
    fn pauses_double_up_to_the_cap_within_their_jitter_band() {
        let mut r = Reconnect::new();
        let mut ceiling = BASE;
        for _ in 0..40 {
            let lo = r.clone().next_pause(0.0);
            let hi = r.clone().next_pause(1.0);
            assert_eq!(lo, ceiling / 2);
            assert_eq!(hi, ceiling);
            let p = r.next_pause(jitter());
            assert!(lo <= p && p <= hi, "{p:?} outside [{lo:?}, {hi:?}]");
            ceiling = (ceiling * 2).min(CAP);
        }
        assert_eq!(r.clone().next_pause(1.0), CAP, "capped");
        // Nonsense jitter stays in the band.
        for j in [f64::NAN, f64::INFINITY, -3.0, 7.0] {
            let p = r.clone().next_pause(j);
            assert!(CAP / 2 <= p && p <= CAP, "{j}: {p:?}");
        }
        // A stream coming up starts the back-off again.
        r.failed();
        r.up();
        assert_eq!(r.next_pause(1.0), BASE);
    }

    #[test]
    fn jitter_is_in_range_and_varies() {
        let draws: Vec<f64> = (0..64).map(|_| jitter()).collect();
        assert!(draws.iter().all(|j| (0.0..=1.0).contains(j)));
        assert!(draws.iter().any(|j| *j != draws[0]), "{draws:?}");
    }
}
