//! The Raft log on redb, with group commit.
//!
//! Unpurged entries are kept in memory (they are bounded by the snapshot policy: at most
//! `snapshot_every + keep` entries), so reads never touch the disk. Every mutation goes, in
//! order, to one writer thread that owns the redb database: it drains whatever is queued, writes
//! it in a single transaction and fsyncs once (redb's `Durability::Immediate`), then completes
//! the callbacks of all appends it covered. One fsync thus serves many appends, and the Raft core
//! never blocks on the disk.

use std::collections::BTreeMap;
use std::fmt::Debug;
use std::ops::RangeBounds;
use std::path::Path;
use std::sync::{Arc, Mutex};

use openraft::storage::{LogFlushed, LogState, RaftLogStorage};
use openraft::{OptionalSend, RaftLogReader, StorageIOError, Vote};
use redb::{Database, ReadableDatabase, ReadableTable, TableDefinition};
use tokio::sync::oneshot;

use super::{Entry, LogId, NodeId, StorageError, TypeConfig};

const LOGS: TableDefinition<u64, &[u8]> = TableDefinition::new("raft_log");
const META: TableDefinition<&str, &[u8]> = TableDefinition::new("raft_meta");
/// The snapshot lives in the same file, written by the same thread, so ordering with log purges
/// is preserved: a purge can only follow the durable snapshot that covers it.
pub(crate) const SNAPSHOT: TableDefinition<&str, &[u8]> = TableDefinition::new("snapshot");

/// Upper bound on what one group commit takes from the queue.
const GROUP_COMMIT_OPS_MAX: usize = 4096;

enum Op {
    Append {
        entries: Vec<(u64, Vec<u8>)>,
        done: LogFlushed<TypeConfig>,
    },
    Truncate {
        from: u64,
    },
    Purge {
        upto: LogId,
    },
    Meta {
        key: &'static str,
        value: Vec<u8>,
        done: Option<oneshot::Sender<Result<(), String>>>,
    },
    Snapshot {
        value: Vec<u8>,
        done: oneshot::Sender<Result<(), String>>,
    },
}

#[derive(Default)]
struct Cache {
    entries: BTreeMap<u64, Entry>,
    last_purged: Option<LogId>,
    vote: Option<Vote<NodeId>>,
    committed: Option<LogId>,
}

/// Cloneable handle: the log store and its readers share the cache and the writer.
#[derive(Clone)]
pub struct LogStore {
    cache: Arc<Mutex<Cache>>,
    writer: std::sync::mpsc::Sender<Op>,
    db: Arc<Database>,
}

fn io_err(e: impl std::error::Error + 'static) -> StorageError {
    StorageError::IO {
        source: StorageIOError::write_logs(&e),
    }
}

fn read_err(e: impl std::error::Error + 'static) -> StorageError {
    StorageError::IO {
        source: StorageIOError::read_logs(&e),
    }
}

#[derive(Debug, thiserror::Error)]
#[error("{0}")]
struct Msg(String);

impl LogStore {
    /// Opens (or creates) the log in `db` and starts its writer thread.
    pub fn open(db: Arc<Database>) -> Result<Self, StorageError> {
        let mut cache = Cache::default();
        {
            let tx = db.begin_write().map_err(io_err)?;
            tx.open_table(LOGS).map_err(io_err)?;
            tx.open_table(META).map_err(io_err)?;
            tx.open_table(SNAPSHOT).map_err(io_err)?;
            tx.commit().map_err(io_err)?;
        }
        let rtx = db.begin_read().map_err(read_err)?;
        let logs = rtx.open_table(LOGS).map_err(read_err)?;
        for row in logs.iter().map_err(read_err)? {
            let (k, v) = row.map_err(read_err)?;
            let entry: Entry = serde_json::from_slice(v.value()).map_err(read_err)?;
            // A stored entry must sit under its own index; anything else is corruption.
            assert_eq!(
                entry.log_id.index,
                k.value(),
                "raft log entry stored under the wrong index"
            );
            cache.entries.insert(k.value(), entry);
        }
        let meta = rtx.open_table(META).map_err(read_err)?;
        let get = |key: &str| -> Result<Option<Vec<u8>>, StorageError> {
            Ok(meta.get(key).map_err(read_err)?.map(|v| v.value().to_vec()))
        };
        if let Some(v) = get("vote")? {
            cache.vote = Some(serde_json::from_slice(&v).map_err(read_err)?);
        }
        if let Some(v) = get("committed")? {
            cache.committed = serde_json::from_slice(&v).map_err(read_err)?;
        }
        if let Some(v) = get("last_purged")? {
            cache.last_purged = Some(serde_json::from_slice(&v).map_err(read_err)?);
        }
        drop(meta);
        drop(logs);
        drop(rtx);

        let (tx, rx) = std::sync::mpsc::channel();
        let thread_db = db.clone();
        std::thread::Builder::new()
            .name("raft-log-writer".into())
            .spawn(move || writer_loop(&thread_db, rx))
            .map_err(io_err)?;
        Ok(Self {
            cache: Arc::new(Mutex::new(cache)),
            writer: tx,
            db,
        })
    }

