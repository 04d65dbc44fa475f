//! `ingest`: simulated host agents stream authenticated usage to a local 3-controller cluster
//! (DESIGN.md §4): reports/s verified and evaluated, report-to-decision latency, controller CPU.
//!
//! Each simulated host is one `Attest` stream (its own TCP connection) from this process to one
//! of three `tribune controller` processes (`--insecure --allow-sim-evidence`). It says Hello,
//! takes the Challenge, sends sim evidence binding each enclave's keys to the exchange, and then
//! sends one `UsageBatch` per interval (a MAC'd 78-byte report + 32-byte MAC and a host view per
//! enclave) and every `checkpoint_every` intervals a `CheckpointBatch` (one ed25519-signed
//! checkpoint per enclave).
//!
//! The authenticated stream is **sealed ahead of time**: right after the Challenge (the MACs
//! depend on the per-stream session key) every report of the run is built, MAC'd, chained and
//! checkpoint-signed, with windows on the schedule it will be sent on; the run then only sends
//! the prepared messages at their times. The generator's own cost (HMAC, SHA-256 chain,
//! ed25519 signatures) therefore stays out of the 2 cores the controllers measure on; the seal
//! rate is reported beside the result.
//!
//! Counting: a report counts as *verified and evaluated* once a usage digest covering it is
//! committed in the replicated log: its MAC verified, its seq was new and fresh, it went
//! through the policy decision of its host, the signed checkpoint covering it verified, and
//! the digest went through Raft. Rate = reports in digests committed from 2 s after the start
//! to the last send, per second. (`UsageAcks` drive the progress line only: a stream held by a
//! follower can be acknowledged one flush short, see the README.)
//!
//! Latency: every `over_limit_every`-th enclave goes over its CPU limit once, at a time spread
//! over the run. *Decided* = the violation's `at_ms` (stamped when the controller decided) −
//! the `window_end_ms` of the over-limit report it carries; *planned* = when this simulated
//! agent received the plan carrying the cap − that window end (decision committed through Raft
//! and pushed down the stream). The window ends when its report is sent.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::Context;
use serde::Serialize;
use serde_json::json;
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tribune_attest::session::EnclaveKeys;
use tribune_attest::sim::SimEvidence;
use tribune_attest::usage::{Checkpoint, EnclaveId, Producer, REPORT_LEN, UsageSample};
use tribune_proto::v1 as pb;
use tribune_proto::v1::attestation_service_client::AttestationServiceClient;

use crate::cluster::LocalCluster;
use crate::proc::cpu_seconds;
use crate::stats::Summary;

/// Limit 500m; reports say 100m, the injected over-limit ones 2000m.
const POLICY: &str = r#"
policy "bench-ingest" {
  match tenant == "bench"
  limit { cpu = 500m  memory = 1GiB }
  on over_limit { throttle now; suspend after 10m }
}
"#;
const CPU_NORMAL_MILLICORES: u64 = 100;
const CPU_OVER_MILLICORES: u64 = 2000;

#[derive(Debug, Clone)]
pub struct IngestConfig {
    pub hosts: usize,
    pub enclaves_per_host: usize,
    /// Seconds of streaming.
    pub seconds: u64,
    /// Report interval per enclave.
    pub interval_ms: u64,
    /// A signed checkpoint every this many reports (10 at 100 ms: one per second).
    pub checkpoint_every: u32,
    /// Every this many-th enclave goes over its limit once during the run.
    pub over_limit_every: usize,
}

impl Default for IngestConfig {
    fn default() -> Self {
        IngestConfig {
            hosts: 100,
            enclaves_per_host: 100,
            seconds: 10,
            interval_ms: 100,
            checkpoint_every: 10,
            over_limit_every: 50,
        }
    }
}

#[derive(Debug, Serialize)]
pub struct ControllerCpu {
    pub id: u64,
    pub cpu_seconds: f64,
    /// CPU seconds ÷ wall seconds of the streaming phase.
    pub cores: f64,
}

