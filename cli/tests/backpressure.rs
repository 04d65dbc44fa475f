//! Back-pressure on the attestation stream (docs/protocol.md "Back-pressure"), as root (a real
//! agent needs cgroups): while the cluster cannot commit (both followers SIGSTOPped for 5 s,
//! longer than the 3 s request timeout), the controller keeps the agent's pending usage write
//! and proposes it again instead of ending the stream; once the followers are back every report
//! is acknowledged, the usage chain has no gap and no duplicate, and the log verifies.
//!
//! And its limit (docs/protocol.md "Failure rules"): a controller that cannot reach any leader
//! does not take an agent's stream, for it cannot know the latest decisions: the stream ends
//! before the challenge with a reason, and the agent goes on to another controller.

mod common;

use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use common::{Cluster, DEADLINE};
use serde_json::{Value, json};

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

fn signal(pid: u32, sig: i32) {
    // SAFETY: kill(2) on a child process this test started.
    let rc = unsafe { libc::kill(pid as i32, sig) };
    assert_eq!(rc, 0, "kill({pid}, {sig})");
}

async fn entries(c: &Cluster) -> Vec<Value> {
    for id in c.running() {
        if let Some(all) = c.log_entries(id).await {
            return all;
        }
    }
    Vec::new()
}

/// Three controllers (mTLS) and the enclave `steady` placed on `h1`; the leader.
async fn cluster_with_steady() -> (Cluster, u64) {
    let c = Cluster::start_tls(3, &["--allow-sim-evidence"]);
    let leader = c.wait_leader().await;
    let enclave = json!({
        "id": "steady", "tenant": "t", "tee": "sim",
        "placement": {"host": "h1", "epoch": 1},
        "launch": {"process": {"cmd": ["/bin/sh", "-c", "while :; do sleep 1; done"]}},
    });
    c.put_json(leader, "/v1/enclaves/steady", enclave).await;
    (c, leader)
}

/// Every controller's address, controller `first`'s first (the one an agent tries first).
fn first_then_others(c: &Cluster, first: u64) -> Vec<String> {
    let mut out = vec![c.nodes[&first].addr.clone()];
    out.extend(
        c.nodes
            .values()
            .filter(|n| n.id != first)
            .map(|n| n.addr.clone()),
    );
    out
}

