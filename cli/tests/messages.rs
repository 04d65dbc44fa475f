//! Inter-enclave messages end to end, as root: a controller, a real host agent and process
//! enclaves whose `talk` rules come from policies, through the controller's plan, into the
//! agent's mediator.
//!
//! - a real enclave process sends with `tribune msg send` from inside its confinement, through
//!   the socket the agent bound for it; the receiver sees its attested name;
//! - the socket is the enclave's: named in its environment, owned by its uid, mode 0600;
//! - a message either side's rules do not allow is refused with its reason, and logged;
//! - a full queue pushes back, and every accepted message is delivered once, in order;
//! - an agent stop reports queued messages failed; a kill -9 fails them at the sender.
//!
//! The socket-level cases without the agent process (forged frames, plan changes) are
//! `host-agent/tests/mediator.rs`.

mod common;

use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use common::{BIN, Cluster, DEADLINE};
use tribune_msg::wire::RefusalCode;
use tribune_msg::{Client, DeliveryError, SendError};

const PAIR: &str = r#"
policy "pair" {
  match tenant == "alice" || tenant == "bob"
  talk { allow to tenant == "alice" || tenant == "bob"; deny to * }
}
"#;
const OUTSIDER: &str = r#"
policy "outsider" {
  match tenant == "carol"
  talk { allow to tenant == "alice" }
}
"#;

fn socket(agent_dir: &Path, enclave: &str) -> PathBuf {
    agent_dir.join("msg").join(format!("{enclave}.sock"))
}

