//! `tribune bench failover`: leader kills (or SIGTERMs) under write load, and a no-kill soak
//! that counts elections under the same load. Both check that no acknowledged write was lost.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};
use serde_json::json;
use tokio::task::JoinSet;
use tribune_controller::node::NodeStatus;
use tribune_controller::state::Policy;

use crate::Summary;
use crate::cluster::LocalCluster;

/// How the leader is stopped in each trial.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Stop {
    /// kill -9: a crash; the others elect after the election timeout.
    Kill9,
    /// SIGTERM: a graceful stop; the leader hands its leadership over before it exits.
    Sigterm,
}

#[derive(Debug, Serialize)]
pub struct FailoverReport {
    pub trials: usize,
    pub stop: Stop,
    /// Leader stopped (kill -9 or SIGTERM sent) → next acknowledged write, per trial.
    pub recovery_ms: Summary,
    pub samples_ms: Vec<f64>,
    /// When each stop happened (Unix ms): lines up the trials with the controllers' logs
    /// (`TRIBUNE_BENCH_LOG_DIR`) for a breakdown of where the time went.
    pub killed_at_unix_ms: Vec<u64>,
    /// With SIGTERM: how long each stopped leader took to exit.
    pub exit_ms: Option<Summary>,
    pub heartbeat_ms: u64,
    pub election_timeout_ms: u64,
    /// Concurrent background writers kept running through each kill.
    pub load_clients: usize,
    /// Writes the background load had acknowledged over the whole run.
    pub load_writes: u64,
    /// Background writes refused or unanswered (mostly: sent to the killed controller).
    pub load_failed: u64,
    /// Acknowledged background writes missing (or overwritten by an older value) at the end.
    pub lost_writes: u64,
}

/// Failover settings: Raft timing passed to every controller, background load.
#[derive(Debug, Clone, Copy)]
pub struct FailoverOpts {
    pub trials: usize,
    pub heartbeat_ms: u64,
    pub election_timeout_ms: u64,
    pub load_clients: usize,
    pub stop: Stop,
}

/// Background writers over every member: writer `w` writes `failover-w-(i % 64)` with its
/// sequence number `i` in the source, and remembers the last number acknowledged per name.
struct Load {
    stop: Arc<AtomicBool>,
    acked: Arc<AtomicU64>,
    failed: Arc<AtomicU64>,
    tasks: JoinSet<BTreeMap<String, u64>>,
}

fn load_name(w: usize, i: u64) -> String {
    format!("failover-{w}-{}", i % 64)
}

/// The sequence number a load write put in its source (`# <i>` at the end).
fn load_seq(source: &str) -> Option<u64> {
    source.rsplit_once("# ")?.1.trim().parse().ok()
}

impl Load {
    fn start(c: &LocalCluster, http: &reqwest::Client, clients: usize) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let acked = Arc::new(AtomicU64::new(0));
        let failed = Arc::new(AtomicU64::new(0));
        let mut tasks = JoinSet::new();
        for w in 0..clients {
            let (stop, acked, failed) = (stop.clone(), acked.clone(), failed.clone());
            let endpoints = c.endpoints();
            let http = http.clone();
            tasks.spawn(async move {
                let mut last = BTreeMap::new();
                let mut i = 0u64;
                while !stop.load(Ordering::Relaxed) {
                    let ep = &endpoints[(w + i as usize) % endpoints.len()];
                    let name = load_name(w, i);
                    let body = json!({"source": format!("policy \"{name}\" {{}} # {i}")});
                    let r = http
                        .put(format!("{ep}/v1/policies/{name}"))
                        .json(&body)
                        .timeout(Duration::from_secs(2))
                        .send()
                        .await;
                    if matches!(r, Ok(r) if r.status().is_success()) {
                        acked.fetch_add(1, Ordering::Relaxed);
                        last.insert(name, i);
                    } else {
                        failed.fetch_add(1, Ordering::Relaxed);
                        tokio::time::sleep(Duration::from_millis(10)).await;
                    }
                    i += 1;
                }
                last
            });
        }
        Self {
            stop,
            acked,
            failed,
            tasks,
        }
    }

    /// Stops the writers; what each acknowledged last, per name.
    async fn finish(mut self) -> BTreeMap<String, u64> {
        self.stop.store(true, Ordering::Relaxed);
        let mut last = BTreeMap::new();
        while let Some(r) = self.tasks.join_next().await {
            if let Ok(m) = r {
                last.extend(m);
            }
        }
        last
    }
}

