//! The simulated TEE of a process enclave: its keys, its evidence (the attestation crate's
//! `sim` format, signed by the development root), and the producer of its MAC'd usage reports
//! and signed checkpoints (tribune-attest `usage`, DESIGN.md §4).
//!
//! On a real SEV-SNP or TDX guest this would run inside the guest and the agent would only
//! relay its output; here it runs in the agent process, which is the simulated TEE boundary —
//! for every enclave the link tracks, QEMU ones included, since relaying a guest's own
//! evidence is not built yet. The keys never leave a [`SimTee`]. Controllers accept its
//! evidence only when configured to (`allow_sim_evidence`): it proves nothing about the
//! hardware.
//!
//! This module knows the attestation crate and nothing else of the agent: it takes each
//! window as a [`UsageSample`] and gives back the wire pieces of one [`SealedReport`].

use std::time::{Duration, Instant};

use tribune_attest::session::EnclaveKeys;
use tribune_attest::sim::SimEvidence;
use tribune_attest::usage::{self, Checkpoint, EnclaveId, Producer, UsageSample};

/// One enclave's simulated TEE.
pub struct SimTee {
    name: String,
    id: EnclaveId,
    keys: EnclaveKeys,
    measurement: [u8; 48],
    started: Instant,
    tamper_after: Option<Duration>,
    producer: Option<Producer>,
    /// The seq of the last report sealed (0: none yet); seqs only rise, across re-keying.
    last_seq: u64,
}

/// One window as the simulated TEE reports it (wire pieces for the stream).
#[derive(Debug)]
pub struct SealedReport {
    pub seq: u64,
    /// Canonical 78-byte report.
    pub report: Vec<u8>,
    /// 32-byte MAC under the session key.
    pub mac: Vec<u8>,
    /// Set when this report closes a span.
    pub checkpoint: Option<Checkpoint>,
}

