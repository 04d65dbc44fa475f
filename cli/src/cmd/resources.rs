//! `tribune enclave ls|get|status|suspend|resume|stop|delete` and `tribune host ls` (`create`
//! and `host cordon|uncordon|drain` are in `schedule.rs`). Tables show CPU,
//! memory, bandwidth and ages in human units; `-o wide` adds the columns marked wide below.

use std::process::ExitCode;

use clap::Subcommand;

use super::client::{Client, ClientOpts, Column};
use super::output::Format;
use super::units::Unit;

#[derive(Subcommand, Debug)]
pub enum EnclaveCmd {
    /// Create an enclave where the scheduler places it (from FILE, JSON or YAML, or flags);
    /// refused with every host's reason when it fits nowhere.
    Create(Box<super::schedule::CreateArgs>),
    /// List enclaves.
    Ls {
        /// Serve from the answering controller without a linearizable read.
        #[arg(long)]
        stale: bool,
        #[command(flatten)]
        opts: ClientOpts,
    },
    /// Show one enclave.
    Get {
        id: String,
        #[command(flatten)]
        opts: ClientOpts,
    },
    /// What the attestation loop knows: verdict, ladder step, cap, lending, confirmed usage.
    Status {
        id: String,
        #[command(flatten)]
        opts: ClientOpts,
    },
    /// Suspend an enclave (operator): it stays suspended, whatever the policy decides, until
    /// an operator resumes it.
    Suspend {
        id: String,
        #[command(flatten)]
        opts: ClientOpts,
    },
    /// Resume an enclave suspended by an operator or by its policy (operator).
    Resume {
        id: String,
        #[command(flatten)]
        opts: ClientOpts,
    },
    /// Stop an enclave (operator): its host's plan drops it and the agent stops it. A stopped
    /// enclave may be deleted.
    Stop {
        id: String,
        #[command(flatten)]
        opts: ClientOpts,
    },
    /// Delete an enclave record (operator). Refused while it is placed on a host and not
    /// stopped: `tribune enclave stop ID` first.
    #[command(alias = "rm")]
    Delete {
        id: String,
        /// Only delete it if it is still at this version (optimistic concurrency).
        #[arg(long)]
        if_version: Option<u64>,
        #[command(flatten)]
        opts: ClientOpts,
    },
    /// Live-migrate a QEMU enclave to another host (operator) and follow it: bytes, rate,
    /// ETA, downtime; exit 1 if it rolled back.
    Migrate(Box<super::migrate::MigrateArgs>),
    /// Live migrations under way and the last finished ones.
    Migrations {
        #[arg(long)]
        stale: bool,
        #[command(flatten)]
        opts: ClientOpts,
    },
}

const STATUS_COLUMNS: &[Column] = &[
    Column::new("ID", "/id"),
    Column::new("STATE", "/state"),
    Column::new("HOST", "/host"),
    Column::new("TRUSTED", "/status/attestation/trusted"),
    Column::new("STEP", "/status/ladder/step"),
    Column::new("CAUSE", "/status/ladder/cause"),
    Column::new("CPU CAP", "/allocation/limits/cpu_millicores").unit(Unit::Cpu),
    Column::new("SUSPENDED", "/allocation/suspended"),
    Column::new("BORROWED", "/status/borrowed_cpu_millicores").unit(Unit::Cpu),
    Column::new("LENT", "/status/lent_cpu_millicores").unit(Unit::Cpu),
    Column::new("CONFIRMED SEQ", "/status/confirmed/last_seq"),
    Column::new("STEP AGE", "/status/ladder/since_ms")
        .unit(Unit::Age)
        .wide(),
    Column::new("MEMORY CAP", "/allocation/limits/memory_bytes")
        .unit(Unit::Bytes)
        .wide(),
    Column::new("WEIGHT", "/allocation/weight").wide(),
    Column::new("CPU AVG", "/status/confirmed/cpu_millicores_avg")
        .unit(Unit::Cpu)
        .wide(),
    Column::new("MEMORY MAX", "/status/confirmed/mem_bytes_max")
        .unit(Unit::Bytes)
        .wide(),
];

