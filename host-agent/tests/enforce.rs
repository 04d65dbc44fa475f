//! Enforcement on the real kernel (root only): CPU cap, weights, memory limit, suspend/resume.
// The lock serialises tests across threads; each test owns its runtime, so holding it
// over awaits cannot deadlock.
#![allow(clippy::await_holding_lock)]

mod common;

use std::time::{Duration, Instant};

use common::*;
use tribune_agent::agent::EventKind;
use tribune_agent::{Agent, LaunchSpec, RunState, RuntimeKind};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cpu_cap_holds_and_changes_within_100ms() {
    if skip("cpu_cap") {
        return;
    }
    let _g = lock();
    let (mut cfg, _dir) = config("cap", RuntimeKind::Process);
    cfg.cpuset_cpus = Some(test_cpu());
    let mut agent = Agent::start(cfg).await.unwrap();
    prioritise(&agent);
    agent
        .apply(plan(1, &[("busy", enclave(busy(), Some(250), 1))]))
        .await
        .unwrap();
    let g = agent.group_of("busy");
    let cg = agent.cgroups().clone();
    std::thread::sleep(Duration::from_millis(300));
    let used = measure_cores(
        cg.as_ref(),
        std::slice::from_ref(&g),
        Duration::from_secs(5),
    )[0];
    eprintln!(
        "figure: cap 250m over 5 s -> {:.2}% of a core",
        used * 100.0
    );
    assert!(
        (used - 0.25).abs() <= 0.015,
        "capped at 250m used {used:.4} cores"
    );

    // When does the new cap reach the kernel? A watcher polls the cgroup every 0.2 ms while
    // `apply` runs (apply itself also fsyncs the plan file before it returns, which on a busy
    // disk can take longer than the cap takes to land).
    let t0 = Instant::now();
    let watch = {
        let (cg, g) = (cg.clone(), g.clone());
        std::thread::spawn(move || {
            while t0.elapsed() < Duration::from_secs(5) {
                if cg.cpu_cap(&g).ok() == Some(Some(500)) {
                    return Some(t0.elapsed());
                }
                std::thread::sleep(Duration::from_micros(200));
            }
            None
        })
    };
    let rep = agent
        .apply(plan(2, &[("busy", enclave(busy(), Some(500), 1))]))
        .await
        .unwrap();
    let apply_latency = t0.elapsed();
    let cap_latency = watch.join().unwrap().expect("new cap never seen");
    assert_eq!(rep.writes, 1, "only the cap changed: {rep:?}");
    assert_eq!(cg.cpu_cap(&g).unwrap(), Some(500));
    // The new quota is in force from the next CFS period (100 ms): measure from there.
    let wait = Duration::from_millis(100).saturating_sub(t0.elapsed());
    std::thread::sleep(wait);
    let used = measure_cores(
        cg.as_ref(),
        std::slice::from_ref(&g),
        Duration::from_secs(1),
    )[0];
    eprintln!(
        "figure: cap 250m -> 500m: in the kernel after {cap_latency:?} (apply incl. fsync {apply_latency:?}); usage from +100 ms over 1 s -> {:.2}%",
        used * 100.0
    );
    assert!(
        cap_latency < Duration::from_millis(100),
        "cap landed after {cap_latency:?}"
    );
    assert!(
        (used - 0.5).abs() <= 0.03,
        "after raising to 500m used {used:.4}"
    );
    shutdown_clean(agent).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn weights_one_two_four_share_one_core() {
    if skip("weights") {
        return;
    }
    let _g = lock();
    let (mut cfg, _dir) = config("weights", RuntimeKind::Process);
    cfg.cpuset_cpus = Some(test_cpu());
    let mut agent = Agent::start(cfg).await.unwrap();
    prioritise(&agent);
    agent
        .apply(plan(
            1,
            &[
                ("w1", enclave(busy(), None, 1)),
                ("w2", enclave(busy(), None, 2)),
                ("w4", enclave(busy(), None, 4)),
            ],
        ))
        .await
        .unwrap();
    let groups: Vec<String> = ["w1", "w2", "w4"]
        .iter()
        .map(|n| agent.group_of(n))
        .collect();
    std::thread::sleep(Duration::from_millis(300));
    let used = measure_cores(agent.cgroups().as_ref(), &groups, Duration::from_secs(5));
    let total: f64 = used.iter().sum();
    let ideal = [1.0 / 7.0, 2.0 / 7.0, 4.0 / 7.0];
    for (i, u) in used.iter().enumerate() {
        let share = u / total;
        let rel = (share - ideal[i]).abs() / ideal[i];
        eprintln!(
            "figure: weight {} -> share {:.4} (ideal {:.4}, off {:.2}% of ideal); total {:.3} cores",
            [1, 2, 4][i],
            share,
            ideal[i],
            rel * 100.0,
            total
        );
        assert!(
            rel <= 0.03,
            "weight share {share:.4} vs ideal {:.4}",
            ideal[i]
        );
    }
    shutdown_clean(agent).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn memory_limit_holds_and_oom_is_reported() {
    if skip("memory") {
        return;
    }
    let _g = lock();
    let (cfg, _dir) = config("mem", RuntimeKind::Process);
    let mut agent = Agent::start(cfg).await.unwrap();
    let limit: u64 = 32 << 20;
    let mut e = enclave(
        LaunchSpec::Process {
            // `tail` buffers a "line" that never ends: memory grows until the limit.
            cmd: vec!["/usr/bin/tail".into(), "/dev/zero".into()],
            network: false,
            sim: None,
        },
        None,
        1,
    );
    e.limits.memory_bytes = Some(limit);
    agent.apply(plan(1, &[("hog", e)])).await.unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    let mut oom = false;
    let mut peak = 0;
    while Instant::now() < deadline && !oom {
        agent.sample().await;
        let st = agent.status().await;
        peak = peak.max(st.enclaves[0].usage.memory_bytes);
        oom = st.events.iter().any(|ev| {
            ev.enclave.as_deref() == Some("hog") && matches!(ev.kind, EventKind::OomKill { .. })
        });
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    eprintln!("figure: memory limit {limit} B, peak sampled usage {peak} B, oom reported: {oom}");
    assert!(oom, "agent did not report the OOM kill");
    assert!(peak <= limit, "usage {peak} above limit {limit}");
    shutdown_clean(agent).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn suspend_stops_cpu_and_resume_runs_again() {
    if skip("suspend") {
        return;
    }
    let _g = lock();
    let (mut cfg, _dir) = config("freeze", RuntimeKind::Process);
    cfg.cpuset_cpus = Some(test_cpu());
    let mut agent = Agent::start(cfg).await.unwrap();
    prioritise(&agent);
    let mut e = enclave(busy(), Some(500), 1);
    agent.apply(plan(1, &[("f", e.clone())])).await.unwrap();
    let g = agent.group_of("f");
    let cg = agent.cgroups().clone();
    e.state = RunState::Suspend;
    let rep = agent.apply(plan(2, &[("f", e.clone())])).await.unwrap();
    assert_eq!(rep.writes, 1);
    let used = measure_cores(
        cg.as_ref(),
        std::slice::from_ref(&g),
        Duration::from_secs(1),
    )[0];
    eprintln!("figure: suspended -> {:.4}% of a core", used * 100.0);
    assert_eq!(used, 0.0, "a frozen enclave used CPU");
    // Someone thaws it behind the agent's back: reconcile suspends it again.
    cg.thaw(&g).unwrap();
    agent.reconcile().await;
    assert!(cg.is_frozen(&g).unwrap(), "suspension not re-enforced");
    e.state = RunState::Run;
    agent.apply(plan(3, &[("f", e)])).await.unwrap();
    let used = measure_cores(
        cg.as_ref(),
        std::slice::from_ref(&g),
        Duration::from_secs(1),
    )[0];
    eprintln!("figure: resumed -> {:.2}% of a core", used * 100.0);
    assert!(used > 0.3, "resumed enclave used only {used:.3} cores");
    shutdown_clean(agent).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn memory_limit_reclaims_page_cache_and_reports_it() {
    if skip("memory_reclaim") {
        return;
    }
    let _g = lock();
    // A 96 MiB file, written and then dropped from the page cache, so that reading it inside
    // the enclave charges clean, reclaimable pages to the enclave's 32 MiB limit.
    let dir = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).unwrap();
    // The enclave runs as an unprivileged uid of its own: it must be able to reach the file.
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let path = dir.path().join("fill");
    {
        use std::io::Write;
        use std::os::fd::AsRawFd;
        let mut f = std::fs::File::create(&path).unwrap();
        let chunk = vec![7u8; 1 << 20];
        for _ in 0..96 {
            f.write_all(&chunk).unwrap();
        }
        f.sync_all().unwrap();
        // SAFETY: valid fd; advisory only.
        unsafe { libc::posix_fadvise(f.as_raw_fd(), 0, 0, libc::POSIX_FADV_DONTNEED) };
    }
    let (cfg, _data) = config("reclaim", RuntimeKind::Process);
    let mut agent = Agent::start(cfg).await.unwrap();
    let limit: u64 = 32 << 20;
    let mut e = enclave(
        LaunchSpec::Process {
            cmd: vec![
                "/bin/sh".into(),
                "-c".into(),
                format!("cat {} > /dev/null; sleep 600", path.display()),
            ],
            network: false,
            sim: None,
        },
        None,
        1,
    );
    e.limits.memory_bytes = Some(limit);
    agent.apply(plan(1, &[("reader", e)])).await.unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    let (mut reclaim, mut oom) = (false, false);
    while Instant::now() < deadline && !reclaim {
        agent.sample().await;
        let st = agent.status().await;
        for ev in &st.events {
            reclaim |= matches!(ev.kind, EventKind::MemoryReclaim { .. });
            oom |= matches!(ev.kind, EventKind::OomKill { .. });
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let st = agent.status().await;
    eprintln!(
        "figure: 96 MiB read under a {limit} B limit: reclaim reported {reclaim}, oom {oom}, usage now {} B",
        st.enclaves[0].usage.memory_bytes
    );
    assert!(reclaim, "agent did not report reclaim at the limit");
    assert!(!oom, "clean page cache should be reclaimed, not OOM-killed");
    assert_eq!(
        st.enclaves[0].status,
        tribune_agent::runtime::EnclaveStatus::Running
    );
    shutdown_clean(agent).await;
}
