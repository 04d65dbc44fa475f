//! Replicated domain types. The same names appear in proto, the JSON API, the CLI and the docs.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use tribune_attest::TeeKind;

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Policy {
    pub name: String,
    /// Starts at 1 and grows by one on every successful write.
    pub version: u64,
    /// Policy-language source text, stored as written.
    pub source: String,
    pub created_by: String,
    pub updated_by: String,
    pub created_at_ms: i64,
    pub updated_at_ms: i64,
}

/// Resource amounts with their units in the names.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
#[derive(utoipa::ToSchema)]
pub struct Resources {
    pub cpu_millicores: u64,
    pub memory_bytes: u64,
    pub egress_bits_per_sec: u64,
    pub ingress_bits_per_sec: u64,
    pub gpu_percent: u32,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
#[derive(utoipa::ToSchema)]
pub struct Host {
    pub id: String,
    pub address: String,
    #[serde(default)]
    pub capacity: Resources,
    pub tee: TeeKind,
    #[serde(default = "unverified")]
    pub attestation_status: String,
    #[serde(default)]
    pub last_heartbeat_ms: i64,
    #[serde(default)]
    pub agent_cert_fingerprint: String,
    /// "enforcing", or why the agent can only observe (e.g. "observe-only: not root").
    #[serde(default)]
    pub enforcement: String,
    /// The TEE's generation (firmware / TCB level) the agent reports (0: unknown).
    #[serde(default)]
    pub tee_generation: u32,
    /// Placement labels (the agent's `--label`, or an admin's record): an enclave's
    /// `scheduling.host_selector` must match them.
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
    /// Whether new enclaves may land here (`tribune host cordon|uncordon|drain`). Only an
    /// operator changes it; the agent's stream keeps it as stored.
    #[serde(default)]
    pub schedulable: Schedulable,
    /// What the host's enclaves use, by their verified usage reports (the sum of each one's
    /// newest verified second), as its agent's session last recorded it (`Command::HostSeen`,
    /// at `last_heartbeat_ms`). The scheduler scores hosts with it beside their reservations.
    /// Only that session writes it: a `PUT` keeps the stored one.
    #[serde(default)]
    pub measured_load: Resources,
}

/// Whether new enclaves may land on a host: the scheduler's own type.
pub use tribune_migration::Schedulable;
/// How the scheduler packs: the scheduler's own type.
pub use tribune_migration::Strategy;

/// How the scheduler places an enclave created without a host (`POST /v1/enclaves`). The
/// guarantee placed against every host's capacity is the enclave's `requested`; its priority
/// is `priority`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields, default)]
pub struct Scheduling {
    /// May displace strictly lower-priority enclaves when nothing fits without it (they are
    /// moved or suspended, never stopped, and the log says so).
    pub preempt: bool,
    /// Host labels that must all match (affinity).
    pub host_selector: BTreeMap<String, String>,
    /// Label keys: never on a host with another enclave holding the same value for one of them.
    pub anti_affinity: Vec<String>,
    /// Lowest TEE generation accepted (0: any).
    pub min_tee_generation: u32,
    pub strategy: Strategy,
}

fn unverified() -> String {
    "unverified".to_string()
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
#[derive(utoipa::ToSchema)]
pub struct Placement {
    pub host: String,
    /// Fencing token: grows whenever the enclave moves, so an old host's plan is recognisably stale.
    pub epoch: u64,
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
#[derive(utoipa::ToSchema)]
pub enum EnclaveState {
    #[default]
    Pending,
    Running,
    Throttled,
    Suspended,
    Migrating,
    Stopped,
    Untrusted,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
#[derive(utoipa::ToSchema)]
pub struct Enclave {
    pub id: String,
    pub tenant: String,
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
    pub tee: TeeKind,
    #[serde(default)]
    pub expected_measurements: Vec<String>,
    #[serde(default)]
    pub requested: Resources,
    #[serde(default)]
    pub priority: i32,
    #[serde(default)]
    pub placement: Option<Placement>,
    #[serde(default)]
    pub state: EnclaveState,
    /// How the host agent starts it (the agent's launch spec, passed through as JSON).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub launch: Option<serde_json::Value>,
    /// How the scheduler places it; `None` for an enclave placed by naming its host.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scheduling: Option<Scheduling>,
    /// Set by the state machine; ignored on input.
    #[serde(default)]
    pub version: u64,
}

/// Current limits and fair-share weight of one enclave.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
#[derive(utoipa::ToSchema)]
pub struct Allocation {
    pub enclave: String,
    pub limits: Resources,
    pub guaranteed: Resources,
    pub weight: u32,
    pub suspended: bool,
    /// Inter-enclave messages a second its host's mediator admits from it, while it is
    /// throttled by a rule that sets `msgs.rate` (docs/messages.md). Absent: not rate-limited
    /// (and entries without it serialise exactly as before the field existed).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub msgs_rate_per_s: Option<u64>,
}

/// A bearer token (`tribune token create`). Only the secret's SHA-256 is replicated; the secret
/// itself was shown once to its creator.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Token {
    /// 16 hex digits: the public half of `tbt_ID_SECRET`.
    pub id: String,
    /// What it is for (`ci`, `terraform`, a person's name).
    pub name: String,
    pub role: tribune_tls::UserRole,
    /// Set exactly for the tenant role.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tenant: Option<String>,
    pub secret_sha256: String,
    pub created_by: String,
    pub created_at_ms: i64,
    pub expires_at_ms: i64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub revoked: Option<Revocation>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
#[derive(utoipa::ToSchema)]
pub struct Revocation {
    pub by: String,
    pub at_ms: i64,
}

/// An operator's suspension of an enclave: sticky until an operator resumes it; no policy
/// decision lifts it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
#[derive(utoipa::ToSchema)]
pub struct OperatorHold {
    pub by: String,
    pub since_ms: i64,
    /// Set when the hold is a preemption: the higher-priority enclave that displaced this one
    /// and found it no other host. A preempted enclave stays frozen on its host but reserves
    /// no guarantee there (the scheduler's view leaves it out) until an operator resumes it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub preempted_by: Option<String>,
}
