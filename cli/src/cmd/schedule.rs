//! `tribune enclave create FILE|--flags` (the scheduler places it: `POST /v1/enclaves`) and
//! `tribune host cordon|uncordon|drain HOST`. The request bodies are the controller's own types
//! (`state::Enclave`, `api::schedule::DrainReport`).

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context, bail};
use clap::Args;
use tribune_agent::units::{parse_bits_per_sec, parse_bytes, parse_cpu_millicores};
use tribune_controller::api::schedule::{DrainOutcome, DrainReport};
use tribune_controller::state::{Enclave, EnclaveState, Resources, Scheduling, Strategy, TeeKind};

use super::client::{Client, ClientOpts, Column};
use super::output::{self, Format};

/// `tribune enclave create`: from a file (the enclave as JSON or YAML, without `placement`),
/// or from flags.
#[derive(Args, Debug)]
pub struct CreateArgs {
    /// The enclave as JSON or YAML (`-` for stdin); flags given beside it are refused.
    #[arg(value_name = "FILE", conflicts_with_all = ["id", "tenant"])]
    pub file: Option<PathBuf>,
    /// The enclave's id.
    #[arg(long, required_unless_present = "file")]
    pub id: Option<String>,
    #[arg(long, required_unless_present = "file")]
    pub tenant: Option<String>,
    /// sev-snp, tdx or sim.
    #[arg(long, default_value = "sim")]
    pub tee: String,
    /// Guaranteed CPU (`500m`, `2`): reserved on the host it lands on.
    #[arg(long)]
    pub cpu: Option<String>,
    /// Guaranteed memory (`512MiB`, `2GiB`).
    #[arg(long)]
    pub memory: Option<String>,
    /// Guaranteed egress (`50Mbit`).
    #[arg(long)]
    pub egress: Option<String>,
    /// Guaranteed ingress (`50Mbit`).
    #[arg(long)]
    pub ingress: Option<String>,
    /// Guaranteed GPU share in percent.
    #[arg(long)]
    pub gpu: Option<u32>,
    /// Higher wins under contention.
    #[arg(long, default_value_t = 0, allow_negative_numbers = true)]
    pub priority: i32,
    /// May displace strictly lower-priority enclaves when nothing fits (they are moved or
    /// suspended, never stopped).
    #[arg(long)]
    pub preempt: bool,
    /// Labels of the enclave, KEY=VALUE items.
    #[arg(long, value_name = "KEY=VALUE", value_delimiter = ',')]
    pub labels: Vec<String>,
    /// Host labels that must match, KEY=VALUE items (affinity).
    #[arg(long, value_name = "KEY=VALUE", value_delimiter = ',')]
    pub host_selector: Vec<String>,
    /// Label keys no other enclave on the same host may share a value of.
    #[arg(long, value_name = "KEY", value_delimiter = ',')]
    pub anti_affinity: Vec<String>,
    /// Lowest TEE generation accepted.
    #[arg(long, default_value_t = 0)]
    pub min_tee_generation: u32,
    /// bin-pack (fill the host with the most CPU promised that fits) or spread (the emptiest).
    #[arg(long, default_value = "bin-pack", value_parser = ["bin-pack", "spread"])]
    pub strategy: String,
    /// Expected launch measurements (hex).
    #[arg(long, value_delimiter = ',')]
    pub expected_measurements: Vec<String>,
    /// The program to run as a process enclave, after `--`.
    #[arg(last = true, value_name = "CMD")]
    pub cmd: Vec<String>,
    #[command(flatten)]
    pub opts: ClientOpts,
}

fn pairs(flag: &str, items: &[String]) -> anyhow::Result<BTreeMap<String, String>> {
    items
        .iter()
        .map(|i| match i.split_once('=') {
            Some((k, v)) => Ok((k.trim().to_string(), v.trim().to_string())),
            None => bail!("--{flag} {i:?}: expected KEY=VALUE"),
        })
        .collect()
}

