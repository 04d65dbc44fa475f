//! The simulated world: controllers sharing one committed state, agents with their enclaves,
//! and the network between them. Each [`World::step`] is [`STEP_MS`] of simulated time:
//! faults, the agents' report windows, deliveries, the sessions' ticks, then the checks.
//!
//! Tribune's cores are called as they are; what is written here is the glue the async shells
//! hold (`attest/session.rs`, `host-agent/src/link.rs`): when to flush, decide and push a plan,
//! what to send on a new stream. Where the glue copies a shell rather than calling it, it says
//! so.

use std::time::{Duration, Instant};

use ed25519_dalek::VerifyingKey;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use tribune_agent::link::{Buffered, Replay, plan_from_pb};
use tribune_agent::plan::{Admit, Plan, RunState, admit};
use tribune_attest::session::{ControllerExchange, EnclaveKeys};
use tribune_attest::usage::{EnclaveId, Freshness, Producer, UsageSample};
use tribune_controller::attest::clock::SessionClock;
use tribune_controller::attest::decide;
use tribune_controller::attest::ledger::Ledger;
use tribune_controller::attest::session::confirmed_for;
use tribune_controller::state::{
    Attestation, Command, Enclave, EnclaveState, Expect, Placement, State, TeeKind, VerdictCmd,
};
use tribune_policy::{Agg, PolicySet, Resource};
use tribune_proto::v1 as pb;

use super::check::{Checker, HostView, Violation};

mod session;
use super::{Bugs, STEP_MS, Stats};

/// The policy every simulated enclave runs under: a 200m CPU limit, throttled at once and
/// suspended after 15 s over it.
pub const POLICY: &str = r#"
policy "sim" {
  match tenant == "sim"
  guarantee { cpu = 100m }
  limit { cpu = 200m }
  on over_limit { throttle now; suspend after 15s }
}
"#;
/// The policy's CPU limit, millicores (the checker's ground truth).
pub const LIMIT_MC: u64 = 200;

const CONTROLLERS: usize = 3;
const HOSTS: usize = 2;
const ENCLAVES_PER_HOST: usize = 2;
/// Reports per checkpoint (the agent's `CHECKPOINT_EVERY`).
const CHECKPOINT_EVERY: u32 = 10;
/// How often a session flushes digests and decides on silence (the session's `DIGEST_FLUSH`).
const FLUSH_MS: u64 = 500;
/// How far a controller's wall clock may be from the agents' (±): inside the 2 s the
/// freshness rules tolerate for a report "in the future", less a report window.
const CLOCK_OFFSET_MAX_MS: i64 = 1_800;
/// Simulated wall time at step 0 (Unix ms).
const T0_MS: u64 = 1_800_000_000_000;
/// How long a session's read barrier waits for its controller to catch up before the stream
/// ends (the controller's request timeout, 3 s).
const BARRIER_STEPS: u64 = 30;
/// Mixed into the seed for `World::lag_rng`.
const LAG_SEED: u64 = 0x6c61_675f_7365_6564;

/// One message in flight on one stream.
struct Msg {
    at_ms: u64,
    /// Tie-break among messages due at the same time: send order (reordering changes `at_ms`).
    order: u64,
    agent: usize,
    stream: u64,
    body: Body,
}

#[derive(Clone)]
enum Body {
    ToController(pb::agent_message::Body),
    ToAgent(pb::controller_message::Body),
}

struct Controller {
    up: bool,
    /// Its wall clock minus simulated time (a clock step moves it).
    offset_ms: i64,
    /// Behind the log: the state it had applied when it fell behind, and the step at which it
    /// catches up. Its sessions decide and push plans from that state (a follower cut off from
    /// the leader, or slow to apply, whose read barrier failed).
    behind: Option<(State, u64)>,
}

/// One stream's controller side: the real ledger and the session's memory.
struct Session {
    controller: usize,
    stream: u64,
    ledger: Ledger,
    sent_plan: Option<u64>,
    last_flush_ms: u64,
    /// The session clock (`attest::clock`): the controller's wall time when the stream began,
    /// advanced by the (simulated) monotonic clock; freshness reads it.
    clock: SessionClock,
    /// The session's `caught_up`: a read barrier passed (its controller was not behind) since
    /// the stream began or since a write of its was not applied locally in time. Until then
    /// it neither decides nor pushes a plan; the step its barrier began waiting at.
    caught_up: bool,
    barrier_since: Option<u64>,
}

