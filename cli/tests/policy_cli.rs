//! End-to-end: the built `tribune` binary's `policy check|fmt|eval` verbs.

use std::path::PathBuf;
use std::process::{Command, Output};

fn tribune(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_tribune"))
        .args(args)
        .output()
        .expect("run tribune")
}

fn examples() -> PathBuf {
    manifest_dir().join("../examples/policies")
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}
fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

const BAD: &str =
    "policy \"p\" {\n  match tenant == \"acme\"\n  limit { memory = 2GiB + 250m }\n}\n";

#[test]
fn check_examples_succeeds_with_a_summary() {
    let mut files: Vec<String> = std::fs::read_dir(examples())
        .expect("examples")
        .filter_map(|e| e.ok())
        .map(|e| e.path().display().to_string())
        .filter(|p| p.ends_with(".tribune"))
        .collect();
    files.sort();
    let mut args = vec!["policy", "check"];
    args.extend(files.iter().map(String::as_str));
    let o = tribune(&args);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(
        stdout(&o).starts_with(&format!("ok: {} file(s)", files.len())),
        "{}",
        stdout(&o)
    );
}

#[test]
fn check_reports_rustc_like_diagnostics_and_exit_1() {
    let dir = tempfile::tempdir().expect("tempdir");
    let f = dir.path().join("bad.tribune");
    std::fs::write(&f, BAD).expect("write");
    let o = tribune(&["policy", "check", f.to_str().expect("path")]);
    assert_eq!(o.status.code(), Some(1));
    let err = stderr(&o);
    assert!(
        err.contains("error[E0201]: mismatched units: cannot add memory and cpu"),
        "{err}"
    );
    assert!(err.contains("bad.tribune:3:20"), "{err}");
    assert!(err.contains("limit { memory = 2GiB + 250m }"), "{err}");
    assert!(err.contains("^^^^^^^^^^^"), "{err}");
    assert!(err.contains("help:"), "{err}");
}

#[test]
fn check_json_output() {
    let dir = tempfile::tempdir().expect("tempdir");
    let f = dir.path().join("bad.tribune");
    std::fs::write(&f, BAD).expect("write");
    let o = tribune(&[
        "policy",
        "check",
        "--output",
        "json",
        f.to_str().expect("path"),
    ]);
    assert_eq!(o.status.code(), Some(1));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).expect("json on stdout");
    assert_eq!(v["ok"], false);
    let d = &v["diagnostics"][0];
    assert_eq!(d["code"], "E0201");
    assert_eq!(d["severity"], "error");
    assert_eq!(
        (d["line"].as_u64(), d["column"].as_u64()),
        (Some(3), Some(20))
    );
    assert!(d["hint"].is_string());

    let ok = tribune(&[
        "policy",
        "check",
        "--output",
        "json",
        examples()
            .join("gpu-inference.tribune")
            .to_str()
            .expect("p"),
    ]);
    assert!(ok.status.success());
    let v: serde_json::Value = serde_json::from_slice(&ok.stdout).expect("json");
    assert_eq!(v["ok"], true);
    assert_eq!(v["policies"][0], "umbrella-inference");
}

