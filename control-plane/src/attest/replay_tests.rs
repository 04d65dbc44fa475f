use super::*;
use crate::state::Placement;

/// The stored set: loose limits, nothing is ever over.
const LOOSE: &str = r#"
policy "busy" {
  match tenant == "acme"
  guarantee { cpu = 100m }
  limit { cpu = 4 }
  on over_limit { throttle now; suspend after 3s }
}
policy "lender" {
  match tenant == "hooli"
  guarantee { cpu = 500m }
  limit { cpu = 1 }
  reclaim { when usage.cpu.max(1s) < 20% of guarantee.cpu; keep cpu = 100m }
}
"#;

/// The planned set: acme's CPU limit down to 200m.
const TIGHT: &str = r#"
policy "busy" {
  match tenant == "acme"
  guarantee { cpu = 100m }
  limit { cpu = 200m }
  on over_limit { throttle now; suspend after 3s }
}
policy "lender" {
  match tenant == "hooli"
  guarantee { cpu = 500m }
  limit { cpu = 1 }
  reclaim { when usage.cpu.max(1s) < 20% of guarantee.cpu; keep cpu = 100m }
}
"#;

/// Throttle only (no suspension), to look at throttled spans.
const THROTTLE_ONLY: &str = r#"
policy "busy" {
  match tenant == "acme"
  guarantee { cpu = 100m }
  limit { cpu = 200m }
  on over_limit { throttle now }
}
"#;

fn set(src: &str) -> PolicySet {
    let c = tribune_policy::check("t.tribune", src);
    assert!(!c.has_errors(), "{:?}", c.diagnostics);
    PolicySet::new(c.policies)
}

fn enclave(id: &str, tenant: &str, host: &str) -> Enclave {
    Enclave {
        id: id.into(),
        tenant: tenant.into(),
        labels: Default::default(),
        tee: tribune_attest::TeeKind::Sim,
        expected_measurements: vec![],
        requested: Resources::default(),
        priority: 0,
        placement: Some(Placement {
            host: host.into(),
            epoch: 1,
        }),
        state: EnclaveState::Running,
        launch: None,
        scheduling: None,
        version: 1,
    }
}

fn verdict(index: u64, at_ms: i64) -> Recorded {
    Recorded {
        index,
        at_ms,
        record: Record::Verdict {
            trusted: true,
            debug: false,
            failures: 0,
            measurement: String::new(),
        },
    }
}

fn window(index: u64, at_ms: i64, n: u64, cpu: u64) -> Recorded {
    Recorded {
        index,
        at_ms,
        record: Record::Window(Window {
            first_seq: n * 10 + 1,
            last_seq: n * 10 + 10,
            cpu_millicores_avg: cpu,
            ..Window::default()
        }),
    }
}

fn ladder(index: u64, at_ms: i64, from: Step, to: Step, cap: u64) -> Recorded {
    Recorded {
        index,
        at_ms,
        record: Record::Ladder {
            to,
            from,
            cause: "busy on#0 (line 6)".into(),
            cpu_cap_millicores: cap,
        },
    }
}

/// One enclave: trusted at t=0, then `cpu[i]` in window i at t = (i+1) s; log indexes leave
/// room between windows for recorded actions (`3 i + 2`).
fn steady(id: &str, tenant: &str, host: &str, cpu: &[u64]) -> History {
    let mut records = vec![verdict(0, 0)];
    for (i, c) in cpu.iter().enumerate() {
        let i = i as u64;
        records.push(window(3 * i + 2, (i as i64 + 1) * 1000, i, *c));
    }
    History {
        enclave: enclave(id, tenant, host),
        records,
    }
}

#[test]
fn no_history_no_comparison_and_no_window_nothing_changes() {
    assert!(replay(&set(LOOSE), &set(TIGHT), &[], 0, 10_000).is_empty());
    // An enclave with no window in the period: zero windows, and only its limits can differ.
    let h = History {
        enclave: enclave("a", "hooli", "h1"),
        records: vec![verdict(0, 0)],
    };
    let c = replay(&set(LOOSE), &set(TIGHT), &[h], 0, 10_000);
    assert_eq!(c.len(), 1);
    assert_eq!(c[0].windows, 0);
    assert_eq!(c[0].actual, Course::default());
    assert_eq!(c[0].planned, Course::default());
    assert!(c[0].differences.is_empty());
    assert!(!c[0].changed, "{:?}", c[0]);
}

