//! The run's host agents: real `tribune agent run` processes, each in a network namespace of
//! its own on the run's bridge ([`super::net::Net::add_agents`]), streaming usage for process
//! enclaves with a simulated TEE to every controller (`--insecure`, as the controllers run;
//! the controllers accept simulated evidence, `--allow-sim-evidence`).
//!
//! An agent is started with `nsenter --net=/run/netns/NS`, not `ip netns exec`: the latter
//! mounts a sysfs of the namespace's own over `/sys`, which hides the cgroup hierarchies the
//! agent enforces through. Each agent has an instance name of the run's own
//! (`tch<PID>x<N>a<K>`: its cgroups are `tribune/<instance>/…`), so cleaning up never touches
//! another test's cgroups, and a run that starts sweeps the instances of harnesses whose pid
//! is gone (`tribune agent cleanup --instance …`: their enclaves outlived them).
//!
//! Every child gets `PR_SET_PDEATHSIG(SIGKILL)`; [`Agents`] stops its agents with SIGTERM on
//! drop (the agent stops its enclaves and removes its cgroups), kill -9 after a grace period.

use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use rand::Rng;
use rand_chacha::ChaCha8Rng;
use serde::Serialize;

use super::Error;
use super::enforce::{Reading, Watched};
use super::net::Slot;
use super::nodes::open_log;

/// How many agents a run with agents has.
pub const AGENTS: usize = 2;

/// The policies of the agents' enclaves: a greedy tenant throttled (never suspended within a
/// run), and one suspended 2 s after its throttle, pressing against its cap (an operator never
/// resumes it in a run).
pub const POLICIES: [(&str, &str); 2] = [
    (
        "chaos-greedy",
        r#"policy "chaos-greedy" {
  match tenant == "chaos-greedy"
  limit { cpu = 200m  memory = 256MiB }
  on over_limit { throttle now; suspend after 10m }
}"#,
    ),
    (
        "chaos-suspend",
        r#"policy "chaos-suspend" {
  match tenant == "chaos-suspend"
  limit { cpu = 100m  memory = 256MiB }
  on over_limit { throttle now; suspend after 2s }
}"#,
    ),
];

/// What an enclave of the workload does.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Kind {
    /// Spins from the start (throttled).
    Greedy,
    /// Spins from the start (throttled, then suspended).
    Suspends,
    /// Sleeps; never over its limit.
    Quiet,
    /// Sleeps for a seed-drawn time, then spins: a violation in the middle of the faults.
    Late,
}

#[derive(Debug, Clone)]
pub struct EnclaveSpec {
    pub host: usize,
    pub name: String,
    pub kind: Kind,
    pub tenant: &'static str,
    pub limit_m: u64,
    pub cmd: Vec<String>,
}

/// The host id of agent `k`.
pub fn host_id(k: usize) -> String {
    format!("h{}", k + 1)
}

/// The enclaves on each of `agents` hosts: a greedy, a suspending, a quiet and a late one
/// each, the late one turning greedy after a time drawn from `rng` within `duration`.
pub fn workload(agents: usize, rng: &mut ChaCha8Rng, duration: Duration) -> Vec<EnclaveSpec> {
    let spin = "while :; do :; done";
    let mut out = vec![];
    for host in 0..agents {
        let h = host + 1;
        let late_s = rng.random_range(1..duration.as_secs().max(2));
        for (name, kind, tenant, limit_m, script) in [
            (
                format!("g{h}"),
                Kind::Greedy,
                "chaos-greedy",
                200,
                spin.to_string(),
            ),
            (
                format!("s{h}"),
                Kind::Suspends,
                "chaos-suspend",
                100,
                spin.to_string(),
            ),
            (
                format!("q{h}"),
                Kind::Quiet,
                "chaos-greedy",
                200,
                "while :; do sleep 1; done".to_string(),
            ),
            (
                format!("l{h}"),
                Kind::Late,
                "chaos-greedy",
                200,
                format!("sleep {late_s}; {spin}"),
            ),
        ] {
            out.push(EnclaveSpec {
                host,
                name,
                kind,
                tenant,
                limit_m,
                cmd: vec!["/bin/sh".into(), "-c".into(), script],
            });
        }
    }
    out
}

/// What the enforcement checker follows.
pub fn watched(specs: &[EnclaveSpec]) -> Vec<Watched> {
    specs
        .iter()
        .map(|s| Watched {
            host: s.host,
            name: s.name.clone(),
            limit_m: Some(s.limit_m),
        })
        .collect()
}

/// The enclave's definition as `PUT /v1/enclaves/{id}` takes it.
pub fn enclave_doc(s: &EnclaveSpec) -> serde_json::Value {
    serde_json::json!({
        "id": s.name, "tenant": s.tenant, "tee": "sim",
        "placement": {"host": host_id(s.host), "epoch": 1},
        "launch": {"process": {"cmd": s.cmd}},
    })
}

