//! One controller: its Raft instance, its stores, the write batcher and the server that carries
//! gRPC (Raft transport, control API) and HTTP/JSON on one listener.
//!
//! Writes: any controller accepts them. The leader groups concurrent writes into one Raft entry
//! (group commit); a follower forwards to the leader over `RaftService.Forward`. Reads are
//! linearizable by default: the leader confirms its leadership with a quorum (read index), a
//! follower asks the leader for the read index and waits until it has applied that far.

use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, Weak};
use std::time::{Duration, Instant};

use openraft::error::{ClientWriteError, RaftError};
use openraft::{ChangeMembers, Config, ServerState, SnapshotPolicy};
use serde::{Deserialize, Serialize};
use tokio::sync::{mpsc, oneshot, watch};
use tribune_proto::v1::{RaftPayload, ReadIndexRequest};

use crate::error::ControllerError;
use crate::integrity::Gate;
use crate::log_key::LogSigner;
use crate::raft::log_store::{LogStore, RAFT_DIR};
use crate::raft::network::{NetworkFactory, Peers};
use crate::raft::state_machine::{SharedState, StateMachineStore};
use crate::raft::{Node, NodeId, Raft};
use crate::state::{Command, Outcome};
use crate::tls::{ControllerTls, TlsFiles};
use crate::validate::PolicyValidator;

/// Start-up configuration of one controller.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ControllerConfig {
    pub id: NodeId,
    /// Address to bind (gRPC and HTTP share it).
    pub listen: SocketAddr,
    /// Address the other controllers and clients use; defaults to `listen`.
    #[serde(default)]
    pub advertise: Option<String>,
    /// Initial cluster: id → address, this node included or not. The lowest id initialises.
    #[serde(default)]
    pub peers: BTreeMap<NodeId, String>,
    pub data_dir: PathBuf,
    /// Initialise a single-node cluster even without peers.
    #[serde(default)]
    pub init: bool,
    #[serde(default = "defaults::heartbeat_ms")]
    pub heartbeat_ms: u64,
    #[serde(default = "defaults::election_timeout_ms")]
    pub election_timeout_ms: u64,
    /// Build a snapshot after this many log entries.
    #[serde(default = "defaults::snapshot_every")]
    pub snapshot_every: u64,
    /// Entries kept in the log behind the snapshot (for followers slightly behind).
    #[serde(default = "defaults::keep_logs")]
    pub keep_logs: u64,
    /// How long a write or a linearizable read may wait for a leader before giving up with 503.
    #[serde(default = "defaults::request_timeout_ms")]
    pub request_timeout_ms: u64,
    /// Accept simulated-TEE evidence from agents (`tribune dev`; never in production).
    #[serde(default)]
    pub allow_sim_evidence: bool,
    /// mTLS on every link: the CA bundle, this controller's certificate and its key.
    #[serde(default)]
    pub tls: Option<TlsFiles>,
    /// Run without TLS (plain-text gRPC and HTTP). Required, explicitly, when `tls` is absent.
    #[serde(default)]
    pub insecure: bool,
}

mod defaults {
    pub fn heartbeat_ms() -> u64 {
        50
    }
    pub fn election_timeout_ms() -> u64 {
        250
    }
    pub fn snapshot_every() -> u64 {
        5000
    }
    pub fn keep_logs() -> u64 {
        1000
    }
    pub fn request_timeout_ms() -> u64 {
        3000
    }
}

impl ControllerConfig {
    pub fn new(id: NodeId, listen: SocketAddr, data_dir: PathBuf) -> Self {
        Self {
            id,
            listen,
            advertise: None,
            peers: BTreeMap::new(),
            data_dir,
            init: false,
            heartbeat_ms: defaults::heartbeat_ms(),
            election_timeout_ms: defaults::election_timeout_ms(),
            snapshot_every: defaults::snapshot_every(),
            keep_logs: defaults::keep_logs(),
            request_timeout_ms: defaults::request_timeout_ms(),
            allow_sim_evidence: false,
            tls: None,
            insecure: false,
        }
    }

