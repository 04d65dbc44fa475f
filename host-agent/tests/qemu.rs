//! The QEMU runtime on the real kernel (root + qemu-system-x86_64): every QEMU thread in the
//! enclave's cgroup, the cap holds, QMP stop takes the VM to ~0 CPU and cont runs it again,
//! and a restarted agent adopts the running VM.
// The lock serialises tests across threads; each test owns its runtime, so holding it
// over awaits cannot deadlock.
#![allow(clippy::await_holding_lock)]

mod common;

use std::time::Duration;

use common::*;
use tribune_agent::runtime::EnclaveStatus;
use tribune_agent::{Agent, LaunchSpec, RunState, RuntimeKind};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn qemu_enclave_is_capped_stopped_and_continued_over_qmp() {
    if !can_run_qemu("qemu") {
        return;
    }
    let _g = lock();
    let (mut cfg, _dir) = config("qemu", RuntimeKind::Qemu);
    cfg.cpuset_cpus = Some(test_cpu());
    let mut agent = Agent::start(cfg).await.unwrap();
    prioritise(&agent);
    let mut e = enclave(
        LaunchSpec::Qemu {
            memory_mib: 64,
            args: vec![],
            msg_port: Default::default(),
            guest: Default::default(),
            network: false,
        },
        Some(500),
        1,
    );
    // Extra arguments the host's allow-list does not list are refused; the rest of the plan
    // runs.
    let evil = enclave(
        LaunchSpec::Qemu {
            memory_mib: 64,
            args: vec!["-monitor".into(), "stdio".into()],
            msg_port: Default::default(),
            guest: Default::default(),
            network: false,
        },
        None,
        1,
    );
    let rep = agent
        .apply(plan(1, &[("vm", e.clone()), ("evil", evil)]))
        .await
        .unwrap();
    assert_eq!(rep.launched, vec!["vm"]);
    assert_eq!(rep.refused.len(), 1);
    assert!(rep.refused[0].error.contains("-monitor"), "{rep:?}");
    let g = agent.group_of("vm");
    let cg = agent.cgroups().clone();

    // Every thread of QEMU is in the enclave's cgroup.
    let st = agent.status().await;
    assert_eq!(st.enclaves[0].status, EnclaveStatus::Running);
    let pid = st.enclaves[0].pid.unwrap();
    let tasks: Vec<_> = std::fs::read_dir(format!("/proc/{pid}/task"))
        .unwrap()
        .flatten()
        .collect();
    assert!(tasks.len() > 1, "QEMU runs several threads");
    for t in &tasks {
        let cgs = std::fs::read_to_string(t.path().join("cgroup")).unwrap_or_default();
        assert!(
            cgs.lines().any(|l| l.ends_with(&format!(":/{g}"))),
            "thread {:?} outside {g}: {cgs}",
            t.file_name()
        );
    }

    // QEMU dropped to the enclave's own uid before the guest ran, cannot regain privileges,
    // and lives in its own mount namespace.
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let field = |k: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(&format!("{k}:")))
            .unwrap_or_default()
            .split_whitespace()
            .map(str::to_string)
            .collect::<Vec<_>>()
    };
    let user = st.enclaves[0].user.expect("credentials");
    assert_eq!(field("Uid"), vec![user.uid.to_string(); 4], "{status}");
    assert_eq!(field("Gid"), vec![user.gid.to_string(); 4], "{status}");
    assert_ne!(user.uid, 0);
    assert_eq!(field("NoNewPrivs"), ["1"]);
    for caps in ["CapPrm", "CapEff", "CapInh", "CapAmb"] {
        assert_eq!(field(caps), ["0000000000000000"], "{caps}");
    }
    // Only what its own drop to the enclave user needed: CAP_SETGID | CAP_SETUID.
    assert_eq!(field("CapBnd"), ["00000000000000c0"]);
    let mnt = |p: &str| std::fs::read_link(format!("/proc/{p}/ns/mnt")).unwrap();
    assert_ne!(mnt(&pid.to_string()), mnt("self"));
    // Where this QEMU has seccomp, it runs under its `-sandbox`.
    let has_sandbox = std::process::Command::new("qemu-system-x86_64")
        .args(["-sandbox", "on", "-version"])
        .output()
        .is_ok_and(|o| o.status.success());
    eprintln!("figure: QEMU seccomp sandbox available: {has_sandbox}");
    if has_sandbox {
        assert_eq!(field("Seccomp"), ["2"], "{status}");
    }

    std::thread::sleep(Duration::from_millis(500));
    let used = measure_cores(
        cg.as_ref(),
        std::slice::from_ref(&g),
        Duration::from_secs(2),
    )[0];
    eprintln!(
        "figure: QEMU (TCG, {} threads) capped at 500m -> {:.2}% of a core",
        tasks.len(),
        used * 100.0
    );
    assert!(used > 0.3 && used < 0.53, "capped VM used {used:.3} cores");

    // The demand signal of a VM: the run delay of QEMU's threads (its vCPUs' included), read
    // from the enclave's cgroup — every thread of it, and a cumulative counter.
    let mut wait = tribune_agent::cpu_wait::WaitProbe::new(cg.thread_list(&g));
    let w0 = wait.read(1);
    assert_eq!(wait.threads(), tasks.len(), "every QEMU thread is measured");
    std::thread::sleep(Duration::from_millis(500));
    let w1 = wait.read(2);
    assert!(w1 >= w0);
    eprintln!(
        "figure: QEMU capped at 500m waited {} ms (runnable, not running) in 0.5 s",
        (w1 - w0) / 1_000_000
    );

    e.state = RunState::Suspend;
    agent.apply(plan(2, &[("vm", e.clone())])).await.unwrap();
    assert_eq!(
        agent.status().await.enclaves[0].status,
        EnclaveStatus::Suspended
    );
    let used = measure_cores(
        cg.as_ref(),
        std::slice::from_ref(&g),
        Duration::from_secs(1),
    )[0];
    eprintln!(
        "figure: QEMU after QMP stop -> {:.3}% of a core",
        used * 100.0
    );
    assert!(used < 0.01, "stopped VM used {used:.4} cores");

    e.state = RunState::Run;
    agent.apply(plan(3, &[("vm", e)])).await.unwrap();
    assert_eq!(
        agent.status().await.enclaves[0].status,
        EnclaveStatus::Running
    );
    let used = measure_cores(
        cg.as_ref(),
        std::slice::from_ref(&g),
        Duration::from_secs(1),
    )[0];
    eprintln!(
        "figure: QEMU after QMP cont -> {:.2}% of a core",
        used * 100.0
    );
    assert!(used > 0.3, "continued VM used {used:.3} cores");

    // The agent crashes; the VM runs on and the restarted agent adopts it over QMP.
    let cfg = agent.config().clone();
    // Dropping the agent without `shutdown` is a crash: nothing is cleaned up, and its
    // connections (QMP) close as they would when the process dies.
    drop(agent);
    let mut agent = Agent::start(cfg).await.unwrap();
    let st = agent.status().await;
    assert_eq!(
        st.enclaves[0].pid,
        Some(pid),
        "VM restarted instead of adopted"
    );
    assert_eq!(st.enclaves[0].status, EnclaveStatus::Running);
    shutdown_clean(agent).await;
}
