//! The attestation log: an append-only sequence of entries and the RFC 6962/9162 Merkle tree over
//! them (DESIGN.md §3, §6.2).
//!
//! Leaf `i` of the tree is the entry's canonical bytes ([`LogEntry::leaf_bytes`]): the compact
//! JSON of `{"at_ms", "detail", "index", "kind", "leaf_format", "subject"}` (no `leaf_format`
//! in format 1) with every object's keys sorted bytewise; the detail is typed per kind
//! ([`LogDetail`], `state/detail.rs`) and written in the entry's leaf format
//! (`state/leaf_format.rs`: format 2 is float-free, format 1 is what old entries hold). The tree itself is not serialised: it is a pure
//! function of the entries and is rebuilt whenever the log is deserialised (snapshot install,
//! restart), so every replica holds the same tree for the same entries. Signing tree heads is
//! the controllers' business (`crate::log_key`); this module stays pure.

use std::collections::HashMap;

use serde::ser::SerializeStruct;
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use serde_json::Value;
use sha2::{Digest, Sha256};
use tribune_attest::merkle::{Hash, MerkleTree};
use tribune_receipt::canonical;

use super::detail::{Body, LogDetail};
use super::leaf_format::LeafFormat;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[derive(utoipa::ToSchema)]
pub enum LogEntryKind {
    Verdict,
    Violation,
    Action,
    Migration,
    PolicyChange,
    EnclaveChange,
    UsageDigest,
    /// A controller registered its tree-head signing key.
    LogKey,
    /// A host record was written through the API (not by its agent's stream).
    HostChange,
    /// A controller was added, promoted or removed.
    MembershipChange,
    /// A bearer token was created or revoked.
    TokenChange,
}

impl LogEntryKind {
    /// The name used in JSON, the API's `kind=` filter and the CLI (a new kind goes here and in
    /// [`Self::ALL`]).
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Verdict => "verdict",
            Self::Violation => "violation",
            Self::Action => "action",
            Self::Migration => "migration",
            Self::PolicyChange => "policy_change",
            Self::EnclaveChange => "enclave_change",
            Self::UsageDigest => "usage_digest",
            Self::LogKey => "log_key",
            Self::HostChange => "host_change",
            Self::MembershipChange => "membership_change",
            Self::TokenChange => "token_change",
        }
    }

    pub const ALL: [LogEntryKind; 11] = [
        Self::Verdict,
        Self::Violation,
        Self::Action,
        Self::Migration,
        Self::PolicyChange,
        Self::EnclaveChange,
        Self::UsageDigest,
        Self::LogKey,
        Self::HostChange,
        Self::MembershipChange,
        Self::TokenChange,
    ];

    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|k| k.as_str() == s)
    }
}

/// One log entry. Its Merkle leaf is [`LogEntry::leaf_bytes`]; its kind is its detail's
/// ([`LogEntry::kind`]). JSON: `{"index", "at_ms", "kind", "subject", "detail"}` plus
/// `"leaf_format": 2` for a float-free entry (absent: format 1).
#[derive(Clone, Debug, PartialEq)]
pub struct LogEntry {
    pub index: u64,
    pub at_ms: i64,
    pub subject: String,
    pub detail: LogDetail,
    /// How the leaf is written; fixed when the entry is appended.
    pub format: LeafFormat,
}

impl LogEntry {
    pub fn kind(&self) -> LogEntryKind {
        self.detail.kind()
    }

    /// The detail object as this entry's leaf holds it.
    pub fn detail_value(&self) -> Value {
        self.detail.to_value_as(self.format)
    }

    /// The canonical leaf bytes: compact JSON of `{at_ms, detail, index, kind, leaf_format,
    /// subject}` (format 1: no `leaf_format`), object keys sorted bytewise at every depth,
    /// strings and numbers as `serde_json` writes them (format 2 holds integers only). Stable
    /// across a JSON round trip, so a client that fetched the entry as JSON recomputes the same
    /// bytes.
    pub fn leaf_bytes(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(128);
        out.extend_from_slice(b"{\"at_ms\":");
        out.extend_from_slice(self.at_ms.to_string().as_bytes());
        out.extend_from_slice(b",\"detail\":");
        canonical::write(&self.detail_value(), &mut out);
        out.extend_from_slice(b",\"index\":");
        out.extend_from_slice(self.index.to_string().as_bytes());
        out.extend_from_slice(b",\"kind\":\"");
        out.extend_from_slice(self.kind().as_str().as_bytes());
        if self.format != LeafFormat::V1 {
            out.extend_from_slice(b"\",\"leaf_format\":");
            out.extend_from_slice(self.format.number().to_string().as_bytes());
            out.extend_from_slice(b",\"subject\":");
        } else {
            out.extend_from_slice(b"\",\"subject\":");
        }
        canonical::string(&self.subject, &mut out);
        out.push(b'}');
        out
    }

