//! `tribune bench migrate`: the figures of `tribune_bench::migrate`, printed beside QEMU's own,
//! for each guest asked for (the counter, the writer, or both in turn).

use std::path::Path;
use std::process::ExitCode;

use serde_json::json;
use tribune_agent::Guest;
use tribune_bench::Summary;
use tribune_bench::migrate::{MigrateConfig, MigrateResult, QemuFigures, guest_name, migrate};

use super::bench::{goal_line, result_line};
use super::output::Format;

/// Which guests `tribune bench migrate --guest` runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Guests {
    Counter,
    Writer,
    Both,
}

fn row(name: &str, s: Summary) {
    println!(
        "  {name:<44} {:>9.1} {:>9.1} {:>9.1} {:>9.1}",
        s.min, s.p50, s.p99, s.max
    );
}

fn header(what: &str) {
    println!(
        "  {what:<44} {:>9} {:>9} {:>9} {:>9}",
        "min", "p50", "p99", "max"
    );
}

fn qemu_rows(q: &QemuFigures) {
    row("QEMU total time, ms (floor)", q.total_ms);
    row("QEMU downtime, ms", q.downtime_ms);
    row("QEMU transferred, MB", q.transferred_mb);
    row(
        "QEMU dirty rate, pages/s (highest seen)",
        q.dirty_pages_per_s,
    );
    row("QEMU throughput, Mbit/s", q.mbps);
}

fn print(r: &MigrateResult) {
    println!(
        "guest {} ({} MiB{}): request phase {} trials, {} committed, {} rolled back",
        r.guest,
        r.memory_mib,
        if r.network {
            ", with a NIC: stream socket handed to QEMU by the agents"
        } else {
            ""
        },
        r.trials,
        r.committed,
        r.rolled_back
    );
    header("ms from the request");
    row("request → committed (Tribune)", r.total_ms);
    row("request → running on the target", r.running_ms);
    qemu_rows(&r.qemu);
    for why in &r.reasons {
        println!("  rolled back: {why}");
    }
    if let Some(b) = &r.breach {
        println!(
            "guest {}: breach phase {} trials, {} committed, {} rolled back",
            r.guest, b.trials, b.committed, b.rolled_back
        );
        header("ms from the breach (limit lowered)");
        row("→ decision logged", b.decided_ms);
        row("→ migration started (target checked)", b.started_ms);
        row("→ target ready", b.ready_ms);
        row("→ committed (switch-over)", b.committed_ms);
        row("→ running on the target (counter advancing)", b.running_ms);
        qemu_rows(&b.qemu);
        for why in &b.reasons {
            println!("  not run on the target: {why}");
        }
    }
}

/// What `tribune bench migrate` was asked for.
pub struct Run {
    pub trials: usize,
    pub memory_mib: u64,
    pub guests: Guests,
    pub writer_mib: u32,
    pub breach: bool,
    pub network: bool,
}

pub async fn run(exe: &Path, what: Run, format: Format) -> anyhow::Result<ExitCode> {
    let Run {
        trials,
        memory_mib,
        guests,
        writer_mib,
        breach,
        network,
    } = what;
    let writer = Guest::Writer { mib: writer_mib };
    let list: Vec<Guest> = match guests {
        Guests::Counter => vec![Guest::Counter],
        Guests::Writer => vec![writer],
        Guests::Both => vec![Guest::Counter, writer],
    };
    let mut all_ok = true;
    for guest in list {
        let cfg = MigrateConfig {
            trials: trials.max(1),
            memory_mib,
            guest,
            breach,
            network,
        };
        eprintln!(
            "{} live migrations (and {} by policy breach) of a {} MiB QEMU guest ({}) between two agents, 3 controllers…",
            cfg.trials,
            if breach { cfg.trials } else { 0 },
            cfg.memory_mib,
            guest_name(guest)
        );
        let r = migrate(exe, &cfg).await?;
        if !format.is_structured() {
            print(&r);
        }
        let breach_ok = r
            .breach
            .as_ref()
            .is_none_or(|b| b.committed == b.trials && b.running_ms.p99 <= 1500.0);
        let met = r.committed == r.trials
            && r.running_ms.p99 <= 1500.0
            && r.qemu.downtime_ms.p99 <= 150.0
            && breach_ok;
        goal_line(
            &format!(
                "{}: every trial committed, running on the target p99 ≤ 1.5 s (request and breach), downtime p99 ≤ 150 ms (issue 14)",
                r.guest
            ),
            met,
            &format!(
                "{}/{} committed, running p99 {:.0} ms, breach → running p99 {}, downtime p99 {:.0} ms",
                r.committed,
                r.trials,
                r.running_ms.p99,
                r.breach
                    .as_ref()
                    .map_or("-".into(), |b| format!("{:.0} ms", b.running_ms.p99)),
                r.qemu.downtime_ms.p99
            ),
        );
        result_line(format, &json!({"scenario": "migrate", "result": r}))?;
        all_ok &= r.committed == r.trials && breach_ok;
    }
    Ok(if all_ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}
