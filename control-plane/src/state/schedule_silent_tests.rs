//! Placement passes over a host whose agent went silent (`HOST_SILENT_MS`), at plan time and
//! at apply alike.

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
    // Planned while h1 was still heard, applied after: refused at apply, nothing written.
    let p = plan(&s, &big).expect("placeable while h1 was heard");
    assert_eq!(p.host, "h1");
    let o = s.apply(Command::Place {
        enclave: big.clone(),
        placement: p,
        actor: "op".into(),
        at_ms: now,
    });
    assert!(
        matches!(&o, Outcome::NoRoom { reason } if reason.contains("h1")),
        "{o:?}"
    );
    assert!(!s.enclaves.contains_key("big"));
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
