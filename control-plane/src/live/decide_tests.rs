//! The leader's decisions: deadlines, what wants a migration, targets and requests.

use super::*;
use crate::state::{
    Command, Enclave, Expect, Host, LiveMigration, LiveProgress, Placement, Resources, Schedulable,
    TeeKind,
};

const NOW: i64 = 10_000_000;

fn host(id: &str, cpu: u64, address: &str) -> Host {
    Host {
        id: id.into(),
        address: address.into(),
        capacity: Resources {
            cpu_millicores: cpu,
            memory_bytes: 8 << 30,
            ..Resources::default()
        },
        tee: TeeKind::Sim,
        attestation_status: "unverified".into(),
        last_heartbeat_ms: 0,
        agent_cert_fingerprint: String::new(),
        enforcement: "enforcing".into(),
        tee_generation: 0,
        // QEMU hosts, as their agents' `Hello` says.
        labels: [(tribune_proto::RUNTIME_LABEL.to_string(), "qemu".to_string())].into(),
        schedulable: Schedulable::Ready,
        measured_load: Default::default(),
    }
}

fn vm(id: &str, on: &str, qemu: bool) -> Enclave {
    Enclave {
        id: id.into(),
        tenant: "acme".into(),
        labels: Default::default(),
        tee: TeeKind::Sim,
        expected_measurements: vec![],
        requested: Resources {
            cpu_millicores: 1000,
            ..Resources::default()
        },
        priority: 0,
        placement: Some(Placement {
            host: on.into(),
            epoch: 4,
        }),
        state: EnclaveState::Running,
        launch: Some(if qemu {
            serde_json::json!({"qemu": {"memory_mib": 64}})
        } else {
            serde_json::json!({"process": {"cmd": ["/bin/true"]}})
        }),
        scheduling: None,
        version: 0,
    }
}

/// h1 (2 cores), h2 (4 cores, the roomier), h3 (1 core: too small); `vm` on h1.
fn cluster() -> State {
    let mut s = State::default();
    for (h, cpu, addr) in [
        ("h1", 2000, "10.0.0.1"),
        ("h2", 4000, "10.0.0.2:7000"),
        ("h3", 500, "10.0.0.3"),
    ] {
        s.apply(Command::PutHost {
            host: host(h, cpu, addr),
            actor: String::new(),
            at_ms: NOW - 1000,
        });
    }
    for e in [vm("vm", "h1", true), vm("proc", "h1", false)] {
        s.apply(Command::PutEnclave {
            enclave: e,
            expect: Expect::Absent,
            actor: "op".into(),
            at_ms: NOW - 500,
        });
    }
    s
}

fn live(phase: LivePhase, started: i64, ready: Option<i64>) -> LiveMigration {
    LiveMigration {
        id: "m".into(),
        enclave: "vm".into(),
        from: "h1".into(),
        to: "h2".into(),
        epoch: 4,
        listen: "10.0.0.2:47001".into(),
        phase,
        cause: LiveCause::Request,
        actor: "op".into(),
        forced: false,
        prior_state: EnclaveState::Running,
        started_ms: started,
        ready_ms: ready,
        ended_ms: None,
        reason: String::new(),
        progress: LiveProgress::default(),
        nonce: String::new(),
        target_measurement: String::new(),
        verdict_max_age_ms: 0,
    }
}

#[test]
fn a_migration_past_its_steps_deadline_is_rolled_back_with_why() {
    let cfg = LiveConfig::default();
    let mut s = State::default();
    s.live
        .insert("vm".into(), live(LivePhase::Preparing, NOW - 59_000, None));
    assert!(overdue(&s, NOW, &cfg).is_empty());
    s.live
        .insert("vm".into(), live(LivePhase::Preparing, NOW - 61_000, None));
    let o = overdue(&s, NOW, &cfg);
    assert_eq!(o.len(), 1);
    assert!(o[0].2.contains("not ready within 60 s"), "{o:?}");
    // Transferring: counted from the target's readiness, not the start.
    s.live.insert(
        "vm".into(),
        live(LivePhase::Transferring, NOW - 500_000, Some(NOW - 100_000)),
    );
    assert!(overdue(&s, NOW, &cfg).is_empty());
    s.live.insert(
        "vm".into(),
        live(LivePhase::Transferring, NOW - 500_000, Some(NOW - 151_000)),
    );
    assert!(overdue(&s, NOW, &cfg)[0].2.contains("did not complete"));
}

