//! `tribune agent …`: the host agent and its debugging verbs.
//!
//! `tribune agent [run] [--config FILE] --data-dir DIR --runtime process|qemu [--controllers
//! ADDR…]` runs the agent (settings: flag > `TRIBUNE_AGENT_…` variable > `--config` file >
//! default, see [`super::agent_config`]); `apply` and `status` talk to a running agent through
//! `DIR/agent.sock`; `run-enclave` launches one enclave under limits until Ctrl-C; `cleanup`
//! removes leftovers of a crash.
//!
//! What the agent launches is the host's own decision: `--launch-policy FILE` (the allow-list,
//! docs/agent.md); without one every launch is refused. Enclaves run unprivileged
//! (`--enclave-uids`, or one `--enclave-uid`/`--enclave-gid` for all).

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context;
use clap::builder::BoolishValueParser;
use clap::{Args, Subcommand, ValueEnum};
use serde::Deserialize;
use tribune_agent::agent::{AgentStatus, Request};
use tribune_agent::control::{self, ClientRequest};
use tribune_agent::link::{self, LinkConfig};
use tribune_agent::net::{NetConfig, Uplink};
use tribune_agent::runtime::EnclaveStatus;
use tribune_agent::units::{parse_bits_per_sec, parse_bytes, parse_cpu_millicores};
use tribune_agent::{
    Agent, AgentConfig, AllowList, Bandwidth, EnclavePlan, LaunchPolicy, LaunchSpec, Limits, Plan,
    RunState, RuntimeKind,
};

use super::agent_config::AgentSettings;
use super::output::{self, Format};
use super::units;

pub const DATA_DIR_DEFAULT: &str = "/var/lib/tribune/agent";

#[derive(Args, Debug)]
#[command(args_conflicts_with_subcommands = true)]
pub struct AgentArgs {
    // Boxed: the top-level command enum stays small.
    #[command(subcommand)]
    pub command: Option<Box<AgentCmd>>,
    /// With no subcommand: run the agent.
    #[command(flatten)]
    pub run: Box<RunArgs>,
}

#[derive(Subcommand, Debug)]
pub enum AgentCmd {
    /// Run the agent (the default when no subcommand is given).
    Run(Box<RunArgs>),
    /// Hand a plan (JSON) to the running agent of DATA_DIR.
    Apply(ApplyArgs),
    /// Show enclaves, the applied plan version and current usage.
    Status(StatusArgs),
    /// Launch one enclave under limits and run until Ctrl-C (or until it exits).
    RunEnclave(RunEnclaveArgs),
    /// Remove the cgroups, namespaces and links an agent instance left behind (after a crash);
    /// `--all`: every instance's.
    Cleanup(CleanupArgs),
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, ValueEnum, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RuntimeArg {
    #[default]
    Process,
    Qemu,
}

/// Where the agent's cgroups live.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, ValueEnum, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum CgroupParent {
    /// `tribune/INSTANCE` below the hierarchy's root (`/sys/fs/cgroup`).
    #[default]
    Root,
    /// Below the agent's own group, which a service manager delegated to it (systemd
    /// `Delegate=yes`); the agent moves itself into its leaf `agent/`. cgroup v2 only.
    Delegated,
}

impl From<RuntimeArg> for RuntimeKind {
    fn from(r: RuntimeArg) -> Self {
        match r {
            RuntimeArg::Process => RuntimeKind::Process,
            RuntimeArg::Qemu => RuntimeKind::Qemu,
        }
    }
}

