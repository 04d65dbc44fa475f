//! Every TDX file in shared/testdata/attestation/tdx gives the outcome its SOURCE.md states.

mod common;

use std::path::Path;

use tribune_attest::VerifyAt;
use tribune_attest::evidence::decode_input;
use tribune_attest::tdx::{Collateral, TdxOutcome, TdxQuote, TdxVerifier};

fn at(s: &str) -> VerifyAt {
    VerifyAt::parse_rfc3339(s).unwrap()
}

fn quote(dir: &Path, f: &str) -> TdxQuote {
    let raw = decode_input(&common::read(dir, f));
    TdxQuote::parse(&raw).unwrap_or_else(|e| panic!("{f}: {e}"))
}

fn collateral(dir: &Path, f: &str) -> Collateral {
    Collateral::from_json(&common::read(dir, f)).unwrap()
}

fn assert_crypto_valid(o: &TdxOutcome, what: &str) {
    assert!(o.crypto_valid, "{what}: {:?}", o.errors);
    assert_eq!(
        o.chain,
        [
            "Intel SGX PCK Certificate",
            "Intel SGX PCK Platform CA",
            "Intel SGX Root CA"
        ],
        "{what}"
    );
}

#[test]
fn dcap_qvl_quotes() {
    let d = testdata_or_skip!();
    let dir = d.join("tdx/dcap-qvl");
    let v = TdxVerifier::new().unwrap();
    let t = at("2025-06-20T00:00:00Z");
    let coll = collateral(&dir, "tdx_quote_collateral.json");

    let q = quote(&dir, "tdx_quote");
    assert_eq!(q.version(), 4);
    assert_eq!(q.trailing, 70, "70 zero bytes after the signature data");
    let o = v.verify(&q, Some(&coll), t);
    assert!(o.is_valid(), "{:?}", o.errors);
    assert_crypto_valid(&o, "tdx_quote");
    let tcb = o.tcb.unwrap();
    assert_eq!(tcb.status, "UpToDate");
    assert!(tcb.advisory_ids.is_empty());
    assert_eq!(tcb.qe_status, "UpToDate");
    assert_eq!(hex::encode(o.fmspc.unwrap()), "b0c06f000000");
    // Second time from the TCB cache: same verdict; outside the collateral window the cache
    // does not answer and the CRL/collateral dates reject it.
    let again = v.verify(&q, Some(&coll), t);
    assert_eq!(
        again.tcb.as_ref().map(|t| t.status.as_str()),
        Some("UpToDate")
    );
    let late = v.verify(&q, Some(&coll), at("2026-07-01T00:00:00Z"));
    assert!(!late.is_valid() && late.tcb.is_none(), "{:?}", late.errors);
    let early = v.verify(&q, Some(&coll), at("2025-06-01T00:00:00Z"));
    assert!(!early.is_valid(), "{:?}", early.errors);

    for f in ["quote-from-tappd.hex", "tdx-quote.hex"] {
        let q = quote(&dir, f);
        let o = v.verify(&q, Some(&coll), t);
        assert_crypto_valid(&o, f);
        assert_eq!(hex::encode(o.fmspc.unwrap()), "b0c06f000000");
        assert!(
            o.errors.iter().any(|e| e.contains("No matching TCB level")),
            "{f}: {:?}",
            o.errors
        );
    }

    let q = quote(&dir, "tdx_quote_outdated");
    assert_eq!(q.version(), 5);
    let o = v.verify(
        &q,
        Some(&collateral(&dir, "tdx_quote_outdated_collateral.json")),
        at("2026-02-19T00:00:00Z"),
    );
    assert_crypto_valid(&o, "outdated");
    assert!(
        o.errors.iter().any(|e| e.contains("No matching TCB level")),
        "{:?}",
        o.errors
    );

    let q = quote(&dir, "near_quote_hex.txt");
    let o = v.verify(
        &q,
        Some(&collateral(&dir, "near_quote_collateral.json")),
        at("2025-09-03T00:00:00Z"),
    );
    assert!(o.is_valid(), "{:?}", o.errors);
    assert_eq!(hex::encode(o.fmspc.unwrap()), "20a06f000000");
    let tcb = o.tcb.unwrap();
    assert_eq!(
        (tcb.status.as_str(), tcb.qe_status.as_str()),
        ("UpToDate", "UpToDate")
    );
}

