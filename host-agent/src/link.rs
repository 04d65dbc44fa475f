//! The agent's side of the attestation stream (DESIGN.md §4): connects to any controller,
//! relays each enclave's evidence and sealed usage reports, receives plans.
//!
//! Failure rules:
//! - a broken stream or an unreachable controller → the next controller in the list, at once;
//!   once every controller was tried, a capped exponential back-off with jitter
//!   ([`crate::reconnect`]); one outage is one [`LinkEvent::Down`], however many attempts fail,
//!   and the agent keeps enforcing its last plan meanwhile (Down changes nothing it enforces);
//! - reports not yet acknowledged as committed are kept (bounded: [`REPLAY_MAX`] per
//!   enclave, oldest dropped first) and replayed to the next controller with the checkpoints
//!   that cover them, so the log has no gap and — since controllers skip spans they already
//!   confirmed — no duplicate;
//! - back-pressure: the stream's send queue is bounded, and a controller that cannot commit
//!   stops reading the stream (HTTP/2 flow control) rather than ending it. The agent's loop
//!   hands windows over with `try_send`; a tick it cannot hand over is not sealed (no sequence
//!   number is spent) and its usage goes with the next window, which starts where the last one
//!   handed over ended — so the send rate drops while acks lag, memory never grows, and no
//!   usage is lost short of a 60 s stall (then it is given up with a warning; the usage chain
//!   stays intact either way).

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::time::Duration;

use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::transport::{Channel, Endpoint};
use tribune_attest::usage::{self, Checkpoint, EnclaveId, GPU_UTIL_BP_MAX, MsgCounts, UsageSample};
use tribune_proto::v1 as pb;
use tribune_proto::v1::attestation_service_client::AttestationServiceClient;

use crate::collector::UsageWindow;
use crate::link_error::LinkError;
use crate::link_messages::{LinkEvent, ToLink};
use crate::plan::LaunchSpec;
use crate::reconnect::{self, Reconnect};
use crate::sim_tee::SimTee;

/// Reports kept per enclave until a controller acknowledges them (60 s at 100 ms).
pub const REPLAY_MAX: usize = 600;
/// Reports per checkpoint (1 s at 100 ms).
pub const CHECKPOINT_EVERY: u32 = 10;
/// Outbound messages queued on one stream.
pub use crate::link_plan::plan_from_pb;

const SEND_QUEUE: usize = 64;
const CONNECT_TIMEOUT: Duration = Duration::from_millis(500);
const CHALLENGE_TIMEOUT: Duration = Duration::from_secs(3);
const MESSAGE_BYTES_MAX: usize = 8 << 20;

/// How the link connects.
#[derive(Clone, Debug)]
pub struct LinkConfig {
    pub host_id: String,
    /// This agent's peer address for other hosts' agents (`--peer-listen`), said in every
    /// `Hello`; empty: none.
    pub peer_addr: String,
    pub controllers: Vec<String>,
    pub can_enforce: bool,
    pub enforce_problem: String,
    /// What the host can give enclaves, said in every `Hello` (`capacity.rs`).
    pub capacity: crate::capacity::HostCapacity,
    /// The host's placement labels, said in every `Hello`.
    pub labels: BTreeMap<String, String>,
    /// Builds the channel to a controller (TLS lives here); `None`: plain text (`--insecure`).
    /// The latest value is read at each connect: a certificate reload (SIGHUP) reaches the
    /// next connection, the open stream stays on the one it has.
    pub tls: Option<tokio::sync::watch::Receiver<tonic::transport::ClientTlsConfig>>,
}

/// A sealed report kept until acknowledged, in the form it is sent.
pub struct Buffered {
    pub seq: u64,
    pub msg: pb::UsageReport,
}

/// Reports and checkpoints kept until a controller acknowledges them (public for the
/// deterministic simulation in `tribune-chaos`, which drives this very buffer).
#[derive(Default)]
pub struct Replay {
    reports: BTreeMap<String, VecDeque<Buffered>>,
    checkpoints: BTreeMap<String, VecDeque<Checkpoint>>,
}

impl Replay {
    pub fn push(&mut self, enclave: &str, b: Buffered) {
        let q = self.reports.entry(enclave.to_string()).or_default();
        debug_assert!(
            q.back().is_none_or(|last| last.seq < b.seq),
            "{enclave}: usage seq {} buffered after {:?}",
            b.seq,
            q.back().map(|last| last.seq)
        );
        if q.len() >= REPLAY_MAX {
            q.pop_front();
        }
        q.push_back(b);
    }

