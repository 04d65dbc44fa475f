//! `tribune agent …` end to end: argument parsing everywhere; as root also run → apply →
//! status → SIGTERM (clean exit leaves nothing), a crash (SIGKILL) cleaned by `cleanup`, and
//! `run-enclave` returning the enclave's exit code; two agents started at once in one
//! directory both launch and serve metrics, each on its own port.

mod common;

use std::path::Path;
use std::process::{Child, Command, Output};
use std::sync::Mutex;
use std::time::Duration;

use common::BIN;
static LOCK: Mutex<()> = Mutex::new(());

fn tribune(args: &[&str]) -> Output {
    Command::new(BIN).args(args).output().unwrap()
}

fn skip_unless_root(test: &str) -> bool {
    common::skip_unless_root(test, "the agent needs cgroups and namespaces")
}

use tribune_testkit::wait::within as wait_for;

fn start_agent(dir: &Path, instance: &str) -> Child {
    let child = Command::new(BIN)
        .args(["agent", "run", "--instance", instance, "--data-dir"])
        .arg(dir)
        .arg("--launch-policy")
        .arg(common::write_launch_policy(dir, &["/bin/sleep"]))
        // Not the default 127.0.0.1:7480: agents of other tests may be running.
        .args(["--metrics-listen", "127.0.0.1:0"])
        // Its enclaves inherit these: never let them hold the harness's pipes.
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    assert!(
        wait_for(common::DEADLINE, || dir.join("agent.sock").exists()),
        "agent did not open its control socket"
    );
    child
}

fn write_plan(dir: &Path, version: u64, cpu: u64) -> std::path::PathBuf {
    let p = dir.join(format!("plan-{version}.json"));
    let text = format!(
        r#"{{"version": {version}, "enclaves": {{"s": {{"limits": {{"cpu_millicores": {cpu}}},
            "launch": {{"process": {{"cmd": ["/bin/sleep", "600"]}}}}}}}}}}"#
    );
    std::fs::write(&p, text).unwrap();
    p
}

fn gone(instance: &str) -> bool {
    ["cpu/", "memory/", ""]
        .iter()
        .all(|h| !Path::new(&format!("/sys/fs/cgroup/{h}tribune/{instance}")).exists())
}

/// CFS quota in µs of enclave `s` of `instance` (cgroup v1 `cpu.cfs_quota_us` or v2 `cpu.max`).
fn quota_us(instance: &str) -> String {
    let v1 = format!("/sys/fs/cgroup/cpu/tribune/{instance}/s/cpu.cfs_quota_us");
    let v2 = format!("/sys/fs/cgroup/tribune/{instance}/s/cpu.max");
    std::fs::read_to_string(v1)
        .or_else(|_| std::fs::read_to_string(v2))
        .unwrap_or_default()
        .split_whitespace()
        .next()
        .unwrap_or_default()
        .to_string()
}

#[test]
fn help_lists_the_agent_verbs() {
    let out = tribune(&["agent", "--help"]);
    assert!(out.status.success());
    let text = String::from_utf8_lossy(&out.stdout);
    for verb in ["run", "apply", "status", "run-enclave", "cleanup"] {
        assert!(text.contains(verb), "{verb} missing from:\n{text}");
    }
    for verb in ["run", "apply", "status", "run-enclave", "cleanup"] {
        assert!(tribune(&["agent", verb, "--help"]).status.success());
    }
}

#[test]
fn apply_without_a_running_agent_says_so() {
    let dir = tempfile::tempdir().unwrap();
    let plan = write_plan(dir.path(), 1, 250);
    let out = Command::new(BIN)
        .args(["agent", "apply", "--plan"])
        .arg(&plan)
        .arg("--data-dir")
        .arg(dir.path())
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("no agent listening"), "{err}");
}

#[test]
fn bad_plan_is_refused_before_sending() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("bad.json");
    std::fs::write(&p, r#"{"version": 1, "enclaves": {"a": {"weight": 0}}}"#).unwrap();
    let out = Command::new(BIN)
        .args(["agent", "apply", "--plan"])
        .arg(&p)
        .arg("--data-dir")
        .arg(dir.path())
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("weight"));
}

