//! Live migration in the state: every step's re-check at apply, and the rules that keep an
//! enclave on exactly one host.

use super::super::tests::enclave;
use super::super::*;

const NOW: i64 = 1_000_000;

fn host(id: &str, cpu_millicores: u64) -> Host {
    Host {
        id: id.into(),
        address: String::new(),
        capacity: Resources {
            cpu_millicores,
            memory_bytes: 8 << 30,
            ..Resources::default()
        },
        tee: TeeKind::Sim,
        attestation_status: "unverified".into(),
        last_heartbeat_ms: 0,
        agent_cert_fingerprint: String::new(),
        enforcement: "enforcing".into(),
        tee_generation: 0,
        // As its agent's `Hello` says (the runtime the enclaves here need).
        labels: [(tribune_proto::RUNTIME_LABEL.to_string(), "qemu".to_string())].into(),
        schedulable: Schedulable::Ready,
        measured_load: Default::default(),
    }
}

fn vm(id: &str, on: &str, cpu: u64) -> Enclave {
    let mut e = enclave(id, on, 1);
    e.requested.cpu_millicores = cpu;
    e.launch = Some(serde_json::json!({"qemu": {"memory_mib": 64}}));
    e.state = EnclaveState::Running;
    e
}

/// h1 (the source) and h2, both recorded (attested) at `NOW - 1000`, and the QEMU enclave
/// `vm` on h1 under epoch 1.
fn cluster() -> State {
    let mut s = State::default();
    for h in ["h1", "h2"] {
        s.apply(Command::PutHost {
            host: host(h, 4000),
            actor: String::new(),
            at_ms: NOW - 1000,
        });
    }
    let out = s.apply(Command::PutEnclave {
        enclave: vm("vm", "h1", 1000),
        expect: Expect::Absent,
        actor: "op".into(),
        at_ms: NOW - 900,
    });
    assert!(matches!(out, Outcome::Enclave(_)), "{out:?}");
    s
}

fn request(id: &str, to: &str) -> LiveRequest {
    LiveRequest {
        id: id.into(),
        enclave: "vm".into(),
        to: to.into(),
        epoch: 1,
        listen: "127.0.0.1:4444".into(),
        cause: LiveCause::Request,
        force: false,
        budget: 2,
        cooldown_ms: 60_000,
        attest_max_age_ms: 600_000,
        actor: "op".into(),
        nonce: hex::encode([9; 32]),
        verdict_max_age_ms: 0,
    }
}

fn start(s: &mut State, r: LiveRequest) -> Outcome {
    s.apply(Command::MigrateStart {
        request: r,
        at_ms: NOW,
    })
}

fn ready(s: &mut State, id: &str) -> Outcome {
    s.apply(Command::MigrateReady {
        enclave: "vm".into(),
        id: id.into(),
        measurement: "5eed".into(),
        at_ms: NOW + 10,
    })
}

fn commit(s: &mut State, id: &str) -> Outcome {
    s.apply(Command::MigrateCommit {
        enclave: "vm".into(),
        id: id.into(),
        progress: LiveProgress {
            status: "completed".into(),
            transferred_bytes: 1 << 20,
            downtime_ms: 4,
            total_time_ms: 500,
            ..LiveProgress::default()
        },
        at_ms: NOW + 20,
    })
}

fn abort(s: &mut State, id: &str, why: &str) -> Outcome {
    s.apply(Command::MigrateAbort {
        enclave: "vm".into(),
        id: id.into(),
        reason: why.into(),
        at_ms: NOW + 30,
    })
}

fn placement(s: &State) -> (String, u64) {
    let p = s.enclaves["vm"].placement.clone().expect("placed");
    (p.host, p.epoch)
}

fn ops(s: &State) -> Vec<String> {
    s.log
        .entries
        .iter()
        .filter_map(|e| match &e.detail {
            LogDetail::Migration(m) => Some(
                serde_json::to_value(m).expect("json")["op"]
                    .as_str()
                    .unwrap_or_default()
                    .to_string(),
            ),
            _ => None,
        })
        .collect()
}

fn refusal(o: &Outcome) -> String {
    match o {
        Outcome::NotFound { what } => format!("not found: {what}"),
        Outcome::Invalid { reason } | Outcome::NoRoom { reason } => reason.clone(),
        Outcome::Conflict { what, .. } => what.clone(),
        o => panic!("not a refusal: {o:?}"),
    }
}

