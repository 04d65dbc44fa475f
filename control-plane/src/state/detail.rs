//! What each attestation-log entry records: [`LogDetail`], one variant per [`LogEntryKind`],
//! each with typed fields.
//!
//! The detail is part of the entry's Merkle leaf ([`super::LogEntry::leaf_bytes`]), so its
//! JSON is a contract: every type here serialises to exactly the object the log has always
//! held (same keys, `null` for an absent optional value unless noted, the same number forms).
//! [`LogDetail::from_value`] refuses an object that would not serialise back to the same JSON,
//! so an entry is never silently re-encoded into a different leaf. `tests_golden.rs` pins the
//! leaf bytes of one entry of every kind and shape.

use serde::{Deserialize, Serialize};
use serde_json::Value;
use tribune_attest::TeeKind;
use tribune_policy::AttestViolation;
use tribune_tls::UserRole;

use super::leaf_format::{LeafFormat, OverLimitV1, UsageDigestV1};
use super::{EnclaveState, LogEntryKind, Resources, Step, UsageDigest};

/// The detail of a log entry. Its kind is [`LogDetail::kind`]; in JSON the kind and the
/// detail are two fields of the entry (`"kind"`, `"detail"`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", content = "detail", rename_all = "snake_case")]
#[derive(utoipa::ToSchema)]
pub enum LogDetail {
    Verdict(VerdictDetail),
    Violation(ViolationDetail),
    Action(ActionDetail),
    Migration(MigrationDetail),
    PolicyChange(PolicyChangeDetail),
    EnclaveChange(EnclaveChangeDetail),
    /// The digest of a checkpointed usage span, as the state confirmed it.
    UsageDigest(UsageDigest),
    LogKey(LogKeyDetail),
    HostChange(HostChangeDetail),
    MembershipChange(MembershipChangeDetail),
    TokenChange(TokenChangeDetail),
}

/// A verdict on an enclave's evidence (subject: the enclave).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
#[derive(utoipa::ToSchema)]
pub struct VerdictDetail {
    pub trusted: bool,
    /// The host whose agent relayed the evidence.
    pub host: String,
    /// The TEE the evidence is from; `null` when the evidence could not be read.
    pub tee: Option<TeeKind>,
    /// Hex launch measurement (empty when the evidence could not be read).
    pub measurement: String,
    pub debug: bool,
    pub ed25519_pub: String,
    /// Why it is not trusted (empty when trusted).
    pub reasons: Vec<String>,
    /// Failed verifications since the last success.
    pub failures: u32,
    /// The controller that verified it.
    pub verified_by: u64,
    /// Trusted by the enclave's signature over a new key exchange (no evidence round trip).
    pub rekeyed: bool,
}

