//! Binding of an enclave's keys to its evidence, and the per-enclave session key (DESIGN.md §4).
//!
//! The enclave holds an ed25519 signing key (checkpoints, re-keying) and an X25519 key (session
//! key agreement). Its evidence carries
//! `report_data = SHA-512(ed25519_pub ‖ x25519_pub ‖ nonce)`, so a verifier that trusts the
//! evidence trusts those two keys for this exchange. The session key is
//! `HKDF-SHA256(salt = nonce, ikm = X25519(controller_eph, enclave_x25519),
//! info = "tribune/session/v1" ‖ controller_eph_pub ‖ enclave_x25519_pub ‖ enclave_id)`.
//! The host relays all of this but can neither read nor forge it.

use ed25519_dalek::{Signer, SigningKey, VerifyingKey};
use rand_core::{OsRng, RngCore};
use x25519_dalek::{PublicKey as XPublicKey, StaticSecret};

use crate::error::{AttestError, Result};
use crate::usage::EnclaveId;

/// Nonce length (bytes) of an attestation exchange.
pub const NONCE_LEN: usize = 32;
/// Length of the MAC key derived for a session.
pub const SESSION_KEY_LEN: usize = 32;

const SESSION_INFO: &[u8] = b"tribune/session/v1";
const REKEY_DOMAIN: &[u8] = b"tribune/rekey/v1";

/// `report_data = SHA-512(ed25519_pub ‖ x25519_pub ‖ nonce)`.
pub fn binding_report_data(
    ed25519_pub: &[u8; 32],
    x25519_pub: &[u8; 32],
    nonce: &[u8; NONCE_LEN],
) -> [u8; 64] {
    let mut ctx = ring::digest::Context::new(&ring::digest::SHA512);
    ctx.update(ed25519_pub);
    ctx.update(x25519_pub);
    ctx.update(nonce);
    let d = ctx.finish();
    let mut out = [0u8; 64];
    out.copy_from_slice(d.as_ref());
    out
}

/// A per-enclave symmetric key for usage-report MACs. Not `Debug`-printable on purpose.
#[derive(Clone)]
pub struct SessionKey(pub(crate) [u8; SESSION_KEY_LEN]);

impl SessionKey {
    /// Wrap raw key bytes (tests and benches; production derives keys).
    pub fn from_bytes(bytes: [u8; SESSION_KEY_LEN]) -> Self {
        SessionKey(bytes)
    }
}

impl std::fmt::Debug for SessionKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SessionKey(..)")
    }
}

fn derive_session_key(
    shared: &[u8; 32],
    nonce: &[u8; NONCE_LEN],
    controller_eph_pub: &[u8; 32],
    enclave_x25519_pub: &[u8; 32],
    enclave: &EnclaveId,
) -> Result<SessionKey> {
    // An all-zero shared secret means a low-order point was supplied: refuse it.
    if shared.iter().all(|b| *b == 0) {
        return Err(AttestError::Binding(
            "X25519 shared secret is zero (low-order public key)".into(),
        ));
    }
    let hk = hkdf::Hkdf::<sha2::Sha256>::new(Some(nonce), shared);
    let mut info = Vec::with_capacity(SESSION_INFO.len() + 32 + 32 + 16);
    info.extend_from_slice(SESSION_INFO);
    info.extend_from_slice(controller_eph_pub);
    info.extend_from_slice(enclave_x25519_pub);
    info.extend_from_slice(&enclave.0);
    let mut okm = [0u8; SESSION_KEY_LEN];
    hk.expand(&info, &mut okm)
        .map_err(|_| AttestError::Binding("HKDF expand failed".into()))?;
    Ok(SessionKey(okm))
}

/// The enclave's long-lived keys (ed25519 for signatures, X25519 for key agreement).
#[derive(Clone)]
pub struct EnclaveKeys {
    signing: SigningKey,
    x25519: StaticSecret,
}

impl EnclaveKeys {
    /// Fresh random keys from the OS RNG.
    pub fn generate() -> Self {
        let mut seed = [0u8; 32];
        OsRng.fill_bytes(&mut seed);
        let mut xseed = [0u8; 32];
        OsRng.fill_bytes(&mut xseed);
        Self::from_seeds(seed, xseed)
    }

    /// Deterministic keys from seeds (tests, simulated enclaves with fixed identities).
    pub fn from_seeds(ed25519_seed: [u8; 32], x25519_seed: [u8; 32]) -> Self {
        EnclaveKeys {
            signing: SigningKey::from_bytes(&ed25519_seed),
            x25519: StaticSecret::from(x25519_seed),
        }
    }

