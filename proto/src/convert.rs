//! The one place where messages and the domain types they carry are converted: a checkpoint
//! (`tribune_attest::usage::Checkpoint`) and a MAC'd usage report.

use tribune_attest::AttestError;
use tribune_attest::usage::{Checkpoint, EnclaveId, report_len};

use crate::v1 as pb;

impl pb::Checkpoint {
    /// `enclave`'s checkpoint as sent on the stream: the signed encoding, and its fields beside
    /// it for readers of the message.
    pub fn of(enclave: &str, c: &Checkpoint) -> pb::Checkpoint {
        pb::Checkpoint {
            enclave_id: enclave.to_string(),
            first_seq: c.first_seq,
            last_seq: c.last_seq,
            chain_head: c.head.to_vec(),
            signature: c.signature.to_vec(),
            encoded: c.encode().to_vec(),
        }
    }
}

/// A checkpoint message → the signed checkpoint it carries (`encoded`); the fields beside it
/// must agree with it. The signature is not checked here.
impl TryFrom<&pb::Checkpoint> for Checkpoint {
    type Error = AttestError;

    fn try_from(c: &pb::Checkpoint) -> Result<Checkpoint, AttestError> {
        // Length, version and bounds are the decoder's.
        let cp = Checkpoint::decode(&c.encoded)?;
        if cp.enclave != EnclaveId::from_name(&c.enclave_id)
            || cp.first_seq != c.first_seq
            || cp.last_seq != c.last_seq
        {
            return Err(AttestError::Checkpoint(
                "checkpoint fields disagree with its signed encoding".into(),
            ));
        }
        Ok(cp)
    }
}

impl pb::UsageReport {
    /// `enclave`'s sealed report (`report ‖ mac`, as `Producer::emit` makes it) with the host's
    /// view of the same window beside it. The report's length is its version's (v2: 86 bytes,
    /// v1: 78); bytes of an unknown version are all report, no MAC (the verifier refuses them).
    pub fn sealed(enclave: &str, sealed: &[u8], host_view: Vec<u8>) -> pb::UsageReport {
        let len = report_len(sealed).unwrap_or(sealed.len());
        let (report, mac) = sealed.split_at(sealed.len().min(len));
        pb::UsageReport {
            enclave_id: enclave.to_string(),
            report: report.to_vec(),
            mac: mac.to_vec(),
            host_view,
            traceparent: String::new(),
        }
    }

    /// The wire form the verifier reads: `report ‖ mac`.
    pub fn wire(&self) -> Vec<u8> {
        let mut w = Vec::with_capacity(self.report.len() + self.mac.len());
        w.extend_from_slice(&self.report);
        w.extend_from_slice(&self.mac);
        w
    }
}

#[cfg(test)]
mod tests {
    use tribune_attest::session::{ControllerExchange, EnclaveKeys};
    use tribune_attest::usage::{Producer, REPORT_LEN, TAG_LEN, UsageSample};

    use super::*;

    fn producer() -> Producer {
        let ex = ControllerExchange::from_parts([3; 32], [4; 32]);
        Producer::new(
            EnclaveId::from_name("e1"),
            EnclaveKeys::from_seeds([1; 32], [2; 32]),
            ex.nonce(),
            &ex.eph_public(),
            2,
        )
        .expect("producer")
    }

    #[test]
    fn a_checkpoint_round_trips_and_its_fields_must_agree() {
        let mut p = producer();
        p.emit(&UsageSample::default());
        let cp = p.emit(&UsageSample::default()).checkpoint.expect("every 2");
        let m = pb::Checkpoint::of("e1", &cp);
        assert_eq!(Checkpoint::try_from(&m).ok(), Some(cp));
        let mut wrong = m.clone();
        wrong.last_seq += 1;
        assert!(matches!(
            Checkpoint::try_from(&wrong),
            Err(AttestError::Checkpoint(_))
        ));
        let other = pb::Checkpoint {
            enclave_id: "e2".into(),
            ..m.clone()
        };
        assert!(Checkpoint::try_from(&other).is_err(), "another enclave's");
        let short = pb::Checkpoint {
            encoded: m.encoded[..10].to_vec(),
            ..m
        };
        assert!(matches!(
            Checkpoint::try_from(&short),
            Err(AttestError::Malformed { .. })
        ));
    }

    #[test]
    fn a_sealed_report_splits_and_joins_back() {
        let e = producer().emit(&UsageSample::default());
        let m = pb::UsageReport::sealed("e1", &e.report, vec![1, 2]);
        assert_eq!(m.report.len(), REPORT_LEN);
        assert_eq!(m.mac.len(), TAG_LEN);
        assert_eq!(m.wire(), e.report.to_vec());
        assert_eq!(m.host_view, vec![1, 2]);
        // Shorter than a report: all of it is the report, no MAC (the verifier refuses it).
        assert_eq!(
            pb::UsageReport::sealed("e1", &[7; 5], vec![]).mac,
            Vec::<u8>::new()
        );
    }
}
