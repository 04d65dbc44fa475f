//! Live migration of QEMU enclaves in the replicated state (docs/protocol.md "Live
//! migration"): each step is a command, re-checked at apply, so any controller — the one that
//! started it or a new leader after a failover — sees where a migration stands and the
//! sessions holding the two hosts' streams send each agent its step from the state alone.
//!
//! ```text
//! MigrateStart ─▶ preparing ─ MigrateReady ─▶ transferring ─ MigrateCommit ─▶ committed
//!                     │                            │            (placement: to @ epoch + 1)
//!                     └──────── MigrateAbort ──────┴──▶ rolled_back (source resumes @ epoch)
//! ```
//!
//! Commit and abort exclude each other at apply: whichever is applied first ends the
//! migration, the other is refused. So the source resumes (rollback) or the target resumes
//! (its plan names the enclave under the new epoch), never both.

use std::collections::VecDeque;

use serde::{Deserialize, Serialize};
use tribune_migration::{Freshness, filter};

use super::schedule::cluster_view_of;
use super::{
    EnclaveState, LogDetail, MigrationDetail, Outcome, Placement, State, enclave_spec, restartable,
};

/// Finished migrations kept in the state (the newest; `GET /v1/migrations`).
pub const LIVE_HISTORY_MAX: usize = 256;

/// Where a live migration stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum LivePhase {
    /// The target agent is told to start the VM paused, waiting for its state.
    Preparing,
    /// The target is ready; the source sends the state.
    Transferring,
    /// Placement moved to the target under the new epoch: it runs there.
    Committed,
    /// Ended before a commit: the source resumes under its epoch, the target's copy is gone.
    RolledBack,
}

/// Why a migration was started.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum LiveCause {
    /// An operator's `POST /v1/enclaves/{id}/migrate`.
    Request,
    /// Its host is draining.
    Drain,
    /// The policy ladder's `migrate` step.
    Policy,
}

/// QEMU's figures for a migration, as the source reports them (`query-migrate`).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(default)]
pub struct LiveProgress {
    /// QEMU's status: setup, active, device, completed, failed, cancelled.
    pub status: String,
    pub transferred_bytes: u64,
    pub remaining_bytes: u64,
    pub total_bytes: u64,
    pub dirty_pages_rate: u64,
    pub mbps: f64,
    pub expected_downtime_ms: u64,
    /// Once completed: how long the guest was paused.
    pub downtime_ms: u64,
    pub total_time_ms: u64,
}

/// One live migration, under way or finished.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct LiveMigration {
    pub id: String,
    pub enclave: String,
    pub from: String,
    pub to: String,
    /// The placement epoch it runs under on `from`; on `to` it runs under `epoch + 1`.
    pub epoch: u64,
    /// Where the target's QEMU listens for the state (`ADDR:PORT`).
    pub listen: String,
    pub phase: LivePhase,
    pub cause: LiveCause,
    pub actor: String,
    /// Started with `force` (a policy suspension or the cool-down overridden).
    pub forced: bool,
    /// The enclave's state before it became `migrating` (restored on a rollback).
    pub prior_state: EnclaveState,
    pub started_ms: i64,
    pub ready_ms: Option<i64>,
    pub ended_ms: Option<i64>,
    /// Why it rolled back (empty otherwise).
    pub reason: String,
    pub progress: LiveProgress,
    /// The fresh nonce (hex, 32 bytes) the target's evidence must bind before anything moves
    /// (`MigrateIn.nonce`; empty in records written before it).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub nonce: String,
    /// The measurement the target's evidence, bound to `nonce`, was verified to (set when the
    /// target is ready).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub target_measurement: String,
    /// How old the target's verdict (`ready_ms`) may be at switch-over, in milliseconds: the
    /// enclave's policy's `attest { every }` (0: its policies set none). A commit later than
    /// that rolls back (`migrate_commit`).
    #[serde(default, skip_serializing_if = "is_zero")]
    pub verdict_max_age_ms: i64,
}

fn is_zero(v: &i64) -> bool {
    *v == 0
}

/// Why `m` may not go on at `at_ms`: the target's verdict (its `ready`) is older than the
/// enclave's policies allow. Pure.
fn verdict_too_old(m: &LiveMigration, at_ms: i64) -> Option<String> {
    let ready = m.ready_ms?;
    let age = at_ms.saturating_sub(ready);
    (m.verdict_max_age_ms > 0 && age > m.verdict_max_age_ms).then(|| {
        format!(
            "the target {}'s verdict for this migration was {age} ms old before switch-over; the enclave's policy asks `attest {{ every {} ms }}`",
            m.to, m.verdict_max_age_ms
        )
    })
}