/// The flags of `tribune agent run`. Each is also a `TRIBUNE_AGENT_…` variable and a key of the
/// `--config` file; [`RunArgs::resolve`] applies the precedence and the defaults.
#[derive(Args, Debug, Clone, Default)]
pub struct RunArgs {
    /// TOML file with the same settings as these flags (docs/agent.md, deploy/agent.toml);
    /// flags and variables win over it. Unknown keys are refused.
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Directory for the agent's state (applied plan, control socket)
    /// [default: /var/lib/tribune/agent].
    #[arg(long)]
    pub data_dir: Option<PathBuf>,
    /// How enclaves run [default: process].
    #[arg(long, value_enum)]
    pub runtime: Option<RuntimeArg>,
    /// Controller addresses (HOST:PORT), tried in order; without any the agent runs standalone
    /// on its local plan.
    #[arg(long, num_args = 1.., value_delimiter = ',')]
    pub controllers: Vec<String>,
    /// The host this agent speaks for (must match its certificate); default: the instance name.
    #[arg(long)]
    pub host_id: Option<String>,
    #[command(flatten)]
    pub tls: super::tls_args::TlsArgs,
    /// Without root: launch and measure enclaves (from /proc) but enforce nothing. The
    /// controllers show the host as observe-only.
    #[arg(
        long,
        value_name = "BOOL",
        num_args = 0..=1,
        require_equals = true,
        default_missing_value = "true",
        value_parser = BoolishValueParser::new()
    )]
    pub observe_only: Option<bool>,
    /// Names this agent's cgroups (`tribune/INSTANCE`) and namespaces (`tb-INSTANCE-…`)
    /// [default: agent].
    #[arg(long)]
    pub instance: Option<String>,
    /// Sampling period of the collectors, in milliseconds [default: 100].
    #[arg(long)]
    pub sample_period_ms: Option<u64>,
    /// Pin enclaves to these CPUs (cpuset syntax, e.g. `1` or `0-3`).
    #[arg(long)]
    pub cpuset: Option<String>,
    /// Enable enclave networking on this /24 (first three octets, e.g. `10.77.0`).
    #[arg(long)]
    pub subnet: Option<String>,
    /// Bridge uplink device, where enclave egress is shaped (needs --subnet).
    #[arg(long)]
    pub uplink: Option<String>,
    /// Capacity of the uplink [default: 1Gbit].
    #[arg(long)]
    pub uplink_rate: Option<String>,
    /// The QEMU binary of the qemu runtime [default: qemu-system-x86_64].
    #[arg(long)]
    pub qemu_binary: Option<PathBuf>,
    /// Where to serve Prometheus metrics (`/metrics`) as HOST:PORT, or `off`. Keep it on
    /// loopback or a management network: it names this host's enclaves [default:
    /// 127.0.0.1:7480].
    #[arg(long, value_name = "ADDR|off")]
    pub metrics_listen: Option<String>,
    /// Take messages from other hosts' agents on HOST:PORT (mutual TLS with this agent's
    /// certificate; docs/messages.md "Across hosts"), and send this host's enclaves' messages
    /// to enclaves placed elsewhere. The address is told to the controllers, which tell the
    /// other agents: give one they can reach. Off by default.
    #[arg(long, value_name = "ADDR")]
    pub peer_listen: Option<std::net::SocketAddr>,
    /// Where enclave cgroups go: `root` (`/sys/fs/cgroup/tribune/INSTANCE`) or `delegated`
    /// (below the group systemd delegated to the agent's unit, `Delegate=yes`; cgroup v2)
    /// [default: root].
    #[arg(long, value_enum)]
    pub cgroup_parent: Option<CgroupParent>,
    /// What this host can give enclaves, replacing what the agent measured, as
    /// KEY=VALUE items: cpu_millicores, memory_bytes, egress_bits_per_sec,
    /// ingress_bits_per_sec, gpu_percent, tee (sev-snp|tdx|sim), tee_generation
    /// (e.g. `--capacity cpu_millicores=2000,memory_bytes=4294967296`).
    #[arg(long, value_name = "KEY=VALUE", value_delimiter = ',')]
    pub capacity: Vec<String>,
    /// Placement labels of this host, KEY=VALUE items (`--labels zone=eu-1a,rack=7`):
    /// enclaves' host selectors match them.
    #[arg(long, value_name = "KEY=VALUE", value_delimiter = ',')]
    pub labels: Vec<String>,
    #[command(flatten)]
    pub launch: LaunchArgs,
}