fn go_collateral(d: &Path, tcb: &str) -> Collateral {
    let g = d.join("tdx/go-tdx-guest");
    let chain =
        String::from_utf8(common::read(d, "tdx/dcap-qvl/tcb_info_issuer_chain.pem")).unwrap();
    let pck_chain = chain.clone();
    Collateral::assemble(
        &common::read(&g, tcb),
        &common::read(&g, "sample_qeIdentity_response.json"),
        &chain,
        &common::read(&g, "rootcrl.der"),
        &common::read(&g, "pckcrl.der"),
        &pck_chain,
    )
    .unwrap()
}

#[test]
fn go_tdx_guest_quotes() {
    let d = testdata_or_skip!();
    let g = d.join("tdx/go-tdx-guest");
    let v = TdxVerifier::new().unwrap();

    // SPR E4 with 39 bytes of upstream text appended: crypto valid, text ignored.
    let q = quote(&g, "tdx_prod_quote_SPR_E4.dat");
    assert_eq!(q.trailing, 39);
    let o = v.verify(&q, None, at("2023-07-01T00:00:00Z"));
    assert_crypto_valid(&o, "SPR_E4");
    assert!(o.is_valid());
    assert_eq!(hex::encode(o.fmspc.unwrap()), "50806f000000");
    assert_eq!(
        &o.measurements.as_ref().unwrap().tee_tcb_svn[..3],
        &[3, 0, 4]
    );
    // 2023 collateral + the only TCB Signing certificate (from 2025-05-06): no single time
    // works, so the right outcome is a clear time rejection.
    let coll = go_collateral(&d, "sample_tcbInfo_response.json");
    for t in ["2023-07-01T00:00:00Z", "2025-06-01T00:00:00Z"] {
        let o = v.verify(&q, Some(&coll), at(t));
        assert!(!o.is_valid(), "{t}");
        assert!(o.crypto_valid, "{t}");
        let msg = o.errors.join("; ");
        assert!(
            msg.contains("expired")
                || msg.contains("future")
                || msg.contains("NotValidYet")
                || msg.contains("Expired"),
            "{t}: {msg}"
        );
    }

    // v5 quote: UpToDate with the v5 TCB info, a QE identity and CRLs of the same month.
    let q = quote(&g, "quote_v5_sample.dat");
    assert_eq!(q.version(), 5);
    assert_eq!(q.body_kind(), "TD1.5");
    let feb = collateral(
        &d.join("tdx/dcap-qvl"),
        "tdx_quote_outdated_collateral.json",
    );
    let chain =
        String::from_utf8(common::read(&d, "tdx/dcap-qvl/tcb_info_issuer_chain.pem")).unwrap();
    let coll = Collateral::assemble(
        &common::read(&g, "sample_tcbinfo_response_v5.json"),
        &common::read(&g, "sample_qeIdentity_response.json"),
        &chain,
        &[],
        &[],
        &chain,
    )
    .unwrap()
    .with_qe_identity_from(&feb)
    .with_crls_from(&feb);
    let o = v.verify(&q, Some(&coll), at("2026-02-19T00:00:00Z"));
    assert!(o.is_valid(), "{:?}", o.errors);
    assert_eq!(hex::encode(o.fmspc.unwrap()), "90c06f000000");
    let tcb = o.tcb.unwrap();
    assert_eq!(
        (tcb.status.as_str(), tcb.qe_status.as_str()),
        ("UpToDate", "UpToDate")
    );

    // COS quote zero-padded to 8000 bytes: crypto valid, padding ignored.
    let q = quote(&g, "cos-113-tdx-quote.dat");
    assert!(q.trailing > 0);
    assert_eq!(q.bytes().len() + q.trailing, 8000);
    let o = v.verify(&q, None, at("2025-01-01T00:00:00Z"));
    assert_crypto_valid(&o, "cos");
    assert_eq!(hex::encode(o.fmspc.unwrap()), "00806f050000");
}

