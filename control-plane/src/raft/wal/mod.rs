//! The Raft log as a write-ahead log: append-only segment files.
//!
//! `DATA_DIR/raft/wal/` holds segments named by the index of their first entry
//! (`00000000000000000001.wal`). A segment is an 8-byte header ([`MAGIC`], whose last byte is
//! the segment format) followed by records:
//!
//! | bytes | what |
//! | --- | --- |
//! | 4 | payload length, u32 little-endian |
//! | 4 | CRC32C (Castagnoli) of the length bytes and the payload, u32 little-endian |
//! | n | the payload: one entry in [`codec`]'s binary form |
//!
//! Within a segment the entries' indexes are consecutive. A new segment starts when the
//! current one has reached its size ([`SEGMENT_BYTES`], checked between groups, so a segment
//! may exceed it by one group) or when an append does not follow the last entry (after a purge
//! past the end of the log, when a snapshot was installed).
//!
//! Durability: [`Wal::append`] only writes; [`Wal::sync`] makes everything written durable with
//! one `fdatasync` (the caller, the log store's writer thread, calls it once per group of
//! appends). A new segment is fsynced with its directory before records go into it.
//!
//! Recovery ([`Wal::open`]): a torn record at the very tail of the last segment — a header or
//! payload cut short, a bad CRC with no intact record behind it, or a zeroed tail — is what a
//! crash during a write leaves; it is cut off with a warning (it was never acknowledged). A bad
//! record anywhere else is corruption of acknowledged data: an error naming the file and the
//! offset, and the store does not open.
//!
//! Truncation removes later segments (newest first, so a crash leaves a prefix) and then cuts
//! the segment holding the first removed entry. Purge removes whole segments whose every entry
//! is covered; the caller records the purge point durably first (entries at or below it that
//! remain in a segment are skipped when the log is loaded).
//!
//! Why our own and not the `raft-log` crate (0.4, by openraft's maintainer, used by Databend's
//! meta service): it is a complete Raft-log store with its own entry, vote and user-data types,
//! its own record codec (`codeq`) and its own flush worker and cache, logging through `log`; it
//! stores no snapshot, so the guarantee that the log is only purged behind a durable snapshot
//! would have to be kept across two stores; and its API changed on each of 0.2, 0.3 and 0.4.
//! Adapting it to openraft 0.9's `RaftLogStorage` means mapping every type both ways and a
//! second writer thread beside the one that already group-commits the snapshot and metadata.
//! What we need — append, one fsync per group, truncate, purge, torn-tail recovery with errors
//! naming the file and offset — is this module. Not measured side by side (time); see
//! `bench/README.md` for this one's figures.

pub mod codec;

#[cfg(test)]
mod tests;

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use crate::integrity::StoreError;

use super::Entry;

/// The WAL directory inside the Raft directory.
pub const WAL_DIR: &str = "wal";
/// Target size of one segment.
pub const SEGMENT_BYTES: u64 = 64 << 20;
/// Segment header: `TRIBWAL` and the segment format (1).
pub const MAGIC: &[u8; 8] = b"TRIBWAL\x01";
const HEADER: u64 = MAGIC.len() as u64;
/// Bytes in front of a record's payload.
pub const RECORD_HEADER: usize = 8;
/// Label of the WAL in [`StoreError::Corrupt`].
pub const TABLE: &str = "raft write-ahead log";
/// A length above this cannot be a record (entries are far smaller): a damaged header.
const RECORD_MAX: usize = 1 << 30;

/// The file name of the segment whose first entry is `first`.
pub fn segment_name(first: u64) -> String {
    format!("{first:020}.wal")
}

fn parse_name(name: &str) -> Option<u64> {
    let digits = name.strip_suffix(".wal")?;
    if digits.len() != 20 || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    digits.parse().ok()
}

/// The CRC32C of a record: over its length bytes and its payload.
fn checksum(len: [u8; 4], payload: &[u8]) -> u32 {
    crc32c::crc32c_append(crc32c::crc32c(&len), payload)
}

/// Appends the record holding `payload` to `out`.
pub fn frame_into(payload: &[u8], out: &mut Vec<u8>) {
    let len = (payload.len() as u32).to_le_bytes();
    out.extend_from_slice(&len);
    out.extend_from_slice(&checksum(len, payload).to_le_bytes());
    out.extend_from_slice(payload);
}

