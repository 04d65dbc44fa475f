//! Error types. Every error that comes from input is a value here, never a panic.

use thiserror::Error;

/// Errors from parsing and verifying evidence, usage reports and proofs.
#[derive(Debug, Error, Clone, PartialEq, Eq)]
pub enum AttestError {
    /// The input is shorter, longer or shaped differently than the format allows.
    #[error("malformed {what}: {detail}")]
    Malformed { what: &'static str, detail: String },
    /// A version or kind this crate does not know.
    #[error("unsupported {what}: {detail}")]
    Unsupported { what: &'static str, detail: String },
    /// A signature or MAC did not verify.
    #[error("bad signature: {0}")]
    BadSignature(String),
    /// A certificate could not be parsed or does not chain.
    #[error("certificate chain: {0}")]
    Chain(String),
    /// A certificate, CRL or collateral is outside its validity window at the verification time.
    #[error("not valid at the verification time: {0}")]
    Time(String),
    /// Evidence or a report does not match what it is bound to.
    #[error("binding mismatch: {0}")]
    Binding(String),
    /// A usage report's sequence number is not new.
    #[error("replay: seq {seq} is not above the last accepted {last}")]
    Replay { seq: u64, last: u64 },
    /// A usage report window is too old or in the future.
    #[error("stale: {0}")]
    Stale(String),
    /// A checkpoint does not match the reports it covers.
    #[error("checkpoint mismatch: {0}")]
    Checkpoint(String),
    /// A bound (queue, batch, input size) was hit.
    #[error("limit exceeded: {0}")]
    Limit(String),
    /// Certificates or collateral needed for verification are missing.
    #[error("missing {0}")]
    Missing(String),
    /// A proof (Merkle inclusion or consistency) did not verify.
    #[error("proof does not verify: {0}")]
    Proof(String),
    /// The verifier configuration refuses this evidence (e.g. simulated evidence).
    #[error("refused by configuration: {0}")]
    Refused(String),
}

impl AttestError {
    pub(crate) fn malformed(what: &'static str, detail: impl Into<String>) -> Self {
        AttestError::Malformed {
            what,
            detail: detail.into(),
        }
    }
    pub(crate) fn unsupported(what: &'static str, detail: impl Into<String>) -> Self {
        AttestError::Unsupported {
            what,
            detail: detail.into(),
        }
    }
}

/// Result with [`AttestError`].
pub type Result<T, E = AttestError> = std::result::Result<T, E>;
