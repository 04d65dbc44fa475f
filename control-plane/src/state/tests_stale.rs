//! Decisions are compare-and-set on the ladder they were made from: one made by a controller
//! that had not applied the latest log is refused, never steps an enclave back down.

use super::tests::{allocation, enforcement};
use super::*;

fn ladder(step: Step, since_ms: i64) -> Ladder {
    Ladder {
        step,
        over_since_ms: Some(1_000),
        under_since_ms: None,
        cause: "p on#1 (line 4)".into(),
        since_ms,
    }
}

fn enforce(
    s: &mut State,
    step: Step,
    since_ms: i64,
    from: Option<Ladder>,
    at_ms: i64,
) -> LoopOutcome {
    let suspended = step >= Step::Suspend;
    let Outcome::Loop(o) = s.apply(Command::Enforce {
        host: "h1".into(),
        changes: vec![Enforcement {
            from,
            ..enforcement(
                "e",
                Allocation {
                    suspended,
                    ..allocation("e", 100)
                },
                if suspended {
                    EnclaveState::Suspended
                } else {
                    EnclaveState::Throttled
                },
                ladder(step, since_ms),
            )
        }],
        at_ms,
    }) else {
        panic!("an enforcement answers with a loop outcome")
    };
    o
}

/// [`enforce`], which must apply.
fn applies(s: &mut State, step: Step, since_ms: i64, from: Option<Ladder>) {
    let o = enforce(s, step, since_ms, from, since_ms);
    assert!(o.refused.is_empty(), "{:?}", o.refused);
}

fn placed() -> State {
    let mut s = State::default();
    s.apply(Command::PutEnclave {
        enclave: super::tests::enclave("e", "h1", 1),
        expect: Expect::Any,
        actor: "op".into(),
        at_ms: 1,
    });
    s
}

/// The incident this guards: controller A throttled then suspended an enclave; its agent moved
/// to controller B, which had not applied those entries yet and decided "throttle" from the
/// empty ladder it had. Applied, that decision thawed the suspended enclave.
#[test]
fn a_decision_from_a_ladder_the_log_has_moved_past_is_refused_and_changes_nothing() {
    let mut s = placed();
    applies(&mut s, Step::Throttle, 2_000, Some(Ladder::default()));
    applies(
        &mut s,
        Step::Suspend,
        4_000,
        Some(ladder(Step::Throttle, 2_000)),
    );
    let before = s.clone();

    // Made from the ladder before either decision (a controller behind the log).
    let o = enforce(
        &mut s,
        Step::Throttle,
        6_000,
        Some(Ladder::default()),
        6_000,
    );
    assert_eq!(o.refused.len(), 1, "{:?}", o.refused);
    assert!(
        o.refused[0].contains("\"e\"")
            && o.refused[0].contains("made from ladder step none")
            && o.refused[0].contains("now suspend"),
        "{}",
        o.refused[0]
    );
    assert_eq!(
        s, before,
        "a refused decision changes nothing, not even the plan version"
    );
    assert!(s.allocations["e"].suspended);
    assert_eq!(s.enclaves["e"].state, EnclaveState::Suspended);

    // Made from the step in force but an older clock: refused as well.
    let o = enforce(
        &mut s,
        Step::Throttle,
        6_000,
        Some(ladder(Step::Suspend, 3_999)),
        6_000,
    );
    assert_eq!(o.refused.len(), 1, "{:?}", o.refused);
    assert_eq!(s, before);

    // Made from the ladder in force: applies.
    let o = enforce(
        &mut s,
        Step::Suspend,
        4_000,
        Some(ladder(Step::Suspend, 4_000)),
        7_000,
    );
    assert!(o.refused.is_empty(), "{:?}", o.refused);
}

/// Entries written before the check carry no `from`; they apply as they did, so a log written
/// by an older release replays to the same state.
#[test]
fn a_decision_without_a_from_ladder_applies_unchecked_and_old_entries_still_parse() {
    let mut s = placed();
    enforce(&mut s, Step::Suspend, 4_000, None, 4_000);
    let o = enforce(&mut s, Step::Throttle, 6_000, None, 6_000);
    assert!(o.refused.is_empty(), "{:?}", o.refused);
    assert_eq!(s.status["e"].ladder.step, Step::Throttle);

    let e = enforcement(
        "e",
        allocation("e", 0),
        EnclaveState::Running,
        Ladder::default(),
    );
    let json = serde_json::to_value(&e).expect("json");
    assert!(
        json.get("from").is_none(),
        "absent, as in old entries: {json}"
    );
    assert_eq!(
        serde_json::from_value::<Enforcement>(json).expect("parse"),
        e
    );
    let with = Enforcement {
        from: Some(ladder(Step::Throttle, 5)),
        ..e
    };
    let json = serde_json::to_value(&with).expect("json");
    assert_eq!(
        serde_json::from_value::<Enforcement>(json).expect("parse"),
        with
    );
}

/// An enclave with no status yet was decided from the default ladder: that is what it has.
#[test]
fn a_first_decision_made_from_the_default_ladder_applies() {
    let mut s = placed();
    assert!(!s.status.contains_key("e"));
    applies(&mut s, Step::Throttle, 2_000, Some(Ladder::default()));
    assert_eq!(s.status["e"].ladder.step, Step::Throttle);
}
