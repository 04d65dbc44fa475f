//! How a controller stops, as root (real agents need cgroups; a full disk needs a tmpfs):
//!
//! - SIGTERM to the leader while an agent streams to it: the controller ends the stream with a
//!   `Goodbye` (the agent re-attests on another controller), stops Raft and exits 0 within a
//!   bound; the other two elect a leader and take writes. (It used to wait forever for the
//!   stream to close, still leading, while writes elsewhere got 503 no-leader.)
//! - SIGTERM to a leader hands its leadership to an up-to-date follower before it exits (no
//!   root needed).
//! - A full disk under a controller: its Raft stops on the write error, and the controller exits
//!   with status 4 and a message naming the cause instead of running on as a zombie (200 on
//!   `/healthz`, spinning on every read). Once space is back, a restart catches up and serves
//!   every write the cluster acknowledged meanwhile.

mod common;

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use common::{Cluster, DEADLINE};
use serde_json::{Value, json};
use tribune_testkit::process::Stopped;

/// A controller's stop must end within this (5 s for connections + 5 s for Raft + slack).
const STOP_BOUND: Duration = Duration::from_secs(20);

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

async fn entries(c: &Cluster) -> Vec<Value> {
    for id in c.running() {
        if let Some(all) = c.log_entries(id).await {
            return all;
        }
    }
    Vec::new()
}