#[test]
fn a_tighter_limit_throttles_then_suspends_the_busy_enclave_only() {
    let busy = steady("busy", "acme", "h1", &[1000; 10]);
    let idle = steady("web", "hooli", "h1", &[5; 10]);
    let c = replay(&set(LOOSE), &set(TIGHT), &[busy, idle], 0, 60_000);
    let (b, w) = (&c[0], &c[1]);
    assert_eq!(b.enclave, "busy");
    assert_eq!(b.windows, 10);
    assert_eq!(
        b.actual,
        Course::default(),
        "nothing happened under the loose set"
    );
    // Throttled at the first window, suspended once over for 3 s (window 4: t = 4 s).
    assert_eq!(b.planned.throttles, 1);
    assert_eq!(b.planned.suspensions, 1);
    let steps: Vec<(Step, Option<u64>, i64)> = b
        .planned
        .actions
        .iter()
        .map(|a| (a.to, a.first_seq, a.at_ms))
        .collect();
    assert_eq!(
        steps,
        vec![
            (Step::Throttle, Some(1), 1000),
            (Step::Suspend, Some(31), 4000)
        ]
    );
    assert_eq!(b.planned.throttled_windows, 3);
    assert_eq!(b.planned.suspended_windows, 7);
    // Capped at its limit plus what the idle neighbour lends (500m guarantee above 100m kept).
    assert_eq!(b.planned.actions[0].cpu_cap_millicores, 600);
    assert_eq!(b.planned.borrowed_cpu_millicores_max, 400);
    // The differences: windows 1-3 (none → throttle), 4-10 (none → suspend).
    assert_eq!(
        b.differences,
        vec![
            Difference {
                actual: Step::None,
                planned: Step::Throttle,
                from_ms: 1000,
                to_ms: 3000,
                first_seq: 1,
                last_seq: 30,
                windows: 3,
            },
            Difference {
                actual: Step::None,
                planned: Step::Suspend,
                from_ms: 4000,
                to_ms: 10_000,
                first_seq: 31,
                last_seq: 100,
                windows: 7,
            },
        ]
    );
    assert!(b.changed);
    assert_eq!(b.limits_before.cpu_millicores, 4000);
    assert_eq!(b.limits_after.cpu_millicores, 200);
    // The idle neighbour: under its limit in every window; nothing differs.
    assert_eq!(w.windows, 10);
    assert!(w.differences.is_empty(), "{:?}", w.differences);
    assert_eq!(w.planned.throttles, 0);
    assert_eq!(w.planned.lent_cpu_millicores_max, 400);
    assert!(w.changed, "it would have lent");
}

#[test]
fn replaying_what_happened_under_the_set_in_force_shows_no_difference() {
    // The log: throttled when its first window was decided (the action is committed before
    // the window's digest, as live), capped at 200m, pressing against the cap since.
    let mut busy = steady("busy", "acme", "h1", &[1000, 200, 200, 195, 190, 200]);
    busy.records
        .push(ladder(1, 900, Step::None, Step::Throttle, 200));
    let c = replay(&set(THROTTLE_ONLY), &set(THROTTLE_ONLY), &[busy], 0, 60_000);
    let b = &c[0];
    assert!(b.differences.is_empty(), "{:?}", b.differences);
    assert_eq!(b.actual.throttled_windows, 6);
    assert_eq!(b.planned.throttled_windows, 6);
    assert_eq!(b.actual.enforced, b.planned.enforced);
    assert_eq!(b.actual.throttles, 1);
    assert_eq!(b.planned.throttles, 1);
    assert!(!b.changed, "{b:?}");
}

