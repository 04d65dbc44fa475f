//! Evaluation: compiled policy + facts → decision. Pure, deterministic, and allocation-free:
//! it reads the flat arenas of [`CompiledPolicy`] and writes a `Copy` [`Decision`].
//!
//! Missing facts are NaN: every comparison with them is false, so a rule over a fact the
//! caller did not supply does not fire.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::ir::*;
use crate::units::{self, Dim, Resource};

// ------------------------------------------------------------------------- facts

/// The enclave's identity, as selectors see it.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct Enclave {
    pub tenant: String,
    pub labels: BTreeMap<String, String>,
    pub tee: TeeKind,
    pub measurement: String,
    pub class: String,
}

/// Every facts field is optional: left out, it is empty, and the TEE kind reads as `sev-snp`
/// (as it always has; `TeeKind` itself has no default).
impl Default for Enclave {
    fn default() -> Self {
        Enclave {
            tenant: String::new(),
            labels: BTreeMap::new(),
            tee: TeeKind::SevSnp,
            measurement: String::new(),
            class: String::new(),
        }
    }
}

/// Utilization per resource, percent (0–100). A missing value is unknown (NaN).
#[derive(Clone, Copy, Debug, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct Utilization {
    pub cpu: f64,
    pub memory: f64,
    pub egress: f64,
    pub ingress: f64,
    pub gpu: f64,
}

impl Default for Utilization {
    fn default() -> Self {
        Utilization {
            cpu: f64::NAN,
            memory: f64::NAN,
            egress: f64::NAN,
            ingress: f64::NAN,
            gpu: f64::NAN,
        }
    }
}

impl Utilization {
    fn get(&self, r: Resource) -> f64 {
        match r {
            Resource::Cpu => self.cpu,
            Resource::Memory => self.memory,
            Resource::Egress => self.egress,
            Resource::Ingress => self.ingress,
            Resource::Gpu => self.gpu,
        }
    }
}

/// One aggregate of the enclave's own usage over a window, in canonical units (cpu
/// millicores, memory bytes, bandwidth bits/s, gpu percent).
#[derive(Clone, Copy, Debug, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct UsageFact {
    pub resource: Resource,
    pub agg: Agg,
    pub window_s: u32,
    pub value: f64,
}

#[derive(Clone, Copy, Debug, Default, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct AttestationFacts {
    pub status: AttestStatus,
    pub tcb: TcbStatus,
    pub tcb_version: u32,
    pub debug: bool,
}

#[derive(Clone, Copy, Debug, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct Events {
    pub reattestation_failures: u32,
    /// How far the enclave's own usage report and the host's measurement differ, percent.
    pub divergence_pct: f64,
}

impl Default for Events {
    fn default() -> Self {
        Events {
            reattestation_failures: 0,
            divergence_pct: 0.0,
        }
    }
}

/// Everything the evaluator may look at. Serde form is the `--facts` JSON file.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
#[derive(Default)]
pub struct Facts {
    pub enclave: Enclave,
    /// Minutes after midnight (UTC); JSON takes `"HH:MM"`.
    #[serde(with = "time_of_day", rename = "time")]
    pub minute_of_day: Option<u32>,
    pub host: Utilization,
    pub cluster: Utilization,
    pub usage: Vec<UsageFact>,
    pub attestation: AttestationFacts,
    pub events: Events,
    /// How long usage has been above the limit (0: not over).
    pub over_limit_ms: u64,
    /// How long each condition (`when#N`, `on#N`, `reclaim`) has been continuously true.
    pub held_ms: BTreeMap<String, u64>,
    /// Peers to decide communication with (`talk`), for `tribune policy eval`.
    pub peers: Vec<Enclave>,
}

