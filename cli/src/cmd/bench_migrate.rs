//! `tribune bench migrate`: the figures of `tribune_bench::migrate`, printed beside QEMU's own.

use std::path::Path;
use std::process::ExitCode;

use serde_json::json;
use tribune_bench::migrate::{MigrateConfig, migrate};

use super::bench::{goal_line, result_line};
use super::output::Format;

pub async fn run(
    exe: &Path,
    trials: usize,
    memory_mib: u64,
    format: Format,
) -> anyhow::Result<ExitCode> {
    let cfg = MigrateConfig {
        trials: trials.max(1),
        memory_mib,
    };
    eprintln!(
        "{} live migrations of a {} MiB QEMU guest between two agents, 3 controllers…",
        cfg.trials, cfg.memory_mib
    );
    let r = migrate(exe, &cfg).await?;
    if !format.is_structured() {
        println!(
            "{} trials, {} committed, {} rolled back",
            r.trials, r.committed, r.rolled_back
        );
        println!(
            "{:<34} {:>9} {:>9} {:>9} {:>9}",
            "ms", "min", "p50", "p99", "max"
        );
        for (name, s) in [
            ("request → committed (Tribune)", r.total_ms),
            ("QEMU total time (floor)", r.qemu_total_ms),
            ("QEMU downtime", r.downtime_ms),
        ] {
            println!(
                "{name:<34} {:>9.1} {:>9.1} {:>9.1} {:>9.1}",
                s.min, s.p50, s.p99, s.max
            );
        }
        for why in &r.reasons {
            println!("rolled back: {why}");
        }
    }
    let met = r.committed == r.trials && r.total_ms.p99 <= 1500.0 && r.downtime_ms.p99 <= 150.0;
    goal_line(
        "every trial committed, p99 ≤ 1.5 s and downtime p99 ≤ 150 ms (issue 14)",
        met,
        &format!(
            "{}/{} committed, p99 {:.0} ms, downtime p99 {:.0} ms",
            r.committed, r.trials, r.total_ms.p99, r.downtime_ms.p99
        ),
    );
    result_line(format, &json!({"scenario": "migrate", "result": r}))?;
    Ok(if r.committed == r.trials {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}
