//! `tribune chaos sim`: the deterministic simulation of `tribune-chaos` over many seeds (see
//! chaos/README.md). A failing seed prints one line that reruns it. `tribune chaos run`: the
//! multi-process fault harness (root: network namespaces and nft).

use std::process::ExitCode;
use std::time::Instant;

use clap::Subcommand;
use serde_json::json;
use tribune_chaos::sim::{self, DEFAULT_STEPS};

use super::output::{self, Format};

#[derive(Subcommand, Debug)]
pub enum ChaosCmd {
    /// Run the deterministic simulation of the attestation stream, the decision loop and plan
    /// delivery for many seeds, checking the invariants after every step.
    Sim {
        /// How many seeds to run (from --seed on).
        #[arg(long, default_value_t = 1)]
        seeds: u64,
        /// The first seed.
        #[arg(long, default_value_t = 0)]
        seed: u64,
        /// Steps of 100 simulated ms per seed.
        #[arg(long, default_value_t = DEFAULT_STEPS)]
        steps: u32,
        /// Worker threads (default: the machine's cores).
        #[arg(long)]
        threads: Option<usize>,
    },
    /// Run real controllers in network namespaces under faults drawn from a seed, with clients
    /// recording a history, and check it (linearizability, lost writes, the log). Needs root.
    Run {
        /// A scenario (none, kill, pause, partition, one-way, leader-isolated, minority,
        /// flapping, lossy, disk-full, mixed, slow-net, torn-write, clock-jump) or `all`
        /// (every one, for each seed).
        #[arg(long, default_value = "mixed")]
        scenario: String,
        /// The first seed.
        #[arg(long, default_value_t = 0)]
        seed: u64,
        /// How many seeds (from --seed on) per scenario.
        #[arg(long, default_value_t = 1)]
        seeds: u64,
        /// How long faults are injected per run, e.g. `20s` or `2m`.
        #[arg(long, default_value = "20s")]
        duration: String,
        /// Where each run's directory goes (kept when a run finds something); a temp dir otherwise.
        #[arg(long)]
        dir: Option<std::path::PathBuf>,
        /// Keep every run's directory (data, logs, history.jsonl, report.json).
        #[arg(long)]
        keep: bool,
        /// A deliberate bug for the controllers (`stale-reads`) or the agents
        /// (`lift-caps-when-cut-off`); only a `cargo test` build of tribune acts on it
        /// (control-plane/src/test_fault.rs, host-agent/src/test_fault.rs), any other build
        /// refuses it.
        #[arg(long)]
        test_fault: Option<String>,
    },
    /// Re-run the checkers (linearizability, lost and torn writes) on a recorded history file
    /// (a run directory's `history.jsonl`) offline; exits 1 when it finds an anomaly.
    Check {
        /// The history: one JSON event a line, as `tribune chaos run` writes it.
        history: std::path::PathBuf,
    },
}

/// `20s`, `2m`, `500ms` or plain seconds.
fn parse_duration(s: &str) -> anyhow::Result<std::time::Duration> {
    use std::time::Duration;
    let (num, unit) = s
        .find(|c: char| !c.is_ascii_digit())
        .map_or((s, "s"), |i| s.split_at(i));
    let n: u64 = num
        .parse()
        .map_err(|_| anyhow::anyhow!("bad duration {s:?} (e.g. 20s, 2m)"))?;
    Ok(match unit {
        "ms" => Duration::from_millis(n),
        "s" => Duration::from_secs(n),
        "m" => Duration::from_secs(n * 60),
        _ => anyhow::bail!("bad duration {s:?} (e.g. 20s, 2m)"),
    })
}

