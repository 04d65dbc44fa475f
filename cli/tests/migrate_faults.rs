//! Live-migration fencing under faults (root + qemu-system-x86_64): a migration is stopped at
//! one step — before the target starts, during the transfer, at the switch-over, after the
//! commit — by a test-only hold point in an agent (`tribune_agent::test_hold`, compiled only
//! into the binary `cargo test` builds), and there one process is killed with SIGKILL: the
//! source's agent, the target's agent, or the leading controller. It is restarted, and then:
//!
//! - no migration is under way; the last one ended committed or rolled back, and the
//!   enclave's placement is what the log's entry for it records (the target under epoch + 1,
//!   or the source under its epoch);
//! - the VM runs on exactly one host — that one, with the guest's counter going on from
//!   where it was (moved or resumed, not restarted) — and its QEMU is gone from the other;
//! - that host's agent applied it under the recorded epoch; after a commit the source's
//!   epoch floor is at least the new epoch (it can never resume it under the old one), and
//!   the two were never seen running at once.
//!
//! One test per (step, victim): 12. Each runs its case once by default, on one cluster and
//! one VM shared by its runs (moved back and forth); `TRIBUNE_FAULT_RUNS=N` repeats it N
//! times, e.g. `TRIBUNE_FAULT_RUNS=10 cargo test -p tribune --test migrate_faults`;
//! `TRIBUNE_FAULT_NET=1` gives the VM a NIC in its namespace, whose stream's socket the
//! agents open and hand to QEMU (`networked`). The cases take turns (a lock): each runs three controllers, two agents and
//! a TCG guest.
// The lock serialises the cases across test threads; each owns its runtime, so holding it
// over awaits cannot deadlock.
#![allow(clippy::await_holding_lock)]

mod common;

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use common::{BIN, Cluster, DEADLINE};
use serde_json::{Value, json};
use tribune_agent::runtime::qemu::{MIGRATE_SOCKET, guest_counter};
use tribune_agent::runtime::qmp::Qmp;
use tribune_agent::test_hold::{HOLD_FILE, Hold, reached_file};
use tribune_testkit::agent::{AgentOptions, AgentProcess};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Victim {
    Source,
    Target,
    Leader,
}

/// Where a migration is stopped: the agent that holds (source or target) and its hold point.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Step {
    BeforeTarget,
    Transfer,
    Switchover,
    AfterCommit,
}

impl Step {
    fn hold(self) -> Hold {
        match self {
            Step::BeforeTarget => Hold::MigrateIn,
            Step::Transfer => Hold::Transfer,
            Step::Switchover => Hold::Switchover,
            Step::AfterCommit => Hold::End,
        }
    }
    /// Whether the hold is in the target's agent (else the source's).
    fn on_target(self) -> bool {
        self == Step::BeforeTarget
    }
}

fn have_qemu() -> bool {
    std::process::Command::new("qemu-system-x86_64")
        .arg("--version")
        .output()
        .map(|o| o.status.success())
        .unwrap_or(false)
}

/// `TRIBUNE_FAULT_NET=1`: the VM has a NIC (`"network": true`) on agents with `--subnet`, so
/// its migration stream is a socket the agents open and hand to QEMU
/// (`host-agent/src/agent/handoff.rs`): a killed agent must not break it.
fn networked() -> bool {
    std::env::var("TRIBUNE_FAULT_NET").is_ok_and(|v| v == "1")
}

fn runs() -> usize {
    std::env::var("TRIBUNE_FAULT_RUNS")
        .ok()
        .and_then(|v| v.parse().ok())
        .filter(|&n| n > 0)
        .unwrap_or(1)
}

/// One host's agent: how it is started (again after a kill), and the process.
struct Host {
    name: &'static str,
    opts: AgentOptions,
    proc: Option<AgentProcess>,
    starts: usize,
}

