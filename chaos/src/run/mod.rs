//! The multi-process fault harness (`tribune chaos run`): three real controllers, each in its
//! own network namespace on a bridge of the run's own ([`net`]), clients writing and reading
//! policies while faults drawn from the seed are injected ([`faults`]), every operation in a
//! history file ([`history`]), and checkers that share no code with the controllers ([`check`],
//! [`logcheck`]). See `chaos/README.md`.

pub mod agents;
pub mod chain;
pub mod check;
pub mod enforce;
pub mod faults;
pub mod history;
pub mod logcheck;
pub mod members;
pub mod net;
pub mod nodes;
pub mod proxy;
pub mod torn;
pub mod watch;
pub mod workload;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde::Serialize;

pub use faults::Scenario;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("set-up: {0}")]
    Setup(String),
}

/// One run.
#[derive(Debug, Clone)]
pub struct Config {
    pub scenario: Scenario,
    pub seed: u64,
    /// How long faults are injected (the final checks come after).
    pub duration: Duration,
    /// The `tribune` binary the controllers run.
    pub binary: PathBuf,
    /// Where the run's directory (data, logs, history, report) goes; a temp dir otherwise.
    pub dir: Option<PathBuf>,
    /// Keep the run's directory even when nothing was found.
    pub keep: bool,
    /// `TRIBUNE_TEST_FAULT` for the controllers (only a `cargo test` build acts on it).
    pub test_fault: Option<String>,
    pub clients: u64,
    pub keys: usize,
}

impl Config {
    pub fn new(scenario: Scenario, seed: u64, duration: Duration, binary: PathBuf) -> Self {
        Self {
            scenario,
            seed,
            duration,
            binary,
            dir: None,
            keep: false,
            test_fault: None,
            clients: 4,
            keys: 3,
        }
    }

    /// The command that reruns this run.
    pub fn reproduce(&self) -> String {
        let mut s = format!(
            "tribune chaos run --scenario {} --seed {} --duration {}s",
            self.scenario.name(),
            self.seed,
            self.duration.as_secs()
        );
        if let Some(f) = &self.test_fault {
            s.push_str(&format!(" --test-fault {f}"));
        }
        s
    }
}

/// What a run found.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    pub scenario: Scenario,
    pub seed: u64,
    pub duration_s: f64,
    pub faults: faults::Counts,
    pub history: check::Verdict,
    /// Writes whose outcome was unknown, asked again with their idempotency keys after the
    /// faults healed: answered (their completion is that answer), and still unknown.
    pub unknown_writes_resolved: usize,
    pub unknown_writes_unresolved: usize,
    pub log: logcheck::LogVerdict,
    /// Controllers that exited by themselves (none should: every exit here is a kill).
    pub crashed: Vec<String>,
    /// Whether the healed cluster answered every final read.
    pub recovered: bool,
    /// What the proxy between the controllers did (measured).
    pub proxy: proxy::Stats,
    /// Torn tails written into a killed controller's log that it did not cut on restart
    /// (it logs each cut; a tear it did not see would be read as data).
    pub tears_not_cut: Vec<String>,
    /// With agents (`agents`, `mixed`): what the enforcement checker found.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub enforcement: Option<enforce::Verdict>,
    /// With agents: the usage chains in the attestation log.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub usage_chains: Option<chain::ChainVerdict>,
    /// The run's directory when kept (always when something was found).
    pub dir: Option<PathBuf>,
    pub reproduce: String,
}

impl Report {
    pub fn anomalies(&self) -> usize {
        self.history.anomalies()
            + self.log.anomalies.len()
            + self.crashed.len()
            + self.tears_not_cut.len()
            + usize::from(!self.recovered)
            + self.enforcement.as_ref().map_or(0, |e| e.anomalies.len())
            + self.usage_chains.as_ref().map_or(0, |c| c.anomalies.len())
    }

