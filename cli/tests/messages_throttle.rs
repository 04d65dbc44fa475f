//! A message flooder throttled by policy, end to end, as root: a controller, a real host agent
//! and two process enclaves. The flooder's mediator counts go into its sealed usage reports
//! (v3), the controllers derive `usage.msgs.rate`, the rule `when usage.msgs.rate > 200 {
//! msgs.rate = 20; throttle now }` throttles it, the plan carries the rate to the agent, and
//! the mediator refuses what is beyond it (`rate-limited`), with the allocation and the ladder
//! visible through the API. Once it stops, the throttle is lifted.

mod common;

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use common::{Cluster, DEADLINE};
use tribune_msg::wire::RefusalCode;
use tribune_msg::{Client, SendError};

const CHATTY: &str = r#"
policy "chatty" {
  match tenant == "alice" || tenant == "bob"
  talk { allow to tenant == "alice" || tenant == "bob"; deny to * }
  when usage.msgs.rate > 200 { msgs.rate = 20; throttle now }
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
async fn a_message_flooder_is_throttled_by_policy_and_released_when_it_stops() {
    if common::skip_unless_root(
        "a_message_flooder_is_throttled_by_policy_and_released_when_it_stops",
        "the host agent needs cgroups",
    ) {
        return;
    }
    let c = Cluster::start_tls(1, &["--allow-sim-evidence"]);
    let leader = c.wait_leader().await;
    let (s, b) = c.put_policy(leader, "chatty", CHATTY, None).await;
    assert!(s == 200 || s == 201, "{s} {b}");
    for id in ["alice", "bob"] {
        c.put_process_enclave(leader, id, "h1", &["/bin/sh", "-c", "exec sleep 600"])
            .await;
    }
    let controllers: Vec<String> = c.nodes.values().map(|n| n.addr.clone()).collect();
    let agent = common::start_agent(&c, "msgt", "h1", controllers, vec![]);
    let dir = c.dir.path().join("agent-msgt");

    // bob takes whatever arrives, so alice's queue to him never fills.
    let bob = connect(&dir, "bob").await;
    let drain = tokio::spawn(async move { while bob.recv().await.is_ok() {} });

    // alice floods bob as fast as the mediator answers, until it refuses her for her rate.
    let alice = connect(&dir, "alice").await;
    let deadline = Instant::now() + DEADLINE * 2;
    let (mut accepted, mut other) = (0u64, 0u64);
    let why = loop {
        match alice.send("bob", &[7u8; 64]).await {
            Ok(_) => accepted += 1,
            Err(SendError::Refused {
                code: RefusalCode::RateLimited,
                reason,
            }) => break reason,
            Err(_) => other += 1,
        }
        assert!(
            Instant::now() < deadline,
            "never rate-limited ({accepted} accepted, {other} refused otherwise)\n{}",
            agent.log_tail()
        );
    };
    assert!(why.contains("20 messages a second"), "{why}");
    assert!(
        accepted > 200,
        "{accepted}: the flood was over 200 a second first"
    );

    // The controllers' view: throttled by the rule, the allocation carries the rate.
    let (code, st) = c
        .get_json(leader, "/v1/enclaves/alice/status")
        .await
        .expect("status");
    assert_eq!(code, 200, "{st}");
    assert_eq!(st["status"]["ladder"]["step"], "throttle", "{st}");
    assert_eq!(st["allocation"]["msgs_rate_per_s"], 20, "{st}");

    // Held to its rate: over 1.5 s of flooding, at most one second's burst plus 20 a second.
    let t0 = Instant::now();
    let mut ok = 0u64;
    while t0.elapsed() < Duration::from_millis(1500) {
        if alice.send("bob", &[7u8; 64]).await.is_ok() {
            ok += 1;
        }
    }
    assert!(ok <= 20 + 20 * 2, "{ok} accepted in 1.5 s at 20 a second");

    // It stops flooding: the throttle is lifted and a send is accepted again.
    let deadline = Instant::now() + DEADLINE * 2;
    loop {
        tokio::time::sleep(Duration::from_millis(300)).await;
        let (_, st) = c
            .get_json(leader, "/v1/enclaves/alice/status")
            .await
            .expect("status");
        if st["status"]["ladder"]["step"] != "throttle"
            && st["allocation"]["msgs_rate_per_s"].is_null()
        {
            break;
        }
        assert!(Instant::now() < deadline, "never released: {st}");
    }
    let deadline = Instant::now() + DEADLINE;
    let mut burst_ok = 0;
    while burst_ok < 100 {
        match alice.send("bob", b"x").await {
            Ok(_) => burst_ok += 1,
            Err(e) => {
                assert!(Instant::now() < deadline, "still refused: {e}");
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    }
    drain.abort();
}
