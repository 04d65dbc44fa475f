//! The checker: syntax tree → compiled policy, reporting every type, unit, range and
//! reachability mistake it finds on the way. A policy with an error is not returned.
//!
//! [`Checker::policy`] is the entry point; the parts it calls, one module each:
//! - `statics`: the `guarantee` and `limit` blocks (read first: rules refer to them) and
//!   items given twice.
//! - `expr`: numeric expressions — literals and units, arithmetic, numeric facts.
//! - `cond`: conditions, and the identity constraints of a selector.
//! - `consts`: values that must be constant (folding, ranges, resource quantities, durations).
//! - `reach`: conditions that can never (or always) be true.
//! - `items`: `when` rules, `on` ladders, `reclaim`, `talk`.
//! - `attest`: the `attest` block.

use std::collections::BTreeMap;

use crate::ast::*;
use crate::diag::{Sink, Span};
use crate::ir::*;
use crate::units::Dim;

mod attest;
mod cond;
mod consts;
mod expr;
mod items;
mod reach;
mod statics;

use cond::selector_atoms;

const MAX_RULES: usize = 60;

#[derive(Clone, Copy, PartialEq, Eq)]
enum Ctx {
    /// `match` and `talk` selectors: identity only.
    Selector,
    /// `when`, `on`, `reclaim`: live facts too.
    Live,
}

/// Checks one policy into its compiled form, reporting into the sink. One per policy: the
/// arenas and static values it builds become the [`CompiledPolicy`].
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

    /// Check one policy; `None` when it has an error (the diagnostics are in the sink).
    pub fn policy(mut self, p: &Policy) -> Option<CompiledPolicy> {
        let (guarantee_line, limit_line) = self.statics(p);

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
}

/// Shared by the unit tests of the checker and the evaluator.
#[cfg(test)]
pub(crate) mod testing {
    use crate::{CheckOutcome, CompiledPolicy, Diagnostic, render_diagnostics};

    /// `body` as the items of one policy `"p"` that matches every enclave.
    pub fn source(body: &str) -> String {
        format!("policy \"p\" {{\n  match true\n{body}\n}}\n")
    }

    /// Check `body` (see [`source`]).
    pub fn check(body: &str) -> CheckOutcome {
        crate::check("t.tribune", &source(body))
    }

    /// The codes of every diagnostic of `body`, in source order.
    pub fn codes(body: &str) -> Vec<String> {
        check(body)
            .diagnostics
            .into_iter()
            .map(|d| d.code)
            .collect()
    }

    /// The one diagnostic of `body` with `code`; panics unless there is exactly one.
    pub fn diag(body: &str, code: &str) -> Diagnostic {
        let all = check(body).diagnostics;
        let mut found: Vec<Diagnostic> = all.iter().filter(|d| d.code == code).cloned().collect();
        assert_eq!(found.len(), 1, "one {code} in {all:#?}");
        found.remove(0)
    }

    /// The compiled policies of a whole source; panics on an error.
    pub fn compile_all(src: &str) -> Vec<CompiledPolicy> {
        let out = crate::check("t.tribune", src);
        assert!(
            !out.has_errors(),
            "{}",
            render_diagnostics("t.tribune", src, &out.diagnostics)
        );
        out.policies
    }

    /// The compiled policy of `body` (see [`source`]); panics on an error.
    pub fn compile(body: &str) -> CompiledPolicy {
        let mut all = compile_all(&source(body));
        assert_eq!(all.len(), 1);
        all.remove(0)
    }
}

#[cfg(test)]
mod tests {
    use super::testing::*;

    #[test]
    fn a_policy_with_an_error_is_dropped_and_the_next_one_compiled() {
        let out = crate::check(
            "t.tribune",
            "policy \"bad\" {\n  match true\n  limit { cpu = 1GiB }\n}\n\
             policy \"good\" {\n  match true\n  limit { cpu = 1 }\n}\n",
        );
        assert!(out.has_errors());
        let names: Vec<&str> = out.policies.iter().map(|p| p.name()).collect();
        assert_eq!(names, ["good"]);
    }

    #[test]
    fn more_than_sixty_rules_is_an_error() {
        let rules = "  when host.cpu.utilization > 50% { notify now }\n".repeat(61);
        let d = diag(&rules, "E0113");
        assert!(d.message.contains("more than 60 rules"), "{}", d.message);
        let rules = "  when host.cpu.utilization > 50% { notify now }\n".repeat(60);
        assert!(!codes(&rules).contains(&"E0113".to_string()));
    }

    #[test]
    fn policy_level_warnings() {
        let out = crate::check("t.tribune", "policy \"p\" { limit { cpu = 1 } }");
        let codes: Vec<&str> = out.diagnostics.iter().map(|d| d.code.as_str()).collect();
        assert_eq!(codes, ["W0404"], "no `match`");
        assert_eq!(out.policies.len(), 1, "a warning does not stop compilation");
        assert_eq!(codes_of("attest { every 30s }"), ["W0405"]);
        assert!(
            codes_of("attest { every 30s }\n  on attestation.failed { suspend now }").is_empty()
        );
    }

    fn codes_of(body: &str) -> Vec<String> {
        codes(body)
    }

    #[test]
    fn compiled_form_keeps_names_lines_and_condition_ids() {
        let p = compile(
            "  limit { cpu = 2 }\n  when host.cpu.utilization > 80% { limit.cpu = 1 }\n  \
             on over_limit { notify now }\n  reclaim { keep cpu = 0 }\n  guarantee { cpu = 1 }",
        );
        assert_eq!(p.name(), "p");
        assert_eq!(p.file(), "t.tribune");
        assert_eq!(p.condition_ids(), ["when#1", "on#1", "reclaim"]);
        assert_eq!(p.loc.line, 1);
        assert_eq!(p.limit_line[crate::Resource::Cpu as usize], 3);
        assert_eq!(p.rules[0].line, 4);
    }
}