mod time_of_day {
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(v: &Option<u32>, s: S) -> Result<S::Ok, S::Error> {
        match v {
            Some(m) => s.serialize_str(&format!("{:02}:{:02}", m / 60, m % 60)),
            None => s.serialize_none(),
        }
    }
    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<u32>, D::Error> {
        let s: Option<String> = Option::deserialize(d)?;
        let Some(s) = s else { return Ok(None) };
        let (h, m) = s
            .split_once(':')
            .ok_or_else(|| serde::de::Error::custom("time must be \"HH:MM\""))?;
        let h: u32 = h.parse().map_err(serde::de::Error::custom)?;
        let m: u32 = m.parse().map_err(serde::de::Error::custom)?;
        if h > 23 || m > 59 {
            return Err(serde::de::Error::custom(
                "time must be between 00:00 and 23:59",
            ));
        }
        Ok(Some(h * 60 + m))
    }
}

// ------------------------------------------------------------------------- decision

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
    pub preempt: bool,
    /// The most severe action due now, and the rule or ladder step that asks for it.
    pub action: ActionOutcome,
    pub attestation: AttestOutcome,
    pub reclaim: ReclaimOutcome,
    /// Bit i set: condition i of `CompiledPolicy::condition_ids()` is true now (the caller
    /// tracks how long, for `held_ms`). For a set, the bits of the first matching policy.
    pub conditions_true: u64,
}

// ------------------------------------------------------------------------- evaluation

struct Ctx<'a> {
    p: &'a CompiledPolicy,
    f: &'a Facts,
    attest_failed: bool,
}

impl Ctx<'_> {
    fn num(&self, id: NumId) -> f64 {
        // Depth is bounded by the parser's nesting limit.
        match self.p.nums.get(id as usize) {
            Some(Num::Const(v)) => *v,
            Some(Num::Fact(f)) => self.fact(*f),
            Some(Num::Add(a, b)) => self.num(*a) + self.num(*b),
            Some(Num::Sub(a, b)) => self.num(*a) - self.num(*b),
            Some(Num::Mul(a, b)) => self.num(*a) * self.num(*b),
            Some(Num::Div(a, b)) => self.num(*a) / self.num(*b),
            Some(Num::Of(a, b)) => self.num(*a) / 100.0 * self.num(*b),
            Some(Num::Neg(a)) => -self.num(*a),
            None => f64::NAN,
        }
    }

    fn fact(&self, f: NumFact) -> f64 {
        let facts = self.f;
        match f {
            NumFact::HostUtil(r) => facts.host.get(r),
            NumFact::ClusterUtil(r) => facts.cluster.get(r),
            NumFact::Usage {
                resource,
                agg,
                window_s,
            } => facts
                .usage
                .iter()
                .find(|u| u.resource == resource && u.agg == agg && u.window_s == window_s)
                .map_or(f64::NAN, |u| u.value),
            NumFact::Divergence => facts.events.divergence_pct,
            NumFact::Time => facts.minute_of_day.map_or(f64::NAN, f64::from),
            NumFact::ReattestFailures => f64::from(facts.events.reattestation_failures),
            NumFact::TcbVersion => f64::from(facts.attestation.tcb_version),
        }
    }

    fn cond(&self, id: CondId) -> bool {
        self.cond_of(id, &self.f.enclave)
    }

    /// Selectors in `talk` rules look at the peer instead of the enclave.
    fn cond_of(&self, id: CondId, who: &Enclave) -> bool {
        let Some(c) = self.p.conds.get(id as usize) else {
            return false;
        };
        match c {
            Cond::Const(b) => *b,
            Cond::And(a, b) => self.cond_of(*a, who) && self.cond_of(*b, who),
            Cond::Or(a, b) => self.cond_of(*a, who) || self.cond_of(*b, who),
            Cond::Not(a) => !self.cond_of(*a, who),
            Cond::Cmp(op, a, b) => {
                let (x, y) = (self.num(*a), self.num(*b));
                match op {
                    CmpOp::Eq => x == y,
                    CmpOp::Ne => x != y,
                    CmpOp::Lt => x < y,
                    CmpOp::Le => x <= y,
                    CmpOp::Gt => x > y,
                    CmpOp::Ge => x >= y,
                }
            }
            Cond::StrEq(f, v) => str_field(who, f) == Some(v.as_str()),
            Cond::StrIn(f, vs) => str_field(who, f).is_some_and(|s| vs.iter().any(|v| v == s)),
            Cond::TeeIn(mask) => mask & who.tee.bit() != 0,
            Cond::TimeIn(a, b) => {
                let Some(t) = self.f.minute_of_day else {
                    return false;
                };
                let t = f64::from(t);
                if a <= b {
                    *a <= t && t < *b
                } else {
                    t >= *a || t < *b
                }
            }
            Cond::Attest(s) => self.f.attestation.status == *s,
            Cond::Tcb(s) => self.f.attestation.tcb == *s,
            Cond::Flag(BoolFact::OverLimit) => self.f.over_limit_ms > 0,
            Cond::Flag(BoolFact::AttestationFailed) => self.attest_failed,
            Cond::Flag(BoolFact::ReattestationFailed) => self.f.events.reattestation_failures > 0,
            Cond::Flag(BoolFact::Debug) => self.f.attestation.debug,
        }
    }

    fn held(&self, id: &str) -> f64 {
        self.f.held_ms.get(id).map_or(0.0, |v| *v as f64)
    }
}

