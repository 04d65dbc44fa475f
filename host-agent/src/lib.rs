//! The host agent: enclave runtimes, collectors, enforcers, plans. Applies what the
//! controllers decide; decides nothing itself.
//!
//! - [`plan`]: the versioned desired state and the pure diff from applied to wanted.
//! - [`launch`]: what this host agrees to launch (its allow-list, checked before anything is
//!   created) and as whom (never root).
//! - [`agent`]: owns the enclaves, applies plans, samples usage, keeps enforcing.
//! - [`cgroup`]: CPU cap/weight, memory, freezer and accounting on cgroup v1 and v2.
//! - [`net`]: namespace + veth + bridge per enclave, HTB shaping in both directions.
//! - [`runtime`]: `process` and `qemu` (QMP) runtimes behind one trait.
//! - [`collector`]: drift-free sampling; [`supervisor`]: enclave-side usage reports.
//! - [`link`]: the attestation stream to the controllers; [`reconnect`]: its outages and
//!   back-off.
//! - [`gpu`]: NVML or "no GPU"; [`store`]: the applied plan on disk; [`control`]: the local
//!   socket for `apply`/`status`; [`cleanup`]: leftovers after a crash.

pub mod agent;
pub mod cgroup;
pub mod cleanup;
pub mod collector;
pub mod control;
pub mod error;
pub mod gpu;
pub mod launch;
pub mod link;
pub mod net;
pub mod plan;
pub mod reconnect;
pub mod runtime;
pub mod store;
pub mod supervisor;
pub mod units;

pub use agent::{Agent, AgentConfig, AgentStatus, ApplyReport, LinkEvent, Request};
pub use error::{AgentError, Result};
pub use launch::{AllowList, EnclaveUsers, LaunchPolicy};
pub use plan::{Bandwidth, EnclavePlan, LaunchSpec, Limits, Plan, RunState};
pub use runtime::RuntimeKind;