#[derive(Subcommand, Debug)]
pub enum HostCmd {
    /// List hosts.
    Ls {
        #[arg(long)]
        stale: bool,
        #[command(flatten)]
        opts: ClientOpts,
    },
    /// Nothing new lands on the host; what runs there stays.
    Cordon {
        id: String,
        #[command(flatten)]
        opts: ClientOpts,
    },
    /// New enclaves may land on the host again.
    Uncordon {
        id: String,
        #[command(flatten)]
        opts: ClientOpts,
    },
    /// Cordon the host and move its enclaves off it: process enclaves stop here and start on
    /// the host the scheduler chooses, under a new placement epoch; QEMU enclaves
    /// live-migrate. Exit 1 when anything stays.
    Drain {
        id: String,
        #[command(flatten)]
        opts: ClientOpts,
    },
}

const ENCLAVE_COLUMNS: &[Column] = &[
    Column::new("ID", "/id"),
    Column::new("TENANT", "/tenant"),
    Column::new("TEE", "/tee"),
    Column::new("STATE", "/state"),
    Column::new("HOST", "/placement/host"),
    Column::new("EPOCH", "/placement/epoch"),
    Column::new("CPU", "/requested/cpu_millicores").unit(Unit::Cpu),
    Column::new("MEMORY", "/requested/memory_bytes").unit(Unit::Bytes),
    Column::new("PRIORITY", "/priority"),
    Column::new("EGRESS", "/requested/egress_bits_per_sec")
        .unit(Unit::Bits)
        .wide(),
    Column::new("INGRESS", "/requested/ingress_bits_per_sec")
        .unit(Unit::Bits)
        .wide(),
    Column::new("GPU(%)", "/requested/gpu_percent").wide(),
    Column::new("VERSION", "/version").wide(),
    Column::new("LABELS", "/labels").wide(),
];

const HOST_COLUMNS: &[Column] = &[
    Column::new("ID", "/id"),
    Column::new("ADDRESS", "/address"),
    Column::new("TEE", "/tee"),
    Column::new("ATTESTATION", "/attestation_status"),
    Column::new("ENFORCEMENT", "/enforcement"),
    Column::new("CPU", "/capacity/cpu_millicores").unit(Unit::Cpu),
    Column::new("MEMORY", "/capacity/memory_bytes").unit(Unit::Bytes),
    Column::new("SCHEDULABLE", "/schedulable"),
    Column::new("HEARTBEAT", "/last_heartbeat_ms").unit(Unit::Age),
    Column::new("TEE GEN", "/tee_generation").wide(),
    Column::new("LABELS", "/labels").wide(),
    Column::new("EGRESS", "/capacity/egress_bits_per_sec")
        .unit(Unit::Bits)
        .wide(),
    Column::new("INGRESS", "/capacity/ingress_bits_per_sec")
        .unit(Unit::Bits)
        .wide(),
    Column::new("GPU(%)", "/capacity/gpu_percent").wide(),
    Column::new("CPU USED", "/measured_load/cpu_millicores")
        .unit(Unit::Cpu)
        .wide(),
    Column::new("MEMORY USED", "/measured_load/memory_bytes")
        .unit(Unit::Bytes)
        .wide(),
    Column::new("CERT FINGERPRINT", "/agent_cert_fingerprint").wide(),
];

