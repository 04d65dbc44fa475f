//! End-to-end: the attestation log on a real 3-controller cluster. Every entry written in the run
//! is proven with `tribune log prove`; `tribune log verify` finds every tree head it has seen —
//! signed by different controllers, across a snapshot install — consistent with the newest; and a
//! tampered state file, a forked tree head signed with a real key, or a dropped key fail with a
//! clear message and exit 1.

mod common;

use std::path::Path;
use std::process::Output;
use std::time::{Duration, Instant};

use common::{BIN, Cluster, DEADLINE};
use serde_json::Value;

fn tribune(args: &[&str]) -> Output {
    std::process::Command::new(BIN)
        .args(args)
        .env_remove("XDG_STATE_HOME")
        .output()
        .expect("run tribune")
}

fn text(o: &Output) -> String {
    format!(
        "exit {:?}\nstdout:\n{}\nstderr:\n{}",
        o.status.code(),
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

fn verify(endpoint: &str, state: &Path) -> Output {
    tribune(&[
        "log",
        "verify",
        "--state",
        state.to_str().expect("path"),
        "--endpoint",
        endpoint,
        "--timeout-secs",
        "60",
    ])
}

/// The current tree head as node `id` serves it (retrying while it starts up).
async fn sth(c: &Cluster, id: u64) -> Value {
    let deadline = Instant::now() + DEADLINE;
    loop {
        if let Some((200, v)) = c.get_json(id, "/v1/log/sth").await {
            return v;
        }
        assert!(
            Instant::now() < deadline,
            "no tree head from {id}\n{}",
            c.logs()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_entry_proves_and_every_tree_head_is_consistent() {
    // Snapshots every few entries, so a restarted controller catches up by snapshot install and
    // must rebuild the same tree from the snapshot's entries.
    let mut c = Cluster::start(3, &["--snapshot-every", "5", "--keep-logs", "2"]);
    c.wait_leader().await;
    c.wait_log_keys(3).await;
    let dir = tempfile::tempdir().expect("tempdir");
    let state = dir.path().join("log-state.json");

    // Policy changes, a tree head from each controller in turn.
    for round in 0..3u64 {
        for i in 0..3 {
            let (s, v) = c
                .put_policy(
                    round % 3 + 1,
                    &format!("p{i}"),
                    &format!("policy \"p{i}\" {{}}\n# round {round}\n"),
                    None,
                )
                .await;
            assert!(s == 200 || s == 201, "{s} {v}");
        }
        let endpoint = format!("http://{}", c.nodes[&(round % 3 + 1)].addr);
        let o = verify(&endpoint, &state);
        assert!(o.status.success(), "{}", text(&o));
        assert!(
            String::from_utf8_lossy(&o.stdout).contains("ok:"),
            "{}",
            text(&o)
        );
    }

    // A controller misses writes and comes back through a snapshot.
    c.kill9(3);
    for i in 0..8 {
        let (s, v) = c
            .put_policy(
                1,
                &format!("q{i}"),
                &format!("policy \"q{i}\" {{}}\n"),
                None,
            )
            .await;
        assert!(s == 200 || s == 201, "{s} {v}");
    }
    c.restart(3);
    let ref_head = sth(&c, 1).await;
    let endpoint3 = format!("http://{}", c.nodes[&3].addr);
    let o = verify(&endpoint3, &state);
    assert!(o.status.success(), "{}\n{}", text(&o), c.logs());
    let h3 = sth(&c, 3).await;
    let size = ref_head["tree_size"].as_u64().expect("size");
    assert!(h3["tree_size"].as_u64() >= Some(size));
    if h3["tree_size"] == ref_head["tree_size"] {
        assert_eq!(
            h3["root_hash"], ref_head["root_hash"],
            "same size, same root"
        );
    }

    // Every entry of the run proves against a signed head, from any controller.
    let size = sth(&c, 2).await["tree_size"].as_u64().expect("size");
    assert!(size >= 3 + 9 + 8, "3 keys, 17 policy writes: {size}");
    for index in 0..size {
        let endpoint = format!("http://{}", c.nodes[&(index % 3 + 1)].addr);
        let o = tribune(&[
            "log",
            "prove",
            &index.to_string(),
            "--state",
            state.to_str().expect("path"),
            "--endpoint",
            &endpoint,
            "--timeout-secs",
            "60",
        ]);
        assert!(o.status.success(), "entry {index}: {}", text(&o));
        let out = String::from_utf8_lossy(&o.stdout);
        assert!(
            out.contains(&format!("ok: entry {index} is included")),
            "{out}"
        );
    }
    // JSON output carries the proof.
    let o = tribune(&[
        "log",
        "prove",
        "0",
        "--state",
        state.to_str().expect("path"),
        "--endpoint",
        &c.endpoints(),
        "-o",
        "json",
    ]);
    assert!(o.status.success(), "{}", text(&o));
    let v: Value = serde_json::from_slice(&o.stdout).expect("json");
    assert_eq!(v["ok"], true);
    assert_eq!(v["entry"]["kind"], "log_key");

    let o = verify(&c.endpoints(), &state);
    assert!(o.status.success(), "{}", text(&o));
    let out = String::from_utf8_lossy(&o.stdout).to_string();
    assert!(out.contains("earlier tree head(s) are consistent"), "{out}");
    let saved: Value =
        serde_json::from_slice(&std::fs::read(&state).expect("state")).expect("state json");
    assert_eq!(saved["keys"].as_object().map(|k| k.len()), Some(3));
    assert!(saved["sths"].as_array().map_or(0, Vec::len) >= 4, "{saved}");

    // A nonexistent entry is an error, not a proof.
    let o = tribune(&[
        "log",
        "prove",
        "100000",
        "--state",
        state.to_str().expect("path"),
        "--endpoint",
        &c.endpoints(),
    ]);
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    assert!(
        text(&o).contains("entry 100000 is not in the log"),
        "{}",
        text(&o)
    );

    // --- Negative: a state file whose tree head was altered. ---
    let tampered = dir.path().join("tampered.json");
    let mut s = saved.clone();
    let root = s["sths"][0]["root_hash"]
        .as_str()
        .expect("root")
        .to_string();
    let flipped = format!(
        "{}{}",
        if root.starts_with('0') { "1" } else { "0" },
        &root[1..]
    );
    s["sths"][0]["root_hash"] = Value::String(flipped);
    s["sths"][0]["sth"] = Value::String(String::new());
    std::fs::write(&tampered, serde_json::to_vec(&s).expect("json")).expect("write");
    let o = verify(&c.endpoints(), &tampered);
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    assert!(
        text(&o).contains("does not verify under key"),
        "{}",
        text(&o)
    );
    assert!(text(&o).contains("left unchanged"), "{}", text(&o));

    // --- Negative: a forked head, validly signed with a real controller key. ---
    let key_text =
        std::fs::read_to_string(c.nodes[&1].data_dir.join("log-signing.key")).expect("key file");
    let seed = tribune_controller::log_key::seed_from_file_text(&key_text).expect("key file");
    let key = ed25519_dalek::SigningKey::from_bytes(&seed);
    let key_id = saved["keys"]
        .as_object()
        .and_then(|m| {
            m.values()
                .find(|k| k["node_id"] == 1)
                .and_then(|k| k["key_id"].as_str())
        })
        .expect("node 1's key")
        .to_string();
    let fork_size = size - 2;
    let forged = tribune_attest::merkle::SignedTreeHead::sign(&key, fork_size, 1, [0x42; 32]);
    let mut s = saved.clone();
    s["sths"]
        .as_array_mut()
        .expect("sths")
        .push(serde_json::json!({
            "tree_size": fork_size, "timestamp_ms": 1, "root_hash": hex::encode(forged.root),
            "signature": hex::encode(forged.signature), "key_id": key_id, "node_id": 1,
            "sth": hex::encode(forged.encode()),
        }));
    let forked = dir.path().join("forked.json");
    std::fs::write(&forked, serde_json::to_vec(&s).expect("json")).expect("write");
    let o = verify(&c.endpoints(), &forked);
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    assert!(text(&o).contains("INCONSISTENT"), "{}", text(&o));
    assert!(
        text(&o).contains(&format!("size {fork_size}")),
        "{}",
        text(&o)
    );

    // --- Negative: `prove` checks the head it proves against the pinned ones. A fork of the
    // current size, validly signed with a real controller key, pinned as the largest head: the
    // cluster's head does not extend it, so no proof is printed as ok. ---
    let current = sth(&c, 1).await["tree_size"].as_u64().expect("size");
    let forged = tribune_attest::merkle::SignedTreeHead::sign(&key, current, 2, [0x42; 32]);
    let mut s = saved.clone();
    s["sths"]
        .as_array_mut()
        .expect("sths")
        .push(serde_json::json!({
            "tree_size": current, "timestamp_ms": 2, "root_hash": hex::encode(forged.root),
            "signature": hex::encode(forged.signature), "key_id": key_id, "node_id": 1,
            "sth": hex::encode(forged.encode()),
        }));
    let pinned_fork = dir.path().join("pinned-fork.json");
    let before = serde_json::to_vec(&s).expect("json");
    std::fs::write(&pinned_fork, &before).expect("write");
    let o = tribune(&[
        "log",
        "prove",
        "1",
        "--state",
        pinned_fork.to_str().expect("path"),
        "--endpoint",
        &c.endpoints(),
    ]);
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    assert!(text(&o).contains("INCONSISTENT"), "{}", text(&o));
    assert!(!text(&o).contains("ok: entry"), "{}", text(&o));
    assert_eq!(
        std::fs::read(&pinned_fork).expect("state"),
        before,
        "a refused proof pins nothing"
    );

    // --- Negative: a pinned key the cluster no longer lists. ---
    let mut s = saved.clone();
    s["keys"]["00000000deadbeef"] = serde_json::json!({
        "key_id": "00000000deadbeef", "node_id": 9, "public_key": "00".repeat(32),
        "registered_at_ms": 0, "log_index": 0,
    });
    let dropped = dir.path().join("dropped.json");
    std::fs::write(&dropped, serde_json::to_vec(&s).expect("json")).expect("write");
    let o = verify(&c.endpoints(), &dropped);
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    assert!(text(&o).contains("PINNED KEY DROPPED"), "{}", text(&o));

    // The real state file still verifies.
    let o = verify(&c.endpoints(), &state);
    assert!(o.status.success(), "{}", text(&o));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn log_endpoints_refuse_bad_parameters_with_problem_details() {
    let c = Cluster::start(1, &["--init"]);
    c.wait_leader().await;
    c.wait_log_keys(1).await;
    let (s, v) = c.put_policy(1, "p", "policy \"p\" {}", None).await;
    assert_eq!(s, 201, "{v}");
    let cases: &[(&str, u16, &str)] = &[
        (
            "/v1/log/entries?start=5&end=2",
            400,
            "end (2) is before start (5)",
        ),
        ("/v1/log/entries?start=0&end=5000", 400, "at most 1000"),
        ("/v1/log/entries?start=-1", 400, "start"),
        (
            "/v1/log/entries?kind=nonsense",
            400,
            "is not a log entry kind",
        ),
        ("/v1/log/entries?from=3", 400, "unknown field `from`"),
        (
            "/v1/log/entries?start=99999999999999999999",
            400,
            "invalid query string",
        ),
        ("/v1/log/proof/inclusion", 400, "give index="),
        (
            "/v1/log/proof/inclusion?index=0&leaf_hash=ab",
            400,
            "not both",
        ),
        (
            "/v1/log/proof/inclusion?leaf_hash=zz",
            400,
            "64 hex characters",
        ),
        (
            "/v1/log/proof/inclusion?leaf_hash=0000000000000000000000000000000000000000000000000000000000000000",
            404,
            "no log entry has leaf hash",
        ),
        (
            "/v1/log/proof/inclusion?index=7&tree_size=2",
            400,
            "index 7 is not in the tree of size 2",
        ),
        (
            "/v1/log/proof/inclusion?index=0&tree_size=500",
            400,
            "tree_size 500 is larger than the log",
        ),
        (
            "/v1/log/proof/inclusion?index=0&tree_size=0",
            400,
            "tree_size=0",
        ),
        ("/v1/log/proof/consistency", 400, "give first="),
        (
            "/v1/log/proof/consistency?first=2&second=1",
            400,
            "first (2) is larger than second (1)",
        ),
        (
            "/v1/log/proof/consistency?first=1&second=900",
            400,
            "tree_size 900 is larger than the log",
        ),
        ("/v1/log/sth?tree_size=1", 400, "unknown field"),
    ];
    for (path, want, has) in cases {
        let r = c.http.get(c.url(1, path)).send().await.expect("request");
        let status = r.status().as_u16();
        let ct = r
            .headers()
            .get("content-type")
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_string();
        let body: Value = r.json().await.unwrap_or(Value::Null);
        assert_eq!(status, *want, "{path}: {body}");
        assert_eq!(ct, "application/problem+json", "{path}");
        let detail = body["detail"].as_str().unwrap_or_default();
        assert!(
            detail.contains(has),
            "{path}: {detail:?} should mention {has:?}"
        );
    }
    // And the good answers have the documented shapes.
    let (_, page) = c
        .get_json(1, "/v1/log/entries?kind=policy_change&subject=p")
        .await
        .expect("entries");
    assert_eq!(page["entries"].as_array().map(Vec::len), Some(1), "{page}");
    let leaf = page["entries"][0]["leaf_hash"].as_str().expect("leaf hash");
    let (s, p) = c
        .get_json(1, &format!("/v1/log/proof/inclusion?leaf_hash={leaf}"))
        .await
        .expect("proof");
    assert_eq!(s, 200, "{p}");
    assert_eq!(p["leaf_index"], page["entries"][0]["index"]);
    let (s, p) = c
        .get_json(1, "/v1/log/proof/consistency?first=1&second=2")
        .await
        .expect("proof");
    assert_eq!(s, 200, "{p}");
    assert!(p["proof"].as_array().is_some_and(|a| !a.is_empty()), "{p}");
}

/// `tribune log checkpoint` from every controller of a 3-controller cluster: each is a C2SP
/// checkpoint (parsed by `tlog_tiles`) under the configured origin, signed as a C2SP signed note
/// that verifies (`signed_note`, Cloudflare's port of Go's sumdb/note) with the verifier key
/// `tribune log note-keys` publishes for that controller, and only with that one; its size and
/// root are the controller's signed tree head's.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn checkpoints_are_c2sp_signed_notes_that_witnesses_can_verify() {
    let origin = "tribune.example/test-log";
    let c = Cluster::start(3, &["--log-origin", origin]);
    c.wait_leader().await;
    c.wait_log_keys(3).await;
    let (s, v) = c.put_policy(1, "p", "policy \"p\" {}", None).await;
    assert_eq!(s, 201, "{v}");

    let out = tribune(&[
        "log",
        "note-keys",
        "-o",
        "json",
        "--endpoint",
        &c.url(1, ""),
    ]);
    assert!(out.status.success(), "{}", text(&out));
    let keys: Value = serde_json::from_slice(&out.stdout).expect("json");
    let keys = keys.as_array().expect("a list");
    assert_eq!(keys.len(), 3, "{keys:?}");
    let verifier = |node: u64| -> signed_note::VerifierList {
        let k = keys
            .iter()
            .find(|k| k["node_id"] == node)
            .unwrap_or_else(|| panic!("no note key of controller {node}: {keys:?}"));
        assert_eq!(k["origin"], origin);
        let vkey = k["verifier_key"].as_str().expect("verifier_key");
        assert!(vkey.starts_with(&format!("{origin}+")), "{vkey}");
        let v = signed_note::StandardVerifier::new(vkey).expect("a signed-note verifier key");
        signed_note::VerifierList::new(vec![Box::new(v)])
    };

    for id in 1..=3u64 {
        let out = tribune(&["log", "checkpoint", "--endpoint", &c.url(id, "")]);
        assert!(out.status.success(), "{}", text(&out));
        let note = signed_note::Note::from_bytes(&out.stdout)
            .unwrap_or_else(|e| panic!("controller {id}: not a signed note: {e}\n{}", text(&out)));
        let cp = tlog_tiles::Checkpoint::from_bytes(note.text())
            .unwrap_or_else(|e| panic!("controller {id}: not a checkpoint: {e:?}\n{}", text(&out)));
        assert_eq!(cp.origin(), origin);
        let (ok, unknown) = note.verify(&verifier(id)).expect("verifies");
        assert_eq!((ok.len(), unknown.len()), (1, 0), "controller {id}");
        let other = id % 3 + 1;
        assert!(
            note.verify(&verifier(other)).is_err(),
            "controller {id}'s checkpoint verified with controller {other}'s key"
        );
        // The same tree as the controller's signed tree head (the log is quiet now).
        let head = sth(&c, id).await;
        assert_eq!(head["tree_size"], cp.size(), "{head}");
        assert_eq!(head["root_hash"], hex::encode(cp.hash().0), "{head}");
    }
}
