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
}
