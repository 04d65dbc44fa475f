//! An enclave's signed usage checkpoint (162 bytes; `tribune_attest::usage` writes it):
//!
//! ```text
//!   0  u16 version = 1
//!   2  [16] enclave id (first 16 bytes of SHA-256 of the enclave's name)
//!  18  u64 first_seq
//!  26  u64 last_seq
//!  34  [32] prev_head   hash-chain head before first_seq
//!  66  [32] head        hash-chain head after last_seq
//!  98  [64] ed25519 signature over "tribune/checkpoint/v1" ‖ bytes 0..98
//! ```

use ed25519_dalek::{Signature, VerifyingKey};
use sha2::{Digest, Sha256};

/// Encoded size.
pub const CHECKPOINT_LEN: usize = 162;
const SIGNED_LEN: usize = 98;
const DOMAIN: &[u8] = b"tribune/checkpoint/v1";

/// A decoded checkpoint.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Checkpoint {
    pub enclave_id: [u8; 16],
    pub first_seq: u64,
    pub last_seq: u64,
    pub prev_head: [u8; 32],
    pub head: [u8; 32],
    signature: [u8; 64],
    signed: [u8; SIGNED_LEN],
}

/// The wire id of an enclave named `name`.
pub fn enclave_id(name: &str) -> [u8; 16] {
    let d = Sha256::digest(name.as_bytes());
    let mut id = [0u8; 16];
    id.copy_from_slice(&d[..16]);
    id
}

fn be_u64(b: &[u8], at: usize) -> u64 {
    let mut x = [0u8; 8];
    x.copy_from_slice(&b[at..at + 8]);
    u64::from_be_bytes(x)
}

/// Why checkpoint bytes do not decode.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CheckpointError {
    #[error("{0} bytes, not {CHECKPOINT_LEN}")]
    Length(usize),
    #[error("not version 1")]
    Version,
    #[error("first_seq is past last_seq")]
    Range,
}

impl Checkpoint {
    /// Strict decoder: exactly 162 bytes, version 1, `first_seq ≤ last_seq`.
    pub fn decode(b: &[u8]) -> Result<Checkpoint, CheckpointError> {
        if b.len() != CHECKPOINT_LEN {
            return Err(CheckpointError::Length(b.len()));
        }
        if b[0..2] != [0, 1] {
            return Err(CheckpointError::Version);
        }
        let mut c = Checkpoint {
            enclave_id: [0; 16],
            first_seq: be_u64(b, 18),
            last_seq: be_u64(b, 26),
            prev_head: [0; 32],
            head: [0; 32],
            signature: [0; 64],
            signed: [0; SIGNED_LEN],
        };
        if c.first_seq > c.last_seq {
            return Err(CheckpointError::Range);
        }
        c.enclave_id.copy_from_slice(&b[2..18]);
        c.prev_head.copy_from_slice(&b[34..66]);
        c.head.copy_from_slice(&b[66..98]);
        c.signature.copy_from_slice(&b[98..]);
        c.signed.copy_from_slice(&b[..SIGNED_LEN]);
        Ok(c)
    }

    /// The enclave's signature (strict ed25519) under `key`.
    pub fn verify(&self, key: &VerifyingKey) -> bool {
        let mut m = [0u8; DOMAIN.len() + SIGNED_LEN];
        m[..DOMAIN.len()].copy_from_slice(DOMAIN);
        m[DOMAIN.len()..].copy_from_slice(&self.signed);
        key.verify_strict(&m, &Signature::from_bytes(&self.signature))
            .is_ok()
    }
}