/// Acknowledged writes that the cluster no longer holds: read each name back from the leader
/// (a linearizable read) and compare its sequence number with the last one acknowledged.
async fn lost_writes(
    c: &LocalCluster,
    http: &reqwest::Client,
    last: &BTreeMap<String, u64>,
) -> anyhow::Result<u64> {
    let leader = c.wait_leader(http, Duration::from_secs(30)).await?;
    let ep = c
        .endpoints_of(leader)
        .ok_or_else(|| anyhow::anyhow!("no endpoint for leader {leader}"))?;
    let mut lost = 0;
    for (name, &acked) in last {
        let r = http.get(format!("{ep}/v1/policies/{name}")).send().await?;
        let stored = if r.status() == reqwest::StatusCode::NOT_FOUND {
            None
        } else {
            let p: Policy = r.error_for_status()?.json().await?;
            load_seq(&p.source)
        };
        if stored.is_none_or(|s| s < acked) {
            eprintln!("lost: {name}: acknowledged #{acked}, stored {stored:?}");
            lost += 1;
        }
    }
    Ok(lost)
}

/// Runs `trials` leader stops against a fresh local 3-controller cluster under write load.
pub async fn failover(
    binary: &std::path::Path,
    opts: FailoverOpts,
    progress: impl Fn(usize, Duration),
) -> anyhow::Result<FailoverReport> {
    let timing = timing_args(opts.heartbeat_ms, opts.election_timeout_ms);
    let extra: Vec<&str> = timing.iter().map(String::as_str).collect();
    let http = http_client()?;
    let mut c = LocalCluster::start_ready(binary, 3, &extra, &http).await?;
    let load = Load::start(&c, &http, opts.load_clients);

    let mut samples = Vec::new();
    let mut exits = Vec::new();
    let mut killed_at = Vec::new();
    let result: anyhow::Result<()> = async {
        for trial in 0..opts.trials {
            let leader = c.wait_leader(&http, Duration::from_secs(30)).await?;
            let survivors: Vec<String> = c.endpoints_except(leader);
            // Warm: a write must go through before the kill.
            write_once(&http, &survivors, "warm", Duration::from_secs(30)).await?;
            let killed = Instant::now();
            killed_at.push(unix_ms());
            match opts.stop {
                Stop::Kill9 => c.kill9(leader)?,
                Stop::Sigterm => c.sigterm(leader)?,
            }
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
            if opts.stop == Stop::Sigterm {
                if !c.reap(leader, Duration::from_secs(20)).await? {
                    anyhow::bail!("controller {leader} did not exit within 20 s of SIGTERM");
                }
                exits.push(killed.elapsed());
            }
            c.restart(leader)?;
            // Back and nearly caught up (the background load keeps a small lag), then steady
            // state under load for a while: a crash strikes a cluster that has been up, at a
            // random point of the heartbeat cycle, not one still settling from the last kill.
            c.wait_caught_up(&http, Duration::from_secs(30), 64).await?;
            tokio::time::sleep(settle_time()).await;
        }
        Ok(())
    }
    .await;
    let (acked, failed) = (
        load.acked.load(Ordering::Relaxed),
        load.failed.load(Ordering::Relaxed),
    );
    let last = load.finish().await;
    result?;
    let lost = lost_writes(&c, &http, &last).await?;
    Ok(FailoverReport {
        trials: opts.trials,
        stop: opts.stop,
        recovery_ms: Summary::of_durations(&samples),
        samples_ms: samples.iter().map(|d| d.as_secs_f64() * 1000.0).collect(),
        killed_at_unix_ms: killed_at,
        exit_ms: (!exits.is_empty()).then(|| Summary::of_durations(&exits)),
        heartbeat_ms: opts.heartbeat_ms,
        election_timeout_ms: opts.election_timeout_ms,
        load_clients: opts.load_clients,
        load_writes: acked,
        load_failed: failed,
        lost_writes: lost,
    })
}

#[derive(Debug, Serialize)]
pub struct SoakReport {
    pub seconds: u64,
    pub heartbeat_ms: u64,
    pub election_timeout_ms: u64,
    pub load_clients: usize,
    pub load_writes: u64,
    pub load_failed: u64,
    /// The highest term any member reported at the start and at the end of the load.
    pub term_start: u64,
    pub term_end: u64,
    /// Terms started under the load (`term_end - term_start`): each is an election someone
    /// stood in. With no kills, every one is spurious.
    pub elections: u64,
    /// Times the agreed leader changed, sampled every 100 ms.
    pub leader_changes: u64,
    pub lost_writes: u64,
}