#[test]
fn run_apply_status_and_clean_exit() {
    if skip_unless_root("run_apply_status") {
        return;
    }
    let _g = LOCK.lock().unwrap_or_else(|p| p.into_inner());
    let dir = tempfile::tempdir().unwrap();
    let instance = format!("cli{}", std::process::id());
    let mut agent = start_agent(dir.path(), &instance);
    let plan = write_plan(dir.path(), 1, 250);
    let out = Command::new(BIN)
        .args(["agent", "apply", "--plan"])
        .arg(&plan)
        .arg("--data-dir")
        .arg(dir.path())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("\"launched\":[\"s\"]"));
    assert_eq!(quota_us(&instance), "25000");
    let out = Command::new(BIN)
        .args(["agent", "status", "--output", "json", "--data-dir"])
        .arg(dir.path())
        .output()
        .unwrap();
    assert!(out.status.success());
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["applied_version"], 1);
    assert_eq!(v["enclaves"][0]["name"], "s");
    assert_eq!(v["enclaves"][0]["status"]["state"], "running");
    let out = Command::new(BIN)
        .args(["agent", "status", "--data-dir"])
        .arg(dir.path())
        .output()
        .unwrap();
    assert!(String::from_utf8_lossy(&out.stdout).contains("ENCLAVE"));
    tribune_testkit::process::sigterm(&agent);
    let st = agent.wait().unwrap();
    assert!(st.success(), "agent exit {st:?}");
    assert!(gone(&instance), "cgroups left after a clean exit");
    assert!(dir.path().join("applied-plan.json").exists());
}

#[test]
fn cleanup_removes_what_a_crashed_agent_left() {
    if skip_unless_root("cleanup_after_crash") {
        return;
    }
    let _g = LOCK.lock().unwrap_or_else(|p| p.into_inner());
    let dir = tempfile::tempdir().unwrap();
    let instance = format!("crash{}", std::process::id());
    let mut agent = start_agent(dir.path(), &instance);
    let plan = write_plan(dir.path(), 1, 100);
    assert!(
        Command::new(BIN)
            .args(["agent", "apply", "--plan"])
            .arg(&plan)
            .arg("--data-dir")
            .arg(dir.path())
            .status()
            .unwrap()
            .success()
    );
    let status = || -> serde_json::Value {
        let out = Command::new(BIN)
            .args(["agent", "status", "--output", "json", "--data-dir"])
            .arg(dir.path())
            .output()
            .unwrap();
        serde_json::from_slice(&out.stdout).unwrap()
    };
    let pid = status()["enclaves"][0]["pid"].clone();
    agent.kill().unwrap();
    agent.wait().unwrap();
    assert!(!gone(&instance), "a crash leaves the enclave behind");
    // Restarted on the same data dir: it adopts the enclave and keeps enforcing the plan.
    let _ = std::fs::remove_file(dir.path().join("agent.sock"));
    let mut again = start_agent(dir.path(), &instance);
    let v = status();
    assert_eq!(v["applied_version"], 1);
    assert_eq!(v["enclaves"][0]["status"]["state"], "running");
    assert_eq!(v["enclaves"][0]["pid"], pid, "adopted, not restarted");
    assert_eq!(quota_us(&instance), "10000");
    again.kill().unwrap();
    again.wait().unwrap();
    let out = tribune(&["agent", "cleanup", "--instance", &instance]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains(&instance));
    assert!(gone(&instance));
    let out = tribune(&["agent", "cleanup", "--instance", &instance]);
    assert!(String::from_utf8_lossy(&out.stdout).contains("nothing to clean up"));
}

#[test]
fn cleanup_touches_only_its_own_instance() {
    if skip_unless_root("cleanup_own_instance") {
        return;
    }
    let _g = LOCK.lock().unwrap_or_else(|p| p.into_inner());
    let (mine, theirs) = (
        format!("cm{}", std::process::id()),
        format!("co{}", std::process::id()),
    );
    let cg = tribune_agent::cgroup::detect(Path::new("/sys/fs/cgroup")).expect("cgroups");
    for i in [&mine, &theirs] {
        cg.create(&format!("tribune/{i}/s")).expect("create");
    }
    // Another agent's enclave, running: cleaning up `mine` must leave it alone.
    let mut enclave = Command::new("sleep").arg("600").spawn().expect("sleep");
    cg.add_pid(&format!("tribune/{theirs}/s"), enclave.id())
        .expect("add pid");
    let out = tribune(&["agent", "cleanup", "--instance", &mine]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains(&mine), "{stdout}");
    assert!(!stdout.contains(&theirs), "{stdout}");
    assert!(gone(&mine));
    assert!(!gone(&theirs), "another instance's cgroups removed");
    assert!(
        enclave.try_wait().expect("try_wait").is_none(),
        "another instance's enclave killed"
    );
    // Its own cleanup removes it, and ends its enclave.
    let out = tribune(&["agent", "cleanup", "--instance", &theirs]);
    assert!(out.status.success());
    assert!(gone(&theirs));
    let _ = enclave.kill();
    let _ = enclave.wait();
}

