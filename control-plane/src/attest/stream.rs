//! The `AttestationService` server: one task per agent stream (DESIGN.md §4).
//!
//! Order on a stream: `Hello` (the host must be the one in the agent's certificate) →
//! `Challenge` (fresh nonce + ephemeral X25519) → evidence per enclave (verified, bound to the
//! exchange, a session key derived) → `ReplayBatch` (reports buffered while no controller was
//! reachable, checked by checkpoint signatures and the confirmed point in the replicated state)
//! → usage batches and checkpoints, live. Down the same stream: plans whenever the host's plan
//! version moves, `AttestNow` on the policy's schedule, `UsageAcks` once digests are committed.
//!
//! Nothing here trusts the host: a report counts only if its MAC verifies under the session key
//! of currently trusted evidence, its `seq` is new, and a signed checkpoint covers it; anything
//! else is refused, recorded in the log (at most one entry per enclave per second), and changes
//! no allocation.

use std::collections::{BTreeMap, HashMap};
use std::pin::Pin;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use ed25519_dalek::VerifyingKey;
use futures::Stream;
use tokio::sync::mpsc;
use tokio_stream::StreamExt;
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Request, Response, Status, Streaming};
use tribune_attest::VerifyAt;
use tribune_attest::continuity::continues;
use tribune_attest::evidence::{Inputs, VerifierConfig, Verifiers, verify_evidence};
use tribune_attest::merkle::{leaf_hash, root_of};
use tribune_attest::session::{BoundEnclave, ControllerExchange, binding_report_data};
use tribune_attest::usage::{
    self, CHECKPOINT_LEN, Checkpoint, Confirmed, EnclaveId, Freshness, REPORT_LEN, StreamVerifier,
    UsageReport,
};
use tribune_policy::{Agg, PolicySet, Resource};
use tribune_proto::v1 as pb;
use tribune_proto::v1::attestation_service_server::AttestationService;

use super::decide::{Input, Observation, decide_host};
use super::plan::plan_for;
use super::window::{Rates, WINDOW_S_MAX, Windows};
use crate::node::Controller;
use crate::state::{
    Attestation, Command, Host, Outcome, Refusal, State, TeeKind, UsageDigest, VerdictCmd,
};

/// Most enclaves one stream may carry.
pub const ENCLAVES_PER_STREAM_MAX: usize = 4096;
/// Most items in one batch message.
pub const BATCH_ITEMS_MAX: usize = 16_384;
/// How long a new stream may take to say `Hello`.
const HELLO_TIMEOUT: Duration = Duration::from_secs(10);
/// How often committed digests are flushed and schedules checked.
const TICK: Duration = Duration::from_millis(100);
const DIGEST_FLUSH: Duration = Duration::from_millis(500);
/// Default re-attestation interval when no policy sets one (DESIGN.md §4.5).
const REATTEST_DEFAULT_MS: f64 = 60_000.0;
/// The same refusal is logged again at most this often.
const REJECT_REPEAT_MS: i64 = 60_000;
/// Outbound queue per stream; a full queue slows this stream, never grows memory.
const OUTBOUND_MAX: usize = 64;

/// How the loop runs on this controller.
#[derive(Clone, Debug, Default)]
pub struct LoopConfig {
    /// Accept simulated evidence (`tribune dev`).
    pub allow_sim: bool,
    /// No TLS (`--insecure`): the host id of `Hello` is taken as said.
    pub insecure: bool,
    pub freshness: Freshness,
}

pub struct AttestServer {
    controller: Arc<Controller>,
    config: LoopConfig,
    verifiers: Arc<Verifiers>,
    /// Refused streams logged in the current minute (at most 60, against floods).
    refusals: std::sync::Mutex<(Instant, u32)>,
}

impl AttestServer {
    pub fn new(controller: Arc<Controller>, config: LoopConfig) -> Result<AttestServer, String> {
        let verifiers = Verifiers::new().map_err(|e| format!("evidence verifiers: {e}"))?;
        Ok(AttestServer {
            controller,
            config,
            verifiers: Arc::new(verifiers),
            refusals: std::sync::Mutex::new((Instant::now(), 0)),
        })
    }
}

impl AttestServer {
    /// Records a refused stream in the log (in the background: refusing does not wait).
    fn record_refusal(&self, subject: &str, why: &str) {
        tracing::warn!(subject, "attestation stream refused: {why}");
        {
            let mut r = self
                .refusals
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            if r.0.elapsed() > Duration::from_secs(60) {
                *r = (Instant::now(), 0);
            }
            if r.1 >= 60 {
                return;
            }
            r.1 += 1;
        }
        let cmd = Command::AppendLog {
            subject: subject.to_string(),
            detail: Refusal::new("attestation stream", why).into(),
            at_ms: now_ms(),
        };
        let controller = self.controller.clone();
        tokio::spawn(async move {
            if let Err(e) = controller.write(vec![cmd]).await {
                tracing::debug!("recording a refused stream: {e}");
            }
        });
    }
}

type Outbound = Pin<Box<dyn Stream<Item = Result<pb::ControllerMessage, Status>> + Send>>;

#[tonic::async_trait]
impl AttestationService for AttestServer {
    type AttestStream = Outbound;

