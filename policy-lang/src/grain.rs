//! Checks on resource values that dimensions and ranges alone do not catch: the grain a
//! resource is counted in, and limits of zero.
//!
//! Enforcement counts cpu in whole millicores, memory in whole bytes and bandwidth in whole
//! bits per second (the plan sent to agents holds integers), so a value between two of those
//! steps (`1.5B`, `0.5m`, `0.0001` cores) has no faithful meaning: it is refused (E0307)
//! instead of being rounded behind the writer's back. `1.5GiB` is a whole number of bytes and
//! fine; `1.1GiB` is not. The gpu share is a percentage and may be fractional.
//!
//! A limit of zero cpu, memory or bandwidth is refused (E0308): an enclave with no cpu or no
//! memory can never run, and downstream a zero cap means "no cap", so writing one would
//! silently lift the limit. `gpu = 0%` stays legal: it is the idiom for "no GPU share".

use crate::diag::{Sink, Span};
use crate::units::Resource;

/// The canonical unit a resource is counted in, in words and as a suffix; `None` for a
/// resource that may be fractional (the gpu share).
pub(crate) fn grain(res: Resource) -> Option<(&'static str, &'static str)> {
    match res {
        Resource::Cpu => Some(("millicores", "m")),
        Resource::Memory => Some(("bytes", "B")),
        Resource::Egress | Resource::Ingress => Some(("bits per second", "bit")),
        Resource::Gpu => None,
    }
}

/// Whether a canonical value is a whole number, allowing for the rounding error of one
/// floating-point unit conversion (`1.1GB` is 1.1 × 10⁹ computed in binary): a relative
/// 10⁻¹² — far below the 0.1 step of any decimal literal up to the largest value in range.
pub(crate) fn is_whole(v: f64) -> bool {
    v.is_finite() && (v - v.round()).abs() <= (v.abs() * 1e-12).max(1e-9)
}

/// A fraction, readable however small: `0.5`, `0.0004`, `4e-9`.
fn fraction_text(v: f64) -> String {
    let s = format!("{v:.6}");
    let s = s.trim_end_matches('0').trim_end_matches('.');
    if s == "0" || s.is_empty() || !is_whole(v) && !s.contains('.') {
        format!("{v:e}")
    } else {
        s.to_string()
    }
}

/// Check that `v` (canonical units, already in range) is a whole number of the resource's
/// grain. Returns the value, rounded to the whole number it stands for, or `None` after
/// reporting E0307.
pub(crate) fn whole(sink: &mut Sink<'_>, res: Resource, span: Span, v: f64) -> Option<f64> {
    let Some((unit, suffix)) = grain(res) else {
        return Some(v);
    };
    if is_whole(v) {
        return Some(v.round());
    }
    let (lo, hi) = (v.floor(), v.ceil());
    let hint = if lo < 1.0 {
        format!(
            "{} is counted in whole {unit}: the smallest non-zero value is `1{suffix}`",
            res.name()
        )
    } else {
        format!(
            "{} is counted in whole {unit}: write `{lo}{suffix}` or `{hi}{suffix}`",
            res.name()
        )
    };
    sink.error(
        "E0307",
        span,
        format!(
            "`{}` must be a whole number of {unit}, found {} {unit}",
            res.name(),
            fraction_text(v)
        ),
        "fractional",
    )
    .with_hint(hint);
    None
}