#[test]
fn draining_hosts_and_the_ladder_want_migrations_within_budget_and_cool_down() {
    let cfg = LiveConfig::default();
    let mut s = cluster();
    assert!(wanted(&s, NOW, &cfg).is_empty());
    if let Some(h) = s.hosts.get_mut("h1") {
        h.schedulable = Schedulable::Draining;
    }
    // Only the QEMU enclave: a process enclave moves by stop-and-restart.
    assert_eq!(
        wanted(&s, NOW, &cfg),
        [("vm".to_string(), LiveCause::Drain)]
    );
    // On its ladder's `migrate` step too: still the drain's (which must empty the host).
    s.status.entry("vm".into()).or_default().ladder.step = Step::Migrate;
    assert_eq!(
        wanted(&s, NOW, &cfg),
        [("vm".to_string(), LiveCause::Drain)]
    );
    // Not draining: its policy's.
    if let Some(h) = s.hosts.get_mut("h1") {
        h.schedulable = Schedulable::Ready;
    }
    assert_eq!(
        wanted(&s, NOW, &cfg),
        [("vm".to_string(), LiveCause::Policy)]
    );
    // Cool-down after the last one ended.
    let mut done = live(LivePhase::RolledBack, NOW - 20_000, None);
    done.ended_ms = Some(NOW - 10_000);
    s.live_done.push_back(done);
    assert!(wanted(&s, NOW, &cfg).is_empty());
    assert_eq!(wanted(&s, NOW + 51_000, &cfg).len(), 1);
    // No budget left.
    let zero = LiveConfig {
        budget: 0,
        ..LiveConfig::default()
    };
    assert!(wanted(&s, NOW + 51_000, &zero).is_empty());
    // Already migrating.
    s.live
        .insert("vm".into(), live(LivePhase::Preparing, NOW, None));
    assert!(wanted(&s, NOW + 51_000, &cfg).is_empty());
}

#[test]
fn the_target_is_the_schedulers_choice_among_hosts_that_pass_every_check() {
    let cfg = LiveConfig::default();
    let mut s = cluster();
    // h3 is too small; h2 takes it.
    assert_eq!(
        choose_target(&s, "vm", None, LiveCause::Request, NOW, &cfg),
        Ok("h2".to_string())
    );
    // An untrusted h2: nowhere, and the reason names both.
    if let Some(h) = s.hosts.get_mut("h2") {
        h.attestation_status = "untrusted".into();
    }
    let Err(o) = choose_target(&s, "vm", None, LiveCause::Request, NOW, &cfg) else {
        panic!("no target")
    };
    let why = reason(&o);
    assert!(
        why.contains("h2") && why.contains("failed attestation"),
        "{why}"
    );
    assert!(why.contains("h3"), "{why}");
    // Named: checked, never replaced by another.
    let Err(o) = choose_target(&s, "vm", Some("h2"), LiveCause::Request, NOW, &cfg) else {
        panic!("refused")
    };
    assert!(reason(&o).contains("failed attestation"));
    assert!(matches!(
        choose_target(&s, "vm", Some("nope"), LiveCause::Request, NOW, &cfg),
        Err(Outcome::NotFound { .. })
    ));
}

#[test]
fn a_request_names_its_listener_and_refuses_with_the_first_reason() {
    let cfg = LiveConfig::default();
    let s = cluster();
    let r = request(
        &s,
        "vm",
        None,
        LiveCause::Request,
        false,
        "op",
        NOW,
        &cfg,
        [7; 32],
    )
    .expect("ok");
    assert_eq!((r.to.as_str(), r.epoch), ("h2", 4));
    assert_eq!(
        r.nonce,
        hex::encode([7; 32]),
        "the caller's fresh nonce rides along"
    );
    let (ip, port) = r.listen.rsplit_once(':').expect("ADDR:PORT");
    assert_eq!(ip, "10.0.0.2");
    let port: u16 = port.parse().expect("port");
    assert!((cfg.port_base..cfg.port_base + cfg.port_span).contains(&port));
    // Deterministic for one id, spread over ids.
    assert_eq!(listen_for(&s, "h2", &r.id, &cfg), Some(r.listen.clone()));
    let ports: std::collections::BTreeSet<_> = (0..50)
        .filter_map(|i| listen_for(&s, "h2", &format!("m{i}"), &cfg))
        .collect();
    assert!(ports.len() > 40, "{ports:?}");
    // What is wrong with the enclave comes first.
    let Err(o) = request(
        &s,
        "proc",
        None,
        LiveCause::Request,
        false,
        "op",
        NOW,
        &cfg,
        [7; 32],
    ) else {
        panic!("refused")
    };
    assert!(reason(&o).contains("not a QEMU enclave"));
    assert!(matches!(
        request(
            &s,
            "none",
            None,
            LiveCause::Request,
            false,
            "op",
            NOW,
            &cfg,
            [7; 32]
        ),
        Err(Outcome::NotFound { .. })
    ));
    let Err(o) = request(
        &s,
        "vm",
        Some("h9"),
        LiveCause::Request,
        false,
        "op",
        NOW,
        &cfg,
        [7; 32],
    ) else {
        panic!("refused")
    };
    assert!(reason(&o).contains("h9"));
    // A host without an address cannot receive it.
    let mut s2 = cluster();
    if let Some(h) = s2.hosts.get_mut("h2") {
        h.address.clear();
    }
    let Err(o) = request(
        &s2,
        "vm",
        Some("h2"),
        LiveCause::Request,
        false,
        "op",
        NOW,
        &cfg,
        [7; 32],
    ) else {
        panic!("refused")
    };
    assert!(reason(&o).contains("no address"));
}

