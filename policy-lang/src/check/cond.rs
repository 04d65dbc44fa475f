//! Conditions: `&&`/`||`/`!`, comparisons, equality and `in` over identity fields (`tenant`,
//! `labels.X`, `tee`, …) and live facts, plus the identity constraints of a selector for
//! overlap analysis.

use super::expr::{describe_expr, fact_paths};
use super::{Checker, Ctx};
use crate::ast::*;
use crate::diag::did_you_mean;
use crate::ir::*;
use crate::units::Dim;

impl Checker<'_, '_> {
    pub(super) fn cond(&mut self, e: &Expr, ctx: Ctx) -> Option<CondId> {
        match &e.kind {
            ExprKind::Paren(inner) => self.cond(inner, ctx),
            ExprKind::Unary {
                op: UnOp::Not,
                expr,
            } => {
                let c = self.cond(expr, ctx)?;
                Some(self.cond_node(Cond::Not(c)))
            }
            ExprKind::Binary {
                op: op @ (BinOp::And | BinOp::Or),
                lhs,
                rhs,
            } => {
                let l = self.cond(lhs, ctx);
                let r = self.cond(rhs, ctx);
                let (l, r) = (l?, r?);
                Some(self.cond_node(if *op == BinOp::And {
                    Cond::And(l, r)
                } else {
                    Cond::Or(l, r)
                }))
            }
            ExprKind::Binary {
                op: op @ (BinOp::Eq | BinOp::Ne),
                lhs,
                rhs,
            } => {
                let c = self.equality(lhs, rhs, ctx)?;
                Some(if *op == BinOp::Ne {
                    self.cond_node(Cond::Not(c))
                } else {
                    c
                })
            }
            ExprKind::Binary {
                op: BinOp::In,
                lhs,
                rhs,
            } => self.membership(lhs, rhs, ctx),
            ExprKind::Binary {
                op: op @ (BinOp::Lt | BinOp::Le | BinOp::Gt | BinOp::Ge),
                lhs,
                rhs,
            } => {
                if let Some(path) = lhs.path_text()
                    && (str_field(&path).is_some() || path == "tee")
                {
                    self.sink
                        .error(
                            "E0202",
                            e.span,
                            format!("`{path}` cannot be ordered"),
                            "not a number",
                        )
                        .with_hint("use `==`, `!=` or `in [ … ]`");
                    return None;
                }
                let (l, ld) = self.num(lhs, None, ctx)?;
                let (r, _) = self.num_same(rhs, ld, ctx, *op, lhs.span)?;
                let cop = match op {
                    BinOp::Lt => CmpOp::Lt,
                    BinOp::Le => CmpOp::Le,
                    BinOp::Gt => CmpOp::Gt,
                    _ => CmpOp::Ge,
                };
                Some(self.cond_node(Cond::Cmp(cop, l, r)))
            }
            ExprKind::Path(p) => {
                let path = join_path(p);
                let flag = match path.as_str() {
                    "true" => return Some(self.cond_node(Cond::Const(true))),
                    "false" => return Some(self.cond_node(Cond::Const(false))),
                    "over_limit" => BoolFact::OverLimit,
                    "attestation.failed" => BoolFact::AttestationFailed,
                    "reattestation.failed" => BoolFact::ReattestationFailed,
                    "attestation.debug" => BoolFact::Debug,
                    _ => {
                        if fact_paths().contains(&path) || path.starts_with("labels.") {
                            self.sink
                                .error(
                                    "E0205",
                                    e.span,
                                    format!("expected a condition, found `{path}`"),
                                    "not a condition",
                                )
                                .with_hint(format!(
                                    "compare it, e.g. `{path} == …` or `{path} > …`"
                                ));
                        } else {
                            self.unknown_name(e, p, ctx);
                        }
                        return None;
                    }
                };
                if ctx == Ctx::Selector {
                    self.live_in_selector(e.span, &path);
                    return None;
                }
                Some(self.cond_node(Cond::Flag(flag)))
            }
            _ => {
                let what = describe_expr(e);
                let d = self.sink.error(
                    "E0205",
                    e.span,
                    format!("expected a condition, found {what}"),
                    "not a condition",
                );
                if matches!(
                    e.kind,
                    ExprKind::Binary {
                        op: BinOp::Add | BinOp::Sub | BinOp::Of | BinOp::Mul | BinOp::Div,
                        ..
                    } | ExprKind::Number(_)
                ) {
                    d.with_hint("compare the value, e.g. `host.cpu.utilization > 80%`");
                }
                None
            }
        }
    }

