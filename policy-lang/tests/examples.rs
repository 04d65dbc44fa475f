//! Every example policy checks clean (no errors, no warnings), alone and all together, and is
//! in canonical format.

fn examples() -> Vec<(String, String)> {
    let dir = manifest_dir().join("../examples/policies");
    let mut v: Vec<(String, String)> = std::fs::read_dir(&dir)
        .expect("examples/policies")
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|e| e == "tribune"))
        .map(|p| {
            let name = p
                .file_name()
                .and_then(|n| n.to_str())
                .unwrap_or("?")
                .to_string();
            (name, std::fs::read_to_string(&p).expect("read example"))
        })
        .collect();
    v.sort();
    v
}

#[test]
fn every_example_checks_clean_and_is_formatted() {
    let all = examples();
    assert!(all.len() >= 8, "at least eight example policies");
    let mut policies = Vec::new();
    for (name, src) in &all {
        let out = tribune_policy::check(name, src);
        assert!(
            out.diagnostics.is_empty(),
            "{name}:\n{}",
            tribune_policy::render_diagnostics(name, src, &out.diagnostics)
        );
        assert!(!out.policies.is_empty(), "{name} defines a policy");
        let formatted = tribune_policy::format(src).expect("formats");
        assert_eq!(
            &formatted, src,
            "{name} is not in canonical format (run `tribune policy fmt`)"
        );
        policies.extend(out.policies);
    }
    let cross = tribune_policy::check_set(&policies);
    assert!(
        cross.is_empty(),
        "examples conflict with each other: {cross:?}"
    );
}

#[test]
fn examples_together_use_every_construct() {
    let text: String = examples()
        .into_iter()
        .map(|(_, s)| s)
        .collect::<Vec<_>>()
        .join("\n");
    for needle in [
        "match",
        "tenant ==",
        "labels.",
        "tee in",
        "tee ==",
        "measurement in",
        "class",
        "priority",
        "preempt",
        "weight",
        "precedence",
        "guarantee {",
        "limit {",
        "cpu = 0.25",
        "250m",
        "MiB",
        "GiB",
        "Mbit",
        "Gbit",
        "gpu =",
        "ingress",
        "egress",
        "when",
        " for ",
        "host.cpu.utilization",
        "cluster.",
        ".avg(",
        ".max(",
        ".p95(",
        "time in",
        "attestation.failed",
        "attestation.tcb",
        "reattestation.failed",
        "usage.divergence",
        "on over_limit",
        "throttle now",
        "suspend after 30s",
        "migrate after 2m",
        "notify",
        "reclaim {",
        "keep",
        "return",
        "of guarantee",
        "attest {",
        "min_tcb",
        "debug = forbidden",
        "simulated = forbidden",
        "simulated = allowed",
        "every",
        "talk {",
        "allow to",
        "deny to *",
        "share",
        "limit.cpu =",
        "weight =",
        "priority =",
        "||",
        "&&",
        "!=",
    ] {
        assert!(text.contains(needle), "no example uses `{needle}`");
    }
}

/// This package's directory, read at run time (`cargo test` sets it) so a test binary reused
/// from a shared target dir built in another checkout still finds this checkout's files.
fn manifest_dir() -> std::path::PathBuf {
    std::env::var_os("CARGO_MANIFEST_DIR")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR")))
}