#[allow(clippy::too_many_arguments)]
fn run_harness(
    scenario: String,
    seed: u64,
    seeds: u64,
    duration: String,
    dir: Option<std::path::PathBuf>,
    keep: bool,
    test_fault: Option<String>,
    out: Format,
) -> anyhow::Result<ExitCode> {
    use tribune_chaos::run::{self as harness, Scenario};
    let scenarios: Vec<Scenario> = if scenario == "all" {
        Scenario::ALL.to_vec()
    } else {
        vec![Scenario::parse(&scenario).ok_or_else(|| {
            anyhow::anyhow!(
                "unknown scenario {scenario:?}: one of all, {}",
                Scenario::ALL.map(|s| s.name()).join(", ")
            )
        })?]
    };
    if test_fault.is_some() && !tribune_controller::test_fault::COMPILED_IN {
        anyhow::bail!(
            "--test-fault: this tribune was built without test faults (only `cargo test -p tribune` builds them in)"
        );
    }
    let duration = parse_duration(&duration)?;
    let binary = std::env::current_exe()?;
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    let mut reports = vec![];
    let mut failed_runs: Vec<String> = vec![];
    let started = Instant::now();
    for s in 0..seeds {
        for &sc in &scenarios {
            let mut cfg = harness::Config::new(sc, seed + s, duration, binary.clone());
            cfg.dir = dir.clone();
            cfg.keep = keep;
            cfg.test_fault = test_fault.clone();
            // ctrl-c drops the run: its controllers, namespaces and nft tables go with it.
            let r = rt.block_on(async {
                tokio::select! {
                    r = harness::run(&cfg) => Some(r),
                    _ = tokio::signal::ctrl_c() => None,
                }
            });
            let Some(r) = r else {
                eprintln!("interrupted; cleaned up");
                return Ok(ExitCode::FAILURE);
            };
            // A run that could not be made (its set-up failed: a cluster that never served,
            // a namespace that could not be built) ends only itself: the sweep goes on, and
            // the failure is reported with the others and fails the whole.
            let r = match r {
                Ok(r) => r,
                Err(e) => {
                    let what = format!("{} seed {}: {e:#}", sc.name(), seed + s);
                    eprintln!("run failed: {what}");
                    failed_runs.push(what);
                    continue;
                }
            };
            if !matches!(out, Format::Json | Format::Yaml) {
                let h = &r.history;
                println!(
                    "{:<16} seed {:<5} {:>5.1} s  faults {:<3} ops {:<5} (ok {} fail {} unknown {}; unknown writes resolved {})  heads {} proofs {}  anomalies {}",
                    sc.name(),
                    r.seed,
                    r.duration_s,
                    r.faults.values().sum::<u64>(),
                    h.operations_checked,
                    h.ok,
                    h.failed,
                    h.unknown,
                    r.unknown_writes_resolved,
                    r.log.heads,
                    r.log.proofs_checked,
                    r.anomalies()
                );
                if let (Some(e), Some(c)) = (&r.enforcement, &r.usage_chains) {
                    println!(
                        "  agents: readings {} (cut off or agent down {} in {} windows)  violations enforced {} (max {} ms)  suspended {} (frozen readings {})  usage digests {} in {} chains",
                        e.readings,
                        e.guarded_readings,
                        e.guarded_windows,
                        e.violations_enforced,
                        e.enforce_ms_max,
                        e.suspended,
                        e.frozen_readings,
                        c.digests,
                        c.chains,
                    );
                }
                for a in r.describe() {
                    println!("  {a}");
                }
                if let Some(d) = &r.dir {
                    println!("  run directory: {}", d.display());
                }
                if r.anomalies() > 0 || !r.conclusive() {
                    println!("  reproduce: {}", r.reproduce);
                }
            }
            reports.push(r);
        }
    }
    let anomalies: usize = reports.iter().map(|r| r.anomalies()).sum();
    let inconclusive: usize = reports.iter().filter(|r| !r.conclusive()).count();
    let mut faults = std::collections::BTreeMap::<String, u64>::new();
    for r in &reports {
        for (k, v) in &r.faults {
            *faults.entry(k.clone()).or_default() += v;
        }
    }
    let ops: u64 = reports.iter().map(|r| r.history.operations_checked).sum();
    let lost: usize = reports.iter().map(|r| r.history.lost_writes.len()).sum();
    let doc = json!({
        "runs": reports.len(),
        "seconds": started.elapsed().as_secs_f64(),
        "faults": faults,
        "operations_checked": ops,
        "anomalies": anomalies,
        "inconclusive_runs": inconclusive,
        "failed_runs": failed_runs,
        "lost_writes": lost,
        "reports": reports,
    });
    if !output::structured(out, &doc)? {
        println!(
            "{} runs in {:.0} s: faults {} {:?}  operations checked {ops}  lost writes {lost}  anomalies {anomalies}  inconclusive runs {inconclusive}",
            reports.len(),
            started.elapsed().as_secs_f64(),
            faults.values().sum::<u64>(),
            faults
        );
        for f in &failed_runs {
            println!("  run failed: {f}");
        }
    }
    // An inconclusive or failed run proved nothing: it does not pass.
    Ok(
        if anomalies == 0 && inconclusive == 0 && failed_runs.is_empty() {
            ExitCode::SUCCESS
        } else {
            ExitCode::FAILURE
        },
    )
}

