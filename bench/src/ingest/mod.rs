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

mod agents;
pub mod observe;

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use serde::Serialize;
use serde_json::json;
use tokio::sync::mpsc;
use tokio::task::JoinSet;
use tribune_attest::session::EnclaveKeys;
use tribune_attest::usage::{EnclaveId, Producer, UsageSample};
use tribune_controller::state::{LogDetail, LogEntry, UsageDigest, ViolationDetail};
use tribune_proto::v1 as pb;

use crate::api::{log_entries, put_json};
use crate::cluster::LocalCluster;
use crate::proc::cpu_seconds;
use crate::stats::Summary;
use agents::{Host, Sealed, Seen, enclave_name, host_name};

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
    /// Controllers export traces (default sampling) to a collector in this process, and
    /// `/metrics` of every controller is scraped once a second while streaming.
    pub observe: bool,
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
            observe: false,
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
    /// With [`IngestConfig::observe`]: what the collector and the scraper got.
    pub observed: Option<observe::Observed>,
    /// The highest term any controller reported before the streams started and after the last
    /// send; every term in between is an election some controller stood in (none is wanted:
    /// nothing is killed during the run).
    pub term_start: u64,
    pub term_end: u64,
    pub elections: u64,
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

/// Reports one committed usage digest covers.
fn span_of(d: &UsageDigest) -> u64 {
    if d.last_seq >= d.first_seq {
        d.last_seq - d.first_seq + 1
    } else {
        0
    }
}

/// Reports covered by the committed usage digests among `entries`.
fn digested(entries: &[LogEntry]) -> u64 {
    entries
        .iter()
        .filter_map(|e| match &e.detail {
            LogDetail::UsageDigest(d) => Some(span_of(d)),
            _ => None,
        })
        .sum()
}

/// Runs the scenario against a fresh local cluster of `binary`: set up the cluster, the
/// enclaves and the streams; seal the run; stream it on schedule; count what the log verified.
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
    let total = cfg.hosts * cfg.enclaves_per_host;
    let collector = match cfg.observe {
        true => Some(observe::Collector::start().await?),
        false => None,
    };
    let target = Target::start(binary, collector.as_ref().map(|c| c.endpoint.as_str())).await?;
    create_enclaves(&target, cfg, &progress).await?;
    let log_start = log_entries(&target.http, &target.endpoints[0], 0, true)
        .await?
        .len() as u64;
    let hosts = connect_all(&target, cfg).await?;
    wait_trusted(&target, log_start, total).await?;

    let schedule = Schedule::plan(cfg)?;
    progress(&format!(
        "all {total} enclaves trusted; sealing {} reports ahead of time (estimate {:.1} s) …",
        total as u64 * schedule.ticks,
        schedule.estimate
    ));
    let (streams, sealed, seal_seconds) = seal_all(cfg, hosts, &schedule).await?;
    if Instant::now() > schedule.t0 {
        progress("sealing took longer than planned: the schedule starts late");
    }

    let inj_end = Arc::new(schedule.injected_window_ends(cfg));
    let scraper = cfg
        .observe
        .then(|| observe::Scraper::start(target.http.clone(), target.endpoints.clone()));
    let term_start = target.term().await.unwrap_or(0);
    let mut running = Running::start(&target, cfg, &schedule, streams, sealed, &inj_end);
    let expected = total as u64 * schedule.ticks;
    let sent = running
        .wait_sent(&target, schedule.t0, expected, log_start, &progress)
        .await?;
    // CPU over the streaming phase: the schedule's start → the last send.
    let wall = sent
        .done
        .saturating_duration_since(schedule.t0)
        .as_secs_f64()
        .max(1e-9);
    let controllers = running.cpu_before.controllers_since(&sent.cpu_after, wall);
    let generator_cores = (sent.cpu_after.own - running.cpu_before.own).max(0.0) / wall;
    let term_end = target.term().await.unwrap_or(0);
    drop(sent.open_streams);
    let observed = match scraper {
        Some(s) => Some(s.finish(collector.as_ref()).await),
        None => None,
    };

    let send_seconds = sent
        .done
        .saturating_duration_since(schedule.t0)
        .as_secs_f64();
    let sent_reports = running.sent.load(Ordering::Relaxed);
    progress("reading the log …");
    let counted = count_verified(&target, log_start, &schedule, send_seconds, &inj_end).await?;
    let mut decided = counted.decided;
    let mut planned: Vec<f64> = running
        .seen
        .planned
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
        .values()
        .map(|&ms| ms as f64)
        .collect();
    let offered_per_sec = total as f64 * 1000.0 / cfg.interval_ms as f64;
    let verified_seconds = counted.verified_seconds;
    let verified_overall_per_sec = if verified_seconds > 0.0 {
        counted.verified as f64 / verified_seconds
    } else {
        0.0
    };
    let verified_per_sec = counted.steady_per_sec.unwrap_or(verified_overall_per_sec);
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
        verified_reports: counted.verified,
        verified_seconds,
        verified_per_sec,
        verified_overall_per_sec,
        verified_steady: counted.steady_per_sec.is_some(),
        ack_trail_seconds: (verified_seconds - send_seconds).max(0.0),
        verified_ratio: verified_per_sec / offered_per_sec,
        send_lag_ms: Summary::of_durations(&sent.lags),
        over_limit_injected: inj_end.len(),
        decided_ms: Summary::of_ms(&mut decided),
        planned_ms: Summary::of_ms(&mut planned),
        controllers_cores: controllers.iter().map(|c| c.cores).sum(),
        controllers,
        generator_cores,
        seal_seconds,
        seal_reports_per_sec: expected as f64 / seal_seconds.max(1e-9),
        observed,
        term_start,
        term_end,
        elections: term_end.saturating_sub(term_start),
    })
}