    async fn attest(
        &self,
        request: Request<Streaming<pb::AgentMessage>>,
    ) -> Result<Response<Self::AttestStream>, Status> {
        // A controller whose state disagrees with the cluster derives no plans from it: the
        // agent goes to another controller.
        if let Err(e) = self.controller.integrity.writable() {
            return Err(Status::unavailable(e.to_string()));
        }
        // With TLS, the host is the one in the agent's certificate; without (`--insecure`),
        // the Hello is taken as said.
        let identity = match crate::tls::require_agent(!self.config.insecure, request.extensions())
        {
            Ok(i) => i,
            Err(status) => {
                self.record_refusal("attestation stream", status.message());
                return Err(status);
            }
        };
        let mut inbound = request.into_inner();
        let first = tokio::time::timeout(HELLO_TIMEOUT, inbound.next())
            .await
            .map_err(|_| Status::deadline_exceeded("no Hello within 10 s"))?;
        let hello = match first {
            Some(Ok(pb::AgentMessage {
                body: Some(pb::agent_message::Body::Hello(h)),
            })) => h,
            Some(Err(e)) => return Err(e),
            _ => return Err(Status::invalid_argument("the first message must be Hello")),
        };
        if let Some(host) = &identity
            && *host != hello.host_id
        {
            let why = format!(
                "this agent's certificate is for host {host:?}; it cannot speak for {:?}",
                hello.host_id
            );
            self.record_refusal(&hello.host_id, &why);
            return Err(Status::permission_denied(why));
        }
        if let Err(e) = crate::validate::check_name("host", &hello.host_id) {
            return Err(Status::invalid_argument(e));
        }
        let (tx, rx) = mpsc::channel(OUTBOUND_MAX);
        let mut session = Session::new(
            self.controller.clone(),
            self.config.clone(),
            self.verifiers.clone(),
            hello.host_id.clone(),
        );
        tokio::spawn(async move {
            if let Err(e) = session.run(hello, inbound, tx.clone()).await {
                tracing::info!(host = %session.host, "attestation stream ended: {e}");
                let _ = tx
                    .send(Ok(msg(pb::controller_message::Body::Goodbye(
                        pb::Goodbye { reason: e.clone() },
                    ))))
                    .await;
            }
        });
        Ok(Response::new(Box::pin(ReceiverStream::new(rx))))
    }
}

fn msg(body: pb::controller_message::Body) -> pb::ControllerMessage {
    pb::ControllerMessage { body: Some(body) }
}

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

fn now_ns() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64)
}

fn key32(b: &[u8], what: &str) -> Result<[u8; 32], String> {
    b.try_into()
        .map_err(|_| format!("{what}: {} bytes, expected 32", b.len()))
}

/// The rates of one report window, canonical units.
fn rates_of(r: &UsageReport) -> Rates {
    let secs = (r.window_len_ns.max(1)) as f64 / 1e9;
    Rates {
        cpu_millicores: r.cpu_ns as f64 / r.window_len_ns.max(1) as f64 * 1000.0,
        memory_bytes: r.mem_bytes as f64,
        egress_bits_per_sec: r.net_tx_bytes as f64 * 8.0 / secs,
        ingress_bits_per_sec: r.net_rx_bytes as f64 * 8.0 / secs,
        gpu_percent: f64::from(r.gpu_util_bp) / 100.0,
    }
}

/// How far the enclave's own view of CPU differs from the host's, percent of the larger one.
/// Below 10 millicores both are noise.
pub fn divergence_pct(enclave: &Rates, host: &Rates) -> f64 {
    let (a, b) = (enclave.cpu_millicores, host.cpu_millicores);
    let big = a.max(b);
    if big < 10.0 {
        0.0
    } else {
        (a - b).abs() / big * 100.0
    }
}

/// One enclave on this stream whose evidence is trusted.
struct Tracked {
    bound: BoundEnclave,
    key_hex: String,
    vk: VerifyingKey,
    /// Created at the first live report, from `confirmed` (after any replay).
    verifier: Option<StreamVerifier>,
    confirmed: Confirmed,
    /// Accepted reports not yet covered by a checkpoint, in seq order, with their divergence.
    span: Vec<(UsageReport, f64)>,
    windows: Windows,
    observation: Option<Observation>,
    held_since: BTreeMap<String, i64>,
    attested_at: Instant,
    reattest_pending: Option<([u8; 32], Instant)>,
}

/// The compiled policy set, the versions it was compiled from, and the usage windows it reads.
type CompiledPolicies = (Vec<(String, u64)>, Arc<PolicySet>, UsageWindows);
/// The usage aggregates (`usage.R.agg(W)`) the policies read.
type UsageWindows = Arc<[(Resource, Agg, u32)]>;

/// ((the host's plan version, number of enclaves), the ids of the enclaves placed on the host).
type PlacedIds = ((Option<u64>, usize), Vec<String>);

struct Session {
    controller: Arc<Controller>,
    config: LoopConfig,
    verifiers: Arc<Verifiers>,
    host: String,
    exchange: ControllerExchange,
    tracked: HashMap<String, Tracked>,
    digests: Vec<UsageDigest>,
    rejects: Vec<Command>,
    last_reject_ms: HashMap<String, i64>,
    policies: Option<CompiledPolicies>,
    reattest_every_ms: HashMap<String, f64>,
    sent_plan: Option<u64>,
    last_flush: Instant,
    /// Ids of the enclaves placed on this host, in id order, as of (this host's plan version,
    /// number of enclaves): a decision looks them up instead of scanning every enclave.
    placed: Option<PlacedIds>,
}

