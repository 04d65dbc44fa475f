//! A verifier in a second language checks a live log: `scripts/conformance/tribune_verify.py`
//! (Python's hashlib and json, `cryptography` for Ed25519), written from `docs/log.md` and RFC
//! 9162 alone, verifies what a 3-controller cluster running the attestation loop serves — every
//! key id, tree heads signed by each controller, every leaf recomputed from its entry (usage
//! digests and an over-limit violation among them: leaf format 2, no floats), inclusion proofs
//! against signed heads, consistency proofs between them (including the empty `first=0` and
//! `first=second` proofs) — and rejects every tampered copy of it.
//!
//! Needs root (the host agent's cgroups) and python3 with `cryptography`
//! (`scripts/test` installs it as root); says `skipped: <why>` without them.

mod common;

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use common::{Cluster, DEADLINE};
use serde_json::{Value, json};
use tribune_controller::state::LogEntry;

const VERIFIER: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../scripts/conformance/tribune_verify.py"
);

/// Why Python cannot verify here, if it cannot.
pub fn python_missing() -> Option<String> {
    match Command::new("python3")
        .args(["-c", "import cryptography, hashlib, json"])
        .output()
    {
        Err(e) => Some(format!("python3 cannot be run ({e})")),
        Ok(o) if !o.status.success() => Some(format!(
            "python3 has no `cryptography` package (pip install cryptography): {}",
            String::from_utf8_lossy(&o.stderr).trim()
        )),
        Ok(_) => None,
    }
}

fn run_python(what: &str, file: &Path) -> (bool, String) {
    let o = Command::new("python3")
        .arg(VERIFIER)
        .arg(what)
        .arg(file)
        .output()
        .expect("run python3");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
    (o.status.success(), text)
}

const POLICY: &str = r#"
policy "conf-greedy" {
  match tenant == "greedy"
  guarantee { cpu = 100m }
  limit { cpu = 200m  memory = 256MiB }
  on over_limit { throttle now; suspend after 10m }
}
"#;