    fn send(&self, op: Op) -> Result<(), StorageError> {
        self.writer
            .send(op)
            .map_err(|_| io_err(Msg("raft log writer thread has stopped".into())))
    }

    async fn save_meta_durably(
        &self,
        key: &'static str,
        value: Vec<u8>,
    ) -> Result<(), StorageError> {
        let (tx, rx) = oneshot::channel();
        self.send(Op::Meta {
            key,
            value,
            done: Some(tx),
        })?;
        rx.await
            .map_err(|_| io_err(Msg("raft log writer dropped a request".into())))?
            .map_err(|e| io_err(Msg(e)))
    }

    /// Stores the current snapshot durably (same thread and file as the log).
    pub(crate) async fn save_snapshot(&self, value: Vec<u8>) -> Result<(), StorageError> {
        let (tx, rx) = oneshot::channel();
        self.send(Op::Snapshot { value, done: tx })?;
        rx.await
            .map_err(|_| io_err(Msg("raft log writer dropped a request".into())))?
            .map_err(|e| io_err(Msg(e)))
    }

    /// Reads the stored snapshot, if any.
    pub(crate) fn load_snapshot(&self) -> Result<Option<Vec<u8>>, StorageError> {
        let rtx = self.db.begin_read().map_err(read_err)?;
        let t = rtx.open_table(SNAPSHOT).map_err(read_err)?;
        Ok(t.get("current")
            .map_err(read_err)?
            .map(|v| v.value().to_vec()))
    }
}

fn writer_loop(db: &Database, rx: std::sync::mpsc::Receiver<Op>) {
    while let Ok(first) = rx.recv() {
        let mut ops = vec![first];
        while ops.len() < GROUP_COMMIT_OPS_MAX {
            match rx.try_recv() {
                Ok(op) => ops.push(op),
                Err(_) => break,
            }
        }
        let result = write_group(db, &ops).map_err(|e| e.to_string());
        if let Err(e) = &result {
            tracing::error!(error = %e, "raft log group commit failed");
        }
        for op in ops {
            match op {
                Op::Append { done, .. } => {
                    done.log_io_completed(result.clone().map_err(std::io::Error::other));
                }
                Op::Meta {
                    done: Some(done), ..
                }
                | Op::Snapshot { done, .. } => {
                    let _ = done.send(result.clone());
                }
                Op::Meta { done: None, .. } | Op::Truncate { .. } | Op::Purge { .. } => {}
            }
        }
    }
}

fn write_group(db: &Database, ops: &[Op]) -> Result<(), redb::Error> {
    let mut tx = db.begin_write()?;
    // A group holding nothing but the committed-index hint needs no fsync of its own: losing
    // it only means re-applying from the snapshot on restart, and the next durable commit
    // persists it anyway. Without this, every commit-index advance (on the leader once per
    // write, on followers once per heartbeat) cost a second fsync.
    if ops.iter().all(|op| {
        matches!(
            op,
            Op::Meta {
                key: "committed",
                done: None,
                ..
            }
        )
    }) {
        tx.set_durability(redb::Durability::None)?;
    }
    {
        let mut logs = tx.open_table(LOGS)?;
        let mut meta = tx.open_table(META)?;
        let mut snap = tx.open_table(SNAPSHOT)?;
        for op in ops {
            match op {
                Op::Append { entries, .. } => {
                    for (index, bytes) in entries {
                        logs.insert(*index, bytes.as_slice())?;
                    }
                }
                Op::Truncate { from } => {
                    logs.retain_in(*from.., |_, _| false)?;
                }
                Op::Purge { upto } => {
                    logs.retain_in(..=upto.index, |_, _| false)?;
                    let v = serde_json::to_vec(upto).unwrap_or_default();
                    meta.insert("last_purged", v.as_slice())?;
                }
                Op::Meta { key, value, .. } => {
                    meta.insert(*key, value.as_slice())?;
                }
                Op::Snapshot { value, .. } => {
                    snap.insert("current", value.as_slice())?;
                }
            }
        }
    }
    // Durability::Immediate (redb's default) unless set above: the commit returns after fsync.
    tx.commit()?;
    Ok(())
}