/// What the agent launches, and as whom. Which of these may go together is checked once
/// flags, variables and the config file are merged ([`super::agent_config::Launch`]).
#[derive(Args, Debug, Clone, Default)]
pub struct LaunchArgs {
    /// The host's launch allow-list (TOML, see docs/agent.md): the runtimes, programs (absolute
    /// path + SHA-256) and QEMU arguments enclaves may use. Without it every launch is refused.
    #[arg(long, env = "TRIBUNE_LAUNCH_POLICY", value_name = "FILE")]
    pub launch_policy: Option<PathBuf>,
    /// Development only: launch any spec a plan names, unchecked (still unprivileged). Whoever
    /// can write plans for this host then chooses what it runs. Excludes --launch-policy.
    #[arg(
        long,
        value_name = "BOOL",
        num_args = 0..=1,
        require_equals = true,
        default_missing_value = "true",
        value_parser = BoolishValueParser::new()
    )]
    pub insecure_allow_any_launch: Option<bool>,
    /// The uids enclaves get, one each (gid = uid), as FIRST-LAST [default: 60600-61111].
    #[arg(long, value_name = "FIRST-LAST")]
    pub enclave_uids: Option<String>,
    /// Run every enclave as this uid instead (never 0); needs --enclave-gid.
    #[arg(long)]
    pub enclave_uid: Option<u32>,
    /// The gid for --enclave-uid (never 0).
    #[arg(long)]
    pub enclave_gid: Option<u32>,
}

#[derive(Args, Debug)]
pub struct ApplyArgs {
    #[arg(long)]
    pub plan: PathBuf,
    /// The running agent's data directory.
    #[arg(long, default_value = DATA_DIR_DEFAULT)]
    pub data_dir: PathBuf,
}

#[derive(Args, Debug)]
pub struct StatusArgs {
    /// The running agent's data directory.
    #[arg(long, default_value = DATA_DIR_DEFAULT)]
    pub data_dir: PathBuf,
}

#[derive(Args, Debug)]
pub struct RunEnclaveArgs {
    #[arg(long)]
    pub name: String,
    /// CPU cap (`250m`, `1.5`).
    #[arg(long)]
    pub cpu: Option<String>,
    /// Memory limit (`256MiB`).
    #[arg(long)]
    pub memory: Option<String>,
    /// Egress limit (`10Mbit`); gives the enclave its own network namespace.
    #[arg(long)]
    pub egress: Option<String>,
    #[arg(long, default_value_t = 1)]
    pub weight: u32,
    /// State directory (a temporary one by default).
    #[arg(long)]
    pub data_dir: Option<PathBuf>,
    /// Run a VM under QEMU instead of a command.
    #[arg(long, conflicts_with = "cmd")]
    pub qemu: bool,
    /// Extra QEMU argument (with `--qemu`; repeat for several), e.g. `--qemu-arg=-kernel`.
    #[arg(long, allow_hyphen_values = true, requires = "qemu")]
    pub qemu_arg: Vec<String>,
    /// The command to run as the enclave: everything after `--cmd` (give it last). A bare
    /// program name is looked up in PATH.
    #[arg(long, num_args = 1.., allow_hyphen_values = true)]
    pub cmd: Vec<String>,
    /// Without --launch-policy, exactly the command given here is allowed (you are on the
    /// host); with it, the host's allow-list decides as for plans.
    #[command(flatten)]
    pub launch: LaunchArgs,
}

#[derive(Args, Debug)]
pub struct CleanupArgs {
    #[arg(long, default_value = "/sys/fs/cgroup")]
    pub cgroup_root: PathBuf,
    /// The instance whose leftovers to remove (as given to `run --instance`); nothing of any
    /// other instance is touched.
    #[arg(long, default_value = "agent", conflicts_with = "all")]
    pub instance: String,
    /// Remove every instance's leftovers (every `tribune/` cgroup, `tb-` namespace and link,
    /// root qdisc with our handle), those of agents still running included.
    #[arg(long)]
    pub all: bool,
}

pub fn run(args: AgentArgs, format: Format) -> anyhow::Result<ExitCode> {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    match args.command.map(|c| *c) {
        None => rt.block_on(run_agent(args.run.resolve()?)),
        Some(AgentCmd::Run(a)) => rt.block_on(run_agent(a.resolve()?)),
        Some(AgentCmd::Apply(a)) => rt.block_on(apply(a, format)),
        Some(AgentCmd::Status(a)) => rt.block_on(status(a, format)),
        Some(AgentCmd::RunEnclave(a)) => rt.block_on(run_enclave(a)),
        Some(AgentCmd::Cleanup(a)) => cleanup(a, format),
    }
}

