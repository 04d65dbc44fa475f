//! Policy-facing checks on verdicts: debug, VMPL, measurement allow-list, minimum TCB,
//! report_data binding, sim refusal.

mod common;

use tribune_attest::VerifyAt;
use tribune_attest::evidence::{AttestPolicy, Inputs, VerifierConfig, Verifiers, verify_evidence};
use tribune_attest::sim::{FLAG_DEBUG, SimEvidence};
use tribune_attest::snp::{TcbVersion, load_certs};

#[test]
fn sim_debug_measurement_and_binding() {
    let v = Verifiers::new().unwrap();
    let ev = SimEvidence::create([1; 48], [2; 64], FLAG_DEBUG).encode();
    let mut cfg = VerifierConfig {
        allow_sim: true,
        ..Default::default()
    };
    let now = VerifyAt::now();
    let r = verify_evidence(&v, &cfg, &ev, &Inputs::default(), now).unwrap();
    assert!(
        r.reasons.iter().any(|x| x.contains("debug")),
        "{:?}",
        r.reasons
    );
    cfg.policy.allow_debug = true;
    assert!(
        verify_evidence(&v, &cfg, &ev, &Inputs::default(), now)
            .unwrap()
            .valid
    );
    cfg.policy.measurements = vec![vec![9; 48]];
    let r = verify_evidence(&v, &cfg, &ev, &Inputs::default(), now).unwrap();
    assert!(r.reasons.iter().any(|x| x.contains("allow-list")));
    cfg.policy.measurements = vec![vec![1; 48]];
    cfg.policy.report_data = Some([3; 64]);
    let r = verify_evidence(&v, &cfg, &ev, &Inputs::default(), now).unwrap();
    assert!(r.reasons.iter().any(|x| x.contains("report_data")));
    cfg.policy.report_data = Some([2; 64]);
    assert!(
        verify_evidence(&v, &cfg, &ev, &Inputs::default(), now)
            .unwrap()
            .valid
    );
    // Hex text of the same evidence works too.
    let hex_text = hex::encode(&ev);
    assert!(
        verify_evidence(&v, &cfg, hex_text.as_bytes(), &Inputs::default(), now)
            .unwrap()
            .valid
    );
}

#[test]
fn snp_vmpl_and_min_tcb() {
    let d = testdata_or_skip!();
    let v = Verifiers::new().unwrap();
    let dir = d.join("snp/virtee-sev");
    let ev = common::read(&dir, "report_milan.bin");
    let certs = load_certs(&dir.join("vcek_milan.der")).unwrap();
    let inputs = Inputs {
        certs: &certs,
        collateral: None,
    };
    let at = VerifyAt::parse_rfc3339("2025-01-01T00:00:00Z").unwrap();
    let mut cfg = VerifierConfig::default();
    assert!(verify_evidence(&v, &cfg, &ev, &inputs, at).unwrap().valid);
    cfg.policy = AttestPolicy {
        vmpl_max: Some(0),
        min_snp_tcb: Some(TcbVersion {
            fmc: None,
            bootloader: 3,
            tee: 0,
            snp: 8,
            microcode: 0x73,
        }),
        ..Default::default()
    };
    assert!(verify_evidence(&v, &cfg, &ev, &inputs, at).unwrap().valid);
    cfg.policy.min_snp_tcb = Some(TcbVersion {
        fmc: None,
        bootloader: 3,
        tee: 0,
        snp: 9,
        microcode: 0,
    });
    let r = verify_evidence(&v, &cfg, &ev, &inputs, at).unwrap();
    assert!(
        r.reasons.iter().any(|x| x.contains("below the minimum")),
        "{:?}",
        r.reasons
    );
}

#[test]
fn truncated_evidence_says_what_is_missing() {
    let d = testdata_or_skip!();
    let v = Verifiers::new().unwrap();
    let cfg = VerifierConfig::default();
    let now = VerifyAt::now();
    let snp = common::read(&d, "snp/virtee-sev/report_milan.bin");
    let e = verify_evidence(&v, &cfg, &snp[..1000], &Inputs::default(), now).unwrap_err();
    assert!(e.to_string().contains("1000 bytes, need 1184"), "{e}");
    let tdx = common::read(&d, "tdx/dcap-qvl/tdx_quote");
    let e = verify_evidence(&v, &cfg, &tdx[..2000], &Inputs::default(), now).unwrap_err();
    assert!(
        e.to_string()
            .contains("malformed TDX quote: 2000 bytes, need 4936"),
        "{e}"
    );
    let sim = SimEvidence::create([1; 48], [2; 64], 0).encode();
    let e = verify_evidence(&v, &cfg, &sim[..100], &Inputs::default(), now).unwrap_err();
    assert!(e.to_string().contains("sim evidence"), "{e}");
}