/// Puts the policies and the enclaves through any controller that takes them (retried until
/// `within` is over).
pub async fn define(
    http: &reqwest::Client,
    urls: &[String],
    specs: &[EnclaveSpec],
    within: Duration,
) -> Result<(), Error> {
    let mut puts: Vec<(String, serde_json::Value)> = POLICIES
        .iter()
        .map(|(name, src)| {
            (
                format!("/v1/policies/{name}"),
                serde_json::json!({ "source": src }),
            )
        })
        .collect();
    puts.extend(
        specs
            .iter()
            .map(|s| (format!("/v1/enclaves/{}", s.name), enclave_doc(s))),
    );
    let deadline = Instant::now() + within;
    for (path, body) in puts {
        let mut i = 0;
        loop {
            let url = format!("{}{path}", urls[i % urls.len()]);
            i += 1;
            let r = http
                .put(&url)
                .json(&body)
                .timeout(Duration::from_secs(5))
                .send()
                .await;
            let last = match r {
                Ok(r) if r.status().is_success() => break,
                Ok(r) => format!("{}: {}", r.status(), r.text().await.unwrap_or_default()),
                Err(e) => e.to_string(),
            };
            if Instant::now() >= deadline {
                return Err(Error::Setup(format!("PUT {path}: {last}")));
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
    Ok(())
}

pub struct AgentProc {
    pub instance: String,
    pub host: String,
    pub slot: Slot,
    pub data_dir: PathBuf,
    pub log: PathBuf,
    pub child: Option<Child>,
}

pub struct Agents {
    binary: PathBuf,
    controllers: String,
    launch_policy: PathBuf,
    env: Vec<(String, String)>,
    pub agents: Vec<AgentProc>,
}

/// How long an agent gets to stop its enclaves after SIGTERM.
const STOP_GRACE: Duration = Duration::from_secs(20);

impl Agents {
    /// Agents 0..n in `slots` (instances `<tag>a<K>`), data and logs under `dir`; not started.
    pub fn new(
        binary: &Path,
        tag: &str,
        slots: &[Slot],
        controllers: &[String],
        dir: &Path,
        env: Vec<(String, String)>,
    ) -> Result<Self, Error> {
        let mut list = tribune_agent::AllowList::default();
        list.allow_program("/bin/sh", None)
            .map_err(|e| Error::Setup(format!("hashing /bin/sh for the launch allow-list: {e}")))?;
        let launch_policy = dir.join("launch-policy.toml");
        list.write(&launch_policy)
            .map_err(|e| Error::Setup(format!("writing {}: {e}", launch_policy.display())))?;
        let agents = slots
            .iter()
            .enumerate()
            .map(|(k, s)| AgentProc {
                instance: format!("{tag}a{k}"),
                host: host_id(k),
                slot: s.clone(),
                data_dir: dir.join(format!("agent-{}", k + 1)),
                log: dir.join(format!("agent-{}.log", k + 1)),
                child: None,
            })
            .collect();
        Ok(Agents {
            binary: binary.to_path_buf(),
            controllers: controllers.join(","),
            launch_policy,
            env,
            agents,
        })
    }

    /// Starts agent `k` (nothing if it runs).
    pub fn start(&mut self, k: usize) -> Result<(), Error> {
        let a = &self.agents[k];
        if a.child.is_some() {
            return Ok(());
        }
        let (out, err) = (open_log(&a.log)?, open_log(&a.log)?);
        let mut cmd = Command::new("nsenter");
        cmd.arg(format!("--net=/run/netns/{}", a.slot.ns))
            .arg("--")
            .arg(&self.binary)
            .args([
                "agent",
                "run",
                "--instance",
                &a.instance,
                "--host-id",
                &a.host,
            ])
            .arg("--data-dir")
            .arg(&a.data_dir)
            .args([
                "--runtime",
                "process",
                "--insecure",
                "--metrics-listen",
                "off",
            ])
            .arg("--launch-policy")
            .arg(&self.launch_policy)
            .args(["--controllers", &self.controllers])
            .envs(self.env.iter().map(|(k, v)| (k, v)))
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err);
        // SAFETY: prctl is async-signal-safe and touches no memory of the parent.
        unsafe {
            cmd.pre_exec(|| {
                libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
                Ok(())
            });
        }
        let child = cmd
            .spawn()
            .map_err(|e| Error::Setup(format!("starting agent {}: {e}", a.host)))?;
        self.agents[k].child = Some(child);
        Ok(())
    }

    /// kill -9 and reap: its enclaves outlive it, under what the kernel enforces.
    pub fn kill9(&mut self, k: usize) {
        if let Some(mut c) = self.agents[k].child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    pub fn alive(&self, k: usize) -> bool {
        self.agents[k].child.is_some()
    }

    /// Agents that exited by themselves since the last look: (host, how).
    pub fn reap_exited(&mut self) -> Vec<(String, String)> {
        let mut gone = vec![];
        for a in &mut self.agents {
            if let Some(c) = &mut a.child
                && let Ok(Some(status)) = c.try_wait()
            {
                gone.push((a.host.clone(), status.to_string()));
                a.child = None;
            }
        }
        gone
    }

    /// SIGTERM to every agent, then wait for each (kill -9 after the grace period); a killed
    /// agent's enclaves are removed with `tribune agent cleanup`.
    pub fn stop_all(&mut self) {
        for a in &self.agents {
            if let Some(c) = &a.child {
                // SAFETY: kill(2) on our own, not yet reaped, child.
                unsafe {
                    libc::kill(c.id() as libc::pid_t, libc::SIGTERM);
                }
            }
        }
        let deadline = Instant::now() + STOP_GRACE;
        for k in 0..self.agents.len() {
            let Some(mut c) = self.agents[k].child.take() else {
                continue;
            };
            let clean = loop {
                match c.try_wait() {
                    Ok(Some(s)) => break s.success(),
                    Ok(None) if Instant::now() < deadline => {
                        std::thread::sleep(Duration::from_millis(50))
                    }
                    _ => {
                        let _ = c.kill();
                        let _ = c.wait();
                        break false;
                    }
                }
            };
            if !clean {
                cleanup(&self.binary, &self.agents[k].instance);
            }
        }
    }

    /// The last `lines` lines of every agent's log.
    pub fn logs(&self, lines: usize) -> String {
        let mut s = String::new();
        for a in &self.agents {
            let text = std::fs::read_to_string(&a.log).unwrap_or_default();
            let all: Vec<&str> = text.lines().collect();
            s.push_str(&format!(
                "--- agent {} ({}) ---\n{}\n",
                a.host,
                a.slot.ip,
                all[all.len().saturating_sub(lines)..].join("\n")
            ));
        }
        s
    }
}

impl Drop for Agents {
    fn drop(&mut self) {
        self.stop_all();
    }
}

/// `tribune agent cleanup --instance NAME`: its enclaves' processes and cgroups.
fn cleanup(binary: &Path, instance: &str) {
    let _ = Command::new(binary)
        .args(["agent", "cleanup", "--instance", instance])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status();
}

/// Where the agents' instances are: cgroup v2's unified hierarchy, or v1's `cpu` one.
fn instances_dir() -> PathBuf {
    if v2() {
        PathBuf::from("/sys/fs/cgroup/tribune")
    } else {
        PathBuf::from("/sys/fs/cgroup/cpu/tribune")
    }
}

fn v2() -> bool {
    Path::new("/sys/fs/cgroup/cgroup.controllers").exists()
}

/// Cleans up the agent instances of harnesses whose pid is gone (their agents died with them,
/// their enclaves did not); how many.
pub fn sweep_stale(binary: &Path) -> usize {
    let Ok(rd) = std::fs::read_dir(instances_dir()) else {
        return 0;
    };
    let mut n = 0;
    for e in rd.flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        if super::net::owner(&name).is_some_and(|p| !super::net::alive(p)) {
            cleanup(binary, &name);
            n += 1;
        }
    }
    n
}

fn read(path: &Path) -> Option<String> {
    std::fs::read_to_string(path)
        .ok()
        .map(|s| s.trim().to_string())
}

/// What the kernel enforces on `enclave` of agent instance `instance`, and its CPU time;
/// `None` when its cgroup is not there.
pub fn reading(instance: &str, enclave: &str) -> Option<Reading> {
    let group = format!("tribune/{instance}/{enclave}");
    let root = Path::new("/sys/fs/cgroup");
    if v2() {
        let dir = root.join(&group);
        let max = read(&dir.join("cpu.max"))?;
        let mut f = max.split_whitespace();
        let (q, p) = (f.next()?, f.next()?.parse::<u64>().ok()?);
        let cap_m = if q == "max" {
            None
        } else {
            Some(q.parse::<u64>().ok()? * 1000 / p.max(1))
        };
        let usage_us: u64 = read(&dir.join("cpu.stat"))?
            .lines()
            .find_map(|l| l.strip_prefix("usage_usec "))?
            .trim()
            .parse()
            .ok()?;
        let frozen = read(&dir.join("cgroup.events"))?
            .lines()
            .any(|l| l.trim() == "frozen 1");
        Some(Reading {
            cap_m,
            frozen,
            usage_ns: usage_us * 1000,
        })
    } else {
        let cpu = root.join("cpu").join(&group);
        let q: i64 = read(&cpu.join("cpu.cfs_quota_us"))?.parse().ok()?;
        let p: u64 = read(&cpu.join("cpu.cfs_period_us"))?.parse().ok()?;
        let cap_m = (q >= 0).then(|| q as u64 * 1000 / p.max(1));
        let usage_ns = read(&root.join("cpuacct").join(&group).join("cpuacct.usage"))?
            .parse()
            .ok()?;
        let frozen = read(&root.join("freezer").join(&group).join("freezer.state"))? == "FROZEN";
        Some(Reading {
            cap_m,
            frozen,
            usage_ns,
        })
    }
}
