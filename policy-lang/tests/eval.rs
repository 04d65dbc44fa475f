//! Evaluator tests, one group per construct.

use tribune_policy::*;

fn compile(src: &str) -> CompiledPolicy {
    let out = check("t.tribune", src);
    assert!(
        !out.has_errors(),
        "{}",
        render_diagnostics("t.tribune", src, &out.diagnostics)
    );
    assert_eq!(out.policies.len(), 1);
    out.policies.into_iter().next().expect("one policy")
}

fn set(src: &str) -> PolicySet {
    let out = check("t.tribune", src);
    assert!(
        !out.has_errors(),
        "{}",
        render_diagnostics("t.tribune", src, &out.diagnostics)
    );
    PolicySet::new(out.policies)
}

fn enclave(tenant: &str) -> Enclave {
    Enclave {
        tenant: tenant.into(),
        ..Enclave::default()
    }
}

fn facts(tenant: &str) -> Facts {
    Facts {
        enclave: enclave(tenant),
        ..Facts::default()
    }
}

const CPU: usize = Resource::Cpu as usize;
const MEM: usize = Resource::Memory as usize;
const EGRESS: usize = Resource::Egress as usize;
const GPU: usize = Resource::Gpu as usize;

#[test]
fn selectors_on_tenant_labels_tee_measurement_class() {
    let p = compile(
        r#"policy "p" {
          match tenant == "acme" && labels.tier == "batch" && tee in [sev-snp, tdx]
                && measurement != "bad0bad0" && class in ["batch", "best-effort"]
          limit { cpu = 1 }
        }"#,
    );
    let mut f = facts("acme");
    f.enclave.labels.insert("tier".into(), "batch".into());
    f.enclave.tee = TeeKind::Tdx;
    f.enclave.class = "batch".into();
    assert!(p.evaluate(&f).matched);
    f.enclave.tee = TeeKind::Sim;
    assert!(!p.evaluate(&f).matched, "sim is not in the TEE list");
    f.enclave.tee = TeeKind::SevSnp;
    f.enclave.measurement = "bad0bad0".into();
    assert!(!p.evaluate(&f).matched, "excluded measurement");
    f.enclave.measurement = "good".into();
    f.enclave.labels.clear();
    assert!(!p.evaluate(&f).matched, "missing label");
    let unmatched = p.evaluate(&facts("globex"));
    assert!(!unmatched.matched);
    assert_eq!(unmatched.limit[CPU].value, None);
}

#[test]
fn quoted_label_keys() {
    let p = compile(
        r#"policy "p" { match labels."app.kubernetes.io/name" == "web" && labels.tier != "db" }"#,
    );
    let mut f = Facts::default();
    f.enclave
        .labels
        .insert("app.kubernetes.io/name".into(), "web".into());
    assert!(p.evaluate(&f).matched);
    f.enclave.labels.insert("tier".into(), "db".into());
    assert!(!p.evaluate(&f).matched);
    let src = "policy \"p\" {\n  match labels.\"a.b/c\" == \"x\"\n}\n";
    assert_eq!(format(src).expect("formats"), src);
}

#[test]
fn resource_units_are_canonical() {
    let p = compile(
        r#"policy "p" {
          match true
          guarantee { cpu = 0.25; memory = 512MiB; egress = 100Mbit; gpu = 30% }
          limit { cpu = 250m + 750m; memory = 2GiB; egress = 1Gbit; gpu = 60% }
        }"#,
    );
    let d = p.evaluate(&Facts::default());
    assert_eq!(
        d.guarantee[CPU].value,
        Some(250.0),
        "a quarter core is 250 millicores"
    );
    assert_eq!(d.guarantee[MEM].value, Some(512.0 * 1024.0 * 1024.0));
    assert_eq!(d.guarantee[EGRESS].value, Some(100e6));
    assert_eq!(d.guarantee[GPU].value, Some(30.0));
    assert_eq!(d.limit[CPU].value, Some(1000.0));
    assert_eq!(d.limit[MEM].value, Some(2.0 * 1024.0 * 1024.0 * 1024.0));
    assert_eq!(d.limit[EGRESS].value, Some(1e9));
    assert_eq!(d.limit[CPU].origin.kind, SourceKind::Static);
    assert_eq!(d.limit[CPU].origin.line, 4);
}

