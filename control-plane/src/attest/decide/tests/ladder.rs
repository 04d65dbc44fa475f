//! The throttle's hold, release and ladder clock at their boundaries: a cap holding usage at
//! its limit, usage dipping under it, silence, and new attestation sessions (an agent's
//! restart, a controller change). Found by the chaos harness (chaos/README.md): a throttle
//! lifted on the first decision of a new session, and `throttle now; suspend after 2s`
//! suspending nothing because every dip restarted the clock.

use proptest::prelude::*;

use super::*;

/// A 200m limit, throttled at once, suspended after `suspend` of over-limit time.
fn policy(suspend: &str) -> PolicySet {
    let src = format!(
        r#"policy "press" {{
  match tenant == "acme"
  limit {{ cpu = 200m }}
  on over_limit {{ throttle now; suspend after {suspend} }}
}}"#
    );
    let c = tribune_policy::check("t.tribune", &src);
    assert!(!c.has_errors(), "{:?}", c.diagnostics);
    PolicySet::new(c.policies)
}

const CAP: f64 = 200.0;

/// Usage fractions of the cap at and around the thresholds.
const BACKED_OFF: [f64; 5] = [0.0, 0.3, 0.5, 0.7, 0.749];
const AT_THE_LIMIT: [f64; 8] = [0.75, 0.8, 0.85, 0.899, 0.9, 0.95, 1.0, 1.02];

fn cap_of(s: &Sim) -> Option<u64> {
    s.allocation.as_ref().map(|a| a.limits.cpu_millicores)
}

/// Throttled at `t = 0` by a report far over the limit.
fn throttled(p: &PolicySet) -> Sim {
    let mut s = Sim::new("a", "acme");
    step(p, &mut s, Some(900.0), 0);
    assert_eq!(s.status.ladder.step, Step::Throttle);
    assert_eq!(cap_of(&s), Some(200));
    s
}

/// The chaos finding: a throttled enclave backed off (starved by a busy host), its agent
/// killed, silent, restarted: the first reports of the new session must not lift the cap,
/// whatever the silence lasted — the backed-off time is counted on live evidence only. The
/// same holds after a controller change (a new session on another controller, whose
/// `held_since` is empty and whose first reports start its evidence again).
#[test]
fn a_new_session_never_lifts_a_throttle_before_it_has_its_own_evidence() {
    let p = policy("10m");
    for &f in &BACKED_OFF {
        for silence_ms in [0i64, 2_000, 6_000, 9_000, 12_000, 60_000] {
            let mut s = throttled(&p);
            // Backed off (or starved) for 4 s before the agent dies.
            for t in (1..=40).map(|k| k * 100) {
                step(&p, &mut s, Some(f * CAP), t);
            }
            assert_eq!(s.status.ladder.step, Step::Throttle);
            // The agent is dead: decisions run on silence.
            let restart = 4_000 + silence_ms;
            for t in (4_100..restart).step_by(500) {
                step(&p, &mut s, None, t);
                assert_eq!(cap_of(&s), Some(200), "silence lifted it at {t}");
            }
            // The new session: every decision in its first RELEASE_AFTER_MS keeps the cap.
            s.new_session();
            let mut released_at = None;
            for k in 0..=120 {
                let t = restart + k * 100;
                step(&p, &mut s, Some(f * CAP), t);
                if s.status.ladder.step != Step::Throttle {
                    released_at = Some(t);
                    break;
                }
                assert_eq!(cap_of(&s), Some(200));
            }
            let at = released_at.unwrap_or_else(|| {
                panic!("usage {f} of the cap, silence {silence_ms} ms: never released")
            });
            assert!(
                at - restart >= RELEASE_AFTER_MS,
                "usage {f} of the cap, silence {silence_ms} ms: released {} ms into the new session",
                at - restart
            );
            assert!(at - restart < RELEASE_AFTER_MS + 100, "released late: {at}");
            assert_eq!(s.status.ladder.step, Step::None);
            assert_eq!(cap_of(&s), Some(0));
        }
    }
}

