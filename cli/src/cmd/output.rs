//! What the CLI prints: the `-o/--output` format every verb shares ([`Format`], [`structured`])
//! and terminal safety for text output.
//!
//! ## Formats
//!
//! `table` (the default; `text` is accepted as another name for it) is for people: columns,
//! human units ([`super::units`]: `3m12s`, `256Mi`, `250m`), escaped strings. `wide` is the table
//! with the extra columns a verb has (the same as `table` where it has none). `json` and `yaml`
//! are for programs: the same document either way, raw numbers with their units in the field
//! names (`memory_bytes`, `updated_at_ms`), exact strings.
//!
//! ## Terminal safety
//!
//! Every string the CLI did not write itself — whatever a
//! server, an agent, a log or an evidence file supplied (tenants, enclave ids, labels, policy
//! names and sources, log entry details, error details) — goes through [`escape`] before it
//! reaches a terminal, so it can neither run terminal escape sequences (retitle the window,
//! recolour or rewrite earlier lines, hyperlink, query-and-inject) nor fake table rows.
//!
//! What is escaped, and how (Rust's spelling, so what is shown reads back unambiguously):
//! C0 controls (U+0000–U+001F) other than the kept line breaks, DEL (U+007F), C1 controls
//! (U+0080–U+009F: a terminal may take U+009B as CSI) and the Unicode bidirectional controls
//! that reorder what is displayed (U+200E, U+200F, U+202A–U+202E, U+2066–U+2069). `\n`, `\r`
//! and `\t` are written `\n`, `\r`, `\t`; everything else `\u{1b}`. Backslashes are left as
//! they are, so ordinary text reads the same; the exact bytes are in `--output json`.
//!
//! JSON output needs none of this: serde escapes C0 controls, and a JSON reader is not a
//! terminal. YAML output neither: the emitter quotes and escapes control characters.

use std::borrow::Cow;

use clap::ValueEnum;
use serde::Serialize;

/// The `-o/--output` format, one for every verb (a global flag of `tribune`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, ValueEnum)]
pub enum Format {
    /// A table or text for people, with human units (the default; also spelled `text`).
    #[default]
    #[value(alias = "text")]
    Table,
    /// JSON on stdout: raw numbers, exact strings (errors too).
    Json,
    /// YAML on stdout: the same document as `json`.
    Yaml,
    /// The table with more columns where the verb has them.
    Wide,
}

impl Format {
    /// JSON or YAML: a document for programs (and errors as documents on stdout).
    pub fn is_structured(self) -> bool {
        matches!(self, Format::Json | Format::Yaml)
    }

    /// Whether a table shows its extra columns.
    pub fn is_wide(self) -> bool {
        self == Format::Wide
    }

    /// `value` as this format's document (pretty JSON or YAML), ending in a newline; `None`
    /// for the table formats, which each verb lays out itself.
    pub fn document<T: Serialize + ?Sized>(self, value: &T) -> anyhow::Result<Option<String>> {
        Ok(match self {
            Format::Json => Some(format!("{}\n", serde_json::to_string_pretty(value)?)),
            Format::Yaml => {
                let mut text = serde_norway::to_string(value)?;
                if !text.ends_with('\n') {
                    text.push('\n');
                }
                Some(text)
            }
            Format::Table | Format::Wide => None,
        })
    }
}

/// Prints `value` as the JSON or YAML document `format` asks for, and says whether it did
/// (`false`: a table format, the caller prints its table).
pub fn structured<T: Serialize + ?Sized>(format: Format, value: &T) -> anyhow::Result<bool> {
    use std::io::Write;
    match format.document(value)? {
        Some(text) => {
            let mut out = std::io::stdout().lock();
            out.write_all(text.as_bytes())?;
            out.flush()?;
            Ok(true)
        }
        None => Ok(false),
    }
}

/// Whether line breaks in the text are kept (`Text`: policy source, multi-line messages) or
/// escaped (`Cell`: one table cell or one field, which must stay on its line).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Breaks {
    Cell,
    Text,
}

fn unsafe_char(c: char, breaks: Breaks) -> bool {
    match c {
        '\n' | '\t' => breaks == Breaks::Cell,
        '\u{0}'..='\u{1f}' | '\u{7f}'..='\u{9f}' => true,
        '\u{200e}' | '\u{200f}' | '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}' => true,
        _ => false,
    }
}

