//! Fairness receipts (`docs/receipts.md`): one enclave's record over a period — its attested
//! identity and verdicts, the policies and the terms (guarantee, limit) in force, every
//! enforcement action with its cause, its usage digests with its own signed checkpoints, its
//! lending and borrowing — each a log entry with an inclusion proof against a signed tree
//! head, the heads chained by consistency proofs, the whole signed by the issuing controller.
//!
//! Format: canonical JSON (`crate::canonical`), the same encoding as the log's leaves, so the
//! entries travel byte for byte as the log holds them and any JSON library can read a receipt.
//! A receipt file is exactly the canonical JSON of [`Receipt`] and one `\n`; anything else
//! (extra whitespace, reordered keys, upper-case hex) is refused, so no byte of a valid
//! receipt can change without verification failing.

use std::collections::BTreeMap;

use ed25519_dalek::{Signature, VerifyingKey};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::checkpoint::{Checkpoint, enclave_id};
use crate::guarantee::{Standing, WindowFacts, judge};
use crate::merkle::{Hash, ProofError, leaf_hash, verify_consistency, verify_inclusion};
use crate::{canonical, sth};

/// The version this crate writes and reads.
pub const FORMAT: u64 = 1;
/// Domain separation of the issuer's signature: `"tribune/receipt/v1" ‖ canonical(body)`.
pub const DOMAIN: &[u8] = b"tribune/receipt/v1";
/// Largest receipt file accepted (an hour of one enclave with one-second checkpoints is ≈ 6 MiB,
/// `bench/README.md`).
pub const RECEIPT_BYTES_MAX: usize = 256 << 20;

