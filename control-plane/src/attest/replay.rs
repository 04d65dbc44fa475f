//! The policy planner's replay (`tribune policy plan`, `POST /v1/policies/plan`): recorded
//! usage windows run, host by host, through [`decide_host`] — the live loop's decision — and
//! [`settle`] — the state machine's rule for applying a decision — under another policy set,
//! and compared window by window with the enforcement the log recorded.
//!
//! Pure, like [`super::decide`]: histories and policies in, comparisons out; no clock (time is
//! each record's `at_ms`), no I/O, no lock. There is no second copy of any decision here: what
//! a window does to an enclave is decided by `decide_host` and applied by `settle`, the same
//! two functions the live loop and every replica run.
//!
//! What a replay can and cannot know (`docs/policy.md`, "Policy plan"):
//! - a window is one usage digest: one checkpointed span (1 s by default) with its average CPU,
//!   peak memory and bytes sent and received; its time is the log entry's `at_ms` (when the
//!   span was committed). The live loop decides on every 100 ms report; the replay decides once
//!   per window, so ladder timings are exact to a window, not a report;
//! - recorded usage is what the enclave used under the caps actually in force: a looser policy
//!   cannot reveal demand a cap held back (no demand signal is reported);
//! - a window replayed from an agent's buffer after a controller change is accounted but, as
//!   live, never decided on;
//! - the replay starts each enclave at the step, cap and lending the log shows at `from`.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use tribune_policy::PolicySet;

use super::decide::{Input, Observation, Output, decide_host, limits};
use super::window::{Rates, WINDOW_S_MAX, Windows};
use crate::state::{
    ActionDetail, Allocation, Attestation, BorrowAction, Enclave, EnclaveState, EnclaveStatus,
    Ladder, LadderAction, LendAction, LogDetail, Resources, Step, settle,
};

/// Ladder actions listed per enclave and course, at most (the counts stay exact).
pub const ACTIONS_MAX: usize = 100;
/// Runs of windows listed per enclave (throttled spans, differences), at most.
pub const RUNS_MAX: usize = 100;
/// Threads one replay uses at most (hosts are replayed in parallel; fewer on fewer cores).
pub const REPLAY_THREADS_MAX: usize = 4;

/// One recorded usage window: a usage digest's summary of one checkpointed span.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Window {
    pub first_seq: u64,
    pub last_seq: u64,
    pub cpu_millicores_avg: u64,
    pub mem_bytes_max: u64,
    pub net_tx_bytes: u64,
    pub net_rx_bytes: u64,
    pub divergence_bp_max: u64,
    /// Replayed from an agent's buffer: accounted, never decided on (as live).
    pub replayed: bool,
}

/// What the log recorded about one enclave, as the replay reads it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Record {
    Window(Window),
    Verdict {
        trusted: bool,
        debug: bool,
        failures: u32,
        measurement: String,
    },
    /// A ladder action that happened (`action` entry, `ladder`).
    Ladder {
        to: Step,
        from: Step,
        cause: String,
        cpu_cap_millicores: u64,
    },
    /// What it borrowed (`action` entry, `borrow`/`return`), with its cap then.
    Borrowed {
        cpu_millicores: u64,
        cpu_cap_millicores: u64,
    },
    /// What it lent (`action` entry, `lend`/`reclaim`).
    Lent(u64),
}

/// One record with its place in the log.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Recorded {
    /// Log index: records of all enclaves are replayed in this order.
    pub index: u64,
    pub at_ms: i64,
    pub record: Record,
}

/// One enclave and what the log recorded about it, in log order: everything before `from`
/// that bears on its state then (its last verdict and ladder action, the windows its usage
/// aggregates read), and everything from `from` to `to`.
#[derive(Clone, Debug)]
pub struct History {
    /// As it is now: identity (tenant, labels, TEE) and placement (its host).
    pub enclave: Enclave,
    pub records: Vec<Recorded>,
}