    /// RFC 6962 leaf hash of [`Self::leaf_bytes`].
    pub fn leaf_hash(&self) -> Hash {
        tribune_attest::merkle::leaf_hash(&self.leaf_bytes())
    }
}

impl Serialize for LogEntry {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let v1 = self.format == LeafFormat::V1;
        let mut e = s.serialize_struct("LogEntry", if v1 { 5 } else { 6 })?;
        e.serialize_field("index", &self.index)?;
        e.serialize_field("at_ms", &self.at_ms)?;
        e.serialize_field("kind", &self.kind())?;
        e.serialize_field("subject", &self.subject)?;
        e.serialize_field("detail", &Body(&self.detail, self.format))?;
        if !v1 {
            e.serialize_field("leaf_format", &self.format)?;
        }
        e.end()
    }
}

/// The JSON [`LogEntry`]'s `Serialize` writes, for the API's OpenAPI document: one of two
/// shapes. A float-free entry (`"leaf_format": 2`, every entry written since) has its kind's
/// typed detail ([`LogDetail`]: `kind` and `detail` are its tag and content); a format-1 entry
/// (no `leaf_format`) keeps the detail object it was written with (`docs/log.md`, "Leaf
/// formats"), described only as an object.
impl utoipa::PartialSchema for LogEntry {
    fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
        use utoipa::openapi::schema::{AllOfBuilder, ObjectBuilder, OneOfBuilder, Type};
        let common = || {
            ObjectBuilder::new()
                .property(
                    "index",
                    ObjectBuilder::new()
                        .schema_type(Type::Integer)
                        .minimum(Some(0.0))
                        .description(Some(
                            "Position in the log: leaf `index` of the Merkle tree.",
                        )),
                )
                .required("index")
                .property(
                    "at_ms",
                    ObjectBuilder::new()
                        .schema_type(Type::Integer)
                        .description(Some("When it was appended, Unix ms.")),
                )
                .required("at_ms")
                .property(
                    "subject",
                    ObjectBuilder::new()
                        .schema_type(Type::String)
                        .description(Some(
                            "What it is about: an enclave, host, policy or controller.",
                        )),
                )
                .required("subject")
        };
        let format_2 = AllOfBuilder::new()
            .item(
                common()
                    .property(
                        "leaf_format",
                        ObjectBuilder::new()
                            .schema_type(Type::Integer)
                            .enum_values(Some([2])),
                    )
                    .required("leaf_format"),
            )
            .item(utoipa::openapi::Ref::from_schema_name("LogDetail"));
        let format_1 = common()
            .property("kind", <LogEntryKind as utoipa::PartialSchema>::schema())
            .required("kind")
            .property(
                "detail",
                ObjectBuilder::new()
                    .schema_type(Type::Object)
                    .description(Some("The detail as written in leaf format 1.")),
            )
            .required("detail")
            // Never present in format 1: only the absence of the field matches.
            .property(
                "leaf_format",
                ObjectBuilder::new()
                    .schema_type(Type::Integer)
                    .enum_values(Some([1])),
            );
        OneOfBuilder::new()
            .item(format_2)
            .item(format_1)
            .description(Some(
                "One attestation-log entry (`docs/log.md`): float-free (`leaf_format` 2, typed \
                 detail), or leaf format 1 (no `leaf_format`).",
            ))
            .into()
    }
}

impl utoipa::ToSchema for LogEntry {
    fn name() -> std::borrow::Cow<'static, str> {
        "LogEntry".into()
    }

    fn schemas(
        schemas: &mut Vec<(
            String,
            utoipa::openapi::RefOr<utoipa::openapi::schema::Schema>,
        )>,
    ) {
        schemas.push((
            "LogDetail".into(),
            <LogDetail as utoipa::PartialSchema>::schema(),
        ));
        <LogDetail as utoipa::ToSchema>::schemas(schemas);
    }
}

/// An entry as JSON holds it: the detail is checked against its kind's shape
/// ([`LogDetail::from_value`]) once the kind is known.
#[derive(Deserialize)]
struct EntryWire {
    index: u64,
    at_ms: i64,
    kind: LogEntryKind,
    subject: String,
    detail: Value,
    /// Absent in format 1.
    #[serde(default)]
    leaf_format: Option<LeafFormat>,
}

