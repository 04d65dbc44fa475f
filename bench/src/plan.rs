//! `tribune bench plan`: the policy planner's time to replay an hour of recorded usage of
//! 1 000 enclaves at one window a second (`POST /v1/policies/plan`'s work), in process, through
//! the planner function the API runs (`api::plan::compute`: both policy sets compiled, every
//! window through the live loop's `decide_host`, compared with what was recorded).
//!
//! The recorded usage is generated from a seed (xorshift; the same seed gives the same
//! history everywhere): enclaves on hosts of `per_host`, one trusted verdict each, then a
//! window a second. A tenth of them spin over the planned CPU limit (throttled, then
//! suspended after 2 minutes), a fifth idle (they lend), the rest use a steady share below it.
//! Hosts' windows are committed together each second, as one digest flush is.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use serde::Serialize;
use tribune_controller::api::plan::{Selection, check_source, compute};
use tribune_controller::attest::replay::{History, Record, Recorded, Window};
use tribune_controller::state::{Enclave, EnclaveState, Placement, Policy, Resources};

use crate::Summary;

#[derive(Debug, Clone, Copy)]
pub struct PlanConfig {
    pub enclaves: usize,
    pub seconds: u64,
    pub per_host: usize,
    pub rounds: usize,
    pub seed: u64,
}

impl Default for PlanConfig {
    fn default() -> Self {
        PlanConfig {
            enclaves: 1000,
            seconds: 3600,
            per_host: 50,
            rounds: 3,
            seed: 1,
        }
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct PlanResult {
    pub enclaves: usize,
    pub hosts: usize,
    pub seconds: u64,
    pub windows: u64,
    /// Time of the plan (compile both sets, replay, compare), per round.
    pub time_ms: Summary,
    pub windows_per_sec: f64,
    /// What the plan found (the same every round).
    pub changed: usize,
    pub planned_throttles: u64,
    pub planned_suspensions: u64,
}

const STORED: &str = r#"
policy "tenants" {
  match tenant != ""
  guarantee { cpu = 250m }
  limit { cpu = 4 }
  on over_limit { throttle now; suspend after 2m }
}
"#;

/// The planned change: the CPU limit down to 1 core, with reclamation of idle guarantees.
const PLANNED: &str = r#"
policy "tenants" {
  match tenant != ""
  guarantee { cpu = 250m }
  limit { cpu = 1 }
  on over_limit { throttle now; suspend after 2m }
  reclaim { when usage.cpu.avg(10s) < 20% of guarantee.cpu; keep cpu = 50m }
}
"#;

fn xorshift(s: &mut u64) -> u64 {
    *s ^= *s << 13;
    *s ^= *s >> 7;
    *s ^= *s << 17;
    *s
}

/// The synthetic recorded usage, as `api::plan::select` would copy it from the log.
pub fn synthetic(cfg: &PlanConfig, from_ms: i64) -> Selection {
    let mut seed = cfg.seed.max(1);
    let per_host = cfg.per_host.max(1);
    let mut histories: Vec<History> = (0..cfg.enclaves)
        .map(|i| History {
            enclave: Enclave {
                id: format!("e{i:05}"),
                tenant: format!("t{}", i % 97),
                labels: BTreeMap::new(),
                tee: tribune_controller::state::TeeKind::Sim,
                expected_measurements: vec![],
                requested: Resources::default(),
                priority: 0,
                placement: Some(Placement {
                    host: format!("h{:04}", i / per_host),
                    epoch: 1,
                }),
                state: EnclaveState::Running,
                launch: None,
                scheduling: None,
                version: 1,
            },
            records: Vec::with_capacity(cfg.seconds as usize + 1),
        })
        .collect();
    // Kind of each enclave: 0 busy (over 1 core), 1 idle, 2 steady.
    let kinds: Vec<(u8, u64)> = (0..cfg.enclaves)
        .map(|_| {
            let r = xorshift(&mut seed) % 10;
            let level = 100 + xorshift(&mut seed) % 700;
            match r {
                0 => (0, 1500 + level),
                1 | 2 => (1, 5),
                _ => (2, level),
            }
        })
        .collect();
    let mut index = 0u64;
    for h in &mut histories {
        h.records.push(Recorded {
            index,
            at_ms: from_ms - 1,
            record: Record::Verdict {
                trusted: true,
                debug: false,
                failures: 0,
                measurement: String::new(),
            },
        });
        index += 1;
    }
    for s in 0..cfg.seconds {
        let at_ms = from_ms + (s as i64 + 1) * 1000;
        for (h, (kind, level)) in histories.iter_mut().zip(&kinds) {
            let jitter = xorshift(&mut seed) % 50;
            let cpu = match kind {
                1 => *level,
                _ => level + jitter,
            };
            h.records.push(Recorded {
                index,
                at_ms,
                record: Record::Window(Window {
                    first_seq: s * 10 + 1,
                    last_seq: s * 10 + 10,
                    cpu_millicores_avg: cpu,
                    mem_bytes_max: 64 << 20,
                    net_tx_bytes: 1000,
                    net_rx_bytes: 1000,
                    divergence_bp_max: 10,
                    replayed: false,
                }),
            });
            index += 1;
        }
    }
    let stored = [(
        "tenants".to_string(),
        Policy {
            name: "tenants".into(),
            version: 1,
            source: STORED.to_string(),
            created_by: String::new(),
            updated_by: String::new(),
            created_at_ms: 0,
            updated_at_ms: 0,
        },
    )]
    .into();
    Selection {
        histories,
        stored,
        windows: cfg.enclaves as u64 * cfg.seconds,
    }
}

pub fn plan(cfg: &PlanConfig) -> anyhow::Result<PlanResult> {
    let from_ms = 1_800_000_000_000;
    let to_ms = from_ms + cfg.seconds as i64 * 1000;
    let sel = synthetic(cfg, from_ms);
    let mut times: Vec<Duration> = Vec::new();
    let mut last = None;
    for _ in 0..cfg.rounds.max(1) {
        let new = check_source(PLANNED).map_err(|p| anyhow::anyhow!("{}", p.detail))?;
        let start = Instant::now();
        let p = compute(&sel, new, from_ms, to_ms);
        times.push(start.elapsed());
        last = Some(p);
    }
    let p = last.ok_or_else(|| anyhow::anyhow!("no round ran"))?;
    let time_ms = Summary::of_durations(&times);
    Ok(PlanResult {
        enclaves: cfg.enclaves,
        hosts: cfg.enclaves.div_ceil(cfg.per_host.max(1)),
        seconds: cfg.seconds,
        windows: p.windows,
        windows_per_sec: p.windows as f64 / (time_ms.p50 / 1000.0).max(1e-9),
        time_ms,
        changed: p.changed().count(),
        planned_throttles: p
            .enclaves
            .iter()
            .map(|c| u64::from(c.planned.throttles))
            .sum(),
        planned_suspensions: p
            .enclaves
            .iter()
            .map(|c| u64::from(c.planned.suspensions))
            .sum(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_small_plan_finds_the_busy_enclaves() {
        let cfg = PlanConfig {
            enclaves: 40,
            seconds: 180,
            per_host: 10,
            rounds: 1,
            seed: 3,
        };
        let r = plan(&cfg).expect("plan");
        assert_eq!(r.windows, 40 * 180);
        assert!(r.planned_throttles > 0, "{r:?}");
        assert!(r.planned_suspensions > 0, "{r:?}");
        assert_eq!(r.hosts, 4);
    }
}
