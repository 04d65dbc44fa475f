//! Plans on the real kernel (root only): re-applied after a restart, stale versions refused,
//! kept (and re-enforced) when the controller link is down, served over the control socket;
//! and the usage of what runs, sampled and sent over the link.
// The lock serialises tests across threads; each test owns its runtime, so holding it
// over awaits cannot deadlock.
#![allow(clippy::await_holding_lock)]

mod common;

use std::time::Duration;

use common::controller::FakeController;
use common::*;
use tokio::sync::{mpsc, oneshot};
use tribune_agent::agent::{EventKind, LinkState};
use tribune_agent::control::{self, ClientRequest};
use tribune_agent::link;
use tribune_agent::{Agent, AgentError, LaunchSpec, LinkEvent, Request, RuntimeKind, ToLink};

fn sleeper() -> LaunchSpec {
    LaunchSpec::Process {
        cmd: vec!["/bin/sleep".into(), "600".into()],
        network: false,
        sim: None,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plan_is_reapplied_after_restart_and_stale_plans_refused() {
    if skip("restart") {
        return;
    }
    let _g = lock();
    let (cfg, _dir) = config("restart", RuntimeKind::Process);
    let mut agent = Agent::start(cfg.clone()).await.unwrap();
    // The agent's link to a controller, wired as `tribune agent` wires it.
    let mut ctl = FakeController::start().await;
    let (up_tx, up_rx) = mpsc::channel(64);
    let (ev_tx, mut ev_rx) = mpsc::channel(64);
    agent.set_uplink(up_tx);
    let link = tokio::spawn(link::run(ctl.link_config("h"), up_rx, ev_tx));
    let up = tokio::time::timeout(tribune_testkit::DEADLINE, ev_rx.recv()).await;
    assert!(matches!(up, Ok(Some(LinkEvent::Up))), "{up:?}");
    let mut e = enclave(sleeper(), Some(250), 2);
    e.limits.memory_bytes = Some(64 << 20);
    agent
        .on_link(LinkEvent::Plan(
            plan(3, &[("s", e.clone())]),
            tracing::Span::none(),
        ))
        .await;
    assert_eq!(agent.applied().map(|p| p.version), Some(3));
    // Usage: one window per sample after the first, sent as a sealed report numbered 1, 2, …
    // that verifies under the session the enclave's evidence bound.
    agent.sample().await;
    tokio::time::sleep(Duration::from_millis(50)).await;
    agent.sample().await;
    agent.sample().await;
    assert!(
        ctl.receive_usage("s", 2, Duration::from_secs(10)).await,
        "{:?}",
        ctl.received
    );
    ctl.receive_for(Duration::from_millis(200)).await;
    let (reports, _) = ctl.verify_usage("s");
    assert_eq!(
        reports.iter().map(|r| r.seq).collect::<Vec<_>>(),
        vec![1, 2]
    );
    assert!(
        reports[0].window_len_ns >= 50_000_000,
        "the first window spans the 50 ms pause: {:?}",
        reports[0]
    );
    // Same plan again: nothing written.
    let rep = agent.apply(plan(3, &[("s", e.clone())])).await.unwrap();
    assert_eq!(rep.writes, 0);
    shutdown_clean(agent).await;
    // The agent is gone, so is its side of the link.
    tokio::time::timeout(tribune_testkit::DEADLINE, link)
        .await
        .expect("the link ends with the agent")
        .unwrap();

    let mut agent = Agent::start(cfg).await.unwrap();
    assert_eq!(agent.applied().map(|p| p.version), Some(3));
    let g = agent.group_of("s");
    assert_eq!(agent.cgroups().cpu_cap(&g).unwrap(), Some(250));
    assert_eq!(agent.cgroups().memory_limit(&g).unwrap(), Some(64 << 20));
    assert!(
        !agent.cgroups().pids(&g).unwrap().is_empty(),
        "enclave relaunched"
    );
    let err = agent.apply(plan(2, &[("s", e)])).await.unwrap_err();
    assert!(
        matches!(
            err,
            AgentError::StalePlan {
                offered: 2,
                applied: 3
            }
        ),
        "{err}"
    );
    assert_eq!(agent.cgroups().cpu_cap(&g).unwrap(), Some(250));
    shutdown_clean(agent).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plan_is_kept_and_reenforced_when_controller_link_is_down() {
    if skip("link_down") {
        return;
    }
    let _g = lock();
    let (mut cfg, dir) = config("linkdown", RuntimeKind::Process);
    cfg.controllers = vec!["127.0.0.1:1".into()];
    cfg.reconcile_period = Duration::from_millis(200);
    let mut agent = Agent::start(cfg).await.unwrap();
    // What the loop hands the controller link (no link runs: nothing would answer it).
    let (up_tx, mut up_rx) = mpsc::channel(1024);
    agent.set_uplink(up_tx);
    let g = agent.group_of("s");
    let cg = agent.cgroups().clone();
    let (req_tx, req_rx) = mpsc::channel(8);
    let (link_tx, link_rx) = mpsc::channel(8);
    let (stop_tx, stop_rx) = oneshot::channel::<()>();
    let server = control::serve(dir.path(), req_tx.clone()).unwrap();
    let task = tokio::spawn(agent.run(req_rx, Some(link_rx), async {
        let _ = stop_rx.await;
    }));
    link_tx.send(LinkEvent::Up).await.unwrap();
    link_tx
        .send(LinkEvent::Plan(
            plan(1, &[("s", enclave(sleeper(), Some(300), 1))]),
            tracing::Span::none(),
        ))
        .await
        .unwrap();
    assert!(wait_for(tribune_testkit::DEADLINE, || cg.cpu_cap(&g).ok()
        == Some(Some(300))));
    // The controller goes away.
    drop(link_tx);
    // Someone lifts the limit behind the agent's back: the last plan is enforced again.
    cg.set_cpu_cap(&g, None).unwrap();
    assert!(
        wait_for(tribune_testkit::DEADLINE, || cg.cpu_cap(&g).ok()
            == Some(Some(300))),
        "limit not re-enforced after the link went down"
    );
    cg.set_weight(&g, 200).unwrap();
    assert!(
        wait_for(tribune_testkit::DEADLINE, || cg.weight_is(&g, 1).ok()
            == Some(true)),
        "weight not re-enforced"
    );
    let status = control::request(dir.path(), &ClientRequest::Status)
        .await
        .unwrap();
    assert_eq!(status["applied_version"], 1);
    assert_eq!(status["controller_link"], "down");
    let (tx, rx) = oneshot::channel();
    req_tx.send(Request::Status(tx)).await.unwrap();
    let st = rx.await.unwrap();
    assert_eq!(st.controller_link, LinkState::Down);
    // With the link down, the loop still samples and hands every window over (the link
    // buffers what it sealed until a controller acknowledges it).
    let windows_of_s = tokio::time::timeout(tribune_testkit::DEADLINE, async {
        let mut n = 0;
        while n < 3 {
            match up_rx.recv().await {
                Some(ToLink::Windows(w)) => n += w.iter().filter(|w| w.enclave == "s").count(),
                Some(_) => {}
                None => break,
            }
        }
        n
    })
    .await;
    assert_eq!(
        windows_of_s,
        Ok(3),
        "the loop samples and hands windows over"
    );
    assert!(st.events.iter().any(|e| matches!(
        e.kind,
        EventKind::ControllerLinkDown {
            keeping_version: Some(1)
        }
    )));
    // A plan through the control socket still works, and writes only what changed.
    let v2 = plan(2, &[("s", enclave(sleeper(), Some(400), 1))]);
    let rep = control::request(dir.path(), &ClientRequest::Apply(v2))
        .await
        .unwrap();
    assert_eq!(rep["writes"], 1);
    assert_eq!(cg.cpu_cap(&g).unwrap(), Some(400));
    let stale = plan(1, &[]);
    let err = control::request(dir.path(), &ClientRequest::Apply(stale))
        .await
        .unwrap_err();
    assert!(err.to_string().contains("older"), "{err}");
    stop_tx.send(()).unwrap();
    task.await.unwrap().unwrap();
    server.abort();
    assert_clean(cg.as_ref(), dir.instance());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn enclaves_outliving_an_agent_crash_are_adopted_not_restarted() {
    if skip("adopt") {
        return;
    }
    let _g = lock();
    let (cfg, _dir) = config("adopt", RuntimeKind::Process);
    let mut agent = Agent::start(cfg.clone()).await.unwrap();
    let mut frozen = enclave(busy(), Some(200), 1);
    frozen.state = tribune_agent::RunState::Suspend;
    agent
        .apply(plan(
            4,
            &[("s", enclave(sleeper(), Some(250), 2)), ("f", frozen)],
        ))
        .await
        .unwrap();
    let before = agent.status().await;
    let pid_of = |st: &tribune_agent::AgentStatus, n: &str| {
        st.enclaves.iter().find(|e| e.name == n).and_then(|e| e.pid)
    };
    let (s_pid, f_pid) = (pid_of(&before, "s"), pid_of(&before, "f"));
    // A crash: the agent vanishes without cleaning up.
    // Dropping the agent without `shutdown` is a crash: nothing is cleaned up, and its
    // connections (QMP) close as they would when the process dies.
    drop(agent);

    let mut agent = Agent::start(cfg).await.unwrap();
    let after = agent.status().await;
    assert_eq!(after.applied_version, Some(4));
    assert_eq!(pid_of(&after, "s"), s_pid, "s was restarted, not adopted");
    assert_eq!(pid_of(&after, "f"), f_pid, "f was restarted, not adopted");
    let cg = agent.cgroups().clone();
    assert_eq!(cg.cpu_cap(&agent.group_of("s")).unwrap(), Some(250));
    assert!(cg.is_frozen(&agent.group_of("f")).unwrap());
    let f = after.enclaves.iter().find(|e| e.name == "f").unwrap();
    assert_eq!(f.status, tribune_agent::runtime::EnclaveStatus::Suspended);
    shutdown_clean(agent).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_older_placement_epoch_is_refused_even_after_a_restart() {
    if skip("epochs") {
        return;
    }
    let _g = lock();
    let (cfg, _dir) = config("epochs", RuntimeKind::Process);
    let mut agent = Agent::start(cfg.clone()).await.unwrap();
    let mut e = enclave(sleeper(), Some(250), 1);
    e.placement_epoch = 4;
    let rep = agent.apply(plan(1, &[("s", e.clone())])).await.unwrap();
    assert_eq!(rep.launched, vec!["s"]);
    // A stale controller asks to suspend it under epoch 3: refused, it keeps running.
    let mut old = e.clone();
    old.placement_epoch = 3;
    old.state = tribune_agent::RunState::Suspend;
    let rep = agent.apply(plan(2, &[("s", old.clone())])).await.unwrap();
    assert_eq!(rep.refused.len(), 1, "{rep:?}");
    assert!(
        rep.refused[0].error.contains("older than epoch 4"),
        "{rep:?}"
    );
    assert_eq!(rep.writes, 0);
    let st = agent.status().await;
    assert_eq!(
        st.enclaves[0].status,
        tribune_agent::runtime::EnclaveStatus::Running
    );
    // Moved away (the plan drops it), then the agent restarts: a plan that would relaunch it
    // under the old epoch launches nothing.
    let rep = agent.apply(plan(3, &[])).await.unwrap();
    assert_eq!(rep.stopped, vec!["s"]);
    shutdown_clean(agent).await;
    let mut agent = Agent::start(cfg).await.unwrap();
    let mut stale = e.clone();
    stale.placement_epoch = 2;
    let rep = agent.apply(plan(4, &[("s", stale)])).await.unwrap();
    assert!(rep.launched.is_empty(), "{rep:?}");
    assert_eq!(rep.refused.len(), 1);
    assert!(agent.status().await.enclaves.is_empty());
    // The current epoch (or a newer one) launches it again.
    let rep = agent.apply(plan(5, &[("s", e)])).await.unwrap();
    assert_eq!(rep.launched, vec!["s"]);
    shutdown_clean(agent).await;
}