    pub fn push_checkpoint(&mut self, enclave: &str, cp: Checkpoint) {
        let q = self.checkpoints.entry(enclave.to_string()).or_default();
        // Spans in order: each starts right after the one before, and none is empty.
        debug_assert!(
            cp.first_seq <= cp.last_seq
                && q.back()
                    .is_none_or(|prev| prev.last_seq + 1 == cp.first_seq),
            "{enclave}: span {}..={} buffered after {:?}",
            cp.first_seq,
            cp.last_seq,
            q.back().map(|prev| prev.first_seq..=prev.last_seq)
        );
        if q.len() >= REPLAY_MAX {
            q.pop_front();
        }
        q.push_back(cp);
    }

    pub fn ack(&mut self, enclave: &str, seq: u64) {
        if let Some(q) = self.reports.get_mut(enclave) {
            while q.front().is_some_and(|b| b.seq <= seq) {
                q.pop_front();
            }
        }
        if let Some(q) = self.checkpoints.get_mut(enclave) {
            while q.front().is_some_and(|c| c.last_seq <= seq) {
                q.pop_front();
            }
        }
    }

    pub fn forget(&mut self, enclave: &str) {
        self.reports.remove(enclave);
        self.checkpoints.remove(enclave);
    }

    pub fn batch(&self) -> Option<pb::ReplayBatch> {
        let reports: Vec<pb::UsageReport> = self
            .reports
            .values()
            .flat_map(|q| q.iter().map(|b| b.msg.clone()))
            .collect();
        let checkpoints: Vec<pb::Checkpoint> = self
            .checkpoints
            .iter()
            .flat_map(|(e, q)| q.iter().map(move |c| pb::Checkpoint::of(e, c)))
            .collect();
        (!checkpoints.is_empty()).then_some(pb::ReplayBatch {
            reports,
            checkpoints,
        })
    }
}

fn connect_err(addr: &str, detail: impl std::fmt::Display) -> LinkError {
    LinkError::Connect {
        addr: addr.to_string(),
        detail: detail.to_string(),
    }
}

fn rpc_err(addr: &str, status: tonic::Status) -> LinkError {
    LinkError::Rpc {
        addr: addr.to_string(),
        status,
    }
}

fn agent_msg(body: pb::agent_message::Body) -> pb::AgentMessage {
    pb::AgentMessage { body: Some(body) }
}

/// A window in the attestation crate's terms: what the enclave's TEE seals.
fn attest_sample(w: &UsageWindow) -> UsageSample {
    UsageSample {
        window_start_ns: w.start_unix_ns,
        window_len_ns: w.len_ns.max(1),
        cpu_ns: w.cpu_ns,
        mem_bytes: w.mem_bytes,
        net_tx_bytes: w.net_tx_bytes,
        net_rx_bytes: w.net_rx_bytes,
        gpu_util_bp: w.gpu_util_percent.map_or(0, |p| {
            (f64::from(p) * 100.0)
                .round()
                .clamp(0.0, f64::from(GPU_UTIL_BP_MAX)) as u32
        }),
        cpu_wait_ns: w.cpu_wait_ns,
        msgs: MsgCounts {
            sent: w.msgs.sent,
            sent_bytes: w.msgs.sent_bytes,
            refused: w.msgs.refused,
            refused_bytes: w.msgs.refused_bytes,
        },
    }
}

/// The canonical encoding of a window as the host measured it, under the seq of the sealed
/// report it travels with (the controller compares the two: `divergence`).
fn host_view(enclave: &str, seq: u64, s: &UsageSample) -> Vec<u8> {
    usage::UsageReport {
        enclave: EnclaveId::from_name(enclave),
        seq,
        window_start_ns: s.window_start_ns,
        window_len_ns: s.window_len_ns,
        cpu_ns: s.cpu_ns,
        mem_bytes: s.mem_bytes,
        net_tx_bytes: s.net_tx_bytes,
        net_rx_bytes: s.net_rx_bytes,
        gpu_util_bp: s.gpu_util_bp,
        cpu_wait_ns: Some(s.cpu_wait_ns),
        msgs: (!s.msgs.is_empty()).then_some(s.msgs),
    }
    .encode()
    .to_vec()
}