struct Segment {
    first: u64,
    path: PathBuf,
    /// Bytes of the file that hold intact records (and the header).
    len: u64,
    /// `offsets[i]`: where the record of entry `first + i` starts.
    offsets: Vec<u64>,
}

impl Segment {
    /// The index the next entry in this segment would have.
    fn next(&self) -> u64 {
        self.first + self.offsets.len() as u64
    }
}

/// The segment log. Owned by one thread (the log store's writer).
pub struct Wal {
    dir: PathBuf,
    segment_bytes: u64,
    segments: Vec<Segment>,
    /// The open last segment.
    active: Option<File>,
    /// Written to the active segment since the last [`Wal::sync`].
    dirty: bool,
    /// The directory changed (segments created or removed) since the last sync.
    dir_dirty: bool,
    /// Bytes queued for the active segment.
    pending: Vec<u8>,
    /// Set by the first write error: the file's tail is unknown, nothing more is written.
    failed: Option<String>,
}

fn io_error(file: &Path, what: &str, e: std::io::Error) -> StoreError {
    StoreError::Io {
        file: file.to_path_buf(),
        detail: format!("{what}: {e}"),
    }
}

fn corrupt(file: &Path, offset: u64, problem: String) -> StoreError {
    StoreError::Corrupt {
        file: file.to_path_buf(),
        table: TABLE,
        record: format!("record at byte offset {offset}"),
        problem,
    }
}

fn sync_dir(dir: &Path) -> Result<(), StoreError> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|e| io_error(dir, "fsync of the directory", e))
}

/// What one segment holds, read at open.
struct Scanned {
    segment: Segment,
    entries: Vec<Entry>,
}

/// One record read from `bytes` at `at`.
enum Next<'a> {
    Record(&'a [u8], u64),
    /// Nothing but zeroes from `at` to the end.
    ZeroTail,
    End,
    Bad(String),
}

fn read_record(bytes: &[u8], at: usize) -> Next<'_> {
    let rest = &bytes[at..];
    if rest.is_empty() {
        return Next::End;
    }
    if rest.iter().all(|b| *b == 0) {
        return Next::ZeroTail;
    }
    if rest.len() < RECORD_HEADER {
        return Next::Bad(format!(
            "a record header cut short ({} of {RECORD_HEADER} bytes)",
            rest.len()
        ));
    }
    let len_bytes = [rest[0], rest[1], rest[2], rest[3]];
    let len = u32::from_le_bytes(len_bytes) as usize;
    let stored = u32::from_le_bytes([rest[4], rest[5], rest[6], rest[7]]);
    if len > RECORD_MAX {
        return Next::Bad(format!("an impossible record length {len}"));
    }
    if rest.len() - RECORD_HEADER < len {
        return Next::Bad(format!(
            "a record of {len} bytes cut short at {} bytes",
            rest.len() - RECORD_HEADER
        ));
    }
    let payload = &rest[RECORD_HEADER..RECORD_HEADER + len];
    let computed = checksum(len_bytes, payload);
    if computed != stored {
        return Next::Bad(format!(
            "CRC32C mismatch (stored {stored:08x}, computed {computed:08x})"
        ));
    }
    Next::Record(payload, (RECORD_HEADER + len) as u64)
}

