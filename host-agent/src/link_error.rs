//! Why an attestation stream to a controller ended, and why a controller's plan was refused.
//! The texts are what the agent logs and (for a plan) what its `PlanAck.error` carries.

use std::time::Duration;

/// Why one stream to one controller ended (the link then fails over).
#[derive(Debug, thiserror::Error)]
pub enum LinkError {
    /// The address, TLS settings or connection failed.
    #[error("{addr}: {detail}")]
    Connect { addr: String, detail: String },
    /// The controller answered with a gRPC error.
    #[error("{addr}: {}", .status.message())]
    Rpc { addr: String, status: tonic::Status },
    #[error("{addr}: no challenge within {timeout:?}")]
    NoChallenge { addr: String, timeout: Duration },
    #[error("{addr}: expected a challenge")]
    NotAChallenge { addr: String },
    #[error("{addr}: stream ended")]
    Ended { addr: String },
    /// The controller refused the stream before its challenge (its `Goodbye` reason).
    #[error("{0}")]
    Refused(String),
    #[error("controller said goodbye: {0}")]
    Goodbye(String),
    #[error("{what} is not 32 bytes")]
    KeyLength { what: &'static str },
    /// The outbound half closed (the stream is going down).
    #[error("stream closed")]
    Closed,
}

/// Why a controller's plan was refused (sent back as `PlanAck.error`).
#[derive(Debug, thiserror::Error)]
pub enum PlanError {
    #[error("enclave {enclave:?}: launch spec: {source}")]
    LaunchSpec {
        enclave: String,
        source: serde_json::Error,
    },
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_texts_name_the_controller_and_the_fault() {
        let e = LinkError::Rpc {
            addr: "c1:7400".into(),
            status: tonic::Status::unavailable("no leader"),
        };
        assert_eq!(e.to_string(), "c1:7400: no leader");
        let e = LinkError::NoChallenge {
            addr: "c1".into(),
            timeout: Duration::from_secs(5),
        };
        assert_eq!(e.to_string(), "c1: no challenge within 5s");
        assert_eq!(
            LinkError::KeyLength {
                what: "challenge nonce"
            }
            .to_string(),
            "challenge nonce is not 32 bytes"
        );
    }
}
