//! `tribune snapshot save|status|restore`: back up a running cluster's whole replicated state
//! (`GET /v1/snapshot`), inspect a backup file, and restore one offline into new data dirs.
//! The format and its checks are `tribune_controller::raft::backup`'s; the runbook is
//! `deploy/README.md` ("Back up and restore").

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{Context, anyhow, bail};
use clap::Subcommand;
use reqwest::Method;
use serde::Serialize;
use tribune_controller::raft::backup::{self, Backup};

use super::client::{Client, ClientOpts};
use super::output::Format;

#[derive(Subcommand, Debug)]
pub enum SnapshotCmd {
    /// Save a backup of the whole replicated state (policies, enclaves, hosts, tokens, the
    /// attestation log…) to FILE. It holds every write acknowledged before the command started.
    /// Admins only. The file is checked before it is kept (written to FILE.part, then renamed).
    Save {
        file: PathBuf,
        #[command(flatten)]
        opts: ClientOpts,
    },
    /// Check a backup file offline and say what it holds.
    Status { file: PathBuf },
    /// Restore a backup offline into a new data dir for controller ID, then start the
    /// controller on it (`tribune controller --id ID --data-dir DIR …`). Run it once per
    /// controller, each into its own empty data dir. The restored controllers form the
    /// backup's membership, or the one given with --member.
    Restore {
        file: PathBuf,
        /// The data dir to create (must not hold a controller's data).
        #[arg(long)]
        data_dir: PathBuf,
        /// This controller's id; it must be a member.
        #[arg(long)]
        id: u64,
        /// The restored cluster's members as ID=HOST:PORT, repeated (default: the backup's).
        /// Give the same list to every controller's restore.
        #[arg(long = "member", value_name = "ID=HOST:PORT")]
        members: Vec<String>,
    },
}

/// What a backup holds, as printed.
#[derive(Serialize)]
struct Summary {
    file: String,
    bytes: usize,
    sha256: String,
    last_index: u64,
    last_term: u64,
    members: BTreeMap<u64, String>,
    policies: usize,
    enclaves: usize,
    hosts: usize,
    log_entries: usize,
}

fn summary(file: &Path, bytes: usize, b: &Backup) -> Summary {
    Summary {
        file: file.display().to_string(),
        bytes,
        sha256: b.sha256.clone(),
        last_index: b.last_index(),
        last_term: b.snapshot.meta.last_log_id.map_or(0, |l| l.leader_id.term),
        members: b.members(),
        policies: b.state.policies.len(),
        enclaves: b.state.enclaves.len(),
        hosts: b.state.hosts.len(),
        log_entries: b.state.log.entries.len(),
    }
}

fn print(out: Format, verb: &str, s: &Summary) -> anyhow::Result<()> {
    if out.is_structured() {
        println!("{}", serde_json::to_string_pretty(s)?);
    } else {
        let members: Vec<String> = s.members.iter().map(|(i, a)| format!("{i}={a}")).collect();
        println!(
            "{verb} {}: {} bytes, sha256 {}\n  up to log index {} (term {}); members {}\n  {} policies, {} enclaves, {} hosts, {} attestation-log entries",
            s.file,
            s.bytes,
            s.sha256,
            s.last_index,
            s.last_term,
            members.join(", "),
            s.policies,
            s.enclaves,
            s.hosts,
            s.log_entries
        );
    }
    Ok(())
}

fn read_backup(file: &Path) -> anyhow::Result<(usize, Backup)> {
    let bytes = std::fs::read(file).with_context(|| format!("reading {}", file.display()))?;
    let b = backup::decode(&bytes).with_context(|| format!("{}", file.display()))?;
    Ok((bytes.len(), b))
}

/// `ID=HOST:PORT` pairs.
fn parse_members(list: &[String]) -> anyhow::Result<BTreeMap<u64, String>> {
    let mut out = BTreeMap::new();
    for m in list {
        let (id, addr) = m
            .split_once('=')
            .ok_or_else(|| anyhow!("--member {m:?}: expected ID=HOST:PORT"))?;
        let id: u64 = id
            .parse()
            .map_err(|_| anyhow!("--member {m:?}: {id:?} is not a controller id"))?;
        if addr.parse::<std::net::SocketAddr>().is_err() && !addr.contains(':') {
            bail!("--member {m:?}: {addr:?} is not HOST:PORT");
        }
        if out.insert(id, addr.to_string()).is_some() {
            bail!("--member: id {id} is given twice");
        }
    }
    Ok(out)
}

/// Writes `bytes` to `file` durably: a `.part` file, fsync, rename, fsync of the directory.
fn write_durably(file: &Path, bytes: &[u8]) -> anyhow::Result<()> {
    let mut part = file.as_os_str().to_owned();
    part.push(".part");
    let part = PathBuf::from(part);
    let mut f =
        std::fs::File::create(&part).with_context(|| format!("creating {}", part.display()))?;
    f.write_all(bytes)
        .and_then(|()| f.sync_all())
        .with_context(|| format!("writing {}", part.display()))?;
    std::fs::rename(&part, file).with_context(|| format!("renaming to {}", file.display()))?;
    let dir = file
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    std::fs::File::open(dir)
        .and_then(|d| d.sync_all())
        .with_context(|| format!("syncing {}", dir.display()))?;
    Ok(())
}

pub fn run(cmd: SnapshotCmd, out: Format) -> anyhow::Result<ExitCode> {
    match cmd {
        SnapshotCmd::Save { file, opts } => {
            let client = Client::new(&opts, out)?;
            let (_, _, bytes) = super::client::runtime()?
                .block_on(client.call_bytes(Method::GET, "/v1/snapshot", None, &[]))
                .map_err(|e| anyhow!(e))?;
            // Checked here too: what is kept on disk must restore.
            let b = backup::decode(&bytes).context("the backup the controller sent")?;
            write_durably(&file, &bytes)?;
            print(out, "saved", &summary(&file, bytes.len(), &b))?;
            Ok(ExitCode::SUCCESS)
        }
        SnapshotCmd::Status { file } => {
            let (len, b) = read_backup(&file)?;
            print(out, "ok", &summary(&file, len, &b))?;
            Ok(ExitCode::SUCCESS)
        }
        SnapshotCmd::Restore {
            file,
            data_dir,
            id,
            members,
        } => {
            let (len, mut b) = read_backup(&file)?;
            if !members.is_empty() {
                b.set_members(&parse_members(&members)?);
            }
            b.restore_into(&data_dir, id).with_context(|| {
                format!("restoring {} into {}", file.display(), data_dir.display())
            })?;
            print(out, "restored", &summary(&file, len, &b))?;
            if !out.is_structured() {
                println!(
                    "  data dir {} is controller {id}'s; start it with `tribune controller --id {id} --data-dir {}` (no --init)",
                    data_dir.display(),
                    data_dir.display()
                );
            }
            Ok(ExitCode::SUCCESS)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn members_are_id_equals_address() {
        let m = parse_members(&["1=127.0.0.1:7001".into(), "2=ctl-2.example:7001".into()])
            .expect("parses");
        assert_eq!(m.len(), 2);
        assert!(parse_members(&["1".into()]).is_err());
        assert!(parse_members(&["x=127.0.0.1:1".into()]).is_err());
        assert!(parse_members(&["1=nowhere".into()]).is_err());
        assert!(parse_members(&["1=a:1".into(), "1=b:2".into()]).is_err());
    }
}
