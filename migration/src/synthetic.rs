//! A generated cluster and workload for benchmarks and quality tests (`tribune bench
//! schedule`): the same seed gives the same hosts and enclaves on every machine. Four host
//! shapes, enclaves from a quarter core up with 1–8 GiB per core, three priorities, an `app`
//! label with anti-affinity (about three replicas per app), sized to ask for about two thirds
//! of the cluster's CPU.

use std::collections::BTreeMap;

use tribune_attest::TeeKind;

use crate::{Demand, EnclaveSpec, HostView, Schedulable, Strategy};

/// The sizes of a generated case.
#[derive(Debug, Clone, Copy)]
pub struct Sizes {
    pub hosts: usize,
    pub enclaves: usize,
    pub seed: u64,
}

/// The `now` the generated hosts were attested against (1 s before it).
pub const NOW_MS: i64 = 1_800_000_000_000;

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

/// The generated cluster and workload.
pub fn workload(cfg: &Sizes) -> (Vec<HostView>, Vec<EnclaveSpec>) {
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