#[test]
fn priority_preemption_and_weight() {
    let p = compile(r#"policy "p" { match true; priority 800 preempt; weight 2.5 }"#);
    let d = p.evaluate(&Facts::default());
    assert_eq!(d.priority.value, Some(800.0));
    assert!(d.preempt);
    assert_eq!(d.weight.value, Some(2.5));
    let q = compile(r#"policy "q" { match true; priority 10 }"#);
    assert!(!q.evaluate(&Facts::default()).preempt);
}

const ADAPTIVE: &str = r#"policy "p" {
  match true
  guarantee { cpu = 250m }
  limit { cpu = 1 }
  when host.cpu.utilization > 80% for 30s { limit.cpu = 500m; weight = 1 }
  when cluster.memory.utilization < 20% { limit.cpu = 2 }
}"#;

#[test]
fn when_rules_need_their_duration_and_record_their_origin() {
    let p = compile(ADAPTIVE);
    let mut f = Facts::default();
    f.host.cpu = 90.0;
    let d = p.evaluate(&f);
    assert_eq!(
        d.limit[CPU].value,
        Some(1000.0),
        "condition true but not for 30s yet"
    );
    assert_eq!(
        d.conditions_true & 1,
        1,
        "the caller is told the condition holds"
    );
    f.held_ms.insert("when#1".into(), 30_000);
    let d = p.evaluate(&f);
    assert_eq!(d.limit[CPU].value, Some(500.0));
    assert_eq!(d.limit[CPU].origin.kind, SourceKind::When);
    assert_eq!(d.limit[CPU].origin.index, 1);
    assert_eq!(d.limit[CPU].origin.line, 5);
    assert_eq!(d.weight.value, Some(1.0));
    // Later rules win over earlier ones.
    f.cluster.memory = 10.0;
    let d = p.evaluate(&f);
    assert_eq!(d.limit[CPU].value, Some(2000.0));
    assert_eq!(d.limit[CPU].origin.index, 2);
    assert_eq!(p.condition_ids(), vec!["when#1", "when#2"]);
}

#[test]
fn missing_facts_never_fire_rules() {
    let p = compile(ADAPTIVE);
    let d = p.evaluate(&Facts::default());
    assert_eq!(d.limit[CPU].value, Some(1000.0));
    assert_eq!(d.conditions_true, 0);
}

#[test]
fn time_of_day_ranges_wrap_midnight() {
    let p = compile(
        r#"policy "p" { match true; limit { cpu = 1 } when time in 22:00..06:00 { limit.cpu = 2 } }"#,
    );
    let at = |h: u32, m: u32| {
        let f = Facts {
            minute_of_day: Some(h * 60 + m),
            ..Facts::default()
        };
        p.evaluate(&f).limit[CPU].value
    };
    assert_eq!(at(23, 0), Some(2000.0));
    assert_eq!(at(5, 59), Some(2000.0));
    assert_eq!(at(6, 0), Some(1000.0));
    assert_eq!(at(12, 0), Some(1000.0));
    assert_eq!(at(22, 0), Some(2000.0));
}

#[test]
fn usage_windows_and_percent_of() {
    let p = compile(
        r#"policy "p" {
          match true
          guarantee { cpu = 1 }
          limit { cpu = 2 }
          when usage.cpu.p95(5m) > 80% of limit.cpu && usage.cpu.avg(1m) > 500m { notify now }
          when usage.memory.max(30s) > 1GiB { throttle now }
        }"#,
    );
    let mut f = Facts::default();
    f.usage.push(UsageFact {
        resource: Resource::Cpu,
        agg: Agg::P95,
        window_s: 300,
        value: 1700.0,
    });
    assert_eq!(
        p.evaluate(&f).action.action,
        Action::None,
        "avg(1m) missing"
    );
    f.usage.push(UsageFact {
        resource: Resource::Cpu,
        agg: Agg::Avg,
        window_s: 60,
        value: 600.0,
    });
    let d = p.evaluate(&f);
    assert_eq!(d.action.action, Action::Notify);
    assert_eq!(d.action.origin.index, 1);
    f.usage.push(UsageFact {
        resource: Resource::Memory,
        agg: Agg::Max,
        window_s: 30,
        value: 2e9,
    });
    assert_eq!(p.evaluate(&f).action.action, Action::Throttle);
    // A window that does not match the rule's is not used.
    let mut g = Facts::default();
    g.usage.push(UsageFact {
        resource: Resource::Memory,
        agg: Agg::Max,
        window_s: 60,
        value: 2e9,
    });
    assert_eq!(p.evaluate(&g).action.action, Action::None);
}