#[test]
fn a_recorded_action_the_plan_would_not_take_is_a_difference() {
    // The log shows a throttle, but under the planned set (limit 4 cores) 1000m is within it:
    // the planner releases it at the next decision.
    let mut busy = steady("busy", "acme", "h1", &[1000; 3]);
    busy.records
        .push(ladder(1, 900, Step::None, Step::Throttle, 200));
    let c = replay(&set(THROTTLE_ONLY), &set(LOOSE), &[busy], 0, 60_000);
    let b = &c[0];
    assert_eq!(b.actual.throttled_windows, 3);
    assert_eq!(b.planned.throttled_windows, 0);
    assert_eq!(b.differences.len(), 1);
    assert_eq!(b.differences[0].actual, Step::Throttle);
    assert_eq!(b.differences[0].planned, Step::None);
    assert_eq!(b.differences[0].windows, 3);
}

#[test]
fn the_replay_starts_from_the_step_the_log_shows_at_from() {
    // Suspended before the period: suspension is sticky, planned as live.
    let mut busy = steady("busy", "acme", "h1", &[0; 8]);
    busy.records
        .push(ladder(1, 500, Step::None, Step::Suspend, 200));
    // From t = 3 s: the windows before only warm the aggregates.
    let c = replay(&set(LOOSE), &set(LOOSE), &[busy], 3000, 60_000);
    let b = &c[0];
    assert_eq!(b.windows, 6, "windows at 3..8 s");
    assert_eq!(b.planned.suspended_windows, 6);
    assert_eq!(b.actual.suspended_windows, 6);
    assert!(b.differences.is_empty(), "{:?}", b.differences);
    // The action before the period is not one of the period's.
    assert!(b.actual.actions.is_empty());
    assert!(b.planned.actions.is_empty());
}

#[test]
fn the_period_bounds_the_windows_replayed() {
    let busy = steady("busy", "acme", "h1", &[1000; 20]);
    let c = replay(&set(LOOSE), &set(THROTTLE_ONLY), &[busy], 5000, 9000);
    assert_eq!(c[0].windows, 5, "windows at 5, 6, 7, 8, 9 s");
    assert_eq!(c[0].planned.enforced.len(), 1);
    let run = &c[0].planned.enforced[0];
    assert_eq!((run.from_ms, run.to_ms, run.windows), (5000, 9000, 5));
    assert_eq!((run.first_seq, run.last_seq), (41, 90));
}

#[test]
fn lending_is_decided_per_host_with_the_neighbours() {
    // hooli's lender idles: its guarantee above `keep` (400m) is lent to the throttled acme
    // enclave on the same host; the acme enclave on another host borrows nothing.
    let busy = steady("busy", "acme", "h1", &[1000; 5]);
    let lender = steady("lender", "hooli", "h1", &[0; 5]);
    let far = steady("far", "acme", "h2", &[1000; 5]);
    let c = replay(
        &set(LOOSE),
        &set(&format!(
            "{THROTTLE_ONLY}{}",
            &TIGHT[TIGHT.find("policy \"lender\"").unwrap_or(0)..]
        )),
        &[busy, lender, far],
        0,
        60_000,
    );
    assert_eq!(c[0].planned.borrowed_cpu_millicores_max, 400);
    assert_eq!(c[1].planned.lent_cpu_millicores_max, 400);
    assert_eq!(c[2].planned.borrowed_cpu_millicores_max, 0);
    assert_eq!(c[2].planned.throttled_windows, 5);
    assert_eq!(c[0].actual.borrowed_cpu_millicores_max, 0);
    assert!(c[0].changed && c[1].changed && c[2].changed);
}

#[test]
fn replayed_windows_are_counted_but_not_decided_on() {
    let mut busy = steady("busy", "acme", "h1", &[1000; 3]);
    for r in &mut busy.records {
        if let Record::Window(w) = &mut r.record {
            w.replayed = true;
        }
    }
    let c = replay(&set(LOOSE), &set(THROTTLE_ONLY), &[busy], 0, 60_000);
    assert_eq!(c[0].windows, 3);
    assert_eq!(c[0].planned.throttles, 0);
}

