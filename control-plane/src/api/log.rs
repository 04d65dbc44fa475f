//! The attestation log's API: signed tree heads, entries, inclusion and consistency proofs, the
//! key set — and the client-side checks of what those endpoints return (used by `tribune log`),
//! so the server's encoding and the verifier's decoding live side by side.
//!
//! Roots and proofs read O(log² n) stored subtree hashes of the tree
//! (`tribune_attest::merkle_store`): cheap enough to compute under the state lock, with no copy
//! of the tree.

use std::collections::{BTreeMap, BTreeSet};

use ed25519_dalek::VerifyingKey;
use serde::{Deserialize, Serialize};
use tribune_attest::merkle::{Hash, SignedTreeHead, verify_consistency, verify_inclusion};

use super::problem::Problem;
use super::service::{Api, now_ms};
use crate::auth::{Op, Principal};
use crate::state::{LogEntry, LogEntryKind, LogKey, key_id};

/// Most entries one `GET /v1/log/entries` returns.
pub const ENTRIES_PAGE_MAX: u64 = 1000;
/// Entries returned when `end` is not given.
pub const ENTRIES_PAGE_DEFAULT: u64 = 100;
/// Longest `subject=` filter accepted.
pub const SUBJECT_FILTER_MAX: usize = 256;

/// A signed tree head as the API serves it. `sth` is the canonical 112-byte
/// [`SignedTreeHead::encode`] in hex; the other fields are the same values spelled out.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct SthView {
    pub tree_size: u64,
    pub timestamp_ms: u64,
    /// Hex SHA-256 Merkle tree hash (RFC 6962 MTH) of the first `tree_size` entries.
    pub root_hash: String,
    /// Hex ed25519 signature over `"tribune/sth/v1" ‖ tree_size ‖ timestamp_ms ‖ root_hash`.
    pub signature: String,
    /// Which key signed (see `GET /v1/log/keys`).
    pub key_id: String,
    /// The controller that signed.
    pub node_id: u64,
    pub sth: String,
}

/// One entry with its RFC 6962 leaf hash (hex).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct EntryView {
    #[serde(flatten)]
    pub entry: LogEntry,
    pub leaf_hash: String,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct EntriesPage {
    /// Size of the log when read.
    pub tree_size: u64,
    pub entries: Vec<EntryView>,
    /// `start` of the next page, when the log goes on past this one.
    pub next: Option<u64>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct InclusionProofView {
    pub leaf_index: u64,
    pub tree_size: u64,
    pub leaf_hash: String,
    /// Root of the tree of `tree_size` (informational: verify against a signed head's root).
    pub root_hash: String,
    /// RFC 6962 audit path, leaf to root, hex.
    pub audit_path: Vec<String>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct ConsistencyProofView {
    pub first: u64,
    pub second: u64,
    /// Roots of both trees (informational: verify against signed heads' roots).
    pub first_root: String,
    pub second_root: String,
    /// RFC 6962 consistency proof, hex.
    pub proof: Vec<String>,
}

/// `GET /v1/log/entries` query.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
#[derive(utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct EntriesQuery {
    #[serde(default)]
    pub start: u64,
    /// Last index wanted, inclusive (RFC 6962 `get-entries` style).
    pub end: Option<u64>,
    pub kind: Option<String>,
    pub subject: Option<String>,
    #[serde(default)]
    pub stale: bool,
}

/// `GET /v1/log/proof/inclusion` query: `index` or `leaf_hash`, and `tree_size`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
#[derive(utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct InclusionQuery {
    pub index: Option<u64>,
    pub leaf_hash: Option<String>,
    pub tree_size: Option<u64>,
    #[serde(default)]
    pub stale: bool,
}

/// `GET /v1/log/proof/consistency` query.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
#[derive(utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ConsistencyQuery {
    pub first: Option<u64>,
    pub second: Option<u64>,
    #[serde(default)]
    pub stale: bool,
}

fn hexes(p: &[Hash]) -> Vec<String> {
    p.iter().map(hex::encode).collect()
}

