//! Backup and restore, end to end (`deploy/README.md`, "Back up and restore"): a running
//! 3-controller cluster (mTLS) is backed up with `tribune snapshot save`; every data dir is
//! wiped; each controller's dir is restored with `tribune snapshot restore`; the restarted
//! cluster has every policy, enclave and log entry back, under the same indexes, and
//! `tribune log verify` finds every tree head pinned before the backup consistent with the new
//! ones (signed by the restored controllers' new keys). A damaged backup is refused by
//! `snapshot status` and `snapshot restore` and writes nothing.

mod common;

use std::path::Path;
use std::process::{Command, Output};
use std::time::{Duration, Instant};

use common::{BIN, Cluster, DEADLINE};
use serde_json::{Value, json};

/// A verb that takes no cluster options (`snapshot status|restore`).
fn offline(args: &[&str]) -> Output {
    Command::new(BIN).args(args).output().expect("run tribune")
}

/// `tribune snapshot restore FILE --data-dir DIR --id ID`.
fn restore(file: &Path, dir: &Path, id: u64) -> Output {
    offline(&[
        "snapshot",
        "restore",
        file.to_str().expect("path"),
        "--data-dir",
        dir.to_str().expect("path"),
        "--id",
        &id.to_string(),
    ])
}

fn verify(c: &Cluster, state: &Path) -> Output {
    c.cli(&["log", "verify", "--state", state.to_str().expect("path")])
}

/// What must survive: policies, enclaves and every log entry, read from node `id`.
async fn contents(c: &Cluster, id: u64) -> (Value, Value, Vec<Value>) {
    let deadline = Instant::now() + DEADLINE;
    loop {
        let p = c.get_json(id, "/v1/policies").await;
        let e = c.get_json(id, "/v1/enclaves").await;
        if let (Some((200, p)), Some((200, e))) = (p, e)
            && let Some(log) = c.log_entries(id).await
        {
            return (p, e, log);
        }
        assert!(
            Instant::now() < deadline,
            "controller {id} did not serve its contents\n{}",
            c.logs()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wiped_cluster_is_restored_from_its_backup_with_its_log_consistent() {
    // Snapshots every few entries: the backup must not depend on what the log still holds.
    let mut c = Cluster::start_tls(3, &["--snapshot-every", "20", "--keep-logs", "5"]);
    let leader = c.wait_leader().await;
    c.wait_log_keys(3).await;
    let work = tempfile::tempdir().expect("tempdir");
    let pins = work.path().join("log-state.json");

    for i in 0..12 {
        let (s, v) = c
            .put_policy(
                1 + i % 3,
                &format!("p{i}"),
                &format!("policy \"p{i}\" {{}}\n# {i}\n"),
                None,
            )
            .await;
        assert!(s == 200 || s == 201, "{s} {v}");
        if i % 4 == 3 {
            // A tree head pinned from a different controller each time.
            let o = verify(&c, &pins);
            assert!(o.status.success(), "{}", common::output_text(&o));
        }
    }
    for i in 0..5 {
        c.put_json(
            leader,
            &format!("/v1/enclaves/e{i}"),
            json!({"id": format!("e{i}"), "tenant": "acme", "tee": "sim",
                   "placement": {"host": "h1", "epoch": 1}}),
        )
        .await;
    }
    let o = verify(&c, &pins);
    assert!(o.status.success(), "{}", common::output_text(&o));
    let before = contents(&c, leader).await;
    assert_eq!(before.1.as_array().map(Vec::len), Some(5));

    let file = work.path().join("cluster.tribsnap");
    let o = c.cli(&["snapshot", "save", file.to_str().expect("path")]);
    assert!(o.status.success(), "{}", common::output_text(&o));
    assert!(
        String::from_utf8_lossy(&o.stdout).contains("12 policies, 5 enclaves"),
        "{}",
        common::output_text(&o)
    );
    let o = offline(&[
        "snapshot",
        "status",
        file.to_str().expect("path"),
        "-o",
        "json",
    ]);
    assert!(o.status.success(), "{}", common::output_text(&o));
    let status: Value = serde_json::from_slice(&o.stdout).expect("json");
    assert_eq!(status["log_entries"].as_u64(), Some(before.2.len() as u64));
    assert_eq!(status["members"].as_object().map(|m| m.len()), Some(3));

    // A damaged copy is refused by status and restore, and restore writes nothing.
    let mut damaged = std::fs::read(&file).expect("read");
    let at = damaged.len() - 10;
    damaged[at] ^= 0x01;
    let bad = work.path().join("damaged.tribsnap");
    std::fs::write(&bad, &damaged).expect("write");
    let o = offline(&["snapshot", "status", bad.to_str().expect("path")]);
    assert!(!o.status.success(), "{}", common::output_text(&o));
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("SHA-256 does not match"),
        "{}",
        common::output_text(&o)
    );
    let nowhere = work.path().join("not-written");
    let o = restore(&bad, &nowhere, 1);
    assert!(!o.status.success(), "{}", common::output_text(&o));
    assert!(!nowhere.exists(), "a refused restore wrote {nowhere:?}");

    // Lose everything: stop every controller and wipe every data dir.
    for id in [1, 2, 3] {
        c.kill9(id);
        let dir = c.nodes[&id].data_dir.clone();
        std::fs::remove_dir_all(&dir).expect("wipe");
        // Restoring into a dir that holds a controller's data is refused; a fresh one works.
        let o = restore(&file, &dir, id);
        assert!(o.status.success(), "{}", common::output_text(&o));
        let o = restore(&file, &dir, id);
        assert!(
            !o.status.success(),
            "restored twice into one dir\n{}",
            common::output_text(&o)
        );
        assert!(
            String::from_utf8_lossy(&o.stderr).contains("already holds a controller's data"),
            "{}",
            common::output_text(&o)
        );
    }
    for id in [1, 2, 3] {
        c.restart(id);
    }
    let leader = c.wait_leader().await;
    // Three old keys and three new ones.
    c.wait_log_keys(6).await;

    for id in [1, 2, 3] {
        let (policies, enclaves, log) = contents(&c, id).await;
        assert_eq!(policies, before.0, "policies on {id}");
        assert_eq!(enclaves, before.1, "enclaves on {id}");
        assert!(
            log.len() > before.2.len(),
            "the new keys are logged on {id}"
        );
        assert_eq!(
            log[..before.2.len()],
            before.2[..],
            "log entries before the backup, on {id}"
        );
    }
    // Writes work after the restore.
    let (s, v) = c
        .put_policy(leader, "after", "policy \"after\" {}\n", None)
        .await;
    assert!(s == 200 || s == 201, "{s} {v}");
    // Every tree head pinned before the backup is consistent with the restored cluster's.
    let o = verify(&c, &pins);
    assert!(o.status.success(), "{}", common::output_text(&o));
}