struct SimEnclave {
    name: String,
    keys_ed25519: [u8; 32],
    producer: Producer,
    /// CPU it would use uncapped, millicores (ground truth, changes by phase).
    demand_mc: u64,
    /// The last seq its producer spent (the producer starts at 1 and spends one per window).
    seq: u64,
}

struct Agent {
    host: String,
    up: bool,
    /// Partitioned from every controller until this step.
    cut_until: u64,
    enclaves: Vec<SimEnclave>,
    replay: Replay,
    applied: Option<Plan>,
    /// The plan on disk (`store.save`), what a restarted agent enforces.
    stored: Option<Plan>,
    /// The open stream: (controller, stream id).
    stream: Option<(usize, u64)>,
}

pub struct World {
    rng: ChaCha8Rng,
    /// Draws for controllers falling behind the log, apart from `rng` so that seeds whose
    /// controllers never fall behind run exactly as they did before this fault existed.
    lag_rng: ChaCha8Rng,
    /// Per step, the chance that an up-to-date controller falls behind (per seed).
    lag: f64,
    bugs: Bugs,
    step: u64,
    state: State,
    leader: Option<usize>,
    controllers: Vec<Controller>,
    agents: Vec<Agent>,
    sessions: Vec<Option<Session>>,
    net: Vec<Msg>,
    next_stream: u64,
    next_order: u64,
    /// Per-seed fault rates (per message / per step); `lossy`: within a stream too.
    lossy: bool,
    loss: f64,
    dup: f64,
    reorder: f64,
    crash: f64,
    checker: Checker,
    /// The first violation found inside a step (a write's check).
    violation: Option<Violation>,
    /// The compiled policies (the simulation never changes them) and the windows they read.
    policies: PolicySet,
    wanted: Vec<(Resource, Agg, u32)>,
    stats: Stats,
    /// The base of the simulated monotonic clock.
    base: Instant,
    /// Debugging a seed: keep what the ledger refused.
    pub trace: bool,
    pub log: Vec<String>,
}

fn seed32(rng: &mut ChaCha8Rng) -> [u8; 32] {
    let mut b = [0u8; 32];
    rng.fill(&mut b);
    b
}

fn compile(state: &State) -> (PolicySet, Vec<(Resource, Agg, u32)>) {
    let (set, _) = decide::compile(&state.policies);
    let wanted = set
        .policies()
        .iter()
        .flat_map(|p| p.usage_windows())
        .collect();
    (set, wanted)
}