pub fn enclave(cmd: EnclaveCmd, output: Format) -> anyhow::Result<ExitCode> {
    let cmd = match cmd {
        EnclaveCmd::Create(args) => return super::schedule::create(*args, output),
        EnclaveCmd::Migrate(args) => return super::migrate::migrate(*args, output),
        EnclaveCmd::Migrations { stale, opts } => {
            return super::migrate::list(stale, &opts, output);
        }
        other => other,
    };
    let (EnclaveCmd::Ls { opts, .. }
    | EnclaveCmd::Get { opts, .. }
    | EnclaveCmd::Status { opts, .. }
    | EnclaveCmd::Suspend { opts, .. }
    | EnclaveCmd::Resume { opts, .. }
    | EnclaveCmd::Stop { opts, .. }
    | EnclaveCmd::Delete { opts, .. }) = &cmd
    else {
        // `create` returned above.
        return Ok(ExitCode::from(2));
    };
    let client = Client::new(opts, output)?;
    super::client::runtime()?.block_on(async move {
        let (v, columns) = match cmd {
            EnclaveCmd::Create(_) | EnclaveCmd::Migrate(_) | EnclaveCmd::Migrations { .. } => {
                return Ok(ExitCode::from(2));
            }
            EnclaveCmd::Ls { stale, .. } => (
                client.get(&format!("/v1/enclaves?stale={stale}")).await?,
                ENCLAVE_COLUMNS,
            ),
            EnclaveCmd::Get { id, .. } => (
                client.get(&format!("/v1/enclaves/{id}")).await?,
                ENCLAVE_COLUMNS,
            ),
            EnclaveCmd::Status { id, .. } => (
                client.get(&format!("/v1/enclaves/{id}/status")).await?,
                STATUS_COLUMNS,
            ),
            EnclaveCmd::Suspend { id, .. } => {
                (set_state(&client, &id, "suspended").await?, ENCLAVE_COLUMNS)
            }
            EnclaveCmd::Resume { id, .. } => {
                (set_state(&client, &id, "running").await?, ENCLAVE_COLUMNS)
            }
            EnclaveCmd::Stop { id, .. } => {
                (set_state(&client, &id, "stopped").await?, ENCLAVE_COLUMNS)
            }
            EnclaveCmd::Delete { id, if_version, .. } => {
                let mut headers: Vec<(&str, String)> = vec![];
                if let Some(v) = if_version {
                    headers.push(("if-match", format!("\"{v}\"")));
                }
                client
                    .call(
                        reqwest::Method::DELETE,
                        &format!("/v1/enclaves/{id}"),
                        None,
                        &headers,
                    )
                    .await
                    .map_err(|e| anyhow::anyhow!(e))?;
                if !super::output::structured(client.output, &serde_json::json!({"deleted": id}))? {
                    println!("deleted enclave {}", super::output::text(&id));
                }
                return Ok(ExitCode::SUCCESS);
            }
        };
        client.print_columns(&v, columns);
        Ok(ExitCode::SUCCESS)
    })
}

/// Reads the enclave and writes it back with `state`, only if nobody changed it in between.
async fn set_state(client: &Client, id: &str, state: &str) -> anyhow::Result<serde_json::Value> {
    let path = format!("/v1/enclaves/{id}");
    let mut e = client.get(&path).await?;
    let version = e["version"].as_u64().unwrap_or(0);
    e["state"] = serde_json::Value::from(state);
    let (_, _, v) = client
        .call(
            reqwest::Method::PUT,
            &path,
            Some(&e),
            &[("if-match", format!("\"{version}\""))],
        )
        .await
        .map_err(|e| anyhow::anyhow!(e))?;
    Ok(v)
}

pub fn host(cmd: HostCmd, output: Format) -> anyhow::Result<ExitCode> {
    let (stale, opts) = match cmd {
        HostCmd::Ls { stale, opts } => (stale, opts),
        HostCmd::Cordon { id, opts } => {
            return super::schedule::host_action(&id, "cordon", &opts, output);
        }
        HostCmd::Uncordon { id, opts } => {
            return super::schedule::host_action(&id, "uncordon", &opts, output);
        }
        HostCmd::Drain { id, opts } => {
            return super::schedule::host_action(&id, "drain", &opts, output);
        }
    };
    let client = Client::new(&opts, output)?;
    super::client::runtime()?.block_on(async move {
        let v = client.get(&format!("/v1/hosts?stale={stale}")).await?;
        client.print_columns(&v, HOST_COLUMNS);
        Ok(ExitCode::SUCCESS)
    })
}
