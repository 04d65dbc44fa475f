//! The enforcement checker: what the kernel enforces on each enclave of the run's host agents,
//! judged against the invariants of DESIGN.md §6 — independent of the code under test. It is
//! fed readings of the enclaves' cgroup files (CPU quota, CPU time used, freezer state; read by
//! `super::watch`) and what the harness itself did to each host (cut it off, killed
//! its agent), never what a controller or an agent says about itself.
//!
//! - **Limits never lifted while cut off**: from the moment a host is cut off from every
//!   controller (or its agent is killed), no enclave's enforcement becomes looser than it was
//!   when the cut began (a CPU cap raised or removed, a frozen enclave thawed), nor in the
//!   [`GUARD_AFTER`] after a killed agent's restart: the controllers release a throttle only
//!   after 10 s backed off on the new session's own evidence
//!   (`tribune_controller::attest::decide::RELEASE_AFTER_MS`), so a limit lifted that soon
//!   was lifted by the restart — a fail-open.
//! - **Enforced within the budget**: an enclave using more than its limit (its CPU time over
//!   the last second above [`OVER_FACTOR`] × the limit) without a cap at its limit or a
//!   freeze, on a host that is *judged* (its agent running, reaching every controller, no fault
//!   of any kind in force, and [`SETTLE`] since the last one ended — the agent's reconnect
//!   back-off is up to 5 s), is capped or frozen within [`BUDGET`].
//! - **Suspension is sticky**: once an enclave's freezer reads `FROZEN`, it never reads thawed
//!   again and its CPU time does not grow (no operator acts during a run).
//!
//! Pure: readings and times in, findings out; `tests` drives it by hand.

use std::collections::{BTreeMap, VecDeque};
use std::time::Duration;

use serde::Serialize;

/// How long a violation on a judged host may last before it is an anomaly.
pub const BUDGET: Duration = Duration::from_secs(5);
/// How long after a fault ends (or an agent restarts) a host is judged again: the agent's
/// reconnect back-off (`host-agent/src/reconnect.rs`, at most 5 s) and a new stream.
pub const SETTLE: Duration = Duration::from_secs(6);
/// How long after its restart a killed agent's host stays guarded (limits never lifted).
pub const GUARD_AFTER: Duration = Duration::from_secs(3);
/// Over the limit: CPU time over the last [`WINDOW`] above this × the limit.
pub const OVER_FACTOR: f64 = 1.25;
/// The window usage is measured over.
pub const WINDOW: Duration = Duration::from_secs(1);
/// CPU time a frozen enclave may still be charged (the freezer's own bookkeeping).
const FROZEN_SLACK_NS: u64 = 20_000_000;

/// What the kernel enforces on one enclave, and what it used, at one instant.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Reading {
    /// The CPU cap in millicores (`None`: no cap).
    pub cap_m: Option<u64>,
    /// The freezer reads `FROZEN`.
    pub frozen: bool,
    /// CPU time used since the cgroup was made, ns.
    pub usage_ns: u64,
}

impl Reading {
    /// Whether `self` enforces less than `before`: thawed where it was frozen, or a cap
    /// raised or removed.
    pub fn looser_than(&self, before: &Reading) -> bool {
        (before.frozen && !self.frozen)
            || match (before.cap_m, self.cap_m) {
                (Some(_), None) => true,
                (Some(b), Some(n)) => n > b,
                (None, _) => false,
            }
    }

    /// Whether it enforces `limit_m`: frozen, or capped at no more than the limit (+5 %).
    pub fn enforces(&self, limit_m: u64) -> bool {
        self.frozen || self.cap_m.is_some_and(|c| c * 100 <= limit_m * 105)
    }
}

/// What the harness knows of one host at one instant.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct HostCtx {
    /// Cut off from every controller, or its agent dead: nothing may be lifted.
    pub guarded: bool,
    /// Its agent restarted within [`GUARD_AFTER`]: nothing may be lifted either.
    pub restarting: bool,
    /// Connected and settled: a violation must be enforced within the budget.
    pub judged: bool,
}

/// An enclave the checker follows: which host, its CPU limit.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Watched {
    pub host: usize,
    pub name: String,
    pub limit_m: Option<u64>,
}

#[derive(Debug, Default)]
struct State {
    last: Option<Reading>,
    last_at: Duration,
    /// Usage over the last window: (at, usage_ns).
    window: VecDeque<(Duration, u64)>,
    /// Enforcement when the current guarded window began.
    baseline: Option<Reading>,
    lifted_reported: bool,
    /// Frozen since (usage then).
    frozen_at: Option<u64>,
    thaw_reported: bool,
    ran_reported: bool,
    /// Over its limit, unenforced, on a judged host since.
    over_since: Option<Duration>,
    budget_reported: bool,
}