impl World {
    pub fn new(seed: u64, bugs: Bugs) -> World {
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        let mut state = State::default();
        state.apply(Command::PutPolicy {
            name: "sim".into(),
            source: POLICY.into(),
            expect: Expect::Any,
            actor: "sim".into(),
            at_ms: T0_MS as i64,
        });
        let mut agents = Vec::new();
        for h in 0..HOSTS {
            let host = format!("h{h}");
            let mut enclaves = Vec::new();
            let mut verdicts = Vec::new();
            for i in 0..ENCLAVES_PER_HOST {
                let name = format!("e{h}-{i}");
                // Seeds whose exchange has no session key (a low-order point, never in
                // practice) are drawn again; the first session key is replaced at the first
                // stream's re-key.
                let (producer, ed, x) = loop {
                    let keys = EnclaveKeys::from_seeds(seed32(&mut rng), seed32(&mut rng));
                    let (ed, x) = (keys.ed25519_public(), keys.x25519_public());
                    let ex = ControllerExchange::from_parts(seed32(&mut rng), seed32(&mut rng));
                    if let Ok(p) = Producer::new(
                        EnclaveId::from_name(&name),
                        keys,
                        ex.nonce(),
                        &ex.eph_public(),
                        CHECKPOINT_EVERY,
                    ) {
                        break (p, ed, x);
                    }
                };
                state.apply(Command::PutEnclave {
                    enclave: Enclave {
                        id: name.clone(),
                        tenant: "sim".into(),
                        labels: Default::default(),
                        tee: TeeKind::Sim,
                        expected_measurements: vec![],
                        requested: Default::default(),
                        priority: 0,
                        placement: Some(Placement {
                            host: host.clone(),
                            epoch: 1,
                        }),
                        state: EnclaveState::Pending,
                        launch: None,
                        scheduling: Default::default(),
                        version: 0,
                    },
                    expect: Expect::Any,
                    actor: "sim".into(),
                    at_ms: T0_MS as i64,
                });
                verdicts.push(VerdictCmd {
                    enclave: name.clone(),
                    attestation: Attestation {
                        trusted: true,
                        host: host.clone(),
                        tee: Some(TeeKind::Sim),
                        ed25519_pub: hex::encode(ed),
                        x25519_pub: hex::encode(x),
                        verified_at_ms: T0_MS as i64,
                        ..Attestation::default()
                    },
                });
                enclaves.push(SimEnclave {
                    name,
                    keys_ed25519: ed,
                    producer,
                    demand_mc: 100,
                    seq: 0,
                });
            }
            state.apply(Command::Verdicts {
                host: host.clone(),
                verdicts,
                at_ms: T0_MS as i64,
            });
            agents.push(Agent {
                host,
                up: true,
                cut_until: 0,
                enclaves,
                replay: Replay::default(),
                applied: None,
                stored: None,
                stream: None,
            });
        }
        let controllers = (0..CONTROLLERS)
            .map(|_| Controller {
                up: true,
                behind: None,
                offset_ms: rng.random_range(-500..=500),
            })
            .collect();
        // Fault rates differ per seed. Half the seeds keep what the transport (one HTTP/2
        // stream over TCP) guarantees: per stream in order, no loss, no duplicate, so the only
        // loss is a stream breaking with messages in flight. The other half lose, duplicate
        // and reorder single messages within a stream, an adversary beyond the transport:
        // there the safety invariants must hold, the enforcement budget is not promised.
        let lossy = rng.random_bool(0.5);
        let (loss, dup, reorder) = if lossy {
            (
                [0.01, 0.05, 0.15][rng.random_range(0..3)],
                [0.0, 0.01, 0.05][rng.random_range(0..3)],
                [0.0, 0.02, 0.1][rng.random_range(0..3)],
            )
        } else {
            (0.0, 0.0, 0.0)
        };
        let crash = [0.0, 0.002, 0.01][rng.random_range(0..3)];
        let checker = Checker::new(HOSTS);
        let (policies, wanted) = compile(&state);
        let mut lag_rng = ChaCha8Rng::seed_from_u64(seed ^ LAG_SEED);
        let lag = [0.0, 0.005, 0.02][lag_rng.random_range(0..3)];
        World {
            rng,
            lag_rng,
            lag,
            bugs,
            step: 0,
            state,
            leader: Some(0),
            controllers,
            sessions: (0..HOSTS).map(|_| None).collect(),
            agents,
            net: Vec::new(),
            next_stream: 1,
            next_order: 0,
            lossy,
            loss,
            dup,
            reorder,
            crash,
            checker,
            violation: None,
            policies,
            wanted,
            stats: Stats::default(),
            base: Instant::now(),
            trace: false,
            log: Vec::new(),
        }
    }

    pub fn stats(&self) -> &Stats {
        &self.stats
    }

    fn now_ms(&self) -> u64 {
        T0_MS + self.step * STEP_MS
    }

    /// The simulated monotonic clock: a fixed base plus simulated time (only differences of
    /// instants are ever read, so the base does not change a run).
    fn instant(&self) -> Instant {
        self.base + Duration::from_millis(self.step * STEP_MS)
    }

    /// The state controller `c` has applied: the committed one, or the one it fell behind at.
    pub(super) fn view(&self, c: usize) -> &State {
        self.controllers[c]
            .behind
            .as_ref()
            .map_or(&self.state, |(s, _)| s)
    }

    fn wall_ms(&self, controller: usize) -> i64 {
        self.now_ms() as i64 + self.controllers[controller].offset_ms
    }

    /// One step; `Err` on the first broken invariant.
    pub fn step(&mut self) -> Result<(), Violation> {
        self.faults();
        self.demands();
        self.connect();
        for a in 0..self.agents.len() {
            self.emit(a);
        }
        self.deliver();
        for h in 0..self.sessions.len() {
            self.tick(h);
        }
        self.step += 1;
        self.stats.steps += 1;
        if let Some(v) = self.violation.take() {
            return Err(v);
        }
        let has_leader = self.leader.is_some();
        let hosts: Vec<HostView> = self
            .agents
            .iter()
            .map(|a| HostView {
                host: &a.host,
                applied: a.applied.as_ref(),
                enclaves: a
                    .enclaves
                    .iter()
                    .map(|e| (e.name.as_str(), e.demand_mc))
                    .collect(),
                stream_up: a.stream.is_some(),
                // To a controller that has applied the log: one behind it is cut off from the
                // majority as far as this host is concerned (its stream ends within
                // `BARRIER_STEPS` and the agent goes elsewhere).
                connected: a
                    .stream
                    .is_some_and(|(c, _)| self.controllers[c].behind.is_none())
                    && has_leader
                    && (!self.lossy || self.bugs.budget_when_lossy),
            })
            .collect();
        self.stats.checks +=
            self.checker
                .check(self.now_ms(), &self.state, &hosts, &mut self.stats)?;
        Ok(())
    }

