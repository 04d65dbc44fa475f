use super::*;
use crate::state::{Attestation, LogEntryKind, Placement};

const POLICIES: &str = r#"
policy "greedy" {
  match tenant == "acme"
  weight 2
  guarantee { cpu = 100m }
  limit { cpu = 200m  memory = 256MiB }
  on over_limit { throttle now; suspend after 3s }
  on attestation.failed { suspend now }
}
policy "lender" {
  match tenant == "hooli"
  weight 1
  guarantee { cpu = 500m }
  limit { cpu = 1 }
  reclaim { when usage.cpu.max(1s) < 20% of guarantee.cpu; keep cpu = 100m }
}
"#;

fn set() -> PolicySet {
    let c = tribune_policy::check("t.tribune", POLICIES);
    assert!(!c.has_errors(), "{:?}", c.diagnostics);
    PolicySet::new(c.policies)
}

fn enclave(id: &str, tenant: &str) -> Enclave {
    Enclave {
        id: id.into(),
        tenant: tenant.into(),
        labels: Default::default(),
        tee: tribune_attest::TeeKind::Sim,
        expected_measurements: vec![],
        requested: Resources::default(),
        priority: 0,
        placement: Some(Placement {
            host: "h1".into(),
            epoch: 1,
        }),
        state: EnclaveState::Running,
        launch: None,
        scheduling: None,
        version: 1,
    }
}

fn trusted() -> EnclaveStatus {
    EnclaveStatus {
        attestation: Some(Attestation {
            trusted: true,
            ..Attestation::default()
        }),
        ..EnclaveStatus::default()
    }
}

fn obs(cpu: f64, wanted: &[(Resource, tribune_policy::Agg, u32)]) -> Observation {
    Observation {
        cpu_millicores: cpu,
        cpu_recent_millicores: cpu,
        usage: wanted
            .iter()
            .map(|&(resource, agg, window_s)| UsageFact {
                resource,
                agg,
                window_s,
                value: if resource == Resource::Cpu { cpu } else { 0.0 },
            })
            .collect(),
        divergence_pct: 0.0,
        seq: 7,
        window_end_ms: 0,
        msgs: Default::default(),
        live_ms: 0,
    }
}

/// Runs one enclave alone through a decision and applies the result to its state.
struct Sim {
    enclave: Enclave,
    status: EnclaveStatus,
    allocation: Option<Allocation>,
    held: BTreeMap<String, i64>,
    accounting_broken_ms: Option<u64>,
    /// Since when its usage has been observed live in this session (the ledger's
    /// `Observation::live_ms`): set by its first observation, cleared by [`Sim::new_session`].
    live_from: Option<i64>,
}

impl Sim {
    fn new(id: &str, tenant: &str) -> Sim {
        Sim {
            enclave: enclave(id, tenant),
            status: trusted(),
            allocation: None,
            held: BTreeMap::new(),
            accounting_broken_ms: None,
            live_from: None,
        }
    }
    /// A new attestation session (the agent restarted, or it moved to another controller):
    /// its live evidence starts again with its next report.
    fn new_session(&mut self) {
        self.live_from = None;
        self.held.clear();
    }
    fn absorb(&mut self, out: &Output) {
        self.held = out.held_since.clone();
        if let Some(e) = &out.enforcement {
            // Every decision names the ladder it was made from (the state's compare-and-set).
            assert_eq!(e.from.as_ref(), Some(&self.status.ladder), "{e:?}");
            self.allocation = Some(e.allocation.clone());
            self.status.ladder = e.ladder.clone();
            self.status.borrowed_cpu_millicores = e.borrowed_cpu_millicores;
            self.status.lent_cpu_millicores = e.lent_cpu_millicores;
            if self.enclave.state != EnclaveState::Untrusted {
                self.enclave.state = e.state;
            }
        }
    }
}

