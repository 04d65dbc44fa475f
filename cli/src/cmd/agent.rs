//! `tribune agent …`: the host agent and its debugging verbs.
//!
//! `tribune agent [run] --data-dir DIR --runtime process|qemu [--controllers ADDR…]` runs the
//! agent; `apply` and `status` talk to a running agent through `DIR/agent.sock`; `run-enclave`
//! launches one enclave under limits until Ctrl-C; `cleanup` removes leftovers of a crash.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context;
use clap::{Args, Subcommand, ValueEnum};
use tribune_agent::agent::{AgentStatus, Request};
use tribune_agent::control::{self, ClientRequest};
use tribune_agent::link::{self, LinkConfig};
use tribune_agent::net::{NetConfig, Uplink};
use tribune_agent::runtime::EnclaveStatus;
use tribune_agent::units::{parse_bits_per_sec, parse_bytes, parse_cpu_millicores};
use tribune_agent::{
    Agent, AgentConfig, Bandwidth, EnclavePlan, LaunchSpec, Limits, Plan, RunState, RuntimeKind,
};

const DATA_DIR_DEFAULT: &str = "/var/lib/tribune/agent";

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
    Run(RunArgs),
    /// Hand a plan (JSON) to the running agent of DATA_DIR.
    Apply(ApplyArgs),
    /// Show enclaves, the applied plan version and current usage.
    Status(StatusArgs),
    /// Launch one enclave under limits and run until Ctrl-C (or until it exits).
    RunEnclave(RunEnclaveArgs),
    /// Remove every cgroup, namespace, link and qdisc the agent left behind (after a crash).
    Cleanup(CleanupArgs),
}

#[derive(Clone, Copy, Debug, ValueEnum)]
pub enum RuntimeArg {
    Process,
    Qemu,
}

impl From<RuntimeArg> for RuntimeKind {
    fn from(r: RuntimeArg) -> Self {
        match r {
            RuntimeArg::Process => RuntimeKind::Process,
            RuntimeArg::Qemu => RuntimeKind::Qemu,
        }
    }
}

#[derive(Args, Debug, Clone)]
pub struct RunArgs {
    /// Directory for the agent's state (applied plan, control socket).
    #[arg(long, default_value = DATA_DIR_DEFAULT)]
    pub data_dir: PathBuf,
    #[arg(long, value_enum, default_value = "process")]
    pub runtime: RuntimeArg,
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
    #[arg(long)]
    pub observe_only: bool,
    /// Names this agent's cgroups (`tribune/INSTANCE`) and namespaces (`tb-INSTANCE-…`).
    #[arg(long, default_value = "agent")]
    pub instance: String,
    /// Sampling period of the collectors, in milliseconds.
    #[arg(long, default_value_t = 100)]
    pub sample_period_ms: u64,
    /// Pin enclaves to these CPUs (cpuset syntax, e.g. `1` or `0-3`).
    #[arg(long)]
    pub cpuset: Option<String>,
    /// Enable enclave networking on this /24 (first three octets, e.g. `10.77.0`).
    #[arg(long)]
    pub subnet: Option<String>,
    /// Bridge uplink device, where enclave egress is shaped.
    #[arg(long, requires = "subnet")]
    pub uplink: Option<String>,
    /// Capacity of the uplink (e.g. `1Gbit`).
    #[arg(long, default_value = "1Gbit")]
    pub uplink_rate: String,
    #[arg(long, default_value = "qemu-system-x86_64")]
    pub qemu_binary: PathBuf,
}

#[derive(Args, Debug)]
pub struct ApplyArgs {
    #[arg(long)]
    pub plan: PathBuf,
    #[arg(long, default_value = DATA_DIR_DEFAULT)]
    pub data_dir: PathBuf,
}

#[derive(Clone, Copy, Debug, ValueEnum)]
pub enum Output {
    Table,
    Json,
}

#[derive(Args, Debug)]
pub struct StatusArgs {
    #[arg(long, default_value = DATA_DIR_DEFAULT)]
    pub data_dir: PathBuf,
    #[arg(long, value_enum, default_value = "table")]
    pub output: Output,
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
    /// The command to run as the enclave: everything after `--cmd` (give it last).
    #[arg(long, num_args = 1.., allow_hyphen_values = true)]
    pub cmd: Vec<String>,
}

#[derive(Args, Debug)]
pub struct CleanupArgs {
    #[arg(long, default_value = "/sys/fs/cgroup")]
    pub cgroup_root: PathBuf,
}

pub fn run(args: AgentArgs) -> anyhow::Result<ExitCode> {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    match args.command.map(|c| *c) {
        None => rt.block_on(run_agent(*args.run)),
        Some(AgentCmd::Run(a)) => rt.block_on(run_agent(a)),
        Some(AgentCmd::Apply(a)) => rt.block_on(apply(a)),
        Some(AgentCmd::Status(a)) => rt.block_on(status(a)),
        Some(AgentCmd::RunEnclave(a)) => rt.block_on(run_enclave(a)),
        Some(AgentCmd::Cleanup(a)) => cleanup(a),
    }
}

