//! Operator suspension, tokens, quotas and the audit trail of API changes.

use super::*;

fn enclave(id: &str, tenant: &str, state: EnclaveState) -> Enclave {
    Enclave {
        tenant: tenant.into(),
        state,
        ..super::tests::enclave(id, "h1", 1)
    }
}

fn put(s: &mut State, e: Enclave, actor: &str) -> Outcome {
    s.apply(Command::PutEnclave {
        enclave: e,
        expect: Expect::Any,
        actor: actor.into(),
        at_ms: 5,
    })
}

/// What the loop would propose for a compliant enclave: run, uncapped.
fn decide_running(s: &mut State, id: &str) -> Outcome {
    s.apply(Command::Enforce {
        host: "h1".into(),
        changes: vec![super::tests::enforcement(
            id,
            super::tests::allocation(id, 0),
            EnclaveState::Running,
            Ladder::default(),
        )],
        at_ms: 10,
    })
}

#[test]
fn an_operators_suspension_outlasts_every_decision_until_an_operator_resumes() {
    let mut s = State::default();
    put(&mut s, enclave("e", "acme", EnclaveState::Running), "op");
    decide_running(&mut s, "e");
    let v0 = s.plan_versions["h1"];
    put(
        &mut s,
        enclave("e", "acme", EnclaveState::Suspended),
        "tribune://operator/alice",
    );
    let hold = s.status["e"].operator_hold.clone().expect("held");
    assert_eq!(hold.by, "tribune://operator/alice");
    assert!(s.allocations["e"].suspended);
    assert!(s.plan_versions["h1"] > v0, "the host's plan changed");

    // The next decision rounds say "running": the enclave stays suspended.
    for _ in 0..3 {
        decide_running(&mut s, "e");
        assert_eq!(s.enclaves["e"].state, EnclaveState::Suspended);
        assert!(s.allocations["e"].suspended);
    }
    // A trusted verdict after an untrusted one does not lift it either.
    if let Some(e) = s.enclaves.get_mut("e") {
        e.state = EnclaveState::Untrusted;
    }
    let verdict = VerdictCmd {
        enclave: "e".into(),
        attestation: Attestation {
            trusted: true,
            host: "h1".into(),
            tee: Some(TeeKind::Sim),
            measurement: String::new(),
            debug: false,
            ed25519_pub: "00".into(),
            x25519_pub: "00".into(),
            reasons: vec![],
            verified_at_ms: 1,
            failures: 0,
            verified_by: 1,
            rekeyed: false,
        },
    };
    s.apply(Command::Verdicts {
        host: "h1".into(),
        verdicts: vec![verdict],
        at_ms: 11,
    });
    assert_eq!(s.enclaves["e"].state, EnclaveState::Suspended);
    // Another write that does not resume keeps it suspended.
    put(&mut s, enclave("e", "acme", EnclaveState::Pending), "op2");
    assert_eq!(s.enclaves["e"].state, EnclaveState::Suspended);
    assert!(s.status["e"].operator_hold.is_some());

    // An operator resumes: the hold is gone, the next decision applies.
    put(
        &mut s,
        enclave("e", "acme", EnclaveState::Running),
        "tribune://operator/bob",
    );
    assert!(s.status["e"].operator_hold.is_none());
    decide_running(&mut s, "e");
    assert_eq!(s.enclaves["e"].state, EnclaveState::Running);
    assert!(!s.allocations["e"].suspended);

    let ops: Vec<(EnclaveOp, &str)> = s
        .log
        .entries
        .iter()
        .filter_map(|e| match &e.detail {
            LogDetail::EnclaveChange(c) => Some((c.op, c.actor.as_str())),
            _ => None,
        })
        .collect();
    assert!(ops.contains(&(EnclaveOp::Suspend, "tribune://operator/alice")));
    assert!(ops.contains(&(EnclaveOp::Resume, "tribune://operator/bob")));
}

