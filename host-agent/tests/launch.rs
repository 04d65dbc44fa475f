//! The launch allow-list and the privilege drop on the real kernel (root only): a spec the
//! host's allow-list does not let through never runs (and the rest of the plan does), and what
//! runs, runs as an unprivileged uid of its own — no capabilities, `no_new_privs`, its own
//! mount namespace — and can still be measured, frozen and stopped.
// The lock serialises tests across threads; each test owns its runtime, so holding it
// over awaits cannot deadlock.
#![allow(clippy::await_holding_lock)]

mod common;

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use common::*;
use tribune_agent::agent::EventKind;
use tribune_agent::runtime::EnclaveStatus;
use tribune_agent::{Agent, AllowList, LaunchPolicy, LaunchSpec, RunState, RuntimeKind};

fn process(cmd: &[&str]) -> LaunchSpec {
    LaunchSpec::Process {
        cmd: cmd.iter().map(|s| s.to_string()).collect(),
        network: false,
        sim: None,
    }
}

/// A directory any uid may write to, so that a refused command that ran anyway could leave
/// its mark (the test would otherwise pass only because the enclave could not write).
fn open_dir() -> tempfile::TempDir {
    let d = tempfile::tempdir().unwrap();
    std::fs::set_permissions(d.path(), std::fs::Permissions::from_mode(0o1777)).unwrap();
    d
}

/// `Key:` line of `/proc/PID/status`, its fields.
fn status_field(pid: u32, key: &str) -> Vec<String> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    text.lines()
        .find_map(|l| l.strip_prefix(&format!("{key}:")))
        .unwrap_or_else(|| panic!("no {key} in /proc/{pid}/status"))
        .split_whitespace()
        .map(str::to_string)
        .collect()
}

/// The process is gone (or a zombie nobody reaped yet).
fn gone(pid: u32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Err(_) => true,
        Ok(stat) => stat
            .rsplit_once(") ")
            .is_some_and(|(_, rest)| rest.starts_with('Z')),
    }
}

fn pid_of(st: &tribune_agent::AgentStatus, name: &str) -> u32 {
    st.enclaves
        .iter()
        .find(|e| e.name == name)
        .and_then(|e| e.pid)
        .unwrap_or_else(|| panic!("{name} is not running: {st:?}"))
}