    fn equality(&mut self, lhs: &Expr, rhs: &Expr, ctx: Ctx) -> Option<CondId> {
        let path = lhs.path_text().unwrap_or_default();
        if let Some(field) = str_field(&path) {
            let ExprKind::Str(lit) = &rhs.kind else {
                self.sink
                    .error(
                        "E0202",
                        rhs.span,
                        format!("`{path}` is a string; compare it with a string"),
                        "expected a string",
                    )
                    .with_hint(format!("write `{path} == \"…\"`"));
                return None;
            };
            return Some(self.cond_node(Cond::StrEq(field, crate::lexer::unquote(lit))));
        }
        match path.as_str() {
            "tee" => {
                let mask = self.tee_value(rhs)?;
                return Some(self.cond_node(Cond::TeeIn(mask)));
            }
            "attestation.status" | "attestation.tcb" => {
                if ctx == Ctx::Selector {
                    self.live_in_selector(lhs.span, &path);
                    return None;
                }
                let names: &[&str] = if path == "attestation.status" {
                    &AttestStatus::NAMES
                } else {
                    &TcbStatus::NAMES
                };
                let v = rhs.path_text().unwrap_or_default();
                let Some(i) = names.iter().position(|n| *n == v) else {
                    let d = self.sink.error(
                        "E0202",
                        rhs.span,
                        format!("`{path}` is one of {}", names.join(", ")),
                        "unknown value",
                    );
                    if let Some(s) = did_you_mean(&v, names.iter().copied()) {
                        d.with_hint(format!("did you mean `{s}`?"));
                    }
                    return None;
                };
                let c = if path == "attestation.status" {
                    Cond::Attest(
                        [
                            AttestStatus::Trusted,
                            AttestStatus::Pending,
                            AttestStatus::Failed,
                        ][i],
                    )
                } else {
                    Cond::Tcb(
                        [
                            TcbStatus::UpToDate,
                            TcbStatus::OutOfDate,
                            TcbStatus::Revoked,
                        ][i],
                    )
                };
                return Some(self.cond_node(c));
            }
            _ => {}
        }
        let (l, ld) = self.num(lhs, None, ctx)?;
        let (r, _) = self.num_same(rhs, ld, ctx, BinOp::Eq, lhs.span)?;
        Some(self.cond_node(Cond::Cmp(CmpOp::Eq, l, r)))
    }

    fn tee_value(&mut self, e: &Expr) -> Option<u8> {
        let v = e.path_text().unwrap_or_default();
        match TeeKind::from_name(&v) {
            Some(t) => Some(t.bit()),
            None => {
                let d = self.sink.error(
                    "E0112",
                    e.span,
                    format!(
                        "unknown TEE kind `{}`",
                        if v.is_empty() {
                            "…".to_string()
                        } else {
                            v.clone()
                        }
                    ),
                    "not a TEE kind",
                );
                match did_you_mean(&v, TeeKind::NAMES) {
                    Some(s) => d.with_hint(format!("did you mean `{s}`?")),
                    None => d.with_hint("TEE kinds are sev-snp, tdx and sim"),
                };
                None
            }
        }
    }

