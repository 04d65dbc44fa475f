//! The `attest { … }` block: measurements, minimum TCB versions, the two-valued settings
//! (`debug`, `simulated`, `sept_ve`, `tdx_tcb`) and the re-attestation interval.

use super::Checker;
use crate::ast::*;
use crate::diag::{Span, did_you_mean};
use crate::ir::*;
use crate::units::{self, Dim};

/// One `NAME = VALUE` setting of an `attest` block.
struct Setting {
    name: &'static str,
    /// The value that turns the flag on, then the default.
    values: [&'static str; 2],
    /// Its name in the verifier (`AttestPolicy`, or `VerifierConfig` for `allow_sim`), for
    /// whoever writes that instead.
    verifier_name: &'static str,
    set: fn(&mut AttestReq, bool),
}

const SETTINGS: [Setting; 4] = [
    Setting {
        name: "debug",
        values: ["allowed", "forbidden"],
        verifier_name: "allow_debug",
        set: |a, on| a.debug_allowed = on,
    },
    Setting {
        name: "simulated",
        values: ["allowed", "forbidden"],
        verifier_name: "allow_sim",
        set: |a, on| a.simulated_allowed = on,
    },
    Setting {
        name: "sept_ve",
        values: ["allowed", "forbidden"],
        verifier_name: "allow_sept_ve",
        set: |a, on| a.sept_ve_allowed = on,
    },
    Setting {
        name: "tdx_tcb",
        values: ["required", "optional"],
        verifier_name: "require_tdx_tcb",
        set: |a, on| a.tdx_tcb_required = on,
    },
];

impl Checker<'_, '_> {
    pub(super) fn attest(&mut self, b: &Block<Stmt>, line: u32) -> Option<AttestReq> {
        let mut a = AttestReq {
            line,
            ..AttestReq::default()
        };
        let mut seen = [None; SETTINGS.len()];
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
                    self.attest_setting(&mut a, &mut seen, s, target, value)
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

    /// `NAME = VALUE` in `attest`: a known setting, given once, with one of its two values.
    fn attest_setting(
        &mut self,
        a: &mut AttestReq,
        seen: &mut [Option<Span>; SETTINGS.len()],
        s: &Stmt,
        target: &[Ident],
        value: &Expr,
    ) {
        let key = join_path(target);
        let Some(i) = SETTINGS.iter().position(|k| k.name == key) else {
            let d = self.sink.error(
                "E0103",
                target[0].span,
                format!("unknown attestation setting `{key}`"),
                "unknown setting",
            );
            if let Some(k) = SETTINGS.iter().find(|k| k.verifier_name == key) {
                d.with_hint(format!(
                    "write `{} = {}` (`{key}` is the verifier's name for it)",
                    k.name, k.values[0]
                ));
            } else {
                match did_you_mean(&key, SETTINGS.iter().map(|k| k.name)) {
                    Some(s) => d.with_hint(format!("did you mean `{s}`?")),
                    None => d.with_hint(
                        "settings are debug, simulated, sept_ve and tdx_tcb; also \
                         `measurement in`, `min_tcb`, `every`",
                    ),
                };
            }
            return;
        };
        let k = &SETTINGS[i];
        if let Some(first) = seen[i] {
            let first = self.line(first);
            self.sink
                .error(
                    "E0108",
                    s.span,
                    format!("`{key}` is set twice in `attest`"),
                    "set again here",
                )
                .with_hint(format!("the first is on line {first}"));
            return;
        }
        seen[i] = Some(s.span);
        let [on, off] = k.values;
        let v = value.path_text().unwrap_or_default();
        let flag = if v == on {
            true
        } else if v == off {
            false
        } else {
            let d = self.sink.error(
                "E0202",
                value.span,
                format!("`{key}` is `{on}` or `{off}`"),
                format!("expected {on} or {off}"),
            );
            let hint = match v.as_str() {
                "true" => Some(format!("write `{key} = {on}`")),
                "false" => Some(format!("write `{key} = {off}`")),
                _ => did_you_mean(&v, k.values).map(|s| format!("did you mean `{s}`?")),
            };
            if let Some(h) = hint {
                d.with_hint(h);
            }
            return;
        };
        (k.set)(a, flag);
    }
}

#[cfg(test)]
mod tests {
    use super::super::testing::*;
    use crate::AttestKnobs;

    /// `attest { block }` with the ladder that keeps W0405 quiet.
    fn attest(block: &str) -> String {
        format!("  attest {{ {block} }}\n  on attestation.failed {{ suspend now }}")
    }

