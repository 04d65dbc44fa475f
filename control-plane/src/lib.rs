//! The Tribune controller: Raft-replicated state (openraft + redb) and the control API.
//!
//! - [`state`]: the domain state and its deterministic `apply` (pure, no I/O).
//! - [`raft`]: openraft adaptors — redb log store with group commit, snapshot-backed state
//!   machine, tonic transport.
//! - [`node`]: one controller — write batching and forwarding, linearizable reads, membership.
//! - [`log_key`]: this controller's tree-head signing key.
//! - [`integrity`]: checksummed records, the damaged-file guard, the comparison with the peers'
//!   signed tree heads and the gate the API asks before it serves.
//! - [`api`]: the operations, served as HTTP/JSON and gRPC by [`server`].
//! - [`metrics`]: the Prometheus metrics served at `/metrics`.
//! - [`tls`]: mTLS on the listener; [`tls::peer_identity`] tells a service who is calling.
//!
//! This crate never touches cgroups or tc: it decides, agents enforce.

// openraft's error types are large by design; boxing them at every storage call buys nothing.
#![allow(clippy::result_large_err)]

pub mod api;
pub mod attest;
pub mod auth;
pub mod console;
pub mod error;
pub mod integrity;
pub mod live;
pub mod log_key;
pub mod metrics;
pub mod node;
pub mod raft;
pub mod server;
pub mod state;
pub mod test_fault;
pub mod tls;
pub mod validate;

pub use error::ControllerError;
pub use node::{Controller, ControllerConfig};
