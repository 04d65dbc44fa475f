//! `tribune chaos sim`: the deterministic simulation of `tribune-chaos` over many seeds (see
//! chaos/README.md). A failing seed prints one line that reruns it.

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
}

pub fn run(c: ChaosCmd, out: Format) -> anyhow::Result<ExitCode> {
    match c {
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
                        "faults {}: lost {}  duplicated {}  reordered {}  agent crashes {}  controller crashes {}  restarts {}  leader changes {}  partitions {}  stream resets {}  clock steps {}",
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
                        f.clock_steps
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