/// A receipt: the body and the issuer's signature over it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Receipt {
    pub body: Body,
    /// Hex ed25519 signature by `body.issuer` over `"tribune/receipt/v1" ‖ canonical(body)`.
    pub signature: String,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Body {
    /// [`FORMAT`].
    pub format: u64,
    pub enclave: String,
    /// The period, Unix ms, inclusive.
    pub from_ms: i64,
    pub to_ms: i64,
    pub issued_at_ms: i64,
    /// The controller key that signed the receipt (one of `keys`).
    pub issuer: KeyRef,
    /// Controller log keys that signed the tree heads and the receipt.
    pub keys: Vec<KeyRef>,
    /// Signed tree heads, ascending size; the last is the one every inclusion proof is against.
    pub tree_heads: Vec<TreeHead>,
    /// `consistency[i]`: the proof that `tree_heads[i]` is a prefix of `tree_heads[i + 1]`.
    pub consistency: Vec<Vec<String>>,
    /// The terms the issuer states were in force at issue time (not in the log: signed by the
    /// issuer only).
    pub terms: Terms,
    /// The log entries, each with its audit path in the newest head.
    pub entries: Vec<ProvenEntry>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct KeyRef {
    pub node_id: u64,
    pub key_id: String,
    /// Raw 32-byte ed25519 public key, hex.
    pub public_key: String,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct TreeHead {
    pub tree_size: u64,
    pub timestamp_ms: u64,
    pub root_hash: String,
    pub signature: String,
    pub key_id: String,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Terms {
    /// The policy that governs the enclave (the first that matches it), if any.
    pub policy: Option<String>,
    pub policy_version: Option<u64>,
    /// Hex SHA-256 of that policy's source (the `policy_change` entries in the receipt carry
    /// the same hash for the version they record).
    pub policy_source_sha256: Option<String>,
    pub guaranteed_cpu_millicores: u64,
    pub limit_cpu_millicores: u64,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ProvenEntry {
    /// The entry exactly as the log serves it (`index`, `at_ms`, `kind`, `subject`, `detail`,
    /// `leaf_format` when 2).
    pub entry: Value,
    pub audit_path: Vec<String>,
}

/// Why a receipt is refused. Every variant says where.
#[derive(Debug, thiserror::Error)]
pub enum ReceiptError {
    #[error("the receipt is {0} bytes; at most {RECEIPT_BYTES_MAX}")]
    TooLarge(usize),
    #[error("the receipt is not JSON: {0}")]
    NotJson(String),
    #[error("the receipt is not a version-{FORMAT} receipt: {0}")]
    Shape(String),
    #[error(
        "the receipt is not in canonical form (compact JSON, keys sorted, one final newline): byte {0} differs"
    )]
    NotCanonical(usize),
    #[error("{what}: {why}")]
    Malformed { what: String, why: String },
    #[error("the receipt is signed by key {0}, which is not among the trusted keys")]
    UntrustedIssuer(String),
    #[error("tree head {0} is signed by key {1}, which is not among the trusted keys")]
    UntrustedHead(usize, String),
    #[error("the issuer's signature does not verify")]
    BadSignature,
    #[error("tree head {0} (size {1}): the signature does not verify")]
    BadHeadSignature(usize, u64),
    #[error("tree heads {0} and {1}: {2}")]
    Inconsistent(usize, usize, ProofError),
    #[error("entry {index}: {why}")]
    Entry { index: u64, why: String },
    #[error("entry {index}: the inclusion proof fails: {err}")]
    NotIncluded { index: u64, err: ProofError },
    #[error("usage digest at entry {index}: {why}")]
    Usage { index: u64, why: String },
}

fn malformed(what: impl Into<String>, why: impl Into<String>) -> ReceiptError {
    ReceiptError::Malformed {
        what: what.into(),
        why: why.into(),
    }
}

/// Lower-case hex of exactly `N` bytes (upper case is refused: one receipt, one spelling).
fn hex_n<const N: usize>(s: &str, what: &str) -> Result<[u8; N], ReceiptError> {
    if s.len() != 2 * N || s.bytes().any(|b| !matches!(b, b'0'..=b'9' | b'a'..=b'f')) {
        return Err(malformed(what, format!("not {N} bytes of lower-case hex")));
    }
    let mut out = [0u8; N];
    hex::decode_to_slice(s, &mut out).map_err(|e| malformed(what, e.to_string()))?;
    Ok(out)
}

/// A key the verifier trusts: the raw 32-byte ed25519 public key.
pub type TrustedKey = [u8; 32];

/// Trusted keys from text: `GET /v1/log/keys` JSON (`[{"public_key": …}, …]`), or hex keys one
/// per line.
pub fn parse_trusted_keys(text: &str) -> Result<Vec<TrustedKey>, ReceiptError> {
    if let Ok(Value::Array(a)) = serde_json::from_str::<Value>(text) {
        return a
            .iter()
            .enumerate()
            .map(|(i, k)| {
                let s = k["public_key"].as_str().or(k.as_str()).unwrap_or("");
                hex_n::<32>(s, &format!("trusted key {i}"))
            })
            .collect();
    }
    text.lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .enumerate()
        .map(|(i, l)| hex_n::<32>(l, &format!("trusted key {i}")))
        .collect()
}

/// The message the issuer signs.
pub fn signed_message(body: &Body) -> Result<Vec<u8>, ReceiptError> {
    let v = serde_json::to_value(body).map_err(|e| ReceiptError::Shape(e.to_string()))?;
    let mut m = DOMAIN.to_vec();
    canonical::write(&v, &mut m);
    Ok(m)
}

/// The receipt file's bytes: canonical JSON and one `\n`.
pub fn to_file_bytes(r: &Receipt) -> Result<Vec<u8>, ReceiptError> {
    let v = serde_json::to_value(r).map_err(|e| ReceiptError::Shape(e.to_string()))?;
    let mut out = canonical::to_vec(&v);
    out.push(b'\n');
    Ok(out)
}

/// One usage window: a checkpointed span of the enclave's reports.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Window {
    pub index: u64,
    pub at_ms: i64,
    pub first_seq: u64,
    pub last_seq: u64,
    pub cpu_millicores_avg: u64,
    /// The CPU it waited for (runnable, not running), from its own reports; `None`: unknown
    /// (v1 reports).
    pub cpu_wait_millicores_avg: Option<u64>,
    /// The cap Tribune's decisions put on it then (0: none beyond its limit).
    pub cap_cpu_millicores: u64,
    pub suspended: bool,
    /// How the window stands against the guarantee (`crate::guarantee`).
    pub standing: Standing,
}

/// An enforcement action, with its cause.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Enforcement {
    pub index: u64,
    pub at_ms: i64,
    pub action: String,
    pub from: String,
    pub cause: String,
    pub cpu_cap_millicores: u64,
    /// The violation entry that preceded it (its index), when the cause is `over_limit`.
    pub violation: Option<u64>,
    /// The enclave's usage in the window that went over, and the limit then.
    pub over_cpu_millicores: Option<u64>,
    pub over_limit_cpu_millicores: Option<u64>,
}