    /// Every anomaly, one per line.
    pub fn describe(&self) -> Vec<String> {
        let h = &self.history;
        let mut out = vec![];
        out.extend(
            h.not_linearizable
                .iter()
                .map(|k| format!("not linearizable: {k}")),
        );
        out.extend(h.lost_writes.iter().map(|x| format!("lost write: {x}")));
        out.extend(h.torn_reads.iter().map(|x| format!("torn read: {x}")));
        out.extend(
            h.malformed
                .iter()
                .map(|x| format!("malformed history: {x}")),
        );
        out.extend(self.log.anomalies.iter().map(|x| format!("log: {x}")));
        out.extend(self.crashed.iter().map(|x| format!("crashed: {x}")));
        out.extend(
            self.tears_not_cut
                .iter()
                .map(|x| format!("torn write: {x}")),
        );
        if !self.recovered {
            out.push("the healed cluster did not answer every final read".into());
        }
        if let Some(e) = &self.enforcement {
            out.extend(e.anomalies.iter().map(|x| format!("enforcement: {x}")));
        }
        if let Some(c) = &self.usage_chains {
            out.extend(c.anomalies.iter().map(|x| format!("usage chain: {x}")));
        }
        out.extend(h.inconclusive.iter().map(|k| {
            format!(
                "inconclusive: the linearizability search of {k} did not end within {} s (not judged)",
                check::SEARCH_BUDGET.as_secs()
            )
        }));
        out
    }

    /// Whether every check reached a verdict (a linearizability search can run out of time).
    pub fn conclusive(&self) -> bool {
        self.history.inconclusive.is_empty()
    }
}

/// Stops the clients when dropped (also when the run's future is dropped, e.g. on ctrl-c).
struct StopGuard(Arc<workload::Shared>);

impl Drop for StopGuard {
    fn drop(&mut self) {
        self.0.stop.store(true, Ordering::Relaxed);
    }
}

/// How long the healed cluster has to elect a leader and answer the final reads.
const RECOVERY: Duration = Duration::from_secs(60);