impl Session {
    fn new(
        controller: Arc<Controller>,
        config: LoopConfig,
        verifiers: Arc<Verifiers>,
        host: String,
    ) -> Session {
        Session {
            controller,
            config,
            verifiers,
            host,
            exchange: ControllerExchange::new(),
            tracked: HashMap::new(),
            digests: Vec::new(),
            rejects: Vec::new(),
            last_reject_ms: HashMap::new(),
            policies: None,
            reattest_every_ms: HashMap::new(),
            sent_plan: None,
            last_flush: Instant::now(),
            placed: None,
        }
    }

    fn state(&self) -> std::sync::RwLockReadGuard<'_, State> {
        self.controller
            .state
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
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
    async fn write(&self, cmd: Command) -> Result<Outcome, String> {
        let mut out = self
            .controller
            .write(vec![cmd])
            .await
            .map_err(|e| format!("writing through raft: {e}"))?;
        self.applied_here().await;
        out.pop()
            .ok_or_else(|| "raft answered without an outcome".to_string())
    }

    async fn applied_here(&self) {
        let leads = self
            .controller
            .leader()
            .is_some_and(|(id, _)| id == self.controller.id);
        if !leads && let Err(e) = self.controller.read_barrier().await {
            tracing::debug!(host = %self.host, "waiting to apply our own write locally: {e}");
        }
    }

    /// Records a refused input in the log: the first of each kind (subject, what, why) at
    /// once, the same again at most once a minute, so a misbehaving agent cannot flood the log.
    fn reject(&mut self, subject: &str, what: &str, why: String) {
        tracing::warn!(host = %self.host, subject, what, "refused: {why}");
        let now = now_ms();
        // The kind of failure (the text before the first ':'), not its numbers.
        let kind = why.split(':').next().unwrap_or("");
        let key = format!("{subject}\u{0}{what}\u{0}{kind}");
        let last = self.last_reject_ms.get(&key).copied().unwrap_or(i64::MIN);
        if now.saturating_sub(last) < REJECT_REPEAT_MS || self.rejects.len() >= 1024 {
            return;
        }
        if self.last_reject_ms.len() >= 4096 {
            self.last_reject_ms.clear();
        }
        self.last_reject_ms.insert(key, now);
        self.rejects.push(Command::AppendLog {
            subject: subject.to_string(),
            detail: Refusal {
                host: Some(self.host.clone()),
                ..Refusal::new(what, why)
            }
            .into(),
            at_ms: now,
        });
    }

    async fn run(
        &mut self,
        hello: pb::Hello,
        mut inbound: Streaming<pb::AgentMessage>,
        tx: mpsc::Sender<Result<pb::ControllerMessage, Status>>,
    ) -> Result<(), String> {
        tracing::info!(host = %self.host, enclaves = hello.enclave_ids.len(), "agent connected");
        // Recorded in the background: the stream must not wait for an election.
        let host = self.host_record(&hello);
        let controller = self.controller.clone();
        tokio::spawn(async move {
            let at_ms = now_ms();
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
        let challenge = pb::Challenge {
            nonce: self.exchange.nonce().to_vec(),
            controller_x25519: self.exchange.eph_public().to_vec(),
            controller_id: self.controller.id,
        };
        send(&tx, pb::controller_message::Body::Challenge(challenge)).await?;
        let mut applied = self.controller.subscribe_applied();
        self.push_plan(&tx).await?;
        let mut tick = tokio::time::interval(TICK);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                m = inbound.next() => match m {
                    None => return Ok(()),
                    Some(Err(e)) => return Err(format!("agent stream: {e}")),
                    Some(Ok(m)) => self.on_message(m, &tx).await?,
                },
                changed = applied.changed() => {
                    if changed.is_err() {
                        return Err("controller shutting down".into());
                    }
                    self.push_plan(&tx).await?;
                }
                _ = tick.tick() => self.on_tick(&tx).await?,
            }
        }
    }

    fn host_record(&self, hello: &pb::Hello) -> Host {
        let existing = self.state().hosts.get(&self.host).cloned();
        let enforcement = if hello.can_enforce {
            "enforcing".to_string()
        } else {
            format!("observe-only: {}", hello.enforce_problem)
        };
        match existing {
            Some(mut h) => {
                h.enforcement = enforcement;
                h
            }
            None => Host {
                id: self.host.clone(),
                address: String::new(),
                capacity: Default::default(),
                tee: TeeKind::Sim,
                attestation_status: "unverified".into(),
                last_heartbeat_ms: 0,
                agent_cert_fingerprint: String::new(),
                enforcement,
            },
        }
    }

    async fn push_plan(
        &mut self,
        tx: &mpsc::Sender<Result<pb::ControllerMessage, Status>>,
    ) -> Result<(), String> {
        let version = self.state().plan_versions.get(&self.host).copied();
        let Some(version) = version else {
            return Ok(());
        };
        if self.sent_plan == Some(version) {
            return Ok(());
        }
        let (set, _) = self.policy_set();
        let plan = plan_for(&self.state(), &set, &self.host, now_ms());
        self.sent_plan = Some(version);
        send(tx, pb::controller_message::Body::Plan(plan)).await
    }

