//! The Tribune policy language: lexer, parser, checker, evaluator, formatter, diagnostics.
//! Pure: no I/O. See `docs/policy-language.md` for the language itself.
//!
//! Pipeline: [`check()`] lexes (winnow), parses (recursive descent with a nesting limit), and
//! checks/compiles each `policy` block into a [`CompiledPolicy`] — a flat arena form that
//! [`CompiledPolicy::evaluate`] runs against [`Facts`] without allocating. [`format()`] prints
//! the canonical layout; [`render_diagnostics`] prints findings like rustc.
//!
//! ```
//! let out = tribune_policy::check("p.tribune", r#"
//! policy "batch" {
//!   match tenant == "acme"
//!   guarantee { cpu = 250m }
//!   limit { cpu = 1 }
//! }"#);
//! assert!(!out.has_errors());
//! let d = out.policies[0].evaluate(&tribune_policy::Facts::default());
//! assert_eq!(d.limit[0].value, None); // tenant "" does not match
//! ```

mod ast;
mod check;
mod conflicts;
mod diag;
mod eval;
mod fmt;
mod grain;
mod ir;
mod lexer;
mod parser;
pub mod units;

pub use conflicts::check_set;
pub use diag::{Diagnostic, Severity, render_diagnostics};
pub use eval::{
    ActionOutcome, AttestOutcome, AttestViolation, AttestationFacts, Decision, Enclave, Events,
    Facts, MsgFacts, Origin, PolicySet, ReclaimOutcome, Setting, SourceKind, StandingPriority,
    UsageFact, Utilization,
};
pub use fmt::{FormatError, format, format_bytes};
pub use ir::{Action, Agg, AttestKnobs, AttestStatus, CompiledPolicy, TcbStatus, TeeKind};
pub use units::{Dim, Resource};

/// Largest policy source accepted, in bytes.
pub const MAX_SOURCE_BYTES: usize = 1024 * 1024;
/// Most tokens in one source.
pub const MAX_TOKENS: usize = 200_000;
/// Most policies in one source.
pub const MAX_POLICIES: usize = 1000;
pub use parser::MAX_DEPTH;

/// The result of checking one source file.
#[derive(Debug, Clone)]
pub struct CheckOutcome {
    /// The policies that compiled without errors, in source order.
    pub policies: Vec<CompiledPolicy>,
    /// Errors and warnings, in source order.
    pub diagnostics: Vec<Diagnostic>,
}

impl CheckOutcome {
    pub fn has_errors(&self) -> bool {
        self.diagnostics.iter().any(Diagnostic::is_error)
    }
}

pub(crate) struct Parsed<'s> {
    pub file: ast::File,
    pub comments: Vec<lexer::Comment>,
    pub sink: diag::Sink<'s>,
}

pub(crate) fn parse<'s>(file_name: &'s str, source: &'s str) -> Parsed<'s> {
    let mut sink = diag::Sink::new(file_name, source);
    if source.len() > MAX_SOURCE_BYTES {
        sink.error(
            "E0106",
            diag::Span::new(0, 0),
            format!(
                "the policy source is {} bytes; the limit is {MAX_SOURCE_BYTES}",
                source.len()
            ),
            "too large",
        )
        .with_hint("split the policies over several files");
        return Parsed {
            file: ast::File {
                policies: Vec::new(),
            },
            comments: Vec::new(),
            sink,
        };
    }
    let lexed = lexer::lex(source, &mut sink, MAX_TOKENS);
    let file = {
        let mut p = parser::Parser::new(source, &lexed.tokens, &mut sink);
        p.file()
    };
    Parsed {
        file,
        comments: lexed.comments,
        sink,
    }
}

/// Check a source file: parse it, type- and unit-check every policy, compile the good ones,
/// and check the file's policies against each other ([`check_set`]). Never panics.
pub fn check(file_name: &str, source: &str) -> CheckOutcome {
    let Parsed { file, mut sink, .. } = parse(file_name, source);
    let mut policies = Vec::new();
    if file.policies.len() > MAX_POLICIES {
        sink.error(
            "E0106",
            file.policies[MAX_POLICIES].name_span,
            format!("more than {MAX_POLICIES} policies in one file"),
            "policy limit reached",
        );
    } else {
        for p in &file.policies {
            if let Some(c) = check::Checker::new(&mut sink).policy(p) {
                policies.push(c);
            }
        }
    }
    let mut diagnostics = sink.diags;
    diagnostics.extend(check_set(&policies));
    diagnostics.sort_by_key(|d| (d.offset, d.end_offset));
    CheckOutcome {
        policies,
        diagnostics,
    }
}

/// Check a source file given as bytes, as read from disk: [`check()`] if they are UTF-8, else
/// one E0004 diagnostic at the first byte that is not (its line and column counted over the
/// valid text before it) and no policies. Never panics.
pub fn check_bytes(file_name: &str, source: &[u8]) -> CheckOutcome {
    match decode(file_name, source) {
        Ok(text) => check(file_name, text),
        Err(d) => CheckOutcome {
            policies: Vec::new(),
            diagnostics: vec![*d],
        },
    }
}

/// The source as text, or the E0004 diagnostic for its first byte that is not UTF-8. Its
/// span covers the bad byte(s) (`offset`/`end_offset` are byte offsets into `source`); render
/// it against `String::from_utf8_lossy(source)`.
pub(crate) fn decode<'b>(file_name: &str, source: &'b [u8]) -> Result<&'b str, Box<Diagnostic>> {
    let err = match std::str::from_utf8(source) {
        Ok(text) => return Ok(text),
        Err(e) => e,
    };
    let at = err.valid_up_to();
    // The bytes before `at` are valid UTF-8 by definition of `valid_up_to`.
    let prefix = std::str::from_utf8(source.get(..at).unwrap_or_default()).unwrap_or_default();
    let bad_len = err.error_len().unwrap_or(source.len() - at).max(1);
    let byte = source.get(at).copied().unwrap_or(0);
    let sink = diag::Sink::new(file_name, prefix);
    let mut d = sink.make(
        Severity::Error,
        "E0004",
        diag::Span::new(at, at),
        format!("invalid UTF-8 byte 0x{byte:02X}"),
        "not UTF-8",
        Some("policy files must be UTF-8; re-encode it (e.g. `iconv -f latin1 -t utf-8`)".into()),
    );
    // The span covers the bad bytes; they are on the same line, one character wide.
    let end = at.saturating_add(bad_len);
    d.end_offset = u32::try_from(end).unwrap_or(u32::MAX);
    d.end_column = d.column.saturating_add(1);
    Err(Box::new(d))
}

/// The meaningful tokens of a source (comments and `;` dropped), for property tests of the
/// formatter. Not part of the API.
#[doc(hidden)]
pub fn __tokens_for_tests(source: &str) -> Vec<String> {
    let mut sink = diag::Sink::new("t", source);
    lexer::lex(source, &mut sink, MAX_TOKENS)
        .tokens
        .iter()
        .filter(|t| t.kind != lexer::Tok::Semi)
        .map(|t| source.get(t.span.range()).unwrap_or("").to_string())
        .collect()
}
