//! Live migration on this host's stream (docs/protocol.md "Live migration"): each step is
//! sent from the replicated state (`state/live.rs`), so whichever controller holds the
//! stream — the leader's or not, before or after a failover — tells the agent the same thing:
//!
//! - target of a `preparing` migration → `MigrateIn` (its plan under the new epoch);
//! - source of a `transferring` one → `MigrateOut` to the target's address;
//! - either end of the newest finished migration of an enclave → `MigrationEnd` (sent before
//!   the plan that follows a commit, so the source raises its epoch floor first); after a
//!   commit the target is also asked for the enclave's evidence (`AttestNow`): what it sent
//!   before the commit was refused, the enclave not being placed there yet.
//!
//! Each is sent once per stream (an agent that reconnects is told again; its steps are
//! idempotent). What the agents report back becomes the next command: the target `ready` →
//! `MigrateReady`, the source `completed` → `MigrateCommit`, a failure on either →
//! `MigrateAbort`; the source's figures → `MigrateProgress` at most every
//! [`PROGRESS_EVERY`]. Every one is re-checked at apply.

use std::collections::HashSet;
use std::time::{Duration, Instant};

use tribune_proto::v1 as pb;

use super::{Session, SessionError, Tx, send, wall_ms};
use crate::attest::evidence::{self, MoveEvidenceError};
use crate::attest::plan::plan_for;
use crate::state::{Command, LiveMigration, LivePhase, LiveProgress, Placement, State};

/// How often the source's figures are written through Raft, per stream.
pub const PROGRESS_EVERY: Duration = Duration::from_millis(250);
/// A finished migration's `MigrationEnd` is sent to a reconnecting agent for this long.
const END_TOLD_FOR_MS: i64 = 10 * 60 * 1000;

/// What this stream told its agent, and when it last wrote figures.
#[derive(Debug, Default)]
pub struct LiveStream {
    sent: HashSet<(String, Step)>,
    progress_at: Option<Instant>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Step {
    In,
    Out,
    End,
}

/// What `host`'s agent must be told now: (migration, step), in order. Pure.
pub fn due(state: &State, host: &str, now_ms: i64) -> Vec<(LiveMigration, Step)> {
    let mut out = Vec::new();
    // Newest first: the first of each enclave is its newest.
    let mut seen: HashSet<&str> = HashSet::new();
    for m in state.live_done.iter().rev() {
        if m.ended_ms
            .is_some_and(|t| now_ms.saturating_sub(t) > END_TOLD_FOR_MS)
        {
            break;
        }
        let newest = seen.insert(m.enclave.as_str()) && !state.live.contains_key(&m.enclave);
        if newest && (m.from == host || m.to == host) {
            out.push((m.clone(), Step::End));
        }
    }
    for m in state.live.values() {
        match m.phase {
            LivePhase::Preparing if m.to == host => out.push((m.clone(), Step::In)),
            LivePhase::Transferring if m.from == host => out.push((m.clone(), Step::Out)),
            _ => {}
        }
    }
    out
}

/// The enclave's plan as the target will run it: placed there under the next epoch. Built
/// from a state holding only that enclave's records (a copy of the whole state would hold
/// the log). Pure.
pub fn target_plan(
    state: &State,
    m: &LiveMigration,
    policies: &tribune_policy::PolicySet,
    now_ms: i64,
) -> Option<pb::EnclavePlan> {
    let mut e = state.enclaves.get(&m.enclave)?.clone();
    e.placement = Some(Placement {
        host: m.to.clone(),
        epoch: m.epoch + 1,
    });
    let mut one = State::default();
    if let Some(a) = state.allocations.get(&m.enclave) {
        one.allocations.insert(m.enclave.clone(), a.clone());
    }
    if let Some(s) = state.status.get(&m.enclave) {
        one.status.insert(m.enclave.clone(), s.clone());
    }
    one.enclaves.insert(m.enclave.clone(), e);
    plan_for(&one, policies, &m.to, now_ms).enclaves.pop()
}

impl Session {
    /// Sends this host's agent the migration steps the state asks of it and it was not told.
    pub(super) async fn push_migrations(&mut self, tx: &Tx) -> Result<(), SessionError> {
        let now = wall_ms();
        let due = {
            let st = self.state();
            if st.live.is_empty() && st.live_done.is_empty() {
                return Ok(());
            }
            due(&st, &self.host, now)
        };
        for (m, step) in due {
            if self.live.sent.contains(&(m.id.clone(), step)) {
                continue;
            }
            let body = match step {
                Step::In => {
                    let (set, _) = self.policy_set();
                    let Some(plan) = target_plan(&self.state(), &m, &set, now) else {
                        continue;
                    };
                    pb::controller_message::Body::MigrateIn(pb::MigrateIn {
                        migration_id: m.id.clone(),
                        plan: Some(plan),
                        listen: m.listen.clone(),
                        // A record without one (written before the check) sends none: its
                        // target's evidence cannot bind it and the migration rolls back.
                        nonce: hex::decode(&m.nonce).unwrap_or_default(),
                    })
                }
                Step::Out => pb::controller_message::Body::MigrateOut(pb::MigrateOut {
                    migration_id: m.id.clone(),
                    enclave_id: m.enclave.clone(),
                    uri: format!("tcp:{}", m.listen),
                    downtime_limit_ms: self.controller.config.migration.downtime_limit_ms,
                    max_bandwidth_bytes_per_sec: self
                        .controller
                        .config
                        .migration
                        .max_bandwidth_bytes_per_sec,
                }),
                Step::End => {
                    let committed = m.phase == LivePhase::Committed;
                    pb::controller_message::Body::MigrationEnd(pb::MigrationEnd {
                        migration_id: m.id.clone(),
                        enclave_id: m.enclave.clone(),
                        committed,
                        new_epoch: if committed { m.epoch + 1 } else { m.epoch },
                        reason: m.reason.clone(),
                    })
                }
            };
            tracing::info!(host = %self.host, migration = %m.id, enclave = %m.enclave, ?step, "migration step sent");
            if self.live.sent.len() >= 4096 {
                self.live.sent.clear();
            }
            self.live.sent.insert((m.id.clone(), step));
            send(tx, body).await?;
            // Gone from here: its reports on this stream stop counting (a later return brings
            // new keys).
            if step == Step::End && m.phase == LivePhase::Committed && m.from == self.host {
                self.ledger.untrack(&m.enclave);
            }
            // Arrived here: the evidence the target's agent sent while it was not yet placed
            // here was refused (`not placed`); ask again now that it is. Tracked here already,
            // it is from an earlier stay on this host, under keys the agent dropped when the
            // enclave left (a VM migrated back and forth): untracked, and asked all the same.
            if step == Step::End && m.phase == LivePhase::Committed && m.to == self.host {
                self.ledger.untrack(&m.enclave);
                send(
                    tx,
                    pb::controller_message::Body::AttestNow(pb::AttestNow {
                        enclave_ids: vec![m.enclave.clone()],
                        nonce: self.exchange.nonce().to_vec(),
                    }),
                )
                .await?;
            }
        }
        Ok(())
    }

