//! The static blocks, `guarantee` and `limit`: read before everything else, because rules
//! and `reclaim` refer to `limit.cpu` and friends wherever they are written. Also the check
//! that no item other than `when`/`on` is given twice.

use std::collections::BTreeMap;

use super::Checker;
use crate::ast::*;
use crate::diag::Span;
use crate::grain;
use crate::units::{self, Resource};

impl Checker<'_, '_> {
    /// Check the `guarantee` and `limit` blocks into `self.guarantee`/`self.limit` and report
    /// items given twice. Returns the source line of each guarantee and limit.
    pub(super) fn statics(&mut self, p: &Policy) -> ([u32; 5], [u32; 5]) {
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
        (guarantee_line, limit_line)
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

#[cfg(test)]
mod tests {
    use super::super::testing::*;
    use crate::Resource;

    #[test]
    fn an_item_given_twice_is_an_error() {
        let d = diag("  limit { cpu = 1 }\n  limit { cpu = 2 }", "E0107");
        assert_eq!(d.line, 4);
        assert_eq!(
            d.hint.as_deref(),
            Some("the first is on line 3; merge them")
        );
        // `when` and `on` may repeat.
        compile(
            "  when host.cpu.utilization > 1% { notify now }\n  \
             when host.cpu.utilization > 2% { notify now }",
        );
    }

    #[test]
    fn a_resource_set_twice_is_an_error() {
        let d = diag("  guarantee { cpu = 1; cpu = 2 }", "E0108");
        assert!(d.message.contains("`cpu` is set twice in `guarantee`"));
    }

    #[test]
    fn guarantee_above_limit_points_at_the_guarantee() {
        let src = "  limit { memory = 1GiB }\n  guarantee { memory = 2GiB }";
        let d = diag(src, "E0301");
        assert_eq!(d.line, 4, "the guarantee's line");
        assert_eq!(
            d.hint.as_deref(),
            Some("lower the guarantee or raise the limit on line 3")
        );
    }

    #[test]
    fn only_assignments_of_resources() {
        assert_eq!(codes("  limit { notify now }"), ["E0110"]);
        assert_eq!(codes("  limit { cpus = 1 }"), ["E0103"]);
        let d = diag("  limit { cpus = 1 }", "E0103");
        assert_eq!(d.hint.as_deref(), Some("did you mean `cpu`?"));
    }

    #[test]
    fn values_and_lines_are_recorded() {
        let p =
            compile("  guarantee { cpu = 250m }\n  limit {\n    cpu = 1\n    memory = 1GiB\n  }");
        let (cpu, mem) = (Resource::Cpu as usize, Resource::Memory as usize);
        assert_eq!(p.guarantee[cpu], Some(250.0));
        assert_eq!(p.limit[cpu], Some(1000.0));
        assert_eq!(p.limit[mem], Some(1024.0 * 1024.0 * 1024.0));
        assert_eq!(
            (p.guarantee_line[cpu], p.limit_line[cpu], p.limit_line[mem]),
            (3, 5, 6)
        );
    }
}
