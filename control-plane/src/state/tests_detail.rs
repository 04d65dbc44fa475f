//! Every log detail round-trips through JSON and through commands, and a detail that is not its
//! kind's exact shape is refused — over the details of the golden scenario.

use super::tests_golden::{GOLDEN, scenario};
use super::*;

#[test]
fn every_detail_round_trips_through_json_and_through_commands() {
    let mut details: Vec<LogDetail> = scenario(LeafFormat::V2)
        .log
        .entries
        .into_iter()
        .map(|e| e.detail)
        .collect();
    details.push(LogDetail::Migration(MigrationDetail::Place {
        host: "h1".into(),
        epoch: 1,
        priority: 50,
        displaced: vec!["low".into()],
        actor: "admin".into(),
    }));
    details.push(LogDetail::Migration(MigrationDetail::Preempted {
        from: "h1".into(),
        to: None,
        priority: 10,
        by: "high".into(),
        by_priority: 50,
        actor: "admin".into(),
    }));
    details.push(LogDetail::Migration(MigrationDetail::MoveStart {
        from: "h1".into(),
        to: "h2".into(),
        epoch: 1,
        cause: "drain".into(),
        actor: "admin".into(),
    }));
    details.push(LogDetail::Migration(MigrationDetail::MoveDone {
        from: "h1".into(),
        to: "h2".into(),
        epoch: 2,
        source_plan_version: 7,
    }));
    details.push(LogDetail::Migration(MigrationDetail::LiveStart {
        id: "m1".into(),
        from: "h1".into(),
        to: "h2".into(),
        epoch: 1,
        cause: LiveCause::Request,
        forced: true,
        actor: "admin".into(),
    }));
    details.push(LogDetail::Migration(MigrationDetail::LiveReady {
        id: "m1".into(),
        to: "h2".into(),
        listen: "10.0.0.2:47001".into(),
        measurement: "5eed".into(),
    }));
    // Written before the target's evidence was checked: no measurement.
    details.push(LogDetail::Migration(MigrationDetail::LiveReady {
        id: "m0".into(),
        to: "h2".into(),
        listen: "10.0.0.2:47001".into(),
        measurement: String::new(),
    }));
    details.push(LogDetail::Migration(MigrationDetail::LiveCommitted {
        id: "m1".into(),
        from: "h1".into(),
        to: "h2".into(),
        epoch: 2,
        transferred_bytes: 1 << 20,
        downtime_ms: 4,
        total_time_ms: 516,
    }));
    details.push(LogDetail::Migration(MigrationDetail::LiveRolledBack {
        id: "m2".into(),
        from: "h2".into(),
        to: "h3".into(),
        epoch: 2,
        reason: "the target h3 failed: no QEMU".into(),
    }));
    details.push(LogDetail::HostChange(HostChangeDetail::Cordon {
        actor: "admin".into(),
    }));
    let mut seen = std::collections::BTreeSet::new();
    for d in details {
        seen.insert(d.kind().as_str());
        // The detail object alone, given its kind.
        let v = d.to_value();
        assert_eq!(
            LogDetail::from_value(d.kind(), v.clone()).expect("reads back"),
            d
        );
        // In leaf format 1 too; and a command written before format 2 (format 1's numbers)
        // still reads.
        let v1 = d.to_value_as(LeafFormat::V1);
        assert_eq!(
            LogDetail::from_value_as(d.kind(), LeafFormat::V1, v1.clone()).expect("reads back"),
            d
        );
        let old_pairs = serde_json::json!([[d.kind().as_str(), v1.clone()]]);
        let e: Enforcement = serde_json::from_value(serde_json::json!({
            "enclave": "e", "epoch": 1,
            "allocation": {"enclave": "e", "limits": Resources::default(),
                "guaranteed": Resources::default(), "weight": 1, "suspended": false},
            "state": "running", "ladder": Ladder::default(),
            "borrowed_cpu_millicores": 0, "lent_cpu_millicores": 0, "log": old_pairs}))
        .expect("an old enforcement reads");
        assert_eq!(e.log, vec![d.clone()]);
        let old_cmd = serde_json::json!({"AppendLog": {"subject": "s", "kind": d.kind().as_str(),
            "detail": v1, "at_ms": 1}});
        assert!(matches!(
            serde_json::from_value::<Command>(old_cmd).expect("an old command reads"),
            Command::AppendLog { detail, .. } if detail == d
        ));
        // Tagged (`{"kind", "detail"}`), as `Command::AppendLog` carries it.
        let cmd = Command::AppendLog {
            subject: "s".into(),
            detail: d.clone(),
            at_ms: 1,
        };
        let json = serde_json::to_value(&cmd).expect("json");
        assert_eq!(json["AppendLog"]["kind"], d.kind().as_str());
        assert_eq!(json["AppendLog"]["detail"], v);
        assert_eq!(serde_json::from_value::<Command>(json).expect("parse"), cmd);
        // As a pair, as `Enforcement::log` carries it.
        let e = Enforcement {
            enclave: "e".into(),
            epoch: 1,
            allocation: Allocation {
                enclave: "e".into(),
                limits: Resources::default(),
                guaranteed: Resources::default(),
                weight: 1,
                suspended: false,
                msgs_rate_per_s: None,
            },
            state: EnclaveState::Running,
            ladder: Ladder::default(),
            from: None,
            borrowed_cpu_millicores: 0,
            lent_cpu_millicores: 0,
            log: vec![d.clone()],
        };
        let json = serde_json::to_value(&e).expect("json");
        assert_eq!(json["log"], serde_json::json!([[d.kind().as_str(), v]]));
        assert_eq!(
            serde_json::from_value::<Enforcement>(json).expect("parse"),
            e
        );
    }
    let all: std::collections::BTreeSet<&str> = LogEntryKind::ALL
        .into_iter()
        .map(LogEntryKind::as_str)
        .collect();
    assert_eq!(seen, all, "one detail of every kind");
}

