//! `tribune cluster status|add|promote|remove`.

use std::process::ExitCode;

use anyhow::anyhow;
use clap::Subcommand;
use reqwest::Method;
use serde_json::json;

use super::client::{Client, ClientOpts, Output};

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

pub fn run(cmd: ClusterCmd) -> anyhow::Result<ExitCode> {
    let opts = match &cmd {
        ClusterCmd::Status { opts }
        | ClusterCmd::Add { opts, .. }
        | ClusterCmd::Promote { opts, .. }
        | ClusterCmd::Remove { opts, .. } => opts.clone(),
    };
    let client = Client::new(&opts)?;
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
        if client.output == Output::Table {
            println!(
                "leader: {}  term: {}  commit index: {}  (answered by {})",
                super::client::cell(view.get("leader")),
                super::client::cell(view.get("term")),
                super::client::cell(view.get("commit_index")),
                super::client::cell(view.get("responder")),
            );
            let members = view.get("members").cloned().unwrap_or_default();
            client.print(
                &members,
                &[
                    ("ID", "/id"),
                    ("ADDRESS", "/address"),
                    ("VOTER", "/voter"),
                    ("HEALTHY", "/healthy"),
                    ("STATE", "/status/state"),
                    ("APPLIED", "/status/last_applied"),
                    ("LAG", "/lag"),
                ],
            );
        } else {
            client.print(&view, &[]);
        }
        Ok(ExitCode::SUCCESS)
    })
}