    async fn on_message(
        &mut self,
        m: pb::AgentMessage,
        tx: &mpsc::Sender<Result<pb::ControllerMessage, Status>>,
    ) -> Result<(), String> {
        use pb::agent_message::Body;
        match m.body {
            Some(Body::Evidence(b)) => {
                check_len(b.evidence.len(), "evidence")?;
                self.on_evidence(b.evidence, tx).await?;
            }
            Some(Body::Replay(b)) => {
                check_len(b.reports.len() + b.checkpoints.len(), "replay")?;
                self.on_replay(b);
            }
            Some(Body::Usage(b)) => {
                check_len(b.reports.len(), "usage")?;
                self.on_usage(b);
                self.decide().await?;
            }
            Some(Body::Checkpoints(b)) => {
                check_len(b.checkpoints.len(), "checkpoints")?;
                self.on_checkpoints(b);
                if self.digests.len() >= 1024 {
                    self.flush(tx).await?;
                }
            }
            Some(Body::PlanAck(a)) => {
                if a.error.is_empty() {
                    tracing::debug!(host = %self.host, version = a.version, "plan applied");
                } else {
                    tracing::warn!(host = %self.host, version = a.version, error = %a.error, "plan refused by the agent");
                }
                check_len(a.refused.len(), "launch refusals")?;
                for r in &a.refused {
                    tracing::warn!(host = %self.host, version = a.version, enclave = %r.enclave_id, reason = %r.reason, "launch refused by the host's allow-list");
                }
            }
            Some(Body::Hello(_)) => return Err("Hello sent twice".into()),
            None => return Err("empty message".into()),
        }
        Ok(())
    }

    async fn on_evidence(
        &mut self,
        evidence: Vec<pb::Evidence>,
        tx: &mpsc::Sender<Result<pb::ControllerMessage, Status>>,
    ) -> Result<(), String> {
        let mut verdicts = Vec::new();
        let mut need_evidence = Vec::new();
        for ev in evidence {
            let id = ev.enclave_id.clone();
            let placed = {
                let st = self.state();
                st.enclaves
                    .get(&id)
                    .and_then(|e| e.placement.as_ref())
                    .map(|p| p.host == self.host)
            };
            match placed {
                Some(true) => {}
                Some(false) | None => {
                    self.reject(
                        &id,
                        "evidence",
                        format!("enclave {id:?} is not placed on host {:?}", self.host),
                    );
                    continue;
                }
            }
            if self.tracked.len() >= ENCLAVES_PER_STREAM_MAX && !self.tracked.contains_key(&id) {
                self.reject(&id, "evidence", "too many enclaves on one stream".into());
                continue;
            }
            if ev.report.is_empty() && !ev.rekey_signature.is_empty() {
                match self.rekey_one(&ev) {
                    Ok(attestation) => verdicts.push(VerdictCmd {
                        enclave: id,
                        attestation,
                    }),
                    Err(why) => {
                        tracing::info!(host = %self.host, enclave = %id, "re-keying refused, asking for evidence: {why}");
                        need_evidence.push(id);
                    }
                }
                continue;
            }
            let attestation = self.verify_one(&ev);
            if !attestation.trusted {
                // Its reports stop counting at once.
                self.tracked.remove(&id);
                self.reject(&id, "evidence", attestation.reasons.join("; "));
            }
            verdicts.push(VerdictCmd {
                enclave: id,
                attestation,
            });
        }
        if !need_evidence.is_empty() {
            send(
                tx,
                pb::controller_message::Body::AttestNow(pb::AttestNow {
                    enclave_ids: need_evidence,
                    nonce: self.exchange.nonce().to_vec(),
                }),
            )
            .await?;
        }
        if verdicts.is_empty() {
            return Ok(());
        }
        let out = self
            .write(Command::Verdicts {
                host: self.host.clone(),
                verdicts,
                at_ms: now_ms(),
            })
            .await?;
        if let Outcome::Loop(o) = out
            && !o.refused.is_empty()
        {
            tracing::warn!(host = %self.host, refused = ?o.refused, "verdicts refused");
        }
        Ok(())
    }