fn config(a: &AgentSettings) -> anyhow::Result<AgentConfig> {
    let mut cfg = AgentConfig::new(&a.data_dir, a.runtime.into());
    cfg.instance = a.instance.clone();
    cfg.controllers = a.controllers.clone();
    cfg.observe_only = a.observe_only;
    cfg.sample_period = Duration::from_millis(a.sample_period_ms.clamp(10, 60_000));
    cfg.cpuset_cpus = a.cpuset.clone();
    cfg.qemu_binary = a.qemu_binary.clone();
    if a.cgroup_parent == CgroupParent::Delegated && !a.observe_only {
        cfg.cgroup_root = delegated_cgroup_root()?;
    }
    cfg.launch_policy = a.launch.policy()?;
    cfg.enclave_users = a.launch.users()?;
    if let Some(s) = &a.subnet {
        let octets: Vec<u8> = s
            .split('.')
            .map(str::parse)
            .collect::<Result<_, _>>()
            .with_context(|| format!("--subnet {s:?}: expected three octets like 10.77.0"))?;
        let subnet: [u8; 3] = octets
            .try_into()
            .map_err(|_| anyhow::anyhow!("--subnet {s:?}: expected three octets like 10.77.0"))?;
        let uplink = match &a.uplink {
            Some(dev) => Some(Uplink {
                device: dev.clone(),
                capacity_bits_per_sec: parse_bits_per_sec(&a.uplink_rate)?,
            }),
            None => None,
        };
        cfg.network = Some(NetConfig { subnet, uplink });
    }
    Ok(cfg)
}

/// The delegated group this agent runs in, entered (`tribune_agent::cgroup::delegated`).
fn delegated_cgroup_root() -> anyhow::Result<std::path::PathBuf> {
    use tribune_agent::cgroup::delegated;
    let text = std::fs::read_to_string("/proc/self/cgroup").context("reading /proc/self/cgroup")?;
    let group = delegated::own_group(&text).context(
        "--cgroup-parent delegated needs the unified cgroup v2 hierarchy; this host has none",
    )?;
    let root = delegated::enter(
        std::path::Path::new("/sys/fs/cgroup"),
        group,
        std::process::id(),
    )?;
    tracing::info!(root = %root.display(), "working in the delegated cgroup subtree");
    Ok(root)
}

/// The agent's TLS for the controller link; an error says how to get a certificate.
fn link_tls(
    a: &AgentSettings,
    host_id: &str,
) -> anyhow::Result<Option<tonic::transport::ClientTlsConfig>> {
    let files = match a.tls.files(&format!("agent-{host_id}")) {
        Some(f) => f,
        None if a.tls.is_insecure() => return Ok(None),
        None => anyhow::bail!(
            "no TLS certificate for the controller link: issue one with `tribune ca issue agent {host_id} --dir DIR` and pass `--tls-dir DIR` (or --ca/--cert/--key); `--insecure` streams in plain text"
        ),
    };
    let tls = tribune_tls::ClientTls::from_files(&files)
        .with_context(|| format!("loading {}", files.cert.display()))?;
    match tls.identity() {
        Some(tribune_tls::PeerIdentity::Agent { host }) if host == host_id => {}
        Some(other) => anyhow::bail!(
            "{} is a certificate for {other}, not for agent {host_id:?}",
            files.cert.display()
        ),
        None => anyhow::bail!("{} carries no Tribune identity", files.cert.display()),
    }
    Ok(Some(tls.tonic_config()))
}

/// On each SIGHUP, re-reads the agent's certificate files: the link's next connection presents
/// them; the open stream stays up. Files that do not load, or a certificate for another host,
/// are refused with a warning and the current ones stay in use.
async fn reload_link_tls(
    a: AgentSettings,
    host_id: String,
    tx: Option<tokio::sync::watch::Sender<tonic::transport::ClientTlsConfig>>,
) {
    let Ok(mut hup) = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup()) else {
        tracing::warn!("cannot listen for SIGHUP: certificates reload only on restart");
        return;
    };
    while hup.recv().await.is_some() {
        let Some(tx) = &tx else {
            tracing::info!(
                "SIGHUP: the link is plain text (--insecure): no certificates to reload"
            );
            continue;
        };
        match link_tls(&a, &host_id) {
            Ok(Some(t)) => {
                let _ = tx.send(t);
                tracing::info!(
                    "TLS certificates reloaded: the next connection to a controller uses them"
                );
            }
            Ok(None) => {}
            Err(e) => tracing::warn!(
                error = %format!("{e:#}"),
                "TLS certificates not reloaded (the current ones stay in use)"
            ),
        }
    }
}

