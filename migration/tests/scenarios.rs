//! Placement, preemption and migration targets, case by case.

mod common;

use common::{NOW, cores_mib, fresh, host, spec};
use tribune_attest::TeeKind;
use tribune_migration::{
    ClusterView, Demand, MigrationConfig, MigrationFacts, NotNow, Placed, Rejection, Schedulable,
    Strategy, TargetRefused, check_target, choose, place, target,
};

fn view(hosts: Vec<tribune_migration::HostView>, placed: Vec<Placed>) -> ClusterView {
    ClusterView::new(hosts, placed).expect("view")
}

fn on(host: &str, s: tribune_migration::EnclaveSpec) -> Placed {
    Placed {
        host: host.into(),
        spec: s,
    }
}

#[test]
fn a_spec_that_fits_nowhere_says_why_per_host_with_the_free_amounts() {
    let v = view(
        vec![
            host("h1", cores_mib(4000, 8192)),
            host("h2", cores_mib(4000, 8192)),
        ],
        vec![
            on("h1", spec("a", cores_mib(2000, 1024))),
            on("h2", spec("b", cores_mib(1000, 1024))),
        ],
    );
    let e = choose(&v, &spec("big", cores_mib(8000, 1024)), fresh()).expect_err("fits nowhere");
    assert_eq!(
        e.to_string(),
        "enclave big fits nowhere: no host with 8 cores free: h2 has 3 cores, h1 has 2 cores"
    );
}

#[test]
fn each_filter_refuses_with_its_own_reason() {
    let mut cordoned = host("c", cores_mib(8000, 8192));
    cordoned.schedulable = Schedulable::Cordoned;
    let mut tdx = host("t", cores_mib(8000, 8192));
    tdx.tee = TeeKind::Tdx;
    let mut untrusted = host("u", cores_mib(8000, 8192));
    untrusted.trusted = false;
    let mut stale = host("s", cores_mib(8000, 8192));
    stale.verified_at_ms = NOW - 120_000;
    let mut other_zone = host("z", cores_mib(8000, 8192));
    other_zone.labels.insert("zone".into(), "b".into());
    let mut zone_a = host("za", cores_mib(8000, 8192));
    zone_a.labels.insert("zone".into(), "a".into());
    let mut replica = spec("r1", cores_mib(100, 64));
    replica.labels.insert("app".into(), "db".into());
    let v = view(
        vec![cordoned, tdx, untrusted, stale, other_zone, zone_a],
        vec![on("za", replica)],
    );
    let mut s = spec("r2", cores_mib(1000, 512));
    s.host_selector.insert("zone".into(), "a".into());
    s.labels.insert("app".into(), "db".into());
    s.anti_affinity.push("app".into());
    let e = choose(&v, &s, fresh()).expect_err("every host refuses");
    let by_host: std::collections::BTreeMap<&str, &Rejection> =
        e.rejections.iter().map(|(h, r)| (h.as_str(), r)).collect();
    assert!(matches!(by_host["c"], Rejection::NotSchedulable { .. }));
    assert!(matches!(by_host["t"], Rejection::Tee { .. }));
    assert!(matches!(by_host["u"], Rejection::Untrusted));
    assert!(matches!(
        by_host["s"],
        Rejection::StaleAttestation {
            age_ms: 120_000,
            max_ms: 60_000
        }
    ));
    assert!(matches!(by_host["z"], Rejection::Selector { .. }));
    assert!(matches!(by_host["za"], Rejection::AntiAffinity { with, .. } if with == "r1"));
    let msg = e.to_string();
    for part in [
        "cordoned or draining: c",
        "another TEE kind or an older generation: t (tdx gen 1)",
        "not trusted by attestation: u",
        "attested too long ago: s (120 s, max 60 s)",
        "labels do not match: z (zone=b, wants a)",
        "anti-affinity: za (r1 has app=db)",
    ] {
        assert!(msg.contains(part), "{part:?} missing from: {msg}");
    }
}

