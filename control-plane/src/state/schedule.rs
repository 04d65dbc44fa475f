//! Scheduling in the replicated state: the pure conversion of a [`State`] into the scheduler's
//! [`ClusterView`], and the commands that place, cordon and move enclaves.
//!
//! The leader plans with `tribune_migration` over a view of the state it has applied; by the
//! time the command is applied, other writes may have taken the room. So every command here is
//! **re-checked against the state at apply**, with the same filters, and refused
//! ([`Outcome::NoRoom`], nothing written) when it no longer holds: two racing creates can never
//! both reserve the last of a host's capacity (DESIGN.md §6.6).
//!
//! A stop-and-restart move (drain, or a preempted process enclave that another host can take)
//! has two steps, so that an enclave never runs in two places (DESIGN.md §6.3):
//! [`Command::StartMove`] drops it from its source host's plan (a new plan version there) and
//! reserves its guarantee on the target; [`Command::FinishMoves`], proposed when the source's
//! agent acked a plan at least that new, places it on the target under the next placement
//! epoch, and only then does the target's plan name it.

use serde::{Deserialize, Serialize};
use tribune_migration::{
    ClusterView, Demand, EnclaveSpec, Freshness, HostView, Placed, Rejection, filter,
};

use super::{
    EnclaveChangeDetail, EnclaveOp, EnclaveState, Expect, HostChangeDetail, LogDetail,
    MigrationDetail, OperatorHold, Outcome, Placement, Resources, Schedulable, State, spec_under,
};
use crate::state::{Enclave, Host};

/// How long a host may go unheard before the planner passes it over for a placement or a
/// stop-and-restart move: its agent's stream is recorded every `attest_max_age_s / 10`, at
/// most every 60 s (`Command::HostSeen`), so three of the longest intervals. A host whose
/// agent went away gets no new enclaves, which would only wait there until it came back.
/// "Heard" is the host's `last_heartbeat_ms`: its agent's stream, or a write of its record
/// (`PutHost`, e.g. a capacity record for planning, which so stays a candidate for 3
/// minutes). A host an operator marked `untrusted` is filtered out too
/// (`HostView::trusted`).
///
/// Plan time only ([`placement_freshness`]): the apply-time re-check does not read it
/// (`apply_freshness`), so a replica of another version, or one replaying entries
/// committed before this rule, applies every entry exactly as the others did. (A host that
/// falls silent between the plan and its apply may still get the enclave, which then waits
/// for it: not a safety matter.)
pub const HOST_SILENT_MS: i64 = 180_000;

/// The filters' settings for planning a placement at `now_ms` ([`HOST_SILENT_MS`]).
pub fn placement_freshness(now_ms: i64) -> Freshness {
    Freshness {
        now_ms,
        attest_max_age_ms: HOST_SILENT_MS,
    }
}

/// The filters' settings for the apply-time re-check at `at_ms`: no age limit.
fn apply_freshness(at_ms: i64) -> Freshness {
    Freshness {
        now_ms: at_ms,
        attest_max_age_ms: i64::MAX,
    }
}

/// A stop-and-restart move under way (`Command::StartMove`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Move {
    pub from: String,
    pub to: String,
    /// The placement epoch it ran under on `from`; it runs on `to` under `epoch + 1`.
    pub epoch: u64,
    /// `from`'s first plan version without the enclave: an ack of it (or later) means the
    /// agent stopped it.
    pub stop_version: u64,
    pub cause: String,
}

/// Resources as the scheduler's demand.
pub fn demand(r: Resources) -> Demand {
    Demand {
        cpu_millicores: r.cpu_millicores,
        memory_bytes: r.memory_bytes,
        egress_bits_per_sec: r.egress_bits_per_sec,
        ingress_bits_per_sec: r.ingress_bits_per_sec,
        gpu_percent: u64::from(r.gpu_percent),
    }
}

/// The runtime `e`'s launch spec needs (`qemu` or `process`), `None` with nothing to launch.
pub fn runtime_of(e: &Enclave) -> Option<&'static str> {
    let launch = e.launch.as_ref()?.as_object()?;
    if launch.contains_key("qemu") {
        Some("qemu")
    } else if launch.contains_key("process") {
        Some("process")
    } else {
        None
    }
}

