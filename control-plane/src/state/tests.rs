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

/// An allocation capping `id`'s CPU at `cpu_millicores` (0: uncapped), running.
pub(super) fn allocation(id: &str, cpu_millicores: u64) -> Allocation {
    Allocation {
        enclave: id.into(),
        limits: Resources {
            cpu_millicores,
            ..Resources::default()
        },
        guaranteed: Resources::default(),
        weight: 1,
        suspended: false,
        msgs_rate_per_s: None,
    }
}

/// A decision for `id` at placement epoch 1, made from no particular ladder (`from: None`),
/// with no log entries.
pub(super) fn enforcement(
    id: &str,
    allocation: Allocation,
    state: EnclaveState,
    ladder: Ladder,
) -> Enforcement {
    Enforcement {
        enclave: id.into(),
        epoch: 1,
        allocation,
        state,
        ladder,
        from: None,
        borrowed_cpu_millicores: 0,
        lent_cpu_millicores: 0,
        log: vec![],
    }
}

pub(super) fn enclave(id: &str, host: &str, epoch: u64) -> Enclave {
    Enclave {
        id: id.into(),
        tenant: "acme".into(),
        labels: Default::default(),
        tee: TeeKind::Sim,
        expected_measurements: vec![],
        requested: Resources::default(),
        priority: 0,
        placement: Some(Placement {
            host: host.into(),
            epoch,
        }),
        state: EnclaveState::Pending,
        launch: None,
        scheduling: None,
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
fn policy_changes_are_leaves_of_the_merkle_tree() {
    let mut s = State::default();
    for i in 0..5 {
        s.apply(put("p", &format!("v{i}"), Expect::Any));
    }
    assert_eq!(s.log.entries.len(), 5);
    assert_eq!(s.log.size(), 5);
    assert_eq!(s.log.verify(), Ok(()));
    let root = s.log.tree().root();
    for (i, e) in s.log.entries.iter().enumerate() {
        let i = i as u64;
        assert_eq!(s.log.leaf_hash(i), Some(e.leaf_hash()));
        assert_eq!(s.log.index_of(&e.leaf_hash()), Some(i));
        for size in i + 1..=5 {
            let proof = s.log.tree().inclusion_proof(i, size).expect("proof");
            let r = s.log.tree().root_at(size).expect("root");
            tribune_attest::merkle::verify_inclusion(&e.leaf_hash(), i, size, &proof, &r)
                .expect("inclusion verifies");
        }
    }
    for old in 0..=5 {
        let proof = s.log.tree().consistency_proof(old, 5).expect("proof");
        let old_root = s.log.tree().root_at(old).expect("root");
        tribune_attest::merkle::verify_consistency(old, 5, &old_root, &root, &proof)
            .expect("consistency verifies");
    }
    // Changing any entry's content changes its leaf: the stored tree no longer matches.
    let mut tampered = s.log.clone();
    tampered.entries[2].detail = LogDetail::PolicyChange(PolicyChangeDetail::Put {
        version: 99,
        actor: "alice".into(),
        source_sha256: String::new(),
    });
    assert_eq!(tampered.verify(), Err(2));
}

#[test]
fn tree_survives_a_snapshot_round_trip_and_is_the_same_on_every_replica() {
    let cmds: Vec<Command> = (0..40)
        .map(|i| {
            if i % 3 == 0 {
                Command::AppendLog {
                    subject: format!("enclave-{i}"),
                    // Floats, nesting, nulls and escapes: the leaf must still be stable.
                    detail: LogDetail::Verdict(VerdictDetail {
                        trusted: i % 2 == 0,
                        host: "h\"1\u{e9}".into(),
                        tee: (i % 5 != 0).then_some(TeeKind::Tdx),
                        measurement: "ab".repeat(48),
                        debug: false,
                        ed25519_pub: "cd".repeat(32),
                        reasons: vec![format!("reason {i}"), "\u{1b}[31m".into()],
                        failures: i as u32,
                        verified_by: 2,
                        rekeyed: true,
                    }),
                    at_ms: i,
                }
            } else {
                put(&format!("p{}", i % 4), &format!("v{i}"), Expect::Any)
            }
        })
        .collect();
    let mut a = State::default();
    let mut b = State::default();
    for c in &cmds {
        a.apply(c.clone());
        b.apply(c.clone());
    }
    assert_eq!(a.log.tree().root(), b.log.tree().root());
    // Snapshots are the state's JSON; the tree is rebuilt from the entries on restore.
    let json = serde_json::to_vec(&a).expect("serialise");
    let restored: State = serde_json::from_slice(&json).expect("deserialise");
    assert_eq!(restored, a);
    assert_eq!(restored.log.tree().root(), a.log.tree().root());
    assert_eq!(restored.log.verify(), Ok(()));
    // And it keeps growing identically after the restore.
    let mut restored = restored;
    let more = put("p9", "after", Expect::Any);
    restored.apply(more.clone());
    a.apply(more);
    assert_eq!(restored.log.tree().root(), a.log.tree().root());
    // A clone (how snapshots are frozen) carries the same tree.
    assert_eq!(a.clone().log.tree().root(), a.log.tree().root());
}

#[test]
fn leaf_bytes_are_canonical_json_with_sorted_keys() {
    let mut log = AttestationLog::default();
    log.append(
        "e\"1",
        LogDetail::HostChange(HostChangeDetail::Put {
            actor: "é".into(),
            attestation_status: "a\nb".into(),
            capacity: Resources {
                cpu_millicores: 2500,
                memory_bytes: 1,
                ..Resources::default()
            },
            tee: TeeKind::Tdx,
        }),
        -3,
    );
    let e = &log.entries[0];
    assert_eq!(
        String::from_utf8(e.leaf_bytes()).expect("utf-8"),
        r#"{"at_ms":-3,"detail":{"actor":"é","attestation_status":"a\nb","capacity":{"cpu_millicores":2500,"egress_bits_per_sec":0,"gpu_percent":0,"ingress_bits_per_sec":0,"memory_bytes":1},"op":"put","tee":"tdx"},"index":0,"kind":"host_change","leaf_format":2,"subject":"e\"1"}"#
    );
    // Through the API's JSON and back: the same bytes.
    let back: LogEntry =
        serde_json::from_str(&serde_json::to_string(e).expect("json")).expect("parse");
    assert_eq!(back.leaf_bytes(), e.leaf_bytes());
}

#[test]
fn a_log_written_before_the_merkle_tree_still_loads() {
    let old = r#"{"entries":[{"index":0,"at_ms":1,"kind":"policy_change","subject":"p",
        "detail":{"op":"put","version":1,"actor":"a","source_sha256":"ab"},
        "prev_hash":"00","hash":"ab"}]}"#;
    let log: AttestationLog = serde_json::from_str(old).expect("loads");
    assert_eq!((log.size(), log.verify()), (1, Ok(())));
    let gap = r#"{"entries":[{"index":1,"at_ms":1,"kind":"action","subject":"p",
        "detail":{"action":"lend","lent_cpu_millicores":1,"was":0}}]}"#;
    let e = serde_json::from_str::<AttestationLog>(gap).expect_err("index gap");
    assert!(e.to_string().contains("position 0 has index 1"), "{e}");
}