impl LiveMigration {
    pub fn is_live(&self) -> bool {
        matches!(self.phase, LivePhase::Preparing | LivePhase::Transferring)
    }
}

/// A requested migration, as `Command::MigrateStart` carries it: the proposer's settings ride
/// along so every replica applies the same rule.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LiveRequest {
    pub id: String,
    pub enclave: String,
    pub to: String,
    /// The epoch the requester read: a placement that changed since is refused.
    pub epoch: u64,
    pub listen: String,
    pub cause: LiveCause,
    pub force: bool,
    /// Migrations under way in the cluster at most (this one included).
    pub budget: u32,
    /// After a migration of the enclave ended, how long before the next (unless `force`).
    pub cooldown_ms: i64,
    /// How old the target's last sign of attestation may be.
    pub attest_max_age_ms: i64,
    pub actor: String,
    /// Fresh per migration (hex, 32 bytes): the target's evidence must bind it
    /// ([`LiveMigration::nonce`]).
    #[serde(default)]
    pub nonce: String,
    /// The enclave's policies' shortest `attest { every }` in milliseconds (0: none), as the
    /// proposer read them: how old the target's verdict may be at switch-over. The apply
    /// derives its own from the replicated policies ([`LiveMigration::verdict_max_age_ms`]).
    #[serde(default)]
    pub verdict_max_age_ms: i64,
}

/// The target's most recent sign of trusted attestation: its agent's stream being recorded
/// (`last_heartbeat_ms`) or a trusted verdict on evidence its agent relayed. Pure.
pub fn host_attested_at(state: &State, host: &str) -> Option<i64> {
    let h = state.hosts.get(host)?;
    let verdicts = state
        .status
        .values()
        .filter_map(|s| s.attestation.as_ref())
        .filter(|a| a.trusted && a.host == host)
        .map(|a| a.verified_at_ms);
    verdicts.chain([h.last_heartbeat_ms]).max()
}

/// Whether `to` may take enclave `id` by live migration now: the host exists, is trusted and
/// freshly attested, schedulable, not the source, and has room for the enclave's guarantee
/// (TEE kind, generation, selector: the scheduler's own filters). The reason in words
/// otherwise, as [`Outcome`]. Pure.
pub fn check_target(
    state: &State,
    id: &str,
    to: &str,
    at_ms: i64,
    attest_max_age_ms: i64,
) -> Result<(), Outcome> {
    let Some(e) = state.enclaves.get(id) else {
        return Err(Outcome::NotFound {
            what: format!("enclave {id:?}"),
        });
    };
    let Some(h) = state.hosts.get(to) else {
        return Err(Outcome::NotFound {
            what: format!("host {to:?} (the migration's target)"),
        });
    };
    if e.placement.as_ref().is_some_and(|p| p.host == to) {
        return Err(Outcome::Invalid {
            reason: format!("enclave {id:?} already runs on host {to:?}"),
        });
    }
    if h.attestation_status == "untrusted" {
        return Err(Outcome::NoRoom {
            reason: format!("host {to:?} failed attestation (its status is untrusted)"),
        });
    }
    let attested = host_attested_at(state, to).unwrap_or(0);
    if attested <= 0 || at_ms.saturating_sub(attested) > attest_max_age_ms {
        return Err(Outcome::NoRoom {
            reason: if attested <= 0 {
                format!("host {to:?} has never been attested (no agent stream, no trusted verdict)")
            } else {
                format!(
                    "host {to:?} was last attested {} s ago; a target must have been within {} s",
                    at_ms.saturating_sub(attested) / 1000,
                    attest_max_age_ms / 1000
                )
            },
        });
    }
    let mut spec = enclave_spec(e);
    spec.preempt = false;
    let mut view = cluster_view_of(state, &[to]);
    view.remove(id);
    let Some(hv) = view.host(to) else {
        return Err(Outcome::NotFound {
            what: format!("host {to:?}"),
        });
    };
    let fresh = Freshness {
        now_ms: at_ms,
        attest_max_age_ms: i64::MAX,
    };
    filter::check(&view, hv, &spec, fresh).map_err(|r| Outcome::NoRoom {
        reason: tribune_migration::Unplaceable {
            enclave: spec.id.clone(),
            guarantee: spec.guarantee,
            rejections: vec![(to.to_string(), r)],
        }
        .to_string(),
    })
}

