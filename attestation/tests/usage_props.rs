//! Property tests: the canonical usage-report and checkpoint encodings round-trip, and the
//! strict decoders never panic on arbitrary bytes.

use proptest::prelude::*;
use tribune_attest::usage::{
    Checkpoint, EnclaveId, MsgCounts, REPORT_LEN, REPORT_LEN_V1, REPORT_LEN_V3, UsageReport,
};

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn report_round_trip(
        id in any::<[u8; 16]>(), seq in any::<u64>(), start in 0u64..u64::MAX / 2,
        len in 0u64..u64::MAX / 2, cpu in any::<u64>(), mem in any::<u64>(),
        tx in any::<u64>(), rx in any::<u64>(), gpu in 0u32..=640_000,
        wait in proptest::option::of(any::<u64>()),
        msgs in proptest::option::of(any::<[u64; 4]>()),
    ) {
        let msgs = msgs.map(|[sent, sent_bytes, refused, refused_bytes]| MsgCounts {
            sent, sent_bytes, refused, refused_bytes,
        });
        // A v3 report always carries the wait.
        let wait = if msgs.is_some() { Some(wait.unwrap_or(0)) } else { wait };
        let r = UsageReport {
            enclave: EnclaveId(id), seq, window_start_ns: start, window_len_ns: len,
            cpu_ns: cpu, mem_bytes: mem, net_tx_bytes: tx, net_rx_bytes: rx, gpu_util_bp: gpu,
            cpu_wait_ns: wait, msgs,
        };
        let b = r.encode();
        // v3 with message counts, else v2 when the wait is known, v1 when not.
        let want = match (msgs, wait) {
            (Some(_), _) => REPORT_LEN_V3,
            (None, Some(_)) => REPORT_LEN,
            (None, None) => REPORT_LEN_V1,
        };
        prop_assert_eq!(b.len(), want);
        prop_assert_eq!(UsageReport::decode(&b).unwrap(), r);
    }

    #[test]
    fn decoders_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..400)) {
        let _ = UsageReport::decode(&bytes);
        let _ = Checkpoint::decode(&bytes);
        let _ = tribune_attest::merkle::SignedTreeHead::decode(&bytes);
        let _ = tribune_attest::sim::SimEvidence::decode(&bytes);
    }
}