fn step_all(p: &PolicySet, sims: &mut [Sim], cpus: &[Option<f64>], now: i64) -> Vec<Output> {
    let wanted: Vec<_> = p
        .policies()
        .iter()
        .flat_map(|p| p.usage_windows())
        .collect();
    let observations: Vec<Option<Observation>> = cpus
        .iter()
        .zip(sims.iter_mut())
        .map(|(c, s)| {
            c.map(|c| {
                let from = *s.live_from.get_or_insert(now);
                Observation {
                    live_ms: u64::try_from(now - from).unwrap_or(0),
                    ..obs(c, &wanted)
                }
            })
        })
        .collect();
    let outs = {
        let inputs: Vec<Input> = sims
            .iter()
            .zip(&observations)
            .map(|(s, o)| Input {
                enclave: &s.enclave,
                status: Some(&s.status),
                allocation: s.allocation.as_ref(),
                observation: o.as_ref(),
                held_since: &s.held,
                accounting_broken_ms: s.accounting_broken_ms,
            })
            .collect();
        decide_host(p, &inputs, now)
    };
    for (s, o) in sims.iter_mut().zip(&outs) {
        s.absorb(o);
    }
    outs
}

fn step(p: &PolicySet, sim: &mut Sim, cpu: Option<f64>, now: i64) -> Output {
    step_all(p, std::slice::from_mut(sim), &[cpu], now).remove(0)
}

mod ladder;

#[test]
fn within_limit_has_no_cap_and_static_settings() {
    let p = set();
    let mut s = Sim::new("a", "acme");
    let out = step(&p, &mut s, Some(150.0), 1_000);
    let e = out
        .enforcement
        .expect("first decision writes the allocation");
    assert_eq!(e.allocation.limits.cpu_millicores, 0);
    assert_eq!(e.allocation.limits.memory_bytes, 256 << 20);
    assert_eq!(e.allocation.guaranteed.cpu_millicores, 100);
    assert_eq!(e.allocation.weight, 2);
    assert_eq!(e.state, EnclaveState::Running);
    assert!(e.log.is_empty());
    // Nothing changes: nothing to write.
    assert!(step(&p, &mut s, Some(150.0), 1_100).enforcement.is_none());
}

/// An enclave without a status yet is decided from the default ladder, which is what the
/// state gives it when the decision applies.
#[test]
fn a_first_decision_is_made_from_the_default_ladder() {
    let p = set();
    let e = enclave("a", "acme");
    let wanted: Vec<_> = p
        .policies()
        .iter()
        .flat_map(|p| p.usage_windows())
        .collect();
    let o = obs(900.0, &wanted);
    let held = BTreeMap::new();
    let input = Input {
        enclave: &e,
        status: None,
        allocation: None,
        observation: Some(&o),
        held_since: &held,
        accounting_broken_ms: None,
    };
    let out = decide_host(&p, &[input], 1_000).remove(0);
    let en = out.enforcement.expect("over its limit: a decision");
    assert_eq!(en.from, Some(Ladder::default()));
    assert_eq!(en.ladder.step, Step::Throttle);
}

#[test]
fn the_ladder_throttles_at_once_then_suspends_and_stays_suspended() {
    let p = set();
    let mut s = Sim::new("a", "acme");
    step(&p, &mut s, Some(100.0), 0);
    // First over-limit report: throttled to the limit, violation and action logged.
    let e = step(&p, &mut s, Some(900.0), 1_000)
        .enforcement
        .expect("throttle");
    assert_eq!(e.ladder.step, Step::Throttle);
    assert_eq!(e.allocation.limits.cpu_millicores, 200);
    assert_eq!(e.state, EnclaveState::Throttled);
    let kinds: Vec<_> = e.log.iter().map(LogDetail::kind).collect();
    assert_eq!(kinds, vec![LogEntryKind::Violation, LogEntryKind::Action]);
    // Pressing against the cap keeps it over; 3 s later it is suspended.
    assert!(step(&p, &mut s, Some(199.0), 2_000).enforcement.is_none());
    let e = step(&p, &mut s, Some(198.0), 4_000)
        .enforcement
        .expect("suspend");
    assert_eq!(e.ladder.step, Step::Suspend);
    assert!(e.allocation.suspended);
    assert_eq!(e.state, EnclaveState::Suspended);
    // Frozen, it uses nothing: still suspended (sticky), nothing to write but the over flag.
    let out = step(&p, &mut s, Some(0.0), 5_000);
    assert_eq!(s.status.ladder.step, Step::Suspend);
    assert!(s.allocation.as_ref().is_some_and(|a| a.suspended));
    drop(out);
}

