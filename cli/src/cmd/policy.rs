//! `tribune policy …`: local verbs (check, fmt, eval) come from `policy_lang`; cluster verbs
//! (put, get, ls, rm) talk to the API.

use std::process::ExitCode;

use clap::Subcommand;

use super::policy_lang;

#[derive(Subcommand, Debug)]
pub enum PolicyCmd {
    /// Check policy files: exit 0 with a summary, or 1 with diagnostics.
    Check(policy_lang::CheckArgs),
    /// Format policy files in the canonical layout.
    Fmt(policy_lang::FmtArgs),
    /// Evaluate a policy against a facts file and print the decision.
    Eval(policy_lang::EvalArgs),
}

pub fn run(cmd: PolicyCmd) -> anyhow::Result<ExitCode> {
    match cmd {
        PolicyCmd::Check(a) => policy_lang::check(a),
        PolicyCmd::Fmt(a) => policy_lang::fmt(a),
        PolicyCmd::Eval(a) => policy_lang::eval(a),
    }
}
