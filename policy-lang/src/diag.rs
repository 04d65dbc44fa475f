//! Diagnostics: what the checker found, where, and what to do about it. Rendered rustc-like
//! (through codespan-reporting, no colour) or serialised as JSON.

use codespan_reporting::diagnostic::{Diagnostic as CsDiagnostic, Label};
use codespan_reporting::files::SimpleFile;
use codespan_reporting::term::{self, Chars, Config, termcolor::NoColor};

/// A byte range in one source file.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default, Hash)]
pub struct Span {
    pub start: u32,
    pub end: u32,
}

impl Span {
    pub fn new(start: usize, end: usize) -> Span {
        Span {
            start: start.min(u32::MAX as usize) as u32,
            end: end.min(u32::MAX as usize) as u32,
        }
    }
    pub fn to(self, other: Span) -> Span {
        Span {
            start: self.start.min(other.start),
            end: self.end.max(other.end),
        }
    }
    pub fn range(self) -> std::ops::Range<usize> {
        self.start as usize..self.end as usize
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    Error,
    Warning,
}

/// One finding. Lines and columns are 1-based; columns count characters (not bytes);
/// `end_*` is exclusive. `offset`/`end_offset` are byte offsets into the source.
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Diagnostic {
    pub severity: Severity,
    pub code: String,
    pub message: String,
    pub file: String,
    pub line: u32,
    pub column: u32,
    pub end_line: u32,
    pub end_column: u32,
    pub offset: u32,
    pub end_offset: u32,
    /// The short text under the caret.
    pub label: String,
    pub hint: Option<String>,
}

/// Maps byte offsets to 1-based line and column.
pub struct LineIndex<'a> {
    src: &'a str,
    starts: Vec<usize>,
}

impl<'a> LineIndex<'a> {
    pub fn new(src: &'a str) -> Self {
        let mut starts = vec![0];
        starts.extend(src.match_indices('\n').map(|(i, _)| i + 1));
        LineIndex { src, starts }
    }
    pub fn line_col(&self, offset: usize) -> (u32, u32) {
        let offset = offset.min(self.src.len());
        let line = match self.starts.binary_search(&offset) {
            Ok(i) => i,
            Err(i) => i.saturating_sub(1),
        };
        let start = self.starts.get(line).copied().unwrap_or(0);
        let col = self
            .src
            .get(start..offset)
            .map(|s| s.chars().count())
            .unwrap_or(0);
        (line as u32 + 1, col as u32 + 1)
    }
    pub fn line_of(&self, offset: usize) -> u32 {
        self.line_col(offset).0
    }
}

/// Collects diagnostics for one file while checking it.
pub struct Sink<'a> {
    pub file: &'a str,
    pub index: LineIndex<'a>,
    pub diags: Vec<Diagnostic>,
}

impl<'a> Sink<'a> {
    pub fn new(file: &'a str, src: &'a str) -> Self {
        Sink {
            file,
            index: LineIndex::new(src),
            diags: Vec::new(),
        }
    }
    pub fn make(
        &self,
        severity: Severity,
        code: &str,
        span: Span,
        message: impl Into<String>,
        label: impl Into<String>,
        hint: Option<String>,
    ) -> Diagnostic {
        let (line, column) = self.index.line_col(span.start as usize);
        let (end_line, end_column) = self.index.line_col(span.end as usize);
        Diagnostic {
            severity,
            code: code.to_string(),
            message: message.into(),
            file: self.file.to_string(),
            line,
            column,
            end_line,
            end_column,
            offset: span.start,
            end_offset: span.end,
            label: label.into(),
            hint,
        }
    }
    pub fn error(
        &mut self,
        code: &str,
        span: Span,
        message: impl Into<String>,
        label: impl Into<String>,
    ) -> &mut Diagnostic {
        let d = self.make(Severity::Error, code, span, message, label, None);
        self.diags.push(d);
        let last = self.diags.len() - 1;
        &mut self.diags[last]
    }
    pub fn warning(
        &mut self,
        code: &str,
        span: Span,
        message: impl Into<String>,
        label: impl Into<String>,
    ) -> &mut Diagnostic {
        let d = self.make(Severity::Warning, code, span, message, label, None);
        self.diags.push(d);
        let last = self.diags.len() - 1;
        &mut self.diags[last]
    }
}