/// Reads one segment; `last` says whether a torn tail may be cut.
fn scan(path: &Path, first: u64, last: bool) -> Result<Option<Scanned>, StoreError> {
    let bytes = std::fs::read(path).map_err(|e| io_error(path, "reading the segment", e))?;
    if bytes.len() < MAGIC.len() || &bytes[..MAGIC.len()] != MAGIC {
        let torn_header =
            bytes.len() < MAGIC.len() && MAGIC.starts_with(&bytes) || bytes.iter().all(|b| *b == 0);
        if last && torn_header {
            tracing::warn!(file = %path.display(), "removing a segment whose header was never completely written (a crash while it was created)");
            std::fs::remove_file(path).map_err(|e| io_error(path, "removing it", e))?;
            return Ok(None);
        }
        if bytes.len() >= MAGIC.len() && bytes.starts_with(b"TRIBWAL") {
            return Err(corrupt(
                path,
                0,
                format!(
                    "the segment has format {}; this Tribune reads format {}",
                    bytes[MAGIC.len() - 1],
                    MAGIC[MAGIC.len() - 1]
                ),
            ));
        }
        return Err(corrupt(
            path,
            0,
            "the file is not a Tribune WAL segment (bad header)".into(),
        ));
    }
    let mut segment = Segment {
        first,
        path: path.to_path_buf(),
        len: HEADER,
        offsets: Vec::new(),
    };
    let mut entries = Vec::new();
    let mut at = HEADER as usize;
    let cut = loop {
        match read_record(&bytes, at) {
            Next::End => break None,
            Next::ZeroTail => break Some("a zeroed tail".to_string()),
            Next::Bad(problem) => {
                // A torn tail: nothing intact follows it. Anything intact behind it means the
                // damage is in the middle of acknowledged data.
                let skip = if bytes.len() - at >= RECORD_HEADER {
                    let l = u32::from_le_bytes([
                        bytes[at],
                        bytes[at + 1],
                        bytes[at + 2],
                        bytes[at + 3],
                    ]) as usize;
                    at.saturating_add(RECORD_HEADER).saturating_add(l)
                } else {
                    bytes.len()
                };
                let intact_after =
                    skip < bytes.len() && matches!(read_record(&bytes, skip), Next::Record(..));
                if last && !intact_after {
                    break Some(problem);
                }
                let index = segment.next();
                return Err(corrupt(
                    path,
                    at as u64,
                    format!(
                        "{problem} where log index {index} should be{}",
                        if last {
                            ", with intact records behind it (not a torn write)"
                        } else {
                            " (not the last segment)"
                        }
                    ),
                ));
            }
            Next::Record(payload, size) => {
                let entry = codec::decode(payload).map_err(|e| {
                    corrupt(
                        path,
                        at as u64,
                        format!("the checksum holds but the entry does not decode: {e}"),
                    )
                })?;
                let want = segment.next();
                if entry.log_id.index != want {
                    return Err(corrupt(
                        path,
                        at as u64,
                        format!(
                            "the record holds log index {} where index {want} should be",
                            entry.log_id.index
                        ),
                    ));
                }
                segment.offsets.push(at as u64);
                entries.push(entry);
                at += size as usize;
                segment.len = at as u64;
            }
        }
    };
    if let Some(problem) = cut {
        tracing::warn!(
            file = %path.display(),
            offset = at,
            cut_bytes = bytes.len() - at,
            "cutting off a torn tail of the raft log ({problem}): a write interrupted by a crash, never acknowledged"
        );
        let f = OpenOptions::new()
            .write(true)
            .open(path)
            .map_err(|e| io_error(path, "opening it to cut a torn tail", e))?;
        f.set_len(at as u64)
            .and_then(|()| f.sync_all())
            .map_err(|e| io_error(path, "cutting a torn tail", e))?;
    }
    if segment.offsets.is_empty() {
        if last {
            std::fs::remove_file(path)
                .map_err(|e| io_error(path, "removing an empty segment", e))?;
            return Ok(None);
        }
        return Err(corrupt(
            path,
            HEADER,
            "a segment before the last holds no records".into(),
        ));
    }
    Ok(Some(Scanned { segment, entries }))
}

