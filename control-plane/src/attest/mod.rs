//! The attestation loop on the controller side (DESIGN.md §4–§6): the `AttestationService`
//! stream, verification of evidence and usage, decisions and plans.
//!
//! The stream is a thin I/O shell over pure parts, each with its tests beside it:
//! - [`server`]: the gRPC service — authenticates the agent, reads `Hello`, starts a session.
//! - [`session`]: one stream's select loop and its effects (Raft writes, sends, the state lock).
//! - [`verify_pool`]: low-priority threads the streams' MAC and signature checks run on.
//! - [`evidence`]: evidence and re-keying as pure verdicts.
//! - [`ledger`]: tracked enclaves, usage reports, replay, checkpoints, digests, freshness, gaps.
//! - [`reattest`]: re-attestation schedules (`due`, `overdue`).
//! - [`refusal`]: refused inputs and their fault kinds (the key of log rate-limiting).
//! - [`clock`]: the session clock (wall time at the start, advanced monotonically).
//! - [`decide`]: pure decisions — the ladder, reclamation, allocations.
//! - [`window`]: per-enclave sliding usage windows (the `usage.R.agg(W)` facts).
//! - [`plan`]: the plan a host gets.
//! - [`replay`]: the policy planner — recorded windows through `decide_host` under another
//!   policy set, compared with what the log recorded.

pub mod clock;
pub mod decide;
pub mod evidence;
pub mod ledger;
pub mod plan;
pub mod reattest;
pub mod refusal;
pub mod replay;
pub mod server;
pub mod session;
pub mod verify_pool;
pub mod window;

pub use ledger::divergence_pct;
pub use server::{AttestServer, LoopConfig};
