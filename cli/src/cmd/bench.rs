//! `tribune bench SCENARIO`: runs a benchmark scenario from `tribune-bench`, prints a table,
//! one line per goal, and one JSON line. Progress goes to stderr.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::Subcommand;
use serde_json::json;
use tribune_bench::memory::AgentOutcome;

use super::client::ClientOpts;
use super::output::{self, Format};

/// The issue-6 goals these scenarios are judged against.
const GOAL_CONTROLLER_MIB: f64 = 300.0;
const GOAL_AGENT_MIB: f64 = 40.0;

#[derive(Subcommand, Debug)]
pub enum BenchCmd {
    /// Concurrent policy writes: writes/s and latency for each client count; with --local,
    /// side by side with a local 3-member etcd cluster under the same load.
    Writes {
        /// Client counts to run, comma-separated.
        #[arg(long, default_value = "1,16,64", value_delimiter = ',')]
        clients: Vec<usize>,
        /// Seconds per client count, per system, per round.
        #[arg(long, default_value_t = 5)]
        seconds: u64,
        /// Rounds; each runs every client count against Tribune, then etcd.
        #[arg(long, default_value_t = 3)]
        rounds: usize,
        /// Policy source size in bytes.
        #[arg(long, default_value_t = 256)]
        value_bytes: usize,
        /// Start a fresh local 3-controller cluster (fsync on) instead of using --endpoint.
        #[arg(long)]
        local: bool,
        /// Do not run etcd side by side (it runs with --local by default).
        #[arg(long)]
        no_etcd: bool,
        /// The etcd binary (default: `etcd` on PATH).
        #[arg(long)]
        etcd_binary: Option<PathBuf>,
        /// Do not apt-get install etcd-server when etcd is missing.
        #[arg(long)]
        no_install: bool,
        #[command(flatten)]
        opts: ClientOpts,
    },
    /// kill -9 (or SIGTERM) the leader under load, time until the next acknowledged write;
    /// or, with --soak, count elections under load without kills.
    Failover {
        #[arg(long, default_value_t = 20)]
        trials: usize,
        /// Leader heartbeat interval given to every controller [default: the controller's
        /// default, 50].
        #[arg(long)]
        heartbeat_ms: Option<u64>,
        /// Election timeout given to every controller (the leader's silence after which a
        /// follower stands, after a pre-vote) [default: the controller's default, 150].
        #[arg(long)]
        election_timeout_ms: Option<u64>,
        /// Background writers kept running through every kill.
        #[arg(long, default_value_t = 4)]
        load_clients: usize,
        /// SIGTERM the leader instead of kill -9: it hands its leadership over before it exits.
        #[arg(long, conflicts_with = "soak")]
        graceful: bool,
        /// No kills: run the full write load for this many seconds and count the elections
        /// (all spurious) and lost writes.
        #[arg(long, value_name = "SECONDS")]
        soak: Option<u64>,
        #[command(flatten)]
        opts: ClientOpts,
    },
    /// Resident memory of a controller holding N enclaves and of an agent running M.
    Memory {
        /// Enclaves loaded into the local 3-controller cluster.
        #[arg(long, default_value_t = 10_000)]
        enclaves: usize,
        /// Process enclaves (`sleep`) run by one agent (needs root; 0 skips the agent).
        #[arg(long, default_value_t = 100)]
        agent_enclaves: usize,
        /// Concurrent writers loading the enclaves.
        #[arg(long, default_value_t = 64)]
        clients: usize,
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
        /// Measure what metrics and tracing cost: the run with every controller's `/metrics`
        /// scraped each second and traces exported at the default sampling to a collector in
        /// this process, side by side with neither, alternating (--rounds pairs; medians).
        #[arg(long)]
        observability_cost: bool,
        /// Pairs of runs with --observability-cost.
        #[arg(long, default_value_t = 1)]
        rounds: usize,
        #[command(flatten)]
        opts: ClientOpts,
    },
    /// The scheduler's own time to place N enclaves on M hosts (simulated capacity records,
    /// no processes), side by side with first fit in the same run, and the quality of both
    /// packings (hosts used, capacity stranded).
    ///
    /// With `--e2e`: enclaves placed per second through Raft (`POST /v1/enclaves` on a local
    /// 3-controller cluster, concurrent clients; default 100 hosts, 2,000 enclaves).
    Schedule {
        /// [default: 1000; 100 with --e2e]
        #[arg(long)]
        hosts: Option<usize>,
        /// [default: 10000; 2000 with --e2e]
        #[arg(long)]
        enclaves: Option<usize>,
        /// Rounds; each runs Tribune's scheduler, then first fit.
        #[arg(long, default_value_t = 5)]
        rounds: usize,
        /// Seed of the generated cluster and workload.
        #[arg(long, default_value_t = 1)]
        seed: u64,
        /// End to end through Raft instead of the scheduler alone.
        #[arg(long)]
        e2e: bool,
        /// Concurrent clients of --e2e.
        #[arg(long, default_value_t = 32)]
        clients: usize,
    },
    /// Live migration (root, QEMU): a local 3-controller cluster and two QEMU agents, a VM
    /// migrated back and forth on request and on a policy breach: → running on the target
    /// (p50/p99), beside QEMU's own figures of the same migrations, per guest.
    Migrate {
        #[arg(long, default_value_t = 20)]
        trials: usize,
        /// The guest's memory in MiB.
        #[arg(long, default_value_t = 128)]
        memory_mib: u64,
        /// The built-in guests, in turn: counter (one page written), writer (keeps dirtying).
        #[arg(long, value_enum, default_value = "both")]
        guest: super::bench_migrate::Guests,
        /// How much RAM the writer guest keeps dirtying, MiB.
        #[arg(long, default_value_t = 32)]
        writer_mib: u32,
        /// Request-driven migrations only (no policy-breach phase).
        #[arg(long)]
        no_breach: bool,
        /// Give the VM a NIC in its namespace: the agents hand its migration stream's socket
        /// to QEMU.
        #[arg(long)]
        network: bool,
    },
    /// The policy planner's time (`tribune policy plan`): N enclaves' recorded usage, one
    /// window a second, replayed under a tighter policy through the live loop's decision (in
    /// process, synthetic recorded usage; no cluster).
    Plan {
        #[arg(long, default_value_t = 1000)]
        enclaves: usize,
        /// Recorded usage replayed, seconds.
        #[arg(long, default_value_t = 3600)]
        seconds: u64,
        /// Enclaves per host (decided together, as live).
        #[arg(long, default_value_t = 50)]
        per_host: usize,
        #[arg(long, default_value_t = 3)]
        rounds: usize,
        /// Seed of the generated usage.
        #[arg(long, default_value_t = 1)]
        seed: u64,
    },
    /// Inter-enclave messages through a real agent's mediator: a flooder among ten senders,
    /// shares 1:2:4, priority classes, and msgs/s and MB/s next to a plain Unix-socket relay.
    Messages(super::bench_messages::MessagesArgs),
    /// Over-limit report → CPU cap written into the cgroup by a real host agent (root).
    EnforceLatency {
        #[arg(long, default_value_t = 50)]
        trials: usize,
        #[command(flatten)]
        opts: ClientOpts,
    },
    /// The attestation log's Merkle tree at scale (in process; no cluster): append N leaves
    /// into the tree's node store, then at each size inclusion and consistency proof latency,
    /// this process's RSS, and a restart (sync, close, reopen until the root is served).
    Log(super::bench_log::LogArgs),
    /// A fairness receipt for one enclave: its size and its offline verification time, for a
    /// period of real signed checkpoints (in process; no cluster).
    Receipt {
        /// Length of the period, seconds (one checkpoint a second).
        #[arg(long, default_value_t = 3600)]
        seconds: u64,
        /// Usage reports per second.
        #[arg(long, default_value_t = 10)]
        reports_per_second: u32,
        /// Verifications timed (the median is reported).
        #[arg(long, default_value_t = 5)]
        rounds: u32,
    },
}

