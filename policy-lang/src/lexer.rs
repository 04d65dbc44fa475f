//! Lexer: source text → tokens and comments, built on winnow's token combinators.
//!
//! Comments (`#` to end of line) are kept aside with their spans so the formatter can put
//! them back. Lexing never fails: a bad character becomes an `Error` token and a diagnostic.

use winnow::Parser;
use winnow::token::{take_till, take_while};

use crate::diag::{Sink, Span};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Tok {
    Ident,
    Str,
    /// A number with an optional unit suffix: `40`, `0.25`, `250m`, `2GiB`, `30%`.
    Number,
    /// `09:30`.
    Time,
    LBrace,
    RBrace,
    LParen,
    RParen,
    LBracket,
    RBracket,
    Comma,
    Semi,
    Dot,
    DotDot,
    Assign,
    EqEq,
    Ne,
    Lt,
    Le,
    Gt,
    Ge,
    AndAnd,
    OrOr,
    Bang,
    Plus,
    Minus,
    Star,
    Slash,
    Error,
    Eof,
}

impl Tok {
    pub fn describe(self) -> &'static str {
        match self {
            Tok::Ident => "a name",
            Tok::Str => "a string",
            Tok::Number => "a number",
            Tok::Time => "a time of day",
            Tok::LBrace => "`{`",
            Tok::RBrace => "`}`",
            Tok::LParen => "`(`",
            Tok::RParen => "`)`",
            Tok::LBracket => "`[`",
            Tok::RBracket => "`]`",
            Tok::Comma => "`,`",
            Tok::Semi => "`;`",
            Tok::Dot => "`.`",
            Tok::DotDot => "`..`",
            Tok::Assign => "`=`",
            Tok::EqEq => "`==`",
            Tok::Ne => "`!=`",
            Tok::Lt => "`<`",
            Tok::Le => "`<=`",
            Tok::Gt => "`>`",
            Tok::Ge => "`>=`",
            Tok::AndAnd => "`&&`",
            Tok::OrOr => "`||`",
            Tok::Bang => "`!`",
            Tok::Plus => "`+`",
            Tok::Minus => "`-`",
            Tok::Star => "`*`",
            Tok::Slash => "`/`",
            Tok::Error => "an invalid character",
            Tok::Eof => "the end of the file",
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Token {
    pub kind: Tok,
    pub span: Span,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Comment {
    pub span: Span,
    /// The text after `#`, trailing whitespace removed.
    pub text: String,
}

pub struct Lexed {
    pub tokens: Vec<Token>,
    pub comments: Vec<Comment>,
}

/// The lexer's parsers fail with `()`; they name it (`::<_, _, ()>`) rather than leave it to
/// inference, which another crate's `impl From<…> for ()` in the build would make ambiguous.
type WResult<T> = Result<T, ()>;

fn is_ident_start(c: char) -> bool {
    c.is_ascii_alphabetic() || c == '_'
}
fn is_ident_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || c == '_'
}

/// `name`, `sev-snp`, `over_limit`: letters, digits, `_`, and inner `-` between word parts.
fn ident<'s>(input: &mut &'s str) -> WResult<&'s str> {
    let start = *input;
    let _ = (
        take_while::<_, _, ()>(1, is_ident_start),
        take_while::<_, _, ()>(0.., is_ident_char),
    )
        .parse_next(input)?;
    loop {
        let rest = *input;
        let mut chars = rest.chars();
        match (chars.next(), chars.next()) {
            (Some('-'), Some(c)) if is_ident_start(c) => {
                *input = &rest[1..];
                let _ = take_while::<_, _, ()>(1.., is_ident_char).parse_next(input)?;
            }
            _ => break,
        }
    }
    Ok(&start[..start.len() - input.len()])
}

/// Digits, an optional fraction, an optional unit suffix (letters or `%`).
fn number(input: &mut &str) -> WResult<Tok> {
    let _ = take_while::<_, _, ()>(1.., |c: char| c.is_ascii_digit()).parse_next(input)?;
    let rest = *input;
    let b = rest.as_bytes();
    if b.first() == Some(&b':') && b.get(1).is_some_and(u8::is_ascii_digit) {
        *input = &rest[1..];
        let _ = take_while::<_, _, ()>(1.., |c: char| c.is_ascii_digit()).parse_next(input)?;
        return Ok(Tok::Time);
    }
    if b.first() == Some(&b'.') && b.get(1).is_some_and(u8::is_ascii_digit) {
        *input = &rest[1..];
        let _ = take_while::<_, _, ()>(1.., |c: char| c.is_ascii_digit()).parse_next(input)?;
    }
    let _ = take_while::<_, _, ()>(0.., |c: char| c.is_ascii_alphabetic() || c == '%')
        .parse_next(input)?;
    Ok(Tok::Number)
}

