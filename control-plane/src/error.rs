//! Errors a controller operation can end in, with what the caller should do about each.

use serde::{Deserialize, Serialize};

/// Every way a controller request can fail. Travels between controllers when a follower
/// forwards a request to the leader, so it is serialisable.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error, Serialize, Deserialize)]
pub enum ControllerError {
    #[error(
        "no leader is reachable from this controller; retry in {retry_after_ms} ms or ask another controller"
    )]
    NoLeader { retry_after_ms: u64 },
    #[error("{reason}; retry in {retry_after_ms} ms")]
    Unavailable { reason: String, retry_after_ms: u64 },
    /// A forwarded request reached a controller that no longer leads: nothing was proposed,
    /// so the sender may safely try the new leader.
    #[error("controller {id} is no longer the leader; retry in 100 ms")]
    NotLeader { id: u64 },
    #[error(
        "the write may or may not have been applied ({reason}); read the object back before retrying"
    )]
    OutcomeUnknown { reason: String },
    #[error("{0}")]
    Invalid(String),
    #[error("{0}")]
    Internal(String),
    /// This controller's stored state cannot be vouched for (a record failed its check, or the
    /// local log disagrees with the other controllers'): it refuses to serve until re-synced.
    #[error("{0}")]
    Integrity(String),
}

impl ControllerError {
    pub fn retry_after_ms(&self) -> Option<u64> {
        match self {
            Self::NoLeader { retry_after_ms } | Self::Unavailable { retry_after_ms, .. } => {
                Some(*retry_after_ms)
            }
            Self::OutcomeUnknown { .. } => Some(500),
            Self::NotLeader { .. } => Some(100),
            _ => None,
        }
    }
}