/// The checker's figures and findings.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Verdict {
    pub enclaves: u64,
    pub readings: u64,
    /// Guarded windows (a host cut off or its agent killed) checked, by host.
    pub guarded_windows: u64,
    /// Readings taken inside guarded windows.
    pub guarded_readings: u64,
    /// Violations on judged hosts that were enforced, and the longest time it took (ms).
    pub violations_enforced: u64,
    pub enforce_ms_max: u64,
    /// Enclaves seen frozen (suspended), and readings of frozen enclaves checked.
    pub suspended: u64,
    pub frozen_readings: u64,
    pub anomalies: Vec<String>,
}

pub struct Checker {
    watched: Vec<Watched>,
    state: Vec<State>,
    guarded: BTreeMap<usize, bool>,
    pub verdict: Verdict,
}

impl Checker {
    pub fn new(watched: Vec<Watched>) -> Self {
        let state = watched.iter().map(|_| State::default()).collect();
        Checker {
            verdict: Verdict {
                enclaves: watched.len() as u64,
                ..Default::default()
            },
            watched,
            state,
            guarded: BTreeMap::new(),
        }
    }

    pub fn watched(&self) -> &[Watched] {
        &self.watched
    }

    /// One round of readings at `at` (since the run began): `readings[i]` for `watched()[i]`
    /// (`None`: no cgroup), `hosts[h]` for host `h`.
    pub fn observe(&mut self, at: Duration, hosts: &[HostCtx], readings: &[Option<Reading>]) {
        for (h, ctx) in hosts.iter().enumerate() {
            let now = ctx.guarded || ctx.restarting;
            let was = self.guarded.insert(h, now).unwrap_or(false);
            if ctx.guarded && !was {
                self.verdict.guarded_windows += 1;
                // The baseline is what was enforced just before the window began.
                for (w, s) in self.watched.iter().zip(self.state.iter_mut()) {
                    if w.host == h {
                        s.baseline = s.last;
                        s.lifted_reported = false;
                    }
                }
            }
            if !now && was {
                for (w, s) in self.watched.iter().zip(self.state.iter_mut()) {
                    if w.host == h {
                        s.baseline = None;
                    }
                }
            }
        }
        for (i, r) in readings.iter().enumerate() {
            let Some(r) = *r else { continue };
            let w = &self.watched[i];
            let ctx = hosts.get(w.host).copied().unwrap_or_default();
            let s = &mut self.state[i];
            let v = &mut self.verdict;
            v.readings += 1;
            // (a) never lifted while guarded.
            if ctx.guarded {
                v.guarded_readings += 1;
            }
            if (ctx.guarded || ctx.restarting)
                && let Some(b) = s.baseline
                && r.looser_than(&b)
                && !s.lifted_reported
            {
                s.lifted_reported = true;
                let what = format!(
                    "enclave {} on host {} at {:.1} s: {} → {}",
                    w.name,
                    w.host + 1,
                    at.as_secs_f64(),
                    describe(&b),
                    describe(&r)
                );
                v.anomalies.push(if ctx.guarded {
                    format!("limits lifted while cut off: {what}")
                } else {
                    format!("limits lifted just after an agent's restart: {what}")
                });
            }
            // (c) suspension is sticky.
            match (s.frozen_at, r.frozen) {
                (None, true) => {
                    s.frozen_at = Some(r.usage_ns);
                    v.suspended += 1;
                }
                (Some(u), true) => {
                    v.frozen_readings += 1;
                    if r.usage_ns > u + FROZEN_SLACK_NS && !s.ran_reported {
                        s.ran_reported = true;
                        v.anomalies.push(format!(
                            "suspended enclave {} on host {} ran: {} ms of CPU while frozen (at {:.1} s)",
                            w.name,
                            w.host + 1,
                            (r.usage_ns - u) / 1_000_000,
                            at.as_secs_f64()
                        ));
                    }
                }
                (Some(_), false) if !s.thaw_reported => {
                    s.thaw_reported = true;
                    v.anomalies.push(format!(
                        "suspended enclave {} on host {} resumed without an operator action (at {:.1} s)",
                        w.name,
                        w.host + 1,
                        at.as_secs_f64()
                    ));
                }
                _ => {}
            }
            // (b) enforced within the budget.
            while s.window.len() > 1 && s.window[1].0 + WINDOW <= at {
                s.window.pop_front();
            }
            // A new cgroup (usage went back) starts a new window.
            if s.window.back().is_some_and(|&(_, u)| u > r.usage_ns) {
                s.window.clear();
            }
            s.window.push_back((at, r.usage_ns));
            let rate_m = match s.window.front() {
                Some(&(t0, u0)) if at >= t0 + WINDOW => {
                    Some((r.usage_ns - u0) as f64 / (at - t0).as_nanos() as f64 * 1000.0)
                }
                _ => None,
            };
            // The rate since the previous reading starts an episode; the anomaly needs the
            // whole window over too (a short burst is not a violation).
            let short_m = match s.last {
                Some(p) if at > s.last_at && r.usage_ns >= p.usage_ns => Some(
                    (r.usage_ns - p.usage_ns) as f64 / (at - s.last_at).as_nanos() as f64 * 1000.0,
                ),
                _ => None,
            };
            if let Some(limit) = w.limit_m {
                let over_by = |m: Option<f64>| m.is_some_and(|m| m > OVER_FACTOR * limit as f64);
                let over = !r.enforces(limit) && over_by(short_m);
                if over && ctx.judged {
                    let since = *s.over_since.get_or_insert(at);
                    if at - since > BUDGET && over_by(rate_m) && !s.budget_reported {
                        s.budget_reported = true;
                        v.anomalies.push(format!(
                            "enclave {} on connected host {} over its {limit}m limit ({:.0}m) for {:.1} s without a cap or a suspension (at {:.1} s)",
                            w.name,
                            w.host + 1,
                            rate_m.unwrap_or(0.0),
                            (at - since).as_secs_f64(),
                            at.as_secs_f64()
                        ));
                    }
                } else {
                    if let Some(since) = s.over_since.take()
                        && r.enforces(limit)
                        && ctx.judged
                    {
                        v.violations_enforced += 1;
                        v.enforce_ms_max = v.enforce_ms_max.max((at - since).as_millis() as u64);
                    }
                    if !over {
                        s.budget_reported = false;
                    }
                }
            }
            s.last = Some(r);
            s.last_at = at;
        }
    }
}

