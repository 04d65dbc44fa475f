//! Applying plans: the diff of applied and wanted per enclave becomes launches, cgroup and tc
//! writes, suspend/resume and stops; and taking over enclaves that outlived an agent crash.
//!
//! A new enclave is launched only once the host's allow-list lets its spec through
//! (`crate::launch::check`, before anything is created for it). A refused one is logged, shown
//! as an event and in `status`, reported to the controllers with the plan's ack — and the
//! rest of the plan is applied: one bad enclave never blocks a host's plan.

use std::collections::BTreeMap;

use super::{Agent, ApplyReport, EventKind, Migration, RefusedLaunch, Running};
use crate::collector::{Probe, Usage};
use crate::error::{AgentError, Result};
use crate::launch::{self, CheckedLaunch, Credentials, users};
use crate::net::{self};
use crate::plan::{
    Admit, Change, EnclavePlan, LaunchSpec, Plan, RunState, admit, changes, initial_changes,
};
use crate::runtime::{EnclaveStatus, Identity, LaunchContext, RunAs, RuntimeKind};

impl Agent {
    /// Applies `plan`, writing only what differs from the applied plan, and records it.
    pub async fn apply(&mut self, plan: Plan) -> Result<ApplyReport> {
        let version = plan.version;
        let started = std::time::Instant::now();
        let r = self.apply_inner(plan).await;
        let m = crate::metrics::get();
        m.enforcement_seconds
            .observe(started.elapsed().as_secs_f64());
        match &r {
            Ok(_) => m.plans_applied.inc(),
            Err(_) => m.plans_refused.inc(),
        };
        if let Some(a) = &self.applied {
            m.plan_version
                .set(i64::try_from(a.version).unwrap_or(i64::MAX));
        }
        m.enclaves.set(self.enclaves.len() as i64);
        match &r {
            Ok(rep) => self.event(
                None,
                EventKind::PlanApplied {
                    version,
                    writes: rep.writes,
                },
            ),
            Err(e) => self.event(
                None,
                EventKind::PlanRefused {
                    version,
                    error: e.to_string(),
                },
            ),
        }
        r
    }

