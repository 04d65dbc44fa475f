//! The state → view conversion and the apply-time re-checks of the scheduling commands.

use tribune_migration::{Displaced, Placement as Plan, place};

use super::super::tests::enclave;
use super::super::*;
use super::*;

pub(super) fn host(id: &str, cpu_millicores: u64) -> Host {
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
        labels: [(
            tribune_proto::RUNTIME_LABEL.to_string(),
            "process".to_string(),
        )]
        .into(),
        schedulable: Schedulable::Ready,
        measured_load: Default::default(),
    }
}

pub(super) fn cluster(hosts: &[(&str, u64)]) -> State {
    let mut s = State::default();
    for (id, cpu) in hosts {
        s.apply(Command::PutHost {
            host: host(id, *cpu),
            actor: String::new(),
            at_ms: 1,
        });
    }
    s
}

/// A new enclave asking for `cpu` millicores (no placement: the scheduler's).
pub(super) fn new_enclave(id: &str, cpu: u64, priority: i32, preempt: bool) -> Enclave {
    let mut e = enclave(id, "x", 0);
    e.placement = None;
    e.requested.cpu_millicores = cpu;
    e.priority = priority;
    e.launch = Some(serde_json::json!({"process": {"cmd": ["/bin/sleep", "60"]}}));
    e.scheduling = Some(Scheduling {
        preempt,
        ..Scheduling::default()
    });
    e
}

pub(super) fn plan(s: &State, e: &Enclave) -> Result<Plan, tribune_migration::Unplaceable> {
    let mut view = cluster_view(s);
    place(&mut view, &enclave_spec(e), placement_freshness(10))
}

fn create(s: &mut State, e: Enclave) -> Outcome {
    let p = plan(s, &e).expect("placeable");
    s.apply(Command::Place {
        enclave: e,
        placement: p,
        actor: "op".into(),
        at_ms: 10,
    })
}

fn reserved_cpu(s: &State, host: &str) -> u64 {
    cluster_view(s)
        .host(host)
        .map_or(0, |h| h.reserved.cpu_millicores)
}

#[test]
fn the_view_holds_every_host_and_what_holds_a_guarantee_on_it() {
    let mut s = cluster(&[("h1", 4000), ("h2", 2000)]);
    let mut h = host("h3", 1000);
    h.attestation_status = "untrusted".into();
    h.tee_generation = 7;
    h.labels.insert("zone".into(), "a".into());
    s.apply(Command::PutHost {
        host: h,
        actor: String::new(),
        at_ms: 1,
    });
    s.apply(Command::SetSchedulable {
        host: "h2".into(),
        schedulable: Schedulable::Cordoned,
        actor: "op".into(),
        at_ms: 2,
    });
    // Placed by name, running: reserves. Stopped: does not. On an unknown host: not seen.
    let mut a = enclave("a", "h1", 1);
    a.requested.cpu_millicores = 1500;
    a.labels.insert("app".into(), "web".into());
    let mut b = enclave("b", "h1", 1);
    b.requested.cpu_millicores = 700;
    b.state = EnclaveState::Stopped;
    let mut c = enclave("c", "nowhere", 1);
    c.requested.cpu_millicores = 100;
    for e in [a, b, c] {
        s.apply(Command::PutEnclave {
            enclave: e,
            expect: Expect::Any,
            actor: "op".into(),
            at_ms: 3,
        });
    }
    let v = cluster_view(&s);
    let ids: Vec<&str> = v.hosts().map(|h| h.host.id.as_str()).collect();
    assert_eq!(ids, ["h1", "h2", "h3"]);
    let h1 = v.host("h1").expect("h1");
    assert_eq!(h1.reserved.cpu_millicores, 1500);
    assert_eq!(h1.enclaves, ["a"]);
    assert_eq!(h1.with_label("app", "web"), 1);
    assert_eq!(h1.host.capacity.memory_bytes, 8 << 30);
    assert!(h1.host.trusted);
    assert_eq!(
        v.host("h2").expect("h2").host.schedulable,
        Schedulable::Cordoned
    );
    let h3 = v.host("h3").expect("h3");
    assert!(!h3.host.trusted);
    assert_eq!(h3.host.tee_generation, 7);
    assert_eq!(h3.host.labels.get("zone").map(String::as_str), Some("a"));
    assert!(v.placed("b").is_none() && v.placed("c").is_none());
    // Same state, same view (a pure function).
    assert_eq!(cluster_view(&s), v);
    // The view of some hosts is the whole view's, restricted to them.
    let part = cluster_view_of(&s, &["h1", "h3"]);
    let ids: Vec<&str> = part.hosts().map(|h| h.host.id.as_str()).collect();
    assert_eq!(ids, ["h1", "h3"]);
    assert_eq!(part.host("h1"), v.host("h1"));
    assert_eq!(part.host("h3"), v.host("h3"));
    assert!(part.host("h2").is_none());
}