impl CreateArgs {
    /// The enclave to create, from the file or the flags.
    pub fn enclave(&self) -> anyhow::Result<Enclave> {
        if let Some(path) = &self.file {
            let text = if path.as_os_str() == "-" {
                std::io::read_to_string(std::io::stdin()).context("reading stdin")?
            } else {
                std::fs::read_to_string(path)
                    .with_context(|| format!("reading {}", path.display()))?
            };
            let e: Enclave = serde_json::from_str(&text)
                .or_else(|_| serde_norway::from_str(&text))
                .with_context(|| {
                    format!(
                        "{}: not an enclave as JSON or YAML (docs/api.md, \"Scheduling\")",
                        path.display()
                    )
                })?;
            return Ok(e);
        }
        let (Some(id), Some(tenant)) = (&self.id, &self.tenant) else {
            bail!("give FILE, or --id and --tenant");
        };
        let bits = |flag: &str, v: &Option<String>| -> anyhow::Result<u64> {
            v.as_deref().map_or(Ok(0), |v| {
                parse_bits_per_sec(v).with_context(|| format!("--{flag} {v:?}"))
            })
        };
        Ok(Enclave {
            id: id.clone(),
            tenant: tenant.clone(),
            labels: pairs("labels", &self.labels)?,
            tee: self
                .tee
                .parse::<TeeKind>()
                .with_context(|| format!("--tee {:?}", self.tee))?,
            expected_measurements: self.expected_measurements.clone(),
            requested: Resources {
                cpu_millicores: self.cpu.as_deref().map_or(Ok(0), |v| {
                    parse_cpu_millicores(v).with_context(|| format!("--cpu {v:?}"))
                })?,
                memory_bytes: self.memory.as_deref().map_or(Ok(0), |v| {
                    parse_bytes(v).with_context(|| format!("--memory {v:?}"))
                })?,
                egress_bits_per_sec: bits("egress", &self.egress)?,
                ingress_bits_per_sec: bits("ingress", &self.ingress)?,
                gpu_percent: self.gpu.unwrap_or(0),
            },
            priority: self.priority,
            placement: None,
            state: EnclaveState::Pending,
            launch: (!self.cmd.is_empty())
                .then(|| serde_json::json!({"process": {"cmd": self.cmd}})),
            scheduling: Some(Scheduling {
                preempt: self.preempt,
                host_selector: pairs("host-selector", &self.host_selector)?,
                anti_affinity: self.anti_affinity.clone(),
                min_tee_generation: self.min_tee_generation,
                strategy: if self.strategy == "spread" {
                    Strategy::Spread
                } else {
                    Strategy::BinPack
                },
            }),
            version: 0,
        })
    }
}

const PLACED_COLUMNS: &[Column] = &[
    Column::new("ID", "/id"),
    Column::new("TENANT", "/tenant"),
    Column::new("STATE", "/state"),
    Column::new("HOST", "/placement/host"),
    Column::new("EPOCH", "/placement/epoch"),
    Column::new("PRIORITY", "/priority"),
];

/// `tribune enclave create`.
pub fn create(args: CreateArgs, output: Format) -> anyhow::Result<ExitCode> {
    let enclave = args.enclave()?;
    let client = Client::new(&args.opts, output)?;
    super::client::runtime()?.block_on(async move {
        let body = serde_json::to_value(&enclave)?;
        let (_, _, v) = client
            .call(reqwest::Method::POST, "/v1/enclaves", Some(&body), &[])
            .await
            .map_err(|e| anyhow::anyhow!(e))?;
        client.print_columns(&v, PLACED_COLUMNS);
        Ok(ExitCode::SUCCESS)
    })
}

const HOST_COLUMNS: &[Column] = &[
    Column::new("ID", "/id"),
    Column::new("SCHEDULABLE", "/schedulable"),
];

/// `tribune host cordon|uncordon|drain HOST`: `action` is the route's last segment.
pub fn host_action(
    id: &str,
    action: &str,
    opts: &ClientOpts,
    output: Format,
) -> anyhow::Result<ExitCode> {
    let client = Client::new(opts, output)?;
    super::client::runtime()?.block_on(async move {
        let (_, _, v) = client
            .call(
                reqwest::Method::POST,
                &format!("/v1/hosts/{id}/{action}"),
                None,
                &[],
            )
            .await
            .map_err(|e| anyhow::anyhow!(e))?;
        if action != "drain" {
            client.print_columns(&v, HOST_COLUMNS);
            return Ok(ExitCode::SUCCESS);
        }
        if output::structured(client.output, &v)? {
            return Ok(ExitCode::SUCCESS);
        }
        let report: DrainReport =
            serde_json::from_value(v).context("the controller's drain report")?;
        println!(
            "host {} is draining: nothing new lands there",
            output::text(&report.host.id)
        );
        let mut stayed = false;
        for m in &report.moves {
            match m.outcome {
                DrainOutcome::Moving => println!(
                    "  {}: moving to {} (stop here, then start there under epoch {})",
                    output::text(&m.enclave),
                    output::text(m.to.as_deref().unwrap_or("?")),
                    m.epoch.unwrap_or(0)
                ),
                DrainOutcome::Migrating => println!(
                    "  {}: live-migrating to {} (runs there under epoch {}; `tribune enclave migrations`)",
                    output::text(&m.enclave),
                    output::text(m.to.as_deref().unwrap_or("?")),
                    m.epoch.unwrap_or(0)
                ),
                DrainOutcome::Left | DrainOutcome::Unplaceable => {
                    stayed = true;
                    println!(
                        "  {}: stays: {}",
                        output::text(&m.enclave),
                        output::text(&m.reason)
                    );
                }
            }
        }
        // Something stays: the drain is not done (run it again once there is room).
        Ok(if stayed {
            ExitCode::from(1)
        } else {
            ExitCode::SUCCESS
        })
    })
}