/// What `e` asks of a host: its `requested` resources as the guarantee, its priority, and its
/// scheduling settings (none: no preemption, no selector, bin-packing). Its selector also asks
/// for the runtime its launch spec needs ([`tribune_proto::RUNTIME_LABEL`], which every agent
/// sets to the one it runs): a VM is placed, and live-migrated, only where QEMU runs, a process
/// only where processes do; a host record no agent has spoken for yet takes neither.
pub fn enclave_spec(e: &Enclave) -> EnclaveSpec {
    let mut s = e.scheduling.clone().unwrap_or_default();
    if let Some(runtime) = runtime_of(e) {
        s.host_selector
            .entry(tribune_proto::RUNTIME_LABEL.to_string())
            .or_insert_with(|| runtime.to_string());
    }
    EnclaveSpec {
        id: e.id.clone(),
        tee: e.tee,
        min_tee_generation: s.min_tee_generation,
        guarantee: demand(e.requested),
        priority: e.priority,
        preempt: s.preempt,
        host_selector: s.host_selector,
        anti_affinity: s.anti_affinity,
        labels: e.labels.clone(),
        strategy: s.strategy,
    }
}

/// Whether `e`'s launch spec asks for networking (`{"process"|"qemu": {"network": true}}`).
pub fn wants_network(e: &Enclave) -> bool {
    e.launch
        .as_ref()
        .and_then(|l| l.as_object())
        .is_some_and(|l| {
            l.values()
                .any(|v| v.get("network").and_then(serde_json::Value::as_bool) == Some(true))
        })
}

/// `spec` for the planner: an enclave that asks for networking also asks for a host whose
/// agent gives it ([`tribune_proto::NETWORK_LABEL`]). Plan time only: the apply-time
/// re-check reads [`enclave_spec`] as it was, so replicas of every version apply alike.
pub fn planning_spec(mut spec: EnclaveSpec, e: &Enclave) -> EnclaveSpec {
    if wants_network(e) {
        spec.host_selector
            .entry(tribune_proto::NETWORK_LABEL.to_string())
            .or_insert_with(|| "true".to_string());
    }
    spec
}

fn host_view(h: &Host) -> HostView {
    HostView {
        id: h.id.clone(),
        capacity: demand(h.capacity),
        load: demand(h.measured_load),
        tee: h.tee,
        tee_generation: h.tee_generation,
        trusted: h.attestation_status != "untrusted",
        verified_at_ms: h.last_heartbeat_ms,
        labels: h.labels.clone(),
        schedulable: h.schedulable,
    }
}

impl State {
    /// The host where `e` holds its guarantee: the target of a move under way, else its
    /// placement's host; none when it is stopped, or suspended by a preemption.
    fn reserving_host<'a>(&'a self, e: &'a Enclave) -> Option<&'a str> {
        if let Some(m) = self.moves.get(&e.id) {
            return Some(&m.to);
        }
        // A live migration holds the guarantee on its target (`state/live.rs`).
        if let Some(m) = self.live.get(&e.id) {
            return Some(&m.to);
        }
        let p = e.placement.as_ref()?;
        let preempted = self
            .status
            .get(&e.id)
            .and_then(|s| s.operator_hold.as_ref())
            .is_some_and(|h| h.preempted_by.is_some());
        (e.state != EnclaveState::Stopped && !preempted).then_some(p.host.as_str())
    }
}

/// The scheduler's view of `state`: every host, and every enclave that holds a guarantee on one
/// (placed and not stopped, not suspended by a preemption; a moving enclave on its target).
/// An enclave placed by name on a host without a record holds nothing the scheduler can see.
/// Pure.
pub fn cluster_view(state: &State) -> ClusterView {
    view_where(state, |_| true)
}

/// [`cluster_view`] restricted to `hosts` and what holds a guarantee on them: all an
/// apply-time re-check needs, without copying every enclave's spec under the state's write
/// lock (the apply path is serial; this keeps it proportional to the hosts involved).
pub fn cluster_view_of(state: &State, hosts: &[&str]) -> ClusterView {
    view_where(state, |h| hosts.contains(&h))
}

fn view_where(state: &State, wanted: impl Fn(&str) -> bool) -> ClusterView {
    let policies = state.policy_set();
    let placed: Vec<Placed> = state
        .enclaves
        .values()
        .filter_map(|e| {
            let host = state.reserving_host(e)?;
            (wanted(host) && state.hosts.contains_key(host)).then(|| Placed {
                host: host.to_string(),
                spec: spec_under(&policies, state, e),
            })
        })
        .collect();
    let hosts = state
        .hosts
        .values()
        .filter(|h| wanted(&h.id))
        .map(host_view);
    // Every placement names a host of the view (filtered above), so this cannot fail; an
    // empty view is the fail-safe answer if it ever did (nothing is placed).
    ClusterView::new(hosts, placed).unwrap_or_default()
}

