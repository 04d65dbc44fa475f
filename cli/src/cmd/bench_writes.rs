//! `tribune bench writes`: Tribune's writes side by side with etcd's (one run, medians and
//! ratios), against a local 3-controller cluster or given endpoints.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use serde_json::json;

use super::bench::{goal_line, result_line};
use super::client::ClientOpts;
use super::output::Format;

/// The goal `writes` is judged against: at least this × etcd's writes/s (and p99 no worse).
const GOAL_THROUGHPUT_RATIO: f64 = 2.0;

pub(super) struct WritesArgs {
    pub(super) clients: Vec<usize>,
    pub(super) seconds: u64,
    pub(super) rounds: usize,
    pub(super) value_bytes: usize,
    pub(super) local: bool,
    pub(super) etcd: bool,
    pub(super) etcd_binary: Option<PathBuf>,
    pub(super) install: bool,
}

pub(super) async fn writes(
    exe: &std::path::Path,
    a: WritesArgs,
    opts: &ClientOpts,
    format: Format,
) -> anyhow::Result<ExitCode> {
    let _cluster;
    let mut tribune_pids = Vec::new();
    let endpoints: Vec<String> = if a.local {
        eprintln!("writes: starting a local 3-controller cluster …");
        let http = reqwest::Client::new();
        let c = tribune_bench::cluster::LocalCluster::start_ready(exe, 3, &[], &http).await?;
        let eps = c.endpoints();
        tribune_pids = c.pids().into_iter().map(|(_, p)| p).collect();
        _cluster = c;
        eps
    } else {
        // The load generator speaks plain gRPC and HTTP (no TLS): point it at an `--insecure` cluster.
        let (eps, tls) = opts.resolve()?;
        anyhow::ensure!(
            tls.is_none(),
            "bench writes speaks plain gRPC/HTTP only (no TLS): run it with --local, or against controllers started with --insecure and an http:// --endpoint"
        );
        eps
    };

    // etcd side by side: only against a local cluster (same machine, same load).
    let mut etcd_skipped: Option<String> = None;
    let mut etcd_version = None;
    let mut _etcd_cluster = None;
    let mut etcd_clients = None;
    if !a.etcd {
        etcd_skipped = Some("--no-etcd".into());
    } else if !a.local {
        etcd_skipped = Some("etcd runs side by side only with --local".into());
    } else {
        match tribune_bench::etcd::locate(a.etcd_binary.as_deref(), a.install) {
            Err(why) => etcd_skipped = Some(why),
            Ok(bin) => {
                let v = tribune_bench::etcd::version(&bin);
                eprintln!("writes: starting a local 3-member etcd cluster ({v}) …");
                let mut c = tribune_bench::etcd::EtcdCluster::start(&bin, 3)?;
                match c.wait_ready(Duration::from_secs(30)).await {
                    Ok(()) => {
                        etcd_clients = Some(c.clients()?);
                        etcd_version = Some(v);
                        _etcd_cluster = Some(c);
                    }
                    Err(e) => etcd_skipped = Some(format!("the etcd cluster did not start: {e}")),
                }
            }
        }
    }
    if let Some(why) = &etcd_skipped {
        // Loud, on both streams: a run without the comparison must not pass for one with it.
        eprintln!("skipped etcd: {why}");
        if !format.is_structured() {
            println!("skipped etcd: {why}");
        }
    }

    let etcd_pids = _etcd_cluster
        .as_ref()
        .map(tribune_bench::etcd::EtcdCluster::pids)
        .unwrap_or_default();
    let rows = tribune_bench::compare_writes(
        &endpoints,
        &tribune_pids,
        etcd_clients.as_deref().map(|c| (c, etcd_pids.as_slice())),
        &a.clients,
        a.rounds,
        Duration::from_secs(a.seconds),
        a.value_bytes,
        |line| eprintln!("writes: {line}"),
    )
    .await?;

    if !format.is_structured() {
        let mut t = comfy_table::Table::new();
        t.load_preset(comfy_table::presets::UTF8_BORDERS_ONLY);
        let mut header = vec!["clients", "tribune writes/s (min–max)", "p50 ms", "p99 ms"];
        if etcd_clients.is_some() {
            header.extend([
                "etcd writes/s (min–max)",
                "p50 ms",
                "p99 ms",
                "writes/s ratio (min–max)",
                "p99 ratio",
                "server CPU µs/write tribune | etcd",
            ]);
        }
        t.set_header(header);
        for r in &rows {
            let mut row = vec![
                r.clients.to_string(),
                format!(
                    "{:.0} ({:.0}–{:.0})",
                    r.tribune_writes_per_sec.p50,
                    r.tribune_writes_per_sec.min,
                    r.tribune_writes_per_sec.max
                ),
                format!("{:.2}", r.tribune_p50_ms),
                format!("{:.2}", r.tribune_p99_ms),
            ];
            if etcd_clients.is_some() {
                row.extend([
                    format!(
                        "{:.0} ({:.0}–{:.0})",
                        r.etcd_writes_per_sec.p50,
                        r.etcd_writes_per_sec.min,
                        r.etcd_writes_per_sec.max
                    ),
                    format!("{:.2}", r.etcd_p50_ms),
                    format!("{:.2}", r.etcd_p99_ms),
                    format!(
                        "{:.2}x ({:.2}–{:.2})",
                        r.throughput_ratio.p50, r.throughput_ratio.min, r.throughput_ratio.max
                    ),
                    format!("{:.2}x", r.p99_ratio.p50),
                    format!(
                        "{} | {}",
                        r.tribune_cpu_us_per_write
                            .map_or("-".into(), |c| format!("{c:.0}")),
                        r.etcd_cpu_us_per_write
                            .map_or("-".into(), |c| format!("{c:.0}"))
                    ),
                ]);
            }
            t.add_row(row);
        }
        println!("{t}");
        println!(
            "{} rounds x {} s per client count and system; medians over rounds, ratio = Tribune / etcd per round",
            a.rounds, a.seconds
        );
        if etcd_clients.is_some() {
            for r in &rows {
                let met = r.throughput_ratio.p50 >= GOAL_THROUGHPUT_RATIO && r.p99_ratio.p50 <= 1.0;
                goal_line(
                    &format!(
                        ">= 2x etcd writes/s with p99 no worse, {} clients",
                        r.clients
                    ),
                    met,
                    &format!(
                        "{:.2}x etcd's writes/s ({:.2}x the goal), p99 {:.2}x etcd's",
                        r.throughput_ratio.p50,
                        r.throughput_ratio.p50 / GOAL_THROUGHPUT_RATIO,
                        r.p99_ratio.p50
                    ),
                );
            }
        }
    }
    result_line(
        format,
        &json!({
            "scenario": "writes",
            "rounds": a.rounds,
            "seconds": a.seconds,
            "value_bytes": a.value_bytes,
            "etcd": etcd_version,
            "etcd_skipped": etcd_skipped,
            "results": rows,
        }),
    )?;
    Ok(ExitCode::SUCCESS)
}
