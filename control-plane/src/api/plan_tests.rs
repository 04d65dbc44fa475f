use super::*;
use crate::state::{
    EnclaveState, LadderAction, Placement, Resources, Step, UsageDigest, VerdictDetail,
};

fn enclave(id: &str, tenant: &str, host: Option<&str>, label: Option<(&str, &str)>) -> Enclave {
    Enclave {
        id: id.into(),
        tenant: tenant.into(),
        labels: label
            .map(|(k, v)| [(k.to_string(), v.to_string())].into())
            .unwrap_or_default(),
        tee: tribune_attest::TeeKind::Sim,
        expected_measurements: vec![],
        requested: Resources::default(),
        priority: 0,
        placement: host.map(|h| Placement {
            host: h.into(),
            epoch: 1,
        }),
        state: EnclaveState::Running,
        launch: None,
        scheduling: None,
        version: 1,
    }
}

fn digest(enclave: &str, n: u64) -> LogDetail {
    LogDetail::UsageDigest(UsageDigest {
        enclave: enclave.into(),
        key: "k".into(),
        first_seq: n * 10 + 1,
        last_seq: n * 10 + 10,
        prev_head: String::new(),
        head: String::new(),
        samples_root: String::new(),
        checkpoint: String::new(),
        cpu_millicores_avg: 1000,
        mem_bytes_max: 0,
        net_tx_bytes: 0,
        net_rx_bytes: 0,
        divergence_bp_max: 0,
        cpu_wait_millicores_avg: None,
        replayed: false,
        unaccounted_from: None,
    })
}

/// a (acme, h1, tier=batch), b (acme, h2), c (globex, h1), d (acme, not placed); each placed
/// one with a verdict at 0 s and a window every second from 1 s to 20 s.
fn state() -> State {
    let mut st = State::default();
    for e in [
        enclave("a", "acme", Some("h1"), Some(("tier", "batch"))),
        enclave("b", "acme", Some("h2"), None),
        enclave("c", "globex", Some("h1"), None),
        enclave("d", "acme", None, None),
    ] {
        st.enclaves.insert(e.id.clone(), e);
    }
    for id in ["a", "b", "c"] {
        st.log.append(
            id,
            LogDetail::Verdict(VerdictDetail {
                trusted: true,
                host: "h1".into(),
                tee: None,
                measurement: String::new(),
                debug: false,
                ed25519_pub: String::new(),
                reasons: vec![],
                failures: 0,
                verified_by: 1,
                rekeyed: false,
            }),
            0,
        );
    }
    for s in 1..=20u64 {
        for id in ["a", "b", "c"] {
            st.log.append(id, digest(id, s), s as i64 * 1000);
        }
    }
    st.log.append(
        "a",
        LogDetail::Action(ActionDetail::Ladder(LadderAction {
            action: Step::Throttle,
            from: Step::None,
            cause: "x".into(),
            cpu_cap_millicores: 200,
            suspended: false,
            over_limit_ms: Some(1),
        })),
        15_500,
    );
    st
}

fn ids(sel: &Selection) -> Vec<&str> {
    sel.histories
        .iter()
        .map(|h| h.enclave.id.as_str())
        .collect()
}

#[test]
fn selector_terms_parse_and_bad_ones_say_where() {
    assert_eq!(
        parse_selector("a, tenant=acme,host=h1,label.tier=batch"),
        Ok(vec![
            Term::Id("a".into()),
            Term::Tenant("acme".into()),
            Term::Host("h1".into()),
            Term::Label("tier".into(), "batch".into()),
        ])
    );
    let e = parse_selector("a,colour=red").expect_err("unknown key");
    let e = e.to_string();
    assert!(e.contains("term 2") && e.contains("colour"), "{e}");
    let e = parse_selector("a,,b").expect_err("empty term").to_string();
    assert!(e.contains("term 2"), "{e}");
    let e = parse_selector("tenant=")
        .expect_err("empty value")
        .to_string();
    assert!(e.contains("term 1"), "{e}");
    let e = parse_selector(&"x,".repeat(PLAN_SELECTOR_TERMS_MAX + 1))
        .expect_err("too many")
        .to_string();
    assert!(e.contains("terms"), "{e}");
    let e = parse_selector(&"x".repeat(PLAN_SELECTOR_BYTES_MAX + 1))
        .expect_err("too long")
        .to_string();
    assert!(e.contains("bytes"), "{e}");
}

#[test]
fn selection_filters_by_terms_tenant_and_placement() {
    let st = state();
    let all = select(&st, None, None, 0, 30_000).expect("select");
    assert_eq!(ids(&all), ["a", "b", "c"], "d is not placed");
    assert_eq!(all.windows, 60);
    let t = parse_selector("host=h1").expect("terms");
    assert_eq!(
        ids(&select(&st, Some(&t), None, 0, 30_000).expect("s")),
        ["a", "c"]
    );
    let t = parse_selector("label.tier=batch,c").expect("terms");
    assert_eq!(
        ids(&select(&st, Some(&t), None, 0, 30_000).expect("s")),
        ["a", "c"]
    );
    // A tenant sees its own enclaves only, whatever it asks for.
    assert_eq!(
        ids(&select(&st, None, Some("acme"), 0, 30_000).expect("s")),
        ["a", "b"]
    );
    let t = parse_selector("tenant=acme").expect("terms");
    assert_eq!(
        ids(&select(&st, Some(&t), Some("globex"), 0, 30_000).map_or(
            Selection {
                histories: vec![],
                stored: BTreeMap::new(),
                windows: 0
            },
            |s| s
        )),
        Vec::<&str>::new()
    );
}

