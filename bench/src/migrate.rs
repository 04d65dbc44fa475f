//! `tribune bench migrate` (root, QEMU): live migrations driven by a local 3-controller
//! cluster between two real agents with the QEMU runtime, back and forth, for one built-in
//! guest (the counter, or the writer that keeps dirtying N MiB: `tribune_agent::Guest`).
//!
//! Two phases, each `trials` migrations:
//! - **request**: `POST /v1/enclaves/{id}/migrate` → committed (the enclave placed on the
//!   target under epoch + 1) → the guest running there (its counter, read over the target
//!   VM's migration monitor, advancing), beside QEMU's own figures of the same migration
//!   (`query-migrate`: total time, downtime, bytes sent, dirty-page rate) as the floor. The
//!   guest runs while it is sent: this is where the writer's dirtying shows.
//! - **breach** (`migrate_breach`): a policy's limit is lowered under what the VM uses and its
//!   ladder says `migrate now`: breach → decision → migration started (target checked:
//!   attested within `attest_max_age_s`, room) → target ready → committed → running on the
//!   target. The ladder's `migrate` step suspends the enclave on its source (every step from
//!   `suspend` on does), so this phase moves a paused guest.

use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use serde::Serialize;
use serde_json::{Value, json};
use tribune_agent::Guest;
use tribune_agent::runtime::qemu::{MIGRATE_SOCKET, guest_counter};
use tribune_agent::runtime::qmp::Qmp;
use tribune_testkit::agent::{AgentOptions, AgentProcess};

use crate::Summary;
use crate::cluster::LocalCluster;

#[derive(Debug, Clone, Copy)]
pub struct MigrateConfig {
    /// Migrations per phase (request, breach).
    pub trials: usize,
    /// The guest's memory.
    pub memory_mib: u64,
    /// The built-in guest it boots.
    pub guest: Guest,
    /// Run the breach phase too.
    pub breach: bool,
    /// Give the VM a NIC in its enclave namespace (agents with `--subnet`): its migration
    /// stream's socket is then opened by the agents and handed to QEMU
    /// (`host-agent/src/agent/handoff.rs`).
    pub network: bool,
}

impl Default for MigrateConfig {
    fn default() -> Self {
        MigrateConfig {
            trials: 20,
            memory_mib: 128,
            guest: Guest::Counter,
            breach: true,
            network: false,
        }
    }
}

