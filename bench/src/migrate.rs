//! `tribune bench migrate` (root, QEMU): live migrations driven by a local 3-controller
//! cluster between two real agents with the QEMU runtime, back and forth: for each trial, the
//! time from `POST /v1/enclaves/{id}/migrate` until the migration is committed (the enclave
//! placed on the target under epoch + 1, its plan naming it: it resumes there), and QEMU's own
//! figures of the same migration (`query-migrate`: total time, downtime) as the floor.

use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use serde::Serialize;
use serde_json::{Value, json};
use tribune_testkit::agent::{AgentOptions, AgentProcess};

use crate::Summary;
use crate::cluster::LocalCluster;

#[derive(Debug, Clone, Copy)]
pub struct MigrateConfig {
    pub trials: usize,
    /// The guest's memory.
    pub memory_mib: u64,
}

impl Default for MigrateConfig {
    fn default() -> Self {
        MigrateConfig {
            trials: 20,
            memory_mib: 128,
        }
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct MigrateResult {
    pub trials: usize,
    pub memory_mib: u64,
    pub committed: usize,
    pub rolled_back: usize,
    /// Request → committed (placed on the target under the new epoch), as the client saw it.
    pub total_ms: Summary,
    /// QEMU's downtime (the guest paused) of each committed migration.
    pub downtime_ms: Summary,
    /// QEMU's own total time of each committed migration.
    pub qemu_total_ms: Summary,
    /// Why each rolled-back trial rolled back.
    pub reasons: Vec<String>,
}

async fn call(
    http: &reqwest::Client,
    method: reqwest::Method,
    url: &str,
    body: Option<&Value>,
) -> anyhow::Result<(u16, Value)> {
    let mut r = http.request(method, url);
    if let Some(b) = body {
        r = r.json(b);
    }
    let r = r.send().await?;
    let s = r.status().as_u16();
    Ok((s, r.json().await.unwrap_or(Value::Null)))
}

/// Waits for `f` to give a value, up to `limit`.
async fn wait<T>(
    what: &str,
    limit: Duration,
    mut f: impl AsyncFnMut() -> Option<T>,
) -> anyhow::Result<T> {
    let start = Instant::now();
    loop {
        if let Some(v) = f().await {
            return Ok(v);
        }
        if start.elapsed() > limit {
            bail!("timed out after {} s waiting for {what}", limit.as_secs());
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// Runs the scenario with `binary` (root and qemu-system-x86_64 needed).
pub async fn migrate(binary: &Path, cfg: &MigrateConfig) -> anyhow::Result<MigrateResult> {
    if !tribune_testkit::is_root() {
        bail!("tribune bench migrate needs root (the agents make cgroups)");
    }
    let qemu = std::process::Command::new("qemu-system-x86_64")
        .arg("--version")
        .output()
        .map(|o| o.status.success())
        .unwrap_or(false);
    if !qemu {
        bail!("tribune bench migrate needs qemu-system-x86_64 (apt-get install qemu-system-x86)");
    }
    let http = crate::http_client(4)?;
    let cluster = LocalCluster::start_ready(binary, 3, &["--allow-sim-evidence"], &http).await?;
    let endpoints = cluster.endpoints();
    let dir = tempfile::tempdir()?;
    let list = tribune_agent::AllowList {
        qemu: Some(Default::default()),
        ..Default::default()
    };
    let policy = dir.path().join("launch-policy.toml");
    list.write(&policy)?;
    let controllers: Vec<String> = endpoints
        .iter()
        .map(|e| e.trim_start_matches("http://").to_string())
        .collect();
    // The controllers run without TLS here, so they do not see where an agent connects from:
    // the host records name the address a target listens on (as an operator's would).
    for h in ["bm1", "bm2"] {
        let body = json!({"id": h, "address": "127.0.0.1", "tee": "sim",
            "capacity": {"cpu_millicores": 64_000, "memory_bytes": 64u64 << 30}});
        let (s, b) = call(
            &http,
            reqwest::Method::PUT,
            &format!("{}/v1/hosts/{h}", endpoints[0]),
            Some(&body),
        )
        .await?;
        if s != 200 {
            bail!("PUT host {h}: {s} {b}");
        }
    }
    let pid = std::process::id();
    let mut agents = Vec::new();
    for h in ["bm1", "bm2"] {
        agents.push(AgentProcess::start(&AgentOptions {
            binary: binary.to_path_buf(),
            instance: format!("bm{pid}-{h}"),
            host: h.into(),
            data_dir: dir.path().join(h),
            launch_policy: policy.clone(),
            controllers: controllers.clone(),
            tls_dir: None,
            extra: vec!["--runtime".into(), "qemu".into()],
            log: dir.path().join(format!("{h}.log")),
        })?);
    }
    let api = &endpoints[0];
    wait(
        "both agents connected",
        Duration::from_secs(30),
        async || {
            let (_, v) = call(
                &http,
                reqwest::Method::GET,
                &format!("{api}/v1/hosts"),
                None,
            )
            .await
            .ok()?;
            let hs = v.as_array()?;
            ["bm1", "bm2"]
                .iter()
                .all(|id| {
                    hs.iter()
                        .any(|h| h["id"] == *id && h["last_heartbeat_ms"].as_i64().unwrap_or(0) > 0)
                })
                .then_some(())
        },
    )
    .await?;
    let body = json!({"id": "vm", "tenant": "bench", "tee": "sim",
        "placement": {"host": "bm1", "epoch": 1}, "state": "running",
        "launch": {"qemu": {"memory_mib": cfg.memory_mib}}});
    let (s, b) = call(
        &http,
        reqwest::Method::PUT,
        &format!("{api}/v1/enclaves/vm"),
        Some(&body),
    )
    .await?;
    if s != 200 && s != 201 {
        bail!("PUT the enclave: {s} {b}");
    }
    // Running on bm1: its migration monitor is there.
    let sock = dir.path().join("bm1/enclaves/vm/migrate.sock");
    wait("the VM on bm1", Duration::from_secs(60), async || {
        sock.exists().then_some(())
    })
    .await?;
    tokio::time::sleep(Duration::from_secs(1)).await;

    let (mut totals, mut downtimes, mut qemu_totals, mut reasons) =
        (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    let mut on = "bm1";
    for trial in 0..cfg.trials {
        let to = if on == "bm1" { "bm2" } else { "bm1" };
        let t0 = Instant::now();
        let (s, m) = call(
            &http,
            reqwest::Method::POST,
            &format!("{api}/v1/enclaves/vm/migrate"),
            Some(&json!({"to": to, "force": true})),
        )
        .await?;
        if s != 202 {
            bail!("trial {trial}: POST migrate: {s} {m}");
        }
        let id = m["id"].as_str().unwrap_or_default().to_string();
        let done = wait(
            "the migration to end",
            Duration::from_secs(200),
            async || {
                let (_, v) = call(
                    &http,
                    reqwest::Method::GET,
                    &format!("{api}/v1/migrations"),
                    None,
                )
                .await
                .ok()?;
                v["past"]
                    .as_array()?
                    .iter()
                    .find(|p| p["id"] == id.as_str())
                    .cloned()
            },
        )
        .await
        .with_context(|| format!("trial {trial}"))?;
        let elapsed = t0.elapsed();
        if done["phase"] == "committed" {
            totals.push(elapsed.as_secs_f64() * 1000.0);
            downtimes.push(done["progress"]["downtime_ms"].as_f64().unwrap_or(0.0));
            qemu_totals.push(done["progress"]["total_time_ms"].as_f64().unwrap_or(0.0));
            on = to;
            // The target resumes it (its plan under the new epoch) before the next trial.
            tokio::time::sleep(Duration::from_millis(500)).await;
        } else {
            reasons.push(done["reason"].as_str().unwrap_or_default().to_string());
        }
    }
    drop(agents);
    drop(cluster);
    Ok(MigrateResult {
        trials: cfg.trials,
        memory_mib: cfg.memory_mib,
        committed: totals.len(),
        rolled_back: reasons.len(),
        total_ms: Summary::of_ms(&mut totals),
        downtime_ms: Summary::of_ms(&mut downtimes),
        qemu_total_ms: Summary::of_ms(&mut qemu_totals),
        reasons,
    })
}
