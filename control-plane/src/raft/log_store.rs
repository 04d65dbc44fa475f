//! The Raft log: entries in a write-ahead log of segment files (`raft::wal`), the vote, the
//! commit hint, the purge point and the state-machine snapshot in redb, with group commit.
//!
//! Unpurged entries are kept in memory (they are bounded by the snapshot policy: at most
//! `snapshot_every + keep` entries), so reads never touch the disk. Every mutation goes, in
//! order, to one writer thread that owns the WAL and the redb database: it drains whatever is
//! queued, writes the group's entries with one `write` and one `fdatasync`, commits the
//! group's metadata and snapshot (if any) in one redb transaction, and only then completes the
//! callbacks of all appends it covered. One fsync thus serves many appends, and the Raft core
//! never blocks on the disk.
//!
//! Ordering: a purge is queued only after the snapshot that covers it was stored durably (the
//! state machine awaits `save_snapshot`), and the purge point is committed to redb before any
//! segment is removed, so the log on disk always starts at or below what the durable snapshot
//! covers.
//!
//! Why the metadata stays in redb rather than in a small file of its own: the snapshot lives
//! there, and keeping the purge point beside it in one transactional file keeps the
//! snapshot-before-purge guarantee simple; the vote is written rarely, and the commit hint is
//! written without an fsync of its own.
//!
//! Every redb value is stored as a checksummed record (`crate::integrity::record`) whose context
//! is its table and key, and checked when it is read back from disk (the metadata at open, the
//! snapshot whenever it is loaded); every WAL record carries a CRC32C (`raft::wal`). The redb
//! file is opened with redb's integrity check and every redb call that may meet a damaged file
//! runs under `integrity::catch_panic`: a damaged file is a [`StoreError`] naming the file and
//! the record, never a panic.
//!
//! A data directory from before the WAL keeps its log in redb's `raft_log` table: it is
//! migrated at open (the entries are checked, written to a new WAL and synced, then the table
//! is emptied in one transaction; a crash in between repeats the migration from the start).

use std::collections::BTreeMap;
use std::fmt::Debug;
use std::ops::RangeBounds;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use openraft::storage::{LogFlushed, LogState, RaftLogStorage};
use openraft::{OptionalSend, RaftLogReader, StorageIOError, Vote};
use redb::{Database, DatabaseError, ReadableDatabase, ReadableTable, TableDefinition};
use tokio::sync::oneshot;

use super::wal::{self, Wal, codec};
use super::{Entry, LogId, NodeId, StorageError, TypeConfig};
use crate::integrity::{StoreError, catch_panic, record};

/// The Raft directory inside a controller's data directory, and the redb file in it.
pub const RAFT_DIR: &str = "raft";
pub const DATA_FILE: &str = "tribune.redb";

/// `DATA_DIR/raft/tribune.redb`.
pub fn data_file(data_dir: &Path) -> PathBuf {
    data_dir.join(RAFT_DIR).join(DATA_FILE)
}

/// The table that held the log before the WAL (read only to migrate an old data directory).
pub const LOGS_TABLE: &str = "raft_log";
pub const META_TABLE: &str = "raft_meta";
pub const SNAPSHOT_TABLE: &str = "snapshot";
/// The one key of the snapshot table.
pub const SNAPSHOT_KEY: &str = "current";

pub const LOGS: TableDefinition<u64, &[u8]> = TableDefinition::new(LOGS_TABLE);
pub const META: TableDefinition<&str, &[u8]> = TableDefinition::new(META_TABLE);
/// The snapshot lives in the same file, written by the same thread, so ordering with log purges
/// is preserved: a purge can only follow the durable snapshot that covers it.
pub const SNAPSHOT: TableDefinition<&str, &[u8]> = TableDefinition::new(SNAPSHOT_TABLE);

/// Record context of the log entry at `index` in the old redb log.
pub fn log_context(index: u64) -> Vec<u8> {
    record::context(LOGS_TABLE, &index.to_be_bytes())
}

/// Record context of a metadata value (`vote`, `committed`, `last_purged`).
pub fn meta_context(key: &str) -> Vec<u8> {
    record::context(META_TABLE, key.as_bytes())
}

/// Record context of the snapshot.
pub fn snapshot_context() -> Vec<u8> {
    record::context(SNAPSHOT_TABLE, SNAPSHOT_KEY.as_bytes())
}

/// Upper bound on what one group commit takes from the queue.
const GROUP_COMMIT_OPS_MAX: usize = 4096;

