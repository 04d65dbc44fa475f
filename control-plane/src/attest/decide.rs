//! Decisions (DESIGN.md §5): a pure function from the replicated state of one host's enclaves,
//! their latest verified usage and the policies to the enforcement changes to propose.
//!
//! Semantics, per enclave:
//! - **over the limit**: the enclave's own (MAC'd) CPU usage over the last window is above its
//!   effective limit (policy `limit.cpu` plus what it borrows) by more than
//!   [`OVER_TOLERANCE`]. Once capped (throttled) its usage cannot be over the cap, so its
//!   last second is read against the cap instead:
//!   - at least [`RELEASE`] of it, the enclave is **at its limit** — a cap holding usage at it
//!     (CFS enforces it per 100 ms period; a busy host shaves some off) — and still over: the
//!     ladder clock (`over_limit`'s duration) runs on;
//!   - below [`RELEASE`], it has **backed off** (or a busy host starves it: the same reading):
//!     the clock stands still, and runs on from there, never from zero, if it presses again;
//!   - it is **released** (uncapped, the clock ended) only once backed off continuously for
//!     [`RELEASE_AFTER_MS`], counted on live evidence ([`Observation::live_ms`]): a new
//!     attestation session (an agent's restart, a controller change) or a gap in its reports
//!     starts that wait again, so the first decisions of a session never lift a throttle;
//!   - silence (no fresh verified usage) keeps all of it: the cap stays and a running clock
//!     runs on (never lift on silence), a standing one stands.
//!
//!   So `on over_limit { throttle now; suspend after 2s }` suspends an enclave 2 s of pressing
//!   after its throttle, however often its usage dips, and never one that backed off at once.
//! - the **ladder** comes from the policy's `on over_limit { … }` (and every other `on`/`when`
//!   action): the most severe step due now. `throttle` writes the CPU cap (the effective
//!   limit) at once; `suspend` freezes; `migrate` is recorded and keeps the enclave suspended; the
//!   leader then live-migrates a QEMU enclave on that step (`crate::live`), which ends it. Suspension is sticky: only an operator
//!   resumes a suspended enclave (`PUT` it with `"state": "running"`), so a frozen enclave whose
//!   usage fell to zero is not thawed by its own silence.
//! - **reclamation**: an enclave whose `reclaim` condition holds lends its guarantee above the
//!   `keep` floor; the pool is shared by weight among the throttled enclaves of the same host
//!   (raising their caps); the moment the owner's condition stops holding, the pool shrinks
//!   and the borrowers' caps come back down in the same decision.
//! - **attestation**: a failed verdict or evidence outside the `attest` requirements makes
//!   `attestation.failed` true for the policy's `on attestation.failed { … }` ladder.
//!
//! No clock, no I/O: `now_ms` comes in, changes go out.

use std::collections::BTreeMap;

use tribune_policy::{
    Action, AttestStatus, AttestationFacts, Decision, Events, Facts, MsgFacts, PolicySet, Resource,
    SourceKind, UsageFact, Utilization,
};

use crate::state::{
    ActionDetail, Allocation, AttestationFailed, BorrowAction, BorrowMove, Enclave, EnclaveState,
    EnclaveStatus, Enforcement, Ladder, LadderAction, LendAction, LendMove, LogDetail, OverLimit,
    Resources, Step, ViolationDetail,
};
pub use crate::state::{compile, compile_each, identity};