fn str_field<'a>(e: &'a Enclave, f: &StrField) -> Option<&'a str> {
    match f {
        StrField::Tenant => Some(&e.tenant),
        StrField::Measurement => Some(&e.measurement),
        StrField::Class => Some(&e.class),
        StrField::Label(k) => e.labels.get(k.as_str()).map(String::as_str),
    }
}

fn origin(policy: u16, kind: SourceKind, index: usize, line: u32) -> Origin {
    Origin {
        policy,
        kind,
        index: index.min(u16::MAX as usize) as u16,
        line,
    }
}

impl CompiledPolicy {
    /// Does this policy's `match` select the enclave?
    pub fn matches(&self, enclave: &Enclave) -> bool {
        match self.selector {
            None => true,
            Some(c) => {
                // Selectors only read identity; empty live facts (no allocation) suffice.
                let f = Facts::default();
                Ctx {
                    p: self,
                    f: &f,
                    attest_failed: false,
                }
                .cond_of(c, enclave)
            }
        }
    }

    /// Evaluate for one enclave. `policy_index` is recorded in every [`Origin`].
    pub fn evaluate_as(&self, facts: &Facts, policy_index: u16) -> Decision {
        let pi = policy_index;
        let mut d = Decision::default();
        let ctx0 = Ctx {
            p: self,
            f: facts,
            attest_failed: false,
        };
        if let Some(sel) = self.selector
            && !ctx0.cond(sel)
        {
            return d;
        }
        d.matched = true;
        for r in Resource::ALL {
            let i = r as usize;
            if let Some(v) = self.guarantee[i] {
                d.guarantee[i] = Setting {
                    value: Some(v),
                    origin: origin(pi, SourceKind::Static, 0, self.guarantee_line[i]),
                };
            }
            if let Some(v) = self.limit[i] {
                d.limit[i] = Setting {
                    value: Some(v),
                    origin: origin(pi, SourceKind::Static, 0, self.limit_line[i]),
                };
            }
        }
        if let Some((v, line)) = self.weight {
            d.weight = Setting {
                value: Some(v),
                origin: origin(pi, SourceKind::Static, 0, line),
            };
        }
        if let Some((v, line)) = self.priority {
            d.priority = Setting {
                value: Some(v),
                origin: origin(pi, SourceKind::Static, 0, line),
            };
        }
        d.preempt = self.preempt;

        // Attestation requirements first: `attestation.failed` depends on them.
        let mut attest_failed = facts.attestation.status == AttestStatus::Failed;
        d.attestation.ok = !attest_failed;
        if attest_failed {
            d.attestation.violation = Some(AttestViolation::StatusFailed);
        }
        if let Some(a) = &self.attest {
            d.attestation.origin = origin(pi, SourceKind::Attest, 0, a.line);
            d.attestation.reattest_every_ms = a.every_ms;
            let e = &facts.enclave;
            let min = match e.tee {
                TeeKind::SevSnp => a.min_tcb[0],
                TeeKind::Tdx => a.min_tcb[1],
                TeeKind::Sim => None,
            };
            let violation = if attest_failed {
                Some(AttestViolation::StatusFailed)
            } else if !a.measurements.is_empty()
                && !a
                    .measurements
                    .iter()
                    .any(|m| m.eq_ignore_ascii_case(&e.measurement))
            {
                Some(AttestViolation::MeasurementNotAllowed)
            } else if min.is_some_and(|m| f64::from(facts.attestation.tcb_version) < m) {
                Some(AttestViolation::TcbTooOld)
            } else if !a.debug_allowed && facts.attestation.debug {
                Some(AttestViolation::DebugForbidden)
            } else if !a.simulated_allowed && e.tee == TeeKind::Sim {
                Some(AttestViolation::SimulatedForbidden)
            } else {
                None
            };
            attest_failed = violation.is_some();
            d.attestation.ok = !attest_failed;
            d.attestation.violation = violation;
        }
        let ctx = Ctx {
            p: self,
            f: facts,
            attest_failed,
        };

        let mut bit = 0u32;
        for (ri, rule) in self.rules.iter().enumerate() {
            let on = ctx.cond(rule.cond);
            if on {
                d.conditions_true |= 1u64 << bit.min(63);
            }
            bit += 1;
            if !on || ctx.held(&rule.id) < rule.held_ms {
                continue;
            }
            for e in &rule.effects {
                let v = ctx.num(e.value);
                if v.is_nan() {
                    continue;
                }
                let s = Setting {
                    value: Some(v),
                    origin: origin(pi, SourceKind::When, ri + 1, e.line),
                };
                match e.target {
                    Target::Limit(r) => d.limit[r as usize] = s,
                    Target::Guarantee(r) => d.guarantee[r as usize] = s,
                    Target::Weight => d.weight = s,
                    Target::Priority => d.priority = s,
                }
            }
            if rule.action > d.action.action {
                d.action = ActionOutcome {
                    action: rule.action,
                    origin: origin(pi, SourceKind::When, ri + 1, rule.line),
                };
            }
        }
        for (li, l) in self.ladders.iter().enumerate() {
            let (active, held) = match l.event {
                Event::OverLimit => (facts.over_limit_ms > 0, facts.over_limit_ms as f64),
                Event::Cond(c) => (ctx.cond(c), ctx.held(&l.id)),
            };
            if active {
                d.conditions_true |= 1u64 << bit.min(63);
            }
            bit += 1;
            if !active {
                continue;
            }
            if let Some(s) = l.steps.iter().rev().find(|s| s.after_ms <= held)
                && s.action > d.action.action
            {
                d.action = ActionOutcome {
                    action: s.action,
                    origin: origin(pi, SourceKind::On, li + 1, s.line),
                };
            }
        }
        if let Some(r) = &self.reclaim {
            let idle = r.idle.is_none_or(|c| ctx.cond(c));
            if idle {
                d.conditions_true |= 1u64 << bit.min(63);
            }
            d.reclaim.origin = origin(pi, SourceKind::Reclaim, 0, r.line);
            d.reclaim.return_within_ms = r.return_ms;
            if idle && ctx.held("reclaim") >= r.held_ms {
                d.reclaim.active = true;
                for res in Resource::ALL {
                    let i = res as usize;
                    if let (Some(keep), Some(g)) = (r.keep[i], d.guarantee[i].value) {
                        d.reclaim.lendable[i] = Some((g - keep).max(0.0));
                    }
                }
            }
        }
        d
    }