/// Whether a policy holds `id` suspended (the ladder's `suspend` or `migrate` step).
pub fn suspended_by_policy(state: &State, id: &str) -> bool {
    let ladder = state.status.get(id).map(|s| s.ladder.step);
    matches!(
        ladder,
        Some(super::Step::Suspend) | Some(super::Step::Migrate)
    ) || state.allocations.get(id).is_some_and(|a| a.suspended)
        && state
            .status
            .get(id)
            .is_none_or(|s| s.operator_hold.is_none())
}

/// Every check of a migration request against `state`, in the order the caller reads them.
/// Pure; `Ok` means `Command::MigrateStart` applies.
pub fn check_request(state: &State, r: &LiveRequest, at_ms: i64) -> Result<(), Outcome> {
    check_enclave(state, r, at_ms)?;
    check_target(state, &r.enclave, &r.to, at_ms, r.attest_max_age_ms)
}

/// The checks of a request that do not depend on its target: the enclave is a placed,
/// running QEMU enclave under the epoch read, not moving, not held by policy (unless forced),
/// past its cool-down, and the cluster's budget has room. Pure.
pub fn check_enclave(state: &State, r: &LiveRequest, at_ms: i64) -> Result<(), Outcome> {
    let id = r.enclave.as_str();
    let Some(e) = state.enclaves.get(id) else {
        return Err(Outcome::NotFound {
            what: format!("enclave {id:?}"),
        });
    };
    let Some(p) = e.placement.as_ref() else {
        return Err(Outcome::Invalid {
            reason: format!("enclave {id:?} is not placed on a host"),
        });
    };
    if restartable(e) {
        return Err(Outcome::Invalid {
            reason: format!(
                "enclave {id:?} is not a QEMU enclave: only QEMU enclaves live-migrate (a process enclave moves by stop-and-restart: drain its host)"
            ),
        });
    }
    if e.state == EnclaveState::Stopped {
        return Err(Outcome::Invalid {
            reason: format!("enclave {id:?} is stopped"),
        });
    }
    if let Some(m) = state.live.get(id) {
        return Err(Outcome::Conflict {
            what: format!(
                "enclave {id:?} is already migrating ({} from {:?} to {:?})",
                m.id, m.from, m.to
            ),
            current_version: Some(e.version),
        });
    }
    if state.moves.contains_key(id) || p.epoch != r.epoch {
        return Err(Outcome::Conflict {
            what: format!(
                "enclave {id:?} (placed on {:?} under epoch {}; the request read epoch {}{})",
                p.host,
                p.epoch,
                r.epoch,
                if state.moves.contains_key(id) {
                    ", and it is moving"
                } else {
                    ""
                }
            ),
            current_version: Some(e.version),
        });
    }
    if r.cause == LiveCause::Request && !r.force && suspended_by_policy(state, id) {
        return Err(Outcome::Conflict {
            what: format!(
                "enclave {id:?} is suspended by policy; migrating it is refused unless forced (--force, recorded in the log)"
            ),
            current_version: Some(e.version),
        });
    }
    if !r.force
        && let Some(last) = state
            .live_done
            .iter()
            .rev()
            .find(|m| m.enclave == id)
            .and_then(|m| m.ended_ms)
        && r.cooldown_ms > 0
        && at_ms.saturating_sub(last) < r.cooldown_ms
    {
        return Err(Outcome::Conflict {
            what: format!(
                "enclave {id:?} migrated {} ms ago; the cool-down is {} ms (--force overrides)",
                at_ms.saturating_sub(last),
                r.cooldown_ms
            ),
            current_version: Some(e.version),
        });
    }
    let under_way = state.live.len();
    if under_way >= r.budget as usize {
        return Err(Outcome::Conflict {
            what: format!(
                "the cluster's migration budget: {under_way} migrations under way, at most {}",
                r.budget
            ),
            current_version: None,
        });
    }
    Ok(())
}

impl State {
    /// The `Command::Migrate*` commands.
    pub(super) fn apply_live(&mut self, cmd: super::Command) -> Outcome {
        use super::Command as C;
        match cmd {
            C::MigrateStart { request, at_ms } => self.migrate_start(request, at_ms),
            C::MigrateReady {
                enclave,
                id,
                measurement,
                at_ms,
            } => self.migrate_ready(&enclave, &id, measurement, at_ms),
            C::MigrateProgress {
                enclave,
                id,
                progress,
                at_ms,
            } => self.migrate_progress(&enclave, &id, progress, at_ms),
            C::MigrateCommit {
                enclave,
                id,
                progress,
                at_ms,
            } => self.migrate_commit(&enclave, &id, progress, at_ms),
            C::MigrateAbort {
                enclave,
                id,
                reason,
                at_ms,
            } => self.migrate_abort(&enclave, &id, reason, at_ms),
            other => Outcome::Invalid {
                reason: format!("not a migration command: {other:?}"),
            },
        }
    }