impl Wal {
    /// Opens (or creates) the WAL in `dir`, recovers a torn tail and returns every entry in it,
    /// in order. Entries in different segments need not be consecutive (a purge may have left
    /// a gap); the caller checks the log against its purge point.
    pub fn open(dir: &Path, segment_bytes: u64) -> Result<(Wal, Vec<Entry>), StoreError> {
        std::fs::create_dir_all(dir).map_err(|e| io_error(dir, "creating the directory", e))?;
        let mut named = Vec::new();
        let list = std::fs::read_dir(dir).map_err(|e| io_error(dir, "listing it", e))?;
        for item in list {
            let item = item.map_err(|e| io_error(dir, "listing it", e))?;
            let name = item.file_name();
            if let Some(first) = name.to_str().and_then(parse_name) {
                named.push((first, item.path()));
            }
        }
        named.sort();
        let mut segments = Vec::new();
        let mut entries: Vec<Entry> = Vec::new();
        let count = named.len();
        for (n, (first, path)) in named.into_iter().enumerate() {
            let Some(s) = scan(&path, first, n + 1 == count)? else {
                continue;
            };
            if let Some(prev) = entries.last()
                && s.segment.first <= prev.log_id.index
            {
                return Err(corrupt(
                    &path,
                    HEADER,
                    format!(
                        "the segment starts at log index {first}, not after the previous segment's last index {}",
                        prev.log_id.index
                    ),
                ));
            }
            entries.extend(s.entries);
            segments.push(s.segment);
        }
        let active = match segments.last() {
            Some(s) => Some(
                OpenOptions::new()
                    .write(true)
                    .open(&s.path)
                    .map_err(|e| io_error(&s.path, "opening it for appends", e))?,
            ),
            None => None,
        };
        Ok((
            Wal {
                dir: dir.to_path_buf(),
                segment_bytes,
                segments,
                active,
                dirty: false,
                dir_dirty: false,
                pending: Vec::new(),
                failed: None,
            },
            entries,
        ))
    }

    fn check(&self) -> Result<(), StoreError> {
        match &self.failed {
            Some(e) => Err(StoreError::Io {
                file: self.dir.clone(),
                detail: format!("an earlier write failed, the log takes no more writes: {e}"),
            }),
            None => Ok(()),
        }
    }

    fn fail(&mut self, e: StoreError) -> StoreError {
        if self.failed.is_none() {
            self.failed = Some(e.to_string());
        }
        e
    }

    /// The index after the last entry, if there is one.
    pub fn next_index(&self) -> Option<u64> {
        self.segments.last().map(Segment::next)
    }

    /// Queues the entry at `index`, stored as `payload` (see [`codec`]). Writes reach the file
    /// in [`Wal::flush`] or [`Wal::sync`]. An index at or below the last one truncates first.
    pub fn append(&mut self, index: u64, payload: &[u8]) -> Result<(), StoreError> {
        self.check()?;
        match self.next_index() {
            Some(next) if index < next => self.truncate(index)?,
            _ => {}
        }
        let roll = match self.segments.last() {
            None => true,
            Some(s) => s.next() != index || s.len + self.pending.len() as u64 >= self.segment_bytes,
        };
        if roll {
            self.start_segment(index)?;
        }
        let Some(seg) = self.segments.last_mut() else {
            return Ok(());
        };
        seg.offsets.push(seg.len + self.pending.len() as u64);
        frame_into(payload, &mut self.pending);
        Ok(())
    }

    /// Writes what is queued (one `write`), without syncing.
    pub fn flush(&mut self) -> Result<(), StoreError> {
        self.check()?;
        if self.pending.is_empty() {
            return Ok(());
        }
        let (Some(file), Some(seg)) = (self.active.as_mut(), self.segments.last_mut()) else {
            return Ok(());
        };
        let result = file.write_all_at(&self.pending, seg.len);
        match result {
            Ok(()) => {
                seg.len += self.pending.len() as u64;
                self.pending.clear();
                self.dirty = true;
                Ok(())
            }
            Err(e) => {
                // Best effort: leave the file ending at its last intact record.
                let _ = file.set_len(seg.len);
                let e = io_error(&seg.path, "appending to the segment", e);
                Err(self.fail(e))
            }
        }
    }

    /// Makes everything appended so far durable: one `fdatasync` of the active segment (and
    /// of the directory if segments came or went).
    pub fn sync(&mut self) -> Result<(), StoreError> {
        self.flush()?;
        if self.dirty {
            if let (Some(file), Some(seg)) = (self.active.as_ref(), self.segments.last()) {
                let started = std::time::Instant::now();
                if let Err(e) = file.sync_data() {
                    let e = io_error(&seg.path, "fdatasync", e);
                    return Err(self.fail(e));
                }
                crate::metrics::get()
                    .raft_log_fsync_seconds
                    .observe(started.elapsed().as_secs_f64());
            }
            self.dirty = false;
        }
        if self.dir_dirty {
            if let Err(e) = sync_dir(&self.dir) {
                return Err(self.fail(e));
            }
            self.dir_dirty = false;
        }
        Ok(())
    }

