//! A set of policies evaluated together: precedence order and how their decisions combine.

use super::*;
use crate::ir::*;

/// Policies in precedence order: higher `precedence` first, then higher specificity, then
/// name. For each value, the first matching policy that sets it wins; actions take the most
/// severe across all matching policies; attestation requirements of all must hold.
pub struct PolicySet {
    policies: Vec<CompiledPolicy>,
}

/// An enclave's standing priority ([`PolicySet::priority_of`]): the value of the policy's
/// `priority` item (0–1000), whether it may `preempt`, and where it is written.
#[derive(Clone, Debug, PartialEq)]
pub struct StandingPriority {
    pub value: f64,
    pub preempt: bool,
    /// The policy's name.
    pub policy: String,
    /// The `priority` item's source line.
    pub line: u32,
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
            if acc.msgs_rate.value.is_none() {
                acc.msgs_rate = d.msgs_rate;
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

    /// What the `attest` blocks of every policy that matches `enclave` ask of the evidence
    /// verifier, combined so that each must hold ([`AttestKnobs::strictest`]). `None` when no
    /// matching policy has an `attest` block. Copy the fields into
    /// `tribune_attest::evidence::AttestPolicy` before verifying the enclave's evidence.
    pub fn attest_knobs(&self, enclave: &Enclave) -> Option<AttestKnobs> {
        self.policies
            .iter()
            .filter(|p| p.matches(enclave))
            .filter_map(CompiledPolicy::attest_knobs)
            .reduce(AttestKnobs::strictest)
    }

    /// The standing priority of `enclave`: the `priority` item of the first policy that
    /// matches it (in precedence order, as [`evaluate`](Self::evaluate) takes it) and sets
    /// one, with that item's `preempt`. `None` when no matching policy sets a priority.
    ///
    /// Only the policy's own `priority` item counts, never a `when` rule's: the scheduler
    /// places and preempts on what the enclave *is*, not on a live fact of the moment.
    pub fn priority_of(&self, enclave: &Enclave) -> Option<StandingPriority> {
        self.policies.iter().find_map(|p| {
            let (value, line) = p.priority?;
            p.matches(enclave).then(|| StandingPriority {
                value,
                preempt: p.preempt,
                policy: p.name.clone(),
                line,
            })
        })
    }

    /// How often `enclave` must be attested afresh at least, in milliseconds: the shortest
    /// `attest { every }` of every matching policy (each must hold, as with
    /// [`attest_knobs`](Self::attest_knobs)). `None` when none sets one.
    pub fn reattest_every_ms(&self, enclave: &Enclave) -> Option<f64> {
        self.policies
            .iter()
            .filter(|p| p.matches(enclave))
            .filter_map(CompiledPolicy::reattest_every_ms)
            .reduce(f64::min)
    }

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
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::check::testing::compile_all;
    use crate::units::Resource;

    fn set(src: &str) -> PolicySet {
        PolicySet::new(compile_all(src))
    }

    fn enclave(tenant: &str) -> Enclave {
        Enclave {
            tenant: tenant.into(),
            ..Enclave::default()
        }
    }

    const TWO: &str = r#"
policy "broad" {
  match true
  limit { cpu = 4; memory = 1GiB }
  weight 1
  when host.cpu.utilization > 50% { throttle now }
}
policy "narrow" {
  match tenant == "a"
  limit { cpu = 2 }
  when host.cpu.utilization > 50% { notify now }
}
"#;

    #[test]
    fn precedence_then_specificity_then_name() {
        let s = set(TWO);
        assert_eq!(s.names(), ["narrow", "broad"], "more specific first");
        let s = set(&format!(
            "{TWO}\npolicy \"first\" {{\n  match true\n  precedence 5\n}}\n"
        ));
        assert_eq!(s.names(), ["first", "narrow", "broad"]);
    }

    #[test]
    fn the_first_policy_that_sets_a_value_wins_and_actions_take_the_most_severe() {
        let s = set(TWO);
        let mut f = Facts {
            enclave: enclave("a"),
            ..Facts::default()
        };
        f.host.cpu = 60.0;
        let d = s.evaluate(&f);
        assert_eq!(d.limit_of(Resource::Cpu), Some(2000.0));
        assert_eq!(d.limit[Resource::Cpu as usize].origin.policy, 0);
        assert_eq!(d.limit_of(Resource::Memory), Some(1024.0 * 1024.0 * 1024.0));
        assert_eq!(d.limit[Resource::Memory as usize].origin.policy, 1);
        assert_eq!(d.weight.value, Some(1.0));
        assert_eq!(
            (d.action.action, d.action.origin.policy),
            (Action::Throttle, 1)
        );
        f.enclave.tenant = "b".into();
        assert_eq!(s.evaluate(&f).limit_of(Resource::Cpu), Some(4000.0));
        assert!(!set("").evaluate(&f).matched);
    }

    #[test]
    fn the_standing_priority_is_the_first_matching_policys_and_reattestation_the_shortest() {
        let s = set(r#"
policy "gold" {
  match tenant == "a" && labels.tier == "gold"
  priority 800 preempt
}
policy "acme" {
  match tenant == "a"
  priority 40
  attest { every 30s }
  when usage.cpu.avg(10s) > 1 { priority = 1000 }
}
policy "everyone" {
  match true
  attest { every 5m }
  limit { cpu = 1 }
}
"#);
        let mut gold = enclave("a");
        gold.labels.insert("tier".into(), "gold".into());
        let p = s
            .priority_of(&gold)
            .map(|p| (p.value, p.preempt, p.policy, p.line));
        assert_eq!(p, Some((800.0, true, "gold".to_string(), 4)));
        // The shortest of every matching policy's `every` (30 s of acme's, 5 min of everyone's).
        assert_eq!(s.reattest_every_ms(&gold), Some(30_000.0));
        let p = s
            .priority_of(&enclave("a"))
            .map(|p| (p.value, p.preempt, p.policy));
        assert_eq!(
            p,
            Some((40.0, false, "acme".to_string())),
            "the item, not the `when` rule"
        );
        assert_eq!(
            s.priority_of(&enclave("b")),
            None,
            "no matching policy sets one"
        );
        assert_eq!(s.reattest_every_ms(&enclave("b")), Some(300_000.0));
        // The shortest, not the first: a more specific policy asking less does not loosen it.
        let lax = set(r#"
policy "lax-for-a" {
  match tenant == "a"
  attest { every 1h }
}
policy "strict" {
  match true
  attest { every 10s }
}
"#);
        assert_eq!(lax.names(), ["lax-for-a", "strict"]);
        assert_eq!(lax.reattest_every_ms(&enclave("a")), Some(10_000.0));
        assert_eq!(set("").reattest_every_ms(&enclave("b")), None);
        // The same values `evaluate` takes.
        let d = s.evaluate(&Facts {
            enclave: gold.clone(),
            ..Facts::default()
        });
        assert_eq!((d.priority.value, d.preempt), (Some(800.0), true));
        assert_eq!(d.attestation.reattest_every_ms, Some(30_000.0));
    }

    #[test]
    fn attest_knobs_of_every_matching_policy_must_hold() {
        let s = set(r#"
policy "lenient" {
  match true
  attest { debug = allowed; sept_ve = allowed }
  on attestation.failed { notify now }
}
policy "strict-for-a" {
  match tenant == "a"
  attest { sept_ve = forbidden; debug = allowed; tdx_tcb = required }
  on attestation.failed { suspend now }
}
policy "no-attest-for-b" {
  match tenant == "b"
  limit { cpu = 1 }
}
"#);
        let knobs = |tenant| s.attest_knobs(&enclave(tenant));
        assert_eq!(
            knobs("a"),
            Some(AttestKnobs {
                allow_debug: true,
                allow_sept_ve: false,
                require_tdx_tcb: true
            })
        );
        let lenient = Some(AttestKnobs {
            allow_debug: true,
            allow_sept_ve: true,
            require_tdx_tcb: false,
        });
        assert_eq!(
            knobs("b"),
            lenient,
            "a policy without `attest` adds nothing"
        );
        assert_eq!(knobs("c"), lenient);
        assert_eq!(set(TWO).attest_knobs(&enclave("a")), None);
    }

    #[test]
    fn the_first_matching_policy_with_talk_rules_decides() {
        let s = set(r#"
policy "a" {
  match tenant == "a"
  talk { allow to tenant == "b" share 4 }
}
policy "all" {
  match true
  talk { deny to * }
}
"#);
        let f = Facts {
            enclave: enclave("a"),
            ..Facts::default()
        };
        let t = s.talk(&f, &enclave("b"));
        assert_eq!(
            (t.allowed, t.share, t.policy, t.rule),
            (true, 4.0, Some(0), 1)
        );
        let t = s.talk(&f, &enclave("c"));
        assert_eq!(
            (t.allowed, t.policy, t.rule),
            (false, Some(0), 0),
            "no rule matched"
        );
        let f = Facts {
            enclave: enclave("z"),
            ..Facts::default()
        };
        let t = s.talk(&f, &enclave("b"));
        assert_eq!((t.allowed, t.policy, t.rule), (false, Some(1), 1));
    }
}