/// Whether a stop-and-restart move keeps what the enclave is: a process enclave (or one with
/// nothing to launch). A QEMU enclave would lose its memory: it moves by live migration
/// (`state/live.rs`). The launch spec is the agent's (passed through as JSON): a process spec is the
/// object `{"process": …}`.
pub fn restartable(e: &Enclave) -> bool {
    match &e.launch {
        None => true,
        Some(l) => l.as_object().is_some_and(|o| o.contains_key("process")),
    }
}

/// `host`'s rejection of `spec` in words ("h1: no room for 8 cores (2 cores free)").
fn words(host: &str, r: &Rejection, spec: &EnclaveSpec) -> String {
    tribune_migration::Unplaceable {
        enclave: spec.id.clone(),
        guarantee: spec.guarantee,
        rejections: vec![(host.to_string(), r.clone())],
    }
    .to_string()
}

impl State {
    /// `Command::Place`: re-checks the leader's placement against this state, then records the
    /// enclave on its host and what happens to each displaced one.
    pub(super) fn apply_place(
        &mut self,
        mut enclave: Enclave,
        placement: tribune_migration::Placement,
        actor: String,
        at_ms: i64,
    ) -> Outcome {
        if let Some(e) = self.enclaves.get(&enclave.id) {
            return Outcome::Conflict {
                what: format!("enclave {:?}", enclave.id),
                current_version: Some(e.version),
            };
        }
        if placement.enclave != enclave.id || enclave.placement.is_some() {
            return Outcome::Invalid {
                reason: format!(
                    "a placement of {:?} for enclave {:?}, which must come without one",
                    placement.enclave, enclave.id
                ),
            };
        }
        // Priorities as the policies give them (`state/standing.rs`), the preemptor's and
        // each victim's alike.
        let policies = self.policy_set();
        let spec = spec_under(&policies, self, &enclave);
        let fresh = apply_freshness(at_ms);
        let mut involved: Vec<&str> = vec![placement.host.as_str()];
        involved.extend(placement.displaced.iter().filter_map(|d| d.to.as_deref()));
        let mut view = cluster_view_of(self, &involved);
        for d in &placement.displaced {
            let victim = self.enclaves.get(&d.enclave);
            let ok = spec.preempt
                && d.from == placement.host
                && victim.is_some_and(|v| spec_under(&policies, self, v).priority < spec.priority)
                && view
                    .placed(&d.enclave)
                    .is_some_and(|p| p.host == placement.host);
            if !ok {
                return Outcome::NoRoom {
                    reason: format!(
                        "enclave {:?} is no longer a lower-priority enclave on host {:?} that {:?} may displace",
                        d.enclave, placement.host, enclave.id
                    ),
                };
            }
            view.remove(&d.enclave);
        }
        let Some(h) = view.host(&placement.host) else {
            return Outcome::NoRoom {
                reason: format!("host {:?} is gone", placement.host),
            };
        };
        if let Err(r) = filter::check(&view, h, &spec, fresh) {
            return Outcome::NoRoom {
                reason: words(&placement.host, &r, &spec),
            };
        }
        let _ = view.assign(Placed {
            host: placement.host.clone(),
            spec: spec.clone(),
        });
        // A displaced enclave goes where the leader chose if that still holds and it survives a
        // restart; otherwise it is suspended in place. Never over-committed, never stopped.
        let mut fates: Vec<(String, Option<String>)> = Vec::new();
        for d in &placement.displaced {
            let Some(v) = self.enclaves.get(&d.enclave) else {
                continue;
            };
            let mut vspec = spec_under(&policies, self, v);
            vspec.preempt = false;
            let to = d.to.clone().filter(|to| {
                restartable(v)
                    && *to != placement.host
                    && view
                        .host(to)
                        .is_some_and(|h| filter::check(&view, h, &vspec, fresh).is_ok())
            });
            if let Some(to) = &to {
                let _ = view.assign(Placed {
                    host: to.clone(),
                    spec: vspec,
                });
            }
            fates.push((d.enclave.clone(), to));
        }
        enclave.placement = Some(Placement {
            host: placement.host.clone(),
            epoch: 1,
        });
        enclave.state = EnclaveState::Pending;
        let out = self.put_enclave(enclave, Expect::Absent, actor.clone(), at_ms, false);
        let Outcome::Enclave(placed) = &out else {
            return out;
        };
        self.log.append(
            &placed.id,
            LogDetail::Migration(MigrationDetail::Place {
                host: placement.host.clone(),
                epoch: 1,
                priority: spec.priority,
                displaced: fates.iter().map(|(id, _)| id.clone()).collect(),
                actor: actor.clone(),
            }),
            at_ms,
        );
        for (id, to) in fates {
            self.displace(
                &id,
                &placement.host,
                to,
                (placed, spec.priority),
                &actor,
                at_ms,
            );
        }
        out
    }