/// Usage above the limit by more than this fraction is over the limit (measurement noise).
pub const OVER_TOLERANCE: f64 = 0.02;
/// A capped enclave using, over the last second, at least this fraction of its cap presses
/// against it (CFS enforces a cap per 100 ms period, so single windows read a little under or
/// over it): over the limit, its ladder clock started if it was not running. (A message-rate
/// throttle holds while the attempts press against the rate the same way.)
pub const PRESSING: f64 = 0.9;
/// Below this fraction of its cap (last second) a throttled enclave has backed off: its ladder
/// clock stands still, and it is released after [`RELEASE_AFTER_MS`] of it; from this fraction
/// up it is at its limit, still over.
pub const RELEASE: f64 = 0.75;
/// A throttled enclave is released only after it stayed backed off this long, on live evidence
/// ([`Observation::live_ms`]; never on silence, never on a new session's first reports):
/// capped at its own limit a compliant enclave loses nothing, while an enclave merely starved
/// by a busy host (usage below its cap for a moment) must not be uncapped by it.
pub const RELEASE_AFTER_MS: i64 = 10_000;

/// What the controller measured for one enclave (verified reports only).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Observation {
    /// Enclave view of the last report window, millicores.
    pub cpu_millicores: f64,
    /// Enclave view averaged over the last second, millicores.
    pub cpu_recent_millicores: f64,
    /// The aggregates the policies read.
    pub usage: Vec<UsageFact>,
    /// How far the enclave's view differs from the host's, percent (last window).
    pub divergence_pct: f64,
    /// The report the observation ends with, and when its window ended (Unix ms).
    pub seq: u64,
    pub window_end_ms: u64,
    /// Its inter-enclave messages in the last window, per second (`usage.msgs.*`).
    pub msgs: MsgFacts,
    /// How long its usage has been observed live, without a gap, up to this report (ms, by
    /// the controller's clock): a new attestation session (an agent's restart, a controller
    /// change), a missing or stale report, or a second without one starts it again at 0. A
    /// throttle is released only on live evidence (see [`RELEASE_AFTER_MS`]); the default, 0,
    /// releases nothing.
    pub live_ms: u64,
}

/// One enclave, as the decision sees it.
pub struct Input<'a> {
    pub enclave: &'a Enclave,
    pub status: Option<&'a EnclaveStatus>,
    pub allocation: Option<&'a Allocation>,
    pub observation: Option<&'a Observation>,
    /// Since when each condition id (`when#N`, `on#N`, `reclaim`) has been true (controller
    /// memory, not replicated: a new controller restarts these durations, never shortens a
    /// ladder that is replicated in [`Ladder`]).
    pub held_since: &'a BTreeMap<String, i64>,
    /// How long its usage has not been accounted live (its report chain is resyncing, or every
    /// report since was stale): `None` while it is. From [`ACCOUNTING_GRACE_MS`] on, the
    /// policy sees `attestation.failed`: an enclave whose usage cannot be verified never
    /// silently counts as compliant.
    pub accounting_broken_ms: Option<u64>,
}

/// How long broken usage accounting is tolerated (a reconnect's replay) before the policy's
/// `on attestation.failed` ladder sees it.
pub const ACCOUNTING_GRACE_MS: u64 = 5_000;

/// The outcome for one enclave.
#[derive(Clone, Debug, PartialEq)]
pub struct Output {
    /// `Some` when anything replicated changes.
    pub enforcement: Option<Enforcement>,
    pub held_since: BTreeMap<String, i64>,
    /// The policy's re-attestation interval.
    pub reattest_every_ms: Option<f64>,
    /// The whole decision, for `tribune` to explain.
    pub decision: Decision,
}

/// What the policy reads as `host.R.utilization` and `cluster.R.utilization`, in percent:
/// how much of the host's (the cluster's) capacity its enclaves use by their verified usage.
/// Unknown (NaN: every comparison with it is false) where nothing says.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct Around {
    pub host: Utilization,
    pub cluster: Utilization,
}

/// `used` as a percentage of `capacity`, per resource; unknown (NaN) where the capacity is 0
/// (a host that declared none of it). Pure.
pub fn utilization(used: Resources, capacity: Resources) -> Utilization {
    let pct = |u: u64, c: u64| {
        if c == 0 {
            f64::NAN
        } else {
            u as f64 * 100.0 / c as f64
        }
    };
    Utilization {
        cpu: pct(used.cpu_millicores, capacity.cpu_millicores),
        memory: pct(used.memory_bytes, capacity.memory_bytes),
        egress: pct(used.egress_bits_per_sec, capacity.egress_bits_per_sec),
        ingress: pct(used.ingress_bits_per_sec, capacity.ingress_bits_per_sec),
        gpu: pct(u64::from(used.gpu_percent), u64::from(capacity.gpu_percent)),
    }
}