impl SthView {
    pub fn new(sth: &SignedTreeHead, key_id: &str, node_id: u64) -> Self {
        Self {
            tree_size: sth.size,
            timestamp_ms: sth.timestamp_ms,
            root_hash: hex::encode(sth.root),
            signature: hex::encode(sth.signature),
            key_id: key_id.to_string(),
            node_id,
            sth: hex::encode(sth.encode()),
        }
    }

    /// The signed head the fields describe (the `sth` encoding must agree with them).
    pub fn signed(&self) -> Result<SignedTreeHead, LogCheckError> {
        let root = parse_hash("root_hash", &self.root_hash)?;
        let sig = hex::decode(&self.signature)
            .ok()
            .and_then(|b| <[u8; 64]>::try_from(b).ok())
            .ok_or_else(|| LogCheckError::malformed("signature", "expected 128 hex characters"))?;
        let sth = SignedTreeHead {
            size: self.tree_size,
            timestamp_ms: self.timestamp_ms,
            root,
            signature: sig,
        };
        if !self.sth.is_empty() && hex::encode(sth.encode()) != self.sth.to_ascii_lowercase() {
            return Err(LogCheckError::malformed(
                "sth",
                "the encoded tree head disagrees with its fields",
            ));
        }
        Ok(sth)
    }

    /// Checks the signature under the key it names, which must be in `keys`.
    pub fn verify(&self, keys: &BTreeMap<String, LogKey>) -> Result<SignedTreeHead, LogCheckError> {
        let sth = self.signed()?;
        let key = keys
            .get(&self.key_id)
            .ok_or_else(|| LogCheckError::UnknownKey(self.key_id.clone()))?;
        sth.verify(&verifying_key(key)?)
            .map_err(|_| LogCheckError::BadSignature {
                tree_size: self.tree_size,
                key_id: self.key_id.clone(),
            })?;
        Ok(sth)
    }
}

impl InclusionProofView {
    /// Checks that `leaf_hash` is at `leaf_index` in the tree `sth` signs.
    pub fn verify(&self, leaf_hash: &Hash, sth: &SignedTreeHead) -> Result<(), LogCheckError> {
        if self.tree_size != sth.size {
            return Err(LogCheckError::Proof(format!(
                "the proof is for a tree of size {}, the signed head's is {}",
                self.tree_size, sth.size
            )));
        }
        let path = parse_hashes("audit_path", &self.audit_path)?;
        verify_inclusion(leaf_hash, self.leaf_index, sth.size, &path, &sth.root)
            .map_err(|e| LogCheckError::Proof(e.to_string()))
    }
}

impl ConsistencyProofView {
    /// Checks that the tree `old` signs is a prefix of the tree `new` signs.
    pub fn verify(&self, old: &SignedTreeHead, new: &SignedTreeHead) -> Result<(), LogCheckError> {
        if (self.first, self.second) != (old.size, new.size) {
            return Err(LogCheckError::Proof(format!(
                "the proof is between sizes {} and {}, the heads' are {} and {}",
                self.first, self.second, old.size, new.size
            )));
        }
        let proof = parse_hashes("proof", &self.proof)?;
        verify_consistency(old.size, new.size, &old.root, &new.root, &proof)
            .map_err(|e| LogCheckError::Proof(e.to_string()))
    }
}

/// What a client's check of log answers can find wrong.
#[derive(Debug, thiserror::Error)]
pub enum LogCheckError {
    #[error("malformed {what}: {detail}")]
    Malformed { what: &'static str, detail: String },
    #[error("the tree head names key {0}, which is not in the cluster's key set")]
    UnknownKey(String),
    #[error("key {key_id}: {detail}")]
    BadKey { key_id: String, detail: String },
    #[error(
        "the signature of the tree head of size {tree_size} does not verify under key {key_id}"
    )]
    BadSignature { tree_size: u64, key_id: String },
    #[error("proof does not verify: {0}")]
    Proof(String),
}

impl LogCheckError {
    fn malformed(what: &'static str, detail: impl Into<String>) -> Self {
        Self::Malformed {
            what,
            detail: detail.into(),
        }
    }
}

/// A 32-byte hash from 64 hex characters.
pub fn parse_hash(what: &'static str, s: &str) -> Result<Hash, LogCheckError> {
    hex::decode(s)
        .ok()
        .and_then(|b| <[u8; 32]>::try_from(b).ok())
        .ok_or_else(|| {
            LogCheckError::malformed(
                what,
                format!(
                    "expected 64 hex characters (a SHA-256), got {} characters",
                    s.len()
                ),
            )
        })
}

