//! The state-machine store: the replicated [`State`] in memory, made durable by snapshots in the
//! same redb file as the log.
//!
//! On start the last snapshot is loaded and openraft re-applies the committed log after it, so
//! the state after a restart is exactly the state before it. Snapshots are the state's JSON in a
//! versioned binary envelope (`snapshot_format.rs`), written by the log store's writer thread
//! before the log they cover may be purged.
//!
//! A snapshot read from disk is a checked record (`LogStore::load_snapshot`), and every snapshot
//! loaded or installed must agree with its own attestation log (`integrity::audit`) before it
//! replaces anything. An installed snapshot replaces the state wholesale, so the integrity gate
//! compares with the peers again before this controller serves linearizable reads.

use std::io::Cursor;
use std::sync::{Arc, RwLock};

use openraft::storage::{RaftStateMachine, Snapshot};
use openraft::{
    EntryPayload, OptionalSend, RaftSnapshotBuilder, SnapshotMeta, StorageIOError, StoredMembership,
};
use tokio::sync::watch;

use super::log_store::{LogStore, SNAPSHOT_TABLE};
use super::snapshot_format::StoredSnapshot;
use super::{Entry, LogId, Node, NodeId, Response, StorageError, TypeConfig};
use crate::integrity::audit::{AuditError, audit};
use crate::integrity::{Gate, StoreError};
use crate::state::State;

/// Why a snapshot's state is refused.
#[derive(Debug, thiserror::Error)]
pub(crate) enum SnapshotError {
    #[error("the snapshot's state does not decode: {0}")]
    Decode(serde_json::Error),
    #[error("the snapshot disagrees with its own attestation log: {0}")]
    Audit(AuditError),
}

/// A snapshot's state, decoded and checked against its own attestation log.
pub(crate) fn decode_checked(data: &[u8]) -> Result<State, SnapshotError> {
    let state: State = serde_json::from_slice(data).map_err(SnapshotError::Decode)?;
    audit(&state).map_err(SnapshotError::Audit)?;
    Ok(state)
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
    /// Told when an installed snapshot replaces the state.
    gate: Arc<Gate>,
}

fn sm_err(e: impl std::error::Error + 'static) -> StorageError {
    StorageError::IO {
        source: StorageIOError::read_state_machine(&e),
    }
}

fn snapshot_err(e: impl std::error::Error + 'static) -> StorageError {
    StorageError::IO {
        source: StorageIOError::read_snapshot(None, &e),
    }
}

impl StateMachineStore {
    /// Loads the stored snapshot, if any; refuses one that fails its checksum, does not decode
    /// or disagrees with its own attestation log.
    pub fn open(
        log: LogStore,
        gate: Arc<Gate>,
    ) -> Result<(Self, SharedState, watch::Receiver<u64>), StoreError> {
        let (applied_tx, applied_rx) = watch::channel(0);
        let mut sm = Self {
            state: Arc::new(RwLock::new(State::default())),
            last_applied: None,
            last_membership: StoredMembership::default(),
            log,
            snapshot_seq: 0,
            applied_tx: Arc::new(applied_tx),
            gate,
        };
        if let Some(bytes) = sm.log.load_snapshot()? {
            let file = sm.log.file().to_path_buf();
            let corrupt = |record: String, problem: String| StoreError::Corrupt {
                file: file.clone(),
                table: SNAPSHOT_TABLE,
                record,
                problem,
            };
            let stored = StoredSnapshot::decode(&bytes).map_err(|e| {
                corrupt(
                    "record \"current\"".into(),
                    format!("the checksum holds but the snapshot does not decode: {e}"),
                )
            })?;
            let label = format!("snapshot {}", stored.meta.snapshot_id);
            let state = decode_checked(&stored.data).map_err(|e| corrupt(label, e.to_string()))?;
            sm.restore(&stored, state)
                .map_err(|e| corrupt("record \"current\"".into(), e.to_string()))?;
        }
        let shared = sm.state.clone();
        Ok((sm, shared, applied_rx))
    }

    fn restore(&mut self, stored: &StoredSnapshot, state: State) -> Result<(), StorageError> {
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
            .save_snapshot(stored.encode().map_err(sm_err)?)
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
                            req.commands
                                .into_iter()
                                .map(|cmd| state.apply_in(req.leaf_format, cmd))
                                .collect(),
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
        // Check it decodes and agrees with its own log before anything is replaced: a bad
        // snapshot must not half-install.
        let state = decode_checked(&stored.data).map_err(|e| {
            tracing::error!(snapshot = %meta.snapshot_id, "refusing an installed snapshot: {e}");
            sm_err(std::io::Error::other(format!(
                "snapshot {} from the leader: {e}",
                meta.snapshot_id
            )))
        })?;
        self.log
            .save_snapshot(stored.encode().map_err(sm_err)?)
            .await?;
        self.restore(&stored, state)?;
        self.gate.invalidate(&format!(
            "snapshot {} was installed; comparing it with the other controllers",
            meta.snapshot_id
        ));
        Ok(())
    }

