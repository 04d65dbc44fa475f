//! `tribune agent …`: the host agent and its debugging verbs.

use std::process::ExitCode;

use clap::Args;

#[derive(Args, Debug)]
pub struct AgentArgs {
    /// Directory for the agent's state (applied plan, buffers).
    #[arg(long)]
    pub data_dir: Option<std::path::PathBuf>,
}

pub fn run(_args: AgentArgs) -> anyhow::Result<ExitCode> {
    anyhow::bail!("agent is not built yet")
}
