//! `messages`: the mediator of a real `tribune agent run` process, driven through its
//! per-enclave sockets with the `tribune-msg` client (the bench process plays every enclave:
//! it connects to their sockets as the agent's own user, which the mediator lets in).
//!
//! Scenarios, one agent, one run:
//! - **flood**: ten senders to one receiver that takes `receiver_rate` messages/s (receive
//!   window 4, so messages wait in the mediator's fair queues, not in socket buffers); nine
//!   send `sender_rate`/s, one `flood_factor` times that. Each sender's delivered rate against
//!   its max-min fair share, Jain's index over the nine, their send→receive delay.
//! - **weighted**: three saturating senders with `talk … share` 1, 2 and 4 against the ideal.
//! - **priority**: a `priority 10` sender and a `priority 0` one, both saturating, then the
//!   high one stops.
//! - **throughput**: one sender, one unpaced receiver, 64 B and 64 KiB, next to a plain
//!   Unix-socket relay (bytes copied between two socket pairs, no policy, no queues, no acks)
//!   in the same process.
//!
//! The agent's RSS (VmRSS, VmHWM) is read from `/proc` at the end.
//!
//! With `cross_host` (root: network namespaces), the same scenarios run between two agents in
//! separate network namespaces over their mutual-TLS peer links: every sender on one host, the
//! receivers on the other (`cross`).

mod cross;
mod load;
pub mod queueing;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::Context;
use serde::Serialize;
use tribune_agent::control::{self, ClientRequest};
use tribune_agent::plan::{EnclavePlan, LaunchSpec, Plan, Talk};
use tribune_msg::Client;

use crate::stats::Summary;
use load::{Flow, drained, paced_senders, relay_throughput, saturate, spawn_paced_receiver};

/// How a `messages` run is sized.
#[derive(Debug, Clone, Serialize)]
pub struct MessagesConfig {
    /// Seconds per fairness scenario (the first second is warm-up, not counted).
    pub seconds: u64,
    /// What the flood's receiver takes, messages/s.
    pub receiver_rate: f64,
    /// Each well-behaved flood sender's rate, messages/s.
    pub sender_rate: f64,
    /// The flooder sends this many times `sender_rate`.
    pub flood_factor: f64,
    /// Seconds per throughput measurement.
    pub throughput_seconds: u64,
    /// Senders and receivers on two agents in separate network namespaces (root).
    pub cross_host: bool,
}

impl Default for MessagesConfig {
    fn default() -> Self {
        MessagesConfig {
            seconds: 10,
            receiver_rate: 10_000.0,
            sender_rate: 500.0,
            flood_factor: 100.0,
            throughput_seconds: 5,
            cross_host: false,
        }
    }
}

#[derive(Debug, Serialize)]
pub struct SenderResult {
    pub name: String,
    /// Send attempts, accepted and refused (back-pressure), per second.
    pub offered_per_s: f64,
    pub accepted_per_s: f64,
    pub refused_per_s: f64,
    /// Delivered to the receiver per second, and its max-min fair share of the receiver's
    /// rate over what the senders offered (a sender cannot be owed more than it offered).
    pub delivered_per_s: f64,
    pub fair_share_per_s: f64,
    /// Its share had every sender offered its configured rate (the flood scenario).
    pub configured_share_per_s: f64,
    /// How long its sends took to be answered by the mediator, ms.
    pub send_ms: Summary,
    /// `delivered / fair share − 1`, percent.
    pub error_pct: f64,
}

#[derive(Debug, Serialize)]
pub struct FloodResult {
    pub receiver_rate: f64,
    pub senders: Vec<SenderResult>,
    /// Jain's fairness index over the well-behaved senders' `delivered / fair share`.
    pub jain_well_behaved: f64,
    /// The largest |error| among the well-behaved, percent.
    pub worst_error_pct: f64,
    /// Send → receive delay of the well-behaved senders' messages, ms.
    pub delay_ms: Summary,
    /// How long their sends took to be answered by the mediator, ms (all of them together).
    pub send_ms: Summary,
    /// The lowest rate a well-behaved sender offered, as a share of its configured rate (%):
    /// below 100, the bench's pacing fell behind (see `send_ms` for whether the mediator held
    /// it back).
    pub offered_min_pct: f64,
    /// Their queueing in the mediator(s), from the agents' histograms (`None`: not read; the
    /// run says why).
    pub queueing: Option<queueing::Queueing>,
}