fn config(a: &RunArgs) -> anyhow::Result<AgentConfig> {
    let mut cfg = AgentConfig::new(&a.data_dir, a.runtime.into());
    cfg.instance = a.instance.clone();
    cfg.controllers = a.controllers.clone();
    cfg.observe_only = a.observe_only;
    cfg.sample_period = Duration::from_millis(a.sample_period_ms.clamp(10, 60_000));
    cfg.cpuset_cpus = a.cpuset.clone();
    cfg.qemu_binary = a.qemu_binary.clone();
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

/// The agent's TLS for the controller link; an error says how to get a certificate.
fn link_tls(
    a: &RunArgs,
    host_id: &str,
) -> anyhow::Result<Option<tonic::transport::ClientTlsConfig>> {
    let files = match a.tls.files(&format!("agent-{host_id}")) {
        Some(f) => f,
        None if a.tls.insecure => return Ok(None),
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

/// Resolves on Ctrl-C or SIGTERM.
async fn terminated() {
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).ok();
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = async { match term.as_mut() { Some(t) => { t.recv().await; } None => std::future::pending().await } } => {}
    }
}

async fn run_agent(a: RunArgs) -> anyhow::Result<ExitCode> {
    let cfg = config(&a)?;
    let mut agent = Agent::start(cfg).await?;
    let (tx, rx) = tokio::sync::mpsc::channel(16);
    let server = control::serve(&a.data_dir, tx)?;
    let mut link_events = None;
    if !a.controllers.is_empty() {
        let host_id = a.host_id.clone().unwrap_or_else(|| a.instance.clone());
        let (up_tx, up_rx) = tokio::sync::mpsc::channel(64);
        let (ev_tx, ev_rx) = tokio::sync::mpsc::channel(16);
        agent.set_uplink(up_tx);
        let tls = link_tls(&a, &host_id)?;
        let link_cfg = LinkConfig {
            host_id: host_id.clone(),
            controllers: a.controllers.clone(),
            can_enforce: !a.observe_only,
            enforce_problem: if a.observe_only {
                "started with --observe-only (not root): nothing is confined".into()
            } else {
                String::new()
            },
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
    agent.run(rx, link_events, terminated()).await?;
    server.abort();
    let _ = std::fs::remove_file(control::socket_path(&a.data_dir));
    Ok(ExitCode::SUCCESS)
}

async fn apply(a: ApplyArgs) -> anyhow::Result<ExitCode> {
    let text = std::fs::read_to_string(&a.plan)
        .with_context(|| format!("reading {}", a.plan.display()))?;
    let plan = Plan::from_json(&text).with_context(|| format!("{}", a.plan.display()))?;
    let rep = control::request(&a.data_dir, &ClientRequest::Apply(plan)).await?;
    println!("{}", serde_json::to_string(&rep)?);
    Ok(ExitCode::SUCCESS)
}

async fn status(a: StatusArgs) -> anyhow::Result<ExitCode> {
    let v = control::request(&a.data_dir, &ClientRequest::Status).await?;
    match a.output {
        Output::Json => println!("{}", serde_json::to_string_pretty(&v)?),
        Output::Table => print_table(&v),
    }
    Ok(ExitCode::SUCCESS)
}

fn print_table(v: &serde_json::Value) {
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
    println!(
        "{:<20} {:<10} {:>8} {:>10} {:>10} {:>12} {:>12} {:>12}",
        "ENCLAVE", "STATE", "PID", "CPU(m)", "CAP(m)", "MEM(B)", "TX(B)", "RX(B)"
    );
    for e in v["enclaves"].as_array().into_iter().flatten() {
        let u = &e["usage"];
        println!(
            "{:<20} {:<10} {:>8} {:>10} {:>10} {:>12} {:>12} {:>12}",
            s(&e["name"]),
            s(&e["status"]["state"]),
            s(&e["pid"]),
            s(&u["cpu_millicores"]),
            s(&e["plan"]["limits"]["cpu_millicores"]),
            s(&u["memory_bytes"]),
            s(&u["net_tx_bytes"]),
            s(&u["net_rx_bytes"]),
        );
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
                "  {} {:<20} {:<14} {}",
                s(&e["at_unix_ms"]),
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
            },
            RuntimeKind::Qemu,
        )
    } else {
        if a.cmd.is_empty() {
            anyhow::bail!("give the enclave's command with --cmd … (or use --qemu)");
        }
        (
            LaunchSpec::Process {
                cmd: a.cmd.clone(),
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
    };
    let plan = Plan {
        version: 1,
        enclaves: [(a.name.clone(), enclave)].into_iter().collect(),
    };
    plan.validate()?;
    // A fresh data dir each time: no earlier plan to re-apply.
    let _ = std::fs::remove_file(data_dir.join(tribune_agent::store::APPLIED_PLAN_FILE));
    let mut agent = Agent::start(cfg).await?;
    if let Err(e) = agent.apply(plan).await {
        agent.shutdown().await?;
        return Err(e.into());
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

fn cleanup(a: CleanupArgs) -> anyhow::Result<ExitCode> {
    let found = tribune_agent::cleanup::cleanup_all(&a.cgroup_root)?;
    if found.is_empty() {
        println!("nothing to clean up");
    } else {
        println!("removed: {}", serde_json::to_string(&found)?);
    }
    Ok(ExitCode::SUCCESS)
}
