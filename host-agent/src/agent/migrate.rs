//! Live migration of QEMU enclaves, the agent's side (docs/protocol.md "Live migration"). The
//! controllers drive it; the agent only does each step it is told, and fences by epoch:
//!
//! - target: [`Agent::migrate_in`] launches the VM (cgroups, limits and shaping first, as for
//!   any launch, but the CPU cap: [`held_for_move`]) with `-incoming tcp:ADDR:PORT -S`; it
//!   stays paused, sends no usage window (`observe.rs`), and no plan that does not
//!   name it stops it, until a plan names it — under the new placement epoch the controllers
//!   committed at switch-over — and so resumes it (`cont`); or [`Agent::abort_in`] tears it
//!   down on a rollback;
//! - source: [`Agent::migrate_out`] starts QEMU's `migrate` on the VM's second monitor and
//!   hands back the job, whose progress (`query-migrate`) goes to the controllers; after the
//!   switch-over is committed, [`Agent::migrated_away`] raises the enclave's epoch floor to the
//!   new epoch (so no plan under the old one can ever resume it here) and stops what is left;
//!   on a rollback [`Agent::rollback_out`] cancels and resumes it under the old epoch.
//!
//! Each step is idempotent per migration id (a new stream tells it again): a target already
//! waiting answers `ready` again, a source whose job runs follows it ([`Agent::rewatch_out`]).
//! A target records its migrations in (`store::INCOMING_FILE`) so a restarted agent adopts
//! the VM holding the state, and a source its migrations out (`store::OUTGOING_FILE`) so a
//! restarted agent still knows the id of the one its VM is sending; a `MigrationEnd` for
//! another migration than the one under way here is ignored (`end_applies`).

use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use super::{Agent, EventKind, Migration, handoff};
use crate::error::{AgentError, Result};
use crate::launch;
use crate::link_messages::{LinkEvent, MigrationReport, ToLink};
use crate::plan::{self, EnclavePlan, LaunchSpec, RunState};
use crate::runtime::migration::{self, MigrateOptions, MigrationProgress};
use crate::runtime::{RuntimeKind, qemu};
use crate::store::Incoming;
use crate::test_hold::{self, Hold};

/// The plan a VM migrating in waits under: paused, and without its CPU cap. With `-S` its
/// vCPUs run no instruction until the plan that names it (the commit) resumes it, so while it
/// waits the cap would bound only QEMU's own work for the move — starting, then loading the
/// state — which under a throttled enclave's cap (100m) took several times longer. The plan
/// that names it writes the cap before it resumes it (`plan::changes` puts the cap before
/// `Run`); every other limit is in place from the start.
pub(crate) fn held_for_move(wanted: &EnclavePlan) -> EnclavePlan {
    EnclavePlan {
        state: RunState::Suspend,
        limits: plan::Limits {
            cpu_millicores: None,
            ..wanted.limits
        },
        ..wanted.clone()
    }
}

impl Agent {
    /// Target: starts `name` waiting for its state on `listen` (`ADDR:PORT`), paused.
    pub async fn migrate_in(
        &mut self,
        name: &str,
        wanted: &EnclavePlan,
        listen: &str,
    ) -> Result<()> {
        self.migrate_in_as(name, wanted, listen, "").await
    }