/// `s` with every control character escaped (see the module docs). Borrows when there is
/// nothing to escape, which is almost always. `escape("evil\u{1b}[31m", Breaks::Cell)` is
/// `evil\u{1b}[31m` with the backslash written out: nine printable characters, no ESC.
pub fn escape(s: &str, breaks: Breaks) -> Cow<'_, str> {
    if !s.chars().any(|c| unsafe_char(c, breaks)) {
        return Cow::Borrowed(s);
    }
    let mut out = String::with_capacity(s.len() + 16);
    for c in s.chars() {
        if !unsafe_char(c, breaks) {
            out.push(c);
            continue;
        }
        match c {
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c => out.push_str(&format!("\\u{{{:x}}}", c as u32)),
        }
    }
    Cow::Owned(out)
}

/// One table cell or field.
pub fn cell(s: &str) -> Cow<'_, str> {
    escape(s, Breaks::Cell)
}

/// Text that may span lines.
pub fn text(s: &str) -> Cow<'_, str> {
    escape(s, Breaks::Text)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_and_yaml_are_the_same_document() {
        let v =
            serde_json::json!({"id": "e1", "memory_bytes": 268_435_456u64, "evil": "a\u{1b}[31m"});
        let json = Format::Json.document(&v).unwrap().unwrap();
        let yaml = Format::Yaml.document(&v).unwrap().unwrap();
        assert!(json.ends_with('\n') && yaml.ends_with('\n'));
        let from_json: serde_json::Value = serde_json::from_str(&json).unwrap();
        let from_yaml: serde_json::Value = serde_norway::from_str(&yaml).unwrap();
        assert_eq!(from_json, v);
        assert_eq!(from_yaml, v, "{yaml}");
        assert!(
            yaml.contains("memory_bytes: 268435456"),
            "raw numbers: {yaml}"
        );
        assert!(
            !yaml.contains('\u{1b}'),
            "YAML escapes control characters: {yaml:?}"
        );
        assert_eq!(Format::Table.document(&v).unwrap(), None);
        assert_eq!(Format::Wide.document(&v).unwrap(), None);
    }

    #[test]
    fn text_is_another_name_for_table() {
        assert_eq!(Format::from_str("text", false), Ok(Format::Table));
        assert_eq!(Format::from_str("wide", false), Ok(Format::Wide));
        assert!(Format::Json.is_structured() && Format::Yaml.is_structured());
        assert!(!Format::Table.is_structured() && !Format::Wide.is_structured());
    }

    #[test]
    fn plain_text_is_borrowed_unchanged() {
        for s in ["", "acme", "tenant-ä-東京", "a\\u{1b}b", "50% of 2GiB"] {
            assert!(matches!(cell(s), Cow::Borrowed(b) if b == s), "{s:?}");
        }
        assert!(matches!(text("line 1\n\tline 2\n"), Cow::Borrowed(_)));
    }

    #[test]
    fn escape_sequences_lose_their_escape() {
        let evil = "evil\u{1b}]0;pwned\u{7}\u{1b}[31m";
        let shown = cell(evil);
        assert_eq!(shown, "evil\\u{1b}]0;pwned\\u{7}\\u{1b}[31m");
        assert!(!shown.chars().any(|c| c.is_control()));
    }

    #[test]
    fn every_c0_c1_and_del_is_escaped_in_a_cell() {
        for code in (0u32..0x20).chain(0x7f..0xa0) {
            let c = char::from_u32(code).unwrap_or_default();
            let shown = cell(&format!("a{c}b")).into_owned();
            assert!(
                !shown.chars().any(char::is_control),
                "U+{code:04X}: {shown:?}"
            );
            assert!(shown.starts_with('a') && shown.ends_with('b'));
        }
        assert_eq!(cell("a\nb\r\tc"), "a\\nb\\r\\tc");
        assert_eq!(cell("\u{0}\u{7f}\u{9b}"), "\\u{0}\\u{7f}\\u{9b}");
    }

    #[test]
    fn text_keeps_newlines_and_tabs_but_not_carriage_returns() {
        assert_eq!(text("a\n\tb\r\u{1b}[2K"), "a\n\tb\\r\\u{1b}[2K");
    }

    #[test]
    fn bidi_overrides_are_escaped() {
        assert_eq!(cell("abc\u{202e}fed"), "abc\\u{202e}fed");
        assert_eq!(text("\u{2066}x\u{2069}"), "\\u{2066}x\\u{2069}");
    }
}