    #[test]
    fn knobs_default_to_the_strict_side() {
        let p = compile(&attest("every 30s"));
        assert_eq!(p.attest_knobs(), Some(AttestKnobs::default()));
        assert_eq!(
            AttestKnobs::default(),
            AttestKnobs {
                allow_debug: false,
                allow_sept_ve: false,
                require_tdx_tcb: false
            }
        );
        assert_eq!(p.reattest_every_ms(), Some(30_000.0));
        assert_eq!(
            compile("  limit { cpu = 1 }").attest_knobs(),
            None,
            "no attest block"
        );
    }

    #[test]
    fn knobs_are_set_by_the_block() {
        let p = compile(&attest(
            "debug = allowed; sept_ve = allowed; tdx_tcb = required; simulated = allowed",
        ));
        assert_eq!(
            p.attest_knobs(),
            Some(AttestKnobs {
                allow_debug: true,
                allow_sept_ve: true,
                require_tdx_tcb: true
            })
        );
        let a = p.attest.as_ref().expect("attest");
        assert!(a.simulated_allowed);
        let p = compile(&attest(
            "debug = forbidden; sept_ve = forbidden; tdx_tcb = optional",
        ));
        assert_eq!(p.attest_knobs(), Some(AttestKnobs::default()));
    }

    #[test]
    fn the_verifiers_names_point_to_the_languages() {
        let d = diag(&attest("allow_sept_ve = true"), "E0103");
        assert_eq!(d.message, "unknown attestation setting `allow_sept_ve`");
        assert_eq!(
            d.hint.as_deref(),
            Some("write `sept_ve = allowed` (`allow_sept_ve` is the verifier's name for it)")
        );
        let d = diag(&attest("require_tdx_tcb = true"), "E0103");
        assert!(
            d.hint
                .as_deref()
                .is_some_and(|h| h.starts_with("write `tdx_tcb = required`"))
        );
        let d = diag(&attest("sept_vee = allowed"), "E0103");
        assert_eq!(d.hint.as_deref(), Some("did you mean `sept_ve`?"));
        let d = diag(&attest("colour = allowed"), "E0103");
        assert!(
            d.hint
                .as_deref()
                .is_some_and(|h| h.contains("sept_ve and tdx_tcb"))
        );
    }

    #[test]
    fn values_of_the_wrong_kind() {
        let d = diag(&attest("sept_ve = true"), "E0202");
        assert_eq!(d.message, "`sept_ve` is `allowed` or `forbidden`");
        assert_eq!(d.label, "expected allowed or forbidden");
        assert_eq!(d.hint.as_deref(), Some("write `sept_ve = allowed`"));
        let d = diag(&attest("tdx_tcb = false"), "E0202");
        assert_eq!(d.message, "`tdx_tcb` is `required` or `optional`");
        assert_eq!(d.hint.as_deref(), Some("write `tdx_tcb = optional`"));
        let d = diag(&attest("tdx_tcb = allowed"), "E0202");
        assert_eq!(d.hint, None);
        let d = diag(&attest("debug = alowed"), "E0202");
        assert_eq!(d.hint.as_deref(), Some("did you mean `allowed`?"));
        assert_eq!(codes(&attest("sept_ve = 1")), ["E0202"]);
        assert_eq!(codes(&attest("sept_ve = \"allowed\"")), ["E0202"]);
    }

    #[test]
    fn a_setting_given_twice_is_an_error() {
        let d = diag(
            "  attest {\n    sept_ve = allowed\n    sept_ve = forbidden\n  }\n  \
             on attestation.failed { suspend now }",
            "E0108",
        );
        assert_eq!(d.message, "`sept_ve` is set twice in `attest`");
        assert_eq!(
            (d.line, d.hint.as_deref()),
            (5, Some("the first is on line 4"))
        );
    }

    #[test]
    fn measurements_tcb_and_interval() {
        let p = compile(&attest(
            "measurement in [\"ABCDEF0123456789\"]; min_tcb snp >= 8; min_tcb tdx >= 3; every 1m",
        ));
        let a = p.attest.as_ref().expect("attest");
        assert_eq!(a.measurements, ["abcdef0123456789"]);
        assert_eq!(a.min_tcb, [Some(8.0), Some(3.0)]);
        assert_eq!(a.every_ms, Some(60_000.0));
        assert_eq!(codes(&attest("measurement in [\"xyz\"]")), ["E0305"]);
        assert_eq!(codes(&attest("measurement in \"abcdef01\"")), ["E0202"]);
        assert_eq!(codes(&attest("min_tcb sgx >= 1")), ["E0112"]);
        assert_eq!(codes(&attest("min_tcb tdx >= 300")), ["E0302"]);
        assert_eq!(codes(&attest("every 500ms")), ["E0302"]);
        assert_eq!(codes(&attest("notify now")), ["E0110"]);
    }
}