#[test]
fn the_spec_is_the_enclaves_request_priority_and_scheduling() {
    let mut e = new_enclave("e", 250, 40, true);
    e.requested.memory_bytes = 1 << 30;
    e.requested.gpu_percent = 25;
    if let Some(s) = e.scheduling.as_mut() {
        s.host_selector.insert("zone".into(), "a".into());
        s.anti_affinity.push("app".into());
        s.min_tee_generation = 3;
        s.strategy = Strategy::Spread;
    }
    let spec = enclave_spec(&e);
    assert_eq!(spec.guarantee.cpu_millicores, 250);
    assert_eq!(spec.guarantee.memory_bytes, 1 << 30);
    assert_eq!(spec.guarantee.gpu_percent, 25);
    assert_eq!((spec.priority, spec.preempt), (40, true));
    assert_eq!(spec.min_tee_generation, 3);
    assert_eq!(spec.strategy, Strategy::Spread);
    assert_eq!(spec.anti_affinity, ["app"]);
    let runtime = |spec: &EnclaveSpec| {
        spec.host_selector
            .get(tribune_proto::RUNTIME_LABEL)
            .cloned()
    };
    assert_eq!(
        spec.host_selector.get("zone").map(String::as_str),
        Some("a")
    );
    assert_eq!(
        runtime(&spec).as_deref(),
        Some("process"),
        "its launch spec's runtime"
    );
    // No scheduling settings: no preemption; the selector asks only for its runtime.
    e.scheduling = None;
    let spec = enclave_spec(&e);
    assert!(!spec.preempt && spec.host_selector.len() == 1);
    e.launch = Some(serde_json::json!({"qemu": {"memory_mib": 64}}));
    assert_eq!(runtime(&enclave_spec(&e)).as_deref(), Some("qemu"));
    e.launch = None;
    assert!(
        enclave_spec(&e).host_selector.is_empty(),
        "nothing to launch: any host"
    );
}

#[test]
fn a_placement_is_committed_with_epoch_one_and_logged() {
    let mut s = cluster(&[("h1", 4000), ("h2", 2000)]);
    let before = s.plan_versions.get("h1").copied().unwrap_or(0);
    let Outcome::Enclave(e) = create(&mut s, new_enclave("e", 3000, 0, false)) else {
        panic!("placed")
    };
    let p = e.placement.expect("placed");
    assert_eq!((p.host.as_str(), p.epoch), ("h1", 1));
    assert!(s.plan_versions["h1"] > before);
    let last = s.log.entries.last().expect("logged");
    assert!(matches!(
        &last.detail,
        LogDetail::Migration(MigrationDetail::Place { host, epoch: 1, .. }) if host == "h1"
    ));
    assert_eq!(reserved_cpu(&s, "h1"), 3000);
}