/// A violation (subject: the enclave, or what was refused), by its `"event"`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "event")]
#[derive(utoipa::ToSchema)]
pub enum ViolationDetail {
    /// The enclave's verified usage went over its effective limit.
    #[serde(rename = "over_limit")]
    OverLimit(OverLimit),
    /// A failed verdict or evidence outside the policy's `attest` requirements.
    #[serde(rename = "attestation.failed")]
    AttestationFailed(AttestationFailed),
    /// Input refused: a stream, a report, a checkpoint, a TLS handshake.
    #[serde(rename = "refused")]
    Refused(Refusal),
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
#[derive(utoipa::ToSchema)]
pub struct OverLimit {
    /// The enclave's usage in the window that went over, whole millicores (leaf format 1 wrote
    /// it as a float: `state/leaf_format.rs`).
    #[serde(deserialize_with = "super::leaf_format::whole::option")]
    pub cpu_millicores: Option<u64>,
    /// The effective limit (policy limit plus what the enclave borrows).
    pub limit_cpu_millicores: Option<u64>,
    /// Seq of the report that went over.
    pub seq: Option<u64>,
    /// When that report's window ended (the enclave's clock, ms).
    pub window_end_ms: Option<u64>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
#[derive(utoipa::ToSchema)]
pub struct AttestationFailed {
    pub violation: Option<AttestViolation>,
}

/// Input a controller refused. `host`, `remote` and `controller` appear only where they apply
/// (they are left out of the JSON, not `null`, when absent).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
#[derive(utoipa::ToSchema)]
pub struct Refusal {
    /// What was refused (`attestation stream`, `usage`, `replay`, `tls handshake`, …).
    pub what: String,
    pub why: String,
    /// The host whose stream sent it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub host: Option<String>,
    /// The peer address of a refused connection.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub remote: Option<String>,
    /// The controller that refused the connection.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub controller: Option<u64>,
}

impl Refusal {
    /// A refusal of `what` for `why`, with no host, remote or controller.
    pub fn new(what: impl Into<String>, why: impl Into<String>) -> Self {
        Refusal {
            what: what.into(),
            why: why.into(),
            host: None,
            remote: None,
            controller: None,
        }
    }
}

impl From<Refusal> for LogDetail {
    fn from(r: Refusal) -> Self {
        LogDetail::Violation(ViolationDetail::Refused(r))
    }
}

/// An enforcement action (subject: the enclave): a ladder step, or CPU borrowed or lent.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
#[derive(utoipa::ToSchema)]
pub enum ActionDetail {
    Ladder(LadderAction),
    Borrow(BorrowAction),
    Lend(LendAction),
}

/// The enclave moved on its violation ladder (`"action"` is the new step).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
#[derive(utoipa::ToSchema)]
pub struct LadderAction {
    pub action: Step,
    pub from: Step,
    /// What put it on this step (empty when back to `none`).
    pub cause: String,
    pub cpu_cap_millicores: u64,
    pub suspended: bool,
    /// How long usage has been over the limit.
    pub over_limit_ms: Option<i64>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[derive(utoipa::ToSchema)]
pub enum BorrowMove {
    /// Borrows more from idle neighbours than before.
    Borrow,
    /// Borrows less (gives some back).
    Return,
}

/// What the enclave borrows from idle neighbours changed (it raises its cap).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
#[derive(utoipa::ToSchema)]
pub struct BorrowAction {
    pub action: BorrowMove,
    pub borrowed_cpu_millicores: u64,
    /// What it borrowed before.
    pub was: u64,
    pub cpu_cap_millicores: u64,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[derive(utoipa::ToSchema)]
pub enum LendMove {
    /// Lends more of its idle guarantee than before.
    Lend,
    /// Lends less (takes some back).
    Reclaim,
}

/// What the enclave lends of its idle guarantee changed.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
#[derive(utoipa::ToSchema)]
pub struct LendAction {
    pub action: LendMove,
    pub lent_cpu_millicores: u64,
    /// What it lent before.
    pub was: u64,
}

/// Where an enclave runs changed, by the scheduler (subject: the enclave), by `"op"`. A
/// policy's `migrate` step is logged as a ladder action; the live migration that carries it
/// out has its own `live_*` entries (`state/live.rs`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(tag = "op", rename_all = "snake_case", deny_unknown_fields)]
pub enum MigrationDetail {
    /// Placed by the scheduler on a new enclave's creation (`POST /v1/enclaves`).
    Place {
        host: String,
        epoch: u64,
        priority: i32,
        /// Lower-priority enclaves displaced to make room (each has its own `preempted` entry).
        displaced: Vec<String>,
        actor: String,
    },
    /// Displaced by a strictly higher-priority enclave: moved to `to` (a stop-and-restart
    /// move follows, with its own entries), or, with `to` null, suspended on `from` (it keeps
    /// its process frozen there but no longer reserves its guarantee).
    Preempted {
        from: String,
        to: Option<String>,
        priority: i32,
        by: String,
        by_priority: i32,
        actor: String,
    },
    /// A stop-and-restart move began: `from`'s plan drops the enclave; `to` gets it only once
    /// `from`'s agent acked that plan (`move_done`).
    MoveStart {
        from: String,
        to: String,
        /// The placement epoch it ran under on `from`.
        epoch: u64,
        /// `drain`, or `preempted by ID`.
        cause: String,
        actor: String,
    },
    /// `from`'s agent acked plan `source_plan_version`, which no longer holds the enclave: it
    /// is placed on `to` under the new `epoch`.
    MoveDone {
        from: String,
        to: String,
        epoch: u64,
        source_plan_version: u64,
    },
    /// A live migration of a QEMU enclave began (`state/live.rs`): the target is told to
    /// wait for the VM's state; the enclave still runs on `from` under `epoch`.
    LiveStart {
        id: String,
        from: String,
        to: String,
        epoch: u64,
        cause: super::LiveCause,
        /// Forced past a policy suspension or the cool-down (the audit of an override).
        forced: bool,
        actor: String,
    },
    /// The target's VM waits, paused, for the state on `listen`; the source sends it. Its
    /// evidence, bound to the migration's fresh nonce, was verified to `measurement` (absent
    /// in entries written before that check).
    LiveReady {
        id: String,
        to: String,
        listen: String,
        #[serde(default, skip_serializing_if = "String::is_empty")]
        measurement: String,
    },
    /// The source completed: the enclave is placed on `to` under the new `epoch` and resumes
    /// there; the source may never run it again.
    LiveCommitted {
        id: String,
        from: String,
        to: String,
        epoch: u64,
        transferred_bytes: u64,
        downtime_ms: u64,
        total_time_ms: u64,
    },
    /// Rolled back before a commit: it runs on `from` under `epoch`, the target's copy is
    /// torn down.
    LiveRolledBack {
        id: String,
        from: String,
        to: String,
        epoch: u64,
        reason: String,
    },
}

/// A policy written or deleted through the API (subject: the policy name).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case", deny_unknown_fields)]
#[derive(utoipa::ToSchema)]
pub enum PolicyChangeDetail {
    Put {
        version: u64,
        actor: String,
        /// Hex SHA-256 of the source text stored.
        source_sha256: String,
    },
    Delete {
        /// The version deleted.
        version: u64,
        actor: String,
    },
}

/// What an operator asked of an enclave, in the log's words.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[derive(utoipa::ToSchema)]
pub enum EnclaveOp {
    /// Created or rewritten.
    Put,
    /// Suspended by an operator (sticky until an operator resumes it).
    Suspend,
    /// Resumed by an operator.
    Resume,
    /// The record removed (`version` is the version deleted).
    Delete,
}

/// An enclave written through the API (subject: the enclave).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
#[derive(utoipa::ToSchema)]
pub struct EnclaveChangeDetail {
    pub op: EnclaveOp,
    /// The version written.
    pub version: u64,
    pub state: EnclaveState,
    pub actor: String,
    pub tenant: String,
    /// The host it is placed on, if any.
    pub host: Option<String>,
}

/// A controller's tree-head signing key registered (subject: `controller-N`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
#[derive(utoipa::ToSchema)]
pub struct LogKeyDetail {
    pub node_id: u64,
    pub key_id: String,
    /// The 32-byte ed25519 public key, hex.
    pub public_key: String,
}

/// A host record written through the API (subject: the host).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case", deny_unknown_fields)]
#[derive(utoipa::ToSchema)]
pub enum HostChangeDetail {
    Put {
        actor: String,
        attestation_status: String,
        capacity: Resources,
        tee: TeeKind,
    },
    /// Nothing new lands on the host (`tribune host cordon`).
    Cordon { actor: String },
    /// New enclaves may land on it again.
    Uncordon { actor: String },
    /// Cordoned, and what runs there is moved off (`tribune host drain`).
    Drain { actor: String },
}

/// A controller added, promoted or removed (subject: `controller-N`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case", deny_unknown_fields)]
#[derive(utoipa::ToSchema)]
pub enum MembershipChangeDetail {
    Add {
        id: u64,
        address: String,
        voter: bool,
        actor: String,
    },
    Promote {
        id: u64,
        actor: String,
    },
    Remove {
        id: u64,
        actor: String,
    },
}

/// A bearer token created or revoked (subject: `token-ID`); never its secret.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case", deny_unknown_fields)]
#[derive(utoipa::ToSchema)]
pub enum TokenChangeDetail {
    Create {
        actor: String,
        name: String,
        role: UserRole,
        tenant: Option<String>,
        expires_at_ms: i64,
    },
    Revoke {
        actor: String,
    },
}

impl LogDetail {
    pub fn kind(&self) -> LogEntryKind {
        match self {
            LogDetail::Verdict(_) => LogEntryKind::Verdict,
            LogDetail::Violation(_) => LogEntryKind::Violation,
            LogDetail::Action(_) => LogEntryKind::Action,
            LogDetail::Migration(_) => LogEntryKind::Migration,
            LogDetail::PolicyChange(_) => LogEntryKind::PolicyChange,
            LogDetail::EnclaveChange(_) => LogEntryKind::EnclaveChange,
            LogDetail::UsageDigest(_) => LogEntryKind::UsageDigest,
            LogDetail::LogKey(_) => LogEntryKind::LogKey,
            LogDetail::HostChange(_) => LogEntryKind::HostChange,
            LogDetail::MembershipChange(_) => LogEntryKind::MembershipChange,
            LogDetail::TokenChange(_) => LogEntryKind::TokenChange,
        }
    }