    async fn get_current_snapshot(&mut self) -> Result<Option<Snapshot<TypeConfig>>, StorageError> {
        let bytes = match self.log.load_snapshot() {
            Ok(Some(b)) => b,
            Ok(None) => return Ok(None),
            Err(e) => {
                // A stored snapshot that no longer reads back: nothing stored can be vouched
                // for any more.
                tracing::error!("{e}");
                self.gate.diverge(e.to_string());
                return Err(snapshot_err(e));
            }
        };
        let stored = StoredSnapshot::decode(&bytes).map_err(sm_err)?;
        Ok(Some(Snapshot {
            meta: stored.meta,
            snapshot: Box::new(Cursor::new(stored.data)),
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::integrity::record;
    use crate::raft::log_store::{DATA_FILE, SNAPSHOT, SNAPSHOT_KEY, snapshot_context};
    use crate::state::{Command, Expect};

    fn stored(state: &State) -> Vec<u8> {
        let s = StoredSnapshot {
            meta: SnapshotMeta {
                last_log_id: None,
                last_membership: StoredMembership::default(),
                snapshot_id: "1-7-1".into(),
            },
            data: serde_json::to_vec(state).expect("json"),
        };
        s.encode().expect("encode")
    }

    /// The all-JSON format snapshots were stored in before `snapshot_format` 1.
    fn stored_legacy(state: &State) -> Vec<u8> {
        let s = StoredSnapshot::decode(&stored(state)).expect("decode");
        serde_json::to_vec(&s).expect("json")
    }

    fn open_with_snapshot(dir: &std::path::Path, value: &[u8]) -> Result<State, StoreError> {
        std::fs::create_dir_all(dir).expect("mkdir");
        {
            let db = redb::Database::create(dir.join(DATA_FILE)).expect("create");
            let tx = db.begin_write().expect("tx");
            {
                let mut t = tx.open_table(SNAPSHOT).expect("table");
                t.insert(SNAPSHOT_KEY, value).expect("insert");
            }
            tx.commit().expect("commit");
        }
        let log = LogStore::open_dir(dir)?;
        let (_, state, _) = StateMachineStore::open(log, Arc::new(Gate::new()))?;
        let s = state.read().expect("lock").clone();
        Ok(s)
    }

    #[test]
    fn a_snapshot_loads_only_if_its_record_holds_and_it_agrees_with_its_own_log() {
        let root = tempfile::tempdir().expect("tempdir");
        let mut state = State::default();
        state.apply(Command::PutPolicy {
            name: "p".into(),
            source: "precedence -10".into(),
            expect: Expect::Any,
            actor: "t".into(),
            at_ms: 1,
        });
        let good = record::seal(&snapshot_context(), &stored(&state));
        let loaded = open_with_snapshot(&root.path().join("ok"), &good).expect("loads");
        assert_eq!(loaded, state);
        // A data dir written before the versioned format still loads.
        let legacy = record::seal(&snapshot_context(), &stored_legacy(&state));
        let loaded = open_with_snapshot(&root.path().join("legacy"), &legacy).expect("loads");
        assert_eq!(loaded, state);

        let mut flipped = good.clone();
        let at = flipped.len() / 2;
        flipped[at] ^= 0x01;
        let e = open_with_snapshot(&root.path().join("flip"), &flipped).expect_err("flipped");
        assert!(
            e.to_string()
                .contains("table snapshot, record \"current\" (snapshot 1-7-1"),
            "{e}"
        );

        // Resealed after the policy changed: the record holds, the audit does not.
        let mut tampered = state.clone();
        if let Some(p) = tampered.policies.get_mut("p") {
            p.source = "precedence -19".into();
        }
        let resealed = record::seal(&snapshot_context(), &stored(&tampered));
        let e = open_with_snapshot(&root.path().join("audit"), &resealed).expect_err("audit");
        let e = e.to_string();
        assert!(
            e.contains("table snapshot, snapshot 1-7-1")
                && e.contains("disagrees with its own attestation log"),
            "{e}"
        );
    }
}