/// Runs one scenario; set-up failures are errors, what the checkers found is in the report.
pub async fn run(cfg: &Config) -> Result<Report, Error> {
    net::can_run().map_err(|e| Error::Setup(e.to_string()))?;
    net::sweep_stale();
    let tmp = match &cfg.dir {
        Some(d) => {
            std::fs::create_dir_all(d)
                .map_err(|e| Error::Setup(format!("creating {}: {e}", d.display())))?;
            tempfile::Builder::new()
                .prefix(&format!("{}-{}-", cfg.scenario.name(), cfg.seed))
                .tempdir_in(d)
        }
        None => tempfile::Builder::new()
            .prefix(&format!(
                "tribune-chaos-{}-{}-",
                cfg.scenario.name(),
                cfg.seed
            ))
            .tempdir(),
    }
    .map_err(|e| Error::Setup(format!("creating the run's directory: {e}")))?;
    let dir = tmp.path().to_path_buf();
    let started = Instant::now();
    let mut net = net::Net::create(3, nodes::PORT)?;
    let proxy = proxy::Proxy::start(&net.proxy_links(), cfg.seed).await?;
    let mut env = vec![("RUST_LOG".to_string(), "info".to_string())];
    // The clock hook is armed on a build that has it (it reads an offset of 0 until a
    // clock-jump fault writes one).
    let mut faults_on: Vec<String> = cfg.test_fault.iter().cloned().collect();
    if tribune_controller::test_fault::COMPILED_IN {
        faults_on.push(
            tribune_controller::test_fault::Fault::ClockOffset
                .name()
                .into(),
        );
    }
    if !faults_on.is_empty() {
        env.push((
            tribune_controller::test_fault::VAR.to_string(),
            faults_on.join(","),
        ));
    }
    let nodes = nodes::Nodes::new(&cfg.binary, &net.slots, &dir, env);
    let disks = nodes::Disks::mount(&net.tag, &nodes)?;
    // Rebound after `disks`, so dropped before them: the controllers die before their disks go.
    let mut nodes = nodes;
    for i in 0..nodes.nodes.len() {
        nodes.start(i)?;
    }
    let http = reqwest::Client::builder()
        .no_proxy()
        .pool_max_idle_per_host(0)
        .build()
        .map_err(|e| Error::Setup(format!("HTTP client: {e}")))?;
    let urls = nodes.urls();
    let rec = Arc::new(history::Recorder::new(Some(&dir.join("history.jsonl")))?);
    let shared = Arc::new(workload::Shared {
        urls: urls.clone(),
        keys: (1..=cfg.keys).map(|k| format!("k{k}")).collect(),
        rec: rec.clone(),
        http: http.clone(),
        next_process: AtomicU64::new(1),
        stop: AtomicBool::new(false),
        unresolved: Default::default(),
    });
    let _stop = StopGuard(shared.clone());
    if leader(&http, &urls, RECOVERY).await.is_none() {
        return Err(Error::Setup(format!(
            "no leader within {RECOVERY:?}; logs in {}\n{}",
            tmp.keep().display(),
            nodes.logs(30)
        )));
    }
    let heads = Arc::new(logcheck::Heads::default());
    let mut tasks = vec![];
    // The `agents` scenario faults no controller: two clients keep its history (checked all
    // the same) small beside the agents' work on a small machine.
    let clients = if cfg.scenario == Scenario::Agents {
        cfg.clients.min(AGENTS_CLIENTS)
    } else {
        cfg.clients
    };
    for c in 1..=clients {
        tasks.push(tokio::spawn(workload::client(shared.clone(), c, cfg.seed)));
    }
    tasks.push(tokio::spawn(poll_heads(
        shared.clone(),
        heads.clone(),
        cfg.seed,
    )));

    // The host agents, their enclaves, and the watcher of what the kernel enforces.
    let watch_stop = Arc::new(AtomicBool::new(false));
    let _watch_stop = StopFlag(watch_stop.clone());
    let mut agents = None;
    let mut watch = None;
    if cfg.scenario.has_agents() {
        let (a, w) = start_agents(cfg, &mut net, &http, &urls, &nodes, &dir, started).await?;
        tokio::spawn(w.clone().run(watch_stop.clone()));
        agents = Some(a);
        watch = Some(w);
    }
    // Agent faults come from a generator of their own (the controllers' schedule stays).
    let mut arng = ChaCha8Rng::seed_from_u64(cfg.seed ^ AGENT_FAULTS);

    // The faults.
    let mut rng = ChaCha8Rng::seed_from_u64(cfg.seed);
    let mut counts = faults::Counts::new();
    let mut crashed = vec![];
    let mut was_full = BTreeMap::new();
    let mut tears: BTreeMap<usize, usize> = BTreeMap::new();
    let end = Instant::now() + cfg.duration;
    while Instant::now() < end {
        tokio::time::sleep(faults::quiet(&mut rng).min(end - Instant::now())).await;
        if Instant::now() >= end || cfg.scenario == Scenario::None {
            continue;
        }
        let l = leader(&http, &urls, Duration::from_millis(500)).await;
        let mut world = faults::World {
            nodes: &mut nodes,
            net: &mut net,
            disks: &disks,
            proxy: &proxy,
        };
        let active = faults::inject(cfg.scenario, &mut rng, &mut world, l, &mut counts)?;
        let agent_active = match agents.as_mut() {
            Some(a) if cfg.scenario == Scenario::Agents || arng.random_bool(0.5) => Some(
                faults::inject_agent(&mut arng, &mut net, a, l, &mut counts)?,
            ),
            _ => None,
        };
        if let Some(w) = &watch {
            if active.is_some() || agent_active.is_some() {
                w.fault_begins();
            }
            match agent_active {
                Some(faults::AgentActive::Cut { agent, all }) => w.host(agent, |h| {
                    h.cut_all = all;
                    h.cut_some = !all;
                }),
                Some(faults::AgentActive::Killed(k)) => w.host(k, |h| h.killed = true),
                // Reaching some controllers only, in both of its phases: not judged.
                Some(faults::AgentActive::Behind { agent, .. }) => w.host(agent, |h| {
                    h.cut_some = true;
                }),
                None => {}
            }
        }
        if let Some(faults::Active::Torn(i)) = &active {
            *tears.entry(*i).or_default() += 1;
        }
        if let Some(faults::Active::Clock(i, ms)) = &active {
            let seen = clock_seen(&http, &urls[*i], *ms).await;
            *counts
                .entry(
                    if seen {
                        "clock-jump-observed"
                    } else {
                        "clock-jump-not-observed"
                    }
                    .into(),
                )
                .or_default() += 1;
        }
        if let Some(faults::Active::Removed(i)) = &active {
            let done = members::remove(&http, &urls, *i as u64 + 1, MEMBER_CHANGE).await;
            count_change(&mut counts, "member-removed", done);
        }
        if let Some(faults::Active::DiskFull(i)) = &active {
            // Full until freed: an exit meanwhile (or just after) is fail-stop.
            was_full.insert(*i, Instant::now() + Duration::from_secs(3600));
        }
        let until = Instant::now() + faults::hold(&mut rng);
        while Instant::now() < until {
            let step = match active {
                Some(faults::Active::Flapping { .. } | faults::Active::Resetting { .. }) => {
                    faults::flap_every(&mut rng)
                }
                _ => until - Instant::now(),
            };
            tokio::time::sleep(step.min(until.saturating_duration_since(Instant::now()))).await;
            if let Some(a) = &active {
                faults::flap(a, &mut net, &proxy)?;
            }
            crashed.extend(exits(&mut nodes, &was_full, &mut counts)?);
            crashed.extend(agent_exits(agents.as_mut()));
        }
        if let Some(aa) = agent_active
            && faults::rejoin_behind(aa, &mut net)?.is_some()
        {
            tokio::time::sleep(faults::hold(&mut arng)).await;
            crashed.extend(exits(&mut nodes, &was_full, &mut counts)?);
        }
        if let (Some(a), Some(aa)) = (agents.as_mut(), agent_active) {
            // The watcher stops guarding before the rules go (never after: a plan that arrives
            // once the cut is gone must not count as one received while cut off).
            if let Some(w) = &watch {
                let k = match aa {
                    faults::AgentActive::Cut { agent, .. }
                    | faults::AgentActive::Behind { agent, .. }
                    | faults::AgentActive::Killed(agent) => agent,
                };
                w.host(k, |h| {
                    if h.killed {
                        h.guard_until = Some(Instant::now() + enforce::GUARD_AFTER);
                    }
                    h.cut_all = false;
                    h.cut_some = false;
                    h.killed = false;
                });
            }
            faults::undo_agent(aa, &mut net, a)?;
        }
        if let Some(a) = &active {
            let mut world = faults::World {
                nodes: &mut nodes,
                net: &mut net,
                disks: &disks,
                proxy: &proxy,
            };
            faults::undo(a, &mut world)?;
            if let faults::Active::Removed(i) = a {
                let addr = nodes.nodes[*i].addr();
                let done = members::add(&http, &urls, *i as u64 + 1, &addr, MEMBER_CHANGE).await;
                count_change(&mut counts, "member-added", done);
            }
            if let faults::Active::DiskFull(i) = a {
                was_full.insert(*i, Instant::now());
            }
        }
        crashed.extend(exits(&mut nodes, &was_full, &mut counts)?);
        if let Some(w) = &watch
            && (active.is_some() || agent_active.is_some())
        {
            w.settle();
        }
    }

    // Heal everything, stop the clients, then the final reads through every controller.
    // (The watcher stops guarding the hosts first, as above.)
    if let Some(w) = &watch {
        for k in 0..agents::AGENTS {
            w.host(k, |h| {
                h.cut_all = false;
                h.cut_some = false;
                h.killed = false;
            });
        }
    }
    net.heal()?;
    proxy.heal();
    for i in 0..nodes.nodes.len() {
        nodes.resume(i);
        nodes.start(i)?;
    }
    if let (Some(a), Some(w)) = (agents.as_mut(), &watch) {
        for k in 0..a.agents.len() {
            if !a.alive(k) {
                w.host(k, |h| {
                    h.guard_until = Some(Instant::now() + enforce::GUARD_AFTER)
                });
                a.start(k)?;
            }
        }
        w.settle();
    }
    // The clients stop when the faults are healed, before the membership is repaired: the
    // history covers the faults. While a re-add is slow (up to `RECOVERY`) every write through
    // the node being added timed out as outcome-unknown; tens of those on one key made the
    // linearizability search run for many minutes (a CI run of `mixed` seed 1 hung on it).
    shared.stop.store(true, Ordering::Relaxed);
    for t in tasks {
        let _ = t.await;
    }
    // Every controller a voter again (a re-add may have failed under the faults).
    let addrs: Vec<String> = nodes.nodes.iter().map(|n| n.addr()).collect();
    let voters = members::ensure_voters(&http, &urls, &addrs, RECOVERY).await;
    crashed.extend(exits(&mut nodes, &was_full, &mut counts)?);
    // Writes whose outcome was unknown: asked again with their idempotency keys, before the
    // final reads (a write never applied before is applied now).
    let (resolved, unresolved) = workload::resolve(&shared, RECOVERY).await;
    let (finals, recovered) = final_reads(&shared).await;
    let recovered = recovered && voters;
    crashed.extend(exits(&mut nodes, &was_full, &mut counts)?);
    crashed.extend(agent_exits(agents.as_mut()));
    // With agents: the budget is judged once more after healing (every host settled, then a
    // whole budget), then the watcher stops.
    let enforcement = match &watch {
        Some(w) => {
            let until = w.settled_from() + enforce::BUDGET + Duration::from_secs(1);
            tokio::time::sleep(until.saturating_duration_since(Instant::now())).await;
            watch_stop.store(true, Ordering::Relaxed);
            w.tick();
            crashed.extend(agent_exits(agents.as_mut()));
            Some(w.verdict())
        }
        None => None,
    };
    let history = check::check(&rec.events(), &finals);
    let last = final_head(&http, &urls).await;
    let log = match &last {
        Some((url, last)) => logcheck::check(&http, url, &heads.all(), last).await,
        None => logcheck::LogVerdict {
            anomalies: vec!["no controller served a tree head after the faults healed".into()],
            ..Default::default()
        },
    };
    let usage_chains = match (&agents, &last) {
        (None, _) => None,
        (Some(_), Some((url, _))) => Some(match chain::fetch(&http, url).await {
            Some(entries) => chain::check(&entries),
            None => chain::ChainVerdict {
                anomalies: vec![format!("the log's entries could not be read from {url}")],
                ..Default::default()
            },
        }),
        // No head: already an anomaly of the log checker.
        (Some(_), None) => Some(chain::ChainVerdict::default()),
    };
    let tears_not_cut = tears
        .iter()
        .filter_map(|(&i, &n)| {
            let cut = torn::cuts_logged(&nodes.nodes[i].log);
            (cut < n).then(|| {
                format!(
                    "controller {}: {n} torn tails written, {cut} cut on restart",
                    i + 1
                )
            })
        })
        .collect();
    let mut report = Report {
        scenario: cfg.scenario,
        seed: cfg.seed,
        duration_s: started.elapsed().as_secs_f64(),
        faults: counts,
        history,
        unknown_writes_resolved: resolved,
        unknown_writes_unresolved: unresolved,
        log,
        crashed,
        recovered,
        proxy: proxy.stats(),
        tears_not_cut,
        enforcement,
        usage_chains,
        dir: None,
        reproduce: cfg.reproduce(),
    };
    // The agents stop their enclaves before the controllers and the network go.
    drop(agents);
    drop(nodes);
    drop(disks);
    drop(proxy);
    drop(net);
    if report.anomalies() > 0 || cfg.keep {
        report.dir = Some(tmp.keep());
    }
    if let Some(d) = &report.dir
        && let Ok(j) = serde_json::to_vec_pretty(&report)
    {
        let _ = std::fs::write(d.join("report.json"), j);
    }
    Ok(report)
}

