//! Benchmark scenarios. Speed is claimed only from here: each scenario reports medians and
//! tails measured in one run, and prints one JSON line for machines.
//!
//! - [`writes`]: concurrent policy writes against a running Tribune cluster (writes/s, p50/p99);
//!   [`compare_writes`] runs the same load against Tribune and etcd side by side.
//! - [`failover()`]: kill -9 (or SIGTERM) the leader of a local 3-process cluster under load;
//!   time until the next acknowledged write; [`soak`]: elections under load with no kill.
//! - [`memory`]: resident memory of a controller holding N enclaves and of an agent running M.
//! - [`ingest`]: simulated agents stream authenticated usage to a local cluster (reports/s).
//! - [`enforce`]: over-limit report → cgroup cap written by a real host agent (latency).
//! - [`log`]: the attestation log's Merkle tree at 10 M leaves (proofs, restart, RSS).

mod api;
pub mod cluster;
pub mod enforce;
pub mod etcd;
pub mod failover;
pub mod ingest;
pub mod log;
pub mod memory;
pub mod messages;
pub mod migrate;
pub mod migrate_breach;
pub mod plan;
pub mod proc;
pub mod receipt;
pub mod schedule;
pub mod schedule_e2e;
pub mod stats;

use std::future::Future;
use std::time::{Duration, Instant};

use serde::Serialize;
use serde_json::json;

pub use failover::{FailoverOpts, FailoverReport, SoakReport, Stop, failover, soak};
pub use stats::Summary;

#[derive(Debug, Clone, Serialize)]
pub struct WritesReport {
    pub clients: usize,
    pub seconds: f64,
    pub writes: u64,
    pub errors: u64,
    pub writes_per_sec: f64,
    pub latency_ms: Summary,
    /// CPU time (user + system) the servers' processes spent per acknowledged write, in µs,
    /// summed over the members; None when the servers' pids are not known (remote cluster).
    pub server_cpu_us_per_write: Option<f64>,
}

/// User + system CPU time of `pids` so far, in seconds (`/proc/PID/stat`); `None` if any is
/// gone.
pub fn cpu_seconds(pids: &[u32]) -> Option<f64> {
    pids.iter().map(|p| proc::cpu_seconds(*p)).sum()
}

/// Measures `run` and fills in the servers' CPU per write from `pids`.
async fn with_cpu(
    pids: &[u32],
    run: impl Future<Output = anyhow::Result<WritesReport>>,
) -> anyhow::Result<WritesReport> {
    let before = if pids.is_empty() {
        None
    } else {
        cpu_seconds(pids)
    };
    let mut r = run.await?;
    if let (Some(b), Some(a)) = (before, cpu_seconds(pids))
        && r.writes > 0
    {
        r.server_cpu_us_per_write = Some((a - b) * 1e6 / r.writes as f64);
    }
    Ok(r)
}

/// Runs `clients` concurrent loops of `op(client, i)` until `duration` has passed; `op` returns
/// whether the write was acknowledged. Latency is measured around each call.
pub async fn load<F, Fut>(clients: usize, duration: Duration, op: F) -> WritesReport
where
    F: Fn(usize, u64) -> Fut + Clone + Send + 'static,
    Fut: Future<Output = bool> + Send,
{
    let started = Instant::now();
    let stop_at = started + duration;
    let mut tasks = tokio::task::JoinSet::new();
    for c in 0..clients {
        let op = op.clone();
        tasks.spawn(async move {
            let mut lat = Vec::new();
            let mut errors = 0u64;
            let mut i = 0u64;
            while Instant::now() < stop_at {
                let t = Instant::now();
                if op(c, i).await {
                    lat.push(t.elapsed());
                } else {
                    errors += 1;
                }
                i += 1;
            }
            (lat, errors)
        });
    }
    let mut all = Vec::new();
    let mut errors = 0;
    while let Some(r) = tasks.join_next().await {
        // A panicked client counts as one error; the others' samples still count.
        match r {
            Ok((lat, e)) => {
                all.extend(lat);
                errors += e;
            }
            Err(_) => errors += 1,
        }
    }
    let seconds = started.elapsed().as_secs_f64();
    WritesReport {
        clients,
        seconds,
        writes: all.len() as u64,
        errors,
        writes_per_sec: all.len() as f64 / seconds,
        latency_ms: Summary::of_durations(&all),
        server_cpu_us_per_write: None,
    }
}

/// Writes a launch allow-list for a benchmark's agent to `dir/launch-policy.toml`: `programs`
/// (hashed now) with any arguments. Agents launch nothing without one.
pub fn write_launch_policy(
    dir: &std::path::Path,
    programs: &[&str],
) -> anyhow::Result<std::path::PathBuf> {
    let mut list = tribune_agent::AllowList::default();
    for p in programs {
        list.allow_program(p, None)?;
    }
    let path = dir.join("launch-policy.toml");
    list.write(&path)?;
    Ok(path)
}

