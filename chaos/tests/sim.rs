//! The deterministic simulation: a fixed sweep with no violation (CI), reproducibility, and
//! the checker catching deliberate bugs.

use tribune_chaos::sim::{self, Bugs, Config, Violation};

/// Seeds the CI sweep runs (debug build; see chaos/README.md for how long it takes).
const CI_SEEDS: u64 = 200;
const CI_STEPS: u32 = 300;

#[test]
fn a_fixed_sweep_breaks_no_invariant() {
    let threads = std::thread::available_parallelism().map_or(2, |n| n.get());
    let s = sim::sweep(0, CI_SEEDS, CI_STEPS, threads);
    let lines: Vec<String> = s
        .failures
        .iter()
        .map(|f| format!("{f}\n  reproduce: {}", f.reproduce(CI_STEPS)))
        .collect();
    assert!(lines.is_empty(), "{} failing seeds:\n{}", lines.len(), lines.join("\n"));
    assert_eq!(s.runs, CI_SEEDS);
    // The sweep exercised what it claims to: faults of every kind, plans, digests, throttles.
    let f = &s.stats.faults;
    assert!(f.lost > 0 && f.duplicated > 0 && f.reordered > 0, "{f:?}");
    assert!(f.agent_crashes > 0 && f.controller_crashes > 0 && f.leader_changes > 0, "{f:?}");
    assert!(f.partitions > 0 && f.clock_steps > 0, "{f:?}");
    assert!(s.stats.plans_applied > 0 && s.stats.digests_accepted > 0, "{:?}", s.stats);
    assert!(s.stats.throttles > 0 && s.stats.suspensions > 0, "{:?}", s.stats);
}
