//! `tribune`: one binary for controllers, agents, the local dev cluster and the client verbs.
//!
//! Only this crate knows about the terminal: it parses arguments, prints tables or JSON and maps
//! outcomes to exit codes. Every subcommand lives in its own module under `cmd/`.

mod cmd;

use std::ffi::OsString;
use std::process::ExitCode;

use clap::{CommandFactory, FromArgMatches, Parser, Subcommand};

use cmd::output::Format;

#[derive(Parser, Debug)]
#[command(
    name = "tribune",
    version,
    about = "Attested fair-share resource partitioning for confidential workloads"
)]
struct Cli {
    /// Output format of every verb: table (for people, human units), json or yaml (for
    /// programs, raw numbers; errors too, on stdout), wide (the table with more columns).
    #[arg(
        short = 'o',
        long,
        global = true,
        value_enum,
        default_value_t = Format::Table,
        value_name = "FORMAT"
    )]
    output: Format,
    #[command(flatten)]
    log: cmd::logging::LogArgs,
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
    /// Fairness receipts: fetch an enclave's signed receipt; verify one offline.
    #[command(subcommand)]
    Receipt(cmd::receipt::ReceiptCmd),
    /// Backups: save the whole replicated state from a running cluster, check a backup file,
    /// restore one offline into new data dirs.
    #[command(subcommand)]
    Snapshot(cmd::snapshot::SnapshotCmd),
    /// The HTTP/JSON API's OpenAPI 3.1 document, as every controller of this version serves it.
    #[command(subcommand)]
    Api(cmd::api::ApiCmd),
    /// Bearer tokens: create, list, revoke (admins).
    #[command(subcommand)]
    Token(cmd::token::TokenCmd),
    /// Run or drive the host agent.
    Agent(cmd::agent::AgentArgs),
    /// Inter-enclave messages through the host's mediator (inside an enclave).
    #[command(subcommand)]
    Msg(cmd::msg::MsgCmd),
    /// Benchmark scenarios (see bench/README.md).
    #[command(subcommand)]
    Bench(cmd::bench::BenchCmd),
    /// Fault injection and simulation (see chaos/README.md).
    #[command(subcommand)]
    Chaos(cmd::chaos::ChaosCmd),
    /// Print shell completions for bash, zsh, fish, elvish or powershell.
    Completions {
        /// Shell to generate completions for.
        shell: clap_complete::Shell,
    },
}

/// `tribune`'s command line: the derive's, with the environment variables of the serving
/// modes attached ([`cmd::env_vars`]).
fn command() -> clap::Command {
    cmd::env_vars::attach(Cli::command())
}

/// Parses a command line (the program name first) as `main` does.
fn parse(args: &[OsString]) -> Result<Cli, clap::Error> {
    let mut command = command();
    let matches = command.try_get_matches_from_mut(args)?;
    Cli::from_arg_matches(&matches).map_err(|e| e.format(&mut command))
}