use tribune_proto::v1::control_service_client::ControlServiceClient;
/// Whether this process runs as root (the agent and installing etcd need it).
pub use tribune_testkit::is_root;

/// An HTTP client with one pooled connection per concurrent writer.
pub fn http_client(clients: usize) -> anyhow::Result<reqwest::Client> {
    Ok(reqwest::Client::builder()
        .pool_max_idle_per_host(clients.max(1))
        .tcp_nodelay(true)
        .timeout(Duration::from_secs(10))
        .build()?)
}

/// The policy a writer puts: ~`value_bytes` of source, 64 names per client (overwritten).
fn policy_body(c: usize, i: u64, value: &str) -> (String, serde_json::Value) {
    let name = format!("bench-{c}-{}", i % 64);
    let source = format!("policy \"{name}\" {{}} # {value}");
    (name, json!({ "source": source }))
}

/// The leader's endpoint (`http://ADDR`), as the first of `endpoints` that names one says
/// (`GET /v1/cluster`).
pub async fn learn_leader(http: &reqwest::Client, endpoints: &[String]) -> anyhow::Result<String> {
    for ep in endpoints {
        let Ok(r) = http.get(format!("{ep}/v1/cluster")).send().await else {
            continue;
        };
        let Ok(v) = r.json::<serde_json::Value>().await else {
            continue;
        };
        let Some(leader) = v["leader"].as_u64() else {
            continue;
        };
        let address = v["members"].as_array().and_then(|ms| {
            ms.iter()
                .find(|m| m["id"].as_u64() == Some(leader))
                .and_then(|m| m["address"].as_str())
        });
        if let Some(a) = address {
            return Ok(if a.contains("://") {
                a.to_string()
            } else {
                format!("http://{a}")
            });
        }
    }
    anyhow::bail!("no controller of {endpoints:?} names a leader")
}

/// Channels Tribune's writers share, like etcd's writers share one per member.
const WRITER_CHANNELS: usize = 3;

/// `clients` concurrent writers, each writing policies of `value_bytes` as fast as acknowledged,
/// for `duration`, over gRPC (`ControlService.PutPolicy`, as etcd's writers use its gRPC KV
/// API) straight to the leader, which they learn from the controllers first (as `tribune`
/// does) over three HTTP/2 connections.
pub async fn writes(
    endpoints: &[String],
    clients: usize,
    duration: Duration,
    value_bytes: usize,
) -> anyhow::Result<WritesReport> {
    anyhow::ensure!(!endpoints.is_empty(), "no endpoints");
    let leader = learn_leader(&http_client(1)?, endpoints).await?;
    let channels = (0..WRITER_CHANNELS)
        .map(|_| {
            let ch = tonic::transport::Endpoint::from_shared(leader.clone())?
                .tcp_nodelay(true)
                .connect_lazy();
            Ok(ControlServiceClient::new(ch))
        })
        .collect::<anyhow::Result<Vec<_>>>()?;
    let value = "x".repeat(value_bytes);
    Ok(load(clients, duration, move |c, i| {
        let (mut g, value) = (channels[c % channels.len()].clone(), value.clone());
        async move {
            let (name, body) = policy_body(c, i, &value);
            let req = tribune_proto::v1::PutPolicyRequest {
                name,
                source: body["source"].as_str().unwrap_or_default().to_string(),
                ..Default::default()
            };
            tokio::time::timeout(Duration::from_secs(10), g.put_policy(req))
                .await
                .is_ok_and(|r| r.is_ok())
        }
    })
    .await)
}

/// The same load against etcd: `Put` under the same names of the very JSON body Tribune's
/// writers send, round-robin over the members' gRPC endpoints.
pub async fn etcd_writes(
    clients_per_member: &[etcd::KvClient],
    clients: usize,
    duration: Duration,
    value_bytes: usize,
) -> anyhow::Result<WritesReport> {
    anyhow::ensure!(!clients_per_member.is_empty(), "no etcd endpoints");
    let kvs = clients_per_member.to_vec();
    let value = "x".repeat(value_bytes);
    Ok(load(clients, duration, move |c, i| {
        let (kvs, value) = (kvs.clone(), value.clone());
        async move {
            let mut kv = kvs[(c + i as usize) % kvs.len()].clone();
            let (name, body) = policy_body(c, i, &value);
            let req = etcd::pb::PutRequest {
                key: format!("/policies/{name}").into_bytes(),
                value: body.to_string().into_bytes(),
                ..Default::default()
            };
            tokio::time::timeout(Duration::from_secs(10), kv.put(req))
                .await
                .is_ok_and(|r| r.is_ok())
        }
    })
    .await)
}

