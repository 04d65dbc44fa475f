//! Values that must be known when the policy is checked: folded constants, their ranges,
//! resource quantities (with their grain) and durations.

use super::expr::unit_hint;
use super::{Checker, Ctx};
use crate::ast::*;
use crate::grain;
use crate::ir::*;
use crate::units::{self, Dim, Resource};

impl Checker<'_, '_> {
    /// A constant of the expected dimension (folded), for values that must be known statically.
    pub(super) fn constant(&mut self, e: &Expr, dim: Dim) -> Option<f64> {
        let (id, d) = self.num(e, Some(dim), Ctx::Live)?;
        if d != dim {
            self.sink
                .error(
                    "E0204",
                    e.span,
                    format!("expected {}, found {}", dim.describe(), d.short()),
                    format!("this is {}", d.short()),
                )
                .with_hint(unit_hint(dim));
            return None;
        }
        match fold(&self.nums, id) {
            Some(v) if v.is_finite() => Some(v),
            Some(_) => {
                self.sink.error(
                    "E0302",
                    e.span,
                    "this value is not finite (division by zero?)",
                    "not finite",
                );
                None
            }
            None => {
                self.sink
                    .error(
                        "E0205",
                        e.span,
                        "this value must be a constant",
                        "depends on live facts",
                    )
                    .with_hint("live facts can be used in `when` rules");
                None
            }
        }
    }

    pub(super) fn range(
        &mut self,
        e: &Expr,
        v: f64,
        lo: f64,
        hi: f64,
        what: &str,
        show: impl Fn(f64) -> String,
    ) -> Option<f64> {
        if v < lo || v > hi {
            self.sink
                .error(
                    "E0302",
                    e.span,
                    format!(
                        "{what} must be between {} and {}, found {}",
                        show(lo),
                        show(hi),
                        show(v)
                    ),
                    "out of range",
                )
                .with_hint(format!("use a value from {} to {}", show(lo), show(hi)));
            return None;
        }
        Some(v)
    }

    pub(super) fn resource_value(&mut self, res: Resource, e: &Expr) -> Option<f64> {
        let v = self.constant(e, res.dim())?;
        let hi = match res {
            Resource::Gpu => 100.0,
            Resource::Cpu => 1_024_000.0,
            Resource::Memory => 64.0 * 1024f64.powi(4),
            _ => 10e12,
        };
        let v = self.range(e, v, 0.0, hi, &format!("`{}`", res.name()), |x| {
            units::display(res.dim(), x)
        })?;
        grain::whole(self.sink, res, e.span, v)
    }

    pub(super) fn duration(&mut self, e: &Expr, hi_ms: f64) -> Option<f64> {
        let v = self.constant(e, Dim::Duration)?;
        self.range(e, v, 0.0, hi_ms, "a duration", |x| {
            units::display(Dim::Duration, x)
        })
    }
}

/// Fold a numeric node to a constant, if it has no live facts.
pub(super) fn fold(nums: &[Num], id: NumId) -> Option<f64> {
    Some(match *nums.get(id as usize)? {
        Num::Const(v) => v,
        Num::Fact(_) => return None,
        Num::Add(a, b) => fold(nums, a)? + fold(nums, b)?,
        Num::Sub(a, b) => fold(nums, a)? - fold(nums, b)?,
        Num::Mul(a, b) => fold(nums, a)? * fold(nums, b)?,
        Num::Div(a, b) => fold(nums, a)? / fold(nums, b)?,
        Num::Of(a, b) => fold(nums, a)? / 100.0 * fold(nums, b)?,
        Num::Neg(a) => -fold(nums, a)?,
    })
}

#[cfg(test)]
mod tests {
    use super::super::testing::*;
    use super::fold;
    use crate::ir::{Num, NumFact};

    #[test]
    fn fold_evaluates_constants_only() {
        let nums = [
            Num::Const(200.0),
            Num::Const(30.0),
            Num::Of(1, 0),
            Num::Neg(2),
            Num::Fact(NumFact::Time),
            Num::Add(3, 4),
            Num::Div(0, 1),
        ];
        assert_eq!(fold(&nums, 2), Some(60.0), "30% of 200");
        assert_eq!(fold(&nums, 3), Some(-60.0));
        assert_eq!(fold(&nums, 5), None, "a live fact");
        assert_eq!(fold(&nums, 6), Some(200.0 / 30.0));
        assert_eq!(fold(&nums, 99), None, "no such node");
    }

    #[test]
    fn constants_must_be_constant_and_finite() {
        let d = diag("  priority reattestation.failures", "E0205");
        assert_eq!(d.message, "this value must be a constant");
        let d = diag("  weight 1 / 0", "E0302");
        assert!(d.message.contains("not finite"), "{}", d.message);
        assert_eq!(codes("  priority 5%"), ["E0204"]);
    }

    #[test]
    fn ranges() {
        let d = diag("  priority 2000", "E0302");
        assert_eq!(
            d.message,
            "`priority` must be between 0 and 1000, found 2000"
        );
        assert_eq!(codes("  weight 0"), ["E0302"]);
        assert_eq!(codes("  precedence -1001"), ["E0302"]);
        assert_eq!(codes("  limit { gpu = 150% }"), ["E0302"]);
        assert_eq!(
            codes("  when host.cpu.utilization > 1% for 25h { notify now }"),
            ["E0302"],
            "a rule's duration is at most a day"
        );
        let p = compile("  priority 10 preempt\n  weight 2.5\n  precedence -3");
        assert_eq!(p.priority.map(|(v, _)| v), Some(10.0));
        assert!(p.preempt);
        assert_eq!(p.weight.map(|(v, _)| v), Some(2.5));
        assert_eq!(p.precedence(), -3.0);
    }
}