#[test]
fn a_committed_migration_places_the_enclave_on_the_target_under_the_next_epoch() {
    let mut s = cluster();
    let (v1, v2) = (
        s.plan_versions.get("h1").copied(),
        s.plan_versions.get("h2").copied(),
    );
    let Outcome::Migration(m) = start(&mut s, request("m1", "h2")) else {
        panic!("started")
    };
    assert_eq!(m.phase, LivePhase::Preparing);
    assert_eq!(
        m.nonce,
        hex::encode([9; 32]),
        "the target is told this nonce"
    );
    assert_eq!(s.enclaves["vm"].state, EnclaveState::Migrating);
    // Still on h1 under epoch 1; neither plan moved (the source keeps running it).
    assert_eq!(placement(&s), ("h1".into(), 1));
    assert_eq!(s.plan_versions.get("h1").copied(), v1);
    // The guarantee is held on the target meanwhile.
    let view = cluster_view(&s);
    assert_eq!(
        view.host("h2").map(|h| h.reserved.cpu_millicores),
        Some(1000)
    );
    assert!(
        matches!(ready(&mut s, "m1"), Outcome::Migration(m) if m.phase == LivePhase::Transferring && m.target_measurement == "5eed")
    );
    // The log says what the target's fresh evidence was verified to.
    let logged = s.log.entries.iter().any(|e| {
        matches!(&e.detail, LogDetail::Migration(MigrationDetail::LiveReady { measurement, .. }) if measurement == "5eed")
    });
    assert!(
        logged,
        "the ready entry names the target's verified measurement"
    );
    let Outcome::Migration(m) = commit(&mut s, "m1") else {
        panic!("committed")
    };
    assert_eq!(m.phase, LivePhase::Committed);
    assert_eq!(m.progress.downtime_ms, 4);
    assert_eq!(placement(&s), ("h2".into(), 2));
    assert_eq!(s.enclaves["vm"].state, EnclaveState::Pending);
    // Both plans move: the target's names it, the source's drops it.
    assert!(s.plan_versions.get("h1").copied() > v1);
    assert!(s.plan_versions.get("h2").copied() > v2);
    assert!(s.live.is_empty());
    assert_eq!(s.live_done.len(), 1);
    assert_eq!(ops(&s), ["live_start", "live_ready", "live_committed"]);
    // Ended: an abort now changes nothing.
    assert!(matches!(
        abort(&mut s, "m1", "late"),
        Outcome::Conflict { .. }
    ));
    assert_eq!(placement(&s), ("h2".into(), 2));
}

#[test]
fn an_abort_rolls_back_and_excludes_a_later_commit() {
    for after_ready in [false, true] {
        let mut s = cluster();
        assert!(matches!(
            start(&mut s, request("m1", "h2")),
            Outcome::Migration(_)
        ));
        if after_ready {
            ready(&mut s, "m1");
        }
        let Outcome::Migration(m) = abort(&mut s, "m1", "target agent gone") else {
            panic!("rolled back")
        };
        assert_eq!(
            (m.phase, m.reason.as_str()),
            (LivePhase::RolledBack, "target agent gone")
        );
        assert_eq!(placement(&s), ("h1".into(), 1));
        assert_eq!(s.enclaves["vm"].state, EnclaveState::Running);
        assert!(matches!(commit(&mut s, "m1"), Outcome::Conflict { .. }));
        assert_eq!(placement(&s), ("h1".into(), 1));
        assert_eq!(ops(&s).last().map(String::as_str), Some("live_rolled_back"));
        // The target holds nothing any more.
        let view = cluster_view(&s);
        assert_eq!(view.host("h2").map(|h| h.reserved.cpu_millicores), Some(0));
    }
}

#[test]
fn a_commit_needs_the_target_ready_and_the_same_placement() {
    let mut s = cluster();
    start(&mut s, request("m1", "h2"));
    assert!(matches!(commit(&mut s, "m1"), Outcome::Conflict { .. }));
    assert!(matches!(ready(&mut s, "other"), Outcome::Conflict { .. }));
    ready(&mut s, "m1");
    // An operator placed it elsewhere meanwhile: the commit rolls back instead.
    let mut moved = s.enclaves["vm"].clone();
    moved.placement = Some(Placement {
        host: "h1".into(),
        epoch: 5,
    });
    s.apply(Command::PutEnclave {
        enclave: moved,
        expect: Expect::Any,
        actor: "op".into(),
        at_ms: NOW + 15,
    });
    let Outcome::Migration(m) = commit(&mut s, "m1") else {
        panic!("ended")
    };
    assert_eq!(m.phase, LivePhase::RolledBack);
    assert_eq!(placement(&s), ("h1".into(), 5));
}

