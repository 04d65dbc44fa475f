//! `tribune bench SCENARIO`: runs a benchmark scenario from `tribune-bench`, prints a table and
//! one JSON line.

use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context;
use clap::Subcommand;

use super::client::{ClientOpts, Output};

#[derive(Subcommand, Debug)]
pub enum BenchCmd {
    /// Concurrent policy writes: writes/s and latency for each client count.
    Writes {
        /// Client counts to run, comma-separated.
        #[arg(long, default_value = "1,16,64", value_delimiter = ',')]
        clients: Vec<usize>,
        /// Seconds per client count.
        #[arg(long, default_value_t = 10)]
        seconds: u64,
        /// Policy source size in bytes.
        #[arg(long, default_value_t = 256)]
        value_bytes: usize,
        /// Start a fresh local 3-controller cluster (fsync on) instead of using --endpoint.
        #[arg(long)]
        local: bool,
        #[command(flatten)]
        opts: ClientOpts,
    },
    /// kill -9 the leader under load, time until the next acknowledged write.
    Failover {
        #[arg(long, default_value_t = 20)]
        trials: usize,
        #[command(flatten)]
        opts: ClientOpts,
    },
    /// Simulated agents stream MAC'd usage reports and signed checkpoints to a local
    /// 3-controller cluster: reports/s verified, report-to-decision latency, controller CPU.
    Ingest {
        #[arg(long, default_value_t = 100)]
        hosts: usize,
        #[arg(long, default_value_t = 100)]
        enclaves_per_host: usize,
        /// Seconds of streaming.
        #[arg(long, default_value_t = 10)]
        seconds: u64,
        /// Report interval per enclave, milliseconds.
        #[arg(long, default_value_t = 100)]
        interval_ms: u64,
        /// Every this many-th enclave goes over its CPU limit once (the latency samples).
        #[arg(long, default_value_t = 50)]
        over_limit_every: usize,
        #[command(flatten)]
        opts: ClientOpts,
    },
    /// Over-limit report → CPU cap written into the cgroup by a real host agent (root).
    EnforceLatency {
        #[arg(long, default_value_t = 50)]
        trials: usize,
        #[command(flatten)]
        opts: ClientOpts,
    },
}