/// `tribune chaos check FILE`.
fn check_history(path: &std::path::Path, out: Format) -> anyhow::Result<ExitCode> {
    use tribune_chaos::run::check;
    let (v, finals) = check::check_file(path)?;
    let doc = json!({
        "history": path,
        "verdict": &v,
        "lost_write_check": finals,
        "anomalies": v.anomalies(),
        "inconclusive": !v.inconclusive.is_empty(),
    });
    if !output::structured(out, &doc)? {
        println!(
            "{}: operations checked {} (ok {} fail {} unknown {})  anomalies {}",
            path.display(),
            v.operations_checked,
            v.ok,
            v.failed,
            v.unknown,
            v.anomalies()
        );
        if !finals {
            println!("  no final reads in the history (a run cut short): lost writes not judged");
        }
        for k in &v.not_linearizable {
            println!("  not linearizable: {k}");
        }
        for x in v.lost_writes.iter() {
            println!("  lost write: {x}");
        }
        for x in v.torn_reads.iter() {
            println!("  torn read: {x}");
        }
        for x in v.malformed.iter() {
            println!("  malformed history: {x}");
        }
        for k in &v.inconclusive {
            println!(
                "  inconclusive: the linearizability search of {k} did not end within {} s",
                check::SEARCH_BUDGET.as_secs()
            );
        }
    }
    Ok(if v.anomalies() == 0 && v.inconclusive.is_empty() {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

pub fn run(c: ChaosCmd, out: Format) -> anyhow::Result<ExitCode> {
    match c {
        ChaosCmd::Check { history } => check_history(&history, out),
        ChaosCmd::Run {
            scenario,
            seed,
            seeds,
            duration,
            dir,
            keep,
            test_fault,
        } => run_harness(scenario, seed, seeds, duration, dir, keep, test_fault, out),
        ChaosCmd::Sim {
            seeds,
            seed,
            steps,
            threads,
        } => {
            if seeds == 0 || steps == 0 {
                anyhow::bail!("--seeds and --steps must be at least 1");
            }
            let threads = threads
                .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()));
            let started = Instant::now();
            let s = sim::sweep(seed, seeds, steps, threads);
            let secs = started.elapsed().as_secs_f64();
            let per_min = s.runs as f64 / secs.max(1e-9) * 60.0;
            let f = &s.stats.faults;
            let doc = json!({
                        "runs": s.runs,
                        "first_seed": seed,
                        "steps_per_seed": steps,
                        "seconds": secs,
                        "seeds_per_minute": per_min,
                        "steps": s.stats.steps,
                        "invariant_checks": s.stats.checks,
                        "messages": s.stats.messages,
                        "plans_applied": s.stats.plans_applied,
                        "digests_accepted": s.stats.digests_accepted,
                        "throttles": s.stats.throttles,
                        "suspensions": s.stats.suspensions,
                        "faults": {
                            "lost": f.lost, "duplicated": f.duplicated, "reordered": f.reordered,
                            "agent_crashes": f.agent_crashes,
                            "controller_crashes": f.controller_crashes,
                            "controller_restarts": f.controller_restarts,
                            "leader_changes": f.leader_changes, "partitions": f.partitions,
                            "stream_resets": f.stream_resets, "clock_steps": f.clock_steps,
                            "lags": f.lags,
                        },
                        "violations": s.failures.iter().map(|x| json!({
                            "seed": x.seed, "step": x.step, "violation": x.violation.to_string(),
                            "reproduce": x.reproduce(steps),
                        })).collect::<Vec<_>>(),
            });
            if !output::structured(out, &doc)? {
                {
                    println!(
                        "{} seeds × {steps} steps in {secs:.1} s ({per_min:.0} seeds/min, {threads} threads)",
                        s.runs
                    );
                    println!(
                        "steps {}  invariant checks {}  messages {}  plans applied {}  digests accepted {}  throttles {}  suspensions {}",
                        s.stats.steps,
                        s.stats.checks,
                        s.stats.messages,
                        s.stats.plans_applied,
                        s.stats.digests_accepted,
                        s.stats.throttles,
                        s.stats.suspensions
                    );
                    println!(
                        "faults {}: lost {}  duplicated {}  reordered {}  agent crashes {}  controller crashes {}  restarts {}  leader changes {}  partitions {}  stream resets {}  clock steps {}  controllers behind {}",
                        f.total(),
                        f.lost,
                        f.duplicated,
                        f.reordered,
                        f.agent_crashes,
                        f.controller_crashes,
                        f.controller_restarts,
                        f.leader_changes,
                        f.partitions,
                        f.stream_resets,
                        f.clock_steps,
                        f.lags
                    );
                    println!("violations {}", s.failures.len());
                    for x in &s.failures {
                        println!("{x}");
                        println!("  reproduce: {}", x.reproduce(steps));
                    }
                }
            }
            Ok(if s.failures.is_empty() {
                ExitCode::SUCCESS
            } else {
                ExitCode::FAILURE
            })
        }
    }
}