#[test]
fn requests_are_refused_with_the_reason() {
    // (what to change, the request, a word the reason names)
    type Case = (&'static str, fn(&mut State, &mut LiveRequest), &'static str);
    let cases: Vec<Case> = vec![
        ("unknown host", |_, r| r.to = "h9".into(), "h9"),
        ("same host", |_, r| r.to = "h1".into(), "already runs"),
        (
            "untrusted",
            |s, _| {
                if let Some(h) = s.hosts.get_mut("h2") {
                    h.attestation_status = "untrusted".into();
                }
            },
            "failed attestation",
        ),
        ("stale", |_, r| r.attest_max_age_ms = 500, "last attested"),
        (
            "never attested",
            |s, _| {
                if let Some(h) = s.hosts.get_mut("h2") {
                    h.last_heartbeat_ms = 0;
                }
            },
            "never been attested",
        ),
        (
            "no room",
            |s, _| {
                if let Some(h) = s.hosts.get_mut("h2") {
                    h.capacity.cpu_millicores = 500;
                }
            },
            "h2",
        ),
        (
            "cordoned",
            |s, _| {
                if let Some(h) = s.hosts.get_mut("h2") {
                    h.schedulable = Schedulable::Cordoned;
                }
            },
            "h2",
        ),
        ("stale epoch", |_, r| r.epoch = 0, "epoch"),
        (
            "a process enclave",
            |s, _| {
                if let Some(e) = s.enclaves.get_mut("vm") {
                    e.launch = Some(serde_json::json!({"process": {"cmd": ["/bin/true"]}}));
                }
            },
            "not a QEMU enclave",
        ),
        (
            "stopped",
            |s, _| {
                if let Some(e) = s.enclaves.get_mut("vm") {
                    e.state = EnclaveState::Stopped;
                }
            },
            "stopped",
        ),
        ("no budget", |_, r| r.budget = 0, "budget"),
        (
            "suspended by policy",
            |s, _| {
                s.status.entry("vm".into()).or_default().ladder.step = Step::Suspend;
            },
            "suspended by policy",
        ),
    ];
    for (what, change, word) in cases {
        let mut s = cluster();
        let mut r = request("m1", "h2");
        change(&mut s, &mut r);
        let before = s.clone();
        let out = start(&mut s, r);
        let why = refusal(&out);
        assert!(why.contains(word), "{what}: {why:?} should name {word:?}");
        assert_eq!(s, before, "{what}: a refused request writes nothing");
    }
}

#[test]
fn force_overrides_a_policy_suspension_and_the_cool_down_and_is_logged() {
    let mut s = cluster();
    s.status.entry("vm".into()).or_default().ladder.step = Step::Suspend;
    let r = LiveRequest {
        force: true,
        ..request("m1", "h2")
    };
    assert!(matches!(start(&mut s, r), Outcome::Migration(_)));
    let forced = s.log.entries.iter().any(|e| {
        matches!(
            &e.detail,
            LogDetail::Migration(MigrationDetail::LiveStart { forced: true, actor, .. }) if actor == "op"
        )
    });
    assert!(forced, "the override is in the log");
    abort(&mut s, "m1", "test");
    // Within the cool-down: refused, unless forced; the policy's own migration is not
    // refused for the suspension.
    s.status.entry("vm".into()).or_default().ladder.step = Step::None;
    let again = start(&mut s, request("m2", "h2"));
    assert!(refusal(&again).contains("cool-down"), "{again:?}");
    let policy = LiveRequest {
        cause: LiveCause::Policy,
        cooldown_ms: 0,
        ..request("m3", "h2")
    };
    s.status.entry("vm".into()).or_default().ladder.step = Step::Migrate;
    assert!(matches!(start(&mut s, policy), Outcome::Migration(_)));
    ready(&mut s, "m3");
    commit(&mut s, "m3");
    // The ladder's `migrate` step is carried out: the ladder starts again on the target.
    assert_eq!(s.status["vm"].ladder.step, Step::None);
}

#[test]
fn one_migration_per_enclave_and_the_budget_counts_the_cluster() {
    let mut s = cluster();
    assert!(matches!(
        start(&mut s, request("m1", "h2")),
        Outcome::Migration(_)
    ));
    let twice = start(&mut s, request("m2", "h2"));
    assert!(refusal(&twice).contains("already migrating"), "{twice:?}");
    let out = s.apply(Command::PutEnclave {
        enclave: vm("vm2", "h1", 100),
        expect: Expect::Absent,
        actor: "op".into(),
        at_ms: NOW,
    });
    assert!(matches!(out, Outcome::Enclave(_)));
    let second = LiveRequest {
        enclave: "vm2".into(),
        budget: 1,
        ..request("m3", "h2")
    };
    assert!(refusal(&start(&mut s, second)).contains("budget"));
}

