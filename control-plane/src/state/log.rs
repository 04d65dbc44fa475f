//! The attestation log as an append-only, hash-chained sequence.
//!
//! Each entry's hash covers the previous entry's hash and the entry's canonical JSON, so altering
//! or dropping any entry changes every later hash. (The Merkle tree over the same entries comes
//! with the attestation loop; the chain already makes the history tamper-evident.)

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LogEntryKind {
    Verdict,
    Violation,
    Action,
    Migration,
    PolicyChange,
    EnclaveChange,
    UsageDigest,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct LogEntry {
    pub index: u64,
    pub at_ms: i64,
    pub kind: LogEntryKind,
    pub subject: String,
    pub detail: serde_json::Value,
    /// Hex SHA-256 of the previous entry (all zeros for the first).
    pub prev_hash: String,
    /// Hex SHA-256 over `prev_hash ‖ canonical body`.
    pub hash: String,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct AttestationLog {
    pub entries: Vec<LogEntry>,
}

const GENESIS: &str = "0000000000000000000000000000000000000000000000000000000000000000";

fn entry_hash(
    prev_hash: &str,
    index: u64,
    at_ms: i64,
    kind: LogEntryKind,
    subject: &str,
    detail: &serde_json::Value,
) -> String {
    // serde_json writes object keys in sorted order (no preserve_order feature), so this body is
    // canonical for a given value.
    let body = serde_json::json!({"index": index, "at_ms": at_ms, "kind": kind, "subject": subject, "detail": detail});
    let mut h = Sha256::new();
    h.update(prev_hash.as_bytes());
    h.update(body.to_string().as_bytes());
    hex::encode(h.finalize())
}

impl AttestationLog {
    pub fn head(&self) -> &str {
        self.entries.last().map_or(GENESIS, |e| e.hash.as_str())
    }

    /// Appends an entry and returns its index.
    pub fn append(
        &mut self,
        kind: LogEntryKind,
        subject: &str,
        detail: serde_json::Value,
        at_ms: i64,
    ) -> u64 {
        let index = self.entries.len() as u64;
        let prev_hash = self.head().to_string();
        let hash = entry_hash(&prev_hash, index, at_ms, kind, subject, &detail);
        self.entries.push(LogEntry {
            index,
            at_ms,
            kind,
            subject: subject.to_string(),
            detail,
            prev_hash,
            hash,
        });
        index
    }

    /// Recomputes the chain; returns the index of the first entry that does not match.
    pub fn verify_chain(&self) -> Result<(), u64> {
        let mut prev = GENESIS.to_string();
        for (i, e) in self.entries.iter().enumerate() {
            let expected = entry_hash(&prev, i as u64, e.at_ms, e.kind, &e.subject, &e.detail);
            if e.index != i as u64 || e.prev_hash != prev || e.hash != expected {
                return Err(i as u64);
            }
            prev = e.hash.clone();
        }
        Ok(())
    }
}