enum Op {
    /// The entries in `wal::codec` form.
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
    /// `value` is the sealed record.
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
    file: Arc<PathBuf>,
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
    /// Opens (or creates) `dir/tribune.redb`, checks every page and every record in it, and
    /// starts the writer thread.
    pub fn open_dir(dir: &Path) -> Result<Self, StoreError> {
        let file = dir.join(DATA_FILE);
        std::fs::create_dir_all(dir).map_err(|e| StoreError::Io {
            file: file.clone(),
            detail: format!("creating {}: {e}", dir.display()),
        })?;
        Self::open_with(dir, wal::SEGMENT_BYTES)
    }

    /// [`LogStore::open_dir`] with segments of `segment_bytes` (tests use small ones).
    pub fn open_with(dir: &Path, segment_bytes: u64) -> Result<Self, StoreError> {
        let file = dir.join(DATA_FILE);
        let db = open_file(&file)?;
        let (mut loaded, legacy) =
            catch_panic(|| load(&db, &file)).map_err(|p| StoreError::Damaged {
                file: file.clone(),
                detail: format!("panicked while reading it: {p}"),
            })??;
        let wal_dir = dir.join(wal::WAL_DIR);
        if !legacy.is_empty() {
            migrate(&db, &file, &wal_dir, &legacy)?;
        }
        let (wal, entries) = Wal::open(&wal_dir, segment_bytes)?;
        let purged = loaded.last_purged.map(|l| l.index);
        let mut expect: Option<u64> = None;
        for entry in entries {
            let index = entry.log_id.index;
            if purged.is_some_and(|p| index <= p) {
                continue;
            }
            if let Some(want) = expect
                && index != want
            {
                return Err(StoreError::Corrupt {
                    file: wal_dir.clone(),
                    table: wal::TABLE,
                    record: format!("log index {want}"),
                    problem: format!(
                        "the log jumps from index {} to {index} (entries are missing)",
                        want - 1
                    ),
                });
            }
            expect = Some(index + 1);
            loaded.entries.insert(index, entry);
        }
        let db = Arc::new(db);
        let (tx, rx) = std::sync::mpsc::channel();
        let thread_db = db.clone();
        std::thread::Builder::new()
            .name("raft-log-writer".into())
            .spawn(move || writer_loop(&thread_db, wal, rx))
            .map_err(|e| StoreError::Io {
                file: file.clone(),
                detail: format!("starting the writer thread: {e}"),
            })?;
        Ok(Self {
            cache: Arc::new(Mutex::new(loaded)),
            writer: tx,
            db,
            file: Arc::new(file),
        })
    }

