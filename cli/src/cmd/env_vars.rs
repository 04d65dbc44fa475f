//! Environment variables for the flags of the serving modes, named by one rule so none is
//! forgotten: `tribune controller --FLAG` reads `TRIBUNE_CONTROLLER_FLAG` and `tribune agent
//! [run] --FLAG` reads `TRIBUNE_AGENT_FLAG` (upper case, `-` → `_`: `--data-dir` →
//! `TRIBUNE_CONTROLLER_DATA_DIR`, `TRIBUNE_AGENT_DATA_DIR`). `tribune agent status` and `apply`
//! read `TRIBUNE_AGENT_DATA_DIR` too, so they find the agent the variable placed. `--help`
//! shows each variable beside its flag.
//!
//! Precedence: flag > variable > `--config` file > default. A variable counts as its flag
//! given: flags that cannot go together cannot come from variables together either. Repeatable
//! flags take a comma-separated list (`TRIBUNE_CONTROLLER_PEER=1=a:7401,2=b:7401`); on/off flags
//! take `true`/`false` (also `1`/`0`, `yes`/`no`, `on`/`off`).
//!
//! The prefix names the mode: one binary runs all of them, a host may run a controller and an
//! agent side by side, and the client verbs' `TRIBUNE_CA`/`TRIBUNE_CERT`/`TRIBUNE_KEY` are another
//! identity's files. Exceptions, on purpose:
//! - one-shot actions (`--resync-from-peers`, `--rotate-log-key`) have no variable: one left in a
//!   service's environment would repeat the action at every start;
//! - a flag that already had its variable keeps it (`--launch-policy`: `TRIBUNE_LAUNCH_POLICY`).

use clap::Command;

pub const CONTROLLER_PREFIX: &str = "TRIBUNE_CONTROLLER_";
pub const AGENT_PREFIX: &str = "TRIBUNE_AGENT_";

/// Flags that act once instead of setting something: never from the environment.
const ONE_SHOT: &[&str] = &["resync-from-peers", "rotate-log-key"];

/// Flags every command has that are not settings.
const NOT_SETTINGS: &[&str] = &["help", "version", "output"];

/// What `agent status` and `agent apply` share with the running agent.
const DATA_DIR_ONLY: &[&str] = &["data-dir"];

/// `tribune`'s command with the variables of this module attached.
pub fn attach(cmd: Command) -> Command {
    cmd.mut_subcommand("controller", |c| settings(c, CONTROLLER_PREFIX, None))
        .mut_subcommand("agent", |agent| {
            settings(agent, AGENT_PREFIX, None)
                .mut_subcommand("run", |c| settings(c, AGENT_PREFIX, None))
                .mut_subcommand("status", |c| settings(c, AGENT_PREFIX, Some(DATA_DIR_ONLY)))
                .mut_subcommand("apply", |c| settings(c, AGENT_PREFIX, Some(DATA_DIR_ONLY)))
        })
}

/// The variable of flag `--long` under `prefix`.
pub fn name(prefix: &str, long: &str) -> String {
    format!("{prefix}{}", long.to_ascii_uppercase().replace('-', "_"))
}

/// Gives each long flag of `cmd` (or only those in `only`) its variable.
fn settings(cmd: Command, prefix: &str, only: Option<&[&str]>) -> Command {
    let flags: Vec<(clap::Id, String)> = cmd
        .get_arguments()
        .filter(|a| a.get_env().is_none() && !a.is_positional())
        .filter_map(|a| Some((a.get_id().clone(), a.get_long()?)))
        .filter(|(_, long)| !ONE_SHOT.contains(long) && !NOT_SETTINGS.contains(long))
        .filter(|(_, long)| only.is_none_or(|o| o.contains(long)))
        .map(|(id, long)| (id, name(prefix, long)))
        .collect();
    flags
        .into_iter()
        .fold(cmd, |cmd, (id, var)| cmd.mut_arg(id, |a| a.env(var)))
}

/// For a usage error about a flag that no argument gave but a variable of this module did
/// (`TRIBUNE_AGENT_OBSERVE_ONLY=maybe`): a line naming the variable, which clap's message,
/// naming the flag, does not.
pub fn note_for(e: &clap::Error) -> Option<String> {
    let clap::error::ContextValue::String(arg) = e.get(clap::error::ContextKind::InvalidArg)?
    else {
        return None;
    };
    let flag = arg.strip_prefix("--")?;
    let flag = flag.split(['[', ' ', '=', '<']).next()?;
    [CONTROLLER_PREFIX, AGENT_PREFIX]
        .iter()
        .map(|p| name(p, flag))
        .chain((flag == "launch-policy").then(|| "TRIBUNE_LAUNCH_POLICY".to_string()))
        .find_map(|var| {
            let value = std::env::var_os(&var)?;
            Some(format!(
                "note: the environment sets {var}={:?}, which counts as --{flag}",
                value
            ))
        })
}

/// Removes every variable of this module from a child's environment: the processes `tribune
/// dev` starts are configured by their flags alone, whatever the shell that started it holds.
pub fn scrub(cmd: &mut std::process::Command) -> &mut std::process::Command {
    for (k, _) in std::env::vars_os() {
        let k_str = k.to_string_lossy();
        if k_str.starts_with(CONTROLLER_PREFIX) || k_str.starts_with(AGENT_PREFIX) {
            cmd.env_remove(&k);
        }
    }
    cmd
}
