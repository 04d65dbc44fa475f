//! How a stored snapshot is laid out in the `snapshot` table: a binary envelope, versioned.
//!
//! ```text
//! b"TRIBSNAP" | version: u8 (1) | meta_len: u32 LE | meta (JSON) | data (the state's bytes)
//! ```
//!
//! The state's bytes go in as they are. Until format 1 the whole envelope was JSON, with the
//! state as a JSON array of byte numbers (`"data":[123,34,…]`): about four times the state's
//! size on disk (a 43 MB state took 169 MB). A record in that older format (it starts with `{`)
//! still loads; the next snapshot is written in format 1. A version newer than this build knows
//! is refused, saying so, instead of being misread.

use openraft::SnapshotMeta;
use serde::{Deserialize, Serialize};

use super::{Node, NodeId};

/// The first bytes of every snapshot written in a versioned format.
pub const MAGIC: &[u8; 8] = b"TRIBSNAP";
/// The format this build writes (and the newest it reads).
pub const VERSION: u8 = 1;
/// `MAGIC`, the version byte and the meta length.
const HEADER_LEN: usize = MAGIC.len() + 1 + 4;

/// A snapshot as stored: openraft's meta and the state's bytes.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StoredSnapshot {
    pub meta: SnapshotMeta<NodeId, Node>,
    pub data: Vec<u8>,
}

/// Why stored snapshot bytes do not decode.
#[derive(Debug, thiserror::Error)]
pub enum FormatError {
    #[error(
        "snapshot format {found} was written by a newer Tribune (this one reads formats up to {VERSION}); run the newer release or re-sync this controller from its peers"
    )]
    NewerVersion { found: u8 },
    #[error("snapshot format {found} is unknown")]
    UnknownVersion { found: u8 },
    #[error("the snapshot is truncated: {len} bytes, its header says at least {needed}")]
    Truncated { len: usize, needed: usize },
    #[error("the snapshot's meta does not decode: {0}")]
    Meta(serde_json::Error),
    #[error("the snapshot is neither format {VERSION} nor the older JSON format: {0}")]
    Legacy(serde_json::Error),
}

impl StoredSnapshot {
    /// The bytes to store, in format [`VERSION`].
    pub fn encode(&self) -> Result<Vec<u8>, serde_json::Error> {
        let meta = serde_json::to_vec(&self.meta)?;
        let meta_len = u32::try_from(meta.len()).map_err(serde::ser::Error::custom)?;
        let mut out = Vec::with_capacity(HEADER_LEN + meta.len() + self.data.len());
        out.extend_from_slice(MAGIC);
        out.push(VERSION);
        out.extend_from_slice(&meta_len.to_le_bytes());
        out.extend_from_slice(&meta);
        out.extend_from_slice(&self.data);
        Ok(out)
    }

    /// Reads stored bytes in format [`VERSION`] or in the older all-JSON format.
    pub fn decode(bytes: &[u8]) -> Result<Self, FormatError> {
        let Some(rest) = bytes.strip_prefix(MAGIC.as_slice()) else {
            return serde_json::from_slice(bytes).map_err(FormatError::Legacy);
        };
        let truncated = |needed| FormatError::Truncated {
            len: bytes.len(),
            needed,
        };
        let (&version, rest) = rest.split_first().ok_or(truncated(HEADER_LEN))?;
        match version {
            VERSION => {}
            v if v > VERSION => return Err(FormatError::NewerVersion { found: v }),
            v => return Err(FormatError::UnknownVersion { found: v }),
        }
        let (len, rest) = rest.split_first_chunk::<4>().ok_or(truncated(HEADER_LEN))?;
        let meta_len = u32::from_le_bytes(*len) as usize;
        if rest.len() < meta_len {
            return Err(truncated(HEADER_LEN + meta_len));
        }
        let (meta, data) = rest.split_at(meta_len);
        Ok(StoredSnapshot {
            meta: serde_json::from_slice(meta).map_err(FormatError::Meta)?,
            data: data.to_vec(),
        })
    }
}

#[cfg(test)]
mod tests {
    use openraft::{CommittedLeaderId, LogId, StoredMembership};

    use super::*;

    fn sample(data: Vec<u8>) -> StoredSnapshot {
        StoredSnapshot {
            meta: SnapshotMeta {
                last_log_id: Some(LogId::new(CommittedLeaderId::new(3, 1), 42)),
                last_membership: StoredMembership::default(),
                snapshot_id: "1-42-7".into(),
            },
            data,
        }
    }

    #[test]
    fn format_1_round_trips_and_costs_the_data_plus_a_small_header() {
        let data: Vec<u8> = br#"{"policies":{"p":{"source":"x"}}}"#.repeat(1000);
        let s = sample(data.clone());
        let bytes = s.encode().expect("encode");
        assert!(bytes.starts_with(MAGIC));
        assert_eq!(bytes[MAGIC.len()], VERSION);
        assert_eq!(StoredSnapshot::decode(&bytes).expect("decode"), s);
        // The old format wrote each byte as a JSON number: ~4 bytes per byte.
        let legacy = serde_json::to_vec(&s).expect("legacy");
        assert!(bytes.len() < data.len() + 200, "{} bytes", bytes.len());
        assert!(legacy.len() > 3 * data.len(), "{} bytes", legacy.len());
    }

    #[test]
    fn a_snapshot_in_the_older_json_format_still_loads() {
        let s = sample(b"{\"x\":1}".to_vec());
        let legacy = serde_json::to_vec(&s).expect("legacy");
        assert!(legacy.starts_with(b"{"));
        assert!(
            String::from_utf8_lossy(&legacy).contains("\"data\":[123,34,120"),
            "the older format is what today's data dirs hold"
        );
        assert_eq!(StoredSnapshot::decode(&legacy).expect("decode"), s);
    }

    #[test]
    fn damaged_or_newer_snapshots_are_refused_with_what_is_wrong() {
        let bytes = sample(b"state".to_vec()).encode().expect("encode");
        // Every truncation inside the header or the meta is refused, never misread.
        let header_and_meta = bytes.len() - b"state".len();
        for cut in 0..header_and_meta {
            let e = StoredSnapshot::decode(&bytes[..cut]).expect_err("truncated");
            assert!(
                matches!(
                    e,
                    FormatError::Truncated { .. } | FormatError::Meta(_) | FormatError::Legacy(_)
                ),
                "cut at {cut}: {e}"
            );
        }
        let mut newer = bytes.clone();
        newer[MAGIC.len()] = VERSION + 1;
        let e = StoredSnapshot::decode(&newer).expect_err("newer");
        assert!(e.to_string().contains("written by a newer Tribune"), "{e}");
        let mut zero = bytes.clone();
        zero[MAGIC.len()] = 0;
        assert!(matches!(
            StoredSnapshot::decode(&zero),
            Err(FormatError::UnknownVersion { found: 0 })
        ));
        let e = StoredSnapshot::decode(b"garbage").expect_err("garbage");
        assert!(matches!(e, FormatError::Legacy(_)), "{e}");
    }
}
