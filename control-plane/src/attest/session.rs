//! One agent's attestation stream: the select loop and its effects (Raft writes, sends). The
//! checks live in pure modules this calls: [`super::evidence`] (verdicts), [`super::ledger`]
//! (reports, checkpoints, digests), [`super::reattest`] (schedules) and [`super::decide`]
//! (decisions).
//!
//! Order on a stream: `Hello` → `Challenge` (fresh nonce + ephemeral X25519) → evidence per
//! enclave → `ReplayBatch` (reports buffered while no controller was reachable) → usage
//! batches and checkpoints, live. Down the same stream: plans whenever the host's plan version
//! moves, `AttestNow` on the policy's schedule, `UsageAcks` once digests are committed.
//!
//! Time: freshness and schedules read the session clock ([`SessionClock`]: wall time at the
//! start, advanced monotonically), so a wall-clock step while the stream is up changes nothing.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant, UNIX_EPOCH};

use tokio::sync::mpsc;
use tokio_stream::StreamExt;
use tonic::{Status, Streaming};
use tracing::Instrument;
use tribune_attest::evidence::Verifiers;
use tribune_attest::session::ControllerExchange;
use tribune_attest::usage::{self, Confirmed};
use tribune_policy::{Agg, PolicySet, Resource};
use tribune_proto::v1 as pb;

use super::clock::SessionClock;
use super::decide::{Input, decide_host_around};
use super::ledger::{Fault, Ledger, Refusal};
use super::plan::plan_for;
use super::server::{BATCH_ITEMS_MAX, LoopConfig};
use crate::node::Controller;
use crate::state::{Allocation, Command, Enclave, EnclaveStatus, Outcome, State, Step};

/// How often committed digests are flushed and schedules checked.
const TICK: Duration = Duration::from_millis(100);
const DIGEST_FLUSH: Duration = Duration::from_millis(500);
/// The same refusal (subject, what, fault) is logged again at most this often.
const REJECT_REPEAT_MS: i64 = 60_000;
/// Refusals waiting for the next flush, at most.
const REJECTS_PENDING_MAX: usize = 1024;