fn facts_for(input: &Input, around: &Around, now_ms: i64, over_limit_ms: u64) -> Facts {
    let e = input.enclave;
    let attestation = input.status.and_then(|s| s.attestation.as_ref());
    let accounting_broken = input
        .accounting_broken_ms
        .is_some_and(|ms| ms >= ACCOUNTING_GRACE_MS);
    let status = match attestation {
        Some(a) if a.trusted && !accounting_broken => AttestStatus::Trusted,
        Some(_) => AttestStatus::Failed,
        None => AttestStatus::Pending,
    };
    Facts {
        enclave: identity(e, attestation),
        minute_of_day: Some(((now_ms.rem_euclid(86_400_000)) / 60_000) as u32),
        host: around.host,
        cluster: around.cluster,
        usage: input
            .observation
            .map(|o| o.usage.clone())
            .unwrap_or_default(),
        attestation: AttestationFacts {
            status,
            debug: attestation.is_some_and(|a| a.debug),
            ..AttestationFacts::default()
        },
        events: Events {
            reattestation_failures: attestation.map_or(0, |a| a.failures),
            divergence_pct: input.observation.map_or(0.0, |o| o.divergence_pct),
        },
        msgs: input.observation.map(|o| o.msgs).unwrap_or_default(),
        over_limit_ms,
        held_ms: input
            .held_since
            .iter()
            .map(|(k, since)| (k.clone(), now_ms.saturating_sub(*since).max(0) as u64))
            .collect(),
        peers: Vec::new(),
    }
}

fn step_of(a: Action) -> Step {
    match a {
        Action::None => Step::None,
        Action::Notify => Step::Notify,
        Action::Throttle => Step::Throttle,
        Action::Suspend => Step::Suspend,
        Action::Migrate => Step::Migrate,
    }
}

fn millis(v: Option<f64>) -> u64 {
    v.filter(|x| x.is_finite() && *x > 0.0)
        .map_or(0, |x| x.round() as u64)
}

/// Invariant **lent = borrowed pool**, on one host: the borrowers share what the lenders lend,
/// less the rounding down of each borrower's share (under a millicore each); nothing is lent
/// without a borrower and nothing is borrowed that is not lent.
fn pool_balances(lent: &[u64], borrowed: &[u64], borrowers: usize) -> bool {
    let lent: u64 = lent.iter().sum();
    let borrowed: u64 = borrowed.iter().sum();
    borrowed <= lent && lent - borrowed <= borrowers as u64 && (borrowers > 0 || lent == 0)
}

fn resources(values: &[tribune_policy::Setting; 5]) -> Resources {
    Resources {
        cpu_millicores: millis(values[Resource::Cpu as usize].value),
        memory_bytes: millis(values[Resource::Memory as usize].value),
        egress_bits_per_sec: millis(values[Resource::Egress as usize].value),
        ingress_bits_per_sec: millis(values[Resource::Ingress as usize].value),
        gpu_percent: millis(values[Resource::Gpu as usize].value).min(u64::from(u32::MAX)) as u32,
    }
}

/// What put an enclave on a new step, for the ladder and the log (`POLICY on#N (line L)`,
/// `when#N`, `attest`). Only formatted when the step changes.
fn cause_of(policies: &PolicySet, decision: &Decision) -> String {
    match decision.action.origin.kind {
        SourceKind::On => {
            let policy = policies
                .policies()
                .get(decision.action.origin.policy as usize)
                .map_or("?", |p| p.name());
            format!(
                "{policy} on#{} (line {})",
                decision.action.origin.index, decision.action.origin.line
            )
        }
        SourceKind::When => format!("when#{}", decision.action.origin.index),
        SourceKind::Attest => "attest".into(),
        _ => String::new(),
    }
}