fn parse_hashes(what: &'static str, v: &[String]) -> Result<Vec<Hash>, LogCheckError> {
    if v.len() > tribune_attest::merkle::PROOF_LEN_MAX {
        return Err(LogCheckError::malformed(what, "more than 64 hashes"));
    }
    v.iter().map(|s| parse_hash(what, s)).collect()
}

/// A registered key as an ed25519 key, after checking its `key_id` names it.
pub fn verifying_key(k: &LogKey) -> Result<VerifyingKey, LogCheckError> {
    let bad = |detail: &str| LogCheckError::BadKey {
        key_id: k.key_id.clone(),
        detail: detail.to_string(),
    };
    let bytes: [u8; 32] = hex::decode(&k.public_key)
        .ok()
        .and_then(|b| b.try_into().ok())
        .ok_or_else(|| bad("public_key is not 64 hex characters"))?;
    if key_id(&bytes) != k.key_id {
        return Err(bad("key_id is not derived from public_key"));
    }
    VerifyingKey::from_bytes(&bytes).map_err(|_| bad("public_key is not an ed25519 key"))
}

/// A registered log key as a C2SP signed-note verifier key (`GET /v1/log/note-keys`): what a
/// checkpoint verifier or witness is configured with.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct NoteKeyView {
    pub node_id: u64,
    /// The key's id in `GET /v1/log/keys`.
    pub key_id: String,
    /// The checkpoints' origin line and the signatures' key name.
    pub origin: String,
    /// `<origin>+<signed-note key id, 8 hex>+<base64 of 0x01 and the public key>`.
    pub verifier_key: String,
}

fn tree_size_problem(tree_size: u64, size: u64) -> Problem {
    Problem::bad_request(format!(
        "tree_size {tree_size} is larger than the log ({size} entries); fetch a fresh tree head from /v1/log/sth"
    ))
}

impl Api {
    /// A tree head over the current log (linearizable read), signed by this controller.
    pub async fn log_sth(&self, who: &Principal) -> Result<SthView, Problem> {
        who.require(Op::ReadLog)?;
        self.read(false).await?;
        let signer = self.controller.log_signer.clone();
        let (size, root) = {
            let st = self.state();
            if !st.log_keys.contains_key(&signer.key_id) {
                let mut p = Problem::new(
                    axum::http::StatusCode::SERVICE_UNAVAILABLE,
                    "unavailable",
                    format!(
                        "controller {}'s log signing key {} is not registered yet; retry shortly",
                        signer.node_id, signer.key_id
                    ),
                );
                p.retry_after_ms = Some(200);
                return Err(p);
            }
            let size = st.log.size();
            // O(log n) reads of the tree's stored nodes: cheap enough under the lock.
            let root = st
                .log
                .tree()
                .root_at(size)
                .map_err(|e| Problem::from(crate::ControllerError::Internal(e.to_string())))?;
            (size, root)
        };
        let sth = signer.sign(size, now_ms().max(0) as u64, root);
        Ok(SthView::new(&sth, &signer.key_id, signer.node_id))
    }

    /// The current tree head as a C2SP checkpoint signed by this controller (a signed note,
    /// `text/plain`), over a linearizable read like [`Api::log_sth`].
    pub async fn log_checkpoint(&self, who: &Principal) -> Result<Vec<u8>, Problem> {
        let head = self.log_sth(who).await?;
        let root = parse_hash("root_hash", &head.root_hash)
            .map_err(|e| Problem::from(crate::ControllerError::Internal(e.to_string())))?;
        let origin = &self.controller.config.log_origin;
        self.controller
            .log_signer
            .checkpoint(origin, head.tree_size, &root)
            .map_err(|e| {
                Problem::from(crate::ControllerError::Internal(format!(
                    "signing the checkpoint for origin {origin:?}: {e}"
                )))
            })
    }

