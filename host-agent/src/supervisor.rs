//! The enclave-side supervisor: holds the enclave's keys and turns its own usage view into
//! authenticated usage reports (DESIGN.md §4).
//!
//! The MAC and signed checkpoints are the attestation crate's (`tribune-attest`); this module
//! only fixes the seam, [`UsageSigner`], and the sequencing around it. Integration plugs the
//! attestation crate's session-key MAC and ed25519 checkpoint signer in here.

use serde::Serialize;

use crate::collector::Sample;

/// One window of usage as the enclave reports it.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct UsageReport {
    pub enclave: String,
    /// Strictly increasing per enclave; the controller rejects replays.
    pub seq: u64,
    pub window_start_unix_ns: u64,
    pub window_ns: u64,
    pub cpu_ns: u64,
    pub mem_bytes: u64,
    pub net_tx_bytes: u64,
    pub net_rx_bytes: u64,
    pub gpu_util_percent: Option<f32>,
}

/// A report with its authenticator.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct AuthenticatedReport {
    pub report: UsageReport,
    pub mac: Vec<u8>,
}

/// Enclave-side key material: MACs reports, signs checkpoints.
pub trait UsageSigner: Send {
    fn mac(&mut self, report: &UsageReport) -> Vec<u8>;
    /// Signature over `(enclave, seq range)` and the chain of reports since the last checkpoint.
    fn checkpoint(&mut self, enclave: &str, first_seq: u64, last_seq: u64) -> Vec<u8>;
}

/// No keys: development only, the controller must treat these reports as unauthenticated.
#[derive(Debug, Default)]
pub struct UnsignedDev;

impl UsageSigner for UnsignedDev {
    fn mac(&mut self, _report: &UsageReport) -> Vec<u8> {
        Vec::new()
    }
    fn checkpoint(&mut self, _enclave: &str, _first: u64, _last: u64) -> Vec<u8> {
        Vec::new()
    }
}

/// Turns cumulative samples into per-window reports with increasing `seq`.
pub struct Supervisor {
    enclave: String,
    seq: u64,
    last: Option<(u64, Sample)>,
    signer: Box<dyn UsageSigner>,
}

impl Supervisor {
    pub fn new(enclave: impl Into<String>, signer: Box<dyn UsageSigner>) -> Supervisor {
        Supervisor {
            enclave: enclave.into(),
            seq: 0,
            last: None,
            signer,
        }
    }

    /// The report for the window since the previous sample (none for the first sample).
    pub fn report(&mut self, at_unix_ns: u64, s: Sample) -> Option<AuthenticatedReport> {
        let prev = self.last.replace((at_unix_ns, s));
        let (t0, p) = prev?;
        self.seq += 1;
        let report = UsageReport {
            enclave: self.enclave.clone(),
            seq: self.seq,
            window_start_unix_ns: t0,
            window_ns: at_unix_ns.saturating_sub(t0),
            cpu_ns: s.cpu_ns.saturating_sub(p.cpu_ns),
            mem_bytes: s.memory_bytes,
            net_tx_bytes: s.net_tx_bytes.saturating_sub(p.net_tx_bytes),
            net_rx_bytes: s.net_rx_bytes.saturating_sub(p.net_rx_bytes),
            gpu_util_percent: s.gpu_percent,
        };
        let mac = self.signer.mac(&report);
        Some(AuthenticatedReport { report, mac })
    }

    pub fn checkpoint(&mut self, first_seq: u64) -> Vec<u8> {
        self.signer.checkpoint(&self.enclave, first_seq, self.seq)
    }
}

/// The enclave side of a process enclave's simulated TEE: its keys, its evidence, and the
/// producer of its MAC'd usage reports and signed checkpoints (tribune-attest `usage`).
///
/// On a real SEV-SNP or TDX guest this runs inside the guest and the agent only relays its
/// output; for the process runtime it runs in the agent process, which is the simulated TEE
/// boundary. The keys never leave this value.
pub struct SimEnclave {
    name: String,
    id: tribune_attest::usage::EnclaveId,
    keys: tribune_attest::session::EnclaveKeys,
    measurement: [u8; 48],
    started: std::time::Instant,
    tamper_after: Option<std::time::Duration>,
    producer: Option<tribune_attest::usage::Producer>,
}

/// One window as the enclave reports it (wire pieces for the stream).
pub struct SealedReport {
    pub seq: u64,
    /// Canonical 78-byte report.
    pub report: Vec<u8>,
    /// 32-byte MAC under the session key.
    pub mac: Vec<u8>,
    pub checkpoint: Option<tribune_attest::usage::Checkpoint>,
}

