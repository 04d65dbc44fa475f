use tribune_attest::session::EnclaveKeys;
use tribune_attest::sim::SimEvidence;

use super::*;

const MEASUREMENT: [u8; 48] = [0xab; 48];

fn cx(allow_sim: bool) -> Context<'static> {
    Context {
        host: "h1",
        controller_id: 2,
        allow_sim,
        now_ms: 1_000,
        at: VerifyAt::now(),
        knobs: None,
    }
}

fn keys() -> EnclaveKeys {
    EnclaveKeys::from_seeds([1; 32], [2; 32])
}

/// Sim evidence from `keys` bound to `nonce`.
fn evidence(keys: &EnclaveKeys, nonce: &[u8; 32], debug: bool) -> pb::Evidence {
    let flags = u16::from(debug);
    pb::Evidence {
        enclave_id: "e1".into(),
        tee: "sim".into(),
        report: SimEvidence::create(MEASUREMENT, keys.report_data(nonce), flags).encode(),
        enclave_ed25519: keys.ed25519_public().to_vec(),
        enclave_x25519: keys.x25519_public().to_vec(),
        ..pb::Evidence::default()
    }
}

fn verifiers() -> Verifiers {
    Verifiers::new().expect("verifiers")
}

#[test]
fn sim_evidence_bound_to_the_exchange_is_trusted_and_tracked() {
    let ex = ControllerExchange::from_parts([3; 32], [4; 32]);
    let v = verify(
        cx(true),
        &verifiers(),
        &ex,
        &evidence(&keys(), ex.nonce(), false),
        &[],
        None,
    );
    let Verdict::Fresh { attestation, track } = v else {
        panic!("a first verdict");
    };
    assert!(attestation.trusted, "{:?}", attestation.reasons);
    assert_eq!(attestation.measurement, hex::encode(MEASUREMENT));
    assert_eq!(
        (attestation.verified_by, attestation.verified_at_ms),
        (2, 1_000)
    );
    assert!(track.is_some_and(|t| t.0.ed25519_pub == keys().ed25519_public()));
}

#[test]
fn sim_evidence_is_refused_in_production() {
    let ex = ControllerExchange::from_parts([3; 32], [4; 32]);
    let v = verify(
        cx(false),
        &verifiers(),
        &ex,
        &evidence(&keys(), ex.nonce(), false),
        &[],
        None,
    );
    assert!(!v.attestation().trusted);
    assert!(matches!(v, Verdict::Fresh { track: None, .. }));
}

#[test]
fn evidence_for_another_nonce_is_not_bound() {
    let ex = ControllerExchange::from_parts([3; 32], [4; 32]);
    let v = verify(
        cx(true),
        &verifiers(),
        &ex,
        &evidence(&keys(), &[9; 32], false),
        &[],
        None,
    );
    assert!(!v.attestation().trusted);
    assert!(matches!(v, Verdict::Fresh { track: None, .. }));
}

#[test]
fn an_unexpected_measurement_is_a_reason() {
    let ex = ControllerExchange::from_parts([3; 32], [4; 32]);
    let ev = evidence(&keys(), ex.nonce(), false);
    let v = verify(cx(true), &verifiers(), &ex, &ev, &["00".repeat(48)], None);
    assert!(!v.attestation().trusted);
    assert!(
        v.attestation()
            .reasons
            .iter()
            .any(|r| r.contains("expected measurements")),
        "{:?}",
        v.attestation().reasons
    );
    let ok = verify(cx(true), &verifiers(), &ex, &ev, &["AB".repeat(48)], None);
    assert!(ok.attestation().trusted, "case-insensitive match");
}

#[test]
fn keys_of_the_wrong_length_are_a_reason_not_a_panic() {
    let ex = ControllerExchange::from_parts([3; 32], [4; 32]);
    let mut ev = evidence(&keys(), ex.nonce(), false);
    ev.enclave_ed25519.truncate(5);
    let v = verify(cx(true), &verifiers(), &ex, &ev, &[], None);
    assert_eq!(
        v.attestation().reasons,
        vec!["enclave_ed25519: 5 bytes, expected 32"]
    );
}

#[test]
fn reattestation_needs_the_same_keys_and_the_fresh_nonce() {
    let ex = ControllerExchange::from_parts([3; 32], [4; 32]);
    let k = keys();
    let r = Reattesting {
        ed25519_pub: k.ed25519_public(),
        x25519_pub: k.x25519_public(),
        nonce: [7; 32],
    };
    let good = verify(
        cx(true),
        &verifiers(),
        &ex,
        &evidence(&k, &[7; 32], false),
        &[],
        Some(r),
    );
    assert!(matches!(&good, Verdict::Reattested(a) if a.trusted));
    // The stream's original nonce is not the fresh one.
    let old = verify(
        cx(true),
        &verifiers(),
        &ex,
        &evidence(&k, ex.nonce(), false),
        &[],
        Some(r),
    );
    assert!(matches!(&old, Verdict::Reattested(a) if !a.trusted));
    // Other keys, even bound to the fresh nonce.
    let other = EnclaveKeys::from_seeds([5; 32], [6; 32]);
    let swapped = verify(
        cx(true),
        &verifiers(),
        &ex,
        &evidence(&other, &[7; 32], false),
        &[],
        Some(r),
    );
    assert!(matches!(&swapped, Verdict::Reattested(a) if !a.trusted));
}