    /// One displaced enclave: moved (a stop-and-restart move to `to`) or suspended on `from`.
    fn displace(
        &mut self,
        id: &str,
        from: &str,
        to: Option<String>,
        (by, by_priority): (&Enclave, i32),
        actor: &str,
        at_ms: i64,
    ) {
        let Some(priority) = self.enclaves.get(id).map(|e| self.priority_of(e)) else {
            return;
        };
        self.log.append(
            id,
            LogDetail::Migration(MigrationDetail::Preempted {
                from: from.to_string(),
                to: to.clone(),
                priority,
                by: by.id.clone(),
                by_priority,
                actor: actor.to_string(),
            }),
            at_ms,
        );
        if let Some(to) = to {
            let epoch = self
                .enclaves
                .get(id)
                .and_then(|e| e.placement.as_ref())
                .map_or(0, |p| p.epoch);
            self.begin_move(
                id,
                &to,
                epoch,
                format!("preempted by {}", by.id),
                actor,
                at_ms,
            );
            return;
        }
        let status = self.status.entry(id.to_string()).or_default();
        status.operator_hold = Some(OperatorHold {
            by: actor.to_string(),
            since_ms: at_ms,
            preempted_by: Some(by.id.clone()),
        });
        if let Some(a) = self.allocations.get_mut(id) {
            a.suspended = true;
        }
        if let Some(e) = self.enclaves.get_mut(id) {
            e.state = EnclaveState::Suspended;
            e.version += 1;
            let detail = EnclaveChangeDetail {
                op: EnclaveOp::Suspend,
                version: e.version,
                state: e.state,
                actor: actor.to_string(),
                tenant: e.tenant.clone(),
                host: Some(from.to_string()),
            };
            self.log.append(id, LogDetail::EnclaveChange(detail), at_ms);
        }
        self.bump_plan_version(from);
    }

    /// `Command::SetSchedulable`.
    pub(super) fn set_schedulable(
        &mut self,
        host: &str,
        schedulable: Schedulable,
        actor: String,
        at_ms: i64,
    ) -> Outcome {
        let Some(h) = self.hosts.get_mut(host) else {
            return Outcome::NotFound {
                what: format!("host {host:?}"),
            };
        };
        if h.schedulable != schedulable {
            h.schedulable = schedulable;
            let detail = match schedulable {
                Schedulable::Ready => HostChangeDetail::Uncordon { actor },
                Schedulable::Cordoned => HostChangeDetail::Cordon { actor },
                Schedulable::Draining => HostChangeDetail::Drain { actor },
            };
            self.log.append(host, LogDetail::HostChange(detail), at_ms);
        }
        match self.hosts.get(host) {
            Some(h) => Outcome::Host(h.clone()),
            None => Outcome::NotFound {
                what: format!("host {host:?}"),
            },
        }
    }

    /// `Command::StartMove`: checks the move against this state, then starts it.
    pub(super) fn start_move(
        &mut self,
        id: &str,
        to: &str,
        epoch: u64,
        cause: String,
        actor: String,
        at_ms: i64,
    ) -> Outcome {
        let Some(e) = self.enclaves.get(id) else {
            return Outcome::NotFound {
                what: format!("enclave {id:?}"),
            };
        };
        let Some(p) = e.placement.as_ref() else {
            return Outcome::Invalid {
                reason: format!("enclave {id:?} is not placed on a host"),
            };
        };
        if p.epoch != epoch || self.moves.contains_key(id) {
            return Outcome::Conflict {
                what: format!(
                    "enclave {id:?} (placed on {:?} under epoch {}, {})",
                    p.host,
                    p.epoch,
                    if self.moves.contains_key(id) {
                        "already moving"
                    } else {
                        "not the epoch the mover read"
                    }
                ),
                current_version: Some(e.version),
            };
        }
        if e.state == EnclaveState::Stopped || p.host == to || !restartable(e) {
            return Outcome::Invalid {
                reason: if restartable(e) {
                    format!("enclave {id:?} is stopped or already on host {to:?}")
                } else {
                    format!(
                        "enclave {id:?} is a QEMU enclave: it moves only by live migration (a stop-and-restart would lose its memory); it stays on {:?}",
                        p.host
                    )
                },
            };
        }
        let mut spec = enclave_spec(e);
        spec.preempt = false;
        let mut view = cluster_view_of(self, &[to]);
        view.remove(id);
        let Some(h) = view.host(to) else {
            return Outcome::NotFound {
                what: format!("host {to:?}"),
            };
        };
        if let Err(r) = filter::check(&view, h, &spec, apply_freshness(at_ms)) {
            return Outcome::NoRoom {
                reason: words(to, &r, &spec),
            };
        }
        self.begin_move(id, to, epoch, cause, &actor, at_ms);
        match self.enclaves.get(id) {
            Some(e) => Outcome::Enclave(e.clone()),
            None => Outcome::NotFound {
                what: format!("enclave {id:?}"),
            },
        }
    }