    /// Verifies one piece of evidence, binds its keys and (when trusted) starts tracking the
    /// enclave. Returns the verdict to record.
    fn verify_one(&mut self, ev: &pb::Evidence) -> Attestation {
        let id = ev.enclave_id.clone();
        let claimed = ev.tee.parse::<TeeKind>();
        let mut a = Attestation {
            host: self.host.clone(),
            tee: claimed.as_ref().ok().copied(),
            verified_at_ms: now_ms(),
            verified_by: self.controller.id,
            ..Attestation::default()
        };
        if let Err(e) = claimed {
            a.reasons.push(format!("evidence envelope: {e}"));
            return a;
        }
        let keys = key32(&ev.enclave_ed25519, "enclave_ed25519")
            .and_then(|ed| Ok((ed, key32(&ev.enclave_x25519, "enclave_x25519")?)));
        let (ed, x) = match keys {
            Ok(k) => k,
            Err(e) => {
                a.reasons.push(e);
                return a;
            }
        };
        a.ed25519_pub = hex::encode(ed);
        a.x25519_pub = hex::encode(x);
        let mut config = if self.config.allow_sim {
            VerifierConfig::dev()
        } else {
            VerifierConfig::production()
        };
        config.policy.allow_debug = true; // the policy's `attest { debug = … }` decides
        let verdict = match verify_evidence(
            &self.verifiers,
            &config,
            &ev.report,
            &Inputs::default(),
            VerifyAt::now(),
        ) {
            Ok(v) => v,
            Err(e) => {
                a.reasons.push(format!("not evidence: {e}"));
                return a;
            }
        };
        a.tee = Some(verdict.tee);
        a.debug = verdict.debug;
        a.measurement = verdict
            .measurements
            .first()
            .map(|m| m.hex.clone())
            .unwrap_or_default();
        a.reasons.extend(verdict.reasons.iter().cloned());
        let expected = self
            .state()
            .enclaves
            .get(&id)
            .map(|e| e.expected_measurements.clone())
            .unwrap_or_default();
        if !expected.is_empty()
            && !expected
                .iter()
                .any(|m| m.eq_ignore_ascii_case(&a.measurement))
        {
            a.reasons.push(format!(
                "measurement {} is not one of the enclave's expected measurements",
                a.measurement
            ));
        }
        let eid = EnclaveId::from_name(&id);
        // Re-attestation: same keys, a fresh nonce from AttestNow.
        if let Some((nonce, _)) = self.tracked.get(&id).and_then(|t| t.reattest_pending) {
            let want = binding_report_data(&ed, &x, &nonce);
            let same_keys = self
                .tracked
                .get(&id)
                .is_some_and(|t| t.bound.ed25519_pub == ed && t.bound.x25519_pub == x);
            if verdict.report_data_raw != want || !same_keys {
                a.reasons.push(
                    "re-attestation evidence does not bind the stream's keys to the fresh nonce"
                        .into(),
                );
            }
            a.trusted = a.reasons.is_empty();
            if a.trusted
                && let Some(t) = self.tracked.get_mut(&id)
            {
                t.reattest_pending = None;
                t.attested_at = Instant::now();
            }
            return a;
        }
        let bound = match self.exchange.bind(eid, ed, x, &verdict.report_data_raw) {
            Ok(b) => b,
            Err(e) => {
                a.reasons.push(e.to_string());
                return a;
            }
        };
        a.trusted = a.reasons.is_empty();
        if !a.trusted {
            return a;
        }
        let vk = match VerifyingKey::from_bytes(&ed) {
            Ok(k) => k,
            Err(_) => {
                a.trusted = false;
                a.reasons.push("ed25519 key is not a valid point".into());
                return a;
            }
        };
        self.track(id, bound, vk);
        a
    }

    /// Starts counting an enclave's reports under `bound`, continuing the chain the log
    /// confirmed for this key (a new key starts at seq 1).
    fn track(&mut self, id: String, bound: BoundEnclave, vk: VerifyingKey) {
        let eid = bound.enclave;
        let key_hex = hex::encode(bound.ed25519_pub);
        let confirmed = {
            let st = self.state();
            st.status
                .get(&id)
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
        }
        .unwrap_or(Confirmed {
            enclave: eid,
            first_seq: 0,
            last_seq: 0,
            head: usage::chain_genesis(&eid),
        });
        let (_, wanted) = self.policy_set();
        let keep = wanted
            .iter()
            .map(|w| w.2)
            .max()
            .unwrap_or(1)
            .min(WINDOW_S_MAX);
        self.tracked.insert(
            id,
            Tracked {
                bound,
                key_hex,
                vk,
                verifier: None,
                confirmed,
                span: Vec::new(),
                windows: Windows::new(keep),
                observation: None,
                held_since: BTreeMap::new(),
                attested_at: Instant::now(),
                reattest_pending: None,
            },
        );
    }

    /// Re-keying on a new stream without evidence (DESIGN.md §4.5): the enclave signs this
    /// stream's exchange with the ed25519 key that earlier trusted evidence bound, as the
    /// replicated state records. Any doubt (no such record, other keys, a bad signature) is
    /// answered by asking for evidence, never by trusting.
    fn rekey_one(&mut self, ev: &pb::Evidence) -> Result<Attestation, String> {
        let id = ev.enclave_id.clone();
        let ed = key32(&ev.enclave_ed25519, "enclave_ed25519")?;
        let x = key32(&ev.enclave_x25519, "enclave_x25519")?;
        let sig: [u8; 64] = ev
            .rekey_signature
            .as_slice()
            .try_into()
            .map_err(|_| format!("re-key signature of {} bytes", ev.rekey_signature.len()))?;
        let prior = self
            .state()
            .status
            .get(&id)
            .and_then(|s| s.attestation.clone())
            .filter(|a| {
                a.trusted && a.ed25519_pub == hex::encode(ed) && a.x25519_pub == hex::encode(x)
            })
            .ok_or("no trusted evidence bound these keys")?;
        let bound = self
            .exchange
            .rekey(EnclaveId::from_name(&id), ed, x, &sig)
            .map_err(|e| e.to_string())?;
        let vk = VerifyingKey::from_bytes(&ed).map_err(|_| "ed25519 key is not a valid point")?;
        self.track(id, bound, vk);
        Ok(Attestation {
            host: self.host.clone(),
            reasons: Vec::new(),
            verified_at_ms: now_ms(),
            verified_by: self.controller.id,
            rekeyed: true,
            failures: 0,
            ..prior
        })
    }

