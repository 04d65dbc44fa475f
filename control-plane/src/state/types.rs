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
}
