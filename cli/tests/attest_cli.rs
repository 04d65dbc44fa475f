//! End-to-end: `tribune attest verify` on the shared test data and on sim evidence.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn testdata() -> Option<PathBuf> {
    tribune_testkit::testdata::attestation(&manifest_dir())
}

macro_rules! testdata_or_skip {
    () => {
        match testdata() {
            Some(p) => p,
            None => {
                eprintln!(
                    "\n*** skipped: attestation test data not found (TRIBUNE_TESTDATA) ***\n"
                );
                println!("skipped: attestation test data not found");
                return;
            }
        }
    };
}

fn tribune(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_tribune"))
        .args(args)
        .output()
        .expect("run tribune")
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn p(d: &Path, rel: &str) -> String {
    d.join(rel).display().to_string()
}

#[test]
fn snp_report_valid_then_tampered() {
    let d = testdata_or_skip!();
    let o = tribune(&[
        "attest",
        "verify",
        "--evidence",
        &p(&d, "snp/openanolis-trustee/turin-report.bin"),
        "--certs",
        &p(&d, "snp/openanolis-trustee/turin-vcek.der"),
        "--at",
        "2026-07-01T00:00:00Z",
        "--output",
        "json",
    ]);
    assert_eq!(o.status.code(), Some(0), "{}", stdout(&o));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(v["tee"], "sev-snp");
    assert_eq!(v["valid"], true);
    assert_eq!(v["chain"][2], "ARK-Turin");
    assert!(v["chip_id"].as_str().unwrap().len() == 128);

    let dir = tempfile::tempdir().unwrap();
    let mut raw = std::fs::read(d.join("snp/openanolis-trustee/turin-report.bin")).unwrap();
    raw[0x90] ^= 1;
    let bad = dir.path().join("bad.bin");
    std::fs::write(&bad, &raw).unwrap();
    let o = tribune(&[
        "attest",
        "verify",
        "--evidence",
        bad.to_str().unwrap(),
        "--certs",
        &p(&d, "snp/openanolis-trustee/turin-vcek.der"),
        "--at",
        "2026-07-01T00:00:00Z",
    ]);
    assert_eq!(o.status.code(), Some(1));
    assert!(
        stdout(&o).contains("signature does not verify"),
        "{}",
        stdout(&o)
    );
}

#[test]
fn snp_certs_from_a_directory_and_missing_certs() {
    let d = testdata_or_skip!();
    let o = tribune(&[
        "attest",
        "verify",
        "--evidence",
        &p(&d, "snp/virtee-sev/report_milan.hex"),
        "--certs",
        &p(&d, "snp/virtee-sev"),
        "--at",
        "2025-01-01T00:00:00Z",
    ]);
    assert_eq!(o.status.code(), Some(0), "{}", stdout(&o));
    assert!(stdout(&o).contains("SEV-VCEK <- SEV-Milan <- ARK-Milan"));
    let o = tribune(&[
        "attest",
        "verify",
        "--evidence",
        &p(&d, "snp/virtee-sev/report_milan.bin"),
    ]);
    assert_eq!(o.status.code(), Some(1));
    assert!(stdout(&o).contains("no SEV-VCEK certificate supplied"));
}

#[test]
fn tdx_quote_with_collateral() {
    let d = testdata_or_skip!();
    let o = tribune(&[
        "attest",
        "verify",
        "--evidence",
        &p(&d, "tdx/dcap-qvl/tdx_quote"),
        "--collateral",
        &p(&d, "tdx/dcap-qvl/tdx_quote_collateral.json"),
        "--at",
        "2025-06-20T00:00:00Z",
        "--output",
        "json",
    ]);
    assert_eq!(o.status.code(), Some(0), "{}", stdout(&o));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(v["tee"], "tdx");
    assert_eq!(v["tcb"]["status"], "UpToDate");
    assert_eq!(v["fmspc"], "b0c06f000000");
    // Outside the collateral window: invalid, with the reason.
    let o = tribune(&[
        "attest",
        "verify",
        "--evidence",
        &p(&d, "tdx/dcap-qvl/tdx_quote"),
        "--collateral",
        &p(&d, "tdx/dcap-qvl/tdx_quote_collateral.json"),
        "--at",
        "2026-07-01T00:00:00Z",
    ]);
    assert_eq!(o.status.code(), Some(1));
    assert!(stdout(&o).contains("reason:"));
}

#[test]
fn sim_evidence_refused_by_default_allowed_with_flag() {
    let dir = tempfile::tempdir().unwrap();
    let ev = dir.path().join("sim.bin");
    let o = tribune(&[
        "attest",
        "sim-evidence",
        "--measurement",
        &"ab".repeat(48),
        "--report-data",
        &"cd".repeat(64),
        "--out",
        ev.to_str().unwrap(),
    ]);
    assert_eq!(o.status.code(), Some(0));
    let o = tribune(&["attest", "verify", "--evidence", ev.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(1));
    assert!(stdout(&o).contains("refused by configuration"));
    let o = tribune(&[
        "attest",
        "verify",
        "--evidence",
        ev.to_str().unwrap(),
        "--allow-sim",
        "--output",
        "json",
    ]);
    assert_eq!(o.status.code(), Some(0), "{}", stdout(&o));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(v["tee"], "sim");
    assert_eq!(v["report_data"], "cd".repeat(64));
}

#[test]
fn usage_and_io_errors_exit_2_garbage_exits_1() {
    let o = tribune(&[
        "attest",
        "verify",
        "--evidence",
        "/nonexistent/evidence.bin",
    ]);
    assert_eq!(o.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&o.stderr).contains("cannot read"));
    let o = tribune(&["attest", "verify"]);
    assert_eq!(o.status.code(), Some(2));
    let dir = tempfile::tempdir().unwrap();
    let g = dir.path().join("garbage");
    std::fs::write(&g, b"not evidence at all").unwrap();
    let o = tribune(&["attest", "verify", "--evidence", g.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(1));
    assert!(stdout(&o).contains("malformed evidence"));
    let o = tribune(&[
        "attest",
        "verify",
        "--evidence",
        g.to_str().unwrap(),
        "--at",
        "yesterday",
    ]);
    assert_eq!(o.status.code(), Some(2));
}

fn json(o: &Output) -> serde_json::Value {
    serde_json::from_slice(&o.stdout)
        .unwrap_or_else(|e| panic!("stdout is not JSON ({e}): {}", stdout(o)))
}

#[test]
fn allow_debug_and_the_separate_crypto_result() {
    // tdx_quote_4.dat is a real quote from a TD in debug mode (TD attribute DEBUG set).
    let d = testdata_or_skip!();
    let q = p(&d, "tdx/coco-trustee/tdx_quote_4.dat");
    let base = [
        "attest",
        "verify",
        "--evidence",
        &q,
        "--at",
        "2025-11-01T00:00:00Z",
        "--output",
        "json",
    ];
    let o = tribune(&base);
    assert_eq!(o.status.code(), Some(1), "{}", stdout(&o));
    let v = json(&o);
    assert_eq!(v["debug"], true);
    assert_eq!(v["valid"], false);
    assert_eq!(v["signature_and_chain_valid"], true, "{v}");
    assert_eq!(v["reasons"], serde_json::json!(["debug mode is forbidden"]));
    let o = tribune(&[&base[..], &["--allow-debug"]].concat());
    assert_eq!(o.status.code(), Some(0), "{}", stdout(&o));
    let v = json(&o);
    assert_eq!(v["valid"], true);
    assert_eq!(v["signature_and_chain_valid"], true);
    // Table output shows both.
    let o = tribune(&base[..6]);
    assert!(stdout(&o).contains("valid:        no"), "{}", stdout(&o));
    assert!(stdout(&o).contains("sig+chain:    valid"), "{}", stdout(&o));

    // A tampered SNP report: the crypto result is false (and so is the verdict).
    let dir = tempfile::tempdir().unwrap();
    let mut raw = std::fs::read(d.join("snp/virtee-sev/report_milan.bin")).unwrap();
    raw[21] ^= 1;
    let bad = dir.path().join("bad.bin");
    std::fs::write(&bad, &raw).unwrap();
    let o = tribune(&[
        "attest",
        "verify",
        "--evidence",
        bad.to_str().unwrap(),
        "--certs",
        &p(&d, "snp/virtee-sev/vcek_milan.der"),
        "--at",
        "2025-01-01T00:00:00Z",
        "--allow-debug",
        "--output",
        "json",
    ]);
    assert_eq!(o.status.code(), Some(1));
    let v = json(&o);
    assert_eq!(v["signature_and_chain_valid"], false);
}

#[test]
fn policy_knobs_as_flags() {
    let d = testdata_or_skip!();
    let ev = p(&d, "snp/virtee-sev/report_milan.bin");
    let certs = p(&d, "snp/virtee-sev/vcek_milan.der");
    let run = |extra: &[&str]| {
        let mut a = vec![
            "attest",
            "verify",
            "--evidence",
            &ev,
            "--certs",
            &certs,
            "--at",
            "2025-01-01T00:00:00Z",
            "--output",
            "json",
        ];
        a.extend_from_slice(extra);
        let o = tribune(&a);
        (o.status.code(), json(&o))
    };
    let (code, v) = run(&[]);
    assert_eq!(code, Some(0), "{v}");
    let m = v["measurements"][0]["hex"].as_str().unwrap().to_string();
    let rd = v["report_data"].as_str().unwrap().to_string();
    let (code, v) = run(&[
        "--measurement",
        &m,
        "--vmpl-max",
        "0",
        "--min-snp-tcb",
        "bl=3,tee=0,snp=8,ucode=0x73",
        "--report-data",
        &rd,
    ]);
    assert_eq!(code, Some(0), "{v}");
    let other = "00".repeat(48);
    let (code, v) = run(&[
        "--measurement",
        &other,
        "--min-snp-tcb",
        "bl=3,tee=0,snp=9,ucode=0",
    ]);
    assert_eq!(code, Some(1));
    assert_eq!(v["signature_and_chain_valid"], true);
    let reasons = v["reasons"].to_string();
    assert!(reasons.contains("not in the allow-list"), "{reasons}");
    assert!(reasons.contains("below the minimum"), "{reasons}");
    // The VLEK report runs at VMPL 1.
    let o = tribune(&[
        "attest",
        "verify",
        "--evidence",
        &p(&d, "snp/openanolis-trustee/vlek-milan-report.bin"),
        "--certs",
        &p(&d, "snp/openanolis-trustee/vlek-milan.der"),
        "--at",
        "2025-01-01T00:00:00Z",
        "--vmpl-max",
        "0",
    ]);
    assert_eq!(o.status.code(), Some(1), "{}", stdout(&o));
    assert!(
        stdout(&o).contains("VMPL 1 above the allowed 0"),
        "{}",
        stdout(&o)
    );
    // A bad knob is a usage error.
    let o = tribune(&[
        "attest",
        "verify",
        "--evidence",
        &ev,
        "--min-snp-tcb",
        "bl=3",
    ]);
    assert_eq!(o.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&o.stderr).contains("--min-snp-tcb needs"));
}

#[test]
fn commented_pem_and_text_only_certs() {
    let d = testdata_or_skip!();
    let dir = tempfile::tempdir().unwrap();
    let pem = std::fs::read_to_string(d.join("snp/coco-trustee/az-milan-vcek-chain.pem")).unwrap();
    let f = dir.path().join("chain.pem");
    std::fs::write(&f, format!("# SEV-VCEK\n# for the Azure Milan host\n{pem}")).unwrap();
    let o = tribune(&[
        "attest",
        "verify",
        "--evidence",
        &p(&d, "snp/coco-trustee/az-milan-report.bin"),
        "--certs",
        f.to_str().unwrap(),
        "--at",
        "2026-01-01T00:00:00Z",
    ]);
    assert_eq!(o.status.code(), Some(0), "{}", stdout(&o));
    let t = dir.path().join("text.pem");
    std::fs::write(&t, "# SEV-VCEK\n").unwrap();
    let o = tribune(&[
        "attest",
        "verify",
        "--evidence",
        &p(&d, "snp/coco-trustee/az-milan-report.bin"),
        "--certs",
        t.to_str().unwrap(),
    ]);
    assert_eq!(o.status.code(), Some(2));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("no DER certificate and no PEM"), "{err}");
}

