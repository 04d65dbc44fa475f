//! The compiled, flat form of a policy: arenas of numeric and boolean nodes addressed by
//! index, plain arrays per resource. Evaluation walks these without allocating.

use std::collections::BTreeMap;

use crate::units::{Dim, Resource};

/// The TEE kinds: the attestation crate's one type (`sev-snp`, `tdx`, `sim`).
pub use tribune_attest::TeeKind;

pub type NumId = u32;
pub type CondId = u32;

#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Agg {
    Avg,
    Max,
    P95,
}

impl Agg {
    pub const NAMES: [&'static str; 3] = ["avg", "max", "p95"];
    pub fn from_name(s: &str) -> Option<Agg> {
        match s {
            "avg" => Some(Agg::Avg),
            "max" => Some(Agg::Max),
            "p95" => Some(Agg::P95),
            _ => None,
        }
    }
}

/// A numeric live fact.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum NumFact {
    HostUtil(Resource),
    ClusterUtil(Resource),
    Usage {
        resource: Resource,
        agg: Agg,
        window_s: u32,
    },
    Divergence,
    Time,
    ReattestFailures,
    TcbVersion,
    /// `usage.msgs.rate`: inter-enclave messages the enclave sent in its last usage report's
    /// window, accepted or refused, per second.
    MsgsRate,
    /// `usage.msgs.bytes`: their payload bytes per second.
    MsgsBytes,
}