    /// Loads the TLS material, or checks that plain text was asked for explicitly.
    pub fn transport(&self) -> Result<Option<ControllerTls>, ControllerError> {
        match (&self.tls, self.insecure) {
            (Some(_), true) => Err(ControllerError::Invalid(
                "both TLS files and insecure are set: choose one".into(),
            )),
            (Some(files), false) => {
                let tls = ControllerTls::load(files, self.id)?;
                tls.check_advertised(&self.advertised())?;
                Ok(Some(tls))
            }
            (None, true) => Ok(None),
            (None, false) => Err(ControllerError::Invalid(format!(
                "no TLS certificate: create a CA with `tribune ca init --dir DIR`, issue this controller's certificate with `tribune ca issue controller {id} --dir DIR`, then pass `--tls-dir DIR` (or --ca/--cert/--key); `--insecure` runs without TLS",
                id = self.id
            ))),
        }
    }

    pub fn advertised(&self) -> String {
        self.advertise
            .clone()
            .unwrap_or_else(|| self.listen.to_string())
    }

    fn raft_config(&self) -> Result<Config, ControllerError> {
        let c = Config {
            cluster_name: "tribune".into(),
            heartbeat_interval: self.heartbeat_ms,
            election_timeout_min: self.election_timeout_ms,
            election_timeout_max: self.election_timeout_ms * 2,
            snapshot_policy: SnapshotPolicy::LogsSinceLast(self.snapshot_every),
            max_in_snapshot_log_to_keep: self.keep_logs,
            // Entries are batches of up to ~1 MiB: a bounded number per AppendEntries keeps each
            // RPC well inside its (size-proportional) timeout.
            max_payload_entries: 32,
            // Chunks travel as JSON (about 3.5 bytes per byte): 1 MiB chunks keep each
            // InstallSnapshot RPC well inside its timeout on a loaded machine.
            snapshot_max_chunk_size: 1024 * 1024,
            install_snapshot_timeout: 3000,
            ..Default::default()
        };
        c.validate()
            .map_err(|e| ControllerError::Invalid(format!("raft configuration: {e}")))
    }
}

mod batch;
pub mod read;

use batch::{Pending, SubmitError, WRITE_QUEUE_MAX, batch_writes};
use read::Restored;

/// Requests a follower hands to the leader.
#[derive(Debug, Serialize, Deserialize)]
pub enum Forwarded {
    Write(Vec<Command>),
    AddMember {
        id: NodeId,
        addr: String,
        voter: bool,
    },
    Promote {
        id: NodeId,
    },
    RemoveMember {
        id: NodeId,
    },
}

/// One controller's own view, served by `RaftService.Status`.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct NodeStatus {
    pub id: NodeId,
    pub addr: String,
    pub state: String,
    pub term: u64,
    pub leader: Option<NodeId>,
    pub last_log_index: Option<u64>,
    pub last_applied: Option<u64>,
    pub snapshot_index: Option<u64>,
    pub purged_index: Option<u64>,
    /// Only the leader knows it: the highest index stored on a quorum of voters.
    pub commit_index: Option<u64>,
}

pub struct Controller {
    pub id: NodeId,
    pub addr: String,
    pub raft: Raft,
    pub state: SharedState,
    pub peers: Peers,
    pub config: ControllerConfig,
    pub validator: Arc<dyn PolicyValidator>,
    /// This controller's tree-head signing key (`crate::log_key`).
    pub log_signer: Arc<LogSigner>,
    /// `None` only when the controller runs `--insecure`.
    pub tls: Option<ControllerTls>,
    /// Whether this controller may serve what it holds (`crate::integrity`).
    pub integrity: Arc<Gate>,
    applied: watch::Receiver<u64>,
    writes: mpsc::Sender<Pending>,
    /// What the log held at start, for the read index of a restored leader ([`read`]).
    restored: Restored,
}