/// `tribune bench receipt`.
fn receipt(
    seconds: u64,
    reports_per_second: u32,
    rounds: u32,
    format: Format,
) -> anyhow::Result<()> {
    let f = tribune_bench::receipt::run(seconds, reports_per_second, rounds)?;
    if format == Format::Table {
        println!(
            "receipt for {} s of one enclave at {} Hz: {} log entries ({} usage windows), {} bytes; assembled and signed in {:.1} ms; verified offline in {:.1} ms (median of {rounds}, max {:.1} ms)",
            f.seconds,
            f.reports_per_second,
            f.receipt_entries,
            f.windows,
            f.receipt_bytes,
            f.assemble_ms,
            f.verify_ms_median,
            f.verify_ms_max
        );
    }
    result_line(format, &serde_json::to_value(&f)?)
}

pub(super) fn goal_line(name: &str, met: bool, detail: &str) {
    println!(
        "goal {name}: {} — {detail}",
        if met { "met" } else { "NOT met" }
    );
}

/// The result line: one JSON line (after the table, or alone with `-o json`), or a YAML
/// document with `-o yaml`.
pub(super) fn result_line(format: Format, v: &serde_json::Value) -> anyhow::Result<()> {
    if format == Format::Yaml {
        output::structured(format, v)?;
    } else {
        println!("{v}");
    }
    Ok(())
}

