//! Live-migration messages of the attestation stream in the agent's terms, and back: the
//! controllers' `MigrateIn`/`MigrateOut`/`MigrationEnd` become [`LinkEvent`]s, the agent's
//! progress becomes `MigrationProgress` (docs/protocol.md "Live migration").

use tribune_proto::v1 as pb;

use crate::link::plan_from_pb;
use crate::link_error::PlanError;
use crate::link_messages::{LinkEvent, MigrationReport};
use crate::runtime::migration::MigrateOptions;

/// A controller's migration step as the agent's event; `None` for other messages.
pub fn event_from_pb(body: &pb::controller_message::Body) -> Option<Result<LinkEvent, PlanError>> {
    use pb::controller_message::Body;
    Some(match body {
        Body::MigrateIn(m) => {
            let e = m.plan.clone().unwrap_or_default();
            let one = pb::Plan {
                enclaves: vec![e.clone()],
                ..pb::Plan::default()
            };
            plan_from_pb(&one).map(|mut p| LinkEvent::MigrateIn {
                migration_id: m.migration_id.clone(),
                enclave: e.enclave_id.clone(),
                plan: Box::new(p.enclaves.remove(&e.enclave_id).unwrap_or_default()),
                listen: m.listen.clone(),
            })
        }
        Body::MigrateOut(m) => {
            let d = MigrateOptions::default();
            let or = |v: u64, default: u64| if v == 0 { default } else { v };
            Ok(LinkEvent::MigrateOut {
                migration_id: m.migration_id.clone(),
                enclave: m.enclave_id.clone(),
                uri: m.uri.clone(),
                opts: MigrateOptions {
                    downtime_limit_ms: or(m.downtime_limit_ms, d.downtime_limit_ms),
                    max_bandwidth_bytes_per_sec: or(
                        m.max_bandwidth_bytes_per_sec,
                        d.max_bandwidth_bytes_per_sec,
                    ),
                },
            })
        }
        Body::MigrationEnd(m) => Ok(LinkEvent::MigrationEnd {
            migration_id: m.migration_id.clone(),
            enclave: m.enclave_id.clone(),
            committed: m.committed,
            new_epoch: m.new_epoch,
            reason: m.reason.clone(),
        }),
        _ => return None,
    })
}

/// The agent's progress report as the stream's message.
pub fn progress_to_pb(r: MigrationReport) -> pb::MigrationProgress {
    let p = r.progress;
    pb::MigrationProgress {
        migration_id: r.migration_id,
        enclave_id: r.enclave,
        role: r.role.to_string(),
        status: p.status,
        transferred_bytes: p.transferred_bytes,
        remaining_bytes: p.remaining_bytes,
        total_bytes: p.total_bytes,
        dirty_pages_rate: p.dirty_pages_rate,
        mbps: p.mbps,
        expected_downtime_ms: p.expected_downtime_ms,
        downtime_ms: p.downtime_ms.unwrap_or(0),
        total_time_ms: p.total_time_ms,
        error: p.error.unwrap_or_default(),
        evidence: None,
    }
}

/// How many migrations' nonces are kept (a target is told of few at once).
const NONCES_MAX: usize = 64;

/// The fresh nonce of each migration in this agent was told of (`MigrateIn.nonce`), by
/// migration id: the target's `ready` carries the waiting VM's evidence bound to it, which the
/// controllers verify before the source sends anything (docs/protocol.md "Live migration").
#[derive(Debug, Default)]
pub struct MoveNonces(std::collections::BTreeMap<String, [u8; 32]>);

impl MoveNonces {
    /// Notes a `MigrateIn`'s nonce (one of another length is not kept: that `ready` then
    /// carries no evidence and the controllers roll the migration back) and forgets the
    /// nonce of a migration that ended.
    pub fn note(&mut self, body: &pb::controller_message::Body) {
        use pb::controller_message::Body;
        match body {
            Body::MigrateIn(m) => {
                if let Ok(n) = <[u8; 32]>::try_from(m.nonce.as_slice()) {
                    if self.0.len() >= NONCES_MAX && !self.0.contains_key(&m.migration_id) {
                        self.0.pop_first();
                    }
                    self.0.insert(m.migration_id.clone(), n);
                }
            }
            Body::MigrationEnd(m) => {
                self.0.remove(&m.migration_id);
            }
            _ => {}
        }
    }