#[derive(Debug, Serialize)]
pub struct IngestReport {
    pub hosts: usize,
    pub enclaves: usize,
    pub interval_ms: u64,
    pub checkpoint_every: u32,
    /// The stream was sealed ahead of time (see the module docs).
    pub pre_sealed: bool,
    /// Reports on the schedule: enclaves × 1000 / interval.
    pub offered_per_sec: f64,
    pub sent_reports: u64,
    /// First send → last send.
    pub send_seconds: f64,
    pub sent_per_sec: f64,
    /// Reports in committed usage digests (MAC, seq, freshness, decision, checkpoint
    /// signature, digest committed through Raft).
    pub verified_reports: u64,
    /// Schedule start → the last committed digest.
    pub verified_seconds: f64,
    /// Verified reports per second in the steady state (digests committed from 2 s after the
    /// start to the last send); when the run is too short for that, `verified_overall_per_sec`.
    pub verified_per_sec: f64,
    pub verified_steady: bool,
    /// All verified reports ÷ `verified_seconds`.
    pub verified_overall_per_sec: f64,
    /// Last send → the last committed digest.
    pub ack_trail_seconds: f64,
    /// verified_per_sec ÷ offered_per_sec.
    pub verified_ratio: f64,
    /// How late each batch left this process against its schedule (backpressure shows here).
    pub send_lag_ms: Summary,
    pub over_limit_injected: usize,
    /// Window end of the first over-limit report → violation decided (controller's clock).
    pub decided_ms: Summary,
    /// Window end → the plan with the cap received by the simulated agent.
    pub planned_ms: Summary,
    pub controllers: Vec<ControllerCpu>,
    pub controllers_cores: f64,
    /// This process's CPU while streaming (sending only: the stream was sealed before).
    pub generator_cores: f64,
    /// Sealing ahead of time: reports (MAC + chain) and checkpoints (ed25519) per second.
    pub seal_seconds: f64,
    pub seal_reports_per_sec: f64,
}

fn unix_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

fn unix_ns() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64)
}

fn agent_msg(body: pb::agent_message::Body) -> pb::AgentMessage {
    pb::AgentMessage { body: Some(body) }
}

/// PUT with retries while the cluster elects or is busy (503).
pub(crate) async fn put_json(
    http: &reqwest::Client,
    endpoints: &[String],
    path: &str,
    body: &serde_json::Value,
) -> anyhow::Result<()> {
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut i = 0usize;
    loop {
        let ep = &endpoints[i % endpoints.len()];
        i += 1;
        let r = http.put(format!("{ep}{path}")).json(body).send().await;
        match r {
            Ok(r) if r.status().is_success() => return Ok(()),
            Ok(r) if r.status().as_u16() != 503 => {
                let status = r.status();
                anyhow::bail!(
                    "PUT {path}: {status} {}",
                    r.text().await.unwrap_or_default()
                );
            }
            _ if Instant::now() > deadline => anyhow::bail!("PUT {path}: no success within 30 s"),
            _ => tokio::time::sleep(Duration::from_millis(20)).await,
        }
    }
}

/// Every log entry of the cluster (stale reads of one controller), from `from` on.
pub(crate) async fn log_entries(
    http: &reqwest::Client,
    endpoint: &str,
    mut from: u64,
    stale: bool,
) -> anyhow::Result<Vec<serde_json::Value>> {
    let mut all = Vec::new();
    let mut busy = 0;
    loop {
        let r = http
            .get(format!(
                "{endpoint}/v1/log/entries?start={from}&end={}&stale={stale}",
                from + 999
            ))
            .send()
            .await?;
        // 503: catching up or electing; try again for a while.
        if r.status().as_u16() == 503 && busy < 20 {
            busy += 1;
            tokio::time::sleep(Duration::from_millis(100)).await;
            continue;
        }
        let mut v: serde_json::Value = r.error_for_status()?.json().await?;
        let serde_json::Value::Array(page) = v["entries"].take() else {
            anyhow::bail!("log entries: unexpected answer");
        };
        all.extend(page);
        match v["next"].as_u64() {
            Some(n) if n > from => from = n,
            _ => return Ok(all),
        }
    }
}