    pub(super) async fn apply_inner(&mut self, plan: Plan) -> Result<ApplyReport> {
        plan.validate()?;
        // Placement epochs first: an enclave offered under an epoch older than one seen here
        // is left as it is (not launched, not resumed, not changed).
        let applied_now: BTreeMap<String, EnclavePlan> = self
            .enclaves
            .iter()
            .map(|(n, r)| (n.clone(), r.plan.clone()))
            .collect();
        let (plan, stale) = self.epochs.filter(plan, &applied_now);
        for s in &stale {
            let error = s.to_string();
            if self.refused.get(&s.enclave) != Some(&error) {
                tracing::warn!(enclave = %s.enclave, version = plan.version, "{error}");
                self.event(
                    Some(&s.enclave),
                    EventKind::LaunchRefused {
                        version: plan.version,
                        error,
                    },
                );
            }
        }
        if admit(self.applied.as_ref(), &plan)? == Admit::AlreadyApplied {
            return Ok(ApplyReport {
                version: plan.version,
                refused: stale
                    .iter()
                    .map(|s| RefusedLaunch {
                        enclave: s.enclave.clone(),
                        error: s.to_string(),
                    })
                    .collect(),
                ..ApplyReport::default()
            });
        }
        // Before any write: what the new enclaves would run, checked against the host's
        // allow-list.
        let mut checked: BTreeMap<&str, CheckedLaunch> = BTreeMap::new();
        let mut refused: Vec<(&str, launch::LaunchRefused)> = Vec::new();
        for (name, e) in &plan.enclaves {
            if !self.enclaves.contains_key(name) {
                match &e.launch {
                    None => {
                        return Err(AgentError::InvalidPlan(format!(
                            "enclave {name} is not running and has no launch spec"
                        )));
                    }
                    Some(spec) if RuntimeKind::of(spec) != self.cfg.runtime => {
                        return Err(AgentError::InvalidPlan(format!(
                            "enclave {name} needs the {:?} runtime; this agent runs {:?}",
                            RuntimeKind::of(spec),
                            self.cfg.runtime
                        )));
                    }
                    Some(spec) => match launch::check(&self.cfg.launch_policy, spec, &self.files) {
                        Ok(c) => {
                            checked.insert(name, c);
                        }
                        Err(r) => refused.push((name, r)),
                    },
                }
            }
        }
        let mut report = ApplyReport {
            version: plan.version,
            ..ApplyReport::default()
        };
        report.refused.extend(stale.iter().map(|s| RefusedLaunch {
            enclave: s.enclave.clone(),
            error: s.to_string(),
        }));
        for (name, why) in refused {
            let error = why.to_string();
            // Every newer plan retries the launch; the same refusal is said once.
            if self.refused.get(name) != Some(&error) {
                tracing::warn!(enclave = name, version = plan.version, "{why}");
                self.event(
                    Some(name),
                    EventKind::LaunchRefused {
                        version: plan.version,
                        error: error.clone(),
                    },
                );
            }
            report.refused.push(RefusedLaunch {
                enclave: name.to_string(),
                error,
            });
        }
        // An enclave migrating in waits for the plan that names it under its new epoch; no
        // plan stops it meanwhile (a rollback does: `migrate::abort_in`).
        let gone: Vec<String> = self
            .enclaves
            .iter()
            .filter(|(n, r)| {
                !plan.enclaves.contains_key(*n) && r.migration != Some(Migration::Incoming)
            })
            .map(|(n, _)| n.clone())
            .collect();
        for name in gone {
            self.stop_enclave(&name).await?;
            report.writes += 1;
            report.stopped.push(name);
        }
        // Migrations in that this plan ends: their record goes once the plan that names them
        // is on disk (a crash in between adopts the VM from one or the other).
        let mut arrived: Vec<String> = Vec::new();
        for (name, wanted) in &plan.enclaves {
            if self.enclaves.contains_key(name) {
                let applied = self.enclaves[name].plan.clone();
                for change in changes(&applied, wanted) {
                    self.apply_change(name, &change).await?;
                    report.writes += 1;
                }
                if let Some(r) = self.enclaves.get_mut(name) {
                    r.plan = wanted.clone();
                    // Named by a plan: a migration in has ended (it runs under this epoch).
                    if r.migration == Some(Migration::Incoming) {
                        r.migration = None;
                        r.migration_id.clear();
                        // Its hand-over listener, if one still waits, goes (`handoff`).
                        r.handoff = None;
                        arrived.push(name.clone());
                    }
                }
            } else if let Some(c) = checked.remove(name.as_str()) {
                report.writes += self.launch(name, wanted, c, None).await?;
                report.launched.push(name.clone());
            }
        }
        // Versions only rise: an older one was refused above, the same one returned early.
        debug_assert!(
            self.applied
                .as_ref()
                .is_none_or(|a| a.version < plan.version),
            "plan version {} recorded over {:?}",
            plan.version,
            self.applied.as_ref().map(|a| a.version)
        );
        let mut floors = self.epochs.clone();
        floors.record(&plan);
        if floors != self.epochs {
            self.store.save_epochs(&floors)?;
            self.epochs = floors;
        }
        self.store.save(&plan)?;
        for name in arrived {
            self.store.set_incoming(&name, None)?;
        }
        self.sync_mediator(&plan);
        self.applied = Some(plan);
        self.refused = report
            .refused
            .iter()
            .map(|r| (r.enclave.clone(), r.error.clone()))
            .collect();
        Ok(report)
    }

    /// The mediator follows the applied plan: a socket for every enclave of it (owned by the
    /// enclave's user once it runs), none for any other, and the plan's talk table.
    fn sync_mediator(&self, plan: &Plan) {
        for name in self.mediator.open_endpoints() {
            if !plan.enclaves.contains_key(&name) {
                self.mediator.close(&name);
            }
        }
        for name in plan.enclaves.keys() {
            let owner = self
                .enclaves
                .get(name)
                .and_then(|r| r.user)
                .map(|c| (c.uid, c.gid));
            if let Err(e) = self.mediator.open(name, owner) {
                tracing::warn!(enclave = name, "no mediator socket: {e}");
            }
        }
        self.mediator
            .set_table(crate::mediator::admission::TalkTable::from_plan(plan));
    }

    /// Whom a new enclave runs as: its own unprivileged credentials when the agent is root.
    fn run_as_for_new(&self) -> Result<RunAs> {
        if !self.root {
            return Ok(RunAs::AgentUser);
        }
        let in_use: Vec<u32> = self
            .enclaves
            .values()
            .filter_map(|r| r.user.map(|c| c.uid))
            .collect();
        let c = self.cfg.enclave_users.pick(&in_use).ok_or_else(|| {
            AgentError::Runtime(format!(
                "every enclave uid of {} is taken: give the agent a larger range \
                 (--enclave-uids FIRST-LAST)",
                self.cfg.enclave_users
            ))
        })?;
        Ok(RunAs::User(c))
    }