    /// An agent's report on a migration it takes part in: the next step, through Raft, in
    /// the background (the stream does not wait for it).
    pub(super) fn on_migration_progress(&mut self, p: pb::MigrationProgress) {
        tracing::debug!(host = %self.host, migration = %p.migration_id, enclave = %p.enclave_id, role = %p.role, status = %p.status, transferred = p.transferred_bytes, remaining = p.remaining_bytes, downtime_ms = p.downtime_ms, error = %p.error, "migration progress");
        let m = {
            let st = self.state();
            match st.live.get(&p.enclave_id) {
                Some(m) if m.id == p.migration_id => m.clone(),
                _ => {
                    tracing::debug!(host = %self.host, migration = %p.migration_id, "progress of a migration not under way: ignored");
                    return;
                }
            }
        };
        // The target's `ready` counts only with its evidence for this migration verified.
        let checked = (p.role == "target"
            && p.status == "ready"
            && m.to == self.host
            && m.phase == LivePhase::Preparing)
            .then(|| self.target_evidence(&m, p.evidence.as_ref()));
        let Some(cmd) = next_command(&m, &self.host, &p, checked, wall_ms()) else {
            return;
        };
        let figures = matches!(cmd, Command::MigrateProgress { .. });
        if figures {
            if self
                .live
                .progress_at
                .is_some_and(|t| t.elapsed() < PROGRESS_EVERY)
            {
                return;
            }
            self.live.progress_at = Some(Instant::now());
        } else {
            tracing::info!(host = %self.host, migration = %m.id, enclave = %m.enclave, role = %p.role, status = %p.status, error = %p.error, "migration step reported");
        }
        let controller = self.controller.clone();
        let host = self.host.clone();
        tokio::spawn(async move {
            // A step that cannot be written now is tried again; a migration stuck for want of
            // it is rolled back by the leader's deadline (`crate::live`).
            let tries = if figures { 1 } else { 5 };
            for i in 0..tries {
                match controller.write(vec![cmd.clone()]).await {
                    Ok(_) => return,
                    Err(e) if i + 1 == tries => {
                        tracing::warn!(%host, "writing a migration step: {e}");
                    }
                    Err(_) => tokio::time::sleep(Duration::from_millis(200)).await,
                }
            }
        });
    }
}

impl Session {
    /// The target's evidence in its `ready` for `m`: the waiting VM's report, verified as any
    /// evidence (the verifiers, the enclave's expected measurements, its policies' `attest`
    /// knobs) and bound to the migration's fresh nonce. `Ok`: the measurement it was verified
    /// to.
    fn target_evidence(
        &mut self,
        m: &LiveMigration,
        ev: Option<&pb::Evidence>,
    ) -> Result<String, MoveEvidenceError> {
        let ev = ev.ok_or(MoveEvidenceError::Missing)?;
        if ev.enclave_id != m.enclave {
            return Err(MoveEvidenceError::OtherEnclave {
                got: ev.enclave_id.clone(),
                want: m.enclave.clone(),
            });
        }
        let nonce: [u8; 32] = hex::decode(&m.nonce)
            .ok()
            .and_then(|n| n.try_into().ok())
            .ok_or(MoveEvidenceError::NoNonce)?;
        let (set, _) = self.policy_set();
        let (expected, identity) = {
            let st = self.state();
            let e = st.enclaves.get(&m.enclave);
            let prior = st
                .status
                .get(&m.enclave)
                .and_then(|s| s.attestation.clone());
            (
                e.map(|e| e.expected_measurements.clone())
                    .unwrap_or_default(),
                e.map(|e| crate::attest::decide::identity(e, prior.as_ref())),
            )
        };
        let cx = self.verify_context(identity.and_then(|i| set.attest_knobs(&i)));
        evidence::verify_for_move(cx, &self.verifiers, &self.exchange, ev, &expected, &nonce)
    }
}

/// The command an agent's report on `m` calls for, from `host`'s agent. A target's `ready`
/// needs `checked`: its evidence for this migration verified (the measurement) or refused
/// (why: the migration rolls back, the log says so). Pure.
pub fn next_command(
    m: &LiveMigration,
    host: &str,
    p: &pb::MigrationProgress,
    checked: Option<Result<String, MoveEvidenceError>>,
    at_ms: i64,
) -> Option<Command> {
    let (enclave, id) = (m.enclave.clone(), m.id.clone());
    let failed = matches!(p.status.as_str(), "failed" | "cancelled" | "cancelling");
    match p.role.as_str() {
        "target" if m.to == host => {
            if failed {
                Some(Command::MigrateAbort {
                    enclave,
                    id,
                    reason: format!("the target {host} failed: {}", p.error),
                    at_ms,
                })
            } else if p.status == "ready" && m.phase == LivePhase::Preparing {
                Some(match checked {
                    Some(Ok(measurement)) => Command::MigrateReady {
                        enclave,
                        id,
                        measurement,
                        at_ms,
                    },
                    Some(Err(why)) => Command::MigrateAbort {
                        enclave,
                        id,
                        reason: format!(
                            "the target {host} failed attestation for this migration: {why}"
                        ),
                        at_ms,
                    },
                    None => Command::MigrateAbort {
                        enclave,
                        id,
                        reason: format!("the target {host}'s evidence was not checked"),
                        at_ms,
                    },
                })
            } else {
                None
            }
        }
        "source" if m.from == host => {
            let progress = progress_of(p);
            if failed {
                Some(Command::MigrateAbort {
                    enclave,
                    id,
                    reason: format!(
                        "the source {host} reported {}: {}",
                        p.status,
                        if p.error.is_empty() {
                            "no detail"
                        } else {
                            &p.error
                        }
                    ),
                    at_ms,
                })
            } else if p.status == "completed" {
                Some(Command::MigrateCommit {
                    enclave,
                    id,
                    progress,
                    at_ms,
                })
            } else {
                Some(Command::MigrateProgress {
                    enclave,
                    id,
                    progress,
                    at_ms,
                })
            }
        }
        _ => None,
    }
}

fn progress_of(p: &pb::MigrationProgress) -> LiveProgress {
    LiveProgress {
        status: p.status.clone(),
        transferred_bytes: p.transferred_bytes,
        remaining_bytes: p.remaining_bytes,
        total_bytes: p.total_bytes,
        dirty_pages_rate: p.dirty_pages_rate,
        mbps: if p.mbps.is_finite() { p.mbps } else { 0.0 },
        expected_downtime_ms: p.expected_downtime_ms,
        downtime_ms: p.downtime_ms,
        total_time_ms: p.total_time_ms,
    }
}

#[cfg(test)]
#[path = "migrate_tests.rs"]
mod tests;