#[test]
fn log_keys_register_once_and_are_logged() {
    let mut s = State::default();
    let reg = |pk: &str| Command::RegisterLogKey {
        node_id: 2,
        public_key: pk.into(),
        at_ms: 7,
    };
    let pk = "11".repeat(32);
    let Outcome::LogKey(k) = s.apply(reg(&pk)) else {
        panic!("registered")
    };
    assert_eq!(k.key_id, key_id(&[0x11; 32]));
    assert_eq!((k.node_id, k.log_index), (2, 0));
    assert_eq!(s.log.entries[0].kind(), LogEntryKind::LogKey);
    // Again (a restart): nothing new is written.
    let before = s.clone();
    assert_eq!(s.apply(reg(&pk.to_uppercase())), Outcome::LogKey(k));
    assert_eq!(s, before);
    // Garbage is refused and writes nothing.
    assert!(matches!(s.apply(reg("abcd")), Outcome::Invalid { .. }));
    assert_eq!(s, before);
}

#[test]
fn placement_epoch_never_reused_when_moving_hosts() {
    let mut s = State::default();
    s.apply(Command::PutEnclave {
        enclave: enclave("e", "h1", 3),
        expect: Expect::Any,
        actor: "tribune://operator/test".into(),
        at_ms: 0,
    });
    // A writer that moves the enclave but presents a stale epoch gets a fresh, larger one.
    let Outcome::Enclave(e) = s.apply(Command::PutEnclave {
        enclave: enclave("e", "h2", 3),
        expect: Expect::Any,
        actor: "tribune://operator/test".into(),
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
            actor: "tribune://operator/test".into(),
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

/// Costs of the in-memory log at scale (prints, asserts nothing about time):
/// `cargo test -p tribune-controller --release --lib -- --ignored log_costs --nocapture`.
#[test]
#[ignore = "measurement, not a check"]
fn log_costs() {
    use std::time::Instant;
    let n = 100_000u64;
    let mut s = State::default();
    let t = Instant::now();
    for i in 0..n {
        s.apply(Command::AppendLog {
            subject: format!("enclave-{}", i % 1000),
            detail: LogDetail::UsageDigest(UsageDigest {
                enclave: format!("enclave-{}", i % 1000),
                key: "cd".repeat(32),
                first_seq: i * 10 + 1,
                last_seq: i * 10 + 10,
                prev_head: "ef".repeat(32),
                head: "01".repeat(32),
                samples_root: "ab".repeat(32),
                checkpoint: "23".repeat(162),
                cpu_millicores_avg: 250,
                mem_bytes_max: 1 << 26,
                net_tx_bytes: i,
                net_rx_bytes: 0,
                divergence_bp_max: 50,
                cpu_wait_millicores_avg: None,
                replayed: false,
                unaccounted_from: None,
            }),
            at_ms: i as i64,
        });
    }
    let append = t.elapsed();
    let t = Instant::now();
    let root = s.log.tree().root();
    let root_t = t.elapsed();
    let t = Instant::now();
    let tree = s.log.tree().clone();
    let clone_tree = t.elapsed();
    let t = Instant::now();
    let _proof = tree.inclusion_proof(n / 2, n).expect("proof");
    let proof_t = t.elapsed();
    let t = Instant::now();
    let copy = s.clone();
    let clone_state = t.elapsed();
    let t = Instant::now();
    let json = serde_json::to_vec(&copy).expect("json");
    let ser = t.elapsed();
    let t = Instant::now();
    let back: State = serde_json::from_slice(&json).expect("parse");
    let de = t.elapsed();
    assert_eq!(back.log.tree().root(), root);
    println!(
        "{n} entries: append {append:?} total; root {root_t:?}; tree clone {clone_tree:?}; \
         inclusion proof {proof_t:?}; state clone {clone_state:?}; snapshot JSON {} MiB, \
         serialise {ser:?}, restore (tree rebuilt) {de:?}",
        json.len() / (1 << 20)
    );
}

#[test]
fn kind_names_in_leaves_are_their_json_names() {
    // The leaf spells `kind` with `as_str`; independent verifiers read the JSON name.
    for k in LogEntryKind::ALL {
        assert_eq!(serde_json::to_value(k).expect("json"), k.as_str());
        assert_eq!(LogEntryKind::parse(k.as_str()), Some(k));
    }
}

fn delete_enclave(id: &str, expect: Expect) -> Command {
    Command::DeleteEnclave {
        id: id.into(),
        expect,
        actor: "tribune://operator/olive".into(),
        at_ms: 3000,
    }
}

fn put_enclave(s: &mut State, e: Enclave) -> Enclave {
    match s.apply(Command::PutEnclave {
        enclave: e,
        expect: Expect::Any,
        actor: "op".into(),
        at_ms: 2000,
    }) {
        Outcome::Enclave(e) => e,
        o => panic!("{o:?}"),
    }
}

/// Deletion is refused for every placed state but `stopped`, allowed for every state of an
/// unplaced enclave; a refusal or a failed precondition writes nothing.
#[test]
fn an_enclave_is_deleted_only_when_no_agent_may_be_running_it() {
    use EnclaveState::*;
    for state in [
        Pending, Running, Throttled, Suspended, Migrating, Stopped, Untrusted,
    ] {
        for placed in [true, false] {
            let mut s = State::default();
            let mut e = enclave("e", "h1", 1);
            e.state = state;
            if !placed {
                e.placement = None;
            }
            let stored = put_enclave(&mut s, e);
            s.allocations.insert(
                "e".into(),
                Allocation {
                    enclave: "e".into(),
                    limits: Resources::default(),
                    guaranteed: Resources::default(),
                    weight: 1,
                    suspended: false,
                    msgs_rate_per_s: None,
                },
            );
            let before = s.clone();
            let out = s.apply(delete_enclave("e", Expect::Version(stored.version)));
            if placed && state != Stopped {
                let Outcome::InUse { reason } = out else {
                    panic!("{state:?} placed: {out:?}")
                };
                assert!(reason.contains("tribune enclave stop e"), "{reason}");
                assert_eq!(s, before, "a refusal writes nothing");
            } else {
                assert_eq!(
                    out,
                    Outcome::EnclaveDeleted {
                        id: "e".into(),
                        version: stored.version
                    },
                    "{state:?} placed={placed}"
                );
                assert!(!s.enclaves.contains_key("e"));
                assert!(!s.allocations.contains_key("e"));
                assert_eq!(
                    s.plan_versions, before.plan_versions,
                    "removing an enclave no plan names changes no plan"
                );
                let last = s.log.entries.last().expect("logged");
                assert_eq!(last.subject, "e");
                let LogDetail::EnclaveChange(d) = &last.detail else {
                    panic!("{:?}", last.detail)
                };
                assert_eq!(d.op, EnclaveOp::Delete);
                assert_eq!(d.actor, "tribune://operator/olive");
                assert_eq!(d.version, stored.version);
            }
        }
    }
}

#[test]
fn deleting_an_enclave_checks_its_version_and_existence() {
    let mut s = State::default();
    let mut e = enclave("e", "h1", 1);
    e.placement = None;
    put_enclave(&mut s, e.clone());
    let v2 = put_enclave(&mut s, e).version;
    assert_eq!(v2, 2);
    let before = s.clone();
    assert_eq!(
        s.apply(delete_enclave("e", Expect::Version(1))),
        Outcome::Conflict {
            what: "enclave \"e\"".into(),
            current_version: Some(2)
        }
    );
    assert_eq!(
        s.apply(delete_enclave("e", Expect::Absent)),
        Outcome::Conflict {
            what: "enclave \"e\"".into(),
            current_version: Some(2)
        }
    );
    assert_eq!(s, before);
    assert_eq!(
        s.apply(delete_enclave("nope", Expect::Any)),
        Outcome::NotFound {
            what: "enclave \"nope\"".into()
        }
    );
    assert!(matches!(
        s.apply(delete_enclave("e", Expect::Version(2))),
        Outcome::EnclaveDeleted { version: 2, .. }
    ));
    // Gone: a second delete finds nothing, and the id may be created again from version 1.
    assert!(matches!(
        s.apply(delete_enclave("e", Expect::Any)),
        Outcome::NotFound { .. }
    ));
    let mut again = enclave("e", "h1", 1);
    again.placement = None;
    assert_eq!(put_enclave(&mut s, again).version, 1);
}