#[test]
fn tokens_are_created_once_revoked_once_and_logged_without_secrets() {
    let mut s = State::default();
    let token = Token {
        id: "00112233aabbccdd".into(),
        name: "ci".into(),
        role: tribune_tls::UserRole::Operator,
        tenant: None,
        secret_sha256: "ab".repeat(32),
        created_by: "tribune://admin/root".into(),
        created_at_ms: 1,
        expires_at_ms: 100,
        revoked: None,
    };
    assert!(matches!(
        s.apply(Command::CreateToken {
            token: token.clone(),
            at_ms: 1
        }),
        Outcome::Token(_)
    ));
    let before = s.clone();
    assert!(matches!(
        s.apply(Command::CreateToken {
            token: token.clone(),
            at_ms: 2
        }),
        Outcome::Conflict { .. }
    ));
    assert_eq!(s, before, "a duplicate id writes nothing");
    let revoke = Command::RevokeToken {
        id: token.id.clone(),
        actor: "tribune://admin/root".into(),
        at_ms: 3,
    };
    let Outcome::Token(t) = s.apply(revoke.clone()) else {
        panic!("revoked")
    };
    assert_eq!(t.revoked.map(|r| r.at_ms), Some(3));
    let n = s.log.entries.len();
    s.apply(revoke);
    assert_eq!(s.log.entries.len(), n, "revoking twice logs once");
    assert!(matches!(
        s.apply(Command::RevokeToken {
            id: "ffffffffffffffff".into(),
            actor: "x".into(),
            at_ms: 4
        }),
        Outcome::NotFound { .. }
    ));
    for e in &s.log.entries {
        assert_eq!(e.kind(), LogEntryKind::TokenChange);
        assert!(
            !e.detail
                .to_value()
                .to_string()
                .contains(&token.secret_sha256)
        );
    }
}

#[test]
fn quotas_refuse_without_writing() {
    let mut s = State::default();
    for i in 0..ENCLAVES_PER_TENANT_MAX {
        s.enclaves.insert(
            format!("e{i}"),
            enclave(&format!("e{i}"), "acme", EnclaveState::Pending),
        );
    }
    let before = s.clone();
    assert!(matches!(
        put(
            &mut s,
            enclave("one-more", "acme", EnclaveState::Pending),
            "op"
        ),
        Outcome::Quota { .. }
    ));
    assert_eq!(s, before);
    // Rewriting an existing enclave, or another tenant's, is not held back.
    assert!(matches!(
        put(&mut s, enclave("e1", "acme", EnclaveState::Pending), "op"),
        Outcome::Enclave(_)
    ));
    assert!(matches!(
        put(&mut s, enclave("g", "globex", EnclaveState::Pending), "op"),
        Outcome::Enclave(_)
    ));

    let mut s = State::default();
    for i in 0..POLICIES_MAX {
        s.policies.insert(
            format!("p{i}"),
            Policy {
                name: format!("p{i}"),
                version: 1,
                source: String::new(),
                created_by: String::new(),
                updated_by: String::new(),
                created_at_ms: 0,
                updated_at_ms: 0,
            },
        );
    }
    let before = s.clone();
    let put_policy = |name: &str| Command::PutPolicy {
        name: name.into(),
        source: "x".into(),
        expect: Expect::Any,
        actor: "op".into(),
        at_ms: 1,
    };
    assert!(matches!(s.apply(put_policy("new")), Outcome::Quota { .. }));
    assert_eq!(s, before);
    assert!(matches!(s.apply(put_policy("p3")), Outcome::Policy(_)));
}

#[test]
fn host_writes_through_the_api_are_logged_with_their_actor_and_agent_records_are_not() {
    let mut s = State::default();
    let host: Host = serde_json::from_value(serde_json::json!({
        "id": "h1", "address": "a:1", "tee": "sim"
    }))
    .expect("host");
    s.apply(Command::PutHost {
        host: host.clone(),
        actor: String::new(),
        at_ms: 1,
    });
    assert!(s.log.entries.is_empty());
    s.apply(Command::PutHost {
        host,
        actor: "tribune://admin/root".into(),
        at_ms: 2,
    });
    assert_eq!(s.log.entries.len(), 1);
    assert!(matches!(
        &s.log.entries[0].detail,
        LogDetail::HostChange(HostChangeDetail::Put { actor, tee: TeeKind::Sim, .. })
            if actor == "tribune://admin/root"
    ));
}

#[test]
fn a_policy_change_moves_the_plan_version_of_every_host_with_enclaves() {
    let mut s = State::default();
    put(&mut s, enclave("e", "acme", EnclaveState::Pending), "op");
    let mut other = enclave("f", "acme", EnclaveState::Pending);
    other.placement = None;
    put(&mut s, other, "op");
    let v0 = s.plan_versions["h1"];
    let put_policy = Command::PutPolicy {
        name: "p".into(),
        source: "policy \"p\" {}".into(),
        expect: Expect::Any,
        actor: "op".into(),
        at_ms: 1,
    };
    s.apply(put_policy);
    let v1 = s.plan_versions["h1"];
    assert!(v1 > v0, "a new policy may change h1's static limits");
    s.apply(Command::DeletePolicy {
        name: "p".into(),
        expect: Expect::Any,
        actor: "op".into(),
        at_ms: 2,
    });
    assert!(s.plan_versions["h1"] > v1, "so may removing it");
    assert_eq!(
        s.plan_versions.len(),
        1,
        "only hosts with enclaves have plans"
    );
}

