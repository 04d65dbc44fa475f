//! What a server stores cannot drive the terminal of whoever lists it: `tribune enclave ls`
//! shows control characters in tenants and hosts escaped, and JSON output keeps them exact.
//! A reader that goes away (`tribune … | head`) ends a client verb quietly, never a panic.

mod common;

use std::process::Command;

use common::BIN;
use serde_json::{Value, json};

/// OSC 0 (set the window title) ended by BEL, then SGR red: raw, it retitles and recolours.
const EVIL_TENANT: &str = "evil\u{1b}]0;pwned\u{7}\u{1b}[31m";
/// C1 CSI (U+009B) "2J" clears the screen on terminals that honour C1; DEL; a line break
/// that would fake a table row.
const EVIL_HOST: &str = "h\u{9b}2J\u{7f}\nFAKE ROW";

/// A stand-in controller (an older or compromised one: today's API refuses control characters
/// in tenants and hosts, `cli/tests/api_bounds.rs`) that answers every request with `body`.
fn fake_controller(body: Value) -> String {
    use std::io::{Read, Write};
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = listener.local_addr().expect("addr");
    let body = body.to_string();
    std::thread::spawn(move || {
        for conn in listener.incoming() {
            let Ok(mut conn) = conn else { return };
            let mut buf = [0u8; 4096];
            let _ = conn.read(&mut buf);
            let _ = write!(
                conn,
                "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                body.len()
            );
        }
    });
    format!("http://{addr}")
}

fn enclave_cli(endpoint: &str, args: &[&str]) -> std::process::Output {
    Command::new(BIN)
        .arg("enclave")
        .args(args)
        .args(["--endpoint", endpoint, "--timeout-secs", "60"])
        .env_remove("TRIBUNE_CA")
        .env_remove("TRIBUNE_CONFIG")
        .output()
        .expect("run tribune enclave")
}

