//! The cost of sampling 100 enclaves every 100 ms (root only): must stay under 2% of a core.
//! Measured as the sampling thread's own CPU time (CLOCK_THREAD_CPUTIME_ID) over wall time,
//! on a current-thread runtime so the whole loop runs on this thread.

mod common;

use std::time::{Duration, Instant};

use common::*;
use tribune_agent::cgroup;
use tribune_agent::collector::{NetCounters, OOM_EVERY, Probe, sampling_interval};

fn thread_cpu_ns() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: valid pointer to a timespec.
    unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) };
    ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
}

#[test]
fn sampling_100_enclaves_costs_under_2_percent_of_a_core() {
    if skip("sampling_cost") {
        return;
    }
    let _g = lock();
    let cg = cgroup::detect(std::path::Path::new("/sys/fs/cgroup")).unwrap();
    let root = format!("tribune/t{}-sampling", std::process::id());
    let groups: Vec<String> = (0..100).map(|i| format!("{root}/e{i}")).collect();
    for g in &groups {
        cg.create(g).unwrap();
    }
    // Every probe also looks up its link counters (loopback stands in for the host-side veth).
    let mut probes: Vec<Probe> = groups
        .iter()
        .map(|g| Probe::open(cg.as_ref(), g, Some("lo")).unwrap())
        .collect();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let (cpu, wall, ticks) = rt.block_on(async {
        let mut tick = sampling_interval(Duration::from_millis(100));
        let mut buf = Vec::with_capacity(4096);
        let mut sink = 0u64;
        let mut net = NetCounters::open().unwrap();
        tick.tick().await;
        let (c0, t0) = (thread_cpu_ns(), Instant::now());
        let mut ticks = 0u64;
        while t0.elapsed() < Duration::from_secs(3) {
            tick.tick().await;
            let links = net.read();
            let with_oom = ticks.is_multiple_of(OOM_EVERY);
            for p in &mut probes {
                let s = p.read(&mut buf, &links, with_oom).unwrap();
                sink = sink.wrapping_add(s.cpu_ns + s.net_tx_bytes);
            }
            ticks += 1;
        }
        std::hint::black_box(sink);
        (thread_cpu_ns() - c0, t0.elapsed(), ticks)
    });
    let share = cpu as f64 / wall.as_nanos() as f64;
    eprintln!(
        "figure: sampling 100 enclaves x {ticks} ticks at 100 ms: {:.3}% of one core ({:.1} us per round)",
        share * 100.0,
        cpu as f64 / ticks as f64 / 1000.0
    );
    drop(probes);
    cg.remove(&root).unwrap();
    for d in cg.group_dirs(cgroup::PREFIX) {
        let _ = std::fs::remove_dir(d);
    }
    assert_clean(
        cg.as_ref(),
        root.strip_prefix("tribune/").expect("an instance's root"),
    );
    assert!(share < 0.02, "sampling cost {share:.4} of a core");
}

/// The same bound for the agent's whole sampling path (probes, exit checks, usage, the usage
/// windows handed to the controller link) with 100 real enclaves running.
#[test]
fn agent_sampling_of_100_running_enclaves_costs_under_2_percent_of_a_core() {
    if skip("agent_sampling_cost") {
        return;
    }
    let _g = lock();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let (cfg, _dir) = config("sample100", tribune_agent::RuntimeKind::Process);
    let (share, ticks, windows) = rt.block_on(async {
        let mut agent = tribune_agent::Agent::start(cfg).await.unwrap();
        // Stands in for the link: counts the windows the agent hands over.
        let (up_tx, mut up_rx) = tokio::sync::mpsc::channel(8);
        agent.set_uplink(up_tx);
        let mut windows = 0usize;
        let sleeper = tribune_agent::LaunchSpec::Process {
            cmd: vec!["/bin/sleep".into(), "600".into()],
            network: false,
            sim: None,
        };
        let names: Vec<String> = (0..100).map(|i| format!("e{i}")).collect();
        let enclaves: Vec<(&str, tribune_agent::EnclavePlan)> = names
            .iter()
            .map(|n| (n.as_str(), enclave(sleeper.clone(), Some(100), 1)))
            .collect();
        agent.apply(plan(1, &enclaves)).await.unwrap();
        let mut tick = sampling_interval(Duration::from_millis(100));
        tick.tick().await;
        let (c0, t0) = (thread_cpu_ns(), Instant::now());
        let mut ticks = 0u64;
        while t0.elapsed() < Duration::from_secs(3) {
            tick.tick().await;
            agent.sample().await;
            while let Ok(m) = up_rx.try_recv() {
                if let tribune_agent::ToLink::Windows(w) = m {
                    windows += w.len();
                }
            }
            ticks += 1;
        }
        let share = (thread_cpu_ns() - c0) as f64 / t0.elapsed().as_nanos() as f64;
        shutdown_clean(agent).await;
        (share, ticks, windows)
    });
    eprintln!(
        "figure: Agent::sample with 100 running enclaves x {ticks} ticks: {:.3}% of one core ({windows} windows)",
        share * 100.0
    );
    assert!(windows >= 100 * (ticks as usize - 1));
    assert!(share < 0.02, "agent sampling cost {share:.4} of a core");
}