/// A stopped enclave leaves its host's plan; no decision or verdict puts it back (that would
/// relaunch it), an operator's suspension does not keep it from stopping, and once stopped it
/// may be deleted.
#[test]
fn a_stop_is_sticky_goes_through_a_suspension_and_allows_deletion() {
    let mut s = State::default();
    put(&mut s, enclave("e", "acme", EnclaveState::Running), "op");
    put(
        &mut s,
        enclave("e", "acme", EnclaveState::Suspended),
        "tribune://operator/alice",
    );
    assert!(s.status["e"].operator_hold.is_some());
    let Outcome::Enclave(stopped) = put(
        &mut s,
        enclave("e", "acme", EnclaveState::Stopped),
        "tribune://operator/alice",
    ) else {
        panic!("stored")
    };
    assert_eq!(stopped.state, EnclaveState::Stopped);
    decide_running(&mut s, "e");
    assert_eq!(s.enclaves["e"].state, EnclaveState::Stopped);
    for trusted in [false, true] {
        s.apply(Command::Verdicts {
            host: "h1".into(),
            verdicts: vec![VerdictCmd {
                enclave: "e".into(),
                attestation: Attestation {
                    trusted,
                    host: "h1".into(),
                    tee: Some(TeeKind::Sim),
                    measurement: String::new(),
                    debug: false,
                    ed25519_pub: "00".into(),
                    x25519_pub: "00".into(),
                    reasons: vec![],
                    verified_at_ms: 1,
                    failures: 0,
                    verified_by: 1,
                    rekeyed: false,
                },
            }],
            at_ms: 12,
        });
        assert_eq!(s.enclaves["e"].state, EnclaveState::Stopped, "{trusted}");
    }
    let version = s.enclaves["e"].version;
    assert!(matches!(
        s.apply(Command::DeleteEnclave {
            id: "e".into(),
            expect: Expect::Version(version),
            actor: "tribune://operator/alice".into(),
            at_ms: 13,
        }),
        Outcome::EnclaveDeleted { .. }
    ));
    assert!(!s.status.contains_key("e"));
}

/// A spec-only write (the Terraform provider's update) keeps what is Tribune's: whatever state
/// the body says and whatever the loop decided since the writer read it, it never suspends,
/// resumes or stops, never resets the ladder, and keeps the epoch on the same host.
#[test]
fn a_spec_only_write_keeps_the_stored_state_and_epoch() {
    use EnclaveState::*;
    let spec_put = |s: &mut State, e: Enclave| {
        s.apply(Command::PutEnclaveSpec {
            enclave: e,
            expect: Expect::Any,
            actor: "tribune://operator/terraform".into(),
            at_ms: 20,
        })
    };
    for stored in [Pending, Running, Throttled, Suspended, Stopped, Untrusted] {
        for held in [false, true] {
            if held && stored != Suspended {
                continue;
            }
            for body in [Pending, Running, Suspended, Stopped] {
                let mut s = State::default();
                let mut e = enclave("e", "acme", Running);
                e.placement = Some(Placement {
                    host: "h1".into(),
                    epoch: 4,
                });
                put(&mut s, e, "op");
                if held {
                    put(
                        &mut s,
                        enclave("e", "acme", Suspended),
                        "tribune://operator/alice",
                    );
                }
                if let Some(x) = s.enclaves.get_mut("e") {
                    x.state = stored;
                }
                s.allocations.insert(
                    "e".into(),
                    Allocation {
                        enclave: "e".into(),
                        limits: Resources {
                            cpu_millicores: 100,
                            ..Resources::default()
                        },
                        guaranteed: Resources::default(),
                        weight: 1,
                        suspended: held,
                        msgs_rate_per_s: None,
                    },
                );
                let status_before = s.status.get("e").cloned();
                let epoch_before = s.enclaves["e"].placement.as_ref().map(|p| p.epoch);
                let alloc_before = s.allocations["e"].clone();
                let mut new = enclave("e", "acme", body);
                new.priority = 7;
                new.placement = Some(Placement {
                    host: "h1".into(),
                    epoch: 1,
                });
                let Outcome::Enclave(out) = spec_put(&mut s, new) else {
                    panic!("stored")
                };
                let case = format!("stored {stored:?} held {held} body {body:?}");
                assert_eq!(out.priority, 7, "{case}");
                assert_eq!(out.state, stored, "{case}");
                assert_eq!(
                    out.placement.as_ref().map(|p| p.epoch),
                    epoch_before,
                    "{case}"
                );
                assert_eq!(s.status.get("e").cloned(), status_before, "{case}");
                assert_eq!(s.allocations["e"], alloc_before, "{case}");
                let LogDetail::EnclaveChange(d) = &s.log.entries.last().expect("logged").detail
                else {
                    panic!("{case}")
                };
                assert_eq!(d.op, EnclaveOp::Put, "{case}");
            }
        }
    }
    // A move to another host still moves the epoch forward; a new enclave is stored as sent.
    let mut s = State::default();
    put(&mut s, enclave("e", "acme", Running), "op");
    let mut moved = enclave("e", "acme", Pending);
    moved.placement = Some(Placement {
        host: "h2".into(),
        epoch: 1,
    });
    let Outcome::Enclave(out) = spec_put(&mut s, moved) else {
        panic!("stored")
    };
    assert_eq!(
        (out.state, out.placement.map(|p| p.epoch)),
        (Running, Some(2))
    );
    let Outcome::Enclave(fresh) = spec_put(&mut s, enclave("f", "acme", Pending)) else {
        panic!("created")
    };
    assert_eq!((fresh.state, fresh.version), (Pending, 1));
}