/// The local cluster under test and how to reach it.
struct Target {
    cluster: LocalCluster,
    http: reqwest::Client,
    endpoints: Vec<String>,
}

impl Target {
    /// The highest term the controllers report (the first that answers speaks for all).
    async fn term(&self) -> Option<u64> {
        for ep in &self.endpoints {
            if let Some((t, _)) = crate::failover::terms(&self.http, ep).await {
                return Some(t);
            }
        }
        None
    }

    /// Starts three controllers (exporting traces to `otlp` if given, at the default sampling),
    /// waits until they are healthy and writes the policy.
    async fn start(binary: &std::path::Path, otlp: Option<&str>) -> anyhow::Result<Self> {
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(30))
            .pool_max_idle_per_host(64)
            .build()?;
        let mut args = vec!["--allow-sim-evidence"];
        if let Some(e) = otlp {
            args.extend(["--otlp-endpoint", e]);
        }
        let cluster = LocalCluster::start_ready(binary, 3, &args, &http).await?;
        let endpoints = cluster.endpoints();
        put_json(
            &http,
            &endpoints,
            "/v1/policies/bench-ingest",
            &json!({ "source": POLICY }),
        )
        .await?;
        Ok(Target {
            cluster,
            http,
            endpoints,
        })
    }

    /// The leader's endpoint (waiting up to `within` for one).
    async fn leader(&self, within: Duration) -> anyhow::Result<&str> {
        let leader = self.cluster.wait_leader(&self.http, within).await?;
        let i = (leader as usize)
            .saturating_sub(1)
            .min(self.endpoints.len() - 1);
        Ok(&self.endpoints[i])
    }
}