#[test]
fn coco_trustee_quotes() {
    let d = testdata_or_skip!();
    let c = d.join("tdx/coco-trustee");
    let v = TdxVerifier::new().unwrap();
    let t = at("2025-11-01T00:00:00Z");

    let q = quote(&c, "tdx_quote_4.dat");
    assert_eq!(q.trailing, 0, "exact length");
    let o = v.verify(&q, None, t);
    assert_crypto_valid(&o, "quote_4");
    assert_eq!(hex::encode(o.fmspc.unwrap()), "50806f000000");
    // With the 2023 sample TCB info: rejection naming the time, not a pass.
    let o = v.verify(
        &q,
        Some(&go_collateral(&d, "sample_tcbInfo_response.json")),
        t,
    );
    assert!(o.crypto_valid && !o.is_valid(), "{:?}", o.errors);

    let q = quote(&c, "tdx_quote_5.dat");
    assert_eq!(q.version(), 5);
    let o = v.verify(&q, None, t);
    assert_crypto_valid(&o, "quote_5");
    assert_eq!(hex::encode(o.fmspc.unwrap()), "90c06f000000");
    // Below every level of the 90c06f TCB info → no matching TCB level.
    let feb = collateral(
        &d.join("tdx/dcap-qvl"),
        "tdx_quote_outdated_collateral.json",
    );
    let o = v.verify(&q, Some(&feb), at("2026-02-19T00:00:00Z"));
    assert!(o.crypto_valid);
    assert!(
        o.errors.iter().any(|e| e.contains("No matching TCB level")),
        "{:?}",
        o.errors
    );

    let q = quote(&c, "tdx_quote_6.dat");
    assert_eq!(q.bytes().len() + q.trailing, 5006);
    let o = v.verify(&q, None, t);
    assert_crypto_valid(&o, "quote_6");
    assert_eq!(hex::encode(o.fmspc.unwrap()), "00a06d080000");

    let q = quote(&c, "az-td-quote.bin");
    assert_eq!(q.bytes().len() + q.trailing, 5006);
    let o = v.verify(&q, None, t);
    assert_crypto_valid(&o, "azure");
    assert_eq!(hex::encode(o.fmspc.unwrap()), "00806f050000");
}

fn no_crl_collateral(d: &Path, tcb: &Path, qe: &Path) -> Collateral {
    let chain =
        String::from_utf8(common::read(d, "tdx/dcap-qvl/tcb_info_issuer_chain.pem")).unwrap();
    Collateral::assemble(
        &std::fs::read(tcb).unwrap(),
        &std::fs::read(qe).unwrap(),
        &chain,
        &[],
        &[],
        &chain,
    )
    .unwrap()
}