pub fn run(cmd: BenchCmd) -> anyhow::Result<ExitCode> {
    let exe = std::env::current_exe().context("locating the tribune binary")?;
    super::client::runtime()?.block_on(async move {
        match cmd {
            BenchCmd::Writes { clients, seconds, value_bytes, local, opts } => {
                let _cluster;
                let endpoints: Vec<String> = if local {
                    let c = tribune_bench::cluster::LocalCluster::start(&exe, 3, &[])?;
                    let http = reqwest::Client::new();
                    c.wait_leader(&http, Duration::from_secs(30)).await?;
                    c.wait_all_healthy(&http, Duration::from_secs(30)).await?;
                    let eps = c.endpoints();
                    _cluster = c;
                    eps
                } else {
                    // The load generator speaks plain HTTP: point it at an `--insecure` cluster.
                    let (eps, tls) = opts.resolve()?;
                    anyhow::ensure!(tls.is_none(), "bench writes speaks plain HTTP only: run it with --local, or against controllers started with --insecure and an http:// --endpoint");
                    eps
                };
                let mut reports = Vec::new();
                for n in clients {
                    eprintln!("writes: {n} clients for {seconds}s …");
                    let r = tribune_bench::writes(&endpoints, n, Duration::from_secs(seconds), value_bytes).await?;
                    if opts.output == Output::Table {
                        println!(
                            "clients {:>3}  writes/s {:>9.0}  p50 {:>7.2} ms  p99 {:>7.2} ms  (min {:.2}, max {:.2}; {} writes, {} errors)",
                            r.clients, r.writes_per_sec, r.latency_ms.p50, r.latency_ms.p99, r.latency_ms.min, r.latency_ms.max, r.writes, r.errors
                        );
                    }
                    reports.push(r);
                }
                println!("{}", serde_json::json!({"scenario": "writes", "results": reports}));
            }
            BenchCmd::Failover { trials, opts } => {
                let r = tribune_bench::failover(&exe, trials, |i, d| eprintln!("trial {:>2}: {:.0} ms", i + 1, d.as_secs_f64() * 1000.0))
                    .await?;
                if opts.output == Output::Table {
                    println!(
                        "failover over {} trials: p50 {:.0} ms  p99 {:.0} ms  (min {:.0}, max {:.0}); heartbeat {} ms, election timeout {}–{} ms",
                        r.trials, r.recovery_ms.p50, r.recovery_ms.p99, r.recovery_ms.min, r.recovery_ms.max, r.heartbeat_ms, r.election_timeout_ms, r.election_timeout_ms * 2
                    );
                }
                println!("{}", serde_json::json!({"scenario": "failover", "result": r}));
            }
            BenchCmd::Ingest { hosts, enclaves_per_host, seconds, interval_ms, over_limit_every, opts } => {
                let cfg = tribune_bench::ingest::IngestConfig {
                    hosts,
                    enclaves_per_host,
                    seconds,
                    interval_ms,
                    over_limit_every,
                    ..Default::default()
                };
                let r = tribune_bench::ingest::ingest(&exe, &cfg, |m| eprintln!("ingest: {m}")).await?;
                if opts.output == Output::Table {
                    print_ingest(&r);
                }
                println!("{}", serde_json::json!({"scenario": "ingest", "result": r}));
            }
            BenchCmd::EnforceLatency { trials, opts } => {
                if !tribune_bench::enforce::is_root() {
                    eprintln!("skipped: enforce-latency: not root (the host agent writes cgroups)");
                    println!("{}", serde_json::json!({"scenario": "enforce-latency", "skipped": "not root"}));
                    return Ok(ExitCode::SUCCESS);
                }
                let r = tribune_bench::enforce::enforce_latency(&exe, trials, |m| eprintln!("enforce-latency: {m}")).await?;
                if opts.output == Output::Table {
                    let row = |name: &str, s: &tribune_bench::Summary| {
                        println!(
                            "{name:<34} p50 {:>7.1} ms  p99 {:>7.1} ms  (min {:.1}, max {:.1}; n {})",
                            s.p50, s.p99, s.min, s.max, s.n
                        )
                    };
                    row("window end → cap in cgroup", &r.latency_ms);
                    row("window end → violation decided", &r.decided_ms);
                    row("idle → cap lifted", &r.release_ms);
                }
                println!("{}", serde_json::json!({"scenario": "enforce-latency", "result": r}));
            }
        }
        Ok(ExitCode::SUCCESS)
    })
}

fn print_ingest(r: &tribune_bench::ingest::IngestReport) {
    println!(
        "{} enclaves on {} hosts, a report every {} ms each, checkpoint every {} reports (stream sealed ahead of time)",
        r.enclaves, r.hosts, r.interval_ms, r.checkpoint_every
    );
    println!(
        "offered (schedule)            {:>10.0} reports/s",
        r.offered_per_sec
    );
    println!(
        "sent                          {:>10.0} reports/s  ({} reports in {:.1} s; send lag p50 {:.1} ms, p99 {:.1} ms, max {:.1})",
        r.sent_per_sec,
        r.sent_reports,
        r.send_seconds,
        r.send_lag_ms.p50,
        r.send_lag_ms.p99,
        r.send_lag_ms.max
    );
    println!(
        "verified + evaluated         {:>10.0} reports/s  ({:.2}× offered{}; {} reports in all, the last digest committed {:.1} s after the last send)",
        r.verified_per_sec,
        r.verified_ratio,
        if r.verified_steady {
            ", steady state"
        } else {
            ", whole run"
        },
        r.verified_reports,
        r.ack_trail_seconds
    );
    let row = |name: &str, s: &tribune_bench::Summary| {
        println!(
            "{name:<29} p50 {:>7.1} ms  p99 {:>7.1} ms  (min {:.1}, max {:.1}; n {} of {})",
            s.p50, s.p99, s.min, s.max, s.n, r.over_limit_injected
        )
    };
    row("window end → decided", &r.decided_ms);
    row("window end → plan received", &r.planned_ms);
    let per: Vec<String> = r
        .controllers
        .iter()
        .map(|c| format!("{}: {:.2}", c.id, c.cores))
        .collect();
    println!(
        "controller CPU                {:>10.2} cores  ({})",
        r.controllers_cores,
        per.join(", ")
    );
    println!(
        "generator CPU (sending)       {:>10.2} cores  (sealing: {:.0} reports/s, {:.1} s)",
        r.generator_cores, r.seal_reports_per_sec, r.seal_seconds
    );
}