#[derive(Debug, Serialize)]
pub struct WeightedResult {
    pub receiver_rate: f64,
    pub senders: Vec<SenderResult>,
    pub worst_error_pct: f64,
}

#[derive(Debug, Serialize)]
pub struct PriorityResult {
    pub receiver_rate: f64,
    /// While both send: delivered per second of the high and the low class.
    pub high_per_s: f64,
    pub low_per_s_while_high: f64,
    /// After the high one stops.
    pub low_per_s_alone: f64,
}

#[derive(Debug, Serialize)]
pub struct ThroughputRow {
    pub payload_bytes: usize,
    pub mediator_msgs_per_s: f64,
    pub mediator_mb_per_s: f64,
    pub plain_relay_msgs_per_s: f64,
    pub plain_relay_mb_per_s: f64,
}

#[derive(Debug, Serialize)]
pub struct MessagesReport {
    pub config: MessagesConfig,
    pub root: bool,
    pub flood: FloodResult,
    pub weighted: WeightedResult,
    pub priority: PriorityResult,
    pub throughput: Vec<ThroughputRow>,
    /// The agent process (the mediator runs in it) at the end of the run; cross-host: the
    /// senders' agent.
    pub mediator_rss_mib: f64,
    pub mediator_hwm_mib: f64,
    /// Cross-host: the receivers' agent.
    pub receiver_mediator_rss_mib: Option<f64>,
    pub receiver_mediator_hwm_mib: Option<f64>,
}

const FLOOD_SENDERS: usize = 10;
/// The paced receivers' window: messages wait in the fair queues, not downstream of them.
const RECEIVE_WINDOW: u32 = 4;
const SHARES: [u32; 3] = [1, 2, 4];
/// Tags (first payload byte) per scenario, so what one leaves queued is never counted by the
/// next: flood 0..10, weighted 10..13, priority 20 (high) and 21 (low).
const WEIGHTED_TAG: u8 = 10;
const HIGH_TAG: u8 = 20;
const LOW_TAG: u8 = 21;

/// The agent under test, stopped (SIGTERM, then SIGKILL) when dropped.
struct BenchAgent {
    child: Child,
    data_dir: PathBuf,
    _dir: tempfile::TempDir,
}

impl Drop for BenchAgent {
    fn drop(&mut self) {
        tribune_testkit::process::stop(&mut self.child, Duration::from_secs(20));
    }
}

/// Where the run's enclaves are: one agent, or (cross-host) the senders' and the receivers'.
struct Parties<'a> {
    senders: &'a BenchAgent,
    receivers: Option<&'a BenchAgent>,
}

impl Parties<'_> {
    async fn client(&self, enclave: &str) -> anyhow::Result<Client> {
        match self.receivers {
            Some(r) if cross::ON_RECEIVER_HOST.contains(&enclave) => r.client(enclave).await,
            _ => self.senders.client(enclave).await,
        }
    }

    /// The `senders`' queueing in each mediator their messages pass, in order.
    async fn queueing(&self, senders: &[String]) -> anyhow::Result<queueing::Queueing> {
        let mut hops = vec![];
        let agents = match self.receivers {
            None => vec![("one host", self.senders)],
            Some(r) => vec![("senders' host", self.senders), ("receivers' host", r)],
        };
        let mut paired = None;
        for (what, agent) in agents {
            let text = agent.metrics().await?;
            let b = queueing::buckets(&text, senders)
                .with_context(|| format!("the {what} agent's queueing"))?;
            hops.push(queueing::hop(what, b));
            if self.receivers.is_some() && what == "receivers' host" {
                paired = queueing::buckets_of(&text, queueing::PAIRED_METRIC, senders)
                    .ok()
                    .map(|b| queueing::hop("both hosts, paired per message", b));
            }
        }
        Ok(queueing::Queueing {
            paired,
            ..queueing::of(hops)
        })
    }
}

/// How to start one agent of the run.
struct AgentSpec {
    /// Appended to the instance name (one run may start two agents).
    suffix: String,
    /// Run it in this network namespace (`nsenter --net`).
    netns: Option<String>,
    /// Peer links to other agents' mediators.
    peer: Option<Peer>,
    plan: Plan,
}

