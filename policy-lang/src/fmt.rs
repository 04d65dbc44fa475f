//! The formatter: one canonical layout, idempotent, comment-preserving.
//!
//! Layout: two-space indent; one item per line; a block goes on one line
//! (`guarantee { cpu = 250m; memory = 1GiB }`) when it holds no comment and fits in
//! [`MAX_WIDTH`] columns, else one statement per line. Literals keep their spelling;
//! parentheses are kept as written. One blank line separates policies; inside a policy a
//! blank line is kept where the source had one or more. Comments stay before the item they
//! preceded, or at the end of the line they ended.

use crate::ast::*;
use crate::diag::Diagnostic;
use crate::lexer::Comment;

pub const MAX_WIDTH: usize = 100;

#[derive(Debug, Clone, thiserror::Error)]
#[error("cannot format: the source has {errors} syntax error(s); fix them first")]
pub struct FormatError {
    pub errors: usize,
    pub diagnostics: Vec<Diagnostic>,
}

/// [`format()`] for a source given as bytes: a source that is not UTF-8 fails with its E0004
/// diagnostic (see [`crate::check_bytes`]), named `<input>` like the others.
pub fn format_bytes(source: &[u8]) -> Result<String, FormatError> {
    match crate::decode("<input>", source) {
        Ok(text) => format(text),
        Err(d) => Err(FormatError {
            errors: 1,
            diagnostics: vec![*d],
        }),
    }
}

/// Format a source in the canonical layout. Fails only on syntax errors (type errors do not
/// stop formatting).
pub fn format(source: &str) -> Result<String, FormatError> {
    let parsed = crate::parse("<input>", source);
    let errors: Vec<Diagnostic> = parsed
        .sink
        .diags
        .into_iter()
        .filter(Diagnostic::is_error)
        .collect();
    if !errors.is_empty() {
        return Err(FormatError {
            errors: errors.len(),
            diagnostics: errors,
        });
    }
    let mut f = Fmt {
        src: source,
        comments: &parsed.comments,
        next: 0,
        out: String::new(),
    };
    f.file(&parsed.file);
    Ok(f.out)
}

struct Fmt<'a> {
    src: &'a str,
    comments: &'a [Comment],
    next: usize,
    out: String,
}

impl Fmt<'_> {
    fn blank_before(&self, pos: u32) -> bool {
        let head = self.src.get(..pos as usize).unwrap_or("");
        let ws = head.len() - head.trim_end().len();
        head[head.len() - ws..].matches('\n').count() >= 2
    }

    fn push_line(&mut self, indent: usize, text: &str) {
        for _ in 0..indent {
            self.out.push_str("  ");
        }
        self.out.push_str(text);
        self.out.push('\n');
    }

    /// Emit the comments before `pos`. `first` says whether nothing has been printed yet in
    /// the enclosing block (no blank line before the first thing). Returns the new `first`.
    fn leading(&mut self, pos: u32, indent: usize, mut first: bool) -> bool {
        while let Some(c) = self.comments.get(self.next) {
            if c.span.start >= pos {
                break;
            }
            if !first && self.blank_before(c.span.start) {
                self.out.push('\n');
            }
            let text = format!("#{}", c.text);
            self.push_line(indent, &text);
            self.next += 1;
            first = false;
        }
        first
    }

    /// Append a comment that starts on the same line as `end`, after the text just printed.
    fn trailing(&mut self, end: u32) {
        if let Some(c) = self.comments.get(self.next) {
            let between = self
                .src
                .get(end as usize..c.span.start as usize)
                .unwrap_or("\n");
            if c.span.start >= end && between.trim().is_empty() && !between.contains('\n') {
                if self.out.ends_with('\n') {
                    self.out.pop();
                }
                self.out.push_str(" #");
                self.out.push_str(&c.text);
                self.out.push('\n');
                self.next += 1;
            }
        }
    }

    fn has_comment_in(&self, start: u32, end: u32) -> bool {
        self.comments[self.next..]
            .iter()
            .any(|c| c.span.start >= start && c.span.start < end)
    }

    fn file(&mut self, f: &File) {
        let mut first = true;
        for p in &f.policies {
            if !first {
                self.out.push('\n');
            }
            let nothing_yet = self.leading(p.span.start, 0, true);
            if !nothing_yet && self.blank_before(p.span.start) {
                self.out.push('\n');
            }
            first = false;
            self.push_line(0, &format!("policy {} {{", p.name_lit));
            self.trailing(p.body.open.end);
            let mut first_item = true;
            for it in &p.body.items {
                first_item = self.leading(it.span.start, 1, first_item);
                if !first_item && self.blank_before(it.span.start) {
                    self.out.push('\n');
                }
                first_item = false;
                self.item(it);
            }
            self.leading(p.body.close.start, 1, first_item);
            self.push_line(0, "}");
            self.trailing(p.body.close.end);
        }
        // Comments after the last policy.
        let rest = self.comments.len();
        if self.next < rest {
            if !first {
                self.out.push('\n');
            }
            self.leading(u32::MAX, 0, true);
        }
    }

    fn item(&mut self, it: &Item) {
        let head = match &it.kind {
            ItemKind::Match(e) => format!("match {}", expr(e)),
            ItemKind::Priority { value, preempt } => {
                format!(
                    "priority {}{}",
                    expr(value),
                    if preempt.is_some() { " preempt" } else { "" }
                )
            }
            ItemKind::Weight(e) => format!("weight {}", expr(e)),
            ItemKind::Precedence(e) => format!("precedence {}", expr(e)),
            ItemKind::Block(_) => it.keyword.name.clone(),
            ItemKind::When { cond, held, .. } => match held {
                Some(h) => format!("when {} for {}", expr(cond), expr(h)),
                None => format!("when {}", expr(cond)),
            },
            ItemKind::On { event, .. } => format!("on {}", expr(event)),
        };
        match &it.kind {
            ItemKind::Block(b) | ItemKind::When { body: b, .. } | ItemKind::On { body: b, .. } => {
                self.block(&head, b, 1)
            }
            _ => {
                self.push_line(1, &head);
                self.trailing(it.span.end);
            }
        }
    }

    fn block(&mut self, head: &str, b: &Block<Stmt>, indent: usize) {
        let stmts: Vec<String> = b.items.iter().map(stmt).collect();
        if !self.has_comment_in(b.open.start, b.close.end) {
            let one = if stmts.is_empty() {
                format!("{head} {{}}")
            } else {
                format!("{head} {{ {} }}", stmts.join("; "))
            };
            if one.len() + indent * 2 <= MAX_WIDTH {
                self.push_line(indent, &one);
                self.trailing(b.close.end);
                return;
            }
        }
        self.push_line(indent, &format!("{head} {{"));
        self.trailing(b.open.end);
        let mut first = true;
        for (s, text) in b.items.iter().zip(&stmts) {
            first = self.leading(s.span.start, indent + 1, first);
            if !first && self.blank_before(s.span.start) {
                self.out.push('\n');
            }
            first = false;
            self.push_line(indent + 1, text);
            self.trailing(s.span.end);
        }
        self.leading(b.close.start, indent + 1, first);
        self.push_line(indent, "}");
        self.trailing(b.close.end);
    }
}

