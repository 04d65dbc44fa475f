//! End-to-end: integrity at rest (DESIGN invariant 8). Real `tribune controller` processes whose
//! files are damaged or tampered with while they are stopped:
//!
//! - a flipped byte inside a stored entry (a WAL record whose CRC32C fails, intact records behind
//!   it) → the controller refuses to start (exit 3), naming the segment file and the offset; a
//!   redb record whose checksum no longer holds → the same, naming the table and the record;
//! - random page damage → a clear error, never a panic (exit 101) or a backtrace;
//! - a tampered entry whose checksum was recomputed → the controller starts, finds that its log
//!   disagrees with its peers' signed tree heads, and serves nothing (503, not ready) until
//!   `--resync-from-peers` brings it back with the peers' data;
//! - a corrupt or missing `log-signing.key` → exit 3, the file left as it is; `--rotate-log-key`
//!   replaces it on purpose.

mod common;

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use common::{Cluster, DEADLINE};
use redb::ReadableTable;
use serde_json::Value;
use tribune_controller::raft::log_store::{self, META, RAFT_DIR};
use tribune_controller::raft::wal;

const MARKER: &str = "integrity-marker-7f3a";

fn source(name: &str) -> String {
    format!("policy \"{name}\" {{}}\n# {MARKER} precedence -10\n")
}

fn data_file(c: &Cluster, id: u64) -> PathBuf {
    log_store::data_file(&c.nodes[&id].data_dir)
}

fn wal_dir(c: &Cluster, id: u64) -> PathBuf {
    c.nodes[&id].data_dir.join(RAFT_DIR).join(wal::WAL_DIR)
}

/// Every record in node `id`'s WAL: its segment file, where it starts, and its payload.
fn wal_records(c: &Cluster, id: u64) -> Vec<(PathBuf, usize, Vec<u8>)> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(wal_dir(c, id))
        .expect("wal dir")
        .map(|e| e.expect("entry").path())
        .filter(|p| p.extension().is_some_and(|x| x == "wal"))
        .collect();
    files.sort();
    let mut out = Vec::new();
    for f in files {
        let bytes = std::fs::read(&f).expect("segment");
        let mut at = wal::MAGIC.len();
        while at + wal::RECORD_HEADER <= bytes.len() {
            let len = u32::from_le_bytes(bytes[at..at + 4].try_into().expect("4 bytes")) as usize;
            let start = at + wal::RECORD_HEADER;
            if len == 0 || start + len > bytes.len() {
                break;
            }
            out.push((f.clone(), at, bytes[start..start + len].to_vec()));
            at = start + len;
        }
    }
    out
}

fn find_all(hay: &[u8], needle: &[u8]) -> Vec<usize> {
    hay.windows(needle.len())
        .enumerate()
        .filter(|(_, w)| *w == needle)
        .map(|(i, _)| i)
        .collect()
}

/// Stops node `id` cleanly (SIGTERM) and reaps it.
fn stop(c: &mut Cluster, id: u64) {
    c.procs.stop(id, Duration::from_secs(20)).expect("node");
}

/// Restarts node `id` and waits for it to exit; returns its exit code and what it logged since.
fn restart_expecting_exit(c: &mut Cluster, id: u64) -> (Option<i32>, String) {
    let log = c.nodes[&id].log.clone();
    let from = std::fs::metadata(&log).map_or(0, |m| m.len() as usize);
    c.restart(id);
    let n = c.nodes.get_mut(&id).expect("node");
    let child = n.child.as_mut().expect("restarted");
    let Some(status) = tribune_testkit::process::wait_exit(child, DEADLINE) else {
        panic!("node {id} kept running\n{}", logged_since(&log, from));
    };
    n.child = None;
    (status.code(), logged_since(&log, from))
}

fn logged_since(log: &Path, from: usize) -> String {
    let all = std::fs::read(log).unwrap_or_default();
    String::from_utf8_lossy(all.get(from..).unwrap_or_default()).into_owned()
}

/// The exit was a refusal for integrity reasons, explained, and no panic.
fn assert_refused(code: Option<i32>, out: &str, names: &[&str]) {
    assert_eq!(code, Some(3), "exit 3 (integrity), not {code:?}:\n{out}");
    for n in names {
        assert!(out.contains(n), "the message names {n:?}:\n{out}");
    }
    assert!(
        !out.contains("panicked") && !out.contains("stack backtrace"),
        "no panic:\n{out}"
    );
}