#[test]
fn two_racing_placements_of_the_last_room_commit_only_one() {
    // Both planned against the same state (two creates at once), applied one after the other.
    let mut s = cluster(&[("h1", 4000)]);
    let a = new_enclave("a", 3000, 0, false);
    let b = new_enclave("b", 3000, 0, false);
    let (pa, pb) = (plan(&s, &a).expect("a"), plan(&s, &b).expect("b"));
    assert_eq!(pa.host, pb.host);
    let ra = s.apply(Command::Place {
        enclave: a,
        placement: pa,
        actor: "op".into(),
        at_ms: 10,
    });
    assert!(matches!(ra, Outcome::Enclave(_)));
    let log_len = s.log.entries.len();
    let rb = s.apply(Command::Place {
        enclave: b,
        placement: pb,
        actor: "op".into(),
        at_ms: 10,
    });
    let Outcome::NoRoom { reason } = rb else {
        panic!("the second must be refused: {rb:?}")
    };
    assert!(
        reason.contains("no host with 3 cores free: h1 has 1 cores"),
        "{reason}"
    );
    // Nothing written for the refused one.
    assert!(!s.enclaves.contains_key("b"));
    assert_eq!(s.log.entries.len(), log_len);
    assert_eq!(reserved_cpu(&s, "h1"), 3000);
}

#[test]
fn a_placement_on_a_host_cordoned_since_it_was_planned_is_refused() {
    let mut s = cluster(&[("h1", 4000)]);
    let e = new_enclave("e", 1000, 0, false);
    let p = plan(&s, &e).expect("planned");
    s.apply(Command::SetSchedulable {
        host: "h1".into(),
        schedulable: Schedulable::Cordoned,
        actor: "op".into(),
        at_ms: 5,
    });
    assert!(matches!(
        s.apply(Command::Place {
            enclave: e,
            placement: p,
            actor: "op".into(),
            at_ms: 10,
        }),
        Outcome::NoRoom { .. }
    ));
    // An agent's host record does not lift the cordon.
    s.apply(Command::PutHost {
        host: host("h1", 4000),
        actor: String::new(),
        at_ms: 11,
    });
    assert_eq!(s.hosts["h1"].schedulable, Schedulable::Cordoned);
}

#[test]
fn preemption_suspends_the_displaced_enclave_and_logs_both() {
    let mut s = cluster(&[("h1", 4000)]);
    assert!(matches!(
        create(&mut s, new_enclave("low", 3000, 10, false)),
        Outcome::Enclave(_)
    ));
    // Without preempt: unplaceable, nothing changes.
    assert!(plan(&s, &new_enclave("high", 3000, 50, false)).is_err());
    let Outcome::Enclave(high) = create(&mut s, new_enclave("high", 3000, 50, true)) else {
        panic!("placed by preemption")
    };
    assert_eq!(high.placement.expect("placed").host, "h1");
    let low = &s.enclaves["low"];
    assert_eq!(low.state, EnclaveState::Suspended);
    assert_eq!(low.placement.as_ref().expect("still placed").host, "h1");
    let hold = s.status["low"].operator_hold.clone().expect("held");
    assert_eq!(hold.preempted_by.as_deref(), Some("high"));
    // Its guarantee is released: only the preemptor's is reserved.
    assert_eq!(reserved_cpu(&s, "h1"), 3000);
    let kinds: Vec<(String, &LogDetail)> = s
        .log
        .entries
        .iter()
        .rev()
        .take(3)
        .map(|e| (e.subject.clone(), &e.detail))
        .collect();
    assert!(kinds.iter().any(|(sub, d)| sub == "high"
        && matches!(d, LogDetail::Migration(MigrationDetail::Place { displaced, .. }) if displaced == &["low".to_string()])));
    assert!(kinds.iter().any(|(sub, d)| sub == "low"
        && matches!(d, LogDetail::Migration(MigrationDetail::Preempted { to: None, by, .. }) if by == "high")));
    // An operator's resume is refused while its guarantee does not fit.
    let mut resume = s.enclaves["low"].clone();
    resume.state = EnclaveState::Running;
    assert!(matches!(
        s.apply(Command::PutEnclave {
            enclave: resume,
            expect: Expect::Any,
            actor: "op".into(),
            at_ms: 20,
        }),
        Outcome::NoRoom { .. }
    ));
}