    // ----- faults --------------------------------------------------------------------------

    fn faults(&mut self) {
        let p = self.crash;
        // A controller crashes (its sessions and memory go) or restarts.
        for c in 0..self.controllers.len() {
            if self.controllers[c].up && self.rng.random_bool(p) {
                self.controllers[c].up = false;
                self.stats.faults.controller_crashes += 1;
                if self.leader == Some(c) {
                    self.leader = None;
                }
                for h in 0..self.sessions.len() {
                    if self.sessions[h].as_ref().is_some_and(|s| s.controller == c) {
                        self.drop_stream(h);
                    }
                }
            } else if !self.controllers[c].up && self.rng.random_bool(0.05) {
                self.controllers[c].up = true;
                // A restarted node's clock may be anywhere within ±1 s.
                self.controllers[c].offset_ms = self.rng.random_range(-1000..=1000);
                self.stats.faults.controller_restarts += 1;
            }
        }
        // A controller falls behind the log for 0.5-5 s (its link to the leader stalls, its
        // read barrier fails), or catches up.
        for c in 0..self.controllers.len() {
            let step = self.step;
            match &self.controllers[c].behind {
                Some((_, until)) if *until <= step => self.controllers[c].behind = None,
                Some(_) => {}
                None if self.controllers[c].up && self.lag_rng.random_bool(self.lag) => {
                    let until = step + self.lag_rng.random_range(5..50);
                    self.controllers[c].behind = Some((self.state.clone(), until));
                    self.stats.faults.lags += 1;
                }
                None => {}
            }
        }
        // Elections take a few steps; a leader may be deposed while healthy.
        let up: Vec<usize> = (0..self.controllers.len())
            .filter(|&c| self.controllers[c].up)
            .collect();
        if self.leader.is_none() && !up.is_empty() && self.rng.random_bool(0.3) {
            self.leader = Some(up[self.rng.random_range(0..up.len())]);
        } else if self.leader.is_some() && up.len() > 1 && self.rng.random_bool(p) {
            let others: Vec<usize> = up.into_iter().filter(|&c| Some(c) != self.leader).collect();
            self.leader = Some(others[self.rng.random_range(0..others.len())]);
            self.stats.faults.leader_changes += 1;
        }
        // A controller's wall clock steps (NTP, an operator's `date -s`), up to ±1.5 s.
        if self.rng.random_bool(p) {
            let c = self.rng.random_range(0..self.controllers.len());
            let stepped = self.controllers[c].offset_ms + self.rng.random_range(-1500..=1500);
            // Within the freshness tolerance unless the seed is told otherwise (the clock
            // finding in chaos/README.md).
            self.controllers[c].offset_ms = if self.bugs.clocks_beyond_tolerance {
                stepped
            } else {
                stepped.clamp(-CLOCK_OFFSET_MAX_MS, CLOCK_OFFSET_MAX_MS)
            };
            self.stats.faults.clock_steps += 1;
        }
        for a in 0..self.agents.len() {
            // An agent crashes: its stream and unacknowledged reports go; it comes back at
            // once enforcing the plan on disk. The enclaves (and their TEE keys) outlive it.
            if self.agents[a].up && self.rng.random_bool(p) {
                self.stats.faults.agent_crashes += 1;
                self.drop_stream(a);
                let ag = &mut self.agents[a];
                ag.replay = Replay::default();
                ag.applied = ag.stored.clone();
            }
            // The stream breaks (a TCP reset, a proxy restart): what is in flight is lost and
            // the agent reconnects, to any controller.
            if self.agents[a].stream.is_some() && self.rng.random_bool(p * 2.0) {
                self.stats.faults.stream_resets += 1;
                self.drop_stream(a);
            }
            // The host is cut off from every controller for 1–10 s.
            if self.rng.random_bool(p) {
                self.stats.faults.partitions += 1;
                self.agents[a].cut_until = self.step + self.rng.random_range(10..100);
                self.drop_stream(a);
            }
        }
    }