#[test]
fn an_unknown_enclave_or_a_term_matching_nothing_is_refused_by_name() {
    let st = state();
    for (sel, want) in [
        ("a,zz", "term 2 (Id(\"zz\")): unknown enclave \"zz\""),
        ("tenant=nobody", "matches no placed enclave"),
        // Not placed: not plannable.
        ("d", "unknown enclave \"d\""),
    ] {
        let t = parse_selector(sel).expect("terms");
        let e = select(&st, Some(&t), None, 0, 30_000)
            .err()
            .expect("refused");
        assert_eq!(e.status_code(), axum::http::StatusCode::BAD_REQUEST);
        assert!(e.detail.contains(want), "{sel}: {}", e.detail);
    }
    // Another tenant's enclave is unknown to a tenant.
    let t = parse_selector("c").expect("terms");
    assert!(select(&st, Some(&t), Some("acme"), 0, 30_000).is_err());
}

#[test]
fn the_period_selects_windows_with_a_warm_up_and_every_earlier_action() {
    let st = state();
    let sel = select(&st, None, None, 10_000, 16_000).expect("select");
    assert_eq!(
        sel.windows, 21,
        "7 windows (10..=16 s) of each of 3 enclaves"
    );
    let a = &sel.histories[0];
    // The warm-up (the longest aggregate window before `from`) and the verdict before it.
    assert!(matches!(a.records[0].record, Record::Verdict { .. }));
    assert_eq!(a.records.first().map(|r| r.at_ms), Some(0));
    let windows: Vec<i64> = a
        .records
        .iter()
        .filter(|r| matches!(r.record, Record::Window(_)))
        .map(|r| r.at_ms)
        .collect();
    assert_eq!(windows, (1..=16).map(|s| s * 1000).collect::<Vec<_>>());
    assert!(
        a.records
            .iter()
            .any(|r| matches!(r.record, Record::Ladder { .. }))
    );
    // Log order is kept.
    assert!(a.records.windows(2).all(|w| w[0].index < w[1].index));
}

#[test]
fn the_period_is_bounded_by_the_planners_retention() {
    assert_eq!(
        period(None, 10_000_000).ok(),
        Some((10_000_000 - 3_600_000, 10_000_000))
    );
    assert_eq!(period(Some(60), 100_000).ok(), Some((40_000, 100_000)));
    assert!(period(Some(PLAN_SINCE_S_MAX), 0).is_ok());
    for bad in [0, PLAN_SINCE_S_MAX + 1, u64::MAX] {
        let e = period(Some(bad), 0).expect_err("out of bounds");
        assert!(e.detail.contains("retention"), "{}", e.detail);
    }
}

#[test]
fn a_policy_that_does_not_check_is_refused_with_its_line_and_column() {
    let e = check_source("policy \"p\" {\n  limit { cpu = banana }\n}\n").expect_err("refused");
    assert_eq!(e.status_code(), axum::http::StatusCode::BAD_REQUEST);
    assert!(!e.diagnostics.is_empty());
    assert_eq!(e.diagnostics[0].line, 2);
    assert!(e.detail.contains("plan.tribune:2:"), "{}", e.detail);
    assert!(check_source("# nothing\n").is_err());
    let big = "#".repeat(POLICY_SOURCE_BYTES_MAX + 1);
    assert_eq!(
        check_source(&big).expect_err("too large").status_code(),
        axum::http::StatusCode::PAYLOAD_TOO_LARGE
    );
}

#[test]
fn the_planned_set_replaces_by_name_and_adds_the_rest() {
    let stored: BTreeMap<String, Policy> = [("p", "limit { cpu = 1 }"), ("q", "limit { cpu = 2 }")]
        .iter()
        .map(|(n, body)| {
            (
                n.to_string(),
                Policy {
                    name: n.to_string(),
                    version: 1,
                    source: format!(
                        "policy \"{n}\" {{\n  match tenant == \"acme\"\n  {body}\n}}\n"
                    ),
                    created_by: String::new(),
                    updated_by: String::new(),
                    created_at_ms: 0,
                    updated_at_ms: 0,
                },
            )
        })
        .collect();
    let new = check_source(
        "policy \"p\" {\n  match tenant == \"acme\"\n  limit { cpu = 300m }\n}\npolicy \"r\" {\n  match tenant == \"x\"\n  limit { cpu = 1 }\n}\n",
    )
    .expect("checks");
    let (set, replaced, added) = planned_set(&stored, new);
    assert_eq!(replaced, ["p"]);
    assert_eq!(added, ["r"]);
    let mut names = set.names();
    names.sort_unstable();
    assert_eq!(names, ["p", "q", "r"]);
    let e = enclave("a", "acme", Some("h1"), None);
    let limits = crate::attest::decide::limits(&set, &e, None);
    assert_eq!(
        limits.cpu_millicores, 300,
        "p's new limit wins over q's (name order)"
    );
}