pub fn run(cmd: BenchCmd, format: Format) -> anyhow::Result<ExitCode> {
    let exe = std::env::current_exe().context("locating the tribune binary")?;
    super::client::runtime()?.block_on(async move {
        match cmd {
            BenchCmd::Log(a) => {
                super::bench_log::run(a, format).await?;
                Ok(ExitCode::SUCCESS)
            }
            BenchCmd::Receipt {
                seconds,
                reports_per_second,
                rounds,
            } => {
                receipt(seconds, reports_per_second, rounds, format)?;
                Ok(ExitCode::SUCCESS)
            }
            BenchCmd::Writes {
                clients,
                seconds,
                rounds,
                value_bytes,
                local,
                no_etcd,
                etcd_binary,
                no_install,
                opts,
            } => {
                super::bench_writes::writes(
                    &exe,
                    super::bench_writes::WritesArgs {
                        clients,
                        seconds,
                        rounds: rounds.max(1),
                        value_bytes,
                        local,
                        etcd: !no_etcd,
                        etcd_binary,
                        install: !no_install,
                    },
                    &opts,
                    format,
                )
                .await
            }
            BenchCmd::Failover {
                trials,
                heartbeat_ms,
                election_timeout_ms,
                load_clients,
                graceful,
                soak,
                opts: _,
            } => {
                super::bench_failover::run(
                    &exe,
                    super::bench_failover::Mode {
                        trials,
                        heartbeat_ms,
                        election_timeout_ms,
                        load_clients,
                        graceful,
                        soak,
                    },
                    format,
                )
                .await
            }
            BenchCmd::Memory {
                enclaves,
                agent_enclaves,
                clients,
                opts: _,
            } => memory(&exe, enclaves, agent_enclaves, clients, format).await,
            BenchCmd::Ingest { hosts, enclaves_per_host, seconds, interval_ms, over_limit_every, observability_cost, rounds, opts: _ } => {
                let cfg = tribune_bench::ingest::IngestConfig {
                    hosts,
                    enclaves_per_host,
                    seconds,
                    interval_ms,
                    over_limit_every,
                    ..Default::default()
                };
                if observability_cost {
                    let r = tribune_bench::ingest::observe::cost(&exe, &cfg, rounds, |m| eprintln!("ingest: {m}")).await?;
                    if !format.is_structured() {
                        println!("verified reports/s, observability off: {:.0} (median of {:?}), controllers {:.2} cores", r.off_median, r.off_per_sec, r.off_cores);
                        println!("verified reports/s, observability on:  {:.0} (median of {:?}), controllers {:.2} cores", r.on_median, r.on_per_sec, r.on_cores);
                        if let Some(o) = &r.observed {
                            println!("(on: {} spans exported, {} scrapes of /metrics, {} bytes)", o.spans_received, o.scrapes, o.scraped_bytes);
                        }
                    }
                    goal_line(
                        "metrics + tracing cost ≤ 5% of reports/s",
                        r.ratio >= 0.95,
                        &format!("on ÷ off = {:.3}", r.ratio),
                    );
                    result_line(format, &json!({"scenario": "ingest-observability-cost", "result": r}))?;
                    return Ok(ExitCode::SUCCESS);
                }
                let r = tribune_bench::ingest::ingest(&exe, &cfg, |m| eprintln!("ingest: {m}")).await?;
                if !format.is_structured() {
                    print_ingest(&r);
                }
                goal_line(
                    "ingest ≥ 100,000 reports/s verified and evaluated",
                    r.verified_per_sec >= 100_000.0,
                    &format!("{:.0} reports/s ({:.2}× the goal)", r.verified_per_sec, r.verified_per_sec / 100_000.0),
                );
                result_line(format, &json!({"scenario": "ingest", "result": r}))?;
                Ok(ExitCode::SUCCESS)
            }
            BenchCmd::Migrate { trials, memory_mib, guest, writer_mib, no_breach, network } => {
                let what = super::bench_migrate::Run { trials, memory_mib, guests: guest, writer_mib, breach: !no_breach, network };
                super::bench_migrate::run(&exe, what, format).await
            }
            BenchCmd::Schedule { hosts, enclaves, e2e: true, clients, .. } => {
                super::bench_schedule::e2e(&exe, hosts, enclaves, clients, format).await
            }
            BenchCmd::Schedule { hosts, enclaves, rounds, seed, .. } => {
                let (hosts, enclaves) = (hosts.unwrap_or(1000), enclaves.unwrap_or(10_000));
                let cfg = tribune_bench::schedule::ScheduleConfig { hosts, enclaves, rounds, seed };
                let r = tribune_bench::schedule::schedule(&cfg)?;
                if !format.is_structured() {
                    print_schedule(&r);
                }
                goal_line(
                    "schedule 10,000 enclaves on 1,000 hosts in ≤ 1 s of scheduler time",
                    r.tribune.time_ms.p50 <= 1000.0,
                    &format!("{} on {}: p50 {:.0} ms", r.enclaves, r.hosts, r.tribune.time_ms.p50),
                );
                result_line(format, &json!({"scenario": "schedule", "result": r}))?;
                Ok(ExitCode::SUCCESS)
            }
            BenchCmd::Plan { enclaves, seconds, per_host, rounds, seed } => {
                let cfg = tribune_bench::plan::PlanConfig { enclaves, seconds, per_host, rounds, seed };
                let r = tribune_bench::plan::plan(&cfg)?;
                if !format.is_structured() {
                    println!(
                        "{} enclaves on {} hosts, {} s at one window a second: {} windows, {} rounds",
                        r.enclaves, r.hosts, r.seconds, r.windows, r.time_ms.n
                    );
                    println!(
                        "plan time p50 {:.0} ms (min {:.0}, max {:.0}); {:.0} windows/s; {} enclaves change ({} throttles, {} suspensions planned)",
                        r.time_ms.p50, r.time_ms.min, r.time_ms.max, r.windows_per_sec, r.changed, r.planned_throttles, r.planned_suspensions
                    );
                }
                goal_line(
                    "policy plan of 1 hour × 1,000 enclaves ≤ 2 s",
                    r.time_ms.p50 <= 2000.0,
                    &format!("{} windows: p50 {:.0} ms ({:.2}× the goal)", r.windows, r.time_ms.p50, r.time_ms.p50 / 2000.0),
                );
                result_line(format, &json!({"scenario": "plan", "result": r}))?;
                Ok(ExitCode::SUCCESS)
            }
            BenchCmd::Messages(a) => super::bench_messages::run(&exe, a, format).await,
            BenchCmd::EnforceLatency { trials, opts: _ } => {
                if !tribune_testkit::is_root() {
                    eprintln!("skipped: enforce-latency: not root (the host agent writes cgroups)");
                    result_line(format, &json!({"scenario": "enforce-latency", "skipped": "not root"}))?;
                    return Ok(ExitCode::SUCCESS);
                }
                let r = tribune_bench::enforce::enforce_latency(&exe, trials, |m| eprintln!("enforce-latency: {m}")).await?;
                if !format.is_structured() {
                    let row = |name: &str, s: &tribune_bench::Summary| {
                        println!(
                            "{name:<34} p50 {:>7.1} ms  p99 {:>7.1} ms  (min {:.1}, max {:.1}; n {})",
                            s.p50, s.p99, s.min, s.max, s.n
                        )
                    };
                    row("window end → cap in cgroup", &r.latency_ms);
                    row("window end → violation decided", &r.decided_ms);
                    row("operator resume → cap lifted", &r.release_ms);
                }
                goal_line(
                    "enforce-latency p99 ≤ 150 ms",
                    r.latency_ms.p99 <= 150.0,
                    &format!("p99 {:.1} ms ({:.2}× the goal)", r.latency_ms.p99, r.latency_ms.p99 / 150.0),
                );
                result_line(format, &json!({"scenario": "enforce-latency", "result": r}))?;
                Ok(ExitCode::SUCCESS)
            }
        }
    })
}

