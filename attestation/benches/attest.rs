//! Throughput of the hot paths: SNP and TDX verification (chain cached per VEK/PCK, and cold),
//! usage-report MAC verification, checkpoint signatures (single and batched).
//!
//! Run: `cargo bench -p tribune-attest --bench attest`. The evidence benches need the shared
//! test data (see tests/common); they print `skipped:` without it.

#[path = "../tests/common/mod.rs"]
mod common;

use criterion::{BatchSize, Criterion, Throughput, criterion_group, criterion_main};
use ed25519_dalek::VerifyingKey;
use tribune_attest::VerifyAt;
use tribune_attest::session::{ControllerExchange, EnclaveKeys};
use tribune_attest::snp::{SnpReport, SnpVerifier, load_certs};
use tribune_attest::tdx::{Collateral, TdxQuote, TdxVerifier};
use tribune_attest::usage::{
    Checkpoint, EnclaveId, Freshness, MacKey, Producer, StreamVerifier, UsageSample,
    verify_checkpoint_signatures,
};

fn evidence(c: &mut Criterion) {
    let Some(d) = common::testdata() else {
        eprintln!("skipped: evidence benches (no test data)");
        return;
    };
    let snp = SnpVerifier::new().unwrap();
    let raw = std::fs::read(d.join("snp/virtee-sev/report_milan.bin")).unwrap();
    let report = SnpReport::parse(&raw).unwrap();
    let certs = load_certs(&d.join("snp/virtee-sev/vcek_milan.der")).unwrap();
    let t = VerifyAt::parse_rfc3339("2025-01-01T00:00:00Z").unwrap();
    assert!(snp.verify(&report, &certs, t).is_valid());
    let mut g = c.benchmark_group("snp");
    g.throughput(Throughput::Elements(1));
    g.bench_function("verify_cached_chain", |b| {
        b.iter(|| snp.verify(&report, &certs, t))
    });
    g.bench_function("verify_cold_chain", |b| {
        b.iter(|| {
            snp.clear_cache();
            snp.verify(&report, &certs, t)
        })
    });
    g.bench_function("parse_only", |b| b.iter(|| SnpReport::parse(&raw).unwrap()));
    g.finish();

    let tdx = TdxVerifier::new().unwrap();
    let qraw = std::fs::read(d.join("tdx/dcap-qvl/tdx_quote")).unwrap();
    let q = TdxQuote::parse(&qraw).unwrap();
    let coll = Collateral::from_json(
        &std::fs::read(d.join("tdx/dcap-qvl/tdx_quote_collateral.json")).unwrap(),
    )
    .unwrap();
    let t = VerifyAt::parse_rfc3339("2025-06-20T00:00:00Z").unwrap();
    assert!(tdx.verify(&q, Some(&coll), t).is_valid());
    let mut g = c.benchmark_group("tdx");
    g.throughput(Throughput::Elements(1));
    g.bench_function("verify_cached_chain", |b| {
        b.iter(|| tdx.verify(&q, None, t))
    });
    g.bench_function("verify_cold_chain", |b| {
        b.iter(|| {
            tdx.clear_cache();
            tdx.verify(&q, None, t)
        })
    });
    g.bench_function("parse_and_verify_cached", |b| {
        b.iter(|| tdx.verify(&TdxQuote::parse(&qraw).unwrap(), None, t))
    });
    g.bench_function("verify_with_collateral_cached", |b| {
        b.iter(|| tdx.verify(&q, Some(&coll), t))
    });
    g.bench_function("verify_with_collateral_cold_dcap_qvl", |b| {
        b.iter(|| {
            tdx.clear_cache();
            tdx.verify(&q, Some(&coll), t)
        })
    });
    g.finish();
}

const NOW_NS: u64 = 2_000_000_000_000;

fn usage_stream(
    n: u64,
) -> (
    Vec<tribune_attest::usage::MacReport>,
    Vec<Checkpoint>,
    StreamVerifier,
    VerifyingKey,
) {
    let keys = EnclaveKeys::from_seeds([1; 32], [2; 32]);
    let id = EnclaveId([7; 16]);
    let ctl = ControllerExchange::from_parts([3; 32], [4; 32]);
    let rd = keys.report_data(ctl.nonce());
    let bound = ctl
        .bind(id, keys.ed25519_public(), keys.x25519_public(), &rd)
        .unwrap();
    let vk = VerifyingKey::from_bytes(&keys.ed25519_public()).unwrap();
    let mut p = Producer::new(id, keys, ctl.nonce(), &ctl.eph_public(), 10).unwrap();
    let mut wires = Vec::new();
    let mut cps = Vec::new();
    for i in 0..n {
        let e = p.emit(&UsageSample {
            window_start_ns: NOW_NS - 1_000_000_000 + i,
            window_len_ns: 100_000_000,
            cpu_ns: i,
            ..Default::default()
        });
        wires.push(e.report);
        cps.extend(e.checkpoint);
    }
    let v = StreamVerifier::new(&bound, Freshness::default()).unwrap();
    (wires, cps, v, vk)
}

fn usage(c: &mut Criterion) {
    let (wires, cps, v, vk) = usage_stream(1000);
    let mut g = c.benchmark_group("usage");
    let key = MacKey::new(&tribune_attest::session::SessionKey::from_bytes([9; 32]));
    // A v2 report (86 bytes), as producers write them.
    let plain = tribune_attest::usage::UsageReport::decode(wires[0].body()).unwrap();
    let sealed = key.seal(&plain.encode());
    g.throughput(Throughput::Elements(1));
    g.bench_function("mac_open_one", |b| b.iter(|| key.open(&sealed).unwrap()));
    g.throughput(Throughput::Elements(1000));
    g.bench_function("stream_verify_1000_reports", |b| {
        b.iter_batched(
            || {
                let (_, _, v2, _) = usage_stream(0);
                v2
            },
            |mut sv| {
                for w in &wires {
                    sv.verify_report(w, NOW_NS).unwrap();
                }
                sv
            },
            BatchSize::SmallInput,
        )
    });
    drop(v);
    g.throughput(Throughput::Elements(1));
    let cp = cps[0];
    g.bench_function("checkpoint_signature_single", |b| {
        b.iter(|| cp.verify_signature(&vk).unwrap())
    });
    let items: Vec<(Checkpoint, VerifyingKey)> =
        (0..64).map(|i| (cps[i % cps.len()], vk)).collect();
    g.throughput(Throughput::Elements(64));
    g.bench_function("checkpoint_signatures_batch64", |b| {
        b.iter(|| verify_checkpoint_signatures(&items))
    });
    g.finish();
}

fn config() -> Criterion {
    Criterion::default()
        .warm_up_time(std::time::Duration::from_millis(800))
        .measurement_time(std::time::Duration::from_secs(3))
        .sample_size(30)
}

criterion_group! { name = benches; config = config(); targets = usage, evidence }
criterion_main!(benches);