impl Host {
    fn new(c: &Cluster, instance: &str, name: &'static str) -> Host {
        let dir = c.dir.path();
        let tls_dir = c.tls_dir.clone().expect("a TLS cluster");
        common::issue(
            &tls_dir,
            &tribune_tls::PeerIdentity::Agent {
                host: name.to_string(),
            },
        );
        let mut list = tribune_agent::AllowList::default();
        list.allow_program("/bin/sh", None).expect("allow /bin/sh");
        list.qemu = Some(Default::default());
        let policy = dir.join(format!("launch-policy-{instance}.toml"));
        list.write(&policy).expect("write the allow-list");
        let opts = AgentOptions {
            binary: BIN.into(),
            instance: instance.to_string(),
            host: name.to_string(),
            data_dir: dir.join(format!("agent-{instance}")),
            launch_policy: policy,
            controllers: c.nodes.values().map(|x| x.addr.clone()).collect(),
            tls_dir: Some(tls_dir),
            extra: {
                let mut x = vec!["--runtime".to_string(), "qemu".to_string()];
                if networked() {
                    let k = if name == "fh1" { 91 } else { 92 };
                    x.extend(["--subnet".to_string(), format!("10.{k}.0")]);
                }
                x
            },
            env: Vec::new(),
            log: PathBuf::new(),
            netns: None,
        };
        let mut h = Host {
            name,
            opts,
            proc: None,
            starts: 0,
        };
        h.start();
        h
    }

    fn dir(&self) -> &Path {
        &self.opts.data_dir
    }

    fn start(&mut self) {
        self.starts += 1;
        let mut o = self.opts.clone();
        o.log = self
            .dir()
            .with_file_name(format!("agent-{}.{}.log", self.opts.instance, self.starts));
        self.proc = Some(AgentProcess::start(&o).expect("spawn agent"));
    }

    fn kill9(&mut self) {
        if let Some(mut p) = self.proc.take() {
            p.child.kill().expect("kill -9 the agent");
            p.child.wait().expect("reap the agent");
            // Dropping it now signals a pid already reaped: nothing.
        }
    }

    fn log(&self) -> String {
        (1..=self.starts)
            .map(|i| {
                let f = self
                    .dir()
                    .with_file_name(format!("agent-{}.{i}.log", self.opts.instance));
                format!(
                    "(start {i})\n{}",
                    std::fs::read_to_string(f).unwrap_or_default()
                )
            })
            .collect::<Vec<_>>()
            .join("\n")
    }

    fn set_hold(&self, h: Option<Hold>) {
        let file = self.dir().join(HOLD_FILE);
        match h {
            Some(h) => {
                std::fs::create_dir_all(self.dir()).expect("agent dir");
                std::fs::write(&file, h.name()).expect("write the hold file");
                let _ = std::fs::remove_file(reached_file(self.dir(), h));
            }
            None => {
                let _ = std::fs::remove_file(&file);
            }
        }
    }
}

/// The QMP monitor of the VM on the host whose agent's data dir is `dir` (`None`: no QEMU).
async fn monitor(dir: &Path) -> Option<Qmp> {
    let sock = dir.join("enclaves").join("vm").join(MIGRATE_SOCKET);
    Qmp::connect(&sock, Duration::from_secs(2)).await.ok()
}

/// Whether no QEMU listens on the VM's monitor there (its process is gone). A QEMU that
/// listens but is busy (the migration job holds its monitor) still counts as there.
async fn qemu_gone(dir: &Path) -> bool {
    let sock = dir.join("enclaves").join("vm").join(MIGRATE_SOCKET);
    tokio::net::UnixStream::connect(&sock).await.is_err()
}

/// The pid of the QEMU running the VM for the agent whose data dir is `dir` (its command
/// line names the VM's work dir).
fn qemu_pid(dir: &Path) -> Option<u32> {
    let work = dir.join("enclaves").join("vm");
    let work = work.to_string_lossy();
    std::fs::read_dir("/proc").ok()?.flatten().find_map(|e| {
        let pid: u32 = e.file_name().to_str()?.parse().ok()?;
        let cmd = std::fs::read(e.path().join("cmdline")).ok()?;
        let cmd = String::from_utf8_lossy(&cmd);
        (cmd.starts_with("qemu") || cmd.contains("/qemu"))
            .then_some(())
            .filter(|_| cmd.contains(work.as_ref()))
            .map(|_| pid)
    })
}

/// Seconds since boot: now, and when process `pid` started (`/proc/PID/stat`, in clock
/// ticks).
fn uptime_s() -> Option<f64> {
    let t = std::fs::read_to_string("/proc/uptime").ok()?;
    t.split_whitespace().next()?.parse().ok()
}
fn started_s(pid: u32) -> Option<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // After the command's closing parenthesis: field 3 onwards; starttime is field 22.
    let rest = &stat[stat.rfind(')')? + 2..];
    let ticks: f64 = rest.split_whitespace().nth(19)?.parse().ok()?;
    // SAFETY: sysconf has no memory preconditions.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    (hz > 0).then(|| ticks / hz as f64)
}

/// Wall-clock ms now.
fn wall_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