impl Controller {
    /// Opens storage and starts Raft. Does not start serving: see [`crate::server::serve`].
    pub async fn open(
        config: ControllerConfig,
        validator: Arc<dyn PolicyValidator>,
    ) -> Result<Arc<Self>, ControllerError> {
        let raft_config = Arc::new(config.raft_config()?);
        let log_signer = Arc::new(LogSigner::load_or_create(&config.data_dir, config.id)?);
        let tls = config.transport()?;
        // Every page and record is checked on the way in: a damaged file stops the start with
        // ControllerError::Integrity naming it (crate::integrity).
        let integrity = Arc::new(Gate::new());
        let log = LogStore::open_dir(&config.data_dir.join(RAFT_DIR))?;
        let (sm, state, applied) = StateMachineStore::open(log.clone(), integrity.clone())?;
        let restored = Restored::read(config.id, &log).await?;
        let peers = Peers::new(tls.as_ref().map(|t| t.client.clone()));
        let raft = Raft::new(
            config.id,
            raft_config,
            NetworkFactory {
                peers: peers.clone(),
            },
            log,
            sm,
        )
        .await
        .map_err(|e| ControllerError::Internal(format!("starting raft: {e}")))?;

        let (tx, rx) = mpsc::channel(WRITE_QUEUE_MAX);
        let controller = Arc::new(Self {
            id: config.id,
            addr: config.advertised(),
            raft: raft.clone(),
            state,
            peers,
            config,
            validator,
            log_signer,
            tls,
            integrity,
            applied,
            writes: tx,
            restored,
        });
        tokio::spawn(batch_writes(raft, rx));
        tokio::spawn(register_log_key(Arc::downgrade(&controller)));
        tokio::spawn(crate::integrity::peers::watch(Arc::downgrade(&controller)));
        Ok(controller)
    }

    /// Initialises the cluster if this node is the one to do it and nothing is initialised yet.
    pub async fn bootstrap(&self) -> Result<(), ControllerError> {
        let initialized = self
            .raft
            .is_initialized()
            .await
            .map_err(|e| ControllerError::Internal(e.to_string()))?;
        if initialized {
            return Ok(());
        }
        let mut members: BTreeMap<NodeId, Node> = self
            .config
            .peers
            .iter()
            .map(|(id, addr)| (*id, Node { addr: addr.clone() }))
            .collect();
        let lowest = members
            .keys()
            .copied()
            .chain(std::iter::once(self.id))
            .min();
        let should_init = self.config.init || (!members.is_empty() && lowest == Some(self.id));
        if !should_init {
            tracing::info!("waiting to be initialised by the lowest-id peer or added to a cluster");
            return Ok(());
        }
        members.insert(
            self.id,
            Node {
                addr: self.addr.clone(),
            },
        );
        tracing::info!(members = ?members.keys().collect::<Vec<_>>(), "initialising cluster");
        match self.raft.initialize(members).await {
            Ok(()) => Ok(()),
            // Another start of this node already did it.
            Err(RaftError::APIError(openraft::error::InitializeError::NotAllowed(_))) => Ok(()),
            Err(e) => Err(ControllerError::Internal(format!(
                "initialising the cluster: {e}"
            ))),
        }
    }

    fn timeout(&self) -> Duration {
        Duration::from_millis(self.config.request_timeout_ms)
    }

    /// Fires after every applied log entry (with the last applied index).
    pub fn subscribe_applied(&self) -> watch::Receiver<u64> {
        self.applied.clone()
    }

    /// The current leader's id and address, as this node believes.
    pub fn leader(&self) -> Option<(NodeId, String)> {
        // Called on every request: read the metrics in place, do not copy them.
        let metrics = self.raft.metrics();
        let m = metrics.borrow();
        let id = m.current_leader?;
        let addr = m
            .membership_config
            .membership()
            .get_node(&id)
            .map(|n| n.addr.clone())?;
        Some((id, addr))
    }

    /// Waits until the leader changes or `dur` passes.
    async fn wait_for_leader_change(&self, dur: Duration) {
        let mut rx = self.raft.metrics();
        let before = rx.borrow().current_leader;
        let _ = tokio::time::timeout(dur, rx.wait_for(|m| m.current_leader != before)).await;
    }

    /// Writes commands through Raft from any controller. Outcomes are in command order.
    pub async fn write(&self, cmds: Vec<Command>) -> Result<Vec<Outcome>, ControllerError> {
        match self.forwardable(Forwarded::Write(cmds)).await? {
            ForwardReply::Outcomes(o) => Ok(o),
            ForwardReply::Done => Err(ControllerError::Internal(
                "leader answered a write without outcomes".into(),
            )),
        }
    }

