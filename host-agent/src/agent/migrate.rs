//! Live migration of QEMU enclaves, the agent's side (docs/protocol.md "Live migration"). The
//! controllers drive it; the agent only does each step it is told, and fences by epoch:
//!
//! - target: [`Agent::migrate_in`] launches the VM (cgroups, limits and shaping first, as for
//!   any launch) with `-incoming tcp:ADDR:PORT -S`; it stays paused, and no plan that does not
//!   name it stops it, until a plan names it — under the new placement epoch the controllers
//!   committed at switch-over — and so resumes it (`cont`); or [`Agent::abort_in`] tears it
//!   down on a rollback;
//! - source: [`Agent::migrate_out`] starts QEMU's `migrate` on the VM's second monitor and
//!   hands back the job, whose progress (`query-migrate`) goes to the controllers; after the
//!   switch-over is committed, [`Agent::migrated_away`] raises the enclave's epoch floor to the
//!   new epoch (so no plan under the old one can ever resume it here) and stops what is left;
//!   on a rollback [`Agent::rollback_out`] cancels and resumes it under the old epoch.

use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use super::{Agent, EventKind, Migration};
use crate::error::{AgentError, Result};
use crate::launch;
use crate::link_messages::{LinkEvent, MigrationReport, ToLink};
use crate::plan::{self, EnclavePlan, LaunchSpec, RunState};
use crate::runtime::migration::{self, MigrateOptions, MigrationProgress};
use crate::runtime::{RuntimeKind, qemu};

impl Agent {
    /// Target: starts `name` waiting for its state on `listen` (`ADDR:PORT`), paused.
    pub async fn migrate_in(
        &mut self,
        name: &str,
        wanted: &EnclavePlan,
        listen: &str,
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
        let held = EnclavePlan {
            state: RunState::Suspend,
            ..wanted.clone()
        };
        self.launch(name, &held, checked, Some(&format!("tcp:{listen}")))
            .await?;
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

    /// Target, rollback: the migration failed or was abandoned; the VM is torn down.
    pub async fn abort_in(&mut self, name: &str) -> Result<()> {
        if self.migration_of(name)? != Some(Migration::Incoming) {
            return Err(AgentError::InvalidPlan(format!(
                "enclave {name} is not migrating in"
            )));
        }
        self.stop_enclave(name).await?;
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
        if let Some(r) = self.enclaves.get_mut(name) {
            r.migration = Some(Migration::Outgoing);
        }
        self.event(
            Some(name),
            EventKind::Migration {
                step: "outgoing".into(),
                detail: uri.to_string(),
            },
        );
        let uri = uri.to_string();
        Ok(tokio::spawn(async move {
            migration::run_outgoing(&sock, &uri, opts, progress).await
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
        if r.plan.state == RunState::Run {
            r.enclave.resume().await?;
        }
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
                let p = match self.migrate_in(&enclave, &plan, &listen).await {
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
                match self.migrate_out(&enclave, &uri, opts, Some(tx)) {
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
                enclave,
                committed,
                new_epoch,
                reason,
                ..
            } => {
                let role = self.enclaves.get(&enclave).and_then(|r| r.migration);
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