    /// [`Agent::migrate_in`] for migration `id`, recorded (`store::INCOMING_FILE`) before the
    /// VM starts, so an agent restarted meanwhile adopts it.
    async fn migrate_in_as(
        &mut self,
        name: &str,
        wanted: &EnclavePlan,
        listen: &str,
        id: &str,
    ) -> Result<()> {
        plan::validate_name(name)?;
        if self.enclaves.contains_key(name) {
            return Err(AgentError::InvalidPlan(format!(
                "enclave {name} already runs here: it cannot also migrate in"
            )));
        }
        let seen = self.epochs.seen(name);
        if wanted.placement_epoch != 0 && wanted.placement_epoch < seen {
            return Err(AgentError::InvalidPlan(format!(
                "migration of {name} under epoch {} refused: epoch {seen} already seen here",
                wanted.placement_epoch
            )));
        }
        let spec = match &wanted.launch {
            Some(s @ LaunchSpec::Qemu { .. }) if self.cfg.runtime == RuntimeKind::Qemu => s,
            _ => {
                return Err(AgentError::InvalidPlan(format!(
                    "enclave {name}: only QEMU enclaves live-migrate, onto a QEMU agent"
                )));
            }
        };
        let checked = launch::check(&self.cfg.launch_policy, spec, &self.files)
            .map_err(|why| AgentError::InvalidPlan(format!("enclave {name}: {why}")))?;
        let held = held_for_move(wanted);
        // A VM in a network namespace gets the stream's socket from the agent (`handoff`).
        let handed = match self.net.is_some() && super::apply::wants_net(spec, &held) {
            true => Some(handoff::bind(listen).await?),
            false => None,
        };
        let uri = match &handed {
            Some(_) => handoff::DEFER.to_string(),
            None => format!("tcp:{listen}"),
        };
        self.store.set_incoming(
            name,
            Some(Incoming {
                migration_id: id.to_string(),
                plan: held.clone(),
            }),
        )?;
        if let Err(e) = self.launch(name, &held, checked, Some(&uri)).await {
            self.store.set_incoming(name, None)?;
            return Err(e);
        }
        if let Some(r) = self.enclaves.get_mut(name) {
            r.migration_id = id.to_string();
        }
        if let Some(l) = handed {
            self.handoff_in(name, l)?;
        }
        tracing::info!(enclave = name, listen, "waiting for an incoming migration");
        self.event(
            Some(name),
            EventKind::Migration {
                step: "incoming".into(),
                detail: listen.to_string(),
            },
        );
        self.announce_enclaves();
        Ok(())
    }

    /// Target: hands the stream arriving on `listener` to the VM's QEMU (`handoff`).
    fn handoff_in(&mut self, name: &str, listener: tokio::net::TcpListener) -> Result<()> {
        let monitor = self.work_dir_of(name).join(qemu::MIGRATE_SOCKET);
        let r = self
            .enclaves
            .get_mut(name)
            .ok_or_else(|| AgentError::Runtime(format!("enclave {name} is gone")))?;
        r.handoff = Some(handoff::Handoff(handoff::incoming(listener, monitor)));
        Ok(())
    }

    /// Target told again (a new stream): a VM in a namespace adopted by this agent after a
    /// restart has no hand-over task; if QEMU still waits for its stream (`inmigrate`, no
    /// `migrate-incoming` given yet), it gets one again on `listen`. A task that ran (it
    /// handed the stream over, or failed and so failed the transfer) is not run again. Never
    /// fails the step: whatever goes wrong here fails the transfer, which rolls back.
    async fn handoff_in_again(&mut self, name: &str, listen: &str) {
        let lost = self
            .enclaves
            .get(name)
            .is_some_and(|r| r.net.is_some() && r.handoff.is_none());
        if !lost {
            return;
        }
        let monitor = self.work_dir_of(name).join(qemu::MIGRATE_SOCKET);
        if !migration::waits_for_stream(&monitor).await {
            return;
        }
        match handoff::bind(listen).await {
            Ok(l) => {
                if let Err(e) = self.handoff_in(name, l) {
                    tracing::warn!(enclave = name, "migration stream hand-over: {e}");
                }
            }
            Err(e) => tracing::warn!(enclave = name, "migration stream hand-over: {e}"),
        }
    }

    /// Target, rollback: the migration failed or was abandoned; the VM is torn down.
    pub async fn abort_in(&mut self, name: &str) -> Result<()> {
        if self.migration_of(name)? != Some(Migration::Incoming) {
            return Err(AgentError::InvalidPlan(format!(
                "enclave {name} is not migrating in"
            )));
        }
        self.stop_enclave(name).await?;
        self.store.set_incoming(name, None)?;
        self.event(
            Some(name),
            EventKind::Migration {
                step: "incoming aborted".into(),
                detail: String::new(),
            },
        );
        self.announce_enclaves();
        Ok(())
    }