#[test]
fn an_untrusted_enclave_is_never_counted_compliant() {
    // `on attestation.failed { suspend now }` is absent here: the policy decides nothing, but
    // the enclave's state stays untrusted whatever its usage.
    let mut h = steady("busy", "acme", "h1", &[10; 3]);
    h.records[0] = Recorded {
        index: 0,
        at_ms: 0,
        record: Record::Verdict {
            trusted: false,
            debug: false,
            failures: 1,
            measurement: String::new(),
        },
    };
    const FAIL: &str = r#"
policy "busy" {
  match tenant == "acme"
  limit { cpu = 1 }
  on attestation.failed { suspend now }
}
"#;
    let c = replay(&set(LOOSE), &set(FAIL), &[h], 0, 60_000);
    assert_eq!(c[0].planned.suspensions, 1);
    assert_eq!(c[0].planned.suspended_windows, 3);
}

#[test]
fn runs_and_actions_are_bounded_and_counted() {
    // Alternating 1000m / 0m with a throttle-only policy: throttled, released, … — more
    // actions than are listed; the counts stay exact.
    let cpu: Vec<u64> = (0..(4 * ACTIONS_MAX as u64))
        .map(|i| if (i / 12) % 2 == 0 { 1000 } else { 0 })
        .collect();
    let busy = steady("busy", "acme", "h1", &cpu);
    let c = replay(&set(LOOSE), &set(THROTTLE_ONLY), &[busy], 0, i64::MAX);
    let p = &c[0].planned;
    assert!(p.actions.len() <= ACTIONS_MAX);
    assert_eq!(
        p.actions.len() as u64 + p.actions_omitted,
        u64::from(p.throttles + p.releases)
    );
    assert!(p.enforced.len() <= RUNS_MAX);
    assert!(c[0].differences.len() <= RUNS_MAX);
    assert!(p.throttles > 1);
}

#[test]
fn the_replay_is_deterministic_and_independent_of_history_order() {
    let a = steady("a", "acme", "h1", &[1000, 0, 1000, 1000, 0]);
    let b = steady("b", "hooli", "h1", &[0; 5]);
    let one = replay(&set(LOOSE), &set(TIGHT), &[a.clone(), b.clone()], 0, 60_000);
    let two = replay(&set(LOOSE), &set(TIGHT), &[b, a], 0, 60_000);
    assert_eq!(one[0], two[1]);
    assert_eq!(one[1], two[0]);
}

/// As live (`Observation::live_ms`), the planner releases a throttle only after
/// RELEASE_AFTER_MS backed off on the current chain's evidence: a new report key (an agent's
/// restart) starts it again.
#[test]
fn a_throttle_is_released_on_the_current_chains_evidence_only() {
    use crate::attest::decide::RELEASE_AFTER_MS;
    let released_at = |restart: Option<u64>| {
        let mut cpu = vec![1000];
        cpu.extend([50; 24]);
        let mut busy = steady("busy", "acme", "h1", &cpu);
        if let Some(r) = restart {
            // From window r on, the agent's new key: seqs start again at 1.
            for rec in &mut busy.records {
                if let Record::Window(w) = &mut rec.record
                    && w.first_seq > r * 10
                {
                    w.first_seq -= r * 10;
                    w.last_seq -= r * 10;
                }
            }
        }
        let c = replay(&set(THROTTLE_ONLY), &set(THROTTLE_ONLY), &[busy], 0, 60_000);
        let b = &c[0];
        assert_eq!(b.planned.throttles, 1, "{b:?}");
        assert_eq!(b.planned.releases, 1, "{b:?}");
        b.planned.actions[1].at_ms
    };
    // Throttled at 1 s, backed off from 2 s: released 10 s later.
    assert_eq!(released_at(None), 2_000 + RELEASE_AFTER_MS);
    // The agent restarted at 6 s (window 5): its new chain's evidence starts there.
    assert_eq!(released_at(Some(5)), 6_000 + RELEASE_AFTER_MS);
}