fn string(input: &mut &str) -> WResult<bool> {
    let _ = Parser::<_, _, ()>::parse_next(&mut '"', input)?;
    loop {
        let _ = take_till::<_, _, ()>(0.., |c: char| c == '"' || c == '\\' || c == '\n')
            .parse_next(input)?;
        match input.chars().next() {
            Some('"') => {
                *input = &input[1..];
                return Ok(true);
            }
            Some('\\') => {
                let mut it = input.char_indices();
                let _ = it.next();
                match it.next() {
                    Some((i, c)) if c != '\n' => *input = &input[i + c.len_utf8()..],
                    _ => return Ok(false),
                }
            }
            _ => return Ok(false),
        }
    }
}

const PUNCT: &[(&str, Tok)] = &[
    ("..", Tok::DotDot),
    ("==", Tok::EqEq),
    ("!=", Tok::Ne),
    ("<=", Tok::Le),
    (">=", Tok::Ge),
    ("&&", Tok::AndAnd),
    ("||", Tok::OrOr),
    ("{", Tok::LBrace),
    ("}", Tok::RBrace),
    ("(", Tok::LParen),
    (")", Tok::RParen),
    ("[", Tok::LBracket),
    ("]", Tok::RBracket),
    (",", Tok::Comma),
    (";", Tok::Semi),
    (".", Tok::Dot),
    ("=", Tok::Assign),
    ("<", Tok::Lt),
    (">", Tok::Gt),
    ("!", Tok::Bang),
    ("+", Tok::Plus),
    ("-", Tok::Minus),
    ("*", Tok::Star),
    ("/", Tok::Slash),
];

/// Lex the whole source. Stops early (with an `Eof`) after `max_tokens`; the caller reports it.
pub fn lex(src: &str, sink: &mut Sink<'_>, max_tokens: usize) -> Lexed {
    let mut input = src;
    let mut tokens = Vec::new();
    let mut comments = Vec::new();
    let total = src.len();
    let pos = |rest: &str| total - rest.len();
    loop {
        let _ = take_while::<_, _, ()>(0.., |c: char| c.is_whitespace()).parse_next(&mut input);
        let start = pos(input);
        let Some(c) = input.chars().next() else { break };
        if tokens.len() >= max_tokens {
            sink.error(
                "E0106",
                Span::new(start, start + c.len_utf8()),
                format!("the policy source has more than {max_tokens} tokens"),
                "token limit reached here",
            )
            .with_hint("split the policies over several files");
            break;
        }
        if c == '#' {
            let text = take_till::<_, _, ()>(0.., '\n')
                .parse_next(&mut input)
                .unwrap_or("");
            comments.push(Comment {
                span: Span::new(start, pos(input)),
                text: text[1..].trim_end().to_string(),
            });
            continue;
        }
        let kind = if is_ident_start(c) {
            let _ = ident(&mut input);
            Tok::Ident
        } else if c.is_ascii_digit() {
            number(&mut input).unwrap_or(Tok::Error)
        } else if c == '"' {
            if !string(&mut input).unwrap_or(false) {
                sink.error(
                    "E0002",
                    Span::new(start, pos(input)),
                    "unterminated string",
                    "this string has no closing `\"`",
                )
                .with_hint("strings end with `\"` on the same line");
                tokens.push(Token {
                    kind: Tok::Error,
                    span: Span::new(start, pos(input)),
                });
                continue;
            }
            Tok::Str
        } else if let Some((p, k)) = PUNCT.iter().find(|(p, _)| input.starts_with(p)) {
            input = &input[p.len()..];
            *k
        } else {
            input = &input[c.len_utf8()..];
            let d = sink.error(
                "E0001",
                Span::new(start, pos(input)),
                format!("unexpected character `{}`", c.escape_default()),
                "not part of the language",
            );
            if c == '&' || c == '|' {
                d.with_hint(format!("write `{c}{c}`"));
            } else if c == '\'' {
                d.with_hint("strings use double quotes: \"…\"");
            }
            Tok::Error
        };
        tokens.push(Token {
            kind,
            span: Span::new(start, pos(input)),
        });
    }
    tokens.push(Token {
        kind: Tok::Eof,
        span: Span::new(total, total),
    });
    Lexed { tokens, comments }
}

/// The value of a string literal (without quotes, escapes resolved).
pub fn unquote(lit: &str) -> String {
    let inner = lit.strip_prefix('"').unwrap_or(lit);
    let inner = inner.strip_suffix('"').unwrap_or(inner);
    let mut out = String::with_capacity(inner.len());
    let mut chars = inner.chars();
    while let Some(c) = chars.next() {
        if c == '\\' {
            match chars.next() {
                Some('n') => out.push('\n'),
                Some('t') => out.push('\t'),
                Some(o) => out.push(o),
                None => {}
            }
        } else {
            out.push(c);
        }
    }
    out
}