/// What a verified receipt shows, in numbers and in words ([`Verdict::words`]).
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Verdict {
    pub enclave: String,
    pub from_ms: i64,
    pub to_ms: i64,
    pub issuer_node: u64,
    pub tree_size: u64,
    pub entries: usize,
    /// The evidence verdicts (trusted or not) with the measurement.
    pub verdicts: Vec<(u64, bool, String)>,
    pub measurement: Option<String>,
    pub guaranteed_cpu_millicores: u64,
    pub limit_cpu_millicores: u64,
    pub windows: Vec<Window>,
    /// Windows in which Tribune's own decisions kept the enclave below its guarantee (capped
    /// under it or suspended) without a violation of its own as the cause.
    pub guarantee_not_honoured: Vec<u64>,
    /// Windows in which it used less than its guarantee while it asked for it (used + waited
    /// ≥ guarantee): the guarantee was not met, whoever held it back.
    pub starved: Vec<u64>,
    /// Windows under the guarantee whose demand is unknown (v1 reports): counted as honoured.
    pub demand_unknown: usize,
    /// Windows in which its usage was at or above its guarantee.
    pub at_or_above_guarantee: usize,
    pub enforcements: Vec<Enforcement>,
    /// Lending and borrowing: (entry index, what, millicores).
    pub lending: Vec<(u64, String, u64)>,
    /// Seqs no digest covers, declared by the log (`unaccounted_from`).
    pub unaccounted: Vec<(u64, u64)>,
}

/// Windows named one by one in the words; the rest are counted (all are in the JSON verdict).
pub const WINDOWS_NAMED_MAX: usize = 50;

impl Verdict {
    /// The windows where it asked for its guarantee and did not get it, named in words.
    fn starved_words(&self) -> String {
        let named: Vec<String> = self
            .windows
            .iter()
            .filter(|w| w.standing == Standing::Starved)
            .take(WINDOWS_NAMED_MAX)
            .map(|w| {
                format!(
                    "entry {} at {} ms (seqs {}..={}: used {}m, waited {}m)",
                    w.index,
                    w.at_ms,
                    w.first_seq,
                    w.last_seq,
                    w.cpu_millicores_avg,
                    w.cpu_wait_millicores_avg.unwrap_or(0)
                )
            })
            .collect();
        let more = self.starved.len().saturating_sub(named.len());
        format!(
            "guarantee NOT met in {} windows while it asked for it (used less than its {}m guarantee, used + waited at least it): {}{}",
            self.starved.len(),
            self.guaranteed_cpu_millicores,
            named.join("; "),
            if more > 0 {
                format!("; and {more} more")
            } else {
                String::new()
            }
        )
    }

    /// The answer to the tenant's question, in words.
    pub fn words(&self) -> String {
        let mut out = Vec::new();
        let n = self.windows.len();
        out.push(format!(
            "receipt for enclave {:?}, {} to {} (Unix ms), issued by controller {}: {} log entries proven against a signed tree head of size {}",
            self.enclave,
            self.from_ms,
            self.to_ms,
            self.issuer_node,
            self.entries,
            self.tree_size
        ));
        if let Some(m) = &self.measurement {
            let failed = self.verdicts.iter().filter(|v| !v.1).count();
            out.push(format!(
                "attested: measurement {m}; {} verdict(s), {failed} not trusted",
                self.verdicts.len()
            ));
        }
        out.push(format!(
            "terms: guarantee {}m CPU, limit {}m CPU",
            self.guaranteed_cpu_millicores, self.limit_cpu_millicores
        ));
        if n == 0 {
            out.push("no usage windows in the period".into());
        } else {
            let honoured = n - self.guarantee_not_honoured.len() - self.starved.len();
            // Per mille, rounded down, printed as a percent with one decimal.
            let pm = honoured as u64 * 1000 / n as u64;
            out.push(format!(
                "received its guarantee in {}.{}% of {n} windows ({honoured} of {n}); used at least its guarantee in {} of them",
                pm / 10,
                pm % 10,
                self.at_or_above_guarantee
            ));
            if !self.guarantee_not_honoured.is_empty() {
                out.push(format!(
                    "GUARANTEE NOT MET in windows at log entries {:?}: held below its guarantee without a violation of its own",
                    self.guarantee_not_honoured
                ));
            }
            if !self.starved.is_empty() {
                out.push(self.starved_words());
            }
            if self.demand_unknown > 0 {
                out.push(format!(
                    "{} window(s) under the guarantee carry no demand signal (v1 usage reports): whether it asked for more is unknown there",
                    self.demand_unknown
                ));
            }
        }
        let throttles: Vec<&Enforcement> = self
            .enforcements
            .iter()
            .filter(|e| e.action == "throttle")
            .collect();
        let suspensions: Vec<&Enforcement> = self
            .enforcements
            .iter()
            .filter(|e| e.action == "suspend")
            .collect();
        for (name, list) in [("throttled", &throttles), ("suspended", &suspensions)] {
            if list.is_empty() {
                continue;
            }
            let each: Vec<String> = list
                .iter()
                .map(|e| {
                    let over = match (e.over_cpu_millicores, e.over_limit_cpu_millicores) {
                        (Some(u), Some(l)) => format!(", using {u}m over its {l}m limit"),
                        _ => String::new(),
                    };
                    format!(
                        "entry {} at {} ms: cause {}{over}",
                        e.index, e.at_ms, e.cause
                    )
                })
                .collect();
            let all_own = list.iter().all(|e| !e.cause.is_empty());
            out.push(format!(
                "{name} {} time(s){}: {}",
                list.len(),
                if all_own { ", each with its cause" } else { "" },
                each.join("; ")
            ));
        }
        if throttles.is_empty() && suspensions.is_empty() {
            out.push("never throttled or suspended".into());
        }
        for (i, what, mc) in &self.lending {
            out.push(format!("entry {i}: {what} {mc}m CPU"));
        }
        for (a, b) in &self.unaccounted {
            out.push(format!(
                "usage reports {a}..={b} were never accounted (declared in the log)"
            ));
        }
        out.join("\n")
    }
}

