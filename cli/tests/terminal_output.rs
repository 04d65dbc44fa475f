//! What a server stores cannot drive the terminal of whoever lists it: `tribune enclave ls`
//! shows control characters in tenants and hosts escaped, and JSON output keeps them exact.

mod common;

use std::process::Command;
use std::time::{Duration, Instant};

use common::{BIN, Cluster, DEADLINE};
use serde_json::{Value, json};

/// OSC 0 (set the window title) ended by BEL, then SGR red: raw, it retitles and recolours.
const EVIL_TENANT: &str = "evil\u{1b}]0;pwned\u{7}\u{1b}[31m";
/// C1 CSI (U+009B) "2J" clears the screen on terminals that honour C1; DEL; a line break
/// that would fake a table row.
const EVIL_HOST: &str = "h\u{9b}2J\u{7f}\nFAKE ROW";

async fn put_enclave(c: &Cluster, id: u64, body: &Value) {
    let path = format!("/v1/enclaves/{}", body["id"].as_str().unwrap_or_default());
    let deadline = Instant::now() + DEADLINE;
    loop {
        match c.http.put(c.url(id, &path)).json(body).send().await {
            Ok(r) if r.status().is_success() => return,
            Ok(r) if r.status().as_u16() == 503 && Instant::now() < deadline => {}
            Ok(r) => panic!(
                "PUT {path}: {} {}",
                r.status(),
                r.text().await.unwrap_or_default()
            ),
            Err(e) if e.is_connect() && Instant::now() < deadline => {}
            Err(e) => panic!("PUT {path}: {e}"),
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn enclave_cli(c: &Cluster, args: &[&str]) -> std::process::Output {
    Command::new(BIN)
        .arg("enclave")
        .args(args)
        .args(["--endpoint", &c.endpoints(), "--timeout-secs", "60"])
        .output()
        .expect("run tribune enclave")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn enclave_ls_escapes_control_characters_from_the_server() {
    let c = Cluster::start(1, &[]);
    let leader = c.wait_leader().await;
    put_enclave(
        &c,
        leader,
        &json!({
            "id": "e1", "tenant": EVIL_TENANT, "tee": "sim",
            "placement": {"host": EVIL_HOST, "epoch": 1},
        }),
    )
    .await;

    let out = enclave_cli(&c, &["ls"]);
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
    let out = enclave_cli(&c, &["ls", "--output", "json"]);
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
