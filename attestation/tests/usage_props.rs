//! Property tests: the canonical usage-report and checkpoint encodings round-trip, and the
//! strict decoders never panic on arbitrary bytes.

use proptest::prelude::*;
use tribune_attest::usage::{Checkpoint, EnclaveId, REPORT_LEN, REPORT_LEN_V1, UsageReport};

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn report_round_trip(
        id in any::<[u8; 16]>(), seq in any::<u64>(), start in 0u64..u64::MAX / 2,
        len in 0u64..u64::MAX / 2, cpu in any::<u64>(), mem in any::<u64>(),
        tx in any::<u64>(), rx in any::<u64>(), gpu in 0u32..=640_000,
        wait in proptest::option::of(any::<u64>()),
    ) {
        let r = UsageReport {
            enclave: EnclaveId(id), seq, window_start_ns: start, window_len_ns: len,
            cpu_ns: cpu, mem_bytes: mem, net_tx_bytes: tx, net_rx_bytes: rx, gpu_util_bp: gpu,
            cpu_wait_ns: wait,
        };
        let b = r.encode();
        // v2 when the wait is known, v1 when not.
        prop_assert_eq!(b.len(), if wait.is_some() { REPORT_LEN } else { REPORT_LEN_V1 });
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