/// (running, counter) of the VM on that host; `None` when no QEMU answers there.
async fn vm_on(dir: &Path) -> Option<(bool, u64)> {
    let mut q = monitor(dir).await?;
    let status = q.execute("query-status", None).await.ok()?;
    let running = status["running"].as_bool().unwrap_or(false);
    let n = guest_counter(&mut q).await.ok()?;
    Some((running, n))
}

struct Rig {
    c: Cluster,
    hosts: [Host; 2],
}

impl Rig {
    fn logs(&self) -> String {
        format!(
            "{}\n--- agent {} ---\n{}\n--- agent {} ---\n{}",
            self.c.logs(),
            self.hosts[0].name,
            self.hosts[0].log(),
            self.hosts[1].name,
            self.hosts[1].log()
        )
    }

    /// A controller that runs (any).
    fn node(&self) -> u64 {
        *self.c.running().first().expect("a controller runs")
    }

    async fn get(&self, path: &str) -> Option<Value> {
        for n in self.c.running() {
            if let Some((200, v)) = self.c.get_json(n, path).await {
                return Some(v);
            }
        }
        None
    }

    async fn wait_for<T>(&self, what: &str, mut f: impl AsyncFnMut() -> Option<T>) -> T {
        let deadline = Instant::now() + DEADLINE;
        loop {
            if let Some(v) = f().await {
                return v;
            }
            assert!(
                Instant::now() < deadline,
                "timed out waiting for {what}\n{}",
                self.logs()
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// (host, epoch) of the VM's placement.
    async fn placement(&self) -> Option<(String, u64)> {
        let e = self.get("/v1/enclaves/vm").await?;
        Some((
            e["placement"]["host"].as_str()?.to_string(),
            e["placement"]["epoch"].as_u64()?,
        ))
    }
}

async fn setup(test: &str) -> Option<Rig> {
    if common::skip_unless_root(test, "the host agent needs cgroups") {
        return None;
    }
    if !have_qemu() {
        tribune_testkit::say_skipped(&format!(
            "{test}: qemu-system-x86_64 not installed (apt-get install qemu-system-x86)"
        ));
        return None;
    }
    const { assert!(tribune_agent::test_hold::COMPILED_IN) };
    // Deadlines short enough that a step whose report was lost rolls back within a run; no
    // cool-down (the VM moves back and forth).
    let dir = tempfile::tempdir().expect("temp dir");
    let config = dir.path().join("controller.toml");
    std::fs::write(
        &config,
        format!(
            "[migration]\nprepare_timeout_s = 20\ntransfer_timeout_s = 30\ncooldown_s = 0\n{}",
            common::migration_ports()
        ),
    )
    .expect("write the controller config");
    let config = config.display().to_string();
    let c = Cluster::start_tls(3, &["--allow-sim-evidence", "--config", &config]);
    // The config file must outlive the controllers' restarts.
    std::mem::forget(dir);
    let n = c.wait_leader().await;
    let hosts = [Host::new(&c, "fm1", "fh1"), Host::new(&c, "fm2", "fh2")];
    let rig = Rig { c, hosts };
    rig.wait_for("two hosts with addresses", async || {
        let v = rig.get("/v1/hosts").await?;
        let hs = v.as_array()?;
        let ok = ["fh1", "fh2"]
            .iter()
            .all(|id| hs.iter().any(|h| h["id"] == *id && h["address"] != ""));
        ok.then_some(())
    })
    .await;
    rig.c
        .put_json(
            n,
            "/v1/enclaves/vm",
            json!({
                "id": "vm", "tenant": "acme", "tee": "sim",
                "requested": {"cpu_millicores": 100, "memory_bytes": 0,
                              "egress_bits_per_sec": 0, "ingress_bits_per_sec": 0, "gpu_percent": 0},
                "placement": {"host": "fh1", "epoch": 1},
                "state": "running",
                "launch": {"qemu": {"memory_mib": 32, "network": networked()}},
            }),
        )
        .await;
    let d1 = rig.hosts[0].dir().to_path_buf();
    rig.wait_for("the guest counting on fh1", async || {
        vm_on(&d1).await.filter(|&(r, n)| r && n > 0)
    })
    .await;
    Some(rig)
}

/// What one run ended with.
#[derive(Debug)]
struct Ended {
    committed: bool,
}

/// One run: migrate the VM to the other host, stop at `step`, kill `victim`, restart it,
/// and check the fencing. The VM runs where the previous run left it.
async fn one_run(rig: &mut Rig, step: Step, victim: Victim, run: usize) -> Ended {
    let (from, epoch) = rig
        .wait_for("the VM's placement", async || rig.placement().await)
        .await;
    let (src, dst) = if from == rig.hosts[0].name {
        (0, 1)
    } else {
        (1, 0)
    };
    let to = rig.hosts[dst].name;
    let src_dir = rig.hosts[src].dir().to_path_buf();
    let dst_dir = rig.hosts[dst].dir().to_path_buf();
    let before = rig
        .wait_for("the guest counting on the source", async || {
            vm_on(&src_dir).await.filter(|&(r, n)| r && n > 0)
        })
        .await
        .1;
    let holder = if step.on_target() { dst } else { src };
    rig.hosts[holder].set_hold(Some(step.hold()));

    // Start it (202: it runs in the background).
    let n = rig.node();
    let r = rig
        .c
        .http
        .post(rig.c.url(n, "/v1/enclaves/vm/migrate"))
        .json(&json!({"to": to, "force": true}))
        .send()
        .await
        .expect("POST migrate");
    let status = r.status().as_u16();
    let body: Value = r.json().await.unwrap_or(Value::Null);
    assert_eq!(status, 202, "run {run}: {body}\n{}", rig.logs());
    let id = body["id"].as_str().expect("a migration id").to_string();

    // Stopped at the step, deterministically.
    let marker = reached_file(rig.hosts[holder].dir(), step.hold());
    rig.wait_for(&format!("run {run}: the hold at {step:?}"), async || {
        marker.exists().then_some(())
    })
    .await;
    if step == Step::AfterCommit {
        let past = rig.get("/v1/migrations").await.expect("migrations");
        let m = past["past"]
            .as_array()
            .and_then(|a| a.iter().find(|m| m["id"] == id.as_str()).cloned());
        assert_eq!(
            m.as_ref().map(|m| m["phase"].clone()),
            Some(json!("committed")),
            "run {run}: held after the commit: {past}"
        );
    }

    // The fault.
    match victim {
        Victim::Source => {
            rig.hosts[src].kill9();
            rig.hosts[holder].set_hold(None);
            rig.hosts[src].start();
        }
        Victim::Target => {
            rig.hosts[dst].kill9();
            rig.hosts[holder].set_hold(None);
            rig.hosts[dst].start();
        }
        Victim::Leader => {
            let l = rig.c.wait_leader().await;
            rig.c.kill9(l);
            rig.hosts[holder].set_hold(None);
            rig.c.wait_leader().await;
            rig.c.restart(l);
        }
    }

    // Settled: it ended, and the placement is what the log records.
    let ended = rig
        .wait_for(&format!("run {run}: migration {id} to end"), async || {
            let v = rig.get("/v1/migrations").await?;
            if !v["current"].as_array()?.is_empty() {
                return None;
            }
            v["past"]
                .as_array()?
                .iter()
                .find(|m| m["id"] == id.as_str())
                .cloned()
        })
        .await;
    let committed = match ended["phase"].as_str() {
        Some("committed") => true,
        Some("rolled_back") => false,
        other => panic!("run {run}: migration {id} ended {other:?}: {ended}"),
    };
    let (host, want_epoch, here, there) = if committed {
        (to, epoch + 1, &dst_dir, &src_dir)
    } else {
        (from.as_str(), epoch, &src_dir, &dst_dir)
    };
    let placed = rig.placement().await.expect("placement");
    assert_eq!(
        placed,
        (host.to_string(), want_epoch),
        "run {run}: the placement after {ended}"
    );
    let last = rig
        .wait_for(&format!("run {run}: the log's end of {id}"), async || {
            for n in rig.c.running() {
                let Some(entries) = rig.c.log_entries(n).await else {
                    continue;
                };
                let ended = entries.iter().rev().find(|e| {
                    e["subject"] == "vm"
                        && e["detail"]["id"] == id.as_str()
                        && matches!(
                            e["detail"]["op"].as_str(),
                            Some("live_committed" | "live_rolled_back")
                        )
                });
                if let Some(e) = ended {
                    return Some(e.clone());
                }
            }
            None
        })
        .await;
    let (op, logged_epoch) = (
        last["detail"]["op"].as_str().unwrap_or_default(),
        last["detail"]["epoch"].as_u64(),
    );
    assert_eq!(
        (op, logged_epoch),
        (
            if committed {
                "live_committed"
            } else {
                "live_rolled_back"
            },
            Some(want_epoch)
        ),
        "run {run}: the log's last entry of {id}: {last}"
    );

    // Exactly one host runs it, the one placed, and the guest went on from where it was.
    let mut both = false;
    let after = rig
        .wait_for(
            &format!("run {run}: the VM running on {host} only (committed: {committed})"),
            async || {
                let (a, b) = (vm_on(here).await, vm_on(there).await);
                both |= matches!((a, b), (Some((true, _)), Some((true, _))));
                match a {
                    Some((true, n)) if n > before && qemu_gone(there).await => Some(n),
                    _ => None,
                }
            },
        )
        .await;
    assert!(!both, "run {run}: the VM ran on both hosts at once");
    // Moved or resumed, not restarted: the QEMU that runs it was started before the commit
    // (it received the state) or, after a rollback, before the migration (the source's own).
    let pid = qemu_pid(here).unwrap_or_else(|| {
        let ps = std::process::Command::new("ps")
            .args(["-eo", "pid,args"])
            .output()
            .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
            .unwrap_or_default();
        panic!("run {run}: no QEMU process for {}:\n{ps}", here.display())
    });
    let by_ms = if committed {
        ended["ended_ms"].as_i64()
    } else {
        ended["started_ms"].as_i64()
    }
    .expect("the migration's times");
    let (up, started) = (
        uptime_s().expect("uptime"),
        started_s(pid).expect("start time"),
    );
    let by_s = up - (wall_ms() - by_ms) as f64 / 1000.0;
    assert!(
        started <= by_s,
        "run {run}: the VM on {host} is a fresh QEMU (started {:.2} s after the {}), not the \
         one that {}\n{}",
        started - by_s,
        if committed {
            "commit"
        } else {
            "migration began"
        },
        if committed {
            "received its state"
        } else {
            "ran it before"
        },
        rig.logs()
    );
    // The agent there applied it under the recorded epoch; after a commit the source's floor
    // keeps it from ever resuming it under the old one.
    let here_dir = here.clone();
    rig.wait_for(
        &format!("run {run}: {host}'s agent applying epoch {want_epoch}"),
        async || {
            let text = std::fs::read_to_string(here_dir.join("applied-plan.json")).ok()?;
            let p: Value = serde_json::from_str(&text).ok()?;
            (p["enclaves"]["vm"]["placement_epoch"].as_u64() == Some(want_epoch)).then_some(())
        },
    )
    .await;
    if committed {
        let there_dir = there.clone();
        rig.wait_for(
            &format!("run {run}: the source's epoch floor at {want_epoch}"),
            async || {
                let text = std::fs::read_to_string(there_dir.join("placement-epochs.json")).ok()?;
                let f: Value = serde_json::from_str(&text).ok()?;
                (f["vm"].as_u64()? >= want_epoch).then_some(())
            },
        )
        .await;
    }
    eprintln!(
        "run {run}: {step:?} × kill -9 {victim:?}: {} on {host} under epoch {want_epoch}; counter {before} → {after}{}",
        if committed {
            "committed"
        } else {
            "rolled back"
        },
        ended["reason"]
            .as_str()
            .filter(|r| !r.is_empty())
            .map(|r| format!(" ({r})"))
            .unwrap_or_default()
    );
    Ended { committed }
}

static LOCK: std::sync::Mutex<()> = std::sync::Mutex::new(());

async fn case(test: &str, step: Step, victim: Victim) {
    let _turn = LOCK
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    let Some(mut rig) = setup(test).await else {
        return;
    };
    let n = runs();
    let mut committed = 0;
    for run in 1..=n {
        if one_run(&mut rig, step, victim, run).await.committed {
            committed += 1;
        }
    }
    eprintln!(
        "figure: {test}: {n}/{n} runs fenced ({committed} committed, {} rolled back)",
        n - committed
    );
}

macro_rules! cases {
    ($($name:ident: $step:ident, $victim:ident;)*) => {$(
        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        async fn $name() {
            case(stringify!($name), Step::$step, Victim::$victim).await;
        }
    )*};
}

cases! {
    before_target_kill_source: BeforeTarget, Source;
    before_target_kill_target: BeforeTarget, Target;
    before_target_kill_leader: BeforeTarget, Leader;
    transfer_kill_source: Transfer, Source;
    transfer_kill_target: Transfer, Target;
    transfer_kill_leader: Transfer, Leader;
    switchover_kill_source: Switchover, Source;
    switchover_kill_target: Switchover, Target;
    switchover_kill_leader: Switchover, Leader;
    after_commit_kill_source: AfterCommit, Source;
    after_commit_kill_target: AfterCommit, Target;
    after_commit_kill_leader: AfterCommit, Leader;
}