#[test]
fn json_mode_usage_errors_are_json_on_stdout() {
    // A clap usage error (missing --evidence) and an I/O error (unreadable file), both exit 2.
    for args in [
        &["attest", "verify", "--output", "json"][..],
        &[
            "attest",
            "verify",
            "--output=json",
            "--evidence",
            "/nonexistent/e.bin",
        ][..],
        &[
            "attest",
            "verify",
            "--evidence",
            "x",
            "--vmpl-max",
            "many",
            "--output",
            "json",
        ][..],
    ] {
        let o = tribune(args);
        assert_eq!(o.status.code(), Some(2), "{args:?}");
        let v = json(&o);
        assert_eq!(v["valid"], false, "{args:?}");
        assert_eq!(v["kind"], "usage", "{args:?}");
        assert!(!v["error"].as_str().unwrap().is_empty(), "{args:?}");
        assert!(!o.stderr.is_empty(), "{args:?}: stderr keeps the message");
    }
    let o = tribune(&["attest", "verify", "--output", "json"]);
    let v = json(&o);
    assert!(
        v["error"].as_str().unwrap().contains("--evidence"),
        "names the missing argument: {v}"
    );
    // Without --output json stdout stays empty.
    let o = tribune(&["attest", "verify"]);
    assert_eq!(o.status.code(), Some(2));
    assert!(o.stdout.is_empty());
}