/// Resolves on Ctrl-C or SIGTERM.
async fn terminated() {
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).ok();
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = async { match term.as_mut() { Some(t) => { t.recv().await; } None => std::future::pending().await } } => {}
    }
}

/// `--peer-listen`: the mediator takes other agents' links on `addr` with this agent's
/// certificate; returns the address to tell the controllers.
fn peer_listen(
    a: &AgentSettings,
    mediator: &tribune_agent::mediator::Mediator,
    addr: std::net::SocketAddr,
) -> anyhow::Result<String> {
    let host_id = a.host_id.clone().unwrap_or_else(|| a.instance.clone());
    if addr.ip().is_unspecified() {
        anyhow::bail!(
            "--peer-listen {addr}: other agents dial the address given here; give one they can reach, not {}",
            addr.ip()
        );
    }
    let Some(files) = a.tls.files(&format!("agent-{host_id}")) else {
        anyhow::bail!(
            "--peer-listen needs this agent's certificate (links between agents are mutual TLS): issue one with `tribune ca issue agent {host_id} --dir DIR` and pass `--tls-dir DIR` (or --ca/--cert/--key)"
        );
    };
    let tls = tribune_agent::mediator::PeerTls::load(&files, &host_id)?;
    mediator.enable_peers(tls);
    let bound = mediator.peer_listen(addr)?;
    eprintln!(
        "agent {} takes messages from other hosts' agents on {bound} (mTLS)",
        a.instance
    );
    Ok(bound.to_string())
}

async fn run_agent(a: AgentSettings) -> anyhow::Result<ExitCode> {
    let cfg = config(&a)?;
    let mut agent = Agent::start(cfg).await?;
    let (tx, rx) = tokio::sync::mpsc::channel(16);
    let server = control::serve(&a.data_dir, tx)?;
    if let Some(addr) = a.metrics_listen {
        serve_agent_metrics(addr).await;
    }
    let mut link_events = None;
    let peer_addr = match a.peer_listen {
        Some(addr) => peer_listen(&a, agent.mediator(), addr)?,
        None => String::new(),
    };
    if !a.controllers.is_empty() {
        let host_id = a.host_id.clone().unwrap_or_else(|| a.instance.clone());
        let (up_tx, up_rx) = tokio::sync::mpsc::channel(64);
        let (ev_tx, ev_rx) = tokio::sync::mpsc::channel(16);
        agent.set_uplink(up_tx);
        let (tls, reload) = match link_tls(&a, &host_id)? {
            Some(t) => {
                let (tx, rx) = tokio::sync::watch::channel(t);
                (Some(rx), Some(tx))
            }
            None => (None, None),
        };
        tokio::spawn(reload_link_tls(a.clone(), host_id.clone(), reload));
        let link_cfg = LinkConfig {
            host_id: host_id.clone(),
            peer_addr,
            controllers: a.controllers.clone(),
            can_enforce: !a.observe_only,
            enforce_problem: if a.observe_only {
                "started with --observe-only (not root): nothing is confined".into()
            } else {
                String::new()
            },
            capacity: a.capacity.apply(tribune_agent::capacity::measure(
                a.cpuset.as_deref(),
                match (&a.subnet, &a.uplink) {
                    (Some(_), Some(_)) => parse_bits_per_sec(&a.uplink_rate)?,
                    _ => 0,
                },
                agent.gpu_capacity_percent(),
            )),
            labels: a.hello_labels(),
            tls,
        };
        tokio::spawn(link::run(link_cfg, up_rx, ev_tx));
        link_events = Some(ev_rx);
        eprintln!(
            "agent {} streaming to {} as host {host_id}",
            a.instance,
            a.controllers.join(", ")
        );
    }
    if a.launch.insecure_allow_any {
        eprintln!(
            "WARNING: agent {} runs with --insecure-allow-any-launch: it launches ANY program a plan names (unprivileged, but unchecked). Development only: give it --launch-policy FILE instead.",
            a.instance
        );
    } else if a.launch.policy_file.is_none() {
        eprintln!(
            "WARNING: agent {} has no launch allow-list: every enclave launch will be refused (give it --launch-policy FILE, see docs/agent.md)",
            a.instance
        );
    }
    if a.observe_only {
        eprintln!(
            "WARNING: agent {} is OBSERVE-ONLY: enclaves run and are measured, but no limit is enforced (no cgroups, no tc, no freezer without root)",
            a.instance
        );
    }
    eprintln!(
        "agent {} running: control socket {}",
        a.instance,
        control::socket_path(&a.data_dir).display()
    );
    // The last applied plan is enforced again (Agent::start) and the control socket is up.
    super::service::notify(&[sd_notify::NotifyState::Ready]);
    let ran = agent.run(rx, link_events, terminated()).await;
    super::service::notify(&[sd_notify::NotifyState::Stopping]);
    ran?;
    server.abort();
    let _ = std::fs::remove_file(control::socket_path(&a.data_dir));
    Ok(ExitCode::SUCCESS)
}

