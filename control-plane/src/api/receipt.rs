//! `GET /v1/enclaves/{id}/receipt?from=&to=` (and its gRPC twin): a fairness receipt
//! (`docs/receipts.md`) — the enclave's log entries over the period with inclusion proofs
//! against a tree head this controller signs now, the terms in force, all signed with this
//! controller's log key. The format and its verification are `tribune_receipt`'s, the
//! standalone crate a tenant builds; this module only assembles and signs.

use serde::Deserialize;
use tribune_attest::merkle::Hash;
use tribune_receipt::receipt::{
    Body, FORMAT, KeyRef, ProvenEntry, Receipt, Terms, TreeHead, signed_message,
};

use super::log::SthView;
use super::problem::Problem;
use super::service::{Api, now_ms};
use crate::attest::decide::{Input, compile, decide_host, identity};
use crate::auth::{Op, Principal};
use crate::log_key::LogSigner;
use crate::state::{LogDetail, LogEntry, LogEntryKind, State};
use crate::validate::check_name;

/// Most log entries one receipt holds (an hour of one enclave at one checkpoint a second is
/// ≈ 3 600 digests plus its actions): a longer period is asked for in parts.
pub const RECEIPT_ENTRIES_MAX: usize = 50_000;

/// `?from=&to=`: Unix ms, inclusive; `to` defaults to now, `from` to an hour before `to`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
#[derive(utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ReceiptQuery {
    pub from: Option<i64>,
    pub to: Option<i64>,
}

fn internal(e: impl std::fmt::Display) -> Problem {
    Problem::from(crate::ControllerError::Internal(e.to_string()))
}

/// Kinds of entry that are about one enclave.
fn about_enclave(k: LogEntryKind) -> bool {
    matches!(
        k,
        LogEntryKind::Verdict
            | LogEntryKind::Violation
            | LogEntryKind::Action
            | LogEntryKind::Migration
            | LogEntryKind::EnclaveChange
            | LogEntryKind::UsageDigest
    )
}

/// What a receipt holds from the state, chosen under the state lock with the entries' audit
/// paths (O(log² n) reads of the tree's stored nodes each); the signature is added outside
/// the lock ([`seal`]).
pub struct Selection {
    pub entries: Vec<LogEntry>,
    pub terms: Terms,
    pub keys: Vec<KeyRef>,
    /// The root of the first `tree_size` leaves.
    pub root: Hash,
    /// Each entry's audit path in the tree of the first `tree_size` leaves, in `entries` order.
    pub paths: Vec<Vec<Hash>>,
}

/// Chooses a receipt's contents (pure): the enclave's entries written in `from..=to` in the
/// first `tree_size` entries, the last trusted verdict before `from` (the identity in force
/// when the period starts), every change of the policy that governs it, the terms, the keys.
/// `None` when there is no such enclave.
pub fn select(
    st: &State,
    id: &str,
    from: i64,
    to: i64,
    tree_size: u64,
    now_ms: i64,
) -> Result<Option<Selection>, Problem> {
    let Some(e) = st.enclaves.get(id) else {
        return Ok(None);
    };
    let status = st.status.get(id);
    let (set, _) = compile(&st.policies);
    let policy = set
        .policies()
        .iter()
        .find(|p| p.matches(&identity(e, status.and_then(|s| s.attestation.as_ref()))))
        .map(|p| p.name().to_string());
    let empty = Default::default();
    let input = Input {
        enclave: e,
        status,
        allocation: st.allocations.get(id),
        observation: None,
        held_since: &empty,
        accounting_broken_ms: None,
    };
    let decision = decide_host(&set, std::slice::from_ref(&input), now_ms)
        .pop()
        .map(|o| o.decision);
    let whole = |x: Option<f64>| x.map_or(0, |v| v.max(0.0).round() as u64);
    let stored = policy.as_ref().and_then(|p| st.policies.get(p));
    let terms = Terms {
        policy: policy.clone(),
        policy_version: stored.map(|p| p.version),
        policy_source_sha256: stored
            .map(|p| hex::encode(<sha2::Sha256 as sha2::Digest>::digest(p.source.as_bytes()))),
        guaranteed_cpu_millicores: whole(
            decision
                .as_ref()
                .and_then(|d| d.guarantee_of(tribune_policy::Resource::Cpu)),
        ),
        limit_cpu_millicores: whole(
            decision
                .as_ref()
                .and_then(|d| d.limit_of(tribune_policy::Resource::Cpu)),
        ),
    };
    let size = usize::try_from(tree_size).map_err(internal)?;
    let log = &st.log.entries[..size.min(st.log.entries.len())];
    // The identity in force when the period starts: the last trusted verdict before it (it
    // binds the key the period's first checkpoints verify under).
    let identity_at_start = log
        .iter()
        .rev()
        .filter(|x| x.subject == id && x.at_ms < from)
        .find(|x| matches!(&x.detail, LogDetail::Verdict(v) if v.trusted))
        .map(|x| x.index);
    let entries: Vec<LogEntry> = log
        .iter()
        .filter(|x| {
            (x.subject == id && about_enclave(x.kind()) && (from..=to).contains(&x.at_ms))
                || Some(x.index) == identity_at_start
                || (x.kind() == LogEntryKind::PolicyChange
                    && policy.as_deref() == Some(x.subject.as_str()))
        })
        .cloned()
        .collect();
    if entries.len() > RECEIPT_ENTRIES_MAX {
        return Err(Problem::bad_request(format!(
            "the period holds {} log entries of {id:?}; a receipt holds at most {RECEIPT_ENTRIES_MAX}: ask for a shorter period",
            entries.len()
        )));
    }
    let keys: Vec<KeyRef> = st
        .log_keys
        .values()
        .map(|k| KeyRef {
            node_id: k.node_id,
            key_id: k.key_id.clone(),
            public_key: k.public_key.clone(),
        })
        .collect();
    let tree = st.log.tree();
    let paths = entries
        .iter()
        .map(|e| tree.inclusion_proof(e.index, tree_size))
        .collect::<Result<Vec<_>, _>>()
        .map_err(internal)?;
    Ok(Some(Selection {
        entries,
        terms,
        keys,
        root: tree.root_at(tree_size).map_err(internal)?,
        paths,
    }))
}