    /// Enclaves change phase now and then: compliant (50–190m) or greedy (300–900m).
    fn demands(&mut self) {
        for a in 0..self.agents.len() {
            for e in 0..self.agents[a].enclaves.len() {
                if self.step == 0 || self.rng.random_bool(0.01) {
                    let greedy = self.rng.random_bool(0.4);
                    self.agents[a].enclaves[e].demand_mc = if greedy {
                        self.rng.random_range(300..=900)
                    } else {
                        self.rng.random_range(50..=190)
                    };
                }
            }
        }
    }

    /// The stream of agent `a` broke: both ends forget it (the agent's link keeps its replay
    /// buffer and its applied plan: an agent cut off keeps enforcing its last plan).
    fn drop_stream(&mut self, a: usize) {
        self.agents[a].stream = None;
        self.sessions[a] = None;
        if self.bugs.lift_when_cut_off
            && let Some(p) = self.agents[a].applied.as_mut()
        {
            for e in p.enclaves.values_mut() {
                e.limits.cpu_millicores = None;
            }
        }
    }

    // ----- streams -------------------------------------------------------------------------

    /// Agents without a stream connect to a live controller (the link tries them in turn; a
    /// random one here). The handshake (challenge, re-key, evidence) is taken as instant.
    fn connect(&mut self) {
        let freshness = Freshness::default();
        for a in 0..self.agents.len() {
            let ag = &self.agents[a];
            if ag.stream.is_some() || !ag.up || self.step < ag.cut_until {
                continue;
            }
            let up: Vec<usize> = (0..self.controllers.len())
                .filter(|&c| self.controllers[c].up)
                .collect();
            if up.is_empty() {
                continue;
            }
            let c = up[self.rng.random_range(0..up.len())];
            let stream = self.next_stream;
            self.next_stream += 1;
            let ex = ControllerExchange::from_parts(seed32(&mut self.rng), seed32(&mut self.rng));
            let mut ledger = Ledger::new(&self.agents[a].host, freshness);
            let keep = self.wanted.iter().map(|w| w.2).max().unwrap_or(1);
            let ag = &mut self.agents[a];
            for e in &mut ag.enclaves {
                if e.producer.rekey(ex.nonce(), &ex.eph_public()).is_err() {
                    continue;
                }
                let keys = e.producer.keys();
                let rd = keys.report_data(ex.nonce());
                let id = EnclaveId::from_name(&e.name);
                let Ok(bound) = ex.bind(id, e.keys_ed25519, keys.x25519_public(), &rd) else {
                    continue;
                };
                let Ok(vk) = VerifyingKey::from_bytes(&e.keys_ed25519) else {
                    continue;
                };
                let confirmed = confirmed_for(&self.state, &e.name, &bound);
                ledger.track(e.name.clone(), bound, vk, confirmed, keep, Instant::now());
                // The link closes every open span, so all buffered reports are covered.
                if let Some(cp) = e.producer.checkpoint_now() {
                    ag.replay.push_checkpoint(&e.name, cp);
                }
            }
            ag.stream = Some((c, stream));
            let batch = ag.replay.batch();
            let wall_ns = u64::try_from(self.wall_ms(c)).unwrap_or(0) * 1_000_000;
            self.sessions[a] = Some(Session {
                controller: c,
                stream,
                ledger,
                sent_plan: None,
                last_flush_ms: self.now_ms(),
                clock: SessionClock::anchored(wall_ns, self.instant()),
                caught_up: false,
                barrier_since: None,
            });
            if let Some(b) = batch {
                self.send(
                    a,
                    stream,
                    Body::ToController(pb::agent_message::Body::Replay(b)),
                );
            }
        }
    }

    /// Queues a message with the seed's loss, duplication and reordering.
    fn send(&mut self, agent: usize, stream: u64, body: Body) {
        self.stats.messages += 1;
        if self.rng.random_bool(self.loss) {
            self.stats.faults.lost += 1;
            return;
        }
        let copies = if self.rng.random_bool(self.dup) {
            self.stats.faults.duplicated += 1;
            2
        } else {
            1
        };
        for _ in 0..copies {
            // Normally next step; a reordered message is held 2–5 steps.
            let delay = if self.rng.random_bool(self.reorder) {
                self.stats.faults.reordered += 1;
                self.rng.random_range(2..=5)
            } else {
                1
            };
            self.next_order += 1;
            self.net.push(Msg {
                at_ms: self.now_ms() + delay * STEP_MS,
                order: self.next_order,
                agent,
                stream,
                body: body.clone(),
            });
        }
    }

