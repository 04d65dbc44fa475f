//! Refused inputs of an attestation stream: what kind of fault (the key of rate-limiting,
//! never the error text) and why.

use tribune_attest::AttestError;

/// What kind of input was refused: the key of refusal rate-limiting (never the error text).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Fault {
    /// The enclave is not placed on this stream's host.
    NotPlaced,
    /// No trusted evidence for the enclave on this stream.
    Untracked,
    /// Too many enclaves on one stream.
    TooMany,
    /// Evidence did not verify or does not meet the requirements.
    Evidence,
    /// A message or field is malformed.
    Malformed,
    /// A MAC or signature does not verify.
    Signature,
    /// A seq already accepted.
    Replay,
    /// A report window too old or in the future (still accounted).
    Stale,
    /// A report that does not follow the last accepted one.
    Gap,
    /// A checkpoint or replayed span that does not match the chain.
    Chain,
    /// A bound was hit.
    Limit,
}

impl Fault {
    /// Every fault, for metrics that start each at 0.
    pub const ALL: [Fault; 11] = [
        Fault::NotPlaced,
        Fault::Untracked,
        Fault::TooMany,
        Fault::Evidence,
        Fault::Malformed,
        Fault::Signature,
        Fault::Replay,
        Fault::Stale,
        Fault::Gap,
        Fault::Chain,
        Fault::Limit,
    ];

    /// The fault's name as metrics label it (`tribune_attest_refusals_total{reason=…}`).
    pub fn as_str(self) -> &'static str {
        match self {
            Fault::NotPlaced => "not_placed",
            Fault::Untracked => "untracked",
            Fault::TooMany => "too_many",
            Fault::Evidence => "evidence",
            Fault::Malformed => "malformed",
            Fault::Signature => "signature",
            Fault::Replay => "replay",
            Fault::Stale => "stale",
            Fault::Gap => "gap",
            Fault::Chain => "chain",
            Fault::Limit => "limit",
        }
    }

    /// The fault an [`AttestError`] from a report or checkpoint stands for.
    pub fn of(e: &AttestError) -> Fault {
        match e {
            AttestError::Malformed { .. } | AttestError::Unsupported { .. } => Fault::Malformed,
            AttestError::BadSignature(_) => Fault::Signature,
            AttestError::Replay { .. } => Fault::Replay,
            AttestError::Stale(_) | AttestError::Time(_) => Fault::Stale,
            AttestError::Limit(_) => Fault::Limit,
            AttestError::Checkpoint(_) | AttestError::Binding(_) | AttestError::Proof(_) => {
                Fault::Chain
            }
            AttestError::Chain(_) | AttestError::Missing(_) | AttestError::Refused(_) => {
                Fault::Evidence
            }
        }
    }
}

/// One refused input: whose, what, of which kind, and why (for the log).
#[derive(Debug, Clone, PartialEq)]
pub struct Refusal {
    pub subject: String,
    pub what: &'static str,
    pub fault: Fault,
    pub why: String,
}

impl Refusal {
    pub fn new(subject: &str, what: &'static str, fault: Fault, why: impl Into<String>) -> Self {
        Refusal {
            subject: subject.to_string(),
            what,
            fault,
            why: why.into(),
        }
    }
}
