//! `tribune cluster status|add|promote|remove`.

use std::process::ExitCode;

use anyhow::anyhow;
use clap::Subcommand;
use reqwest::Method;
use serde_json::json;

use super::client::{Client, ClientOpts, Column};
use super::output::Format;

#[derive(Subcommand, Debug)]
pub enum ClusterCmd {
    /// Members, leader, term, commit index and each member's health.
    Status {
        #[command(flatten)]
        opts: ClientOpts,
    },
    /// Add a controller (as a learner; `--voter` to promote it once it has caught up).
    Add {
        /// The new controller's id.
        #[arg(long)]
        id: u64,
        /// The new controller's address (HOST:PORT).
        #[arg(long)]
        address: String,
        /// Make it a voter.
        #[arg(long)]
        voter: bool,
        #[command(flatten)]
        opts: ClientOpts,
    },
    /// Promote a learner to voter.
    Promote {
        id: u64,
        #[command(flatten)]
        opts: ClientOpts,
    },
    /// Remove a controller from the cluster.
    Remove {
        id: u64,
        #[command(flatten)]
        opts: ClientOpts,
    },
}

const MEMBER_COLUMNS: &[Column] = &[
    Column::new("ID", "/id"),
    Column::new("ADDRESS", "/address"),
    Column::new("VOTER", "/voter"),
    Column::new("HEALTHY", "/healthy"),
    Column::new("STATE", "/status/state"),
    Column::new("APPLIED", "/status/last_applied"),
    Column::new("LAG", "/lag"),
    Column::new("TERM", "/status/term").wide(),
    Column::new("LEADER", "/status/leader").wide(),
    Column::new("LAST LOG", "/status/last_log_index").wide(),
    Column::new("SNAPSHOT", "/status/snapshot_index").wide(),
    Column::new("PURGED", "/status/purged_index").wide(),
];

pub fn run(cmd: ClusterCmd, output: Format) -> anyhow::Result<ExitCode> {
    let opts = match &cmd {
        ClusterCmd::Status { opts }
        | ClusterCmd::Add { opts, .. }
        | ClusterCmd::Promote { opts, .. }
        | ClusterCmd::Remove { opts, .. } => opts.clone(),
    };
    let client = Client::new(&opts, output)?;
    super::client::runtime()?.block_on(async move {
        let view = match cmd {
            ClusterCmd::Status { .. } => client.get("/v1/cluster").await?,
            ClusterCmd::Add {
                id, address, voter, ..
            } => {
                let body = json!({"id": id, "address": address, "voter": voter});
                client
                    .call(Method::POST, "/v1/cluster/members", Some(&body), &[])
                    .await
                    .map_err(|e| anyhow!(e))?
                    .2
            }
            ClusterCmd::Promote { id, .. } => {
                let path = format!("/v1/cluster/members/{id}/promote");
                client
                    .call(Method::POST, &path, None, &[])
                    .await
                    .map_err(|e| anyhow!(e))?
                    .2
            }
            ClusterCmd::Remove { id, .. } => {
                let path = format!("/v1/cluster/members/{id}");
                client
                    .call(Method::DELETE, &path, None, &[])
                    .await
                    .map_err(|e| anyhow!(e))?
                    .2
            }
        };
        if !client.output.is_structured() {
            println!(
                "leader: {}  term: {}  commit index: {}  (answered by {})",
                super::client::cell(view.get("leader")),
                super::client::cell(view.get("term")),
                super::client::cell(view.get("commit_index")),
                super::client::cell(view.get("responder")),
            );
            let members = view.get("members").cloned().unwrap_or_default();
            client.print_columns(&members, MEMBER_COLUMNS);
        } else {
            client.print(&view, &[]);
        }
        Ok(ExitCode::SUCCESS)
    })
}