fn policy_in(dir: &Path, list: &AllowList) -> LaunchPolicy {
    let path = dir.join("launch-policy.toml");
    list.write(&path).unwrap();
    LaunchPolicy::load(&path).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refused_specs_never_run_and_allowed_ones_run_unprivileged() {
    if skip("launch") {
        return;
    }
    let _g = lock();
    let out = open_dir();
    let bad_file: PathBuf = out.path().join("bad");
    let good_file: PathBuf = out.path().join("good");
    let bad_script = format!("id -u > {}; sleep 600", bad_file.display());
    let good_script = format!("id -u > {}; exec /bin/sleep 600", good_file.display());

    let (mut cfg, dir) = config("launch", RuntimeKind::Process);
    // /bin/sh only with the one script; /bin/sleep with any arguments.
    let mut list = AllowList::default();
    list.allow_program(
        "/bin/sh",
        Some(vec![vec!["-c".into(), good_script.clone()]]),
    )
    .unwrap()
    .allow_program("/bin/sleep", None)
    .unwrap();
    cfg.launch_policy = policy_in(dir.path(), &list);
    let mut agent = Agent::start(cfg).await.unwrap();

    let rep = agent
        .apply(plan(
            1,
            &[
                // The finding: an API caller's `sh -c`, as root, within 3 s.
                (
                    "bad",
                    enclave(process(&["/bin/sh", "-c", &bad_script]), None, 1),
                ),
                ("rel", enclave(process(&["sh", "-c", &bad_script]), None, 1)),
                (
                    "good",
                    enclave(process(&["/bin/sh", "-c", &good_script]), None, 1),
                ),
                (
                    "sleeper",
                    enclave(process(&["/bin/sleep", "600"]), Some(200), 1),
                ),
            ],
        ))
        .await
        .expect("one bad enclave does not block the host's plan");
    assert_eq!(rep.launched, vec!["good", "sleeper"]);
    let refused: Vec<&str> = rep.refused.iter().map(|r| r.enclave.as_str()).collect();
    assert_eq!(refused, vec!["bad", "rel"]);
    assert!(
        rep.refused[0]
            .error
            .contains("match none of the argument lists"),
        "{rep:?}"
    );
    assert!(
        rep.refused[1].error.contains("not an absolute path"),
        "{rep:?}"
    );
    assert!(
        rep.refused[0].error.contains("launch-policy.toml"),
        "{rep:?}"
    );

    // Positive control: the allowed script ran, as a uid that is not root.
    assert!(
        wait_for(tribune_testkit::DEADLINE, || good_file.exists()
            && !std::fs::read_to_string(&good_file)
                .unwrap()
                .trim()
                .is_empty()),
        "the allowed enclave never ran"
    );
    let good_uid: u32 = std::fs::read_to_string(&good_file)
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    assert_ne!(good_uid, 0);
    // The refused ones never ran (given far longer than the finding's 3 s).
    std::thread::sleep(Duration::from_secs(3));
    assert!(!bad_file.exists(), "a refused spec ran");
    let cg = agent.cgroups().clone();
    for name in ["bad", "rel"] {
        assert!(
            cg.pids(&agent.group_of(name))
                .unwrap_or_default()
                .is_empty(),
            "{name} has processes"
        );
    }

    // What runs is unprivileged: own uid/gid, no groups, no capabilities (bounding set
    // included), no_new_privs, a mount namespace of its own.
    let st = agent.status().await;
    let pid = pid_of(&st, "sleeper");
    let uid = status_field(pid, "Uid");
    let gid = status_field(pid, "Gid");
    assert!(uid.iter().all(|u| u != "0"), "Uid {uid:?}");
    assert!(gid.iter().all(|g| g != "0"), "Gid {gid:?}");
    assert!(status_field(pid, "Groups").is_empty());
    assert_eq!(status_field(pid, "NoNewPrivs"), ["1"]);
    for caps in ["CapInh", "CapPrm", "CapEff", "CapBnd", "CapAmb"] {
        assert_eq!(status_field(pid, caps), ["0000000000000000"], "{caps}");
    }
    let mnt = |p: &str| std::fs::read_link(format!("/proc/{p}/ns/mnt")).unwrap();
    assert_ne!(
        mnt(&pid.to_string()),
        mnt("self"),
        "shares the agent's mount namespace"
    );
    // One uid per enclave, as status says.
    let sleeper = st.enclaves.iter().find(|e| e.name == "sleeper").unwrap();
    let user = sleeper.user.expect("credentials");
    assert_eq!(uid[0], user.uid.to_string());
    assert_ne!(user.uid, good_uid, "two enclaves share a uid");
    // The agent's environment stays with the agent.
    let environ = std::fs::read(format!("/proc/{pid}/environ")).unwrap();
    let environ = String::from_utf8_lossy(&environ);
    assert!(environ.starts_with("PATH="), "{environ}");
    assert!(!environ.contains("CARGO"), "{environ}");

    // The refusal is visible in status, once per enclave, and retried plans do not repeat it.
    assert_eq!(
        st.refused
            .iter()
            .map(|r| r.enclave.as_str())
            .collect::<Vec<_>>(),
        ["bad", "rel"]
    );
    let refusals = |st: &tribune_agent::AgentStatus| {
        st.events
            .iter()
            .filter(|e| matches!(e.kind, EventKind::LaunchRefused { .. }))
            .count()
    };
    assert_eq!(refusals(&st), 2);

    // Still measured, frozen and stopped like any enclave.
    tokio::time::sleep(Duration::from_millis(150)).await;
    agent.sample().await;
    tokio::time::sleep(Duration::from_millis(150)).await;
    agent.sample().await;
    let mut e = enclave(process(&["/bin/sleep", "600"]), Some(200), 1);
    e.state = RunState::Suspend;
    let bad = enclave(process(&["/bin/sh", "-c", &bad_script]), None, 1);
    let rep = agent
        .apply(plan(2, &[("sleeper", e), ("bad", bad.clone())]))
        .await
        .unwrap();
    assert_eq!(rep.stopped, vec!["good"]);
    let st = agent.status().await;
    assert_eq!(st.refused.len(), 1);
    assert_eq!(refusals(&st), 2, "the same refusal was reported again");
    let s = st.enclaves.iter().find(|e| e.name == "sleeper").unwrap();
    assert_eq!(s.status, EnclaveStatus::Suspended);
    assert!(cg.is_frozen(&agent.group_of("sleeper")).unwrap());
    let rep = agent.apply(plan(3, &[("bad", bad)])).await.unwrap();
    assert_eq!(rep.stopped, vec!["sleeper"]);
    assert!(gone(pid), "sleeper survived");
    assert!(!bad_file.exists(), "a refused spec ran");
    shutdown_clean(agent).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_an_allow_list_nothing_is_launched_and_a_changed_binary_is_refused() {
    if skip("launch_none") {
        return;
    }
    let _g = lock();
    let (mut cfg, dir) = config("launchnone", RuntimeKind::Process);
    cfg.launch_policy = LaunchPolicy::Unconfigured;
    let mut agent = Agent::start(cfg.clone()).await.unwrap();
    let rep = agent
        .apply(plan(
            1,
            &[("s", enclave(process(&["/bin/sleep", "600"]), None, 1))],
        ))
        .await
        .unwrap();
    assert!(rep.launched.is_empty());
    assert!(rep.refused[0].error.contains("--launch-policy"), "{rep:?}");
    assert!(agent.status().await.enclaves.is_empty());
    shutdown_clean(agent).await;

    // An allowed binary replaced after the list was written: refused, by digest.
    let bin = open_dir();
    let prog = bin.path().join("sleep");
    std::fs::copy("/bin/sleep", &prog).unwrap();
    std::fs::set_permissions(&prog, std::fs::Permissions::from_mode(0o755)).unwrap();
    std::fs::set_permissions(bin.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let prog_s = prog.to_str().unwrap();
    let mut list = AllowList::default();
    list.allow_program(prog_s, None).unwrap();
    cfg.launch_policy = policy_in(dir.path(), &list);
    let mut agent = Agent::start(cfg.clone()).await.unwrap();
    // (The stored plan v1 is re-applied at start: `s` is /bin/sleep, not listed.)
    assert_eq!(agent.status().await.refused.len(), 1);
    agent
        .apply(plan(
            2,
            &[("mine", enclave(process(&[prog_s, "600"]), None, 1))],
        ))
        .await
        .unwrap();
    assert_eq!(agent.status().await.enclaves.len(), 1);
    // Replaced the way binaries are (a new file renamed over the old one), one byte longer.
    let new = bin.path().join("sleep.new");
    let mut bytes = std::fs::read("/bin/sleep").unwrap();
    bytes.push(0);
    std::fs::write(&new, bytes).unwrap();
    std::fs::set_permissions(&new, std::fs::Permissions::from_mode(0o755)).unwrap();
    std::fs::rename(&new, &prog).unwrap();
    let rep = agent
        .apply(plan(
            3,
            &[("again", enclave(process(&[prog_s, "600"]), None, 1))],
        ))
        .await
        .unwrap();
    assert_eq!(rep.stopped, vec!["mine"]);
    assert!(rep.launched.is_empty());
    assert!(
        rep.refused[0]
            .error
            .contains("the file changed since it was allowed"),
        "{rep:?}"
    );
    shutdown_clean(agent).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn after_a_crash_an_enclave_the_allow_list_no_longer_allows_is_stopped() {
    if skip("launch_adopt") {
        return;
    }
    let _g = lock();
    let (cfg, dir) = config("launchadopt", RuntimeKind::Process);
    let mut agent = Agent::start(cfg.clone()).await.unwrap();
    agent
        .apply(plan(
            1,
            &[
                ("s", enclave(process(&["/bin/sleep", "600"]), None, 1)),
                (
                    "t",
                    enclave(process(&["/usr/bin/tail", "-f", "/dev/null"]), None, 1),
                ),
            ],
        ))
        .await
        .unwrap();
    let st = agent.status().await;
    let (s_pid, t_pid) = (pid_of(&st, "s"), pid_of(&st, "t"));
    drop(agent); // a crash: nothing cleaned up

    // The host's administrator removed /usr/bin/tail from the list meanwhile.
    let mut cfg = cfg;
    let mut list = AllowList::default();
    list.allow_program("/bin/sleep", None).unwrap();
    cfg.launch_policy = policy_in(dir.path(), &list);
    let mut agent = Agent::start(cfg).await.unwrap();
    let st = agent.status().await;
    assert_eq!(pid_of(&st, "s"), s_pid, "s was restarted, not adopted");
    let s = st.enclaves.iter().find(|e| e.name == "s").unwrap();
    assert_eq!(
        s.user.map(|u| u.uid.to_string()),
        Some(status_field(s_pid, "Uid")[0].clone()),
        "adopted with its credentials"
    );
    assert!(st.enclaves.iter().all(|e| e.name != "t"), "t still runs");
    assert!(
        wait_for(tribune_testkit::DEADLINE, || gone(t_pid)),
        "t was not stopped"
    );
    assert_eq!(st.refused.len(), 1);
    assert_eq!(st.refused[0].enclave, "t");
    shutdown_clean(agent).await;
}