/// A ladder action, recorded or planned.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct PlanAction {
    pub at_ms: i64,
    pub from: Step,
    pub to: Step,
    /// The rule that asked for it (`POLICY on#N (line L)`, `when#N`, `attest`).
    pub cause: String,
    pub cpu_cap_millicores: u64,
    /// The window it happened in (seqs of the usage reports), when one was being decided on.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub first_seq: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_seq: Option<u64>,
}

/// Consecutive windows of one enclave at one ladder step (throttled or beyond).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct StepRun {
    pub step: Step,
    pub from_ms: i64,
    pub to_ms: i64,
    pub first_seq: u64,
    pub last_seq: u64,
    pub windows: u64,
}

/// Consecutive windows where the plan and what happened differ in the same way.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Difference {
    pub actual: Step,
    pub planned: Step,
    pub from_ms: i64,
    pub to_ms: i64,
    pub first_seq: u64,
    pub last_seq: u64,
    pub windows: u64,
}

/// What happened to one enclave over the period, recorded or planned.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Course {
    /// Times it was put on each step.
    pub throttles: u32,
    pub suspensions: u32,
    pub migrations: u32,
    /// Times it came back below `throttle`.
    pub releases: u32,
    /// Windows spent throttled, and suspended or migrating.
    pub throttled_windows: u64,
    pub suspended_windows: u64,
    /// The most CPU it lent to, or borrowed from, its neighbours.
    pub lent_cpu_millicores_max: u64,
    pub borrowed_cpu_millicores_max: u64,
    /// Its runs of windows at `throttle` or beyond, in order (at most [`RUNS_MAX`]).
    pub enforced: Vec<StepRun>,
    /// Its ladder actions, in order (at most [`ACTIONS_MAX`]; `actions_omitted` more).
    pub actions: Vec<PlanAction>,
    #[serde(default)]
    pub actions_omitted: u64,
}

/// One enclave: what happened, what the new policies would have done, and where they differ.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Comparison {
    pub enclave: String,
    pub host: String,
    /// Usage windows replayed.
    pub windows: u64,
    pub actual: Course,
    pub planned: Course,
    /// The limits the stored policies give it, and the limits the planned set gives it.
    pub limits_before: Resources,
    pub limits_after: Resources,
    /// Runs of windows where the planned step is not the recorded one (at most [`RUNS_MAX`]).
    pub differences: Vec<Difference>,
    #[serde(default)]
    pub differences_omitted: u64,
    /// Anything differs: a step in some window, an action count, lending, the limits.
    pub changed: bool,
}

/// One enclave's replay state: the simulated records (evolved by `decide_host` + `settle`)
/// beside the recorded ones.
struct Sim<'a> {
    history: &'a History,
    enclave: Enclave,
    status: EnclaveStatus,
    allocation: Option<Allocation>,
    windows: Windows,
    held_since: BTreeMap<String, i64>,
    observation: Option<Observation>,
    /// The window being decided on in the current batch.
    window: Option<(u64, u64)>,
    last_window_ms: Option<i64>,
    /// Its live evidence, as the live loop's ledger counts it (`Observation::live_ms`): since
    /// when its recorded windows have followed each other by seq (a new report key, a declared
    /// gap or a replayed window starts it again), and the last one's seq.
    live: Option<(i64, u64)>,
    /// (recorded, planned) step of the previous window compared.
    previous: Option<(Step, Step)>,
    /// What the log shows in force.
    actual_step: Step,
    actual_cause: String,
    actual_cap: u64,
    actual_borrowed: u64,
    actual_lent: u64,
    out: Comparison,
}

impl Course {
    /// What `changed` compares: the counts and lending (action times and causes may differ
    /// by a window's resolution without any window's step differing).
    fn counts(&self) -> [u64; 8] {
        [
            u64::from(self.throttles),
            u64::from(self.suspensions),
            u64::from(self.migrations),
            u64::from(self.releases),
            self.throttled_windows,
            self.suspended_windows,
            self.lent_cpu_millicores_max,
            self.borrowed_cpu_millicores_max,
        ]
    }
}