struct Peer {
    listen: String,
    host_id: String,
    /// A `tribune ca` directory holding `agent-HOST_ID.pem`/`.key`.
    tls_dir: PathBuf,
}

impl BenchAgent {
    fn socket(&self, enclave: &str) -> PathBuf {
        self.data_dir.join("msg").join(format!("{enclave}.sock"))
    }

    fn print_log_tail(&self, what: &str) {
        let text = std::fs::read_to_string(self._dir.path().join("agent.log")).unwrap_or_default();
        let tail: Vec<&str> = text.lines().rev().take(30).collect();
        eprintln!("messages: {what}'s log ends with:");
        for l in tail.iter().rev() {
            eprintln!("  {l}");
        }
    }

    /// The agent's metrics (Prometheus text), over its control socket: it may be in a network
    /// namespace of its own.
    async fn metrics(&self) -> anyhow::Result<String> {
        match control::request(&self.data_dir, &ClientRequest::Metrics).await? {
            serde_json::Value::String(text) => Ok(text),
            other => anyhow::bail!("the agent answered its metrics with {other}"),
        }
    }

    async fn client(&self, enclave: &str) -> anyhow::Result<Client> {
        Client::connect(&self.socket(enclave))
            .await
            .with_context(|| format!("connecting as enclave {enclave}"))
    }
}

fn enclave(talk: &[(&str, u32)], priority: i64) -> EnclavePlan {
    EnclavePlan {
        launch: Some(LaunchSpec::Process {
            cmd: vec!["/bin/sleep".into(), "3600".into()],
            network: false,
            sim: None,
        }),
        talk: Talk {
            priority,
            allow: talk
                .iter()
                .map(|(p, s)| (p.to_string(), s * 1000))
                .collect(),
            rate_per_s: 0,
        },
        ..EnclavePlan::default()
    }
}

/// Every enclave of the run and its talk rules.
fn plan() -> Plan {
    let mut p = Plan {
        version: 1,
        ..Plan::default()
    };
    let mut rx_allow: Vec<(String, u32)> = Vec::new();
    for i in 0..FLOOD_SENDERS {
        let n = format!("s{i}");
        p.enclaves.insert(n.clone(), enclave(&[("rx", 1)], 0));
        rx_allow.push((n, 1));
    }
    for (n, share) in ["wa", "wb", "wc"].iter().zip(SHARES) {
        p.enclaves
            .insert(n.to_string(), enclave(&[("rx", share)], 0));
        rx_allow.push((n.to_string(), 1));
    }
    p.enclaves.insert("hi".into(), enclave(&[("rx", 1)], 10));
    p.enclaves.insert("lo".into(), enclave(&[("rx", 1)], 0));
    rx_allow.push(("hi".into(), 1));
    rx_allow.push(("lo".into(), 1));
    let rx: Vec<(&str, u32)> = rx_allow.iter().map(|(n, s)| (n.as_str(), *s)).collect();
    p.enclaves.insert("rx".into(), enclave(&rx, 0));
    p.enclaves.insert("tp".into(), enclave(&[("tq", 1)], 0));
    p.enclaves.insert("tq".into(), enclave(&[("tp", 1)], 0));
    p
}