/// Waits (up to `DEADLINE`) until a usage digest of `steady` is in the log; `what` if not.
async fn wait_for_a_digest(c: &Cluster, agent: &tribune_testkit::agent::AgentProcess, what: &str) {
    let deadline = Instant::now() + DEADLINE;
    while !entries(c)
        .await
        .iter()
        .any(|e| e["kind"] == "usage_digest" && e["subject"] == "steady")
    {
        assert!(
            Instant::now() < deadline,
            "{what}\n{}\n{}",
            c.logs(),
            agent.log_tail()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Digest spans of `enclave` in log order: they run 1.., each right after the previous.
fn assert_no_gap_no_duplicate(all: &[Value], enclave: &str) -> u64 {
    let spans: Vec<(u64, u64)> = all
        .iter()
        .filter(|e| e["kind"] == "usage_digest" && e["subject"] == enclave)
        .map(|e| {
            (
                e["detail"]["first_seq"].as_u64().unwrap_or(0),
                e["detail"]["last_seq"].as_u64().unwrap_or(0),
            )
        })
        .collect();
    assert!(!spans.is_empty(), "no digests for {enclave}");
    let mut next = 1;
    for (first, last) in &spans {
        assert_eq!(
            *first, next,
            "digests of {enclave} have a gap or a duplicate: {spans:?}"
        );
        assert!(last >= first);
        next = last + 1;
    }
    next - 1
}

/// `tribune_attest_writes_retried_total` summed over the running controllers.
async fn retried(c: &Cluster) -> f64 {
    let mut sum = 0.0;
    for id in c.running() {
        let Ok(r) = c.http.get(c.url(id, "/metrics")).send().await else {
            continue;
        };
        let text = r.text().await.unwrap_or_default();
        sum += text
            .lines()
            .filter(|l| l.starts_with("tribune_attest_writes_retried"))
            .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
            .sum::<f64>();
    }
    sum
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cluster_that_cannot_commit_for_a_while_slows_the_stream_without_ending_it() {
    if common::skip_unless_root(
        "a_cluster_that_cannot_commit_for_a_while_slows_the_stream_without_ending_it",
        "the host agent needs cgroups",
    ) {
        return;
    }
    let (c, leader) = cluster_with_steady().await;
    // The agent streams to the leader (the controller whose writes stall).
    let agent = common::start_agent(&c, "bp", "h1", first_then_others(&c, leader), vec![]);

    // Usage flows first.
    wait_for_a_digest(&c, &agent, "no usage digest").await;

    // The followers stop for 5 s: nothing commits; the leader's writes time out (3 s).
    let followers: Vec<u32> = c
        .pids()
        .into_iter()
        .filter(|(id, _)| *id != leader)
        .map(|(_, pid)| pid)
        .collect();
    for &pid in &followers {
        signal(pid, libc::SIGSTOP);
    }
    // The fault's duration, not a wait for a condition.
    tokio::time::sleep(Duration::from_secs(5)).await;
    for &pid in &followers {
        signal(pid, libc::SIGCONT);
    }
    let resumed = now_ms();

    // Every report is acknowledged in the end: digests continue past the outage, gap-free.
    let deadline = Instant::now() + DEADLINE;
    loop {
        let all = entries(&c).await;
        let after = all
            .iter()
            .filter(|e| {
                e["kind"] == "usage_digest"
                    && e["subject"] == "steady"
                    && e["at_ms"].as_i64().unwrap_or(0) > resumed + 2000
            })
            .count();
        if after >= 2 {
            assert_no_gap_no_duplicate(&all, "steady");
            break;
        }
        assert!(
            Instant::now() < deadline,
            "usage was not acknowledged after the outage\n{}\n{}",
            c.logs(),
            agent.log_tail()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }

    // The stream was slowed, never ended: the controller kept and re-proposed its write; the
    // agent never lost its stream.
    assert!(
        retried(&c).await >= 1.0,
        "no stream write was kept and retried\n{}",
        c.logs()
    );
    let logs: String = c
        .nodes
        .values()
        .map(|n| std::fs::read_to_string(&n.log).unwrap_or_default())
        .collect();
    assert!(
        !logs.contains("attestation stream ended"),
        "a controller ended the stream:\n{logs}"
    );
    let agent_log = agent.log_text();
    assert!(
        !agent_log.contains("link down") && !agent_log.contains("attestation stream:"),
        "the agent lost its stream:\n{agent_log}"
    );
    drop(agent);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_controller_that_reaches_no_leader_sends_the_agent_elsewhere() {
    if common::skip_unless_root(
        "a_controller_that_reaches_no_leader_sends_the_agent_elsewhere",
        "the host agent needs cgroups",
    ) {
        return;
    }
    let (c, leader) = cluster_with_steady().await;
    // One follower stays up alone: the leader and the other follower stop.
    let pids = c.pids();
    let alone = pids
        .iter()
        .map(|(id, _)| *id)
        .find(|id| *id != leader)
        .expect("a follower");
    let stopped: Vec<u32> = pids
        .iter()
        .filter(|(id, _)| *id != alone)
        .map(|(_, pid)| *pid)
        .collect();
    for &pid in &stopped {
        signal(pid, libc::SIGSTOP);
    }
    // The agent tries the lone follower first.
    let agent = common::start_agent(&c, "nl", "h1", first_then_others(&c, alone), vec![]);
    let ended = "attestation stream ended: this controller cannot catch up with the log";
    let deadline = Instant::now() + DEADLINE;
    while !std::fs::read_to_string(&c.nodes[&alone].log)
        .unwrap_or_default()
        .contains(ended)
    {
        if Instant::now() >= deadline {
            for &pid in &stopped {
                signal(pid, libc::SIGCONT);
            }
            panic!(
                "the lone follower did not end the stream\n{}\n{}",
                c.logs(),
                agent.log_tail()
            );
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    for &pid in &stopped {
        signal(pid, libc::SIGCONT);
    }
    // Back together, the agent streams again and its usage is accounted.
    wait_for_a_digest(&c, &agent, "no usage digest after the cluster came back").await;
    drop(agent);
}
