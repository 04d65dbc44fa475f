//! How one Raft entry is stored in the write-ahead log: a format version byte, then the entry's
//! envelope in postcard.
//!
//! | bytes | what |
//! | --- | --- |
//! | 1 | [`ENTRY_FORMAT`] (1) |
//! | rest | postcard of `Stored`: term, leader node, index (varints), then the payload |
//!
//! The envelope (log id, entry kind) is binary; the payload of a `Normal` entry (the batch of
//! state-machine commands, `raft::Request`) and of a `Membership` entry stay the JSON bytes they
//! are today, carried as one byte string. The commands cannot go through postcard safely:
//! `Request` decodes with `deserialize_any` (it accepts the bare array of older entries) and the
//! command types use serde attributes that a non-self-describing format does not support. A
//! membership entry is rare and openraft's own serde form is its contract.
//!
//! postcard encodes an enum variant by its position, so **the order of `Payload`'s variants
//! is part of the format: new variants go at the end** (the golden-bytes test pins it).

use serde::{Deserialize, Serialize};

use super::super::{Entry, LogId, Request};
use openraft::{CommittedLeaderId, EntryPayload};

/// The entry format this code writes and reads.
pub const ENTRY_FORMAT: u8 = 1;

/// The stored entry (format 1). Field order and types are the format.
#[derive(Serialize, Deserialize)]
struct Stored<'a> {
    term: u64,
    leader: u64,
    index: u64,
    #[serde(borrow)]
    payload: Payload<'a>,
}

/// Variant order is the format: append new variants at the end only.
#[derive(Serialize, Deserialize)]
enum Payload<'a> {
    Blank,
    /// `raft::Request` as JSON.
    #[serde(borrow)]
    Normal(Bytes<'a>),
    /// openraft's `Membership` as JSON.
    #[serde(borrow)]
    Membership(Bytes<'a>),
}

/// A byte string: postcard writes its length and the bytes — the same bytes as for a `&[u8]`,
/// which serde hands over one number at a time — and reads it borrowed from the input.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Bytes<'a>(pub(crate) &'a [u8]);

impl Serialize for Bytes<'_> {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_bytes(self.0)
    }
}

impl<'de: 'a, 'a> Deserialize<'de> for Bytes<'a> {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> serde::de::Visitor<'de> for V {
            type Value = Bytes<'de>;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("a byte string")
            }
            fn visit_borrowed_bytes<E: serde::de::Error>(
                self,
                v: &'de [u8],
            ) -> Result<Self::Value, E> {
                Ok(Bytes(v))
            }
        }
        d.deserialize_bytes(V)
    }
}

/// Why stored bytes are not an entry.
#[derive(Debug, thiserror::Error)]
pub enum CodecError {
    #[error("the entry is empty")]
    Empty,
    #[error("the entry has format {0}; this Tribune reads format {ENTRY_FORMAT}")]
    UnknownFormat(u8),
    #[error("the entry envelope does not decode: {0}")]
    Envelope(postcard::Error),
    #[error("the entry's payload does not decode: {0}")]
    Payload(serde_json::Error),
    #[error("encoding the entry: {0}")]
    Encode(String),
}

/// Appends the stored form of `entry` to `out`.
///
/// A `Normal` entry's JSON is the request's own ([`Request::json`](crate::raft::Request::json)):
/// encoded once and kept, so storing and replicating the entry do not encode it again.
pub fn encode_into(entry: &Entry, out: &mut Vec<u8>) -> Result<(), CodecError> {
    let json;
    let payload = match &entry.payload {
        EntryPayload::Blank => Payload::Blank,
        EntryPayload::Normal(r) => Payload::Normal(Bytes(
            r.json().map_err(|e| CodecError::Encode(e.to_string()))?,
        )),
        EntryPayload::Membership(m) => {
            json = serde_json::to_vec(m).map_err(|e| CodecError::Encode(e.to_string()))?;
            Payload::Membership(Bytes(&json))
        }
    };
    let stored = Stored {
        term: entry.log_id.leader_id.term,
        leader: entry.log_id.leader_id.node_id,
        index: entry.log_id.index,
        payload,
    };
    out.push(ENTRY_FORMAT);
    postcard::to_io(&stored, &mut *out).map_err(|e| CodecError::Encode(e.to_string()))?;
    Ok(())
}