/// The link's state, which outlives any one stream.
struct Link {
    cfg: LinkConfig,
    /// The simulated TEE of each running enclave (of every runtime: relaying a QEMU guest's
    /// own evidence is not built yet).
    tees: BTreeMap<String, SimTee>,
    running: BTreeSet<String>,
    replay: Replay,
    applied_version: u64,
    events: mpsc::Sender<LinkEvent>,
    reconnect: Reconnect,
    nonces: crate::link_migration::MoveNonces,
}

impl Link {
    fn on_enclaves(&mut self, list: Vec<(String, Option<LaunchSpec>)>) -> Vec<String> {
        let now: BTreeSet<String> = list.iter().map(|(n, _)| n.clone()).collect();
        for gone in self.running.difference(&now) {
            self.tees.remove(gone);
            self.replay.forget(gone);
        }
        let mut new = Vec::new();
        for (name, spec) in list {
            if self.tees.contains_key(&name) {
                continue;
            }
            let (cmdline, sim) = match &spec {
                Some(LaunchSpec::Process { cmd, sim, .. }) => (cmd.join(" "), sim.clone()),
                // A built-in guest other than the default counter is part of what runs.
                Some(LaunchSpec::Qemu { args, guest, .. }) => match guest {
                    crate::plan::Guest::Counter => (args.join(" "), None),
                    crate::plan::Guest::Writer { mib } => {
                        (format!("{} guest=writer:{mib}", args.join(" ")), None)
                    }
                },
                None => (String::new(), None),
            };
            let sim = sim.unwrap_or_default();
            self.tees.insert(
                name.clone(),
                SimTee::new(
                    &name,
                    sim.measurement.as_deref(),
                    &cmdline,
                    sim.tamper_evidence_after_s,
                ),
            );
            new.push(name);
        }
        self.running = now;
        new
    }

    fn evidence(&self, names: &[String], nonce: &[u8; 32]) -> Vec<pb::Evidence> {
        names
            .iter()
            .filter_map(|n| self.tees.get(n))
            .map(|e| pb::Evidence {
                enclave_id: e.name().to_string(),
                tee: tribune_attest::TeeKind::Sim.to_string(),
                report: e.evidence(nonce),
                certs: Vec::new(),
                enclave_ed25519: e.ed25519_public().to_vec(),
                enclave_x25519: e.x25519_public().to_vec(),
                rekey_signature: Vec::new(),
            })
            .collect()
    }

    /// Seals this tick's windows, each through its enclave's TEE, and buffers them until
    /// acknowledged; returns what to send live. A window of an enclave without a session yet
    /// is dropped (no seq is spent on it).
    fn seal(&mut self, windows: Vec<UsageWindow>) -> (Vec<pb::UsageReport>, Vec<pb::Checkpoint>) {
        let mut reports = Vec::with_capacity(windows.len());
        let mut checkpoints = Vec::new();
        for w in windows {
            let Some(tee) = self.tees.get_mut(&w.enclave) else {
                continue;
            };
            let sample = attest_sample(&w);
            let Some(s) = tee.seal(&sample) else {
                continue;
            };
            // Where a window's trace starts (sampled here, at the configured ratio); the
            // controllers continue it when the report carries its context.
            let traceparent = if tribune_telemetry::trace::enabled() {
                let span = tracing::info_span!(parent: None, "usage.seal", host = %self.cfg.host_id, enclave = %w.enclave, seq = s.seq);
                tribune_telemetry::trace::traceparent(&span).unwrap_or_default()
            } else {
                String::new()
            };
            let msg = pb::UsageReport {
                enclave_id: w.enclave.clone(),
                report: s.report,
                mac: s.mac,
                host_view: host_view(&w.enclave, s.seq, &sample),
                traceparent,
            };
            reports.push(msg.clone());
            self.replay.push(&w.enclave, Buffered { seq: s.seq, msg });
            if let Some(cp) = s.checkpoint {
                checkpoints.push(pb::Checkpoint::of(&w.enclave, &cp));
                self.replay.push_checkpoint(&w.enclave, cp);
            }
        }
        (reports, checkpoints)
    }

    async fn connect(&self, addr: &str) -> Result<Channel, LinkError> {
        let scheme = if self.cfg.tls.is_some() {
            "https"
        } else {
            "http"
        };
        let url = if addr.contains("://") {
            addr.to_string()
        } else {
            format!("{scheme}://{addr}")
        };
        let mut ep = Endpoint::from_shared(url)
            .map_err(|e| connect_err(addr, e))?
            .connect_timeout(CONNECT_TIMEOUT)
            .tcp_nodelay(true)
            .http2_keep_alive_interval(Duration::from_millis(500))
            .keep_alive_timeout(Duration::from_secs(1))
            .keep_alive_while_idle(true);
        if let Some(tls) = &self.cfg.tls {
            let tls = tls.borrow().clone();
            ep = ep
                .tls_config(tls)
                .map_err(|e| connect_err(addr, format!("tls: {e}")))?;
        }
        ep.connect().await.map_err(|e| connect_err(addr, e))
    }