#[test]
fn coco_tcb_info_gives_out_of_date_without_crls() {
    // tcbInfo.json / enclaveIdentity.json (2025-10/11): no CRL in shared/ covers that month,
    // so dcap-qvl cannot run; the CRL-less evaluation (signatures, dates, levels) can.
    let d = testdata_or_skip!();
    let c = d.join("tdx/coco-trustee");
    let coll = no_crl_collateral(&d, &c.join("tcbInfo.json"), &c.join("enclaveIdentity.json"));
    assert!(!coll.has_crls());
    let v = TdxVerifier::new().unwrap();
    let q = quote(&c, "tdx_quote_6.dat");
    let o = v.verify(&q, Some(&coll), at("2025-11-01T00:00:00Z"));
    assert!(o.is_valid(), "{:?}", o.errors);
    let tcb = o.tcb.unwrap();
    assert_eq!(tcb.status, "OutOfDate");
    assert_eq!(tcb.qe_status, "UpToDate");
    assert!(
        o.warnings
            .iter()
            .any(|w| w.contains("revocation not checked"))
    );
    // Outside the TCB info window: a time rejection.
    let o = v.verify(&q, Some(&coll), at("2025-12-01T00:00:00Z"));
    assert!(
        o.errors.iter().any(|e| e.contains("expired")),
        "{:?}",
        o.errors
    );
    // A tampered TCB info signature is caught.
    let mut bad_tcb = common::read(&c, "tcbInfo.json");
    let pos = bad_tcb.windows(9).position(|w| w == b"OutOfDate").unwrap();
    bad_tcb[pos] = b'o';
    let dir = tempfile_dir();
    let p = dir.join("tcb.json");
    std::fs::write(&p, &bad_tcb).unwrap();
    let coll = no_crl_collateral(&d, &p, &c.join("enclaveIdentity.json"));
    let o = v.verify(&q, Some(&coll), at("2025-11-01T00:00:00Z"));
    assert!(
        o.errors.iter().any(|e| e.contains("signature")),
        "{:?}",
        o.errors
    );
}

fn tempfile_dir() -> std::path::PathBuf {
    let p = std::env::temp_dir().join(format!("tribune-attest-{}", std::process::id()));
    std::fs::create_dir_all(&p).unwrap();
    p
}

#[test]
fn crl_less_evaluation_agrees_with_dcap_qvl() {
    let d = testdata_or_skip!();
    let dq = d.join("tdx/dcap-qvl");
    let v = TdxVerifier::new().unwrap();
    let strip = |coll: &Collateral| coll.clone().without_crls();
    let june = collateral(&dq, "tdx_quote_collateral.json");
    let t = at("2025-06-20T00:00:00Z");
    for (f, coll, t, want) in [
        ("tdx_quote", &june, t, Some("UpToDate")),
        ("quote-from-tappd.hex", &june, t, None),
        ("tdx-quote.hex", &june, t, None),
    ] {
        let q = quote(&dq, f);
        let a = v.verify(&q, Some(coll), t);
        let b = v.verify(&q, Some(&strip(coll)), t);
        assert_eq!(
            a.tcb.as_ref().map(|x| x.status.as_str()),
            want,
            "{f} dcap-qvl"
        );
        assert_eq!(
            b.tcb.as_ref().map(|x| x.status.as_str()),
            want,
            "{f} crl-less"
        );
        if want.is_none() {
            assert!(
                b.errors.iter().any(|e| e.contains("No matching TCB level")),
                "{f}: {:?}",
                b.errors
            );
        }
    }
    let near = collateral(&dq, "near_quote_collateral.json");
    let q = quote(&dq, "near_quote_hex.txt");
    let o = v.verify(&q, Some(&strip(&near)), at("2025-09-03T00:00:00Z"));
    assert_eq!(o.tcb.map(|x| x.status), Some("UpToDate".to_string()));
    // The other 90c06f TCB info (go-tdx-guest v5 sample): tdx_quote_5.dat is below every
    // level, quote_v5_sample.dat is UpToDate.
    let g = d.join("tdx/go-tdx-guest");
    let feb = collateral(&dq, "tdx_quote_outdated_collateral.json");
    let v5 = no_crl_collateral(
        &d,
        &g.join("sample_tcbinfo_response_v5.json"),
        &g.join("sample_qeIdentity_response.json"),
    )
    .with_qe_identity_from(&feb);
    let t = at("2026-02-19T00:00:00Z");
    let o = v.verify(
        &quote(&d.join("tdx/coco-trustee"), "tdx_quote_5.dat"),
        Some(&v5),
        t,
    );
    assert!(o.crypto_valid);
    assert!(
        o.errors.iter().any(|e| e.contains("No matching TCB level")),
        "{:?}",
        o.errors
    );
    let o = v.verify(&quote(&g, "quote_v5_sample.dat"), Some(&v5), t);
    assert_eq!(
        o.tcb.map(|x| x.status),
        Some("UpToDate".to_string()),
        "{:?}",
        o.errors
    );
    // 2023 collateral with the 2025 signing certificate: a time rejection at any time.
    let coll = no_crl_collateral(
        &d,
        &g.join("sample_tcbInfo_response.json"),
        &g.join("sample_qeIdentity_response.json"),
    );
    let q = quote(&g, "tdx_prod_quote_SPR_E4.dat");
    for t in ["2023-07-01T00:00:00Z", "2025-06-01T00:00:00Z"] {
        let o = v.verify(&q, Some(&coll), at(t));
        assert!(o.crypto_valid && !o.is_valid(), "{t}");
        assert!(
            o.errors
                .iter()
                .any(|e| e.contains("not yet valid") || e.contains("expired")),
            "{t}: {:?}",
            o.errors
        );
    }
}