/// The stored form of `entry`.
pub fn encode(entry: &Entry) -> Result<Vec<u8>, CodecError> {
    let mut out = Vec::with_capacity(64);
    encode_into(entry, &mut out)?;
    Ok(out)
}

/// The entry stored as `bytes`.
pub fn decode(bytes: &[u8]) -> Result<Entry, CodecError> {
    let (&format, rest) = bytes.split_first().ok_or(CodecError::Empty)?;
    if format != ENTRY_FORMAT {
        return Err(CodecError::UnknownFormat(format));
    }
    let stored: Stored = postcard::from_bytes(rest).map_err(CodecError::Envelope)?;
    let payload = match stored.payload {
        Payload::Blank => EntryPayload::Blank,
        Payload::Normal(Bytes(json)) => {
            EntryPayload::Normal(Request::from_json(json).map_err(CodecError::Payload)?)
        }
        Payload::Membership(Bytes(json)) => {
            EntryPayload::Membership(serde_json::from_slice(json).map_err(CodecError::Payload)?)
        }
    };
    Ok(Entry {
        log_id: LogId::new(
            CommittedLeaderId::new(stored.term, stored.leader),
            stored.index,
        ),
        payload,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::raft::{Node, Request};
    use std::collections::{BTreeMap, BTreeSet};

    fn id(term: u64, leader: u64, index: u64) -> LogId {
        LogId::new(CommittedLeaderId::new(term, leader), index)
    }

    #[test]
    fn every_kind_round_trips() {
        let mut nodes = BTreeMap::new();
        nodes.insert(1, Node { addr: "a:1".into() });
        nodes.insert(2, Node { addr: "b:2".into() });
        let configs = vec![BTreeSet::from([1u64, 2])];
        let entries = [
            Entry {
                log_id: id(3, 1, 7),
                payload: EntryPayload::Blank,
            },
            Entry {
                log_id: id(u64::MAX, u64::MAX, u64::MAX),
                payload: EntryPayload::Normal(Request::new(Vec::new())),
            },
            Entry {
                log_id: id(9, 2, 300),
                payload: EntryPayload::Membership(openraft::Membership::new(configs, nodes)),
            },
        ];
        for e in entries {
            let bytes = encode(&e).expect("encodes");
            assert_eq!(decode(&bytes).expect("decodes"), e);
        }
    }

    /// The format is a contract: these bytes were written by format 1 and must read the same
    /// forever. Changing `Stored` or the order of `Payload`'s variants fails here.
    #[test]
    fn golden_bytes_of_format_1() {
        let blank = Entry {
            log_id: id(5, 2, 300),
            payload: EntryPayload::Blank,
        };
        // version, term 5, leader 2, index 300 (varint ac 02), variant 0.
        let golden = [0x01, 0x05, 0x02, 0xac, 0x02, 0x00];
        assert_eq!(encode(&blank).expect("encodes"), golden);
        assert_eq!(decode(&golden).expect("decodes"), blank);

        let normal = Entry {
            log_id: id(1, 1, 1),
            payload: EntryPayload::Normal(Request::new(Vec::new())),
        };
        let json = br#"{"leaf_format":2,"commands":[]}"#;
        let mut golden = vec![0x01, 0x01, 0x01, 0x01, 0x01, json.len() as u8];
        golden.extend_from_slice(json);
        assert_eq!(encode(&normal).expect("encodes"), golden);
        assert_eq!(decode(&golden).expect("decodes"), normal);
        // A bare-array request (before leaf format 2) inside a format-1 envelope still reads.
        let mut old = vec![0x01, 0x01, 0x01, 0x01, 0x01, 2];
        old.extend_from_slice(b"[]");
        assert!(matches!(
            decode(&old).expect("decodes").payload,
            EntryPayload::Normal(_)
        ));
    }

    #[test]
    fn damaged_bytes_are_errors_never_panics() {
        assert!(matches!(decode(&[]), Err(CodecError::Empty)));
        assert!(matches!(decode(&[7, 0]), Err(CodecError::UnknownFormat(7))));
        let bytes = encode(&Entry {
            log_id: id(1, 1, 1),
            payload: EntryPayload::Normal(Request::new(Vec::new())),
        })
        .expect("encodes");
        for cut in 0..bytes.len() {
            assert!(decode(&bytes[..cut]).is_err(), "cut at {cut}");
        }
        for i in 1..bytes.len() {
            let mut b = bytes.clone();
            b[i] ^= 0xff;
            let _ = decode(&b);
        }
    }
}
