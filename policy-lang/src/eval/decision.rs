//! What an evaluation decides: effective settings with the rule each came from, the action
//! due, the attestation verdict, lending, and `talk` verdicts.

use serde::{Deserialize, Serialize};

use crate::ir::*;
use crate::units::Resource;

/// Which part of which policy produced a value.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum SourceKind {
    /// Nothing set this value.
    #[default]
    Unset,
    /// The policy's static settings (`guarantee`, `limit`, `weight`, `priority`).
    Static,
    /// A `when` rule.
    When,
    /// An `on` ladder.
    On,
    Reclaim,
    Attest,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct Origin {
    /// Index of the policy in the evaluated set.
    pub policy: u16,
    pub kind: SourceKind,
    /// 1-based index of the rule (`when#N`, `on#N`) or ladder step.
    pub index: u16,
    /// Source line.
    pub line: u32,
}

#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize, Default)]
pub struct Setting {
    /// Canonical units; `None` when no policy sets it.
    pub value: Option<f64>,
    pub origin: Origin,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub enum AttestViolation {
    StatusFailed,
    MeasurementNotAllowed,
    TcbTooOld,
    DebugForbidden,
    SimulatedForbidden,
}

#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize, Default)]
pub struct AttestOutcome {
    pub ok: bool,
    pub violation: Option<AttestViolation>,
    pub reattest_every_ms: Option<f64>,
    pub origin: Origin,
}

#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize, Default)]
pub struct ReclaimOutcome {
    pub active: bool,
    /// Per resource (cpu, memory, egress, ingress, gpu): how much may be lent out now.
    pub lendable: [Option<f64>; 5],
    pub return_within_ms: Option<f64>,
    pub origin: Origin,
}

#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize, Default)]
pub struct ActionOutcome {
    pub action: Action,
    pub origin: Origin,
}

/// The outcome of evaluating one policy (or a set) for one enclave.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize, Default)]
pub struct Decision {
    pub matched: bool,
    /// Per resource, in [`Resource::ALL`] order.
    pub guarantee: [Setting; 5],
    pub limit: [Setting; 5],
    pub weight: Setting,
    pub priority: Setting,
    /// The message rate (messages a second) a `when` rule holds the enclave to while it is
    /// throttled (`msgs.rate = N`).
    pub msgs_rate: Setting,
    pub preempt: bool,
    /// The most severe action due now, and the rule or ladder step that asks for it.
    pub action: ActionOutcome,
    pub attestation: AttestOutcome,
    pub reclaim: ReclaimOutcome,
    /// Bit i set: condition i of `CompiledPolicy::condition_ids()` is true now (the caller
    /// tracks how long, for `held_ms`). For a set, the bits of the first matching policy.
    pub conditions_true: u64,
}

pub(super) fn origin(policy: u16, kind: SourceKind, index: usize, line: u32) -> Origin {
    Origin {
        policy,
        kind,
        index: index.min(u16::MAX as usize) as u16,
        line,
    }
}

impl Decision {
    /// The effective limit of one resource, in canonical units.
    pub fn limit_of(&self, r: Resource) -> Option<f64> {
        self.limit[r as usize].value
    }

    /// The effective guarantee of one resource, in canonical units.
    pub fn guarantee_of(&self, r: Resource) -> Option<f64> {
        self.guarantee[r as usize].value
    }
}

/// Whether an enclave may send to a peer (`talk` rules, first match wins; no rule: denied).
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize, Default)]
pub struct TalkDecision {
    pub allowed: bool,
    /// The sender's share of the mediated channel (0 when denied).
    pub share: f64,
    /// The policy whose `talk` block decided (index into the set), if any.
    pub policy: Option<u16>,
    /// 1-based index of the deciding rule in that `talk` block (0: none matched).
    pub rule: u16,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_default_decision_matches_nothing_and_sets_nothing() {
        let d = Decision::default();
        assert!(!d.matched);
        assert!(Resource::ALL.iter().all(|r| d.limit_of(*r).is_none()));
        assert!(Resource::ALL.iter().all(|r| d.guarantee_of(*r).is_none()));
        assert_eq!(d.action.action, Action::None);
        assert_eq!(d.attestation.origin.kind, SourceKind::Unset);
    }

    #[test]
    fn accessors_read_the_resource_slot() {
        let mut d = Decision::default();
        d.limit[Resource::Memory as usize].value = Some(1024.0);
        d.guarantee[Resource::Gpu as usize].value = Some(50.0);
        assert_eq!(d.limit_of(Resource::Memory), Some(1024.0));
        assert_eq!(d.limit_of(Resource::Cpu), None);
        assert_eq!(d.guarantee_of(Resource::Gpu), Some(50.0));
    }

    #[test]
    fn origins_clamp_the_index() {
        let o = origin(3, SourceKind::When, 70_000, 12);
        assert_eq!((o.policy, o.index, o.line), (3, u16::MAX, 12));
        assert_eq!(origin(0, SourceKind::On, 2, 1).index, 2);
    }

    #[test]
    fn violations_serialise_in_snake_case() {
        let v = serde_json::to_value(AttestViolation::MeasurementNotAllowed).expect("json");
        assert_eq!(v, "measurement_not_allowed");
        let v = serde_json::to_value(SourceKind::Reclaim).expect("json");
        assert_eq!(v, "reclaim");
    }
}
