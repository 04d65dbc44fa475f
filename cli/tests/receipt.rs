//! Fairness receipts end to end, as root: 3 controllers, a real host agent, two sim-TEE
//! enclaves — `miner` (spins: over its limit, throttled, then suspended) and `web` (idle).
//!
//! - `tribune receipt get` + `tribune receipt verify` (offline, trusted keys from `tribune log
//!   keys`): miner's receipt shows its throttle and its suspension, each with its cause (the
//!   rule and its line) and the usage that went over its limit; web's shows its guarantee met
//!   in every window and no enforcement;
//! - every single-byte change of a receipt is rejected, with a reason;
//! - a receipt is refused under keys that do not include its issuer's;
//! - a verifier in a second language (Python, `scripts/conformance/tribune_verify.py`) verifies
//!   both receipts and rejects a tampered one.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::{Duration, Instant};

use common::{BIN, Cluster, DEADLINE};
use serde_json::Value;

const POLICIES: [(&str, &str); 2] = [
    (
        "rc-miner",
        r#"
policy "rc-miner" {
  match tenant == "miner"
  guarantee { cpu = 100m }
  limit { cpu = 200m  memory = 256MiB }
  on over_limit { throttle now; suspend after 3s }
}
"#,
    ),
    (
        "rc-web",
        r#"
policy "rc-web" {
  match tenant == "web"
  guarantee { cpu = 100m }
  limit { cpu = 500m }
}
"#,
    ),
];

fn verify(file: &Path, keys: &Path) -> Output {
    Command::new(BIN)
        .args(["receipt", "verify"])
        .arg(file)
        .arg("--trusted-keys")
        .arg(keys)
        .output()
        .expect("run tribune")
}

