//! The cryptography of a usage stream: the per-session report MAC, the hash chain over the
//! encoded reports, and the ed25519 checkpoint signatures (single and batched).

use ed25519_dalek::{Signature, VerifyingKey};

use super::wire::to32;
use super::*;
use crate::error::{AttestError, Result};
use crate::session::SessionKey;

const GENESIS_DOMAIN: &[u8] = b"tribune/usage-chain/v1/genesis";

/// A MAC key ready for use (the HMAC inner/outer states are precomputed once per session).
#[derive(Clone)]
pub struct MacKey(ring::hmac::Key);

impl MacKey {
    /// Precompute from a session key.
    pub fn new(key: &SessionKey) -> Self {
        MacKey(ring::hmac::Key::new(ring::hmac::HMAC_SHA256, &key.0))
    }

    /// MAC'd wire form of an encoded report (the tag covers every byte of it, the version and
    /// `cpu_wait_ns` included).
    pub fn seal(&self, report: &ReportBytes) -> MacReport {
        let tag = ring::hmac::sign(&self.0, report);
        MacReport::new(report, tag.as_ref())
    }

    /// Check the MAC of a wire report (v3: 150 bytes, v2: 118, v1: 110; constant time) and
    /// decode it.
    pub fn open(&self, wire: &[u8]) -> Result<UsageReport> {
        let len = report_len(wire).map(|n| n + TAG_LEN);
        if len != Some(wire.len()) {
            return Err(AttestError::malformed(
                "MAC'd usage report",
                format!(
                    "{} bytes, expected {MAC_REPORT_LEN_V3} (v3), {MAC_REPORT_LEN} (v2) or {MAC_REPORT_LEN_V1} (v1)",
                    wire.len()
                ),
            ));
        }
        let (body, tag) = wire.split_at(wire.len() - TAG_LEN);
        ring::hmac::verify(&self.0, body, tag)
            .map_err(|_| AttestError::BadSignature("usage report MAC".into()))?;
        UsageReport::decode(body)
    }
}

impl std::fmt::Debug for MacKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("MacKey(..)")
    }
}

/// Hash-chain genesis for an enclave.
pub fn chain_genesis(enclave: &EnclaveId) -> [u8; 32] {
    let mut ctx = ring::digest::Context::new(&ring::digest::SHA256);
    ctx.update(GENESIS_DOMAIN);
    ctx.update(&enclave.0);
    to32(ctx.finish().as_ref())
}

/// One step of the hash chain: `SHA-256(head ‖ report_bytes)`.
pub fn chain_step(head: &[u8; 32], report: &[u8]) -> [u8; 32] {
    let mut ctx = ring::digest::Context::new(&ring::digest::SHA256);
    ctx.update(head);
    ctx.update(report);
    to32(ctx.finish().as_ref())
}

impl Checkpoint {
    /// Verify the signature alone (single).
    pub fn verify_signature(&self, key: &VerifyingKey) -> Result<()> {
        key.verify_strict(
            &self.signed_message(),
            &Signature::from_bytes(&self.signature),
        )
        .map_err(|_| AttestError::BadSignature("checkpoint signature".into()))
    }
}

/// Verify many checkpoint signatures at once (ed25519 batch verification, ~2× faster per
/// signature). On failure, falls back to single checks to say which one failed: returns one
/// result per checkpoint.
pub fn verify_checkpoint_signatures(items: &[(Checkpoint, VerifyingKey)]) -> Vec<Result<()>> {
    if items.is_empty() {
        return Vec::new();
    }
    let msgs: Vec<Vec<u8>> = items.iter().map(|(c, _)| c.signed_message()).collect();
    let msg_refs: Vec<&[u8]> = msgs.iter().map(|m| m.as_slice()).collect();
    let sigs: Vec<Signature> = items
        .iter()
        .map(|(c, _)| Signature::from_bytes(&c.signature))
        .collect();
    let keys: Vec<VerifyingKey> = items.iter().map(|(_, k)| *k).collect();
    if ed25519_dalek::verify_batch(&msg_refs, &sigs, &keys).is_ok() {
        return items.iter().map(|_| Ok(())).collect();
    }
    items.iter().map(|(c, k)| c.verify_signature(k)).collect()
}

#[cfg(test)]
mod tests {
    use super::super::testing::*;
    use super::*;
    use crate::session::SessionKey;

    #[test]
    fn mac_seals_and_opens() {
        let k = MacKey::new(&SessionKey([9; 32]));
        let report = UsageReport::decode(setup(1).0.emit(&sample(0)).report.body())
            .unwrap()
            .encode();
        let sealed = k.seal(&report);
        assert_eq!(k.open(&sealed).unwrap().encode(), report);
        // A v1 report seals and opens at its own length; the MAC covers the version, so
        // neither form can be passed off as the other.
        let mut r1 = UsageReport::decode(&report).unwrap();
        r1.cpu_wait_ns = None;
        let sealed1 = k.seal(&r1.encode());
        assert_eq!(sealed1.len(), MAC_REPORT_LEN_V1);
        assert_eq!(k.open(&sealed1).unwrap(), r1);
        let mut relabelled = sealed.to_vec();
        relabelled[1] = 1;
        assert!(k.open(&relabelled).is_err());
        let other = MacKey::new(&SessionKey([8; 32]));
        assert!(matches!(
            other.open(&sealed),
            Err(AttestError::BadSignature(_))
        ));
        assert!(matches!(
            k.open(&sealed[..MAC_REPORT_LEN - 1]),
            Err(AttestError::Malformed { .. })
        ));
        assert_eq!(format!("{k:?}"), "MacKey(..)", "no key material in logs");
    }

    #[test]
    fn the_chain_is_per_enclave_and_order_sensitive() {
        let g = chain_genesis(&ENCLAVE);
        assert_eq!(g, chain_genesis(&ENCLAVE));
        assert_ne!(g, chain_genesis(&EnclaveId([8; 16])));
        let ab = chain_step(&chain_step(&g, b"a"), b"b");
        let ba = chain_step(&chain_step(&g, b"b"), b"a");
        assert_ne!(ab, ba);
    }

    #[test]
    fn batched_signatures_say_which_failed() {
        let (mut p, _) = setup(2);
        let cps: Vec<Checkpoint> = (0..6)
            .filter_map(|i| p.emit(&sample(i)).checkpoint)
            .collect();
        assert_eq!(cps.len(), 3);
        let key = VerifyingKey::from_bytes(&p.keys().ed25519_public()).unwrap();
        let items: Vec<_> = cps.iter().map(|c| (*c, key)).collect();
        assert!(
            verify_checkpoint_signatures(&items)
                .iter()
                .all(|r| r.is_ok())
        );
        let mut bad = items.clone();
        bad[1].0.signature[0] ^= 1;
        let res = verify_checkpoint_signatures(&bad);
        assert!(res[0].is_ok() && res[1].is_err() && res[2].is_ok());
        assert!(verify_checkpoint_signatures(&[]).is_empty());
        assert!(cps[0].verify_signature(&key).is_ok());
    }
}
