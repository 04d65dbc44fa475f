//! The checker: syntax tree → compiled policy, reporting every type, unit, range and
//! reachability mistake it finds on the way. A policy with an error is not returned.

use std::collections::BTreeMap;

use crate::ast::*;
use crate::diag::{Sink, Span, did_you_mean};
use crate::grain;
use crate::ir::*;
use crate::units::{self, Dim, Resource, UnitMeaning};

const MAX_RULES: usize = 60;
const MAX_WINDOW_S: f64 = 3600.0;

/// Every fact path the language knows (for "did you mean").
fn fact_paths() -> Vec<String> {
    let mut v: Vec<String> = [
        "tenant",
        "tee",
        "measurement",
        "class",
        "time",
        "over_limit",
        "usage.divergence",
        "attestation.status",
        "attestation.tcb",
        "attestation.tcb_version",
        "attestation.failed",
        "attestation.debug",
        "reattestation.failed",
        "reattestation.failures",
        "true",
        "false",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    for r in Resource::NAMES {
        v.push(format!("host.{r}.utilization"));
        v.push(format!("cluster.{r}.utilization"));
        v.push(format!("limit.{r}"));
        v.push(format!("guarantee.{r}"));
        for a in Agg::NAMES {
            v.push(format!("usage.{r}.{a}"));
        }
    }
    v
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Ctx {
    /// `match` and `talk` selectors: identity only.
    Selector,
    /// `when`, `on`, `reclaim`: live facts too.
    Live,
}

pub struct Checker<'s, 'k> {
    sink: &'k mut Sink<'s>,
    nums: Vec<Num>,
    conds: Vec<Cond>,
    guarantee: [Option<f64>; 5],
    limit: [Option<f64>; 5],
    errors_at_start: usize,
}

fn err_count(s: &Sink<'_>) -> usize {
    s.diags.iter().filter(|d| d.is_error()).count()
}

impl<'s, 'k> Checker<'s, 'k> {
    pub fn new(sink: &'k mut Sink<'s>) -> Self {
        let errors_at_start = err_count(sink);
        Checker {
            sink,
            nums: Vec::new(),
            conds: Vec::new(),
            guarantee: [None; 5],
            limit: [None; 5],
            errors_at_start,
        }
    }

    fn num_node(&mut self, n: Num) -> NumId {
        self.nums.push(n);
        (self.nums.len() - 1) as NumId
    }
    fn cond_node(&mut self, c: Cond) -> CondId {
        self.conds.push(c);
        (self.conds.len() - 1) as CondId
    }
    fn line(&self, span: Span) -> u32 {
        self.sink.index.line_of(span.start as usize)
    }

    // ---------------------------------------------------------------- numbers

    /// A literal number with its unit, resolved against the expected dimension.
    fn literal(&mut self, text: &str, span: Span, expected: Option<Dim>) -> Option<(f64, Dim)> {
        let split = text
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .unwrap_or(text.len());
        let (digits, suffix) = text.split_at(split);
        let Ok(value) = digits.parse::<f64>() else {
            self.sink.error(
                "E0003",
                span,
                format!("`{text}` is not a number"),
                "invalid number",
            );
            return None;
        };
        let Some(meaning) = units::unit_meaning(suffix) else {
            let d = self.sink.error(
                "E0003",
                span,
                format!("unknown unit `{suffix}`"),
                "unknown unit",
            );
            let lower = suffix.to_ascii_lowercase();
            let bandwidth = lower.contains("bps")
                || lower.contains("bit")
                || lower == "mb"
                || lower == "gb"
                || lower == "kb";
            let prefix = suffix
                .chars()
                .next()
                .map(|c| c.to_ascii_uppercase())
                .filter(|c| "KMGT".contains(*c));
            if let (true, Some(p)) = (bandwidth, prefix) {
                d.with_hint(format!("bandwidth is written `{digits}{p}bit` (bits per second); memory `{digits}{p}iB`"));
                return None;
            }
            match did_you_mean(suffix, units::unit_names()) {
                Some(s) => d.with_hint(format!("did you mean `{digits}{s}`?")),
                None => d.with_hint("units: m (millicores or minutes), KiB MiB GiB TiB, Kbit Mbit Gbit, %, ms s m h"),
            };
            return None;
        };
        match units::resolve(value, meaning, expected) {
            Some((d, v)) => Some((v, d)),
            None => {
                let exp = expected.unwrap_or(Dim::Scalar);
                let got = units::natural_dim(meaning);
                if meaning == UnitMeaning::Bare {
                    let example = match exp {
                        Dim::Memory => format!("{digits}MiB"),
                        Dim::Bandwidth => format!("{digits}Mbit"),
                        Dim::Percent => format!("{digits}%"),
                        Dim::Duration => format!("{digits}s"),
                        _ => digits.to_string(),
                    };
                    self.sink
                        .error(
                            "E0203",
                            span,
                            format!("`{text}` needs a unit: expected {}", exp.describe()),
                            "missing unit",
                        )
                        .with_hint(format!("write `{example}`"));
                } else {
                    self.sink
                        .error(
                            "E0204",
                            span,
                            format!("expected {}, found {}", exp.describe(), got.short()),
                            format!("this is {}", got.short()),
                        )
                        .with_hint(unit_hint(exp));
                }
                None
            }
        }
    }

    fn num(&mut self, e: &Expr, expected: Option<Dim>, ctx: Ctx) -> Option<(NumId, Dim)> {
        match &e.kind {
            ExprKind::Number(t) => {
                let (v, d) = self.literal(t, e.span, expected)?;
                Some((self.num_node(Num::Const(v)), d))
            }
            ExprKind::Time(t) => {
                let (h, m) = t.split_once(':').unwrap_or((t, "0"));
                let (h, m) = (
                    h.parse::<u32>().unwrap_or(99),
                    m.parse::<u32>().unwrap_or(99),
                );
                if h > 23 || m > 59 || t.len() != 5 {
                    self.sink
                        .error(
                            "E0302",
                            e.span,
                            format!("`{t}` is not a time of day"),
                            "out of range",
                        )
                        .with_hint("times are HH:MM from 00:00 to 23:59");
                    return None;
                }
                Some((
                    self.num_node(Num::Const(f64::from(h * 60 + m))),
                    Dim::TimeOfDay,
                ))
            }
            ExprKind::Paren(inner) => self.num(inner, expected, ctx),
            ExprKind::Unary {
                op: UnOp::Neg,
                expr,
            } => {
                let (id, d) = self.num(expr, expected, ctx)?;
                Some((self.num_node(Num::Neg(id)), d))
            }
            ExprKind::Binary {
                op: op @ (BinOp::Add | BinOp::Sub),
                lhs,
                rhs,
            } => {
                let (l, ld) = self.num(lhs, expected, ctx)?;
                let (r, _) = self.num_same(rhs, ld, ctx, *op, lhs.span)?;
                let n = if *op == BinOp::Add {
                    Num::Add(l, r)
                } else {
                    Num::Sub(l, r)
                };
                Some((self.num_node(n), ld))
            }
            ExprKind::Binary {
                op: op @ (BinOp::Mul | BinOp::Div),
                lhs,
                rhs,
            } => {
                let (l, ld) = self.num(lhs, expected, ctx)?;
                let (r, rd) = self.num(rhs, Some(Dim::Scalar), ctx)?;
                if rd != Dim::Scalar {
                    self.sink
                        .error(
                            "E0201",
                            rhs.span,
                            format!(
                                "can only {} by a plain number, found {}",
                                if *op == BinOp::Mul {
                                    "multiply"
                                } else {
                                    "divide"
                                },
                                rd
                            ),
                            "not a plain number",
                        )
                        .with_hint("to take a share of a quantity, write `30% of limit.cpu`");
                    return None;
                }
                let n = if *op == BinOp::Mul {
                    Num::Mul(l, r)
                } else {
                    Num::Div(l, r)
                };
                Some((self.num_node(n), ld))
            }
            ExprKind::Binary {
                op: BinOp::Of,
                lhs,
                rhs,
            } => {
                let (l, ld) = self.num(lhs, Some(Dim::Percent), ctx)?;
                if ld != Dim::Percent {
                    self.sink
                        .error(
                            "E0201",
                            lhs.span,
                            format!("the left side of `of` must be a percentage, found {ld}"),
                            "not a percentage",
                        )
                        .with_hint("write `20% of guarantee.cpu`");
                    return None;
                }
                let (r, rd) = self.num(rhs, expected, ctx)?;
                Some((self.num_node(Num::Of(l, r)), rd))
            }
            ExprKind::Path(p) | ExprKind::Call { path: p, .. } => {
                let args = if let ExprKind::Call { args, .. } = &e.kind {
                    Some(args.as_slice())
                } else {
                    None
                };
                self.num_path(e, p, args, ctx)
            }
            _ => {
                let what = describe_expr(e);
                let d = self.sink.error(
                    "E0205",
                    e.span,
                    format!(
                        "expected {}, found {what}",
                        expected.map(|d| d.describe()).unwrap_or("a number")
                    ),
                    "not a number",
                );
                if matches!(e.kind, ExprKind::Str(_)) {
                    d.with_hint("quantities are written without quotes: `cpu = 250m`");
                }
                None
            }
        }
    }

    /// The right operand of `+`/`-` or a comparison must have the left operand's dimension.
    fn num_same(
        &mut self,
        e: &Expr,
        want: Dim,
        ctx: Ctx,
        op: BinOp,
        lhs_span: Span,
    ) -> Option<(NumId, Dim)> {
        // Resolve ambiguous literals (`2m`) against the left side; report a mismatch ourselves
        // so the message names both sides.
        if let ExprKind::Number(t) = &e.kind {
            let split = t
                .find(|c: char| !(c.is_ascii_digit() || c == '.'))
                .unwrap_or(t.len());
            if let Some(m) = units::unit_meaning(&t[split..])
                && units::resolve(0.0, m, Some(want)).is_none()
                && m != UnitMeaning::Bare
            {
                self.mismatch(op, lhs_span, e.span, want, units::natural_dim(m));
                return None;
            }
        }
        let (id, d) = self.num(e, Some(want), ctx)?;
        if d != want {
            self.mismatch(op, lhs_span, e.span, want, d);
            return None;
        }
        Some((id, d))
    }

    fn mismatch(&mut self, op: BinOp, lhs: Span, rhs: Span, l: Dim, r: Dim) {
        let verb = match op {
            BinOp::Add => "add",
            BinOp::Sub => "subtract",
            _ => "compare",
        };
        self.sink
            .error(
                "E0201",
                lhs.to(rhs),
                format!("mismatched units: cannot {verb} {l} and {r}"),
                format!("{l} {} {r}", op.text()),
            )
            .with_hint(format!("both sides must be {}", l.describe()));
    }

    fn num_path(
        &mut self,
        e: &Expr,
        p: &[Ident],
        args: Option<&[Expr]>,
        ctx: Ctx,
    ) -> Option<(NumId, Dim)> {
        let names: Vec<&str> = p.iter().map(|i| i.name.as_str()).collect();
        let fact = match (names.as_slice(), args) {
            (["limit" | "guarantee", r], None) if Resource::from_name(r).is_some() => {
                let res = Resource::from_name(r)?;
                let table = if names[0] == "limit" {
                    self.limit
                } else {
                    self.guarantee
                };
                match table[res as usize] {
                    Some(v) => return Some((self.num_node(Num::Const(v)), res.dim())),
                    None => {
                        self.sink
                            .error(
                                "E0104",
                                e.span,
                                format!("`{}` is not set in this policy", join_path(p)),
                                "not set",
                            )
                            .with_hint(format!("set it in the `{} {{ … }}` block first", names[0]));
                        return None;
                    }
                }
            }
            (["host" | "cluster", r, "utilization"], None) if Resource::from_name(r).is_some() => {
                let res = Resource::from_name(r)?;
                if names[0] == "host" {
                    NumFact::HostUtil(res)
                } else {
                    NumFact::ClusterUtil(res)
                }
            }
            (["usage", "divergence"], None) => NumFact::Divergence,
            (["time"], None) => NumFact::Time,
            (["reattestation", "failures"], None) => NumFact::ReattestFailures,
            (["attestation", "tcb_version"], None) => NumFact::TcbVersion,
            (["usage", r, a], Some(args)) if Resource::from_name(r).is_some() => {
                let res = Resource::from_name(r)?;
                let Some(agg) = Agg::from_name(a) else {
                    let d = self.sink.error(
                        "E0306",
                        p[2].span,
                        format!("unknown usage aggregate `{a}`"),
                        "unknown aggregate",
                    );
                    match did_you_mean(a, Agg::NAMES) {
                        Some(s) => d.with_hint(format!("did you mean `{s}`? (avg, max, p95)")),
                        None => d.with_hint("aggregates are avg, max and p95"),
                    };
                    return None;
                };
                let [w] = args else {
                    self.sink
                        .error(
                            "E0306",
                            e.span,
                            format!("`{}` takes one window, e.g. `({a}(5m))`", join_path(p)),
                            "expected one window",
                        )
                        .with_hint(format!("write `usage.{r}.{a}(5m)`"));
                    return None;
                };
                let (wid, _) = self.num(w, Some(Dim::Duration), ctx)?;
                let window_ms = match self.nums.get(wid as usize) {
                    Some(Num::Const(v)) => *v,
                    _ => {
                        self.sink.error(
                            "E0306",
                            w.span,
                            "the window must be a constant duration",
                            "not constant",
                        );
                        return None;
                    }
                };
                let window_s = window_ms / 1000.0;
                if !(1.0..=MAX_WINDOW_S).contains(&window_s) || window_s.fract() != 0.0 {
                    self.sink
                        .error(
                            "E0302",
                            w.span,
                            "usage windows are whole seconds from 1s to 1h",
                            "window out of range",
                        )
                        .with_hint("use a window such as 30s, 5m or 1h");
                    return None;
                }
                NumFact::Usage {
                    resource: res,
                    agg,
                    window_s: window_s as u32,
                }
            }
            (["usage", r, a], None)
                if Resource::from_name(r).is_some() && Agg::from_name(a).is_some() =>
            {
                self.sink
                    .error(
                        "E0306",
                        e.span,
                        format!("`{}` needs a window", join_path(p)),
                        "missing window",
                    )
                    .with_hint(format!("write `{}(5m)`", join_path(p)));
                return None;
            }
            _ => {
                self.unknown_name(e, p, ctx);
                return None;
            }
        };
        if ctx == Ctx::Selector {
            self.live_in_selector(e.span, &join_path(p));
            return None;
        }
        Some((self.num_node(Num::Fact(fact)), fact.dim()))
    }

    fn live_in_selector(&mut self, span: Span, path: &str) {
        self.sink
            .error("E0111", span, format!("`{path}` is a live fact; selectors match on identity only"), "live fact in a selector")
            .with_hint("selectors use tenant, labels.NAME, tee, measurement and class; move live conditions to a `when` rule");
    }

    fn unknown_name(&mut self, e: &Expr, p: &[Ident], _ctx: Ctx) {
        let full = join_path(p);
        let all = fact_paths();
        let d = self.sink.error(
            "E0104",
            e.span,
            format!("unknown name `{full}`"),
            "not a known fact or field",
        );
        if let Some(s) = did_you_mean(&full, all.iter().map(|s| s.as_str())) {
            d.with_hint(format!("did you mean `{s}`?"));
        } else if let Some(first) = p.first() {
            if ["host", "cluster", "usage", "limit", "guarantee"].contains(&first.name.as_str()) {
                d.with_hint(format!("resources are {}", Resource::NAMES.join(", ")));
            } else if TeeKind::from_name(&first.name).is_some()
                || AttestStatus::NAMES.contains(&first.name.as_str())
            {
                d.with_hint("this value can only be compared with `tee` or `attestation.status`");
            }
        }
    }

    // ---------------------------------------------------------------- conditions

    fn cond(&mut self, e: &Expr, ctx: Ctx) -> Option<CondId> {
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

    /// A constant of the expected dimension (folded), for values that must be known statically.
    fn constant(&mut self, e: &Expr, dim: Dim) -> Option<f64> {
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

    fn range(
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

    fn resource_value(&mut self, res: Resource, e: &Expr) -> Option<f64> {
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

    fn duration(&mut self, e: &Expr, hi_ms: f64) -> Option<f64> {
        let v = self.constant(e, Dim::Duration)?;
        self.range(e, v, 0.0, hi_ms, "a duration", |x| {
            units::display(Dim::Duration, x)
        })
    }

    // ---------------------------------------------------------------- reachability

    /// Warn about conditions that can never (or always) be true, by interval analysis of a
    /// conjunction of `fact OP constant` comparisons.
    fn reachability(&mut self, c: CondId, span: Span, what: &str) {
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

    // ---------------------------------------------------------------- items

    pub fn policy(mut self, p: &Policy) -> Option<CompiledPolicy> {
        let mut seen: BTreeMap<&str, Span> = BTreeMap::new();
        // Static resources first: rules may refer to `limit.cpu` wherever they are written.
        let mut guarantee_line = [0u32; 5];
        let mut limit_line = [0u32; 5];
        for it in &p.body.items {
            let kw = it.keyword.name.as_str();
            if !matches!(it.kind, ItemKind::When { .. } | ItemKind::On { .. }) {
                if let Some(prev) = seen.get(kw) {
                    let prev_line = self.line(*prev);
                    self.sink
                        .error(
                            "E0107",
                            it.keyword.span,
                            format!("`{kw}` is given twice in policy \"{}\"", p.name),
                            "second definition",
                        )
                        .with_hint(format!("the first is on line {prev_line}; merge them"));
                    continue;
                }
                seen.insert(kw, it.keyword.span);
            }
            if let (ItemKind::Block(b), "guarantee" | "limit") = (&it.kind, kw) {
                let mut vals = [None; 5];
                let mut lines = [0u32; 5];
                let mut spans = [Span::default(); 5];
                for s in &b.items {
                    let StmtKind::Assign { target, value } = &s.kind else {
                        self.not_here(s, kw);
                        continue;
                    };
                    let Some(res) = self.resource_name(target) else {
                        continue;
                    };
                    if vals[res as usize].is_some() {
                        let first = self.line(spans[res as usize]);
                        self.sink
                            .error(
                                "E0108",
                                s.span,
                                format!("`{}` is set twice in `{kw}`", res.name()),
                                "set again here",
                            )
                            .with_hint(format!("the first is on line {first}"));
                        continue;
                    }
                    spans[res as usize] = s.span;
                    lines[res as usize] = self.line(s.span);
                    let v = self.resource_value(res, value).filter(|v| {
                        kw != "limit" || !grain::zero_limit(self.sink, res, value.span, *v, false)
                    });
                    vals[res as usize] = v.or(Some(f64::NAN));
                }
                let vals = vals.map(|v| v.filter(|x| !x.is_nan()));
                if kw == "guarantee" {
                    self.guarantee = vals;
                    guarantee_line = lines;
                } else {
                    self.limit = vals;
                    limit_line = lines;
                }
            }
        }
        // guarantee ≤ limit
        for r in Resource::ALL {
            if let (Some(g), Some(l)) = (self.guarantee[r as usize], self.limit[r as usize])
                && g > l
            {
                let span = find_assign(p, "guarantee", r.name()).unwrap_or(p.name_span);
                let limit_line = limit_line[r as usize];
                self.sink
                    .error(
                        "E0301",
                        span,
                        format!(
                            "the {} guarantee ({}) is above its limit ({})",
                            r.name(),
                            units::display(r.dim(), g),
                            units::display(r.dim(), l)
                        ),
                        "guarantee above limit",
                    )
                    .with_hint(format!(
                        "lower the guarantee or raise the limit on line {limit_line}"
                    ));
            }
        }

        let mut selector = None;
        let mut atoms = Some(Atoms::new());
        let mut specificity = 0;
        let mut weight = None;
        let mut priority = None;
        let mut preempt = false;
        let mut precedence = 0.0;
        let mut rules = Vec::new();
        let mut ladders = Vec::new();
        let mut reclaim = None;
        let mut attest = None;
        let mut talk = Vec::new();
        let mut seen2: BTreeMap<&str, ()> = BTreeMap::new();
        for it in &p.body.items {
            let kw = it.keyword.name.as_str();
            if !matches!(it.kind, ItemKind::When { .. } | ItemKind::On { .. })
                && seen2.insert(kw, ()).is_some()
            {
                continue;
            }
            let line = self.line(it.keyword.span);
            match (&it.kind, kw) {
                (ItemKind::Match(e), _) => {
                    if let Some(c) = self.cond(e, Ctx::Selector) {
                        selector = Some(c);
                        let mut a = Atoms::new();
                        let mut n = 0;
                        atoms = if selector_atoms(&self.conds, c, &mut a, &mut n) {
                            Some(a)
                        } else {
                            None
                        };
                        specificity = n;
                        if let Some(a) = &atoms
                            && a.values().any(|v| v.is_empty())
                        {
                            self.sink.warning("W0401", e.span, "this selector can never match: its constraints contradict each other", "matches nothing");
                        }
                    }
                }
                (
                    ItemKind::Priority {
                        value,
                        preempt: pre,
                    },
                    _,
                ) => {
                    if let Some(v) = self.constant(value, Dim::Scalar)
                        && let Some(v) =
                            self.range(value, v, 0.0, 1000.0, "`priority`", |x| format!("{x}"))
                    {
                        priority = Some((v, line));
                    }
                    preempt = pre.is_some();
                }
                (ItemKind::Weight(value), _) => {
                    if let Some(v) = self.constant(value, Dim::Scalar)
                        && let Some(v) =
                            self.range(value, v, 0.01, 1000.0, "`weight`", |x| format!("{x}"))
                    {
                        weight = Some((v, line));
                    }
                }
                (ItemKind::Precedence(value), _) => {
                    if let Some(v) = self.constant(value, Dim::Scalar)
                        && let Some(v) =
                            self.range(value, v, -1000.0, 1000.0, "`precedence`", |x| {
                                format!("{x}")
                            })
                    {
                        precedence = v;
                    }
                }
                (ItemKind::Block(_), "guarantee" | "limit") => {}
                (ItemKind::Block(b), "reclaim") => reclaim = self.reclaim(b, line),
                (ItemKind::Block(b), "attest") => attest = self.attest(b, line),
                (ItemKind::Block(b), "talk") => talk = self.talk(b),
                (ItemKind::When { cond, held, body }, _) => {
                    let id = format!("when#{}", rules.len() + 1);
                    if let Some(r) = self.rule(id, line, it, cond, held.as_ref(), body) {
                        rules.push(r);
                    }
                }
                (ItemKind::On { event, body }, _) => {
                    let id = format!("on#{}", ladders.len() + 1);
                    if let Some(l) = self.ladder(id, line, it, event, body) {
                        ladders.push(l);
                    }
                }
                _ => {}
            }
        }
        if rules.len() + ladders.len() > MAX_RULES {
            self.sink
                .error(
                    "E0113",
                    p.name_span,
                    format!("policy \"{}\" has more than {MAX_RULES} rules", p.name),
                    "too many rules",
                )
                .with_hint("split it into several policies");
        }
        if !p.recovered
            && selector.is_none()
            && !p
                .body
                .items
                .iter()
                .any(|i| matches!(i.kind, ItemKind::Match(_)))
        {
            self.sink
                .warning(
                    "W0404",
                    p.name_span,
                    format!(
                        "policy \"{}\" has no `match`: it applies to every enclave",
                        p.name
                    ),
                    "no selector",
                )
                .with_hint("add `match tenant == \"…\"` or `match true` to say so");
        }
        if !p.recovered && attest.is_some() && !ladders.iter().any(|l: &Ladder| matches!(l.event, Event::Cond(c) if matches!(self.conds.get(c as usize), Some(Cond::Flag(BoolFact::AttestationFailed))))) {
            self.sink
                .warning("W0405", p.name_span, "the `attest` block has no `on attestation.failed { … }` ladder", "no attestation-failure action")
                .with_hint("add `on attestation.failed { suspend now }`");
        }
        if err_count(self.sink) > self.errors_at_start {
            return None;
        }
        let (line, column) = self.sink.index.line_col(p.name_span.start as usize);
        let (end_line, end_column) = self.sink.index.line_col(p.name_span.end as usize);
        Some(CompiledPolicy {
            name: p.name.clone(),
            loc: Loc {
                file: self.sink.file.to_string(),
                offset: p.name_span.start,
                end_offset: p.name_span.end,
                line,
                column,
                end_line,
                end_column,
            },
            precedence,
            specificity,
            selector,
            atoms,
            guarantee: self.guarantee,
            limit: self.limit,
            guarantee_line,
            limit_line,
            weight,
            priority,
            preempt,
            rules,
            ladders,
            reclaim,
            attest,
            talk,
            nums: self.nums,
            conds: self.conds,
        })
    }

    fn not_here(&mut self, s: &Stmt, block: &str) {
        let allowed = match block {
            "guarantee" | "limit" => "`RESOURCE = VALUE` (cpu, memory, egress, ingress, gpu)",
            "reclaim" => "`when …`, `keep RESOURCE = …`, `return DURATION`",
            "attest" => {
                "`measurement in [ … ]`, `min_tcb KIND >= N`, `debug = …`, `simulated = …`, `every DURATION`"
            }
            "talk" => "`allow to SELECTOR [share N]`, `deny to SELECTOR`",
            "when" => {
                "`limit.RESOURCE = …`, `guarantee.RESOURCE = …`, `weight = …`, `priority = …`, `ACTION now`"
            }
            _ => "`ACTION now` or `ACTION after DURATION`",
        };
        self.sink
            .error(
                "E0110",
                s.span,
                format!("this statement is not allowed in `{block}`"),
                "not allowed here",
            )
            .with_hint(format!("`{block}` takes {allowed}"));
    }

    fn resource_name(&mut self, target: &[Ident]) -> Option<Resource> {
        let name = join_path(target);
        if let Some(r) = Resource::from_name(&name) {
            return Some(r);
        }
        let span = target.first().map(|f| f.span).unwrap_or_default();
        let span = target.last().map(|l| span.to(l.span)).unwrap_or(span);
        let d = self.sink.error(
            "E0103",
            span,
            format!("unknown resource `{name}`"),
            "not a resource",
        );
        match did_you_mean(&name, Resource::NAMES) {
            Some(s) => d.with_hint(format!("did you mean `{s}`?")),
            None => d.with_hint(format!("resources are {}", Resource::NAMES.join(", "))),
        };
        None
    }

    fn action(&mut self, id: &Ident) -> Option<Action> {
        match Action::from_name(&id.name) {
            Some(a) => Some(a),
            None => {
                let d = self.sink.error(
                    "E0109",
                    id.span,
                    format!("unknown action `{}`", id.name),
                    "not an action",
                );
                match did_you_mean(&id.name, Action::NAMES) {
                    Some(s) => d.with_hint(format!("did you mean `{s}`?")),
                    None => d.with_hint("actions are notify, throttle, suspend and migrate"),
                };
                None
            }
        }
    }

    fn rule(
        &mut self,
        id: String,
        line: u32,
        it: &Item,
        cond: &Expr,
        held: Option<&Expr>,
        body: &Block<Stmt>,
    ) -> Option<Rule> {
        let c = self.cond(cond, Ctx::Live);
        let held_ms = match held {
            Some(h) => self.duration(h, 86_400_000.0),
            None => Some(0.0),
        };
        let mut effects = Vec::new();
        let mut action = Action::None;
        let mut raised: Vec<(Resource, f64, Span)> = Vec::new();
        let mut rule_limit: [Option<f64>; 5] = [None; 5];
        for s in &body.items {
            match &s.kind {
                StmtKind::Assign { target, value } => {
                    let names: Vec<&str> = target.iter().map(|i| i.name.as_str()).collect();
                    let t = match names.as_slice() {
                        ["weight"] => Target::Weight,
                        ["priority"] => Target::Priority,
                        ["limit", _] | ["guarantee", _] => match self.resource_name(&target[1..]) {
                            Some(res) => {
                                if names[0] == "limit" {
                                    Target::Limit(res)
                                } else {
                                    Target::Guarantee(res)
                                }
                            }
                            None => continue,
                        },
                        _ => {
                            let full = join_path(target);
                            let cands = [
                                "weight",
                                "priority",
                                "limit.cpu",
                                "limit.memory",
                                "limit.egress",
                                "limit.ingress",
                                "limit.gpu",
                                "guarantee.cpu",
                                "guarantee.memory",
                                "guarantee.egress",
                                "guarantee.ingress",
                                "guarantee.gpu",
                            ];
                            let span = target[0].span.to(target[target.len() - 1].span);
                            let d = self.sink.error(
                                "E0104",
                                span,
                                format!("`{full}` cannot be changed by a rule"),
                                "not a settable field",
                            );
                            match did_you_mean(&full, cands) {
                                Some(s) => d.with_hint(format!("did you mean `{s}`?")),
                                None => d.with_hint("rules set limit.RESOURCE, guarantee.RESOURCE, weight or priority"),
                            };
                            continue;
                        }
                    };
                    let dim = match t {
                        Target::Limit(r) | Target::Guarantee(r) => r.dim(),
                        _ => Dim::Scalar,
                    };
                    let Some((v, d)) = self.num(value, Some(dim), Ctx::Live) else {
                        continue;
                    };
                    if d != dim {
                        self.sink
                            .error(
                                "E0204",
                                value.span,
                                format!("expected {}, found {}", dim.describe(), d.short()),
                                format!("this is {}", d.short()),
                            )
                            .with_hint(unit_hint(dim));
                        continue;
                    }
                    if let (Target::Limit(r) | Target::Guarantee(r), Some(k)) =
                        (t, fold(&self.nums, v))
                        && k.is_finite()
                        && k >= 0.0
                        && (grain::whole(self.sink, r, value.span, k).is_none()
                            || matches!(t, Target::Limit(_))
                                && grain::zero_limit(self.sink, r, value.span, k, true))
                    {
                        continue;
                    }
                    if let (Target::Limit(r), Some(k)) = (t, fold(&self.nums, v)) {
                        if let Some(g) = self.guarantee[r as usize]
                            && k < g
                        {
                            self.sink
                                    .error("E0301", value.span, format!("this rule lowers the {} limit ({}) below its guarantee ({})", r.name(), units::display(dim, k), units::display(dim, g)), "below the guarantee")
                                    .with_hint("a limit can never be below the guarantee; lower the guarantee too or raise this value");
                        }
                        if r == Resource::Gpu && k > 100.0 {
                            self.range(value, k, 0.0, 100.0, "`gpu`", |x| {
                                units::display(Dim::Percent, x)
                            });
                        }
                    }
                    if let (Target::Weight, Some(k)) = (t, fold(&self.nums, v)) {
                        self.range(value, k, 0.01, 1000.0, "`weight`", |x| format!("{x}"));
                    }
                    if let (Target::Priority, Some(k)) = (t, fold(&self.nums, v)) {
                        self.range(value, k, 0.0, 1000.0, "`priority`", |x| format!("{x}"));
                    }
                    match (t, fold(&self.nums, v)) {
                        (Target::Guarantee(r), Some(k)) => raised.push((r, k, value.span)),
                        (Target::Limit(r), Some(k)) => rule_limit[r as usize] = Some(k),
                        _ => {}
                    }
                    if let Some(k) = fold(&self.nums, v)
                        && (!k.is_finite() || k < 0.0)
                    {
                        self.sink
                            .error(
                                "E0302",
                                value.span,
                                "this value must be finite and not negative",
                                "out of range",
                            )
                            .with_hint("check for a division by zero or a subtraction below zero");
                    }
                    effects.push(Effect {
                        target: t,
                        value: v,
                        line: self.line(s.span),
                    });
                }
                StmtKind::Step { action: a, after } => {
                    if let Some(after) = after {
                        self.sink
                            .error(
                                "E0110",
                                after.span,
                                "a `when` rule acts at once; `after` belongs in an `on` ladder",
                                "not allowed here",
                            )
                            .with_hint("use `when COND for DURATION { … now }`");
                        continue;
                    }
                    if let Some(a) = self.action(a) {
                        action = action.max(a);
                    }
                }
                _ => self.not_here(s, "when"),
            }
        }
        for (r, k, span) in raised {
            if let Some(l) = rule_limit[r as usize].or(self.limit[r as usize])
                && k > l
            {
                self.sink
                    .error(
                        "E0301",
                        span,
                        format!(
                            "this rule raises the {} guarantee ({}) above its limit ({})",
                            r.name(),
                            units::display(r.dim(), k),
                            units::display(r.dim(), l)
                        ),
                        "above the limit",
                    )
                    .with_hint("raise the limit in the same rule, or lower this value");
            }
        }
        let c = c?;
        self.reachability(c, cond.span, "rule");
        if effects.is_empty() && action == Action::None && body.items.is_empty() {
            self.sink
                .warning(
                    "W0403",
                    it.keyword.span,
                    "this rule does nothing",
                    "empty body",
                )
                .with_hint("set a limit, weight or priority, or take an action");
        }
        Some(Rule {
            id,
            line,
            cond: c,
            held_ms: held_ms?,
            effects,
            action,
        })
    }

    fn ladder(
        &mut self,
        id: String,
        line: u32,
        _it: &Item,
        event: &Expr,
        body: &Block<Stmt>,
    ) -> Option<Ladder> {
        let ev = if event.path_text().as_deref() == Some("over_limit") {
            Event::OverLimit
        } else {
            let c = self.cond(event, Ctx::Live)?;
            self.reachability(c, event.span, "ladder");
            Event::Cond(c)
        };
        let mut steps: Vec<Step> = Vec::new();
        for s in &body.items {
            let StmtKind::Step { action, after } = &s.kind else {
                self.not_here(s, "on");
                continue;
            };
            let Some(a) = self.action(action) else {
                continue;
            };
            let after_ms = match after {
                Some(e) => match self.duration(e, 86_400_000.0) {
                    Some(v) => v,
                    None => continue,
                },
                None => 0.0,
            };
            if let Some(prev) = steps.last() {
                if after_ms <= prev.after_ms {
                    let prev_line = prev.line;
                    self.sink
                        .error(
                            "E0303",
                            s.span,
                            format!("this step can never be reached: it is due no later than the step on line {prev_line}"),
                            "unreachable step",
                        )
                        .with_hint("list the steps in increasing time, each later than the one before");
                    continue;
                }
                if a <= prev.action {
                    self.sink
                        .warning("W0406", s.span, format!("`{}` after `{:?}` does not escalate", action.name, prev.action).to_lowercase(), "does not escalate")
                        .with_hint("each step should be more severe than the one before (notify < throttle < suspend < migrate)");
                }
            }
            steps.push(Step {
                action: a,
                after_ms,
                line: self.line(s.span),
            });
        }
        Some(Ladder {
            id,
            line,
            event: ev,
            steps,
        })
    }

    fn reclaim(&mut self, b: &Block<Stmt>, line: u32) -> Option<Reclaim> {
        let mut r = Reclaim {
            line,
            idle: None,
            held_ms: 0.0,
            keep: [None; 5],
            return_ms: None,
        };
        for s in &b.items {
            match &s.kind {
                StmtKind::When { cond, held } => {
                    if let Some(c) = self.cond(cond, Ctx::Live) {
                        self.reachability(c, cond.span, "reclaim condition");
                        r.idle = Some(c);
                    }
                    if let Some(h) = held {
                        r.held_ms = self.duration(h, 86_400_000.0).unwrap_or(0.0);
                    }
                }
                StmtKind::Keep { target, value } => {
                    let Some(res) = self.resource_name(target) else {
                        continue;
                    };
                    let Some(v) = self.resource_value(res, value) else {
                        continue;
                    };
                    match self.guarantee[res as usize] {
                        Some(g) if v > g => {
                            self.sink
                                .error("E0304", value.span, format!("the kept floor ({}) is above the {} guarantee ({})", units::display(res.dim(), v), res.name(), units::display(res.dim(), g)), "floor above guarantee")
                                .with_hint("only guaranteed capacity can be lent out; keep at most the guarantee");
                        }
                        None => {
                            self.sink
                                .error(
                                    "E0304",
                                    target[0].span,
                                    format!(
                                        "`keep {}` but the policy guarantees no {}",
                                        res.name(),
                                        res.name()
                                    ),
                                    "nothing to reclaim",
                                )
                                .with_hint(format!(
                                    "add `{} = …` to the `guarantee` block",
                                    res.name()
                                ));
                        }
                        _ => r.keep[res as usize] = Some(v),
                    }
                }
                StmtKind::Return(e) => r.return_ms = self.duration(e, 3_600_000.0),
                _ => self.not_here(s, "reclaim"),
            }
        }
        Some(r)
    }

    fn attest(&mut self, b: &Block<Stmt>, line: u32) -> Option<AttestReq> {
        let mut a = AttestReq {
            line,
            ..AttestReq::default()
        };
        for s in &b.items {
            match &s.kind {
                StmtKind::MeasurementIn(e) => {
                    let ExprKind::List(items) = &e.kind else {
                        self.sink.error(
                            "E0202",
                            e.span,
                            "`measurement in` takes a list of hex strings",
                            "expected `[ … ]`",
                        );
                        continue;
                    };
                    for i in items {
                        let ExprKind::Str(lit) = &i.kind else {
                            self.sink
                                .error(
                                    "E0202",
                                    i.span,
                                    "measurements are hex strings",
                                    "expected a string",
                                )
                                .with_hint("write the measurement in double quotes");
                            continue;
                        };
                        let m = crate::lexer::unquote(lit);
                        if m.len() < 8
                            || !m.len().is_multiple_of(2)
                            || !m.chars().all(|c| c.is_ascii_hexdigit())
                        {
                            self.sink
                                .error(
                                    "E0305",
                                    i.span,
                                    "a measurement is an even number of hex digits (at least 8)",
                                    "not a measurement",
                                )
                                .with_hint("SNP measurements are 96 hex digits, TDX MRTD 96");
                            continue;
                        }
                        a.measurements.push(m.to_ascii_lowercase());
                    }
                }
                StmtKind::MinTcb { tee, value } => {
                    let slot = match tee.name.as_str() {
                        "snp" | "sev-snp" => 0,
                        "tdx" => 1,
                        other => {
                            let d = self.sink.error(
                                "E0112",
                                tee.span,
                                format!("`min_tcb` is for snp or tdx, found `{other}`"),
                                "unknown TEE kind",
                            );
                            match did_you_mean(other, ["snp", "sev-snp", "tdx"]) {
                                Some(s) => d.with_hint(format!("did you mean `{s}`?")),
                                None => {
                                    d.with_hint("write `min_tcb snp >= 8` or `min_tcb tdx >= 3`")
                                }
                            };
                            continue;
                        }
                    };
                    if let Some(v) = self.constant(value, Dim::Scalar)
                        && let Some(v) =
                            self.range(value, v, 0.0, 255.0, "a TCB version", |x| format!("{x}"))
                    {
                        a.min_tcb[slot] = Some(v);
                    }
                }
                StmtKind::Assign { target, value } => {
                    let key = join_path(target);
                    if key != "debug" && key != "simulated" {
                        let d = self.sink.error(
                            "E0103",
                            target[0].span,
                            format!("unknown attestation setting `{key}`"),
                            "unknown setting",
                        );
                        match did_you_mean(&key, ["debug", "simulated"]) {
                            Some(s) => d.with_hint(format!("did you mean `{s}`?")),
                            None => d.with_hint("settings are debug and simulated; also `measurement in`, `min_tcb`, `every`"),
                        };
                        continue;
                    }
                    let v = value.path_text().unwrap_or_default();
                    let allowed = match v.as_str() {
                        "allowed" => true,
                        "forbidden" => false,
                        _ => {
                            let d = self.sink.error(
                                "E0202",
                                value.span,
                                format!("`{key}` is `allowed` or `forbidden`"),
                                "expected allowed or forbidden",
                            );
                            if let Some(s) = did_you_mean(&v, ["allowed", "forbidden"]) {
                                d.with_hint(format!("did you mean `{s}`?"));
                            }
                            continue;
                        }
                    };
                    if key == "debug" {
                        a.debug_allowed = allowed
                    } else {
                        a.simulated_allowed = allowed
                    }
                }
                StmtKind::Every(e) => {
                    if let Some(v) = self.constant(e, Dim::Duration) {
                        a.every_ms = self.range(
                            e,
                            v,
                            1000.0,
                            86_400_000.0,
                            "the re-attestation interval",
                            |x| units::display(Dim::Duration, x),
                        );
                    }
                }
                _ => self.not_here(s, "attest"),
            }
        }
        Some(a)
    }

    fn talk(&mut self, b: &Block<Stmt>) -> Vec<TalkRule> {
        let mut out: Vec<TalkRule> = Vec::new();
        let mut catch_all: Option<u32> = None;
        for s in &b.items {
            let StmtKind::Talk { allow, to, share } = &s.kind else {
                self.not_here(s, "talk");
                continue;
            };
            let line = self.line(s.span);
            if let Some(l) = catch_all {
                self.sink
                    .warning("W0407", s.span, format!("this rule is never used: the `*` rule on line {l} matches every peer first"), "shadowed")
                    .with_hint("rules apply first-match; put specific rules before `*`");
            }
            let sel = if matches!(to.kind, ExprKind::Wildcard) {
                catch_all = Some(line);
                None
            } else {
                match self.cond(to, Ctx::Selector) {
                    Some(c) => Some(c),
                    None => continue,
                }
            };
            let share = match (share, allow) {
                (Some(e), false) => {
                    self.sink
                        .error(
                            "E0110",
                            e.span,
                            "a `deny` rule has no share",
                            "not allowed here",
                        )
                        .with_hint("remove `share …`");
                    continue;
                }
                (Some(e), true) => match self
                    .constant(e, Dim::Scalar)
                    .and_then(|v| self.range(e, v, 1.0, 1000.0, "a share", |x| format!("{x}")))
                {
                    Some(v) => v,
                    None => continue,
                },
                (None, _) => 1.0,
            };
            out.push(TalkRule {
                line,
                allow: *allow,
                to: sel,
                share,
            });
        }
        out
    }
}

fn unit_hint(d: Dim) -> String {
    match d {
        Dim::Cpu => "cpu is written in cores (`1`, `0.25`) or millicores (`250m`)".into(),
        Dim::Memory => "memory is written with B, KiB, MiB, GiB or TiB".into(),
        Dim::Bandwidth => "bandwidth is written with bit, Kbit, Mbit or Gbit".into(),
        Dim::Percent => "write a percentage, e.g. `30%`".into(),
        Dim::Duration => "durations are written with ms, s, m or h".into(),
        Dim::TimeOfDay => "times of day are written HH:MM".into(),
        Dim::Scalar => "write a plain number without a unit".into(),
    }
}

fn describe_expr(e: &Expr) -> String {
    match &e.kind {
        ExprKind::Number(t) => format!("the number `{t}`"),
        ExprKind::Time(t) => format!("the time `{t}`"),
        ExprKind::Str(s) => format!("the string {s}"),
        ExprKind::Path(p) => format!("`{}`", join_path(p)),
        ExprKind::Call { path, .. } => format!("`{}(…)`", join_path(path)),
        ExprKind::List(_) => "a list".into(),
        ExprKind::Wildcard => "`*`".into(),
        ExprKind::Paren(i) => describe_expr(i),
        ExprKind::Unary { .. } => "an expression".into(),
        ExprKind::Binary { op, .. } => format!("a `{}` expression", op.text()),
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
    }
}

fn find_assign(p: &Policy, block: &str, field: &str) -> Option<Span> {
    p.body
        .items
        .iter()
        .find(|i| i.keyword.name == block)
        .and_then(|i| match &i.kind {
            ItemKind::Block(b) => b.items.iter().find_map(|s| match &s.kind {
                StmtKind::Assign { target, .. } if join_path(target) == field => Some(s.span),
                _ => None,
            }),
            _ => None,
        })
}

/// Fold a numeric node to a constant, if it has no live facts.
pub(crate) fn fold(nums: &[Num], id: NumId) -> Option<f64> {
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

/// Collect the identity constraints of a conjunctive selector; false if it is not one.
fn selector_atoms(conds: &[Cond], c: CondId, out: &mut Atoms, n: &mut u32) -> bool {
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