#[test]
fn a_throttled_enclave_that_backs_off_is_released() {
    let p = set();
    let mut s = Sim::new("a", "acme");
    step(&p, &mut s, Some(900.0), 0);
    assert_eq!(s.status.ladder.step, Step::Throttle);
    // Just under the cap (at its limit, within what a cap and a busy host make of it): still
    // over, the ladder clock runs on; nothing to write.
    assert!(step(&p, &mut s, Some(170.0), 300).enforcement.is_none());
    assert_eq!(s.status.ladder.over_since_ms, Some(0));
    // Backed off: still capped for RELEASE_AFTER_MS (a starved enclave looks the same), the
    // clock stands still (500 ms over)…
    let e = step(&p, &mut s, Some(120.0), 500)
        .enforcement
        .expect("backed off");
    assert_eq!(e.ladder.step, Step::Throttle);
    assert_eq!(e.ladder.under_since_ms, Some(500));
    assert_eq!(e.ladder.over_since_ms, Some(0));
    assert_eq!(e.allocation.limits.cpu_millicores, 200);
    assert!(step(&p, &mut s, Some(100.0), 5_000).enforcement.is_none());
    // …pressing again in between restarts the wait, and the clock runs on from 500 ms…
    step(&p, &mut s, Some(160.0), 6_000);
    assert_eq!(s.status.ladder.under_since_ms, None);
    assert_eq!(s.status.ladder.over_since_ms, Some(5_500));
    step(&p, &mut s, Some(100.0), 7_000);
    assert_eq!(s.status.ladder.step, Step::Throttle, "1.5 s over, not 3");
    assert!(step(&p, &mut s, Some(100.0), 16_000).enforcement.is_none());
    // …and after it the cap is lifted.
    let e = step(&p, &mut s, Some(120.0), 17_000)
        .enforcement
        .expect("release");
    assert_eq!(e.ladder.step, Step::None);
    assert_eq!(e.allocation.limits.cpu_millicores, 0);
    assert_eq!(e.ladder.over_since_ms, None);
}

#[test]
fn silence_never_lifts_a_limit() {
    let p = set();
    let mut s = Sim::new("a", "acme");
    step(&p, &mut s, Some(900.0), 0);
    // No verified usage (agent gone, reports refused): the throttle stays, the clock runs on.
    for t in [100, 1_000, 2_000] {
        step(&p, &mut s, None, t);
        assert_eq!(s.status.ladder.step, Step::Throttle);
        assert_eq!(
            s.allocation.as_ref().map(|a| a.limits.cpu_millicores),
            Some(200)
        );
    }
    step(&p, &mut s, None, 3_500);
    assert_eq!(s.status.ladder.step, Step::Suspend);
}

#[test]
fn failed_attestation_suspends_now() {
    let p = set();
    let mut s = Sim::new("a", "acme");
    step(&p, &mut s, Some(50.0), 0);
    s.status.attestation = Some(Attestation {
        trusted: false,
        reasons: vec!["signature".into()],
        ..Attestation::default()
    });
    s.enclave.state = EnclaveState::Untrusted;
    let e = step(&p, &mut s, Some(50.0), 100)
        .enforcement
        .expect("suspend");
    assert!(e.allocation.suspended);
    assert_eq!(e.ladder.step, Step::Suspend);
    assert!(e.log.iter().any(|d| matches!(
        d,
        LogDetail::Violation(ViolationDetail::AttestationFailed(_))
    )));
}