/// One simulated host: its stream, the challenge it got, its enclaves.
struct Host {
    index: usize,
    tx: mpsc::Sender<pb::AgentMessage>,
    rx: tonic::Streaming<pb::ControllerMessage>,
    nonce: [u8; 32],
    eph: [u8; 32],
    enclaves: Vec<(String, EnclaveKeys)>,
}

fn host_name(h: usize) -> String {
    format!("bh{h:04}")
}

fn enclave_name(h: usize, e: usize) -> String {
    format!("bh{h:04}-e{e:04}")
}

async fn connect(endpoint: &str, index: usize, per_host: usize) -> anyhow::Result<Host> {
    let mut client = AttestationServiceClient::connect(endpoint.to_string())
        .await
        .with_context(|| format!("connecting to {endpoint}"))?;
    let (tx, rx) = mpsc::channel(64);
    tx.send(agent_msg(pb::agent_message::Body::Hello(pb::Hello {
        host_id: host_name(index),
        applied_plan_version: 0,
        enclave_ids: vec![],
        can_enforce: true,
        enforce_problem: String::new(),
    })))
    .await
    .map_err(|_| anyhow::anyhow!("stream closed"))?;
    let mut rx = client.attest(ReceiverStream::new(rx)).await?.into_inner();
    let (nonce, eph) = loop {
        let m = rx
            .message()
            .await?
            .ok_or_else(|| anyhow::anyhow!("stream ended before the challenge"))?;
        if let Some(pb::controller_message::Body::Challenge(c)) = m.body {
            let nonce: [u8; 32] = c
                .nonce
                .try_into()
                .map_err(|_| anyhow::anyhow!("nonce is not 32 bytes"))?;
            let eph: [u8; 32] = c
                .controller_x25519
                .try_into()
                .map_err(|_| anyhow::anyhow!("controller key is not 32 bytes"))?;
            break (nonce, eph);
        }
    };
    let enclaves: Vec<(String, EnclaveKeys)> = (0..per_host)
        .map(|e| (enclave_name(index, e), EnclaveKeys::generate()))
        .collect();
    let evidence = enclaves
        .iter()
        .map(|(id, keys)| pb::Evidence {
            enclave_id: id.clone(),
            tee: "sim".into(),
            report: SimEvidence::create([7; 48], keys.report_data(&nonce), 0).encode(),
            certs: vec![],
            enclave_ed25519: keys.ed25519_public().to_vec(),
            enclave_x25519: keys.x25519_public().to_vec(),
            rekey_signature: vec![],
        })
        .collect();
    tx.send(agent_msg(pb::agent_message::Body::Evidence(
        pb::EvidenceBatch { evidence },
    )))
    .await
    .map_err(|_| anyhow::anyhow!("stream closed"))?;
    Ok(Host {
        index,
        tx,
        rx,
        nonce,
        eph,
        enclaves,
    })
}

/// The prepared stream of one host: per tick (1-based) a usage batch and maybe checkpoints.
struct Sealed {
    ticks: Vec<(pb::AgentMessage, Option<pb::AgentMessage>)>,
}

/// Over-limit injections: global enclave index → the tick whose report first goes over.
fn injections(cfg: &IngestConfig, ticks: u64) -> HashMap<usize, u64> {
    let total = cfg.hosts * cfg.enclaves_per_host;
    let every = cfg.over_limit_every.max(1);
    let chosen: Vec<usize> = (0..total).filter(|i| i % every == every / 2).collect();
    // Spread over the run, leaving the first second (allocations) and the last second out.
    let (lo, hi) = if ticks > 20 {
        (11, ticks - 10)
    } else {
        (1, ticks.max(1))
    };
    let span = hi - lo + 1;
    chosen
        .iter()
        .enumerate()
        .map(|(j, &i)| (i, lo + (j as u64 * span) / chosen.len().max(1) as u64))
        .collect()
}

