//! Placement-epoch fencing, pure: the agent never runs an enclave under an epoch older than
//! one it has already seen for that enclave.
//!
//! The controllers raise an enclave's placement epoch through Raft every time it moves
//! (docs/protocol.md "Migration"). Each agent keeps, per enclave, the highest epoch it has
//! been told about — by an applied plan, or by a migration that carried the enclave away
//! (the source learns the target's new epoch at switch-over). A plan that names the enclave
//! under a lower epoch comes from a controller that has not seen the move (a deposed leader,
//! a replayed message): that enclave's part of the plan is refused and logged, the rest of
//! the plan applies. So a source can never resume a migrated-away enclave under its old
//! epoch, whatever it is sent.
//!
//! Epoch 0 means "not given" (local JSON plans, tests) and is never fenced.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::plan::{EnclavePlan, Plan};

/// Highest placement epoch seen per enclave (persisted beside the applied plan).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct EpochFloors(BTreeMap<String, u64>);

/// One enclave of a plan refused for its stale epoch.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StaleEpoch {
    pub enclave: String,
    pub offered: u64,
    pub seen: u64,
}

impl std::fmt::Display for StaleEpoch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "placement epoch {} of enclave {} is older than epoch {} this host has already \
             seen for it: refused (a controller that has not seen its move?)",
            self.offered, self.enclave, self.seen
        )
    }
}

impl EpochFloors {
    pub fn seen(&self, enclave: &str) -> u64 {
        self.0.get(enclave).copied().unwrap_or(0)
    }

    /// Records that `enclave` is known under `epoch` (only ever raises).
    pub fn raise(&mut self, enclave: &str, epoch: u64) {
        if epoch > self.seen(enclave) {
            self.0.insert(enclave.to_string(), epoch);
        }
    }

    /// Splits `offered` into what may be applied and the enclaves refused for a stale epoch.
    /// A refused enclave that runs here keeps its applied plan (`applied`: what it runs
    /// under now); one that does not run here is left out, so it is neither launched nor
    /// resumed.
    pub fn filter(
        &self,
        offered: Plan,
        applied: &BTreeMap<String, EnclavePlan>,
    ) -> (Plan, Vec<StaleEpoch>) {
        let mut stale = Vec::new();
        let mut enclaves = BTreeMap::new();
        let remote = offered.remote;
        for (name, e) in offered.enclaves {
            let seen = self.seen(&name);
            if e.placement_epoch != 0 && e.placement_epoch < seen {
                stale.push(StaleEpoch {
                    enclave: name.clone(),
                    offered: e.placement_epoch,
                    seen,
                });
                if let Some(a) = applied.get(&name) {
                    enclaves.insert(name, a.clone());
                }
            } else {
                enclaves.insert(name, e);
            }
        }
        (
            Plan {
                version: offered.version,
                enclaves,
                remote,
            },
            stale,
        )
    }

    /// Raises every enclave's floor to the epoch of the plan just applied.
    pub fn record(&mut self, applied: &Plan) {
        for (name, e) in &applied.enclaves {
            self.raise(name, e.placement_epoch);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plan::RunState;

    fn plan(version: u64, es: &[(&str, u64)]) -> Plan {
        Plan {
            version,
            enclaves: es
                .iter()
                .map(|(n, epoch)| {
                    (
                        n.to_string(),
                        EnclavePlan {
                            placement_epoch: *epoch,
                            ..EnclavePlan::default()
                        },
                    )
                })
                .collect(),
            remote: Default::default(),
        }
    }

    #[test]
    fn newer_or_equal_epochs_pass_and_raise_the_floor() {
        let mut f = EpochFloors::default();
        let (p, stale) = f.filter(plan(1, &[("a", 3), ("b", 0)]), &BTreeMap::new());
        assert!(stale.is_empty());
        assert_eq!(p, plan(1, &[("a", 3), ("b", 0)]));
        f.record(&p);
        assert_eq!(f.seen("a"), 3);
        assert_eq!(f.seen("b"), 0);
        let (p, stale) = f.filter(plan(2, &[("a", 3)]), &BTreeMap::new());
        assert!(stale.is_empty());
        assert_eq!(p.enclaves.len(), 1);
        f.record(&plan(3, &[("a", 2)]));
        assert_eq!(f.seen("a"), 3, "floors never fall");
    }

    #[test]
    fn an_older_epoch_is_refused_and_not_launched() {
        let mut f = EpochFloors::default();
        // Migrated away at switch-over: the new epoch is 5.
        f.raise("vm", 5);
        let (p, stale) = f.filter(plan(9, &[("vm", 4), ("other", 1)]), &BTreeMap::new());
        assert_eq!(
            stale,
            vec![StaleEpoch {
                enclave: "vm".into(),
                offered: 4,
                seen: 5
            }]
        );
        assert!(!p.enclaves.contains_key("vm"), "not launched, not resumed");
        assert!(
            p.enclaves.contains_key("other"),
            "the rest of the plan applies"
        );
        assert!(stale[0].to_string().contains("older than epoch 5"));
    }

    #[test]
    fn a_running_enclave_keeps_its_applied_plan_under_a_stale_one() {
        let mut f = EpochFloors::default();
        f.raise("vm", 7);
        let mut applied = BTreeMap::new();
        let running = EnclavePlan {
            placement_epoch: 7,
            state: RunState::Suspend,
            ..EnclavePlan::default()
        };
        applied.insert("vm".to_string(), running.clone());
        // A stale controller tries to resume it under epoch 6.
        let (p, stale) = f.filter(plan(10, &[("vm", 6)]), &applied);
        assert_eq!(stale.len(), 1);
        assert_eq!(p.enclaves["vm"], running);
    }

    #[test]
    fn epoch_zero_is_never_fenced() {
        let mut f = EpochFloors::default();
        f.raise("a", 2);
        let (p, stale) = f.filter(plan(1, &[("a", 0)]), &BTreeMap::new());
        assert!(stale.is_empty());
        assert!(p.enclaves.contains_key("a"));
    }

    #[test]
    fn floors_round_trip_as_a_json_map() {
        let mut f = EpochFloors::default();
        f.raise("a", 2);
        let text = serde_json::to_string(&f).unwrap();
        assert_eq!(text, r#"{"a":2}"#);
        assert_eq!(serde_json::from_str::<EpochFloors>(&text).unwrap(), f);
    }
}