    /// Source: starts migrating `name` to `uri` (`tcp:ADDR:PORT`). The job's progress goes to
    /// `progress`; it returns the final one (a completed migration leaves the source paused).
    pub fn migrate_out(
        &mut self,
        name: &str,
        uri: &str,
        opts: MigrateOptions,
        progress: Option<mpsc::Sender<MigrationProgress>>,
    ) -> Result<JoinHandle<Result<MigrationProgress>>> {
        self.migrate_out_as(name, "", uri, opts, progress)
    }

    /// [`Agent::migrate_out`] for migration `id`, recorded (`store::OUTGOING_FILE`) before
    /// QEMU's `migrate` starts, so an agent restarted meanwhile still knows which migration
    /// its VM is the source of.
    pub fn migrate_out_as(
        &mut self,
        name: &str,
        id: &str,
        uri: &str,
        opts: MigrateOptions,
        progress: Option<mpsc::Sender<MigrationProgress>>,
    ) -> Result<JoinHandle<Result<MigrationProgress>>> {
        match self.migration_of(name)? {
            None => {}
            Some(m) => {
                return Err(AgentError::InvalidPlan(format!(
                    "enclave {name} is already migrating ({m:?})"
                )));
            }
        }
        if self.cfg.runtime != RuntimeKind::Qemu {
            return Err(AgentError::InvalidPlan(format!(
                "enclave {name}: only QEMU enclaves live-migrate"
            )));
        }
        let sock = self.work_dir_of(name).join(qemu::MIGRATE_SOCKET);
        if !id.is_empty() {
            self.store.set_outgoing(name, Some(id))?;
        }
        // A VM its plan holds paused sends without its CPU cap: its vCPUs run nothing, so the
        // cap would only slow QEMU's sending (see `held_for_move`). A rollback writes it again
        // before anything resumes (`rollback_out`); a restarted agent adopts it capped.
        let uncap = self.enclaves.get(name).is_some_and(|r| {
            r.plan.state == RunState::Suspend && r.plan.limits.cpu_millicores.is_some()
        });
        if uncap {
            self.write_cgroup(&self.group_of(name), &plan::Change::CpuCap(None))?;
        }
        if let Some(r) = self.enclaves.get_mut(name) {
            r.migration = Some(Migration::Outgoing);
            r.migration_id = id.to_string();
            r.resume_owed = false;
            if uncap {
                r.plan.limits.cpu_millicores = None;
            }
        }
        self.event(
            Some(name),
            EventKind::Migration {
                step: "outgoing".into(),
                detail: uri.to_string(),
            },
        );
        // A VM in a network namespace gets the stream's socket from the agent (`handoff`).
        let handed = self.enclaves.get(name).is_some_and(|r| r.net.is_some());
        let target = uri.strip_prefix("tcp:").unwrap_or(uri).to_string();
        let uri = uri.to_string();
        let data_dir = self.cfg.data_dir.clone();
        Ok(tokio::spawn(async move {
            let channel = handed.then_some(target.as_str());
            migration::run_outgoing(&sock, &uri, channel, opts, progress, &data_dir).await
        }))
    }

    /// Source, told its step again (a new stream after a reconnect or a controller failover,
    /// or an agent restarted mid-migration that adopted the VM): follows the migration QEMU
    /// already runs instead of starting another (which QEMU would refuse, and whose failure
    /// would roll back a migration that may be about to complete).
    pub fn rewatch_out(
        &mut self,
        name: &str,
        progress: Option<mpsc::Sender<MigrationProgress>>,
    ) -> Result<JoinHandle<Result<MigrationProgress>>> {
        if self.migration_of(name)? != Some(Migration::Outgoing) {
            return Err(AgentError::InvalidPlan(format!(
                "enclave {name} is not migrating out"
            )));
        }
        let sock = self.work_dir_of(name).join(qemu::MIGRATE_SOCKET);
        let data_dir = self.cfg.data_dir.clone();
        Ok(tokio::spawn(async move {
            migration::watch_outgoing(&sock, progress, &data_dir).await
        }))
    }