/// The replicated ladder a new controller inherits may say "backed off since long ago"; its
/// first observation, however low, is one report of evidence: the cap stays.
#[test]
fn an_inherited_backed_off_clock_does_not_release_on_one_report() {
    let p = policy("10m");
    for &f in &BACKED_OFF {
        for live_ms in [0u64, 100, 1_000, 9_999] {
            let mut s = throttled(&p);
            s.status.ladder.under_since_ms = Some(-600_000);
            s.status.ladder.over_since_ms = None;
            let o = Observation {
                live_ms,
                ..obs(f * CAP, &[])
            };
            let input = Input {
                enclave: &s.enclave,
                status: Some(&s.status),
                allocation: s.allocation.as_ref(),
                observation: Some(&o),
                held_since: &BTreeMap::new(),
                accounting_broken_ms: None,
            };
            let out = decide_host(&p, &[input], 1_000).remove(0);
            let step = out.enforcement.map_or(Step::Throttle, |e| e.ladder.step);
            assert_eq!(step, Step::Throttle, "usage {f}, live {live_ms} ms");
        }
        // Ten seconds of live evidence, all backed off: released.
        let mut s = throttled(&p);
        s.status.ladder.under_since_ms = Some(-600_000);
        let o = Observation {
            live_ms: RELEASE_AFTER_MS as u64,
            ..obs(f * CAP, &[])
        };
        let input = Input {
            enclave: &s.enclave,
            status: Some(&s.status),
            allocation: s.allocation.as_ref(),
            observation: Some(&o),
            held_since: &BTreeMap::new(),
            accounting_broken_ms: None,
        };
        let out = decide_host(&p, &[input], 1_000).remove(0);
        assert_eq!(out.enforcement.map(|e| e.ladder.step), Some(Step::None));
    }
}

/// A cap holding usage at its limit (CFS enforces it per 100 ms period; a busy host shaves a
/// little off): the enclave is still over, and `throttle now; suspend after 2s` suspends it
/// 2 s after the throttle, for every reading from RELEASE of the cap up.
#[test]
fn a_cap_holding_usage_at_its_limit_is_still_over_and_the_ladder_advances() {
    let p = policy("2s");
    for &f in &AT_THE_LIMIT {
        let mut s = throttled(&p);
        let mut suspended_at = None;
        for t in (1..=40).map(|k| k * 100) {
            step(&p, &mut s, Some(f * CAP), t);
            assert_eq!(cap_of(&s), Some(200), "usage {f}: cap lifted at {t}");
            if s.status.ladder.step == Step::Suspend {
                suspended_at = Some(t);
                break;
            }
        }
        assert_eq!(suspended_at, Some(2_000), "usage {f} of the cap");
        assert!(s.allocation.as_ref().is_some_and(|a| a.suspended));
    }
}

/// Usage that dips under RELEASE of the cap now and then stops the ladder clock while it is
/// under (a compliant moment, or a starved one), never restarts it: an enclave that keeps
/// coming back to its cap is suspended after 2 s of pressing, however often it dips.
#[test]
fn dips_under_the_cap_stop_the_ladder_clock_and_never_restart_it() {
    let p = policy("2s");
    // (pressing reports, dipping reports) per cycle, 100 ms each.
    for (press, dip) in [(1, 1), (2, 1), (3, 2), (5, 5), (1, 9), (9, 1)] {
        for &low in &BACKED_OFF {
            for &high in &[0.9, 1.0] {
                let mut s = throttled(&p);
                let mut pressed_ms = 0i64;
                let mut prev_pressing = true; // the throttling report
                let mut t = 0;
                let suspended_after = loop {
                    for k in 0..press + dip {
                        t += 100;
                        if prev_pressing {
                            pressed_ms += 100;
                        }
                        let pressing = k < press;
                        step(&p, &mut s, Some(if pressing { high } else { low } * CAP), t);
                        prev_pressing = pressing;
                        if s.status.ladder.step == Step::Suspend {
                            break;
                        }
                    }
                    if s.status.ladder.step == Step::Suspend {
                        break pressed_ms;
                    }
                    assert_eq!(cap_of(&s), Some(200));
                    assert!(t < 60_000, "({press}, {dip}) {low}/{high}: never suspended");
                };
                // The clock ran exactly while it was pressing (from a pressing report to the
                // next report).
                assert_eq!(
                    suspended_after, 2_000,
                    "({press}, {dip}) {low}/{high}: suspended after {suspended_after} ms of pressing"
                );
            }
        }
    }
}