impl<'de> Deserialize<'de> for LogEntry {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let w = EntryWire::deserialize(d)?;
        // Format 1 is written without the field; `"leaf_format": 1` would be another leaf.
        let format = match w.leaf_format {
            None => LeafFormat::V1,
            Some(LeafFormat::V1) => {
                return Err(serde::de::Error::custom(format!(
                    "attestation log entry {}: leaf format 1 is written without a leaf_format field",
                    w.index
                )));
            }
            Some(f) => f,
        };
        let detail = LogDetail::from_value_as(w.kind, format, w.detail).map_err(|e| {
            serde::de::Error::custom(format!("attestation log entry {}: {e}", w.index))
        })?;
        Ok(LogEntry {
            index: w.index,
            at_ms: w.at_ms,
            subject: w.subject,
            detail,
            format,
        })
    }
}

/// A tree-head signing key a controller registered (`Command::RegisterLogKey`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct LogKey {
    /// First 8 bytes of SHA-256(public key), hex.
    pub key_id: String,
    pub node_id: u64,
    /// The 32-byte ed25519 public key, hex.
    pub public_key: String,
    pub registered_at_ms: i64,
    /// Index of the `log_key` entry that recorded it.
    pub log_index: u64,
}

/// `key_id` of an ed25519 public key: hex of the first 8 bytes of its SHA-256.
pub fn key_id(public_key: &[u8]) -> String {
    hex::encode(&Sha256::digest(public_key)[..8])
}

/// The log: entries plus the Merkle tree over them (rebuilt, never trusted, on deserialise).
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
#[serde(try_from = "LogWire")]
pub struct AttestationLog {
    pub entries: Vec<LogEntry>,
    #[serde(skip)]
    tree: MerkleTree,
    #[serde(skip)]
    by_leaf: HashMap<Hash, u64>,
    /// The leaf format [`Self::append`] writes: the current Raft entry's
    /// (`State::apply_in`); not part of the log's state.
    #[serde(skip)]
    pub(super) writing: LeafFormat,
}

/// The serialised form: entries only. (Entries written before the Merkle tree carried
/// `prev_hash`/`hash` fields; they are ignored.)
#[derive(Deserialize)]
struct LogWire {
    #[serde(default)]
    entries: Vec<LogEntry>,
}

impl TryFrom<LogWire> for AttestationLog {
    type Error = String;

    fn try_from(w: LogWire) -> Result<Self, String> {
        let mut log = AttestationLog::default();
        for (i, e) in w.entries.into_iter().enumerate() {
            if e.index != i as u64 {
                return Err(format!(
                    "attestation log entry at position {i} has index {}",
                    e.index
                ));
            }
            log.push(e);
        }
        Ok(log)
    }
}

impl PartialEq for AttestationLog {
    fn eq(&self, other: &Self) -> bool {
        // The tree and the index are functions of the entries.
        self.entries == other.entries
    }
}

impl AttestationLog {
    fn push(&mut self, e: LogEntry) {
        let h = e.leaf_hash();
        let index = self.tree.push_hash(h);
        self.by_leaf.insert(h, index);
        self.entries.push(e);
    }

    /// Appends an entry and returns its index.
    pub fn append(&mut self, subject: &str, detail: LogDetail, at_ms: i64) -> u64 {
        let index = self.entries.len() as u64;
        self.push(LogEntry {
            index,
            at_ms,
            subject: subject.to_string(),
            detail,
            format: self.writing,
        });
        index
    }

    /// Number of entries (= tree size).
    pub fn size(&self) -> u64 {
        self.tree.size()
    }

    /// The Merkle tree over the entries. Clone it to compute roots and proofs outside a lock.
    pub fn tree(&self) -> &MerkleTree {
        &self.tree
    }

    /// Leaf hash of entry `index`.
    pub fn leaf_hash(&self, index: u64) -> Option<Hash> {
        self.tree.leaf(index).copied()
    }

    /// Index of the entry with this leaf hash.
    pub fn index_of(&self, leaf_hash: &Hash) -> Option<u64> {
        self.by_leaf.get(leaf_hash).copied()
    }

    /// Checks the tree against the entries (every leaf recomputed); returns the first index
    /// that does not match. For tests and audits: O(n).
    pub fn verify(&self) -> Result<(), u64> {
        if self.tree.size() != self.entries.len() as u64 {
            return Err(self.tree.size().min(self.entries.len() as u64));
        }
        for (i, e) in self.entries.iter().enumerate() {
            if e.index != i as u64 || self.tree.leaf(i as u64) != Some(&e.leaf_hash()) {
                return Err(i as u64);
            }
        }
        Ok(())
    }
}
