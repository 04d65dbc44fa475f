//! DESIGN.md §4 end to end with a simulated enclave: nonce + ephemeral key down, sim evidence
//! binding the enclave keys up, session key on both sides, MAC'd reports, checkpoints, and a
//! failover to a controller that never held the session key.

use ed25519_dalek::VerifyingKey;
use tribune_attest::VerifyAt;
use tribune_attest::evidence::{Inputs, VerifierConfig, Verifiers, verify_evidence};
use tribune_attest::session::{ControllerExchange, EnclaveKeys};
use tribune_attest::sim::SimEvidence;
use tribune_attest::usage::{
    Confirmed, EnclaveId, Freshness, Producer, StreamVerifier, UsageSample, verify_by_checkpoint,
};

const T0: u64 = 1_800_000_000_000_000_000;

fn sample(i: u64) -> UsageSample {
    UsageSample {
        window_start_ns: T0 + i * 100_000_000,
        window_len_ns: 100_000_000,
        cpu_ns: 25_000_000,
        mem_bytes: 512 << 20,
        net_tx_bytes: 10_000,
        net_rx_bytes: 20_000,
        gpu_util_bp: 0,
        cpu_wait_ns: 1_000_000,
        msgs: Default::default(),
    }
}

#[test]
fn attest_bind_stream_failover() {
    let verifiers = Verifiers::new().unwrap();
    let id = EnclaveId::from_name("acme/batch-1");
    let keys = EnclaveKeys::generate();
    let ctl = ControllerExchange::new();

    // Enclave: evidence with report_data = SHA-512(ed ‖ x ‖ nonce).
    let measurement = [0x3a; 48];
    let ev = SimEvidence::create(measurement, keys.report_data(ctl.nonce()), 0).encode();

    // Controller: production config refuses sim; dev config accepts it.
    let prod = VerifierConfig::default();
    let v = verify_evidence(&verifiers, &prod, &ev, &Inputs::default(), VerifyAt::now()).unwrap();
    assert!(!v.valid);
    let mut dev = VerifierConfig {
        allow_sim: true,
        ..Default::default()
    };
    dev.policy.measurements = vec![measurement.to_vec()];
    let v = verify_evidence(&verifiers, &dev, &ev, &Inputs::default(), VerifyAt::now()).unwrap();
    assert!(v.valid, "{:?}", v.reasons);
    assert_eq!(v.tee.as_str(), "sim");
    let bound = ctl
        .bind(
            id,
            keys.ed25519_public(),
            keys.x25519_public(),
            &v.report_data_raw,
        )
        .unwrap();

    let ed_pub = keys.ed25519_public();
    let x_pub = keys.x25519_public();
    let mut producer = Producer::new(id, keys, ctl.nonce(), &ctl.eph_public(), 10).unwrap();
    let mut sv = StreamVerifier::new(&bound, Freshness::default()).unwrap();
    let now = |i: u64| T0 + (i + 1) * 100_000_000;
    let mut wires = Vec::new();
    let mut last: Option<Confirmed> = None;
    let mut cps = Vec::new();
    for i in 0..30 {
        let e = producer.emit(&sample(i));
        wires.push(e.report);
        cps.extend(e.checkpoint);
        if i < 25 {
            sv.verify_report(&e.report, now(i)).unwrap();
            if let Some(cp) = e.checkpoint {
                last = Some(sv.verify_checkpoint(&cp).unwrap());
            }
        }
    }
    let confirmed = last.unwrap();
    assert_eq!(confirmed.last_seq, 20);

    // The controller dies; the agent buffered seq 21..=30 and the checkpoint covering them.
    // A new controller never held the session key: it checks them by checkpoint alone.
    let cp = cps[2];
    assert_eq!((cp.first_seq, cp.last_seq), (21, 30));
    assert_eq!(cp.prev_head, confirmed.head);
    let vk = VerifyingKey::from_bytes(&ed_pub).unwrap();
    let refs: Vec<&[u8]> = wires[20..30].iter().map(|w| w.as_slice()).collect();
    let reports = verify_by_checkpoint(&cp, &vk, &refs).unwrap();
    assert_eq!(reports.len(), 10);
    assert!(verify_by_checkpoint(&cp, &vk, &refs[..9]).is_err());
    let mut swapped = refs.clone();
    swapped.swap(0, 1);
    assert!(verify_by_checkpoint(&cp, &vk, &swapped).is_err());

    // It re-keys without evidence and resumes after the checkpoint.
    let ctl2 = ControllerExchange::new();
    let sig = producer
        .keys()
        .sign_rekey(&id, ctl2.nonce(), &ctl2.eph_public());
    let bound2 = ctl2.rekey(id, ed_pub, x_pub, &sig).unwrap();
    producer.rekey(ctl2.nonce(), &ctl2.eph_public()).unwrap();
    let resumed = Confirmed::from(&cp);
    let mut sv2 = StreamVerifier::resume(&bound2, Freshness::default(), &resumed).unwrap();
    // Old-key reports do not verify under the new key, and are replays anyway.
    assert!(sv2.verify_report(&wires[29], now(30)).is_err());
    for i in 30..40 {
        let e = producer.emit(&sample(i));
        sv2.verify_report(&e.report, now(i)).unwrap();
        if let Some(cp) = e.checkpoint {
            assert_eq!(sv2.verify_checkpoint(&cp).unwrap().last_seq, 40);
        }
    }
    assert_eq!(sv2.confirmed_seq(), 40);
}
