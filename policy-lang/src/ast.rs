//! Syntax tree: what the parser produces, the checker lowers and the formatter prints.
//! It keeps every literal's source text so formatting never changes a value's spelling.

use crate::diag::Span;

#[derive(Clone, Debug, PartialEq)]
pub struct File {
    pub policies: Vec<Policy>,
}

#[derive(Clone, Debug, PartialEq)]
pub struct Policy {
    pub span: Span,
    /// The name as written, quotes included.
    pub name_lit: String,
    pub name: String,
    pub name_span: Span,
    pub body: Block<Item>,
    /// Some items had syntax errors and were skipped (suppresses "missing item" warnings).
    pub recovered: bool,
}

#[derive(Clone, Debug, PartialEq)]
pub struct Block<T> {
    pub open: Span,
    pub close: Span,
    pub items: Vec<T>,
}

#[derive(Clone, Debug, PartialEq)]
pub struct Ident {
    pub name: String,
    pub span: Span,
}

#[derive(Clone, Debug, PartialEq)]
pub struct Item {
    pub span: Span,
    pub keyword: Ident,
    pub kind: ItemKind,
}

#[derive(Clone, Debug, PartialEq)]
pub enum ItemKind {
    /// `match EXPR`
    Match(Expr),
    /// `priority EXPR [preempt]`
    Priority { value: Expr, preempt: Option<Ident> },
    /// `weight EXPR`
    Weight(Expr),
    /// `precedence EXPR`
    Precedence(Expr),
    /// `guarantee { … }`, `limit { … }`, `reclaim { … }`, `attest { … }`, `talk { … }`
    Block(Block<Stmt>),
    /// `when EXPR [for EXPR] { … }`
    When {
        cond: Expr,
        held: Option<Expr>,
        body: Block<Stmt>,
    },
    /// `on EXPR { … }`
    On { event: Expr, body: Block<Stmt> },
}

#[derive(Clone, Debug, PartialEq)]
pub struct Stmt {
    pub span: Span,
    pub kind: StmtKind,
}

#[derive(Clone, Debug, PartialEq)]
pub enum StmtKind {
    /// `cpu = 250m`, `limit.cpu = 500m`, `debug = forbidden`, `sept_ve = allowed`
    Assign { target: Vec<Ident>, value: Expr },
    /// `throttle now`, `suspend after 30s`
    Step { action: Ident, after: Option<Expr> },
    /// `when EXPR [for EXPR]` (inside `reclaim`)
    When { cond: Expr, held: Option<Expr> },
    /// `keep cpu = 100m`
    Keep { target: Vec<Ident>, value: Expr },
    /// `return 1s`
    Return(Expr),
    /// `every 60s`
    Every(Expr),
    /// `measurement in [ … ]`
    MeasurementIn(Expr),
    /// `min_tcb snp >= 8`
    MinTcb { tee: Ident, value: Expr },
    /// `allow to SELECTOR [share N]`, `deny to *`
    Talk {
        allow: bool,
        to: Expr,
        share: Option<Expr>,
    },
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BinOp {
    Or,
    And,
    Eq,
    Ne,
    Lt,
    Le,
    Gt,
    Ge,
    In,
    Range,
    Add,
    Sub,
    Mul,
    Div,
    Of,
}

impl BinOp {
    pub fn text(self) -> &'static str {
        match self {
            BinOp::Or => "||",
            BinOp::And => "&&",
            BinOp::Eq => "==",
            BinOp::Ne => "!=",
            BinOp::Lt => "<",
            BinOp::Le => "<=",
            BinOp::Gt => ">",
            BinOp::Ge => ">=",
            BinOp::In => "in",
            BinOp::Range => "..",
            BinOp::Add => "+",
            BinOp::Sub => "-",
            BinOp::Mul => "*",
            BinOp::Div => "/",
            BinOp::Of => "of",
        }
    }
    /// Binding strength; higher binds tighter.
    pub fn prec(self) -> u8 {
        match self {
            BinOp::Or => 1,
            BinOp::And => 2,
            BinOp::Eq | BinOp::Ne | BinOp::Lt | BinOp::Le | BinOp::Gt | BinOp::Ge | BinOp::In => 4,
            BinOp::Range => 5,
            BinOp::Add | BinOp::Sub => 6,
            BinOp::Mul | BinOp::Div | BinOp::Of => 7,
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum UnOp {
    Not,
    Neg,
}

#[derive(Clone, Debug, PartialEq)]
pub struct Expr {
    pub span: Span,
    /// Height of this tree; bounded by the parser so every recursive walk is bounded too.
    pub depth: u16,
    pub kind: ExprKind,
}

#[derive(Clone, Debug, PartialEq)]
pub enum ExprKind {
    /// A number with its unit suffix, as written: `250m`.
    Number(String),
    /// `09:30`
    Time(String),
    /// A string literal as written, quotes included.
    Str(String),
    /// `tenant`, `labels.tier`, `host.cpu.utilization`, `sev-snp`
    Path(Vec<Ident>),
    /// `usage.cpu.p95(5m)`
    Call {
        path: Vec<Ident>,
        args: Vec<Expr>,
    },
    Unary {
        op: UnOp,
        expr: Box<Expr>,
    },
    Binary {
        op: BinOp,
        lhs: Box<Expr>,
        rhs: Box<Expr>,
    },
    List(Vec<Expr>),
    Paren(Box<Expr>),
    /// `*` (any enclave) in `talk` rules.
    Wildcard,
}

impl Expr {
    pub fn path_text(&self) -> Option<String> {
        match &self.kind {
            ExprKind::Path(p) => Some(join_path(p)),
            _ => None,
        }
    }
}

pub fn join_path(p: &[Ident]) -> String {
    let mut s = String::new();
    for (i, id) in p.iter().enumerate() {
        if i > 0 {
            s.push('.');
        }
        s.push_str(&id.name);
    }
    s
}
