//! Benchmark scenarios. Speed is claimed only from here: each scenario reports medians and
//! tails measured in one run, and prints one JSON line for machines.
//!
//! - [`writes`]: concurrent policy writes against a running cluster (writes/s, p50/p99).
//! - [`failover`]: kill -9 the leader of a local 3-process cluster under load; time until the
//!   next acknowledged write.
//! - [`ingest`]: simulated agents stream authenticated usage to a local cluster (reports/s).
//! - [`enforce`]: over-limit report → cgroup cap written by a real host agent (latency).

pub mod cluster;
pub mod enforce;
pub mod ingest;
pub mod proc;
pub mod stats;

use std::time::{Duration, Instant};

use serde::Serialize;
use serde_json::json;

pub use stats::Summary;

#[derive(Debug, Serialize)]
pub struct WritesReport {
    pub clients: usize,
    pub seconds: f64,
    pub writes: u64,
    pub errors: u64,
    pub writes_per_sec: f64,
    pub latency_ms: Summary,
}

/// `clients` concurrent writers, each writing policies of `value_bytes` as fast as acknowledged,
/// round-robin over `endpoints`, for `duration`.
pub async fn writes(
    endpoints: &[String],
    clients: usize,
    duration: Duration,
    value_bytes: usize,
) -> anyhow::Result<WritesReport> {
    anyhow::ensure!(!endpoints.is_empty(), "no endpoints");
    let http = reqwest::Client::builder()
        .pool_max_idle_per_host(clients)
        .timeout(Duration::from_secs(10))
        .build()?;
    let value = "x".repeat(value_bytes);
    let started = Instant::now();
    let stop_at = started + duration;
    let mut tasks = tokio::task::JoinSet::new();
    for c in 0..clients {
        let (http, endpoints, value) = (http.clone(), endpoints.to_vec(), value.clone());
        tasks.spawn(async move {
            let mut lat = Vec::new();
            let mut errors = 0u64;
            let mut i = 0u64;
            while Instant::now() < stop_at {
                let ep = &endpoints[(c + i as usize) % endpoints.len()];
                let name = format!("bench-{c}-{}", i % 64);
                let t = Instant::now();
                let r = http
                    .put(format!("{ep}/v1/policies/{name}"))
                    .json(&json!({"source": format!("policy \"{name}\" {{}} # {value}")}))
                    .send()
                    .await;
                match r {
                    Ok(r) if r.status().is_success() => lat.push(t.elapsed()),
                    _ => errors += 1,
                }
                i += 1;
            }
            (lat, errors)
        });
    }
    let mut all = Vec::new();
    let mut errors = 0;
    while let Some(r) = tasks.join_next().await {
        let (lat, e) = r?;
        all.extend(lat);
        errors += e;
    }
    let seconds = started.elapsed().as_secs_f64();
    Ok(WritesReport {
        clients,
        seconds,
        writes: all.len() as u64,
        errors,
        writes_per_sec: all.len() as f64 / seconds,
        latency_ms: Summary::of_durations(&all),
    })
}

#[derive(Debug, Serialize)]
pub struct FailoverReport {
    pub trials: usize,
    /// kill -9 of the leader → next acknowledged write, per trial.
    pub recovery_ms: Summary,
    pub heartbeat_ms: u64,
    pub election_timeout_ms: u64,
}

/// Runs `trials` leader kills against a fresh local 3-controller cluster under write load.
pub async fn failover(
    binary: &std::path::Path,
    trials: usize,
    progress: impl Fn(usize, Duration),
) -> anyhow::Result<FailoverReport> {
    let mut c = cluster::LocalCluster::start(binary, 3, &[])?;
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(5))
        .build()?;
    let mut samples = Vec::new();
    for trial in 0..trials {
        let leader = c.wait_leader(&http, Duration::from_secs(30)).await?;
        let survivors: Vec<String> = c.endpoints_except(leader);
        // Warm: a write must go through before the kill.
        write_once(&http, &survivors, "warm", Duration::from_secs(30)).await?;
        let killed = Instant::now();
        c.kill9(leader)?;
        write_once(
            &http,
            &survivors,
            &format!("after-kill-{trial}"),
            Duration::from_secs(30),
        )
        .await?;
        let recovery = killed.elapsed();
        progress(trial, recovery);
        samples.push(recovery);
        c.restart(leader)?;
        c.wait_all_healthy(&http, Duration::from_secs(30)).await?;
    }
    Ok(FailoverReport {
        trials,
        recovery_ms: Summary::of_durations(&samples),
        heartbeat_ms: 50,
        election_timeout_ms: 250,
    })
}

/// Writes until one write is acknowledged.
async fn write_once(
    http: &reqwest::Client,
    endpoints: &[String],
    name: &str,
    limit: Duration,
) -> anyhow::Result<()> {
    let start = Instant::now();
    let mut i = 0usize;
    while start.elapsed() < limit {
        let ep = &endpoints[i % endpoints.len()];
        i += 1;
        let r = http
            .put(format!("{ep}/v1/policies/{name}"))
            .json(&json!({"source": format!("policy \"{name}\" {{}}")}))
            .timeout(Duration::from_millis(1500))
            .send()
            .await;
        if let Ok(r) = r
            && r.status().is_success()
        {
            return Ok(());
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    anyhow::bail!("no write acknowledged within {limit:?}")
}