    /// Every registered log key as a signed-note verifier key under this cluster's origin.
    pub async fn log_note_keys(&self, who: &Principal) -> Result<Vec<NoteKeyView>, Problem> {
        let origin = self.controller.config.log_origin.clone();
        self.log_keys(who)
            .await?
            .iter()
            .map(|k| {
                let key = verifying_key(k)
                    .map_err(|e| Problem::from(crate::ControllerError::Internal(e.to_string())))?;
                Ok(NoteKeyView {
                    node_id: k.node_id,
                    key_id: k.key_id.clone(),
                    origin: origin.clone(),
                    verifier_key: crate::log_key::note_verifier_key(&origin, &key),
                })
            })
            .collect()
    }

    pub async fn log_keys(&self, who: &Principal) -> Result<Vec<LogKey>, Problem> {
        who.require(Op::ReadLog)?;
        self.read(false).await?;
        Ok(self.state().log_keys.values().cloned().collect())
    }

    /// For a tenant, the policies it may see (compiled here, outside the state lock, once per
    /// request); `None` for everyone else, who sees every entry.
    fn visible_policies(&self, who: &Principal) -> Option<BTreeSet<String>> {
        who.tenant.as_ref()?;
        let policies: Vec<crate::state::Policy> = self.state().policies.values().cloned().collect();
        Some(
            policies
                .into_iter()
                .filter(|p| self.policy_visible(who, p))
                .map(|p| p.name)
                .collect(),
        )
    }

    /// Whether a tenant may see this entry: one about an enclave of its tenant, or a change of
    /// a policy of its own (`visible` from [`Self::visible_policies`]). Everyone else sees every
    /// entry.
    fn entry_visible(
        who: &Principal,
        visible: Option<&BTreeSet<String>>,
        st: &crate::state::State,
        e: &LogEntry,
    ) -> bool {
        let Some(visible) = visible else {
            return true;
        };
        if let Some(enclave) = st.enclaves.get(&e.subject)
            && matches!(
                e.kind(),
                LogEntryKind::Verdict
                    | LogEntryKind::Violation
                    | LogEntryKind::Action
                    | LogEntryKind::Migration
                    | LogEntryKind::EnclaveChange
                    | LogEntryKind::UsageDigest
            )
        {
            return who.sees_tenant(&enclave.tenant);
        }
        e.kind() == LogEntryKind::PolicyChange && visible.contains(&e.subject)
    }

    pub async fn log_entries(
        &self,
        who: &Principal,
        q: EntriesQuery,
    ) -> Result<EntriesPage, Problem> {
        who.require(Op::ReadLog)?;
        let end = match q.end {
            Some(end) if end < q.start => {
                return Err(Problem::bad_request(format!(
                    "end ({end}) is before start ({}); both are inclusive entry indexes",
                    q.start
                )));
            }
            Some(end) if end - q.start >= ENTRIES_PAGE_MAX => {
                return Err(Problem::bad_request(format!(
                    "start={} end={end} asks for {} entries; at most {ENTRIES_PAGE_MAX} per request",
                    q.start,
                    (end - q.start).saturating_add(1)
                )));
            }
            Some(end) => end,
            None => q.start.saturating_add(ENTRIES_PAGE_DEFAULT - 1),
        };
        let kind = match q.kind.as_deref() {
            None => None,
            Some(k) => Some(LogEntryKind::parse(k).ok_or_else(|| {
                Problem::bad_request(format!(
                    "kind={k:?} is not a log entry kind; use one of {}",
                    LogEntryKind::ALL.map(|k| k.as_str()).join(", ")
                ))
            })?),
        };
        if q.subject
            .as_ref()
            .is_some_and(|s| s.len() > SUBJECT_FILTER_MAX)
        {
            return Err(Problem::bad_request(format!(
                "subject= is longer than {SUBJECT_FILTER_MAX} bytes"
            )));
        }
        self.read(q.stale).await?;
        let visible = self.visible_policies(who);
        let st = self.state();
        let size = st.log.size();
        let last = end.min(size.saturating_sub(1));
        let mut entries = Vec::new();
        if q.start < size {
            for i in q.start..=last {
                let Some(e) = usize::try_from(i).ok().and_then(|i| st.log.entries.get(i)) else {
                    break;
                };
                if kind.is_some_and(|k| k != e.kind())
                    || q.subject.as_ref().is_some_and(|s| *s != e.subject)
                    || !Self::entry_visible(who, visible.as_ref(), &st, e)
                {
                    continue;
                }
                entries.push(EntryView {
                    entry: e.clone(),
                    leaf_hash: st.log.leaf_hash(i).map(hex::encode).unwrap_or_default(),
                });
            }
        }
        let next = (q.start < size && last + 1 < size).then_some(last + 1);
        Ok(EntriesPage {
            tree_size: size,
            entries,
            next,
        })
    }

