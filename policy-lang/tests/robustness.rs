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

#[test]
fn bytes_that_are_not_utf8_are_a_located_diagnostic() {
    // A Latin-1 `é` in a comment on line 2, after multi-byte characters: the column counts
    // characters, the offset bytes.
    let src = b"policy \"p\" {\n  # \xc3\xa9t\xc3\xa9 caf\xe9\n}\n";
    let out = tribune_policy::check_bytes("l1.tribune", src);
    assert!(out.policies.is_empty());
    let [d] = out.diagnostics.as_slice() else {
        panic!("one diagnostic: {:?}", out.diagnostics)
    };
    assert_eq!(d.code, "E0004");
    assert_eq!(d.message, "invalid UTF-8 byte 0xE9");
    assert_eq!((d.line, d.column), (2, 12));
    assert_eq!((d.offset, d.end_offset), (26, 27));
    let text = tribune_policy::render_diagnostics(
        "l1.tribune",
        &String::from_utf8_lossy(src),
        &out.diagnostics,
    );
    assert!(
        text.contains("error[E0004]: invalid UTF-8 byte 0xE9"),
        "{text}"
    );
    assert!(text.contains("l1.tribune:2:12"), "{text}");
    let e = tribune_policy::format_bytes(src).expect_err("not formatted");
    assert_eq!(e.diagnostics[0].code, "E0004");
    // Valid UTF-8 checks as text does.
    let good = b"policy \"p\" { match tenant == \"a\" }";
    assert!(!tribune_policy::check_bytes("g", good).has_errors());
    assert!(tribune_policy::format_bytes(good).is_ok());
}

#[test]
fn random_bytes_never_panic_and_name_the_first_bad_byte() {
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
    for len in 0..400usize {
        let bytes: Vec<u8> = (0..len)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                (x >> 24) as u8
            })
            .collect();
        let out = tribune_policy::check_bytes("r", &bytes);
        match std::str::from_utf8(&bytes) {
            Ok(_) => assert!(out.diagnostics.iter().all(|d| d.code != "E0004")),
            Err(e) => {
                let d = &out.diagnostics[0];
                assert_eq!(d.code, "E0004");
                assert_eq!(d.offset as usize, e.valid_up_to());
                let line = bytes[..e.valid_up_to()]
                    .iter()
                    .filter(|b| **b == b'\n')
                    .count();
                assert_eq!(d.line as usize, line + 1);
                let _ = tribune_policy::render_diagnostics(
                    "r",
                    &String::from_utf8_lossy(&bytes),
                    &out.diagnostics,
                );
            }
        }
    }
}
