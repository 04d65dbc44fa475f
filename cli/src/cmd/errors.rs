//! Errors in `-o json` / `-o yaml`: besides the message on stderr, one document on stdout that
//! a script can read (exit codes unchanged: 1 the request failed, 2 usage or environment).
//!
//! - An answer from the API with problem details: those details, as the server sent them.
//! - Any other failure: `{"error": MESSAGE, "kind": "request"|"usage"}` (`request`: the request
//!   failed without an answer, exit 1; `usage`: a usage, I/O or environment error, exit 2).
//!   `tribune attest …` adds `"valid": false, "signature_and_chain_valid": false`, so a verdict
//!   reader needs no special case.
//!
//! The format is the parsed `-o/--output`. Only when parsing itself failed (a usage error, so
//! there is no parsed flag) is it found by [`format_of_failed_parse`], a pre-scan that reads
//! the command line the way clap would: it follows the subcommands, steps over the values of
//! the flags that take one, stops at `--` and at a flag that takes the rest of the line
//! (`--cmd …`), and reads only the forms `-o FMT`, `-oFMT`, `-o=FMT`, `--output FMT` and
//! `--output=FMT`. A positional argument that happens to be `json` is not one of them.

use std::ffi::OsString;

use clap::{Arg, Command, ValueEnum};
use serde_json::{Value, json};

use super::output::Format;

/// The document for a failure that carries no problem details.
pub fn document(message: &str, kind: &str, attest: bool) -> Value {
    let mut v = json!({"error": message, "kind": kind});
    if attest {
        v["valid"] = Value::Bool(false);
        v["signature_and_chain_valid"] = Value::Bool(false);
    }
    v
}

/// What the pre-scan of a command line that did not parse found.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Scan {
    /// The last `-o/--output` given (a value that is not a format counts as none).
    pub format: Option<Format>,
    /// The top-level verb (`attest`, `policy`, …), when one was reached.
    pub verb: Option<String>,
}

impl Scan {
    pub fn format(&self) -> Format {
        self.format.unwrap_or_default()
    }
}

fn parse_format(v: &str) -> Option<Format> {
    Format::from_str(v, false).ok()
}

/// How many of the following arguments `arg` consumes when given as a separate word (0: none,
/// `usize::MAX`: the rest of the line).
fn values_taken(arg: &Arg) -> usize {
    if !arg.get_action().takes_values() || arg.is_require_equals_set() {
        return 0;
    }
    let max = arg.get_num_args().map_or(1, |r| r.max_values());
    if max > 1 && arg.is_allow_hyphen_values_set() {
        return usize::MAX;
    }
    max
}

/// Reads `args` (with the program name first) against `cmd` as described in the module docs.
pub fn format_of_failed_parse(cmd: &Command, args: &[OsString]) -> Scan {
    let mut cmd = cmd.clone();
    cmd.build();
    let mut cur = &cmd;
    let mut scan = Scan::default();
    let mut i = 1;
    while i < args.len() {
        let Some(a) = args[i].to_str() else {
            i += 1;
            continue;
        };
        i += 1;
        if a == "--" {
            break;
        }
        if a == "--output" || a == "-o" {
            if let Some(v) = args.get(i).and_then(|v| v.to_str()) {
                scan.format = parse_format(v);
                i += 1;
            }
            continue;
        }
        if let Some(v) = a.strip_prefix("--output=") {
            scan.format = parse_format(v);
            continue;
        }
        if let Some(long) = a.strip_prefix("--") {
            let (name, inline) = match long.split_once('=') {
                Some((n, _)) => (n, true),
                None => (long, false),
            };
            let Some(arg) = cur.get_arguments().find(|x| x.get_long() == Some(name)) else {
                continue;
            };
            if inline {
                continue;
            }
            match values_taken(arg) {
                usize::MAX => break,
                n => {
                    let hyphens = arg.is_allow_hyphen_values_set();
                    let mut taken = 0;
                    while taken < n
                        && args
                            .get(i)
                            .and_then(|v| v.to_str())
                            .is_some_and(|v| hyphens || !v.starts_with('-') || v == "-")
                    {
                        i += 1;
                        taken += 1;
                    }
                }
            }
            continue;
        }
        if let Some(v) = a.strip_prefix("-o") {
            scan.format = parse_format(v.strip_prefix('=').unwrap_or(v));
            continue;
        }
        if a.starts_with('-') && a.len() > 1 {
            // Another short flag: only -h and -V exist, and neither takes a value.
            continue;
        }
        // A positional argument, or the next subcommand.
        if let Some(sub) = cur.find_subcommand(a) {
            if scan.verb.is_none() {
                scan.verb = Some(sub.get_name().to_string());
            }
            cur = sub;
        }
    }
    scan
}
