//! `tribune attest …`: verify evidence offline.

use std::process::ExitCode;

use clap::Subcommand;

#[derive(Subcommand, Debug)]
pub enum AttestCmd {
    /// Verify one piece of evidence and print the verdict.
    Verify {
        /// Evidence file (SNP report, TDX quote or sim evidence).
        #[arg(long)]
        evidence: std::path::PathBuf,
    },
}

pub fn run(_cmd: AttestCmd) -> anyhow::Result<ExitCode> {
    anyhow::bail!("attest verify is not built yet")
}