#[test]
fn the_freshest_sign_of_a_host_is_its_stream_or_a_trusted_verdict_it_relayed() {
    let mut s = cluster();
    assert_eq!(host_attested_at(&s, "h2"), Some(NOW - 1000));
    assert_eq!(host_attested_at(&s, "h9"), None);
    let st = s.status.entry("x".into()).or_default();
    st.attestation = Some(Attestation {
        trusted: true,
        host: "h2".into(),
        verified_at_ms: NOW - 10,
        ..Attestation::default()
    });
    assert_eq!(host_attested_at(&s, "h2"), Some(NOW - 10));
    if let Some(a) = s.status.get_mut("x").and_then(|s| s.attestation.as_mut()) {
        a.trusted = false;
        a.verified_at_ms = NOW;
    }
    assert_eq!(host_attested_at(&s, "h2"), Some(NOW - 1000));
}

#[test]
fn the_history_is_bounded() {
    let mut s = cluster();
    for i in 0..(LIVE_HISTORY_MAX + 3) {
        let id = format!("m{i}");
        let r = LiveRequest {
            cooldown_ms: 0,
            ..request(&id, "h2")
        };
        assert!(matches!(start(&mut s, r), Outcome::Migration(_)), "{i}");
        abort(&mut s, &id, "test");
    }
    assert_eq!(s.live_done.len(), LIVE_HISTORY_MAX);
    assert_eq!(s.live_done.front().map(|m| m.id.as_str()), Some("m3"));
}

#[test]
fn a_target_verdict_older_than_the_policys_every_rolls_back() {
    let commit_at = |s: &mut State, at_ms| {
        s.apply(Command::MigrateCommit {
            enclave: "vm".into(),
            id: "m1".into(),
            progress: LiveProgress::default(),
            at_ms,
        })
    };
    let progress_at = |s: &mut State, at_ms| {
        s.apply(Command::MigrateProgress {
            enclave: "vm".into(),
            id: "m1".into(),
            progress: LiveProgress::default(),
            at_ms,
        })
    };
    // `vm`'s policy re-attests it every second (tenant acme): ready (the target's verdict) at
    // NOW + 10, so the bound is NOW + 1010.
    let every = |s: &mut State, source: &str| {
        s.apply(Command::PutPolicy {
            name: "fresh".into(),
            source: source.into(),
            expect: Expect::Any,
            actor: "op".into(),
            at_ms: NOW - 500,
        })
    };
    let policy = "policy \"fresh\" {\n  match tenant == \"acme\"\n  attest { every 1s }\n}\n";
    let phase = |o: &Outcome| match o {
        Outcome::Migration(m) => (m.phase, m.verdict_max_age_ms, m.reason.clone()),
        o => panic!("{o:?}"),
    };
    for (with_policy, at, progress_first, committed) in [
        (false, NOW + 60_000, false, true),
        (true, NOW + 1010, false, true),
        (true, NOW + 1011, false, false),
        (true, NOW + 1500, true, false),
    ] {
        let case = format!("policy {with_policy}, at {}", at - NOW);
        let mut s = cluster();
        if with_policy {
            every(&mut s, policy);
        }
        let Outcome::Migration(m) = start(&mut s, request("m1", "h2")) else {
            panic!("started: {case}")
        };
        assert_eq!(
            m.verdict_max_age_ms,
            if with_policy { 1000 } else { 0 },
            "derived at apply from the policies: {case}"
        );
        ready(&mut s, "m1");
        let (got, _, reason) = if progress_first {
            // A progress report past the bound rolls back before the transfer ends.
            let out = phase(&progress_at(&mut s, at));
            assert!(
                matches!(commit_at(&mut s, at + 10), Outcome::Conflict { .. }),
                "{case}"
            );
            out
        } else {
            phase(&commit_at(&mut s, at))
        };
        if committed {
            assert_eq!(got, LivePhase::Committed, "{case}");
            assert_eq!(placement(&s), ("h2".into(), 2), "{case}");
        } else {
            assert_eq!(got, LivePhase::RolledBack, "{case}");
            assert!(
                reason.contains(&format!("{} ms old before switch-over", at - NOW - 10))
                    && reason.contains("every 1000 ms"),
                "{case}: {reason}"
            );
            // Still where it was, under the epoch it ran under.
            assert_eq!(placement(&s), ("h1".into(), 1), "{case}");
            assert_eq!(
                ops(&s),
                ["live_start", "live_ready", "live_rolled_back"],
                "{case}"
            );
        }
    }
}
