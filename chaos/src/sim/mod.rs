//! Deterministic simulation of the attestation stream, the decision loop and plan delivery
//! (issue 19): controllers and agents as state machines over simulated time and a simulated
//! network, driven by one seeded PRNG, with the invariants checked after every step.
//!
//! A hand-rolled event loop over Tribune's pure cores, not turmoil or madsim: the parts that
//! decide anything are already pure (`Ledger`, `decide_host`, `plan_for`, `State::apply`, the
//! agent's `admit` and `plan_from_pb`, its `Replay` buffer, the enclave's `Producer`), so the
//! simulation calls them directly and owns time and delivery itself. That needs no tokio
//! runtime, no gRPC and no sockets per seed, which is what makes thousands of seeds a minute
//! possible; turmoil would run the real tonic shells but each seed would pay for HTTP/2 and
//! the shells read `Instant::now()`; madsim needs the whole workspace built against its tokio
//! replacement.
//!
//! What is simulated (not Tribune code): the network (per-stream delivery with loss,
//! duplication and reordering by random delay), Raft (one committed [`State`]; a leader is
//! needed to write; a leader change or controller crash drops that controller's sessions and
//! their memory), the enclave's usage (a demand, capped by the applied plan) and the session's
//! glue between the cores (which messages to send when; see `world.rs`).
//!
//! [`State`]: tribune_controller::state::State

mod check;
mod world;

pub use check::Violation;
pub use world::World;

/// What one run does.
#[derive(Clone, Debug)]
pub struct Config {
    pub seed: u64,
    /// Steps of [`STEP_MS`] simulated milliseconds.
    pub steps: u32,
    pub bugs: Bugs,
}

/// One step of simulated time: the agent's report window and the session's tick.
pub const STEP_MS: u64 = 100;
/// Default steps per seed (60 simulated seconds).
pub const DEFAULT_STEPS: u32 = 600;

/// Deliberate faults in the simulated agent, to show the checker catches them (tests only;
/// `tribune chaos sim` never sets them).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Bugs {
    /// The agent applies whatever plan arrives, skipping the version gate (`admit`).
    pub apply_any_version: bool,
    /// The agent lifts its CPU caps when it loses its last controller (fail-open).
    pub lift_when_cut_off: bool,
    /// The session decides and pushes plans without first catching up with the log, and its
    /// decisions carry no `from` ladder: the state applies a decision made from a state it has
    /// moved past (what thawed a suspended enclave in a chaos run).
    pub unchecked_decisions: bool,
    /// Not a bug: judge the enforcement budget on lossy seeds too, where the network loses
    /// single messages within a stream (what the resync finding in chaos/README.md is about).
    pub budget_when_lossy: bool,
    /// Not a bug: let clock steps take a controller's wall clock more than the freshness
    /// tolerance (2 s) from the agents' (the clock finding in chaos/README.md).
    pub clocks_beyond_tolerance: bool,
}

/// Faults injected, by kind.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Faults {
    pub lost: u64,
    pub duplicated: u64,
    pub reordered: u64,
    pub agent_crashes: u64,
    pub controller_crashes: u64,
    pub controller_restarts: u64,
    pub leader_changes: u64,
    pub partitions: u64,
    pub stream_resets: u64,
    pub clock_steps: u64,
    /// A controller fell behind the log (decided and pushed plans from an older state).
    pub lags: u64,
}

impl Faults {
    pub fn add(&mut self, o: &Faults) {
        self.lost += o.lost;
        self.duplicated += o.duplicated;
        self.reordered += o.reordered;
        self.agent_crashes += o.agent_crashes;
        self.controller_crashes += o.controller_crashes;
        self.controller_restarts += o.controller_restarts;
        self.leader_changes += o.leader_changes;
        self.partitions += o.partitions;
        self.stream_resets += o.stream_resets;
        self.clock_steps += o.clock_steps;
        self.lags += o.lags;
    }

    pub fn total(&self) -> u64 {
        self.lost
            + self.duplicated
            + self.reordered
            + self.agent_crashes
            + self.controller_crashes
            + self.controller_restarts
            + self.leader_changes
            + self.partitions
            + self.stream_resets
            + self.clock_steps
            + self.lags
    }
}

/// What one run did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Stats {
    pub steps: u64,
    /// Invariant evaluations (each invariant, each subject, each step).
    pub checks: u64,
    pub messages: u64,
    pub plans_applied: u64,
    pub digests_accepted: u64,
    pub throttles: u64,
    pub suspensions: u64,
    pub faults: Faults,
}

impl Stats {
    pub fn add(&mut self, o: &Stats) {
        self.steps += o.steps;
        self.checks += o.checks;
        self.messages += o.messages;
        self.plans_applied += o.plans_applied;
        self.digests_accepted += o.digests_accepted;
        self.throttles += o.throttles;
        self.suspensions += o.suspensions;
        self.faults.add(&o.faults);
    }
}

/// A run that broke an invariant, with how to reproduce it.
#[derive(Clone, Debug, thiserror::Error)]
#[error("seed {seed}: step {step}: {violation}")]
pub struct Failure {
    pub seed: u64,
    pub step: u32,
    pub violation: Violation,
}

impl Failure {
    /// One line that reruns exactly this seed.
    pub fn reproduce(&self, steps: u32) -> String {
        format!("tribune chaos sim --seed {} --steps {steps}", self.seed)
    }
}

/// Runs one seed to the end, or to the first violation.
pub fn run(cfg: &Config) -> Result<Stats, Failure> {
    let mut w = World::new(cfg.seed, cfg.bugs);
    for step in 0..cfg.steps {
        w.step().map_err(|violation| Failure {
            seed: cfg.seed,
            step,
            violation,
        })?;
    }
    Ok(w.stats().clone())
}

/// What a sweep over many seeds found.
#[derive(Debug, Default)]
pub struct Sweep {
    pub runs: u64,
    pub stats: Stats,
    /// Every failing seed, in seed order.
    pub failures: Vec<Failure>,
}

/// Runs seeds `first..first + count`, `steps` each, on `threads` threads (seeds are
/// independent, so the result does not depend on the thread count).
pub fn sweep(first: u64, count: u64, steps: u32, threads: usize) -> Sweep {
    let threads = threads.clamp(1, 64) as u64;
    let results: Vec<Sweep> = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..threads)
            .map(|t| {
                scope.spawn(move || {
                    let mut out = Sweep::default();
                    let mut seed = first + t;
                    while seed < first + count {
                        out.runs += 1;
                        let cfg = Config {
                            seed,
                            steps,
                            bugs: Bugs::default(),
                        };
                        match run(&cfg) {
                            Ok(s) => out.stats.add(&s),
                            Err(f) => out.failures.push(f),
                        }
                        seed += threads;
                    }
                    out
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().unwrap_or_default())
            .collect()
    });
    let mut all = Sweep::default();
    for r in results {
        all.runs += r.runs;
        all.stats.add(&r.stats);
        all.failures.extend(r.failures);
    }
    all.failures.sort_by_key(|f| f.seed);
    all
}