fn stmt(s: &Stmt) -> String {
    match &s.kind {
        StmtKind::Assign { target, value } => format!("{} = {}", join_path(target), expr(value)),
        StmtKind::Step { action, after } => match after {
            Some(a) => format!("{} after {}", action.name, expr(a)),
            None => format!("{} now", action.name),
        },
        StmtKind::When { cond, held } => match held {
            Some(h) => format!("when {} for {}", expr(cond), expr(h)),
            None => format!("when {}", expr(cond)),
        },
        StmtKind::Keep { target, value } => format!("keep {} = {}", join_path(target), expr(value)),
        StmtKind::Return(e) => format!("return {}", expr(e)),
        StmtKind::Every(e) => format!("every {}", expr(e)),
        StmtKind::MeasurementIn(e) => format!("measurement in {}", expr(e)),
        StmtKind::MinTcb { tee, value } => format!("min_tcb {} >= {}", tee.name, expr(value)),
        StmtKind::Talk { allow, to, share } => {
            let mut s = format!("{} to {}", if *allow { "allow" } else { "deny" }, expr(to));
            if let Some(sh) = share {
                s.push_str(" share ");
                s.push_str(&expr(sh));
            }
            s
        }
    }
}

/// Print an expression. Depth is bounded by the parser, so recursion is bounded.
pub(crate) fn expr(e: &Expr) -> String {
    match &e.kind {
        ExprKind::Number(t) | ExprKind::Time(t) | ExprKind::Str(t) => t.clone(),
        ExprKind::Path(p) => join_path(p),
        ExprKind::Call { path, args } => {
            format!(
                "{}({})",
                join_path(path),
                args.iter().map(expr).collect::<Vec<_>>().join(", ")
            )
        }
        ExprKind::Unary {
            op: UnOp::Not,
            expr: x,
        } => format!("!{}", expr(x)),
        ExprKind::Unary {
            op: UnOp::Neg,
            expr: x,
        } => format!("-{}", expr(x)),
        ExprKind::Binary {
            op: BinOp::Range,
            lhs,
            rhs,
        } => format!("{}..{}", expr(lhs), expr(rhs)),
        ExprKind::Binary { op, lhs, rhs } => format!("{} {} {}", expr(lhs), op.text(), expr(rhs)),
        ExprKind::List(items) => format!(
            "[{}]",
            items.iter().map(expr).collect::<Vec<_>>().join(", ")
        ),
        ExprKind::Paren(x) => format!("({})", expr(x)),
        ExprKind::Wildcard => "*".to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::format;

    #[test]
    fn attest_blocks_round_trip() {
        let src = "policy \"p\" {\nmatch true\n  attest {\n sept_ve   =   allowed\n\
                   tdx_tcb = required # the collateral must be evaluated\n  debug = forbidden; every 30s }\n\
                   on attestation.failed { suspend now }\n}\n";
        let once = format(src).expect("format");
        assert_eq!(
            once,
            "policy \"p\" {\n  match true\n  attest {\n    sept_ve = allowed\n    \
             tdx_tcb = required # the collateral must be evaluated\n    debug = forbidden\n    \
             every 30s\n  }\n  on attestation.failed { suspend now }\n}\n"
        );
        assert_eq!(format(&once).expect("again"), once, "idempotent");
        let short = "policy \"p\" {\n  attest { sept_ve = allowed; tdx_tcb = optional }\n}\n";
        assert_eq!(format(short).expect("format"), short, "fits on one line");
    }
}