#[test]
fn every_byte_of_the_signed_region_matters() {
    let d = testdata_or_skip!();
    let dir = d.join("tdx/dcap-qvl");
    let raw = common::read(&dir, "tdx_quote");
    let v = TdxVerifier::new().unwrap();
    let t = at("2025-06-20T00:00:00Z");
    let q = TdxQuote::parse(&raw).unwrap();
    assert!(v.verify(&q, None, t).is_valid());
    let n = q.signed_len();
    for i in 0..n {
        let mut b = raw.clone();
        b[i] ^= 0x01;
        if let Ok(q) = TdxQuote::parse(&b) {
            let o = v.verify(&q, None, t);
            assert!(!o.is_valid(), "flip at {i} accepted");
        }
    }
}

#[test]
fn truncated_padded_and_garbage_inputs() {
    let d = testdata_or_skip!();
    let raw = common::read(&d, "tdx/dcap-qvl/tdx_quote");
    let q = TdxQuote::parse(&raw).unwrap();
    let len = q.bytes().len();
    for n in [0, 10, 47, 48, 600, len - 1] {
        assert!(TdxQuote::parse(&raw[..n]).is_err(), "truncated to {n}");
    }
    let mut padded = raw.clone();
    padded.extend_from_slice(&[0; 1000]);
    assert_eq!(TdxQuote::parse(&padded).unwrap().bytes(), q.bytes());
    let garbage: Vec<u8> = (0..5000u32).map(|i| (i * 7919 % 251) as u8).collect();
    assert!(TdxQuote::parse(&garbage).is_err());
    let mut hdr_only = raw[..48].to_vec();
    hdr_only.extend_from_slice(&[0xff; 700]);
    assert!(TdxQuote::parse(&hdr_only).is_err());
}

#[test]
fn expired_crl_is_named_with_its_dates() {
    // tdx_quote's collateral (2025-06-19, CRLs to ≈07-19) a year later: the refusal names the
    // CRL and gives dates, not webpki's `CrlExpired { time: UnixTime(…) }`.
    let d = testdata_or_skip!();
    let dq = d.join("tdx/dcap-qvl");
    let v = TdxVerifier::new().unwrap();
    let coll = collateral(&dq, "tdx_quote_collateral.json");
    let t = at("2026-07-01T00:00:00Z");
    let problems = coll.crl_problems(t);
    assert!(!problems.is_empty());
    let o = v.verify(&quote(&dq, "tdx_quote"), Some(&coll), t);
    assert!(!o.is_valid());
    let e = o.errors.join("\n");
    eprintln!("{e}");
    assert!(e.contains("CRL (issuer Intel SGX"), "{e}");
    assert!(e.contains("expired: thisUpdate 2025-"), "{e}");
    assert!(e.contains("verification time 2026-07-01T00:00:00Z"), "{e}");
    assert!(!e.contains("UnixTime("), "{e}");
    // Inside the window no CRL is reported.
    assert!(coll.crl_problems(at("2025-06-20T00:00:00Z")).is_empty());
}