    pub async fn log_inclusion(
        &self,
        who: &Principal,
        q: InclusionQuery,
    ) -> Result<InclusionProofView, Problem> {
        who.require(Op::ReadLog)?;
        let by_hash = match (&q.index, &q.leaf_hash) {
            (Some(_), Some(_)) => {
                return Err(Problem::bad_request("give index= or leaf_hash=, not both"));
            }
            (None, None) => {
                return Err(Problem::bad_request(
                    "give index= (entry index) or leaf_hash= (64 hex characters)",
                ));
            }
            (None, Some(h)) => Some(
                parse_hash("leaf_hash", h)
                    .map_err(|e| Problem::bad_request(format!("leaf_hash: {e}")))?,
            ),
            (Some(_), None) => None,
        };
        if q.tree_size == Some(0) {
            return Err(Problem::bad_request(
                "tree_size=0: the empty tree includes nothing",
            ));
        }
        self.read(q.stale).await?;
        let visible = self.visible_policies(who);
        let internal = |e: tribune_attest::AttestError| {
            Problem::from(crate::ControllerError::Internal(e.to_string()))
        };
        let (index, tree_size, leaf, path, root) = {
            let st = self.state();
            let size = st.log.size();
            let tree_size = q.tree_size.unwrap_or(size);
            if tree_size > size {
                return Err(tree_size_problem(tree_size, size));
            }
            let index = match (q.index, by_hash) {
                (Some(i), _) => i,
                (None, Some(h)) => st.log.index_of(&h).ok_or_else(|| {
                    Problem::not_found(format!("no log entry has leaf hash {}", hex::encode(h)))
                })?,
                (None, None) => 0,
            };
            if tree_size == 0 {
                return Err(Problem::bad_request("the log is empty: no entry to prove"));
            }
            if index >= tree_size {
                return Err(Problem::bad_request(format!(
                    "index {index} is not in the tree of size {tree_size} (entries 0..={})",
                    tree_size.saturating_sub(1)
                )));
            }
            let visible = usize::try_from(index)
                .ok()
                .and_then(|i| st.log.entries.get(i))
                .is_some_and(|e| Self::entry_visible(who, visible.as_ref(), &st, e));
            if !visible {
                return Err(Problem::not_found(format!(
                    "no log entry {index} that {} may see",
                    who.actor
                )));
            }
            let leaf = st.log.leaf_hash(index).unwrap_or_default();
            // O(log² n) reads of the tree's stored nodes, under the lock (no copy of the tree).
            let tree = st.log.tree();
            let path = tree.inclusion_proof(index, tree_size).map_err(internal)?;
            let root = tree.root_at(tree_size).map_err(internal)?;
            (index, tree_size, leaf, path, root)
        };
        Ok(InclusionProofView {
            leaf_index: index,
            tree_size,
            leaf_hash: hex::encode(leaf),
            root_hash: hex::encode(root),
            audit_path: hexes(&path),
        })
    }

