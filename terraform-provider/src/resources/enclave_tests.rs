use super::*;

fn cfg(pairs: &[(&str, Value)]) -> Value {
    let mut m: BTreeMap<String, Value> = CONFIGURABLE
        .iter()
        .chain(COMPUTED.iter())
        .map(|a| (a.to_string(), Value::Null))
        .collect();
    for (k, v) in pairs {
        m.insert(k.to_string(), v.clone());
    }
    Value::Map(m)
}

fn base() -> Value {
    cfg(&[
        ("id", Value::string("web")),
        ("tenant", Value::string("acme")),
        ("tee", Value::string("sim")),
        (
            "requested",
            Value::Map([("cpu_millicores".to_string(), Value::Int(250))].into()),
        ),
        ("host", Value::string("h1")),
        (
            "launch",
            Value::string(r#"{"process":{"cmd":["/bin/sleep","600"]}}"#),
        ),
    ])
}

fn stored() -> Enclave {
    let mut e = spec(&base()).expect("spec");
    e.version = 3;
    e.state = EnclaveState::Running;
    e
}

#[test]
fn a_configuration_becomes_the_apis_enclave() {
    let e = spec(&base()).expect("spec");
    assert_eq!(e.id, "web");
    assert_eq!(e.tee, TeeKind::Sim);
    assert_eq!(e.requested.cpu_millicores, 250);
    assert_eq!(
        e.placement,
        Some(Placement {
            host: "h1".into(),
            epoch: 1
        })
    );
    assert_eq!(e.state, EnclaveState::Pending);
    assert_eq!(
        e.launch,
        Some(serde_json::json!({"process": {"cmd": ["/bin/sleep", "600"]}}))
    );
}

#[test]
fn bad_values_are_refused_at_their_attribute() {
    let cases: [(&str, Value, &str); 6] = [
        ("tee", Value::string("sgx"), "sev-snp"),
        (
            "requested",
            Value::Map([("cpus".to_string(), Value::Int(1))].into()),
            "cpu_millicores",
        ),
        (
            "requested",
            Value::Map([("gpu_percent".to_string(), Value::Int(150))].into()),
            "0 to 100",
        ),
        ("priority", Value::Int(1 << 40), "32 bits"),
        ("launch", Value::string("{process"), "jsonencode"),
        ("id", Value::string("Not An Id"), "enclave"),
    ];
    for (attr, v, says) in cases {
        let mut c = base();
        if let Value::Map(m) = &mut c {
            m.insert(attr.into(), v);
        }
        let d = validate(&c);
        assert_eq!(d.len(), 1, "{attr}: {d:?}");
        assert_eq!(d[0].attribute, Some(schema::path(attr)), "{attr}");
        assert!(d[0].detail.contains(says), "{attr}: {}", d[0].detail);
    }
    assert!(validate(&base()).is_empty());
    // The controller's own bounds: a measurement that is not hex.
    let mut c = base();
    if let Value::Map(m) = &mut c {
        m.insert(
            "expected_measurements".into(),
            Value::List(vec![Value::string("zz")]),
        );
    }
    let d = validate(&c);
    assert_eq!(
        d[0].attribute,
        Some(schema::path("expected_measurements")),
        "{d:?}"
    );
    // Unknown values wait for apply; what is known is still checked.
    let mut c = base();
    if let Value::Map(m) = &mut c {
        m.insert("launch".into(), Value::Unknown);
        m.insert("tenant".into(), Value::Unknown);
    }
    assert!(validate(&c).is_empty());
    if let Value::Map(m) = &mut c {
        m.insert("tee".into(), Value::string("nope"));
    }
    assert_eq!(validate(&c)[0].attribute, Some(schema::path("tee")));
}

#[test]
fn the_state_keeps_the_configurations_spelling_of_the_same_value() {
    let mut like = base();
    if let Value::Map(m) = &mut like {
        // Spaced JSON, an explicit zero priority, an empty label map.
        m.insert(
            "launch".into(),
            Value::string("{ \"process\": { \"cmd\": [\"/bin/sleep\", \"600\"] } }"),
        );
        m.insert("priority".into(), Value::Int(0));
        m.insert("labels".into(), Value::Map(BTreeMap::new()));
    }
    let s = state(&stored(), &like);
    for a in CONFIGURABLE {
        assert_eq!(s.get(a), like.get(a), "{a}");
    }
    assert_eq!(s.get("state").as_str(), Some("running"));
    assert_eq!(s.get("version").as_i64(), Some(3));
    assert_eq!(s.get("placement_epoch").as_i64(), Some(1));
    // Imported (nothing to be like): the canonical spelling, zero values left out.
    let s = state(&stored(), &Value::Null);
    assert_eq!(
        s.get("launch").as_str(),
        Some(r#"{"process":{"cmd":["/bin/sleep","600"]}}"#)
    );
    assert_eq!(s.get("priority"), &Value::Null);
    assert_eq!(s.get("labels"), &Value::Null);
    assert_eq!(
        s.get("requested"),
        &Value::Map([("cpu_millicores".to_string(), Value::Int(250))].into())
    );
    // And that reads back as the same enclave.
    let mut again = spec(&s).expect("spec");
    again.version = 3;
    again.state = EnclaveState::Running;
    assert_eq!(again, stored());
}

#[test]
fn a_change_made_outside_shows_as_exactly_that_attribute() {
    let prior = state(&stored(), &base());
    let mut changed = stored();
    changed.labels.insert("tier".into(), "batch".into());
    changed.requested.cpu_millicores = 500;
    let read = state(&changed, &prior);
    let differs: Vec<&str> = CONFIGURABLE
        .iter()
        .copied()
        .filter(|a| read.get(a) != prior.get(a))
        .collect();
    assert_eq!(differs, ["labels", "requested"]);
}

#[test]
fn plans_keep_the_prior_state_when_nothing_changed() {
    let prior = state(&stored(), &base());
    // Terraform's proposal: the configuration with the prior computed values.
    let (planned, replace) = plan(&prior, &prior);
    assert_eq!(planned, prior);
    assert!(replace.is_empty());
    // A new label: an update, the computed attributes unknown.
    let mut proposed = prior.clone();
    if let Value::Map(m) = &mut proposed {
        m.insert(
            "labels".into(),
            Value::Map([("tier".to_string(), Value::string("batch"))].into()),
        );
    }
    let (planned, replace) = plan(&prior, &proposed);
    assert!(replace.is_empty());
    assert_eq!(planned.get("labels"), proposed.get("labels"));
    for a in COMPUTED {
        assert_eq!(planned.get(a), &Value::Unknown, "{a}");
    }
    // A new id: replacement.
    if let Value::Map(m) = &mut proposed {
        m.insert("id".into(), Value::string("web2"));
    }
    assert_eq!(plan(&prior, &proposed).1, vec!["id"]);
    // Create: computed unknown; destroy: null.
    let (created, _) = plan(&Value::Null, &base());
    assert_eq!(created.get("version"), &Value::Unknown);
    assert_eq!(created.get("id").as_str(), Some("web"));
    assert_eq!(plan(&prior, &Value::Null).0, Value::Null);
}

#[test]
fn another_spelling_of_a_set_value_is_no_change() {
    let prior = state(&stored(), &base());
    let mut proposed = prior.clone();
    if let Value::Map(m) = &mut proposed {
        m.insert(
            "launch".into(),
            Value::string("{\"process\": {\"cmd\": [\"/bin/sleep\", \"600\"]}}"),
        );
        m.insert(
            "requested".into(),
            Value::Map(
                [
                    ("cpu_millicores".to_string(), Value::Int(250)),
                    ("gpu_percent".to_string(), Value::Int(0)),
                ]
                .into(),
            ),
        );
    }
    let (planned, replace) = plan(&prior, &proposed);
    assert_eq!(planned, prior, "the prior spelling and version are kept");
    assert!(replace.is_empty());
    // A real change next to a respelling: the respelled attribute keeps the prior value.
    if let Value::Map(m) = &mut proposed {
        m.insert("priority".into(), Value::Int(5));
    }
    let (planned, _) = plan(&prior, &proposed);
    assert_eq!(planned.get("launch"), prior.get("launch"));
    assert_eq!(planned.get("requested"), prior.get("requested"));
    assert_eq!(planned.get("priority"), &Value::Int(5));
    assert_eq!(planned.get("version"), &Value::Unknown);
}