    fn membership(&mut self, lhs: &Expr, rhs: &Expr, ctx: Ctx) -> Option<CondId> {
        let path = lhs.path_text().unwrap_or_default();
        if path == "time" {
            if ctx == Ctx::Selector {
                self.live_in_selector(lhs.span, "time");
                return None;
            }
            if let ExprKind::Binary {
                op: BinOp::Range,
                lhs: a,
                rhs: b,
            } = &rhs.kind
            {
                let (a, _) = self.num(a, Some(Dim::TimeOfDay), ctx)?;
                let (b, _) = self.num(b, Some(Dim::TimeOfDay), ctx)?;
                if let (Some(Num::Const(a)), Some(Num::Const(b))) = (
                    self.nums.get(a as usize).copied(),
                    self.nums.get(b as usize).copied(),
                ) {
                    if a == b {
                        self.sink
                            .warning("W0401", rhs.span, "this time range is empty", "empty range")
                            .with_hint("a range `A..B` includes A and excludes B");
                    }
                    return Some(self.cond_node(Cond::TimeIn(a, b)));
                }
            }
            self.sink
                .error(
                    "E0202",
                    rhs.span,
                    "`time in` takes a range of times of day",
                    "expected `HH:MM..HH:MM`",
                )
                .with_hint("write `time in 09:00..17:00`");
            return None;
        }
        let ExprKind::List(items) = &rhs.kind else {
            self.sink
                .error("E0202", rhs.span, "`in` takes a list", "expected `[ … ]`")
                .with_hint(format!(
                    "write `{} in [ … ]`",
                    if path.is_empty() { "x" } else { &path }
                ));
            return None;
        };
        if path == "tee" {
            let mut mask = 0;
            for i in items {
                mask |= self.tee_value(i)?;
            }
            return Some(self.cond_node(Cond::TeeIn(mask)));
        }
        if let Some(field) = str_field(&path) {
            let mut vals = Vec::new();
            for i in items {
                match &i.kind {
                    ExprKind::Str(s) => vals.push(crate::lexer::unquote(s)),
                    _ => {
                        self.sink
                            .error(
                                "E0202",
                                i.span,
                                format!("`{path}` is a string; the list must hold strings"),
                                "expected a string",
                            )
                            .with_hint("write each value in double quotes");
                        return None;
                    }
                }
            }
            if vals.is_empty() {
                self.sink.warning(
                    "W0401",
                    rhs.span,
                    "the list is empty: this condition is never true",
                    "empty list",
                );
            }
            return Some(self.cond_node(Cond::StrIn(field, vals)));
        }
        let (l, ld) = self.num(lhs, None, ctx)?;
        let mut acc: Option<CondId> = None;
        for i in items {
            let (r, _) = self.num_same(i, ld, ctx, BinOp::Eq, lhs.span)?;
            let c = self.cond_node(Cond::Cmp(CmpOp::Eq, l, r));
            acc = Some(match acc {
                Some(a) => self.cond_node(Cond::Or(a, c)),
                None => c,
            });
        }
        Some(acc.unwrap_or_else(|| self.cond_node(Cond::Const(false))))
    }
}

fn str_field(path: &str) -> Option<StrField> {
    match path {
        "tenant" => Some(StrField::Tenant),
        "measurement" => Some(StrField::Measurement),
        "class" => Some(StrField::Class),
        _ => path
            .strip_prefix("labels.")
            .filter(|l| !l.is_empty())
            .map(|l| {
                if l.starts_with('"') {
                    StrField::Label(crate::lexer::unquote(l))
                } else {
                    StrField::Label(l.to_string())
                }
            }),
    }
}