async fn get(c: &Cluster, id: u64, path: &str) -> Value {
    let deadline = Instant::now() + DEADLINE;
    loop {
        if let Some((200, v)) = c.get_json(id, path).await {
            return v;
        }
        assert!(
            Instant::now() < deadline,
            "GET {path} on {id}\n{}",
            c.logs()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Entries `0..size` by linearizable reads.
async fn entries_upto(c: &Cluster, id: u64, size: u64) -> Vec<Value> {
    let mut all = Vec::new();
    while (all.len() as u64) < size {
        let start = all.len() as u64;
        let end = (start + 999).min(size - 1);
        let page = get(c, id, &format!("/v1/log/entries?start={start}&end={end}")).await;
        let got = page["entries"].as_array().cloned().unwrap_or_default();
        assert!(!got.is_empty(), "no entries from {start}");
        all.extend(got);
    }
    all.truncate(size as usize);
    all
}

fn has_float(v: &Value) -> bool {
    match v {
        Value::Number(n) => n.is_f64(),
        Value::Array(a) => a.iter().any(has_float),
        Value::Object(m) => m.values().any(has_float),
        _ => false,
    }
}

/// A copy of `bundle` with `f` applied.
fn tampered(bundle: &Value, f: impl FnOnce(&mut Value)) -> Value {
    let mut b = bundle.clone();
    f(&mut b);
    b
}

fn flip_hex(s: &str, at: usize) -> String {
    let mut c: Vec<char> = s.chars().collect();
    c[at] = if c[at] == '0' { '1' } else { '0' };
    c.into_iter().collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn python_verifies_a_live_log_and_rejects_every_tampered_copy() {
    if let Some(why) = python_missing() {
        tribune_testkit::say_skipped(&format!(
            "python_verifies_a_live_log_and_rejects_every_tampered_copy: {why}"
        ));
        return;
    }
    if common::skip_unless_root(
        "python_verifies_a_live_log_and_rejects_every_tampered_copy",
        "the host agent needs cgroups for the loop's usage digests",
    ) {
        return;
    }
    let c = Cluster::start_tls(3, &["--allow-sim-evidence"]);
    let leader = c.wait_leader().await;
    let (s, b) = c.put_policy(leader, "conf-greedy", POLICY, None).await;
    assert!(s == 200 || s == 201, "{s} {b}");
    c.put_json(
        leader,
        "/v1/enclaves/greedy",
        json!({"id": "greedy", "tenant": "greedy", "tee": "sim",
               "placement": {"host": "h1", "epoch": 1},
               "launch": {"process": {"cmd": ["/bin/sh", "-c", "while :; do :; done"]}}}),
    )
    .await;
    let controllers = c.nodes.values().map(|n| n.addr.clone()).collect();
    let _agent = common::start_agent(&c, "conf", "h1", controllers, vec![]);

    // The loop has run: an over-limit violation, a throttle and a few usage digests.
    let deadline = Instant::now() + DEADLINE;
    loop {
        let all = c.log_entries(leader).await.unwrap_or_default();
        let count = |k: &str| all.iter().filter(|e| e["kind"] == k).count();
        let over = all
            .iter()
            .any(|e| e["kind"] == "violation" && e["detail"]["event"] == "over_limit");
        if over && count("usage_digest") >= 20 && count("action") >= 1 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the loop never ran\n{}",
            c.logs()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    // Tree heads from every controller, growing.
    let keys = get(&c, leader, "/v1/log/keys").await;
    let mut sths = Vec::new();
    for id in [1u64, 2, 3, 1] {
        sths.push(get(&c, id, "/v1/log/sth").await);
        tokio::time::sleep(Duration::from_millis(400)).await;
    }
    sths.sort_by_key(|s| s["tree_size"].as_u64());
    let sizes: Vec<u64> = sths
        .iter()
        .map(|s| s["tree_size"].as_u64().unwrap_or(0))
        .collect();
    let newest = sths.len() - 1;
    let n = sizes[newest];
    assert!(
        sizes[0] < n,
        "the log did not grow between heads: {sizes:?}"
    );
    let entries = entries_upto(&c, leader, n).await;

    // Float-free: every entry of a new log is leaf format 2 with integers only.
    for e in &entries {
        assert_eq!(e["leaf_format"], 2, "{e}");
        assert!(!has_float(e), "a float in {e}");
    }
    let digests = entries
        .iter()
        .filter(|e| e["kind"] == "usage_digest")
        .count();
    assert!(digests >= 5, "{digests} digests");

    // Inclusion: every entry against the newest head; each older head's last entry against it.
    let mut inclusion = Vec::new();
    for i in 0..n {
        let p = get(
            &c,
            leader,
            &format!("/v1/log/proof/inclusion?index={i}&tree_size={n}"),
        )
        .await;
        inclusion.push(json!({"sth": newest, "proof": p}));
    }
    for (k, &m) in sizes.iter().enumerate().take(newest) {
        let p = get(
            &c,
            leader,
            &format!("/v1/log/proof/inclusion?index={}&tree_size={m}", m - 1),
        )
        .await;
        inclusion.push(json!({"sth": k, "proof": p}));
    }
    // Consistency: each head with the next, the oldest with the newest, and a head with itself.
    let mut consistency = Vec::new();
    let mut pairs: Vec<(usize, usize)> = (0..newest).map(|k| (k, k + 1)).collect();
    pairs.push((0, newest));
    pairs.push((newest, newest));
    for (a, b) in pairs {
        let p = get(
            &c,
            leader,
            &format!(
                "/v1/log/proof/consistency?first={}&second={}",
                sizes[a], sizes[b]
            ),
        )
        .await;
        consistency.push(json!({"first": a, "second": b, "proof": p}));
    }
    // `first=0` gives an empty proof.
    let empty = get(
        &c,
        leader,
        &format!("/v1/log/proof/consistency?first=0&second={n}"),
    )
    .await;
    assert_eq!(empty["proof"], json!([]), "{empty}");

    let bundle = json!({"keys": keys, "sths": sths, "entries": entries,
                        "inclusion": inclusion, "consistency": consistency});
    let tmp = tempfile::tempdir().expect("tempdir");
    let file = tmp.path().join("bundle.json");
    std::fs::write(&file, serde_json::to_vec(&bundle).expect("json")).expect("write");
    let (ok, text) = run_python("log", &file);
    assert!(ok, "python rejected the live log: {text}");
    assert!(text.contains(&format!("{n} leaf hash(es)")), "{text}");
    eprintln!("python: {}", text.trim());

    // Tampered copies: every one is rejected, with the reason.
    let di = entries
        .iter()
        .position(|e| e["kind"] == "usage_digest")
        .expect("a digest");
    let vi = entries
        .iter()
        .position(|e| e["kind"] == "violation" && e["detail"]["event"] == "over_limit")
        .expect("a violation");
    let mut cases: Vec<(String, Value)> = Vec::new();
    // Every number in a usage digest and in the violation, one more.
    for idx in [di, vi] {
        let detail = entries[idx]["detail"]
            .as_object()
            .cloned()
            .unwrap_or_default();
        for (k, v) in detail {
            if let Some(x) = v.as_u64() {
                // With the served leaf hash made to match: the inclusion proof must catch it.
                cases.push((
                    format!("entry {idx} detail.{k} + 1"),
                    tampered(&bundle, |b| {
                        let e = &mut b["entries"][idx];
                        e["detail"][k.as_str()] = json!(x + 1);
                        let parsed: LogEntry = serde_json::from_value(e.clone()).expect("entry");
                        e["leaf_hash"] = json!(hex::encode(parsed.leaf_hash()));
                    }),
                ));
            }
        }
    }
    let cpu = entries[di]["detail"]["cpu_millicores_avg"]
        .as_u64()
        .unwrap_or(0);
    let fixed = [
        (
            "a float where format 2 has an integer",
            tampered(&bundle, |b| {
                b["entries"][di]["detail"]["cpu_millicores_avg"] = json!(cpu as f64)
            }),
        ),
        (
            "the subject",
            tampered(&bundle, |b| {
                b["entries"][vi]["subject"] = json!("someone-else")
            }),
        ),
        (
            "the entry's time",
            tampered(&bundle, |b| {
                let t = b["entries"][vi]["at_ms"].as_i64().unwrap_or(0);
                b["entries"][vi]["at_ms"] = json!(t + 1)
            }),
        ),
        (
            "leaf format 1 claimed for a format 2 entry",
            tampered(&bundle, |b| {
                if let Some(o) = b["entries"][di].as_object_mut() {
                    o.remove("leaf_format");
                }
            }),
        ),
        (
            "an audit path hash",
            tampered(&bundle, |b| {
                let h = b["inclusion"][vi]["proof"]["audit_path"][0]
                    .as_str()
                    .unwrap_or("")
                    .to_string();
                b["inclusion"][vi]["proof"]["audit_path"][0] = json!(flip_hex(&h, 5));
            }),
        ),
        (
            "an audit path cut short",
            tampered(&bundle, |b| {
                if let Some(a) = b["inclusion"][vi]["proof"]["audit_path"].as_array_mut() {
                    a.pop();
                }
            }),
        ),
        (
            "a proof's index",
            tampered(&bundle, |b| {
                b["inclusion"][vi]["proof"]["leaf_index"] = json!(vi as u64 + 1)
            }),
        ),
        (
            "a tree head's signature",
            tampered(&bundle, |b| {
                let s = b["sths"][newest]["signature"]
                    .as_str()
                    .unwrap_or("")
                    .to_string();
                let s = flip_hex(&s, 10);
                b["sths"][newest]["signature"] = json!(s.clone());
                let enc = b["sths"][newest]["sth"].as_str().unwrap_or("").to_string();
                b["sths"][newest]["sth"] = json!(format!("{}{s}", &enc[..96]));
            }),
        ),
        (
            "a tree head's root",
            tampered(&bundle, |b| {
                let r = b["sths"][newest]["root_hash"]
                    .as_str()
                    .unwrap_or("")
                    .to_string();
                let r = flip_hex(&r, 3);
                b["sths"][newest]["root_hash"] = json!(r.clone());
                let enc = b["sths"][newest]["sth"].as_str().unwrap_or("").to_string();
                b["sths"][newest]["sth"] = json!(format!("{}{r}{}", &enc[..32], &enc[96..]));
            }),
        ),
        (
            "a tree head's size",
            tampered(&bundle, |b| b["sths"][newest]["tree_size"] = json!(n + 1)),
        ),
        (
            "a key's id",
            tampered(&bundle, |b| {
                let k = b["keys"][0]["key_id"].as_str().unwrap_or("").to_string();
                b["keys"][0]["key_id"] = json!(flip_hex(&k, 0));
            }),
        ),
        (
            "a key swapped for another controller's",
            tampered(&bundle, |b| {
                let other = b["keys"][1]["public_key"].clone();
                b["keys"][0]["public_key"] = other;
            }),
        ),
        (
            "a consistency proof hash",
            tampered(&bundle, |b| {
                let last = b["consistency"].as_array().map_or(0, Vec::len) - 2;
                let h = b["consistency"][last]["proof"]["proof"][0]
                    .as_str()
                    .unwrap_or("")
                    .to_string();
                b["consistency"][last]["proof"]["proof"][0] = json!(flip_hex(&h, 7));
            }),
        ),
        (
            "an older head paired with a newer head's proof",
            tampered(&bundle, |b| {
                b["consistency"][0]["first"] = json!(newest);
            }),
        ),
    ];
    for (what, b) in fixed {
        cases.push((what.to_string(), b));
    }
    let (mut rejected, total) = (0, cases.len());
    for (what, b) in cases {
        std::fs::write(&file, serde_json::to_vec(&b).expect("json")).expect("write");
        let (ok, text) = run_python("log", &file);
        assert!(!ok, "python accepted a tampered log ({what}): {text}");
        assert!(text.contains("REJECTED: "), "{what}: {text}");
        rejected += 1;
    }
    eprintln!("python rejected {rejected} of {total} tampered copies");
}

/// Old and new leaves alike: Python recomputes every leaf of the golden log
/// (`control-plane/src/state/tests_golden.rs` keeps the fixture equal to it), in leaf format 1
/// (floats such as `250.0` and `1.5`) and in format 2 — and notices one number written in the
/// other form.
#[test]
fn python_recomputes_the_golden_leaves_of_both_formats() {
    if let Some(why) = python_missing() {
        tribune_testkit::say_skipped(&format!(
            "python_recomputes_the_golden_leaves_of_both_formats: {why}"
        ));
        return;
    }
    let fixture = Path::new(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../scripts/conformance/testdata/golden-leaves.json"
    ));
    let (ok, text) = run_python("leaves", fixture);
    assert!(ok, "{text}");
    assert!(
        text.contains("30 in leaf format 1, 30 in leaf format 2"),
        "{text}"
    );
    let original = std::fs::read_to_string(fixture).expect("fixture");
    assert!(original.contains(r#""cpu_millicores_avg": 250.0"#));
    let tmp = tempfile::tempdir().expect("tempdir");
    let file = tmp.path().join("leaves.json");
    for (from, to) in [
        (
            r#""cpu_millicores_avg": 250.0"#,
            r#""cpu_millicores_avg": 250"#,
        ),
        (
            r#""cpu_millicores_avg": 250,"#,
            r#""cpu_millicores_avg": 250.0,"#,
        ),
        (
            r#""divergence_pct_max": 1.5"#,
            r#""divergence_pct_max": 1.50001"#,
        ),
    ] {
        assert!(original.contains(from), "{from}");
        std::fs::write(&file, original.replacen(from, to, 1)).expect("write");
        let (ok, text) = run_python("leaves", &file);
        assert!(!ok, "python accepted {to}: {text}");
        assert!(text.contains("REJECTED: "), "{text}");
    }
}
