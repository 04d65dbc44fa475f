//! The mediator: inter-enclave messages on this host (DESIGN.md §1, `docs/messages.md`).
//!
//! - [`fq`]: **pure** fair queueing of one receiver's inbox — strict priority classes above
//!   weighted deficit round robin, bounded per sender.
//! - [`admission`]: **pure**, who may message whom: both sides' `talk` lists, deny by default.
//! - [`bucket`]: **pure** token buckets that rate-limit the refusal log per pair.
//! - [`hub`]: the mediator's state under one lock (table, inboxes, counters); no I/O.
//! - [`peer`], [`peer_tls`]: messages between hosts — agent ↔ agent links over mutual TLS,
//!   routed by the placement the plan carries, fair-queued per sending enclave.
//! - [`server`]: the sockets — one per enclave, bound by the agent — and the connections'
//!   readers and writers ([`Mediator`]).

pub mod admission;
pub mod bucket;
pub mod fq;
pub mod hub;
pub mod peer;
pub mod peer_tls;
pub mod server;

pub use peer_tls::PeerTls;
pub use server::Mediator;

#[cfg(test)]
mod fq_tests;