/// Collect the identity constraints of a conjunctive selector; false if it is not one.
pub(super) fn selector_atoms(conds: &[Cond], c: CondId, out: &mut Atoms, n: &mut u32) -> bool {
    fn add(out: &mut Atoms, k: StrField2, vals: Vec<String>) {
        match out.get_mut(&k) {
            Some(prev) => prev.retain(|v| vals.contains(v)),
            None => {
                out.insert(k, vals);
            }
        }
    }
    match conds.get(c as usize) {
        Some(Cond::And(a, b)) => {
            selector_atoms(conds, *a, out, n) && selector_atoms(conds, *b, out, n)
        }
        Some(Cond::StrEq(f, v)) => {
            *n += 1;
            add(out, StrField2::Str(f.clone()), vec![v.clone()]);
            true
        }
        Some(Cond::StrIn(f, v)) => {
            *n += 1;
            add(out, StrField2::Str(f.clone()), v.clone());
            true
        }
        Some(Cond::TeeIn(m)) => {
            *n += 1;
            let vals = TeeKind::NAMES
                .iter()
                .enumerate()
                .filter(|(i, _)| m & (1 << i) != 0)
                .map(|(_, s)| s.to_string())
                .collect();
            add(out, StrField2::Tee, vals);
            true
        }
        Some(Cond::Const(true)) => true,
        _ => {
            *n += 1;
            false
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::testing::*;

    fn policy(selector: &str) -> crate::CheckOutcome {
        crate::check(
            "t.tribune",
            &format!("policy \"p\" {{\n  match {selector}\n}}\n"),
        )
    }

    #[test]
    fn identity_fields_compare_with_strings() {
        let d = diag("  when tenant > \"a\" { notify now }", "E0202");
        assert!(d.message.contains("cannot be ordered"), "{}", d.message);
        let d = diag("  when tenant == 5 { notify now }", "E0202");
        assert!(
            d.message.contains("compare it with a string"),
            "{}",
            d.message
        );
        let d = diag("  when labels.tier in [\"a\", 1] { notify now }", "E0202");
        assert!(d.message.contains("must hold strings"), "{}", d.message);
        assert_eq!(codes("  when tenant in [] { notify now }"), ["W0401"]);
    }

    #[test]
    fn enumerations() {
        let d = diag("  when tee == sgx { notify now }", "E0112");
        assert!(
            d.message.contains("unknown TEE kind `sgx`"),
            "{}",
            d.message
        );
        let d = diag(
            "  when attestation.status == trustd { notify now }",
            "E0202",
        );
        assert_eq!(d.hint.as_deref(), Some("did you mean `trusted`?"));
        compile("  when attestation.tcb == out_of_date || tee in [tdx, sim] { notify now }");
    }

    #[test]
    fn time_ranges() {
        assert_eq!(
            codes("  when time in 09:00..09:00 { notify now }"),
            ["W0401"]
        );
        assert_eq!(codes("  when time in [09:00] { notify now }"), ["E0202"]);
        compile("  when time in 22:00..06:00 { notify now }");
    }

    #[test]
    fn what_is_not_a_condition() {
        let d = diag("  when host.cpu.utilization { notify now }", "E0205");
        assert!(
            d.hint
                .as_deref()
                .is_some_and(|h| h.contains("host.cpu.utilization >"))
        );
        let d = diag("  when 5 + 5 { notify now }", "E0205");
        assert!(
            d.hint
                .as_deref()
                .is_some_and(|h| h.starts_with("compare the value"))
        );
        assert_eq!(codes("  when over_lmit { notify now }"), ["E0104"]);
    }

    #[test]
    fn selectors_are_identity_only() {
        let out = policy("attestation.debug");
        assert_eq!(out.diagnostics[0].code, "E0111");
        let out = policy("time in 09:00..10:00");
        assert_eq!(out.diagnostics[0].code, "E0111");
    }

    #[test]
    fn conjunctive_selectors_give_atoms_and_specificity() {
        let out = policy("tenant in [\"a\", \"b\"] && tenant == \"b\" && tee == tdx");
        assert!(out.diagnostics.is_empty(), "{:?}", out.diagnostics);
        let p = &out.policies[0];
        assert_eq!(p.tenants(), Some(&["b".to_string()][..]));
        assert_eq!(p.specificity(), 3);
        // A disjunction has no atoms: it may match any tenant.
        let out = policy("tenant == \"a\" || tenant == \"b\"");
        assert_eq!(out.policies[0].tenants(), None);
        // Contradicting constraints match nothing.
        let out = policy("tenant == \"a\" && tenant == \"b\"");
        assert_eq!(out.diagnostics[0].code, "W0401");
        assert!(out.diagnostics[0].message.contains("can never match"));
    }
}