    /// The detail object as a new entry writes it (leaf format 2), without the kind.
    pub fn to_value(&self) -> Value {
        self.to_value_as(LeafFormat::CURRENT)
    }

    /// The detail object as an entry of `format` writes it, without the kind.
    pub fn to_value_as(&self, format: LeafFormat) -> Value {
        // These types serialise to JSON without fail (string keys, no custom serialisers
        // that can refuse); the fallback is never taken.
        serde_json::to_value(Body(self, format)).unwrap_or(Value::Null)
    }

    /// The detail of an entry of `kind` and `format` from its JSON object. Refuses an object
    /// that is not exactly this kind's shape in that format — one that would serialise back
    /// differently (an unknown or missing field, a different number form) — since its leaf
    /// would change.
    pub fn from_value_as(
        kind: LogEntryKind,
        format: LeafFormat,
        v: Value,
    ) -> Result<Self, DetailError> {
        let tagged = serde_json::json!({ "kind": kind, "detail": &v });
        let d: LogDetail = serde_json::from_value(tagged).map_err(|source| DetailError::Shape {
            kind: kind.as_str(),
            source,
        })?;
        let canonical = d.to_value_as(format);
        if canonical != v {
            return Err(DetailError::NotCanonical {
                kind: kind.as_str(),
                format: format.number(),
                canonical: canonical.to_string(),
            });
        }
        Ok(d)
    }