#[test]
fn enclave_ls_escapes_control_characters_from_the_server() {
    let endpoint = fake_controller(json!([{
        "id": "e1", "tenant": EVIL_TENANT, "tee": "sim", "state": "running", "version": 1,
        "placement": {"host": EVIL_HOST, "epoch": 1},
    }]));

    let out = enclave_cli(&endpoint, &["ls"]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "tribune enclave ls: {:?}\n{stdout}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    for bad in [0x1b_u8, 0x07, 0x7f] {
        assert!(
            !out.stdout.contains(&bad),
            "raw 0x{bad:02x} in the table: {stdout:?}"
        );
    }
    assert!(
        !stdout.contains('\u{9b}'),
        "raw C1 CSI in the table: {stdout:?}"
    );
    assert!(
        stdout.contains("evil\\u{1b}]0;pwned\\u{7}\\u{1b}[31m"),
        "the tenant is shown escaped: {stdout:?}"
    );
    assert!(
        stdout.contains("h\\u{9b}2J\\u{7f}\\nFAKE ROW"),
        "the host is shown escaped, on its row: {stdout:?}"
    );
    // A header and one row: the newline in the host made no second row.
    assert_eq!(stdout.trim_end().lines().count(), 2, "{stdout:?}");

    // JSON output is for programs: the exact strings, escaped only as JSON escapes them.
    let out = enclave_cli(&endpoint, &["ls", "--output", "json"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(!out.stdout.contains(&0x1b), "JSON output escapes ESC");
    let v: Value = serde_json::from_slice(&out.stdout).expect("JSON output");
    assert_eq!(v[0]["tenant"], EVIL_TENANT);
    assert_eq!(v[0]["placement"]["host"], EVIL_HOST);
}

/// One answer in every `-o` format: the table in human units, `wide` with more columns,
/// JSON and YAML with the raw numbers (and YAML, too, with no raw control character).
#[test]
fn host_ls_in_every_output_format() {
    let now_ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock")
        .as_millis() as i64;
    let endpoint = fake_controller(json!([{
        "id": "kvm-07", "address": "10.0.0.7:7402", "tee": "sim",
        "attestation_status": "trusted", "enforcement": "enforcing",
        "capacity": {"cpu_millicores": 16000, "memory_bytes": 68_719_476_736u64,
                     "egress_bits_per_sec": 10_000_000_000u64, "ingress_bits_per_sec": 0,
                     "gpu_percent": 0},
        "last_heartbeat_ms": now_ms - 192_000,
        "agent_cert_fingerprint": EVIL_TENANT,
        "schedulable": "cordoned",
    }]));
    let host_ls = |format: &str| {
        let out = Command::new(BIN)
            .args(["host", "ls", "-o", format, "--endpoint", &endpoint])
            .env_remove("TRIBUNE_CA")
            .env_remove("TRIBUNE_CONFIG")
            .output()
            .expect("run tribune host ls");
        assert!(
            out.status.success(),
            "{format}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).expect("UTF-8")
    };
    let table = host_ls("table");
    let row: Vec<&str> = table
        .lines()
        .nth(1)
        .expect("a row")
        .split_whitespace()
        .collect();
    assert_eq!(
        row[..8],
        [
            "kvm-07",
            "10.0.0.7:7402",
            "sim",
            "trusted",
            "enforcing",
            "16",
            "64Gi",
            "cordoned"
        ],
        "{table}"
    );
    // 3m12s ago when the answer was made; a slow machine may take a few seconds to print it.
    assert!(row[8].starts_with("3m1"), "{table}");
    assert!(!table.contains("EGRESS"), "{table}");
    let wide = host_ls("wide");
    assert!(
        wide.lines().next().is_some_and(|h| h.contains("EGRESS")),
        "{wide}"
    );
    assert!(wide.contains("10Gbit"), "{wide}");
    assert!(
        wide.contains("evil\\u{1b}]0;pwned"),
        "escaped in the wide column: {wide}"
    );
    let v: Value = serde_json::from_str(&host_ls("json")).expect("JSON");
    assert_eq!(v[0]["capacity"]["memory_bytes"], 68_719_476_736u64);
    let yaml = host_ls("yaml");
    assert!(yaml.contains("memory_bytes: 68719476736"), "{yaml}");
    assert!(yaml.contains("cpu_millicores: 16000"), "{yaml}");
    assert!(
        !yaml.contains('\u{1b}') && !yaml.contains('\u{7}'),
        "{yaml:?}"
    );
}

/// Runs `tribune ARGS` with its stdout a pipe whose reader is already closed, as in
/// `tribune agent status | head` once `head` has its lines: the first write fails.
fn with_closed_stdout(args: &[&str]) -> std::process::Output {
    let (reader, writer) = std::io::pipe().expect("pipe");
    drop(reader);
    Command::new(BIN)
        .args(args)
        .env_remove("TRIBUNE_CA")
        .env_remove("TRIBUNE_CONFIG")
        .stdout(writer)
        .stderr(std::process::Stdio::piped())
        .output()
        .expect("run tribune")
}

#[test]
fn a_closed_stdout_ends_a_client_verb_quietly() {
    use std::os::unix::process::ExitStatusExt;
    let endpoint = fake_controller(json!([{
        "id": "e1", "tenant": "acme", "tee": "sim", "state": "running", "version": 1,
        "placement": {"host": "h1", "epoch": 1},
    }]));
    let examples = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../examples/policies/acme-batch.tribune");
    for args in [
        vec!["completions", "bash"],
        vec!["policy", "check", examples.to_str().expect("path")],
        vec![
            "enclave",
            "ls",
            "--endpoint",
            &endpoint,
            "--timeout-secs",
            "60",
        ],
    ] {
        let out = with_closed_stdout(&args);
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(!err.contains("panicked"), "{args:?}: {err}");
        assert!(!err.contains("Broken pipe"), "{args:?}: {err}");
        assert!(
            out.status.success() || out.status.signal() == Some(libc::SIGPIPE),
            "{args:?}: {:?}: {err}",
            out.status
        );
    }
}