    /// Runs a request on the leader: here if this node leads, else forwarded.
    pub async fn forwardable(&self, req: Forwarded) -> Result<ForwardReply, ControllerError> {
        let deadline = Instant::now() + self.timeout();
        loop {
            match self.leader() {
                Some((id, _)) if id == self.id => match self.run_on_leader(&req, deadline).await {
                    Err(LeaderError::NotLeader) => {}
                    Err(LeaderError::Failed(e)) => return Err(e),
                    Ok(r) => return Ok(r),
                },
                Some((_, addr)) => match self.forward(&addr, &req, deadline).await {
                    Err(ForwardFailure::NotSent(reason)) => {
                        tracing::debug!(%reason, "forwarding failed before sending; retrying");
                    }
                    Err(ForwardFailure::Failed(e)) => return Err(e),
                    Ok(r) => return Ok(r),
                },
                None => {}
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Err(ControllerError::NoLeader {
                    retry_after_ms: 1000,
                });
            }
            self.wait_for_leader_change(left.min(Duration::from_millis(100)))
                .await;
        }
    }

    /// Serves a forwarded request (this node believes it leads).
    pub async fn serve_forwarded(&self, req: Forwarded) -> Result<ForwardReply, ControllerError> {
        let deadline = Instant::now() + self.timeout();
        match self.run_on_leader(&req, deadline).await {
            Ok(r) => Ok(r),
            Err(LeaderError::NotLeader) => Err(ControllerError::NotLeader { id: self.id }),
            Err(LeaderError::Failed(e)) => Err(e),
        }
    }

    async fn run_on_leader(
        &self,
        req: &Forwarded,
        deadline: Instant,
    ) -> Result<ForwardReply, LeaderError> {
        let left = deadline.saturating_duration_since(Instant::now());
        let timed_out = |what: &str| {
            LeaderError::Failed(ControllerError::OutcomeUnknown {
                reason: format!(
                    "{what} not committed within {} ms",
                    self.config.request_timeout_ms
                ),
            })
        };
        match req {
            Forwarded::Write(cmds) => {
                let mut rxs = Vec::with_capacity(cmds.len());
                for cmd in cmds {
                    let (reply, rx) = oneshot::channel();
                    self.writes
                        .send(Pending {
                            cmd: cmd.clone(),
                            reply,
                        })
                        .await
                        .map_err(|_| {
                            LeaderError::Failed(ControllerError::Internal(
                                "write batcher stopped".into(),
                            ))
                        })?;
                    rxs.push(rx);
                }
                let mut outcomes = Vec::with_capacity(rxs.len());
                for rx in rxs {
                    let left = deadline.saturating_duration_since(Instant::now());
                    match tokio::time::timeout(left, rx).await {
                        Err(_) => return Err(timed_out("the write was")),
                        Ok(Err(_)) => {
                            return Err(LeaderError::Failed(ControllerError::Internal(
                                "write dropped".into(),
                            )));
                        }
                        Ok(Ok(Err(SubmitError::NotLeader))) => return Err(LeaderError::NotLeader),
                        Ok(Ok(Err(SubmitError::Failed(e)))) => {
                            return Err(LeaderError::Failed(ControllerError::OutcomeUnknown {
                                reason: e,
                            }));
                        }
                        Ok(Ok(Ok(o))) => outcomes.push(o),
                    }
                }
                Ok(ForwardReply::Outcomes(outcomes))
            }
            Forwarded::AddMember { id, addr, voter } => {
                let node = Node { addr: addr.clone() };
                let r = tokio::time::timeout(left, self.raft.add_learner(*id, node, true))
                    .await
                    .map_err(|_| timed_out("adding the learner was"))?;
                membership_result(r)?;
                if *voter {
                    self.change_membership(
                        ChangeMembers::AddVoterIds(BTreeSet::from([*id])),
                        deadline,
                    )
                    .await?;
                }
                Ok(ForwardReply::Done)
            }
            Forwarded::Promote { id } => {
                self.change_membership(ChangeMembers::AddVoterIds(BTreeSet::from([*id])), deadline)
                    .await?;
                Ok(ForwardReply::Done)
            }
            Forwarded::RemoveMember { id } => {
                let membership = self.raft.metrics().borrow().membership_config.clone();
                let is_voter = membership.membership().voter_ids().any(|v| v == *id);
                if membership.membership().get_node(id).is_none() {
                    return Err(LeaderError::Failed(ControllerError::Invalid(format!(
                        "controller {id} is not a member of this cluster"
                    ))));
                }
                // A voter leaves the voter set first (joint consensus), then the node list.
                if is_voter {
                    self.change_membership(
                        ChangeMembers::RemoveVoters(BTreeSet::from([*id])),
                        deadline,
                    )
                    .await?;
                }
                self.change_membership(ChangeMembers::RemoveNodes(BTreeSet::from([*id])), deadline)
                    .await?;
                Ok(ForwardReply::Done)
            }
        }
    }

