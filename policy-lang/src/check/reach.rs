//! Reachability: conditions that can never (or always) be true, by interval analysis of a
//! conjunction of `fact OP constant` comparisons.

use super::Checker;
use super::consts::fold;
use crate::diag::Span;
use crate::ir::*;
use crate::units;

impl Checker<'_, '_> {
    /// Warn about conditions that can never (or always) be true, by interval analysis of a
    /// conjunction of `fact OP constant` comparisons.
    pub(super) fn reachability(&mut self, c: CondId, span: Span, what: &str) {
        let mut atoms = Vec::new();
        if !conj_atoms(&self.conds, &self.nums, c, &mut atoms) {
            return;
        }
        match &self.conds.get(c as usize) {
            Some(Cond::Const(false)) => {
                self.sink.warning(
                    "W0401",
                    span,
                    format!("this {what} can never apply: its condition is always false"),
                    "always false",
                );
                return;
            }
            Some(Cond::Const(true)) => {
                self.sink
                    .warning(
                        "W0402",
                        span,
                        format!("this {what}'s condition is always true"),
                        "always true",
                    )
                    .with_hint("drop the condition");
                return;
            }
            _ => {}
        }
        let mut by_fact: Vec<(NumFact, f64, f64)> = Vec::new();
        for (f, op, k) in &atoms {
            let (lo0, hi0) = f.natural_range();
            let idx = match by_fact.iter().position(|(g, _, _)| g == f) {
                Some(i) => i,
                None => {
                    by_fact.push((*f, lo0, hi0));
                    by_fact.len() - 1
                }
            };
            let (_, lo, hi) = &mut by_fact[idx];
            // Treat strict bounds with a tiny epsilon: values are reals.
            let eps = 1e-9;
            match op {
                CmpOp::Gt => *lo = lo.max(k + eps),
                CmpOp::Ge => *lo = lo.max(*k),
                CmpOp::Lt => *hi = hi.min(k - eps),
                CmpOp::Le => *hi = hi.min(*k),
                CmpOp::Eq => {
                    *lo = lo.max(*k);
                    *hi = hi.min(*k)
                }
                CmpOp::Ne => {}
            }
        }
        for (f, lo, hi) in &by_fact {
            if lo > hi {
                let (a, b) = f.natural_range();
                let hint = if atoms.len() == 1 {
                    format!(
                        "{} is always between {} and {}",
                        fact_name(*f),
                        units::display(f.dim(), a),
                        units::display(f.dim(), b)
                    )
                } else {
                    format!("the bounds on {} contradict each other", fact_name(*f))
                };
                self.sink
                    .warning(
                        "W0401",
                        span,
                        format!("this {what} can never apply: its condition is always false"),
                        "always false",
                    )
                    .with_hint(hint);
                return;
            }
        }
        if atoms.len() == 1 {
            let (f, lo, hi) = by_fact[0];
            let (a, b) = f.natural_range();
            if lo <= a && hi >= b && atoms[0].1 != CmpOp::Ne && atoms[0].1 != CmpOp::Eq {
                self.sink
                    .warning(
                        "W0402",
                        span,
                        format!("this {what}'s condition is always true"),
                        "always true",
                    )
                    .with_hint(format!(
                        "{} is always between {} and {}",
                        fact_name(f),
                        units::display(f.dim(), a),
                        units::display(f.dim(), b)
                    ));
            }
        }
    }
}

fn fact_name(f: NumFact) -> String {
    match f {
        NumFact::HostUtil(r) => format!("host.{}.utilization", r.name()),
        NumFact::ClusterUtil(r) => format!("cluster.{}.utilization", r.name()),
        NumFact::Usage { resource, agg, .. } => {
            format!("usage.{}.{}", resource.name(), Agg::NAMES[agg as usize])
        }
        NumFact::Divergence => "usage.divergence".into(),
        NumFact::Time => "time".into(),
        NumFact::ReattestFailures => "reattestation.failures".into(),
        NumFact::TcbVersion => "attestation.tcb_version".into(),
        NumFact::MsgsRate => "usage.msgs.rate".into(),
        NumFact::MsgsBytes => "usage.msgs.bytes".into(),
    }
}