    /// The ed25519 public key (checkpoint and re-key signatures verify under it).
    pub fn ed25519_public(&self) -> [u8; 32] {
        self.signing.verifying_key().to_bytes()
    }

    /// The X25519 public key.
    pub fn x25519_public(&self) -> [u8; 32] {
        XPublicKey::from(&self.x25519).to_bytes()
    }

    /// The `report_data` to put into evidence for this exchange.
    pub fn report_data(&self, nonce: &[u8; NONCE_LEN]) -> [u8; 64] {
        binding_report_data(&self.ed25519_public(), &self.x25519_public(), nonce)
    }

    /// Enclave side of the key agreement.
    pub fn session_key(
        &self,
        enclave: &EnclaveId,
        nonce: &[u8; NONCE_LEN],
        controller_eph_pub: &[u8; 32],
    ) -> Result<SessionKey> {
        let shared = self
            .x25519
            .diffie_hellman(&XPublicKey::from(*controller_eph_pub));
        derive_session_key(
            shared.as_bytes(),
            nonce,
            controller_eph_pub,
            &self.x25519_public(),
            enclave,
        )
    }

    /// Answer a re-key request from a controller that took over (DESIGN.md §4.5): sign
    /// `(enclave, nonce, controller_eph_pub, x25519_pub)` with the bound ed25519 key, so no
    /// fresh evidence round trip is needed.
    pub fn sign_rekey(
        &self,
        enclave: &EnclaveId,
        nonce: &[u8; NONCE_LEN],
        controller_eph_pub: &[u8; 32],
    ) -> [u8; 64] {
        let msg = rekey_message(enclave, nonce, controller_eph_pub, &self.x25519_public());
        self.signing.sign(&msg).to_bytes()
    }

    pub(crate) fn signing_key(&self) -> &SigningKey {
        &self.signing
    }
}

fn rekey_message(
    enclave: &EnclaveId,
    nonce: &[u8; NONCE_LEN],
    controller_eph_pub: &[u8; 32],
    x25519_pub: &[u8; 32],
) -> Vec<u8> {
    let mut msg = Vec::with_capacity(REKEY_DOMAIN.len() + 16 + 32 + 32 + 32);
    msg.extend_from_slice(REKEY_DOMAIN);
    msg.extend_from_slice(&enclave.0);
    msg.extend_from_slice(nonce);
    msg.extend_from_slice(controller_eph_pub);
    msg.extend_from_slice(x25519_pub);
    msg
}

/// The controller's side of one attestation exchange: a fresh nonce and an ephemeral X25519
/// key, used for every enclave on one stream.
pub struct ControllerExchange {
    nonce: [u8; NONCE_LEN],
    eph: StaticSecret,
}

/// What the controller learns about an enclave once its binding checks out.
#[derive(Debug, Clone)]
pub struct BoundEnclave {
    /// The enclave.
    pub enclave: EnclaveId,
    /// Its ed25519 key (checkpoints verify under it).
    pub ed25519_pub: [u8; 32],
    /// Its X25519 key.
    pub x25519_pub: [u8; 32],
    /// The MAC key for its usage reports.
    pub session_key: SessionKey,
}

impl ControllerExchange {
    /// A fresh nonce and ephemeral key from the OS RNG.
    pub fn new() -> Self {
        let mut nonce = [0u8; NONCE_LEN];
        OsRng.fill_bytes(&mut nonce);
        let mut seed = [0u8; 32];
        OsRng.fill_bytes(&mut seed);
        Self::from_parts(nonce, seed)
    }

    /// Deterministic exchange (tests).
    pub fn from_parts(nonce: [u8; NONCE_LEN], eph_seed: [u8; 32]) -> Self {
        ControllerExchange {
            nonce,
            eph: StaticSecret::from(eph_seed),
        }
    }

    /// The nonce to send down.
    pub fn nonce(&self) -> &[u8; NONCE_LEN] {
        &self.nonce
    }

    /// The ephemeral public key to send down.
    pub fn eph_public(&self) -> [u8; 32] {
        XPublicKey::from(&self.eph).to_bytes()
    }