/// Per enclave, the first pass: is it over its limit, and the policy's decision.
struct Pass {
    decision: Decision,
    over_since: Option<i64>,
    /// How long it has been over its limit (the ladder clock; `None`: within it).
    over_for: Option<i64>,
    limit_cpu: Option<f64>,
    held_since: BTreeMap<String, i64>,
    /// Throttled and backed off since (None: not backed off).
    under_since: Option<i64>,
    /// A throttle in force stays: nothing released it (not backed off long enough on live
    /// evidence, no fresh usage, or a message rate still pressed against).
    hold_throttle: bool,
}

/// The ladder clock of one enclave after this decision (see the module docs).
#[derive(Debug, PartialEq)]
struct Clock {
    /// Over the limit since (the clock's start, moved on by the time it stood still).
    over_since: Option<i64>,
    /// Throttled and backed off since (the clock stands still from then on).
    under_since: Option<i64>,
    /// The clock stands still since then: over-limit time is `stopped_at - over_since`.
    stopped_at: Option<i64>,
    /// A throttle in force stays (nothing released it).
    hold: bool,
}

/// Over the limit or not, for how long, and whether a throttle in force stays. A throttled
/// enclave's readings of its own cap: at least [`RELEASE`] of it, it is at its limit (still
/// over, the clock runs); below, it has backed off (the clock stands still), and it is
/// released once backed off for [`RELEASE_AFTER_MS`] of live evidence. Silence keeps all of it.
fn over_clock(
    prev: &Ladder,
    input: &Input,
    limit_cpu: Option<f64>,
    borrowed: f64,
    cap: f64,
    now_ms: i64,
) -> Clock {
    let throttled = prev.step == Step::Throttle && cap > 0.0;
    // The clock as established: standing still since `under_since` while backed off.
    let established = Clock {
        over_since: prev.over_since_ms,
        under_since: prev.under_since_ms,
        stopped_at: prev
            .under_since_ms
            .filter(|_| throttled && prev.over_since_ms.is_some()),
        hold: cap > 0.0,
    };
    let (o, limit) = match (input.observation, limit_cpu) {
        (Some(o), Some(limit)) => (o, limit),
        // No fresh usage: keep whatever was established (never lift on silence).
        (None, Some(_)) => return established,
        (_, None) => {
            return Clock {
                over_since: None,
                stopped_at: None,
                hold: false,
                ..established
            };
        }
    };
    let over_effective = o.cpu_millicores > (limit + borrowed) * (1.0 + OVER_TOLERANCE);
    let recent = o.cpu_recent_millicores;
    if !throttled {
        // Not capped (or suspended, frozen): over when its usage is.
        let over = over_effective || (cap > 0.0 && recent >= cap * PRESSING);
        return Clock {
            over_since: over.then(|| prev.over_since_ms.unwrap_or(now_ms)),
            under_since: None,
            stopped_at: None,
            hold: false,
        };
    }
    if recent < cap * RELEASE && !over_effective {
        // Backed off (or starved by a busy host: the same reading): the clock stands still;
        // released after RELEASE_AFTER_MS of it, counted on this session's evidence only.
        let since = prev.under_since_ms.unwrap_or(now_ms);
        let live_ms = i64::try_from(o.live_ms).unwrap_or(i64::MAX);
        if now_ms.saturating_sub(since).min(live_ms) >= RELEASE_AFTER_MS {
            return Clock {
                over_since: None,
                under_since: None,
                stopped_at: None,
                hold: false,
            };
        }
        return Clock {
            over_since: prev.over_since_ms,
            under_since: Some(since),
            stopped_at: prev.over_since_ms.map(|_| since),
            hold: true,
        };
    }
    // At its limit (a cap holds usage at it, a busy host shaves a little off), or over it:
    // the clock runs on from where it stood still, or starts.
    let resumed = match (prev.over_since_ms, prev.under_since_ms) {
        (Some(over), Some(under)) => Some(over.saturating_add(now_ms.saturating_sub(under).max(0))),
        (over, _) => over,
    };
    let pressing = over_effective || recent >= cap * PRESSING;
    Clock {
        over_since: if pressing {
            Some(resumed.unwrap_or(now_ms))
        } else {
            resumed
        },
        under_since: None,
        stopped_at: None,
        hold: true,
    }
}