#[test]
fn attestation_status_tcb_and_security_events() {
    let p = compile(
        r#"policy "p" {
          match true
          when attestation.tcb == out_of_date { throttle now }
          when reattestation.failed { notify now }
          on usage.divergence > 10% { suspend now }
          on attestation.status == pending { notify after 30s }
        }"#,
    );
    let mut f = Facts::default();
    assert_eq!(p.evaluate(&f).action.action, Action::None);
    f.events.reattestation_failures = 1;
    assert_eq!(p.evaluate(&f).action.action, Action::Notify);
    f.attestation.tcb = TcbStatus::OutOfDate;
    assert_eq!(p.evaluate(&f).action.action, Action::Throttle);
    f.events.divergence_pct = 12.0;
    let d = p.evaluate(&f);
    assert_eq!(d.action.action, Action::Suspend);
    assert_eq!(d.action.origin.kind, SourceKind::On);
    let mut g = Facts::default();
    g.attestation.status = AttestStatus::Pending;
    assert_eq!(
        p.evaluate(&g).action.action,
        Action::None,
        "pending for less than 30s"
    );
    g.held_ms.insert("on#2".into(), 31_000);
    assert_eq!(p.evaluate(&g).action.action, Action::Notify);
}

#[test]
fn violation_ladder_climbs_with_time_over_limit() {
    let p = compile(
        r#"policy "p" {
          match true
          limit { cpu = 1 }
          on over_limit { throttle now; suspend after 30s; migrate after 2m }
        }"#,
    );
    let step = |ms: u64| {
        let f = Facts {
            over_limit_ms: ms,
            ..Facts::default()
        };
        let d = p.evaluate(&f);
        (d.action.action, d.action.origin.line)
    };
    assert_eq!(step(0).0, Action::None);
    assert_eq!(step(1), (Action::Throttle, 4));
    assert_eq!(step(29_999).0, Action::Throttle);
    assert_eq!(step(30_000).0, Action::Suspend);
    assert_eq!(step(119_999).0, Action::Suspend);
    assert_eq!(step(120_000).0, Action::Migrate);
}

#[test]
fn attestation_requirements() {
    let p = compile(
        r#"policy "p" {
          match true
          attest {
            measurement in ["AABBCCDD", "11223344"]
            min_tcb snp >= 8
            debug = forbidden
            simulated = forbidden
            every 60s
          }
          on attestation.failed { suspend now }
        }"#,
    );
    let mut f = Facts::default();
    f.enclave.measurement = "aabbccdd".into();
    f.attestation.tcb_version = 8;
    let d = p.evaluate(&f);
    assert!(d.attestation.ok, "{d:?}");
    assert_eq!(d.attestation.reattest_every_ms, Some(60_000.0));
    assert_eq!(d.action.action, Action::None);
    type Change<'a> = &'a dyn Fn(&mut Facts);
    let cases: [(Change, AttestViolation); 5] = [
        (
            &|f| f.enclave.measurement = "deadbeef".into(),
            AttestViolation::MeasurementNotAllowed,
        ),
        (
            &|f| f.attestation.tcb_version = 7,
            AttestViolation::TcbTooOld,
        ),
        (
            &|f| f.attestation.debug = true,
            AttestViolation::DebugForbidden,
        ),
        (
            &|f| f.enclave.tee = TeeKind::Sim,
            AttestViolation::SimulatedForbidden,
        ),
        (
            &|f| f.attestation.status = AttestStatus::Failed,
            AttestViolation::StatusFailed,
        ),
    ];
    for (change, want) in cases {
        let mut g = f.clone();
        change(&mut g);
        let d = p.evaluate(&g);
        assert!(!d.attestation.ok);
        assert_eq!(d.attestation.violation, Some(want));
        assert_eq!(
            d.action.action,
            Action::Suspend,
            "{want:?} triggers the attestation ladder"
        );
    }
    let dev = compile(
        r#"policy "dev" { match true; attest { simulated = allowed } on attestation.failed { notify now } }"#,
    );
    let g = Facts {
        enclave: Enclave {
            tee: TeeKind::Sim,
            ..Enclave::default()
        },
        ..Facts::default()
    };
    assert!(dev.evaluate(&g).attestation.ok);
}