/// Whether the controller at `url` signs tree heads with its clock offset by about `ms` (the
/// jump really reached the clock it reads), within 3 s.
async fn clock_seen(http: &reqwest::Client, url: &str, ms: i64) -> bool {
    let deadline = Instant::now() + Duration::from_secs(3);
    while Instant::now() < deadline {
        if let Some(v) = logcheck::get(http, &format!("{url}/v1/log/sth")).await
            && let Some(ts) = v["timestamp_ms"].as_i64()
        {
            let real = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_millis() as i64);
            if (ts - real - ms).abs() < 1000 {
                return true;
            }
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    false
}

/// How long one membership change may take (it may fail under faults).
const MEMBER_CHANGE: Duration = Duration::from_secs(5);

/// Counts a membership change, or its failure (under faults, not an anomaly).
fn count_change(counts: &mut faults::Counts, kind: &str, done: bool) {
    let k = if done {
        kind.to_string()
    } else {
        format!("{kind}-failed")
    };
    *counts.entry(k).or_default() += 1;
}

/// How long after its disk was freed a controller's exit still counts as fail-stop on the
/// full disk (it may be finishing its exit when the space comes back).
const FULL_DISK_GRACE: Duration = Duration::from_secs(10);

/// Controllers that exited by themselves, as anomalies — except one whose disk is or was just
/// full (`was_full`: index → when freed), which may stop (fail-stop: counted as
/// `exit-on-disk-full` and restarted at once, its disk being free or freed soon).
fn exits(
    nodes: &mut nodes::Nodes,
    was_full: &BTreeMap<usize, Instant>,
    counts: &mut faults::Counts,
) -> Result<Vec<String>, Error> {
    let mut out = vec![];
    for (id, how) in nodes.reap_exited() {
        let i = id as usize - 1;
        if was_full
            .get(&i)
            .is_some_and(|freed| Instant::now() < *freed + FULL_DISK_GRACE)
        {
            *counts.entry("exit-on-disk-full".into()).or_default() += 1;
            nodes.start(i)?;
        } else {
            out.push(format!("controller {id} exited by itself: {how}"));
        }
    }
    Ok(out)
}

/// The leader's index, when the reachable controllers agree on one within `within`.
async fn leader(http: &reqwest::Client, urls: &[String], within: Duration) -> Option<usize> {
    let deadline = Instant::now() + within;
    loop {
        let mut seen = vec![];
        for u in urls {
            if let Some(v) = logcheck::get(http, &format!("{u}/v1/cluster")).await {
                seen.push(v["leader"].as_u64());
            }
        }
        if let Some(Some(l)) = seen.first()
            && seen.len() * 2 > urls.len()
            && seen.iter().all(|x| *x == Some(*l))
            && (1..=urls.len() as u64).contains(l)
        {
            return Some(*l as usize - 1);
        }
        if Instant::now() >= deadline {
            return None;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Reads every signed tree head it can, from random controllers, until the clients stop.
async fn poll_heads(s: Arc<workload::Shared>, heads: Arc<logcheck::Heads>, seed: u64) {
    let mut rng = ChaCha8Rng::seed_from_u64(seed ^ 0x5348);
    while !s.stop.load(Ordering::Relaxed) {
        let u = &s.urls[rng.random_range(0..s.urls.len())];
        if let Some(v) = logcheck::get(&s.http, &format!("{u}/v1/log/sth")).await
            && let Ok(h) = serde_json::from_value::<logcheck::Sth>(v)
        {
            heads.push(h);
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// A tree head from the healed cluster (after every head the poller saw).
async fn final_head(http: &reqwest::Client, urls: &[String]) -> Option<(String, logcheck::Sth)> {
    let deadline = Instant::now() + RECOVERY;
    while Instant::now() < deadline {
        for u in urls {
            if let Some(v) = logcheck::get(http, &format!("{u}/v1/log/sth")).await
                && let Ok(h) = serde_json::from_value(v)
            {
                return Some((u.clone(), h));
            }
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    None
}

/// Reads every key through every controller (recorded in the history, retried until each
/// answers); the highest version read per key, and whether every read was answered.
async fn final_reads(s: &workload::Shared) -> (BTreeMap<String, u64>, bool) {
    let deadline = Instant::now() + RECOVERY;
    let mut finals = BTreeMap::new();
    let mut all = true;
    for key in &s.keys {
        for node in 0..s.urls.len() {
            let mut process = s.next_process.fetch_add(1, Ordering::Relaxed);
            loop {
                let (next, kind, ret) =
                    workload::recorded(s, 0, process, node, key, history::Op::Read).await;
                process = next;
                if kind == history::Kind::Ok {
                    if let Some(history::Ret::Read { version, .. }) = ret {
                        let f = finals.entry(key.clone()).or_insert(0);
                        *f = version.max(*f);
                    }
                    break;
                }
                if Instant::now() >= deadline {
                    all = false;
                    break;
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    }
    (finals, all)
}

/// Sets its flag when dropped (stops the watcher also when the run's future is dropped).
struct StopFlag(Arc<AtomicBool>);

impl Drop for StopFlag {
    fn drop(&mut self) {
        self.0.store(true, Ordering::Relaxed);
    }
}

/// Clients in the `agents` scenario.
const AGENTS_CLIENTS: u64 = 2;

/// The agents' fault generator's seed is the run's seed xor this.
const AGENT_FAULTS: u64 = 0x4147_454e_5446;
/// The agents' workload generator's (late enclaves' start times).
const AGENT_WORKLOAD: u64 = 0x4147_454e_574c;

/// How long the agents have to cap (or freeze) their greedy enclaves before the faults begin;
/// the checker judges that start too, so a slow start is found, not waited for forever.
const AGENTS_READY: Duration = Duration::from_secs(30);

/// Defines the agents' policies and enclaves, starts the agents in namespaces of their own,
/// and waits (up to [`AGENTS_READY`]) until their greedy enclaves are capped or frozen.
#[allow(clippy::too_many_arguments)]
async fn start_agents(
    cfg: &Config,
    net: &mut net::Net,
    http: &reqwest::Client,
    urls: &[String],
    nodes: &nodes::Nodes,
    dir: &std::path::Path,
    started: Instant,
) -> Result<(agents::Agents, watch::Watch), Error> {
    agents::sweep_stale(&cfg.binary);
    net.add_agents(agents::AGENTS)?;
    let mut wrng = ChaCha8Rng::seed_from_u64(cfg.seed ^ AGENT_WORKLOAD);
    let specs = agents::workload(agents::AGENTS, &mut wrng, cfg.duration);
    agents::define(http, urls, &specs, RECOVERY).await?;
    let mut env = vec![("RUST_LOG".to_string(), "info".to_string())];
    if let Some(f) = &cfg.test_fault {
        env.push((tribune_agent::test_fault::VAR.to_string(), f.clone()));
    }
    let addrs: Vec<String> = nodes.nodes.iter().map(|n| n.addr()).collect();
    let mut a = agents::Agents::new(&cfg.binary, &net.tag, &net.agents, &addrs, dir, env)?;
    for k in 0..a.agents.len() {
        a.start(k)?;
    }
    let instances = a.agents.iter().map(|x| x.instance.clone()).collect();
    let w = watch::Watch::new(
        enforce::Checker::new(agents::watched(&specs)),
        instances,
        started,
    );
    let spinning: Vec<(usize, String, u64)> = specs
        .iter()
        .filter(|s| matches!(s.kind, agents::Kind::Greedy | agents::Kind::Suspends))
        .map(|s| (s.host, s.name.clone(), s.limit_m))
        .collect();
    let deadline = Instant::now() + AGENTS_READY;
    while !w.all_enforced(&spinning) && Instant::now() < deadline {
        w.tick();
        tokio::time::sleep(watch::EVERY).await;
    }
    Ok((a, w))
}

/// Agents that exited by themselves, as anomalies (every exit here is a kill).
fn agent_exits(agents: Option<&mut agents::Agents>) -> Vec<String> {
    agents.map_or_else(Vec::new, |a| {
        a.reap_exited()
            .into_iter()
            .map(|(host, how)| format!("agent {host} exited by itself: {how}"))
            .collect()
    })
}