    /// Closes the active segment (durably) and starts a new one whose first entry is `first`.
    fn start_segment(&mut self, first: u64) -> Result<(), StoreError> {
        self.sync()?;
        let path = self.dir.join(segment_name(first));
        let created = (|| {
            let mut f = OpenOptions::new()
                .write(true)
                .create(true)
                .truncate(true)
                .open(&path)?;
            f.write_all(MAGIC)?;
            f.sync_all()?;
            Ok::<File, std::io::Error>(f)
        })();
        let file = match created {
            Ok(f) => f,
            Err(e) => {
                let _ = std::fs::remove_file(&path);
                let e = io_error(&path, "creating a segment", e);
                return Err(self.fail(e));
            }
        };
        if let Err(e) = sync_dir(&self.dir) {
            return Err(self.fail(e));
        }
        self.segments.push(Segment {
            first,
            path,
            len: HEADER,
            offsets: Vec::new(),
        });
        self.active = Some(file);
        Ok(())
    }

    /// Removes the entries from `from` on.
    pub fn truncate(&mut self, from: u64) -> Result<(), StoreError> {
        self.flush()?;
        // Newest first: a crash part-way leaves a prefix of the log.
        while let Some(seg) = self.segments.last() {
            if seg.first < from {
                break;
            }
            self.active = None;
            let path = seg.path.clone();
            if let Err(e) = std::fs::remove_file(&path) {
                return Err(self.fail(io_error(&path, "removing a truncated segment", e)));
            }
            self.segments.pop();
            self.dir_dirty = true;
        }
        let Some(seg) = self.segments.last_mut() else {
            return Ok(());
        };
        if from >= seg.next() {
            if self.active.is_none() {
                self.reopen_active()?;
            }
            return Ok(());
        }
        let keep = (from - seg.first) as usize;
        let at = seg.offsets[keep];
        seg.offsets.truncate(keep);
        seg.len = at;
        let path = seg.path.clone();
        let cut = OpenOptions::new()
            .write(true)
            .open(&path)
            .and_then(|f| f.set_len(at).map(|()| f));
        match cut {
            Ok(f) => {
                self.active = Some(f);
                self.dirty = true;
                Ok(())
            }
            Err(e) => Err(self.fail(io_error(&path, "truncating the segment", e))),
        }
    }

    fn reopen_active(&mut self) -> Result<(), StoreError> {
        if let Some(seg) = self.segments.last() {
            match OpenOptions::new().write(true).open(&seg.path) {
                Ok(f) => self.active = Some(f),
                Err(e) => {
                    let e = io_error(&seg.path, "opening it for appends", e);
                    return Err(self.fail(e));
                }
            }
        }
        Ok(())
    }

    /// Removes every segment whose entries are all at or below `upto`. The caller has made the
    /// purge point durable first.
    pub fn purge(&mut self, upto: u64) -> Result<(), StoreError> {
        self.flush()?;
        let remove = self
            .segments
            .iter()
            .take_while(|s| s.next() <= upto.saturating_add(1))
            .count();
        if remove == self.segments.len() {
            self.active = None;
            self.dirty = false;
        }
        // Oldest first: a crash part-way leaves a suffix of the log.
        for _ in 0..remove {
            let path = self.segments[0].path.clone();
            if let Err(e) = std::fs::remove_file(&path) {
                return Err(self.fail(io_error(&path, "removing a purged segment", e)));
            }
            self.segments.remove(0);
            self.dir_dirty = true;
        }
        Ok(())
    }

    /// The segment files, oldest first (for tests and tools).
    pub fn segment_files(&self) -> Vec<PathBuf> {
        self.segments.iter().map(|s| s.path.clone()).collect()
    }
}

/// Writes `entries` (already in [`codec`] form, with their indexes) as a new WAL in `dir`,
/// durably. Used to migrate a log from the redb format.
pub fn write_all(dir: &Path, entries: &[(u64, Vec<u8>)]) -> Result<(), StoreError> {
    let (mut wal, _) = Wal::open(dir, SEGMENT_BYTES)?;
    for (index, payload) in entries {
        wal.append(*index, payload)?;
    }
    wal.sync()?;
    Ok(())
}