impl RaftLogReader<TypeConfig> for LogStore {
    async fn try_get_log_entries<RB: RangeBounds<u64> + Clone + Debug + OptionalSend>(
        &mut self,
        range: RB,
    ) -> Result<Vec<Entry>, StorageError> {
        let cache = self
            .cache
            .lock()
            .map_err(|_| read_err(Msg("log cache lock poisoned".into())))?;
        Ok(cache.entries.range(range).map(|(_, e)| e.clone()).collect())
    }
}

impl RaftLogStorage<TypeConfig> for LogStore {
    type LogReader = Self;

    async fn get_log_state(&mut self) -> Result<LogState<TypeConfig>, StorageError> {
        let cache = self
            .cache
            .lock()
            .map_err(|_| read_err(Msg("log cache lock poisoned".into())))?;
        let last = cache
            .entries
            .values()
            .next_back()
            .map(|e| e.log_id)
            .or(cache.last_purged);
        Ok(LogState {
            last_purged_log_id: cache.last_purged,
            last_log_id: last,
        })
    }

    async fn get_log_reader(&mut self) -> Self::LogReader {
        self.clone()
    }

    async fn save_vote(&mut self, vote: &Vote<NodeId>) -> Result<(), StorageError> {
        let bytes = serde_json::to_vec(vote).map_err(io_err)?;
        // The vote must be on disk before this node acts on it (answers a vote request).
        self.save_meta_durably("vote", bytes).await?;
        if let Ok(mut c) = self.cache.lock() {
            c.vote = Some(*vote);
        }
        Ok(())
    }

    async fn read_vote(&mut self) -> Result<Option<Vote<NodeId>>, StorageError> {
        Ok(self
            .cache
            .lock()
            .map_err(|_| read_err(Msg("log cache lock poisoned".into())))?
            .vote)
    }

    async fn save_committed(&mut self, committed: Option<LogId>) -> Result<(), StorageError> {
        let bytes = serde_json::to_vec(&committed).map_err(io_err)?;
        if let Ok(mut c) = self.cache.lock() {
            c.committed = committed;
        }
        // Not awaited: losing it only means re-applying from the snapshot on restart.
        self.send(Op::Meta {
            key: "committed",
            value: bytes,
            done: None,
        })
    }

    async fn read_committed(&mut self) -> Result<Option<LogId>, StorageError> {
        Ok(self
            .cache
            .lock()
            .map_err(|_| read_err(Msg("log cache lock poisoned".into())))?
            .committed)
    }

    async fn append<I>(
        &mut self,
        entries: I,
        callback: LogFlushed<TypeConfig>,
    ) -> Result<(), StorageError>
    where
        I: IntoIterator<Item = Entry> + OptionalSend,
        I::IntoIter: OptionalSend,
    {
        let mut encoded = Vec::new();
        {
            let mut cache = self
                .cache
                .lock()
                .map_err(|_| io_err(Msg("log cache lock poisoned".into())))?;
            for entry in entries {
                encoded.push((
                    entry.log_id.index,
                    serde_json::to_vec(&entry).map_err(io_err)?,
                ));
                cache.entries.insert(entry.log_id.index, entry);
            }
        }
        self.send(Op::Append {
            entries: encoded,
            done: callback,
        })
    }

    async fn truncate(&mut self, log_id: LogId) -> Result<(), StorageError> {
        {
            let mut cache = self
                .cache
                .lock()
                .map_err(|_| io_err(Msg("log cache lock poisoned".into())))?;
            cache.entries.retain(|i, _| *i < log_id.index);
        }
        self.send(Op::Truncate { from: log_id.index })
    }

    async fn purge(&mut self, log_id: LogId) -> Result<(), StorageError> {
        {
            let mut cache = self
                .cache
                .lock()
                .map_err(|_| io_err(Msg("log cache lock poisoned".into())))?;
            cache.entries.retain(|i, _| *i > log_id.index);
            cache.last_purged = Some(log_id);
        }
        self.send(Op::Purge { upto: log_id })
    }
}

/// Opens the node's redb file (creating it).
pub fn open_database(dir: &Path) -> Result<Arc<Database>, StorageError> {
    std::fs::create_dir_all(dir).map_err(io_err)?;
    let db = Database::create(dir.join("tribune.redb")).map_err(io_err)?;
    Ok(Arc::new(db))
}
