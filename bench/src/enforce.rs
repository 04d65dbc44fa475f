//! `enforce-latency`: an over-limit usage report → the CPU cap written into the enclave's
//! cgroup by a real host agent, over many trials.
//!
//! A local 3-controller cluster (`--insecure --allow-sim-evidence`) and one real
//! `tribune agent run --insecure` (process runtime, cgroups: needs root) running one enclave,
//! a shell loop that spins while a flag file exists and otherwise sleeps. The policy caps it at
//! `limit { cpu = 100m }` with `on over_limit { throttle now }`. Each trial: create the flag
//! (busy) → poll the cgroup's CPU quota every millisecond until the cap appears → remove the
//! flag (idle) → resume the enclave as an operator does (`PUT` it with `"state": "running"`;
//! the controllers would otherwise keep the cap for 10 s after usage falls) and wait until the
//! quota is back to unlimited.
//!
//! Latency of a trial = the time the cap was seen in the cgroup − `window_end_ms` of the
//! over-limit report that caused it (from the violation in the replicated log): sampling,
//! the MAC'd report, the stream, verification, the decision, Raft, the plan push and the
//! agent's cgroup write. All clocks are this machine's.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::Context;
use serde::Serialize;
use serde_json::json;

use tribune_controller::state::{LogDetail, OverLimit, ViolationDetail};
use tribune_testkit::agent::{AgentOptions, AgentProcess};

use crate::api::{log_entries, put_json};
use crate::cluster::LocalCluster;
use crate::stats::Summary;

const POLICY: &str = r#"
policy "bench-enforce" {
  match tenant == "bench-enforce"
  limit { cpu = 100m  memory = 256MiB }
  on over_limit { throttle now; suspend after 10m }
}
"#;
/// CFS quota of a 100m cap at the agent's 100 ms period.
const CAP_QUOTA_US: &str = "10000";
const ENCLAVE: &str = "spin";
const HOST: &str = "bench-enforce";

#[derive(Debug, Serialize)]
pub struct EnforceReport {
    pub trials: usize,
    /// Over-limit window end → cap seen in the cgroup.
    pub latency_ms: Summary,
    /// Over-limit window end → violation decided (the controller's `at_ms`).
    pub decided_ms: Summary,
    /// Flag removed → operator resume → cap lifted.
    pub release_ms: Summary,
    pub cgroup_file: String,
}

fn unix_ms_f() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64() * 1000.0)
}

/// The enclave's CPU quota file: cgroup v1 `cpu.cfs_quota_us`, or v2 `cpu.max`.
fn quota_file(instance: &str) -> (PathBuf, PathBuf) {
    (
        PathBuf::from(format!(
            "/sys/fs/cgroup/cpu/tribune/{instance}/{ENCLAVE}/cpu.cfs_quota_us"
        )),
        PathBuf::from(format!(
            "/sys/fs/cgroup/tribune/{instance}/{ENCLAVE}/cpu.max"
        )),
    )
}

/// The quota as written: v1 `-1`/`10000`; v2 `max 100000`/`10000 100000` (first field).
fn read_quota(path: &Path) -> Option<String> {
    let s = std::fs::read_to_string(path).ok()?;
    let first = s.split_whitespace().next()?;
    Some(if first == "max" {
        "-1".into()
    } else {
        first.to_string()
    })
}

/// Polls `path` every millisecond until `want(quota)`; returns when (Unix ms) it was seen.
async fn poll_quota(
    path: &Path,
    limit: Duration,
    want: impl Fn(&str) -> bool + Send + 'static,
) -> anyhow::Result<f64> {
    let path = path.to_path_buf();
    tokio::task::spawn_blocking(move || {
        let deadline = Instant::now() + limit;
        loop {
            if let Some(q) = read_quota(&path)
                && want(&q)
            {
                return Ok(unix_ms_f());
            }
            if Instant::now() > deadline {
                anyhow::bail!(
                    "{}: quota is {:?} after {limit:?}",
                    path.display(),
                    read_quota(&path)
                );
            }
            std::thread::sleep(Duration::from_millis(1));
        }
    })
    .await?
}

