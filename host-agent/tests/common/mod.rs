//! Helpers shared by the kernel tests: skip loudly when not root, one test at a time per
//! binary (they measure CPU shares), unique names, CPU measured by the cgroup's own accounting,
//! and an assertion that nothing of ours is left.
#![allow(dead_code)]

pub mod controller;
pub mod frames;

use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};

use tribune_agent::cgroup::CgroupEnforcer;
use tribune_agent::{
    Agent, AgentConfig, AllowList, EnclavePlan, LaunchPolicy, LaunchSpec, Limits, Plan, RunState,
    RuntimeKind,
};

static LOCK: Mutex<()> = Mutex::new(());

/// Serialises the kernel tests of one binary.
pub fn lock() -> MutexGuard<'static, ()> {
    LOCK.lock().unwrap_or_else(|p| p.into_inner())
}

pub use tribune_testkit::say_skipped;

/// Whether `qemu-system-x86_64` runs here.
pub fn have_qemu() -> bool {
    std::process::Command::new("qemu-system-x86_64")
        .arg("--version")
        .output()
        .map(|o| o.status.success())
        .unwrap_or(false)
}

/// True when this QEMU test can run here (root, cgroups, QEMU); says why not otherwise.
pub fn can_run_qemu(test: &str) -> bool {
    if skip(test) {
        return false;
    }
    if !have_qemu() {
        say_skipped(&format!(
            "{test}: qemu-system-x86_64 not installed (apt-get install qemu-system-x86)"
        ));
        return false;
    }
    true
}

/// A 64 MiB QEMU enclave (the counter guest) placed under `epoch`, memory limited to 512 MiB.
pub fn qemu_vm(epoch: u64) -> EnclavePlan {
    let mut e = enclave(
        LaunchSpec::Qemu {
            memory_mib: 64,
            args: vec![],
            msg_port: Default::default(),
            guest: Default::default(),
            network: false,
        },
        None,
        1,
    );
    e.limits.memory_bytes = Some(512 << 20);
    e.placement_epoch = epoch;
    e
}

/// The run status the agent reports of `name` (`None`: not one of its enclaves).
pub async fn status_of(
    agent: &mut Agent,
    name: &str,
) -> Option<tribune_agent::runtime::EnclaveStatus> {
    agent
        .status()
        .await
        .enclaves
        .iter()
        .find(|e| e.name == name)
        .map(|e| e.status)
}

/// True when this test cannot run here; says why so it never passes silently.
pub fn skip(test: &str) -> bool {
    if !tribune_testkit::is_root() {
        say_skipped(&format!(
            "{test}: not root (cgroups, netns and tc need root)"
        ));
        return true;
    }
    if !std::path::Path::new("/sys/fs/cgroup/cpu/cpu.cfs_quota_us").exists()
        && !std::path::Path::new("/sys/fs/cgroup/cgroup.controllers").exists()
    {
        say_skipped(&format!("{test}: no cgroup cpu controller"));
        return true;
    }
    false
}

/// The last CPU of the host: tests pin enclaves there to measure shares of one core.
pub fn test_cpu() -> String {
    let n = std::thread::available_parallelism().map_or(1, |n| n.get());
    (n - 1).to_string()
}

/// A test's data dir; dropping it (also when the test panics) removes whatever the test's
/// agent instance left, so a failed assertion never leaks running enclaves.
pub struct TestDir {
    dir: tempfile::TempDir,
    instance: String,
}

impl TestDir {
    pub fn path(&self) -> &std::path::Path {
        self.dir.path()
    }
    /// The agent instance this test's config names (its cgroups, namespaces, bridge).
    pub fn instance(&self) -> &str {
        &self.instance
    }
}

impl Drop for TestDir {
    fn drop(&mut self) {
        if let Ok(cg) = tribune_agent::cgroup::detect(std::path::Path::new("/sys/fs/cgroup")) {
            let _ = tribune_agent::cleanup::cleanup_instance(cg.as_ref(), &self.instance);
        }
        // Namespaces a test made itself next to the agent's (e.g. the bandwidth sink).
        for ns in tribune_agent::net::our_netns() {
            if ns.starts_with(&format!("tb-{}", self.instance)) {
                let _ = tribune_agent::net::run("ip", &["netns", "del", &ns]);
            }
        }
    }
}

