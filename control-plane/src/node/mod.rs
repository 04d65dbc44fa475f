//! One controller: its Raft instance, its stores, the write batcher and the server that carries
//! gRPC (Raft transport, control API) and HTTP/JSON on one listener.
//!
//! Writes: any controller accepts them. The leader groups concurrent writes into one Raft entry
//! (group commit); a follower forwards to the leader over `RaftService.Forward`. Reads are
//! linearizable by default: the leader confirms its leadership with a quorum (read index), a
//! follower asks the leader for the read index and waits until it has applied that far.
//!
//! - `config.rs`: [`ControllerConfig`], its defaults and the Raft configuration derived from it;
//! - `backup.rs`: a consistent snapshot of the whole state for `tribune snapshot save`;
//! - `batch.rs`: the write batcher (group commit, pipelining, back-pressure);
//! - `election.rs`: when a controller stands for election (pre-vote, staggered timeouts);
//! - `forward.rs`: writes and membership changes run on the leader, forwarded from a follower;
//! - `membership.rs`: bootstrap, the members, adding, promoting and removing one;
//! - `read.rs`: linearizable reads (the read index, on the leader and from a follower);
//! - `status.rs`: [`NodeStatus`], a peer's status, readiness.

use std::sync::{Arc, Weak};
use std::time::Duration;

use tokio::sync::{mpsc, watch};
use tokio_util::sync::CancellationToken;

use crate::error::ControllerError;
use crate::integrity::Gate;
use crate::log_key::LogSigner;
use crate::raft::log_store::{LogStore, RAFT_DIR};
use crate::raft::network::{NetworkFactory, Peers};
use crate::raft::state_machine::{SharedState, StateMachineStore};
use crate::raft::{NodeId, Raft};
use crate::state::{Command, Outcome};
use crate::tls::ControllerTls;
use crate::validate::PolicyValidator;

mod backup;
mod batch;
mod config;
pub mod election;
mod forward;
pub mod handover;
mod membership;
pub mod read;
mod status;

pub use backup::BackupFile;
pub use config::ControllerConfig;
pub(crate) use forward::commit_span;
pub use forward::{ForwardReply, Forwarded};
pub use status::NodeStatus;

use batch::{Pending, WRITE_QUEUE_MAX, batch_writes};
use read::Restored;

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
    /// The data file, for backups (`backup.rs`); Raft holds the same store.
    log: LogStore,
    writes: mpsc::Sender<Pending>,
    /// What the log held at start, for the read index of a restored leader ([`read`]).
    restored: Restored,
    /// Cancelled when this controller stops serving (a signal, or Raft stopped on its own):
    /// long-lived work (attestation streams) ends, so clients move to another controller.
    pub stopping: CancellationToken,
    /// Verified usage at 1 s for the console's live charts (not replicated: this
    /// controller's agents only; `console::feed`).
    pub usage_feed: Arc<crate::console::UsageFeed>,
    /// When this controller last heard from a leader or granted a vote (`election.rs`).
    pub(crate) contact: Arc<election::Contact>,
    /// Set once this controller, stopping, hands its leadership over (`node/handover.rs`).
    handing_over: std::sync::atomic::AtomicBool,
}

impl Controller {
    /// Opens storage and starts Raft. Does not start serving: see [`crate::server::serve`].
    pub async fn open(
        config: ControllerConfig,
        validator: Arc<dyn PolicyValidator>,
    ) -> Result<Arc<Self>, ControllerError> {
        let raft_config = Arc::new(config.raft_config()?);
        // Says at start when a test-only fault is switched on (never in a normal build).
        crate::test_fault::active(crate::test_fault::Fault::StaleReads);
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
            log.clone(),
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
            log,
            writes: tx,
            restored,
            stopping: CancellationToken::new(),
            usage_feed: Arc::new(crate::console::UsageFeed::new()),
            contact: Arc::new(election::Contact::new()),
            handing_over: std::sync::atomic::AtomicBool::new(false),
        });
        if !crate::test_fault::active(crate::test_fault::Fault::NoPreVote) {
            tokio::spawn(election::drive(Arc::downgrade(&controller)));
        }
        tokio::spawn(count_leader_changes(raft.metrics()));
        tokio::spawn(batch_writes(raft, rx));
        tokio::spawn(register_log_key(Arc::downgrade(&controller)));
        tokio::spawn(crate::integrity::peers::watch(Arc::downgrade(&controller)));
        tokio::spawn(crate::live::run(Arc::downgrade(&controller)));
        Ok(controller)
    }

    /// The election timing of this controller's configuration.
    pub fn election_timing(&self) -> election::Timing {
        election::Timing::from_ms(self.config.heartbeat_ms, self.config.election_timeout_ms)
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
    pub(super) async fn wait_for_leader_change(&self, dur: Duration) {
        let mut rx = self.raft.metrics();
        let before = rx.borrow().current_leader;
        let _ = tokio::time::timeout(dur, rx.wait_for(|m| m.current_leader != before)).await;
    }
}

/// Counts each leader this controller comes to know of, the first included, as etcd's
/// `leader_changes_seen` does (`tribune_raft_leader_changes_total`); a spell without a leader
/// between two reigns of the same leader is no change.
async fn count_leader_changes(
    mut rx: watch::Receiver<openraft::RaftMetrics<NodeId, crate::raft::Node>>,
) {
    let mut known = rx.borrow().current_leader;
    while rx.changed().await.is_ok() {
        let now = rx.borrow().current_leader;
        if now.is_some() && now != known {
            crate::metrics::get().raft_leader_changes.inc();
            known = now;
        }
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
            at_ms: crate::test_fault::wall_now()
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