/// Verifies a receipt file against `trusted` controller keys, offline. On success the verdict;
/// otherwise the first reason it fails.
pub fn verify(bytes: &[u8], trusted: &[TrustedKey]) -> Result<Verdict, ReceiptError> {
    if bytes.len() > RECEIPT_BYTES_MAX {
        return Err(ReceiptError::TooLarge(bytes.len()));
    }
    let v: Value =
        serde_json::from_slice(bytes).map_err(|e| ReceiptError::NotJson(e.to_string()))?;
    let mut canon = canonical::to_vec(&v);
    canon.push(b'\n');
    if canon != bytes {
        let at = canon
            .iter()
            .zip(bytes)
            .position(|(a, b)| a != b)
            .unwrap_or(canon.len().min(bytes.len()));
        return Err(ReceiptError::NotCanonical(at));
    }
    let r: Receipt = serde_json::from_value(v).map_err(|e| ReceiptError::Shape(e.to_string()))?;
    let b = &r.body;
    if b.format != FORMAT {
        return Err(ReceiptError::Shape(format!("format {}", b.format)));
    }

    // Keys: each one's id, and only trusted ones count.
    let mut keys: BTreeMap<&str, VerifyingKey> = BTreeMap::new();
    for (i, k) in b.keys.iter().chain([&b.issuer]).enumerate() {
        let raw = hex_n::<32>(&k.public_key, &format!("key {i}"))?;
        if sth::key_id(&raw) != k.key_id {
            return Err(malformed(
                format!("key {}", k.key_id),
                "key_id is not the first 8 bytes of SHA-256(public_key)",
            ));
        }
        if !trusted.contains(&raw) {
            continue;
        }
        let vk = VerifyingKey::from_bytes(&raw)
            .map_err(|e| malformed(format!("key {}", k.key_id), e.to_string()))?;
        keys.insert(&k.key_id, vk);
    }
    let issuer = keys
        .get(b.issuer.key_id.as_str())
        .ok_or_else(|| ReceiptError::UntrustedIssuer(b.issuer.key_id.clone()))?;
    let sig = hex_n::<64>(&r.signature, "signature")?;
    issuer
        .verify_strict(&signed_message(b)?, &Signature::from_bytes(&sig))
        .map_err(|_| ReceiptError::BadSignature)?;

    // Tree heads: signed by trusted keys, ascending, each a prefix of the next.
    if b.tree_heads.is_empty() {
        return Err(malformed("tree_heads", "none"));
    }
    if b.consistency.len() + 1 != b.tree_heads.len() {
        return Err(malformed(
            "consistency",
            "one proof between each two consecutive tree heads",
        ));
    }
    let mut roots: Vec<(u64, Hash)> = Vec::with_capacity(b.tree_heads.len());
    for (i, h) in b.tree_heads.iter().enumerate() {
        let key = keys
            .get(h.key_id.as_str())
            .ok_or_else(|| ReceiptError::UntrustedHead(i, h.key_id.clone()))?;
        let root = hex_n::<32>(&h.root_hash, &format!("tree head {i} root"))?;
        let s = hex_n::<64>(&h.signature, &format!("tree head {i} signature"))?;
        if !sth::verify(key, h.tree_size, h.timestamp_ms, &root, &s) {
            return Err(ReceiptError::BadHeadSignature(i, h.tree_size));
        }
        roots.push((h.tree_size, root));
    }
    for (i, proof) in b.consistency.iter().enumerate() {
        let path = proof
            .iter()
            .map(|p| hex_n::<32>(p, &format!("consistency proof {i}")))
            .collect::<Result<Vec<_>, _>>()?;
        let ((m, r1), (n, r2)) = (roots[i], roots[i + 1]);
        verify_consistency(m, n, &r1, &r2, &path)
            .map_err(|e| ReceiptError::Inconsistent(i, i + 1, e))?;
    }
    let (size, root) = roots[roots.len() - 1];

    // Entries: each recomputed, included, in order, about this enclave (or its policy).
    let mut last_index = None;
    let mut parsed = Vec::with_capacity(b.entries.len());
    for pe in &b.entries {
        let e = &pe.entry;
        let index = e["index"]
            .as_u64()
            .ok_or_else(|| malformed("an entry", "no index"))?;
        if last_index.is_some_and(|l| index <= l) {
            return Err(ReceiptError::Entry {
                index,
                why: "entries are not in log order".into(),
            });
        }
        last_index = Some(index);
        let leaf = leaf_bytes(e).map_err(|why| ReceiptError::Entry { index, why })?;
        let path = pe
            .audit_path
            .iter()
            .map(|p| hex_n::<32>(p, &format!("entry {index} audit path")))
            .collect::<Result<Vec<_>, _>>()?;
        verify_inclusion(&leaf_hash(&leaf), index, size, &path, &root)
            .map_err(|err| ReceiptError::NotIncluded { index, err })?;
        let kind = e["kind"].as_str().unwrap_or("");
        let subject = e["subject"].as_str().unwrap_or("");
        let about_policy = kind == "policy_change" && b.terms.policy.as_deref() == Some(subject);
        if subject != b.enclave && !about_policy {
            return Err(ReceiptError::Entry {
                index,
                why: format!("about {subject:?}, not enclave {:?}", b.enclave),
            });
        }
        let at = e["at_ms"].as_i64().unwrap_or(i64::MIN);
        // Before the period: only policy changes, and the verdict that bound the enclave's key
        // when the period starts.
        let earlier_verdict = kind == "verdict"
            && at < b.from_ms
            && parsed
                .iter()
                .all(|p: &(u64, i64, &str, &Value)| p.2 == "policy_change");
        if !about_policy && !earlier_verdict && (at < b.from_ms || at > b.to_ms) {
            return Err(ReceiptError::Entry {
                index,
                why: format!("written at {at}, outside the period"),
            });
        }
        parsed.push((index, at, kind, e));
    }
    summarise(b, size, &parsed)
}