/// The guest's name in figures: `counter` or `writer-NMiB`.
pub fn guest_name(g: Guest) -> String {
    match g {
        Guest::Counter => "counter".into(),
        Guest::Writer { mib } => format!("writer-{mib}MiB"),
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct MigrateResult {
    pub guest: String,
    /// The VM had a NIC: its stream's socket was handed to QEMU by the agents.
    pub network: bool,
    pub trials: usize,
    pub memory_mib: u64,
    pub committed: usize,
    pub rolled_back: usize,
    /// Request → committed (placed on the target under the new epoch), as the client saw it.
    pub total_ms: Summary,
    /// Request → the guest's counter advancing on the target.
    pub running_ms: Summary,
    /// QEMU's own figures of each committed migration (`query-migrate`, last report).
    pub qemu: QemuFigures,
    /// Why each rolled-back trial rolled back.
    pub reasons: Vec<String>,
    /// The breach phase, when run.
    pub breach: Option<crate::migrate_breach::BreachResult>,
}

/// QEMU's figures of committed migrations.
#[derive(Debug, Clone, Default, Serialize)]
pub struct QemuFigures {
    pub total_ms: Summary,
    pub downtime_ms: Summary,
    /// Bytes sent, in MB (10^6).
    pub transferred_mb: Summary,
    /// The highest dirty-page rate QEMU reported while it ran (progress every 250 ms), pages/s.
    pub dirty_pages_per_s: Summary,
    /// QEMU's throughput figure, Mbit/s.
    pub mbps: Summary,
}

/// Collects [`QemuFigures`] from migration records' `progress`.
#[derive(Default)]
pub(crate) struct QemuSamples {
    total: Vec<f64>,
    downtime: Vec<f64>,
    mb: Vec<f64>,
    dirty: Vec<f64>,
    mbps: Vec<f64>,
}

impl QemuSamples {
    pub(crate) fn push(&mut self, record: &Value) {
        let p = &record["progress"];
        let f = |k: &str| p[k].as_f64().unwrap_or(0.0);
        self.total.push(f("total_time_ms"));
        self.downtime.push(f("downtime_ms"));
        self.mb.push(f("transferred_bytes") / 1e6);
        self.dirty.push(f("max_dirty_pages_rate"));
        self.mbps.push(f("mbps"));
    }

    pub(crate) fn summary(mut self) -> QemuFigures {
        QemuFigures {
            total_ms: Summary::of_ms(&mut self.total),
            downtime_ms: Summary::of_ms(&mut self.downtime),
            transferred_mb: Summary::of_ms(&mut self.mb),
            dirty_pages_per_s: Summary::of_ms(&mut self.dirty),
            mbps: Summary::of_ms(&mut self.mbps),
        }
    }
}

pub(crate) async fn call(
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
pub(crate) async fn wait<T>(
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

/// Waits (up to 30 s) until the guest's counter advances on `host`, read over its VM's
/// migration monitor (free on a VM that is not sending one); gives when it was first seen
/// larger. The monitor is let go at once, for the next migration.
pub(crate) async fn running_on(dir: &Path, host: &str) -> anyhow::Result<Instant> {
    let sock = dir.join(host).join("enclaves/vm").join(MIGRATE_SOCKET);
    let mut qmp = Qmp::connect(&sock, Duration::from_secs(10))
        .await
        .with_context(|| format!("the VM's monitor on {host}"))?;
    let first = guest_counter(&mut qmp).await?;
    let start = Instant::now();
    loop {
        let now = guest_counter(&mut qmp).await?;
        if now > first {
            return Ok(Instant::now());
        }
        if start.elapsed() > Duration::from_secs(30) {
            bail!("the guest's counter stayed at {first} on {host} for 30 s");
        }
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
}

/// The finished migration `id` from `GET /v1/migrations` (up to 200 s), with the highest
/// dirty-page rate its progress showed while under way (`progress.max_dirty_pages_rate`,
/// added here: the last figure QEMU gives, at completion, is 0).
pub(crate) async fn finished(http: &reqwest::Client, api: &str, id: &str) -> anyhow::Result<Value> {
    let mut dirty = 0u64;
    let mut done = wait(
        "the migration to end",
        Duration::from_secs(200),
        async || {
            let (_, v) = call(
                http,
                reqwest::Method::GET,
                &format!("{api}/v1/migrations"),
                None,
            )
            .await
            .ok()?;
            if let Some(m) = v["current"]
                .as_array()
                .and_then(|c| c.iter().find(|m| m["id"] == id))
            {
                dirty = dirty.max(m["progress"]["dirty_pages_rate"].as_u64().unwrap_or(0));
            }
            v["past"]
                .as_array()?
                .iter()
                .find(|p| p["id"] == id)
                .cloned()
        },
    )
    .await?;
    done["progress"]["max_dirty_pages_rate"] = json!(dirty);
    Ok(done)
}

/// The cluster, the two agents and the VM running on `bm1`.
pub(crate) struct Setup {
    pub http: reqwest::Client,
    pub api: String,
    pub dir: tempfile::TempDir,
    // Dropped in order: agents (their VMs stay until the directory goes), then controllers,
    // then the namespaces and the bridge.
    _agents: Vec<AgentProcess>,
    _cluster: LocalCluster,
    _net: tribune_chaos::run::net::Net,
}

async fn setup(binary: &Path, cfg: &MigrateConfig) -> anyhow::Result<Setup> {
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
    let dir = tempfile::tempdir()?;
    // No cool-down and no return rule (`return_after_s`): the trials migrate the VM back
    // and forth, the breach phase by policy — exactly the oscillation both exist to stop.
    let config = dir.path().join("controller.toml");
    // The targets listen on ports of this run's own, not the default 7500-7999 a `tribune dev`
    // on this machine may be using.
    let span = 64;
    let first = tribune_testkit::ports::try_free_port_span(span)?;
    std::fs::write(
        &config,
        format!(
            "[migration]\ncooldown_s = 0\nreturn_after_s = 0\nport_base = {first}\nport_span = {span}\n"
        ),
    )?;
    let config = config.display().to_string();
    // Two hosts in network namespaces of their own on a bridge, no loopback shortcut (the
    // chaos harness's topology): the controllers listen on the bridge's address; each agent,
    // the VM it runs and the migration stream it sends or takes on its namespace's.
    tribune_chaos::run::net::can_run()
        .map_err(|e| anyhow::anyhow!("tribune bench migrate needs network namespaces: {e}"))?;
    let mut net = tribune_chaos::run::net::Net::create(0, 0)
        .map_err(|e| anyhow::anyhow!("making the bridge: {e}"))?;
    net.add_agents(2)
        .map_err(|e| anyhow::anyhow!("making the hosts' namespaces: {e}"))?;
    let cluster = LocalCluster::start_ready_on(
        binary,
        3,
        &["--allow-sim-evidence", "--config", &config],
        &http,
        net.gateway,
    )
    .await?;
    let endpoints = cluster.endpoints();
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
    // the host records name the address a target listens on (as an operator's would): its
    // namespace's.
    for (h, slot) in ["bm1", "bm2"].into_iter().zip(&net.agents) {
        let body = json!({"id": h, "address": slot.ip.to_string(), "tee": "sim",
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
    for (k, (h, slot)) in ["bm1", "bm2"].into_iter().zip(&net.agents).enumerate() {
        let mut extra = vec!["--runtime".to_string(), "qemu".to_string()];
        if cfg.network {
            extra.extend(["--subnet".to_string(), format!("10.{}.0", 81 + k)]);
        }
        agents.push(AgentProcess::start(&AgentOptions {
            binary: binary.to_path_buf(),
            instance: format!("bm{pid}-{h}"),
            host: h.into(),
            data_dir: dir.path().join(h),
            launch_policy: policy.clone(),
            controllers: controllers.clone(),
            tls_dir: None,
            extra,
            // TRIBUNE_BENCH_LOG_DIR=DIR keeps the agents' logs (with the controllers').
            env: Vec::new(),
            log: std::env::var_os("TRIBUNE_BENCH_LOG_DIR")
                .map_or_else(|| dir.path().to_path_buf(), std::path::PathBuf::from)
                .join(format!("agent-{h}.log")),
            netns: Some(slot.ns.clone()),
        })?);
    }
    let api = endpoints[0].clone();
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
    let mut qemu = json!({"memory_mib": cfg.memory_mib, "network": cfg.network});
    if let Guest::Writer { mib } = cfg.guest {
        qemu["guest"] = json!({"writer": {"mib": mib}});
    }
    let body = json!({"id": "vm", "tenant": "bench", "tee": "sim",
        "placement": {"host": "bm1", "epoch": 1}, "state": "running",
        "launch": {"qemu": qemu}});
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
    // Running on bm1: its migration monitor is there, and the counter goes up.
    let sock = dir.path().join("bm1/enclaves/vm").join(MIGRATE_SOCKET);
    wait("the VM on bm1", Duration::from_secs(60), async || {
        sock.exists().then_some(())
    })
    .await?;
    running_on(dir.path(), "bm1").await?;
    Ok(Setup {
        http,
        api,
        dir,
        _agents: agents,
        _cluster: cluster,
        _net: net,
    })
}

/// Runs the scenario with `binary` (root and qemu-system-x86_64 needed).
pub async fn migrate(binary: &Path, cfg: &MigrateConfig) -> anyhow::Result<MigrateResult> {
    let st = setup(binary, cfg).await?;
    let (http, api) = (&st.http, st.api.as_str());
    let (mut totals, mut running, mut qemu, mut reasons) =
        (Vec::new(), Vec::new(), QemuSamples::default(), Vec::new());
    let mut on = "bm1";
    let mut arrived_ms = 0;
    for trial in 0..cfg.trials {
        let to = if on == "bm1" { "bm2" } else { "bm1" };
        let t0 = Instant::now();
        let (s, m) = call(
            http,
            reqwest::Method::POST,
            &format!("{api}/v1/enclaves/vm/migrate"),
            Some(&json!({"to": to, "force": true})),
        )
        .await?;
        if s != 202 {
            bail!("trial {trial}: POST migrate: {s} {m}");
        }
        let id = m["id"].as_str().unwrap_or_default().to_string();
        let done = finished(http, api, &id)
            .await
            .with_context(|| format!("trial {trial}"))?;
        let elapsed = t0.elapsed();
        if done["phase"] == "committed" {
            let ran = running_on(st.dir.path(), to)
                .await
                .with_context(|| format!("trial {trial}"))?;
            totals.push(elapsed.as_secs_f64() * 1000.0);
            running.push((ran - t0).as_secs_f64() * 1000.0);
            qemu.push(&done);
            on = to;
            arrived_ms = done["ended_ms"].as_i64().unwrap_or(0);
        } else {
            reasons.push(done["reason"].as_str().unwrap_or_default().to_string());
        }
    }
    let breach = if cfg.breach {
        Some(crate::migrate_breach::breach(&st, cfg.trials, on, arrived_ms).await?)
    } else {
        None
    };
    Ok(MigrateResult {
        guest: guest_name(cfg.guest),
        trials: cfg.trials,
        memory_mib: cfg.memory_mib,
        network: cfg.network,
        committed: totals.len(),
        rolled_back: reasons.len(),
        total_ms: Summary::of_ms(&mut totals),
        running_ms: Summary::of_ms(&mut running),
        qemu: qemu.summary(),
        reasons,
        breach,
    })
}
