//! Plan-time-only rules — the apply-time re-check does not read them, so replicas of every
//! version apply an entry alike: the planner passes over a host whose agent went silent
//! (`HOST_SILENT_MS`), and places an enclave that asks for networking only where the agent
//! gives it (`planning_spec`).

use tribune_migration::place;

use super::super::*;
use super::tests::{cluster, new_enclave, plan};

fn seen(s: &mut State, host: &str, at_ms: i64) {
    s.apply(Command::HostSeen {
        host: host.into(),
        at_ms,
        load: Resources::default(),
    });
}

#[test]
fn a_host_whose_agent_went_silent_gets_no_new_enclaves_and_the_refusal_says_so() {
    let mut s = cluster(&[("h1", 4000), ("h2", 2000)]);
    seen(&mut s, "h1", 1_000);
    let now = 1_000 + HOST_SILENT_MS + 1;
    seen(&mut s, "h2", now - 1_000);
    // Only h1 has room for 3 cores, and its agent has not been heard for too long.
    let big = new_enclave("big", 3000, 0, false);
    let Err(why) = place(
        &mut cluster_view(&s),
        &enclave_spec(&big),
        placement_freshness(now),
    ) else {
        panic!("placed on a silent host")
    };
    let why = why.to_string();
    assert!(why.contains("h1") && why.contains("180 s"), "{why}");
    // Planned while h1 was still heard, applied after: the apply-time re-check does not read
    // the rule (every replica, of any version, applies an entry alike), so it lands there.
    let p = plan(&s, &big).expect("placeable while h1 was heard");
    assert_eq!(p.host, "h1");
    let o = s.apply(Command::Place {
        enclave: big.clone(),
        placement: p,
        actor: "op".into(),
        at_ms: now,
    });
    assert!(matches!(&o, Outcome::Enclave(_)), "{o:?}");
    assert!(s.enclaves.contains_key("big"));
    let _ = s.enclaves.remove("big");
    // Heard again: placed there.
    seen(&mut s, "h1", now);
    let p = place(
        &mut cluster_view(&s),
        &enclave_spec(&big),
        placement_freshness(now),
    )
    .expect("h1 heard again");
    assert_eq!(p.host, "h1");
    // A small one goes to h2, heard lately, whatever h1's state.
    let mut quiet = cluster(&[("h1", 4000), ("h2", 2000)]);
    seen(&mut quiet, "h1", 1_000);
    seen(&mut quiet, "h2", now - 1_000);
    let small = new_enclave("small", 500, 0, false);
    let p = place(
        &mut cluster_view(&quiet),
        &enclave_spec(&small),
        placement_freshness(now),
    )
    .expect("h2 has room");
    assert_eq!(p.host, "h2");
}

#[test]
fn an_enclave_that_asks_for_networking_is_planned_only_where_the_agent_gives_it() {
    let mut s = cluster(&[("h1", 4000), ("h2", 2000)]);
    let mut h2 = s.hosts["h2"].clone();
    h2.labels
        .insert(tribune_proto::NETWORK_LABEL.into(), "true".into());
    s.apply(Command::PutHost {
        host: h2,
        actor: String::new(),
        at_ms: 2,
    });
    let mut e = new_enclave("web", 500, 0, false);
    // Bin-packing alone would pick either; without networking, h1 (the larger) is fine.
    e.launch = Some(serde_json::json!({"process": {"cmd": ["/bin/true"], "network": true}}));
    assert!(wants_network(&e));
    let spec = planning_spec(enclave_spec(&e), &e);
    let p = place(&mut cluster_view(&s), &spec, placement_freshness(10)).expect("h2 gives it");
    assert_eq!(p.host, "h2");
    // Nowhere that gives it: refused, and the reason names the label.
    s.hosts
        .get_mut("h2")
        .map(|h| h.labels.remove(tribune_proto::NETWORK_LABEL));
    let Err(why) = place(&mut cluster_view(&s), &spec, placement_freshness(10)) else {
        panic!("placed without networking")
    };
    assert!(
        why.to_string().contains(tribune_proto::NETWORK_LABEL),
        "{why}"
    );
    // Not asked: no such requirement.
    e.launch = Some(serde_json::json!({"process": {"cmd": ["/bin/true"]}}));
    assert!(!wants_network(&e));
    assert!(
        !planning_spec(enclave_spec(&e), &e)
            .host_selector
            .contains_key(tribune_proto::NETWORK_LABEL)
    );
}