impl SimTee {
    /// New keys; the measurement is the given hex (48 bytes) or SHA-384 of `cmdline`.
    /// `tamper_after_s`: from then on its evidence is signed by a key no verifier trusts (what
    /// a modified enclave would produce; for demonstrations and tests).
    pub fn new(
        name: &str,
        measurement_hex: Option<&str>,
        cmdline: &str,
        tamper_after_s: Option<u64>,
    ) -> SimTee {
        use sha2::Digest;
        let mut measurement = [0u8; 48];
        let parsed = measurement_hex
            .and_then(|h| hex::decode(h).ok())
            .filter(|b| b.len() == 48);
        match parsed {
            Some(b) => measurement.copy_from_slice(&b),
            None => measurement.copy_from_slice(&sha2::Sha384::digest(cmdline.as_bytes())),
        }
        SimTee {
            name: name.to_string(),
            id: EnclaveId::from_name(name),
            keys: EnclaveKeys::generate(),
            measurement,
            started: Instant::now(),
            tamper_after: tamper_after_s.map(Duration::from_secs),
            producer: None,
            last_seq: 0,
        }
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    pub fn ed25519_public(&self) -> [u8; 32] {
        self.keys.ed25519_public()
    }

    pub fn x25519_public(&self) -> [u8; 32] {
        self.keys.x25519_public()
    }

    /// Evidence binding this enclave's keys to `nonce` (sim format, development root).
    pub fn evidence(&self, nonce: &[u8; 32]) -> Vec<u8> {
        let rd = self.keys.report_data(nonce);
        let tampered = self
            .tamper_after
            .is_some_and(|t| self.started.elapsed() >= t);
        if tampered {
            // Signed by a key no verifier trusts: what a modified enclave would produce.
            let key = ed25519_dalek::SigningKey::from_bytes(&[0x7a; 32]);
            SimEvidence::create_with(&key, self.measurement, rd, 0).encode()
        } else {
            SimEvidence::create(self.measurement, rd, 0).encode()
        }
    }

    /// Starts (or, with a new controller, re-keys) the usage session; seq and the hash chain
    /// continue across re-keying.
    pub fn start_session(
        &mut self,
        nonce: &[u8; 32],
        controller_eph: &[u8; 32],
        checkpoint_every: u32,
    ) -> tribune_attest::Result<()> {
        match self.producer.as_mut() {
            Some(p) => p.rekey(nonce, controller_eph),
            None => {
                let p = Producer::new(
                    self.id,
                    self.keys.clone(),
                    nonce,
                    controller_eph,
                    checkpoint_every,
                )?;
                self.producer = Some(p);
                Ok(())
            }
        }
    }

    pub fn has_session(&self) -> bool {
        self.producer.is_some()
    }

    /// The enclave's ed25519 signature over a new controller's exchange (DESIGN.md §4.5): lets
    /// that controller re-key without an evidence round trip, when its replicated state already
    /// trusts these keys.
    pub fn rekey_signature(&self, nonce: &[u8; 32], controller_eph: &[u8; 32]) -> [u8; 64] {
        self.keys.sign_rekey(&self.id, nonce, controller_eph)
    }

    /// Seals one window; `None` before the first session.
    pub fn seal(&mut self, window: &UsageSample) -> Option<SealedReport> {
        let p = self.producer.as_mut()?;
        let e = p.emit(window);
        let (report, mac) = e.report.split_at(e.report.body().len());
        let seq = match usage::UsageReport::decode(report) {
            Ok(r) => r.seq,
            Err(err) => {
                // The producer's own encoding: failing to decode it is a bug, not an input.
                debug_assert!(false, "the producer's report does not decode: {err}");
                tracing::error!(enclave = %self.name, "a sealed report does not decode: {err}");
                return None;
            }
        };
        debug_assert!(
            seq > self.last_seq,
            "usage seq must rise: {seq} after {}",
            self.last_seq
        );
        self.last_seq = seq;
        Some(SealedReport {
            seq,
            report: report.to_vec(),
            mac: mac.to_vec(),
            checkpoint: e.checkpoint,
        })
    }

    /// Closes the current span with a checkpoint (before a replay); `None` when every report
    /// is covered already, or before the first session.
    pub fn checkpoint_now(&mut self) -> Option<Checkpoint> {
        self.producer.as_mut()?.checkpoint_now()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tribune_attest::evidence::{Inputs, VerifierConfig, Verifiers, verify_evidence};
    use tribune_attest::session::ControllerExchange;

    #[test]
    fn evidence_binds_its_keys_and_tampering_breaks_it() {
        let v = Verifiers::new().unwrap();
        let ctl = ControllerExchange::new();
        let mut e = SimTee::new("a", None, "sleep 1", None);
        assert!(e.seal(&UsageSample::default()).is_none(), "no session yet");
        let verdict = verify_evidence(
            &v,
            &VerifierConfig::dev(),
            &e.evidence(ctl.nonce()),
            &Inputs::default(),
            tribune_attest::VerifyAt::now(),
        )
        .unwrap();
        assert!(verdict.valid, "{:?}", verdict.reasons);
        let bound = ctl
            .bind(
                EnclaveId::from_name("a"),
                e.ed25519_public(),
                e.x25519_public(),
                &verdict.report_data_raw,
            )
            .unwrap();
        // Reports sealed after the session starts verify under the controller's key.
        e.start_session(ctl.nonce(), &ctl.eph_public(), 2).unwrap();
        let mut verifier = usage::StreamVerifier::new(&bound, usage::Freshness::default()).unwrap();
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_nanos() as u64;
        let w = UsageSample {
            window_start_ns: now - 100_000_000,
            window_len_ns: 100_000_000,
            cpu_ns: 1,
            mem_bytes: 2,
            net_tx_bytes: 3,
            net_rx_bytes: 4,
            gpu_util_bp: 0,
            cpu_wait_ns: 5,
            msgs: Default::default(),
        };
        let mut seqs = Vec::new();
        for _ in 0..2 {
            let s = e.seal(&w).unwrap();
            seqs.push(s.seq);
            let mut wire = s.report.clone();
            wire.extend_from_slice(&s.mac);
            verifier.verify_report(&wire, now).unwrap();
            if let Some(cp) = s.checkpoint {
                verifier.verify_checkpoint(&cp).unwrap();
            }
        }
        assert_eq!(seqs, [1, 2]);
        assert_eq!(verifier.confirmed_seq(), 2);
        assert!(e.checkpoint_now().is_none(), "the span is closed already");
        // Tampered: its evidence no longer verifies.
        let t = SimTee::new("b", None, "sleep 1", Some(0));
        let verdict = verify_evidence(
            &v,
            &VerifierConfig::dev(),
            &t.evidence(ctl.nonce()),
            &Inputs::default(),
            tribune_attest::VerifyAt::now(),
        )
        .unwrap();
        assert!(!verdict.valid);
    }

    #[test]
    fn seq_and_chain_continue_across_rekeying() {
        let first = ControllerExchange::new();
        let mut e = SimTee::new("a", None, "sleep 1", None);
        e.start_session(first.nonce(), &first.eph_public(), 10)
            .unwrap();
        assert_eq!(e.seal(&UsageSample::default()).map(|s| s.seq), Some(1));
        let second = ControllerExchange::new();
        e.start_session(second.nonce(), &second.eph_public(), 10)
            .unwrap();
        assert_eq!(e.seal(&UsageSample::default()).map(|s| s.seq), Some(2));
        let cp = e.checkpoint_now().expect("an open span");
        assert_eq!((cp.first_seq, cp.last_seq), (1, 2));
    }
}
