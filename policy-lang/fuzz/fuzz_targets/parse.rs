//! Fuzz the whole front end: check (lex, parse, type-check, compile, conflict-check),
//! render diagnostics, format (and format again: must be a fixed point), evaluate.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(src) = std::str::from_utf8(data) else {
        return;
    };
    let out = tribune_policy::check("fuzz.tribune", src);
    let _ = tribune_policy::render_diagnostics("fuzz.tribune", src, &out.diagnostics);
    if let Ok(formatted) = tribune_policy::format(src) {
        let again = tribune_policy::format(&formatted).expect("formatted output must parse");
        assert_eq!(formatted, again, "format is not idempotent");
    }
    let facts = tribune_policy::Facts::default();
    for p in &out.policies {
        let _ = p.evaluate(&facts);
    }
    let _ = tribune_policy::PolicySet::new(out.policies).evaluate(&facts);
});