fn describe(r: &Reading) -> String {
    let cap = r
        .cap_m
        .map_or("no cap".to_string(), |c| format!("cap {c}m"));
    if r.frozen {
        format!("{cap}, frozen")
    } else {
        cap
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn r(cap: Option<u64>, frozen: bool, usage_ms: u64) -> Option<Reading> {
        Some(Reading {
            cap_m: cap,
            frozen,
            usage_ns: usage_ms * 1_000_000,
        })
    }

    fn checker() -> Checker {
        Checker::new(vec![Watched {
            host: 0,
            name: "g".into(),
            limit_m: Some(200),
        }])
    }

    const JUDGED: HostCtx = HostCtx {
        guarded: false,
        restarting: false,
        judged: true,
    };
    const CUT: HostCtx = HostCtx {
        guarded: true,
        restarting: false,
        judged: false,
    };
    const RESTARTING: HostCtx = HostCtx {
        guarded: false,
        restarting: true,
        judged: false,
    };

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    #[test]
    fn a_cap_lifted_while_cut_off_is_found_and_one_kept_is_not() {
        let mut c = checker();
        c.observe(ms(0), &[JUDGED], &[r(Some(200), false, 0)]);
        c.observe(ms(100), &[CUT], &[r(Some(200), false, 20)]);
        c.observe(ms(200), &[CUT], &[r(Some(150), false, 40)]);
        assert!(c.verdict.anomalies.is_empty(), "{:?}", c.verdict.anomalies);
        c.observe(ms(300), &[CUT], &[r(None, false, 140)]);
        assert_eq!(c.verdict.anomalies.len(), 1, "{:?}", c.verdict.anomalies);
        assert!(c.verdict.anomalies[0].contains("lifted while cut off"));
        // Lifted once the host is connected again: not this invariant's business.
        let mut c = checker();
        c.observe(ms(0), &[CUT], &[r(Some(200), false, 0)]);
        c.observe(ms(100), &[JUDGED], &[r(None, false, 100)]);
        assert!(c.verdict.anomalies.is_empty());
        assert_eq!(c.verdict.guarded_windows, 1);
        // Killed, then restarted: a cap lifted in the restart window is found too (a fail-open),
        // a cap kept is not, and one lifted once the window is over is not this invariant's.
        let mut c = checker();
        c.observe(ms(0), &[JUDGED], &[r(Some(200), false, 0)]);
        c.observe(ms(100), &[CUT], &[r(Some(200), false, 20)]);
        c.observe(ms(200), &[RESTARTING], &[r(Some(200), false, 40)]);
        assert!(c.verdict.anomalies.is_empty(), "{:?}", c.verdict.anomalies);
        c.observe(ms(300), &[RESTARTING], &[r(None, false, 140)]);
        assert_eq!(c.verdict.anomalies.len(), 1, "{:?}", c.verdict.anomalies);
        assert!(
            c.verdict.anomalies[0].contains("lifted just after an agent's restart")
                && c.verdict.anomalies[0].contains("cap 200m → no cap"),
            "{:?}",
            c.verdict.anomalies
        );
        let mut c = checker();
        c.observe(ms(0), &[JUDGED], &[r(Some(200), false, 0)]);
        c.observe(ms(100), &[CUT], &[r(Some(200), false, 20)]);
        c.observe(ms(200), &[RESTARTING], &[r(Some(200), false, 40)]);
        c.observe(ms(300), &[JUDGED], &[r(None, false, 140)]);
        assert!(c.verdict.anomalies.is_empty(), "{:?}", c.verdict.anomalies);
        // A frozen enclave thawed in the restart window: found (and as a thaw).
        let mut c = checker();
        c.observe(ms(0), &[JUDGED], &[r(Some(200), true, 0)]);
        c.observe(ms(100), &[CUT], &[r(Some(200), true, 0)]);
        c.observe(ms(200), &[RESTARTING], &[r(Some(200), false, 0)]);
        assert!(
            c.verdict
                .anomalies
                .iter()
                .any(|a| a.contains("lifted just after an agent's restart")),
            "{:?}",
            c.verdict.anomalies
        );
    }

    #[test]
    fn a_violation_is_judged_against_the_budget_only_on_a_judged_host() {
        // Greedy (1000m) with no cap on a judged host for more than the budget: found.
        let mut c = checker();
        for t in 0..=70 {
            c.observe(ms(t * 100), &[JUDGED], &[r(None, false, t * 100)]);
        }
        assert_eq!(c.verdict.anomalies.len(), 1, "{:?}", c.verdict.anomalies);
        assert!(c.verdict.anomalies[0].contains("over its 200m limit"));
        // The same while not judged (cut off, or settling): nothing.
        let mut c = checker();
        let off = HostCtx::default();
        for t in 0..=70 {
            c.observe(ms(t * 100), &[off], &[r(None, false, t * 100)]);
        }
        assert!(c.verdict.anomalies.is_empty());
        // Capped after 2 s: enforced, its time measured.
        let mut c = checker();
        for t in 0..=70 {
            let cap = (t >= 30).then_some(200);
            c.observe(ms(t * 100), &[JUDGED], &[r(cap, false, t * 100)]);
        }
        assert!(c.verdict.anomalies.is_empty(), "{:?}", c.verdict.anomalies);
        assert_eq!(c.verdict.violations_enforced, 1);
        // From the first reading over its limit (at 100 ms) to the cap (at 3 s).
        assert_eq!(c.verdict.enforce_ms_max, 2900);
        // Under its limit: never a violation.
        let mut c = checker();
        for t in 0..=70 {
            c.observe(ms(t * 100), &[JUDGED], &[r(None, false, t * 10)]);
        }
        assert!(c.verdict.anomalies.is_empty());
        assert_eq!(c.verdict.violations_enforced, 0);
    }

    #[test]
    fn a_suspended_enclave_that_thaws_or_runs_is_found() {
        let mut c = checker();
        c.observe(ms(0), &[JUDGED], &[r(Some(200), true, 500)]);
        c.observe(ms(100), &[JUDGED], &[r(Some(200), true, 505)]);
        assert!(c.verdict.anomalies.is_empty());
        c.observe(ms(200), &[JUDGED], &[r(Some(200), true, 700)]);
        assert_eq!(c.verdict.anomalies.len(), 1, "{:?}", c.verdict.anomalies);
        assert!(c.verdict.anomalies[0].contains("ran"));
        c.observe(ms(300), &[JUDGED], &[r(Some(200), false, 700)]);
        assert_eq!(c.verdict.anomalies.len(), 2, "{:?}", c.verdict.anomalies);
        assert!(c.verdict.anomalies[1].contains("resumed without an operator action"));
        assert_eq!(c.verdict.suspended, 1);
    }

    #[test]
    fn looser_is_a_partial_order_on_enforcement() {
        let a = |cap, frozen| Reading {
            cap_m: cap,
            frozen,
            usage_ns: 0,
        };
        assert!(a(None, false).looser_than(&a(Some(200), false)));
        assert!(a(Some(300), false).looser_than(&a(Some(200), false)));
        assert!(a(Some(200), false).looser_than(&a(Some(200), true)));
        assert!(!a(Some(100), false).looser_than(&a(Some(200), false)));
        assert!(!a(Some(200), true).looser_than(&a(None, false)));
        assert!(a(Some(210), false).enforces(200));
        assert!(!a(Some(300), false).enforces(200));
        assert!(a(None, true).enforces(200));
    }
}
