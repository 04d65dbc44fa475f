//! The state-machine store: the replicated [`State`] in memory, made durable by snapshots in the
//! same redb file as the log.
//!
//! On start the last snapshot is loaded and openraft re-applies the committed log after it, so
//! the state after a restart is exactly the state before it. Snapshots are the state's JSON,
//! written by the log store's writer thread before the log they cover may be purged.

use std::io::Cursor;
use std::sync::{Arc, RwLock};

use openraft::storage::{RaftStateMachine, Snapshot};
use openraft::{
    EntryPayload, OptionalSend, RaftSnapshotBuilder, SnapshotMeta, StorageIOError, StoredMembership,
};
use serde::{Deserialize, Serialize};
use tokio::sync::watch;

use super::log_store::LogStore;
use super::{Entry, LogId, Node, NodeId, Response, StorageError, TypeConfig};
use crate::state::State;

#[derive(Serialize, Deserialize)]
struct StoredSnapshot {
    meta: SnapshotMeta<NodeId, Node>,
    data: Vec<u8>,
}

/// Shared, read-mostly view of the replicated state for the API.
pub type SharedState = Arc<RwLock<State>>;

#[derive(Clone)]
pub struct StateMachineStore {
    state: SharedState,
    last_applied: Option<LogId>,
    last_membership: StoredMembership<NodeId, Node>,
    log: LogStore,
    snapshot_seq: u64,
    /// Published after each apply so readers can wait for an index without polling.
    applied_tx: Arc<watch::Sender<u64>>,
}

fn sm_err(e: impl std::error::Error + 'static) -> StorageError {
    StorageError::IO {
        source: StorageIOError::read_state_machine(&e),
    }
}

impl StateMachineStore {
    pub fn open(log: LogStore) -> Result<(Self, SharedState, watch::Receiver<u64>), StorageError> {
        let (applied_tx, applied_rx) = watch::channel(0);
        let mut sm = Self {
            state: Arc::new(RwLock::new(State::default())),
            last_applied: None,
            last_membership: StoredMembership::default(),
            log,
            snapshot_seq: 0,
            applied_tx: Arc::new(applied_tx),
        };
        if let Some(bytes) = sm.log.load_snapshot()? {
            let stored: StoredSnapshot = serde_json::from_slice(&bytes).map_err(sm_err)?;
            sm.restore(&stored)?;
        }
        let shared = sm.state.clone();
        Ok((sm, shared, applied_rx))
    }

    fn restore(&mut self, stored: &StoredSnapshot) -> Result<(), StorageError> {
        let state: State = serde_json::from_slice(&stored.data).map_err(sm_err)?;
        *self
            .state
            .write()
            .map_err(|_| sm_err(std::io::Error::other("state lock poisoned")))? = state;
        self.last_applied = stored.meta.last_log_id;
        self.last_membership = stored.meta.last_membership.clone();
        self.applied_tx
            .send_replace(self.last_applied.map_or(0, |l| l.index));
        Ok(())
    }
}

impl RaftSnapshotBuilder<TypeConfig> for StateMachineStore {
    async fn build_snapshot(&mut self) -> Result<Snapshot<TypeConfig>, StorageError> {
        // The builder is a clone taken at a consistent point; serialise under the read lock.
        let data = {
            let state = self
                .state
                .read()
                .map_err(|_| sm_err(std::io::Error::other("state lock poisoned")))?;
            serde_json::to_vec(&*state).map_err(sm_err)?
        };
        let snapshot_id = match self.last_applied {
            Some(l) => format!("{}-{}-{}", l.leader_id, l.index, self.snapshot_seq),
            None => format!("--{}", self.snapshot_seq),
        };
        let meta = SnapshotMeta {
            last_log_id: self.last_applied,
            last_membership: self.last_membership.clone(),
            snapshot_id,
        };
        let stored = StoredSnapshot {
            meta: meta.clone(),
            data,
        };
        self.log
            .save_snapshot(serde_json::to_vec(&stored).map_err(sm_err)?)
            .await?;
        Ok(Snapshot {
            meta,
            snapshot: Box::new(Cursor::new(stored.data)),
        })
    }
}

impl RaftStateMachine<TypeConfig> for StateMachineStore {
    type SnapshotBuilder = Self;

    async fn applied_state(
        &mut self,
    ) -> Result<(Option<LogId>, StoredMembership<NodeId, Node>), StorageError> {
        Ok((self.last_applied, self.last_membership.clone()))
    }

    async fn apply<I>(&mut self, entries: I) -> Result<Vec<Response>, StorageError>
    where
        I: IntoIterator<Item = Entry> + OptionalSend,
        I::IntoIter: OptionalSend,
    {
        let mut replies = Vec::new();
        {
            let mut state = self
                .state
                .write()
                .map_err(|_| sm_err(std::io::Error::other("state lock poisoned")))?;
            for entry in entries {
                self.last_applied = Some(entry.log_id);
                match entry.payload {
                    EntryPayload::Blank => replies.push(Response::default()),
                    EntryPayload::Normal(req) => {
                        replies.push(Response(
                            req.0.into_iter().map(|cmd| state.apply(cmd)).collect(),
                        ));
                    }
                    EntryPayload::Membership(m) => {
                        self.last_membership = StoredMembership::new(Some(entry.log_id), m);
                        replies.push(Response::default());
                    }
                }
            }
        }
        self.applied_tx
            .send_replace(self.last_applied.map_or(0, |l| l.index));
        Ok(replies)
    }

    async fn get_snapshot_builder(&mut self) -> Self::SnapshotBuilder {
        self.snapshot_seq += 1;
        // Building runs concurrently with further applies: give the builder a frozen copy.
        let frozen = self.state.read().map(|s| s.clone()).unwrap_or_default();
        let mut builder = self.clone();
        builder.state = Arc::new(RwLock::new(frozen));
        builder
    }

    async fn begin_receiving_snapshot(&mut self) -> Result<Box<Cursor<Vec<u8>>>, StorageError> {
        Ok(Box::new(Cursor::new(Vec::new())))
    }

    async fn install_snapshot(
        &mut self,
        meta: &SnapshotMeta<NodeId, Node>,
        snapshot: Box<Cursor<Vec<u8>>>,
    ) -> Result<(), StorageError> {
        let stored = StoredSnapshot {
            meta: meta.clone(),
            data: snapshot.into_inner(),
        };
        // Check it decodes before anything is replaced: a bad snapshot must not half-install.
        let _: State = serde_json::from_slice(&stored.data).map_err(sm_err)?;
        self.log
            .save_snapshot(serde_json::to_vec(&stored).map_err(sm_err)?)
            .await?;
        self.restore(&stored)
    }

    async fn get_current_snapshot(&mut self) -> Result<Option<Snapshot<TypeConfig>>, StorageError> {
        let Some(bytes) = self.log.load_snapshot()? else {
            return Ok(None);
        };
        let stored: StoredSnapshot = serde_json::from_slice(&bytes).map_err(sm_err)?;
        Ok(Some(Snapshot {
            meta: stored.meta,
            snapshot: Box::new(Cursor::new(stored.data)),
        }))
    }
}