#[test]
fn idle_capacity_is_lent_by_weight_and_returned_at_once() {
    let p = set();
    // b1 (weight 2) and b2 (acme, weight 2) greedy; owner (hooli) idle with 500m guaranteed.
    let mut sims = vec![
        Sim::new("owner", "hooli"),
        Sim::new("b1", "acme"),
        Sim::new("b2", "acme"),
    ];
    step_all(&p, &mut sims, &[Some(10.0), Some(900.0), Some(900.0)], 0);
    // Lendable: 500m - 100m keep = 400m, split by weight (2:2) → 200m each.
    assert_eq!(sims[0].status.lent_cpu_millicores, 400);
    assert_eq!(sims[1].status.borrowed_cpu_millicores, 200);
    assert_eq!(sims[2].status.borrowed_cpu_millicores, 200);
    assert_eq!(
        sims[1].allocation.as_ref().map(|a| a.limits.cpu_millicores),
        Some(400)
    );
    // Borrowers press against their raised caps: they keep what they borrowed.
    step_all(&p, &mut sims, &[Some(10.0), Some(395.0), Some(396.0)], 100);
    assert_eq!(sims[1].status.borrowed_cpu_millicores, 200);
    // The owner gets busy: in the same decision, borrowers are back to their limit.
    let outs = step_all(&p, &mut sims, &[Some(450.0), Some(395.0), Some(396.0)], 200);
    assert_eq!(sims[0].status.lent_cpu_millicores, 0);
    for b in &sims[1..] {
        assert_eq!(b.status.borrowed_cpu_millicores, 0);
        assert_eq!(
            b.allocation.as_ref().map(|a| a.limits.cpu_millicores),
            Some(200)
        );
    }
    assert!(
        outs[1]
            .enforcement
            .as_ref()
            .is_some_and(|e| e.log.iter().any(|d| matches!(
                d,
                LogDetail::Action(ActionDetail::Borrow(BorrowAction {
                    action: BorrowMove::Return,
                    ..
                }))
            )))
    );
}

#[test]
fn nothing_is_lent_without_a_borrower() {
    let p = set();
    let mut sims = vec![Sim::new("owner", "hooli"), Sim::new("b1", "acme")];
    step_all(&p, &mut sims, &[Some(10.0), Some(100.0)], 0);
    assert_eq!(sims[0].status.lent_cpu_millicores, 0);
    assert_eq!(sims[1].status.borrowed_cpu_millicores, 0);
}

#[test]
fn decisions_are_deterministic_over_a_grid_of_inputs() {
    let p = set();
    let cpus = [
        None,
        Some(0.0),
        Some(150.0),
        Some(199.0),
        Some(205.0),
        Some(5000.0),
    ];
    for &c1 in &cpus {
        for &c2 in &cpus {
            let run = || {
                let mut sims = vec![Sim::new("owner", "hooli"), Sim::new("b1", "acme")];
                let mut all = Vec::new();
                for t in 0..6 {
                    all.push(step_all(&p, &mut sims, &[c1, c2], t * 1000));
                }
                (
                    all,
                    sims.iter().map(|s| s.status.clone()).collect::<Vec<_>>(),
                )
            };
            let (a, sa) = run();
            let (b, sb) = run();
            assert_eq!(a, b);
            assert_eq!(sa, sb);
            // Invariants on every outcome: a cap never exceeds limit + borrowed, a suspended
            // enclave is never released by usage alone.
            for s in &sa {
                assert!(s.borrowed_cpu_millicores <= 400);
            }
        }
    }
}

#[test]
fn an_enclave_no_policy_matches_gets_nothing_capped() {
    let p = set();
    let mut s = Sim::new("x", "nobody");
    let e = step(&p, &mut s, Some(5000.0), 0)
        .enforcement
        .expect("first");
    assert_eq!(e.allocation.limits, Resources::default());
    assert_eq!(e.ladder.step, Step::None);
}

