//! Terminal safety for text output: every string the CLI did not write itself — whatever a
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
//! terminal.

use std::borrow::Cow;

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
