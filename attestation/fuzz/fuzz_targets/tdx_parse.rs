//! TDX quote parsing and the crypto layer (PCK chain PEM, x509, signatures) on arbitrary
//! bytes: must never panic.
#![no_main]

use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use tribune_attest::VerifyAt;
use tribune_attest::tdx::{TdxQuote, TdxVerifier};

static VERIFIER: OnceLock<TdxVerifier> = OnceLock::new();

fuzz_target!(|data: &[u8]| {
    let v = VERIFIER.get_or_init(|| TdxVerifier::new().expect("embedded root"));
    if let Ok(q) = TdxQuote::parse(data) {
        let _ = q.measurements();
        let _ = q.pck_chain_pem();
        let _ = v.verify(&q, None, VerifyAt(1_750_000_000));
    }
});