#[test]
fn a_displacement_that_no_longer_holds_is_refused_at_apply() {
    let mut s = cluster(&[("h1", 4000)]);
    create(&mut s, new_enclave("low", 3000, 10, false));
    let high = new_enclave("high", 3000, 50, true);
    let p = plan(&s, &high).expect("planned");
    assert_eq!(p.displaced.len(), 1);
    // Meanwhile the victim's priority rose to the preemptor's.
    let mut low = s.enclaves["low"].clone();
    low.priority = 50;
    s.apply(Command::PutEnclaveSpec {
        enclave: low,
        expect: Expect::Any,
        actor: "op".into(),
        at_ms: 11,
    });
    assert!(matches!(
        s.apply(Command::Place {
            enclave: high,
            placement: p,
            actor: "op".into(),
            at_ms: 12,
        }),
        Outcome::NoRoom { .. }
    ));
    assert_eq!(s.enclaves["low"].state, EnclaveState::Pending);
    // A forged displacement (the spec does not ask to preempt) is refused too.
    let forged = Plan {
        enclave: "x".into(),
        host: "h1".into(),
        displaced: vec![Displaced {
            enclave: "low".into(),
            priority: 50,
            from: "h1".into(),
            to: None,
        }],
    };
    assert!(matches!(
        s.apply(Command::Place {
            enclave: new_enclave("x", 100, 99, false),
            placement: forged,
            actor: "op".into(),
            at_ms: 13,
        }),
        Outcome::NoRoom { .. }
    ));
}

#[test]
fn a_move_stops_on_the_source_before_the_target_gets_it_under_a_new_epoch() {
    let mut s = cluster(&[("h1", 4000), ("h2", 4000)]);
    let Outcome::Enclave(e) = create(&mut s, new_enclave("e", 3000, 0, false)) else {
        panic!("placed")
    };
    let from = e.placement.expect("placed").host;
    let to = if from == "h1" { "h2" } else { "h1" };
    let target_version = s.plan_versions.get(to).copied().unwrap_or(0);
    let Outcome::Enclave(moving) = s.apply(Command::StartMove {
        enclave: "e".into(),
        to: to.into(),
        epoch: 1,
        cause: "drain".into(),
        actor: "op".into(),
        at_ms: 20,
    }) else {
        panic!("move started")
    };
    assert_eq!(moving.state, EnclaveState::Migrating);
    // Still placed on the source under the old epoch; reserved on the target.
    assert_eq!(moving.placement.as_ref().map(|p| p.epoch), Some(1));
    assert_eq!(reserved_cpu(&s, to), 3000);
    assert_eq!(reserved_cpu(&s, &from), 0);
    // Neither plan holds it now; the target's did not move yet.
    let m = s.moves["e"].clone();
    assert_eq!(
        s.plan_versions.get(to).copied().unwrap_or(0),
        target_version
    );
    // An ack of an older source plan finishes nothing.
    let Outcome::Moved { enclaves } = s.apply(Command::FinishMoves {
        host: from.clone(),
        version: m.stop_version - 1,
        at_ms: 21,
    }) else {
        panic!("moved outcome")
    };
    assert!(enclaves.is_empty());
    // A second move while one is under way is refused.
    assert!(matches!(
        s.apply(Command::StartMove {
            enclave: "e".into(),
            to: to.into(),
            epoch: 1,
            cause: "drain".into(),
            actor: "op".into(),
            at_ms: 22,
        }),
        Outcome::Conflict { .. }
    ));
    let Outcome::Moved { enclaves } = s.apply(Command::FinishMoves {
        host: from.clone(),
        version: m.stop_version,
        at_ms: 23,
    }) else {
        panic!("moved outcome")
    };
    assert_eq!(enclaves, ["e"]);
    let p = s.enclaves["e"].placement.clone().expect("placed");
    assert_eq!((p.host.as_str(), p.epoch), (to, 2));
    assert!(s.plan_versions[to] > target_version);
    assert!(matches!(
        &s.log.entries.last().expect("logged").detail,
        LogDetail::Migration(MigrationDetail::MoveDone { epoch: 2, .. })
    ));
}

