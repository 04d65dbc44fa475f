//! Smoke runs of the attestation-loop benchmarks (and the policy planner's, in process): each
//! scenario runs end to end in seconds and prints its JSON line. No figure is asserted (speed
//! is claimed only in bench/README.md); the counts that show the loop worked are.

use std::process::Command;

use serde_json::Value;

const BIN: &str = env!("CARGO_BIN_EXE_tribune");

/// Runs `tribune bench ARGS --output json`; returns the JSON line (the last line of stdout).
fn bench(args: &[&str]) -> Value {
    let out = Command::new(BIN)
        .arg("bench")
        .args(args)
        .args(["--output", "json"])
        .output()
        .expect("run tribune bench");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "tribune bench {args:?} failed\nstdout:\n{stdout}\nstderr:\n{stderr}"
    );
    let line = stdout.lines().last().unwrap_or_default();
    serde_json::from_str(line)
        .unwrap_or_else(|e| panic!("not a JSON line ({e}): {line:?}\nstderr:\n{stderr}"))
}

#[test]
fn ingest_smoke() {
    let v = bench(&[
        "ingest",
        "--hosts",
        "2",
        "--enclaves-per-host",
        "3",
        "--seconds",
        "2",
        "--over-limit-every",
        "3",
    ]);
    assert_eq!(v["scenario"], "ingest");
    let r = &v["result"];
    // 6 enclaves × 20 reports, every one verified, checkpointed and acknowledged.
    assert_eq!(r["sent_reports"], 120, "{r}");
    assert_eq!(r["verified_reports"], 120, "{r}");
    // Both injected over-limit enclaves were decided and their caps planned.
    assert_eq!(r["over_limit_injected"], 2, "{r}");
    assert_eq!(r["decided_ms"]["n"], 2, "{r}");
    assert_eq!(r["planned_ms"]["n"], 2, "{r}");
    assert_eq!(r["controllers"].as_array().map(Vec::len), Some(3), "{r}");
}

#[test]
fn enforce_latency_smoke() {
    let v = bench(&["enforce-latency", "--trials", "2"]);
    assert_eq!(v["scenario"], "enforce-latency");
    if v["skipped"].is_string() {
        eprintln!("skipped: enforce_latency_smoke: {}", v["skipped"]);
        return;
    }
    assert_eq!(v["result"]["latency_ms"]["n"], 2, "{v}");
    assert_eq!(v["result"]["decided_ms"]["n"], 2, "{v}");
}

#[test]
fn plan_smoke() {
    let v = bench(&[
        "plan",
        "--enclaves",
        "40",
        "--seconds",
        "180",
        "--per-host",
        "10",
        "--rounds",
        "1",
        "--seed",
        "3",
    ]);
    assert_eq!(v["scenario"], "plan");
    let r = &v["result"];
    assert_eq!(r["windows"], 40 * 180, "{r}");
    assert_eq!(r["hosts"], 4, "{r}");
    // The seeded busy enclaves are throttled, then suspended, by the planned policy.
    assert!(r["planned_throttles"].as_u64() > Some(0), "{r}");
    assert!(r["planned_suspensions"].as_u64() > Some(0), "{r}");
}
