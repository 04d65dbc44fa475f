//! SNP report parsing and verification on arbitrary bytes: must never panic.
#![no_main]

use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use tribune_attest::VerifyAt;
use tribune_attest::snp::{SnpReport, SnpVerifier, parse_cert_table};

static VERIFIER: OnceLock<SnpVerifier> = OnceLock::new();

fuzz_target!(|data: &[u8]| {
    let v = VERIFIER.get_or_init(|| SnpVerifier::new().expect("embedded roots"));
    let _ = parse_cert_table(data);
    let _ = tribune_attest::evidence::detect(data);
    if let Ok(r) = SnpReport::parse(data) {
        let _ = r.signature_rs();
        let _ = r.product_hint();
        let _ = v.verify(&r, &[], VerifyAt(1_700_000_000));
    }
});
