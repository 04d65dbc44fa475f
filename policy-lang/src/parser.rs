//! Parser: tokens → syntax tree, by recursive descent with an explicit nesting limit.
//!
//! Errors recover at item granularity: a bad item is reported and skipped up to the next item
//! keyword, so one mistake does not hide the others. Exceeding a limit (nesting depth) is fatal
//! for the file: it is reported once and parsing stops.

use crate::ast::*;
use crate::diag::{Sink, Span, did_you_mean};
use crate::lexer::{Tok, Token};

/// How deeply expressions may nest (parentheses, lists, operators). Far above any real
/// policy, far below what would threaten the stack.
pub const MAX_DEPTH: u16 = 64;

pub const ITEM_KEYWORDS: &[&str] = &[
    "match",
    "priority",
    "weight",
    "precedence",
    "guarantee",
    "limit",
    "when",
    "on",
    "reclaim",
    "attest",
    "talk",
];

#[derive(Debug)]
pub(crate) struct Fail;

type PResult<T> = Result<T, Fail>;

pub struct Parser<'s, 't, 'k> {
    src: &'s str,
    toks: &'t [Token],
    pos: usize,
    sink: &'k mut Sink<'s>,
    depth: u16,
    fatal: bool,
}

impl<'s, 't, 'k> Parser<'s, 't, 'k> {
    pub fn new(src: &'s str, toks: &'t [Token], sink: &'k mut Sink<'s>) -> Self {
        Parser {
            src,
            toks,
            pos: 0,
            sink,
            depth: 0,
            fatal: false,
        }
    }

