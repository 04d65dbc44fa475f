//! `tribune policy …`: local verbs (check, fmt, eval) come from `policy_lang`; cluster verbs
//! (put, get, ls, rm) talk to the API; `plan` is `policy_plan`'s.

use std::io::IsTerminal;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context, anyhow};
use clap::Subcommand;
use reqwest::Method;
use serde_json::json;

use super::client::{Client, ClientOpts, Column};
use super::output::{self, Format};
use super::policy_lang;
use super::units::Unit;

#[derive(Subcommand, Debug)]
pub enum PolicyCmd {
    /// Check policy files: exit 0 with a summary, or 1 with diagnostics.
    Check(policy_lang::CheckArgs),
    /// Format policy files in the canonical layout.
    Fmt(policy_lang::FmtArgs),
    /// Evaluate a policy against a facts file and print the decision.
    Eval(policy_lang::EvalArgs),
    /// What FILE's policies would have done to the recorded usage, before they are applied:
    /// the recorded windows replayed through the live loop's decision, per enclave a diff of
    /// throttles, suspensions, migrations, lending and limits against what happened.
    Plan(super::policy_plan::PlanArgs),
    /// Store a policy on the cluster (checked first; nothing is stored if it does not check).
    Put {
        /// Policy source file.
        file: PathBuf,
        /// Name to store it under (default: the name the file's one policy declares).
        #[arg(long)]
        name: Option<String>,
        /// Only replace the policy if it is still at this version (optimistic concurrency).
        #[arg(long, conflicts_with = "create")]
        if_version: Option<u64>,
        /// Only create: fail if a policy of this name exists.
        #[arg(long)]
        create: bool,
        #[command(flatten)]
        opts: ClientOpts,
    },
    /// Show a stored policy.
    Get {
        name: String,
        /// Print only the source text.
        #[arg(long)]
        source: bool,
        #[command(flatten)]
        opts: ClientOpts,
    },
    /// List stored policies.
    Ls {
        /// Serve from the answering controller without a linearizable read.
        #[arg(long)]
        stale: bool,
        #[command(flatten)]
        opts: ClientOpts,
    },
    /// Remove a stored policy.
    Rm {
        name: String,
        /// Only remove it if it is still at this version.
        #[arg(long)]
        if_version: Option<u64>,
        #[command(flatten)]
        opts: ClientOpts,
    },
}

const POLICY_COLUMNS: &[Column] = &[
    Column::new("NAME", "/name"),
    Column::new("VERSION", "/version"),
    Column::new("UPDATED BY", "/updated_by"),
    Column::new("UPDATED", "/updated_at_ms").unit(Unit::Age),
    Column::new("CREATED BY", "/created_by").wide(),
    Column::new("CREATED", "/created_at_ms")
        .unit(Unit::Age)
        .wide(),
];