/// `tribune receipt get ENCLAVE --from 10m` into `DIR/ENCLAVE.receipt.json`, then `tribune
/// receipt verify` it against `keys`; both must succeed. The file and what the verifier said.
fn get_and_verify(c: &Cluster, dir: &Path, enclave: &str, keys: &Path) -> (PathBuf, String) {
    let file = dir.join(format!("{enclave}.receipt.json"));
    let path = file.to_str().expect("path");
    let o = c.cli(&["receipt", "get", enclave, "--from", "10m", "-f", path]);
    assert!(o.status.success(), "{}", common::output_text(&o));
    let o = verify(&file, keys);
    let said = common::output_text(&o);
    assert!(o.status.success(), "{said}");
    (file, said)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn receipts_show_enforcement_with_causes_and_verify_offline() {
    if common::skip_unless_root(
        "receipts_show_enforcement_with_causes_and_verify_offline",
        "the host agent needs cgroups",
    ) {
        return;
    }
    let c = Cluster::start_tls(3, &["--allow-sim-evidence"]);
    let leader = c.wait_leader().await;
    for (name, src) in POLICIES {
        let (s, b) = c.put_policy(leader, name, src, None).await;
        assert!(s == 200 || s == 201, "{s} {b}");
    }
    for (id, cmd) in [
        ("miner", ["/bin/sh", "-c", "while :; do :; done"]),
        ("web", ["/bin/sh", "-c", "while :; do sleep 1; done"]),
    ] {
        c.put_process_enclave(leader, id, "h1", &cmd).await;
    }
    let dir = c.dir.path().to_path_buf();
    let controllers = c.nodes.values().map(|n| n.addr.clone()).collect();
    let _agent = common::start_agent(&c, "rcpt", "h1", controllers, vec![]);

    // Miner is throttled, then suspended; web has a few usage windows.
    let deadline = Instant::now() + DEADLINE;
    loop {
        let all = c.log_entries(leader).await.unwrap_or_default();
        let suspended = all.iter().any(|e| {
            e["subject"] == "miner" && e["kind"] == "action" && e["detail"]["action"] == "suspend"
        });
        let web = all
            .iter()
            .filter(|e| e["subject"] == "web" && e["kind"] == "usage_digest")
            .count();
        if suspended && web >= 3 {
            break;
        }
        assert!(Instant::now() < deadline, "no suspension\n{}", c.logs());
        tokio::time::sleep(Duration::from_millis(200)).await;
    }

    let keys = dir.join("keys.json");
    let o = c.cli(&["log", "keys", "-o", "json"]);
    assert!(o.status.success(), "{}", common::output_text(&o));
    std::fs::write(&keys, &o.stdout).expect("write keys");

    // Miner: throttled and suspended, each with its cause.
    let (miner, said) = get_and_verify(&c, &dir, "miner", &keys);
    assert!(
        said.contains("throttled 1 time(s), each with its cause"),
        "{said}"
    );
    assert!(
        said.contains("suspended 1 time(s), each with its cause"),
        "{said}"
    );
    assert!(said.contains("cause rc-miner on#"), "{said}");
    assert!(said.contains("(line "), "{said}");
    assert!(said.contains("over its 200m limit"), "{said}");
    eprintln!("miner: {said}");

    // Web: its guarantee in every window, no enforcement.
    let (web, said) = get_and_verify(&c, &dir, "web", &keys);
    assert!(
        said.contains("received its guarantee in 100.0% of"),
        "{said}"
    );
    assert!(said.contains("never throttled or suspended"), "{said}");
    assert!(!said.contains("GUARANTEE NOT MET"), "{said}");

    // An issuer that is not trusted: another controller's keys only, or a stranger's key.
    let all_keys: Value =
        serde_json::from_slice(&std::fs::read(&keys).expect("keys")).expect("json");
    let receipt: Value =
        serde_json::from_slice(&std::fs::read(&web).expect("receipt")).expect("json");
    let issuer = receipt["body"]["issuer"]["public_key"].clone();
    let others: Vec<Value> = all_keys
        .as_array()
        .expect("keys")
        .iter()
        .filter(|k| k["public_key"] != issuer)
        .cloned()
        .collect();
    assert_eq!(others.len(), 2);
    let untrusted = dir.join("others.json");
    std::fs::write(&untrusted, serde_json::to_vec(&others).expect("json")).expect("write");
    let o = verify(&web, &untrusted);
    assert_eq!(o.status.code(), Some(1), "{}", common::output_text(&o));
    assert!(
        common::output_text(&o).contains("not among the trusted keys"),
        "{}",
        common::output_text(&o)
    );
    let stranger = dir.join("stranger.txt");
    std::fs::write(&stranger, format!("{}\n", "5a".repeat(32))).expect("write");
    let o = verify(&web, &stranger);
    assert_eq!(o.status.code(), Some(1), "{}", common::output_text(&o));

    // Every single-byte change is rejected, with a reason (in process: the same crate the CLI
    // and a tenant use).
    let trusted = tribune_receipt::receipt::parse_trusted_keys(&String::from_utf8_lossy(
        &std::fs::read(&keys).expect("keys"),
    ))
    .expect("keys parse");
    // A short receipt keeps the sweep quick: the last few seconds of web.
    let small = dir.join("web-small.receipt.json");
    let o = c.cli(&[
        "receipt",
        "get",
        "web",
        "--from",
        "3s",
        "-f",
        small.to_str().expect("path"),
    ]);
    assert!(o.status.success(), "{}", common::output_text(&o));
    let bytes = std::fs::read(&small).expect("receipt");
    tribune_receipt::verify(&bytes, &trusted).expect("the small receipt verifies");
    let mut reasons = std::collections::BTreeMap::<String, usize>::new();
    for i in 0..bytes.len() {
        for bit in [0x01u8, 0x20] {
            let mut b = bytes.clone();
            b[i] ^= bit;
            let e = tribune_receipt::verify(&b, &trusted)
                .expect_err(&format!("byte {i} ^ {bit:#x} still verifies"));
            assert!(!e.to_string().is_empty());
            // Counted by kind of reason (the error's variant).
            let dbg = format!("{e:?}");
            let kind = dbg.split(['(', ' ', '{']).next().unwrap_or("").to_string();
            *reasons.entry(kind).or_default() += 1;
        }
    }
    eprintln!(
        "all {} single-byte flips of a {}-byte receipt rejected: {reasons:?}",
        2 * bytes.len(),
        bytes.len()
    );

    // A second language: Python verifies both receipts and rejects a tampered one.
    match python_missing() {
        Some(why) => tribune_testkit::say_skipped(&format!(
            "receipts_show_enforcement_with_causes_and_verify_offline (the Python part): {why}"
        )),
        None => {
            for f in [&miner, &web] {
                let o = python(f, &keys);
                assert!(o.status.success(), "python: {}", common::output_text(&o));
                eprintln!("python: {}", String::from_utf8_lossy(&o.stdout).trim());
            }
            let mut b = bytes.clone();
            let at = b.len() / 2;
            b[at] ^= 0x01;
            let bad = dir.join("bad.receipt.json");
            std::fs::write(&bad, &b).expect("write");
            let o = python(&bad, &keys);
            assert_eq!(
                o.status.code(),
                Some(1),
                "python accepted: {}",
                common::output_text(&o)
            );
            assert!(
                common::output_text(&o).contains("REJECTED: "),
                "{}",
                common::output_text(&o)
            );
            let o = python(&web, &untrusted);
            assert_eq!(
                o.status.code(),
                Some(1),
                "python accepted: {}",
                common::output_text(&o)
            );
        }
    }
}

fn python_missing() -> Option<String> {
    match Command::new("python3")
        .args(["-c", "import cryptography, hashlib, json"])
        .output()
    {
        Err(e) => Some(format!("python3 cannot be run ({e})")),
        Ok(o) if !o.status.success() => Some(format!(
            "python3 has no `cryptography` package: {}",
            String::from_utf8_lossy(&o.stderr).trim()
        )),
        Ok(_) => None,
    }
}

fn python(receipt: &Path, keys: &Path) -> Output {
    Command::new("python3")
        .arg(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../scripts/conformance/tribune_verify.py"
        ))
        .arg("receipt")
        .arg(receipt)
        .arg(keys)
        .output()
        .expect("run python3")
}