#[test]
fn a_qemu_enclave_is_not_moved_by_stop_and_restart() {
    let mut s = cluster(&[("h1", 4000), ("h2", 4000)]);
    let mut e = enclave("vm", "h1", 1);
    e.launch = Some(serde_json::json!({"qemu": {"kernel": "/k"}}));
    s.apply(Command::PutEnclave {
        enclave: e,
        expect: Expect::Any,
        actor: "op".into(),
        at_ms: 1,
    });
    let Outcome::Invalid { reason } = s.apply(Command::StartMove {
        enclave: "vm".into(),
        to: "h2".into(),
        epoch: 1,
        cause: "drain".into(),
        actor: "op".into(),
        at_ms: 2,
    }) else {
        panic!("refused")
    };
    assert!(reason.contains("live migration"), "{reason}");
    assert!(s.moves.is_empty());
}

#[test]
fn a_move_to_a_full_host_is_refused_at_apply() {
    let mut s = cluster(&[("h1", 4000), ("h2", 1000)]);
    create(&mut s, new_enclave("e", 3000, 0, false));
    assert!(matches!(
        s.apply(Command::StartMove {
            enclave: "e".into(),
            to: "h2".into(),
            epoch: 1,
            cause: "drain".into(),
            actor: "op".into(),
            at_ms: 2,
        }),
        Outcome::NoRoom { .. }
    ));
    assert!(s.moves.is_empty());
    assert_eq!(s.enclaves["e"].state, EnclaveState::Pending);
}

#[test]
fn a_displaced_process_enclave_that_fits_elsewhere_is_moved_not_suspended() {
    let mut s = cluster(&[("h1", 4000), ("h2", 2000)]);
    // On h1 by name: low (2 cores, priority 10) and mid (1.5 cores, priority 60).
    for (id, cpu, prio) in [("low", 2000, 10), ("mid", 1500, 60)] {
        let mut e = new_enclave(id, cpu, prio, false);
        e.placement = Some(Placement {
            host: "h1".into(),
            epoch: 1,
        });
        s.apply(Command::PutEnclave {
            enclave: e,
            expect: Expect::Any,
            actor: "op".into(),
            at_ms: 1,
        });
    }
    // 2.5 cores fit nowhere; displacing low on h1 makes room, and low fits on h2.
    let Outcome::Enclave(high) = create(&mut s, new_enclave("high", 2500, 50, true)) else {
        panic!("placed")
    };
    assert_eq!(high.placement.expect("placed").host, "h1");
    let m = s.moves.get("low").expect("low is moving");
    assert_eq!((m.from.as_str(), m.to.as_str(), m.epoch), ("h1", "h2", 1));
    assert_eq!(m.cause, "preempted by high");
    assert_eq!(s.enclaves["low"].state, EnclaveState::Migrating);
    assert!(
        s.status
            .get("low")
            .is_none_or(|st| st.operator_hold.is_none())
    );
    assert_eq!(reserved_cpu(&s, "h1"), 4000);
    assert_eq!(reserved_cpu(&s, "h2"), 2000);
    assert!(s.log.entries.iter().any(|e| e.subject == "low"
        && matches!(&e.detail, LogDetail::Migration(MigrationDetail::Preempted { to: Some(to), .. }) if to == "h2")));
    // A stop and delete while it moves leaves no move behind.
    let mut stop = s.enclaves["low"].clone();
    stop.state = EnclaveState::Stopped;
    s.apply(Command::PutEnclave {
        enclave: stop,
        expect: Expect::Any,
        actor: "op".into(),
        at_ms: 2,
    });
    s.apply(Command::DeleteEnclave {
        id: "low".into(),
        expect: Expect::Any,
        actor: "op".into(),
        at_ms: 3,
    });
    assert!(s.moves.is_empty());
    assert_eq!(reserved_cpu(&s, "h2"), 0);
}

/// `tier=gold` enclaves: priority 800 and may preempt; `tier=batch`: priority 5.
fn tiered(s: &mut State) {
    let out = s.apply(Command::PutPolicy {
        name: "tiers".into(),
        source: "policy \"gold\" {\n  match labels.tier == \"gold\"\n  priority 800 preempt\n}\n\
                 policy \"batch\" {\n  match labels.tier == \"batch\"\n  priority 5\n}\n"
            .into(),
        expect: Expect::Any,
        actor: "op".into(),
        at_ms: 5,
    });
    assert!(matches!(out, Outcome::Policy(_)), "{out:?}");
}