    /// [`Self::from_value_as`] for the current leaf format.
    pub fn from_value(kind: LogEntryKind, v: Value) -> Result<Self, DetailError> {
        Self::from_value_as(kind, LeafFormat::CURRENT, v)
    }

    /// About how many bytes the detail takes as JSON.
    pub fn approx_bytes(&self) -> usize {
        serde_json::to_vec(&Body(self, LeafFormat::CURRENT)).map_or(0, |b| b.len())
    }
}

/// A detail that is not its kind's shape.
#[derive(Debug, thiserror::Error)]
pub enum DetailError {
    #[error("not the detail of a {kind} entry: {source}")]
    Shape {
        kind: &'static str,
        #[source]
        source: serde_json::Error,
    },
    #[error(
        "the detail of a {kind} entry does not serialise back to the same JSON in leaf format \
         {format} (its canonical form: {canonical}), so its leaf would change"
    )]
    NotCanonical {
        kind: &'static str,
        format: u64,
        canonical: String,
    },
}

/// The detail object alone (the variant's content, untagged), in a leaf format.
pub(super) struct Body<'a>(pub(super) &'a LogDetail, pub(super) LeafFormat);

impl Serialize for Body<'_> {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        if self.1 == LeafFormat::V1 {
            match self.0 {
                LogDetail::UsageDigest(d) => return UsageDigestV1::from(d).serialize(s),
                LogDetail::Violation(ViolationDetail::OverLimit(o)) => {
                    return OverLimitV1::from(o).serialize(s);
                }
                _ => {}
            }
        }
        match self.0 {
            LogDetail::Verdict(d) => d.serialize(s),
            LogDetail::Violation(d) => d.serialize(s),
            LogDetail::Action(d) => d.serialize(s),
            LogDetail::Migration(d) => d.serialize(s),
            LogDetail::PolicyChange(d) => d.serialize(s),
            LogDetail::EnclaveChange(d) => d.serialize(s),
            LogDetail::UsageDigest(d) => d.serialize(s),
            LogDetail::LogKey(d) => d.serialize(s),
            LogDetail::HostChange(d) => d.serialize(s),
            LogDetail::MembershipChange(d) => d.serialize(s),
            LogDetail::TokenChange(d) => d.serialize(s),
        }
    }
}

/// `[[kind, detail], …]`: how a list of details travels in a command
/// ([`super::Enforcement::log`]), as it always has. Written in the current leaf format; read in
/// either (a Raft entry written before format 2 holds format 1's floats).
pub(super) mod pairs {
    use serde::{Deserialize, Deserializer, Serializer};
    use serde_json::Value;

    use super::{Body, LeafFormat, LogDetail, LogEntryKind};

    pub fn serialize<S: Serializer>(details: &[LogDetail], s: S) -> Result<S::Ok, S::Error> {
        s.collect_seq(
            details
                .iter()
                .map(|d| (d.kind(), Body(d, LeafFormat::CURRENT))),
        )
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<LogDetail>, D::Error> {
        Vec::<(LogEntryKind, Value)>::deserialize(d)?
            .into_iter()
            .map(|(kind, v)| {
                LogDetail::from_value_as(kind, LeafFormat::CURRENT, v.clone())
                    .or_else(|_| LogDetail::from_value_as(kind, LeafFormat::V1, v))
                    .map_err(serde::de::Error::custom)
            })
            .collect()
    }
}
