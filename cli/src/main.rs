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
    /// Start the whole system locally: a 3-controller cluster on 127.0.0.1.
    Dev(cmd::dev::DevArgs),
    /// Run one controller.
    Controller(cmd::controller::ControllerArgs),
    /// Certificates: create a CA, issue controller, agent and user (admin, operator, auditor, tenant) certificates.
    #[command(subcommand)]
    Ca(cmd::ca::CaCmd),
    /// Cluster membership and health.
    #[command(subcommand)]
    Cluster(cmd::cluster::ClusterCmd),
    /// Work with policies: check, format and evaluate locally; put, get, list and remove on a cluster.
    #[command(subcommand)]
    Policy(cmd::policy::PolicyCmd),
    /// Enclaves known to the cluster.
    #[command(subcommand)]
    Enclave(cmd::resources::EnclaveCmd),
    /// Hosts known to the cluster.
    #[command(subcommand)]
    Host(cmd::resources::HostCmd),
    /// Verify attestation evidence (SEV-SNP report, TDX quote, simulated TEE).
    #[command(subcommand)]
    Attest(cmd::attest::AttestCmd),
    /// The attestation log: entries, signed tree heads, inclusion and consistency proofs.
    #[command(subcommand)]
    Log(cmd::log::LogCmd),
    /// Bearer tokens: create, list, revoke (admins).
    #[command(subcommand)]
    Token(cmd::token::TokenCmd),
    /// Run or drive the host agent.
    Agent(cmd::agent::AgentArgs),
    /// Benchmark scenarios (see bench/README.md).
    #[command(subcommand)]
    Bench(cmd::bench::BenchCmd),
    /// Print shell completions for bash, zsh, fish, elvish or powershell.
    Completions {
        /// Shell to generate completions for.
        shell: clap_complete::Shell,
    },
}

/// `--output json` (or `--output=json`) among the arguments: errors are then JSON on stdout
/// too.
fn wants_json(args: &[String]) -> bool {
    args.iter().any(|a| a == "--output=json")
        || args
            .windows(2)
            .any(|w| w[0] == "--output" && w[1] == "json")
}

/// A usage or I/O error of `tribune attest …` in JSON mode: what scripts read on stdout.
fn print_attest_error_json(message: &str) {
    println!(
        "{}",
        serde_json::json!({
            "valid": false,
            "signature_and_chain_valid": false,
            "error": message,
            "kind": "usage",
        })
    );
}

/// Whether this run prints and exits (a client verb), as opposed to serving (a controller,
/// an agent, a dev cluster, a benchmark driving them).
fn prints_and_exits(command: &Command) -> bool {
    match command {
        Command::Dev(_) | Command::Controller(_) | Command::Bench(_) => false,
        Command::Agent(a) => matches!(
            a.command.as_deref(),
            Some(
                cmd::agent::AgentCmd::Status(_)
                    | cmd::agent::AgentCmd::Apply(_)
                    | cmd::agent::AgentCmd::Cleanup(_)
            )
        ),
        _ => true,
    }
}

/// A client verb whose reader went away (`tribune agent status | head`) ends quietly, as
/// `cat` does: SIGPIPE's default action instead of Rust's (ignored, so `println!` panics on
/// EPIPE). Servers keep it ignored: a peer hanging up is an error they handle, not their end.
fn die_quietly_on_closed_stdout() {
    // SAFETY: called first thing in `main`, before any other thread exists; it changes only
    // this process's disposition of SIGPIPE.
    unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_DFL);
    }
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().collect();
    let json_errors = wants_json(&args);
    let attest = args.get(1).is_some_and(|a| a == "attest");
    let cli = match Cli::try_parse_from(&args) {
        Ok(cli) => cli,
        Err(e) => {
            let usage = !matches!(
                e.kind(),
                clap::error::ErrorKind::DisplayHelp
                    | clap::error::ErrorKind::DisplayVersion
                    | clap::error::ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand
            );
            if usage && attest && json_errors {
                let _ = e.print();
                // The message without the usage and help lines, on one line.
                let rendered = e.render().to_string();
                let message = rendered.split("\n\n").next().unwrap_or_default();
                let message = message.split_whitespace().collect::<Vec<_>>().join(" ");
                print_attest_error_json(message.trim_start_matches("error: "));
                return ExitCode::from(2);
            }
            e.exit()
        }
    };
    if prints_and_exits(&cli.command) {
        die_quietly_on_closed_stdout();
    }
    let result = match cli.command {
        Command::Dev(a) => cmd::dev::run(a),
        Command::Controller(a) => cmd::controller::run(a),
        Command::Ca(c) => cmd::ca::run(c),
        Command::Cluster(c) => cmd::cluster::run(c),
        Command::Policy(c) => cmd::policy::run(c),
        Command::Enclave(c) => cmd::resources::enclave(c),
        Command::Host(c) => cmd::resources::host(c),
        Command::Attest(c) => cmd::attest::run(c),
        Command::Log(c) => cmd::log::run(c),
        Command::Token(c) => cmd::token::run(c),
        Command::Agent(c) => cmd::agent::run(c),
        Command::Bench(c) => cmd::bench::run(c),
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
            // Errors carry what servers said (problem details, bodies): escaped for the terminal.
            eprintln!("error: {}", cmd::output::text(&format!("{err:#}")));
            if attest && json_errors && err.downcast_ref::<cmd::client::ApiFailure>().is_none() {
                print_attest_error_json(&format!("{err:#}"));
            }
            if let Some(f) = err.downcast_ref::<cmd::client::ApiFailure>()
                && json_errors
                && !f.problem.is_null()
            {
                println!(
                    "{}",
                    serde_json::to_string_pretty(&f.problem).unwrap_or_default()
                );
            }
            // An answer from the API (not found, conflict, invalid) is a failure of the request
            // (exit 1); anything else is a usage or environment problem (exit 2).
            if err.downcast_ref::<cmd::client::ApiFailure>().is_some() {
                ExitCode::from(1)
            } else {
                ExitCode::from(2)
            }
        }
    }
}
