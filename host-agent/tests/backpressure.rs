//! Back-pressure at the agent (root only: a real enclave in a cgroup): a tick whose usage
//! windows the controller link cannot take is not lost — the next window starts where the last
//! one handed over ended and covers the ticks in between, so the windows stay contiguous.

mod common;

use common::*;

#[test]
fn usage_the_link_could_not_take_goes_with_the_next_window() {
    if skip("backpressure_windows") {
        return;
    }
    let _g = lock();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let (cfg, _dir) = config("bpwin", tribune_agent::RuntimeKind::Process);
    rt.block_on(async {
        let mut agent = tribune_agent::Agent::start(cfg).await.unwrap();
        // A link that takes one message and then none until drained.
        let (up_tx, mut up_rx) = tokio::sync::mpsc::channel(1);
        agent.set_uplink(up_tx);
        let busy = tribune_agent::LaunchSpec::Process {
            cmd: vec!["/bin/sh".into(), "-c".into(), "while :; do :; done".into()],
            network: false,
            sim: None,
        };
        agent
            .apply(plan(1, &[("spin", enclave(busy, Some(200), 1))]))
            .await
            .unwrap();
        let windows = |rx: &mut tokio::sync::mpsc::Receiver<tribune_agent::ToLink>| {
            let mut out = Vec::new();
            while let Ok(m) = rx.try_recv() {
                if let tribune_agent::ToLink::Windows(w) = m {
                    out.extend(w.into_iter().filter(|w| w.enclave == "spin"));
                }
            }
            out
        };
        let tick = std::time::Duration::from_millis(100);
        // The first sample has nothing before it; the second window fills the link.
        agent.sample().await;
        tokio::time::sleep(tick).await;
        agent.sample().await;
        // Two ticks the link cannot take.
        for _ in 0..2 {
            tokio::time::sleep(tick).await;
            agent.sample().await;
        }
        let first = windows(&mut up_rx);
        assert_eq!(first.len(), 1, "{first:?}");
        // The link drains; the next window covers the three ticks since the first.
        tokio::time::sleep(tick).await;
        agent.sample().await;
        let next = windows(&mut up_rx);
        assert_eq!(next.len(), 1, "{next:?}");
        let (a, b) = (&first[0], &next[0]);
        assert_eq!(
            b.start_unix_ns,
            a.start_unix_ns + a.len_ns,
            "the windows are not contiguous: {a:?} then {b:?}"
        );
        assert!(
            b.len_ns >= 3 * a.len_ns / 2,
            "the window after the stall does not cover the stalled ticks: {a:?} then {b:?}"
        );
        assert!(b.cpu_ns > 0, "{b:?}");
        shutdown_clean(agent).await;
    });
}