/// Serves `/metrics` on `addr`. A port that cannot be bound is a warning, not a failure: the
/// agent's work is enforcing plans, and it must not stop for want of a metrics port.
async fn serve_agent_metrics(addr: std::net::SocketAddr) {
    let scrape = std::sync::Arc::new(|format| tribune_agent::metrics::get().encode(format));
    match tribune_telemetry::serve_metrics(addr, scrape, std::future::pending()).await {
        Ok(bound) => tracing::info!(%bound, "serving metrics at http://{bound}/metrics"),
        Err(e) => tracing::warn!("metrics are not served: {e}"),
    }
}

async fn apply(a: ApplyArgs, format: Format) -> anyhow::Result<ExitCode> {
    let text = std::fs::read_to_string(&a.plan)
        .with_context(|| format!("reading {}", a.plan.display()))?;
    let plan = Plan::from_json(&text).with_context(|| format!("{}", a.plan.display()))?;
    let rep = control::request(&a.data_dir, &ClientRequest::Apply(plan)).await?;
    // The table formats keep the one JSON line this verb always printed.
    if !output::structured(format, &rep)? {
        println!("{}", serde_json::to_string(&rep)?);
    }
    Ok(ExitCode::SUCCESS)
}

async fn status(a: StatusArgs, format: Format) -> anyhow::Result<ExitCode> {
    let v = control::request(&a.data_dir, &ClientRequest::Status).await?;
    if !output::structured(format, &v)? {
        print_table(&v, format, units::now_ms());
    }
    Ok(ExitCode::SUCCESS)
}

/// A JSON number in `unit` for a table cell (`-` when absent), else the value escaped.
fn in_unit(v: &serde_json::Value, unit: units::Unit, now_ms: i64) -> String {
    unit.show(v, now_ms)
        .unwrap_or_else(|| super::client::cell(Some(v)))
}