    /// One membership change on the leader, bounded by the request deadline.
    async fn change_membership(
        &self,
        change: ChangeMembers<NodeId, Node>,
        deadline: Instant,
    ) -> Result<(), LeaderError> {
        let left = deadline.saturating_duration_since(Instant::now());
        let r = tokio::time::timeout(left, self.raft.change_membership(change, false))
            .await
            .map_err(|_| {
                LeaderError::Failed(ControllerError::OutcomeUnknown {
                    reason: format!(
                        "the membership change was not committed within {} ms",
                        self.config.request_timeout_ms
                    ),
                })
            })?;
        membership_result(r)
    }

    async fn forward(
        &self,
        addr: &str,
        req: &Forwarded,
        deadline: Instant,
    ) -> Result<ForwardReply, ForwardFailure> {
        let mut client = self
            .peers
            .client(addr)
            .map_err(|e| ForwardFailure::NotSent(e.to_string()))?;
        let data = serde_json::to_vec(req)
            .map_err(|e| ForwardFailure::Failed(ControllerError::Internal(e.to_string())))?;
        let left = deadline.saturating_duration_since(Instant::now());
        let reply = match tokio::time::timeout(left, client.forward(RaftPayload { data })).await {
            Err(_) => {
                return Err(ForwardFailure::Failed(ControllerError::OutcomeUnknown {
                    reason: format!("the leader at {addr} did not answer in time"),
                }));
            }
            Ok(Err(status)) if is_connect_error(&status) => {
                return Err(ForwardFailure::NotSent(status.to_string()));
            }
            Ok(Err(status)) => {
                return Err(ForwardFailure::Failed(ControllerError::OutcomeUnknown {
                    reason: format!("forwarding to the leader at {addr}: {}", status.message()),
                }));
            }
            Ok(Ok(r)) => r.into_inner(),
        };
        let result: Result<ForwardReply, ControllerError> = serde_json::from_slice(&reply.data)
            .map_err(|e| {
                ForwardFailure::Failed(ControllerError::Internal(format!(
                    "bad reply from leader: {e}"
                )))
            })?;
        match result {
            // The peer was not the leader after all (it stepped down): nothing was proposed.
            Err(e @ ControllerError::NotLeader { .. }) => {
                Err(ForwardFailure::NotSent(e.to_string()))
            }
            Err(e) => Err(ForwardFailure::Failed(e)),
            Ok(r) => Ok(r),
        }
    }

    pub fn status(&self) -> NodeStatus {
        let m = self.raft.metrics().borrow().clone();
        let commit_index = if m.state == ServerState::Leader {
            let voters: Vec<NodeId> = m.membership_config.membership().voter_ids().collect();
            let mut matched: Vec<u64> = voters
                .iter()
                .map(|v| {
                    if *v == self.id {
                        m.last_log_index.unwrap_or(0)
                    } else {
                        m.replication
                            .as_ref()
                            .and_then(|r| r.get(v).cloned().flatten())
                            .map_or(0, |l| l.index)
                    }
                })
                .collect();
            matched.sort_unstable_by(|a, b| b.cmp(a));
            matched.get(voters.len() / 2).copied()
        } else {
            None
        };
        NodeStatus {
            id: self.id,
            addr: self.addr.clone(),
            state: format!("{:?}", m.state).to_lowercase(),
            term: m.current_term,
            leader: m.current_leader,
            last_log_index: m.last_log_index,
            last_applied: m.last_applied.map(|l| l.index),
            snapshot_index: m.snapshot.map(|l| l.index),
            purged_index: m.purged.map(|l| l.index),
            commit_index,
        }
    }

