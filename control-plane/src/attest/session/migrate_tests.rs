//! Which step each host is told, and what each report becomes.

use super::*;
use crate::state::{LiveCause, LiveMigration};

fn m(id: &str, enclave: &str, phase: LivePhase) -> LiveMigration {
    LiveMigration {
        id: id.into(),
        enclave: enclave.into(),
        from: "h1".into(),
        to: "h2".into(),
        epoch: 3,
        listen: "10.0.0.2:4444".into(),
        phase,
        cause: LiveCause::Request,
        actor: "op".into(),
        forced: false,
        prior_state: crate::state::EnclaveState::Running,
        started_ms: 1000,
        ready_ms: None,
        ended_ms: (!matches!(phase, LivePhase::Preparing | LivePhase::Transferring))
            .then_some(2000),
        reason: String::new(),
        progress: LiveProgress::default(),
        nonce: String::new(),
        target_measurement: String::new(),
        verdict_max_age_ms: 0,
    }
}

fn steps(s: &State, host: &str, now: i64) -> Vec<(String, Step)> {
    due(s, host, now)
        .into_iter()
        .map(|(m, step)| (m.id, step))
        .collect()
}

#[test]
fn the_target_is_told_to_wait_and_the_source_to_send_only_once_it_is_ready() {
    let mut s = State::default();
    s.live
        .insert("vm".into(), m("a", "vm", LivePhase::Preparing));
    assert_eq!(steps(&s, "h2", 1500), [("a".to_string(), Step::In)]);
    assert!(steps(&s, "h1", 1500).is_empty());
    assert!(steps(&s, "h3", 1500).is_empty());
    s.live
        .insert("vm".into(), m("a", "vm", LivePhase::Transferring));
    assert_eq!(steps(&s, "h1", 1500), [("a".to_string(), Step::Out)]);
    assert!(steps(&s, "h2", 1500).is_empty());
}

#[test]
fn both_ends_hear_how_the_newest_migration_of_an_enclave_ended() {
    let mut s = State::default();
    s.live_done.push_back(m("old", "vm", LivePhase::RolledBack));
    s.live_done.push_back(m("new", "vm", LivePhase::Committed));
    s.live_done
        .push_back(m("other", "x", LivePhase::RolledBack));
    for host in ["h1", "h2"] {
        let got = steps(&s, host, 2500);
        assert!(got.contains(&("new".to_string(), Step::End)), "{got:?}");
        assert!(got.contains(&("other".to_string(), Step::End)), "{got:?}");
        // An older end would undo a newer migration's step: never told.
        assert!(!got.iter().any(|(id, _)| id == "old"), "{got:?}");
    }
    // Not while another migration of the enclave is under way, nor long after.
    s.live
        .insert("vm".into(), m("next", "vm", LivePhase::Preparing));
    assert!(!steps(&s, "h1", 2500).iter().any(|(id, _)| id == "new"));
    assert!(steps(&s, "h1", 2000 + END_TOLD_FOR_MS + 1).is_empty());
}

fn report(role: &str, status: &str) -> pb::MigrationProgress {
    pb::MigrationProgress {
        migration_id: "a".into(),
        enclave_id: "vm".into(),
        role: role.into(),
        status: status.into(),
        transferred_bytes: 7,
        downtime_ms: 3,
        error: "boom".into(),
        ..pb::MigrationProgress::default()
    }
}

#[test]
fn each_report_becomes_the_next_step_only_from_the_right_host() {
    let preparing = m("a", "vm", LivePhase::Preparing);
    let moving = m("a", "vm", LivePhase::Transferring);
    let kind = |c: Option<Command>| match c {
        None => "none",
        Some(Command::MigrateReady { .. }) => "ready",
        Some(Command::MigrateCommit { progress, .. }) => {
            assert_eq!((progress.transferred_bytes, progress.downtime_ms), (7, 3));
            "commit"
        }
        Some(Command::MigrateAbort { reason, .. }) => {
            assert!(reason.contains("boom"), "{reason}");
            "abort"
        }
        Some(Command::MigrateProgress { .. }) => "progress",
        Some(_) => "other",
    };
    let cases = [
        (&preparing, "h2", "target", "ready", "ready"),
        (&moving, "h2", "target", "ready", "none"),
        (&preparing, "h1", "target", "ready", "none"),
        (&preparing, "h2", "target", "failed", "abort"),
        (&moving, "h1", "source", "active", "progress"),
        (&moving, "h1", "source", "completed", "commit"),
        (&moving, "h2", "source", "completed", "none"),
        (&moving, "h1", "source", "failed", "abort"),
        (&moving, "h1", "source", "cancelled", "abort"),
        (&moving, "h1", "observer", "completed", "none"),
    ];
    for (mig, host, role, status, want) in cases {
        let checked = Some(Ok("m1".to_string()));
        let got = kind(next_command(mig, host, &report(role, status), checked, 5));
        assert_eq!(got, want, "{host} {role} {status}");
    }
}

#[test]
fn a_targets_ready_counts_only_with_its_evidence_verified() {
    let preparing = m("a", "vm", LivePhase::Preparing);
    let ready = report("target", "ready");
    match next_command(&preparing, "h2", &ready, Some(Ok("abcd".into())), 5) {
        Some(Command::MigrateReady { measurement, .. }) => assert_eq!(measurement, "abcd"),
        other => panic!("{other:?}"),
    }
    let refused = Some(Err(MoveEvidenceError::Untrusted(vec![
        "evidence does not bind the fresh nonce".to_string(),
    ])));
    match next_command(&preparing, "h2", &ready, refused, 5) {
        Some(Command::MigrateAbort { reason, .. }) => {
            assert!(
                reason.contains("h2 failed attestation") && reason.contains("fresh nonce"),
                "{reason}"
            );
        }
        other => panic!("{other:?}"),
    }
    assert!(
        matches!(
            next_command(&preparing, "h2", &ready, None, 5),
            Some(Command::MigrateAbort { .. })
        ),
        "never ready unchecked"
    );
}