fn print_table(v: &serde_json::Value, format: Format, now_ms: i64) {
    use units::Unit;
    // Enclave names, states and event details come from plans (the controllers): escaped.
    let s = |k: &serde_json::Value| super::client::cell(Some(k));
    println!(
        "instance {}  runtime {}  cgroup {}  plan v{}  controller link {}  gpu {}",
        s(&v["instance"]),
        s(&v["runtime"]),
        s(&v["cgroup_version"]),
        s(&v["applied_version"]),
        s(&v["controller_link"]),
        s(&v["gpu"]),
    );
    let wide = format.is_wide();
    let mut header = format!(
        "{:<20} {:<10} {:>8} {:>8} {:>8} {:>9} {:>9} {:>9}",
        "ENCLAVE", "STATE", "PID", "CPU", "CPU CAP", "MEMORY", "TX", "RX"
    );
    if wide {
        header.push_str(&format!(
            " {:>9} {:>10} {:>6} {:>8} {:<15}",
            "MEM CAP", "EGRESS CAP", "WEIGHT", "UID", "IP"
        ));
    }
    println!("{header}");
    for e in v["enclaves"].as_array().into_iter().flatten() {
        let u = &e["usage"];
        let limits = &e["plan"]["limits"];
        let mut row = format!(
            "{:<20} {:<10} {:>8} {:>8} {:>8} {:>9} {:>9} {:>9}",
            s(&e["name"]),
            s(&e["status"]["state"]),
            s(&e["pid"]),
            in_unit(&u["cpu_millicores"], Unit::Cpu, now_ms),
            in_unit(&limits["cpu_millicores"], Unit::Cpu, now_ms),
            in_unit(&u["memory_bytes"], Unit::Bytes, now_ms),
            in_unit(&u["net_tx_bytes"], Unit::Bytes, now_ms),
            in_unit(&u["net_rx_bytes"], Unit::Bytes, now_ms),
        );
        if wide {
            row.push_str(&format!(
                " {:>9} {:>10} {:>6} {:>8} {:<15}",
                in_unit(&limits["memory_bytes"], Unit::Bytes, now_ms),
                in_unit(&limits["egress"]["limit_bits_per_sec"], Unit::Bits, now_ms),
                s(&e["plan"]["weight"]),
                s(&e["user"]["uid"]),
                s(&e["ip"]),
            ));
        }
        println!("{row}");
    }
    println!("launch: {}", s(&v["launch_policy"]));
    for r in v["refused"].as_array().into_iter().flatten() {
        println!("{:<20} REFUSED    {}", s(&r["enclave"]), s(&r["error"]));
    }
    let events = v["events"].as_array().map(Vec::as_slice).unwrap_or(&[]);
    if !events.is_empty() {
        println!("recent events:");
        for e in events.iter().rev().take(8).rev() {
            let mut detail = e.clone();
            if let Some(m) = detail.as_object_mut() {
                for k in ["at_unix_ms", "enclave", "kind"] {
                    m.remove(k);
                }
            }
            println!(
                "  {:>8} ago {:<20} {:<14} {}",
                in_unit(&e["at_unix_ms"], Unit::Age, now_ms),
                s(&e["enclave"]),
                s(&e["kind"]),
                s(&detail)
            );
        }
    }
}