#[test]
fn the_target_has_room_for_the_limit_with_headroom_and_is_the_emptiest() {
    let cfg = LiveConfig::default();
    let mut s = cluster();
    // h4: 8 cores, emptier than h2 once the VM is on it — a move is for relief, not packing.
    s.apply(Command::PutHost {
        host: host("h4", 8000, "10.0.0.4"),
        actor: String::new(),
        at_ms: NOW - 1000,
    });
    assert_eq!(
        choose_target(&s, "vm", None, LiveCause::Request, NOW, &cfg),
        Ok("h4".to_string())
    );
    // Its limit (its allocation's, 5 cores) is more than its guarantee: only a host with room
    // for 5 cores + 10 % takes it.
    s.allocations.insert(
        "vm".into(),
        crate::state::Allocation {
            enclave: "vm".into(),
            limits: Resources {
                cpu_millicores: 5000,
                ..Resources::default()
            },
            guaranteed: Resources::default(),
            weight: 1,
            suspended: false,
            msgs_rate_per_s: None,
        },
    );
    assert_eq!(
        choose_target(&s, "vm", None, LiveCause::Request, NOW, &cfg),
        Ok("h4".to_string())
    );
    // At 7.5 cores, 8.25 with headroom: nowhere, and the reason says so.
    if let Some(a) = s.allocations.get_mut("vm") {
        a.limits.cpu_millicores = 7500;
    }
    let Err(o) = choose_target(&s, "vm", None, LiveCause::Request, NOW, &cfg) else {
        panic!("no host has room for the limit with headroom")
    };
    assert!(matches!(o, Outcome::NoRoom { .. }), "{o:?}");
    assert!(reason(&o).contains("h4"), "{}", reason(&o));
    // Without headroom it fits.
    let tight = LiveConfig {
        headroom_pct: 0,
        ..LiveConfig::default()
    };
    assert_eq!(
        choose_target(&s, "vm", None, LiveCause::Request, NOW, &tight),
        Ok("h4".to_string())
    );
}

#[test]
fn a_request_carries_the_enclaves_policy_reattestation_interval_as_the_verdicts_bound() {
    let cfg = LiveConfig::default();
    let ask = |s: &State| {
        request(
            s,
            "vm",
            None,
            LiveCause::Request,
            false,
            "op",
            NOW,
            &cfg,
            [7; 32],
        )
        .expect("ok")
        .verdict_max_age_ms
    };
    let mut s = cluster();
    assert_eq!(ask(&s), 0, "no policy: no bound beyond the migration's own");
    let put = |name: &str, source: &str| Command::PutPolicy {
        name: name.into(),
        source: source.into(),
        expect: Expect::Any,
        actor: "op".into(),
        at_ms: NOW - 100,
    };
    s.apply(put(
        "others",
        "policy \"others\" {\n  match tenant == \"globex\"\n  attest { every 5s }\n}\n",
    ));
    assert_eq!(ask(&s), 0, "a policy for another tenant");
    s.apply(put(
        "acme",
        "policy \"acme\" {\n  match tenant == \"acme\"\n  attest { every 30s }\n}\n",
    ));
    assert_eq!(ask(&s), 30_000);
}