    pub async fn log_consistency(
        &self,
        who: &Principal,
        q: ConsistencyQuery,
    ) -> Result<ConsistencyProofView, Problem> {
        who.require(Op::ReadLog)?;
        let Some(first) = q.first else {
            return Err(Problem::bad_request(
                "give first= (the older tree size) and optionally second= (default: the current size)",
            ));
        };
        if let Some(second) = q.second
            && first > second
        {
            return Err(Problem::bad_request(format!(
                "first ({first}) is larger than second ({second}): a log only grows"
            )));
        }
        self.read(q.stale).await?;
        let internal = |e: tribune_attest::AttestError| {
            Problem::from(crate::ControllerError::Internal(e.to_string()))
        };
        let (second, proof, first_root, second_root) = {
            let st = self.state();
            let size = st.log.size();
            let second = q.second.unwrap_or(size);
            if second > size {
                return Err(tree_size_problem(second, size));
            }
            if first > second {
                return Err(Problem::bad_request(format!(
                    "first ({first}) is larger than the log ({size} entries)"
                )));
            }
            let tree = st.log.tree();
            (
                second,
                tree.consistency_proof(first, second).map_err(internal)?,
                tree.root_at(first).map_err(internal)?,
                tree.root_at(second).map_err(internal)?,
            )
        };
        Ok(ConsistencyProofView {
            first,
            second,
            first_root: hex::encode(first_root),
            second_root: hex::encode(second_root),
            proof: hexes(&proof),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::log_key::LogSigner;
    use tribune_attest::merkle::MerkleTree;

    fn setup() -> (LogSigner, BTreeMap<String, LogKey>, MerkleTree) {
        let signer = LogSigner::from_key(ed25519_dalek::SigningKey::from_bytes(&[7; 32]), 1);
        let key = LogKey {
            key_id: signer.key_id.clone(),
            node_id: 1,
            public_key: signer.public_key.clone(),
            registered_at_ms: 0,
            log_index: 0,
        };
        let mut tree = MerkleTree::new();
        for i in 0..9u8 {
            tree.push(&[i]);
        }
        (signer, BTreeMap::from([(key.key_id.clone(), key)]), tree)
    }

    fn head(signer: &LogSigner, tree: &MerkleTree, size: u64) -> SthView {
        let sth = signer.sign(size, 5, tree.root_at(size).expect("root"));
        SthView::new(&sth, &signer.key_id, 1)
    }

    #[test]
    fn heads_verify_under_their_key_and_nothing_else() {
        let (signer, keys, tree) = setup();
        let view = head(&signer, &tree, 9);
        let json: SthView =
            serde_json::from_str(&serde_json::to_string(&view).expect("json")).expect("parse");
        assert_eq!(json.verify(&keys).expect("verifies").root, tree.root());

        let mut forged = view.clone();
        forged.root_hash = hex::encode([0u8; 32]);
        forged.sth.clear();
        assert!(matches!(
            forged.verify(&keys),
            Err(LogCheckError::BadSignature { tree_size: 9, .. })
        ));
        let mut disagreeing = view.clone();
        disagreeing.tree_size = 8;
        assert!(matches!(
            disagreeing.verify(&keys),
            Err(LogCheckError::Malformed { what: "sth", .. })
        ));
        assert!(matches!(
            view.verify(&BTreeMap::new()),
            Err(LogCheckError::UnknownKey(_))
        ));
        let mut wrong_id = keys.clone();
        if let Some(k) = wrong_id.values_mut().next() {
            k.public_key = hex::encode([9u8; 32]);
        }
        assert!(matches!(
            view.verify(&wrong_id),
            Err(LogCheckError::BadKey { .. })
        ));
    }

    #[test]
    fn proofs_check_against_signed_heads() {
        let (signer, keys, tree) = setup();
        let new = head(&signer, &tree, 9).verify(&keys).expect("new");
        let old = head(&signer, &tree, 4).verify(&keys).expect("old");
        let leaf = *tree.leaf(3).expect("leaf");
        let incl = InclusionProofView {
            leaf_index: 3,
            tree_size: 9,
            leaf_hash: hex::encode(leaf),
            root_hash: hex::encode(tree.root()),
            audit_path: hexes(&tree.inclusion_proof(3, 9).expect("proof")),
        };
        incl.verify(&leaf, &new).expect("included");
        assert!(incl.verify(tree.leaf(4).expect("leaf"), &new).is_err());
        assert!(incl.verify(&leaf, &old).is_err(), "sizes differ");

        let cons = ConsistencyProofView {
            first: 4,
            second: 9,
            first_root: String::new(),
            second_root: String::new(),
            proof: hexes(&tree.consistency_proof(4, 9).expect("proof")),
        };
        cons.verify(&old, &new).expect("consistent");
        let mut fork = old;
        fork.root = [1; 32];
        assert!(matches!(
            cons.verify(&fork, &new),
            Err(LogCheckError::Proof(_))
        ));
        let mut bad = cons.clone();
        bad.proof = vec!["zz".into()];
        assert!(matches!(
            bad.verify(&old, &new),
            Err(LogCheckError::Malformed { .. })
        ));
    }
}