async fn run_enclave(a: RunEnclaveArgs) -> anyhow::Result<ExitCode> {
    let limit = |bits: u64| Bandwidth {
        guarantee_bits_per_sec: bits,
        limit_bits_per_sec: bits,
    };
    let egress = a.egress.as_deref().map(parse_bits_per_sec).transpose()?;
    let (launch, runtime) = if a.qemu {
        let args = a.qemu_arg.clone();
        (
            LaunchSpec::Qemu {
                memory_mib: 64,
                args,
                msg_port: Default::default(),
                guest: Default::default(),
                network: false,
            },
            RuntimeKind::Qemu,
        )
    } else {
        let Some((program, args)) = a.cmd.split_first() else {
            anyhow::bail!("give the enclave's command with --cmd … (or use --qemu)");
        };
        let mut cmd = vec![in_path(program)?];
        cmd.extend(args.iter().cloned());
        (
            LaunchSpec::Process {
                cmd,
                network: egress.is_some(),
                sim: None,
            },
            RuntimeKind::Process,
        )
    };
    let tmp = std::env::temp_dir().join(format!("tribune-run-enclave-{}", std::process::id()));
    let data_dir: &Path = a.data_dir.as_deref().unwrap_or(&tmp);
    let mut cfg = AgentConfig::new(data_dir, runtime);
    cfg.instance = format!("run-{}", a.name);
    let launch_settings = a.launch.resolve(None)?;
    cfg.enclave_users = launch_settings.users()?;
    cfg.launch_policy =
        if launch_settings.policy_file.is_some() || launch_settings.insecure_allow_any {
            launch_settings.policy()?
        } else {
            // You typed it on the host: allow exactly that, nothing else.
            let list = AllowList::exactly(&launch, Path::new("(the command line of run-enclave)"))
                .context("hashing the program")?;
            list.validate().map_err(anyhow::Error::msg)?;
            LaunchPolicy::AllowList(list)
        };
    if egress.is_some() {
        cfg.network = Some(NetConfig {
            subnet: [10, 78, 0],
            uplink: None,
        });
    }
    let enclave = EnclavePlan {
        launch: Some(launch),
        limits: Limits {
            cpu_millicores: a.cpu.as_deref().map(parse_cpu_millicores).transpose()?,
            memory_bytes: a.memory.as_deref().map(parse_bytes).transpose()?,
            egress: egress.map(limit),
            ..Limits::default()
        },
        weight: a.weight,
        state: RunState::Run,
        talk: Default::default(),
        placement_epoch: 0,
    };
    let plan = Plan {
        version: 1,
        enclaves: [(a.name.clone(), enclave)].into_iter().collect(),
        remote: Default::default(),
    };
    plan.validate()?;
    // A fresh data dir each time: no earlier plan to re-apply.
    let _ = std::fs::remove_file(data_dir.join(tribune_agent::store::APPLIED_PLAN_FILE));
    let mut agent = Agent::start(cfg).await?;
    let refused = match agent.apply(plan).await {
        Ok(rep) => rep.refused.into_iter().next().map(|r| r.error),
        Err(e) => Some(e.to_string()),
    };
    if let Some(why) = refused {
        agent.shutdown().await?;
        anyhow::bail!("{why}");
    }
    eprintln!("enclave {} running; Ctrl-C to stop", a.name);
    let (tx, rx) = tokio::sync::mpsc::channel::<Request>(4);
    let (done_tx, done_rx) = tokio::sync::oneshot::channel::<Option<i32>>();
    // Watch for the enclave exiting on its own.
    let watcher = tokio::spawn(async move {
        let mut done_tx = Some(done_tx);
        loop {
            tokio::time::sleep(Duration::from_millis(100)).await;
            let (stx, srx) = tokio::sync::oneshot::channel::<AgentStatus>();
            if tx.send(Request::Status(stx)).await.is_err() {
                return;
            }
            let Ok(st) = srx.await else { return };
            if let Some(EnclaveStatus::Exited { code }) = st.enclaves.first().map(|e| e.status)
                && let Some(d) = done_tx.take()
            {
                let _ = d.send(code);
                return;
            }
        }
    });
    let code = std::sync::Arc::new(std::sync::Mutex::new(None));
    let code2 = code.clone();
    agent
        .run(rx, None, async move {
            tokio::select! {
                _ = terminated() => {}
                c = done_rx => { *code2.lock().unwrap_or_else(|p| p.into_inner()) = c.ok().flatten(); }
            }
        })
        .await?;
    watcher.abort();
    if a.data_dir.is_none() {
        let _ = std::fs::remove_dir_all(&tmp);
    }
    let code = *code.lock().unwrap_or_else(|p| p.into_inner());
    Ok(match code {
        Some(c) => ExitCode::from(c.clamp(0, 255) as u8),
        None => ExitCode::SUCCESS,
    })
}

/// `program` as an absolute path: as given when it has a `/`, else the first executable of
/// that name in PATH (the allow-list names files, not commands).
fn in_path(program: &str) -> anyhow::Result<String> {
    use std::os::unix::fs::PermissionsExt;
    if program.contains('/') {
        let p = std::path::absolute(program).with_context(|| program.to_string())?;
        return Ok(p.display().to_string());
    }
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .map(|d| d.join(program))
        .find(|p| {
            std::fs::metadata(p).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
        })
        .filter(|p| p.is_absolute())
        .map(|p| p.display().to_string())
        .ok_or_else(|| anyhow::anyhow!("{program:?}: not found in PATH; give its absolute path"))
}

fn cleanup(a: CleanupArgs, format: Format) -> anyhow::Result<ExitCode> {
    let found = if a.all {
        tribune_agent::cleanup::cleanup_all(&a.cgroup_root)?
    } else {
        tribune_agent::cleanup::cleanup_one(&a.cgroup_root, &a.instance)?
    };
    if !output::structured(format, &serde_json::json!({ "removed": found }))? {
        if found.is_empty() {
            println!("nothing to clean up");
        } else {
            println!("removed: {}", serde_json::to_string(&found)?);
        }
    }
    Ok(ExitCode::SUCCESS)
}
