//! Queueing delay of the well-behaved senders' messages, from the agents' own histogram
//! (`tribune_agent_message_queue_seconds{sender}`: accepted → written to the receiver's socket,
//! or to the link to the receiver's host), read over each agent's control socket.
//!
//! Across hosts a message queues twice (in the senders' agent, then in the receivers'). The
//! receivers' agent pairs the two waits per message (each RELAY says how long it queued on the
//! sending host: `tribune_agent_message_relayed_queue_seconds`), and the goal is judged on
//! that. From the two per-hop histograms alone only a **bound** follows, shown beside it:
//! P(a + b > 2 ms) ≤ P(a > x) + P(b > 2 ms − x) for any split x, the best split over the
//! buckets' bounds taken — "at least N % within 2 ms", never an overstatement. (Agents that
//! predate the paired histogram give only the bound.)

use std::collections::BTreeMap;

use serde::Serialize;

/// The histogram the agents keep.
pub const METRIC: &str = "tribune_agent_message_queue_seconds";
/// The receiving agent's histogram of both hosts' waits, paired per relayed message.
pub const PAIRED_METRIC: &str = "tribune_agent_message_relayed_queue_seconds";
/// The goal's bound on queueing delay (issue 15: p99 ≤ 2 ms).
pub const GOAL_MS: f64 = 2.0;

/// Cumulative counts at each bucket bound (seconds, ascending; the last is +Inf).
pub type Buckets = Vec<(f64, f64)>;

/// Queueing in one agent's mediator.
#[derive(Debug, Clone, Serialize)]
pub struct HopQueueing {
    /// Whose mediator: `one host`, or the senders' / receivers' host.
    pub agent: String,
    pub messages: u64,
    /// Interpolated within the bucket that holds them.
    pub p50_ms: f64,
    pub p99_ms: f64,
    /// Percent of the messages that queued at most [`GOAL_MS`] (exact: a bucket bound).
    pub within_goal_pct: f64,
    #[serde(skip)]
    pub buckets: Buckets,
}

/// The well-behaved senders' queueing: per mediator, and (across hosts) the bound on both.
#[derive(Debug, Clone, Serialize)]
pub struct Queueing {
    pub hops: Vec<HopQueueing>,
    /// At least this percent of the messages queued at most [`GOAL_MS`] in all (one hop: exact;
    /// two: the bound of the module doc).
    pub within_goal_pct_at_least: f64,
    /// Across hosts: both waits of each message together, as the receivers' agent paired them.
    pub paired: Option<HopQueueing>,
}

impl Queueing {
    /// The percent of messages within [`GOAL_MS`] the goal is judged on: exact on one host or
    /// paired across two, else the bound.
    pub fn judged_within_goal_pct(&self) -> f64 {
        self.paired
            .as_ref()
            .map_or(self.within_goal_pct_at_least, |p| p.within_goal_pct)
    }
}