impl NumFact {
    pub fn dim(self) -> Dim {
        match self {
            NumFact::HostUtil(_) | NumFact::ClusterUtil(_) | NumFact::Divergence => Dim::Percent,
            NumFact::Usage { resource, .. } => resource.dim(),
            NumFact::Time => Dim::TimeOfDay,
            NumFact::ReattestFailures | NumFact::TcbVersion | NumFact::MsgsRate => Dim::Scalar,
            NumFact::MsgsBytes => Dim::Memory,
        }
    }
    /// The values the fact can take, for reachability analysis.
    pub fn natural_range(self) -> (f64, f64) {
        match self {
            NumFact::HostUtil(_) | NumFact::ClusterUtil(_) => (0.0, 100.0),
            NumFact::Usage {
                resource: Resource::Gpu,
                ..
            } => (0.0, 100.0),
            NumFact::Time => (0.0, 1439.0),
            _ => (0.0, f64::INFINITY),
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Num {
    Const(f64),
    Fact(NumFact),
    Add(NumId, NumId),
    Sub(NumId, NumId),
    Mul(NumId, NumId),
    Div(NumId, NumId),
    /// `P of X` = P/100 × X
    Of(NumId, NumId),
    Neg(NumId),
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CmpOp {
    Eq,
    Ne,
    Lt,
    Le,
    Gt,
    Ge,
}

#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum StrField {
    Tenant,
    Label(String),
    Measurement,
    Class,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum AttestStatus {
    #[default]
    Trusted,
    Pending,
    Failed,
}

impl AttestStatus {
    pub const NAMES: [&'static str; 3] = ["trusted", "pending", "failed"];
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum TcbStatus {
    #[default]
    UpToDate,
    OutOfDate,
    Revoked,
}

impl TcbStatus {
    pub const NAMES: [&'static str; 3] = ["up_to_date", "out_of_date", "revoked"];
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BoolFact {
    OverLimit,
    /// Attestation failed, or the evidence does not meet the policy's `attest` block.
    AttestationFailed,
    ReattestationFailed,
    Debug,
}

#[derive(Clone, Debug, PartialEq)]
pub enum Cond {
    Const(bool),
    And(CondId, CondId),
    Or(CondId, CondId),
    Not(CondId),
    Cmp(CmpOp, NumId, NumId),
    StrEq(StrField, String),
    StrIn(StrField, Vec<String>),
    /// Bit set of [`TeeKind::bit`].
    TeeIn(u8),
    /// Minutes after midnight, `[from, to)`; wraps past midnight when `from > to`.
    TimeIn(f64, f64),
    Attest(AttestStatus),
    Tcb(TcbStatus),
    Flag(BoolFact),
}

/// Escalation actions, in increasing severity.
#[derive(
    Clone,
    Copy,
    Debug,
    PartialEq,
    Eq,
    PartialOrd,
    Ord,
    serde::Serialize,
    serde::Deserialize,
    Default,
)]
#[serde(rename_all = "snake_case")]
pub enum Action {
    #[default]
    None,
    Notify,
    Throttle,
    Suspend,
    Migrate,
}

impl Action {
    pub const NAMES: [&'static str; 4] = ["notify", "throttle", "suspend", "migrate"];
    pub fn from_name(s: &str) -> Option<Action> {
        match s {
            "notify" => Some(Action::Notify),
            "throttle" => Some(Action::Throttle),
            "suspend" => Some(Action::Suspend),
            "migrate" => Some(Action::Migrate),
            _ => None,
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Target {
    Limit(Resource),
    Guarantee(Resource),
    Weight,
    Priority,
    /// `msgs.rate`: the inter-enclave messages a second the enclave is held to while the
    /// ladder has it throttled (its sends beyond it are refused, `rate-limited`).
    MsgsRate,
}

#[derive(Clone, Debug, PartialEq)]
pub struct Effect {
    pub target: Target,
    pub value: NumId,
    pub line: u32,
}

/// `when COND [for D] { … }`
#[derive(Clone, Debug, PartialEq)]
pub struct Rule {
    /// `when#N`, the key of this rule in `Facts::held_ms` and in decisions.
    pub id: String,
    pub line: u32,
    pub cond: CondId,
    pub held_ms: f64,
    pub effects: Vec<Effect>,
    pub action: Action,
}

#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Step {
    pub action: Action,
    pub after_ms: f64,
    pub line: u32,
}

#[derive(Clone, Debug, PartialEq)]
pub enum Event {
    /// Usage above the limit; its duration is `Facts::over_limit_ms`.
    OverLimit,
    /// Any condition; its duration is `Facts::held_ms[id]`.
    Cond(CondId),
}

/// `on EVENT { step; … }`
#[derive(Clone, Debug, PartialEq)]
pub struct Ladder {
    /// `on#N`
    pub id: String,
    pub line: u32,
    pub event: Event,
    /// Sorted by `after_ms`, strictly increasing (the checker enforces it).
    pub steps: Vec<Step>,
}

#[derive(Clone, Debug, PartialEq)]
pub struct Reclaim {
    pub line: u32,
    pub idle: Option<CondId>,
    pub held_ms: f64,
    pub keep: [Option<f64>; 5],
    pub return_ms: Option<f64>,
}

#[derive(Clone, Debug, PartialEq, Default)]
pub struct AttestReq {
    pub line: u32,
    pub measurements: Vec<String>,
    /// Minimum TCB version for SEV-SNP and TDX.
    pub min_tcb: [Option<f64>; 2],
    pub debug_allowed: bool,
    pub simulated_allowed: bool,
    /// `sept_ve = allowed`: a TDX TD with SEPT_VE_DISABLE clear is accepted.
    pub sept_ve_allowed: bool,
    /// `tdx_tcb = required`: TDX evidence needs a TCB status (collateral evaluated).
    pub tdx_tcb_required: bool,
    pub every_ms: Option<f64>,
}

impl AttestReq {
    pub fn knobs(&self) -> AttestKnobs {
        AttestKnobs {
            allow_debug: self.debug_allowed,
            allow_sept_ve: self.sept_ve_allowed,
            require_tdx_tcb: self.tdx_tcb_required,
        }
    }
}

/// What an `attest { … }` block asks of the evidence verifier: the boolean fields of
/// `tribune_attest::evidence::AttestPolicy`, under the same names, for the controller to copy
/// into the `AttestPolicy` it verifies an enclave's evidence with. The default is an `attest`
/// block that sets none of them (debug and SEPT_VE forbidden, no TCB status required).
///
/// `simulated = …` is not here: whether simulated evidence is verified at all is the
/// controller's configuration (`VerifierConfig::allow_sim`), which a tenant's policy must not
/// widen; the policy itself refuses a `sim` enclave it does not allow
/// ([`AttestViolation::SimulatedForbidden`](crate::AttestViolation)).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct AttestKnobs {
    /// `debug = allowed` (default `forbidden`).
    pub allow_debug: bool,
    /// `sept_ve = allowed` (default `forbidden`).
    pub allow_sept_ve: bool,
    /// `tdx_tcb = required` (default `optional`).
    pub require_tdx_tcb: bool,
}

impl AttestKnobs {
    /// The knobs under which evidence must meet every one of `self` and `other` (several
    /// matching policies: attestation requirements of all must hold).
    pub fn strictest(self, other: AttestKnobs) -> AttestKnobs {
        AttestKnobs {
            allow_debug: self.allow_debug && other.allow_debug,
            allow_sept_ve: self.allow_sept_ve && other.allow_sept_ve,
            require_tdx_tcb: self.require_tdx_tcb || other.require_tdx_tcb,
        }
    }
}

#[derive(Clone, Debug, PartialEq)]
pub struct TalkRule {
    pub line: u32,
    pub allow: bool,
    /// `None` is `*`.
    pub to: Option<CondId>,
    pub share: f64,
}

/// Where a policy came from, for diagnostics about it after compilation (conflicts).
#[derive(Clone, Debug, PartialEq)]
pub struct Loc {
    pub file: String,
    pub offset: u32,
    pub end_offset: u32,
    pub line: u32,
    pub column: u32,
    pub end_line: u32,
    pub end_column: u32,
}

/// Selector constraints of a purely conjunctive `match`, for overlap analysis.
pub type Atoms = BTreeMap<StrField2, Vec<String>>;

#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum StrField2 {
    Str(StrField),
    Tee,
}

/// A checked policy, ready to evaluate.
#[derive(Clone, Debug, PartialEq)]
pub struct CompiledPolicy {
    pub(crate) name: String,
    pub(crate) loc: Loc,
    pub(crate) precedence: f64,
    pub(crate) specificity: u32,
    pub(crate) selector: Option<CondId>,
    pub(crate) atoms: Option<Atoms>,
    pub(crate) guarantee: [Option<f64>; 5],
    pub(crate) limit: [Option<f64>; 5],
    pub(crate) guarantee_line: [u32; 5],
    pub(crate) limit_line: [u32; 5],
    pub(crate) weight: Option<(f64, u32)>,
    pub(crate) priority: Option<(f64, u32)>,
    pub(crate) preempt: bool,
    pub(crate) rules: Vec<Rule>,
    pub(crate) ladders: Vec<Ladder>,
    pub(crate) reclaim: Option<Reclaim>,
    pub(crate) attest: Option<AttestReq>,
    pub(crate) talk: Vec<TalkRule>,
    pub(crate) nums: Vec<Num>,
    pub(crate) conds: Vec<Cond>,
}

impl CompiledPolicy {
    pub fn name(&self) -> &str {
        &self.name
    }
    pub fn file(&self) -> &str {
        &self.loc.file
    }
    /// Explicit precedence (`precedence N`, default 0).
    pub fn precedence(&self) -> f64 {
        self.precedence
    }
    /// The tenants this policy can apply to, when its `match` is a conjunction that names them
    /// (`tenant == "acme" && …`, `tenant in [...]`); `None` when it could match any tenant.
    /// The API lets a tenant store only a policy that names exactly its own tenant here.
    pub fn tenants(&self) -> Option<&[String]> {
        self.atoms
            .as_ref()?
            .get(&StrField2::Str(StrField::Tenant))
            .map(Vec::as_slice)
    }
    /// How many identity constraints the `match` has; breaks precedence ties.
    pub fn specificity(&self) -> u32 {
        self.specificity
    }
    /// The re-attestation interval the policy asks for, in milliseconds.
    pub fn reattest_every_ms(&self) -> Option<f64> {
        self.attest.as_ref().and_then(|a| a.every_ms)
    }
    /// The verifier settings of the policy's `attest` block (`debug`, `sept_ve`, `tdx_tcb`),
    /// for the controller's `AttestPolicy`; `None` when the policy has no `attest` block (it
    /// asks nothing of the verifier). For every policy that matches an enclave, see
    /// [`PolicySet::attest_knobs`](crate::PolicySet::attest_knobs).
    pub fn attest_knobs(&self) -> Option<AttestKnobs> {
        self.attest.as_ref().map(AttestReq::knobs)
    }
    /// The usage aggregates this policy reads (`usage.R.agg(W)`), deduplicated and sorted:
    /// what the caller must put in `Facts::usage`.
    pub fn usage_windows(&self) -> Vec<(Resource, Agg, u32)> {
        let mut v: Vec<(Resource, Agg, u32)> = self
            .nums
            .iter()
            .filter_map(|n| match n {
                Num::Fact(NumFact::Usage {
                    resource,
                    agg,
                    window_s,
                }) => Some((*resource, *agg, *window_s)),
                _ => None,
            })
            .collect();
        v.sort_by_key(|(r, a, w)| (*r, *a as u8, *w));
        v.dedup();
        v
    }

    /// The ids of the conditions whose durations the caller tracks (`Facts::held_ms` keys),
    /// in the bit order of `Decision::conditions_true`.
    pub fn condition_ids(&self) -> Vec<&str> {
        let mut v: Vec<&str> = self.rules.iter().map(|r| r.id.as_str()).collect();
        v.extend(self.ladders.iter().map(|l| l.id.as_str()));
        if self.reclaim.is_some() {
            v.push("reclaim");
        }
        v
    }
}