    /// Evaluate this policy alone.
    pub fn evaluate(&self, facts: &Facts) -> Decision {
        self.evaluate_as(facts, 0)
    }

    /// Whether the enclave may send to `peer`, with its share of the channel, and the
    /// 1-based index of the deciding `talk` rule (0: no rule matched; denied by default).
    pub fn talk_to(&self, facts: &Facts, peer: &Enclave) -> (bool, f64, usize) {
        let ctx = Ctx {
            p: self,
            f: facts,
            attest_failed: false,
        };
        for (i, t) in self.talk.iter().enumerate() {
            if t.to.is_none_or(|c| ctx.cond_of(c, peer)) {
                return (t.allow, if t.allow { t.share } else { 0.0 }, i + 1);
            }
        }
        (false, 0.0, 0)
    }
}

// ------------------------------------------------------------------------- sets

/// Policies in precedence order: higher `precedence` first, then higher specificity, then
/// name. For each value, the first matching policy that sets it wins; actions take the most
/// severe across all matching policies; attestation requirements of all must hold.
pub struct PolicySet {
    policies: Vec<CompiledPolicy>,
}

impl PolicySet {
    pub fn new(mut policies: Vec<CompiledPolicy>) -> Self {
        policies.sort_by(|a, b| {
            b.precedence
                .total_cmp(&a.precedence)
                .then(b.specificity.cmp(&a.specificity))
                .then(a.name.cmp(&b.name))
        });
        PolicySet { policies }
    }
    /// In precedence order; `Origin::policy` indexes this slice.
    pub fn policies(&self) -> &[CompiledPolicy] {
        &self.policies
    }