/// A plain write that keeps the host never lowers the placement epoch (a stale writer's
/// epoch is raised to the stored one); one that raises it is kept.
#[test]
fn a_write_on_the_same_host_never_lowers_the_epoch() {
    let mut s = State::default();
    let mut e = enclave("e", "acme", EnclaveState::Running);
    e.placement = Some(Placement {
        host: "h1".into(),
        epoch: 5,
    });
    put(&mut s, e.clone(), "op");
    for (sent, kept) in [(1, 5), (4, 5), (5, 5), (7, 7)] {
        let mut w = e.clone();
        w.placement = Some(Placement {
            host: "h1".into(),
            epoch: sent,
        });
        put(&mut s, w, "op");
        assert_eq!(
            s.enclaves["e"].placement.as_ref().map(|p| p.epoch),
            Some(kept),
            "sent epoch {sent}"
        );
        e.placement = s.enclaves["e"].placement.clone();
    }
}

/// The total-source quota counts every stored policy exactly — through puts that grow, shrink
/// or replace a policy, deletes, and a state reloaded from its serialized form (whose running
/// total is recomputed) — and answers the same on every replica.
#[test]
fn the_policy_source_quota_counts_puts_replacements_and_deletes() {
    let half = POLICY_SOURCE_TOTAL_BYTES_MAX / 2;
    let put = |s: &mut State, name: &str, bytes: usize| {
        s.apply(Command::PutPolicy {
            name: name.into(),
            source: "x".repeat(bytes),
            expect: Expect::Any,
            actor: "op".into(),
            at_ms: 1,
        })
    };
    let quota = |o: &Outcome| matches!(o, Outcome::Quota { .. });
    let mut s = State::default();
    assert!(!quota(&put(&mut s, "a", half)));
    assert!(
        !quota(&put(&mut s, "b", half)),
        "exactly at the limit is allowed"
    );
    assert!(quota(&put(&mut s, "c", 1)), "one byte over");
    assert!(
        !quota(&put(&mut s, "a", half)),
        "a replacement counts only once"
    );
    assert!(quota(&put(&mut s, "a", half + 1)));
    assert!(!quota(&put(&mut s, "a", 10)), "shrinking frees room");
    assert!(!quota(&put(&mut s, "c", half - 10)));
    assert!(quota(&put(&mut s, "d", 1)));

    // Reloaded (as from a snapshot): the total is recomputed and agrees.
    let mut reloaded: State =
        serde_json::from_slice(&serde_json::to_vec(&s).expect("json")).expect("state");
    assert_eq!(reloaded, s);
    assert!(quota(&put(&mut reloaded, "d", 1)));
    assert!(matches!(
        reloaded.apply(Command::DeletePolicy {
            name: "c".into(),
            expect: Expect::Any,
            actor: "op".into(),
            at_ms: 2,
        }),
        Outcome::PolicyDeleted { .. }
    ));
    assert!(
        !quota(&put(&mut reloaded, "d", half - 10)),
        "a delete frees its bytes"
    );
    assert!(quota(&put(&mut reloaded, "e", 1)));
}