pub async fn enforce_latency(
    binary: &Path,
    trials: usize,
    progress: impl Fn(&str),
) -> anyhow::Result<EnforceReport> {
    anyhow::ensure!(
        crate::is_root(),
        "enforce-latency needs root (the host agent writes cgroups)"
    );
    anyhow::ensure!(trials > 0, "at least one trial");
    let dir = tempfile::Builder::new()
        .prefix("tribune-bench-enforce-")
        .tempdir()?;
    // The enclave runs as an unprivileged uid: it must be able to see the flag.
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755))?;
    }
    let flag = dir.path().join("busy");
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .build()?;
    let cluster = LocalCluster::start_ready(binary, 3, &["--allow-sim-evidence"], &http).await?;
    let endpoints = cluster.endpoints();
    put_json(
        &http,
        &endpoints,
        "/v1/policies/bench-enforce",
        &json!({ "source": POLICY }),
    )
    .await?;
    // Spins while the flag exists; otherwise forks `sleep` ten times a second (a few millicores).
    let script = format!(
        "while :; do while [ -e {f} ]; do :; done; sleep 0.1; done",
        f = flag.display()
    );
    let spec = json!({
        "id": ENCLAVE, "tenant": "bench-enforce", "tee": "sim",
        "placement": {"host": HOST, "epoch": 1},
        "launch": {"process": {"cmd": ["/bin/sh", "-c", script]}},
        "state": "running",
    });
    put_json(&http, &endpoints, &format!("/v1/enclaves/{ENCLAVE}"), &spec).await?;
    let log_start = log_entries(&http, &endpoints[0], 0, true).await?.len() as u64;

    let instance = format!("benchenf{}", std::process::id());
    let agent = AgentProcess::start(&AgentOptions {
        binary: binary.to_path_buf(),
        instance: instance.clone(),
        host: HOST.into(),
        data_dir: dir.path().join("agent"),
        launch_policy: crate::write_launch_policy(dir.path(), &["/bin/sh"])?,
        controllers: endpoints
            .iter()
            .map(|e| e.trim_start_matches("http://").to_string())
            .collect(),
        tls_dir: None,
        extra: vec![],
        env: Vec::new(),
        log: dir.path().join("agent.log"),
        netns: None,
    })?;

    // The enclave runs, uncapped, idle.
    let (v1, v2) = quota_file(&instance);
    let deadline = Instant::now() + Duration::from_secs(30);
    let path = loop {
        if read_quota(&v1).is_some() {
            break v1;
        }
        if read_quota(&v2).is_some() {
            break v2;
        }
        if Instant::now() > deadline {
            anyhow::bail!(
                "the agent never created the enclave's cgroup\n{}",
                agent.log_tail()
            );
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    poll_quota(&path, Duration::from_secs(30), |q| q == "-1")
        .await
        .with_context(|| agent.log_tail())?;
    progress(&format!(
        "agent running, enclave uncapped ({}); {trials} trials …",
        path.display()
    ));

    let (mut latency, mut decided, mut release) = (Vec::new(), Vec::new(), Vec::new());
    for trial in 0..trials {
        let busy_at = unix_ms_f();
        std::fs::write(&flag, b"")?;
        let capped_at = poll_quota(&path, Duration::from_secs(30), |q| q == CAP_QUOTA_US)
            .await
            .with_context(|| format!("trial {}: no cap\n{}", trial + 1, agent.log_tail()))?;
        std::fs::remove_file(&flag)?;
        // The controllers keep a throttle for 10 s after usage falls (a starved enclave must
        // not be uncapped), so between trials the bench resumes the enclave as an operator
        // would (`PUT` with `"state": "running"`), and measures that → cap lifted.
        let idle_at = Instant::now();
        // The violation that caused this cap: the first over_limit of the enclave whose
        // window ended after the flag appeared (earlier windows were idle).
        let deadline = Instant::now() + Duration::from_secs(30);
        let (at, end) = loop {
            let page = log_entries(&http, &endpoints[0], log_start, true).await?;
            let found = page.into_iter().find_map(|e| match e.detail {
                LogDetail::Violation(ViolationDetail::OverLimit(OverLimit {
                    window_end_ms: Some(end),
                    ..
                })) if e.subject == ENCLAVE && end as f64 >= busy_at.floor() => {
                    Some((e.at_ms as f64, end as f64))
                }
                _ => None,
            });
            if let Some(v) = found {
                break v;
            }
            anyhow::ensure!(
                Instant::now() < deadline,
                "trial {}: the cap is written but no over_limit violation is logged",
                trial + 1
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        };
        latency.push(capped_at - end);
        decided.push(at - end);
        put_json(&http, &endpoints, &format!("/v1/enclaves/{ENCLAVE}"), &spec).await?;
        poll_quota(&path, Duration::from_secs(30), |q| q == "-1")
            .await
            .with_context(|| {
                format!(
                    "trial {}: cap never lifted\n{}",
                    trial + 1,
                    agent.log_tail()
                )
            })?;
        release.push(idle_at.elapsed().as_secs_f64() * 1000.0);
        progress(&format!(
            "trial {:>3}: cap written {:>6.1} ms after the over-limit window ended (decided at {:>5.1} ms)",
            trial + 1,
            capped_at - end,
            at - end
        ));
    }
    drop(agent);
    Ok(EnforceReport {
        trials,
        latency_ms: Summary::of_ms(&mut latency),
        decided_ms: Summary::of_ms(&mut decided),
        release_ms: Summary::of_ms(&mut release),
        cgroup_file: path.display().to_string(),
    })
}