#[test]
fn reclamation_lends_above_the_floor_after_the_idle_window() {
    let p = compile(
        r#"policy "p" {
          match true
          guarantee { cpu = 2; memory = 4GiB }
          limit { cpu = 4; memory = 8GiB }
          reclaim {
            when usage.cpu.avg(10m) < 10% of guarantee.cpu for 10m
            keep cpu = 500m
            keep memory = 1GiB
            return 1s
          }
        }"#,
    );
    let mut f = Facts::default();
    f.usage.push(UsageFact {
        resource: Resource::Cpu,
        agg: Agg::Avg,
        window_s: 600,
        value: 100.0,
    });
    let d = p.evaluate(&f);
    assert!(!d.reclaim.active, "idle, but not for 10 minutes yet");
    assert_eq!(d.reclaim.return_within_ms, Some(1000.0));
    f.held_ms.insert("reclaim".into(), 600_000);
    let d = p.evaluate(&f);
    assert!(d.reclaim.active);
    assert_eq!(d.reclaim.lendable[CPU], Some(1500.0));
    assert_eq!(
        d.reclaim.lendable[MEM],
        Some(3.0 * 1024.0 * 1024.0 * 1024.0)
    );
    f.usage[0].value = 300.0;
    assert!(!p.evaluate(&f).reclaim.active, "busy again: nothing lent");
}

#[test]
fn talk_rules_first_match_default_deny() {
    let s = set(r#"policy "p" {
          match tenant == "acme"
          talk {
            allow to tenant == "acme" && labels.role == "db" share 6
            deny to tenant == "acme"
            allow to labels.service == "audit" share 1
          }
        }"#);
    let f = facts("acme");
    let mut db = enclave("acme");
    db.labels.insert("role".into(), "db".into());
    let t = s.talk(&f, &db);
    assert!(t.allowed);
    assert_eq!((t.share, t.rule), (6.0, 1));
    let t = s.talk(&f, &enclave("acme"));
    assert!(!t.allowed);
    assert_eq!(t.rule, 2);
    let mut audit = enclave("audit-co");
    audit.labels.insert("service".into(), "audit".into());
    assert!(s.talk(&f, &audit).allowed);
    let t = s.talk(&f, &enclave("globex"));
    assert!(
        !t.allowed && t.rule == 0,
        "no rule matched: denied by default"
    );
    assert_eq!(
        s.talk(&facts("other"), &db).policy,
        None,
        "no policy with talk rules matches the sender"
    );
}