#[test]
fn run_enclave_returns_the_enclave_exit_code_and_cleans_up() {
    if skip_unless_root("run_enclave") {
        return;
    }
    let _g = LOCK.lock().unwrap_or_else(|p| p.into_inner());
    let name = format!("re{}", std::process::id());
    let out = tribune(&[
        "agent",
        "run-enclave",
        "--name",
        &name,
        "--cpu",
        "250m",
        "--memory",
        "64MiB",
        "--weight",
        "2",
        "--cmd",
        "sh",
        "-c",
        "exit 3",
    ]);
    assert_eq!(
        out.status.code(),
        Some(3),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(gone(&format!("run-{name}")));
}

/// `GET /metrics` from `addr` (plain HTTP/1.0): the whole answer, or `None`.
fn get_metrics(addr: std::net::SocketAddr) -> Option<String> {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect_timeout(&addr, Duration::from_secs(5)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(15))).ok()?;
    s.write_all(b"GET /metrics HTTP/1.0\r\nHost: localhost\r\n\r\n")
        .ok()?;
    let mut text = String::new();
    s.read_to_string(&mut text).ok()?;
    Some(text)
}

/// What CI's schedule_agents met: a test started two agents at once in one directory, the
/// second one's start rewrote the shared launch allow-list while the first read it (the first
/// refused every launch), and both tried the default metrics port (the second served none).
/// Each agent here is started by its own thread, each rewriting the shared allow-list as it
/// starts; both must launch their enclave and serve metrics on a port of their own.
#[test]
fn two_agents_started_at_once_in_one_dir_both_launch_and_serve_metrics() {
    if skip_unless_root("two_agents_at_once") {
        return;
    }
    let _g = LOCK.lock().unwrap_or_else(|p| p.into_inner());
    use tribune_testkit::agent::{AgentOptions, AgentProcess};
    let dir = tribune_testkit::TestDir::new("tribune-agent-pair-");
    let dir = dir.path();
    let pid = std::process::id();
    let start = |k: u32| {
        AgentProcess::start(&AgentOptions {
            binary: BIN.into(),
            instance: format!("pair{pid}-{k}"),
            host: format!("pair{k}"),
            data_dir: dir.join(format!("agent-{k}")),
            launch_policy: common::write_launch_policy(dir, &["/bin/sleep"]),
            controllers: vec![],
            tls_dir: None,
            extra: vec![],
            env: Vec::new(),
            log: dir.join(format!("agent-{k}.log")),
            netns: None,
        })
        .expect("start an agent")
    };
    let agents: Vec<AgentProcess> = std::thread::scope(|s| {
        let first = s.spawn(|| start(1));
        let second = start(2);
        vec![first.join().expect("the first agent's start"), second]
    });
    let mut served = Vec::new();
    for (k, a) in (1..).zip(&agents) {
        let data = dir.join(format!("agent-{k}"));
        assert!(
            wait_for(common::DEADLINE, || data.join("agent.sock").exists()),
            "agent {k} opened no control socket:\n{}",
            a.log_tail()
        );
        let out = Command::new(BIN)
            .args(["agent", "apply", "--plan"])
            .arg(write_plan(&data, 1, 100))
            .arg("--data-dir")
            .arg(&data)
            .output()
            .expect("run tribune agent apply");
        assert!(
            out.status.success()
                && String::from_utf8_lossy(&out.stdout).contains("\"launched\":[\"s\"]"),
            "agent {k} did not launch its enclave:\n{}\nstderr: {}\n{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr),
            a.log_tail()
        );
        let addr = a
            .metrics_addr(common::DEADLINE)
            .unwrap_or_else(|e| panic!("agent {k}: {e}\n{}", a.log_tail()));
        let text = get_metrics(addr).unwrap_or_default();
        assert!(
            text.starts_with("HTTP/1.") && text.contains(" 200 ") && text.contains("tribune_agent"),
            "agent {k}'s metrics at {addr}:\n{text}"
        );
        served.push(addr);
    }
    assert_ne!(served[0], served[1], "both agents on one metrics port");
    for (k, a) in (1..).zip(&agents) {
        assert!(
            !a.log_text().contains("metrics are not served"),
            "agent {k}:\n{}",
            a.log_tail()
        );
    }
}