    /// One stream to one controller, until it breaks or `uplink` closes (Ok).
    async fn stream(
        &mut self,
        addr: &str,
        uplink: &mut mpsc::Receiver<ToLink>,
    ) -> Result<(), LinkError> {
        let channel = self.connect(addr).await?;
        let mut client = AttestationServiceClient::new(channel)
            .max_decoding_message_size(MESSAGE_BYTES_MAX)
            .max_encoding_message_size(MESSAGE_BYTES_MAX);
        let (tx, rx) = mpsc::channel(SEND_QUEUE);
        let hello = pb::Hello {
            host_id: self.cfg.host_id.clone(),
            applied_plan_version: self.applied_version,
            enclave_ids: self.running.iter().cloned().collect(),
            can_enforce: self.cfg.can_enforce,
            enforce_problem: self.cfg.enforce_problem.clone(),
            capacity: Some(pb::HostCapacity {
                cpu_millicores: self.cfg.capacity.cpu_millicores,
                memory_bytes: self.cfg.capacity.memory_bytes,
                egress_bits_per_sec: self.cfg.capacity.egress_bits_per_sec,
                ingress_bits_per_sec: self.cfg.capacity.ingress_bits_per_sec,
                gpu_percent: self.cfg.capacity.gpu_percent,
                tee: self.cfg.capacity.tee.clone(),
                tee_generation: self.cfg.capacity.tee_generation,
            }),
            labels: self.cfg.labels.clone().into_iter().collect(),
            peer_addr: self.cfg.peer_addr.clone(),
        };
        tx.send(agent_msg(pb::agent_message::Body::Hello(hello)))
            .await
            .map_err(|_| LinkError::Closed)?;
        let mut inbound = client
            .attest(ReceiverStream::new(rx))
            .await
            .map_err(|status| rpc_err(addr, status))?
            .into_inner();
        let first = tokio::time::timeout(CHALLENGE_TIMEOUT, inbound.message())
            .await
            .map_err(|_| LinkError::NoChallenge {
                addr: addr.to_string(),
                timeout: CHALLENGE_TIMEOUT,
            })?
            .map_err(|status| rpc_err(addr, status))?;
        let challenge = match first.and_then(|m| m.body) {
            Some(pb::controller_message::Body::Challenge(c)) => c,
            Some(pb::controller_message::Body::Goodbye(g)) => {
                return Err(LinkError::Refused(g.reason));
            }
            _ => {
                return Err(LinkError::NotAChallenge {
                    addr: addr.to_string(),
                });
            }
        };
        let nonce: [u8; 32] =
            challenge
                .nonce
                .as_slice()
                .try_into()
                .map_err(|_| LinkError::KeyLength {
                    what: "challenge nonce",
                })?;
        let eph: [u8; 32] = challenge
            .controller_x25519
            .as_slice()
            .try_into()
            .map_err(|_| LinkError::KeyLength {
                what: "challenge key",
            })?;
        tracing::info!(controller = %addr, id = challenge.controller_id, "attestation stream up");
        let names: Vec<String> = self.tees.keys().cloned().collect();
        self.start_sessions(&names, &nonce, &eph, &tx).await?;
        // Close every open span so all buffered reports are covered, then replay them.
        for (name, tee) in self.tees.iter_mut() {
            if let Some(cp) = tee.checkpoint_now() {
                self.replay.push_checkpoint(name, cp);
            }
        }
        if let Some(batch) = self.replay.batch() {
            tx.send(agent_msg(pb::agent_message::Body::Replay(batch)))
                .await
                .map_err(|_| LinkError::Closed)?;
        }
        if self.reconnect.up() {
            tracing::info!(controller = %addr, "controller link restored");
        }
        let _ = self.events.send(LinkEvent::Up).await;
        loop {
            tokio::select! {
                m = inbound.message() => {
                    let m = m.map_err(|status| rpc_err(addr, status))?;
                    let Some(m) = m else {
                        return Err(LinkError::Ended { addr: addr.to_string() });
                    };
                    self.on_controller(m, &nonce, &eph, &tx).await?;
                }
                u = uplink.recv() => {
                    let Some(u) = u else { return Ok(()) };
                    self.on_uplink(u, Some((&tx, &nonce, &eph))).await?;
                }
            }
        }
    }

