//! `tribune policy check|fmt|eval`: local verbs over the policy language (no cluster needed).
//! All language logic lives in `tribune_policy`; this module reads files and prints.

use std::collections::{BTreeMap, BTreeSet};
use std::io::{Read, Write};
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::Args;

use super::output::{self, Format};

#[derive(Args, Debug)]
pub struct CheckArgs {
    /// Policy files to check.
    #[arg(required = true)]
    pub files: Vec<PathBuf>,
}

#[derive(Args, Debug)]
pub struct FmtArgs {
    /// Policy files to format in place (none: read stdin, write stdout).
    pub files: Vec<PathBuf>,
    /// Do not write; exit 1 and list the files that are not formatted.
    #[arg(long)]
    pub check: bool,
}

#[derive(Args, Debug)]
pub struct EvalArgs {
    /// Policy file to evaluate.
    pub file: PathBuf,
    /// Facts JSON file (see docs/policy-language.md, "Facts").
    #[arg(long)]
    pub facts: PathBuf,
}

fn read(path: &PathBuf) -> anyhow::Result<String> {
    std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))
}

/// A policy file's bytes: ones that are not UTF-8 are the language's diagnostic (E0004),
/// not an I/O error, so they are read as bytes and checked by `tribune_policy`.
fn read_bytes(path: &PathBuf) -> anyhow::Result<Vec<u8>> {
    std::fs::read(path).with_context(|| format!("cannot read {}", path.display()))
}

/// Text to render diagnostics against: the source, with bytes that are not UTF-8 replaced.
fn text_of(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// `tribune policy check`: text (diagnostics rendered like rustc, on stderr) in the table
/// formats; the summary and the diagnostics as one document in `json` and `yaml`.
pub fn check(args: CheckArgs, format: Format) -> anyhow::Result<ExitCode> {
    let mut sources = BTreeMap::new();
    let mut policies = Vec::new();
    let mut diags = Vec::new();
    for f in &args.files {
        let name = f.display().to_string();
        let bytes = read_bytes(f)?;
        let out = tribune_policy::check_bytes(&name, &bytes);
        diags.extend(out.diagnostics);
        policies.extend(out.policies);
        sources.insert(name, text_of(&bytes));
    }
    // Cross-file conflicts; drop the ones each file already reported.
    let seen: BTreeSet<(String, u32, String)> = diags
        .iter()
        .map(|d| (d.file.clone(), d.offset, d.code.clone()))
        .collect();
    diags.extend(
        tribune_policy::check_set(&policies)
            .into_iter()
            .filter(|d| !seen.contains(&(d.file.clone(), d.offset, d.code.clone()))),
    );
    let errors = diags.iter().filter(|d| d.is_error()).count();
    let warnings = diags.len() - errors;
    let ok = errors == 0;
    match format {
        Format::Json | Format::Yaml => {
            let v = serde_json::json!({
                "ok": ok,
                "files": args.files.len(),
                "policies": policies.iter().map(|p| p.name()).collect::<Vec<_>>(),
                "errors": errors,
                "warnings": warnings,
                "diagnostics": diags,
            });
            output::structured(format, &v)?;
        }
        Format::Table | Format::Wide => {
            let mut err = std::io::stderr().lock();
            for (name, src) in &sources {
                let mine: Vec<_> = diags.iter().filter(|d| &d.file == name).cloned().collect();
                if !mine.is_empty() {
                    write!(
                        err,
                        "{}",
                        tribune_policy::render_diagnostics(name, src, &mine)
                    )?;
                }
            }
            if ok {
                println!(
                    "ok: {} file(s), {} policy(ies){}",
                    args.files.len(),
                    policies.len(),
                    if warnings > 0 {
                        format!(", {warnings} warning(s)")
                    } else {
                        String::new()
                    }
                );
            } else {
                writeln!(err, "error: {errors} error(s), {warnings} warning(s)")?;
            }
        }
    }
    Ok(if ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

pub fn fmt(args: FmtArgs) -> anyhow::Result<ExitCode> {
    if args.files.is_empty() {
        let mut bytes = Vec::new();
        std::io::stdin().read_to_end(&mut bytes)?;
        let src = text_of(&bytes);
        return match tribune_policy::format_bytes(&bytes) {
            Ok(out) => {
                if args.check && out.as_bytes() != bytes.as_slice() {
                    eprintln!("<stdin> is not formatted");
                    return Ok(ExitCode::FAILURE);
                }
                if !args.check {
                    print!("{out}");
                }
                Ok(ExitCode::SUCCESS)
            }
            Err(e) => {
                eprint!(
                    "{}",
                    tribune_policy::render_diagnostics("<stdin>", &src, &e.diagnostics)
                );
                Ok(ExitCode::FAILURE)
            }
        };
    }
    let mut failed = false;
    for f in &args.files {
        let name = f.display().to_string();
        let bytes = read_bytes(f)?;
        let src = text_of(&bytes);
        match tribune_policy::format_bytes(&bytes) {
            Ok(out) if out.as_bytes() == bytes.as_slice() => {}
            Ok(out) => {
                if args.check {
                    println!("would reformat {name}");
                    failed = true;
                } else {
                    std::fs::write(f, out).with_context(|| format!("cannot write {name}"))?;
                    println!("formatted {name}");
                }
            }
            Err(e) => {
                let diags: Vec<_> = e
                    .diagnostics
                    .into_iter()
                    .map(|mut d| {
                        d.file = name.clone();
                        d
                    })
                    .collect();
                eprint!(
                    "{}",
                    tribune_policy::render_diagnostics(&name, &src, &diags)
                );
                failed = true;
            }
        }
    }
    Ok(if failed {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    })
}

pub fn eval(args: EvalArgs, format: Format) -> anyhow::Result<ExitCode> {
    let name = args.file.display().to_string();
    let bytes = read_bytes(&args.file)?;
    let src = text_of(&bytes);
    let out = tribune_policy::check_bytes(&name, &bytes);
    if out.has_errors() {
        eprint!(
            "{}",
            tribune_policy::render_diagnostics(&name, &src, &out.diagnostics)
        );
        return Ok(ExitCode::FAILURE);
    }
    let facts_text = read(&args.facts)?;
    let facts: tribune_policy::Facts = serde_json::from_str(&facts_text)
        .with_context(|| format!("{} is not a valid facts file", args.facts.display()))?;
    let set = tribune_policy::PolicySet::new(out.policies);
    let text = match format.document(&set.report_json(&facts))? {
        Some(document) => document,
        None => set.report_text(&facts),
    };
    let mut stdout = std::io::stdout().lock();
    stdout.write_all(text.as_bytes())?;
    stdout.flush()?;
    Ok(ExitCode::SUCCESS)
}