fn push_action(course: &mut Course, a: PlanAction) {
    match a.to {
        Step::Throttle => course.throttles += 1,
        Step::Suspend => course.suspensions += 1,
        Step::Migrate => course.migrations += 1,
        Step::None | Step::Notify => {
            if a.from >= Step::Throttle {
                course.releases += 1;
            }
        }
    }
    if course.actions.len() < ACTIONS_MAX {
        course.actions.push(a);
    } else {
        course.actions_omitted += 1;
    }
}

/// Counts one window at `step` into a course.
/// `previous`: the step of the enclave's previous window (a run continues only through
/// consecutive windows at the same step).
fn count_window(
    course: &mut Course,
    step: Step,
    at_ms: i64,
    seqs: (u64, u64),
    previous: Option<Step>,
) {
    let contiguous = previous == Some(step);
    match step {
        Step::Throttle => course.throttled_windows += 1,
        Step::Suspend | Step::Migrate => course.suspended_windows += 1,
        Step::None | Step::Notify => return,
    }
    let listed = course.enforced.len();
    match course.enforced.last_mut() {
        Some(r) if contiguous && r.step == step => {
            r.to_ms = at_ms;
            r.last_seq = seqs.1;
            r.windows += 1;
        }
        _ if listed < RUNS_MAX => course.enforced.push(StepRun {
            step,
            from_ms: at_ms,
            to_ms: at_ms,
            first_seq: seqs.0,
            last_seq: seqs.1,
            windows: 1,
        }),
        _ => {}
    }
}

