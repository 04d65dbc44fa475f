//! `Command::DeleteEnclave`: removing an enclave record, only once no agent may be running it.

use super::{
    EnclaveChangeDetail, EnclaveOp, EnclaveState, Expect, LogDetail, Outcome, State, precondition,
};

impl State {
    /// Removes an enclave record and what the loop kept about it (status, allocation). Only an
    /// enclave no agent may be running goes: one never placed, or one placed but `stopped`
    /// (its plan no longer names it). Removing it changes no plan, so no plan version moves.
    pub(super) fn delete_enclave(
        &mut self,
        id: String,
        expect: Expect,
        actor: String,
        at_ms: i64,
    ) -> Outcome {
        let Some(current) = self.enclaves.get(&id) else {
            return Outcome::NotFound {
                what: format!("enclave {id:?}"),
            };
        };
        if let Err(conflict) =
            precondition(&format!("enclave {id:?}"), Some(current.version), expect)
        {
            return conflict;
        }
        if let Some(p) = &current.placement
            && current.state != EnclaveState::Stopped
        {
            return Outcome::InUse {
                reason: format!(
                    "enclave {id:?} is placed on host {:?} and {}: its agent may be running it, so deleting the record would leave a running enclave nothing accounts for. Stop it first (`tribune enclave stop {id}`: its plan drops it and the agent stops it), then delete it",
                    p.host,
                    serde_json::to_value(current.state)
                        .ok()
                        .and_then(|v| v.as_str().map(str::to_string))
                        .unwrap_or_default()
                ),
            };
        }
        let Some(removed) = self.enclaves.remove(&id) else {
            return Outcome::NotFound {
                what: format!("enclave {id:?}"),
            };
        };
        self.allocations.remove(&id);
        self.status.remove(&id);
        self.moves.remove(&id);
        self.log.append(
            &id,
            LogDetail::EnclaveChange(EnclaveChangeDetail {
                op: EnclaveOp::Delete,
                version: removed.version,
                state: removed.state,
                actor,
                tenant: removed.tenant.clone(),
                host: removed.placement.as_ref().map(|p| p.host.clone()),
            }),
            at_ms,
        );
        Outcome::EnclaveDeleted {
            id,
            version: removed.version,
        }
    }
}