fn tier(mut e: Enclave, t: &str) -> Enclave {
    e.labels.insert("tier".into(), t.into());
    e
}

#[test]
fn the_policys_priority_decides_who_preempts_and_who_is_displaced() {
    let mut s = cluster(&[("h1", 4000)]);
    tiered(&mut s);
    // The spec's own priority (900) counts for nothing where a policy gives one (5).
    let out = create(&mut s, tier(new_enclave("low", 3000, 900, false), "batch"));
    assert!(matches!(out, Outcome::Enclave(_)), "{out:?}");
    assert_eq!(s.priority_of(&s.enclaves["low"]), 5);
    // The gold one's spec asks neither priority nor preemption: its policy gives both.
    let high = tier(new_enclave("high", 3000, 0, false), "gold");
    let spec = s.spec_of(&high);
    assert_eq!((spec.priority, spec.preempt), (800, true));
    let p = place(&mut cluster_view(&s), &spec, placement_freshness(10)).expect("room made");
    assert_eq!(p.displaced.len(), 1);
    let out = s.apply(Command::Place {
        enclave: high,
        placement: p,
        actor: "op".into(),
        at_ms: 12,
    });
    assert!(matches!(out, Outcome::Enclave(_)), "{out:?}");
    assert_eq!(s.enclaves["low"].state, EnclaveState::Suspended);
    // The log records the priorities the policy gave, not the specs'.
    let details: Vec<serde_json::Value> = s
        .log
        .entries
        .iter()
        .filter_map(|e| match &e.detail {
            LogDetail::Migration(m) => serde_json::to_value(m).ok(),
            _ => None,
        })
        .collect();
    assert!(
        details.iter().any(|d| d["op"] == "place"
            && d["priority"] == 800
            && d["displaced"] == serde_json::json!(["low"])),
        "{details:?}"
    );
    assert!(
        details
            .iter()
            .any(|d| d["op"] == "preempted" && d["priority"] == 5 && d["by_priority"] == 800),
        "{details:?}"
    );
    // A spec asking priority 700 and preemption, with no policy, may not displace the gold
    // one (800 by its policy, 0 in its spec): the planner finds no room, and a forged
    // displacement is refused at apply.
    let pushy = new_enclave("pushy", 3000, 700, true);
    assert!(
        plan(&s, &pushy).is_err(),
        "nothing of a lower priority to displace"
    );
    let forged = Plan {
        enclave: "pushy".into(),
        host: "h1".into(),
        displaced: vec![Displaced {
            enclave: "high".into(),
            priority: 0,
            from: "h1".into(),
            to: None,
        }],
    };
    assert!(matches!(
        s.apply(Command::Place {
            enclave: pushy,
            placement: forged,
            actor: "op".into(),
            at_ms: 13,
        }),
        Outcome::NoRoom { .. }
    ));
    assert_eq!(s.enclaves["high"].state, EnclaveState::Pending);
}

#[test]
fn a_spec_may_not_ask_more_than_its_policy_gives() {
    let mut s = cluster(&[("h1", 4000)]);
    let set = |s: &State| s.policy_set();
    let batch = |priority, preempt| tier(new_enclave("b", 100, priority, preempt), "batch");
    // No policy gives it a priority: the spec's own stands.
    assert_eq!(check_priority(&set(&s), &s, &batch(900, true)), Ok(()));
    tiered(&mut s);
    assert_eq!(
        check_priority(&set(&s), &s, &batch(0, false)),
        Ok(()),
        "not asked"
    );
    assert_eq!(
        check_priority(&set(&s), &s, &batch(5, false)),
        Ok(()),
        "the same"
    );
    let err = check_priority(&set(&s), &s, &batch(900, false)).expect_err("more");
    assert_eq!(
        err.to_string(),
        "priority: policy \"batch\" (line 7) gives enclave \"b\" priority 5; the spec asks 900: leave priority out (0) or set it to 5"
    );
    let err = check_priority(&set(&s), &s, &batch(0, true)).expect_err("preempt");
    assert!(
        matches!(&err, PriorityConflict::Preempt { policy, line: 7, policy_value: 5, .. } if policy == "batch"),
        "{err:?}"
    );
    let gold = tier(new_enclave("g", 100, 0, true), "gold");
    assert_eq!(
        check_priority(&set(&s), &s, &gold),
        Ok(()),
        "its policy may preempt"
    );
    // A policy changed since is what counts from then on.
    s.apply(Command::DeletePolicy {
        name: "tiers".into(),
        expect: Expect::Any,
        actor: "op".into(),
        at_ms: 20,
    });
    assert_eq!(check_priority(&set(&s), &s, &batch(900, true)), Ok(()));
    assert_eq!(s.priority_of(&batch(900, true)), 900);
}