#[test]
fn check_yaml_output_is_the_same_document() {
    let file = examples().join("gpu-inference.tribune");
    let file = file.to_str().expect("path");
    // The global flag, before the verb; and `text`, the old name of the default, still works.
    let o = tribune(&["-o", "yaml", "policy", "check", file]);
    assert!(o.status.success(), "{}", stderr(&o));
    let text = stdout(&o);
    assert!(text.lines().any(|l| l == "ok: true"), "{text}");
    assert!(text.contains("- umbrella-inference"), "{text}");
    let o = tribune(&["policy", "check", file, "--output", "text"]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(stdout(&o).starts_with("ok: 1 file(s)"), "{}", stdout(&o));
}

#[test]
fn check_finds_conflicts_across_files() {
    let dir = tempfile::tempdir().expect("tempdir");
    let a = dir.path().join("a.tribune");
    let b = dir.path().join("b.tribune");
    std::fs::write(
        &a,
        "policy \"a\" {\n  match tenant == \"acme\"\n  weight 2\n}\n",
    )
    .expect("write");
    std::fs::write(
        &b,
        "policy \"b\" {\n  match class == \"batch\"\n  weight 3\n}\n",
    )
    .expect("write");
    let o = tribune(&[
        "policy",
        "check",
        a.to_str().expect("p"),
        b.to_str().expect("p"),
    ]);
    assert_eq!(o.status.code(), Some(1));
    assert!(stderr(&o).contains("error[E0401]"), "{}", stderr(&o));
}

#[test]
fn fmt_check_and_rewrite() {
    let dir = tempfile::tempdir().expect("tempdir");
    let f = dir.path().join("messy.tribune");
    std::fs::write(
        &f,
        "# keep me\npolicy   \"p\" {match true   # and me\nweight 2\n  limit{cpu=1 memory=1GiB}}\n",
    )
    .expect("write");
    let path = f.to_str().expect("path");
    let o = tribune(&["policy", "fmt", "--check", path]);
    assert_eq!(o.status.code(), Some(1));
    assert!(stdout(&o).contains("would reformat"));
    let o = tribune(&["policy", "fmt", path]);
    assert!(o.status.success(), "{}", stderr(&o));
    let formatted = std::fs::read_to_string(&f).expect("read");
    assert_eq!(
        formatted,
        "# keep me\npolicy \"p\" {\n  match true # and me\n  weight 2\n  limit { cpu = 1; memory = 1GiB }\n}\n"
    );
    let o = tribune(&["policy", "fmt", "--check", path]);
    assert!(o.status.success(), "formatted file passes --check");
}

#[test]
fn fmt_refuses_syntax_errors() {
    let dir = tempfile::tempdir().expect("tempdir");
    let f = dir.path().join("broken.tribune");
    std::fs::write(&f, "policy \"p\" {\n  limit { cpu = }\n}\n").expect("write");
    let o = tribune(&["policy", "fmt", f.to_str().expect("path")]);
    assert_eq!(o.status.code(), Some(1));
    assert!(stderr(&o).contains("error[E0101]"), "{}", stderr(&o));
    assert_eq!(
        std::fs::read_to_string(&f).expect("read"),
        "policy \"p\" {\n  limit { cpu = }\n}\n",
        "left untouched"
    );
}

#[test]
fn eval_prints_the_decision_with_its_sources() {
    let dir = tempfile::tempdir().expect("tempdir");
    let facts = dir.path().join("facts.json");
    std::fs::write(
        &facts,
        r#"{ "enclave": { "tenant": "acme", "labels": { "tier": "batch" }, "tee": "sev-snp",
                          "measurement": "3a7f0c1d9e2b4a6f" },
             "host": { "cpu": 91 }, "attestation": { "tcb_version": 9 },
             "over_limit_ms": 45000, "held_ms": { "when#1": 40000 },
             "peers": [ { "tenant": "acme" }, { "tenant": "globex" } ] }"#,
    )
    .expect("write");
    let policy = examples().join("acme-batch.tribune");
    let (p, f) = (policy.to_str().expect("p"), facts.to_str().expect("f"));
    let o = tribune(&["policy", "eval", p, "--facts", f]);
    assert!(o.status.success(), "{}", stderr(&o));
    let text = stdout(&o);
    assert!(
        text.contains("limit      cpu            500m  (acme-batch: when#1, line 12)"),
        "{text}"
    );
    assert!(
        text.contains("action                 suspend  (acme-batch: on#1, line 14)"),
        "{text}"
    );
    assert!(text.contains("talk to tenant globex: denied"), "{text}");

    let o = tribune(&["policy", "eval", p, "--facts", f, "--output", "json"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).expect("json");
    assert_eq!(v["limit"]["cpu"]["value"], 500.0);
    assert_eq!(v["limit"]["cpu"]["from"]["rule"], "when#1");
    assert_eq!(v["action"]["action"], "suspend");
    assert_eq!(v["talk"][0]["share"], 3.0);
}

#[test]
fn eval_rejects_bad_facts_and_bad_policies() {
    let dir = tempfile::tempdir().expect("tempdir");
    let facts = dir.path().join("facts.json");
    std::fs::write(&facts, r#"{ "hots": {} }"#).expect("write");
    let policy = examples().join("acme-batch.tribune");
    let o = tribune(&[
        "policy",
        "eval",
        policy.to_str().expect("p"),
        "--facts",
        facts.to_str().expect("f"),
    ]);
    assert_ne!(o.status.code(), Some(0));
    assert!(
        stderr(&o).contains("not a valid facts file"),
        "{}",
        stderr(&o)
    );
    let bad = dir.path().join("bad.tribune");
    std::fs::write(&bad, BAD).expect("write");
    std::fs::write(&facts, "{}").expect("write");
    let o = tribune(&[
        "policy",
        "eval",
        bad.to_str().expect("p"),
        "--facts",
        facts.to_str().expect("f"),
    ]);
    assert_eq!(o.status.code(), Some(1));
    assert!(stderr(&o).contains("E0201"));
}

#[test]
fn a_file_that_is_not_utf8_is_a_located_diagnostic() {
    let dir = tempfile::tempdir().expect("tempdir");
    let f = dir.path().join("latin1.tribune");
    // A Latin-1 `é` in a comment: line 2, column 8.
    let bytes: &[u8] = b"policy \"p\" {\n  # caf\xe9\n  match true\n}\n";
    std::fs::write(&f, bytes).expect("write");
    let path = f.to_str().expect("path");
    let facts = dir.path().join("facts.json");
    std::fs::write(&facts, "{}").expect("write");
    let facts = facts.to_str().expect("facts");
    for args in [
        vec!["policy", "check", path],
        vec!["policy", "fmt", path],
        vec!["policy", "fmt", "--check", path],
        vec!["policy", "eval", path, "--facts", facts],
    ] {
        let o = tribune(&args);
        let err = stderr(&o);
        assert_eq!(o.status.code(), Some(1), "{args:?}: {err}");
        assert!(
            err.contains("error[E0004]: invalid UTF-8 byte 0xE9"),
            "{args:?}: {err}"
        );
        assert!(err.contains("latin1.tribune:2:8"), "{args:?}: {err}");
        assert!(!err.contains("stream did not contain"), "{args:?}: {err}");
    }
    assert_eq!(std::fs::read(&f).expect("read"), bytes, "left untouched");
    let o = tribune(&["policy", "check", "--output", "json", path]);
    assert_eq!(o.status.code(), Some(1));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).expect("json");
    assert_eq!(v["diagnostics"][0]["code"], "E0004");
    assert_eq!(v["diagnostics"][0]["line"], 2);
    assert_eq!(v["diagnostics"][0]["column"], 8);
}

/// This package's directory, read at run time (`cargo test` sets it) so a test binary reused
/// from a shared target dir built in another checkout still finds this checkout's files.
fn manifest_dir() -> std::path::PathBuf {
    std::env::var_os("CARGO_MANIFEST_DIR")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR")))
}
