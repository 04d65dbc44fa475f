//! The memory scenario: resident set size (VmRSS, and its peak VmHWM, from `/proc/PID/status`)
//! of real `tribune controller` processes holding N enclaves, and of a real `tribune agent`
//! running M process enclaves.

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde::Serialize;
use serde_json::json;

use crate::cluster::LocalCluster;

/// Resident memory of one process, in MiB.
#[derive(Debug, Clone, Copy, Serialize, PartialEq)]
pub struct Rss {
    pub pid: u32,
    pub rss_mib: f64,
    /// Peak resident set size over the process's life.
    pub hwm_mib: f64,
}

/// Reads VmRSS and VmHWM of `pid`.
pub fn rss(pid: u32) -> std::io::Result<Rss> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    let field = |name: &str| {
        text.lines()
            .find(|l| l.starts_with(name))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|kib| kib.parse::<f64>().ok())
            .map(|kib| kib / 1024.0)
            .ok_or_else(|| {
                std::io::Error::new(
                    std::io::ErrorKind::InvalidData,
                    format!("no {name} in /proc/{pid}/status"),
                )
            })
    };
    Ok(Rss {
        pid,
        rss_mib: field("VmRSS:")?,
        hwm_mib: field("VmHWM:")?,
    })
}

#[derive(Debug, Serialize)]
pub struct ControllerMemory {
    pub enclaves: usize,
    /// Seconds spent loading them through the API.
    pub load_seconds: f64,
    /// Each controller (id, memory), leader marked.
    pub nodes: Vec<(u64, Rss)>,
    pub leader: u64,
    /// Before loading, for comparison.
    pub idle: Vec<(u64, Rss)>,
}

impl ControllerMemory {
    /// The largest VmRSS over the controllers.
    pub fn max_rss_mib(&self) -> f64 {
        self.nodes
            .iter()
            .map(|(_, r)| r.rss_mib)
            .fold(0.0, f64::max)
    }
    pub fn max_hwm_mib(&self) -> f64 {
        self.nodes
            .iter()
            .map(|(_, r)| r.hwm_mib)
            .fold(0.0, f64::max)
    }
}

/// A plausible enclave record (~400 bytes of JSON: labels, one measurement, resources).
fn enclave(i: usize) -> serde_json::Value {
    json!({
        "id": format!("enc-{i:06}"),
        "tenant": format!("tenant-{}", i % 97),
        "labels": {"tier": if i.is_multiple_of(3) { "batch" } else { "web" }, "app": format!("app-{}", i % 31)},
        "tee": "sim",
        "expected_measurements": [format!("{:096x}", i)],
        "requested": {"cpu_millicores": 250, "memory_bytes": 268_435_456u64, "egress_bits_per_sec": 50_000_000u64},
        "priority": (i % 100) as i32,
    })
}

/// Starts a local 3-controller cluster, puts `enclaves` enclaves through the HTTP API with
/// `clients` concurrent writers, waits until every follower has applied them all, and reads
/// each controller's resident memory.
pub async fn controller(
    binary: &Path,
    enclaves: usize,
    clients: usize,
    progress: impl Fn(&str),
) -> anyhow::Result<ControllerMemory> {
    let http = crate::http_client(clients)?;
    let c = LocalCluster::start_ready(binary, 3, &[], &http).await?;
    let idle = node_rss(&c)?;
    let leader = c.wait_leader(&http, Duration::from_secs(30)).await?;

    let started = Instant::now();
    let endpoints = c.endpoints();
    let next = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let mut tasks = tokio::task::JoinSet::new();
    for w in 0..clients.max(1) {
        let (http, endpoints, next) = (http.clone(), endpoints.clone(), next.clone());
        tasks.spawn(async move {
            loop {
                let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                if i >= enclaves {
                    return Ok::<(), anyhow::Error>(());
                }
                let body = enclave(i);
                // Retry this one enclave until it is acknowledged (bounded).
                let deadline = Instant::now() + Duration::from_secs(30);
                let mut attempt = 0usize;
                loop {
                    let ep = &endpoints[(w + i + attempt) % endpoints.len()];
                    let r = http
                        .put(format!("{ep}/v1/enclaves/enc-{i:06}"))
                        .json(&body)
                        .send()
                        .await;
                    match r {
                        Ok(r) if r.status().is_success() => break,
                        Ok(r) if r.status().is_client_error() => {
                            anyhow::bail!(
                                "enclave {i} refused: {}",
                                r.text().await.unwrap_or_default()
                            )
                        }
                        _ if Instant::now() > deadline => {
                            anyhow::bail!("enclave {i} not acknowledged within 30 s")
                        }
                        _ => {
                            attempt += 1;
                            tokio::time::sleep(Duration::from_millis(20)).await;
                        }
                    }
                }
            }
        });
    }
    let ticker = async {
        loop {
            tokio::time::sleep(Duration::from_secs(2)).await;
            let n = next
                .load(std::sync::atomic::Ordering::Relaxed)
                .min(enclaves);
            progress(&format!("controller: {n}/{enclaves} enclaves written"));
        }
    };
    let joined = async {
        while let Some(r) = tasks.join_next().await {
            r??;
        }
        Ok::<(), anyhow::Error>(())
    };
    tokio::select! {
        r = joined => r?,
        _ = ticker => {}
    }
    let load_seconds = started.elapsed().as_secs_f64();
    progress(&format!(
        "controller: {enclaves} enclaves written in {load_seconds:.1} s; waiting for followers"
    ));
    c.wait_all_healthy(&http, Duration::from_secs(60)).await?;
    // Count them through a linearizable read, so the figure is for a state that holds them all.
    let listed = http
        .get(format!("{}/v1/enclaves", endpoints[0]))
        .send()
        .await?
        .json::<serde_json::Value>()
        .await?;
    let held = listed
        .as_array()
        .or_else(|| listed["enclaves"].as_array())
        .map_or(0, Vec::len);
    anyhow::ensure!(
        held >= enclaves,
        "the cluster lists {held} enclaves, expected {enclaves}"
    );
    let nodes = node_rss(&c)?;
    Ok(ControllerMemory {
        enclaves,
        load_seconds,
        nodes,
        leader,
        idle,
    })
}