#[test]
fn only_the_output_flag_switches_errors_to_json() {
    // The global flag before the verb, and in YAML.
    let o = tribune(&["-o", "json", "attest", "verify"]);
    assert_eq!(o.status.code(), Some(2));
    assert_eq!(json(&o)["kind"], "usage");
    let o = tribune(&[
        "attest",
        "verify",
        "-o",
        "yaml",
        "--evidence",
        "/nonexistent/e.bin",
    ]);
    assert_eq!(o.status.code(), Some(2));
    let text = String::from_utf8_lossy(&o.stdout);
    assert!(
        text.contains("kind: usage") && text.contains("valid: false"),
        "{text}"
    );
    // An argument that reads `json` is not the flag: a positional, a flag's value, and what
    // follows `--`.
    for args in [
        &["attest", "verify", "json"][..],
        &["attest", "verify", "--evidence", "json", "--bogus"],
        &[
            "attest",
            "verify",
            "--evidence",
            "e",
            "--",
            "--output",
            "json",
        ],
    ] {
        let o = tribune(args);
        assert_eq!(o.status.code(), Some(2), "{args:?}");
        assert!(
            o.stdout.is_empty(),
            "{args:?}: {}",
            String::from_utf8_lossy(&o.stdout)
        );
        assert!(!o.stderr.is_empty(), "{args:?}");
    }
}

/// This package's directory, read at run time (`cargo test` sets it) so a test binary reused
/// from a shared target dir built in another checkout still finds this checkout's files.
fn manifest_dir() -> std::path::PathBuf {
    std::env::var_os("CARGO_MANIFEST_DIR")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR")))
}
