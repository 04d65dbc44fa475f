use super::*;

fn put(name: &str, source: &str, expect: Expect) -> Command {
    Command::PutPolicy {
        name: name.into(),
        source: source.into(),
        expect,
        actor: "alice".into(),
        at_ms: 1000,
    }
}

fn enclave(id: &str, host: &str, epoch: u64) -> Enclave {
    Enclave {
        id: id.into(),
        tenant: "acme".into(),
        labels: Default::default(),
        tee: "sim".into(),
        expected_measurements: vec![],
        requested: Resources::default(),
        priority: 0,
        placement: Some(Placement {
            host: host.into(),
            epoch,
        }),
        state: EnclaveState::Pending,
        launch: None,
        version: 0,
    }
}

#[test]
fn policy_versions_grow_by_one_and_keep_creation_metadata() {
    let mut s = State::default();
    let Outcome::Policy(p1) = s.apply(put("a", "v1", Expect::Absent)) else {
        panic!("created")
    };
    assert_eq!(p1.version, 1);
    let Outcome::Policy(p2) = s.apply(put("a", "v2", Expect::Version(1))) else {
        panic!("updated")
    };
    assert_eq!(
        (p2.version, p2.source.as_str(), p2.created_at_ms),
        (2, "v2", 1000)
    );
}

#[test]
fn every_precondition_combination() {
    // (existing version, expectation, should succeed)
    let cases = [
        (None, Expect::Any, true),
        (None, Expect::Absent, true),
        (None, Expect::Version(1), false),
        (Some(1), Expect::Any, true),
        (Some(1), Expect::Absent, false),
        (Some(1), Expect::Version(1), true),
        (Some(1), Expect::Version(2), false),
    ];
    for (existing, expect, ok) in cases {
        let mut s = State::default();
        if existing.is_some() {
            s.apply(put("p", "old", Expect::Any));
        }
        let before = s.clone();
        let out = s.apply(put("p", "new", expect));
        match out {
            Outcome::Policy(_) => assert!(ok, "{existing:?} {expect:?} should conflict"),
            Outcome::Conflict {
                current_version, ..
            } => {
                assert!(!ok, "{existing:?} {expect:?} should succeed");
                assert_eq!(current_version, existing);
                assert_eq!(s, before, "a conflict writes nothing");
            }
            other => panic!("unexpected {other:?}"),
        }
    }
}

#[test]
fn delete_missing_is_not_found_and_delete_with_stale_version_conflicts() {
    let mut s = State::default();
    let del = |expect| Command::DeletePolicy {
        name: "p".into(),
        expect,
        actor: "bob".into(),
        at_ms: 5,
    };
    assert!(matches!(
        s.apply(del(Expect::Any)),
        Outcome::NotFound { .. }
    ));
    s.apply(put("p", "x", Expect::Any));
    s.apply(put("p", "y", Expect::Any));
    assert!(matches!(
        s.apply(del(Expect::Version(1))),
        Outcome::Conflict {
            current_version: Some(2),
            ..
        }
    ));
    assert!(matches!(
        s.apply(del(Expect::Version(2))),
        Outcome::PolicyDeleted { version: 2, .. }
    ));
    assert!(s.policies.is_empty());
}

#[test]
fn policy_changes_are_hash_chained_in_the_log() {
    let mut s = State::default();
    for i in 0..5 {
        s.apply(put("p", &format!("v{i}"), Expect::Any));
    }
    assert_eq!(s.log.entries.len(), 5);
    assert_eq!(s.log.verify_chain(), Ok(()));
    let mut tampered = s.log.clone();
    tampered.entries[2].detail = serde_json::json!({"op": "put", "version": 99});
    assert_eq!(tampered.verify_chain(), Err(2));
    let mut dropped = s.log.clone();
    dropped.entries.remove(1);
    assert_eq!(dropped.verify_chain(), Err(1));
}

#[test]
fn placement_epoch_never_reused_when_moving_hosts() {
    let mut s = State::default();
    s.apply(Command::PutEnclave {
        enclave: enclave("e", "h1", 3),
        expect: Expect::Any,
        at_ms: 0,
    });
    // A writer that moves the enclave but presents a stale epoch gets a fresh, larger one.
    let Outcome::Enclave(e) = s.apply(Command::PutEnclave {
        enclave: enclave("e", "h2", 3),
        expect: Expect::Any,
        at_ms: 0,
    }) else {
        panic!("written")
    };
    assert_eq!(e.placement.map(|p| p.epoch), Some(4));
}

#[test]
fn apply_is_deterministic() {
    let cmds = [
        put("a", "1", Expect::Any),
        put("b", "1", Expect::Absent),
        put("a", "2", Expect::Version(1)),
        Command::DeletePolicy {
            name: "b".into(),
            expect: Expect::Any,
            actor: "x".into(),
            at_ms: 9,
        },
        Command::PutEnclave {
            enclave: enclave("e", "h", 1),
            expect: Expect::Absent,
            at_ms: 3,
        },
    ];
    let run = || {
        let mut s = State::default();
        let outs: Vec<_> = cmds.iter().cloned().map(|c| s.apply(c)).collect();
        (s, outs)
    };
    assert_eq!(run(), run());
}
