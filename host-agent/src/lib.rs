//! The host agent: enclave runtimes, collectors, enforcers, plans. Applies what the
//! controllers decide; decides nothing itself.
//!
//! Modules, each with one responsibility:
//!
//! - [`plan`]: the versioned desired state and the pure diff from applied to wanted.
//! - [`launch`]: what this host agrees to launch (its allow-list, checked before anything is
//!   created) and as whom (never root).
//! - [`agent`]: owns the enclaves, applies plans, samples usage, keeps enforcing.
//! - [`cgroup`]: CPU cap/weight, memory, freezer and accounting on cgroup v1 and v2.
//! - [`net`]: namespace + veth + bridge per enclave, HTB shaping in both directions;
//!   [`net_vm`]: a VM's NIC, a tap bridged inside that namespace.
//! - [`runtime`]: `process` and `qemu` (QMP) runtimes behind one trait.
//! - [`collector`]: drift-free sampling, and the usage window between two samples;
//!   [`cpu_wait`]: the demand signal (time runnable but not running, from schedstat).
//! - [`link`]: the attestation stream to the controllers (evidence, sealed usage reports,
//!   checkpoints, replay; plans in, acks out); [`reconnect`]: its outages and back-off.
//! - [`link_messages`]: what the agent's loop and the link say to each other.
//! - [`link_error`]: why a stream to a controller ended, why a plan was refused (typed).
//! - [`sim_tee`]: the simulated TEE of an enclave (keys, sim evidence, MAC'd usage reports,
//!   signed checkpoints), which the link seals every window through.
//! - [`sys`]: root checks.
//! - [`gpu`]: NVML or "no GPU"; [`store`]: the applied plan on disk; [`control`]: the local
//!   socket for `apply`/`status`; [`cleanup`]: leftovers after a crash.
//! - [`metrics`]: the agent's Prometheus metrics (served by `tribune agent`).
//! - [`units`], [`error`]: parsing of CPU/memory/bandwidth quantities; the error type.
//!
//! One usage pipeline, one direction: [`collector`] samples → [`agent`] cuts each enclave's
//! window and hands it over ([`link_messages::ToLink`]) → [`link`] seals it through the
//! enclave's [`sim_tee`], buffers it until acknowledged and sends it.
//!
//! Dependencies run one way: `agent` and `link` both use `link_messages` and neither uses the
//! other (the caller wires them with two channels: `cli`'s `tribune agent`); `agent` uses
//! `cleanup`, and both use `sys`; `sim_tee` uses only the attestation crate.

pub mod agent;
pub mod capacity;
pub mod cgroup;
pub mod cleanup;
pub mod collector;
pub mod control;
pub mod cpu_wait;
pub mod error;
pub mod fence;
pub mod gpu;
pub mod launch;
pub mod link;
pub mod link_error;
pub mod link_messages;
pub mod link_migration;
mod link_plan;
pub mod mediator;
pub mod metrics;
pub mod net;
pub mod net_vm;
pub mod plan;
pub mod reconnect;
pub mod runtime;
pub mod sim_tee;
pub mod store;
pub mod sys;
pub mod test_fault;
pub mod test_hold;
pub mod units;

pub use agent::{Agent, AgentConfig, AgentStatus, ApplyReport, Request};
pub use error::{AgentError, Result};
pub use launch::{AllowList, EnclaveUsers, LaunchPolicy};
pub use link_messages::{LinkEvent, RefusedLaunch, ToLink};
pub use plan::{Bandwidth, EnclavePlan, Guest, LaunchSpec, Limits, MsgPort, Plan, RunState};
pub use runtime::RuntimeKind;