    /// Starts (or re-keys) the usage sessions of `names` on a new stream: enclaves that already
    /// had a session (attested before, this is a controller change) send only their signature
    /// over the new exchange; the others send evidence.
    async fn start_sessions(
        &mut self,
        names: &[String],
        nonce: &[u8; 32],
        eph: &[u8; 32],
        tx: &mpsc::Sender<pb::AgentMessage>,
    ) -> Result<(), LinkError> {
        let mut fresh = Vec::new();
        let mut rekeys = Vec::new();
        for n in names {
            let Some(e) = self.tees.get_mut(n) else {
                continue;
            };
            let had_session = e.has_session();
            if let Err(err) = e.start_session(nonce, eph, CHECKPOINT_EVERY) {
                tracing::warn!(enclave = %n, "cannot start a usage session: {err}");
                continue;
            }
            if had_session {
                rekeys.push(pb::Evidence {
                    enclave_id: n.clone(),
                    tee: tribune_attest::TeeKind::Sim.to_string(),
                    report: Vec::new(),
                    certs: Vec::new(),
                    enclave_ed25519: e.ed25519_public().to_vec(),
                    enclave_x25519: e.x25519_public().to_vec(),
                    rekey_signature: e.rekey_signature(nonce, eph).to_vec(),
                });
            } else {
                fresh.push(n.clone());
            }
        }
        let mut evidence = self.evidence(&fresh, nonce);
        evidence.extend(rekeys);
        if evidence.is_empty() {
            return Ok(());
        }
        tx.send(agent_msg(pb::agent_message::Body::Evidence(
            pb::EvidenceBatch { evidence },
        )))
        .await
        .map_err(|_| LinkError::Closed)
    }

    async fn on_controller(
        &mut self,
        m: pb::ControllerMessage,
        _nonce: &[u8; 32],
        _eph: &[u8; 32],
        tx: &mpsc::Sender<pb::AgentMessage>,
    ) -> Result<(), LinkError> {
        use pb::controller_message::Body;
        if let Some(body) = &m.body
            && let Some(ev) = crate::link_migration::event_from_pb(body)
        {
            self.nonces.note(body);
            match ev {
                Ok(ev) => {
                    let _ = self.events.send(ev).await;
                }
                Err(e) => tracing::warn!("migration step refused: {e}"),
            }
            return Ok(());
        }
        match m.body {
            Some(Body::Plan(p)) => match plan_from_pb(&p) {
                Ok(plan) => {
                    // The agent's side of the decision's trace: the plan's application and
                    // each cgroup write in it.
                    let span = if tribune_telemetry::trace::enabled() {
                        let s = tracing::info_span!("agent.plan_apply", host = %self.cfg.host_id, version = p.version);
                        tribune_telemetry::trace::set_parent(&s, &p.traceparent);
                        s
                    } else {
                        tracing::Span::none()
                    };
                    let _ = self.events.send(LinkEvent::Plan(plan, span)).await;
                }
                Err(e) => {
                    tracing::warn!(version = p.version, "plan refused: {e}");
                    let ack = pb::PlanAck {
                        version: p.version,
                        error: e.to_string(),
                        refused: Vec::new(),
                    };
                    let _ = tx
                        .send(agent_msg(pb::agent_message::Body::PlanAck(ack)))
                        .await;
                }
            },
            Some(Body::AttestNow(a)) => {
                let nonce: [u8; 32] =
                    a.nonce
                        .as_slice()
                        .try_into()
                        .map_err(|_| LinkError::KeyLength {
                            what: "attest-now nonce",
                        })?;
                let evidence = self.evidence(&a.enclave_ids, &nonce);
                if !evidence.is_empty() {
                    tx.send(agent_msg(pb::agent_message::Body::Evidence(
                        pb::EvidenceBatch { evidence },
                    )))
                    .await
                    .map_err(|_| LinkError::Closed)?;
                }
            }
            Some(Body::UsageAcks(a)) => {
                for ack in a.acks {
                    self.replay.ack(&ack.enclave_id, ack.confirmed_seq);
                }
            }
            Some(Body::Goodbye(g)) => return Err(LinkError::Goodbye(g.reason)),
            Some(Body::Verdicts(_))
            | Some(Body::Credit(_))
            | Some(Body::Challenge(_))
            | Some(Body::MigrateIn(_))
            | Some(Body::MigrateOut(_))
            | Some(Body::MigrationEnd(_))
            | None => {}
        }
        Ok(())
    }