impl<'a> Sim<'a> {
    fn new(history: &'a History, keep_s: u32) -> Sim<'a> {
        let host = history
            .enclave
            .placement
            .as_ref()
            .map(|p| p.host.clone())
            .unwrap_or_default();
        let mut enclave = history.enclave.clone();
        enclave.state = EnclaveState::Pending;
        Sim {
            history,
            enclave,
            status: EnclaveStatus::default(),
            allocation: None,
            windows: Windows::new(keep_s),
            held_since: BTreeMap::new(),
            observation: None,
            window: None,
            last_window_ms: None,
            live: None,
            previous: None,
            actual_step: Step::None,
            actual_cause: String::new(),
            actual_cap: 0,
            actual_borrowed: 0,
            actual_lent: 0,
            out: Comparison {
                enclave: history.enclave.id.clone(),
                host,
                windows: 0,
                actual: Course::default(),
                planned: Course::default(),
                limits_before: Resources::default(),
                limits_after: Resources::default(),
                differences: Vec::new(),
                differences_omitted: 0,
                changed: false,
            },
        }
    }

    /// At `from`: the simulation starts where the log shows the enclave.
    fn seed(&mut self, from_ms: i64) {
        let step = self.actual_step;
        self.status.ladder = Ladder {
            step,
            over_since_ms: (step >= Step::Throttle).then_some(from_ms),
            under_since_ms: None,
            cause: self.actual_cause.clone(),
            since_ms: from_ms,
        };
        self.status.borrowed_cpu_millicores = self.actual_borrowed;
        self.status.lent_cpu_millicores = self.actual_lent;
        self.allocation = (step >= Step::Throttle).then(|| Allocation {
            enclave: self.enclave.id.clone(),
            limits: Resources {
                cpu_millicores: self.actual_cap,
                ..Resources::default()
            },
            guaranteed: Resources::default(),
            weight: 1,
            suspended: step >= Step::Suspend,
            msgs_rate_per_s: None,
        });
        if self.enclave.state != EnclaveState::Untrusted
            && self.enclave.state != EnclaveState::Pending
        {
            self.enclave.state = match step {
                Step::Suspend | Step::Migrate => EnclaveState::Suspended,
                Step::Throttle => EnclaveState::Throttled,
                Step::None | Step::Notify => EnclaveState::Running,
            };
        }
    }

    /// A verdict: the attestation the policy's facts read, and the enclave's trust state (as
    /// `State::apply_verdicts` sets it).
    fn verdict(&mut self, trusted: bool, debug: bool, failures: u32, measurement: &str) {
        self.status.attestation = Some(Attestation {
            trusted,
            debug,
            failures,
            measurement: measurement.to_string(),
            ..Attestation::default()
        });
        if !trusted {
            self.enclave.state = EnclaveState::Untrusted;
        } else if matches!(
            self.enclave.state,
            EnclaveState::Pending | EnclaveState::Untrusted
        ) {
            self.enclave.state = match self.status.ladder.step {
                Step::Suspend | Step::Migrate => EnclaveState::Suspended,
                Step::Throttle => EnclaveState::Throttled,
                Step::None | Step::Notify => EnclaveState::Running,
            };
        }
    }

    /// A recorded window: into the usage aggregates, and (from `from` on) the observation the
    /// next decision reads.
    fn window(
        &mut self,
        at_ms: i64,
        w: &Window,
        wanted: &[(tribune_policy::Resource, tribune_policy::Agg, u32)],
        deciding: bool,
    ) {
        let dt_s = self
            .last_window_ms
            .map_or(1.0, |t| ((at_ms - t) as f64 / 1000.0).max(1.0));
        self.last_window_ms = Some(at_ms);
        if w.replayed {
            // Accounted, never decided on: not live evidence either.
            self.live = None;
            return;
        }
        let live_since = match self.live {
            Some((since, last)) if last.checked_add(1) == Some(w.first_seq) => since,
            _ => at_ms,
        };
        self.live = Some((live_since, w.last_seq));
        let rates = Rates {
            cpu_millicores: w.cpu_millicores_avg as f64,
            memory_bytes: w.mem_bytes_max as f64,
            egress_bits_per_sec: w.net_tx_bytes as f64 * 8.0 / dt_s,
            ingress_bits_per_sec: w.net_rx_bytes as f64 * 8.0 / dt_s,
            gpu_percent: 0.0,
        };
        let end_ms = u64::try_from(at_ms).unwrap_or(0);
        self.windows.push(end_ms, &rates);
        if deciding {
            self.observation = Some(Observation {
                cpu_millicores: rates.cpu_millicores,
                cpu_recent_millicores: rates.cpu_millicores,
                usage: self.windows.facts(wanted),
                divergence_pct: w.divergence_bp_max as f64 / 100.0,
                seq: w.last_seq,
                window_end_ms: end_ms,
                // Digests do not carry message counts: a replay decides without them.
                msgs: Default::default(),
                live_ms: u64::try_from(at_ms - live_since).unwrap_or(0),
            });
        }
    }

    /// The window just decided on: its recorded and planned steps side by side.
    fn compare(&mut self, at_ms: i64, seqs: (u64, u64)) {
        let actual = self.actual_step;
        let planned = self.status.ladder.step;
        let previous = self.previous.replace((actual, planned));
        self.out.windows += 1;
        count_window(
            &mut self.out.actual,
            actual,
            at_ms,
            seqs,
            previous.map(|p| p.0),
        );
        count_window(
            &mut self.out.planned,
            planned,
            at_ms,
            seqs,
            previous.map(|p| p.1),
        );
        if actual == planned {
            return;
        }
        let listed = self.out.differences.len();
        match self.out.differences.last_mut() {
            Some(d) if previous == Some((actual, planned)) => {
                d.to_ms = at_ms;
                d.last_seq = seqs.1;
                d.windows += 1;
            }
            _ if listed < RUNS_MAX => self.out.differences.push(Difference {
                actual,
                planned,
                from_ms: at_ms,
                to_ms: at_ms,
                first_seq: seqs.0,
                last_seq: seqs.1,
                windows: 1,
            }),
            _ => self.out.differences_omitted += 1,
        }
    }

    /// A decision's outcome for this enclave, applied as the state machine applies it.
    fn apply(&mut self, o: Output, at_ms: i64) {
        self.held_since = o.held_since;
        let Some(enforcement) = o.enforcement else {
            return;
        };
        let (_, log) = settle(
            &mut self.enclave,
            &mut self.status,
            &mut self.allocation,
            enforcement,
        );
        for d in log {
            match d {
                LogDetail::Action(ActionDetail::Ladder(LadderAction {
                    action,
                    from,
                    cause,
                    cpu_cap_millicores,
                    ..
                })) => push_action(
                    &mut self.out.planned,
                    PlanAction {
                        at_ms,
                        from,
                        to: action,
                        cause,
                        cpu_cap_millicores,
                        first_seq: self.window.map(|w| w.0),
                        last_seq: self.window.map(|w| w.1),
                    },
                ),
                LogDetail::Action(ActionDetail::Borrow(BorrowAction {
                    borrowed_cpu_millicores,
                    ..
                })) => {
                    let c = &mut self.out.planned;
                    c.borrowed_cpu_millicores_max =
                        c.borrowed_cpu_millicores_max.max(borrowed_cpu_millicores);
                }
                LogDetail::Action(ActionDetail::Lend(LendAction {
                    lent_cpu_millicores,
                    ..
                })) => {
                    let c = &mut self.out.planned;
                    c.lent_cpu_millicores_max = c.lent_cpu_millicores_max.max(lent_cpu_millicores);
                }
                _ => {}
            }
        }
    }
}

/// Replays `histories` over `from_ms..=to_ms` under `planned` and compares with what the log
/// recorded; `stored` (the set in force now) gives only the "limits before" line. One
/// [`Comparison`] per history, in the same order. Enclaves on one host are decided together,
/// as live (lending is shared per host); hosts are independent.
pub fn replay(
    stored: &PolicySet,
    planned: &PolicySet,
    histories: &[History],
    from_ms: i64,
    to_ms: i64,
) -> Vec<Comparison> {
    let wanted: Vec<_> = planned
        .policies()
        .iter()
        .flat_map(|p| p.usage_windows())
        .collect();
    let keep_s = wanted
        .iter()
        .map(|w| w.2)
        .max()
        .unwrap_or(1)
        .min(WINDOW_S_MAX);
    let mut by_host: BTreeMap<&str, Vec<usize>> = BTreeMap::new();
    for (i, h) in histories.iter().enumerate() {
        let host = h.enclave.placement.as_ref().map_or("", |p| p.host.as_str());
        by_host.entry(host).or_default().push(i);
    }
    // Hosts are independent: they are replayed on up to `REPLAY_THREADS_MAX` threads, each
    // taking every n-th host; the result does not depend on how many.
    let hosts: Vec<&Vec<usize>> = by_host.values().collect();
    let threads = std::thread::available_parallelism()
        .map_or(1, std::num::NonZeroUsize::get)
        .clamp(1, REPLAY_THREADS_MAX)
        .min(hosts.len().max(1));
    let replayed: Vec<(usize, Vec<Comparison>)> = std::thread::scope(|scope| {
        let (hosts, wanted) = (&hosts, &wanted);
        let workers: Vec<_> = (0..threads)
            .map(|t| {
                scope.spawn(move || {
                    hosts
                        .iter()
                        .enumerate()
                        .skip(t)
                        .step_by(threads)
                        .map(|(h, members)| {
                            let c = replay_host(
                                planned, histories, members, wanted, keep_s, from_ms, to_ms,
                            );
                            (h, c)
                        })
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        workers
            .into_iter()
            .flat_map(|w| {
                w.join()
                    .unwrap_or_else(|panic| std::panic::resume_unwind(panic))
            })
            .collect()
    });
    let mut out: Vec<Option<Comparison>> = vec![None; histories.len()];
    for (h, comparisons) in replayed {
        let members = hosts[h];
        for (i, mut c) in members.iter().zip(comparisons) {
            let h = &histories[*i];
            c.limits_before = limits(stored, &h.enclave, None);
            c.limits_after = limits(planned, &h.enclave, None);
            c.changed = !c.differences.is_empty()
                || c.actual.counts() != c.planned.counts()
                || c.limits_before != c.limits_after;
            out[*i] = Some(c);
        }
    }
    out.into_iter().flatten().collect()
}

fn replay_host(
    policies: &PolicySet,
    histories: &[History],
    members: &[usize],
    wanted: &[(tribune_policy::Resource, tribune_policy::Agg, u32)],
    keep_s: u32,
    from_ms: i64,
    to_ms: i64,
) -> Vec<Comparison> {
    let mut sims: Vec<Sim> = members
        .iter()
        .map(|&i| Sim::new(&histories[i], keep_s))
        .collect();
    // Every record of the host's enclaves, in log order.
    let mut order: Vec<(u64, usize, usize)> = sims
        .iter()
        .enumerate()
        .flat_map(|(s, sim)| {
            sim.history
                .records
                .iter()
                .enumerate()
                .map(move |(r, rec)| (rec.index, s, r))
        })
        .collect();
    order.sort_unstable();
    let mut started = false;
    // The windows committed together (one digest flush: the same `at_ms`) are one decision.
    let mut batch: Vec<usize> = Vec::new();
    let mut batch_at = 0i64;
    for (_, s, r) in order {
        let rec = &sims[s].history.records[r];
        if rec.at_ms > to_ms {
            break;
        }
        let is_window_now = matches!(rec.record, Record::Window(_)) && rec.at_ms == batch_at;
        if !batch.is_empty() && !is_window_now {
            decide_batch(policies, &mut sims, &mut batch, batch_at);
        }
        if !started && rec.at_ms >= from_ms {
            started = true;
            for sim in &mut sims {
                sim.seed(from_ms);
            }
        }
        let (at_ms, record) = (rec.at_ms, &rec.record);
        let sim = &mut sims[s];
        match record {
            Record::Window(w) => {
                sim.window(at_ms, w, wanted, started);
                if started {
                    sim.window = Some((w.first_seq, w.last_seq));
                    if batch.is_empty() {
                        batch_at = at_ms;
                    }
                    batch.push(s);
                }
            }
            Record::Verdict {
                trusted,
                debug,
                failures,
                measurement,
            } => sim.verdict(*trusted, *debug, *failures, measurement),
            Record::Ladder {
                to,
                from,
                cause,
                cpu_cap_millicores,
            } => {
                sim.actual_step = *to;
                sim.actual_cause = cause.clone();
                sim.actual_cap = *cpu_cap_millicores;
                if started {
                    push_action(
                        &mut sim.out.actual,
                        PlanAction {
                            at_ms,
                            from: *from,
                            to: *to,
                            cause: cause.clone(),
                            cpu_cap_millicores: *cpu_cap_millicores,
                            first_seq: None,
                            last_seq: None,
                        },
                    );
                }
            }
            Record::Borrowed {
                cpu_millicores,
                cpu_cap_millicores,
            } => {
                sim.actual_borrowed = *cpu_millicores;
                sim.actual_cap = *cpu_cap_millicores;
                if started {
                    let c = &mut sim.out.actual;
                    c.borrowed_cpu_millicores_max =
                        c.borrowed_cpu_millicores_max.max(*cpu_millicores);
                }
            }
            Record::Lent(l) => {
                sim.actual_lent = *l;
                if started {
                    let c = &mut sim.out.actual;
                    c.lent_cpu_millicores_max = c.lent_cpu_millicores_max.max(*l);
                }
            }
        }
    }
    if !batch.is_empty() {
        decide_batch(policies, &mut sims, &mut batch, batch_at);
    }
    sims.into_iter().map(|s| s.out).collect()
}

/// One decision for the whole host at `at_ms` (the enclaves in `batch` have a fresh window;
/// the others are silent), applied, then each window in the batch compared.
fn decide_batch(policies: &PolicySet, sims: &mut [Sim], batch: &mut Vec<usize>, at_ms: i64) {
    let outputs = {
        let inputs: Vec<Input> = sims
            .iter()
            .map(|s| Input {
                enclave: &s.enclave,
                status: Some(&s.status),
                allocation: s.allocation.as_ref(),
                observation: s.observation.as_ref(),
                held_since: &s.held_since,
                accounting_broken_ms: None,
            })
            .collect();
        decide_host(policies, &inputs, at_ms)
    };
    for (sim, o) in sims.iter_mut().zip(outputs) {
        sim.apply(o, at_ms);
    }
    for &s in batch.iter() {
        let sim = &mut sims[s];
        if let Some(seqs) = sim.window {
            sim.compare(at_ms, seqs);
        }
    }
    for sim in sims.iter_mut() {
        sim.observation = None;
        sim.window = None;
    }
    batch.clear();
}

#[cfg(test)]
#[path = "replay_tests.rs"]
mod tests;