/// Why a stream ended (sent to the agent as `Goodbye`).
#[derive(Debug, thiserror::Error)]
pub enum SessionError {
    #[error("agent stream: {0}")]
    Agent(Status),
    #[error("{what} batch of {n} items; at most {BATCH_ITEMS_MAX}")]
    Batch { what: &'static str, n: usize },
    #[error("{0}")]
    Protocol(&'static str),
    #[error("writing through raft: {0}")]
    Raft(String),
    #[error("the agent went away")]
    Gone,
    #[error("controller shutting down: reconnect to another controller")]
    Shutdown,
    #[error(
        "this controller cannot catch up with the log ({0}): it may be cut off from the leader; reconnect to another controller"
    )]
    Behind(String),
    #[error("verifying the stream's reports: {0}")]
    Verify(#[from] super::verify_pool::PoolError),
}

/// Wall-clock Unix milliseconds (for what is recorded, not for what is judged).
pub fn wall_ms() -> i64 {
    crate::test_fault::wall_now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

pub fn msg(body: pb::controller_message::Body) -> pb::ControllerMessage {
    pb::ControllerMessage { body: Some(body) }
}

type Tx = mpsc::Sender<Result<pb::ControllerMessage, Status>>;

/// The compiled policy set, the versions it was compiled from, and the usage windows it reads.
type CompiledPolicies = (Vec<(String, u64)>, Arc<PolicySet>, UsageWindows);
/// The usage aggregates (`usage.R.agg(W)`) the policies read.
type UsageWindows = Arc<[(Resource, Agg, u32)]>;
/// ((the host's plan version, number of enclaves), the ids of the enclaves placed on the host).
type PlacedIds = ((Option<u64>, usize), Vec<String>);

/// One enclave's replicated records, copied out from under the state lock for a decision.
type Snapshot = (Enclave, Option<EnclaveStatus>, Option<Allocation>);

mod migrate;
mod moves;
mod retry;
mod tick;
mod verdicts;

pub struct Session {
    controller: Arc<Controller>,
    config: LoopConfig,
    verifiers: Arc<Verifiers>,
    pub host: String,
    exchange: ControllerExchange,
    ledger: Ledger,
    clock: SessionClock,
    rejects: Vec<Command>,
    last_reject_ms: HashMap<(String, &'static str, Fault), i64>,
    policies: Option<CompiledPolicies>,
    reattest_every_ms: HashMap<String, f64>,
    sent_plan: Option<u64>,
    last_flush: Instant,
    /// When this session last recorded its host as seen (`Command::HostSeen`).
    seen_at: Instant,
    /// Ids of the enclaves placed on this host, in id order, as of (this host's plan version,
    /// number of enclaves): a decision looks them up instead of scanning every enclave.
    placed: Option<PlacedIds>,
    /// The traced decision that made the plan version it names (`Span::none()`-free: only set
    /// when tracing is on and the decision's trace is sampled): the push of that version
    /// continues its trace.
    plan_cause: Option<(tracing::Span, u64)>,
    /// Hex SHA-256 of the certificate the agent connected with (empty without TLS): recorded
    /// in the host record, so a certificate rotation is visible (`tribune host ls`).
    pub agent_cert_sha256: String,
    /// The agent's address as this controller sees it: the host record's `address` when it
    /// has none (a live migration's target listens there).
    pub peer_ip: Option<String>,
    /// Live-migration steps told on this stream (`session/migrate.rs`).
    live: migrate::LiveStream,
    /// What this controller has applied is known to include every committed write: a read
    /// barrier passed since the stream began, or since a write of this session's was not
    /// applied here in time. Until then the session neither decides nor pushes plans, for it
    /// may be behind what another controller decided (a suspension it has not applied yet).
    /// Atomic only because `write` takes `&self`.
    caught_up: AtomicBool,
}

impl Session {
    pub fn new(
        controller: Arc<Controller>,
        config: LoopConfig,
        verifiers: Arc<Verifiers>,
        host: String,
    ) -> Session {
        let freshness = config.freshness;
        let ledger = Ledger::new(&host, freshness);
        Session {
            controller,
            config,
            verifiers,
            host,
            exchange: ControllerExchange::new(),
            ledger,
            clock: SessionClock::start(),
            rejects: Vec::new(),
            last_reject_ms: HashMap::new(),
            policies: None,
            reattest_every_ms: HashMap::new(),
            sent_plan: None,
            last_flush: Instant::now(),
            seen_at: Instant::now(),
            placed: None,
            plan_cause: None,
            agent_cert_sha256: String::new(),
            peer_ip: None,
            live: migrate::LiveStream::default(),
            caught_up: AtomicBool::new(false),
        }
    }

    fn state(&self) -> std::sync::RwLockReadGuard<'_, State> {
        self.controller
            .state
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Hands the newest verified second of each enclave with fresh usage in this batch to the
    /// console's chart feed (never waits: `console::feed`).
    fn feed_charts(&self) {
        let feed = &self.controller.usage_feed;
        for (id, t) in self.ledger.iter() {
            if t.observation.is_none() {
                continue;
            }
            if let Some((second, rates)) = t.last_second() {
                feed.record(id, crate::console::ChartPoint::new(second, &rates));
            }
        }
    }

    /// The compiled policy set, recompiled only when a policy version changes.
    fn policy_set(&mut self) -> (Arc<PolicySet>, UsageWindows) {
        let stale_policies = {
            let st = self.state();
            // Compared in place: this runs after every usage batch and allocates nothing
            // unless a policy changed.
            let same = self.policies.as_ref().is_some_and(|(k, _, _)| {
                k.iter()
                    .map(|(n, v)| (n.as_str(), *v))
                    .eq(st.policies.values().map(|p| (p.name.as_str(), p.version)))
            });
            (!same).then(|| st.policies.clone())
        };
        if let Some(policies) = stale_policies {
            let (set, bad) = super::decide::compile(&policies);
            if !bad.is_empty() {
                tracing::warn!(?bad, "stored policies that no longer compile are ignored");
            }
            let wanted: UsageWindows = set
                .policies()
                .iter()
                .flat_map(|p| p.usage_windows())
                .collect();
            let key = policies
                .values()
                .map(|p| (p.name.clone(), p.version))
                .collect();
            self.policies = Some((key, Arc::new(set), wanted));
        }
        match &self.policies {
            Some((_, set, wanted)) => (set.clone(), wanted.clone()),
            None => (Arc::new(PolicySet::new(Vec::new())), Arc::from([])),
        }
    }

    /// Writes through Raft and returns once *this* controller has applied the write too, so
    /// what the session reads next (acks, the ladder it decides from) includes it. On a
    /// follower the leader answers as soon as it applied; without waiting here, a session
    /// would ack one flush short and propose the same transition twice.
    async fn write(&self, cmd: Command) -> Result<Outcome, SessionError> {
        let mut out = self.write_kept(vec![cmd]).await?;
        self.applied_here().await;
        out.pop()
            .ok_or_else(|| SessionError::Raft("raft answered without an outcome".into()))
    }

    async fn applied_here(&self) {
        let leads = self
            .controller
            .leader()
            .is_some_and(|(id, _)| id == self.controller.id);
        if !leads && let Err(e) = self.controller.read_barrier().await {
            tracing::debug!(host = %self.host, "waiting to apply our own write locally: {e}");
            self.caught_up.store(false, Ordering::Relaxed);
        }
    }

    /// Whether this controller has applied every committed write, so the session may decide
    /// or push a plan: passes a read barrier if none has passed since the stream began or since
    /// a write of the session's was not applied here in time (see `caught_up`).
    /// - No leader answered within the request timeout: this controller may be cut off from
    ///   the majority, so the stream ends and the agent, which keeps enforcing its plan,
    ///   reconnects to another controller.
    /// - A leader answered but this controller has not applied up to its index yet (a slow
    ///   apply under load): `false`, the session decides nothing this time and the stream stays
    ///   (overload slows the agent down, it never ends its stream).
    async fn catch_up(&self) -> Result<bool, SessionError> {
        if self.caught_up.load(Ordering::Relaxed) {
            return Ok(true);
        }
        match self.controller.read_barrier().await {
            Ok(()) => {
                self.caught_up.store(true, Ordering::Relaxed);
                Ok(true)
            }
            Err(e @ crate::error::ControllerError::NoLeader { .. }) => {
                Err(SessionError::Behind(e.to_string()))
            }
            Err(e) => {
                tracing::debug!(host = %self.host, "not deciding yet, this controller is behind the log: {e}");
                Ok(false)
            }
        }
    }

    /// Runs `f` over this stream's ledger on the verification pool ([`super::verify_pool`]):
    /// the ledger travels there and back. If it does not come back (a check panicked), the
    /// stream ends: its accounting is gone, and the agent replays on its next stream.
    async fn with_ledger<T, F>(&mut self, f: F) -> Result<T, SessionError>
    where
        T: Send + 'static,
        F: FnOnce(&mut Ledger) -> T + Send + 'static,
    {
        let fresh = Ledger::new(&self.host, self.config.freshness);
        let mut ledger = std::mem::replace(&mut self.ledger, fresh);
        let (ledger, out) = super::verify_pool::run(move || {
            let out = f(&mut ledger);
            (ledger, out)
        })
        .await?;
        self.ledger = ledger;
        Ok(out)
    }

    /// Records refused inputs in the log: the first of each kind (subject, what, fault) at once,
    /// the same kind again at most once a minute, so a misbehaving agent cannot flood the log.
    fn refuse(&mut self, refusals: Vec<Refusal>) {
        let now = self.clock.now_ms();
        let metrics = crate::metrics::get();
        for r in refusals {
            metrics.refusal(r.fault);
            tracing::warn!(host = %self.host, subject = %r.subject, what = r.what, fault = ?r.fault, "refused: {}", r.why);
            let key = (r.subject.clone(), r.what, r.fault);
            let last = self.last_reject_ms.get(&key).copied().unwrap_or(i64::MIN);
            if now.saturating_sub(last) < REJECT_REPEAT_MS
                || self.rejects.len() >= REJECTS_PENDING_MAX
            {
                continue;
            }
            if self.last_reject_ms.len() >= 4096 {
                self.last_reject_ms.clear();
            }
            self.last_reject_ms.insert(key, now);
            self.rejects.push(Command::AppendLog {
                subject: r.subject,
                detail: crate::state::Refusal {
                    host: Some(self.host.clone()),
                    ..crate::state::Refusal::new(r.what, r.why)
                }
                .into(),
                at_ms: wall_ms(),
            });
        }
    }

    pub async fn run(
        &mut self,
        hello: pb::Hello,
        mut inbound: Streaming<pb::AgentMessage>,
        tx: Tx,
    ) -> Result<(), SessionError> {
        tracing::info!(host = %self.host, enclaves = hello.enclave_ids.len(), "agent connected");
        // Recorded in the background: the stream must not wait for an election.
        let existing = self.state().hosts.get(&self.host).cloned();
        let mut host =
            super::server::host_record(existing, &self.host, &hello, &self.agent_cert_sha256);
        if host.address.is_empty()
            && let Some(ip) = &self.peer_ip
        {
            host.address = ip.clone();
        }
        let controller = self.controller.clone();
        tokio::spawn(async move {
            let at_ms = wall_ms();
            if let Err(e) = controller
                .write(vec![Command::PutHost {
                    host,
                    actor: String::new(),
                    at_ms,
                }])
                .await
            {
                tracing::warn!("recording the host: {e}");
            }
        });
        self.moves_acked(hello.applied_plan_version);
        // What this session reads (confirmed points, prior attestations, ladders) must include
        // every committed write, also on a controller restored as leader after a restart. With
        // no leader to answer, the stream ends before the challenge (`catch_up`).
        self.catch_up().await?;
        let challenge = pb::Challenge {
            nonce: self.exchange.nonce().to_vec(),
            controller_x25519: self.exchange.eph_public().to_vec(),
            controller_id: self.controller.id,
        };
        send(&tx, pb::controller_message::Body::Challenge(challenge)).await?;
        let mut applied = self.controller.subscribe_applied();
        self.push_migrations(&tx).await?;
        self.push_plan(&tx).await?;
        let mut tick = tokio::time::interval(TICK);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                m = inbound.next() => match m {
                    None => return Ok(()),
                    Some(Err(e)) => return Err(SessionError::Agent(e)),
                    Some(Ok(m)) => self.on_message(m, &tx).await?,
                },
                changed = applied.changed() => {
                    if changed.is_err() {
                        return Err(SessionError::Shutdown);
                    }
                    self.push_migrations(&tx).await?;
                    self.push_plan(&tx).await?;
                }
                _ = tick.tick() => self.on_tick(&tx).await?,
                () = self.controller.stopping.cancelled() => return Err(SessionError::Shutdown),
            }
        }
    }

    async fn push_plan(&mut self, tx: &Tx) -> Result<(), SessionError> {
        if !self.catch_up().await? {
            return Ok(());
        }
        let version = self.state().plan_versions.get(&self.host).copied();
        let Some(version) = version else {
            return Ok(());
        };
        if self.sent_plan == Some(version) {
            return Ok(());
        }
        let (set, _) = self.policy_set();
        let mut plan = plan_for(&self.state(), &set, &self.host, wall_ms());
        if let Some((cause, v)) = self.plan_cause.take()
            && v == version
        {
            let span = tracing::info_span!(parent: &cause, "attest.plan_push", controller = self.controller.id, host = %self.host, version);
            plan.traceparent = tribune_telemetry::trace::traceparent(&span).unwrap_or_default();
        }
        self.sent_plan = Some(version);
        crate::metrics::get().attest_plans_pushed.inc();
        send(tx, pb::controller_message::Body::Plan(plan)).await
    }

    async fn on_message(&mut self, m: pb::AgentMessage, tx: &Tx) -> Result<(), SessionError> {
        use pb::agent_message::Body;
        let arrived = Instant::now();
        match m.body {
            Some(Body::Evidence(b)) => {
                check_len(b.evidence.len(), "evidence")?;
                self.on_evidence(b.evidence, tx).await?;
            }
            Some(Body::Replay(b)) => {
                check_len(b.reports.len() + b.checkpoints.len(), "replay")?;
                let mut out = Vec::new();
                self.ledger.replay(b, &mut out);
                self.refuse(out);
            }
            Some(Body::Usage(b)) => {
                check_len(b.reports.len(), "usage")?;
                let (_, wanted) = self.policy_set();
                let placed: std::collections::HashSet<String> = {
                    let st = self.state();
                    b.reports
                        .iter()
                        .filter(|r| !self.ledger.contains(&r.enclave_id))
                        .filter(|r| {
                            st.enclaves
                                .get(&r.enclave_id)
                                .and_then(|e| e.placement.as_ref())
                                .is_some_and(|p| p.host == self.host)
                        })
                        .map(|r| r.enclave_id.clone())
                        .collect()
                };
                let metrics = crate::metrics::get();
                metrics
                    .attest_reports_received
                    .inc_by(b.reports.len() as u64);
                // A batch is traced in the trace of the first sampled window in it.
                let span = if tribune_telemetry::trace::enabled() {
                    let s = tracing::info_span!("attest.usage", controller = self.controller.id, host = %self.host, reports = b.reports.len());
                    if let Some(tp) = b.reports.iter().find(|r| !r.traceparent.is_empty()) {
                        tribune_telemetry::trace::set_parent(&s, &tp.traceparent);
                    }
                    s
                } else {
                    tracing::Span::none()
                };
                let now = self.clock.now_ns();
                let verify_span = if tribune_telemetry::trace::enabled() {
                    tracing::info_span!(parent: &span, "attest.verify", controller = self.controller.id)
                } else {
                    tracing::Span::none()
                };
                // The MACs and chains on the verification pool, off the runtime's threads
                // (`verify_pool`: Raft's heartbeats must not wait behind them).
                let (verified, out) = self
                    .with_ledger(move |ledger| {
                        let _verify = verify_span.entered();
                        let mut out = Vec::new();
                        let verified =
                            ledger.usage(b, now, &wanted, &|id| placed.contains(id), &mut out);
                        (verified, out)
                    })
                    .await?;
                metrics.attest_reports_verified.inc_by(verified as u64);
                self.refuse(out);
                self.feed_charts();
                self.decide().instrument(span).await?;
                metrics
                    .decision_seconds
                    .observe(arrived.elapsed().as_secs_f64());
            }
            Some(Body::Checkpoints(b)) => {
                check_len(b.checkpoints.len(), "checkpoints")?;
                let now = self.clock.now_ns();
                // The signatures on the verification pool, as the usage reports'.
                let out = self
                    .with_ledger(move |ledger| {
                        let mut out = Vec::new();
                        ledger.checkpoints(b, now, &mut out);
                        out
                    })
                    .await?;
                crate::metrics::get()
                    .attest_checkpoint_verify_seconds
                    .observe(arrived.elapsed().as_secs_f64());
                self.refuse(out);
                if self.ledger.pending_digests() >= 1024 {
                    self.flush(tx).await?;
                }
            }
            Some(Body::PlanAck(a)) => {
                if a.error.is_empty() {
                    tracing::debug!(host = %self.host, version = a.version, "plan applied");
                    self.moves_acked(a.version);
                } else {
                    tracing::warn!(host = %self.host, version = a.version, error = %a.error, "plan refused by the agent");
                }
                check_len(a.refused.len(), "launch refusals")?;
                for r in &a.refused {
                    tracing::warn!(host = %self.host, version = a.version, enclave = %r.enclave_id, reason = %r.reason, "launch refused by the host's allow-list");
                }
            }
            // Live migration (docs/protocol.md "Live migration"): the next step
            // (`session/migrate.rs`).
            Some(Body::MigrationProgress(p)) => self.on_migration_progress(p),
            Some(Body::Hello(_)) => return Err(SessionError::Protocol("Hello sent twice")),
            None => return Err(SessionError::Protocol("empty message")),
        }
        Ok(())
    }

    /// Decides for every enclave of this host and proposes what changed. The inputs are copied
    /// under the state lock; the policies are evaluated after it is released, so Raft's apply
    /// never waits for a decision.
    async fn decide(&mut self) -> Result<(), SessionError> {
        // From a state behind the log, a decision would be refused (`Enforcement::from`); the
        // observations wait for the next decision.
        if !self.catch_up().await? {
            return Ok(());
        }
        let (set, _) = self.policy_set();
        let now = wall_ms();
        let controller = self.controller.clone();
        let snapshot: Vec<Snapshot> = {
            let st = controller
                .state
                .read()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            // Placing an enclave on this host bumps its plan version and removing one changes
            // the count, so the cached ids are a superset of the enclaves placed here; each is
            // checked again below (one moved elsewhere drops out).
            let key = (st.plan_versions.get(&self.host).copied(), st.enclaves.len());
            if self.placed.as_ref().is_none_or(|(k, _)| *k != key) {
                let ids = st
                    .enclaves
                    .values()
                    .filter(|e| e.placement.as_ref().is_some_and(|p| p.host == self.host))
                    .map(|e| e.id.clone())
                    .collect();
                self.placed = Some((key, ids));
            }
            self.placed
                .as_ref()
                .map(|(_, ids)| ids.as_slice())
                .unwrap_or_default()
                .iter()
                .filter_map(|id| st.enclaves.get(id))
                .filter(|e| e.placement.as_ref().is_some_and(|p| p.host == self.host))
                .map(|e| {
                    (
                        e.clone(),
                        st.status.get(&e.id).cloned(),
                        st.allocations.get(&e.id).cloned(),
                    )
                })
                .collect()
        };
        let around = {
            let st = self.state();
            let live = self.load_of(snapshot.iter().map(|(e, ..)| e), now);
            // Another host's record older than three sightings: its load is not known.
            let stale_ms = i64::try_from(
                3 * tick::host_seen_every(&self.controller.config.migration).as_millis(),
            )
            .unwrap_or(i64::MAX);
            tick::around(&st, &self.host, live, now, stale_ms)
        };
        let empty = BTreeMap::new();
        let inputs: Vec<Input> = snapshot
            .iter()
            .map(|(e, status, allocation)| {
                let t = self.ledger.get(&e.id);
                Input {
                    enclave: e,
                    status: status.as_ref(),
                    allocation: allocation.as_ref(),
                    observation: t.and_then(|t| t.observation.as_ref()),
                    held_since: t.map_or(&empty, |t| &t.held_since),
                    accounting_broken_ms: self
                        .ledger
                        .accounting_broken_since(&e.id)
                        .map(|since| u64::try_from(now.saturating_sub(since)).unwrap_or(0)),
                }
            })
            .collect();
        let outs = decide_host_around(&set, &inputs, &around, now);
        drop(inputs);
        let mut changes = Vec::new();
        let mut steps = Vec::new();
        for ((e, status, _), o) in snapshot.iter().zip(outs) {
            if let Some(t) = self.ledger.get_mut(&e.id) {
                t.held_since = o.held_since;
            }
            if let Some(every) = o.reattest_every_ms {
                self.reattest_every_ms.insert(e.id.clone(), every);
            }
            if let Some(en) = o.enforcement {
                let before = status.as_ref().map_or(Step::None, |s| s.ladder.step);
                if en.ladder.step != before {
                    steps.push(en.ladder.step);
                }
                changes.push(en);
            }
        }
        self.ledger.clear_observations();
        if changes.is_empty() {
            return Ok(());
        }
        let mut kinds = Vec::new();
        for c in &changes {
            for d in &c.log {
                let (kind, detail) = (d.kind(), d.to_value());
                kinds.push(kind);
                tracing::info!(host = %self.host, enclave = %c.enclave, ?kind, %detail, "decision");
            }
        }
        // The decision's part of a traced window: the proposal through Raft (forwarded to the
        // leader, in the same trace, when this controller follows) and the plan it makes.
        let traced = tribune_telemetry::trace::traceparent(&tracing::Span::current()).is_some();
        let decision = if traced {
            tracing::info_span!("attest.decide", controller = self.controller.id, host = %self.host, changes = changes.len())
        } else {
            tracing::Span::none()
        };
        let decided: Vec<(String, Vec<&'static str>, Step, String)> = changes
            .iter()
            .filter(|c| !c.log.is_empty())
            .map(|c| {
                (
                    c.enclave.clone(),
                    c.log.iter().map(|d| d.kind().as_str()).collect(),
                    c.ladder.step,
                    c.ladder.cause.clone(),
                )
            })
            .collect();
        let out = self
            .write(Command::Enforce {
                host: self.host.clone(),
                changes,
                at_ms: now,
            })
            .instrument(decision.clone())
            .await?;
        let version = self.state().plan_versions.get(&self.host).copied();
        if traced && let Some(v) = version {
            self.plan_cause = Some((decision, v));
        }
        // Counted once committed (a refused change is logged below, and was decided anyway).
        for (enclave, kinds, step, cause) in decided {
            self.controller
                .usage_feed
                .action(&enclave, now, kinds, step, cause);
        }
        crate::metrics::get().decisions_committed(&steps, &kinds);
        if let Outcome::Loop(o) = out
            && !o.refused.is_empty()
        {
            tracing::warn!(host = %self.host, refused = ?o.refused, "decisions refused");
        }
        Ok(())
    }
}

/// Where a newly tracked enclave's chain continues: the point the log confirmed for this key,
/// or genesis (a new key starts at seq 1). Pure over the replicated state.
pub fn confirmed_for(
    st: &State,
    id: &str,
    bound: &tribune_attest::session::BoundEnclave,
) -> Confirmed {
    let eid = bound.enclave;
    let key_hex = hex::encode(bound.ed25519_pub);
    st.status
        .get(id)
        .and_then(|s| s.confirmed.as_ref())
        .filter(|c| c.key == key_hex)
        .and_then(|c| {
            let head: [u8; 32] = hex::decode(&c.head).ok()?.try_into().ok()?;
            Some(Confirmed {
                enclave: eid,
                first_seq: c.last_seq,
                last_seq: c.last_seq,
                head,
            })
        })
        .unwrap_or(Confirmed {
            enclave: eid,
            first_seq: 0,
            last_seq: 0,
            head: usage::chain_genesis(&eid),
        })
}

fn check_len(n: usize, what: &'static str) -> Result<(), SessionError> {
    (n <= BATCH_ITEMS_MAX)
        .then_some(())
        .ok_or(SessionError::Batch { what, n })
}

async fn send(tx: &Tx, body: pb::controller_message::Body) -> Result<(), SessionError> {
    tx.send(Ok(msg(body))).await.map_err(|_| SessionError::Gone)
}
