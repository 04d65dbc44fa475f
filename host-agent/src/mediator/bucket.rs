//! Token buckets that keep a flood of refused messages from flooding the log. **Pure**: time
//! comes in as milliseconds of a monotonic clock.
//!
//! [`RefusalLog`] keeps one bucket per (sender, receiver) pair, in a table of bounded size:
//! a pair is logged at most `burst` times at once and then `per_s` times a second; each logged
//! line says how many were left out since the pair's last one, so nothing is hidden, only
//! summed.

use std::collections::HashMap;

/// A token bucket in thousandths of a token (integer arithmetic, no drift).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TokenBucket {
    capacity_milli: u64,
    per_s: u64,
    tokens_milli: u64,
    at_ms: u64,
}

impl TokenBucket {
    /// A full bucket of `burst` tokens refilled at `per_s` tokens a second.
    pub fn new(burst: u32, per_s: u32, now_ms: u64) -> TokenBucket {
        let capacity_milli = u64::from(burst.max(1)) * 1000;
        TokenBucket {
            capacity_milli,
            per_s: u64::from(per_s),
            tokens_milli: capacity_milli,
            at_ms: now_ms,
        }
    }

    /// Takes a token if there is one. A clock that goes back refills nothing.
    pub fn take(&mut self, now_ms: u64) -> bool {
        self.refill(now_ms);
        if self.tokens_milli >= 1000 {
            self.tokens_milli -= 1000;
            true
        } else {
            false
        }
    }

    /// Whether the bucket is full at `now_ms` (an idle pair: its entry can go).
    pub fn is_full(&mut self, now_ms: u64) -> bool {
        self.refill(now_ms);
        self.tokens_milli == self.capacity_milli
    }

    fn refill(&mut self, now_ms: u64) {
        let elapsed = now_ms.saturating_sub(self.at_ms);
        self.at_ms = self.at_ms.max(now_ms);
        // tokens/s × ms = thousandths of a token.
        let add = elapsed.saturating_mul(self.per_s);
        self.tokens_milli = self
            .tokens_milli
            .saturating_add(add)
            .min(self.capacity_milli);
    }
}

/// Whether to log a refusal now.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// Log it, saying how many refusals of this pair were left out before it.
    Log { left_out: u64 },
    /// Count it, log nothing.
    Quiet,
}

/// Rate limits refusal log lines per (sender, receiver) pair, in bounded memory.
#[derive(Debug)]
pub struct RefusalLog {
    burst: u32,
    per_s: u32,
    pairs_max: usize,
    pairs: HashMap<(String, String), (TokenBucket, u64)>,
    /// Shared by every pair once the table is full of busy pairs.
    overflow: (TokenBucket, u64),
}

impl RefusalLog {
    /// At most `burst` lines at once and `per_s` a second per pair; at most `pairs_max` pairs
    /// tracked one by one (beyond, the rest share one bucket).
    pub fn new(burst: u32, per_s: u32, pairs_max: usize) -> RefusalLog {
        RefusalLog {
            burst,
            per_s,
            pairs_max,
            pairs: HashMap::new(),
            overflow: (TokenBucket::new(burst, per_s, 0), 0),
        }
    }

    /// A refusal of a message from `from` to `to` at `now_ms`: log it or count it.
    pub fn refused(&mut self, from: &str, to: &str, now_ms: u64) -> Verdict {
        let key = (from.to_string(), to.to_string());
        if !self.pairs.contains_key(&key) && self.pairs.len() >= self.pairs_max {
            // Idle pairs (full buckets) carry nothing worth keeping.
            self.pairs
                .retain(|_, (b, left_out)| *left_out > 0 || !b.is_full(now_ms));
        }
        let (bucket, left_out) =
            if self.pairs.len() < self.pairs_max || self.pairs.contains_key(&key) {
                self.pairs
                    .entry(key)
                    .or_insert_with(|| (TokenBucket::new(self.burst, self.per_s, now_ms), 0))
            } else {
                &mut self.overflow
            };
        if bucket.take(now_ms) {
            Verdict::Log {
                left_out: std::mem::take(left_out),
            }
        } else {
            *left_out += 1;
            Verdict::Quiet
        }
    }

