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
        }
        Ok(ExitCode::SUCCESS)
    })
}
