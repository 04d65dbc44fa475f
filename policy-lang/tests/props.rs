//! Property tests: formatting is idempotent, keeps every token and comment, and keeps the
//! meaning (the same compiled policies); checking arbitrary text never panics.

use proptest::prelude::*;

fn ident() -> impl Strategy<Value = String> {
    prop::sample::select(vec!["acme", "globex", "batch", "web", "db"]).prop_map(str::to_string)
}

fn quantity() -> impl Strategy<Value = (String, String)> {
    prop_oneof![
        (1u32..4000).prop_map(|n| ("cpu".to_string(), format!("{n}m"))),
        (1u32..64).prop_map(|n| ("memory".to_string(), format!("{n}GiB"))),
        (1u32..1000).prop_map(|n| ("egress".to_string(), format!("{n}Mbit"))),
        (0u32..=100).prop_map(|n| ("gpu".to_string(), format!("{n}%"))),
    ]
}

fn comment() -> impl Strategy<Value = String> {
    prop_oneof![
        Just(String::new()),
        "[a-z ]{0,12}".prop_map(|c| format!(" # {c}"))
    ]
}

fn ws() -> impl Strategy<Value = String> {
    prop::sample::select(vec![" ", "  ", "\n", "\n\n", " \n  ", "\t"]).prop_map(str::to_string)
}

fn cond() -> impl Strategy<Value = String> {
    let leaf = prop_oneof![
        ident().prop_map(|t| format!("tenant == \"{t}\"")),
        ident().prop_map(|t| format!("labels.tier != \"{t}\"")),
        Just("tee in [sev-snp, tdx]".to_string()),
        (0u32..=100).prop_map(|n| format!("host.cpu.utilization > {n}%")),
        (1u32..60).prop_map(|n| format!("usage.cpu.p95({n}m) < 500m")),
        Just("time in 22:00..06:00".to_string()),
        Just("attestation.failed".to_string()),
    ];
    leaf.prop_recursive(3, 12, 2, |inner| {
        prop_oneof![
            (inner.clone(), inner.clone()).prop_map(|(a, b)| format!("{a} && {b}")),
            (inner.clone(), inner.clone()).prop_map(|(a, b)| format!("{a} || {b}")),
            inner.clone().prop_map(|a| format!("({a})")),
            inner.prop_map(|a| format!("!({a})")),
        ]
    })
}

fn item() -> impl Strategy<Value = String> {
    prop_oneof![
        (1u32..1000, any::<bool>()).prop_map(|(p, pre)| format!("priority {p}{}", if pre { " preempt" } else { "" })),
        (1u32..100).prop_map(|w| format!("weight {w}")),
        prop::collection::vec((quantity(), ws()), 0..4).prop_map(|qs| {
            let body: Vec<String> = qs.into_iter().map(|((k, v), w)| format!("{k} = {v}{w}")).collect();
            format!("limit {{ {} }}", body.join(""))
        }),
        (cond(), prop::option::of(1u32..120)).prop_map(|(c, d)| match d {
            Some(d) => format!("when {c} for {d}s {{ limit.cpu = 250m; notify now }}"),
            None => format!("when {c} {{ weight = 2 }}"),
        }),
        Just("on over_limit { throttle now; suspend after 30s; migrate after 2m }".to_string()),
        cond().prop_map(|c| format!("on {c} {{ suspend now }}")),
        Just("talk { allow to tenant == \"acme\" share 3; deny to * }".to_string()),
        Just("attest { measurement in [\"aabbccdd\"]; min_tcb snp >= 8; debug = forbidden; every 60s }".to_string()),
    ]
}

fn source() -> impl Strategy<Value = String> {
    prop::collection::vec(
        (
            ident(),
            cond(),
            prop::collection::vec((item(), comment(), ws()), 0..6),
            comment(),
        ),
        1..3,
    )
    .prop_map(|ps| {
        let mut s = String::new();
        for (i, (name, c, items, top)) in ps.into_iter().enumerate() {
            s.push_str(&format!(
                "#{top}\npolicy \"{name}{i}\" {{{top}\n  match {c}\n"
            ));
            for (it, com, w) in items {
                s.push_str(&format!("{w}{it}{com}\n"));
            }
            s.push_str("}\n");
        }
        s
    })
}

/// The meaningful tokens of a source (no comments, no `;`): formatting must keep them.
fn tokens(src: &str) -> Vec<String> {
    tribune_policy::__tokens_for_tests(src)
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, .. ProptestConfig::default() })]

    #[test]
    fn format_is_idempotent_and_round_trips(src in source()) {
        let once = tribune_policy::format(&src).expect("generated sources are well-formed");
        let twice = tribune_policy::format(&once).expect("formatted output parses");
        prop_assert_eq!(&once, &twice);
        prop_assert_eq!(tokens(&src), tokens(&once));
        let comments = |s: &str| s.lines().filter_map(|l| l.find('#').map(|i| l[i..].trim_end().to_string())).collect::<Vec<_>>();
        prop_assert_eq!(comments(&src), comments(&once));
        // Same meaning: same diagnostics codes, same decisions on default facts.
        let a = tribune_policy::check("a", &src);
        let b = tribune_policy::check("a", &once);
        let codes = |o: &tribune_policy::CheckOutcome| o.diagnostics.iter().map(|d| d.code.clone()).collect::<Vec<_>>();
        prop_assert_eq!(codes(&a), codes(&b));
        prop_assert_eq!(a.policies.len(), b.policies.len());
        let f = tribune_policy::Facts::default();
        for (x, y) in a.policies.iter().zip(&b.policies) {
            let (dx, dy) = (x.evaluate(&f), y.evaluate(&f));
            prop_assert_eq!(dx.matched, dy.matched);
            prop_assert_eq!(dx.action.action, dy.action.action);
            prop_assert_eq!(dx.limit.map(|s| s.value), dy.limit.map(|s| s.value));
        }
    }

    #[test]
    fn check_and_format_never_panic(src in "[ -~\n]{0,200}") {
        let out = tribune_policy::check("x", &src);
        let _ = tribune_policy::render_diagnostics("x", &src, &out.diagnostics);
        if let Ok(f) = tribune_policy::format(&src) {
            prop_assert_eq!(tribune_policy::format(&f).ok(), Some(f.clone()));
        }
    }

    #[test]
    fn mutated_examples_never_panic(cut in 0usize..2000, insert in "[ -~]{0,5}") {
        let src = include_str!("../../examples/policies/acme-batch.tribune");
        let mut cut = cut.min(src.len());
        while !src.is_char_boundary(cut) { cut -= 1; }
        let mutated = format!("{}{insert}{}", &src[..cut], &src[cut..]);
        let out = tribune_policy::check("m", &mutated);
        let _ = tribune_policy::render_diagnostics("m", &mutated, &out.diagnostics);
        if let Ok(f) = tribune_policy::format(&mutated) {
            prop_assert_eq!(tribune_policy::format(&f).ok(), Some(f.clone()));
        }
    }
}