    /// `Command::MigrateStart`.
    pub(super) fn migrate_start(&mut self, r: LiveRequest, at_ms: i64) -> Outcome {
        if let Err(o) = check_request(self, &r, at_ms) {
            return o;
        }
        // The bound on the target's verdict, from the replicated policies as they stand at
        // apply (not the proposer's reading).
        let verdict_max_age_ms = self
            .enclaves
            .get(&r.enclave)
            .and_then(|e| self.reattest_every_ms(e))
            .unwrap_or(0);
        let Some(e) = self.enclaves.get_mut(&r.enclave) else {
            return Outcome::NotFound {
                what: format!("enclave {:?}", r.enclave),
            };
        };
        let from = e
            .placement
            .as_ref()
            .map(|p| p.host.clone())
            .unwrap_or_default();
        let m = LiveMigration {
            id: r.id,
            enclave: r.enclave.clone(),
            from: from.clone(),
            to: r.to.clone(),
            epoch: r.epoch,
            listen: r.listen,
            phase: LivePhase::Preparing,
            cause: r.cause,
            actor: r.actor.clone(),
            forced: r.force,
            prior_state: e.state,
            started_ms: at_ms,
            ready_ms: None,
            ended_ms: None,
            reason: String::new(),
            progress: LiveProgress::default(),
            nonce: r.nonce,
            target_measurement: String::new(),
            verdict_max_age_ms,
        };
        e.state = EnclaveState::Migrating;
        e.version += 1;
        self.log.append(
            &r.enclave,
            LogDetail::Migration(MigrationDetail::LiveStart {
                id: m.id.clone(),
                from,
                to: r.to,
                epoch: r.epoch,
                cause: r.cause,
                forced: r.force,
                actor: r.actor,
            }),
            at_ms,
        );
        self.live.insert(r.enclave, m.clone());
        Outcome::Migration(Box::new(m))
    }

    /// The live migration `id` of `enclave`, or why not.
    fn live_of(&mut self, enclave: &str, id: &str) -> Result<&mut LiveMigration, Outcome> {
        match self.live.get_mut(enclave) {
            Some(m) if m.id == id => Ok(m),
            _ => Err(Outcome::Conflict {
                what: format!("migration {id:?} of enclave {enclave:?} is not under way"),
                current_version: None,
            }),
        }
    }

    /// `Command::MigrateReady`: the target's VM waits for the state, its evidence (bound to the
    /// migration's nonce) verified to `measurement`.
    pub(super) fn migrate_ready(
        &mut self,
        enclave: &str,
        id: &str,
        measurement: String,
        at_ms: i64,
    ) -> Outcome {
        let m = match self.live_of(enclave, id) {
            Ok(m) => m,
            Err(o) => return o,
        };
        if m.phase != LivePhase::Preparing {
            return Outcome::Migration(Box::new(m.clone()));
        }
        m.phase = LivePhase::Transferring;
        m.ready_ms = Some(at_ms);
        m.target_measurement = measurement;
        let out = m.clone();
        self.log.append(
            enclave,
            LogDetail::Migration(MigrationDetail::LiveReady {
                id: id.to_string(),
                to: out.to.clone(),
                listen: out.listen.clone(),
                measurement: out.target_measurement.clone(),
            }),
            at_ms,
        );
        Outcome::Migration(Box::new(out))
    }

    /// `Command::MigrateProgress`: QEMU's figures (not logged: the commit logs the last).
    pub(super) fn migrate_progress(
        &mut self,
        enclave: &str,
        id: &str,
        progress: LiveProgress,
        at_ms: i64,
    ) -> Outcome {
        match self.live_of(enclave, id) {
            Ok(m) => {
                m.progress = progress;
                // Past the bound on the target's verdict, the commit would roll back: roll
                // back now rather than after the rest of the transfer.
                if let Some(reason) = verdict_too_old(m, at_ms) {
                    return self.migrate_abort(enclave, id, reason, at_ms);
                }
                Outcome::Migration(Box::new(m.clone()))
            }
            Err(o) => o,
        }
    }

