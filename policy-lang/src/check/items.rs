//! The statements inside a policy's blocks: `when` rules, `on` ladders, `reclaim` and `talk`,
//! and the names they share (resources, actions).

use super::consts::fold;
use super::expr::unit_hint;
use super::{Checker, Ctx};
use crate::ast::*;
use crate::diag::{Span, did_you_mean};
use crate::grain;
use crate::ir::*;
use crate::units::{self, Dim, Resource};

impl Checker<'_, '_> {
    pub(super) fn not_here(&mut self, s: &Stmt, block: &str) {
        let allowed = match block {
            "guarantee" | "limit" => "`RESOURCE = VALUE` (cpu, memory, egress, ingress, gpu)",
            "reclaim" => "`when …`, `keep RESOURCE = …`, `return DURATION`",
            "attest" => {
                "`measurement in [ … ]`, `min_tcb KIND >= N`, `debug = …`, `simulated = …`, \
                 `sept_ve = …`, `tdx_tcb = …`, `every DURATION`"
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

    pub(super) fn resource_name(&mut self, target: &[Ident]) -> Option<Resource> {
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

    pub(super) fn rule(
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
                        ["msgs", "rate"] => Target::MsgsRate,
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
                                "msgs.rate",
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
                                None => d.with_hint("rules set limit.RESOURCE, guarantee.RESOURCE, weight, priority or msgs.rate"),
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
                    if let (Target::MsgsRate, Some(k)) = (t, fold(&self.nums, v)) {
                        self.range(value, k, 1.0, 1e9, "`msgs.rate`", |x| format!("{x}"));
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

    pub(super) fn ladder(
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

    pub(super) fn reclaim(&mut self, b: &Block<Stmt>, line: u32) -> Option<Reclaim> {
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

    pub(super) fn talk(&mut self, b: &Block<Stmt>) -> Vec<TalkRule> {
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

#[cfg(test)]
mod tests {
    use super::super::testing::*;
    use crate::ir::{Action, Event, Target};
    use crate::units::Resource;

    #[test]
    fn rules_set_fields_and_take_the_most_severe_action() {
        let p = compile(
            "  limit { cpu = 2 }\n  when host.cpu.utilization > 90% for 30s {\n    \
             limit.cpu = 1\n    weight = 2\n    notify now\n    throttle now\n  }",
        );
        let r = &p.rules[0];
        assert_eq!(
            (r.id.as_str(), r.held_ms, r.action),
            ("when#1", 30_000.0, Action::Throttle)
        );
        let targets: Vec<Target> = r.effects.iter().map(|e| e.target).collect();
        assert_eq!(targets, [Target::Limit(Resource::Cpu), Target::Weight]);
    }

    #[test]
    fn rule_mistakes() {
        assert_eq!(
            codes("  when host.cpu.utilization > 1% { foo = 1 }"),
            ["E0104"]
        );
        let d = diag("  when host.cpu.utilization > 1% { wieght = 1 }", "E0104");
        assert_eq!(d.hint.as_deref(), Some("did you mean `weight`?"));
        assert_eq!(
            codes("  when host.cpu.utilization > 1% { notify after 5s }"),
            ["E0110"]
        );
        assert_eq!(
            codes("  when host.cpu.utilization > 1% { shout now }"),
            ["E0109"]
        );
        assert_eq!(codes("  when host.cpu.utilization > 1% {}"), ["W0403"]);
        assert_eq!(
            codes("  when host.cpu.utilization > 1% { limit.cpu = 5s }"),
            ["E0204"]
        );
        assert_eq!(
            codes("  when host.cpu.utilization > 1% { weight = 0 }"),
            ["E0302"]
        );
    }

    #[test]
    fn rules_keep_guarantee_below_limit() {
        let d = diag(
            "  guarantee { cpu = 1 }\n  limit { cpu = 2 }\n  \
             when host.cpu.utilization > 1% { limit.cpu = 500m }",
            "E0301",
        );
        assert!(d.message.contains("below its guarantee"), "{}", d.message);
        let d = diag(
            "  guarantee { cpu = 1 }\n  limit { cpu = 2 }\n  \
             when host.cpu.utilization > 1% { guarantee.cpu = 3 }",
            "E0301",
        );
        assert!(d.message.contains("above its limit"), "{}", d.message);
        // Raising both in one rule is fine.
        compile(
            "  guarantee { cpu = 1 }\n  limit { cpu = 2 }\n  \
             when host.cpu.utilization > 1% { guarantee.cpu = 3; limit.cpu = 4 }",
        );
    }

    #[test]
    fn ladders_escalate_in_time() {
        let p = compile("  on over_limit { notify now; throttle after 10s; suspend after 1m }");
        let l = &p.ladders[0];
        assert_eq!(l.event, Event::OverLimit);
        let steps: Vec<(Action, f64)> = l.steps.iter().map(|s| (s.action, s.after_ms)).collect();
        assert_eq!(
            steps,
            [
                (Action::Notify, 0.0),
                (Action::Throttle, 10_000.0),
                (Action::Suspend, 60_000.0)
            ]
        );
        let d = diag(
            "  on over_limit { notify after 10s; throttle after 5s }",
            "E0303",
        );
        assert!(d.message.contains("can never be reached"), "{}", d.message);
        assert_eq!(
            codes("  on over_limit { suspend now; notify after 5s }"),
            ["W0406"]
        );
        assert_eq!(codes("  on over_limit { limit.cpu = 1 }"), ["E0110"]);
    }

    #[test]
    fn reclaim_lends_only_what_is_guaranteed() {
        let d = diag(
            "  guarantee { cpu = 1 }\n  reclaim { keep cpu = 2 }",
            "E0304",
        );
        assert!(
            d.message.contains("above the cpu guarantee"),
            "{}",
            d.message
        );
        let d = diag("  reclaim { keep memory = 1GiB }", "E0304");
        assert!(d.message.contains("guarantees no memory"), "{}", d.message);
        let p = compile(
            "  guarantee { cpu = 2 }\n  reclaim { when host.cpu.utilization < 10% for 1m; \
             keep cpu = 500m; return 2s }",
        );
        let r = p.reclaim.as_ref().expect("reclaim");
        assert_eq!((r.held_ms, r.return_ms), (60_000.0, Some(2000.0)));
        assert_eq!(r.keep[Resource::Cpu as usize], Some(500.0));
        assert_eq!(codes("  reclaim { notify now }"), ["E0110"]);
    }

    #[test]
    fn talk_rules() {
        let p = compile("  talk {\n    allow to tenant == \"a\" share 3\n    deny to *\n  }");
        assert_eq!(p.talk.len(), 2);
        assert_eq!((p.talk[0].allow, p.talk[0].share), (true, 3.0));
        assert_eq!((p.talk[1].allow, p.talk[1].to), (false, None));
        let d = diag(
            "  talk {\n    deny to *\n    allow to tenant == \"a\"\n  }",
            "W0407",
        );
        assert!(
            d.message.contains("the `*` rule on line 4"),
            "{}",
            d.message
        );
        assert_eq!(
            codes("  talk { deny to tenant == \"a\" share 2 }"),
            ["E0110"]
        );
        assert_eq!(codes("  talk { allow to * share 0 }"), ["E0302"]);
        assert_eq!(
            codes("  talk { allow to host.cpu.utilization > 1% }"),
            ["E0111"]
        );
    }
}
