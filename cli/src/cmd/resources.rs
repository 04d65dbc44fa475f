//! `tribune enclave ls|get|status|suspend|resume` and `tribune host ls`.

use std::process::ExitCode;

use clap::Subcommand;

use super::client::{Client, ClientOpts};

#[derive(Subcommand, Debug)]
pub enum EnclaveCmd {
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
}

const STATUS_COLUMNS: &[(&str, &str)] = &[
    ("ID", "/id"),
    ("STATE", "/state"),
    ("HOST", "/host"),
    ("TRUSTED", "/status/attestation/trusted"),
    ("STEP", "/status/ladder/step"),
    ("CAUSE", "/status/ladder/cause"),
    ("CAP(m)", "/allocation/limits/cpu_millicores"),
    ("SUSPENDED", "/allocation/suspended"),
    ("BORROWED(m)", "/status/borrowed_cpu_millicores"),
    ("LENT(m)", "/status/lent_cpu_millicores"),
    ("CONFIRMED SEQ", "/status/confirmed/last_seq"),
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
}

const ENCLAVE_COLUMNS: &[(&str, &str)] = &[
    ("ID", "/id"),
    ("TENANT", "/tenant"),
    ("TEE", "/tee"),
    ("STATE", "/state"),
    ("HOST", "/placement/host"),
    ("EPOCH", "/placement/epoch"),
    ("CPU(m)", "/requested/cpu_millicores"),
    ("PRIORITY", "/priority"),
];

pub fn enclave(cmd: EnclaveCmd) -> anyhow::Result<ExitCode> {
    let (EnclaveCmd::Ls { opts, .. }
    | EnclaveCmd::Get { opts, .. }
    | EnclaveCmd::Status { opts, .. }
    | EnclaveCmd::Suspend { opts, .. }
    | EnclaveCmd::Resume { opts, .. }) = &cmd;
    let client = Client::new(opts)?;
    super::client::runtime()?.block_on(async move {
        let (v, columns) = match cmd {
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
        };
        client.print(&v, columns);
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

pub fn host(cmd: HostCmd) -> anyhow::Result<ExitCode> {
    let HostCmd::Ls { stale, opts } = cmd;
    let client = Client::new(&opts)?;
    super::client::runtime()?.block_on(async move {
        let v = client.get(&format!("/v1/hosts?stale={stale}")).await?;
        client.print(
            &v,
            &[
                ("ID", "/id"),
                ("ADDRESS", "/address"),
                ("TEE", "/tee"),
                ("ATTESTATION", "/attestation_status"),
                ("ENFORCEMENT", "/enforcement"),
                ("CPU(m)", "/capacity/cpu_millicores"),
                ("MEMORY", "/capacity/memory_bytes"),
                ("HEARTBEAT(ms)", "/last_heartbeat_ms"),
            ],
        );
        Ok(ExitCode::SUCCESS)
    })
}