#[test]
fn precedence_then_specificity_layers_policies() {
    let s = set(r#"
        policy "base" { match true; precedence -10; limit { cpu = 1; memory = 1GiB }; weight 1
                        on over_limit { throttle now } }
        policy "acme" { match tenant == "acme"; limit { cpu = 2 } }
        policy "acme-gpu" { match tenant == "acme" && labels.gpu == "yes"; limit { cpu = 3; gpu = 50% }
                            on over_limit { notify now; suspend after 1m } }
        "#);
    let names = s.names();
    assert_eq!(
        names,
        vec!["acme-gpu", "acme", "base"],
        "precedence, then specificity"
    );
    let mut f = facts("acme");
    let d = s.evaluate(&f);
    assert_eq!(d.limit[CPU].value, Some(2000.0));
    assert_eq!(names[d.limit[CPU].origin.policy as usize], "acme");
    assert_eq!(
        names[d.limit[MEM].origin.policy as usize], "base",
        "unset fields fall through"
    );
    assert_eq!(d.weight.value, Some(1.0));
    f.enclave.labels.insert("gpu".into(), "yes".into());
    f.over_limit_ms = 90_000;
    let d = s.evaluate(&f);
    assert_eq!(d.limit[CPU].value, Some(3000.0));
    assert_eq!(
        d.action.action,
        Action::Suspend,
        "the most severe action of all matching policies"
    );
    assert_eq!(names[d.action.origin.policy as usize], "acme-gpu");
    assert!(s.evaluate(&facts("globex")).limit[GPU].value.is_none());
}

#[test]
fn conflicts_are_reported_only_when_real() {
    let conflict = check(
        "c.tribune",
        r#"policy "a" { match tenant == "acme"; weight 2 }
           policy "b" { match class == "batch"; weight 3 }"#,
    );
    assert!(
        conflict.diagnostics.iter().any(|d| d.code == "E0401"),
        "{:?}",
        conflict.diagnostics
    );
    for ok in [
        // disjoint tenants
        r#"policy "a" { match tenant == "acme"; weight 2 } policy "b" { match tenant == "globex"; weight 3 }"#,
        // disjoint TEE lists
        r#"policy "a" { match tee in [tdx]; weight 2 } policy "b" { match tee == sev-snp; weight 3 }"#,
        // ordered by precedence
        r#"policy "a" { match tenant == "acme"; weight 2 } policy "b" { match class == "x"; precedence 1; weight 3 }"#,
        // ordered by specificity
        r#"policy "a" { match tenant == "acme"; weight 2 } policy "b" { match tenant == "acme" && class == "x"; weight 3 }"#,
        // same values: no conflict
        r#"policy "a" { match tenant == "acme"; weight 2 } policy "b" { match class == "x"; weight 2 }"#,
    ] {
        let out = check("ok.tribune", ok);
        assert!(!out.has_errors(), "{ok}: {:?}", out.diagnostics);
    }
    // check_set works across files too.
    let a = check(
        "a.tribune",
        r#"policy "a" { match true; limit { cpu = 1 } }"#,
    )
    .policies;
    let b = check(
        "b.tribune",
        r#"policy "b" { match true; limit { cpu = 2 } }"#,
    )
    .policies;
    let all: Vec<_> = a.into_iter().chain(b).collect();
    let diags = check_set(&all);
    assert_eq!(diags.len(), 1);
    assert_eq!(diags[0].file, "b.tribune");
}

#[test]
fn evaluation_is_deterministic_and_json_is_stable() {
    let src =
        std::fs::read_to_string(manifest_dir().join("../examples/policies/acme-batch.tribune"))
            .expect("example");
    let s = set(&src);
    let f: Facts = serde_json::from_str(
        r#"{ "enclave": { "tenant": "acme", "labels": { "tier": "batch" }, "tee": "sev-snp", "measurement": "3a7f0c1d9e2b4a6f" },
             "time": "14:30", "host": { "cpu": 91 }, "attestation": { "tcb_version": 9 },
             "over_limit_ms": 45000, "held_ms": { "when#1": 40000 }, "peers": [ { "tenant": "acme" } ] }"#,
    )
    .expect("facts parse");
    let a = s.report_json(&f);
    let b = s.report_json(&f);
    assert_eq!(a, b);
    assert_eq!(a["limit"]["cpu"]["value"], 500.0);
    assert_eq!(a["limit"]["cpu"]["from"]["rule"], "when#1");
    assert_eq!(a["action"]["action"], "suspend");
    assert_eq!(a["talk"][0]["allowed"], true);
    assert_eq!(s.evaluate(&f), s.evaluate(&f));
}

#[test]
fn facts_json_rejects_unknown_fields_and_bad_times() {
    assert!(serde_json::from_str::<Facts>(r#"{ "hots": {} }"#).is_err());
    assert!(serde_json::from_str::<Facts>(r#"{ "time": "25:00" }"#).is_err());
    let f: Facts = serde_json::from_str(r#"{ "time": "06:05" }"#).expect("valid");
    assert_eq!(f.minute_of_day, Some(365));
}

/// This package's directory, read at run time (`cargo test` sets it) so a test binary reused
/// from a shared target dir built in another checkout still finds this checkout's files.
fn manifest_dir() -> std::path::PathBuf {
    std::env::var_os("CARGO_MANIFEST_DIR")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR")))
}
