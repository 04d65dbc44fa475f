//! Idempotency keys end to end (docs/api.md "Idempotency keys"): a keyed write whose outcome
//! was unknown to its caller is retried under the same key and applies exactly once, whoever
//! answers the retry; the key reused for another request is refused.

mod common;

use std::time::{Duration, Instant};

use common::{Cluster, DEADLINE};
use serde_json::{Value, json};

/// PUT a policy with an `Idempotency-Key` on node `id` (retrying only what applied nothing for
/// sure). Returns the status and body.
async fn put_keyed(c: &Cluster, id: u64, name: &str, source: &str, key: &str) -> (u16, Value) {
    c.put_policy_with(id, name, source, &[("idempotency-key", key.to_string())])
        .await
}

fn signal(pid: u32, sig: i32) {
    // SAFETY: kill(2) on a child process this test started.
    let rc = unsafe { libc::kill(pid as i32, sig) };
    assert_eq!(rc, 0, "kill({pid}, {sig})");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_keyed_write_retried_after_an_unknown_outcome_applies_exactly_once() {
    // A short request timeout makes the outcome unknown quickly; a long election timeout keeps
    // the leader through the followers' pause, so the first write does commit afterwards.
    let c = Cluster::start(
        3,
        &[
            "--request-timeout-ms",
            "1000",
            "--election-timeout-ms",
            "3000",
        ],
    );
    let leader = c.wait_leader().await;
    let followers: Vec<u32> = c
        .pids()
        .into_iter()
        .filter(|(id, _)| *id != leader)
        .map(|(_, pid)| pid)
        .collect();
    let source = "policy \"once\" {}";

    // The followers stop: the leader appends the write but cannot commit it in time.
    for &pid in &followers {
        signal(pid, libc::SIGSTOP);
    }
    let (status, body) = put_keyed(&c, leader, "once", source, "retry-me-1").await;
    for &pid in &followers {
        signal(pid, libc::SIGCONT);
    }
    assert_eq!(status, 503, "the write's outcome should be unknown: {body}");
    assert!(
        body["type"]
            .as_str()
            .is_some_and(|t| t.ends_with("/outcome-unknown")),
        "{body}"
    );

    // The pending write commits once the followers are back (nobody retried yet).
    let deadline = Instant::now() + DEADLINE;
    loop {
        let (status, got) = c.get_policy(leader, "once").await;
        if status == 200 {
            assert_eq!(got["version"], json!(1), "{got}");
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the pending write never committed: {status} {got}\n{}",
            c.logs()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    // The retry, through every controller in turn, answers the first outcome and applies
    // nothing: still version 1, created.
    for node in 1..=3 {
        let (status, body) = put_keyed(&c, node, "once", source, "retry-me-1").await;
        assert_eq!(status, 201, "retry via node {node}: {body}");
        assert_eq!(body["version"], json!(1), "retry via node {node}: {body}");
        assert_eq!(body["source"], json!(source));
    }
    let (_, got) = c.get_policy(leader, "once").await;
    assert_eq!(got["version"], json!(1), "applied more than once: {got}");

    // The same key with another body is refused and writes nothing.
    let (status, body) = put_keyed(
        &c,
        leader,
        "once",
        "policy \"once\" {} # other",
        "retry-me-1",
    )
    .await;
    assert_eq!(status, 422, "{body}");
    assert!(
        body["type"]
            .as_str()
            .is_some_and(|t| t.ends_with("/idempotency-key-reused")),
        "{body}"
    );
    let (_, got) = c.get_policy(leader, "once").await;
    assert_eq!(got["version"], json!(1), "{got}");

    // A new key is a new write.
    let (status, body) = put_keyed(&c, leader, "once", source, "retry-me-2").await;
    assert_eq!((status, body["version"].clone()), (200, json!(2)), "{body}");

    // A key that is not printable ASCII is the caller's mistake.
    let (status, body) = put_keyed(&c, leader, "once", source, "").await;
    assert_eq!(status, 400, "{body}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keyed_enclave_writes_and_deletes_answer_their_first_outcome() {
    let c = Cluster::start(1, &[]);
    c.wait_leader().await;
    let enclave = json!({"id": "e1", "tenant": "acme", "tee": "sim"});
    let put = |key: &'static str, body: Value| {
        c.http
            .put(c.url(1, "/v1/enclaves/e1"))
            .header("idempotency-key", key)
            .json(&body)
            .send()
    };
    let first = put("e-1", enclave.clone()).await.expect("put");
    assert_eq!(first.status().as_u16(), 200);
    let first: Value = first.json().await.expect("json");
    let again: Value = put("e-1", enclave.clone())
        .await
        .expect("put")
        .json()
        .await
        .expect("json");
    assert_eq!(first, again, "a retry answers the first outcome");
    assert_eq!(again["version"], json!(1));

    let delete = |key: &'static str| {
        c.http
            .delete(c.url(1, "/v1/enclaves/e1"))
            .header("idempotency-key", key)
            .send()
    };
    assert_eq!(delete("d-1").await.expect("delete").status().as_u16(), 204);
    // Without the key, the second delete would be 404: with it, the first answer again.
    assert_eq!(delete("d-1").await.expect("delete").status().as_u16(), 204);
    assert_eq!(delete("d-2").await.expect("delete").status().as_u16(), 404);
}

/// Policy PUTs counted by controller `id`'s `/metrics` (any status).
async fn policy_puts(c: &Cluster, id: u64) -> f64 {
    let Ok(r) = c.http.get(c.url(id, "/metrics")).send().await else {
        return 0.0;
    };
    let text = r.text().await.unwrap_or_default();
    text.lines()
        .filter(|l| {
            l.starts_with("tribune_api_requests_total{")
                && l.contains("method=\"PUT\"")
                && l.contains("/v1/policies/")
        })
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

/// `tribune policy put` of a fresh policy file through `endpoints` only.
fn cli_put(c: &Cluster, endpoints: &str, name: &str) {
    let dir = tempfile::tempdir().expect("temp dir");
    let file = dir.path().join(format!("{name}.tpl"));
    std::fs::write(&file, format!("policy \"{name}\" {{}}\n")).expect("write policy");
    let out = std::process::Command::new(common::BIN)
        .args(["policy", "put"])
        .arg(&file)
        .args(["--endpoint", endpoints, "--timeout-secs", "60"])
        .args(c.tls_args())
        .env_remove("XDG_STATE_HOME")
        .env("TRIBUNE_CONFIG", dir.path().join("none.toml"))
        .output()
        .expect("run tribune");
    assert!(
        out.status.success(),
        "policy put via {endpoints}: {}\n{}",
        common::output_text(&out),
        c.logs()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_cli_learns_the_leader_and_writes_to_it_directly() {
    let mut c = Cluster::start(3, &[]);
    let leader = c.wait_leader().await;
    let follower = (1..=3).find(|&id| id != leader).expect("a follower");
    let follower_ep = c.url(follower, "");
    cli_put(&c, &follower_ep, "learned");
    // The follower told the CLI who leads; the PUT went to the leader, not through the follower.
    assert_eq!(
        policy_puts(&c, follower).await,
        0.0,
        "the follower was asked to write"
    );
    assert!(
        policy_puts(&c, leader).await >= 1.0,
        "the leader saw no PUT"
    );

    // The leader dies: the CLI finds the new one (asking the controllers that answer).
    c.kill9(leader);
    let next = c.wait_leader().await;
    assert_ne!(next, leader);
    let before: Vec<(u64, f64)> = {
        let mut v = Vec::new();
        for id in c.running() {
            v.push((id, policy_puts(&c, id).await));
        }
        v
    };
    cli_put(&c, &c.endpoints(), "after-failover");
    for (id, n) in before {
        let now = policy_puts(&c, id).await;
        if id == next {
            assert!(now > n, "the new leader {id} saw no PUT");
        } else {
            assert_eq!(now, n, "controller {id} (not leading) was asked to write");
        }
    }
    let (status, got) = c.get_policy(next, "after-failover").await;
    assert_eq!((status, got["version"].clone()), (200, json!(1)), "{got}");
}