    /// Source, after the controllers committed the switch-over: `name` runs elsewhere under
    /// `new_epoch`. Its floor is raised (persisted) first, then what is left here is stopped.
    pub async fn migrated_away(&mut self, name: &str, new_epoch: u64) -> Result<()> {
        let mut floors = self.epochs.clone();
        floors.raise(name, new_epoch);
        self.store.save_epochs(&floors)?;
        self.epochs = floors;
        if self.enclaves.contains_key(name) {
            self.stop_enclave(name).await?;
        }
        self.store.set_outgoing(name, None)?;
        self.event(
            Some(name),
            EventKind::Migration {
                step: "migrated away".into(),
                detail: format!("epoch {new_epoch}"),
            },
        );
        self.announce_enclaves();
        Ok(())
    }

    /// Source, rollback: cancels the migration if it still runs and resumes the enclave under
    /// its old epoch (QEMU allows `cont` after a completed migration, too).
    pub async fn rollback_out(&mut self, name: &str) -> Result<()> {
        if self.migration_of(name)? != Some(Migration::Outgoing) {
            return Err(AgentError::InvalidPlan(format!(
                "enclave {name} is not migrating out"
            )));
        }
        let sock = self.work_dir_of(name).join(qemu::MIGRATE_SOCKET);
        if let Err(e) = migration::cancel(&sock).await {
            tracing::warn!(enclave = name, "migrate_cancel: {e}");
        }
        let r = self
            .enclaves
            .get_mut(name)
            .ok_or_else(|| AgentError::UnknownEnclave(name.into()))?;
        r.migration = None;
        r.migration_id.clear();
        // Its cap again (lifted while it was sent paused) before it may run.
        let cap = self
            .applied
            .as_ref()
            .and_then(|p| p.enclaves.get(name))
            .map(|e| e.limits.cpu_millicores);
        if let Some(cap) = cap
            && cap != r.plan.limits.cpu_millicores
        {
            let group = r.enclave.identity().group.clone();
            self.write_cgroup(&group, &plan::Change::CpuCap(cap))?;
        }
        let r = self
            .enclaves
            .get_mut(name)
            .ok_or_else(|| AgentError::UnknownEnclave(name.into()))?;
        if let Some(cap) = cap {
            r.plan.limits.cpu_millicores = cap;
        }
        if r.plan.state == RunState::Run {
            r.resume_owed = true;
            r.enclave.resume().await?;
        }
        self.store.set_outgoing(name, None)?;
        self.event(
            Some(name),
            EventKind::Migration {
                step: "rolled back".into(),
                detail: String::new(),
            },
        );
        Ok(())
    }

