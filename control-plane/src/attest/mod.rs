//! The attestation loop on the controller side (DESIGN.md §4–§6): the `AttestationService`
//! stream, verification of evidence and usage, decisions and plans.
//!
//! - [`decide`]: pure decisions — the ladder, reclamation, allocations.
//! - [`window`]: per-enclave sliding usage windows (the `usage.R.agg(W)` facts).

pub mod decide;
pub mod plan;
pub mod stream;
pub mod window;

pub use stream::{AttestServer, LoopConfig};