    /// Records a checked move: `from`'s plan drops the enclave (its version moves), the target
    /// holds its guarantee, the log says so.
    fn begin_move(
        &mut self,
        id: &str,
        to: &str,
        epoch: u64,
        cause: String,
        actor: &str,
        at_ms: i64,
    ) {
        let Some(from) = self
            .enclaves
            .get(id)
            .and_then(|e| e.placement.as_ref())
            .map(|p| p.host.clone())
        else {
            return;
        };
        self.bump_plan_version(&from);
        let stop_version = self.plan_versions.get(&from).copied().unwrap_or(0);
        if let Some(e) = self.enclaves.get_mut(id) {
            e.version += 1;
            if e.state != EnclaveState::Stopped {
                e.state = EnclaveState::Migrating;
            }
        }
        self.log.append(
            id,
            LogDetail::Migration(MigrationDetail::MoveStart {
                from: from.clone(),
                to: to.to_string(),
                epoch,
                cause: cause.clone(),
                actor: actor.to_string(),
            }),
            at_ms,
        );
        self.moves.insert(
            id.to_string(),
            Move {
                from,
                to: to.to_string(),
                epoch,
                stop_version,
                cause,
            },
        );
    }

    /// `Command::FinishMoves`: every move off `host` whose source plan `version` covers is
    /// placed on its target under the next epoch. A move whose enclave changed placement in
    /// the meantime (an operator placed it by name) is dropped.
    pub(super) fn finish_moves(&mut self, host: &str, version: u64, at_ms: i64) -> Outcome {
        let done: Vec<String> = self
            .moves
            .iter()
            .filter(|(_, m)| m.from == host && version >= m.stop_version)
            .map(|(id, _)| id.clone())
            .collect();
        let mut moved = Vec::new();
        for id in done {
            let Some(m) = self.moves.remove(&id) else {
                continue;
            };
            let held = self
                .status
                .get(&id)
                .is_some_and(|s| s.operator_hold.is_some());
            let Some(e) = self.enclaves.get_mut(&id) else {
                continue;
            };
            let same = e
                .placement
                .as_ref()
                .is_some_and(|p| p.host == m.from && p.epoch == m.epoch);
            if !same {
                continue;
            }
            let epoch = m.epoch + 1;
            e.placement = Some(Placement {
                host: m.to.clone(),
                epoch,
            });
            e.version += 1;
            e.state = match e.state {
                EnclaveState::Stopped => EnclaveState::Stopped,
                _ if held => EnclaveState::Suspended,
                // New evidence from the new host makes it running again.
                _ => EnclaveState::Pending,
            };
            self.bump_plan_version(&m.to);
            self.log.append(
                &id,
                LogDetail::Migration(MigrationDetail::MoveDone {
                    from: m.from.clone(),
                    to: m.to.clone(),
                    epoch,
                    source_plan_version: version,
                }),
                at_ms,
            );
            moved.push(id);
        }
        Outcome::Moved { enclaves: moved }
    }

    /// Whether an operator may resume `e`, suspended by a preemption, on its host: only if its
    /// guarantee fits there again (a preempted enclave reserves nothing while suspended).
    pub(super) fn room_to_resume(&self, e: &Enclave) -> Result<(), String> {
        let Some(host) = e.placement.as_ref().map(|p| p.host.as_str()) else {
            return Ok(());
        };
        let view = cluster_view_of(self, &[host]);
        let Some(h) = view.host(host) else {
            return Ok(());
        };
        let spec = enclave_spec(e);
        let free = h.free();
        if spec.guarantee.fits_in(&free) {
            Ok(())
        } else {
            Err(format!(
                "enclave {:?} was suspended by a preemption and its guarantee no longer fits on host {host:?}: {}",
                e.id,
                words(
                    host,
                    &Rejection::Capacity {
                        short: spec.guarantee.short_of(&free),
                        free
                    },
                    &spec
                )
            ))
        }
    }
}

#[cfg(test)]
#[path = "schedule_tests.rs"]
mod tests;

#[cfg(test)]
#[path = "schedule_plan_tests.rs"]
mod plan_tests;