#[derive(Deserialize)]
struct ClusterView {
    members: Vec<Member>,
}

#[derive(Deserialize)]
struct Member {
    status: Option<NodeStatus>,
}

/// The highest term and the leader named by the members `ep` reaches.
pub(crate) async fn terms(http: &reqwest::Client, ep: &str) -> Option<(u64, Option<u64>)> {
    let v: ClusterView = crate::cluster::fetch_cluster(http, ep).await?;
    let statuses: Vec<&NodeStatus> = v.members.iter().filter_map(|m| m.status.as_ref()).collect();
    let term = statuses.iter().map(|s| s.term).max()?;
    let leader = statuses
        .iter()
        .find(|s| s.state == "leader" && s.term == term)
        .map(|s| s.id);
    Some((term, leader))
}

/// A fresh local 3-controller cluster under the full write load for `seconds`, no kills:
/// counts the elections and leader changes (all spurious) and checks for lost writes.
pub async fn soak(
    binary: &std::path::Path,
    opts: FailoverOpts,
    seconds: u64,
) -> anyhow::Result<SoakReport> {
    let timing = timing_args(opts.heartbeat_ms, opts.election_timeout_ms);
    let extra: Vec<&str> = timing.iter().map(String::as_str).collect();
    let http = http_client()?;
    let c = LocalCluster::start_ready(binary, 3, &extra, &http).await?;
    let endpoints = c.endpoints();
    let load = Load::start(&c, &http, opts.load_clients);
    let sample = async || {
        for ep in &endpoints {
            if let Some(t) = terms(&http, ep).await {
                return Some(t);
            }
        }
        None
    };
    let (term_start, mut leader) = sample()
        .await
        .ok_or_else(|| anyhow::anyhow!("no member answered /v1/cluster"))?;
    let (mut term_end, mut changes) = (term_start, 0);
    let end = Instant::now() + Duration::from_secs(seconds);
    while Instant::now() < end {
        tokio::time::sleep(Duration::from_millis(100)).await;
        if let Some((t, l)) = sample().await {
            term_end = term_end.max(t);
            if l.is_some() && l != leader {
                if leader.is_some() {
                    changes += 1;
                }
                leader = l;
            }
        }
    }
    let (acked, failed) = (
        load.acked.load(Ordering::Relaxed),
        load.failed.load(Ordering::Relaxed),
    );
    let last = load.finish().await;
    let lost = lost_writes(&c, &http, &last).await?;
    Ok(SoakReport {
        seconds,
        heartbeat_ms: opts.heartbeat_ms,
        election_timeout_ms: opts.election_timeout_ms,
        load_clients: opts.load_clients,
        load_writes: acked,
        load_failed: failed,
        term_start,
        term_end,
        elections: term_end - term_start,
        leader_changes: changes,
        lost_writes: lost,
    })
}

fn timing_args(heartbeat_ms: u64, election_timeout_ms: u64) -> [String; 4] {
    [
        "--heartbeat-ms".to_string(),
        heartbeat_ms.to_string(),
        "--election-timeout-ms".to_string(),
        election_timeout_ms.to_string(),
    ]
}

fn http_client() -> anyhow::Result<reqwest::Client> {
    Ok(reqwest::Client::builder()
        .timeout(Duration::from_secs(5))
        .tcp_nodelay(true)
        .build()?)
}

fn unix_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

/// 700–1200 ms, varied from the clock (no rand dependency for one number).
fn settle_time() -> Duration {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.subsec_nanos());
    Duration::from_millis(700 + u64::from(nanos % 500))
}

/// Writes until one write is acknowledged. Each attempt goes to the next survivor; a survivor
/// that still believes in the dead leader waits (server side) for the new one and forwards.
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_load_write_carries_its_sequence_number() {
        assert_eq!(load_seq("policy \"failover-1-3\" {} # 131"), Some(131));
        assert_eq!(load_seq("policy \"a\" {} # 0\n"), Some(0));
        assert_eq!(load_seq("policy \"a\" {}"), None);
        assert_eq!(load_seq("policy \"a\" {} # x"), None);
        assert_eq!(load_name(2, 131), "failover-2-3");
    }
}