/// A command line that did not parse: clap's message on stderr (help and version on stdout,
/// as clap prints them) and, for a usage error in JSON or YAML mode, the error document on
/// stdout ([`cmd::errors`]). Exit 2 for usage errors.
fn parse_failed(e: clap::Error, args: &[OsString]) -> ExitCode {
    let usage = !matches!(
        e.kind(),
        clap::error::ErrorKind::DisplayHelp
            | clap::error::ErrorKind::DisplayVersion
            | clap::error::ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand
    );
    let scan = cmd::errors::format_of_failed_parse(&command(), args);
    let note = cmd::env_vars::note_for(&e);
    if usage && scan.format().is_structured() {
        let _ = e.print();
        if let Some(note) = &note {
            eprintln!("{note}");
        }
        // The message without the usage and help lines, on one line.
        let rendered = e.render().to_string();
        let message = rendered.split("\n\n").next().unwrap_or_default();
        let message = message.split_whitespace().collect::<Vec<_>>().join(" ");
        let doc = cmd::errors::document(
            message.trim_start_matches("error: "),
            "usage",
            scan.verb.as_deref() == Some("attest"),
        );
        let _ = cmd::output::structured(scan.format(), &doc);
        return ExitCode::from(2);
    }
    if let Some(note) = note {
        let _ = e.print();
        eprintln!("{note}");
        return ExitCode::from(2);
    }
    e.exit()
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

/// How a serving process names itself in traces: `service.name` and, where the command line
/// says it, `service.instance.id` (a controller's id, an agent's host id).
fn trace_identity(c: &Command) -> (&'static str, Option<String>) {
    match c {
        Command::Controller(a) => ("tribune-controller", a.id.map(|i| i.to_string())),
        Command::Agent(a) => match a.command.as_deref() {
            Some(cmd::agent::AgentCmd::Run(r)) => ("tribune-agent", r.host_id.clone()),
            Some(_) => ("tribune-agent", None),
            None => ("tribune-agent", a.run.host_id.clone()),
        },
        Command::Dev(_) => ("tribune-dev", None),
        Command::Bench(_) => ("tribune-bench", None),
        _ => ("tribune", None),
    }
}

/// A serving command's `--config` file, whose `[log]` table sets what the flags leave open.
fn config_file(c: &Command) -> Option<std::path::PathBuf> {
    match c {
        Command::Controller(a) => a.config.clone(),
        Command::Agent(a) => match a.command.as_deref() {
            Some(cmd::agent::AgentCmd::Run(r)) => r.config.clone(),
            Some(_) => None,
            None => a.run.config.clone(),
        },
        _ => None,
    }
}

fn main() -> ExitCode {
    let args: Vec<OsString> = std::env::args_os().collect();
    let cli = match parse(&args) {
        Ok(cli) => cli,
        Err(e) => return parse_failed(e, &args),
    };
    if prints_and_exits(&cli.command) {
        die_quietly_on_closed_stdout();
    } else {
        let (service, instance) = trace_identity(&cli.command);
        let log = match config_file(&cli.command).map(|p| cmd::logging::LogFile::from_config(&p)) {
            None => Ok(cli.log.clone()),
            Some(Ok(file)) => Ok(cli.log.clone().over(file)),
            Some(Err(e)) => Err(e),
        };
        if let Err(e) = log.and_then(|log| cmd::logging::init(&log, service, instance)) {
            return failed(&e, cli.output, false);
        }
    }
    let out = cli.output;
    let attest = matches!(cli.command, Command::Attest(_));
    let result = match cli.command {
        Command::Dev(a) => cmd::dev::run(a),
        Command::Controller(a) => cmd::controller::run(a),
        Command::Ca(c) => cmd::ca::run(c),
        Command::Cluster(c) => cmd::cluster::run(c, out),
        Command::Policy(c) => cmd::policy::run(c, out),
        Command::Enclave(c) => cmd::resources::enclave(c, out),
        Command::Host(c) => cmd::resources::host(c, out),
        Command::Attest(c) => cmd::attest::run(c, out),
        Command::Log(c) => cmd::log::run(c, out),
        Command::Receipt(c) => cmd::receipt::run(c, out),
        Command::Snapshot(c) => cmd::snapshot::run(c, out),
        Command::Token(c) => cmd::token::run(c, out),
        Command::Api(c) => cmd::api::run(c),
        Command::Agent(c) => cmd::agent::run(c, out),
        Command::Msg(c) => cmd::msg::run(c, out),
        Command::Bench(c) => cmd::bench::run(c, out),
        Command::Chaos(c) => cmd::chaos::run(c, out),
        Command::Completions { shell } => {
            clap_complete::generate(shell, &mut command(), "tribune", &mut std::io::stdout());
            Ok(ExitCode::SUCCESS)
        }
    };
    // Spans still buffered for export (a controller stopping on SIGTERM) go out now.
    tribune_telemetry::trace::flush();
    match result {
        Ok(code) => code,
        Err(err) => failed(&err, out, attest),
    }
}

/// A verb that failed: the message on stderr (and the error document on stdout in JSON or
/// YAML mode, [`cmd::errors`]); exit 1 for an answer from the API (not found, conflict,
/// invalid: the request failed), 2 for anything else (a usage or environment problem).
fn failed(err: &anyhow::Error, out: Format, attest: bool) -> ExitCode {
    // Errors carry what servers said (problem details, bodies): escaped for the terminal.
    eprintln!("error: {}", cmd::output::text(&format!("{err:#}")));
    let api = err.downcast_ref::<cmd::client::ApiFailure>();
    if out.is_structured() {
        let doc = match api {
            Some(f) if !f.problem.is_null() => f.problem.clone(),
            Some(f) => cmd::errors::document(&f.message, "request", attest),
            None => cmd::errors::document(&format!("{err:#}"), "usage", attest),
        };
        let _ = cmd::output::structured(out, &doc);
    }
    if api.is_some() {
        ExitCode::from(1)
    } else {
        ExitCode::from(2)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use cmd::test_env;

    fn argv(args: &[&str]) -> Vec<OsString> {
        std::iter::once("tribune")
            .chain(args.iter().copied())
            .map(OsString::from)
            .collect()
    }

    fn scan(args: &[&str]) -> cmd::errors::Scan {
        cmd::errors::format_of_failed_parse(&command(), &argv(args))
    }

    #[test]
    fn the_output_flag_is_global_and_parsed_on_every_verb() {
        let _env = test_env::vars(&[]);
        for args in [
            &["-o", "json", "enclave", "ls"][..],
            &["enclave", "ls", "-o", "json"],
            &["enclave", "-ojson", "ls"],
            &["--output=json", "policy", "check", "p.tribune"],
            &["policy", "check", "p.tribune", "--output", "json"],
            &["agent", "status", "--output", "json"],
            &["attest", "verify", "--evidence", "e", "-o=json"],
        ] {
            let cli = parse(&argv(args)).unwrap_or_else(|e| panic!("{args:?}: {e}"));
            assert_eq!(cli.output, Format::Json, "{args:?}");
        }
        let cli = parse(&argv(&["host", "ls"])).expect("parses");
        assert_eq!(cli.output, Format::Table, "the default");
        let cli = parse(&argv(&[
            "policy", "eval", "p", "--facts", "f", "-o", "text",
        ]))
        .expect("`text` is still accepted");
        assert_eq!(cli.output, Format::Table);
        for f in ["yaml", "wide"] {
            assert!(parse(&argv(&["host", "ls", "-o", f])).is_ok(), "{f}");
        }
        assert!(parse(&argv(&["host", "ls", "-o", "xml"])).is_err());
    }

    #[test]
    fn the_pre_scan_reads_only_the_output_flag_forms() {
        for (args, want) in [
            (
                &["attest", "verify", "--output", "json"][..],
                Some(Format::Json),
            ),
            (&["attest", "verify", "--output=yaml"], Some(Format::Yaml)),
            (
                &["-ojson", "attest", "verify", "--bogus"],
                Some(Format::Json),
            ),
            (&["-o=json", "attest", "verify"], Some(Format::Json)),
            (
                &["attest", "-o", "json", "verify", "--vmpl-max", "many"],
                Some(Format::Json),
            ),
            // A flag's value is not a flag: --evidence takes `json`, and `--output` is not
            // the value of --evidence (clap refuses a value that looks like a flag too).
            (&["attest", "verify", "--evidence", "json"], None),
            (
                &["attest", "verify", "--evidence", "--output", "json"],
                Some(Format::Json),
            ),
            (&["attest", "verify", "--evidence=--output", "json"], None),
            // Positional arguments that read `json`, or `--output json` as one.
            (&["attest", "verify", "json"], None),
            (&["policy", "check", "json", "--output"], None),
            (&["policy", "check", "output", "json"], None),
            // After `--`, and in what `--cmd` takes to the end of the line, nothing is a flag.
            (&["policy", "check", "--", "--output", "json"], None),
            (
                &["agent", "run-enclave", "--cmd", "sh", "--output", "json"],
                None,
            ),
            (&["attest", "verify", "--output", "xml"], None),
        ] {
            assert_eq!(scan(args).format, want, "{args:?}");
        }
        assert_eq!(
            scan(&["-o", "json", "attest", "verify"]).verb.as_deref(),
            Some("attest")
        );
        assert_eq!(
            scan(&["policy", "check", "attest"]).verb.as_deref(),
            Some("policy")
        );
    }

    /// Every controller and agent flag has its variable, shown in `--help`, except the
    /// one-shot actions.
    #[test]
    fn every_serving_flag_has_a_variable_in_its_help() {
        let mut cmd = command();
        cmd.build();
        let modes = [
            ("controller", vec!["controller"]),
            ("agent", vec!["agent"]),
            ("agent run", vec!["agent", "run"]),
        ];
        for (mode, path) in modes {
            let mut c = &cmd;
            for p in path {
                c = c.find_subcommand(p).expect(mode);
            }
            let mut help = c.clone();
            let help = help.render_long_help().to_string();
            for a in c.get_arguments() {
                let Some(long) = a.get_long() else { continue };
                if [
                    "help",
                    "version",
                    "output",
                    "resync-from-peers",
                    "rotate-log-key",
                ]
                .contains(&long)
                {
                    assert!(a.get_env().is_none(), "{mode} --{long} has a variable");
                    continue;
                }
                let var = a
                    .get_env()
                    .unwrap_or_else(|| panic!("{mode} --{long}: no variable"));
                let var = var.to_string_lossy();
                assert!(
                    var.starts_with("TRIBUNE_CONTROLLER_")
                        || var.starts_with("TRIBUNE_AGENT_")
                        || var == "TRIBUNE_LAUNCH_POLICY"
                        || var == cmd::logging::LOG_VAR
                        || var == cmd::logging::LOG_FORMAT_VAR
                        || var == cmd::logging::OTLP_ENDPOINT_VAR
                        || var == cmd::logging::TRACE_SAMPLE_RATIO_VAR,
                    "{mode} --{long}: {var}"
                );
                assert!(help.contains(&*var), "{mode} --help does not show {var}");
            }
        }
        let status = cmd
            .find_subcommand("agent")
            .and_then(|a| a.find_subcommand("status"));
        let data_dir = status
            .and_then(|s| s.get_arguments().find(|a| a.get_long() == Some("data-dir")))
            .and_then(|a| a.get_env());
        assert_eq!(
            data_dir
                .map(|v| v.to_string_lossy().into_owned())
                .as_deref(),
            Some("TRIBUNE_AGENT_DATA_DIR")
        );
    }

    #[test]
    fn the_documented_uid_default_is_the_agents() {
        let mut cmd = command();
        let help = cmd
            .find_subcommand_mut("agent")
            .expect("agent")
            .render_long_help()
            .to_string();
        let default = format!(
            "{}-{}",
            tribune_agent::launch::users::UID_FIRST_DEFAULT,
            tribune_agent::launch::users::UID_FIRST_DEFAULT
                + tribune_agent::launch::users::UID_COUNT_DEFAULT
                - 1
        );
        assert!(help.contains(&format!("[default: {default}]")), "{help}");
    }
}