    pub(super) async fn launch(
        &mut self,
        name: &str,
        wanted: &EnclavePlan,
        checked: CheckedLaunch,
        incoming: Option<&str>,
    ) -> Result<u32> {
        let group = self.group_of(name);
        let run_as = self.run_as_for_new()?;
        let spec = checked.spec();
        self.cgroups.create(&group)?;
        let mut writes = 0;
        // Limits before the first instruction runs.
        for change in initial_changes(wanted) {
            if matches!(
                change,
                Change::CpuCap(_) | Change::Weight(_) | Change::Memory { .. }
            ) {
                self.write_cgroup(&group, &change)?;
                writes += 1;
            }
        }
        let net_id = match (&self.net, wants_net(spec, wanted)) {
            (Some(n), true) => {
                let used: Vec<u16> = self
                    .enclaves
                    .values()
                    .filter_map(|r| r.net.as_ref().map(|n| n.slot))
                    .collect();
                let slot = (1..=net::SLOTS_MAX)
                    .find(|s| !used.contains(s))
                    .ok_or_else(|| AgentError::Runtime("no free network slot".into()))?;
                Some(n.attach(name, slot)?)
            }
            (None, true) => {
                return Err(AgentError::InvalidPlan(format!(
                    "enclave {name} wants networking but the agent runs without --network"
                )));
            }
            _ => None,
        };
        // Shaping before the first packet, too.
        if let (Some(n), Some(id)) = (&self.net, &net_id) {
            let shaped = n
                .set_egress(id, wanted.limits.egress)
                .and_then(|_| n.set_ingress(id, wanted.limits.ingress));
            if let Err(e) = shaped {
                let _ = n.detach(id);
                let _ = self.cgroups.remove(&group);
                return Err(e);
            }
            writes += 2;
        }
        // A VM's NIC, when its spec asks for one (never from its limits, which may change: a
        // live migration's target must build the very same devices as its source): a tap in
        // its namespace, the enclave's address handed to the guest.
        let nic = match (&self.net, &net_id, spec) {
            (Some(n), Some(id), LaunchSpec::Qemu { network: true, .. }) => {
                match n.attach_vm(id, name) {
                    Ok(nic) => Some(nic),
                    Err(e) => {
                        let _ = n.detach(id);
                        let _ = self.cgroups.remove(&group);
                        return Err(e);
                    }
                }
            }
            _ => None,
        };
        let identity = Identity {
            name: name.to_string(),
            group: group.clone(),
            netns: net_id.as_ref().map(|n| n.netns.clone()),
        };
        // Its mediator socket exists, owned by it, before its first instruction.
        let owner = match run_as {
            RunAs::User(c) => Some((c.uid, c.gid)),
            RunAs::AgentUser => None,
        };
        let mut env = self.gpu.launch_env(wanted.limits.gpu_percent);
        let msg_socket = match self.mediator.open(name, owner) {
            Ok(path) => {
                env.push((
                    tribune_msg::SOCKET_ENV.to_string(),
                    path.display().to_string(),
                ));
                Some(path)
            }
            Err(e) => {
                tracing::warn!(enclave = name, "no mediator socket: {e}");
                None
            }
        };
        let ctx = LaunchContext {
            identity,
            run_as,
            work_dir: self.cfg.data_dir.join("enclaves").join(name),
            cgroups: self.cgroups.clone(),
            env,
            incoming: incoming.map(str::to_string),
            msg_socket,
            nic,
        };
        let enclave = match self.runtime.launch(ctx, checked).await {
            Ok(e) => e,
            Err(e) => {
                if let (Some(n), Some(id)) = (&self.net, &net_id) {
                    let _ = n.detach(id);
                }
                let _ = self.cgroups.remove(&group);
                return Err(e);
            }
        };
        let probe = Probe::open(
            self.cgroups.as_ref(),
            &group,
            net_id.as_ref().map(|n| n.host_veth.as_str()),
        )?;
        self.enclaves.insert(
            name.to_string(),
            Running {
                plan: wanted.clone(),
                enclave,
                net: net_id,
                probe,
                last: None,
                unsent: None,
                usage: Usage::default(),
                exited: false,
                user: match run_as {
                    RunAs::User(c) => Some(c),
                    RunAs::AgentUser => None,
                },
                migration: incoming.map(|_| Migration::Incoming),
                migration_id: String::new(),
                resume_owed: false,
                handoff: None,
            },
        );
        for change in initial_changes(wanted) {
            if matches!(change, Change::State(_) | Change::Gpu(_)) {
                self.apply_change(name, &change).await?;
                writes += 1;
            }
        }
        Ok(writes + 1)
    }