    /// Reports buffered by the agent while it had no controller: each span must come with
    /// its checkpoint, continue the confirmed chain, and verify under the bound key. Spans
    /// already confirmed (the old controller committed them) are skipped: no duplicate.
    fn on_replay(&mut self, b: pb::ReplayBatch) {
        // Each replayed report decoded once, indexed by enclave and seq; a checkpoint then
        // takes its range. Undecodable ones are left out (their span fails to verify).
        let mut by_enclave: HashMap<String, BTreeMap<u64, Vec<u8>>> = HashMap::new();
        for r in b.reports {
            if let Ok(decoded) = UsageReport::decode(r.report.get(..REPORT_LEN).unwrap_or(&[])) {
                by_enclave
                    .entry(r.enclave_id)
                    .or_default()
                    .insert(decoded.seq, r.report);
            }
        }
        for c in b.checkpoints {
            let id = c.enclave_id.clone();
            let Some(t) = self.tracked.get_mut(&id) else {
                self.reject(&id, "replay", "no trusted evidence on this stream".into());
                continue;
            };
            let cp = match pb_checkpoint(&c) {
                Ok(cp) => cp,
                Err(e) => {
                    self.reject(&id, "replay checkpoint", e);
                    continue;
                }
            };
            if cp.last_seq <= t.confirmed.last_seq {
                continue; // already in the log
            }
            if !continues(
                Some((t.confirmed.last_seq, &t.confirmed.head)),
                cp.first_seq,
                &cp.prev_head,
            ) {
                let why = format!(
                    "replayed span {}..={} does not continue the confirmed seq {}",
                    cp.first_seq, cp.last_seq, t.confirmed.last_seq
                );
                self.reject(&id, "replay", why);
                continue;
            }
            let wires: Vec<&[u8]> = by_enclave
                .get(&id)
                .map(|m| {
                    m.range(cp.first_seq..=cp.last_seq)
                        .map(|(_, w)| w.as_slice())
                        .collect()
                })
                .unwrap_or_default();
            match usage::verify_by_checkpoint(&cp, &t.vk, &wires) {
                Ok(decoded) => {
                    // No host view is replayed: divergence is not known for these windows.
                    let span: Vec<(UsageReport, f64)> =
                        decoded.into_iter().map(|r| (r, 0.0)).collect();
                    let digest = digest_of(&id, &t.key_hex, &cp, &span, true);
                    t.confirmed = Confirmed::from(&cp);
                    self.digests.push(digest);
                }
                Err(e) => {
                    let why = e.to_string();
                    self.reject(&id, "replay", why);
                }
            }
        }
    }

    fn on_usage(&mut self, b: pb::UsageBatch) {
        let now = now_ns();
        let freshness = self.config.freshness;
        let wanted = self
            .policies
            .as_ref()
            .map(|p| p.2.clone())
            .unwrap_or_default();
        for r in b.reports {
            let id = r.enclave_id.clone();
            let Some(t) = self.tracked.get_mut(&id) else {
                let placed_here = self
                    .state()
                    .enclaves
                    .get(&id)
                    .and_then(|e| e.placement.as_ref())
                    .is_some_and(|p| p.host == self.host);
                let why = if placed_here {
                    "no trusted evidence for this enclave on this stream: the report does not count"
                        .to_string()
                } else {
                    format!("enclave {id:?} is not placed on host {:?}", self.host)
                };
                self.reject(&id, "usage report", why);
                continue;
            };
            if t.verifier.is_none() {
                match StreamVerifier::resume(&t.bound, freshness, &t.confirmed) {
                    Ok(v) => t.verifier = Some(v),
                    Err(e) => {
                        let why = e.to_string();
                        self.reject(&id, "usage report", why);
                        continue;
                    }
                }
            }
            let Some(verifier) = t.verifier.as_mut() else {
                continue;
            };
            let mut wire = Vec::with_capacity(r.report.len() + r.mac.len());
            wire.extend_from_slice(&r.report);
            wire.extend_from_slice(&r.mac);
            let report = match verifier.verify_report(&wire, now) {
                Ok(rep) => rep,
                Err(e) => {
                    let why = e.to_string();
                    self.reject(&id, "usage report", why);
                    continue;
                }
            };
            let rates = rates_of(&report);
            let host_rates = UsageReport::decode(&r.host_view)
                .ok()
                .map(|h| rates_of(&h))
                .unwrap_or(rates);
            let divergence = divergence_pct(&rates, &host_rates);
            let end_ms = (report.window_start_ns + report.window_len_ns) / 1_000_000;
            t.windows.push(end_ms, &rates);
            t.observation = Some(Observation {
                cpu_millicores: rates.cpu_millicores,
                cpu_recent_millicores: t.windows.recent_cpu(1000),
                usage: t.windows.facts(&wanted),
                divergence_pct: divergence,
                seq: report.seq,
                window_end_ms: end_ms,
            });
            t.span.push((report, divergence));
        }
    }