/// The leaf of a served entry (`docs/log.md`): format 2 must hold no float.
fn leaf_bytes(e: &Value) -> Result<Vec<u8>, String> {
    let obj = e.as_object().ok_or("not an object")?;
    let mut leaf = serde_json::Map::new();
    for k in ["at_ms", "detail", "index", "kind", "subject"] {
        leaf.insert(k.into(), obj.get(k).cloned().ok_or(format!("no {k}"))?);
    }
    match obj.get("leaf_format") {
        None => {}
        Some(f) if f.as_u64() == Some(2) => {
            leaf.insert("leaf_format".into(), f.clone());
            if canonical::has_float(&Value::Object(leaf.clone())) {
                return Err("a float in a leaf_format 2 entry".into());
            }
        }
        Some(f) => return Err(format!("unknown leaf_format {f}")),
    }
    if obj.len() != leaf.len() {
        return Err("fields beyond the entry's".into());
    }
    Ok(canonical::to_vec(&Value::Object(leaf)))
}

fn u64_at(d: &Value, k: &str) -> u64 {
    d[k].as_u64()
        .or_else(|| d[k].as_f64().map(|f| f as u64))
        .unwrap_or(0)
}

/// Reads the proven entries into the verdict: usage chain and checkpoints checked.
fn summarise(
    b: &Body,
    tree_size: u64,
    entries: &[(u64, i64, &str, &Value)],
) -> Result<Verdict, ReceiptError> {
    let g = b.terms.guaranteed_cpu_millicores;
    let mut out = Verdict {
        enclave: b.enclave.clone(),
        from_ms: b.from_ms,
        to_ms: b.to_ms,
        issuer_node: b.issuer.node_id,
        tree_size,
        entries: entries.len(),
        verdicts: Vec::new(),
        measurement: None,
        guaranteed_cpu_millicores: g,
        limit_cpu_millicores: b.terms.limit_cpu_millicores,
        windows: Vec::new(),
        guarantee_not_honoured: Vec::new(),
        starved: Vec::new(),
        demand_unknown: 0,
        at_or_above_guarantee: 0,
        enforcements: Vec::new(),
        lending: Vec::new(),
        unaccounted: Vec::new(),
    };
    let id = enclave_id(&b.enclave);
    let mut key: Option<(String, VerifyingKey)> = None;
    let mut chain: Option<(u64, [u8; 32])> = None;
    // The ladder as the log tells it: step, cap, and whether the step's cause is the enclave's
    // own violation.
    let (mut cap, mut suspended, mut own_cause) = (0u64, false, true);
    let mut last_violation: Option<(u64, Option<u64>, Option<u64>)> = None;
    for &(index, at_ms, kind, e) in entries {
        let d = &e["detail"];
        match kind {
            "verdict" => {
                let trusted = d["trusted"].as_bool().unwrap_or(false);
                let m = d["measurement"].as_str().unwrap_or("").to_string();
                if trusted {
                    let pk = d["ed25519_pub"].as_str().unwrap_or("");
                    let raw = hex_n::<32>(pk, &format!("verdict {index} ed25519_pub"))?;
                    let vk = VerifyingKey::from_bytes(&raw).map_err(|e| ReceiptError::Entry {
                        index,
                        why: format!("the enclave key: {e}"),
                    })?;
                    if key.as_ref().is_some_and(|(k, _)| k != pk) {
                        chain = None; // a new key starts a new chain
                    }
                    key = Some((pk.to_string(), vk));
                    out.measurement = Some(m.clone());
                }
                out.verdicts.push((index, trusted, m));
            }
            "usage_digest" => {
                let usage = |why: String| ReceiptError::Usage { index, why };
                let Some((kh, vk)) = &key else {
                    return Err(usage("no trusted verdict before it binds a key".into()));
                };
                if d["key"].as_str() != Some(kh.as_str()) {
                    return Err(usage(
                        "its key is not the one the last trusted verdict bound".into(),
                    ));
                }
                let raw = hex::decode(d["checkpoint"].as_str().unwrap_or(""))
                    .map_err(|e| usage(format!("checkpoint: {e}")))?;
                let cp = Checkpoint::decode(&raw).map_err(|e| usage(format!("checkpoint: {e}")))?;
                if cp.enclave_id != id {
                    return Err(usage("the checkpoint is another enclave's".into()));
                }
                if !cp.verify(vk) {
                    return Err(usage(
                        "the enclave's checkpoint signature does not verify".into(),
                    ));
                }
                let (first, last) = (u64_at(d, "first_seq"), u64_at(d, "last_seq"));
                if (cp.first_seq, cp.last_seq) != (first, last)
                    || d["prev_head"].as_str() != Some(&hex::encode(cp.prev_head))
                    || d["head"].as_str() != Some(&hex::encode(cp.head))
                {
                    return Err(usage(
                        "the digest does not match its signed checkpoint".into(),
                    ));
                }
                if let Some((prev_last, prev_head)) = chain {
                    match d["unaccounted_from"].as_u64() {
                        None if first != prev_last + 1 || cp.prev_head != prev_head => {
                            return Err(usage(format!(
                                "the chain breaks: seq {first} after {prev_last}"
                            )));
                        }
                        Some(from) if from != prev_last + 1 || first <= from => {
                            return Err(usage("a gap declared at the wrong place".into()));
                        }
                        Some(from) => out.unaccounted.push((from, first - 1)),
                        None => {}
                    }
                }
                chain = Some((last, cp.head));
                let cpu = u64_at(d, "cpu_millicores_avg");
                if cpu >= g {
                    out.at_or_above_guarantee += 1;
                }
                let waited = d["cpu_wait_millicores_avg"].as_u64();
                let standing = judge(WindowFacts {
                    guaranteed: g,
                    used: cpu,
                    waited,
                    held_below: suspended || (cap > 0 && cap < g),
                    own_cause,
                });
                match standing {
                    Standing::HeldBelow => out.guarantee_not_honoured.push(index),
                    Standing::Starved => out.starved.push(index),
                    Standing::DemandUnknown => out.demand_unknown += 1,
                    Standing::AtOrAbove | Standing::WantedLess | Standing::HeldForCause => {}
                }
                out.windows.push(Window {
                    index,
                    at_ms,
                    first_seq: first,
                    last_seq: last,
                    cpu_millicores_avg: cpu,
                    cpu_wait_millicores_avg: waited,
                    cap_cpu_millicores: cap,
                    suspended,
                    standing,
                });
            }
            "violation" if d["event"] == "over_limit" => {
                last_violation = Some((
                    index,
                    d["cpu_millicores"]
                        .as_u64()
                        .or(d["cpu_millicores"].as_f64().map(|f| f as u64)),
                    d["limit_cpu_millicores"].as_u64(),
                ));
            }
            "action" => match d["action"].as_str().unwrap_or("") {
                step @ ("none" | "notify" | "throttle" | "suspend" | "migrate") => {
                    let cause = d["cause"].as_str().unwrap_or("").to_string();
                    cap = u64_at(d, "cpu_cap_millicores");
                    suspended = d["suspended"].as_bool().unwrap_or(false);
                    own_cause = step == "none" || !cause.is_empty();
                    let v = last_violation.filter(|_| step != "none");
                    out.enforcements.push(Enforcement {
                        index,
                        at_ms,
                        action: step.to_string(),
                        from: d["from"].as_str().unwrap_or("").to_string(),
                        cause,
                        cpu_cap_millicores: cap,
                        violation: v.map(|v| v.0),
                        over_cpu_millicores: v.and_then(|v| v.1),
                        over_limit_cpu_millicores: v.and_then(|v| v.2),
                    });
                }
                m @ ("borrow" | "return") => {
                    cap = u64_at(d, "cpu_cap_millicores");
                    out.lending.push((
                        index,
                        format!("{m}: borrows now"),
                        u64_at(d, "borrowed_cpu_millicores"),
                    ));
                }
                m @ ("lend" | "reclaim") => {
                    out.lending.push((
                        index,
                        format!("{m}: lends now"),
                        u64_at(d, "lent_cpu_millicores"),
                    ));
                }
                _ => {}
            },
            "enclave_change" => {
                // An operator's suspension is not the enclave's own doing: it is recorded, and
                // a window under it counts as held below the guarantee by the operator.
                match d["op"].as_str() {
                    Some("suspend") => {
                        suspended = true;
                        own_cause = false;
                    }
                    Some("resume") => {
                        suspended = false;
                        cap = 0;
                        own_cause = true;
                    }
                    _ => {}
                }
            }
            _ => {}
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn trusted_keys_from_the_key_set_json_or_lines() {
        let k = "ab".repeat(32);
        let json = format!(r#"[{{"key_id": "x", "public_key": "{k}"}}]"#);
        assert_eq!(parse_trusted_keys(&json).ok(), Some(vec![[0xab; 32]]));
        let lines = format!("# pinned\n{k}\n\n");
        assert_eq!(parse_trusted_keys(&lines).ok(), Some(vec![[0xab; 32]]));
        // One spelling only: upper-case hex and short keys are refused.
        assert!(parse_trusted_keys(&k.to_uppercase()).is_err());
        assert!(parse_trusted_keys("abcd").is_err());
    }

    #[test]
    fn only_the_canonical_bytes_are_a_receipt() {
        let keys = [[1u8; 32]];
        for (bytes, want) in [
            (&b"{\"a\": 1}\n"[..], "not in canonical form"),
            (&b"{\"a\":1}"[..], "not in canonical form"),
            (&b"{\"a\":1}\n"[..], "not a version-1 receipt"),
            (&b"{\"a\":1\n"[..], "not JSON"),
        ] {
            let e = verify(bytes, &keys).expect_err("refused");
            assert!(e.to_string().contains(want), "{e}");
        }
    }
}