fn node_rss(c: &LocalCluster) -> anyhow::Result<Vec<(u64, Rss)>> {
    c.pids()
        .into_iter()
        .map(|(id, pid)| Ok((id, rss(pid)?)))
        .collect()
}

#[derive(Debug, Serialize)]
pub struct AgentMemory {
    pub enclaves: usize,
    pub agent: Rss,
    /// Before the plan was applied.
    pub idle: Rss,
}

/// Why the agent part could not run, or its figures.
pub enum AgentOutcome {
    Measured(AgentMemory),
    Skipped(String),
}

struct Reaped(Option<Child>);

impl Drop for Reaped {
    fn drop(&mut self) {
        if let Some(mut c) = self.0.take() {
            // SIGTERM first: a clean exit removes the enclaves, cgroups and namespaces.
            tribune_testkit::process::stop(&mut c, Duration::from_secs(20));
        }
    }
}

/// Starts `tribune agent run` with the process runtime, applies a plan of `enclaves` `sleep`
/// processes (each under a small CPU cap), waits until all run and a few sampling periods have
/// passed, and reads the agent's resident memory. Needs root (cgroups).
pub async fn agent(
    binary: &Path,
    enclaves: usize,
    progress: impl Fn(&str),
) -> anyhow::Result<AgentOutcome> {
    if !crate::is_root() {
        return Ok(AgentOutcome::Skipped("not root".into()));
    }
    let dir = tempfile::Builder::new()
        .prefix("tribune-bench-agent-")
        .tempdir()?;
    let instance = format!("bench{}", std::process::id());
    let child = Command::new(binary)
        .args(["agent", "run", "--instance", &instance, "--data-dir"])
        .arg(dir.path())
        .arg("--launch-policy")
        .arg(crate::write_launch_policy(dir.path(), &["/bin/sleep"])?)
        // Served, as by default, but not on the default port another agent may hold.
        .args(["--metrics-listen", "127.0.0.1:0"])
        // A uid per enclave, however many the run asks for.
        .arg("--enclave-uids")
        .arg({
            let first = tribune_agent::launch::users::UID_FIRST_DEFAULT as usize;
            format!("{first}-{}", first + enclaves.max(1) - 1)
        })
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()?;
    let pid = child.id();
    let mut guard = Reaped(Some(child));
    let sock = dir.path().join("agent.sock");
    wait_until(
        Duration::from_secs(20),
        "the agent's control socket",
        || {
            if let Some(c) = guard.0.as_mut()
                && !matches!(c.try_wait(), Ok(None))
            {
                return Err(anyhow::anyhow!("the agent exited during start-up"));
            }
            Ok(sock.exists())
        },
    )
    .await?;
    let idle = rss(pid)?;

    let plan_enclaves: serde_json::Map<String, serde_json::Value> = (0..enclaves)
        .map(|i| {
            (
                format!("e{i:03}"),
                json!({"limits": {"cpu_millicores": 10}, "launch": {"process": {"cmd": ["/bin/sleep", "3600"]}}}),
            )
        })
        .collect();
    let plan_path = dir.path().join("plan.json");
    std::fs::write(
        &plan_path,
        json!({"version": 1, "enclaves": plan_enclaves}).to_string(),
    )?;
    progress(&format!("agent: applying a plan of {enclaves} enclaves"));
    let out = Command::new(binary)
        .args(["agent", "apply", "--plan"])
        .arg(&plan_path)
        .arg("--data-dir")
        .arg(dir.path())
        .output()?;
    anyhow::ensure!(
        out.status.success(),
        "agent apply failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    // All running, and sampled: usage appears once the collectors have gone round.
    let status_json = || -> anyhow::Result<serde_json::Value> {
        let out = Command::new(binary)
            .args(["agent", "status", "--output", "json", "--data-dir"])
            .arg(dir.path())
            .output()?;
        anyhow::ensure!(out.status.success(), "agent status failed");
        Ok(serde_json::from_slice(&out.stdout)?)
    };
    wait_until(
        Duration::from_secs(60),
        "all enclaves running and sampled",
        || {
            let v = status_json()?;
            let list = v["enclaves"].as_array().cloned().unwrap_or_default();
            Ok(list.len() == enclaves
                && list.iter().all(|e| {
                    e["status"]["state"] == "running" && !e["usage"]["memory_bytes"].is_null()
                }))
        },
    )
    .await?;
    // A few more sampling rounds (100 ms each) so steady-state buffers are allocated.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let agent = rss(pid)?;
    drop(guard);
    Ok(AgentOutcome::Measured(AgentMemory {
        enclaves,
        agent,
        idle,
    }))
}

async fn wait_until(
    limit: Duration,
    what: &str,
    mut f: impl FnMut() -> anyhow::Result<bool>,
) -> anyhow::Result<()> {
    let start = Instant::now();
    loop {
        if f()? {
            return Ok(());
        }
        if start.elapsed() > limit {
            anyhow::bail!("timed out after {limit:?} waiting for {what}");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}
