//! `tribune`: one binary for controllers, agents, the local dev cluster and the client verbs.
//!
//! Only this crate knows about the terminal: it parses arguments, prints tables or JSON and maps
//! outcomes to exit codes. Every subcommand lives in its own module under `cmd/`.

mod cmd;

use std::process::ExitCode;

use clap::{CommandFactory, Parser, Subcommand};

#[derive(Parser, Debug)]
#[command(
    name = "tribune",
    version,
    about = "Attested fair-share resource partitioning for confidential workloads"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Work with policies: check, format and evaluate locally; put, get, list and remove on a cluster.
    #[command(subcommand)]
    Policy(cmd::policy::PolicyCmd),
    /// Verify attestation evidence (SEV-SNP report, TDX quote, simulated TEE).
    #[command(subcommand)]
    Attest(cmd::attest::AttestCmd),
    /// Run or drive the host agent.
    Agent(cmd::agent::AgentArgs),
    /// Print shell completions for bash, zsh, fish, elvish or powershell.
    Completions {
        /// Shell to generate completions for.
        shell: clap_complete::Shell,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Policy(c) => cmd::policy::run(c),
        Command::Attest(c) => cmd::attest::run(c),
        Command::Agent(c) => cmd::agent::run(c),
        Command::Completions { shell } => {
            clap_complete::generate(
                shell,
                &mut Cli::command(),
                "tribune",
                &mut std::io::stdout(),
            );
            Ok(ExitCode::SUCCESS)
        }
    };
    match result {
        Ok(code) => code,
        Err(err) => {
            eprintln!("error: {err:#}");
            ExitCode::from(2)
        }
    }
}