    /// Pairs tracked one by one.
    pub fn pairs(&self) -> usize {
        self.pairs.len()
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    #[test]
    fn a_bucket_allows_its_burst_then_its_rate() {
        let mut b = TokenBucket::new(3, 2, 1000);
        assert!(b.take(1000) && b.take(1000) && b.take(1000));
        assert!(!b.take(1000));
        assert!(
            !b.take(1499),
            "2/s: half a second is one token, 499 ms is not"
        );
        assert!(b.take(1500));
        assert!(!b.take(1500));
        assert!(b.is_full(10_000));
        // A clock that goes back refills nothing and takes nothing away.
        let mut c = TokenBucket::new(1, 1, 5000);
        assert!(c.take(5000));
        assert!(!c.take(1000));
        assert!(!c.take(5999));
        assert!(c.take(6000));
    }

    #[test]
    fn a_flood_is_logged_at_the_rate_with_the_count_left_out() {
        let mut log = RefusalLog::new(2, 1, 16);
        let mut verdicts = Vec::new();
        for ms in (0..3000).step_by(10) {
            verdicts.push(log.refused("flood", "victim", ms));
        }
        let logged: Vec<u64> = verdicts
            .iter()
            .filter_map(|v| match v {
                Verdict::Log { left_out } => Some(*left_out),
                Verdict::Quiet => None,
            })
            .collect();
        // Burst of 2 at 0 ms, then one at 1 s and one at 2 s: 4 lines for 300 refusals.
        assert_eq!(logged.len(), 4);
        assert_eq!(logged[..2], [0, 0]);
        // Lines at 0, 10, 1000 and 2000 ms: the refusals at 0..=2000 ms (201) are all accounted.
        assert_eq!(
            logged.iter().sum::<u64>() + 4,
            201,
            "every refusal up to the last line is counted"
        );
        // Another pair is not held back by the flood.
        assert_eq!(
            log.refused("other", "victim", 2995),
            Verdict::Log { left_out: 0 }
        );
    }

    #[test]
    fn the_table_is_bounded_and_idle_pairs_make_room() {
        let mut log = RefusalLog::new(1, 1, 4);
        for i in 0..4 {
            assert_eq!(
                log.refused(&format!("s{i}"), "r", 0),
                Verdict::Log { left_out: 0 }
            );
        }
        // Full of busy pairs: a new one shares the overflow bucket.
        assert_eq!(log.refused("s9", "r", 0), Verdict::Log { left_out: 0 });
        assert_eq!(log.refused("s10", "r", 0), Verdict::Quiet);
        assert_eq!(log.pairs(), 4);
        // Later the idle pairs are full again and give way.
        assert_eq!(
            log.refused("s11", "r", 10_000),
            Verdict::Log { left_out: 0 }
        );
        assert!(log.pairs() <= 4);
    }

    proptest! {
        /// Over any run, one pair gets at most `burst + per_s × seconds` lines, and every
        /// refusal is either a line or counted in the next line's `left_out`.
        #[test]
        fn lines_never_exceed_burst_plus_rate(
            burst in 1u32..5, per_s in 1u32..10,
            gaps in proptest::collection::vec(0u64..400, 1..300),
        ) {
            let mut log = RefusalLog::new(burst, per_s, 8);
            let (mut now, mut lines, mut counted) = (0u64, 0u64, 0u64);
            for g in &gaps {
                now += g;
                if let Verdict::Log { left_out } = log.refused("a", "b", now) {
                    lines += 1;
                    counted += left_out + 1;
                }
            }
            prop_assert!(lines <= u64::from(burst) + now * u64::from(per_s) / 1000);
            prop_assert!(counted <= gaps.len() as u64);
        }
    }
}
