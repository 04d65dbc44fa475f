//! `tribune chaos sim`: a small sweep through the binary, its JSON figures, and bad input.

use std::process::Command;

const BIN: &str = env!("CARGO_BIN_EXE_tribune");

#[test]
fn a_small_sweep_reports_its_figures_and_no_violation() {
    let out = Command::new(BIN)
        .args([
            "chaos", "sim", "--seeds", "4", "--steps", "100", "-o", "json",
        ])
        .output()
        .expect("run tribune");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("one JSON document");
    assert_eq!(v["runs"], 4);
    assert_eq!(v["steps"], 400);
    assert!(v["invariant_checks"].as_u64().is_some_and(|n| n > 0), "{v}");
    assert_eq!(v["violations"], serde_json::json!([]));
}

#[test]
fn zero_seeds_is_refused_with_a_reason() {
    let out = Command::new(BIN)
        .args(["chaos", "sim", "--seeds", "0"])
        .output()
        .expect("run tribune");
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("--seeds"), "{err}");
}