/// Flatten a conjunction into `fact OP constant` atoms; false if it has any other shape.
fn conj_atoms(
    conds: &[Cond],
    nums: &[Num],
    c: CondId,
    out: &mut Vec<(NumFact, CmpOp, f64)>,
) -> bool {
    match conds.get(c as usize) {
        Some(Cond::And(a, b)) => {
            conj_atoms(conds, nums, *a, out) && conj_atoms(conds, nums, *b, out)
        }
        Some(Cond::Cmp(op, l, r)) => match (
            nums.get(*l as usize),
            fold(nums, *r),
            nums.get(*r as usize),
            fold(nums, *l),
        ) {
            (Some(Num::Fact(f)), Some(k), _, _) => {
                out.push((*f, *op, k));
                true
            }
            (_, _, Some(Num::Fact(f)), Some(k)) => {
                let flipped = match op {
                    CmpOp::Lt => CmpOp::Gt,
                    CmpOp::Le => CmpOp::Ge,
                    CmpOp::Gt => CmpOp::Lt,
                    CmpOp::Ge => CmpOp::Le,
                    o => *o,
                };
                out.push((*f, flipped, k));
                true
            }
            _ => false,
        },
        Some(Cond::Const(_)) => true,
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::super::testing::*;
    use super::conj_atoms;
    use crate::ir::{CmpOp, Cond, Num, NumFact};
    use crate::units::Resource;

    #[test]
    fn out_of_range_comparisons_never_apply() {
        let d = diag("  when host.cpu.utilization > 120% { notify now }", "W0401");
        assert_eq!(
            d.hint.as_deref(),
            Some("host.cpu.utilization is always between 0% and 100%")
        );
        let d = diag("  when time < 00:00 { notify now }", "W0401");
        assert!(
            d.message.contains("this rule can never apply"),
            "{}",
            d.message
        );
    }

    #[test]
    fn contradicting_bounds_never_apply() {
        let d = diag(
            "  when host.cpu.utilization > 80% && host.cpu.utilization < 20% { notify now }",
            "W0401",
        );
        assert_eq!(
            d.hint.as_deref(),
            Some("the bounds on host.cpu.utilization contradict each other")
        );
        // Different facts do not contradict.
        compile(
            "  when host.cpu.utilization > 80% && cluster.cpu.utilization < 20% { notify now }",
        );
    }

    #[test]
    fn always_true_and_constant_conditions() {
        assert_eq!(
            codes("  when host.cpu.utilization >= 0% { notify now }"),
            ["W0402"]
        );
        assert_eq!(codes("  when false { notify now }"), ["W0401"]);
        assert_eq!(codes("  when true { notify now }"), ["W0402"]);
        assert_eq!(
            codes("  on reattestation.failures > -1 { notify now }"),
            ["W0402"]
        );
        let d = diag("  reclaim { when host.cpu.utilization > 101% }", "W0401");
        assert!(d.message.contains("this reclaim condition can never apply"));
    }

    #[test]
    fn atoms_flip_a_constant_on_the_left() {
        let util = NumFact::HostUtil(Resource::Cpu);
        let nums = [Num::Const(5.0), Num::Fact(util)];
        let conds = [
            Cond::Cmp(CmpOp::Lt, 0, 1),
            Cond::Cmp(CmpOp::Le, 1, 0),
            Cond::And(0, 1),
            Cond::Or(0, 1),
        ];
        let mut out = Vec::new();
        assert!(conj_atoms(&conds, &nums, 2, &mut out));
        assert_eq!(out, [(util, CmpOp::Gt, 5.0), (util, CmpOp::Le, 5.0)]);
        assert!(
            !conj_atoms(&conds, &nums, 3, &mut Vec::new()),
            "not a conjunction"
        );
    }
}