#[test]
fn usage_that_cannot_be_accounted_fails_attestation_after_the_grace() {
    let p = set();
    let mut s = Sim::new("a", "acme");
    step(&p, &mut s, Some(100.0), 0);
    // Broken for less than the grace (a reconnect's replay): nothing happens.
    s.accounting_broken_ms = Some(ACCOUNTING_GRACE_MS - 1);
    assert!(step(&p, &mut s, None, 1_000).enforcement.is_none());
    assert_eq!(s.enclave.state, EnclaveState::Running);
    // From the grace on, `on attestation.failed { suspend now }` applies.
    s.accounting_broken_ms = Some(ACCOUNTING_GRACE_MS);
    let e = step(&p, &mut s, None, 2_000)
        .enforcement
        .expect("the ladder sees broken accounting");
    assert_eq!(e.state, EnclaveState::Suspended);
    assert!(e.log.iter().any(|d| matches!(
        d,
        LogDetail::Violation(ViolationDetail::AttestationFailed(_))
    )));
}

#[test]
fn what_is_lent_is_what_the_borrowers_share() {
    let p = set();
    // One idle owner lends 400m to three greedy borrowers of equal weight: 133m each, the
    // remaining millicore lost to rounding down.
    let mut sims = vec![
        Sim::new("owner", "hooli"),
        Sim::new("b1", "acme"),
        Sim::new("b2", "acme"),
        Sim::new("b3", "acme"),
    ];
    let sums = |sims: &[Sim]| {
        let lent: u64 = sims.iter().map(|s| s.status.lent_cpu_millicores).sum();
        let borrowed: u64 = sims.iter().map(|s| s.status.borrowed_cpu_millicores).sum();
        (lent, borrowed)
    };
    step_all(
        &p,
        &mut sims,
        &[Some(10.0), Some(900.0), Some(900.0), Some(900.0)],
        0,
    );
    assert_eq!(sums(&sims), (400, 399));
    for b in &sims[1..] {
        assert_eq!(b.status.borrowed_cpu_millicores, 133);
    }
    // The owner gets busy: lending and borrowing stop together.
    let cpus = [Some(450.0), Some(395.0), Some(396.0), Some(390.0)];
    step_all(&p, &mut sims, &cpus, 100);
    assert_eq!(sums(&sims), (0, 0));
    // The borrowers back off, then the owner goes idle again, over a grid of times: the
    // balance holds after every decision (and `decide_host` asserts it in debug builds).
    for t in 2..12 {
        let owner = if t % 3 == 0 { 450.0 } else { 10.0 };
        let cpus = [Some(owner), Some(900.0), Some(50.0 * t as f64), None];
        step_all(&p, &mut sims, &cpus, t * 1000);
        let (lent, borrowed) = sums(&sims);
        assert!(borrowed <= lent && lent - borrowed < 3, "{lent} {borrowed}");
    }
}

#[test]
fn the_pool_balance_check_catches_an_imbalance() {
    // Balanced: exactly, or short by the rounding of each borrower's share.
    assert!(pool_balances(&[400, 0, 0, 0], &[0, 133, 133, 133], 3));
    assert!(pool_balances(&[400, 0, 0], &[0, 200, 200], 2));
    assert!(pool_balances(&[0, 0], &[0, 0], 0));
    // More borrowed than lent, more lost than rounding explains, lent without a borrower.
    assert!(!pool_balances(&[400, 0, 0], &[0, 200, 201], 2));
    assert!(!pool_balances(&[400, 0, 0], &[0, 100, 100], 2));
    assert!(!pool_balances(&[400, 0], &[0, 0], 0));
}

