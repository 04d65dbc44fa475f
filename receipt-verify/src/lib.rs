//! `tribune-receipt`: checks what Tribune's controllers sign, offline, without the rest of
//! Tribune (a tenant builds this crate alone).
//!
//! - [`merkle`]: RFC 6962 leaf/node hashes and the RFC 9162 §2.1.3.2 / §2.1.4.2 inclusion and
//!   consistency verification — the one definition; the controller and `tribune log` use these
//!   functions too.
//! - [`sth`]: signed tree heads (`"tribune/sth/v1" ‖ size ‖ timestamp ‖ root`, ed25519).
//! - [`canonical`]: the log's canonical JSON (a leaf is the canonical JSON of its entry).
//! - [`checkpoint`]: an enclave's signed usage checkpoint (162 bytes).
//! - [`guarantee`]: whether a usage window honoured the guarantee (used, and the demand the
//!   enclave's reports declare: time runnable but not running) — the one definition.
//! - [`receipt`]: a fairness receipt (`docs/receipts.md`): [`receipt::verify`] checks every
//!   signature and proof in it and answers in words ([`receipt::Verdict`]).
//!
//! `merkle` and `sth` allocate nothing and use only `core` besides their two hash/signature
//! crates, so they can move to a `no_std` build unchanged.

pub mod canonical;
pub mod checkpoint;
pub mod guarantee;
pub mod merkle;
pub mod receipt;
pub mod sth;

pub use merkle::{Hash, ProofError};
pub use receipt::{Receipt, ReceiptError, Verdict, verify};
