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
    assert!(
        lines.is_empty(),
        "{} failing seeds:\n{}",
        lines.len(),
        lines.join("\n")
    );
    assert_eq!(s.runs, CI_SEEDS);
    // The sweep exercised what it claims to: faults of every kind, plans, digests, throttles.
    let f = &s.stats.faults;
    assert!(f.lost > 0 && f.duplicated > 0 && f.reordered > 0, "{f:?}");
    assert!(
        f.agent_crashes > 0 && f.controller_crashes > 0 && f.leader_changes > 0,
        "{f:?}"
    );
    assert!(f.partitions > 0 && f.clock_steps > 0 && f.lags > 0, "{f:?}");
    assert!(
        s.stats.plans_applied > 0 && s.stats.digests_accepted > 0,
        "{:?}",
        s.stats
    );
    assert!(
        s.stats.throttles > 0 && s.stats.suspensions > 0,
        "{:?}",
        s.stats
    );
}

#[test]
fn a_seed_reproduces_exactly() {
    let cfg = Config {
        seed: 7,
        steps: 400,
        bugs: Bugs::default(),
    };
    let a = sim::run(&cfg).map_err(|f| f.to_string());
    let b = sim::run(&cfg).map_err(|f| f.to_string());
    assert_eq!(a, b);
    assert!(a.is_ok_and(|s| s.messages > 0 && s.checks > 0));
}

/// The first violation the broken build makes the simulation find, within `seeds` seeds.
fn first_violation(bugs: Bugs, seeds: u64) -> Option<(u64, Violation)> {
    (0..seeds).find_map(|seed| {
        sim::run(&Config {
            seed,
            steps: 300,
            bugs,
        })
        .err()
        .map(|f| (f.seed, f.violation))
    })
}

#[test]
fn an_agent_that_skips_the_version_gate_is_caught() {
    let bugs = Bugs {
        apply_any_version: true,
        ..Bugs::default()
    };
    let found = first_violation(bugs, 200);
    assert!(
        matches!(found, Some((_, Violation::PlanOrder { .. }))),
        "expected an older plan applied after a newer one, got {found:?}"
    );
}

#[test]
fn an_agent_that_lifts_its_caps_when_cut_off_is_caught() {
    let bugs = Bugs {
        lift_when_cut_off: true,
        ..Bugs::default()
    };
    let found = first_violation(bugs, 200);
    assert!(
        matches!(
            found,
            Some((
                _,
                Violation::ChangedWithoutPlan { .. } | Violation::ChangedWhileCutOff { .. }
            ))
        ),
        "expected lifted caps without a plan, got {found:?}"
    );
}

/// The chaos-run incident (chaos/README.md): a controller behind the log decided "throttle"
/// from the empty ladder it had for an enclave another controller had suspended, and the
/// decision thawed it. Decisions are compare-and-set on the ladder they were made from
/// (`Enforcement::from`); without that check, controllers falling behind make the simulation
/// find a suspended enclave running again.
#[test]
fn decisions_from_a_controller_behind_the_log_are_caught_without_the_ladder_check() {
    let bugs = Bugs {
        unchecked_decisions: true,
        ..Bugs::default()
    };
    let found = first_violation(bugs, 200);
    assert!(
        matches!(found, Some((_, Violation::Resumed { .. }))),
        "expected a suspended enclave running again, got {found:?}"
    );
}

/// The finding in chaos/README.md: with single messages lost inside a stream (beyond what the
/// transport does), a resyncing chain can leave a violation unenforced past the budget. If
/// this starts failing, the resync got faster: judge the budget on lossy seeds too.
#[test]
fn under_per_message_loss_the_budget_is_not_kept() {
    let bugs = Bugs {
        budget_when_lossy: true,
        ..Bugs::default()
    };
    let found = first_violation(bugs, 200);
    assert!(
        matches!(found, Some((_, Violation::NotEnforced { .. }))),
        "expected an unenforced violation on a lossy seed, got {found:?}"
    );
}

/// The clock finding in chaos/README.md, pinned by the seeds the long sweep found it with: a
/// controller whose wall clock is more than the freshness tolerance (2 s) behind the agents'
/// takes every report as "in the future" (accounted, never acted on) for the whole stream,
/// so a new violation on a connected host goes unenforced. Within the tolerance the same
/// seeds keep every invariant.
///
/// Since the release rule needs live evidence (`attest/decide.rs`, 2026-12-03), these seeds no
/// longer show it: a throttle is never lifted on reports a controller takes as "in the
/// future", so the enclaves these seeds throttled before the clock step stay capped and their
/// later violations are enforced. The finding still holds for an enclave whose *first*
/// violation begins after the step, which the simulation's workload does not produce within
/// 600 steps: none of seeds 0–6361 showed it (release build, 240 s). Pinning it again needs
/// such a workload (not built); until then this test is not run, and says why.
#[test]
#[ignore = "the pinned seeds no longer reproduce the clock finding since a throttle needs live evidence to be lifted; see the doc comment"]
fn a_controller_clock_beyond_the_tolerance_blinds_enforcement() {
    for seed in [3360, 7860, 7984] {
        let ok = sim::run(&Config {
            seed,
            steps: 600,
            bugs: Bugs::default(),
        });
        assert!(ok.is_ok(), "{:?}", ok.err().map(|f| f.to_string()));
        let beyond = sim::run(&Config {
            seed,
            steps: 600,
            bugs: Bugs {
                clocks_beyond_tolerance: true,
                ..Bugs::default()
            },
        });
        assert!(
            matches!(&beyond, Err(f) if matches!(f.violation, Violation::NotEnforced { .. })),
            "seed {seed}: {:?}",
            beyond.err().map(|f| f.to_string())
        );
    }
}