    /// `Command::MigrateCommit`: the source completed; the enclave is placed on the target
    /// under the next epoch (both hosts' plans move: the target's names it, the source's
    /// drops it). A placement that changed meanwhile (an operator's write) rolls back instead.
    pub(super) fn migrate_commit(
        &mut self,
        enclave: &str,
        id: &str,
        progress: LiveProgress,
        at_ms: i64,
    ) -> Outcome {
        let m = match self.live_of(enclave, id) {
            Ok(m) => m,
            Err(o) => return o,
        };
        if m.phase != LivePhase::Transferring {
            return Outcome::Conflict {
                what: format!("migration {id:?}: the target never said it was ready"),
                current_version: None,
            };
        }
        m.progress = progress;
        let m = m.clone();
        // The target was attested for this move when it said it was ready; its policy bounds
        // how old that verdict may be when the enclave lands there.
        if let Some(reason) = verdict_too_old(&m, at_ms) {
            return self.migrate_abort(enclave, id, reason, at_ms);
        }
        let held = self
            .status
            .get(enclave)
            .is_some_and(|s| s.operator_hold.is_some());
        let Some(e) = self.enclaves.get_mut(enclave) else {
            return self.migrate_abort(enclave, id, "the enclave was deleted".into(), at_ms);
        };
        let same = e
            .placement
            .as_ref()
            .is_some_and(|p| p.host == m.from && p.epoch == m.epoch);
        if !same || e.state == EnclaveState::Stopped {
            return self.migrate_abort(
                enclave,
                id,
                "the enclave was placed elsewhere or stopped during the migration".into(),
                at_ms,
            );
        }
        let epoch = m.epoch + 1;
        e.placement = Some(Placement {
            host: m.to.clone(),
            epoch,
        });
        e.version += 1;
        // New evidence from the target makes it running again.
        e.state = if held {
            EnclaveState::Suspended
        } else {
            EnclaveState::Pending
        };
        // It moved to a host that can honour it: the ladder's `migrate` step is carried out.
        if let Some(s) = self.status.get_mut(enclave)
            && s.ladder.step == super::Step::Migrate
        {
            s.ladder = super::Ladder::default();
            if let Some(a) = self.allocations.get_mut(enclave) {
                a.suspended = false;
            }
        }
        self.bump_plan_version(&m.from);
        self.bump_plan_version(&m.to);
        self.log.append(
            enclave,
            LogDetail::Migration(MigrationDetail::LiveCommitted {
                id: id.to_string(),
                from: m.from.clone(),
                to: m.to.clone(),
                epoch,
                transferred_bytes: m.progress.transferred_bytes,
                downtime_ms: m.progress.downtime_ms,
                total_time_ms: m.progress.total_time_ms,
            }),
            at_ms,
        );
        self.end_live(enclave, LivePhase::Committed, String::new(), at_ms)
    }

    /// `Command::MigrateAbort`: rolls back a migration not committed: the source resumes
    /// under its epoch (its plan never stopped naming it), the target tears its copy down.
    pub(super) fn migrate_abort(
        &mut self,
        enclave: &str,
        id: &str,
        reason: String,
        at_ms: i64,
    ) -> Outcome {
        let m = match self.live_of(enclave, id) {
            Ok(m) => m.clone(),
            Err(o) => return o,
        };
        if let Some(e) = self.enclaves.get_mut(enclave)
            && e.state == EnclaveState::Migrating
        {
            e.state = m.prior_state;
            e.version += 1;
        }
        self.log.append(
            enclave,
            LogDetail::Migration(MigrationDetail::LiveRolledBack {
                id: id.to_string(),
                from: m.from.clone(),
                to: m.to.clone(),
                epoch: m.epoch,
                reason: reason.clone(),
            }),
            at_ms,
        );
        self.end_live(enclave, LivePhase::RolledBack, reason, at_ms)
    }

    fn end_live(&mut self, enclave: &str, phase: LivePhase, reason: String, at_ms: i64) -> Outcome {
        let Some(mut m) = self.live.remove(enclave) else {
            return Outcome::NotFound {
                what: format!("a migration of enclave {enclave:?}"),
            };
        };
        m.phase = phase;
        m.reason = reason;
        m.ended_ms = Some(at_ms);
        push_done(&mut self.live_done, m.clone());
        Outcome::Migration(Box::new(m))
    }
}

fn push_done(done: &mut VecDeque<LiveMigration>, m: LiveMigration) {
    if done.len() >= LIVE_HISTORY_MAX {
        done.pop_front();
    }
    done.push_back(m);
}

#[cfg(test)]
#[path = "live_tests.rs"]
mod tests;
