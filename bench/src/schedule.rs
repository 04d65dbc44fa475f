//! `tribune bench schedule`: the scheduler's own time to place N enclaves on M hosts
//! (simulated capacity records; no processes), side by side with first fit in the same run,
//! and the quality of both packings (hosts used, capacity stranded).
//!
//! The workload is generated from a seed (a small xorshift generator: the same seed gives the
//! same cluster and enclaves on every machine), sized so the enclaves ask for about 80% of
//! the cluster's CPU.

use std::time::{Duration, Instant};

use serde::Serialize;
use tribune_migration::first_fit::{Quality, first_fit, quality, smallest};
use tribune_migration::synthetic::{NOW_MS, Sizes, workload};
use tribune_migration::{ClusterView, Freshness, place_all};

use crate::Summary;

#[derive(Debug, Clone, Copy)]
pub struct ScheduleConfig {
    pub hosts: usize,
    pub enclaves: usize,
    pub rounds: usize,
    pub seed: u64,
}

impl Default for ScheduleConfig {
    fn default() -> Self {
        ScheduleConfig {
            hosts: 1000,
            enclaves: 10_000,
            rounds: 5,
            seed: 1,
        }
    }
}

/// One scheduler's figures.
#[derive(Debug, Clone, Serialize)]
pub struct Run {
    /// Time to place every enclave, per round.
    pub time_ms: Summary,
    pub placed: usize,
    pub unplaced: usize,
    pub hosts_used: usize,
    /// Cores of the hosts in use.
    pub cores_in_use: f64,
    pub stranded_cores: f64,
    pub stranded_gib: f64,
    pub free_cores: f64,
}

#[derive(Debug, Clone, Serialize)]
pub struct ScheduleResult {
    pub hosts: usize,
    pub enclaves: usize,
    pub rounds: usize,
    pub seed: u64,
    /// Tribune's scheduler (filter, score with bin-packing, fragmentation and load).
    pub tribune: Run,
    /// First fit (hosts in id order), the baseline.
    pub first_fit: Run,
}

fn figures(times: &[Duration], placed: usize, total: usize, q: Quality) -> Run {
    Run {
        time_ms: Summary::of_durations(times),
        placed,
        unplaced: total - placed,
        hosts_used: q.hosts_used,
        cores_in_use: q.capacity_in_use.cpu_millicores as f64 / 1000.0,
        stranded_cores: q.stranded.cpu_millicores as f64 / 1000.0,
        stranded_gib: q.stranded.memory_bytes as f64 / f64::from(1u32 << 30),
        free_cores: q.free.cpu_millicores as f64 / 1000.0,
    }
}

/// Runs both schedulers `rounds` times each, interleaved, on the same workload.
pub fn schedule(
    cfg: &ScheduleConfig,
) -> Result<ScheduleResult, tribune_migration::view::UnknownHost> {
    let (hosts, specs) = workload(&Sizes {
        hosts: cfg.hosts,
        enclaves: cfg.enclaves,
        seed: cfg.seed,
    });
    let fresh = Freshness {
        now_ms: NOW_MS,
        attest_max_age_ms: 60_000,
    };
    let small = smallest(&specs);
    let (mut ours, mut theirs) = (Vec::new(), Vec::new());
    let (mut ours_last, mut theirs_last) = (None, None);
    for _ in 0..cfg.rounds.max(1) {
        let mut view = ClusterView::new(hosts.clone(), [])?;
        let t = Instant::now();
        let r = place_all(&mut view, &specs, fresh);
        ours.push(t.elapsed());
        ours_last = Some((
            r.iter().filter(|r| r.is_ok()).count(),
            quality(&view, small),
        ));

        let mut view = ClusterView::new(hosts.clone(), [])?;
        let t = Instant::now();
        let r = first_fit(&mut view, &specs, fresh);
        theirs.push(t.elapsed());
        theirs_last = Some((r.iter().filter(|ok| **ok).count(), quality(&view, small)));
    }
    let (op, oq) = ours_last.unwrap_or_default();
    let (tp, tq) = theirs_last.unwrap_or_default();
    Ok(ScheduleResult {
        hosts: cfg.hosts,
        enclaves: cfg.enclaves,
        rounds: cfg.rounds.max(1),
        seed: cfg.seed,
        tribune: figures(&ours, op, specs.len(), oq),
        first_fit: figures(&theirs, tp, specs.len(), tq),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_workload_is_a_function_of_the_seed_and_both_schedulers_run() {
        let cfg = ScheduleConfig {
            hosts: 20,
            enclaves: 150,
            rounds: 1,
            seed: 7,
        };
        let r = schedule(&cfg).expect("runs");
        assert_eq!(r.tribune.placed + r.tribune.unplaced, 150);
        assert_eq!(r.first_fit.placed + r.first_fit.unplaced, 150);
        assert!(r.tribune.placed > 0 && r.first_fit.placed > 0);
    }
}