#[test]
fn bin_packing_fills_the_fuller_host_and_spreading_the_emptier() {
    let v = view(
        vec![
            host("h1", cores_mib(4000, 4096)),
            host("h2", cores_mib(4000, 4096)),
        ],
        vec![on("h1", spec("a", cores_mib(2000, 2048)))],
    );
    let mut s = spec("x", cores_mib(1000, 1024));
    assert_eq!(choose(&v, &s, fresh()).expect("fits"), "h1");
    s.strategy = Strategy::Spread;
    assert_eq!(choose(&v, &s, fresh()).expect("fits"), "h2");
}

#[test]
fn bin_packing_prefers_the_balanced_host_among_equally_full_ones() {
    // After placing, both hosts are 75% full by CPU; on h1 its memory would stay 10% used
    // (stranded behind the CPU), on h2 it is 70% used. h2 is the better fit.
    let v = view(
        vec![
            host("h1", cores_mib(4000, 4096)),
            host("h2", cores_mib(4000, 4096)),
        ],
        vec![
            on("h1", spec("cpu", cores_mib(2000, 256))),
            on("h2", spec("mem", cores_mib(2000, 2700))),
        ],
    );
    let s = spec("x", cores_mib(1000, 150));
    assert_eq!(choose(&v, &s, fresh()).expect("fits"), "h2");
}

#[test]
fn measured_load_breaks_ties_between_equal_reservations() {
    let mut busy = host("h1", cores_mib(4000, 4096));
    busy.load = cores_mib(3500, 1024);
    let v = view(vec![busy, host("h2", cores_mib(4000, 4096))], vec![]);
    assert_eq!(
        choose(&v, &spec("x", cores_mib(500, 256)), fresh()).expect("fits"),
        "h2"
    );
}

fn full_cluster() -> ClusterView {
    let mut low = spec("low", cores_mib(2000, 1024));
    low.priority = 1;
    let mut mid = spec("mid", cores_mib(2000, 1024));
    mid.priority = 5;
    let mut peer = spec("peer", cores_mib(4000, 1024));
    peer.priority = 10;
    view(
        vec![
            host("h1", cores_mib(4000, 4096)),
            host("h2", cores_mib(4000, 4096)),
        ],
        vec![on("h1", low), on("h1", mid), on("h2", peer)],
    )
}

#[test]
fn preemption_displaces_only_strictly_lower_priority_and_logs_the_fate() {
    let mut v = full_cluster();
    let mut hi = spec("hi", cores_mib(2000, 512));
    hi.priority = 10;
    // Without `preempt` nothing moves.
    let before = v.clone();
    let e = place(&mut v, &hi, fresh()).expect_err("no room without preemption");
    assert!(e.to_string().contains("no host with 2 cores free"), "{e}");
    assert_eq!(v, before, "a refused placement changes nothing");
    hi.preempt = true;
    let p = place(&mut v, &hi, fresh()).expect("preempts");
    assert_eq!(p.host, "h1");
    assert_eq!(p.displaced.len(), 1, "{p:?}");
    let d = &p.displaced[0];
    assert_eq!(
        (d.enclave.as_str(), d.priority, d.to.as_deref()),
        ("low", 1, None)
    );
    assert!(v.placed("low").is_none(), "the displaced one is suspended");
    assert_eq!(v.placed("mid").map(|p| p.host.as_str()), Some("h1"));
    assert_eq!(
        v.placed("peer").map(|p| p.host.as_str()),
        Some("h2"),
        "equal priority is never displaced"
    );
}

#[test]
fn a_displaced_enclave_moves_when_another_host_takes_it() {
    let mut v = full_cluster();
    let mut peer = spec("peer", cores_mib(1000, 1024));
    peer.priority = 10;
    v.assign(Placed {
        host: "h2".into(),
        spec: peer,
    })
    .expect("resize peer");
    // h2 now has 3 cores free: h1 still full. hi needs 4 cores (only h1 can be cleared).
    let mut hi = spec("hi", cores_mib(4000, 512));
    hi.priority = 10;
    hi.preempt = true;
    let p = place(&mut v, &hi, fresh()).expect("preempts");
    assert_eq!(p.host, "h1");
    let fates: Vec<(&str, Option<&str>)> = p
        .displaced
        .iter()
        .map(|d| (d.enclave.as_str(), d.to.as_deref()))
        .collect();
    assert_eq!(fates, vec![("low", Some("h2")), ("mid", None)], "{p:?}");
}