#[test]
fn a_detail_that_is_not_its_kinds_exact_shape_is_refused() {
    use serde_json::json;
    let refused = [
        // Wrong kind for the object.
        (LogEntryKind::Verdict, json!({"op": "revoke", "actor": "a"})),
        // A field too many, a field missing, an optional field left out instead of null.
        (
            LogEntryKind::TokenChange,
            json!({"op": "revoke", "actor": "a", "secret": "x"}),
        ),
        (
            LogEntryKind::PolicyChange,
            json!({"op": "put", "version": 1, "actor": "a"}),
        ),
        (
            LogEntryKind::Violation,
            json!({"event": "over_limit", "cpu_millicores": 1.0, "limit_cpu_millicores": 1, "seq": 1}),
        ),
        // `null` where the field is left out when absent.
        (
            LogEntryKind::Violation,
            json!({"event": "refused", "what": "w", "why": "y", "host": null}),
        ),
        // A number in another form than the one written (the leaf would change): format 2
        // is float-free.
        (
            LogEntryKind::Violation,
            json!({"event": "over_limit", "cpu_millicores": 1.0, "limit_cpu_millicores": 1,
                "seq": 1, "window_end_ms": 1}),
        ),
        // An unknown event, op, action or TEE kind.
        (LogEntryKind::Violation, json!({"event": "bogus"})),
        (
            LogEntryKind::MembershipChange,
            json!({"op": "demote", "id": 1, "actor": "a"}),
        ),
        (
            LogEntryKind::Action,
            json!({"action": "borrow", "lent_cpu_millicores": 1, "was": 0}),
        ),
        (
            LogEntryKind::HostChange,
            json!({"op": "put", "actor": "a", "attestation_status": "s", "tee": "sgx",
                "capacity": {"cpu_millicores": 0, "memory_bytes": 0, "egress_bits_per_sec": 0,
                    "ingress_bits_per_sec": 0, "gpu_percent": 0}}),
        ),
        (LogEntryKind::Migration, json!({"from": "h1"})),
        (LogEntryKind::LogKey, json!(null)),
    ];
    for (kind, v) in refused {
        let e = LogDetail::from_value(kind, v.clone()).expect_err(&v.to_string());
        assert!(e.to_string().contains(kind.as_str()), "{e}");
    }
    // In format 1 the same quantity was a float; an integer there would be another leaf.
    let e = LogDetail::from_value_as(
        LogEntryKind::Violation,
        LeafFormat::V1,
        json!({"event": "over_limit", "cpu_millicores": 1, "limit_cpu_millicores": 1,
            "seq": 1, "window_end_ms": 1}),
    )
    .expect_err("integer in format 1");
    assert!(e.to_string().contains("leaf format 1"), "{e}");
    // A format-1 value that does not convert exactly is refused, not rounded.
    let mut d: serde_json::Value = serde_json::from_str(GOLDEN[9]).expect("json");
    d["detail"]["divergence_pct_max"] = json!(1.234);
    assert!(serde_json::from_value::<LogEntry>(d).is_err());
    // And an entry holding one does not load (no silent re-encoding into another leaf).
    let entry = json!({"index": 0, "at_ms": 1, "kind": "policy_change", "subject": "p",
        "detail": {"op": "put", "version": 1, "actor": "a", "source_sha256": "ab", "extra": 1}});
    let e = serde_json::from_value::<LogEntry>(entry).expect_err("extra field");
    assert!(e.to_string().contains("attestation log entry 0"), "{e}");
}
