//! The Tribune policy language: lexer, parser, checker, evaluator, formatter, diagnostics.
//! Pure: no I/O.
