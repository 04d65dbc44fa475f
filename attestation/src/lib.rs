//! Evidence formats (SEV-SNP, TDX, simulated), verification, authenticated usage reports,
//! Merkle log primitives. Knows nothing about Raft or gRPC.
//!
//! Map of the crate:
//! - [`evidence`]: format detection and the one entry point [`evidence::verify_evidence`] that
//!   turns bytes into a [`evidence::Verdict`].
//! - [`snp`], [`tdx`], [`sim`]: one module per TEE kind.
//! - [`session`]: binding of enclave keys to evidence (`report_data`) and the session key.
//! - [`usage`]: the canonical usage-report encoding, the enclave-side [`usage::Producer`] and
//!   the controller-side [`usage::StreamVerifier`] (MAC, replay, freshness, checkpoints).
//! - [`continuity`]: the one rule by which a usage span continues a confirmed chain.
//! - [`merkle`]: RFC 6962/9162 tree hashing, inclusion/consistency proofs, signed tree heads;
//!   [`merkle_store`]: the tree over a store of its subtree roots (O(log² n) proofs), in memory
//!   or in append-only files ([`merkle_files`]).
//! - [`tee`]: [`TeeKind`], the TEE kinds by name, shared with the controller and the policy
//!   language.
//!
//! Every verification takes the time to verify "at" ([`VerifyAt`]); nothing reads the clock
//! except [`VerifyAt::now`].

pub mod continuity;
pub mod error;
pub mod evidence;
pub mod merkle;
pub mod merkle_files;
pub mod merkle_store;
pub mod session;
pub mod sim;
pub mod snp;
pub mod tdx;
pub mod tee;
pub mod time;
pub mod usage;
pub mod x509;

pub use error::{AttestError, Result};
pub use tee::{TeeKind, UnknownTeeKind};
pub use time::VerifyAt;