/// Connects as `from` and sends until the plan's talk rules have reached the agent (before,
/// the mediator does not know the sender yet, or it has no rules).
async fn wait_allowed(agent_dir: &Path, from: &str, to: &str) -> Client {
    let deadline = Instant::now() + DEADLINE;
    loop {
        let last = match Client::connect(&socket(agent_dir, from)).await {
            Ok(c) => match c.send(to, b"ping").await {
                Ok(_) => return c,
                Err(e) => e.to_string(),
            },
            Err(e) => e.to_string(),
        };
        assert!(
            Instant::now() < deadline,
            "{from} → {to} never allowed: {last}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// The pid of the process whose environment names `socket` as its mediator socket.
fn enclave_pid(socket: &Path) -> Option<u32> {
    let want = format!("{}={}", tribune_msg::SOCKET_ENV, socket.display());
    std::fs::read_dir("/proc").ok()?.flatten().find_map(|e| {
        let pid: u32 = e.file_name().to_str()?.parse().ok()?;
        let env = std::fs::read(e.path().join("environ")).ok()?;
        env.split(|b| *b == 0)
            .any(|kv| kv == want.as_bytes())
            .then_some(pid)
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn talk_rules_from_policies_mediate_messages_between_real_enclaves() {
    if common::skip_unless_root(
        "talk_rules_from_policies_mediate_messages_between_real_enclaves",
        "the host agent needs cgroups",
    ) {
        return;
    }
    let c = Cluster::start_tls(1, &["--allow-sim-evidence"]);
    let leader = c.wait_leader().await;
    for (name, source) in [("pair", PAIR), ("outsider", OUTSIDER)] {
        let (s, b) = c.put_policy(leader, name, source, None).await;
        assert!(s == 200 || s == 201, "{s} {b}");
    }
    // alice is a real enclave that sends through its own socket with `tribune msg send`.
    let send =
        format!("until {BIN} msg send bob hello-from-alice; do sleep 0.2; done; exec sleep 600");
    c.put_process_enclave(leader, "alice", "h1", &["/bin/sh", "-c", &send])
        .await;
    for id in ["bob", "carol"] {
        c.put_process_enclave(leader, id, "h1", &["/bin/sh", "-c", "exec sleep 600"])
            .await;
    }
    let controllers: Vec<String> = c.nodes.values().map(|n| n.addr.clone()).collect();
    let mut agent = common::start_agent(&c, "msga", "h1", controllers.clone(), vec![]);
    let dir = c.dir.path().join("agent-msga");

    // 1. The receiver sees the sender's attested name: alice's own process, through the
    //    socket the agent bound for alice.
    let bob = wait_allowed(&dir, "bob", "alice").await;
    let (from, body) = tokio::time::timeout(DEADLINE, bob.recv())
        .await
        .unwrap_or_else(|_| panic!("nothing from alice\n{}", agent.log_tail()))
        .expect("recv");
    assert_eq!(
        (from.as_str(), body.as_slice()),
        ("alice", &b"hello-from-alice"[..])
    );

    // 2. The socket is alice's: named in her environment, owned by her uid, 0600.
    let alice_sock = socket(&dir, "alice");
    // (Retried: while alice's shell `exec`s, its environment cannot be read for a moment.)
    let deadline = Instant::now() + DEADLINE;
    let pid = loop {
        if let Some(pid) = enclave_pid(&alice_sock) {
            break pid;
        }
        assert!(
            Instant::now() < deadline,
            "no process with alice's TRIBUNE_MSG_SOCKET"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    let uid = std::fs::metadata(format!("/proc/{pid}"))
        .expect("proc")
        .uid();
    let meta = std::fs::metadata(&alice_sock).expect("alice's socket");
    assert_ne!(uid, 0, "enclaves never run as root");
    assert_eq!(meta.uid(), uid, "the socket belongs to the enclave's uid");
    assert_eq!(meta.mode() & 0o777, 0o600);

    // 3. Refused by either side, with the reason, and logged.
    let carol = Client::connect(&socket(&dir, "carol"))
        .await
        .expect("carol");
    let e = carol.send("alice", b"hi").await.unwrap_err();
    assert!(
        matches!(
            &e,
            SendError::Refused {
                code: RefusalCode::ReceiverRules,
                ..
            }
        ),
        "{e}"
    );
    let alice = wait_allowed(&dir, "alice", "bob").await;
    let e = alice.send("carol", b"hi").await.unwrap_err();
    assert!(
        matches!(
            &e,
            SendError::Refused {
                code: RefusalCode::SenderRules,
                ..
            }
        ),
        "{e}"
    );
    let deadline = Instant::now() + DEADLINE;
    while !agent.log_text().contains("message refused") {
        assert!(
            Instant::now() < deadline,
            "no refusal logged\n{}",
            agent.log_tail()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    // 4. bob stops taking messages (his client keeps its window's worth); alice fills her
    //    queue to him: the mediator pushes back, and every accepted message arrives once, in
    //    order, when bob takes them again.
    let mut accepted = Vec::new();
    for i in 0u32..1100 {
        match alice.send("bob", &i.to_be_bytes()).await {
            Ok(sent) => accepted.push((i, sent)),
            Err(e) if e.is_queue_full() => {}
            Err(e) => panic!("{e}"),
        }
    }
    assert!(
        accepted.len() >= 1024 && accepted.len() < 1100,
        "{} accepted: the queue bound is 1024 messages, bob's window 64",
        accepted.len()
    );
    // What alice's probes queued before (the `ping`s of step 3) comes first.
    let mut got = Vec::new();
    while got.len() < accepted.len() {
        let (from, body) = tokio::time::timeout(DEADLINE, bob.recv())
            .await
            .expect("a queued message")
            .expect("recv");
        assert_eq!(from, "alice");
        if body != b"ping" {
            got.push(u32::from_be_bytes(body.try_into().expect("4 bytes")));
        }
    }
    let want: Vec<u32> = accepted.iter().map(|(i, _)| *i).collect();
    assert_eq!(got, want, "every accepted message once, in order");
    for (_, sent) in accepted {
        tokio::time::timeout(DEADLINE, sent.delivered())
            .await
            .expect("an outcome")
            .expect("delivered");
    }
    drop(bob);

    // 5. A clean stop: what is queued is reported failed to its sender, with the reason (or,
    //    should bob's closing connection still have been handed it, failed as never taken).
    let queued = alice
        .send("bob", b"queued at stop")
        .await
        .expect("accepted");
    drop(agent);
    let r = tokio::time::timeout(DEADLINE, queued.delivered())
        .await
        .expect("an outcome");
    assert!(
        matches!(&r, Err(DeliveryError::Failed(why))
            if why.contains("stopping") || why.contains("before it took")),
        "{r:?}"
    );

    // 6. A crash: kill -9 with messages queued: the sender learns they failed.
    agent = common::start_agent(&c, "msga", "h1", controllers.clone(), vec![]);
    let alice = wait_allowed(&dir, "alice", "bob").await;
    let mut pending = Vec::new();
    for i in 0..10u32 {
        pending.push(alice.send("bob", &i.to_be_bytes()).await.expect("accepted"));
    }
    tribune_testkit::process::kill9(&mut agent.child);
    for p in pending {
        let r = tokio::time::timeout(DEADLINE, p.delivered())
            .await
            .expect("an outcome");
        assert_eq!(r, Err(DeliveryError::ConnectionLost));
    }
    // 7. The next agent adopts the enclaves and binds their sockets again: messages flow.
    let agent = common::start_agent(&c, "msga", "h1", controllers, vec![]);
    let alice = wait_allowed(&dir, "alice", "bob").await;
    let bob = Client::connect(&socket(&dir, "bob")).await.expect("bob");
    alice.send("bob", b"after restart").await.expect("accepted");
    let deadline = Instant::now() + DEADLINE;
    loop {
        let (from, body) = tokio::time::timeout(DEADLINE, bob.recv())
            .await
            .expect("a message")
            .expect("recv");
        assert_eq!(from, "alice");
        if body == b"after restart" {
            break;
        }
        assert!(Instant::now() < deadline);
    }

    // 8. `tribune msg recv` takes over bob's receiving (the newest RECEIVE wins) and prints
    //    the sender's attested name; `tribune msg send` as carol is refused, exit 1.
    let recv = std::process::Command::new(BIN)
        .args(["msg", "recv", "--count", "1", "-o", "json", "--socket"])
        .arg(socket(&dir, "bob"))
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("tribune msg recv");
    let mut recv = recv;
    let deadline = Instant::now() + DEADLINE;
    let mut n = 0u32;
    loop {
        // Until the CLI's RECEIVE is in, bob's old client may still be handed some of these.
        alice
            .send("bob", format!("cli-{n}").as_bytes())
            .await
            .expect("accepted");
        n += 1;
        if recv.try_wait().expect("wait").is_some() {
            break;
        }
        assert!(Instant::now() < deadline, "tribune msg recv took nothing");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let out = recv.wait_with_output().expect("output");
    assert!(out.status.success(), "{}", common::output_text(&out));
    let line = String::from_utf8_lossy(&out.stdout);
    let v: serde_json::Value = serde_json::from_str(line.trim()).expect("one JSON document");
    assert_eq!(v["from"], "alice", "{v}");
    // One of these, or the relaunched alice's greeting (step 5 stopped her, step 6 launched
    // her again).
    assert!(
        v["text"]
            .as_str()
            .is_some_and(|t| t.starts_with("cli-") || t == "hello-from-alice"),
        "{v}"
    );
    let refused = std::process::Command::new(BIN)
        .args(["msg", "send", "alice", "hi", "--socket"])
        .arg(socket(&dir, "carol"))
        .output()
        .expect("tribune msg send");
    assert_eq!(
        refused.status.code(),
        Some(1),
        "{}",
        common::output_text(&refused)
    );
    assert!(
        String::from_utf8_lossy(&refused.stderr).contains("receiver-rules"),
        "{}",
        common::output_text(&refused)
    );
    drop(agent);
}