async fn start_agent(
    binary: &Path,
    spec: AgentSpec,
    progress: &impl Fn(&str),
) -> anyhow::Result<BenchAgent> {
    let dir = tempfile::Builder::new().prefix("tbm").tempdir_in("/tmp")?;
    let data_dir = dir.path().join("a");
    std::fs::create_dir_all(&data_dir)?;
    let policy = crate::write_launch_policy(dir.path(), &["/bin/sleep"])?;
    let log = std::fs::File::create(dir.path().join("agent.log"))?;
    let mut cmd = match &spec.netns {
        // nsenter, not `ip netns exec`: that one remounts /sys, hiding the cgroup mounts.
        Some(ns) => {
            let mut c = Command::new("nsenter");
            c.arg(format!("--net=/run/netns/{ns}")).arg(binary);
            c
        }
        None => Command::new(binary),
    };
    cmd.args([
        "agent",
        "run",
        "--instance",
        &format!("bmsg{}{}", std::process::id(), spec.suffix),
    ])
    .arg("--data-dir")
    .arg(&data_dir)
    .arg("--launch-policy")
    .arg(&policy)
    // Served, as by default, but not on the default port another agent may hold.
    .args(["--metrics-listen", "127.0.0.1:0"]);
    if let Some(p) = &spec.peer {
        cmd.args(["--peer-listen", &p.listen, "--host-id", &p.host_id])
            .arg("--tls-dir")
            .arg(&p.tls_dir);
    }
    if !crate::is_root() {
        cmd.arg("--observe-only");
    }
    let child = cmd
        .env("RUST_LOG", "warn")
        .stdin(Stdio::null())
        .stdout(log.try_clone()?)
        .stderr(log)
        .spawn()
        .with_context(|| format!("starting {}", binary.display()))?;
    let agent = BenchAgent {
        child,
        data_dir,
        _dir: dir,
    };
    progress("agent started; applying the plan");
    let plan = spec.plan;
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        match control::request(&agent.data_dir, &ClientRequest::Apply(plan.clone())).await {
            Ok(_) => break,
            Err(e) if Instant::now() > deadline => {
                let log = std::fs::read_to_string(agent._dir.path().join("agent.log"))
                    .unwrap_or_default();
                anyhow::bail!("the agent did not take the plan: {e}\n{log}");
            }
            Err(_) => tokio::time::sleep(Duration::from_millis(100)).await,
        }
    }
    for n in plan.enclaves.keys() {
        anyhow::ensure!(agent.socket(n).exists(), "no mediator socket for {n}");
    }
    Ok(agent)
}

/// Max-min fair shares of `capacity` among `demands` (water-filling).
pub fn max_min(demands: &[f64], capacity: f64) -> Vec<f64> {
    let mut share = vec![0.0; demands.len()];
    let mut open: Vec<usize> = (0..demands.len()).collect();
    let mut left = capacity;
    while !open.is_empty() && left > 0.0 {
        let each = left / open.len() as f64;
        let (sated, rest): (Vec<usize>, Vec<usize>) =
            open.iter().partition(|i| demands[**i] - share[**i] <= each);
        if sated.is_empty() {
            for i in &open {
                share[*i] += each;
            }
            break;
        }
        for i in sated {
            left -= demands[i] - share[i];
            share[i] = demands[i];
        }
        open = rest;
    }
    share
}

/// Jain's index of `x`: 1 when all equal, 1/n when one has everything.
pub fn jain(x: &[f64]) -> f64 {
    let sum: f64 = x.iter().sum();
    let sq: f64 = x.iter().map(|v| v * v).sum();
    if sq == 0.0 {
        return 0.0;
    }
    sum * sum / (x.len() as f64 * sq)
}

/// `fair`: its max-min share of what was offered; `configured`: had it offered its rate.
fn result(
    name: &str,
    f: &mut Flow,
    secs: f64,
    delivered: u64,
    fair: f64,
    configured: f64,
) -> SenderResult {
    let delivered_per_s = delivered as f64 / secs;
    SenderResult {
        name: name.to_string(),
        offered_per_s: f.attempted as f64 / secs,
        accepted_per_s: f.accepted as f64 / secs,
        refused_per_s: f.refused as f64 / secs,
        delivered_per_s,
        fair_share_per_s: fair,
        configured_share_per_s: configured,
        send_ms: Summary::of_ms(&mut f.send_ms),
        error_pct: (delivered_per_s / fair - 1.0) * 100.0,
    }
}

pub async fn messages(
    binary: &Path,
    cfg: &MessagesConfig,
    progress: impl Fn(&str),
) -> anyhow::Result<MessagesReport> {
    if cfg.cross_host {
        anyhow::ensure!(
            crate::is_root(),
            "--cross-host needs root (it makes network namespaces and a veth pair)"
        );
        let net = cross::NetPair::create()?;
        let ca = tempfile::Builder::new()
            .prefix("tbmca")
            .tempdir_in("/tmp")?;
        let (a, b) = cross::start_pair(binary, &net, ca.path(), &progress).await?;
        let parties = Parties {
            senders: &a,
            receivers: Some(&b),
        };
        let r = scenarios(&parties, cfg, &progress).await;
        if r.is_err() {
            a.print_log_tail("the senders' agent");
            b.print_log_tail("the receivers' agent");
        }
        let mut r = r?;
        let rss = crate::memory::rss(b.child.id())?;
        r.receiver_mediator_rss_mib = Some(rss.rss_mib);
        r.receiver_mediator_hwm_mib = Some(rss.hwm_mib);
        drop((a, b));
        drop(net);
        return Ok(r);
    }
    let spec = AgentSpec {
        suffix: String::new(),
        netns: None,
        peer: None,
        plan: plan(),
    };
    let agent = start_agent(binary, spec, &progress).await?;
    let parties = Parties {
        senders: &agent,
        receivers: None,
    };
    let r = scenarios(&parties, cfg, &progress).await;
    if r.is_err() {
        agent.print_log_tail("the agent");
    }
    r
}