async fn put(c: &Cluster, id: u64, name: &str, source: &str) {
    let (s, v) = c.put_policy(id, name, source, None).await;
    assert!(s == 200 || s == 201, "{s} {v}\n{}", c.logs());
}

/// Waits until node `id` answers a linearizable read of policy `name` with 200.
async fn policy_on(c: &Cluster, id: u64, name: &str) -> Value {
    let (s, v) = c.get_policy(id, name).await;
    assert_eq!(s, 200, "{v}\n{}", c.logs());
    v
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flipped_byte_in_a_stopped_controller_is_refused_naming_the_file_and_record() {
    let mut c = Cluster::start(1, &["--init"]);
    c.wait_leader().await;
    put(&c, 1, "guarded", &source("guarded")).await;
    // More commits after it: the marker is not only in the newest commit.
    for i in 0..3 {
        put(
            &c,
            1,
            &format!("after{i}"),
            &format!("policy \"after{i}\" {{}}\n"),
        )
        .await;
    }
    c.kill9(1);
    let file = data_file(&c, 1);
    let original = std::fs::read(&file).expect("data file");

    // 1. One byte flipped in a stored entry (alice → alicd), with intact entries behind it: its
    // CRC32C fails in the middle of the log, which a torn write cannot explain.
    let records = wal_records(&c, 1);
    let (segment, at, payload) = records
        .iter()
        .find(|(_, _, p)| !find_all(p, MARKER.as_bytes()).is_empty())
        .expect("the entry with the marker")
        .clone();
    let segment_bytes = std::fs::read(&segment).expect("segment");
    let mut flipped = segment_bytes.clone();
    let p = at + wal::RECORD_HEADER + find_all(&payload, MARKER.as_bytes())[0];
    flipped[p + MARKER.len() - 1] ^= 0x01;
    std::fs::write(&segment, &flipped).expect("write");
    let (code, out) = restart_expecting_exit(&mut c, 1);
    assert_refused(
        code,
        &out,
        &[
            &segment.display().to_string(),
            &format!("record at byte offset {at}"),
            "CRC32C mismatch",
            "corrupt",
            "--resync-from-peers",
        ],
    );
    assert_eq!(
        std::fs::read(&segment).expect("segment"),
        flipped,
        "a refused file is left as it was (the evidence)"
    );
    std::fs::write(&segment, &segment_bytes).expect("restore");

    // 2. A record changed through redb itself (valid pages, stale record checksum): the record
    // check names the table and the record.
    {
        let db = redb::Database::open(&file).expect("open");
        let tx = db.begin_write().expect("write");
        {
            let mut meta = tx.open_table(META).expect("meta");
            let mut value = meta
                .get("vote")
                .expect("get")
                .expect("a vote")
                .value()
                .to_vec();
            let last = value.len() - 1;
            value[last] ^= 0x01;
            meta.insert("vote", value.as_slice()).expect("insert");
        }
        tx.commit().expect("commit");
    }
    let (code, out) = restart_expecting_exit(&mut c, 1);
    assert_refused(
        code,
        &out,
        &[
            &file.display().to_string(),
            "table raft_meta, record \"vote\"",
            "checksum mismatch",
        ],
    );

    // 3. Untouched, it starts and serves what was written.
    std::fs::write(&file, &original).expect("restore");
    c.restart(1);
    c.wait_leader().await;
    assert_eq!(
        policy_on(&c, 1, "guarded").await["source"],
        Value::String(source("guarded"))
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn damaged_pages_are_a_clear_error_never_a_panic() {
    let mut c = Cluster::start(1, &["--init", "--snapshot-every", "4", "--keep-logs", "1"]);
    c.wait_leader().await;
    for i in 0..10 {
        put(&c, 1, &format!("p{i}"), &source(&format!("p{i}"))).await;
    }
    stop(&mut c, 1);
    let file = data_file(&c, 1);
    let original = std::fs::read(&file).expect("data file");
    let pages = original.len() / 4096;
    assert!(pages > 2, "{} bytes", original.len());
    // The header page, and pages picked by a fixed xorshift (reproducible).
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
    let mut next = || {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x
    };
    let mut victims = vec![0usize];
    victims.extend((0..4).map(|_| 1 + next() as usize % (pages - 1)));
    let mut refused = 0;
    for page in victims {
        let mut damaged = original.clone();
        for b in &mut damaged[page * 4096..(page + 1) * 4096] {
            *b = next() as u8;
        }
        std::fs::write(&file, &damaged).expect("write");
        let log = c.nodes[&1].log.clone();
        let from = std::fs::metadata(&log).map_or(0, |m| m.len() as usize);
        c.restart(1);
        // Either it refuses (the page mattered), or it serves exactly what was written (a page
        // no tree uses): never a panic, never altered data.
        let deadline = Instant::now() + DEADLINE;
        loop {
            let n = c.nodes.get_mut(&1).expect("node");
            if let Some(status) = n.child.as_mut().and_then(|ch| ch.try_wait().ok().flatten()) {
                n.child = None;
                let out = logged_since(&log, from);
                assert_ne!(status.code(), Some(101), "page {page}: a panic\n{out}");
                assert_refused(status.code(), &out, &[&file.display().to_string()]);
                refused += 1;
                break;
            }
            if let Some((200, v)) = c.get_json(1, "/v1/policies/p3").await {
                assert_eq!(v["source"], Value::String(source("p3")), "page {page}");
                c.kill9(1);
                let out = logged_since(&log, from);
                assert!(!out.contains("panicked"), "page {page}:\n{out}");
                break;
            }
            assert!(
                Instant::now() < deadline,
                "page {page}: neither refused nor served\n{}",
                logged_since(&log, from)
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
    assert!(refused >= 1, "the header page at least is refused");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_corrupt_log_signing_key_stops_the_controller_and_rotation_is_explicit() {
    let mut c = Cluster::start(1, &["--init"]);
    c.wait_leader().await;
    put(&c, 1, "p", "policy \"p\" {}\n").await;
    let keys = |v: &Value| v.as_array().map_or(0, Vec::len);
    let (s, v) = c.get_json(1, "/v1/log/keys").await.expect("keys");
    assert_eq!((s, keys(&v)), (200, 1), "{v}");
    stop(&mut c, 1);
    let key_file = c.nodes[&1].data_dir.join("log-signing.key");
    let good = std::fs::read_to_string(&key_file).expect("key");

    // One hex digit of the seed changed: still valid hex, another valid key — refused.
    let seed_at = good.find("seed ").expect("seed line") + "seed ".len();
    let mut bad = good.clone().into_bytes();
    bad[seed_at] = if bad[seed_at] == b'a' { b'b' } else { b'a' };
    std::fs::write(&key_file, &bad).expect("write");
    let (code, out) = restart_expecting_exit(&mut c, 1);
    assert_refused(
        code,
        &out,
        &[&key_file.display().to_string(), "--rotate-log-key"],
    );
    assert_eq!(std::fs::read(&key_file).expect("key"), bad, "not replaced");

    // Missing beside existing data: refused, nothing created.
    std::fs::remove_file(&key_file).expect("rm");
    let (code, out) = restart_expecting_exit(&mut c, 1);
    assert_refused(code, &out, &["is missing", "--rotate-log-key"]);
    assert!(!key_file.exists(), "no key was created");

    // Rotation on purpose: a new key, registered beside the old one.
    std::fs::write(&key_file, &bad).expect("write");
    c.nodes
        .get_mut(&1)
        .expect("node")
        .args
        .push("--rotate-log-key".into());
    c.restart(1);
    c.nodes.get_mut(&1).expect("node").args.pop();
    c.wait_leader().await;
    let deadline = Instant::now() + DEADLINE;
    loop {
        if let Some((200, v)) = c.get_json(1, "/v1/log/keys").await
            && keys(&v) == 2
        {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the new key is registered\n{}",
            c.logs()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let moved: Vec<_> = std::fs::read_dir(&c.nodes[&1].data_dir)
        .expect("ls")
        .flatten()
        .filter(|e| {
            e.file_name()
                .to_string_lossy()
                .starts_with("log-signing.key.rotated-")
        })
        .collect();
    assert_eq!(moved.len(), 1, "the old key file is kept aside");
    assert_eq!(std::fs::read(moved[0].path()).expect("old"), bad);
    let new = std::fs::read_to_string(&key_file).expect("new key");
    assert_ne!(new, good);
    tribune_controller::log_key::seed_from_file_text(&new).expect("the new file checks");
    // And it signs heads.
    let (s, v) = c.get_json(1, "/v1/log/sth").await.expect("sth");
    assert_eq!(s, 200, "{v}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_resealed_tamper_is_caught_by_the_peers_and_resync_brings_the_node_back() {
    let mut c = Cluster::start(3, &[]);
    c.wait_leader().await;
    put(&c, 1, "guarded", &source("guarded")).await;
    for i in 0..3 {
        put(
            &c,
            1,
            &format!("after{i}"),
            &format!("policy \"after{i}\" {{}}\n"),
        )
        .await;
    }
    policy_on(&c, 3, "after2").await;
    stop(&mut c, 3);

    // Someone who knows the format: -10 becomes -19 inside the stored log entry, and the
    // record checksum is recomputed. Every local check passes.
    let (segment, at, payload) = wal_records(&c, 3)
        .into_iter()
        .find(|(_, _, p)| !find_all(p, b"precedence -10").is_empty())
        .expect("the entry with the policy");
    let mut altered = payload.clone();
    let p = find_all(&payload, b"precedence -10")[0];
    altered[p + "precedence -1".len()] = b'9';
    let mut resealed = Vec::new();
    wal::frame_into(&altered, &mut resealed);
    let mut bytes = std::fs::read(&segment).expect("segment");
    bytes[at..at + resealed.len()].copy_from_slice(&resealed);
    std::fs::write(&segment, &bytes).expect("write");
    c.restart(3);

    // It starts, compares with its peers, and refuses to serve — the altered value never, not
    // even to a stale read.
    let deadline = Instant::now() + DEADLINE;
    let problem = loop {
        let mut diverged = None;
        for path in ["/v1/policies/guarded?stale=true", "/v1/policies/guarded"] {
            if let Some((status, v)) = c.get_json(3, path).await {
                assert!(
                    !v["source"].as_str().is_some_and(|s| s.contains("-19")),
                    "served the altered policy ({path}): {v}\n{}",
                    c.logs()
                );
                if status == 503
                    && v["type"]
                        .as_str()
                        .is_some_and(|t| t.ends_with("/state-diverged"))
                {
                    diverged = Some(v);
                }
            }
        }
        if let Some(v) = diverged {
            break v;
        }
        assert!(
            Instant::now() < deadline,
            "node 3 never refused\n{}",
            c.logs()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let detail = problem["detail"].as_str().unwrap_or_default();
    assert!(
        detail.contains("disagrees with the cluster") && detail.contains("--resync-from-peers"),
        "{problem}"
    );
    let (s, v) = c
        .get_json(3, "/v1/policies/guarded?stale=true")
        .await
        .expect("stale");
    assert_eq!(s, 503, "stale reads are refused too: {v}");
    let (s, v) = c.get_json(3, "/readyz").await.expect("readyz");
    assert_eq!(s, 503, "{v}");
    assert!(
        v["detail"].as_str().is_some_and(|d| d.contains("disagree")),
        "{v}"
    );
    // The others still serve the real value, and the cluster still takes writes.
    assert_eq!(
        policy_on(&c, 1, "guarded").await["source"],
        Value::String(source("guarded"))
    );
    put(&c, 2, "later", "policy \"later\" {}\n").await;

    // Re-sync: the old data is moved aside, the leader sends the real data.
    stop(&mut c, 3);
    c.nodes
        .get_mut(&3)
        .expect("node")
        .args
        .push("--resync-from-peers".into());
    c.restart(3);
    c.nodes.get_mut(&3).expect("node").args.pop();
    assert_eq!(
        policy_on(&c, 3, "guarded").await["source"],
        Value::String(source("guarded")),
        "node 3 serves the cluster's data again"
    );
    policy_on(&c, 3, "later").await;
    let deadline = Instant::now() + DEADLINE;
    while c.get_json(3, "/readyz").await.map(|r| r.0) != Some(200) {
        assert!(
            Instant::now() < deadline,
            "node 3 never ready\n{}",
            c.logs()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let aside: Vec<_> = std::fs::read_dir(&c.nodes[&3].data_dir)
        .expect("ls")
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().starts_with("raft.resync-"))
        .collect();
    assert_eq!(aside.len(), 1, "the old data is kept aside");
    assert!(aside[0].path().join(log_store::DATA_FILE).exists());
    // It survives a plain restart with the new data.
    stop(&mut c, 3);
    c.restart(3);
    policy_on(&c, 3, "later").await;
}