fn print_schedule(r: &tribune_bench::schedule::ScheduleResult) {
    println!(
        "{} enclaves on {} hosts, {} rounds (seed {})",
        r.enclaves, r.hosts, r.rounds, r.seed
    );
    println!(
        "{:<10} {:>9} {:>9} {:>8} {:>9} {:>11} {:>13} {:>14} {:>13}",
        "scheduler",
        "p50 ms",
        "max ms",
        "placed",
        "unplaced",
        "hosts used",
        "cores in use",
        "stranded cores",
        "stranded GiB"
    );
    for (name, x) in [("tribune", &r.tribune), ("first-fit", &r.first_fit)] {
        println!(
            "{name:<10} {:>9.1} {:>9.1} {:>8} {:>9} {:>11} {:>13.0} {:>14.1} {:>13.1}",
            x.time_ms.p50,
            x.time_ms.max,
            x.placed,
            x.unplaced,
            x.hosts_used,
            x.cores_in_use,
            x.stranded_cores,
            x.stranded_gib
        );
    }
}

async fn memory(
    exe: &std::path::Path,
    enclaves: usize,
    agent_enclaves: usize,
    clients: usize,
    format: Format,
) -> anyhow::Result<ExitCode> {
    eprintln!("memory: loading {enclaves} enclaves into a local 3-controller cluster …");
    let c = tribune_bench::memory::controller(exe, enclaves, clients, |l| eprintln!("memory: {l}"))
        .await?;
    let agent = if agent_enclaves == 0 {
        AgentOutcome::Skipped("--agent-enclaves 0".into())
    } else {
        eprintln!("memory: starting an agent with {agent_enclaves} process enclaves …");
        tribune_bench::memory::agent(exe, agent_enclaves, |l| eprintln!("memory: {l}")).await?
    };
    if !format.is_structured() {
        let mut t = comfy_table::Table::new();
        t.load_preset(comfy_table::presets::UTF8_BORDERS_ONLY);
        t.set_header(vec![
            "process",
            "holding",
            "VmRSS MiB",
            "VmHWM MiB",
            "idle VmRSS MiB",
        ]);
        for (id, r) in &c.nodes {
            let idle = c
                .idle
                .iter()
                .find(|(i, _)| i == id)
                .map_or("-".to_string(), |(_, r)| format!("{:.1}", r.rss_mib));
            let role = if *id == c.leader {
                "leader"
            } else {
                "follower"
            };
            t.add_row(vec![
                format!("controller {id} ({role})"),
                format!("{} enclaves", c.enclaves),
                format!("{:.1}", r.rss_mib),
                format!("{:.1}", r.hwm_mib),
                idle,
            ]);
        }
        if let AgentOutcome::Measured(a) = &agent {
            t.add_row(vec![
                "agent".to_string(),
                format!("{} enclaves", a.enclaves),
                format!("{:.1}", a.agent.rss_mib),
                format!("{:.1}", a.agent.hwm_mib),
                format!("{:.1}", a.idle.rss_mib),
            ]);
        }
        println!("{t}");
        println!(
            "{} enclaves loaded in {:.1} s through the HTTP API",
            c.enclaves, c.load_seconds
        );
        goal_line(
            &format!("controller with {} enclaves <= 300 MiB", c.enclaves),
            c.max_rss_mib() <= GOAL_CONTROLLER_MIB,
            &format!(
                "largest VmRSS {:.1} MiB = {:.2}x the goal (peak VmHWM {:.1} MiB)",
                c.max_rss_mib(),
                c.max_rss_mib() / GOAL_CONTROLLER_MIB,
                c.max_hwm_mib()
            ),
        );
        match &agent {
            AgentOutcome::Measured(a) => goal_line(
                &format!("agent with {} enclaves <= 40 MiB", a.enclaves),
                a.agent.rss_mib <= GOAL_AGENT_MIB,
                &format!(
                    "VmRSS {:.1} MiB = {:.2}x the goal",
                    a.agent.rss_mib,
                    a.agent.rss_mib / GOAL_AGENT_MIB
                ),
            ),
            AgentOutcome::Skipped(why) => println!("skipped agent: {why}"),
        }
    }
    let (agent_json, agent_skipped) = match &agent {
        AgentOutcome::Measured(a) => (Some(a), None),
        AgentOutcome::Skipped(why) => {
            eprintln!("skipped agent: {why}");
            (None, Some(why.clone()))
        }
    };
    result_line(
        format,
        &json!({
            "scenario": "memory",
            "controller": c,
            "agent": agent_json,
            "agent_skipped": agent_skipped,
        }),
    )?;
    Ok(ExitCode::SUCCESS)
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
    println!(
        "elections while streaming     {:>10}        (term {} → {}; nothing was killed)",
        r.elections, r.term_start, r.term_end
    );
}