impl Diagnostic {
    pub fn with_hint(&mut self, hint: impl Into<String>) -> &mut Self {
        self.hint = Some(hint.into());
        self
    }
    pub fn is_error(&self) -> bool {
        self.severity == Severity::Error
    }
}

/// Render diagnostics in rustc's layout (`error[E0201]: …`, ` --> file:line:col`, the source
/// line, carets, `= help: …`), without colour. Diagnostics are rendered against `source`;
/// ones whose offsets fall outside it are rendered without a snippet. For a source that was
/// not UTF-8 ([`crate::check_bytes`]) pass `String::from_utf8_lossy(bytes)`.
pub fn render_diagnostics(file_name: &str, source: &str, diags: &[Diagnostic]) -> String {
    let file = SimpleFile::new(file_name, source);
    let config = Config {
        chars: Chars::ascii(),
        ..Config::default()
    };
    let mut out = NoColor::new(Vec::new());
    for d in diags {
        let mut cs = match d.severity {
            Severity::Error => CsDiagnostic::error(),
            Severity::Warning => CsDiagnostic::warning(),
        }
        .with_code(d.code.clone())
        .with_message(d.message.clone());
        let (s, mut e) = (d.offset as usize, d.end_offset as usize);
        // A span ending inside a character (bytes that were not UTF-8, rendered against the
        // lossy text where they became U+FFFD) ends after it.
        while e < source.len() && !source.is_char_boundary(e) {
            e += 1;
        }
        if e <= source.len() && s <= e && source.is_char_boundary(s) && source.is_char_boundary(e) {
            cs = cs.with_labels(vec![Label::primary((), s..e).with_message(d.label.clone())]);
        }
        if let Some(h) = &d.hint {
            cs = cs.with_notes(vec![format!("help: {h}")]);
        }
        if term::emit(&mut out, &config, &file, &cs).is_err() {
            // Fall back to a one-line form; never fail to report.
            let line = format!(
                "{}[{}]: {}\n --> {}:{}:{}\n",
                match d.severity {
                    Severity::Error => "error",
                    Severity::Warning => "warning",
                },
                d.code,
                d.message,
                d.file,
                d.line,
                d.column
            );
            out.get_mut().extend_from_slice(line.as_bytes());
        }
    }
    String::from_utf8_lossy(&out.into_inner()).into_owned()
}

/// Levenshtein distance, for "did you mean".
pub fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    let mut cur = vec![0; b.len() + 1];
    for (i, ca) in a.chars().enumerate() {
        cur[0] = i + 1;
        for (j, cb) in b.iter().enumerate() {
            let cost = usize::from(ca != *cb);
            cur[j + 1] = (prev[j + 1] + 1).min(cur[j] + 1).min(prev[j] + cost);
        }
        std::mem::swap(&mut prev, &mut cur);
    }
    prev[b.len()]
}

/// The closest candidate within a small edit distance, if any.
pub fn did_you_mean<'c>(
    word: &str,
    candidates: impl IntoIterator<Item = &'c str>,
) -> Option<&'c str> {
    let limit = (word.chars().count() / 3).max(1) + 1;
    let candidates: Vec<&'c str> = candidates.into_iter().collect();
    if word.len() >= 3
        && let Some(c) = candidates
            .iter()
            .find(|c| c.starts_with(word) && **c != word)
    {
        return Some(c);
    }
    candidates
        .into_iter()
        .map(|c| (edit_distance(&word.to_lowercase(), &c.to_lowercase()), c))
        .filter(|(d, _)| *d <= limit)
        .min_by_key(|(d, _)| *d)
        .map(|(_, c)| c)
}