    pub(super) fn write_cgroup(&self, group: &str, change: &Change) -> Result<()> {
        let started = std::time::Instant::now();
        let r = {
            let _span = tribune_telemetry::trace::enabled()
                .then(|| tracing::info_span!("cgroup.write", group, change = ?change).entered());
            self.write_cgroup_inner(group, change)
        };
        crate::metrics::get()
            .cgroup_write_seconds
            .observe(started.elapsed().as_secs_f64());
        r
    }

    fn write_cgroup_inner(&self, group: &str, change: &Change) -> Result<()> {
        match change {
            Change::CpuCap(c) => self.cgroups.set_cpu_cap(group, *c),
            Change::Weight(w) => self.cgroups.set_weight(group, *w),
            Change::Memory {
                limit_bytes,
                high_bytes,
            } => self.cgroups.set_memory(group, *limit_bytes, *high_bytes),
            _ => Ok(()),
        }
    }

    pub(super) async fn apply_change(&mut self, name: &str, change: &Change) -> Result<()> {
        let group = self.group_of(name);
        let r = self
            .enclaves
            .get_mut(name)
            .ok_or_else(|| AgentError::UnknownEnclave(name.into()))?;
        match change {
            Change::CpuCap(_) | Change::Weight(_) | Change::Memory { .. } => {
                self.write_cgroup(&group, change)
            }
            Change::Egress(bw) | Change::Ingress(bw) => {
                let (Some(n), Some(id)) = (&self.net, &r.net) else {
                    return Err(AgentError::InvalidPlan(format!(
                        "enclave {name} has no network to shape"
                    )));
                };
                if matches!(change, Change::Egress(_)) {
                    n.set_egress(id, *bw)
                } else {
                    n.set_ingress(id, *bw)
                }
            }
            Change::Gpu(p) => self.gpu.set_share(name, *p),
            Change::State(RunState::Suspend) => {
                r.resume_owed = false;
                r.enclave.suspend().await
            }
            // Owed until reconcile sees it running (`run_state`): a VM whose incoming state
            // is still being loaded takes this `cont` only as "start once loaded", which QEMU
            // drops when the source was paused.
            Change::State(RunState::Run) => {
                r.resume_owed = true;
                r.enclave.resume().await
            }
        }
    }

    pub(super) async fn stop_enclave(&mut self, name: &str) -> Result<()> {
        crate::metrics::get().forget_enclave(name);
        if let Some(mut r) = self.enclaves.remove(name) {
            r.enclave.stop().await?;
            if let (Some(n), Some(id)) = (&self.net, &r.net) {
                n.detach(id)?;
            }
            self.cgroups.remove(&r.enclave.identity().group)?;
        }
        Ok(())
    }