    /// The data file (for messages).
    pub fn file(&self) -> &Path {
        &self.file
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

    /// Stores the current snapshot durably (same thread and file as the log). `value` is the
    /// snapshot's bytes; it is sealed here.
    pub(crate) async fn save_snapshot(&self, value: Vec<u8>) -> Result<(), StorageError> {
        let value = record::seal(&snapshot_context(), &value);
        let (tx, rx) = oneshot::channel();
        self.send(Op::Snapshot { value, done: tx })?;
        rx.await
            .map_err(|_| io_err(Msg("raft log writer dropped a request".into())))?
            .map_err(|e| io_err(Msg(e)))
    }

    /// Reads the stored snapshot, if any, after checking its record.
    pub(crate) fn load_snapshot(&self) -> Result<Option<Vec<u8>>, StoreError> {
        let damaged = |detail: String| StoreError::Damaged {
            file: self.file.to_path_buf(),
            detail,
        };
        let sealed = catch_panic(|| -> Result<Option<Vec<u8>>, redb::Error> {
            let rtx = self.db.begin_read()?;
            let t = rtx.open_table(SNAPSHOT)?;
            Ok(t.get(SNAPSHOT_KEY)?.map(|v| v.value().to_vec()))
        })
        .map_err(|p| damaged(format!("panicked reading the snapshot: {p}")))?
        .map_err(|e| damaged(format!("reading the snapshot: {e}")))?;
        let Some(sealed) = sealed else {
            return Ok(None);
        };
        match record::open(&snapshot_context(), &sealed) {
            Ok(payload) => Ok(Some(payload.to_vec())),
            Err(problem) => Err(StoreError::Corrupt {
                file: self.file.to_path_buf(),
                table: SNAPSHOT_TABLE,
                record: snapshot_label(&sealed),
                problem: problem.to_string(),
            }),
        }
    }
}

/// Names a snapshot record for an error message: its id, read (best effort) from bytes that
/// failed their check.
fn snapshot_label(sealed: &[u8]) -> String {
    const KEY: &[u8] = b"\"snapshot_id\":\"";
    let id = sealed
        .windows(KEY.len())
        .position(|w| w == KEY)
        .and_then(|at| {
            let rest = &sealed[at + KEY.len()..];
            let end = rest.iter().position(|b| *b == b'"')?;
            std::str::from_utf8(&rest[..end.min(64)]).ok()
        });
    match id {
        Some(id) => format!("record {SNAPSHOT_KEY:?} (snapshot {id}, as far as it can be read)"),
        None => format!("record {SNAPSHOT_KEY:?} (the state-machine snapshot)"),
    }
}

/// Opens `file` with redb's integrity check, panics and errors mapped to [`StoreError`].
fn open_file(file: &Path) -> Result<Database, StoreError> {
    let fell_back = Arc::new(AtomicBool::new(false));
    let flag = fell_back.clone();
    let opened = catch_panic(|| {
        let mut builder = Database::builder();
        // Every page checksum of the committed trees, on every open (not only after a crash):
        // a file changed behind redb's back is refused instead of trusted.
        builder.set_check_integrity_on_open(true);
        builder.set_repair_callback(move |session| {
            // redb reports progress 0.3 only when the newest commit failed its checksums and it
            // falls back to the one before.
            if (0.25..0.35).contains(&session.progress()) {
                flag.store(true, Ordering::SeqCst);
            }
        });
        builder.create(file)
    });
    let db = match opened {
        Err(panic) => {
            return Err(StoreError::Damaged {
                file: file.to_path_buf(),
                detail: format!("panicked opening it: {panic}"),
            });
        }
        Ok(Err(e)) => return Err(database_error(file, e)),
        Ok(Ok(db)) => db,
    };
    if fell_back.load(Ordering::SeqCst) {
        tracing::warn!(
            file = %file.display(),
            "the newest commit in the data file failed its checksums and was rolled back to the one before: \
             expected after a power loss during a write, otherwise a sign the file was changed. \
             Entries this controller had not yet acknowledged may be missing; the leader sends them again"
        );
    }
    Ok(db)
}

fn database_error(file: &Path, e: DatabaseError) -> StoreError {
    let file = file.to_path_buf();
    match e {
        // redb reports a bad header (magic number, a truncated file) as invalid data.
        DatabaseError::Storage(redb::StorageError::Io(io))
            if matches!(
                io.kind(),
                std::io::ErrorKind::InvalidData | std::io::ErrorKind::UnexpectedEof
            ) =>
        {
            StoreError::Damaged {
                file,
                detail: io.to_string(),
            }
        }
        DatabaseError::Storage(redb::StorageError::Io(io)) => StoreError::Io {
            file,
            detail: io.to_string(),
        },
        DatabaseError::DatabaseAlreadyOpen | DatabaseError::LockProtocolMismatch => {
            StoreError::Io {
                file,
                detail: "the file is in use by another process (is another controller running on this data directory?)".into(),
            }
        }
        DatabaseError::UpgradeRequired(v) => StoreError::Damaged {
            file,
            detail: format!(
                "the file is in redb's old format {v}, which this Tribune cannot read"
            ),
        },
        other => StoreError::Damaged {
            file,
            detail: other.to_string(),
        },
    }
}

/// Reads and checks the metadata, and every entry of an old redb log (to migrate).
#[allow(clippy::type_complexity)]
fn load(db: &Database, file: &Path) -> Result<(Cache, Vec<(u64, Entry)>), StoreError> {
    let damaged = |e: &dyn std::fmt::Display| StoreError::Damaged {
        file: file.to_path_buf(),
        detail: e.to_string(),
    };
    let corrupt = |table: &'static str, record: String, problem: String| StoreError::Corrupt {
        file: file.to_path_buf(),
        table,
        record,
        problem,
    };
    let mut cache = Cache::default();
    let mut legacy = Vec::new();
    {
        let tx = db.begin_write().map_err(|e| damaged(&e))?;
        tx.open_table(LOGS).map_err(|e| damaged(&e))?;
        tx.open_table(META).map_err(|e| damaged(&e))?;
        tx.open_table(SNAPSHOT).map_err(|e| damaged(&e))?;
        tx.commit().map_err(|e| damaged(&e))?;
    }
    let rtx = db.begin_read().map_err(|e| damaged(&e))?;
    let logs = rtx.open_table(LOGS).map_err(|e| damaged(&e))?;
    for row in logs.iter().map_err(|e| damaged(&e))? {
        let (k, v) = row.map_err(|e| damaged(&e))?;
        let index = k.value();
        let what = || format!("log index {index}");
        let payload = record::open(&log_context(index), v.value())
            .map_err(|e| corrupt(LOGS_TABLE, what(), e.to_string()))?;
        let entry: Entry = serde_json::from_slice(payload).map_err(|e| {
            corrupt(
                LOGS_TABLE,
                what(),
                format!("the checksum holds but the entry does not decode: {e}"),
            )
        })?;
        if entry.log_id.index != index {
            return Err(corrupt(
                LOGS_TABLE,
                what(),
                format!(
                    "the entry is stored under index {index} but is entry {}",
                    entry.log_id.index
                ),
            ));
        }
        legacy.push((index, entry));
    }
    let meta = rtx.open_table(META).map_err(|e| damaged(&e))?;
    let get = |key: &'static str| -> Result<Option<Vec<u8>>, StoreError> {
        let Some(v) = meta.get(key).map_err(|e| damaged(&e))? else {
            return Ok(None);
        };
        record::open(&meta_context(key), v.value())
            .map(|p| Some(p.to_vec()))
            .map_err(|e| corrupt(META_TABLE, format!("record {key:?}"), e.to_string()))
    };
    fn decode<T: serde::de::DeserializeOwned>(
        key: &'static str,
        bytes: &[u8],
        corrupt: impl Fn(&'static str, String, String) -> StoreError,
    ) -> Result<T, StoreError> {
        serde_json::from_slice(bytes).map_err(|e| {
            corrupt(
                META_TABLE,
                format!("record {key:?}"),
                format!("the checksum holds but the value does not decode: {e}"),
            )
        })
    }
    if let Some(v) = get("vote")? {
        cache.vote = Some(decode("vote", &v, corrupt)?);
    }
    if let Some(v) = get("committed")? {
        cache.committed = decode("committed", &v, corrupt)?;
    }
    if let Some(v) = get("last_purged")? {
        cache.last_purged = Some(decode("last_purged", &v, corrupt)?);
    }
    Ok((cache, legacy))
}