#[test]
fn truncated_quote_says_how_many_bytes_it_has_and_needs() {
    let d = testdata_or_skip!();
    let raw = common::read(&d, "tdx/dcap-qvl/tdx_quote");
    let len = TdxQuote::parse(&raw).unwrap().bytes().len();
    assert_eq!(len, 4936);
    for (n, want) in [
        (20, "20 bytes, need 48".to_string()),
        (600, "600 bytes, need 636".to_string()),
        (2000, format!("2000 bytes, need {len}")),
        (len - 1, format!("{} bytes, need {len}", len - 1)),
    ] {
        let e = TdxQuote::parse(&raw[..n]).unwrap_err().to_string();
        assert!(e.contains(&want), "{n}: {e}");
    }
    // A v5 quote (TD 1.5 body): the body size comes from its descriptor.
    let q5 = common::read(&d, "tdx/go-tdx-guest/quote_v5_sample.dat");
    let len5 = TdxQuote::parse(&q5).unwrap().bytes().len();
    let e = TdxQuote::parse(&q5[..700]).unwrap_err().to_string();
    assert!(e.contains("700 bytes, need 706"), "{e}");
    let e = TdxQuote::parse(&q5[..len5 - 10]).unwrap_err().to_string();
    assert!(e.contains(&format!("need {len5}")), "{e}");
}

#[test]
fn sept_ve_disable_is_a_policy_reason() {
    // az-td-quote.bin (Azure) and tdx_prod_quote_SPR_E4.dat have SEPT_VE_DISABLE clear; every
    // other shared quote has it set. The check is policy (`allow_sept_ve`), reported as a
    // policy reason beside a valid signature and chain — on both TCB paths alike (dcap-qvl's
    // own refusal of it is turned into the same policy reason; shared/ has no SEPT-clear
    // quote with matching collateral to run that path on).
    use tribune_attest::evidence::{Inputs, VerifierConfig, Verifiers, verify_evidence};
    let d = testdata_or_skip!();
    let vs = Verifiers::new().unwrap();
    let t = at("2025-11-01T00:00:00Z");
    let mut cfg = VerifierConfig::default();
    for f in [
        "tdx/coco-trustee/az-td-quote.bin",
        "tdx/go-tdx-guest/tdx_prod_quote_SPR_E4.dat",
    ] {
        let raw = common::read(&d, f);
        assert!(!TdxQuote::parse(&raw).unwrap().sept_ve_disabled(), "{f}");
        cfg.policy.allow_sept_ve = false;
        let r = verify_evidence(&vs, &cfg, &raw, &Inputs::default(), t).unwrap();
        assert!(!r.valid && r.signature_and_chain_valid, "{f}");
        assert_eq!(r.reasons.len(), 1, "{f}: {:?}", r.reasons);
        assert!(
            r.reasons[0].starts_with("policy: TD attribute SEPT_VE_DISABLE is clear"),
            "{f}: {:?}",
            r.reasons
        );
        cfg.policy.allow_sept_ve = true;
        let r = verify_evidence(&vs, &cfg, &raw, &Inputs::default(), t).unwrap();
        assert!(r.valid, "{f}: {:?}", r.reasons);
    }
    // Quotes with the bit set are not affected.
    for f in [
        "tdx/dcap-qvl/tdx_quote",
        "tdx/go-tdx-guest/quote_v5_sample.dat",
    ] {
        assert!(quote(&d, f).sept_ve_disabled(), "{f}");
    }
    cfg.policy.allow_sept_ve = false;
    let dq = d.join("tdx/dcap-qvl");
    let coll = collateral(&dq, "tdx_quote_collateral.json");
    let inputs = Inputs {
        certs: &[],
        collateral: Some(&coll),
    };
    let raw = common::read(&dq, "tdx_quote");
    let r = verify_evidence(&vs, &cfg, &raw, &inputs, at("2025-06-20T00:00:00Z")).unwrap();
    assert!(r.valid, "{:?}", r.reasons);
    assert_eq!(r.tcb.unwrap().status, "UpToDate");
}