fn seal(
    cfg: &IngestConfig,
    host: usize,
    enclaves: &[(String, EnclaveKeys)],
    (nonce, eph): (&[u8; 32], &[u8; 32]),
    (t0_ns, ticks): (u64, u64),
    injected: &HashMap<usize, u64>,
) -> anyhow::Result<Sealed> {
    let len = cfg.interval_ms * 1_000_000;
    let mut producers = enclaves
        .iter()
        .map(|(id, keys)| {
            Producer::new(
                EnclaveId::from_name(id),
                keys.clone(),
                nonce,
                eph,
                cfg.checkpoint_every,
            )
            .map_err(|e| anyhow::anyhow!("producer for {id}: {e}"))
        })
        .collect::<anyhow::Result<Vec<_>>>()?;
    let mut out = Vec::with_capacity(ticks as usize);
    for k in 1..=ticks {
        let end = t0_ns + k * len;
        let mut reports = Vec::with_capacity(enclaves.len());
        let mut checkpoints = Vec::new();
        for (e, ((id, _), p)) in enclaves.iter().zip(producers.iter_mut()).enumerate() {
            let global = host * cfg.enclaves_per_host + e;
            let over = injected.get(&global).is_some_and(|&at| k >= at);
            let millicores = if over {
                CPU_OVER_MILLICORES
            } else {
                CPU_NORMAL_MILLICORES
            };
            let emitted = p.emit(&UsageSample {
                window_start_ns: end - len,
                window_len_ns: len,
                cpu_ns: millicores * len / 1000,
                mem_bytes: 64 << 20,
                ..UsageSample::default()
            });
            let mut cp = emitted.checkpoint;
            if k == ticks && cp.is_none() {
                cp = p.checkpoint_now();
            }
            reports.push(pb::UsageReport {
                enclave_id: id.clone(),
                report: emitted.report[..REPORT_LEN].to_vec(),
                mac: emitted.report[REPORT_LEN..].to_vec(),
                host_view: emitted.report[..REPORT_LEN].to_vec(),
            });
            if let Some(cp) = cp {
                checkpoints.push(checkpoint_msg(id, &cp));
            }
        }
        let usage = agent_msg(pb::agent_message::Body::Usage(pb::UsageBatch { reports }));
        let cps = (!checkpoints.is_empty()).then(|| {
            agent_msg(pb::agent_message::Body::Checkpoints(pb::CheckpointBatch {
                checkpoints,
            }))
        });
        out.push((usage, cps));
    }
    Ok(Sealed { ticks: out })
}

fn checkpoint_msg(id: &str, cp: &Checkpoint) -> pb::Checkpoint {
    pb::Checkpoint {
        enclave_id: id.to_string(),
        first_seq: cp.first_seq,
        last_seq: cp.last_seq,
        chain_head: cp.head.to_vec(),
        signature: cp.signature.to_vec(),
        encoded: cp.encode().to_vec(),
    }
}

/// What the receiving side of all streams saw.
#[derive(Default)]
struct Seen {
    acked: AtomicU64,
    /// Enclave → (window end ms of its first over-limit report, ms the capped plan arrived).
    planned: Mutex<HashMap<String, i64>>,
    /// Why controllers ended streams.
    goodbyes: Mutex<Vec<String>>,
}

impl Seen {
    fn goodbyes(&self) -> String {
        self.goodbyes
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .join("; ")
    }
}

/// Reports covered by the committed usage digests among `entries`.
fn digested(entries: &[serde_json::Value]) -> u64 {
    entries
        .iter()
        .filter(|e| e["kind"] == "usage_digest")
        .map(|e| {
            match (
                e["detail"]["first_seq"].as_u64(),
                e["detail"]["last_seq"].as_u64(),
            ) {
                (Some(f), Some(l)) if l >= f => l - f + 1,
                _ => 0,
            }
        })
        .sum()
}

