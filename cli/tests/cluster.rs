//! End-to-end tests of the replicated controllers: real `tribune controller` processes,
//! real fsync, kill -9.

mod common;

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::{Cluster, DEADLINE};
use serde_json::json;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_nodes_form_and_every_node_reads_every_write_linearizably() {
    let c = Cluster::start(3, &[]);
    c.wait_leader().await;
    for i in 0..30u64 {
        let writer = 1 + i % 3;
        let name = format!("p{}", i % 7);
        let source = format!("policy \"{name}\" {{}} # write {i}");
        let (status, body) = c.put_policy(writer, &name, &source, None).await;
        assert!(
            status == 200 || status == 201,
            "write {i} via node {writer}: {status} {body}\n{}",
            c.logs()
        );
        let version = body["version"].as_u64().expect("version");
        // Linearizable: the acknowledged write is visible from every node at once.
        for reader in 1..=3 {
            let (status, got) = c.get_policy(reader, &name).await;
            assert_eq!(status, 200, "read via node {reader}: {got}");
            assert_eq!(
                got["source"],
                json!(source),
                "node {reader} missed write {i}"
            );
            assert_eq!(got["version"].as_u64(), Some(version));
        }
    }
    // A stale read is served locally and still answers.
    let (status, list) = c
        .get_json(3, "/v1/policies?stale=true")
        .await
        .expect("stale read");
    assert_eq!(status, 200);
    assert_eq!(list.as_array().map(Vec::len), Some(7));
}

/// Writes distinct keys in the background through any live node; records what was acknowledged.
struct Writer {
    acked: Arc<Mutex<BTreeMap<String, u64>>>,
    stop: Arc<std::sync::atomic::AtomicBool>,
    task: tokio::task::JoinHandle<()>,
}

fn start_writer(c: &Arc<tokio::sync::RwLock<Cluster>>, prefix: &str) -> Writer {
    let acked = Arc::new(Mutex::new(BTreeMap::new()));
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let (a, s, c, prefix) = (acked.clone(), stop.clone(), c.clone(), prefix.to_string());
    let task = tokio::spawn(async move {
        let mut i = 0u64;
        while !s.load(std::sync::atomic::Ordering::Relaxed) {
            let cluster = c.read().await;
            let running = cluster.running();
            if running.is_empty() {
                drop(cluster);
                tokio::time::sleep(Duration::from_millis(20)).await;
                continue;
            }
            let node = running[(i as usize) % running.len()];
            let name = format!("{prefix}-{i}");
            let req = cluster
                .http
                .put(cluster.url(node, &format!("/v1/policies/{name}")))
                .json(&json!({"source": format!("policy \"{name}\" {{}}")}))
                .timeout(Duration::from_secs(5));
            drop(cluster);
            if let Ok(r) = req.send().await
                && r.status().is_success()
                && let Ok(v) = r.json::<serde_json::Value>().await
            {
                a.lock()
                    .unwrap()
                    .insert(name, v["version"].as_u64().unwrap_or(0));
            }
            i += 1;
        }
    });
    Writer { acked, stop, task }
}

impl Writer {
    async fn finish(self) -> BTreeMap<String, u64> {
        self.stop.store(true, std::sync::atomic::Ordering::Relaxed);
        self.task.await.expect("writer task");
        self.acked.lock().unwrap().clone()
    }

    fn count(&self) -> usize {
        self.acked.lock().unwrap().len()
    }