async fn scenarios(
    agent: &Parties<'_>,
    cfg: &MessagesConfig,
    progress: &impl Fn(&str),
) -> anyhow::Result<MessagesReport> {
    let warmup = Duration::from_secs(1);
    let run = Duration::from_secs(cfg.seconds.max(2));
    let counted = (run - warmup).as_secs_f64();

    progress("flood: ten senders, one at 100× the others' rate");
    let rx = drained(agent.client("rx").await?, RECEIVE_WINDOW).await?;
    let mut senders = Vec::new();
    let mut demands = Vec::new();
    for i in 0..FLOOD_SENDERS {
        let rate = if i == 0 {
            cfg.sender_rate * cfg.flood_factor
        } else {
            cfg.sender_rate
        };
        senders.push((agent.client(&format!("s{i}")).await?, i as u8, rate));
        demands.push(rate);
    }
    let recv = spawn_paced_receiver(rx.clone(), cfg.receiver_rate, warmup, run);
    let mut flows = paced_senders(senders, "rx", warmup, run).await?;
    let got = recv.await??;
    // Shares of what the senders managed to offer (the bench's pacing can fall behind under
    // load: a shortfall of its own must not read as the mediator's unfairness), and of what
    // they were configured to offer, side by side.
    let offered: Vec<f64> = flows.iter().map(|f| f.attempted as f64 / counted).collect();
    let fair = max_min(&offered, cfg.receiver_rate);
    let configured = max_min(&demands, cfg.receiver_rate);
    let flood_senders: Vec<SenderResult> = (0..FLOOD_SENDERS)
        .map(|i| {
            result(
                &format!("s{i}"),
                &mut flows[i],
                counted,
                got.delivered[i],
                fair[i],
                configured[i],
            )
        })
        .collect();
    let mut send_ms: Vec<f64> = flows[1..]
        .iter()
        .flat_map(|f| f.send_ms.iter().copied())
        .collect();
    let offered_min_pct = offered[1..]
        .iter()
        .map(|o| o / cfg.sender_rate * 100.0)
        .fold(f64::INFINITY, f64::min);
    let ratios: Vec<f64> = flood_senders[1..]
        .iter()
        .map(|s| s.delivered_per_s / s.fair_share_per_s)
        .collect();
    let well_behaved: Vec<String> = (1..FLOOD_SENDERS).map(|i| format!("s{i}")).collect();
    let queueing = match agent.queueing(&well_behaved).await {
        Ok(q) => Some(q),
        Err(e) => {
            progress(&format!("flood: the queueing delay is not reported: {e:#}"));
            None
        }
    };
    let mut delays: Vec<f64> = got
        .delay_ms
        .iter()
        .filter(|(tag, _)| *tag != 0)
        .map(|(_, d)| *d)
        .collect();
    let flood = FloodResult {
        receiver_rate: cfg.receiver_rate,
        jain_well_behaved: jain(&ratios),
        worst_error_pct: flood_senders[1..]
            .iter()
            .map(|s| s.error_pct.abs())
            .fold(0.0, f64::max),
        senders: flood_senders,
        delay_ms: Summary::of_ms(&mut delays),
        send_ms: Summary::of_ms(&mut send_ms),
        offered_min_pct,
        queueing,
    };
    drop(rx);

    progress("weighted: shares 1, 2, 4 under saturation");
    let weighted_rate = cfg.receiver_rate * 0.7;
    let rx = drained(agent.client("rx").await?, RECEIVE_WINDOW).await?;
    let mut clients = Vec::new();
    for (i, n) in ["wa", "wb", "wc"].iter().enumerate() {
        clients.push((agent.client(n).await?, WEIGHTED_TAG + i as u8));
    }
    let recv = spawn_paced_receiver(rx.clone(), weighted_rate, warmup, run);
    let mut flows = saturate(clients, "rx", warmup, run).await?;
    let got = recv.await??;
    let total: u32 = SHARES.iter().sum();
    let weighted_senders: Vec<SenderResult> = ["wa", "wb", "wc"]
        .iter()
        .enumerate()
        .map(|(i, n)| {
            let ideal = weighted_rate * f64::from(SHARES[i]) / f64::from(total);
            result(
                n,
                &mut flows[i],
                counted,
                got.delivered[usize::from(WEIGHTED_TAG) + i],
                ideal,
                ideal,
            )
        })
        .collect();
    let weighted = WeightedResult {
        receiver_rate: weighted_rate,
        worst_error_pct: weighted_senders
            .iter()
            .map(|s| s.error_pct.abs())
            .fold(0.0, f64::max),
        senders: weighted_senders,
    };
    drop(rx);

    progress("priority: a high and a low class, then the high one stops");
    let priority = priority(agent, cfg.receiver_rate * 0.5, run).await?;

    let mut throughput = Vec::new();
    for payload in [64usize, 64 << 10] {
        progress(&format!(
            "throughput: {payload}-byte messages, mediator and plain relay"
        ));
        let secs = Duration::from_secs(cfg.throughput_seconds.max(1));
        let tp = agent.client("tp").await?;
        let tq = agent.client("tq").await?;
        let (msgs, _) = load::unpaced(tp, tq, "tq", payload, secs).await?;
        let plain = relay_throughput(payload, secs).await?;
        let s = secs.as_secs_f64();
        throughput.push(ThroughputRow {
            payload_bytes: payload,
            mediator_msgs_per_s: msgs as f64 / s,
            mediator_mb_per_s: (msgs * payload as u64) as f64 / s / 1e6,
            plain_relay_msgs_per_s: plain as f64 / s,
            plain_relay_mb_per_s: (plain * payload as u64) as f64 / s / 1e6,
        });
    }
    let rss = crate::memory::rss(agent.senders.child.id())?;
    Ok(MessagesReport {
        config: cfg.clone(),
        root: crate::is_root(),
        flood,
        weighted,
        priority,
        throughput,
        mediator_rss_mib: rss.rss_mib,
        mediator_hwm_mib: rss.hwm_mib,
        receiver_mediator_rss_mib: None,
        receiver_mediator_hwm_mib: None,
    })
}

