//! A torn write at the end of a killed controller's Raft log: what a crash in the middle of an
//! append leaves behind, written into the last WAL segment before the controller restarts.
//!
//! The segment format (control-plane/src/raft/wal/mod.rs) is an 8-byte header, then records
//! of `u32 length (LE) | u32 CRC32C (LE) | payload`. The harness reads it with its own few
//! lines here, not the controller's code. A tear is **appended** after the last intact record,
//! drawn from the seed:
//!
//! - `cut-payload`: a copy of the last record's header with its payload cut short at a
//!   seed-chosen offset (the append was interrupted in the payload);
//! - `cut-header`: 1–7 bytes of a record header;
//! - `bad-crc`: a whole copy of the last record with one payload bit flipped at a seed-chosen
//!   offset (a sector written partly, the rest old);
//! - `zeros`: a seed-chosen run of zero bytes (space allocated, never written).
//!
//! Why appended, not cut into the last intact record: that record was fsynced before the
//! controller acknowledged it to the leader, and counted towards a commit. Removing it models a
//! disk that loses fsynced data — a fault Raft does not claim to survive (a committed entry
//! could then be lost with only one node failing) — not a torn write, which only ever hits the
//! write in progress. The controller must cut the tear on restart (it logs `cutting off a torn
//! tail`), come back and lose nothing: the run checks both.

use std::io::Write;
use std::path::{Path, PathBuf};

use rand::Rng;
use rand_chacha::ChaCha8Rng;

use super::Error;

const HEADER: usize = 8;
const RECORD_HEADER: usize = 8;

/// The kind of tear written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Tear {
    CutPayload,
    CutHeader,
    BadCrc,
    Zeros,
    /// The log had no segment yet (nothing to tear).
    NoLog,
}

impl Tear {
    pub fn name(self) -> &'static str {
        match self {
            Tear::CutPayload => "cut-payload",
            Tear::CutHeader => "cut-header",
            Tear::BadCrc => "bad-crc",
            Tear::Zeros => "zeros",
            Tear::NoLog => "no-log",
        }
    }
}

/// The message a controller logs when it cuts a torn tail.
pub const CUT_MESSAGE: &str = "cutting off a torn tail";

/// The last segment of the WAL under a controller's data dir.
pub fn last_segment(data_dir: &Path) -> Option<PathBuf> {
    let dir = data_dir.join("raft").join("wal");
    let mut segs: Vec<PathBuf> = std::fs::read_dir(dir)
        .ok()?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "wal"))
        .collect();
    segs.sort();
    segs.pop()
}

/// The offset and bytes of the last intact record of a segment's bytes.
fn last_record(bytes: &[u8]) -> Option<(usize, &[u8])> {
    let mut at = HEADER;
    let mut last = None;
    while bytes.len() >= at + RECORD_HEADER {
        let len =
            u32::from_le_bytes([bytes[at], bytes[at + 1], bytes[at + 2], bytes[at + 3]]) as usize;
        let end = at + RECORD_HEADER + len;
        if len == 0 || end > bytes.len() {
            break;
        }
        last = Some((at, &bytes[at..end]));
        at = end;
    }
    last
}

/// Appends a tear drawn from `rng` to the last segment of the (stopped) controller's log.
pub fn tear(data_dir: &Path, rng: &mut ChaCha8Rng) -> Result<Tear, Error> {
    let kind = rng.random_range(0..4);
    let Some(seg) = last_segment(data_dir) else {
        return Ok(Tear::NoLog);
    };
    let bytes =
        std::fs::read(&seg).map_err(|e| Error::Setup(format!("reading {}: {e}", seg.display())))?;
    let Some((_, rec)) = last_record(&bytes) else {
        return Ok(Tear::NoLog);
    };
    let payload_len = rec.len() - RECORD_HEADER;
    let (how, tail): (Tear, Vec<u8>) = match kind {
        0 if payload_len > 1 => {
            let keep = rng.random_range(1..payload_len);
            (Tear::CutPayload, rec[..RECORD_HEADER + keep].to_vec())
        }
        1 => {
            let keep = rng.random_range(1..RECORD_HEADER);
            (Tear::CutHeader, rec[..keep].to_vec())
        }
        2 => {
            let mut t = rec.to_vec();
            let at = RECORD_HEADER + rng.random_range(0..payload_len.max(1));
            if at < t.len() {
                t[at] ^= 1 << rng.random_range(0..8);
            }
            (Tear::BadCrc, t)
        }
        _ => (Tear::Zeros, vec![0u8; rng.random_range(1..4096)]),
    };
    let mut f = std::fs::OpenOptions::new()
        .append(true)
        .open(&seg)
        .map_err(|e| Error::Setup(format!("opening {}: {e}", seg.display())))?;
    f.write_all(&tail)
        .and_then(|()| f.sync_all())
        .map_err(|e| Error::Setup(format!("tearing {}: {e}", seg.display())))?;
    Ok(how)
}

/// How many times a controller's log file says it cut a torn tail.
pub fn cuts_logged(log: &Path) -> usize {
    std::fs::read_to_string(log)
        .unwrap_or_default()
        .matches(CUT_MESSAGE)
        .count()
}