    pub fn evaluate(&self, facts: &Facts) -> Decision {
        let mut acc = Decision::default();
        for (i, p) in self.policies.iter().enumerate() {
            let d = p.evaluate_as(facts, i.min(u16::MAX as usize) as u16);
            if !d.matched {
                continue;
            }
            if !acc.matched {
                acc = d;
                continue;
            }
            for r in 0..5 {
                if acc.guarantee[r].value.is_none() {
                    acc.guarantee[r] = d.guarantee[r];
                }
                if acc.limit[r].value.is_none() {
                    acc.limit[r] = d.limit[r];
                }
                if acc.reclaim.lendable[r].is_none() && d.reclaim.active {
                    acc.reclaim.lendable[r] = d.reclaim.lendable[r];
                }
            }
            if acc.weight.value.is_none() {
                acc.weight = d.weight;
            }
            if acc.priority.value.is_none() {
                acc.priority = d.priority;
                acc.preempt = d.preempt;
            }
            if d.action.action > acc.action.action {
                acc.action = d.action;
            }
            if acc.attestation.ok && !d.attestation.ok {
                acc.attestation = d.attestation;
            }
            if acc.attestation.reattest_every_ms.is_none() {
                acc.attestation.reattest_every_ms = d.attestation.reattest_every_ms;
            }
            if !acc.reclaim.active && d.reclaim.active {
                acc.reclaim = d.reclaim;
            }
        }
        acc
    }
}

// ------------------------------------------------------------------------- reporting

fn origin_json(o: &Origin, names: &[&str]) -> serde_json::Value {
    let policy = names.get(o.policy as usize).copied().unwrap_or("?");
    let rule = match o.kind {
        SourceKind::Unset => return serde_json::Value::Null,
        SourceKind::Static => "static".to_string(),
        SourceKind::When => format!("when#{}", o.index),
        SourceKind::On => format!("on#{}", o.index),
        SourceKind::Reclaim => "reclaim".to_string(),
        SourceKind::Attest => "attest".to_string(),
    };
    serde_json::json!({ "policy": policy, "rule": rule, "line": o.line })
}

