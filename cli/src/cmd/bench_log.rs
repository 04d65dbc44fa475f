//! `tribune bench log`: the attestation log's Merkle tree at scale, in process (no cluster).

use std::path::PathBuf;

use anyhow::Context;
use clap::Args;

use super::bench::{goal_line, result_line};
use super::output::Format;

/// The attestation log's Merkle tree at scale (in process; no cluster): append N leaves into
/// the tree's node store, then at each size inclusion and consistency proof latency, this
/// process's RSS, and a restart (sync, close, reopen until the root is served).
#[derive(Args, Debug)]
pub struct LogArgs {
    /// Leaves appended.
    #[arg(long, default_value_t = 10_000_000)]
    entries: u64,
    /// Sizes measured on the way, comma-separated (the final size always is).
    #[arg(long, default_value = "1000000", value_delimiter = ',')]
    at: Vec<u64>,
    /// Proofs of each kind timed per size.
    #[arg(long, default_value_t = 10_000)]
    proofs: usize,
    /// Node store: `file` (per-level node files) or `memory`.
    #[arg(long, default_value = "file")]
    backend: tribune_bench::log::Backend,
    /// Directory for the node files (a fresh subdirectory, removed afterwards).
    #[arg(long)]
    dir: Option<PathBuf>,
    #[arg(long, default_value_t = 1)]
    seed: u64,
}

/// Runs the benchmark off the async workers (minutes of hashing and file I/O) and prints it.
pub async fn run(a: LogArgs, format: Format) -> anyhow::Result<()> {
    let args = tribune_bench::log::LogArgs {
        entries: a.entries,
        at: a.at,
        proofs: a.proofs,
        backend: a.backend,
        dir: a.dir,
        seed: a.seed,
    };
    tokio::task::spawn_blocking(move || print(&args, format))
        .await
        .context("the log benchmark's thread")?
}

/// The issue-13 goals for `tribune bench log`.
const GOAL_LOG_PROOF_P99_MS: f64 = 1.0;
const GOAL_LOG_RESTART_MS: f64 = 5000.0;

/// `tribune bench log`.
fn print(args: &tribune_bench::log::LogArgs, format: Format) -> anyhow::Result<()> {
    let f = tribune_bench::log::run(args)?;
    if format == Format::Table {
        println!(
            "Merkle log, {:?} node store, {} proofs of each kind per size (ms: p50 / p99 / max)",
            f.backend, f.proofs
        );
        println!(
            "{:>11} {:>10} {:>26} {:>26} {:>9} {:>11} {:>9}",
            "leaves",
            "appends/s",
            "inclusion+root",
            "consistency+roots",
            "RSS MiB",
            "restart ms",
            "disk MiB"
        );
        let tri =
            |s: &tribune_bench::Summary| format!("{:.3} / {:.3} / {:.3}", s.p50, s.p99, s.max);
        for s in &f.sizes {
            println!(
                "{:>11} {:>10.0} {:>26} {:>26} {:>9.1} {:>11} {:>9}",
                s.size,
                s.appends_per_s,
                tri(&s.inclusion_ms),
                tri(&s.consistency_ms),
                s.rss_mib,
                s.restart_ms.map_or("-".into(), |r| format!("{r:.1}")),
                s.bytes_on_disk
                    .map_or("-".into(), |b| format!("{:.0}", b as f64 / 1048576.0)),
            );
        }
        if let Some(last) = f.sizes.last() {
            goal_line(
                "inclusion proof p99 ≤ 1 ms",
                last.inclusion_ms.p99 <= GOAL_LOG_PROOF_P99_MS,
                &format!("{:.3} ms at {} leaves", last.inclusion_ms.p99, last.size),
            );
            if let Some(r) = last.restart_ms {
                goal_line(
                    "store reopened and serving ≤ 5 s",
                    r <= GOAL_LOG_RESTART_MS,
                    &format!(
                        "{r:.1} ms at {} leaves (the tree's store only: not a controller)",
                        last.size
                    ),
                );
            }
            if let (Some(r), Some(c)) = (last.cold_restart_ms, last.cold_inclusion_ms) {
                println!(
                    "cold (node files evicted from the page cache): restart {r:.1} ms; first {} inclusion proofs p50 {:.3} / p99 {:.3} / max {:.3} ms",
                    c.n, c.p50, c.p99, c.max
                );
            }
            if let Some(first) = f.sizes.first().filter(|s| s.size != last.size) {
                println!(
                    "RSS {:.1} MiB at {} leaves, {:.1} MiB at {}",
                    first.rss_mib, first.size, last.rss_mib, last.size
                );
            }
        }
    }
    result_line(format, &serde_json::to_value(&f)?)
}