/// Moves an old data directory's log from redb's `raft_log` table into a new WAL: the WAL is
/// written from scratch and synced, then the table is emptied. A crash in between leaves the
/// table as it was, and the next start migrates again (it rewrites the WAL).
fn migrate(
    db: &Database,
    file: &Path,
    wal_dir: &Path,
    legacy: &[(u64, Entry)],
) -> Result<(), StoreError> {
    let io = |e: &dyn std::fmt::Display| StoreError::Io {
        file: file.to_path_buf(),
        detail: format!("migrating the raft log to the write-ahead log: {e}"),
    };
    tracing::info!(
        file = %file.display(),
        entries = legacy.len(),
        "migrating the raft log from the data file to the write-ahead log in {}",
        wal_dir.display()
    );
    if wal_dir.exists() {
        // Only an interrupted migration can have left segments here.
        for item in std::fs::read_dir(wal_dir).map_err(|e| io(&e))? {
            let path = item.map_err(|e| io(&e))?.path();
            if path.extension().is_some_and(|x| x == "wal") {
                std::fs::remove_file(&path).map_err(|e| io(&e))?;
            }
        }
    }
    let mut encoded = Vec::with_capacity(legacy.len());
    for (index, entry) in legacy {
        encoded.push((*index, codec::encode(entry).map_err(|e| io(&e))?));
    }
    wal::write_all(wal_dir, &encoded)?;
    catch_panic(|| -> Result<(), redb::Error> {
        let tx = db.begin_write()?;
        tx.open_table(LOGS)?.retain(|_, _| false)?;
        tx.commit()?;
        Ok(())
    })
    .map_err(|p| io(&p))?
    .map_err(|e| io(&e))?;
    tracing::info!(file = %file.display(), "raft log migrated to the write-ahead log");
    Ok(())
}

/// Creates a new data file in `dir` holding nothing but `vote` (a re-synced controller must
/// not vote again in a term it may have voted in before its data was moved aside).
pub fn seed_vote(dir: &Path, vote: &Vote<NodeId>) -> Result<(), StoreError> {
    seed(dir, vote, None)
}