    fn peek(&self) -> Token {
        self.toks.get(self.pos).copied().unwrap_or(Token {
            kind: Tok::Eof,
            span: Span::new(self.src.len(), self.src.len()),
        })
    }
    fn peek_at(&self, n: usize) -> Token {
        self.toks.get(self.pos + n).copied().unwrap_or(Token {
            kind: Tok::Eof,
            span: Span::new(self.src.len(), self.src.len()),
        })
    }
    fn text(&self, t: Token) -> &'s str {
        self.src.get(t.span.range()).unwrap_or("")
    }
    fn bump(&mut self) -> Token {
        let t = self.peek();
        if self.pos < self.toks.len() {
            self.pos += 1;
        }
        t
    }
    fn at_ident(&self, word: &str) -> bool {
        let t = self.peek();
        t.kind == Tok::Ident && self.text(t) == word
    }
    fn prev_end(&self) -> u32 {
        if self.pos == 0 {
            0
        } else {
            self.toks.get(self.pos - 1).map(|t| t.span.end).unwrap_or(0)
        }
    }

    fn unexpected(&mut self, what: &str) -> Fail {
        let t = self.peek();
        if t.kind == Tok::Error {
            // The lexer has reported it already.
            return Fail;
        }
        let found = if t.kind == Tok::Ident {
            format!("`{}`", self.text(t))
        } else {
            t.kind.describe().to_string()
        };
        let d = self.sink.error(
            "E0101",
            t.span,
            format!("expected {what}, found {found}"),
            format!("expected {what}"),
        );
        if t.kind == Tok::Eof {
            d.with_hint("a `{` may be missing its `}`");
        }
        Fail
    }

    fn expect(&mut self, kind: Tok) -> PResult<Token> {
        if self.peek().kind == kind {
            Ok(self.bump())
        } else {
            Err(self.unexpected(kind.describe()))
        }
    }

    fn ident(&mut self) -> PResult<Ident> {
        let t = self.expect(Tok::Ident)?;
        Ok(Ident {
            name: self.text(t).to_string(),
            span: t.span,
        })
    }

    /// Parse a whole file. Never fails: what could not be parsed is reported in the sink.
    pub fn file(&mut self) -> File {
        let mut policies = Vec::new();
        while self.peek().kind != Tok::Eof && !self.fatal {
            if self.at_ident("policy") {
                let start = self.pos;
                match self.policy() {
                    Ok(p) => policies.push(p),
                    Err(Fail) => {
                        if self.fatal {
                            break;
                        }
                        self.pos = start + 1;
                        self.skip_to_next_policy();
                    }
                }
            } else {
                let t = self.peek();
                let near_policy =
                    t.kind == Tok::Ident && did_you_mean(self.text(t), ["policy"]).is_some();
                let d = self.sink.error(
                    "E0101",
                    t.span,
                    format!(
                        "expected `policy`, found {}",
                        if t.kind == Tok::Ident {
                            format!("`{}`", self.text(t))
                        } else {
                            t.kind.describe().to_string()
                        }
                    ),
                    "a file holds `policy \"name\" { … }` blocks",
                );
                if near_policy {
                    d.with_hint("did you mean `policy`?");
                }
                self.bump();
                self.skip_to_next_policy();
            }
        }
        File { policies }
    }

    fn skip_to_next_policy(&mut self) {
        let mut depth = 0i64;
        while self.peek().kind != Tok::Eof {
            match self.peek().kind {
                Tok::LBrace => depth += 1,
                Tok::RBrace => depth -= 1,
                Tok::Ident if depth <= 0 && self.at_ident("policy") => return,
                _ => {}
            }
            self.bump();
        }
    }

    fn policy(&mut self) -> PResult<Policy> {
        let kw = self.bump();
        let name_tok = self.peek();
        if name_tok.kind != Tok::Str {
            let d = self.sink.error(
                "E0101",
                name_tok.span,
                "expected the policy's name as a string",
                "expected a string",
            );
            d.with_hint("write `policy \"my-policy\" { … }`");
            return Err(Fail);
        }
        self.bump();
        let name_lit = self.text(name_tok).to_string();
        let open = self.expect(Tok::LBrace)?.span;
        let mut items = Vec::new();
        let mut recovered = false;
        loop {
            while self.peek().kind == Tok::Semi {
                self.bump();
            }
            match self.peek().kind {
                Tok::RBrace => break,
                Tok::Eof => {
                    self.sink
                        .error(
                            "E0101",
                            open,
                            "this `{` is never closed",
                            "unclosed policy body",
                        )
                        .with_hint("add `}` at the end of the policy");
                    return Err(Fail);
                }
                _ => {}
            }
            let start = self.pos;
            match self.item() {
                Ok(i) => items.push(i),
                Err(Fail) => {
                    if self.fatal {
                        return Err(Fail);
                    }
                    recovered = true;
                    self.pos = start + 1;
                    self.skip_to_next_item();
                }
            }
        }
        let close = self.bump().span;
        Ok(Policy {
            span: kw.span.to(close),
            name: crate::lexer::unquote(&name_lit),
            name_lit,
            name_span: name_tok.span,
            body: Block { open, close, items },
            recovered,
        })
    }

    /// Skip tokens (keeping braces balanced) up to the next item keyword or the policy's `}`.
    fn skip_to_next_item(&mut self) {
        let mut depth = 0i64;
        loop {
            let t = self.peek();
            match t.kind {
                Tok::Eof => return,
                Tok::LBrace => depth += 1,
                Tok::RBrace => {
                    if depth == 0 {
                        return;
                    }
                    depth -= 1;
                }
                Tok::Ident if depth == 0 => {
                    let w = self.text(t);
                    if ITEM_KEYWORDS.contains(&w) || w == "policy" {
                        return;
                    }
                }
                _ => {}
            }
            self.bump();
        }
    }

    fn item(&mut self) -> PResult<Item> {
        let t = self.peek();
        if t.kind != Tok::Ident {
            return Err(self.unexpected("a policy item (`match`, `limit`, `when`, …)"));
        }
        let keyword = self.ident()?;
        let kind = match keyword.name.as_str() {
            "match" => ItemKind::Match(self.expr()?),
            "priority" => {
                let value = self.expr()?;
                let preempt = if self.at_ident("preempt") {
                    Some(self.ident()?)
                } else {
                    None
                };
                ItemKind::Priority { value, preempt }
            }
            "weight" => ItemKind::Weight(self.expr()?),
            "precedence" => ItemKind::Precedence(self.expr()?),
            "guarantee" | "limit" | "reclaim" | "attest" | "talk" => ItemKind::Block(self.block()?),
            "when" => {
                let cond = self.expr()?;
                let held = if self.at_ident("for") {
                    self.bump();
                    Some(self.expr()?)
                } else {
                    None
                };
                ItemKind::When {
                    cond,
                    held,
                    body: self.block()?,
                }
            }
            "on" => {
                let event = self.expr()?;
                ItemKind::On {
                    event,
                    body: self.block()?,
                }
            }
            other => {
                let d = self.sink.error(
                    "E0102",
                    keyword.span,
                    format!("unknown policy item `{other}`"),
                    "not a policy item",
                );
                match did_you_mean(other, ITEM_KEYWORDS.iter().copied()) {
                    Some(s) => d.with_hint(format!("did you mean `{s}`?")),
                    None => d.with_hint(format!("policy items are: {}", ITEM_KEYWORDS.join(", "))),
                };
                return Err(Fail);
            }
        };
        let span = keyword.span.to(Span {
            start: self.prev_end(),
            end: self.prev_end(),
        });
        Ok(Item {
            span,
            keyword,
            kind,
        })
    }

    fn block(&mut self) -> PResult<Block<Stmt>> {
        let open = self.expect(Tok::LBrace)?.span;
        let mut items = Vec::new();
        loop {
            while self.peek().kind == Tok::Semi {
                self.bump();
            }
            match self.peek().kind {
                Tok::RBrace => break,
                Tok::Eof => {
                    self.sink
                        .error("E0101", open, "this `{` is never closed", "unclosed block")
                        .with_hint("add the missing `}`");
                    return Err(Fail);
                }
                _ => {}
            }
            items.push(self.stmt()?);
        }
        let close = self.bump().span;
        Ok(Block { open, close, items })
    }

    fn stmt(&mut self) -> PResult<Stmt> {
        let first = self.peek();
        if first.kind != Tok::Ident {
            return Err(self.unexpected("a statement"));
        }
        let word = self.text(first);
        let next = self.peek_at(1);
        let next_word = if next.kind == Tok::Ident {
            self.text(next)
        } else {
            ""
        };
        let kind = match word {
            "when" => {
                self.bump();
                let cond = self.expr()?;
                let held = if self.at_ident("for") {
                    self.bump();
                    Some(self.expr()?)
                } else {
                    None
                };
                StmtKind::When { cond, held }
            }
            "keep" => {
                self.bump();
                let target = self.path()?;
                self.expect(Tok::Assign)?;
                StmtKind::Keep {
                    target,
                    value: self.expr()?,
                }
            }
            "return" => {
                self.bump();
                StmtKind::Return(self.expr()?)
            }
            "every" => {
                self.bump();
                StmtKind::Every(self.expr()?)
            }
            "measurement" if next_word == "in" => {
                self.bump();
                self.bump();
                StmtKind::MeasurementIn(self.expr()?)
            }
            "min_tcb" => {
                self.bump();
                let tee = self.ident()?;
                self.expect(Tok::Ge)?;
                StmtKind::MinTcb {
                    tee,
                    value: self.expr()?,
                }
            }
            "allow" | "deny" if next_word == "to" => {
                self.bump();
                self.bump();
                let to = self.expr()?;
                let share = if self.at_ident("share") {
                    self.bump();
                    Some(self.expr()?)
                } else {
                    None
                };
                StmtKind::Talk {
                    allow: word == "allow",
                    to,
                    share,
                }
            }
            _ if next_word == "now" || next_word == "after" => {
                let action = self.ident()?;
                let timing = self.ident()?;
                let after = if timing.name == "after" {
                    Some(self.expr()?)
                } else {
                    None
                };
                StmtKind::Step { action, after }
            }
            _ => {
                let target = self.path()?;
                if self.peek().kind != Tok::Assign {
                    let t = self.peek();
                    let d = self.sink.error(
                        "E0101",
                        t.span,
                        format!("expected `=` after `{}`", join_path(&target)),
                        "expected `=`",
                    );
                    if matches!(t.kind, Tok::Number | Tok::Str | Tok::Time) {
                        d.with_hint(format!("write `{} = …`", join_path(&target)));
                    } else if t.kind == Tok::Ident {
                        d.with_hint(
                            "a ladder step is written `ACTION now` or `ACTION after DURATION`",
                        );
                    }
                    return Err(Fail);
                }
                self.bump();
                StmtKind::Assign {
                    target,
                    value: self.expr()?,
                }
            }
        };
        let span = first.span.to(Span {
            start: self.prev_end(),
            end: self.prev_end(),
        });
        Ok(Stmt { span, kind })
    }

    fn path(&mut self) -> PResult<Vec<Ident>> {
        let mut p = vec![self.ident()?];
        while self.peek().kind == Tok::Dot {
            self.bump();
            // A quoted last segment: `labels."app.kubernetes.io/name"`.
            if self.peek().kind == Tok::Str {
                let t = self.bump();
                p.push(Ident {
                    name: self.text(t).to_string(),
                    span: t.span,
                });
                break;
            }
            p.push(self.ident()?);
        }
        Ok(p)
    }

    fn enter(&mut self, span: Span) -> PResult<()> {
        self.depth += 1;
        if self.depth > MAX_DEPTH {
            self.too_deep(span);
            return Err(Fail);
        }
        Ok(())
    }

    fn too_deep(&mut self, span: Span) {
        if !self.fatal {
            self.sink
                .error(
                    "E0105",
                    span,
                    format!("expression nested more than {MAX_DEPTH} levels deep"),
                    "nesting limit reached here",
                )
                .with_hint("split the condition into simpler rules");
        }
        self.fatal = true;
    }

    fn node(&mut self, span: Span, depth: u16, kind: ExprKind) -> PResult<Expr> {
        if depth > MAX_DEPTH {
            self.too_deep(span);
            return Err(Fail);
        }
        Ok(Expr { span, depth, kind })
    }

    pub(crate) fn expr(&mut self) -> PResult<Expr> {
        self.binary(0)
    }

    fn peek_binop(&self) -> Option<BinOp> {
        let t = self.peek();
        Some(match t.kind {
            Tok::OrOr => BinOp::Or,
            Tok::AndAnd => BinOp::And,
            Tok::EqEq => BinOp::Eq,
            Tok::Ne => BinOp::Ne,
            Tok::Lt => BinOp::Lt,
            Tok::Le => BinOp::Le,
            Tok::Gt => BinOp::Gt,
            Tok::Ge => BinOp::Ge,
            Tok::DotDot => BinOp::Range,
            Tok::Plus => BinOp::Add,
            Tok::Minus => BinOp::Sub,
            Tok::Star => BinOp::Mul,
            Tok::Slash => BinOp::Div,
            Tok::Ident => match self.text(t) {
                "in" => BinOp::In,
                "of" => BinOp::Of,
                _ => return None,
            },
            _ => return None,
        })
    }

    fn binary(&mut self, min_prec: u8) -> PResult<Expr> {
        self.enter(self.peek().span)?;
        let result = self.binary_inner(min_prec);
        self.depth -= 1;
        result
    }

    fn binary_inner(&mut self, min_prec: u8) -> PResult<Expr> {
        let mut lhs = self.unary()?;
        while let Some(op) = self.peek_binop() {
            let prec = op.prec();
            if prec < min_prec {
                break;
            }
            self.bump();
            let rhs = self.binary(prec + 1)?;
            let span = lhs.span.to(rhs.span);
            let depth = lhs.depth.max(rhs.depth) + 1;
            lhs = self.node(
                span,
                depth,
                ExprKind::Binary {
                    op,
                    lhs: Box::new(lhs),
                    rhs: Box::new(rhs),
                },
            )?;
        }
        Ok(lhs)
    }

    fn unary(&mut self) -> PResult<Expr> {
        let t = self.peek();
        let op = match t.kind {
            Tok::Bang => UnOp::Not,
            Tok::Minus => UnOp::Neg,
            _ => return self.primary(),
        };
        self.bump();
        self.enter(t.span)?;
        let inner = self.unary();
        self.depth -= 1;
        let inner = inner?;
        let span = t.span.to(inner.span);
        let depth = inner.depth + 1;
        self.node(
            span,
            depth,
            ExprKind::Unary {
                op,
                expr: Box::new(inner),
            },
        )
    }

    fn primary(&mut self) -> PResult<Expr> {
        let t = self.peek();
        match t.kind {
            Tok::Number => {
                self.bump();
                self.node(t.span, 1, ExprKind::Number(self.text(t).to_string()))
            }
            Tok::Time => {
                self.bump();
                self.node(t.span, 1, ExprKind::Time(self.text(t).to_string()))
            }
            Tok::Str => {
                self.bump();
                self.node(t.span, 1, ExprKind::Str(self.text(t).to_string()))
            }
            Tok::Star => {
                self.bump();
                self.node(t.span, 1, ExprKind::Wildcard)
            }
            Tok::Ident => {
                let path = self.path()?;
                let mut span = t.span.to(Span {
                    start: self.prev_end(),
                    end: self.prev_end(),
                });
                if self.peek().kind == Tok::LParen {
                    self.bump();
                    self.enter(span)?;
                    let args = self.list_items(Tok::RParen);
                    self.depth -= 1;
                    let args = args?;
                    let close = self.expect(Tok::RParen)?;
                    span = span.to(close.span);
                    let depth = args.iter().map(|a| a.depth).max().unwrap_or(0) + 1;
                    self.node(span, depth, ExprKind::Call { path, args })
                } else {
                    self.node(span, 1, ExprKind::Path(path))
                }
            }
            Tok::LParen => {
                self.bump();
                self.enter(t.span)?;
                let inner = self.expr();
                self.depth -= 1;
                let inner = inner?;
                let close = self.expect(Tok::RParen)?;
                let depth = inner.depth + 1;
                self.node(
                    t.span.to(close.span),
                    depth,
                    ExprKind::Paren(Box::new(inner)),
                )
            }
            Tok::LBracket => {
                self.bump();
                self.enter(t.span)?;
                let items = self.list_items(Tok::RBracket);
                self.depth -= 1;
                let items = items?;
                let close = self.expect(Tok::RBracket)?;
                let depth = items.iter().map(|a| a.depth).max().unwrap_or(0) + 1;
                self.node(t.span.to(close.span), depth, ExprKind::List(items))
            }
            _ => Err(self.unexpected("a value")),
        }
    }

    fn list_items(&mut self, close: Tok) -> PResult<Vec<Expr>> {
        let mut items = Vec::new();
        while self.peek().kind != close {
            items.push(self.expr()?);
            if self.peek().kind == Tok::Comma {
                self.bump();
            } else {
                break;
            }
        }
        Ok(items)
    }
}

