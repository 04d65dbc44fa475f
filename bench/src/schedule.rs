//! `tribune bench schedule`: the scheduler's own time to place N enclaves on M hosts
//! (simulated capacity records; no processes), side by side with first fit in the same run,
//! and the quality of both packings (hosts used, capacity stranded).
//!
//! The workload is generated from a seed (a small xorshift generator: the same seed gives the
//! same cluster and enclaves on every machine), sized so the enclaves ask for about 80% of
//! the cluster's CPU.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use serde::Serialize;
use tribune_attest::TeeKind;
use tribune_migration::first_fit::{Quality, first_fit, quality, smallest};
use tribune_migration::{
    ClusterView, Demand, EnclaveSpec, Freshness, HostView, Schedulable, Strategy, place_all,
};

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

/// xorshift64*: deterministic, no dependency.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    fn pick<T: Copy>(&mut self, from: &[T]) -> T {
        from[(self.next() % from.len() as u64) as usize]
    }
}

const NOW_MS: i64 = 1_800_000_000_000;

/// The generated cluster and workload.
pub fn workload(cfg: &ScheduleConfig) -> (Vec<HostView>, Vec<EnclaveSpec>) {
    let mut rng = Rng(cfg.seed.max(1).wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1);
    let gib = 1u64 << 30;
    let shapes = [
        (8_000, 32 * gib),
        (16_000, 64 * gib),
        (32_000, 128 * gib),
        (16_000, 128 * gib),
    ];
    let hosts: Vec<HostView> = (0..cfg.hosts)
        .map(|i| {
            let (cpu, mem) = rng.pick(&shapes);
            let mut labels = BTreeMap::new();
            labels.insert("zone".to_string(), format!("z{}", i % 3));
            HostView {
                id: format!("host-{i:05}"),
                capacity: Demand {
                    cpu_millicores: cpu,
                    memory_bytes: mem,
                    ..Demand::ZERO
                },
                load: Demand {
                    cpu_millicores: rng.next() % (cpu / 2),
                    ..Demand::ZERO
                },
                tee: TeeKind::Sim,
                tee_generation: 1,
                trusted: true,
                verified_at_ms: NOW_MS - 1000,
                labels,
                schedulable: Schedulable::Ready,
            }
        })
        .collect();
    let total_cpu: u64 = hosts.iter().map(|h| h.capacity.cpu_millicores).sum();
    // Enclave shapes: CPU-heavy, memory-heavy and balanced, quarter cores up.
    let cpu_choices = [250u64, 500, 1000, 2000, 4000];
    let mem_per_core = [1u64, 2, 4, 8];
    let mut specs = Vec::with_capacity(cfg.enclaves);
    let budget = total_cpu * 8 / 10;
    let per = budget / cfg.enclaves.max(1) as u64;
    for i in 0..cfg.enclaves {
        let mut cpu = rng.pick(&cpu_choices);
        // Keep the mean near the budget per enclave.
        while cpu > 2 * per.max(250) && cpu > 250 {
            cpu /= 2;
        }
        let mem = (cpu * rng.pick(&mem_per_core) * gib / 1000).max(256 << 20);
        let mut labels = BTreeMap::new();
        labels.insert(
            "app".to_string(),
            format!("app-{}", i % (cfg.enclaves / 3).max(1)),
        );
        specs.push(EnclaveSpec {
            id: format!("enc-{i:06}"),
            tee: TeeKind::Sim,
            min_tee_generation: 0,
            guarantee: Demand {
                cpu_millicores: cpu,
                memory_bytes: mem,
                ..Demand::ZERO
            },
            priority: (rng.next() % 3) as i32,
            preempt: false,
            host_selector: BTreeMap::new(),
            anti_affinity: vec!["app".to_string()],
            labels,
            strategy: Strategy::BinPack,
        });
    }
    (hosts, specs)
}

fn figures(times: &[Duration], placed: usize, total: usize, q: Quality) -> Run {
    Run {
        time_ms: Summary::of_durations(times),
        placed,
        unplaced: total - placed,
        hosts_used: q.hosts_used,
        stranded_cores: q.stranded.cpu_millicores as f64 / 1000.0,
        stranded_gib: q.stranded.memory_bytes as f64 / f64::from(1u32 << 30),
        free_cores: q.free.cpu_millicores as f64 / 1000.0,
    }
}

/// Runs both schedulers `rounds` times each, interleaved, on the same workload.
pub fn schedule(
    cfg: &ScheduleConfig,
) -> Result<ScheduleResult, tribune_migration::view::UnknownHost> {
    let (hosts, specs) = workload(cfg);
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
        assert_eq!(workload(&cfg), workload(&cfg));
        let r = schedule(&cfg).expect("runs");
        assert_eq!(r.tribune.placed + r.tribune.unplaced, 150);
        assert_eq!(r.first_fit.placed + r.first_fit.unplaced, 150);
        assert!(r.tribune.placed > 0 && r.first_fit.placed > 0);
    }
}
