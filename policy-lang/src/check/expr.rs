//! Numeric expressions: literals with units, arithmetic, `of`, and the numeric facts
//! (`host.cpu.utilization`, `usage.cpu.p95(5m)`, `limit.cpu`, …), each checked against the
//! dimension the context expects.

use super::{Checker, Ctx};
use crate::ast::*;
use crate::diag::{Span, did_you_mean};
use crate::ir::*;
use crate::units::{self, Dim, Resource, UnitMeaning};

const MAX_WINDOW_S: f64 = 3600.0;

/// Every fact path the language knows (for "did you mean").
pub(super) fn fact_paths() -> Vec<String> {
    let mut v: Vec<String> = [
        "tenant",
        "tee",
        "measurement",
        "class",
        "time",
        "over_limit",
        "usage.divergence",
        "usage.msgs.rate",
        "usage.msgs.bytes",
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

impl Checker<'_, '_> {
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

    pub(super) fn num(
        &mut self,
        e: &Expr,
        expected: Option<Dim>,
        ctx: Ctx,
    ) -> Option<(NumId, Dim)> {
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
    pub(super) fn num_same(
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
            (["usage", "msgs", "rate"], None) => NumFact::MsgsRate,
            (["usage", "msgs", "bytes"], None) => NumFact::MsgsBytes,
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

    pub(super) fn live_in_selector(&mut self, span: Span, path: &str) {
        self.sink
            .error("E0111", span, format!("`{path}` is a live fact; selectors match on identity only"), "live fact in a selector")
            .with_hint("selectors use tenant, labels.NAME, tee, measurement and class; move live conditions to a `when` rule");
    }

    pub(super) fn unknown_name(&mut self, e: &Expr, p: &[Ident], _ctx: Ctx) {
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
}

pub(super) fn unit_hint(d: Dim) -> String {
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

pub(super) fn describe_expr(e: &Expr) -> String {
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

#[cfg(test)]
mod tests {
    use super::super::testing::*;
    use crate::{Agg, Resource};

    #[test]
    fn literals_need_the_right_unit() {
        let d = diag("  limit { memory = 512 }", "E0203");
        assert_eq!(d.hint.as_deref(), Some("write `512MiB`"));
        let d = diag("  limit { cpu = 1GiB }", "E0204");
        assert!(d.message.contains("found memory"), "{}", d.message);
        let d = diag("  limit { egress = 10mbps }", "E0003");
        assert!(
            d.hint.as_deref().is_some_and(|h| h.contains("10Mbit")),
            "{d:?}"
        );
        let d = diag("  limit { memory = 1GIB }", "E0003");
        assert_eq!(d.hint.as_deref(), Some("did you mean `1GiB`?"));
    }

    #[test]
    fn arithmetic_keeps_dimensions_apart() {
        let d = diag(
            "  when host.cpu.utilization + 5s > 10% { notify now }",
            "E0201",
        );
        assert!(d.message.contains("cannot add"), "{}", d.message);
        let d = diag(
            "  when host.cpu.utilization * host.cpu.utilization > 1% { notify now }",
            "E0201",
        );
        assert!(d.message.contains("can only multiply"), "{}", d.message);
        let d = diag("  when usage.cpu.avg(1m) of 2 > 1 { notify now }", "E0201");
        assert!(d.message.contains("must be a percentage"), "{}", d.message);
        let p = compile("  limit { cpu = 500m * 2 + 250m - 50% of 500m }");
        assert_eq!(p.limit[Resource::Cpu as usize], Some(1000.0));
    }

    #[test]
    fn static_values_are_read_from_the_policy() {
        let d = diag(
            "  when usage.cpu.avg(1m) > limit.cpu { notify now }",
            "E0104",
        );
        assert!(
            d.message.contains("`limit.cpu` is not set"),
            "{}",
            d.message
        );
        compile("  limit { cpu = 2 }\n  when usage.cpu.avg(1m) > 90% of limit.cpu { notify now }");
    }

    #[test]
    fn message_facts_are_typed() {
        // A rate is a plain number, bytes are memory; mixing them up is a type error.
        assert!(
            codes("  when usage.msgs.rate > 100 && usage.msgs.bytes > 1MiB { notify now }")
                .is_empty()
        );
        assert_eq!(
            codes("  when usage.msgs.rate > 1MiB { notify now }"),
            ["E0201"]
        );
        assert_eq!(
            codes("  when usage.msgs.bytes > 100 { notify now }"),
            ["E0203"]
        );
        assert_eq!(
            codes("  when usage.msgs.rates > 100 { notify now }"),
            ["E0104"]
        );
        // `msgs.rate` is settable by a rule, within 1..1e9 messages a second.
        assert!(codes("  when usage.msgs.rate > 100 { msgs.rate = 10\n throttle now }").is_empty());
        assert_eq!(
            codes("  when usage.msgs.rate > 100 { msgs.rate = 0 }"),
            ["E0302"]
        );
        assert_eq!(
            codes("  when usage.msgs.rate > 100 { msgs.rate = 1MiB }"),
            ["E0204"]
        );
        // Live facts do not belong in selectors.
        assert_eq!(codes("  talk { allow to usage.msgs.rate > 1 }"), ["E0111"]);
    }

    #[test]
    fn usage_windows() {
        assert_eq!(
            codes("  when usage.cpu.avg > 1 { notify now }"),
            ["E0306"],
            "missing window"
        );
        assert_eq!(
            codes("  when usage.cpu.mean(5m) > 1 { notify now }"),
            ["E0306"]
        );
        assert_eq!(
            codes("  when usage.cpu.avg(2h) > 1 { notify now }"),
            ["E0302"]
        );
        assert_eq!(
            codes("  when usage.cpu.avg(1500ms) > 1 { notify now }"),
            ["E0302"]
        );
        let p = compile(
            "  when usage.cpu.p95(5m) > 1 && usage.memory.max(30s) > 1GiB \
             && usage.cpu.p95(5m) < 4 { notify now }",
        );
        assert_eq!(
            p.usage_windows(),
            [
                (Resource::Cpu, Agg::P95, 300),
                (Resource::Memory, Agg::Max, 30)
            ]
        );
    }

    #[test]
    fn names_and_contexts() {
        let d = diag("  when host.cpu.utilisation > 1% { notify now }", "E0104");
        assert_eq!(
            d.hint.as_deref(),
            Some("did you mean `host.cpu.utilization`?")
        );
        let d = diag("  when host.xyz.abc > 1% { notify now }", "E0104");
        assert!(
            d.hint
                .as_deref()
                .is_some_and(|h| h.starts_with("resources are"))
        );
        let out = crate::check(
            "t.tribune",
            "policy \"p\" {\n  match host.cpu.utilization > 5%\n}\n",
        );
        assert_eq!(out.diagnostics[0].code, "E0111", "live fact in a selector");
    }

    #[test]
    fn times_of_day() {
        assert_eq!(codes("  when time > 24:00 { notify now }"), ["E0302"]);
        compile("  when time >= 09:30 { notify now }");
    }
}