    fn on_checkpoints(&mut self, b: pb::CheckpointBatch) {
        let mut checked = Vec::new();
        for c in b.checkpoints {
            let id = c.enclave_id.clone();
            let cp = match pb_checkpoint(&c) {
                Ok(cp) => cp,
                Err(e) => {
                    self.reject(&id, "checkpoint", e);
                    continue;
                }
            };
            let Some(t) = self.tracked.get(&id) else {
                self.reject(
                    &id,
                    "checkpoint",
                    "no trusted evidence on this stream".into(),
                );
                continue;
            };
            let matched = match &t.verifier {
                Some(v) => v.match_checkpoint(&cp).map_err(|e| e.to_string()),
                None => Err("no reports received for this checkpoint".into()),
            };
            match matched {
                Ok(()) => checked.push((id, cp, t.vk)),
                Err(why) => self.reject(&id, "checkpoint", why),
            }
        }
        let items: Vec<(Checkpoint, VerifyingKey)> =
            checked.iter().map(|(_, cp, vk)| (*cp, *vk)).collect();
        let results = usage::verify_checkpoint_signatures(&items);
        for ((id, cp, _), res) in checked.into_iter().zip(results) {
            if let Err(e) = res {
                self.reject(&id, "checkpoint", e.to_string());
                continue;
            }
            let Some(t) = self.tracked.get_mut(&id) else {
                continue;
            };
            let Some(v) = t.verifier.as_mut() else {
                continue;
            };
            let confirmed = v.confirm(&cp);
            // The span holds only unconfirmed reports in seq order, and the checkpoint starts
            // right after the confirmed point: it covers the span's head up to `last_seq`.
            let n = t
                .span
                .iter()
                .take_while(|(r, _)| r.seq <= cp.last_seq)
                .count();
            let covered: Vec<(UsageReport, f64)> = t.span.drain(..n).collect();
            let digest = digest_of(&id, &t.key_hex, &cp, &covered, false);
            t.confirmed = confirmed;
            self.digests.push(digest);
        }
    }

    /// Decides for every enclave of this host and proposes what changed.
    async fn decide(&mut self) -> Result<(), String> {
        let (set, _) = self.policy_set();
        let now = now_ms();
        let controller = self.controller.clone();
        let changes = {
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
            let enclaves: Vec<_> = self
                .placed
                .as_ref()
                .map(|(_, ids)| ids.as_slice())
                .unwrap_or_default()
                .iter()
                .filter_map(|id| st.enclaves.get(id))
                .filter(|e| e.placement.as_ref().is_some_and(|p| p.host == self.host))
                .collect();
            let empty = BTreeMap::new();
            let inputs: Vec<Input> = enclaves
                .iter()
                .map(|e| {
                    let t = self.tracked.get(&e.id);
                    Input {
                        enclave: e,
                        status: st.status.get(&e.id),
                        allocation: st.allocations.get(&e.id),
                        observation: t.and_then(|t| t.observation.as_ref()),
                        held_since: t.map_or(&empty, |t| &t.held_since),
                    }
                })
                .collect();
            let outs = decide_host(&set, &inputs, now);
            let mut changes = Vec::new();
            for (e, o) in enclaves.iter().zip(outs) {
                if let Some(t) = self.tracked.get_mut(&e.id) {
                    t.held_since = o.held_since;
                }
                if let Some(every) = o.reattest_every_ms {
                    self.reattest_every_ms.insert(e.id.clone(), every);
                }
                if let Some(en) = o.enforcement {
                    changes.push(en);
                }
            }
            changes
        };
        // Each observation is used once: silence afterwards is "no fresh usage".
        for t in self.tracked.values_mut() {
            t.observation = None;
        }
        if changes.is_empty() {
            return Ok(());
        }
        for c in &changes {
            for d in &c.log {
                let (kind, detail) = (d.kind(), d.to_value());
                tracing::info!(host = %self.host, enclave = %c.enclave, ?kind, %detail, "decision");
            }
        }
        let out = self
            .write(Command::Enforce {
                host: self.host.clone(),
                changes,
                at_ms: now,
            })
            .await?;
        if let Outcome::Loop(o) = out
            && !o.refused.is_empty()
        {
            tracing::warn!(host = %self.host, refused = ?o.refused, "decisions refused");
        }
        Ok(())
    }

    async fn on_tick(
        &mut self,
        tx: &mpsc::Sender<Result<pb::ControllerMessage, Status>>,
    ) -> Result<(), String> {
        if self.last_flush.elapsed() >= DIGEST_FLUSH {
            self.flush(tx).await?;
        }
        // Re-attestation on the policy's schedule.
        let mut due = Vec::new();
        for (id, t) in &self.tracked {
            if t.reattest_pending.is_some() {
                continue;
            }
            let every = self
                .reattest_every_ms
                .get(id)
                .copied()
                .unwrap_or(REATTEST_DEFAULT_MS);
            if t.attested_at.elapsed().as_secs_f64() * 1000.0 >= every {
                due.push(id.clone());
            }
        }
        if !due.is_empty() {
            let nonce = ControllerExchange::new().nonce().to_owned();
            for id in &due {
                if let Some(t) = self.tracked.get_mut(id) {
                    t.reattest_pending = Some((nonce, Instant::now()));
                }
            }
            send(
                tx,
                pb::controller_message::Body::AttestNow(pb::AttestNow {
                    enclave_ids: due,
                    nonce: nonce.to_vec(),
                }),
            )
            .await?;
        }
        // Unanswered re-attestation: a failure.
        let overdue: Vec<String> = self
            .tracked
            .iter()
            .filter(|(_, t)| {
                t.reattest_pending
                    .is_some_and(|(_, at)| at.elapsed() > Duration::from_secs(10))
            })
            .map(|(id, _)| id.clone())
            .collect();
        if !overdue.is_empty() {
            let verdicts = overdue
                .into_iter()
                .map(|id| {
                    self.tracked.remove(&id);
                    VerdictCmd {
                        enclave: id,
                        attestation: Attestation {
                            trusted: false,
                            host: self.host.clone(),
                            reasons: vec![
                                "no evidence within 10 s of a re-attestation request".into(),
                            ],
                            verified_at_ms: now_ms(),
                            ..Attestation::default()
                        },
                    }
                })
                .collect();
            self.write(Command::Verdicts {
                host: self.host.clone(),
                verdicts,
                at_ms: now_ms(),
            })
            .await?;
        }
        Ok(())
    }