fn first_pass(policies: &PolicySet, input: &Input, around: &Around, now_ms: i64) -> Pass {
    let prev = input.status.map(|s| s.ladder.clone()).unwrap_or_default();
    let borrowed = input.status.map_or(0, |s| s.borrowed_cpu_millicores) as f64;
    // The limit does not depend on over_limit; evaluate once without it to learn the limit.
    // The same facts serve both evaluations (only `over_limit_ms` differs).
    let mut facts = facts_for(input, around, now_ms, 0);
    let probe = policies.evaluate(&facts);
    let limit_cpu = probe.limit_of(Resource::Cpu);
    let cap = input.allocation.map_or(0, |a| a.limits.cpu_millicores) as f64;
    let clock = over_clock(&prev, input, limit_cpu, borrowed, cap, now_ms);
    let mut hold_throttle = clock.hold;
    // A message-rate throttle holds while the enclave still presses against its rate (its
    // attempts, accepted or refused, at least PRESSING of it) or says nothing: a flooder that
    // keeps flooding stays held, one that stopped is released.
    if let Some(msgs_cap) = input.allocation.and_then(|a| a.msgs_rate_per_s) {
        hold_throttle |= input
            .observation
            .is_none_or(|o| o.msgs.rate >= msgs_cap as f64 * PRESSING);
    }
    let (over_since, under_since) = (clock.over_since, clock.under_since);
    // Over-limit time: up to now, or to when the clock stood still.
    let over_for = over_since.map(|s| clock.stopped_at.unwrap_or(now_ms).saturating_sub(s));
    let over_ms = over_for.map_or(0, |ms| ms.max(1) as u64);
    // Within the limit, the facts are the probe's exactly, so its decision is the decision.
    let decision = if over_ms == 0 {
        probe
    } else {
        facts.over_limit_ms = over_ms;
        policies.evaluate(&facts)
    };
    // Track how long each condition of the first matching policy has held.
    let mut held_since = BTreeMap::new();
    if let Some(p) = policies
        .policies()
        .iter()
        .find(|p| p.matches(&facts.enclave))
    {
        for (bit, id) in p.condition_ids().into_iter().enumerate() {
            if bit < 64 && decision.conditions_true & (1 << bit) != 0 {
                let since = input.held_since.get(id).copied().unwrap_or(now_ms);
                held_since.insert(id.to_string(), since);
            }
        }
    }
    Pass {
        decision,
        over_since,
        over_for,
        limit_cpu,
        held_since,
        under_since,
        hold_throttle,
    }
}

/// Decides for every enclave of one host. `inputs` and the result are in the same order.
/// The host's and the cluster's utilization are unknown here: [`decide_host_around`].
pub fn decide_host(policies: &PolicySet, inputs: &[Input], now_ms: i64) -> Vec<Output> {
    decide_host_around(policies, inputs, &Around::default(), now_ms)
}