    /// Takes over an enclave that outlived an agent crash and writes its limits again — if the
    /// host's allow-list (which may have changed) still lets its spec through and it does not
    /// run as root (an enclave from before enclaves ran unprivileged). Otherwise the caller
    /// stops it and the plan relaunches it under today's rules.
    pub(super) async fn adopt(
        &mut self,
        name: &str,
        wanted: &EnclavePlan,
        pids: Vec<u32>,
        incoming: Option<&str>,
    ) -> Result<()> {
        let group = self.group_of(name);
        let spec = wanted
            .launch
            .as_ref()
            .ok_or_else(|| AgentError::InvalidPlan(format!("{name}: no launch spec")))?;
        launch::check(&self.cfg.launch_policy, spec, &self.files)?;
        let user = match pids.iter().min().copied().and_then(users::credentials_of) {
            Some(Credentials { uid: 0, .. }) | Some(Credentials { gid: 0, .. }) => {
                return Err(AgentError::Runtime(
                    "it runs as root (started before enclaves ran unprivileged)".into(),
                ));
            }
            Some(c) if self.root => Some(c),
            Some(_) => None,
            None => return Err(AgentError::Runtime("its processes are gone".into())),
        };
        let net_id = self.net.as_ref().and_then(|n| n.adopt(name));
        let ctx = LaunchContext {
            identity: Identity {
                name: name.to_string(),
                group: group.clone(),
                netns: net_id.as_ref().map(|n| n.netns.clone()),
            },
            run_as: user.map_or(RunAs::AgentUser, RunAs::User),
            work_dir: self.cfg.data_dir.join("enclaves").join(name),
            cgroups: self.cgroups.clone(),
            env: Vec::new(),
            // A VM still migrating in with a NIC announces itself when its commit resumes it,
            // as if this agent had started it (`runtime::qemu`).
            incoming: incoming.map(str::to_string),
            msg_socket: None,
            nic: match (spec, &net_id) {
                (LaunchSpec::Qemu { network: true, .. }, Some(_)) => Some(crate::net_vm::VmNic {
                    tap: crate::net_vm::VM_TAP.to_string(),
                    mac: crate::net_vm::vm_mac(name),
                }),
                _ => None,
            },
        };
        let mut enclave = self.runtime.adopt(ctx, pids).await?;
        let probe = Probe::open(
            self.cgroups.as_ref(),
            &group,
            net_id.as_ref().map(|n| n.host_veth.as_str()),
        )?;
        let suspended = matches!(enclave.status().await, Ok(EnclaveStatus::Suspended));
        self.enclaves.insert(
            name.to_string(),
            Running {
                plan: wanted.clone(),
                enclave,
                net: net_id,
                probe,
                last: None,
                unsent: None,
                usage: Usage::default(),
                exited: false,
                user,
                migration: incoming.map(|_| Migration::Incoming),
                migration_id: incoming.unwrap_or_default().to_string(),
                resume_owed: false,
                handoff: None,
            },
        );
        // Re-write everything the plan says: the kernel should still hold it, but an uplink
        // re-created at start lost its classes, and a crash may have cut an apply short.
        for change in initial_changes(wanted) {
            let needed = match change {
                Change::State(RunState::Suspend) => !suspended,
                Change::Egress(_) | Change::Ingress(_) => self.enclaves[name].net.is_some(),
                _ => true,
            };
            if needed {
                self.apply_change(name, &change).await?;
            }
        }
        // A VM whose state was (or is being) migrated away stays paused: it may run on the
        // target already, and only a rollback (`migrate::rollback_out`) resumes it here.
        // (A VM migrating in answers `query-migrate` with its incoming state: not this.)
        // The migration it was sending, as recorded before it started (`OUTGOING_FILE`).
        let recorded = match incoming {
            None => self.store.load_outgoing()?.remove(name),
            Some(_) => None,
        };
        let migrating_out = incoming.is_none()
            && self.cfg.runtime == RuntimeKind::Qemu
            && match crate::runtime::migration::outgoing_started(
                &self
                    .cfg
                    .data_dir
                    .join("enclaves")
                    .join(name)
                    .join(crate::runtime::qemu::MIGRATE_SOCKET),
            )
            .await
            {
                Ok(q) => q,
                // QEMU does not say: our own record decides, failing safe (kept paused).
                Err(e) => {
                    tracing::warn!(enclave = name, recorded = ?recorded, "cannot ask QEMU for its migration: {e}");
                    recorded.is_some()
                }
            };
        if migrating_out {
            tracing::warn!(
                enclave = name,
                migration = recorded.as_deref().unwrap_or("(not recorded)"),
                "adopted with an outgoing migration under way or done: kept paused until the \
                 controllers commit or roll it back"
            );
            if let Some(r) = self.enclaves.get_mut(name) {
                r.migration = Some(Migration::Outgoing);
                r.migration_id = recorded.unwrap_or_default();
            }
        } else {
            if recorded.is_some() {
                // Recorded, but QEMU never started it (or it failed): nothing to follow.
                self.store.set_outgoing(name, None)?;
            }
            if wanted.state == RunState::Run && suspended {
                self.apply_change(name, &Change::State(RunState::Run))
                    .await?;
            }
        }
        tracing::info!(enclave = name, "adopted after restart");
        Ok(())
    }

    /// Drops an enclave the agent could not adopt, killing what is left of it.
    pub(super) fn forget(&mut self, name: &str) {
        crate::metrics::get().forget_enclave(name);
        if let Some(r) = self.enclaves.remove(name)
            && let (Some(n), Some(id)) = (&self.net, &r.net)
        {
            let _ = n.detach(id);
        }
        let _ = self.cgroups.remove(&self.group_of(name));
    }
}

/// Whether an enclave gets its own network namespace (on an agent with `--subnet`): it asks
/// for networking, or has a bandwidth limit to shape.
pub(super) fn wants_net(spec: &LaunchSpec, wanted: &EnclavePlan) -> bool {
    matches!(
        spec,
        LaunchSpec::Process { network: true, .. } | LaunchSpec::Qemu { network: true, .. }
    ) || wanted.limits.egress.is_some()
        || wanted.limits.ingress.is_some()
}