/// A throttled enclave that backs off is not pushed up the ladder while it stays backed off,
/// and is released after RELEASE_AFTER_MS of it: capped usage below RELEASE never counts as
/// over.
#[test]
fn backed_off_is_never_over_and_is_released_after_the_wait() {
    let p = policy("2s");
    for &f in &BACKED_OFF {
        let mut s = throttled(&p);
        let mut t = 0;
        while s.status.ladder.step == Step::Throttle {
            t += 100;
            step(&p, &mut s, Some(f * CAP), t);
            assert_ne!(s.status.ladder.step, Step::Suspend, "usage {f} at {t}");
        }
        // The first backed-off report at 100 ms, released 10 s of evidence later.
        assert_eq!(t, 100 + RELEASE_AFTER_MS, "usage {f}");
        assert_eq!(s.status.ladder.over_since_ms, None);
        assert_eq!(cap_of(&s), Some(0));
    }
}

/// One event of a throttled enclave's life.
#[derive(Clone, Copy, Debug)]
enum Event {
    /// A verified report at this fraction of the cap, after `dt` ms.
    Report { dt: i64, f: f64 },
    /// A decision on silence after `dt` ms.
    Silence { dt: i64 },
    /// The agent restarts or the stream moves to another controller.
    NewSession,
}

fn event() -> impl Strategy<Value = Event> {
    let fraction = prop_oneof![
        prop::sample::select(BACKED_OFF.to_vec()),
        prop::sample::select(AT_THE_LIMIT.to_vec()),
        0.0..1.3f64,
    ];
    let dt = prop_oneof![Just(100i64), 1i64..3_000];
    prop_oneof![
        6 => (dt.clone(), fraction).prop_map(|(dt, f)| Event::Report { dt, f }),
        2 => dt.prop_map(|dt| Event::Silence { dt }),
        1 => Just(Event::NewSession),
    ]
}

/// The rules, written as a model that accumulates (the code keeps two timestamps):
/// - the ladder clock runs from a decision that left the enclave not backed off (or silent
///   after one) to the next decision; a backed-off report stops it;
/// - released at a backed-off report when it has been backed off for RELEASE_AFTER_MS since
///   the first backed-off report of its current run, all of it within the current session's
///   live evidence;
/// - suspended once the clock has run 3 s; never lifted on silence.
#[derive(Debug)]
struct Model {
    running: bool,
    run_ms: i64,
    backed_off_since: Option<i64>,
    evidence_since: Option<i64>,
    last_t: i64,
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2_000))]
    #[test]
    fn the_throttle_follows_the_model(events in prop::collection::vec(event(), 1..120)) {
        let p = policy("3s");
        let mut s = throttled(&p);
        let mut m = Model {
            running: true,
            run_ms: 0,
            backed_off_since: None,
            evidence_since: Some(0),
            last_t: 0,
        };
        let mut t = 0i64;
        for e in events {
            let (dt, f) = match e {
                Event::NewSession => {
                    s.new_session();
                    m.evidence_since = None;
                    continue;
                }
                Event::Report { dt, f } => (dt, Some(f)),
                Event::Silence { dt } => (dt, None),
            };
            t += dt;
            if m.running {
                m.run_ms += t - m.last_t;
            }
            m.last_t = t;
            let mut released = false;
            if let Some(f) = f {
                let since = *m.evidence_since.get_or_insert(t);
                if f < RELEASE {
                    let under = *m.backed_off_since.get_or_insert(t);
                    released = t - under.max(since) >= RELEASE_AFTER_MS;
                    m.running = false;
                } else {
                    m.backed_off_since = None;
                    m.running = true;
                }
            }
            step(&p, &mut s, f.map(|f| f * CAP), t);
            let want = if released {
                Step::None
            } else if m.run_ms >= 3_000 {
                Step::Suspend
            } else {
                Step::Throttle
            };
            prop_assert_eq!(s.status.ladder.step, want, "at {} ms: {:?}", t, m);
            let want_cap = if released { 0 } else { 200 };
            prop_assert_eq!(cap_of(&s), Some(want_cap), "at {} ms", t);
            if want != Step::Throttle {
                break;
            }
        }
    }
}