/// One row of the side-by-side table: one client count, every round.
#[derive(Debug, Clone, Serialize)]
pub struct CompareRow {
    pub clients: usize,
    pub tribune: Vec<WritesReport>,
    pub etcd: Vec<WritesReport>,
    /// Median (min–max over rounds) of Tribune's writes/s.
    pub tribune_writes_per_sec: Summary,
    pub etcd_writes_per_sec: Summary,
    /// Tribune writes/s ÷ etcd writes/s, per round: median and min–max.
    pub throughput_ratio: Summary,
    /// Tribune p99 ÷ etcd p99, per round (below 1: Tribune's tail is shorter).
    pub p99_ratio: Summary,
    /// Median over rounds of each round's p50 and p99.
    pub tribune_p50_ms: f64,
    pub tribune_p99_ms: f64,
    pub etcd_p50_ms: f64,
    pub etcd_p99_ms: f64,
    /// Median over rounds of the servers' CPU µs per write.
    pub tribune_cpu_us_per_write: Option<f64>,
    pub etcd_cpu_us_per_write: Option<f64>,
}

impl CompareRow {
    pub fn new(clients: usize, tribune: Vec<WritesReport>, etcd: Vec<WritesReport>) -> Self {
        let med = |v: &[WritesReport], f: fn(&WritesReport) -> f64| {
            Summary::of_ms(&mut v.iter().map(f).collect::<Vec<_>>())
        };
        let cpu = |v: &[WritesReport]| {
            let mut c: Vec<f64> = v.iter().filter_map(|r| r.server_cpu_us_per_write).collect();
            (!c.is_empty()).then(|| Summary::of_ms(&mut c).p50)
        };
        let ratio = |f: fn(&WritesReport) -> f64| {
            let mut r: Vec<f64> = tribune
                .iter()
                .zip(&etcd)
                .filter(|(_, e)| f(e) > 0.0)
                .map(|(t, e)| f(t) / f(e))
                .collect();
            Summary::of_ms(&mut r)
        };
        Self {
            clients,
            tribune_writes_per_sec: med(&tribune, |r| r.writes_per_sec),
            etcd_writes_per_sec: med(&etcd, |r| r.writes_per_sec),
            throughput_ratio: ratio(|r| r.writes_per_sec),
            p99_ratio: ratio(|r| r.latency_ms.p99),
            tribune_p50_ms: med(&tribune, |r| r.latency_ms.p50).p50,
            tribune_p99_ms: med(&tribune, |r| r.latency_ms.p99).p50,
            etcd_p50_ms: med(&etcd, |r| r.latency_ms.p50).p50,
            etcd_p99_ms: med(&etcd, |r| r.latency_ms.p99).p50,
            tribune_cpu_us_per_write: cpu(&tribune),
            etcd_cpu_us_per_write: cpu(&etcd),
            tribune,
            etcd,
        }
    }
}

/// Runs `rounds` rounds; in each, every client count runs against Tribune and then against etcd
/// (`etcd` = None: Tribune only). Interleaving keeps both under the same machine noise.
#[allow(clippy::too_many_arguments)]
pub async fn compare_writes(
    tribune_endpoints: &[String],
    tribune_pids: &[u32],
    etcd: Option<(&[etcd::KvClient], &[u32])>,
    clients: &[usize],
    rounds: usize,
    duration: Duration,
    value_bytes: usize,
    progress: impl Fn(&str),
) -> anyhow::Result<Vec<CompareRow>> {
    let mut t: Vec<Vec<WritesReport>> = vec![Vec::new(); clients.len()];
    let mut e: Vec<Vec<WritesReport>> = vec![Vec::new(); clients.len()];
    for round in 0..rounds {
        for (k, &n) in clients.iter().enumerate() {
            let r = with_cpu(
                tribune_pids,
                writes(tribune_endpoints, n, duration, value_bytes),
            )
            .await?;
            progress(&format!(
                "round {}/{rounds}: tribune {n:>3} clients: {:>7.0} writes/s, p99 {:.2} ms",
                round + 1,
                r.writes_per_sec,
                r.latency_ms.p99
            ));
            t[k].push(r);
            if let Some((kv, pids)) = etcd {
                let r = with_cpu(pids, etcd_writes(kv, n, duration, value_bytes)).await?;
                progress(&format!(
                    "round {}/{rounds}: etcd    {n:>3} clients: {:>7.0} writes/s, p99 {:.2} ms",
                    round + 1,
                    r.writes_per_sec,
                    r.latency_ms.p99
                ));
                e[k].push(r);
            }
        }
    }
    Ok(clients
        .iter()
        .zip(t.into_iter().zip(e))
        .map(|(&n, (t, e))| CompareRow::new(n, t, e))
        .collect())
}