#[derive(Debug, thiserror::Error)]
pub enum QueueingError {
    #[error("the agent's metrics do not parse: {0}")]
    Parse(std::io::Error),
    #[error("the agent's metrics have no {0} for the senders {1:?}")]
    Missing(&'static str, Vec<String>),
    #[error("the senders' {0} histograms have different buckets")]
    Buckets(&'static str),
}

/// The `senders`' [`METRIC`] histograms in one agent's metrics text, summed.
pub fn buckets(text: &str, senders: &[String]) -> Result<Buckets, QueueingError> {
    buckets_of(text, METRIC, senders)
}

/// The `senders`' `metric` histograms in one agent's metrics text, summed.
pub fn buckets_of(
    text: &str,
    metric: &'static str,
    senders: &[String],
) -> Result<Buckets, QueueingError> {
    let lines = text.lines().map(|l| Ok(l.to_string()));
    let scrape = prometheus_parse::Scrape::parse(lines).map_err(QueueingError::Parse)?;
    let mut sum: Option<BTreeMap<u64, (f64, f64)>> = None;
    let mut found = 0;
    for s in &scrape.samples {
        let prometheus_parse::Value::Histogram(counts) = &s.value else {
            continue;
        };
        if s.metric != metric
            || !s
                .labels
                .get("sender")
                .is_some_and(|x| senders.iter().any(|w| w == x))
        {
            continue;
        }
        found += 1;
        let acc = sum.get_or_insert_with(BTreeMap::new);
        if !acc.is_empty() && acc.len() != counts.len() {
            return Err(QueueingError::Buckets(metric));
        }
        for c in counts {
            // Keyed by the bound's bits: the same bound in every histogram of one metric.
            let e = acc
                .entry(c.less_than.to_bits())
                .or_insert((c.less_than, 0.0));
            e.1 += c.count;
        }
    }
    match sum {
        Some(acc) if found > 0 => {
            let mut b: Buckets = acc.into_values().collect();
            b.sort_by(|x, y| x.0.total_cmp(&y.0));
            Ok(b)
        }
        _ => Err(QueueingError::Missing(metric, senders.to_vec())),
    }
}

fn total(b: &Buckets) -> f64 {
    b.last().map_or(0.0, |x| x.1)
}

/// Fraction of the messages that queued at most `seconds` (a bucket bound: exact; between
/// bounds: the lower bound's, never more than is known).
fn within(b: &Buckets, seconds: f64) -> f64 {
    let n = total(b);
    if n == 0.0 {
        return 1.0;
    }
    let at = b
        .iter()
        .take_while(|(le, _)| *le <= seconds * (1.0 + 1e-9))
        .last()
        .map_or(0.0, |x| x.1);
    at / n
}

/// The `q` quantile (0..1), seconds, interpolated linearly inside its bucket (a bucket's lower
/// edge is the previous bound, 0 for the first; the +Inf bucket answers its lower edge).
fn quantile(b: &Buckets, q: f64) -> f64 {
    let n = total(b);
    if n == 0.0 {
        return 0.0;
    }
    let rank = q * n;
    let mut lower = (0.0, 0.0);
    for &(le, c) in b {
        if c >= rank {
            if le.is_infinite() || c == lower.1 {
                return lower.0;
            }
            return lower.0 + (le - lower.0) * (rank - lower.1) / (c - lower.1);
        }
        lower = (le, c);
    }
    lower.0
}

/// One mediator's figures.
pub fn hop(agent: &str, b: Buckets) -> HopQueueing {
    HopQueueing {
        agent: agent.to_string(),
        messages: total(&b) as u64,
        p50_ms: quantile(&b, 0.5) * 1e3,
        p99_ms: quantile(&b, 0.99) * 1e3,
        within_goal_pct: within(&b, GOAL_MS / 1e3) * 100.0,
        buckets: b,
    }
}

/// The figures of one or two mediators a message passes, in order.
pub fn of(hops: Vec<HopQueueing>) -> Queueing {
    let goal = GOAL_MS / 1e3;
    let within_goal_pct_at_least = match hops.as_slice() {
        [one] => one.within_goal_pct,
        [a, b] => {
            // Every split of the goal at one of a's bounds (and 0 or the whole goal).
            let splits = a
                .buckets
                .iter()
                .map(|x| x.0)
                .filter(|x| *x <= goal)
                .chain([0.0, goal]);
            let best_miss = splits
                .map(|x| (1.0 - within(&a.buckets, x)) + (1.0 - within(&b.buckets, goal - x)))
                .fold(f64::INFINITY, f64::min);
            ((1.0 - best_miss) * 100.0).max(0.0)
        }
        _ => 0.0,
    };
    Queueing {
        hops,
        within_goal_pct_at_least,
        paired: None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn text(sender: &str, counts: &[(f64, u64)]) -> String {
        let mut t = format!("# TYPE {METRIC} histogram\n");
        let mut sum = 0;
        for (le, c) in counts {
            let le = if le.is_infinite() {
                "+Inf".to_string()
            } else {
                le.to_string()
            };
            t.push_str(&format!(
                "{METRIC}_bucket{{le=\"{le}\",sender=\"{sender}\"}} {c}\n"
            ));
            sum = *c;
        }
        t.push_str(&format!("{METRIC}_sum{{sender=\"{sender}\"}} 0.1\n"));
        t.push_str(&format!("{METRIC}_count{{sender=\"{sender}\"}} {sum}\n"));
        t
    }

    const INF: f64 = f64::INFINITY;

    #[test]
    fn the_senders_histograms_are_summed_and_others_left_out() {
        let t = [
            text("s1", &[(0.001, 90), (0.002, 99), (INF, 100)]),
            text("s2", &[(0.001, 10), (0.002, 10), (INF, 100)]),
            text("flood", &[(0.001, 0), (0.002, 0), (INF, 5000)]),
        ]
        .concat();
        let b = buckets(&t, &["s1".into(), "s2".into()]).unwrap();
        assert_eq!(b, vec![(0.001, 100.0), (0.002, 109.0), (INF, 200.0)]);
        let h = hop("one host", b);
        assert_eq!(h.messages, 200);
        assert!((h.within_goal_pct - 54.5).abs() < 1e-9, "{h:?}");
        assert!(matches!(
            buckets(&t, &["nobody".into()]),
            Err(QueueingError::Missing(..))
        ));
    }

    #[test]
    fn quantiles_interpolate_inside_their_bucket() {
        let b = vec![(0.001, 50.0), (0.002, 100.0), (INF, 100.0)];
        assert!((quantile(&b, 0.5) - 0.001).abs() < 1e-12);
        assert!((quantile(&b, 0.75) - 0.0015).abs() < 1e-12);
        assert!((quantile(&b, 0.99) - 0.00198).abs() < 1e-12);
        // In the +Inf bucket: its lower edge, never a made-up figure.
        let tail = vec![(0.001, 50.0), (INF, 100.0)];
        assert_eq!(quantile(&tail, 0.99), 0.001);
    }

    #[test]
    fn two_hops_give_a_bound_never_more_than_either_hop() {
        let a = hop(
            "a",
            vec![(0.0005, 95.0), (0.001, 99.0), (0.002, 100.0), (INF, 100.0)],
        );
        let b = hop(
            "b",
            vec![(0.0005, 50.0), (0.001, 99.5), (0.002, 100.0), (INF, 100.0)],
        );
        let q = of(vec![a.clone(), b.clone()]);
        // Best split 1 ms + 1 ms: 1 % + 0.5 % may miss.
        assert!((q.within_goal_pct_at_least - 98.5).abs() < 1e-9, "{q:?}");
        assert!(q.within_goal_pct_at_least <= a.within_goal_pct);
        assert!(q.within_goal_pct_at_least <= b.within_goal_pct);
        // One hop: exact.
        assert_eq!(
            of(vec![a.clone()]).within_goal_pct_at_least,
            a.within_goal_pct
        );
    }
}