async fn priority(agent: &Parties<'_>, rate: f64, run: Duration) -> anyhow::Result<PriorityResult> {
    let rx = drained(agent.client("rx").await?, RECEIVE_WINDOW).await?;
    let hi = agent.client("hi").await?;
    let lo = agent.client("lo").await?;
    let half = run / 2;
    let recv = spawn_paced_receiver(rx.clone(), rate, Duration::ZERO, run);
    let lo_task = tokio::spawn(saturate(vec![(lo, LOW_TAG)], "rx", Duration::ZERO, run));
    saturate(vec![(hi, HIGH_TAG)], "rx", Duration::ZERO, half).await?;
    lo_task.await??;
    let got = recv.await??;
    let split = got.start + half;
    let count = |tag: u8, after: bool| {
        got.arrivals
            .iter()
            .filter(|(t, at)| *t == tag && ((*at >= split) == after))
            .count() as f64
    };
    let h = half.as_secs_f64();
    Ok(PriorityResult {
        receiver_rate: rate,
        high_per_s: count(HIGH_TAG, false) / h,
        low_per_s_while_high: count(LOW_TAG, false) / h,
        low_per_s_alone: count(LOW_TAG, true) / (run - half).as_secs_f64(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn max_min_fills_the_small_demands_first() {
        let s = max_min(&[500.0, 500.0, 50_000.0], 10_000.0);
        assert_eq!(s, vec![500.0, 500.0, 9000.0]);
        let s = max_min(&[10.0, 10.0], 10.0);
        assert_eq!(s, vec![5.0, 5.0]);
    }

    #[test]
    fn jain_is_one_when_equal_and_one_over_n_when_one_has_all() {
        assert!((jain(&[2.0, 2.0, 2.0]) - 1.0).abs() < 1e-12);
        assert!((jain(&[1.0, 0.0, 0.0, 0.0]) - 0.25).abs() < 1e-12);
    }
}