/// Runs the scenario against a fresh local cluster of `binary`.
pub async fn ingest(
    binary: &std::path::Path,
    cfg: &IngestConfig,
    progress: impl Fn(&str),
) -> anyhow::Result<IngestReport> {
    anyhow::ensure!(
        cfg.hosts > 0 && cfg.enclaves_per_host > 0 && cfg.seconds > 0 && cfg.interval_ms > 0,
        "hosts, enclaves per host, seconds and interval must be positive"
    );
    anyhow::ensure!(
        cfg.enclaves_per_host <= 4096,
        "at most 4096 enclaves per host (one stream)"
    );
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(30))
        .pool_max_idle_per_host(64)
        .build()?;
    let cluster = LocalCluster::start_ready(binary, 3, &["--allow-sim-evidence"], &http).await?;
    let endpoints = cluster.endpoints();
    put_json(
        &http,
        &endpoints,
        "/v1/policies/bench-ingest",
        &json!({ "source": POLICY }),
    )
    .await?;

    // Enclaves, 32 writers at a time.
    let total = cfg.hosts * cfg.enclaves_per_host;
    progress(&format!(
        "creating {total} enclaves on {} hosts …",
        cfg.hosts
    ));
    let created = Instant::now();
    let next = Arc::new(AtomicU64::new(0));
    let mut writers = tokio::task::JoinSet::new();
    for _ in 0..32 {
        let (http, endpoints, next, cfg) =
            (http.clone(), endpoints.clone(), next.clone(), cfg.clone());
        writers.spawn(async move {
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed) as usize;
                if i >= total {
                    return anyhow::Ok(());
                }
                let (h, e) = (i / cfg.enclaves_per_host, i % cfg.enclaves_per_host);
                let id = enclave_name(h, e);
                let body = json!({
                    "id": id, "tenant": "bench", "tee": "sim",
                    "placement": {"host": host_name(h), "epoch": 1},
                });
                let eps = [endpoints[i % endpoints.len()].clone()];
                put_json(&http, &eps, &format!("/v1/enclaves/{id}"), &body).await?;
            }
        });
    }
    while let Some(r) = writers.join_next().await {
        r??;
    }
    progress(&format!(
        "{total} enclaves created in {:.1} s; connecting {} simulated agents …",
        created.elapsed().as_secs_f64(),
        cfg.hosts
    ));

    // Streams and evidence, spread over the three controllers.
    let log_start = log_entries(&http, &endpoints[0], 0, true).await?.len() as u64;
    let mut connecting = tokio::task::JoinSet::new();
    for h in 0..cfg.hosts {
        let ep = endpoints[h % endpoints.len()].clone();
        let per_host = cfg.enclaves_per_host;
        connecting.spawn(async move { connect(&ep, h, per_host).await });
    }
    let mut hosts = Vec::new();
    while let Some(r) = connecting.join_next().await {
        hosts.push(r??);
    }
    hosts.sort_by_key(|h| h.index);
    // Every enclave trusted (verdicts committed) before the clock starts.
    let deadline = Instant::now() + Duration::from_secs(120);
    let mut cursor = log_start;
    let mut trusted = 0usize;
    while trusted < total {
        anyhow::ensure!(
            Instant::now() < deadline,
            "only {trusted} of {total} enclaves trusted within 120 s"
        );
        let page = log_entries(&http, &endpoints[0], cursor, true).await?;
        cursor += page.len() as u64;
        trusted += page
            .iter()
            .filter(|e| e["kind"] == "verdict" && e["detail"]["trusted"] == true)
            .count();
        if trusted < total {
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    // Seal the whole run ahead of time. Calibrate first, so the schedule starts after sealing.
    let ticks = cfg.seconds * 1000 / cfg.interval_ms;
    let injected = Arc::new(injections(cfg, ticks));
    let calib = Instant::now();
    {
        let keys = EnclaveKeys::generate();
        let mut p = Producer::new(EnclaveId::from_name("calib"), keys, &[1; 32], &[9; 32], 10)
            .map_err(|e| anyhow::anyhow!("producer: {e}"))?;
        for _ in 0..2000 {
            let _ = p.emit(&UsageSample::default());
        }
    }
    let per_report = calib.elapsed().as_secs_f64() / 2000.0;
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get()) as f64;
    let estimate = per_report * (total as u64 * ticks) as f64 / cores;
    let lead = Duration::from_secs_f64(estimate * 2.0 + 1.0);
    let t0_ns = unix_ns() + lead.as_nanos() as u64;
    let t0 = Instant::now() + lead;
    progress(&format!(
        "all {total} enclaves trusted; sealing {} reports ahead of time (estimate {:.1} s) …",
        total as u64 * ticks,
        estimate
    ));
    let seal_started = Instant::now();
    let mut sealing = tokio::task::JoinSet::new();
    let mut streams = Vec::new();
    for h in hosts {
        let Host {
            index,
            tx,
            rx,
            nonce,
            eph,
            enclaves,
        } = h;
        let (cfg2, injected2) = (cfg.clone(), injected.clone());
        sealing.spawn_blocking(move || {
            let sealed = seal(
                &cfg2,
                index,
                &enclaves,
                (&nonce, &eph),
                (t0_ns, ticks),
                &injected2,
            );
            sealed.map(|s| (index, s))
        });
        streams.push((index, tx, rx));
    }
    let mut sealed: HashMap<usize, Sealed> = HashMap::new();
    while let Some(r) = sealing.join_next().await {
        let (i, s) = r??;
        sealed.insert(i, s);
    }
    let seal_seconds = seal_started.elapsed().as_secs_f64();
    if Instant::now() > t0 {
        progress("sealing took longer than planned: the schedule starts late");
    }

    // Injected enclave → window end (ms) of its first over-limit report.
    let inj_end: Arc<HashMap<String, i64>> = Arc::new(
        injected
            .iter()
            .map(|(&i, &k)| {
                let (h, e) = (i / cfg.enclaves_per_host, i % cfg.enclaves_per_host);
                let end_ms = ((t0_ns + k * cfg.interval_ms * 1_000_000) / 1_000_000) as i64;
                (enclave_name(h, e), end_ms)
            })
            .collect(),
    );

    // Receivers: acks and plans.
    let seen = Arc::new(Seen::default());
    let mut receivers = tokio::task::JoinSet::new();
    let mut senders = tokio::task::JoinSet::new();
    let cpu_before: Vec<(u64, f64)> = cluster
        .pids()
        .into_iter()
        .map(|(id, pid)| (id, cpu_seconds(pid).unwrap_or(0.0)))
        .collect();
    let self_before = cpu_seconds(std::process::id()).unwrap_or(0.0);
    let sent = Arc::new(AtomicU64::new(0));
    let interval = Duration::from_millis(cfg.interval_ms);
    for (index, tx, mut rx) in streams {
        let (seen_rx, inj_end) = (seen.clone(), inj_end.clone());
        receivers.spawn(async move {
            let seen = seen_rx;
            let mut confirmed: HashMap<String, u64> = HashMap::new();
            while let Ok(Some(m)) = rx.message().await {
                match m.body {
                    Some(pb::controller_message::Body::UsageAcks(a)) => {
                        let mut delta = 0;
                        for ack in a.acks {
                            let c = confirmed.entry(ack.enclave_id).or_insert(0);
                            if ack.confirmed_seq > *c {
                                delta += ack.confirmed_seq - *c;
                                *c = ack.confirmed_seq;
                            }
                        }
                        seen.acked.fetch_add(delta, Ordering::Relaxed);
                    }
                    Some(pb::controller_message::Body::Plan(p)) => {
                        let now = unix_ms();
                        for e in p.enclaves {
                            if e.cpu_quota_millicores > 0
                                && let Some(&end) = inj_end.get(&e.enclave_id)
                                && now >= end
                            {
                                let mut planned = seen
                                    .planned
                                    .lock()
                                    .unwrap_or_else(std::sync::PoisonError::into_inner);
                                planned.entry(e.enclave_id).or_insert(now - end);
                            }
                        }
                    }
                    Some(pb::controller_message::Body::Goodbye(g)) => {
                        let why = format!(
                            "host {index}: the controller ended the stream: {}",
                            g.reason
                        );
                        seen.goodbyes
                            .lock()
                            .unwrap_or_else(std::sync::PoisonError::into_inner)
                            .push(why.clone());
                        return Err(anyhow::anyhow!(why));
                    }
                    _ => {}
                }
            }
            Ok(())
        });
        let Some(stream) = sealed.remove(&index) else {
            continue;
        };
        let (sent, seen) = (sent.clone(), seen.clone());
        let per_host = cfg.enclaves_per_host as u64;
        senders.spawn(async move {
            let mut lags = Vec::with_capacity(stream.ticks.len());
            for (k, (usage, cps)) in stream.ticks.into_iter().enumerate() {
                let at = t0 + interval * (k as u32 + 1);
                tokio::time::sleep_until(at.into()).await;
                lags.push(at.elapsed());
                if tx.send(usage).await.is_err() {
                    anyhow::bail!("host {index}: stream closed ({})", seen.goodbyes());
                }
                sent.fetch_add(per_host, Ordering::Relaxed);
                if let Some(cps) = cps
                    && tx.send(cps).await.is_err()
                {
                    anyhow::bail!("host {index}: stream closed ({})", seen.goodbyes());
                }
            }
            Ok((tx, lags))
        });
    }

    // Progress once a second while sending.
    let expected = total as u64 * ticks;
    let mut open_streams = Vec::new();
    let mut lags = Vec::new();
    let mut last_report = Instant::now();
    let mut sends_done = None;
    let mut last_progress = (0u64, Instant::now());
    let mut cpu_at_send_end = None;
    loop {
        tokio::select! {
            r = senders.join_next(), if sends_done.is_none() => match r {
                Some(r) => {
                    let (tx, l) = r??;
                    open_streams.push(tx);
                    lags.extend(l);
                }
                None => {
                    sends_done = Some(Instant::now());
                    cpu_at_send_end = Some((
                        cluster
                            .pids()
                            .into_iter()
                            .map(|(id, pid)| (id, cpu_seconds(pid).unwrap_or(0.0)))
                            .collect::<Vec<_>>(),
                        cpu_seconds(std::process::id()).unwrap_or(0.0),
                    ));
                }
            },
            _ = tokio::time::sleep(Duration::from_millis(200)) => {}
        }
        if let Some(r) = receivers.try_join_next() {
            r??;
        }
        let acked = seen.acked.load(Ordering::Relaxed);
        if acked != last_progress.0 {
            last_progress = (acked, Instant::now());
        }
        if last_report.elapsed() >= Duration::from_secs(1) {
            last_report = Instant::now();
            progress(&format!(
                "t={:>4.1}s sent {:>9} acked {:>9} of {expected}",
                t0.elapsed().as_secs_f64(),
                sent.load(Ordering::Relaxed),
                acked
            ));
        }
        if acked >= expected {
            break;
        }
        // Acks of streams held by followers can stop one flush short (they read the
        // follower's state): the count comes from the log. Once acks settle, stop when the
        // log holds every report (or 30 s after the last send).
        if let Some(done) = sends_done {
            if done.elapsed() > Duration::from_secs(30) {
                progress("not every report is in the log 30 s after the last send");
                break;
            }
            if last_progress.1.elapsed() > Duration::from_secs(2) {
                let leader = cluster.wait_leader(&http, Duration::from_secs(10)).await?;
                let ep = &endpoints[(leader as usize).saturating_sub(1).min(endpoints.len() - 1)];
                let entries = log_entries(&http, ep, log_start, true).await?;
                if digested(&entries) >= expected {
                    break;
                }
                last_progress.1 = Instant::now();
            }
        }
    }
    let sends_done = sends_done.unwrap_or_else(Instant::now);
    // CPU over the streaming phase: the schedule's start → the last send.
    let wall = sends_done
        .saturating_duration_since(t0)
        .as_secs_f64()
        .max(1e-9);
    let (cpu_after, self_after) = cpu_at_send_end.unwrap_or_default();
    let controllers: Vec<ControllerCpu> = cpu_before
        .iter()
        .map(|&(id, before)| {
            let after = cpu_after
                .iter()
                .find(|(i, _)| *i == id)
                .map_or(before, |a| a.1);
            ControllerCpu {
                id,
                cpu_seconds: after - before,
                cores: (after - before) / wall,
            }
        })
        .collect();
    let generator_cores = (self_after - self_before).max(0.0) / wall;
    drop(open_streams);

    let send_seconds = sends_done.saturating_duration_since(t0).as_secs_f64();
    let sent_reports = sent.load(Ordering::Relaxed);

    // Verified reports from the replicated log: the committed digests' spans.
    progress("reading the log …");
    let leader = cluster.wait_leader(&http, Duration::from_secs(30)).await?;
    // The leader has applied everything committed: its own (stale) read is complete.
    let on_leader = &endpoints[(leader as usize).saturating_sub(1).min(endpoints.len() - 1)];
    let all = log_entries(&http, on_leader, log_start, true).await?;
    let t0_ms = (t0_ns / 1_000_000) as i64;
    let mut verified = 0u64;
    let mut last_digest_ms = t0_ms;
    let mut steady_reports = 0u64;
    let steady_from_ms = t0_ms + 2000;
    let steady_to_ms = t0_ms + (send_seconds * 1000.0) as i64;
    for e in all.iter().filter(|e| e["kind"] == "usage_digest") {
        let span = match (
            e["detail"]["first_seq"].as_u64(),
            e["detail"]["last_seq"].as_u64(),
        ) {
            (Some(f), Some(l)) if l >= f => l - f + 1,
            _ => 0,
        };
        let at = e["at_ms"].as_i64().unwrap_or(0);
        verified += span;
        last_digest_ms = last_digest_ms.max(at);
        if at > steady_from_ms && at <= steady_to_ms {
            steady_reports += span;
        }
    }
    let verified_seconds = (last_digest_ms - t0_ms).max(0) as f64 / 1000.0;
    // Decision latency: the first over_limit violation of each injected enclave.
    let mut first: HashMap<&str, f64> = HashMap::new();
    for e in all
        .iter()
        .filter(|e| e["kind"] == "violation" && e["detail"]["event"] == "over_limit")
    {
        let Some(subject) = e["subject"].as_str().filter(|s| inj_end.contains_key(*s)) else {
            continue;
        };
        if let (Some(at), Some(end)) = (e["at_ms"].as_i64(), e["detail"]["window_end_ms"].as_i64())
        {
            first.entry(subject).or_insert((at - end) as f64);
        }
    }
    let mut decided: Vec<f64> = first.into_values().collect();
    let mut planned: Vec<f64> = seen
        .planned
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
        .values()
        .map(|&ms| ms as f64)
        .collect();
    let offered_per_sec = total as f64 * 1000.0 / cfg.interval_ms as f64;
    let verified_overall_per_sec = if verified_seconds > 0.0 {
        verified as f64 / verified_seconds
    } else {
        0.0
    };
    // Steady state: digests committed from 2 s after the start to the last send (they trail
    // the reports by a checkpoint interval plus a digest flush, so the tail is left out).
    let steady = (steady_to_ms - steady_from_ms >= 1000)
        .then(|| steady_reports as f64 * 1000.0 / (steady_to_ms - steady_from_ms) as f64);
    let verified_per_sec = steady.unwrap_or(verified_overall_per_sec);
    Ok(IngestReport {
        hosts: cfg.hosts,
        enclaves: total,
        interval_ms: cfg.interval_ms,
        checkpoint_every: cfg.checkpoint_every,
        pre_sealed: true,
        offered_per_sec,
        sent_reports,
        send_seconds,
        sent_per_sec: sent_reports as f64 / send_seconds.max(1e-9),
        verified_reports: verified,
        verified_seconds,
        verified_per_sec,
        verified_overall_per_sec,
        verified_steady: steady.is_some(),
        ack_trail_seconds: (verified_seconds - send_seconds).max(0.0),
        verified_ratio: verified_per_sec / offered_per_sec,
        send_lag_ms: Summary::of_durations(&lags),
        over_limit_injected: inj_end.len(),
        decided_ms: Summary::of_ms(&mut decided),
        planned_ms: Summary::of_ms(&mut planned),
        controllers_cores: controllers.iter().map(|c| c.cores).sum(),
        controllers,
        generator_cores,
        seal_seconds,
        seal_reports_per_sec: expected as f64 / seal_seconds.max(1e-9),
    })
}
