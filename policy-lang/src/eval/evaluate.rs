//! Evaluating one compiled policy: selector, static settings, the `attest` requirements,
//! `when` rules, `on` ladders, `reclaim`, and `talk` rules for a peer.

use super::decision::origin;
use super::*;
use crate::ir::*;
use crate::units::Resource;

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
            NumFact::MsgsRate => facts.msgs.rate,
            NumFact::MsgsBytes => facts.msgs.bytes,
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
                    Target::MsgsRate => d.msgs_rate = s,
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::check::testing::compile;

    fn facts() -> Facts {
        Facts::default()
    }

    #[test]
    fn a_missing_fact_never_fires_a_rule() {
        let p = compile("  when host.cpu.utilization > 50% { notify now }");
        assert_eq!(p.evaluate(&facts()).action.action, Action::None);
        let p = compile("  when !(host.cpu.utilization > 50%) { notify now }");
        assert_eq!(
            p.evaluate(&facts()).action.action,
            Action::Notify,
            "NaN > x is false"
        );
        let mut f = facts();
        f.host.cpu = 60.0;
        let p = compile("  when host.cpu.utilization > 50% { notify now }");
        let d = p.evaluate(&f);
        assert_eq!(d.action.action, Action::Notify);
        assert_eq!(
            (d.action.origin.kind, d.action.origin.index),
            (SourceKind::When, 1)
        );
        assert_eq!(d.conditions_true, 1);
    }

    #[test]
    fn rules_wait_for_their_hold_time() {
        let p = compile(
            "  limit { cpu = 2 }\n  when host.cpu.utilization > 50% for 1m { limit.cpu = 1 }",
        );
        let mut f = facts();
        f.host.cpu = 60.0;
        f.held_ms.insert("when#1".into(), 59_999);
        let d = p.evaluate(&f);
        assert_eq!(d.limit_of(Resource::Cpu), Some(2000.0));
        assert_eq!(d.conditions_true, 1, "true, but not for long enough");
        f.held_ms.insert("when#1".into(), 60_000);
        let d = p.evaluate(&f);
        assert_eq!(d.limit_of(Resource::Cpu), Some(1000.0));
        assert_eq!(
            d.limit[Resource::Cpu as usize].origin.kind,
            SourceKind::When
        );
    }

    #[test]
    fn ladders_step_with_the_time_over_the_limit() {
        let p = compile("  on over_limit { notify now; throttle after 10s; suspend after 1m }");
        let at = |ms: u64| {
            let mut f = facts();
            f.over_limit_ms = ms;
            p.evaluate(&f).action.action
        };
        assert_eq!(
            [at(0), at(1), at(9_999), at(10_000), at(60_000)],
            [
                Action::None,
                Action::Notify,
                Action::Notify,
                Action::Throttle,
                Action::Suspend
            ]
        );
    }

    #[test]
    fn attest_requirements_in_order() {
        let p = compile(
            "  attest { measurement in [\"aabbccdd\"]; min_tcb tdx >= 3 }\n  \
             on attestation.failed { suspend now }",
        );
        let mut f = facts();
        f.enclave.tee = TeeKind::Tdx;
        f.enclave.measurement = "AABBCCDD".into();
        f.attestation.tcb_version = 3;
        let d = p.evaluate(&f);
        assert!(d.attestation.ok, "{d:?}");
        assert_eq!(d.attestation.origin.kind, SourceKind::Attest);
        f.attestation.debug = true;
        let d = p.evaluate(&f);
        assert_eq!(
            d.attestation.violation,
            Some(AttestViolation::DebugForbidden)
        );
        assert_eq!(
            d.action.action,
            Action::Suspend,
            "the ladder sees attestation.failed"
        );
        f.attestation.tcb_version = 2;
        let d = p.evaluate(&f);
        assert_eq!(d.attestation.violation, Some(AttestViolation::TcbTooOld));
        f.enclave.measurement = "00000000".into();
        let d = p.evaluate(&f);
        assert_eq!(
            d.attestation.violation,
            Some(AttestViolation::MeasurementNotAllowed)
        );
        f.attestation.status = AttestStatus::Failed;
        let d = p.evaluate(&f);
        assert_eq!(d.attestation.violation, Some(AttestViolation::StatusFailed));
    }

    #[test]
    fn simulated_enclaves_need_permission() {
        let forbid = compile("  attest { every 1m }\n  on attestation.failed { notify now }");
        let allow =
            compile("  attest { simulated = allowed }\n  on attestation.failed { notify now }");
        let mut f = facts();
        f.enclave.tee = TeeKind::Sim;
        assert_eq!(
            forbid.evaluate(&f).attestation.violation,
            Some(AttestViolation::SimulatedForbidden)
        );
        assert!(allow.evaluate(&f).attestation.ok);
    }

    #[test]
    fn a_selector_that_does_not_match_decides_nothing() {
        let out = crate::check(
            "t.tribune",
            "policy \"p\" {\n  match tenant == \"a\"\n  limit { cpu = 1 }\n}\n",
        );
        let p = &out.policies[0];
        assert_eq!(p.evaluate(&facts()), Decision::default());
        let mut f = facts();
        f.enclave.tenant = "a".into();
        assert!(p.matches(&f.enclave));
        assert_eq!(p.evaluate_as(&f, 4).limit[0].origin.policy, 4);
    }

    #[test]
    fn talk_rules_look_at_the_peer() {
        let p = compile("  talk {\n    allow to tenant == \"b\" share 2\n    deny to *\n  }");
        let mut peer = Enclave::default();
        assert_eq!(p.talk_to(&facts(), &peer), (false, 0.0, 2));
        peer.tenant = "b".into();
        assert_eq!(p.talk_to(&facts(), &peer), (true, 2.0, 1));
        let none = compile("  limit { cpu = 1 }");
        assert_eq!(none.talk_to(&facts(), &peer), (false, 0.0, 0));
    }

    #[test]
    fn message_facts_throttle_a_flooder_and_set_its_rate() {
        let p = compile(
            "  when usage.msgs.rate > 1000 || usage.msgs.bytes > 1MiB {\n    msgs.rate = 100\n    throttle now\n  }",
        );
        let mut f = facts();
        let d = p.evaluate(&f);
        assert_eq!((d.action.action, d.msgs_rate.value), (Action::None, None));
        f.msgs.rate = 1001.0;
        let d = p.evaluate(&f);
        assert_eq!(d.action.action, Action::Throttle);
        assert_eq!(d.msgs_rate.value, Some(100.0));
        assert_eq!(d.msgs_rate.origin.kind, SourceKind::When);
        // The byte rate alone trips it too; exactly at the threshold does not.
        f.msgs = MsgFacts {
            rate: 1000.0,
            bytes: 1024.0 * 1024.0 + 1.0,
        };
        assert_eq!(p.evaluate(&f).action.action, Action::Throttle);
        f.msgs.bytes = 1024.0 * 1024.0;
        assert_eq!(p.evaluate(&f).action.action, Action::None);
        let text = p.evaluate(&Facts {
            msgs: MsgFacts {
                rate: 5000.0,
                bytes: 0.0,
            },
            ..facts()
        });
        assert!(text.render_text(&["p"]).contains("msgs.rate"));
        assert_eq!(text.to_json(&["p"])["msgs_rate"]["value"], 100.0);
    }
}