fn setting_json(s: &Setting, dim: Dim, names: &[&str]) -> serde_json::Value {
    match s.value {
        None => serde_json::Value::Null,
        Some(v) => {
            serde_json::json!({ "value": v, "display": units::display(dim, v), "from": origin_json(&s.origin, names) })
        }
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

    /// The documented JSON form (`docs/policy-language.md`, "Decision JSON"). `names` are
    /// the policy names indexed by `Origin::policy`.
    pub fn to_json(&self, names: &[&str]) -> serde_json::Value {
        let mut g = serde_json::Map::new();
        let mut l = serde_json::Map::new();
        let mut lend = serde_json::Map::new();
        for r in Resource::ALL {
            let i = r as usize;
            g.insert(
                r.name().into(),
                setting_json(&self.guarantee[i], r.dim(), names),
            );
            l.insert(
                r.name().into(),
                setting_json(&self.limit[i], r.dim(), names),
            );
            if let Some(v) = self.reclaim.lendable[i] {
                lend.insert(
                    r.name().into(),
                    serde_json::json!({ "value": v, "display": units::display(r.dim(), v) }),
                );
            }
        }
        serde_json::json!({
            "matched": self.matched,
            "guarantee": g,
            "limit": l,
            "weight": setting_json(&self.weight, Dim::Scalar, names),
            "priority": setting_json(&self.priority, Dim::Scalar, names),
            "preempt": self.preempt,
            "action": {
                "action": self.action.action,
                "from": origin_json(&self.action.origin, names),
            },
            "attestation": {
                "ok": self.attestation.ok,
                "violation": self.attestation.violation,
                "reattest_every_ms": self.attestation.reattest_every_ms,
                "from": origin_json(&self.attestation.origin, names),
            },
            "reclaim": {
                "active": self.reclaim.active,
                "lendable": lend,
                "return_within_ms": self.reclaim.return_within_ms,
                "from": origin_json(&self.reclaim.origin, names),
            },
            "conditions_true": self.conditions_true,
        })
    }

    /// A human-readable rendering for the CLI.
    pub fn render_text(&self, names: &[&str]) -> String {
        use std::fmt::Write;
        let from = |o: &Origin| -> String {
            let p = names.get(o.policy as usize).copied().unwrap_or("?");
            match o.kind {
                SourceKind::Unset => String::new(),
                SourceKind::Static => format!("  ({p}, line {})", o.line),
                SourceKind::When => format!("  ({p}: when#{}, line {})", o.index, o.line),
                SourceKind::On => format!("  ({p}: on#{}, line {})", o.index, o.line),
                SourceKind::Reclaim => format!("  ({p}: reclaim, line {})", o.line),
                SourceKind::Attest => format!("  ({p}: attest, line {})", o.line),
            }
        };
        let mut s = String::new();
        if !self.matched {
            s.push_str("no policy matches this enclave\n");
            return s;
        }
        for (title, arr) in [("guarantee", &self.guarantee), ("limit", &self.limit)] {
            for r in Resource::ALL {
                let st = &arr[r as usize];
                if let Some(v) = st.value {
                    let _ = writeln!(
                        s,
                        "{title:<10} {:<8} {:>10}{}",
                        r.name(),
                        units::display(r.dim(), v),
                        from(&st.origin)
                    );
                }
            }
        }
        if let Some(v) = self.weight.value {
            let _ = writeln!(
                s,
                "{:<19} {:>10}{}",
                "weight",
                units::display(Dim::Scalar, v),
                from(&self.weight.origin)
            );
        }
        if let Some(v) = self.priority.value {
            let pre = if self.preempt { " preempt" } else { "" };
            let _ = writeln!(
                s,
                "{:<19} {:>10}{pre}{}",
                "priority",
                units::display(Dim::Scalar, v),
                from(&self.priority.origin)
            );
        }
        let act = format!("{:?}", self.action.action).to_lowercase();
        let _ = writeln!(
            s,
            "{:<19} {:>10}{}",
            "action",
            act,
            from(&self.action.origin)
        );
        let att = match self.attestation.violation {
            None => "ok".to_string(),
            Some(v) => serde_json::to_value(v)
                .ok()
                .and_then(|v| v.as_str().map(str::to_string))
                .unwrap_or_default(),
        };
        let _ = writeln!(
            s,
            "{:<19} {:>10}{}",
            "attestation",
            att,
            from(&self.attestation.origin)
        );
        if self.reclaim.active {
            for r in Resource::ALL {
                if let Some(v) = self.reclaim.lendable[r as usize] {
                    let _ = writeln!(
                        s,
                        "{:<10} {:<8} {:>10}{}",
                        "lendable",
                        r.name(),
                        units::display(r.dim(), v),
                        from(&self.reclaim.origin)
                    );
                }
            }
        }
        s
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

impl PolicySet {
    /// The first matching policy (in precedence order) that has `talk` rules decides.
    pub fn talk(&self, facts: &Facts, peer: &Enclave) -> TalkDecision {
        for (i, p) in self.policies.iter().enumerate() {
            if p.talk.is_empty() || !p.matches(&facts.enclave) {
                continue;
            }
            let (allowed, share, rule) = p.talk_to(facts, peer);
            return TalkDecision {
                allowed,
                share,
                policy: Some(i.min(u16::MAX as usize) as u16),
                rule: rule.min(u16::MAX as usize) as u16,
            };
        }
        TalkDecision::default()
    }

    pub fn names(&self) -> Vec<&str> {
        self.policies.iter().map(|p| p.name.as_str()).collect()
    }

    /// The decision and the `talk` verdict for each of `facts.peers`, as documented JSON.
    pub fn report_json(&self, facts: &Facts) -> serde_json::Value {
        let names = self.names();
        let d = self.evaluate(facts);
        let mut v = d.to_json(&names);
        let ids: Vec<&str> = self
            .policies
            .iter()
            .find(|p| p.matches(&facts.enclave))
            .map(|p| p.condition_ids())
            .unwrap_or_default();
        let true_ids: Vec<&str> = ids
            .iter()
            .enumerate()
            .filter(|(i, _)| d.conditions_true & (1u64 << (*i).min(63)) != 0)
            .map(|(_, s)| *s)
            .collect();
        let talk: Vec<serde_json::Value> = facts
            .peers
            .iter()
            .map(|peer| {
                let t = self.talk(facts, peer);
                serde_json::json!({
                    "peer": peer,
                    "allowed": t.allowed,
                    "share": t.share,
                    "from": t.policy.map(|p| serde_json::json!({
                        "policy": names.get(p as usize).copied().unwrap_or("?"),
                        "rule": if t.rule == 0 { "default-deny".to_string() } else { format!("talk#{}", t.rule) },
                    })),
                })
            })
            .collect();
        if let Some(obj) = v.as_object_mut() {
            obj.insert("conditions_true".into(), serde_json::json!(true_ids));
            obj.insert("talk".into(), serde_json::json!(talk));
            obj.insert(
                "matched_policies".into(),
                serde_json::json!(
                    self.policies
                        .iter()
                        .filter(|p| p.matches(&facts.enclave))
                        .map(|p| p.name.as_str())
                        .collect::<Vec<_>>()
                ),
            );
        }
        v
    }

    /// A human-readable report for the CLI.
    pub fn report_text(&self, facts: &Facts) -> String {
        use std::fmt::Write;
        let names = self.names();
        let d = self.evaluate(facts);
        let mut s = d.render_text(&names);
        for peer in &facts.peers {
            let t = self.talk(facts, peer);
            let who = if peer.tenant.is_empty() {
                "(no tenant)".to_string()
            } else {
                format!("tenant {}", peer.tenant)
            };
            let verdict = if t.allowed {
                format!("allowed, share {}", t.share)
            } else {
                "denied".to_string()
            };
            let from = match t.policy {
                Some(p) if t.rule > 0 => format!(
                    "  ({}: talk#{})",
                    names.get(p as usize).copied().unwrap_or("?"),
                    t.rule
                ),
                Some(p) => format!(
                    "  ({}: no rule matched)",
                    names.get(p as usize).copied().unwrap_or("?")
                ),
                None => "  (no talk rules)".to_string(),
            };
            let _ = writeln!(s, "talk to {who}: {verdict}{from}");
        }
        s
    }
}