/// [`decide_host`] with the host's and the cluster's utilization the policies read.
pub fn decide_host_around(
    policies: &PolicySet,
    inputs: &[Input],
    around: &Around,
    now_ms: i64,
) -> Vec<Output> {
    let passes: Vec<Pass> = inputs
        .iter()
        .map(|i| first_pass(policies, i, around, now_ms))
        .collect();

    // Steps, with suspension sticky.
    let steps: Vec<Step> = inputs
        .iter()
        .zip(&passes)
        .map(|(i, p)| {
            let prev = i.status.map_or(Step::None, |s| s.ladder.step);
            let now = step_of(p.decision.action.action);
            if prev >= Step::Suspend {
                prev.max(now)
            } else if prev == Step::Throttle && now < Step::Throttle && p.hold_throttle {
                Step::Throttle
            } else {
                now
            }
        })
        .collect();

    // Lending: idle owners' guarantee above `keep`, shared by weight among the throttled.
    let lendable: Vec<u64> = passes
        .iter()
        .zip(&steps)
        .map(|(p, s)| {
            if p.decision.reclaim.active && *s < Step::Throttle && p.over_since.is_none() {
                millis(p.decision.reclaim.lendable[Resource::Cpu as usize])
            } else {
                0
            }
        })
        .collect();
    let weight_of = |p: &Pass| {
        p.decision
            .weight
            .value
            .filter(|w| w.is_finite() && *w > 0.0)
            .unwrap_or(1.0)
    };
    let borrowers: Vec<usize> = (0..inputs.len())
        .filter(|&i| steps[i] == Step::Throttle && passes[i].limit_cpu.is_some())
        .collect();
    let pool: u64 = if borrowers.is_empty() {
        0
    } else {
        lendable.iter().sum()
    };
    let total_weight: f64 = borrowers.iter().map(|&i| weight_of(&passes[i])).sum();
    let mut borrowed = vec![0u64; inputs.len()];
    for &i in &borrowers {
        borrowed[i] = ((pool as f64) * weight_of(&passes[i]) / total_weight).floor() as u64;
    }
    let lent: Vec<u64> = lendable
        .iter()
        .map(|&l| if pool > 0 { l } else { 0 })
        .collect();
    debug_assert!(
        pool_balances(&lent, &borrowed, borrowers.len()),
        "lent = borrowed pool: lent {lent:?}, borrowed {borrowed:?}, {} borrowers",
        borrowers.len()
    );

    inputs
        .iter()
        .zip(passes)
        .enumerate()
        .map(|(i, (input, pass))| {
            let step = steps[i];
            let d = &pass.decision;
            let mut limits = resources(&d.limit);
            let guaranteed = resources(&d.guarantee);
            let effective_limit = pass.limit_cpu.map(|l| millis(Some(l)) + borrowed[i]);
            limits.cpu_millicores = if step >= Step::Throttle {
                effective_limit.unwrap_or(0)
            } else {
                0
            };
            // The message rate a rule set (`msgs.rate = N`), or the one already in force while
            // the throttle holds; none below Throttle.
            let msgs_rate_per_s = if step >= Step::Throttle {
                d.msgs_rate
                    .value
                    .filter(|v| v.is_finite() && *v >= 1.0)
                    .map(|v| v.round() as u64)
                    .or(input.allocation.and_then(|a| a.msgs_rate_per_s))
            } else {
                None
            };
            let allocation = Allocation {
                enclave: input.enclave.id.clone(),
                limits,
                guaranteed,
                weight: weight_of(&pass).round().clamp(1.0, 256.0) as u32,
                suspended: step >= Step::Suspend,
                msgs_rate_per_s,
            };
            let state = if step >= Step::Suspend {
                EnclaveState::Suspended
            } else if step == Step::Throttle {
                EnclaveState::Throttled
            } else {
                EnclaveState::Running
            };
            let prev = input.status.map(|s| s.ladder.clone()).unwrap_or_default();
            let ladder = Ladder {
                step,
                over_since_ms: pass.over_since,
                under_since_ms: if step == Step::Throttle {
                    pass.under_since
                } else {
                    None
                },
                cause: if step == prev.step && step != Step::None {
                    prev.cause.clone()
                } else if step == Step::None {
                    String::new()
                } else {
                    cause_of(policies, &pass.decision)
                },
                since_ms: if step == prev.step {
                    prev.since_ms
                } else {
                    now_ms
                },
            };
            let prev_borrowed = input.status.map_or(0, |s| s.borrowed_cpu_millicores);
            let prev_lent = input.status.map_or(0, |s| s.lent_cpu_millicores);

            let mut log = Vec::new();
            let usage = input
                .observation
                .map(|o| (o.cpu_millicores, o.seq, o.window_end_ms));
            if pass.over_since.is_some() && prev.over_since_ms.is_none() {
                log.push(LogDetail::Violation(ViolationDetail::OverLimit(
                    OverLimit {
                        // Whole millicores (`as` saturates; usage is never negative).
                        cpu_millicores: usage.map(|u| u.0.max(0.0).round() as u64),
                        limit_cpu_millicores: effective_limit,
                        seq: usage.map(|u| u.1),
                        window_end_ms: usage.map(|u| u.2),
                    },
                )));
            }
            if d.attestation.violation.is_some() && step != prev.step {
                log.push(LogDetail::Violation(ViolationDetail::AttestationFailed(
                    AttestationFailed {
                        violation: d.attestation.violation,
                    },
                )));
            }
            if step != prev.step {
                log.push(LogDetail::Action(ActionDetail::Ladder(LadderAction {
                    action: step,
                    from: prev.step,
                    cause: ladder.cause.clone(),
                    cpu_cap_millicores: allocation.limits.cpu_millicores,
                    suspended: allocation.suspended,
                    over_limit_ms: pass.over_for,
                })));
            }
            if borrowed[i] != prev_borrowed {
                log.push(LogDetail::Action(ActionDetail::Borrow(BorrowAction {
                    action: if borrowed[i] > prev_borrowed {
                        BorrowMove::Borrow
                    } else {
                        BorrowMove::Return
                    },
                    borrowed_cpu_millicores: borrowed[i],
                    was: prev_borrowed,
                    cpu_cap_millicores: allocation.limits.cpu_millicores,
                })));
            }
            if lent[i] != prev_lent {
                log.push(LogDetail::Action(ActionDetail::Lend(LendAction {
                    action: if lent[i] > prev_lent {
                        LendMove::Lend
                    } else {
                        LendMove::Reclaim
                    },
                    lent_cpu_millicores: lent[i],
                    was: prev_lent,
                })));
            }

            let changed = input.allocation != Some(&allocation)
                || ladder.step != prev.step
                || ladder.over_since_ms != prev.over_since_ms
                || ladder.under_since_ms != prev.under_since_ms
                || borrowed[i] != prev_borrowed
                || lent[i] != prev_lent
                || (input.enclave.state != state && input.enclave.state != EnclaveState::Untrusted);
            let enforcement = changed.then(|| Enforcement {
                enclave: input.enclave.id.clone(),
                epoch: input.enclave.placement.as_ref().map_or(0, |p| p.epoch),
                allocation,
                state,
                ladder,
                from: Some(prev),
                borrowed_cpu_millicores: borrowed[i],
                lent_cpu_millicores: lent[i],
                log,
            });
            Output {
                enforcement,
                held_since: pass.held_since,
                reattest_every_ms: d.attestation.reattest_every_ms,
                decision: pass.decision,
            }
        })
        .collect()
}

/// The limits the policies give an enclave (the static `limit` block and any `when` that holds
/// on its identity alone): the "limits" line of a policy plan.
pub fn limits(
    policies: &PolicySet,
    enclave: &Enclave,
    status: Option<&EnclaveStatus>,
) -> Resources {
    let empty = BTreeMap::new();
    let input = Input {
        enclave,
        status,
        allocation: None,
        observation: None,
        held_since: &empty,
        accounting_broken_ms: None,
    };
    resources(
        &policies
            .evaluate(&facts_for(&input, &Around::default(), 0, 0))
            .limit,
    )
}

#[cfg(test)]
mod tests;