    /// The nonce a report must carry evidence for: a target's `ready` of a migration with one.
    /// (The test fault `stale-move-evidence` binds the stream's nonce instead.)
    pub fn for_report(&self, r: &MigrationReport, stream_nonce: &[u8; 32]) -> Option<[u8; 32]> {
        let n = (r.role == "target" && r.progress.status == "ready")
            .then(|| self.0.get(&r.migration_id).copied())
            .flatten()?;
        if crate::test_fault::active(crate::test_fault::Fault::StaleMoveEvidence) {
            return Some(*stream_nonce);
        }
        Some(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plan::LaunchSpec;
    use crate::runtime::migration::MigrationProgress;

    #[test]
    fn migrate_in_carries_the_plan_under_the_new_epoch() {
        let body = pb::controller_message::Body::MigrateIn(pb::MigrateIn {
            migration_id: "m1".into(),
            plan: Some(pb::EnclavePlan {
                enclave_id: "vm".into(),
                placement_epoch: 3,
                cpu_quota_millicores: 500,
                launch_json: r#"{"qemu":{"memory_mib":64}}"#.into(),
                ..pb::EnclavePlan::default()
            }),
            listen: "127.0.0.1:4444".into(),
            nonce: vec![5; 32],
        });
        let Some(Ok(LinkEvent::MigrateIn {
            migration_id,
            enclave,
            plan,
            listen,
        })) = event_from_pb(&body)
        else {
            panic!("not a MigrateIn");
        };
        assert_eq!((migration_id.as_str(), enclave.as_str()), ("m1", "vm"));
        assert_eq!(listen, "127.0.0.1:4444");
        assert_eq!(plan.placement_epoch, 3);
        assert_eq!(plan.limits.cpu_millicores, Some(500));
        assert!(matches!(
            plan.launch,
            Some(LaunchSpec::Qemu { memory_mib: 64, .. })
        ));
    }

    #[test]
    fn migrate_out_defaults_and_end() {
        let body = pb::controller_message::Body::MigrateOut(pb::MigrateOut {
            migration_id: "m1".into(),
            enclave_id: "vm".into(),
            uri: "tcp:10.0.0.2:4444".into(),
            downtime_limit_ms: 0,
            max_bandwidth_bytes_per_sec: 5,
        });
        let Some(Ok(LinkEvent::MigrateOut { opts, uri, .. })) = event_from_pb(&body) else {
            panic!("not a MigrateOut");
        };
        assert_eq!(uri, "tcp:10.0.0.2:4444");
        assert_eq!(
            opts.downtime_limit_ms,
            MigrateOptions::default().downtime_limit_ms
        );
        assert_eq!(opts.max_bandwidth_bytes_per_sec, 5);
        let end = pb::controller_message::Body::MigrationEnd(pb::MigrationEnd {
            migration_id: "m1".into(),
            enclave_id: "vm".into(),
            committed: true,
            new_epoch: 4,
            reason: String::new(),
        });
        assert!(matches!(
            event_from_pb(&end),
            Some(Ok(LinkEvent::MigrationEnd {
                committed: true,
                new_epoch: 4,
                ..
            }))
        ));
        let other = pb::controller_message::Body::Credit(pb::Credit { messages: 1 });
        assert!(event_from_pb(&other).is_none());
    }

    #[test]
    fn progress_goes_out_with_its_figures() {
        let m = progress_to_pb(MigrationReport {
            migration_id: "m1".into(),
            enclave: "vm".into(),
            role: "source",
            progress: MigrationProgress {
                status: "completed".into(),
                transferred_bytes: 10,
                downtime_ms: Some(4),
                ..MigrationProgress::default()
            },
        });
        assert_eq!(
            (m.status.as_str(), m.role.as_str()),
            ("completed", "source")
        );
        assert_eq!((m.transferred_bytes, m.downtime_ms), (10, 4));
    }

    #[test]
    fn a_targets_ready_is_bound_to_its_migrations_nonce_until_it_ends() {
        use pb::controller_message::Body;
        let into = |id: &str, nonce: Vec<u8>| {
            Body::MigrateIn(pb::MigrateIn {
                migration_id: id.into(),
                nonce,
                ..pb::MigrateIn::default()
            })
        };
        let report = |id: &str, role: &'static str, status: &str| MigrationReport {
            migration_id: id.into(),
            enclave: "vm".into(),
            role,
            progress: MigrationProgress {
                status: status.into(),
                ..MigrationProgress::default()
            },
        };
        let mut n = MoveNonces::default();
        n.note(&into("m1", vec![5; 32]));
        n.note(&into("m2", vec![5; 31]));
        assert_eq!(
            n.for_report(&report("m1", "target", "ready"), &[0; 32]),
            Some([5; 32])
        );
        assert_eq!(
            n.for_report(&report("m1", "target", "failed"), &[0; 32]),
            None
        );
        assert_eq!(
            n.for_report(&report("m1", "source", "ready"), &[0; 32]),
            None
        );
        assert_eq!(
            n.for_report(&report("m2", "target", "ready"), &[0; 32]),
            None,
            "a nonce of the wrong length is not kept"
        );
        n.note(&Body::MigrationEnd(pb::MigrationEnd {
            migration_id: "m1".into(),
            ..pb::MigrationEnd::default()
        }));
        assert_eq!(
            n.for_report(&report("m1", "target", "ready"), &[0; 32]),
            None
        );
        for i in 0..(NONCES_MAX + 10) {
            n.note(&into(&format!("x{i:03}"), vec![1; 32]));
        }
        assert_eq!(n.0.len(), NONCES_MAX, "bounded");
    }
}