    async fn wait_for_more(&self, more: usize) {
        let target = self.count() + more;
        let deadline = Instant::now() + DEADLINE;
        while self.count() < target {
            assert!(
                Instant::now() < deadline,
                "writes stopped being acknowledged ({} < {target})",
                self.count()
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

async fn assert_all_present(c: &Cluster, acked: &BTreeMap<String, u64>) {
    assert_all_present_on(c, c.running()[0], acked).await;
}

/// Every acknowledged write, read linearizably from `node`.
async fn assert_all_present_on(c: &Cluster, node: u64, acked: &BTreeMap<String, u64>) {
    let (status, list) = c.get_json(node, "/v1/policies").await.expect("list");
    assert_eq!(status, 200, "{list}");
    let stored: BTreeMap<String, u64> = list
        .as_array()
        .expect("array")
        .iter()
        .map(|p| {
            (
                p["name"].as_str().unwrap_or_default().to_string(),
                p["version"].as_u64().unwrap_or(0),
            )
        })
        .collect();
    let missing: Vec<&String> = acked.keys().filter(|k| !stored.contains_key(*k)).collect();
    assert!(
        missing.is_empty(),
        "{} acknowledged writes lost (read from node {node}), e.g. {:?}",
        missing.len(),
        &missing[..missing.len().min(5)]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn leader_kill9_elects_a_new_leader_and_loses_no_acknowledged_write() {
    let c = Arc::new(tokio::sync::RwLock::new(Cluster::start(3, &[])));
    let old = c.read().await.wait_leader().await;
    let w = start_writer(&c, "k");
    w.wait_for_more(20).await;

    let killed_at = Instant::now();
    c.write().await.kill9(old);
    let new = c.read().await.wait_leader().await;
    assert_ne!(new, old, "a new leader is elected");
    w.wait_for_more(20).await;
    eprintln!(
        "failover: next acknowledged writes within {:?} of kill -9",
        killed_at.elapsed()
    );

    c.write().await.restart(old);
    w.wait_for_more(20).await;
    let acked = w.finish().await;
    assert_all_present(&*c.read().await, &acked).await;

    // All three killed at once and restarted: everything acknowledged is still there.
    {
        let mut cl = c.write().await;
        for id in [1, 2, 3] {
            cl.kill9(id);
        }
        for id in [1, 2, 3] {
            cl.restart(id);
        }
    }
    let cl = c.read().await;
    cl.wait_leader().await;
    // From every controller, the restored leader first if it is one: a controller that led
    // before the restart resumes leading in its term, with a commit index that may trail what
    // it acknowledged (node/read.rs).
    for node in cl.running() {
        assert_all_present_on(&cl, node, &acked).await;
    }
    for reader in [1, 2, 3] {
        let (name, version) = acked.iter().next_back().expect("some writes");
        let (status, got) = cl.get_policy(reader, name).await;
        assert_eq!(
            (status, got["version"].as_u64()),
            (200, Some(*version)),
            "node {reader}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn follower_stopped_during_10000_writes_catches_up_by_snapshot() {
    // Entries, not writes, count towards a snapshot: the leader batches concurrent writes (up
    // to 64 per entry here), so 10,000 writes make a few hundred entries.
    let mut c = Cluster::start(3, &["--snapshot-every", "50", "--keep-logs", "10"]);
    let leader = c.wait_leader().await;
    let follower = (1..=3).find(|i| *i != leader).expect("a follower");
    c.kill9(follower);
    let before = c.node_status(leader).await.expect("leader status");
    let follower_last_before = before["last_log_index"].as_u64().unwrap_or(0);

    // 10,000 writes, 64 at a time, all through the leader's peers too.
    let c = Arc::new(c);
    let live: Vec<u64> = c.running();
    let mut tasks = tokio::task::JoinSet::new();
    let next = Arc::new(std::sync::atomic::AtomicU64::new(0));
    for t in 0..64u64 {
        let (c, live, next) = (c.clone(), live.clone(), next.clone());
        tasks.spawn(async move {
            loop {
                let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                if i >= 10_000 {
                    break;
                }
                let node = live[((i + t) as usize) % live.len()];
                // An unconditional PUT of the same source is safe to repeat: a 503 (the
                // leader did not answer within the request deadline, e.g. while it builds a
                // snapshot on 2 loaded cores) is retried, anything else must succeed.
                let deadline = Instant::now() + DEADLINE;
                let (status, body) = loop {
                    let (status, body) = c
                        .put_policy(
                            node,
                            &format!("bulk-{i}"),
                            &format!("policy \"bulk-{i}\" {{}}"),
                            None,
                        )
                        .await;
                    if status != 503 || Instant::now() > deadline {
                        break (status, body);
                    }
                    tokio::time::sleep(Duration::from_millis(50)).await;
                };
                assert!(status == 200 || status == 201, "write {i}: {status} {body}");
            }
        });
    }
    while let Some(r) = tasks.join_next().await {
        r.expect("writer task");
    }
    let mut c = Arc::into_inner(c).expect("sole owner");
    let status = c.node_status(leader).await.expect("leader status");
    let purged = status["purged_index"].as_u64().unwrap_or(0);
    assert!(
        purged > follower_last_before,
        "the leader compacted past the stopped follower's log (purged {purged}, follower had {follower_last_before})"
    );

    c.restart(follower);
    let target = c.node_status(leader).await.expect("leader")["last_applied"]
        .as_u64()
        .expect("applied");
    let deadline = Instant::now() + DEADLINE;
    loop {
        if let Some(s) = c.node_status(follower).await {
            let applied = s["last_applied"].as_u64().unwrap_or(0);
            if applied >= target {
                let snap = s["snapshot_index"].as_u64().unwrap_or(0);
                assert!(
                    snap > follower_last_before,
                    "the follower installed a snapshot (snapshot index {snap})"
                );
                break;
            }
        }
        assert!(
            Instant::now() < deadline,
            "follower did not catch up\n{}",
            c.logs()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let (status, list) = c
        .get_json(follower, "/v1/policies?stale=true")
        .await
        .expect("follower list");
    assert_eq!(status, 200);
    assert_eq!(
        list.as_array().map(Vec::len),
        Some(10_000),
        "the follower holds every write"
    );
}

fn cli(args: &[&str], endpoint: &str) -> std::process::Output {
    std::process::Command::new(common::BIN)
        .args(args)
        .args(["--endpoint", endpoint, "--timeout-secs", "60"])
        .output()
        .expect("run tribune")
}

async fn voters(c: &Cluster) -> Vec<u64> {
    let deadline = Instant::now() + DEADLINE;
    loop {
        for id in c.running() {
            if let Some((200, v)) = c.get_json(id, "/v1/cluster").await {
                let mut ids: Vec<u64> = v["members"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .filter(|m| m["voter"] == true)
                    .filter_map(|m| m["id"].as_u64())
                    .collect();
                ids.sort_unstable();
                return ids;
            }
        }
        assert!(Instant::now() < deadline, "no node answered /v1/cluster");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn membership_grows_1_to_3_to_5_and_shrinks_to_3_while_writes_continue() {
    let mut first = Cluster::empty(&[]);
    let addr1 = format!("127.0.0.1:{}", common::free_port());
    first.add_node(1, addr1, vec!["--init".into()]);
    first.wait_leader().await;
    let c = Arc::new(tokio::sync::RwLock::new(first));
    let w = start_writer(&c, "m");
    w.wait_for_more(10).await;

    for group in [[2u64, 3], [4, 5]] {
        for id in group {
            let addr = format!("127.0.0.1:{}", common::free_port());
            c.write().await.add_node(id, addr.clone(), vec![]);
            let endpoint = c.read().await.endpoints();
            let out = cli(
                &[
                    "cluster",
                    "add",
                    "--id",
                    &id.to_string(),
                    "--address",
                    &addr,
                    "--voter",
                ],
                &endpoint,
            );
            assert!(
                out.status.success(),
                "cluster add {id}: {}",
                String::from_utf8_lossy(&out.stderr)
            );
            w.wait_for_more(10).await;
        }
        let expect: Vec<u64> = (1..=group[1]).collect();
        assert_eq!(voters(&*c.read().await).await, expect);
    }

    for id in [5u64, 4] {
        let endpoint = c.read().await.endpoints();
        let out = cli(&["cluster", "remove", &id.to_string()], &endpoint);
        assert!(
            out.status.success(),
            "cluster remove {id}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        c.write().await.kill9(id);
        w.wait_for_more(10).await;
    }
    assert_eq!(voters(&*c.read().await).await, vec![1, 2, 3]);
    let acked = w.finish().await;
    assert!(
        acked.len() >= 70,
        "writes continued throughout ({} acknowledged)",
        acked.len()
    );
    assert_all_present(&*c.read().await, &acked).await;
    // Every membership change is in the log, with who made it (issue 11, finding 4).
    let mut want: Vec<(String, u64)> = (2..=5u64).map(|id| ("add".to_string(), id)).collect();
    want.extend([5u64, 4].map(|id| ("remove".to_string(), id)));
    let deadline = Instant::now() + common::DEADLINE;
    loop {
        let entries = c.read().await.log_entries(1).await.unwrap_or_default();
        let changes: Vec<(String, u64)> = entries
            .iter()
            .filter(|e| e["kind"] == "membership_change")
            .map(|e| {
                assert_eq!(e["detail"]["actor"], "anonymous (--insecure)", "{e}");
                (
                    e["detail"]["op"].as_str().unwrap_or("").to_string(),
                    e["detail"]["id"].as_u64().unwrap_or(0),
                )
            })
            .collect();
        if want.iter().all(|w| changes.contains(w)) {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "membership changes logged: {changes:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}
