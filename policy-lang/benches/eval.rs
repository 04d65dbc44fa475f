//! Evaluation throughput: one realistic policy (the DESIGN.md §8 policy: selector, two
//! dynamic rules, three ladders, reclamation, attestation) against one enclave's facts, and
//! the whole example set (12 policies, precedence layering).
//!
//! `cargo bench -p tribune-policy --bench eval`; evaluations/s = 1 / time per iteration.

use std::hint::black_box;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use tribune_policy::{Agg, Facts, PolicySet, Resource, TeeKind, UsageFact, check};

const POLICY: &str = include_str!("../../examples/policies/acme-batch.tribune");

fn facts() -> Facts {
    let mut f = Facts::default();
    f.enclave.tenant = "acme".into();
    f.enclave.labels.insert("tier".into(), "batch".into());
    f.enclave.labels.insert("zone".into(), "eu-1".into());
    f.enclave.tee = TeeKind::SevSnp;
    f.enclave.measurement = "3a7f0c1d9e2b4a6f".into();
    f.minute_of_day = Some(14 * 60 + 30);
    f.host.cpu = 85.0;
    f.host.memory = 60.0;
    f.cluster.cpu = 55.0;
    f.usage.push(UsageFact {
        resource: Resource::Cpu,
        agg: Agg::P95,
        window_s: 300,
        value: 40.0,
    });
    f.usage.push(UsageFact {
        resource: Resource::Cpu,
        agg: Agg::Avg,
        window_s: 60,
        value: 30.0,
    });
    f.usage.push(UsageFact {
        resource: Resource::Memory,
        agg: Agg::Max,
        window_s: 60,
        value: 1.5e9,
    });
    f.attestation.tcb_version = 9;
    f.events.divergence_pct = 2.0;
    f.over_limit_ms = 45_000;
    f.held_ms.insert("when#1".into(), 40_000);
    f.held_ms.insert("on#2".into(), 0);
    f.held_ms.insert("reclaim".into(), 120_000);
    f
}

fn bench(c: &mut Criterion) {
    let out = check("acme-batch.tribune", POLICY);
    assert!(!out.has_errors());
    let policy = out.policies.into_iter().next().expect("one policy");
    let f = facts();
    let d = policy.evaluate(&f);
    assert!(
        d.matched && d.limit[0].value == Some(500.0),
        "the benchmark exercises the rules"
    );

    let mut g = c.benchmark_group("evaluate");
    g.throughput(Throughput::Elements(1));
    g.bench_function("acme-batch (one policy)", |b| {
        b.iter(|| black_box(&policy).evaluate(black_box(&f)))
    });

    let dir = manifest_dir().join("../examples/policies");
    let mut all = Vec::new();
    let mut names: Vec<_> = std::fs::read_dir(dir)
        .expect("examples")
        .filter_map(|e| e.ok().map(|e| e.path()))
        .collect();
    names.sort();
    for p in names {
        let src = std::fs::read_to_string(&p).expect("read");
        all.extend(check("x", &src).policies);
    }
    let set = PolicySet::new(all);
    g.bench_function("example set (12 policies)", |b| {
        b.iter(|| black_box(&set).evaluate(black_box(&f)))
    });
    g.finish();

    c.bench_function("check acme-batch (parse+check+compile)", |b| {
        b.iter(|| check("p", black_box(POLICY)))
    });
}

criterion_group!(benches, bench);
criterion_main!(benches);

/// This package's directory, read at run time (`cargo test` sets it) so a test binary reused
/// from a shared target dir built in another checkout still finds this checkout's files.
fn manifest_dir() -> std::path::PathBuf {
    std::env::var_os("CARGO_MANIFEST_DIR")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR")))
}