/// A flooder of inter-enclave messages: a rule on `usage.msgs.rate` throttles it and sets the
/// rate its mediator holds it to; the throttle holds while it keeps pressing (its attempts,
/// refused ones too, count) and is lifted once it stops.
#[test]
fn a_message_flooder_is_throttled_to_the_rules_rate_until_it_stops() {
    let c = tribune_policy::check(
        "t.tribune",
        r#"
policy "chatty" {
  match tenant == "acme"
  when usage.msgs.rate > 1000 { msgs.rate = 50; throttle now }
}
"#,
    );
    assert!(!c.has_errors(), "{:?}", c.diagnostics);
    let p = PolicySet::new(c.policies);
    let mut s = Sim::new("a", "acme");
    let run = |s: &mut Sim, rate: Option<f64>, now: i64| {
        let o = rate.map(|r| Observation {
            msgs: MsgFacts {
                rate: r,
                bytes: r * 64.0,
            },
            ..obs(10.0, &[])
        });
        let input = Input {
            enclave: &s.enclave,
            status: Some(&s.status),
            allocation: s.allocation.as_ref(),
            observation: o.as_ref(),
            held_since: &s.held,
            accounting_broken_ms: None,
        };
        let out = decide_host(&p, &[input], now).remove(0);
        s.absorb(&out);
        out
    };
    let e = run(&mut s, Some(10.0), 0).enforcement.expect("first");
    assert_eq!(e.allocation.msgs_rate_per_s, None);
    let e = run(&mut s, Some(5000.0), 100)
        .enforcement
        .expect("throttle");
    assert_eq!(e.ladder.step, Step::Throttle);
    assert_eq!(e.state, EnclaveState::Throttled);
    assert_eq!(e.allocation.msgs_rate_per_s, Some(50));
    assert!(e.ladder.cause.contains("when#1"), "{}", e.ladder.cause);
    // Held to 50 and still trying at 60 a second (below the rule's 1000): still held.
    run(&mut s, Some(60.0), 200);
    assert_eq!(s.status.ladder.step, Step::Throttle);
    assert_eq!(s.allocation.as_ref().unwrap().msgs_rate_per_s, Some(50));
    // Silence never lifts a throttle.
    run(&mut s, None, 300);
    assert_eq!(s.allocation.as_ref().unwrap().msgs_rate_per_s, Some(50));
    // It stopped: released, no rate limit.
    let e = run(&mut s, Some(1.0), 400).enforcement.expect("release");
    assert_eq!(e.ladder.step, Step::None);
    assert_eq!(e.allocation.msgs_rate_per_s, None);
    assert_eq!(e.state, EnclaveState::Running);
}

#[test]
fn a_rule_on_the_hosts_and_the_clusters_utilization_reads_what_the_session_measured() {
    let c = tribune_policy::check(
        "u.tribune",
        "policy \"busy\" {\n  match tenant == \"acme\"\n  limit { cpu = 4 }\n  \
         when host.cpu.utilization > 80% { throttle now }\n  \
         when host.cpu.utilization < 1% { notify now }\n  \
         when cluster.cpu.utilization > 95% { suspend now }\n}\n",
    );
    assert!(!c.has_errors(), "{:?}", c.diagnostics);
    let set = PolicySet::new(c.policies);
    let e = enclave("e1", "acme");
    let status = trusted();
    let observation = obs(100.0, &[]);
    let held = BTreeMap::new();
    let step = |around: &Around| {
        let input = Input {
            enclave: &e,
            status: Some(&status),
            allocation: None,
            observation: Some(&observation),
            held_since: &held,
            accounting_broken_ms: None,
        };
        decide_host_around(&set, std::slice::from_ref(&input), around, 1_000)[0]
            .decision
            .action
            .action
    };
    let at = |host_cpu, cluster_cpu| Around {
        host: utilization(
            Resources {
                cpu_millicores: host_cpu,
                ..Resources::default()
            },
            Resources {
                cpu_millicores: 1000,
                ..Resources::default()
            },
        ),
        cluster: tribune_policy::Utilization {
            cpu: cluster_cpu,
            ..tribune_policy::Utilization::default()
        },
    };
    // Unknown (NaN) is not 0 %: neither `>` nor `<` holds on it.
    assert_eq!(
        step(&Around::default()),
        Action::None,
        "unknown: no rule holds"
    );
    assert_eq!(step(&at(0, 50.0)), Action::Notify, "0 % is known and low");
    assert_eq!(step(&at(800, 50.0)), Action::None, "80 % is not above 80 %");
    assert_eq!(step(&at(810, 50.0)), Action::Throttle);
    assert_eq!(step(&at(100, 96.0)), Action::Suspend);
}