    /// A controller's migration step (over the attestation stream). Failures go back as a
    /// `failed` progress report; the controllers roll back.
    pub(super) async fn on_migration(&mut self, ev: LinkEvent) {
        let uplink = self.uplink.clone();
        let report = move |migration_id: &str, enclave: &str, role, progress| {
            if let Some(u) = &uplink {
                let r = MigrationReport {
                    migration_id: migration_id.to_string(),
                    enclave: enclave.to_string(),
                    role,
                    progress,
                };
                if u.try_send(ToLink::Migration(r)).is_err() {
                    tracing::warn!(
                        "the controller link is not keeping up: migration progress dropped"
                    );
                }
            }
        };
        let failed = |e: &AgentError| MigrationProgress {
            status: "failed".into(),
            error: Some(e.to_string()),
            ..MigrationProgress::default()
        };
        match ev {
            LinkEvent::MigrateIn {
                migration_id,
                enclave,
                plan,
                listen,
            } => {
                test_hold::hold(&self.cfg.data_dir, Hold::MigrateIn).await;
                // Told again (a new stream): the VM waits already; say so again.
                let again = self.enclaves.get(&enclave).is_some_and(|r| {
                    r.migration == Some(Migration::Incoming) && r.migration_id == migration_id
                });
                let started = if again {
                    tracing::info!(enclave, migration = %migration_id, "migration in told again: ready");
                    self.handoff_in_again(&enclave, &listen).await;
                    Ok(())
                } else {
                    self.migrate_in_as(&enclave, &plan, &listen, &migration_id)
                        .await
                };
                if started.is_ok()
                    && let Some(r) = self.enclaves.get_mut(&enclave)
                {
                    r.migration_id.clone_from(&migration_id);
                }
                let p = match started {
                    Ok(()) => MigrationProgress {
                        status: "ready".into(),
                        ..MigrationProgress::default()
                    },
                    Err(e) => {
                        tracing::warn!(enclave, "migration in refused: {e}");
                        failed(&e)
                    }
                };
                report(&migration_id, &enclave, "target", p);
            }
            LinkEvent::MigrateOut {
                migration_id,
                enclave,
                uri,
                opts,
            } => {
                let (tx, mut rx) = mpsc::channel(64);
                let under_way = self
                    .enclaves
                    .get(&enclave)
                    .filter(|r| r.migration == Some(Migration::Outgoing))
                    .map(|r| r.migration_id.clone());
                let job = match under_way {
                    // Told again, or adopted after a restart (its id lost): follow it.
                    Some(id) if id == migration_id || id.is_empty() => {
                        tracing::info!(enclave, migration = %migration_id, "migration out told again: following the one under way");
                        self.rewatch_out(&enclave, Some(tx))
                    }
                    _ => self.migrate_out_as(&enclave, &migration_id, &uri, opts, Some(tx)),
                };
                if job.is_ok()
                    && let Some(r) = self.enclaves.get_mut(&enclave)
                {
                    r.migration_id.clone_from(&migration_id);
                }
                match job {
                    Ok(job) => {
                        // Every progress goes to the controllers; a job that ends in an error
                        // (not a QEMU status) is reported as failed.
                        tokio::spawn(async move {
                            while let Some(p) = rx.recv().await {
                                report(&migration_id, &enclave, "source", p);
                            }
                            let end = match job.await {
                                Ok(r) => r,
                                Err(e) => Err(AgentError::Runtime(format!("migration job: {e}"))),
                            };
                            if let Err(e) = end {
                                report(&migration_id, &enclave, "source", failed(&e));
                            }
                        });
                    }
                    Err(e) => {
                        tracing::warn!(enclave, "migration out refused: {e}");
                        report(&migration_id, &enclave, "source", failed(&e));
                    }
                }
            }
            LinkEvent::MigrationEnd {
                migration_id,
                enclave,
                committed,
                new_epoch,
                reason,
            } => {
                let role = self.enclaves.get(&enclave).and_then(|r| r.migration);
                let current = self
                    .enclaves
                    .get(&enclave)
                    .map(|r| r.migration_id.as_str())
                    .unwrap_or_default();
                if !end_applies(role, current, &migration_id) {
                    tracing::warn!(
                        enclave,
                        migration = %migration_id,
                        under_way = current,
                        committed,
                        "the end of another migration than the one under way here: ignored"
                    );
                    return;
                }
                if role.is_some() {
                    test_hold::hold(&self.cfg.data_dir, Hold::End).await;
                }
                let r = match (role, committed) {
                    (Some(Migration::Outgoing), true) => {
                        self.migrated_away(&enclave, new_epoch).await
                    }
                    (Some(Migration::Outgoing), false) => self.rollback_out(&enclave).await,
                    (Some(Migration::Incoming), false) => self.abort_in(&enclave).await,
                    // Committed on the target: its plan under the new epoch resumes it. A
                    // source that is gone (restarted) still raises its floor.
                    (Some(Migration::Incoming), true) => Ok(()),
                    // Runs here under the new epoch already: this is the target.
                    (None, true)
                        if self
                            .enclaves
                            .get(&enclave)
                            .is_some_and(|r| r.plan.placement_epoch >= new_epoch) =>
                    {
                        Ok(())
                    }
                    (None, true) => self.migrated_away(&enclave, new_epoch).await,
                    (None, false) => Ok(()),
                };
                if let Err(e) = r {
                    tracing::warn!(enclave, committed, "migration end: {e}");
                } else if !committed {
                    tracing::info!(enclave, reason, "migration rolled back");
                }
            }
            _ => {}
        }
    }

