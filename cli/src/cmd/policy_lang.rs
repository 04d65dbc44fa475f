//! `tribune policy check|fmt|eval`: local verbs over the policy language (no cluster needed).

use std::process::ExitCode;

use clap::Args;

#[derive(Args, Debug)]
pub struct CheckArgs {
    /// Policy files to check.
    pub files: Vec<std::path::PathBuf>,
}

#[derive(Args, Debug)]
pub struct FmtArgs {
    /// Policy files to format.
    pub files: Vec<std::path::PathBuf>,
}

#[derive(Args, Debug)]
pub struct EvalArgs {
    /// Policy file to evaluate.
    pub file: std::path::PathBuf,
}

pub fn check(_args: CheckArgs) -> anyhow::Result<ExitCode> {
    anyhow::bail!("policy check is not built yet")
}

pub fn fmt(_args: FmtArgs) -> anyhow::Result<ExitCode> {
    anyhow::bail!("policy fmt is not built yet")
}

pub fn eval(_args: EvalArgs) -> anyhow::Result<ExitCode> {
    anyhow::bail!("policy eval is not built yet")
}