    async fn on_uplink(
        &mut self,
        u: ToLink,
        live: Option<(&mpsc::Sender<pb::AgentMessage>, &[u8; 32], &[u8; 32])>,
    ) -> Result<(), LinkError> {
        match u {
            ToLink::Windows(w) => {
                let (reports, checkpoints) = self.seal(w);
                if let Some((tx, ..)) = live {
                    if !reports.is_empty() {
                        tx.send(agent_msg(pb::agent_message::Body::Usage(pb::UsageBatch {
                            reports,
                        })))
                        .await
                        .map_err(|_| LinkError::Closed)?;
                    }
                    if !checkpoints.is_empty() {
                        tx.send(agent_msg(pb::agent_message::Body::Checkpoints(
                            pb::CheckpointBatch { checkpoints },
                        )))
                        .await
                        .map_err(|_| LinkError::Closed)?;
                    }
                }
            }
            ToLink::Enclaves(list) => {
                let new = self.on_enclaves(list);
                if let Some((tx, nonce, eph)) = live
                    && !new.is_empty()
                {
                    self.start_sessions(&new, nonce, eph, tx).await?;
                }
            }
            ToLink::Applied {
                version,
                error,
                refused,
            } => {
                if error.is_none() {
                    self.applied_version = self.applied_version.max(version);
                }
                if let Some((tx, ..)) = live {
                    let ack = pb::PlanAck {
                        version,
                        error: error.unwrap_or_default(),
                        refused: refused
                            .into_iter()
                            .map(|r| pb::LaunchRefusal {
                                enclave_id: r.enclave,
                                reason: r.error,
                            })
                            .collect(),
                    };
                    tx.send(agent_msg(pb::agent_message::Body::PlanAck(ack)))
                        .await
                        .map_err(|_| LinkError::Closed)?;
                }
            }
            ToLink::Migration(r) => {
                if let Some((tx, stream_nonce, _)) = live {
                    // A target's `ready` carries the waiting VM's evidence, bound to the
                    // migration's fresh nonce.
                    let evidence = self
                        .nonces
                        .for_report(&r, stream_nonce)
                        .and_then(|n| self.evidence(std::slice::from_ref(&r.enclave), &n).pop());
                    let mut p = crate::link_migration::progress_to_pb(r);
                    p.evidence = evidence;
                    tx.send(agent_msg(pb::agent_message::Body::MigrationProgress(p)))
                        .await
                        .map_err(|_| LinkError::Closed)?;
                }
            }
        }
        Ok(())
    }
}

/// Runs the link until `uplink` closes: connects, streams, fails over.
pub async fn run(
    cfg: LinkConfig,
    mut uplink: mpsc::Receiver<ToLink>,
    events: mpsc::Sender<LinkEvent>,
) {
    if cfg.controllers.is_empty() {
        return;
    }
    let mut link = Link {
        cfg,
        tees: BTreeMap::new(),
        running: BTreeSet::new(),
        replay: Replay::default(),
        applied_version: 0,
        events,
        reconnect: Reconnect::new(),
        nonces: Default::default(),
    };
    let mut next = 0usize;
    let mut failures = 0usize;
    loop {
        let addr = link.cfg.controllers[next % link.cfg.controllers.len()].clone();
        next += 1;
        match link.stream(&addr, &mut uplink).await {
            Ok(()) => return,
            Err(e) => {
                if link.reconnect.failed() {
                    tracing::warn!(controller = %addr, "attestation stream: {e}; link down");
                    let _ = link.events.send(LinkEvent::Down).await;
                } else {
                    tracing::debug!(controller = %addr, "attestation stream: {e}");
                }
                failures += 1;
            }
        }
        // After a full round of failures, back off — while still sealing and buffering the
        // windows the agent hands over, so nothing is lost while no controller answers.
        if failures.is_multiple_of(link.cfg.controllers.len()) {
            let pause = tokio::time::sleep(link.reconnect.next_pause(reconnect::jitter()));
            tokio::pin!(pause);
            loop {
                tokio::select! {
                    _ = &mut pause => break,
                    u = uplink.recv() => match u {
                        None => return,
                        Some(u) => { let _ = link.on_uplink(u, None).await; }
                    },
                }
            }
        }
    }
}

#[cfg(test)]
#[path = "link_tests.rs"]
mod tests;