/// The programs the kernel tests launch (by absolute path: the allow-list names files).
pub const TEST_PROGRAMS: [&str; 4] = ["/bin/sh", "/bin/bash", "/bin/sleep", "/usr/bin/tail"];

/// Writes the launch allow-list the tests run under to `dir/launch-policy.toml` and loads it
/// as the agent would: [`TEST_PROGRAMS`] (hashed now) with any arguments, and the qemu
/// runtime with no extra arguments (the counting guest).
pub fn test_policy(dir: &std::path::Path) -> LaunchPolicy {
    let mut list = AllowList::default();
    for p in TEST_PROGRAMS {
        list.allow_program(p, None).unwrap();
    }
    list.qemu = Some(Default::default());
    let path = dir.join("launch-policy.toml");
    list.write(&path).unwrap();
    LaunchPolicy::load(&path).unwrap()
}

/// An agent config with a unique instance and data dir, launching under [`test_policy`].
pub fn config(test: &str, runtime: RuntimeKind) -> (AgentConfig, TestDir) {
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = AgentConfig::new(dir.path(), runtime);
    cfg.launch_policy = test_policy(dir.path());
    cfg.instance = format!("t{}-{test}", std::process::id());
    let instance = cfg.instance.clone();
    (cfg, TestDir { dir, instance })
}

pub fn busy() -> LaunchSpec {
    LaunchSpec::Process {
        cmd: vec!["/bin/sh".into(), "-c".into(), "while :; do :; done".into()],
        network: false,
        sim: None,
    }
}

pub fn enclave(launch: LaunchSpec, cpu: Option<u64>, weight: u32) -> EnclavePlan {
    EnclavePlan {
        launch: Some(launch),
        limits: Limits {
            cpu_millicores: cpu,
            ..Limits::default()
        },
        weight,
        state: RunState::Run,
        talk: Default::default(),
        placement_epoch: 0,
    }
}

pub fn plan(version: u64, enclaves: &[(&str, EnclavePlan)]) -> Plan {
    Plan {
        version,
        enclaves: enclaves
            .iter()
            .map(|(n, e)| (n.to_string(), e.clone()))
            .collect(),
        remote: Default::default(),
    }
}

/// Cumulative CPU ns of a group, from its own accounting.
pub fn cpu_ns(cg: &dyn CgroupEnforcer, group: &str) -> u64 {
    cg.open_probe(group)
        .and_then(|p| p.read(&mut Vec::new()))
        .map(|s| s.cpu_ns)
        .unwrap_or(0)
}

/// CPU used by each group over `window`, in cores (usage delta / wall time).
pub fn measure_cores(cg: &dyn CgroupEnforcer, groups: &[String], window: Duration) -> Vec<f64> {
    let t0 = Instant::now();
    let a: Vec<u64> = groups.iter().map(|g| cpu_ns(cg, g)).collect();
    std::thread::sleep(window);
    let b: Vec<u64> = groups.iter().map(|g| cpu_ns(cg, g)).collect();
    let wall = t0.elapsed().as_nanos() as f64;
    a.iter()
        .zip(&b)
        .map(|(a, b)| (b - a) as f64 / wall)
        .collect()
}

/// Gives the test's instance group the top weight so other work on the machine (parallel
/// builds) cannot starve the enclaves being measured.
pub fn prioritise(agent: &Agent) {
    let root = agent.config().group_root();
    agent.cgroups().set_weight(&root, 256).unwrap();
}

/// Shuts the agent down and asserts nothing of its instance is left on the host.
pub async fn shutdown_clean(agent: Agent) {
    let cg = agent.cgroups().clone();
    let instance = agent.config().instance.clone();
    agent.shutdown().await.unwrap();
    assert_clean(cg.as_ref(), &instance);
}

/// Nothing of `instance` is left. Only this test's instance: another agent (or test) on the
/// same host is none of its business.
pub fn assert_clean(cg: &dyn CgroupEnforcer, instance: &str) {
    let left = tribune_agent::cleanup::leftovers_of(cg, instance);
    assert!(left.is_empty(), "leftovers after test: {left:?}");
}

/// Polls `f` until it returns true or `timeout` passes.
#[allow(unused_imports)]
pub use tribune_testkit::wait::within as wait_for;
