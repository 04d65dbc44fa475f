//! The enclave side of a usage stream.

use ed25519_dalek::Signer;

use super::*;
use crate::error::Result;
use crate::session::{EnclaveKeys, NONCE_LEN};

/// Enclave side: holds the keys and the session, numbers reports, MACs them, keeps the hash
/// chain and signs a checkpoint every `checkpoint_every` reports.
pub struct Producer {
    enclave: EnclaveId,
    keys: EnclaveKeys,
    mac: MacKey,
    next_seq: u64,
    head: [u8; 32],
    span_first: u64,
    span_prev_head: [u8; 32],
    checkpoint_every: u64,
}

/// What the producer emits for one window.
#[derive(Debug, Clone)]
pub struct Emitted {
    /// The MAC'd report (wire form, v2).
    pub report: MacReport,
    /// A checkpoint, when this report closes a span.
    pub checkpoint: Option<Checkpoint>,
}

impl Producer {
    /// Start a stream after the key exchange: `nonce` and `controller_eph_pub` come from the
    /// controller; the first report gets `seq = 1`.
    pub fn new(
        enclave: EnclaveId,
        keys: EnclaveKeys,
        nonce: &[u8; NONCE_LEN],
        controller_eph_pub: &[u8; 32],
        checkpoint_every: u32,
    ) -> Result<Self> {
        let session = keys.session_key(&enclave, nonce, controller_eph_pub)?;
        let every = u64::from(checkpoint_every.max(1)).min(CHECKPOINT_SPAN_MAX);
        let genesis = chain_genesis(&enclave);
        Ok(Producer {
            enclave,
            keys,
            mac: MacKey::new(&session),
            next_seq: 1,
            head: genesis,
            span_first: 1,
            span_prev_head: genesis,
            checkpoint_every: every,
        })
    }

    /// Switch to a new session key (after re-keying with a new controller); the sequence
    /// numbers and the hash chain continue.
    pub fn rekey(&mut self, nonce: &[u8; NONCE_LEN], controller_eph_pub: &[u8; 32]) -> Result<()> {
        let session = self
            .keys
            .session_key(&self.enclave, nonce, controller_eph_pub)?;
        self.mac = MacKey::new(&session);
        Ok(())
    }

    /// The enclave's keys (for evidence `report_data` and re-key signatures).
    pub fn keys(&self) -> &EnclaveKeys {
        &self.keys
    }

    /// Produce the report for one window.
    pub fn emit(&mut self, sample: &UsageSample) -> Emitted {
        let report = UsageReport {
            enclave: self.enclave,
            seq: self.next_seq,
            window_start_ns: sample.window_start_ns,
            window_len_ns: sample.window_len_ns,
            cpu_ns: sample.cpu_ns,
            mem_bytes: sample.mem_bytes,
            net_tx_bytes: sample.net_tx_bytes,
            net_rx_bytes: sample.net_rx_bytes,
            gpu_util_bp: sample.gpu_util_bp.min(GPU_UTIL_BP_MAX),
            cpu_wait_ns: Some(sample.cpu_wait_ns),
            msgs: (!sample.msgs.is_empty()).then_some(sample.msgs),
        };
        let bytes = report.encode();
        self.head = chain_step(&self.head, &bytes);
        self.next_seq += 1;
        let checkpoint = if report.seq - self.span_first + 1 >= self.checkpoint_every {
            self.checkpoint_now()
        } else {
            None
        };
        Emitted {
            report: self.mac.seal(&bytes),
            checkpoint,
        }
    }

    /// Sign a checkpoint over the reports since the last one (e.g. on a timer or before
    /// disconnecting). `None` when there is nothing new.
    pub fn checkpoint_now(&mut self) -> Option<Checkpoint> {
        let last = self.next_seq.checked_sub(1)?;
        if last < self.span_first {
            return None;
        }
        let mut cp = Checkpoint {
            enclave: self.enclave,
            first_seq: self.span_first,
            last_seq: last,
            prev_head: self.span_prev_head,
            head: self.head,
            signature: [0; 64],
        };
        cp.signature = self
            .keys
            .signing_key()
            .sign(&cp.signed_message())
            .to_bytes();
        self.span_first = last + 1;
        self.span_prev_head = self.head;
        Some(cp)
    }
}

#[cfg(test)]
mod tests {
    use super::super::testing::*;
    use super::*;

    fn open(bound: &crate::session::BoundEnclave, e: &Emitted) -> UsageReport {
        MacKey::new(&bound.session_key).open(&e.report).unwrap()
    }

    #[test]
    fn reports_are_numbered_from_one_and_chained() {
        let (mut p, bound) = bound(3);
        let mut head = chain_genesis(&ENCLAVE);
        for i in 0..7 {
            let e = p.emit(&sample(i));
            let r = open(&bound, &e);
            assert_eq!(r.seq, i + 1);
            assert_eq!(
                r.cpu_wait_ns,
                Some(sample(i).cpu_wait_ns),
                "the wait is sealed"
            );
            head = chain_step(&head, e.report.body());
            let due = (i + 1) % 3 == 0;
            assert_eq!(e.checkpoint.is_some(), due, "report {}", i + 1);
            if let Some(cp) = e.checkpoint {
                assert_eq!((cp.last_seq, cp.head), (i + 1, head));
            }
        }
        let cp = p.checkpoint_now().unwrap();
        assert_eq!((cp.first_seq, cp.last_seq, cp.head), (7, 7, head));
        assert!(p.checkpoint_now().is_none(), "nothing new");
    }

    #[test]
    fn gpu_use_is_clamped() {
        let (mut p, bound) = bound(10);
        let mut s = sample(0);
        s.gpu_util_bp = u32::MAX;
        let e = p.emit(&s);
        assert_eq!(open(&bound, &e).gpu_util_bp, GPU_UTIL_BP_MAX);
    }

    #[test]
    fn rekeying_changes_the_mac_but_not_the_chain() {
        let (mut p, bound) = bound(2);
        p.emit(&sample(0));
        let ctl = crate::session::ControllerExchange::from_parts([5; 32], [6; 32]);
        p.rekey(ctl.nonce(), &ctl.eph_public()).unwrap();
        let e = p.emit(&sample(1));
        assert!(
            MacKey::new(&bound.session_key).open(&e.report).is_err(),
            "new key"
        );
        let cp = e.checkpoint.unwrap();
        assert_eq!((cp.first_seq, cp.last_seq), (1, 2), "the span runs on");
        let key = ed25519_dalek::VerifyingKey::from_bytes(&p.keys().ed25519_public()).unwrap();
        cp.verify_signature(&key).unwrap();
    }
}