impl SimEnclave {
    /// New keys; the measurement is the given hex (48 bytes) or SHA-384 of `cmdline`.
    pub fn new(
        name: &str,
        measurement_hex: Option<&str>,
        cmdline: &str,
        tamper_after_s: Option<u64>,
    ) -> SimEnclave {
        use sha2::Digest;
        let mut measurement = [0u8; 48];
        let parsed = measurement_hex
            .and_then(|h| hex::decode(h).ok())
            .filter(|b| b.len() == 48);
        match parsed {
            Some(b) => measurement.copy_from_slice(&b),
            None => measurement.copy_from_slice(&sha2::Sha384::digest(cmdline.as_bytes())),
        }
        SimEnclave {
            name: name.to_string(),
            id: tribune_attest::usage::EnclaveId::from_name(name),
            keys: tribune_attest::session::EnclaveKeys::generate(),
            measurement,
            started: std::time::Instant::now(),
            tamper_after: tamper_after_s.map(std::time::Duration::from_secs),
            producer: None,
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
        use tribune_attest::sim::SimEvidence;
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
    ) -> std::result::Result<(), String> {
        match self.producer.as_mut() {
            Some(p) => p.rekey(nonce, controller_eph).map_err(|e| e.to_string()),
            None => {
                let p = tribune_attest::usage::Producer::new(
                    self.id,
                    self.keys.clone(),
                    nonce,
                    controller_eph,
                    checkpoint_every,
                )
                .map_err(|e| e.to_string())?;
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
    pub fn seal(&mut self, w: &UsageReport) -> Option<SealedReport> {
        let p = self.producer.as_mut()?;
        let sample = to_sample(w);
        let e = p.emit(&sample);
        let (report, mac) = e.report.split_at(tribune_attest::usage::REPORT_LEN);
        let seq = tribune_attest::usage::UsageReport::decode(report)
            .map(|r| r.seq)
            .unwrap_or(0);
        Some(SealedReport {
            seq,
            report: report.to_vec(),
            mac: mac.to_vec(),
            checkpoint: e.checkpoint,
        })
    }

    /// Closes the current span with a checkpoint (before a replay).
    pub fn checkpoint_now(&mut self) -> Option<tribune_attest::usage::Checkpoint> {
        self.producer.as_mut()?.checkpoint_now()
    }
}

/// The canonical encoding of a window as the host measured it.
pub fn host_view(w: &UsageReport) -> Vec<u8> {
    let s = to_sample(w);
    tribune_attest::usage::UsageReport {
        enclave: tribune_attest::usage::EnclaveId::from_name(&w.enclave),
        seq: w.seq,
        window_start_ns: s.window_start_ns,
        window_len_ns: s.window_len_ns,
        cpu_ns: s.cpu_ns,
        mem_bytes: s.mem_bytes,
        net_tx_bytes: s.net_tx_bytes,
        net_rx_bytes: s.net_rx_bytes,
        gpu_util_bp: s.gpu_util_bp,
    }
    .encode()
    .to_vec()
}

fn to_sample(w: &UsageReport) -> tribune_attest::usage::UsageSample {
    tribune_attest::usage::UsageSample {
        window_start_ns: w.window_start_unix_ns,
        window_len_ns: w.window_ns.max(1),
        cpu_ns: w.cpu_ns,
        mem_bytes: w.mem_bytes,
        net_tx_bytes: w.net_tx_bytes,
        net_rx_bytes: w.net_rx_bytes,
        gpu_util_bp: w.gpu_util_percent.map_or(0, |p| {
            (f64::from(p) * 100.0).round().clamp(0.0, 640_000.0) as u32
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn windows_are_deltas_with_increasing_seq() {
        let mut sup = Supervisor::new("a", Box::new(UnsignedDev));
        let s = |cpu| Sample {
            cpu_ns: cpu,
            ..Sample::default()
        };
        assert!(sup.report(0, s(100)).is_none());
        let r1 = sup.report(100, s(150)).unwrap().report;
        let r2 = sup.report(200, s(170)).unwrap().report;
        assert_eq!((r1.seq, r1.cpu_ns, r1.window_ns), (1, 50, 100));
        assert_eq!((r2.seq, r2.cpu_ns), (2, 20));
    }

    #[test]
    fn sim_enclave_evidence_binds_its_keys_and_tampering_breaks_it() {
        use tribune_attest::evidence::{Inputs, VerifierConfig, Verifiers, verify_evidence};
        use tribune_attest::session::ControllerExchange;
        let v = Verifiers::new().unwrap();
        let ctl = ControllerExchange::new();
        let mut e = SimEnclave::new("a", None, "sleep 1", None);
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
                tribune_attest::usage::EnclaveId::from_name("a"),
                e.ed25519_public(),
                e.x25519_public(),
                &verdict.report_data_raw,
            )
            .unwrap();
        // Reports sealed after the session starts verify under the controller's key.
        e.start_session(ctl.nonce(), &ctl.eph_public(), 2).unwrap();
        let mut verifier = tribune_attest::usage::StreamVerifier::new(
            &bound,
            tribune_attest::usage::Freshness::default(),
        )
        .unwrap();
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_nanos() as u64;
        let w = UsageReport {
            enclave: "a".into(),
            seq: 1,
            window_start_unix_ns: now - 100_000_000,
            window_ns: 100_000_000,
            cpu_ns: 1,
            mem_bytes: 2,
            net_tx_bytes: 3,
            net_rx_bytes: 4,
            gpu_util_percent: None,
        };
        for _ in 0..2 {
            let s = e.seal(&w).unwrap();
            let mut wire = s.report.clone();
            wire.extend_from_slice(&s.mac);
            verifier.verify_report(&wire, now).unwrap();
            if let Some(cp) = s.checkpoint {
                verifier.verify_checkpoint(&cp).unwrap();
            }
        }
        assert_eq!(verifier.confirmed_seq(), 2);
        // Tampered: its evidence no longer verifies.
        let t = SimEnclave::new("b", None, "sleep 1", Some(0));
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
}