#[test]
fn a_policy_does_not_move_an_enclave_back_to_the_host_it_moved_it_off_within_return_after() {
    let cfg = LiveConfig::default();
    let mut s = cluster();
    s.apply(Command::PutHost {
        host: host("h4", 4000, "10.0.0.4"),
        actor: String::new(),
        at_ms: NOW - 1000,
    });
    // A minute ago its policy moved it h2 → h1.
    let arrived = |phase, cause, ended: i64| LiveMigration {
        from: "h2".into(),
        to: "h1".into(),
        cause,
        ended_ms: Some(ended),
        ..live(phase, ended - 2000, Some(ended - 1000))
    };
    s.live_done.push_back(arrived(
        LivePhase::Committed,
        LiveCause::Policy,
        NOW - 60_000,
    ));
    // By policy: not back to h2 (h4, as roomy, instead); h2 is what a drain or an operator
    // gets (the emptiest, then the id).
    assert_eq!(
        choose_target(&s, "vm", None, LiveCause::Policy, NOW, &cfg),
        Ok("h4".to_string())
    );
    for cause in [LiveCause::Drain, LiveCause::Request] {
        assert_eq!(
            choose_target(&s, "vm", None, cause, NOW, &cfg),
            Ok("h2".to_string())
        );
    }
    // With h4 gone, the policy has nowhere to go, and says why.
    s.hosts.remove("h4");
    let Err(o) = choose_target(&s, "vm", None, LiveCause::Policy, NOW, &cfg) else {
        panic!("no target")
    };
    let why = reason(&o);
    assert!(
        why.contains("h2") && why.contains("return_after_s"),
        "{why}"
    );
    // Past return_after_s it may go back.
    let long_ago = NOW - 1000 * cfg.return_after_s as i64 - 1;
    s.live_done
        .push_back(arrived(LivePhase::Committed, LiveCause::Policy, long_ago));
    assert_eq!(
        choose_target(&s, "vm", None, LiveCause::Policy, NOW, &cfg),
        Ok("h2".to_string())
    );
    // A later attempt that rolled back moved nothing: the move by its policy is still its
    // last.
    s.live_done.push_back(arrived(
        LivePhase::Committed,
        LiveCause::Policy,
        NOW - 60_000,
    ));
    s.live_done.push_back(arrived(
        LivePhase::RolledBack,
        LiveCause::Request,
        NOW - 30_000,
    ));
    assert!(choose_target(&s, "vm", None, LiveCause::Policy, NOW, &cfg).is_err());
    // Only a committed move by its policy is remembered: a later move by a drain or an
    // operator takes its place.
    for (phase, cause) in [
        (LivePhase::Committed, LiveCause::Request),
        (LivePhase::Committed, LiveCause::Drain),
    ] {
        s.live_done.push_back(arrived(phase, cause, NOW - 30_000));
        assert_eq!(
            choose_target(&s, "vm", None, LiveCause::Policy, NOW, &cfg),
            Ok("h2".to_string()),
            "{phase:?} {cause:?}"
        );
    }
    // And 0 turns the rule off.
    s.live_done
        .push_back(arrived(LivePhase::Committed, LiveCause::Policy, NOW - 1000));
    let off = LiveConfig {
        return_after_s: 0,
        ..LiveConfig::default()
    };
    assert!(choose_target(&s, "vm", None, LiveCause::Policy, NOW, &cfg).is_err());
    assert_eq!(
        choose_target(&s, "vm", None, LiveCause::Policy, NOW, &off),
        Ok("h2".to_string())
    );
}

#[test]
fn a_vm_that_asks_for_networking_moves_only_where_the_agent_gives_it() {
    let cfg = LiveConfig::default();
    let mut s = cluster();
    if let Some(e) = s.enclaves.get_mut("vm") {
        e.launch = Some(serde_json::json!({"qemu": {"memory_mib": 32, "network": true}}));
    }
    // h2 (the only one with room) gives none: refused, named or chosen.
    let Err(o) = choose_target(&s, "vm", None, LiveCause::Request, NOW, &cfg) else {
        panic!("moved without networking")
    };
    assert!(reason(&o).contains("no --subnet"), "{}", reason(&o));
    let Err(o) = choose_target(&s, "vm", Some("h2"), LiveCause::Request, NOW, &cfg) else {
        panic!("moved without networking")
    };
    assert!(reason(&o).contains("no --subnet"), "{}", reason(&o));
    if let Some(h) = s.hosts.get_mut("h2") {
        h.labels
            .insert(tribune_proto::NETWORK_LABEL.into(), "true".into());
    }
    assert_eq!(
        choose_target(&s, "vm", None, LiveCause::Request, NOW, &cfg),
        Ok("h2".to_string())
    );
}
