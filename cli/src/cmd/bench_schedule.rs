//! `tribune bench schedule --e2e`: the end-to-end figures of `tribune_bench::schedule_e2e`,
//! printed.

use std::path::Path;
use std::process::ExitCode;

use serde_json::json;
use tribune_bench::schedule_e2e::{E2eConfig, schedule_e2e};

use super::bench::{goal_line, result_line};
use super::output::Format;

pub async fn e2e(
    exe: &Path,
    hosts: Option<usize>,
    enclaves: Option<usize>,
    clients: usize,
    format: Format,
) -> anyhow::Result<ExitCode> {
    let d = E2eConfig::default();
    let cfg = E2eConfig {
        hosts: hosts.unwrap_or(d.hosts),
        enclaves: enclaves.unwrap_or(d.enclaves),
        clients: clients.max(1),
    };
    eprintln!(
        "placing {} enclaves on {} hosts through a local 3-controller cluster, {} clients…",
        cfg.enclaves, cfg.hosts, cfg.clients
    );
    let r = schedule_e2e(exe, &cfg).await?;
    if !format.is_structured() {
        println!(
            "{} enclaves on {} hosts, {} clients, 3 controllers",
            r.enclaves, r.hosts, r.clients
        );
        println!(
            "{:>8} {:>11} {:>8} {:>12} {:>8} {:>8} {:>8} {:>10} {:>14}",
            "placed",
            "unplaceable",
            "seconds",
            "placed/s",
            "p50 ms",
            "p99 ms",
            "max ms",
            "hosts used",
            "over-committed"
        );
        println!(
            "{:>8} {:>11} {:>8.2} {:>12.0} {:>8.1} {:>8.1} {:>8.1} {:>10} {:>14}",
            r.placed,
            r.unplaceable,
            r.seconds,
            r.placed_per_sec,
            r.latency_ms.p50,
            r.latency_ms.p99,
            r.latency_ms.max,
            r.hosts_used,
            r.over_committed_hosts
        );
    }
    goal_line(
        "no host's guarantees over its capacity",
        r.over_committed_hosts == 0,
        &format!("{} of {} hosts over", r.over_committed_hosts, r.hosts_used),
    );
    result_line(format, &json!({"scenario": "schedule-e2e", "result": r}))?;
    Ok(if r.over_committed_hosts == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}
