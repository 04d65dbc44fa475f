//! Checks across policies: duplicate names and real conflicts — two policies that can select
//! the same enclave, that precedence cannot order (same `precedence`, same specificity), and
//! that set the same value differently.

use crate::diag::{Diagnostic, Severity};
use crate::ir::{CompiledPolicy, Loc};
use crate::units::{self, Resource};

fn diag(loc: &Loc, code: &str, message: String, label: &str, hint: String) -> Diagnostic {
    Diagnostic {
        severity: Severity::Error,
        code: code.to_string(),
        message,
        file: loc.file.clone(),
        line: loc.line,
        column: loc.column,
        end_line: loc.end_line,
        end_column: loc.end_column,
        offset: loc.offset,
        end_offset: loc.end_offset,
        label: label.to_string(),
        hint: Some(hint),
    }
}

/// Can some enclave match both selectors? Conservative: true unless a shared identity
/// field has disjoint allowed values.
fn may_overlap(a: &CompiledPolicy, b: &CompiledPolicy) -> bool {
    match (&a.atoms, &b.atoms) {
        (Some(x), Some(y)) => x.iter().all(|(k, va)| match y.get(k) {
            Some(vb) => va.iter().any(|v| vb.contains(v)),
            None => true,
        }),
        _ => true,
    }
}

/// Values both policies set, differently: (what, value in a, value in b).
fn differing(a: &CompiledPolicy, b: &CompiledPolicy) -> Vec<(String, String, String)> {
    let mut out = Vec::new();
    for r in Resource::ALL {
        let i = r as usize;
        for (what, x, y) in [
            ("guarantee", a.guarantee[i], b.guarantee[i]),
            ("limit", a.limit[i], b.limit[i]),
        ] {
            if let (Some(x), Some(y)) = (x, y)
                && x != y
            {
                out.push((
                    format!("{what}.{}", r.name()),
                    units::display(r.dim(), x),
                    units::display(r.dim(), y),
                ));
            }
        }
    }
    for (what, x, y) in [
        ("weight", a.weight, b.weight),
        ("priority", a.priority, b.priority),
    ] {
        if let (Some((x, _)), Some((y, _))) = (x, y)
            && x != y
        {
            out.push((what.to_string(), x.to_string(), y.to_string()));
        }
    }
    out
}

/// Check a set of compiled policies against each other (a file, or everything stored).
pub fn check_set(policies: &[CompiledPolicy]) -> Vec<Diagnostic> {
    let mut out = Vec::new();
    for (j, b) in policies.iter().enumerate() {
        for a in &policies[..j] {
            if a.name == b.name {
                out.push(diag(
                    &b.loc,
                    "E0402",
                    format!("policy \"{}\" is defined twice", b.name),
                    "defined again here",
                    format!(
                        "the first is at {}:{}; policy names must be unique",
                        a.loc.file, a.loc.line
                    ),
                ));
                break;
            }
            if a.precedence != b.precedence || a.specificity != b.specificity || !may_overlap(a, b)
            {
                continue;
            }
            let diffs = differing(a, b);
            if let Some((what, x, y)) = diffs.first() {
                out.push(diag(
                    &b.loc,
                    "E0401",
                    format!(
                        "policies \"{}\" and \"{}\" can match the same enclave and set {what} differently ({x} vs {y})",
                        a.name, b.name
                    ),
                    "conflicting policy",
                    format!(
                        "give one a higher `precedence`, make one `match` more specific, or make the selectors disjoint (\"{}\" is at {}:{})",
                        a.name, a.loc.file, a.loc.line
                    ),
                ));
            }
        }
    }
    out
}