pub fn run(cmd: PolicyCmd, output: Format) -> anyhow::Result<ExitCode> {
    let remote = match cmd {
        PolicyCmd::Check(a) => return policy_lang::check(a, output),
        PolicyCmd::Fmt(a) => return policy_lang::fmt(a),
        PolicyCmd::Eval(a) => return policy_lang::eval(a, output),
        PolicyCmd::Plan(a) => return super::policy_plan::run(a, output),
        other => other,
    };
    let opts = match &remote {
        PolicyCmd::Put { opts, .. }
        | PolicyCmd::Get { opts, .. }
        | PolicyCmd::Ls { opts, .. }
        | PolicyCmd::Rm { opts, .. } => opts.clone(),
        PolicyCmd::Check(_) | PolicyCmd::Fmt(_) | PolicyCmd::Eval(_) | PolicyCmd::Plan(_) => {
            return Ok(ExitCode::SUCCESS);
        }
    };
    let client = Client::new(&opts, output)?;
    super::client::runtime()?.block_on(async move {
        match remote {
            PolicyCmd::Put {
                file,
                name,
                if_version,
                create,
                ..
            } => {
                let bytes =
                    std::fs::read(&file).with_context(|| format!("reading {}", file.display()))?;
                // Checked here first (a file that is not UTF-8 included: E0004, with its line
                // and column); one that does not check never leaves the machine.
                let Some((source, declared)) = checked(&file, &bytes) else {
                    return Ok(ExitCode::FAILURE);
                };
                let name = match name {
                    Some(n) => n,
                    None => policy_name(&file, &declared)?,
                };
                let mut headers: Vec<(&str, String)> = vec![];
                if let Some(v) = if_version {
                    headers.push(("if-match", format!("\"{v}\"")));
                }
                if create {
                    headers.push(("if-none-match", "*".to_string()));
                }
                let (_, _, v) = client
                    .call(
                        Method::PUT,
                        &format!("/v1/policies/{name}"),
                        Some(&json!({"source": source})),
                        &headers,
                    )
                    .await
                    .map_err(|e| anyhow!(e))?;
                if client.output.is_structured() {
                    client.print(&v, &[]);
                } else {
                    println!(
                        "stored policy {name} at version {}",
                        super::client::cell(v.get("version"))
                    );
                }
            }
            PolicyCmd::Get { name, source, .. } => {
                let v = client.get(&format!("/v1/policies/{name}")).await?;
                if source {
                    // Exact bytes into a pipe or file (round trip); escaped on a terminal.
                    let src = v["source"].as_str().unwrap_or_default();
                    if std::io::stdout().is_terminal() {
                        print!("{}", output::text(src));
                    } else {
                        print!("{src}");
                    }
                } else if client.output.is_structured() {
                    client.print(&v, &[]);
                } else {
                    client.print_columns(&v, POLICY_COLUMNS);
                    println!(
                        "\n{}",
                        output::text(v["source"].as_str().unwrap_or_default())
                    );
                }
            }
            PolicyCmd::Ls { stale, .. } => {
                let v = client.get(&format!("/v1/policies?stale={stale}")).await?;
                client.print_columns(&v, POLICY_COLUMNS);
            }
            PolicyCmd::Rm {
                name, if_version, ..
            } => {
                let mut headers: Vec<(&str, String)> = vec![];
                if let Some(v) = if_version {
                    headers.push(("if-match", format!("\"{v}\"")));
                }
                client
                    .call(
                        Method::DELETE,
                        &format!("/v1/policies/{name}"),
                        None,
                        &headers,
                    )
                    .await
                    .map_err(|e| anyhow!(e))?;
                if !output::structured(client.output, &json!({"removed": name}))? {
                    println!("removed policy {name}");
                }
            }
            PolicyCmd::Check(_) | PolicyCmd::Fmt(_) | PolicyCmd::Eval(_) | PolicyCmd::Plan(_) => {}
        }
        Ok(ExitCode::SUCCESS)
    })
}

/// The file's text and the names of the policies it declares, or `None` once its errors
/// have been printed ("does not check; nothing was sent": a failure, exit 1).
pub(super) fn checked(file: &std::path::Path, bytes: &[u8]) -> Option<(String, Vec<String>)> {
    let shown = file.display().to_string();
    let outcome = tribune_policy::check_bytes(&shown, bytes);
    let text = String::from_utf8_lossy(bytes).into_owned();
    if outcome.has_errors() {
        let errors: Vec<_> = outcome
            .diagnostics
            .iter()
            .filter(|d| d.is_error())
            .cloned()
            .collect();
        eprint!(
            "{}",
            tribune_policy::render_diagnostics(&shown, &text, &errors)
        );
        eprintln!("error: {shown} does not check; nothing was sent");
        return None;
    }
    let names = outcome
        .policies
        .iter()
        .map(|p| p.name().to_string())
        .collect();
    Some((text, names))
}

/// The name a file's single policy declares (the file already checked by [`checked`]).
fn policy_name(file: &std::path::Path, declared: &[String]) -> anyhow::Result<String> {
    let shown = file.display().to_string();
    match declared {
        [one] => Ok(one.clone()),
        [] => anyhow::bail!("{shown} defines no policy"),
        many => anyhow::bail!(
            "{shown} defines {} policies ({}): the cluster stores one policy per name; put each in its own file, or pass --name with a file holding one",
            many.len(),
            many.join(", ")
        ),
    }
}
