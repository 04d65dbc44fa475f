//! The mediator: inter-enclave messages on this host (DESIGN.md §1, `docs/messages.md`).
//!
//! - [`fq`]: **pure** fair queueing of one receiver's inbox — strict priority classes above
//!   weighted deficit round robin, bounded per sender.

pub mod fq;

#[cfg(test)]
mod fq_tests;