    fn deliver(&mut self) {
        let now = self.now_ms();
        let mut due: Vec<Msg> = Vec::new();
        let mut rest = Vec::with_capacity(self.net.len());
        for m in self.net.drain(..) {
            if m.at_ms <= now {
                due.push(m);
            } else {
                rest.push(m);
            }
        }
        self.net = rest;
        due.sort_by_key(|m| (m.at_ms, m.order));
        for m in due {
            // A message of a stream that broke is gone with it.
            if self.agents[m.agent].stream.map(|s| s.1) != Some(m.stream) {
                continue;
            }
            if self.trace {
                let what = match &m.body {
                    Body::ToController(b) => format!("{b:?}").chars().take(60).collect::<String>(),
                    Body::ToAgent(b) => format!("{b:?}").chars().take(60).collect::<String>(),
                };
                self.log
                    .push(format!("deliver a{} s{} {what}", m.agent, m.stream));
            }
            match m.body {
                Body::ToController(b) => self.on_agent_message(m.agent, b),
                Body::ToAgent(b) => self.on_controller_message(m.agent, b),
            }
        }
    }

    // ----- agent side ----------------------------------------------------------------------

    /// Each enclave's report for the window that just ended, sealed by its producer and
    /// buffered (the link's `seal`); sent live when a stream is up.
    fn emit(&mut self, a: usize) {
        let now = self.now_ms();
        let ag = &mut self.agents[a];
        if !ag.up {
            return;
        }
        let mut reports = Vec::new();
        let mut checkpoints = Vec::new();
        for e in &mut ag.enclaves {
            let planned = ag.applied.as_ref().and_then(|p| p.enclaves.get(&e.name));
            let used = match planned {
                Some(p) if p.state == RunState::Suspend => 0,
                Some(p) => p
                    .limits
                    .cpu_millicores
                    .map_or(e.demand_mc, |c| c.min(e.demand_mc)),
                None => e.demand_mc,
            };
            let window_ns = STEP_MS * 1_000_000;
            let emitted = e.producer.emit(&UsageSample {
                window_start_ns: (now - STEP_MS) * 1_000_000,
                window_len_ns: window_ns,
                cpu_ns: used * window_ns / 1000,
                mem_bytes: 64 << 20,
                ..UsageSample::default()
            });
            let msg = pb::UsageReport::sealed(&e.name, &emitted.report, Vec::new());
            e.seq += 1;
            ag.replay.push(
                &e.name,
                Buffered {
                    seq: e.seq,
                    msg: msg.clone(),
                },
            );
            reports.push(msg);
            if let Some(cp) = emitted.checkpoint {
                checkpoints.push(pb::Checkpoint::of(&e.name, &cp));
                ag.replay.push_checkpoint(&e.name, cp);
            }
        }
        let Some((_, stream)) = ag.stream else {
            return;
        };
        self.send(
            a,
            stream,
            Body::ToController(pb::agent_message::Body::Usage(pb::UsageBatch { reports })),
        );
        if !checkpoints.is_empty() {
            self.send(
                a,
                stream,
                Body::ToController(pb::agent_message::Body::Checkpoints(pb::CheckpointBatch {
                    checkpoints,
                })),
            );
        }
    }

    fn on_controller_message(&mut self, a: usize, b: pb::controller_message::Body) {
        use pb::controller_message::Body as B;
        let ag = &mut self.agents[a];
        match b {
            B::Plan(p) => {
                let Ok(plan) = plan_from_pb(&p) else {
                    return;
                };
                let ok = self.bugs.apply_any_version
                    || matches!(admit(ag.applied.as_ref(), &plan), Ok(Admit::Apply));
                if ok {
                    ag.stored = Some(plan.clone());
                    ag.applied = Some(plan);
                    self.stats.plans_applied += 1;
                }
            }
            B::UsageAcks(acks) => {
                for k in acks.acks {
                    ag.replay.ack(&k.enclave_id, k.confirmed_seq);
                }
            }
            _ => {}
        }
    }
}
