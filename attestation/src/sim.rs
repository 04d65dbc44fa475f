//! Simulated TEE (`sim`): evidence of the same shape as real evidence — a measurement, a
//! 64-byte `report_data`, a signature by a development root key — for `tribune dev` and tests.
//! Always labelled `sim`; [`crate::evidence::VerifierConfig`] refuses it unless `allow_sim`.
//!
//! ```text
//! SimEvidence v1 (220 bytes)
//!   0  [8]  magic "TRIBSIM\0"
//!   8  u16  version = 1 (BE)
//!  10  u16  flags: bit 0 = debug
//!  12  [48] measurement
//!  60  [64] report_data
//! 124  [32] signer: ed25519 public key of the development root
//! 156  [64] ed25519 signature over "tribune/sim-evidence/v1" ‖ bytes 0..156
//! ```
//!
//! The development root key is derived from a published seed: it is *not secret* and proves
//! nothing about isolation — only that the evidence came through the development path intact.

use ed25519_dalek::{Signature, Signer, SigningKey, VerifyingKey};

use crate::error::{AttestError, Result};

/// File magic.
pub const MAGIC: &[u8; 8] = b"TRIBSIM\0";
/// Encoded length.
pub const SIM_EVIDENCE_LEN: usize = 220;
const SIGNED_LEN: usize = 156;
const DOMAIN: &[u8] = b"tribune/sim-evidence/v1";
const DEV_ROOT_SEED_LABEL: &[u8] = b"tribune development root key v1 - NOT SECRET";

/// Flag: the simulated enclave runs in debug mode.
pub const FLAG_DEBUG: u16 = 1;

/// Parsed simulated evidence.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SimEvidence {
    pub flags: u16,
    pub measurement: [u8; 48],
    pub report_data: [u8; 64],
    pub signer: [u8; 32],
    pub signature: [u8; 64],
}

/// The development root signing key (published seed; see the module docs).
pub fn dev_root_key() -> SigningKey {
    let d = ring::digest::digest(&ring::digest::SHA256, DEV_ROOT_SEED_LABEL);
    let mut seed = [0u8; 32];
    seed.copy_from_slice(d.as_ref());
    SigningKey::from_bytes(&seed)
}

/// The development root public key.
pub fn dev_root_public() -> [u8; 32] {
    dev_root_key().verifying_key().to_bytes()
}

impl SimEvidence {
    /// Create and sign evidence with the development root (what a simulated enclave does).
    pub fn create(measurement: [u8; 48], report_data: [u8; 64], flags: u16) -> Self {
        Self::create_with(&dev_root_key(), measurement, report_data, flags)
    }

    /// Create and sign with another key (tests of rejection).
    pub fn create_with(
        key: &SigningKey,
        measurement: [u8; 48],
        report_data: [u8; 64],
        flags: u16,
    ) -> Self {
        let mut e = SimEvidence {
            flags,
            measurement,
            report_data,
            signer: key.verifying_key().to_bytes(),
            signature: [0; 64],
        };
        let msg = e.signed_message();
        e.signature = key.sign(&msg).to_bytes();
        e
    }

    fn signed_bytes(&self) -> [u8; SIGNED_LEN] {
        let mut b = [0u8; SIGNED_LEN];
        b[0..8].copy_from_slice(MAGIC);
        b[8..10].copy_from_slice(&1u16.to_be_bytes());
        b[10..12].copy_from_slice(&self.flags.to_be_bytes());
        b[12..60].copy_from_slice(&self.measurement);
        b[60..124].copy_from_slice(&self.report_data);
        b[124..156].copy_from_slice(&self.signer);
        b
    }

    fn signed_message(&self) -> Vec<u8> {
        let mut m = Vec::with_capacity(DOMAIN.len() + SIGNED_LEN);
        m.extend_from_slice(DOMAIN);
        m.extend_from_slice(&self.signed_bytes());
        m
    }

    /// Canonical encoding.
    pub fn encode(&self) -> Vec<u8> {
        let mut v = Vec::with_capacity(SIM_EVIDENCE_LEN);
        v.extend_from_slice(&self.signed_bytes());
        v.extend_from_slice(&self.signature);
        v
    }

    /// Does this look like sim evidence (magic)?
    pub fn detect(b: &[u8]) -> bool {
        b.starts_with(MAGIC)
    }

    /// Strict decoder.
    pub fn decode(b: &[u8]) -> Result<Self> {
        if b.len() != SIM_EVIDENCE_LEN {
            return Err(AttestError::malformed(
                "sim evidence",
                format!("{} bytes, expected {SIM_EVIDENCE_LEN}", b.len()),
            ));
        }
        if &b[0..8] != MAGIC {
            return Err(AttestError::malformed("sim evidence", "bad magic"));
        }
        let version = u16::from_be_bytes([b[8], b[9]]);
        if version != 1 {
            return Err(AttestError::unsupported(
                "sim evidence version",
                version.to_string(),
            ));
        }
        let mut e = SimEvidence {
            flags: u16::from_be_bytes([b[10], b[11]]),
            measurement: [0; 48],
            report_data: [0; 64],
            signer: [0; 32],
            signature: [0; 64],
        };
        e.measurement.copy_from_slice(&b[12..60]);
        e.report_data.copy_from_slice(&b[60..124]);
        e.signer.copy_from_slice(&b[124..156]);
        e.signature.copy_from_slice(&b[156..220]);
        Ok(e)
    }

    /// Is the debug flag set?
    pub fn debug(&self) -> bool {
        self.flags & FLAG_DEBUG != 0
    }

    /// Verify the signature and that the signer is one of `trusted_roots`.
    pub fn verify(&self, trusted_roots: &[[u8; 32]]) -> Result<()> {
        if !trusted_roots.contains(&self.signer) {
            return Err(AttestError::Chain(
                "sim evidence signer is not a trusted development root".into(),
            ));
        }
        let vk = VerifyingKey::from_bytes(&self.signer)
            .map_err(|_| AttestError::BadSignature("sim signer key is not a valid point".into()))?;
        vk.verify_strict(
            &self.signed_message(),
            &Signature::from_bytes(&self.signature),
        )
        .map_err(|_| AttestError::BadSignature("sim evidence signature".into()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn create_verify_and_tamper() {
        let e = SimEvidence::create([1; 48], [2; 64], 0);
        let bytes = e.encode();
        let d = SimEvidence::decode(&bytes).unwrap();
        d.verify(&[dev_root_public()]).unwrap();
        for i in 0..SIM_EVIDENCE_LEN {
            let mut b = bytes.clone();
            b[i] ^= 0x80;
            let ok = SimEvidence::decode(&b)
                .and_then(|d| d.verify(&[dev_root_public()]))
                .is_ok();
            assert!(!ok, "flip at {i}");
        }
        let other =
            SimEvidence::create_with(&SigningKey::from_bytes(&[5; 32]), [1; 48], [2; 64], 0);
        assert!(other.verify(&[dev_root_public()]).is_err());
    }
}