#[test]
fn rekey_needs_trusted_prior_evidence_for_the_same_keys_and_a_good_signature() {
    let ex = ControllerExchange::from_parts([3; 32], [4; 32]);
    let k = keys();
    let eid = EnclaveId::from_name("e1");
    let mut ev = evidence(&k, ex.nonce(), false);
    ev.report.clear();
    ev.rekey_signature = k.sign_rekey(&eid, ex.nonce(), &ex.eph_public()).to_vec();
    let prior = Attestation {
        trusted: true,
        ed25519_pub: hex::encode(k.ed25519_public()),
        x25519_pub: hex::encode(k.x25519_public()),
        measurement: "m".into(),
        failures: 3,
        ..Attestation::default()
    };
    let (a, bound, _) = rekey(cx(true), &ex, &ev, Some(&prior)).expect("re-keyed");
    assert!(a.trusted && a.rekeyed);
    assert_eq!(
        (a.measurement.as_str(), a.failures, a.verified_by),
        ("m", 0, 2)
    );
    assert_eq!(bound.ed25519_pub, k.ed25519_public());
    assert_eq!(
        rekey(cx(true), &ex, &ev, None).err(),
        Some(RekeyError::NoPrior)
    );
    let untrusted = Attestation {
        trusted: false,
        ..prior.clone()
    };
    assert_eq!(
        rekey(cx(true), &ex, &ev, Some(&untrusted)).err(),
        Some(RekeyError::NoPrior)
    );
    let mut forged = ev.clone();
    forged.rekey_signature[0] ^= 1;
    assert!(matches!(
        rekey(cx(true), &ex, &forged, Some(&prior)),
        Err(RekeyError::Exchange(_))
    ));
    let mut short = ev;
    short.rekey_signature.truncate(10);
    assert!(matches!(
        rekey(cx(true), &ex, &short, Some(&prior)),
        Err(RekeyError::Length { got: 10, .. })
    ));
}

/// The shared attestation test data.
fn testdata() -> Option<std::path::PathBuf> {
    tribune_testkit::testdata::attestation(std::path::Path::new(env!("CARGO_MANIFEST_DIR")))
}

#[test]
fn the_policy_attest_knobs_reach_the_verifier() {
    let Some(d) = testdata() else {
        eprintln!("\n*** skipped: attestation test data not found (set TRIBUNE_TESTDATA) ***\n");
        return;
    };
    // An Azure TDX quote whose TD has SEPT_VE_DISABLE clear (shared/…/SOURCE.md).
    let Ok(raw) = std::fs::read(d.join("tdx/coco-trustee/az-td-quote.bin")) else {
        panic!("az-td-quote.bin is missing from {}", d.display());
    };
    let ev = pb::Evidence {
        enclave_id: "e1".into(),
        tee: "tdx".into(),
        report: raw,
        enclave_ed25519: keys().ed25519_public().to_vec(),
        enclave_x25519: keys().x25519_public().to_vec(),
        ..pb::Evidence::default()
    };
    let ex = ControllerExchange::from_parts([3; 32], [4; 32]);
    let sept = |knobs| {
        let c = Context {
            at: VerifyAt::parse_rfc3339("2025-11-01T00:00:00Z").expect("time"),
            knobs,
            ..cx(false)
        };
        verify(c, &verifiers(), &ex, &ev, &[], None)
            .attestation()
            .reasons
            .iter()
            .any(|r| r.contains("SEPT_VE_DISABLE"))
    };
    assert!(sept(None), "refused by default");
    let allowed = tribune_policy::AttestKnobs {
        allow_sept_ve: true,
        ..tribune_policy::AttestKnobs::default()
    };
    assert!(
        !sept(Some(allowed)),
        "allowed by the policy's `sept_ve = allowed`"
    );
}

#[test]
fn a_migration_targets_evidence_must_bind_the_migrations_fresh_nonce() {
    let ex = ControllerExchange::from_parts([3; 32], [4; 32]);
    let nonce = [8; 32];
    let k = keys();
    assert_eq!(
        verify_for_move(
            cx(true),
            &verifiers(),
            &ex,
            &evidence(&k, &nonce, false),
            &[],
            &nonce
        ),
        Ok(hex::encode(MEASUREMENT))
    );
    // What the waiting VM sent when it started (bound to the stream's nonce) is not fresh for
    // this migration, nor evidence for another migration.
    for (stale, what) in [
        (*ex.nonce(), "the stream's nonce"),
        ([9; 32], "another nonce"),
    ] {
        let Err(why) = verify_for_move(
            cx(true),
            &verifiers(),
            &ex,
            &evidence(&k, &stale, false),
            &[],
            &nonce,
        ) else {
            panic!("{what}: trusted");
        };
        assert!(why.to_string().contains("fresh nonce"), "{what}: {why}");
    }
    // Verified as any evidence: the enclave's expected measurements, production verifiers.
    let Err(why) = verify_for_move(
        cx(true),
        &verifiers(),
        &ex,
        &evidence(&k, &nonce, false),
        &["00".repeat(48)],
        &nonce,
    ) else {
        panic!("an unexpected measurement: trusted");
    };
    assert!(why.to_string().contains("expected measurements"), "{why}");
    assert!(
        verify_for_move(
            cx(false),
            &verifiers(),
            &ex,
            &evidence(&k, &nonce, false),
            &[],
            &nonce
        )
        .is_err(),
        "sim evidence in production"
    );
    // Malformed keys: a reason, not a panic.
    let mut short = evidence(&k, &nonce, false);
    short.enclave_x25519.truncate(5);
    let Err(why) = verify_for_move(cx(true), &verifiers(), &ex, &short, &[], &nonce) else {
        panic!("short key: trusted");
    };
    assert!(why.to_string().contains("enclave_x25519"), "{why}");
}