/// Writes every enclave's spec, 32 writers at a time.
async fn create_enclaves(
    target: &Target,
    cfg: &IngestConfig,
    progress: &impl Fn(&str),
) -> anyhow::Result<()> {
    let total = cfg.hosts * cfg.enclaves_per_host;
    progress(&format!(
        "creating {total} enclaves on {} hosts …",
        cfg.hosts
    ));
    let created = Instant::now();
    let next = Arc::new(AtomicU64::new(0));
    let mut writers = JoinSet::new();
    for _ in 0..32 {
        let (http, endpoints, next, cfg) = (
            target.http.clone(),
            target.endpoints.clone(),
            next.clone(),
            cfg.clone(),
        );
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
    Ok(())
}

/// Opens every simulated host's stream (spread over the three controllers) and sends its
/// evidence; in host order.
async fn connect_all(target: &Target, cfg: &IngestConfig) -> anyhow::Result<Vec<Host>> {
    let mut connecting = JoinSet::new();
    for h in 0..cfg.hosts {
        let ep = target.endpoints[h % target.endpoints.len()].clone();
        let per_host = cfg.enclaves_per_host;
        connecting.spawn(async move { agents::connect(&ep, h, per_host).await });
    }
    let mut hosts = Vec::new();
    while let Some(r) = connecting.join_next().await {
        hosts.push(r??);
    }
    hosts.sort_by_key(|h| h.index);
    Ok(hosts)
}

/// Waits until every enclave is trusted (its verdict committed) before the clock starts.
async fn wait_trusted(target: &Target, log_start: u64, total: usize) -> anyhow::Result<()> {
    let deadline = Instant::now() + Duration::from_secs(120);
    let mut cursor = log_start;
    let mut trusted = 0usize;
    while trusted < total {
        anyhow::ensure!(
            Instant::now() < deadline,
            "only {trusted} of {total} enclaves trusted within 120 s"
        );
        let page = log_entries(&target.http, &target.endpoints[0], cursor, true).await?;
        cursor += page.len() as u64;
        trusted += page
            .iter()
            .filter(|e| matches!(&e.detail, LogDetail::Verdict(v) if v.trusted))
            .count();
        if trusted < total {
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
    Ok(())
}

/// When the run starts and what goes over the limit when.
struct Schedule {
    ticks: u64,
    /// Global enclave index → the tick whose report first goes over.
    injected: Arc<HashMap<usize, u64>>,
    /// The schedule's start, on the wall clock (report windows) and the monotonic one.
    t0_ns: u64,
    t0: Instant,
    /// Seconds sealing should take.
    estimate: f64,
}

impl Schedule {
    /// Calibrates sealing first, so the schedule starts after it.
    fn plan(cfg: &IngestConfig) -> anyhow::Result<Self> {
        let total = cfg.hosts * cfg.enclaves_per_host;
        let ticks = cfg.seconds * 1000 / cfg.interval_ms;
        let injected = Arc::new(agents::injections(cfg, ticks));
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
        Ok(Schedule {
            ticks,
            injected,
            t0_ns: unix_ns() + lead.as_nanos() as u64,
            t0: Instant::now() + lead,
            estimate,
        })
    }

    /// Injected enclave → window end (ms) of its first over-limit report.
    fn injected_window_ends(&self, cfg: &IngestConfig) -> HashMap<String, i64> {
        self.injected
            .iter()
            .map(|(&i, &k)| {
                let (h, e) = (i / cfg.enclaves_per_host, i % cfg.enclaves_per_host);
                let end_ms = ((self.t0_ns + k * cfg.interval_ms * 1_000_000) / 1_000_000) as i64;
                (enclave_name(h, e), end_ms)
            })
            .collect()
    }
}

/// A host's stream, its halves apart: the sending side and what comes back.
type Stream = (
    usize,
    mpsc::Sender<pb::AgentMessage>,
    tonic::Streaming<pb::ControllerMessage>,
);

/// Seals every host's run on the blocking pool. Returns the streams, the sealed runs by host
/// and how long sealing took.
async fn seal_all(
    cfg: &IngestConfig,
    hosts: Vec<Host>,
    schedule: &Schedule,
) -> anyhow::Result<(Vec<Stream>, HashMap<usize, Sealed>, f64)> {
    let started = Instant::now();
    let mut sealing = JoinSet::new();
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
        let (cfg2, injected2) = (cfg.clone(), schedule.injected.clone());
        let (t0_ns, ticks) = (schedule.t0_ns, schedule.ticks);
        sealing.spawn_blocking(move || {
            let sealed = agents::seal(
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
    Ok((streams, sealed, started.elapsed().as_secs_f64()))
}

/// CPU seconds so far of each controller process and of this one.
#[derive(Default)]
struct CpuSeconds {
    controllers: Vec<(u64, f64)>,
    own: f64,
}

impl CpuSeconds {
    fn now(cluster: &LocalCluster) -> Self {
        CpuSeconds {
            controllers: cluster
                .pids()
                .into_iter()
                .map(|(id, pid)| (id, cpu_seconds(pid).unwrap_or(0.0)))
                .collect(),
            own: cpu_seconds(std::process::id()).unwrap_or(0.0),
        }
    }

    /// Each controller's CPU from `self` to `after`, over `wall` seconds.
    fn controllers_since(&self, after: &CpuSeconds, wall: f64) -> Vec<ControllerCpu> {
        self.controllers
            .iter()
            .map(|&(id, before)| {
                let after = after
                    .controllers
                    .iter()
                    .find(|(i, _)| *i == id)
                    .map_or(before, |a| a.1);
                ControllerCpu {
                    id,
                    cpu_seconds: after - before,
                    cores: (after - before) / wall,
                }
            })
            .collect()
    }
}

/// The streaming phase under way: a receiver and a sender task per host.
struct Running {
    seen: Arc<Seen>,
    receivers: JoinSet<anyhow::Result<()>>,
    senders: JoinSet<anyhow::Result<(mpsc::Sender<pb::AgentMessage>, Vec<Duration>)>>,
    /// Reports sent so far.
    sent: Arc<AtomicU64>,
    cpu_before: CpuSeconds,
}

/// The sending side, finished.
struct Sent {
    /// When the last batch was sent (or the wait gave up).
    done: Instant,
    lags: Vec<Duration>,
    /// Kept open until the run is measured.
    open_streams: Vec<mpsc::Sender<pb::AgentMessage>>,
    cpu_after: CpuSeconds,
}

impl Running {
    /// Measures the CPU so far, then starts every host's receiver and sender.
    fn start(
        target: &Target,
        cfg: &IngestConfig,
        schedule: &Schedule,
        streams: Vec<Stream>,
        mut sealed: HashMap<usize, Sealed>,
        inj_end: &Arc<HashMap<String, i64>>,
    ) -> Self {
        let mut running = Running {
            seen: Arc::new(Seen::default()),
            receivers: JoinSet::new(),
            senders: JoinSet::new(),
            cpu_before: CpuSeconds::now(&target.cluster),
            sent: Arc::new(AtomicU64::new(0)),
        };
        let timing = (schedule.t0, Duration::from_millis(cfg.interval_ms));
        for (index, tx, rx) in streams {
            let (seen, inj_end) = (running.seen.clone(), inj_end.clone());
            running
                .receivers
                .spawn(async move { agents::receive(index, rx, &seen, &inj_end).await });
            let Some(stream) = sealed.remove(&index) else {
                continue;
            };
            let (sent, seen) = (running.sent.clone(), running.seen.clone());
            let per_host = cfg.enclaves_per_host as u64;
            running.senders.spawn(async move {
                agents::send(index, tx, stream, timing, per_host, &sent, &seen).await
            });
        }
        running
    }

    /// Reports progress once a second until every report is acknowledged, or — once the sends
    /// are done and acks settled — the log holds every report (or 30 s passed).
    async fn wait_sent(
        &mut self,
        target: &Target,
        t0: Instant,
        expected: u64,
        log_start: u64,
        progress: &impl Fn(&str),
    ) -> anyhow::Result<Sent> {
        let mut open_streams = Vec::new();
        let mut lags = Vec::new();
        let mut last_report = Instant::now();
        let mut sends_done = None;
        let mut last_progress = (0u64, Instant::now());
        let mut cpu_at_send_end = None;
        loop {
            tokio::select! {
                r = self.senders.join_next(), if sends_done.is_none() => match r {
                    Some(r) => {
                        let (tx, l) = r??;
                        open_streams.push(tx);
                        lags.extend(l);
                    }
                    None => {
                        sends_done = Some(Instant::now());
                        cpu_at_send_end = Some(CpuSeconds::now(&target.cluster));
                    }
                },
                _ = tokio::time::sleep(Duration::from_millis(200)) => {}
            }
            if let Some(r) = self.receivers.try_join_next() {
                r??;
            }
            let acked = self.seen.acked.load(Ordering::Relaxed);
            if acked != last_progress.0 {
                last_progress = (acked, Instant::now());
            }
            if last_report.elapsed() >= Duration::from_secs(1) {
                last_report = Instant::now();
                progress(&format!(
                    "t={:>4.1}s sent {:>9} acked {:>9} of {expected}",
                    t0.elapsed().as_secs_f64(),
                    self.sent.load(Ordering::Relaxed),
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
                    let ep = target.leader(Duration::from_secs(10)).await?;
                    let entries = log_entries(&target.http, ep, log_start, true).await?;
                    if digested(&entries) >= expected {
                        break;
                    }
                    last_progress.1 = Instant::now();
                }
            }
        }
        Ok(Sent {
            done: sends_done.unwrap_or_else(Instant::now),
            lags,
            open_streams,
            cpu_after: cpu_at_send_end.unwrap_or_default(),
        })
    }
}

/// What the replicated log says about the run.
struct Counted {
    /// Reports in committed usage digests.
    verified: u64,
    /// Schedule start → the last committed digest.
    verified_seconds: f64,
    /// Verified reports per second from 2 s after the start to the last send, when that
    /// window is at least a second long.
    steady_per_sec: Option<f64>,
    /// Per injected enclave: its first over_limit violation's `at_ms` − the window end it
    /// carries.
    decided: Vec<f64>,
}

/// Reads the log from the leader (it has applied everything committed: its own stale read is
/// complete) and counts the committed digests' spans and the decision latencies.
async fn count_verified(
    target: &Target,
    log_start: u64,
    schedule: &Schedule,
    send_seconds: f64,
    inj_end: &HashMap<String, i64>,
) -> anyhow::Result<Counted> {
    let on_leader = target.leader(Duration::from_secs(30)).await?;
    let all = log_entries(&target.http, on_leader, log_start, true).await?;
    let t0_ms = (schedule.t0_ns / 1_000_000) as i64;
    let mut verified = 0u64;
    let mut last_digest_ms = t0_ms;
    let mut steady_reports = 0u64;
    let steady_from_ms = t0_ms + 2000;
    let steady_to_ms = t0_ms + (send_seconds * 1000.0) as i64;
    let mut first: HashMap<&str, f64> = HashMap::new();
    for e in &all {
        match &e.detail {
            LogDetail::UsageDigest(d) => {
                let span = span_of(d);
                verified += span;
                last_digest_ms = last_digest_ms.max(e.at_ms);
                if e.at_ms > steady_from_ms && e.at_ms <= steady_to_ms {
                    steady_reports += span;
                }
            }
            // Decision latency: the first over_limit violation of each injected enclave.
            LogDetail::Violation(ViolationDetail::OverLimit(v))
                if inj_end.contains_key(e.subject.as_str()) =>
            {
                if let Some(end) = v.window_end_ms {
                    first
                        .entry(e.subject.as_str())
                        .or_insert((e.at_ms - end as i64) as f64);
                }
            }
            _ => {}
        }
    }
    // Steady state: digests committed from 2 s after the start to the last send (they trail
    // the reports by a checkpoint interval plus a digest flush, so the tail is left out).
    let steady_per_sec = (steady_to_ms - steady_from_ms >= 1000)
        .then(|| steady_reports as f64 * 1000.0 / (steady_to_ms - steady_from_ms) as f64);
    Ok(Counted {
        verified,
        verified_seconds: (last_digest_ms - t0_ms).max(0) as f64 / 1000.0,
        steady_per_sec,
        decided: first.into_values().collect(),
    })
}

#[cfg(test)]
mod tests;