/// The period a receipt covers.
#[derive(Clone, Copy, Debug)]
pub struct Period {
    pub from_ms: i64,
    pub to_ms: i64,
    pub issued_at_ms: i64,
}

/// Proves every selected entry against `head` (which this controller signed over the same
/// log) and signs the receipt.
pub fn seal(
    id: &str,
    period: Period,
    sel: Selection,
    head: SthView,
    signer: &LogSigner,
) -> Result<Receipt, Problem> {
    if hex::encode(sel.root) != head.root_hash {
        return Err(internal("the tree's root is not the signed head's"));
    }
    let mut proven = Vec::with_capacity(sel.entries.len());
    for (e, path) in sel.entries.iter().zip(&sel.paths) {
        proven.push(ProvenEntry {
            entry: serde_json::to_value(e).map_err(internal)?,
            audit_path: path.iter().map(hex::encode).collect(),
        });
    }
    let body = Body {
        format: FORMAT,
        enclave: id.to_string(),
        from_ms: period.from_ms,
        to_ms: period.to_ms,
        issued_at_ms: period.issued_at_ms,
        issuer: KeyRef {
            node_id: signer.node_id,
            key_id: signer.key_id.clone(),
            public_key: signer.public_key.clone(),
        },
        keys: sel.keys,
        tree_heads: vec![TreeHead {
            tree_size: head.tree_size,
            timestamp_ms: head.timestamp_ms,
            root_hash: head.root_hash,
            signature: head.signature,
            key_id: head.key_id,
        }],
        consistency: vec![],
        terms: sel.terms,
        entries: proven,
    };
    let message = signed_message(&body).map_err(internal)?;
    let signature = hex::encode(signer.sign_receipt(&message));
    Ok(Receipt { body, signature })
}

impl Api {
    pub async fn enclave_receipt(
        &self,
        who: &Principal,
        id: &str,
        q: ReceiptQuery,
    ) -> Result<Receipt, Problem> {
        who.require(Op::ReadEnclaves)?;
        who.require(Op::ReadLog)?;
        check_name("enclave", id).map_err(Problem::bad_request)?;
        let now = now_ms();
        let to = q.to.unwrap_or(now);
        let from = q.from.unwrap_or(to.saturating_sub(3_600_000));
        if from > to {
            return Err(Problem::bad_request(format!(
                "from={from} is after to={to} (both Unix ms, inclusive)"
            )));
        }
        // A fresh head over the whole log (linearizable read, signed by this controller).
        let head = self.log_sth(who).await?;
        let signer = self.controller.log_signer.clone();
        let not_found = || Problem::not_found(format!("no enclave {id:?}"));
        let sel = {
            let st = self.state();
            if !st
                .enclaves
                .get(id)
                .is_some_and(|e| who.sees_tenant(&e.tenant))
            {
                return Err(not_found());
            }
            select(&st, id, from, to, head.tree_size, now)?.ok_or_else(not_found)?
        };
        let period = Period {
            from_ms: from,
            to_ms: to,
            issued_at_ms: now,
        };
        seal(id, period, sel, head, &signer)
    }
}
