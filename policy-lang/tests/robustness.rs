//! Limits and hostile input: never a panic, never a stack overflow.

use tribune_policy::{check, format};

fn codes(src: &str) -> Vec<String> {
    check("x.tribune", src)
        .diagnostics
        .into_iter()
        .map(|d| d.code)
        .collect()
}

#[test]
fn hundred_thousand_nested_parentheses() {
    let src = format!(
        "policy \"p\" {{ match {}true{} }}",
        "(".repeat(100_000),
        ")".repeat(100_000)
    );
    assert!(codes(&src).contains(&"E0105".to_string()));
    assert!(format(&src).is_err());
}

#[test]
fn deep_brackets_calls_and_prefix_operators() {
    for src in [
        format!(
            "policy \"p\" {{ match tenant in {}\"a\"{} }}",
            "[".repeat(100_000),
            "]".repeat(100_000)
        ),
        format!("policy \"p\" {{ match {}true }}", "!".repeat(100_000)),
        format!(
            "policy \"p\" {{ limit {{ cpu = {}1 }} }}",
            "-".repeat(100_000)
        ),
        format!("policy \"p\" {{ when f({}) {{ }} }}", "f(".repeat(50_000)),
    ] {
        assert!(codes(&src).contains(&"E0105".to_string()));
    }
}

#[test]
fn long_operator_chains_are_bounded() {
    let chain = vec!["1"; 50_000].join(" + ");
    let src = format!("policy \"p\" {{ match true; limit {{ cpu = {chain} }} }}");
    assert!(codes(&src).contains(&"E0105".to_string()));
    // A realistic chain is fine.
    let ok = format!(
        "policy \"p\" {{ match true; limit {{ cpu = {} }} }}",
        vec!["1"; 20].join(" + ")
    );
    assert!(!check("x", &ok).has_errors());
}

#[test]
fn oversized_input_is_refused() {
    let src = format!("# {}\n", "x".repeat(tribune_policy::MAX_SOURCE_BYTES));
    assert_eq!(codes(&src), vec!["E0106"]);
}

#[test]
fn token_limit() {
    let src = "; ".repeat(tribune_policy::MAX_TOKENS + 10);
    assert!(codes(&src).contains(&"E0106".to_string()));
}

#[test]
fn garbage_never_panics() {
    let samples = [
        "",
        "}",
        "{",
        "policy",
        "policy \"",
        "policy \"p\"",
        "policy \"p\" {",
        "policy \"p\" { match",
        "\u{0}\u{1}\u{ff}",
        "policy \"p\" { limit { cpu = 1e999 } }",
        "policy \"p\" { limit { cpu = 99999999999999999999999999999 } }",
        "policy \"p\" { when usage.cpu.avg(0s) > 1 {} }",
        "policy \"p\" { when 1 / 0 > 1 {} }",
        "policy \"p\" { limit { cpu = 1 / 0 } }",
        "policy \"p\" { match é == \"x\" }",
        "policy \"p\" { on {} }",
        "policy \"p\" { talk { allow to * share 1e308 } }",
        "policy \"p\" { match time in 10:00..10:00 }",
        "policy \"p\" { when -1.5.5 > 2 {} }",
        "policy \"p\" { keep }",
        "policy \"p\" { reclaim { keep = } }",
        "policy \"p\" { attest { min_tcb }}",
        "policy \"p\" { when x in 1..2 {} }",
        "\"\\",
        "policy \"\\\" {}",
        "policy \"p\" { match labels. == \"x\" }",
        "policy \"p\" { match 09:99 }",
        "1:2:3:4",
        "policy \"p\" { when time > 9:0 {} }",
    ];
    for s in samples {
        let out = check("g", s);
        let _ = tribune_policy::render_diagnostics("g", s, &out.diagnostics);
        let _ = format(s);
    }
}