/// Report E0308 when `v` is a zero limit that cannot mean what it says. Returns whether it
/// reported. `rule` says the limit is set by a `when` rule rather than the `limit` block.
pub(crate) fn zero_limit(
    sink: &mut Sink<'_>,
    res: Resource,
    span: Span,
    v: f64,
    rule: bool,
) -> bool {
    if v != 0.0 || res == Resource::Gpu {
        return false;
    }
    let name = res.name();
    let remove = if rule {
        format!("to leave {name} as it is, drop this assignment")
    } else {
        format!("to leave {name} uncapped, remove this line")
    };
    let (message, hint) = match res {
        Resource::Cpu | Resource::Memory => (
            format!("a zero `{name}` limit leaves the enclave no {name}: it could never run"),
            format!(
                "to stop an enclave, say so with an action: `when … {{ suspend now }}` or \
                 `on … {{ suspend now }}`; {remove}"
            ),
        ),
        _ => (
            format!(
                "a zero `{name}` limit cannot be enforced: a traffic cap needs a rate above zero"
            ),
            format!(
                "to cut an enclave off, suspend it (`suspend now`) or refuse its peers \
                 (`talk {{ deny to * }}`); the smallest cap is `1bit`; {remove}"
            ),
        ),
    };
    sink.error("E0308", span, message, "zero limit")
        .with_hint(hint);
    true
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(f: impl FnOnce(&mut Sink<'_>) -> bool) -> (bool, Vec<crate::Diagnostic>) {
        let mut sink = Sink::new("t.tribune", "limit { cpu = 0 }");
        let r = f(&mut sink);
        (r, sink.diags)
    }

    #[test]
    fn whole_numbers_survive_unit_conversion_error() {
        // 1.1 × 10⁹ and 1.1 × 10¹² are whole numbers of bytes, though binary floating point
        // does not compute them exactly.
        for v in [
            0.0,
            1.0,
            1.1 * 1e9,
            1.1 * 1e12,
            1.5 * 1073741824.0,
            0.25 * 1000.0,
            0.3 * 1000.0,
        ] {
            assert!(is_whole(v), "{v} is whole");
        }
        for v in [
            0.5,
            1.5,
            0.0001 * 1000.0,
            1.1 * 1073741824.0,
            1e-9 * 1000.0,
            f64::NAN,
        ] {
            assert!(!is_whole(v), "{v} is not whole");
        }
    }

    #[test]
    fn fractional_bytes_and_millicores_are_refused_with_the_neighbours_in_the_hint() {
        let mut got = None;
        let (_, d) = run(|s| {
            got = whole(s, Resource::Memory, Span::new(0, 1), 1.5);
            false
        });
        assert_eq!(got, None);
        assert_eq!(d[0].code, "E0307");
        assert_eq!(
            d[0].message,
            "`memory` must be a whole number of bytes, found 1.5 bytes"
        );
        assert_eq!(
            d[0].hint.as_deref(),
            Some("memory is counted in whole bytes: write `1B` or `2B`")
        );

        let (_, d) = run(|s| whole(s, Resource::Cpu, Span::new(0, 1), 0.1).is_some());
        assert_eq!(
            d[0].message,
            "`cpu` must be a whole number of millicores, found 0.1 millicores"
        );
        assert_eq!(
            d[0].hint.as_deref(),
            Some("cpu is counted in whole millicores: the smallest non-zero value is `1m`")
        );

        let (_, d) = run(|s| whole(s, Resource::Cpu, Span::new(0, 1), 4e-9).is_some());
        assert!(
            d[0].message.contains("found 4e-9 millicores"),
            "{}",
            d[0].message
        );
    }

    #[test]
    fn whole_values_are_returned_exact_and_gpu_may_be_fractional() {
        let mut sink = Sink::new("t", "");
        assert_eq!(
            whole(&mut sink, Resource::Memory, Span::default(), 1.1 * 1e9),
            Some(1.1e9)
        );
        assert_eq!(
            whole(&mut sink, Resource::Gpu, Span::default(), 12.5),
            Some(12.5)
        );
        assert_eq!(
            whole(&mut sink, Resource::Egress, Span::default(), 1e6),
            Some(1e6)
        );
        assert!(sink.diags.is_empty());
    }

    #[test]
    fn zero_limits_are_refused_except_the_gpu() {
        for res in [
            Resource::Cpu,
            Resource::Memory,
            Resource::Egress,
            Resource::Ingress,
        ] {
            let (reported, d) = run(|s| zero_limit(s, res, Span::new(8, 15), 0.0, false));
            assert!(reported, "{res:?}");
            assert_eq!(d[0].code, "E0308");
            assert!(
                d[0].hint
                    .as_deref()
                    .is_some_and(|h| h.contains("remove this line"))
            );
        }
        let (reported, d) = run(|s| zero_limit(s, Resource::Gpu, Span::new(8, 15), 0.0, false));
        assert!(!reported && d.is_empty());
        let (reported, _) = run(|s| zero_limit(s, Resource::Cpu, Span::new(8, 15), 1.0, false));
        assert!(!reported);
        let (_, d) = run(|s| zero_limit(s, Resource::Cpu, Span::new(8, 15), 0.0, true));
        assert!(
            d[0].hint
                .as_deref()
                .is_some_and(|h| h.contains("suspend now") && h.contains("drop this assignment"))
        );
    }
}