#[test]
fn equal_or_higher_priority_is_never_preempted() {
    let mut v = full_cluster();
    let mut s = spec("five", cores_mib(2000, 512));
    s.priority = 5;
    s.preempt = true;
    let p = place(&mut v, &s, fresh()).expect("preempts low only");
    assert!(p.displaced.iter().all(|d| d.priority < 5), "{p:?}");
    let mut s = spec("one", cores_mib(2000, 512));
    s.priority = 1;
    s.preempt = true;
    assert!(
        place(&mut v, &s, fresh()).is_err(),
        "nothing lower than 1 is left"
    );
}

#[test]
fn a_migration_target_has_headroom_same_tee_fresh_attestation_and_is_never_home() {
    let mut stale = host("stale", cores_mib(16000, 16384));
    stale.verified_at_ms = NOW - 600_000;
    let mut tdx = host("tdx", cores_mib(16000, 16384));
    tdx.tee = TeeKind::Tdx;
    let v = view(
        vec![
            host("home", cores_mib(4000, 4096)),
            host("tight", cores_mib(2100, 4096)),
            host("roomy", cores_mib(8000, 8192)),
            stale,
            tdx,
        ],
        vec![on("home", spec("e", cores_mib(2000, 1024)))],
    );
    let facts = MigrationFacts {
        last_moved_at_ms: None,
        in_flight: 0,
    };
    let cfg = MigrationConfig::default();
    // "tight" has the guarantee but not 10% headroom.
    let t = target(&v, "e", Demand::ZERO, facts, cfg, fresh()).expect("a target");
    assert_eq!(t, "roomy");
    // Its limit (3 cores) with headroom still fits only on roomy.
    assert_eq!(
        target(&v, "e", cores_mib(3000, 0), facts, cfg, fresh()).expect("a target"),
        "roomy"
    );
    // Asked for more than any fresh host of its kind has: the reasons per host.
    let e = target(&v, "e", cores_mib(12000, 0), facts, cfg, fresh()).expect_err("none");
    let NotNow::NoTarget(u) = e else {
        panic!("{e:?}")
    };
    let hosts: Vec<&str> = u.rejections.iter().map(|(h, _)| h.as_str()).collect();
    assert_eq!(
        hosts,
        vec!["roomy", "stale", "tdx", "tight"],
        "never its own host"
    );
    // A host failing attestation is refused when asked for by name, with the reason.
    let r = check_target(&v, "e", "stale", Demand::ZERO, cfg, fresh()).expect_err("stale");
    assert!(matches!(
        r,
        TargetRefused::Filtered {
            why: Rejection::StaleAttestation { .. },
            ..
        }
    ));
    assert_eq!(
        check_target(&v, "e", "home", Demand::ZERO, cfg, fresh()),
        Err(TargetRefused::SameHost("home".into()))
    );
    assert!(check_target(&v, "e", "roomy", Demand::ZERO, cfg, fresh()).is_ok());
}

#[test]
fn cool_down_and_the_cluster_budget_hold_moves_back() {
    let v = view(
        vec![
            host("h1", cores_mib(4000, 4096)),
            host("h2", cores_mib(4000, 4096)),
        ],
        vec![on("h1", spec("e", cores_mib(1000, 512)))],
    );
    let cfg = MigrationConfig::default();
    let recent = MigrationFacts {
        last_moved_at_ms: Some(NOW - 60_000),
        in_flight: 0,
    };
    assert_eq!(
        target(&v, "e", Demand::ZERO, recent, cfg, fresh()),
        Err(NotNow::CoolingDown {
            enclave: "e".into(),
            ago_ms: 60_000,
            wait_ms: 240_000
        })
    );
    let busy = MigrationFacts {
        last_moved_at_ms: Some(NOW - 600_000),
        in_flight: 2,
    };
    assert!(matches!(
        target(&v, "e", Demand::ZERO, busy, cfg, fresh()),
        Err(NotNow::Budget {
            in_flight: 2,
            max: 2
        })
    ));
    let ok = MigrationFacts {
        last_moved_at_ms: Some(NOW - 600_000),
        in_flight: 1,
    };
    assert_eq!(
        target(&v, "e", Demand::ZERO, ok, cfg, fresh()),
        Ok("h2".into())
    );
}