#[cfg(test)]
mod tests {
    use crate::ast::*;

    fn attest_stmts(block: &str) -> Vec<StmtKind> {
        let src = format!("policy \"p\" {{\n  attest {{ {block} }}\n}}\n");
        let parsed = crate::parse("t", &src);
        assert!(parsed.sink.diags.is_empty(), "{:?}", parsed.sink.diags);
        let item = &parsed.file.policies[0].body.items[0];
        assert_eq!(item.keyword.name, "attest");
        let ItemKind::Block(b) = &item.kind else {
            panic!("not a block: {:?}", item.kind);
        };
        b.items.iter().map(|s| s.kind.clone()).collect()
    }

    fn assign(s: &StmtKind) -> (String, String) {
        let StmtKind::Assign { target, value } = s else {
            panic!("not an assignment: {s:?}");
        };
        (join_path(target), value.path_text().unwrap_or_default())
    }

    #[test]
    fn attest_settings_parse_as_assignments() {
        let stmts = attest_stmts("sept_ve = allowed; tdx_tcb = required\n debug = forbidden");
        let got: Vec<(String, String)> = stmts.iter().map(assign).collect();
        let want = [
            ("sept_ve", "allowed"),
            ("tdx_tcb", "required"),
            ("debug", "forbidden"),
        ];
        assert_eq!(got, want.map(|(k, v)| (k.to_string(), v.to_string())));
    }

    #[test]
    fn attest_statements_of_every_kind() {
        let stmts = attest_stmts(
            "measurement in [\"aabbccdd\"]; min_tcb tdx >= 3; every 30s; allow_sept_ve = true",
        );
        assert!(matches!(stmts[0], StmtKind::MeasurementIn(_)));
        assert!(matches!(&stmts[1], StmtKind::MinTcb { tee, .. } if tee.name == "tdx"));
        assert!(matches!(stmts[2], StmtKind::Every(_)));
        // Any `NAME = VALUE` parses; the checker decides which settings exist.
        assert_eq!(assign(&stmts[3]), ("allow_sept_ve".into(), "true".into()));
    }
}
