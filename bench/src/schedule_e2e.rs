//! `tribune bench schedule --e2e`: enclaves placed per second **through Raft** on a local
//! 3-controller cluster: `POST /v1/enclaves` (the receiving controller reads linearizably,
//! plans with `tribune-migration`, proposes `Command::Place`, every replica re-checks it at
//! apply) from concurrent clients round-robin over the controllers, onto host records with
//! simulated capacity. Also counts the re-plans a lost race costs (visible as latency) and
//! checks at the end that no host's guarantees exceed its capacity.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use serde::Serialize;
use serde_json::{Value, json};

use crate::Summary;
use crate::cluster::LocalCluster;

#[derive(Debug, Clone, Copy)]
pub struct E2eConfig {
    /// Host records (each 64 cores, 256 GiB).
    pub hosts: usize,
    /// Enclaves created (each ¼ to 2 cores, 1 GiB per core).
    pub enclaves: usize,
    /// Concurrent clients.
    pub clients: usize,
}

impl Default for E2eConfig {
    fn default() -> Self {
        E2eConfig {
            hosts: 100,
            enclaves: 2000,
            clients: 32,
        }
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct E2eResult {
    pub controllers: u64,
    pub hosts: usize,
    pub enclaves: usize,
    pub clients: usize,
    pub placed: usize,
    /// 409 `unplaceable` answers (the workload asks for less than the capacity: expected 0).
    pub unplaceable: usize,
    pub seconds: f64,
    pub placed_per_sec: f64,
    /// Latency of one create, acknowledged (committed and applied on a majority).
    pub latency_ms: Summary,
    pub hosts_used: usize,
    /// Hosts whose placed guarantees exceed their capacity at the end (must be 0).
    pub over_committed_hosts: usize,
}

const HOST_CORES: u64 = 64;

fn millicores(i: usize) -> u64 {
    // 250, 500, 1000, 2000 in turn: about 0.94 cores on average.
    250 << (i % 4)
}

/// One request; a 503 or a refused connection is retried (for 30 s) only when `idempotent`
/// (a `PUT` or a read): a create answered 503 may have been applied.
async fn send(
    http: &reqwest::Client,
    method: reqwest::Method,
    url: &str,
    body: &Value,
) -> anyhow::Result<(u16, Value)> {
    let idempotent = method != reqwest::Method::POST;
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let r = http.request(method.clone(), url).json(body).send().await;
        match r {
            Ok(r) if idempotent && r.status().as_u16() == 503 && Instant::now() < deadline => {}
            Ok(r) => {
                let s = r.status().as_u16();
                return Ok((s, r.json().await.unwrap_or(Value::Null)));
            }
            Err(e) if idempotent && e.is_connect() && Instant::now() < deadline => {}
            Err(e) => return Err(e.into()),
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Runs the scenario on a fresh local cluster of `binary`.
pub async fn schedule_e2e(binary: &Path, cfg: &E2eConfig) -> anyhow::Result<E2eResult> {
    let http = crate::http_client(cfg.clients)?;
    let cluster = LocalCluster::start_ready(binary, 3, &[], &http).await?;
    let endpoints = cluster.endpoints();
    for h in 0..cfg.hosts {
        let id = format!("h{h:04}");
        let body = json!({"id": id, "address": "", "tee": "sim",
            "capacity": {"cpu_millicores": HOST_CORES * 1000, "memory_bytes": (HOST_CORES * 4) << 30}});
        let url = format!("{}/v1/hosts/{id}", endpoints[h % endpoints.len()]);
        let (s, b) = send(&http, reqwest::Method::PUT, &url, &body).await?;
        if s != 200 {
            bail!("PUT host {id}: {s} {b}");
        }
    }
    let next = Arc::new(AtomicUsize::new(0));
    let start = Instant::now();
    let mut tasks = Vec::new();
    for c in 0..cfg.clients {
        let (http, next, endpoints) = (http.clone(), next.clone(), endpoints.clone());
        let total = cfg.enclaves;
        tasks.push(tokio::spawn(async move {
            let mut out: Vec<(u16, Duration)> = Vec::new();
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= total {
                    return Ok::<_, anyhow::Error>(out);
                }
                let m = millicores(i);
                let body = json!({"id": format!("e{i:06}"), "tenant": format!("t{}", i % 50),
                    "tee": "sim", "priority": (i % 3) as i32 * 10,
                    "requested": {"cpu_millicores": m, "memory_bytes": (m << 30) / 1000}});
                let url = format!("{}/v1/enclaves", endpoints[(c + i) % endpoints.len()]);
                let t = Instant::now();
                let (s, b) = send(&http, reqwest::Method::POST, &url, &body).await?;
                if s != 201 && s != 409 {
                    bail!("POST enclave e{i:06}: {s} {b}");
                }
                out.push((s, t.elapsed()));
            }
        }));
    }
    let mut results = Vec::new();
    for t in tasks {
        results.extend(t.await.context("a client task")??);
    }
    let seconds = start.elapsed().as_secs_f64();
    let placed = results.iter().filter(|(s, _)| *s == 201).count();
    let times: Vec<Duration> = results.iter().map(|(_, d)| *d).collect();
    // Every host's placed guarantees against its capacity, from a linearizable read.
    let (s, all) = send(
        &http,
        reqwest::Method::GET,
        &format!("{}/v1/enclaves", endpoints[0]),
        &Value::Null,
    )
    .await?;
    if s != 200 {
        bail!("GET /v1/enclaves: {s}");
    }
    let mut per_host: BTreeMap<String, (u64, u64)> = BTreeMap::new();
    for e in all.as_array().cloned().unwrap_or_default() {
        if let Some(h) = e["placement"]["host"].as_str() {
            let x = per_host.entry(h.to_string()).or_default();
            x.0 += e["requested"]["cpu_millicores"].as_u64().unwrap_or(0);
            x.1 += e["requested"]["memory_bytes"].as_u64().unwrap_or(0);
        }
    }
    let over = per_host
        .values()
        .filter(|(cpu, mem)| *cpu > HOST_CORES * 1000 || *mem > (HOST_CORES * 4) << 30)
        .count();
    drop(cluster);
    Ok(E2eResult {
        controllers: 3,
        hosts: cfg.hosts,
        enclaves: cfg.enclaves,
        clients: cfg.clients,
        placed,
        unplaceable: results.len() - placed,
        seconds,
        placed_per_sec: placed as f64 / seconds.max(1e-9),
        latency_ms: Summary::of_durations(&times),
        hosts_used: per_host.len(),
        over_committed_hosts: over,
    })
}