    fn migration_of(&self, name: &str) -> Result<Option<Migration>> {
        self.enclaves
            .get(name)
            .map(|r| r.migration)
            .ok_or_else(|| AgentError::UnknownEnclave(name.into()))
    }

    fn work_dir_of(&self, name: &str) -> std::path::PathBuf {
        self.cfg.data_dir.join("enclaves").join(name)
    }

    /// The QMP client of a QEMU enclave's migration monitor (tests read the guest's counter).
    pub async fn migration_monitor(&self, name: &str) -> Result<crate::runtime::qmp::Qmp> {
        crate::runtime::qmp::Qmp::connect(
            &self.work_dir_of(name).join(qemu::MIGRATE_SOCKET),
            std::time::Duration::from_secs(5),
        )
        .await
    }
}

/// Whether a `MigrationEnd` for migration `end_id` is about what this agent does for the
/// enclave: `role` and `current` (its id) are the migration the enclave takes part in here.
/// It is when the enclave takes part in none (a source restarted since still raises its
/// floor; the epoch decides the rest), in that very one, or in one whose id was lost (adopted
/// after an agent restart). The end of **another** migration is stale (the controllers send an
/// enclave's newest end, but a reconnect can deliver an older one): acting on it would roll
/// back or finish the migration under way. Pure.
pub(super) fn end_applies(role: Option<Migration>, current: &str, end_id: &str) -> bool {
    role.is_none() || current.is_empty() || current == end_id
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_stale_end_for_another_migration_is_ignored() {
        for role in [Migration::Incoming, Migration::Outgoing] {
            assert!(end_applies(Some(role), "m2", "m2"), "{role:?}: its own end");
            assert!(
                !end_applies(Some(role), "m2", "m1"),
                "{role:?}: an older migration's end must not end m2"
            );
            assert!(
                !end_applies(Some(role), "m1", "m2"),
                "{role:?}: nor a newer one's"
            );
            assert!(
                end_applies(Some(role), "", "m1"),
                "{role:?}: adopted after a restart, its id unknown"
            );
        }
        // Not migrating here: the end applies (the epoch floor decides what it changes).
        assert!(end_applies(None, "", "m1"));
    }

    #[test]
    fn a_held_vm_waits_uncapped_and_the_plan_naming_it_caps_it_before_it_runs() {
        use crate::plan::{Change, Limits};
        let wanted = EnclavePlan {
            limits: Limits {
                cpu_millicores: Some(100),
                memory_bytes: Some(512 << 20),
                ..Limits::default()
            },
            weight: 3,
            state: RunState::Run,
            placement_epoch: 2,
            ..EnclavePlan::default()
        };
        let held = held_for_move(&wanted);
        assert_eq!(held.state, RunState::Suspend);
        assert_eq!(held.limits.cpu_millicores, None);
        assert_eq!(
            (held.limits.memory_bytes, held.weight, held.placement_epoch),
            (Some(512 << 20), 3, 2),
            "every other limit is in place while it waits"
        );
        assert_eq!(
            plan::changes(&held, &wanted),
            vec![Change::CpuCap(Some(100)), Change::State(RunState::Run)],
            "the cap comes before the resume"
        );
        let suspended = EnclavePlan {
            state: RunState::Suspend,
            ..wanted.clone()
        };
        assert_eq!(
            plan::changes(&held, &suspended),
            vec![Change::CpuCap(Some(100))],
            "named but held: capped, still paused"
        );
    }
}