/// A verdict for `enclave` at or after `since_ms` (0: any), verified by a controller other
/// than `not_by`.
async fn wait_verdict(c: &Cluster, enclave: &str, since_ms: i64, not_by: u64) -> Value {
    let deadline = Instant::now() + DEADLINE;
    loop {
        if let Some(v) = entries(c).await.into_iter().find(|e| {
            e["kind"] == "verdict"
                && e["subject"] == enclave
                && e["at_ms"].as_i64().unwrap_or(0) >= since_ms
                && e["detail"]["verified_by"].as_u64().unwrap_or(not_by) != not_by
        }) {
            return v;
        }
        assert!(
            Instant::now() < deadline,
            "no verdict for {enclave} since {since_ms} by a controller other than {not_by}\n{}",
            c.logs()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_to_the_leader_with_an_agent_streaming_hands_over_and_exits() {
    if common::skip_unless_root(
        "sigterm_to_the_leader_with_an_agent_streaming_hands_over_and_exits",
        "the host agent needs cgroups",
    ) {
        return;
    }
    let mut c = Cluster::start_tls(3, &["--allow-sim-evidence"]);
    let leader = c.wait_leader().await;
    let enclave = json!({
        "id": "steady", "tenant": "t", "tee": "sim",
        "placement": {"host": "h1", "epoch": 1},
        "launch": {"process": {"cmd": ["/bin/sh", "-c", "while :; do sleep 1; done"]}},
    });
    let r = c
        .http
        .put(c.url(leader, "/v1/enclaves/steady"))
        .json(&enclave)
        .send()
        .await
        .expect("PUT enclave");
    assert!(r.status().is_success(), "{}", r.status());

    // The agent streams to the leader first.
    let mut controllers = vec![c.nodes[&leader].addr.clone()];
    controllers.extend(
        c.nodes
            .values()
            .filter(|n| n.id != leader)
            .map(|n| n.addr.clone()),
    );
    let agent = common::start_agent(&c, "stopa", "h1", controllers, vec![]);
    let first = wait_verdict(&c, "steady", 0, u64::MAX).await;
    assert_eq!(
        first["detail"]["verified_by"].as_u64(),
        Some(leader),
        "the agent should stream to the leader first: {first}"
    );

    // SIGTERM the leader: it must exit by itself, cleanly, within the bound.
    let stopped_at = now_ms();
    let t = Instant::now();
    let stopped = c.stop(leader, STOP_BOUND).expect("stop the leader");
    let took = t.elapsed();
    match stopped {
        Some(Stopped::Exited(Some(status))) => assert!(
            status.success(),
            "the leader exited with {status} after SIGTERM\n{}",
            c.logs()
        ),
        other => panic!(
            "the leader did not exit within {STOP_BOUND:?} of SIGTERM ({other:?})\n{}",
            c.logs()
        ),
    }
    eprintln!("leader {leader} exited {took:?} after SIGTERM");

    // The agent re-attests on another controller, and the other two take writes.
    let moved = wait_verdict(&c, "steady", stopped_at, leader).await;
    eprintln!(
        "agent re-attested on controller {} {} ms after SIGTERM",
        moved["detail"]["verified_by"],
        moved["at_ms"].as_i64().unwrap_or(0) - stopped_at
    );
    let new_leader = c.wait_leader().await;
    assert_ne!(new_leader, leader);
    let (s, b) = c
        .put_policy(
            new_leader,
            "after-stop",
            "policy \"after-stop\" { match tenant == \"x\" }",
            None,
        )
        .await;
    assert!(s == 200 || s == 201, "write after the stop: {s} {b}");
    drop(agent);
}

/// SIGTERM to a leader: before it exits it asks a follower holding its whole log to stand
/// (`node/handover.rs`), so the follower stands when asked instead of after an election timeout
/// of silence, and the other two take writes. Without the handover neither log line appears.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_to_the_leader_hands_leadership_to_an_up_to_date_follower() {
    let mut c = Cluster::start(3, &[]);
    let leader = c.wait_leader().await;
    let (s, b) = c
        .put_policy(leader, "before-stop", "policy \"before-stop\" {}", None)
        .await;
    assert!(s == 200 || s == 201, "write before the stop: {s} {b}");

    let stopped = c.stop(leader, STOP_BOUND).expect("stop the leader");
    assert!(
        matches!(stopped, Some(Stopped::Exited(Some(status))) if status.success()),
        "the leader did not exit cleanly after SIGTERM ({stopped:?})\n{}",
        c.logs()
    );
    let log_of = |id: u64| std::fs::read_to_string(&c.nodes[&id].log).unwrap_or_default();
    assert!(
        log_of(leader).contains("leadership handed over"),
        "the stopping leader {leader} did not hand over\n{}",
        c.logs()
    );
    let new_leader = c.wait_leader().await;
    assert_ne!(new_leader, leader);
    assert!(
        log_of(new_leader).contains("the stopping leader asked this controller to stand"),
        "new leader {new_leader} did not stand on the stopping leader's request\n{}",
        c.logs()
    );
    let (s, b) = c
        .put_policy(new_leader, "after-stop", "policy \"after-stop\" {}", None)
        .await;
    assert!(s == 200 || s == 201, "write after the stop: {s} {b}");
    let (s, b) = c.get_policy(new_leader, "before-stop").await;
    assert_eq!(s, 200, "the write acknowledged before the stop: {b}");
}

/// Mounts a tmpfs of `mib` MiB at `at`; unmounted (lazily) when dropped.
struct Tmpfs(std::path::PathBuf);

impl Tmpfs {
    fn mount(at: &Path, mib: u32) -> Tmpfs {
        std::fs::create_dir_all(at).expect("mount point");
        let o = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={mib}m"), "tribune-test"])
            .arg(at)
            .output()
            .expect("run mount");
        assert!(
            o.status.success(),
            "mount tmpfs: {}",
            String::from_utf8_lossy(&o.stderr)
        );
        Tmpfs(at.to_path_buf())
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.0).status();
    }
}

/// Fills the filesystem of `dir` with a file until writing fails (ENOSPC).
fn fill(dir: &Path) -> std::path::PathBuf {
    use std::io::Write;
    let path = dir.join("filler");
    let mut f = std::fs::File::create(&path).expect("filler");
    let chunk = vec![0xa5u8; 64 << 10];
    while f.write_all(&chunk).and_then(|()| f.sync_data()).is_ok() {}
    path
}

fn policy_source(name: &str) -> String {
    // ~4 KiB per write so the log grows quickly.
    format!(
        "policy \"{name}\" {{\n  match tenant == \"{name}\"\n}}\n# {}\n",
        "x".repeat(4000)
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_controller_whose_disk_fills_exits_and_catches_up_after_space_returns() {
    if common::skip_unless_root(
        "a_controller_whose_disk_fills_exits_and_catches_up_after_space_returns",
        "mounting a small tmpfs for one controller's data dir",
    ) {
        return;
    }
    let mut c = Cluster::empty(&[]);
    let ports: Vec<(u64, String)> = (1..=3)
        .map(|id| (id, format!("127.0.0.1:{}", common::free_port())))
        .collect();
    let peers: Vec<String> = ports
        .iter()
        .flat_map(|(id, a)| ["--peer".to_string(), format!("{id}={a}")])
        .collect();
    // Controller 3's data dir is a 48 MiB tmpfs.
    let victim = 3;
    let _fs = Tmpfs::mount(&c.dir.path().join(format!("node-{victim}")), 48);
    for (id, addr) in &ports {
        c.add_node(*id, addr.clone(), peers.clone());
    }
    let leader = c.wait_leader().await;
    // Something every node has applied before the disk fills.
    let (s, b) = c
        .put_policy(leader, "before", &policy_source("before"), None)
        .await;
    assert!(s == 200 || s == 201, "{s} {b}");
    let filler = fill(&c.nodes[&victim].data_dir);

    // Write through the other two until the victim exits by itself.
    let mut acked = vec!["before".to_string()];
    let deadline = Instant::now() + Duration::from_secs(240);
    let mut i = 1;
    let status = loop {
        let child = c
            .procs
            .nodes
            .get_mut(&victim)
            .and_then(|n| n.child.as_mut())
            .expect("victim process");
        if let Ok(Some(status)) = child.try_wait() {
            break status;
        }
        assert!(
            Instant::now() < deadline,
            "controller {victim} still runs with a full disk after {i} writes\n{}",
            c.logs()
        );
        let to = c
            .running()
            .into_iter()
            .find(|id| *id != victim)
            .unwrap_or(1);
        let name = format!("fill-{i}");
        let (s, _) = c.put_policy(to, &name, &policy_source(&name), None).await;
        if s == 200 || s == 201 {
            acked.push(name);
        }
        i += 1;
    };
    let log = std::fs::read_to_string(&c.nodes[&victim].log).unwrap_or_default();
    assert_eq!(
        status.code(),
        Some(4),
        "a controller whose raft stopped exits with status 4: {status}\n{log}"
    );
    assert!(
        log.contains("raft stopped") && log.contains("No space left"),
        "the exit names its cause:\n{log}"
    );
    c.procs.nodes.get_mut(&victim).map(|n| n.child.take());
    eprintln!(
        "controller {victim} exited after {i} writes ({} acknowledged)",
        acked.len()
    );

    // The cluster keeps taking writes without it.
    let (s, b) = c
        .put_policy(
            c.wait_leader().await,
            "while-down",
            &policy_source("while-down"),
            None,
        )
        .await;
    assert!(s == 200 || s == 201, "{s} {b}");
    acked.push("while-down".into());

    // Space is back: a restart catches up and serves every acknowledged write.
    std::fs::remove_file(&filler).expect("remove the filler");
    c.restart(victim);
    let deadline = Instant::now() + DEADLINE * 2;
    for name in &acked {
        loop {
            if let Some((200, _)) = c.get_json(victim, &format!("/v1/policies/{name}")).await {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "controller {victim} never served acknowledged write {name} after the restart\n{}",
                c.logs()
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}