    /// Members from this node's membership config: (id, address, voter).
    pub fn members(&self) -> Vec<(NodeId, String, bool)> {
        let m = self.raft.metrics().borrow().membership_config.clone();
        let voters: BTreeSet<NodeId> = m.membership().voter_ids().collect();
        m.membership()
            .nodes()
            .map(|(id, n)| (*id, n.addr.clone(), voters.contains(id)))
            .collect()
    }

    /// Asks one member for its status (this node answers locally).
    pub async fn member_status(&self, id: NodeId, addr: &str) -> Option<NodeStatus> {
        if id == self.id {
            return Some(self.status());
        }
        let mut client = self.peers.client(addr).ok()?;
        let r = tokio::time::timeout(
            Duration::from_millis(500),
            client.status(ReadIndexRequest {}),
        )
        .await
        .ok()?
        .ok()?;
        serde_json::from_slice(&r.into_inner().data).ok()
    }

    /// Ready: a leader is known and this node has applied what it has.
    pub fn ready(&self) -> Result<(), String> {
        let metrics = self.raft.metrics();
        let m = metrics.borrow();
        if m.current_leader.is_none() {
            return Err("no leader known".into());
        }
        if m.running_state.is_err() {
            return Err("raft has stopped".into());
        }
        Ok(())
    }
}

fn is_connect_error(status: &tonic::Status) -> bool {
    status.code() == tonic::Code::Unavailable && {
        let m = status.message().to_ascii_lowercase();
        m.contains("connect") || m.contains("refused") || m.contains("transport")
    }
}

#[derive(Debug, Serialize, Deserialize)]
pub enum ForwardReply {
    Outcomes(Vec<Outcome>),
    Done,
}

enum LeaderError {
    NotLeader,
    Failed(ControllerError),
}

enum ForwardFailure {
    NotSent(String),
    Failed(ControllerError),
}

fn membership_result<T>(
    r: Result<T, RaftError<NodeId, ClientWriteError<NodeId, Node>>>,
) -> Result<(), LeaderError> {
    match r {
        Ok(_) => Ok(()),
        Err(RaftError::APIError(ClientWriteError::ForwardToLeader(_))) => {
            Err(LeaderError::NotLeader)
        }
        Err(RaftError::APIError(ClientWriteError::ChangeMembershipError(e))) => {
            Err(LeaderError::Failed(ControllerError::Invalid(format!(
                "membership change refused: {e}"
            ))))
        }
        Err(e) => Err(LeaderError::Failed(ControllerError::Internal(
            e.to_string(),
        ))),
    }
}

/// Registers this controller's log signing key in the replicated state, retrying (with backoff)
/// until it is applied or the controller is dropped. Idempotent: a restart finds it registered.
async fn register_log_key(controller: Weak<Controller>) {
    let mut backoff = Duration::from_millis(100);
    loop {
        let Some(c) = controller.upgrade() else {
            return;
        };
        let registered = c
            .state
            .read()
            .map(|s| s.log_keys.contains_key(&c.log_signer.key_id))
            .unwrap_or(false);
        if registered {
            return;
        }
        let cmd = Command::RegisterLogKey {
            node_id: c.id,
            public_key: c.log_signer.public_key.clone(),
            at_ms: std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_millis() as i64),
        };
        match c.write(vec![cmd]).await.map(|mut o| o.pop()) {
            Ok(Some(Outcome::LogKey(k))) => {
                tracing::info!(key_id = %k.key_id, log_index = k.log_index, "log signing key registered");
                return;
            }
            Ok(other) => {
                tracing::error!(outcome = ?other, "registering the log signing key was refused");
                return;
            }
            Err(e) => tracing::debug!(error = %e, "registering the log signing key; will retry"),
        }
        drop(c);
        tokio::time::sleep(backoff).await;
        backoff = (backoff * 2).min(Duration::from_secs(2));
    }
}
