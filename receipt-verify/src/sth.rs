//! Signed tree heads: ed25519 over `"tribune/sth/v1" ‖ tree_size (u64 BE) ‖ timestamp_ms (u64
//! BE) ‖ root (32)`; encoded as the 112 bytes `tree_size ‖ timestamp_ms ‖ root ‖ signature`.

use ed25519_dalek::{Signature, VerifyingKey};

use crate::merkle::Hash;

/// Domain separation of the signed message.
pub const STH_DOMAIN: &[u8] = b"tribune/sth/v1";
/// Length of the signed message.
pub const STH_MESSAGE_LEN: usize = STH_DOMAIN.len() + 8 + 8 + 32;
/// Encoded size of a signed tree head.
pub const STH_LEN: usize = 8 + 8 + 32 + 64;

/// The message a controller signs for a tree head.
pub fn message(tree_size: u64, timestamp_ms: u64, root: &Hash) -> [u8; STH_MESSAGE_LEN] {
    let mut m = [0u8; STH_MESSAGE_LEN];
    let d = STH_DOMAIN.len();
    m[..d].copy_from_slice(STH_DOMAIN);
    m[d..d + 8].copy_from_slice(&tree_size.to_be_bytes());
    m[d + 8..d + 16].copy_from_slice(&timestamp_ms.to_be_bytes());
    m[d + 16..].copy_from_slice(root);
    m
}

/// Checks a tree head's signature (strict ed25519: no malleable or small-order forms).
pub fn verify(
    key: &VerifyingKey,
    tree_size: u64,
    timestamp_ms: u64,
    root: &Hash,
    signature: &[u8; 64],
) -> bool {
    key.verify_strict(
        &message(tree_size, timestamp_ms, root),
        &Signature::from_bytes(signature),
    )
    .is_ok()
}

/// `key_id` of an ed25519 public key: hex of the first 8 bytes of SHA-256 of its 32 raw bytes.
pub fn key_id(public_key: &[u8; 32]) -> String {
    use sha2::Digest;
    hex::encode(&sha2::Sha256::digest(public_key)[..8])
}