/// Creates a new data file in `dir` holding `vote` and, if given, `snapshot` (its bytes in
/// `snapshot_format`; sealed here) — a re-synced or restored controller's first state.
pub fn seed(dir: &Path, vote: &Vote<NodeId>, snapshot: Option<&[u8]>) -> Result<(), StoreError> {
    let file = dir.join(DATA_FILE);
    let io = |e: &dyn std::fmt::Display| StoreError::Io {
        file: file.clone(),
        detail: e.to_string(),
    };
    std::fs::create_dir_all(dir).map_err(|e| io(&e))?;
    let db = open_file(&file)?;
    let bytes = serde_json::to_vec(vote).map_err(|e| io(&e))?;
    let value = record::seal(&meta_context("vote"), &bytes);
    let tx = db.begin_write().map_err(|e| io(&e))?;
    {
        tx.open_table(LOGS).map_err(|e| io(&e))?;
        let mut snap = tx.open_table(SNAPSHOT).map_err(|e| io(&e))?;
        if let Some(s) = snapshot {
            let sealed = record::seal(&snapshot_context(), s);
            snap.insert(SNAPSHOT_KEY, sealed.as_slice())
                .map_err(|e| io(&e))?;
        }
        let mut meta = tx.open_table(META).map_err(|e| io(&e))?;
        meta.insert("vote", value.as_slice()).map_err(|e| io(&e))?;
    }
    tx.commit().map_err(|e| io(&e))?;
    Ok(())
}

fn writer_loop(db: &Database, mut wal: Wal, rx: std::sync::mpsc::Receiver<Op>) {
    while let Ok(first) = rx.recv() {
        let mut ops = vec![first];
        while ops.len() < GROUP_COMMIT_OPS_MAX {
            match rx.try_recv() {
                Ok(op) => ops.push(op),
                Err(_) => break,
            }
        }
        let result = catch_panic(|| write_group(db, &mut wal, &ops))
            .map_err(|p| format!("panicked writing the raft log: {p}"))
            .and_then(|r| r);
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

/// One group: the entries to the WAL (one `write`, one `fdatasync`), then the metadata and the
/// snapshot in one redb transaction, then the segments a purge frees.
fn write_group(db: &Database, wal: &mut Wal, ops: &[Op]) -> Result<(), String> {
    let mut purge_upto = None;
    let mut redb_ops = false;
    for op in ops {
        match op {
            Op::Append { entries, .. } => {
                for (index, bytes) in entries {
                    wal.append(*index, bytes).map_err(|e| e.to_string())?;
                }
            }
            Op::Truncate { from } => wal.truncate(*from).map_err(|e| e.to_string())?,
            Op::Purge { upto } => {
                purge_upto = Some(upto.index);
                redb_ops = true;
            }
            Op::Meta { .. } | Op::Snapshot { .. } => redb_ops = true,
        }
    }
    wal.sync().map_err(|e| e.to_string())?;
    if redb_ops {
        write_redb(db, ops).map_err(|e| format!("writing the data file: {e}"))?;
    }
    // Only once the purge point is durable do the segments it covers go.
    if let Some(upto) = purge_upto {
        wal.purge(upto).map_err(|e| e.to_string())?;
    }
    Ok(())
}

fn write_redb(db: &Database, ops: &[Op]) -> Result<(), redb::Error> {
    let mut tx = db.begin_write()?;
    // A group whose only redb write is the committed-index hint needs no fsync of its own:
    // losing it only means re-applying from the snapshot on restart, and the next durable commit
    // persists it anyway. Without this, every commit-index advance (on the leader once per
    // write, on followers once per heartbeat) cost a second fsync.
    if ops.iter().all(|op| {
        matches!(
            op,
            Op::Meta {
                key: "committed",
                done: None,
                ..
            } | Op::Append { .. }
                | Op::Truncate { .. }
        )
    }) {
        tx.set_durability(redb::Durability::None)?;
    }
    {
        let mut meta = tx.open_table(META)?;
        let mut snap = tx.open_table(SNAPSHOT)?;
        for op in ops {
            match op {
                Op::Append { .. } | Op::Truncate { .. } => {}
                Op::Purge { upto } => {
                    let v = serde_json::to_vec(upto).unwrap_or_default();
                    let v = record::seal(&meta_context("last_purged"), &v);
                    meta.insert("last_purged", v.as_slice())?;
                }
                Op::Meta { key, value, .. } => {
                    meta.insert(*key, value.as_slice())?;
                }
                Op::Snapshot { value, .. } => {
                    snap.insert(SNAPSHOT_KEY, value.as_slice())?;
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
        let bytes = record::seal(&meta_context("vote"), &bytes);
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
        let bytes = record::seal(&meta_context("committed"), &bytes);
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
                let index = entry.log_id.index;
                let bytes = codec::encode(&entry).map_err(io_err)?;
                encoded.push((index, bytes));
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

#[cfg(test)]
#[path = "log_store_tests.rs"]
mod tests;
