//! Messages between hosts, end to end, as root: a 3-controller cluster, two host agents
//! (h1, h2) with `--peer-listen`, and process enclaves on each. The controllers learn each
//! agent's peer address from its `Hello`, and each plan names the enclaves of the other host
//! that this host's enclaves may talk with. alice on h1 sends to bob on h2 by name; bob sees
//! the attested sender `alice`; carol on h2, whose rules do not allow alice, is refused with a
//! reason alice reads. (Forged senders and diallers without a valid agent certificate:
//! `host-agent/tests/mediator_peers.rs`.)

mod common;

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use common::{Cluster, DEADLINE};
use tribune_msg::wire::RefusalCode;
use tribune_msg::{Client, SendError};

const FRIENDS: &str = r#"
policy "friends" {
  match tenant == "alice" || tenant == "bob"
  talk { allow to tenant == "alice" || tenant == "bob" || tenant == "carol"; deny to * }
}
"#;
const CAROL: &str = r#"
policy "carol" {
  match tenant == "carol"
  talk { allow to tenant == "bob"; deny to * }
}
"#;

fn socket(agent_dir: &Path, enclave: &str) -> PathBuf {
    agent_dir.join("msg").join(format!("{enclave}.sock"))
}

async fn connect(agent_dir: &Path, who: &str) -> Client {
    let deadline = Instant::now() + DEADLINE;
    loop {
        match Client::connect(&socket(agent_dir, who)).await {
            Ok(c) => return c,
            Err(e) => assert!(Instant::now() < deadline, "{who}: {e}"),
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_enclave_on_h1_messages_one_on_h2_by_name_through_both_agents() {
    if common::skip_unless_root(
        "an_enclave_on_h1_messages_one_on_h2_by_name_through_both_agents",
        "the host agent needs cgroups",
    ) {
        return;
    }
    let c = Cluster::start_tls(3, &["--allow-sim-evidence"]);
    let leader = c.wait_leader().await;
    for (name, source) in [("friends", FRIENDS), ("carol", CAROL)] {
        let (s, b) = c.put_policy(leader, name, source, None).await;
        assert!(s == 200 || s == 201, "{s} {b}");
    }
    for (id, host) in [("alice", "h1"), ("bob", "h2"), ("carol", "h2")] {
        c.put_process_enclave(leader, id, host, &["/bin/sh", "-c", "exec sleep 600"])
            .await;
    }
    let controllers: Vec<String> = c.nodes.values().map(|n| n.addr.clone()).collect();
    // A port the kernel picks: the agent tells the controllers the one it bound.
    let peer = |_: &str| vec!["--peer-listen".to_string(), "127.0.0.1:0".to_string()];
    let (d1, d2) = (
        c.dir.path().join("agent-xh1"),
        c.dir.path().join("agent-xh2"),
    );
    // One agent after the other: two agents creating the shared cgroup root at the same
    // instant can collide (EEXIST), which is not what this test is about.
    let a1 = common::start_agent(&c, "xh1", "h1", controllers.clone(), peer("h1"));
    let alice = connect(&d1, "alice").await;
    let a2 = common::start_agent(&c, "xh2", "h2", controllers, peer("h2"));
    let bob = connect(&d2, "bob").await;

    // Until both agents have told the controllers their peer addresses and h1's plan names
    // bob's host, alice's message fails with a reason (never silently); then it goes through.
    let deadline = Instant::now() + DEADLINE * 2;
    let mut last: String;
    loop {
        match alice.send("bob", b"hello from h1").await {
            Ok(sent) => {
                if let Ok(Ok((from, bytes))) =
                    tokio::time::timeout(Duration::from_secs(5), bob.recv()).await
                {
                    assert_eq!(from, "alice", "the attested sender");
                    assert_eq!(bytes, b"hello from h1".to_vec());
                    tokio::time::timeout(DEADLINE, sent.delivered())
                        .await
                        .expect("an outcome")
                        .expect("delivered");
                    break;
                }
                last = match tokio::time::timeout(Duration::from_secs(5), sent.delivered()).await {
                    Ok(r) => format!("{r:?}"),
                    Err(_) => "no outcome yet".into(),
                };
            }
            Err(e) => last = e.to_string(),
        }
        assert!(
            Instant::now() < deadline,
            "alice never reached bob on h2; last: {last}\n-- h1 --\n{}\n-- h2 --\n{}",
            a1.log_tail(),
            a2.log_tail()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }

    // alice's rules allow carol (on h2), carol's do not allow alice: refused at h1, from the
    // plan (which names carol with her rules toward h1's enclaves), with the reason.
    match alice.send("carol", b"hi").await {
        Err(SendError::Refused { code, reason }) => {
            assert_eq!(code, RefusalCode::ReceiverRules, "{reason}");
            assert!(
                reason.contains("\"carol\"'s talk rules do not allow messages from you"),
                "{reason}"
            );
        }
        other => panic!("expected a refusal by carol's rules, got {other:?}"),
    }
    // And bob answers alice the other way.
    let sent = bob.send("alice", b"hello from h2").await.expect("accepted");
    let (from, bytes) = tokio::time::timeout(DEADLINE, alice.recv())
        .await
        .expect("alice receives")
        .expect("a message");
    assert_eq!(
        (from.as_str(), bytes.as_slice()),
        ("bob", &b"hello from h2"[..])
    );
    tokio::time::timeout(DEADLINE, sent.delivered())
        .await
        .expect("an outcome")
        .expect("delivered");
}