    /// Check that `evidence_report_data` (taken from evidence that has *already* been
    /// verified) binds these keys to this exchange, and derive the session key.
    pub fn bind(
        &self,
        enclave: EnclaveId,
        ed25519_pub: [u8; 32],
        x25519_pub: [u8; 32],
        evidence_report_data: &[u8; 64],
    ) -> Result<BoundEnclave> {
        let expected = binding_report_data(&ed25519_pub, &x25519_pub, &self.nonce);
        if !ring_ct_eq(&expected, evidence_report_data) {
            return Err(AttestError::Binding(
                "report_data != SHA-512(ed25519_pub ‖ x25519_pub ‖ nonce)".into(),
            ));
        }
        VerifyingKey::from_bytes(&ed25519_pub)
            .map_err(|_| AttestError::Binding("ed25519 public key is not a valid point".into()))?;
        let session_key = self.session_key_for(&enclave, &x25519_pub)?;
        Ok(BoundEnclave {
            enclave,
            ed25519_pub,
            x25519_pub,
            session_key,
        })
    }

    /// Re-key an enclave whose keys were bound by earlier trusted evidence: check its
    /// signature over this exchange and derive a new session key.
    pub fn rekey(
        &self,
        enclave: EnclaveId,
        ed25519_pub: [u8; 32],
        x25519_pub: [u8; 32],
        signature: &[u8; 64],
    ) -> Result<BoundEnclave> {
        let vk = VerifyingKey::from_bytes(&ed25519_pub)
            .map_err(|_| AttestError::Binding("ed25519 public key is not a valid point".into()))?;
        let msg = rekey_message(&enclave, &self.nonce, &self.eph_public(), &x25519_pub);
        vk.verify_strict(&msg, &ed25519_dalek::Signature::from_bytes(signature))
            .map_err(|_| AttestError::BadSignature("re-key signature".into()))?;
        let session_key = self.session_key_for(&enclave, &x25519_pub)?;
        Ok(BoundEnclave {
            enclave,
            ed25519_pub,
            x25519_pub,
            session_key,
        })
    }

    fn session_key_for(&self, enclave: &EnclaveId, x25519_pub: &[u8; 32]) -> Result<SessionKey> {
        let shared = self.eph.diffie_hellman(&XPublicKey::from(*x25519_pub));
        derive_session_key(
            shared.as_bytes(),
            &self.nonce,
            &self.eph_public(),
            x25519_pub,
            enclave,
        )
    }
}

impl Default for ControllerExchange {
    fn default() -> Self {
        Self::new()
    }
}

pub(crate) fn ring_ct_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn both_sides_derive_the_same_key_and_binding_is_checked() {
        let keys = EnclaveKeys::from_seeds([1; 32], [2; 32]);
        let ctl = ControllerExchange::from_parts([3; 32], [4; 32]);
        let id = EnclaveId([9; 16]);
        let rd = keys.report_data(ctl.nonce());
        let bound = ctl
            .bind(id, keys.ed25519_public(), keys.x25519_public(), &rd)
            .unwrap();
        let enc = keys
            .session_key(&id, ctl.nonce(), &ctl.eph_public())
            .unwrap();
        assert_eq!(bound.session_key.0, enc.0);
        let mut bad = rd;
        bad[0] ^= 1;
        assert!(matches!(
            ctl.bind(id, keys.ed25519_public(), keys.x25519_public(), &bad),
            Err(AttestError::Binding(_))
        ));
        // Re-key: a new controller, same bound keys, no evidence.
        let ctl2 = ControllerExchange::from_parts([5; 32], [6; 32]);
        let sig = keys.sign_rekey(&id, ctl2.nonce(), &ctl2.eph_public());
        let b2 = ctl2
            .rekey(id, keys.ed25519_public(), keys.x25519_public(), &sig)
            .unwrap();
        let enc2 = keys
            .session_key(&id, ctl2.nonce(), &ctl2.eph_public())
            .unwrap();
        assert_eq!(b2.session_key.0, enc2.0);
        assert!(
            ctl.rekey(id, keys.ed25519_public(), keys.x25519_public(), &sig)
                .is_err()
        );
    }

    #[test]
    fn low_order_point_is_refused() {
        let ctl = ControllerExchange::from_parts([3; 32], [4; 32]);
        let keys = EnclaveKeys::from_seeds([1; 32], [2; 32]);
        let zero = [0u8; 32];
        let rd = binding_report_data(&keys.ed25519_public(), &zero, ctl.nonce());
        assert!(
            ctl.bind(EnclaveId([0; 16]), keys.ed25519_public(), zero, &rd)
                .is_err()
        );
    }
}
