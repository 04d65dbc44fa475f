//! Writes of one enclave's record by an operator or the API (`Command::PutEnclave` and
//! `PutEnclaveSpec`): preconditions, the tenant quota, placement epochs that only move forward,
//! operator holds, and the plan versions a write moves.

use super::*;

impl State {
    /// A policy was stored or removed: the plan of every host with a placed enclave may differ
    /// (static limits come from the policies before any decision), so its version moves. An
    /// agent must never see one version with two contents (it would refuse the second after a
    /// failover).
    pub(super) fn policies_changed(&mut self) {
        let hosts: std::collections::BTreeSet<String> = self
            .enclaves
            .values()
            .filter_map(|e| e.placement.as_ref().map(|p| p.host.clone()))
            .collect();
        for h in hosts {
            self.bump_plan_version(&h);
        }
    }

    /// `spec_only`: an existing enclave keeps its stored state and, on the same host, its
    /// placement epoch (`Command::PutEnclaveSpec`).
    pub(super) fn put_enclave(
        &mut self,
        mut enclave: Enclave,
        expect: Expect,
        actor: String,
        at_ms: i64,
        spec_only: bool,
    ) -> Outcome {
        let current = self.enclaves.get(&enclave.id);
        if let Err(conflict) = precondition(
            &format!("enclave {:?}", enclave.id),
            current.map(|e| e.version),
            expect,
        ) {
            return conflict;
        }
        let same_tenant = current.is_some_and(|c| c.tenant == enclave.tenant);
        if !same_tenant
            && self
                .enclaves
                .values()
                .filter(|e| e.tenant == enclave.tenant)
                .count()
                >= ENCLAVES_PER_TENANT_MAX
        {
            return Outcome::Quota {
                reason: format!(
                    "tenant {:?} has {ENCLAVES_PER_TENANT_MAX} enclaves, the most a tenant may have",
                    enclave.tenant
                ),
            };
        }
        enclave.version = current.map_or(1, |e| e.version + 1);
        let spec_only = spec_only && current.is_some();
        if spec_only && let Some(c) = current {
            enclave.state = c.state;
            if let (Some(cur), Some(new)) = (c.placement.as_ref(), enclave.placement.as_mut())
                && new.host == cur.host
            {
                new.epoch = cur.epoch;
            }
        }
        // Placement epochs only move forward: a stale writer can never reuse an epoch, and a
        // write that keeps the host never lowers it.
        if let (Some(cur), Some(new)) = (
            current.and_then(|e| e.placement.as_ref()),
            enclave.placement.as_mut(),
        ) {
            if new.host != cur.host && new.epoch <= cur.epoch {
                new.epoch = cur.epoch + 1;
            } else if new.host == cur.host && new.epoch < cur.epoch {
                new.epoch = cur.epoch;
            }
        }
        let held = self
            .status
            .get(&enclave.id)
            .is_some_and(|s| s.operator_hold.is_some());
        let was = current.map(|c| c.state);
        let preempted = self
            .status
            .get(&enclave.id)
            .and_then(|s| s.operator_hold.as_ref())
            .is_some_and(|h| h.preempted_by.is_some());
        if preempted
            && !spec_only
            && enclave.state == EnclaveState::Running
            && let Err(reason) = self.room_to_resume(&enclave)
        {
            return Outcome::NoRoom { reason };
        }
        // What the operator asked for, in the log's words.
        let mut op = EnclaveOp::Put;
        if spec_only {
            // The stored state as it is: no suspension, resumption or stop.
        } else if enclave.state == EnclaveState::Suspended && !held && current.is_some() {
            // An operator's suspension: sticky until an operator resumes it.
            op = EnclaveOp::Suspend;
            let status = self.status.entry(enclave.id.clone()).or_default();
            status.operator_hold = Some(OperatorHold {
                by: actor.clone(),
                since_ms: at_ms,
                preempted_by: None,
            });
            if let Some(a) = self.allocations.get_mut(&enclave.id) {
                a.suspended = true;
            }
        } else if enclave.state == EnclaveState::Running
            && (held || matches!(was, Some(EnclaveState::Suspended | EnclaveState::Throttled)))
        {
            // An operator resuming a suspended or throttled enclave restarts its ladder; it is
            // re-evaluated on its next verified report.
            op = EnclaveOp::Resume;
            if let Some(st) = self.status.get_mut(&enclave.id) {
                st.ladder = Ladder::default();
                st.operator_hold = None;
            }
            if let Some(a) = self.allocations.get_mut(&enclave.id) {
                a.suspended = false;
                a.limits.cpu_millicores = 0;
            }
        } else if held && enclave.state != EnclaveState::Stopped {
            // Any other write keeps the enclave suspended. Stopping it is stricter than the
            // suspension (its plan drops it), so a stop goes through.
            enclave.state = EnclaveState::Suspended;
        }
        if let Some(p) = &enclave.placement {
            self.bump_plan_version(&p.host);
        }
        // Placed by name elsewhere than a move under way started from: the move is void.
        if let Some(m) = self.moves.get(&enclave.id)
            && enclave.placement.as_ref().is_none_or(|p| p.host != m.from)
        {
            self.moves.remove(&enclave.id);
        }
        self.log.append(
            &enclave.id,
            LogDetail::EnclaveChange(EnclaveChangeDetail {
                op,
                version: enclave.version,
                state: enclave.state,
                actor,
                tenant: enclave.tenant.clone(),
                host: enclave.placement.as_ref().map(|p| p.host.clone()),
            }),
            at_ms,
        );
        self.enclaves.insert(enclave.id.clone(), enclave.clone());
        Outcome::Enclave(enclave)
    }
}