#[test]
fn a_host_seen_raises_its_last_heartbeat_and_never_lowers_it() {
    let mut s = cluster(&[("h1", 4000)]);
    let seen = |s: &mut State, at_ms, cpu_millicores| {
        s.apply(Command::HostSeen {
            host: "h1".into(),
            at_ms,
            load: Resources {
                cpu_millicores,
                ..Resources::default()
            },
        })
    };
    let v = s.plan_versions.get("h1").copied();
    let load = |o: &Outcome| match o {
        Outcome::Host(h) => (h.last_heartbeat_ms, h.measured_load.cpu_millicores),
        o => panic!("{o:?}"),
    };
    assert_eq!(load(&seen(&mut s, 500, 1200)), (500, 1200));
    assert_eq!(
        load(&seen(&mut s, 400, 10)),
        (500, 1200),
        "an older one changes nothing"
    );
    assert_eq!(s.plan_versions.get("h1").copied(), v, "no plan moves");
    assert_eq!(host_attested_at(&s, "h1"), Some(500));
    // The scheduler scores with it; a host record written again keeps it.
    assert_eq!(
        cluster_view(&s)
            .host("h1")
            .map(|h| h.host.load.cpu_millicores),
        Some(1200)
    );
    s.apply(Command::PutHost {
        host: host("h1", 4000),
        actor: "op".into(),
        at_ms: 600,
    });
    assert_eq!(s.hosts["h1"].measured_load.cpu_millicores, 1200);
    assert!(matches!(
        s.apply(Command::HostSeen {
            host: "nope".into(),
            at_ms: 1,
            load: Resources::default(),
        }),
        Outcome::NotFound { .. }
    ));
}

#[test]
fn a_tenants_own_policy_does_not_raise_its_standing() {
    let mut s = cluster(&[("h1", 4000)]);
    let put = |s: &mut State, name: &str, actor: &str| {
        let out = s.apply(Command::PutPolicy {
            name: name.into(),
            source: format!(
                "policy \"{name}\" {{\n  match tenant == \"acme\"\n  precedence 1000\n  priority 1000 preempt\n}}\n"
            ),
            expect: Expect::Any,
            actor: actor.into(),
            at_ms: 5,
        });
        assert!(matches!(out, Outcome::Policy(_)), "{out:?}");
    };
    let e = new_enclave("e", 100, 0, false);
    // A tenant's certificate.
    put(&mut s, "mine", "tribune://tenant/acme/bob");
    assert_eq!((s.spec_of(&e).priority, s.spec_of(&e).preempt), (0, false));
    assert!(super::super::standing::written_by_tenant(
        &s,
        &s.policies["mine"]
    ));
    // A tenant's token.
    s.tokens.insert(
        "t1".into(),
        Token {
            id: "t1".into(),
            name: "ci".into(),
            role: tribune_tls::UserRole::Tenant,
            tenant: Some("acme".into()),
            secret_sha256: String::new(),
            created_by: "op".into(),
            created_at_ms: 1,
            expires_at_ms: i64::MAX,
            revoked: None,
        },
    );
    put(&mut s, "mine", "token:t1 (ci)");
    assert_eq!(
        s.spec_of(&e).priority,
        0,
        "{:?}",
        s.policies["mine"].updated_by
    );
    // The same policy an operator wrote decides it.
    put(&mut s, "mine", "tribune://operator/ann");
    assert_eq!(
        (s.spec_of(&e).priority, s.spec_of(&e).preempt),
        (1000, true)
    );
}