    /// Commits pending digests and refusals; acknowledges what is durable.
    async fn flush(
        &mut self,
        tx: &mpsc::Sender<Result<pb::ControllerMessage, Status>>,
    ) -> Result<(), String> {
        self.last_flush = Instant::now();
        let rejects = std::mem::take(&mut self.rejects);
        if !rejects.is_empty() {
            self.controller
                .write(rejects)
                .await
                .map_err(|e| format!("writing through raft: {e}"))?;
        }
        if self.digests.is_empty() {
            // Decisions also run on silence, so a stopped stream still ages the ladder.
            return self.decide().await;
        }
        self.commit_digests(tx).await?;
        self.decide().await
    }

    async fn commit_digests(
        &mut self,
        tx: &mpsc::Sender<Result<pb::ControllerMessage, Status>>,
    ) -> Result<(), String> {
        let digests = std::mem::take(&mut self.digests);
        let acks: Vec<pb::UsageAck> = digests
            .iter()
            .map(|d| pb::UsageAck {
                enclave_id: d.enclave.clone(),
                confirmed_seq: d.last_seq,
            })
            .collect();
        let out = self
            .write(Command::UsageDigests {
                host: self.host.clone(),
                digests,
                at_ms: now_ms(),
            })
            .await?;
        if let Outcome::Loop(o) = &out
            && !o.refused.is_empty()
        {
            tracing::warn!(host = %self.host, refused = ?o.refused, "digests refused");
        }
        // Ack the confirmed point the log now holds for each enclave.
        let acks = {
            let st = self.state();
            acks.into_iter()
                .filter_map(|a| {
                    let c = st.status.get(&a.enclave_id)?.confirmed.as_ref()?;
                    Some(pb::UsageAck {
                        confirmed_seq: c.last_seq,
                        enclave_id: a.enclave_id,
                    })
                })
                .collect::<Vec<_>>()
        };
        send(
            tx,
            pb::controller_message::Body::UsageAcks(pb::UsageAcks { acks }),
        )
        .await
    }
}

fn check_len(n: usize, what: &str) -> Result<(), String> {
    if n > BATCH_ITEMS_MAX {
        Err(format!(
            "{what} batch of {n} items; at most {BATCH_ITEMS_MAX}"
        ))
    } else {
        Ok(())
    }
}

async fn send(
    tx: &mpsc::Sender<Result<pb::ControllerMessage, Status>>,
    body: pb::controller_message::Body,
) -> Result<(), String> {
    tx.send(Ok(msg(body)))
        .await
        .map_err(|_| "the agent went away".to_string())
}

/// A checkpoint message → the signed checkpoint (`encoded`; the other fields must agree).
fn pb_checkpoint(c: &pb::Checkpoint) -> Result<Checkpoint, String> {
    if c.encoded.len() != CHECKPOINT_LEN {
        return Err(format!(
            "checkpoint of {} bytes, expected {CHECKPOINT_LEN}",
            c.encoded.len()
        ));
    }
    let cp = Checkpoint::decode(&c.encoded).map_err(|e| e.to_string())?;
    if cp.enclave != EnclaveId::from_name(&c.enclave_id)
        || cp.first_seq != c.first_seq
        || cp.last_seq != c.last_seq
    {
        return Err("checkpoint fields disagree with its signed encoding".into());
    }
    Ok(cp)
}

fn digest_of(
    id: &str,
    key_hex: &str,
    cp: &Checkpoint,
    span: &[(UsageReport, f64)],
    replayed: bool,
) -> UsageDigest {
    let leaves: Vec<[u8; 32]> = span.iter().map(|(r, _)| leaf_hash(&r.encode())).collect();
    let n = span.len().max(1) as f64;
    UsageDigest {
        enclave: id.to_string(),
        key: key_hex.to_string(),
        first_seq: cp.first_seq,
        last_seq: cp.last_seq,
        prev_head: hex::encode(cp.prev_head),
        head: hex::encode(cp.head),
        samples_root: hex::encode(root_of(&leaves)),
        checkpoint: hex::encode(cp.encode()),
        cpu_millicores_avg: (span
            .iter()
            .map(|(r, _)| rates_of(r).cpu_millicores)
            .sum::<f64>()
            / n)
            .round(),
        mem_bytes_max: span.iter().map(|(r, _)| r.mem_bytes).max().unwrap_or(0),
        net_tx_bytes: span.iter().map(|(r, _)| r.net_tx_bytes).sum(),
        net_rx_bytes: span.iter().map(|(r, _)| r.net_rx_bytes).sum(),
        divergence_pct_max: span.iter().map(|(_, d)| *d).fold(0.0, f64::max).round(),
        replayed,
    }
}
