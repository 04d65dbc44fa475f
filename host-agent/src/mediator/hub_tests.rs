use std::collections::BTreeMap;
use std::sync::Arc;

use tribune_msg::wire::{Frame, Outcome, RefusalCode};

use super::*;
use crate::mediator::admission::{Party, TalkTable};

/// (name, class, [(peer, weight)]).
type PartySpec<'a> = (&'a str, u8, &'a [(&'a str, u32)]);

fn table(parties: &[PartySpec]) -> TalkTable {
    TalkTable::from_parties(
        parties
            .iter()
            .map(|(n, class, allow)| {
                (
                    n.to_string(),
                    Party {
                        class: *class,
                        allow: allow.iter().map(|(p, w)| (p.to_string(), *w)).collect(),
                    },
                )
            })
            .collect::<BTreeMap<_, _>>(),
    )
}

fn bounds() -> Bounds {
    Bounds {
        flow_messages_max: 3,
        flow_bytes_max: 1000,
        message_bytes_max: 500,
        quantum_bytes: 500,
    }
}

fn accepted(s: Sent) -> Option<Arc<Conn>> {
    match s {
        Sent::Accepted(r) => r,
        Sent::Refused(c, why) => panic!("refused {c:?}: {why}"),
    }
}

fn refused(s: Sent) -> (RefusalCode, String) {
    match s {
        Sent::Refused(c, why) => (c, why),
        Sent::Accepted(_) => panic!("accepted"),
    }
}

#[test]
fn a_message_reaches_the_receiving_connection_with_the_senders_bound_name() {
    let mut hub = Hub::new(bounds()).unwrap();
    hub.set_table(table(&[("a", 0, &[("b", 1)]), ("b", 0, &[("a", 1)])]));
    let a = Conn::new("a");
    let b = Conn::new("b");
    // Queued before anyone receives: kept.
    assert!(accepted(hub.send(&a, 1, "b", b"one".to_vec())).is_none());
    assert!(
        hub.take(&b, 10, 1 << 20).is_empty(),
        "b has not asked to receive"
    );
    hub.set_receiver(&b, 100);
    let wake = accepted(hub.send(&a, 2, "b", b"two".to_vec()));
    assert!(wake.is_some_and(|w| Arc::ptr_eq(&w, &b)));
    let got = hub.take(&b, 10, 1 << 20);
    let got: Vec<(String, u64, Vec<u8>)> = got
        .into_iter()
        .map(|(from, q)| (from, q.id, q.payload))
        .collect();
    assert_eq!(
        got,
        vec![
            ("a".to_string(), 1, b"one".to_vec()),
            ("a".to_string(), 2, b"two".to_vec())
        ]
    );
    hub.delivered("b", 6);
    let c = hub.counters();
    assert_eq!((c["a"].sent_messages, c["a"].sent_bytes), (2, 6));
    assert_eq!((c["b"].received_messages, c["b"].received_bytes), (1, 6));
}

#[test]
fn refusals_by_either_side_carry_a_reason_and_are_counted() {
    let mut hub = Hub::new(bounds()).unwrap();
    hub.set_table(table(&[
        ("a", 0, &[("b", 1), ("c", 1)]),
        ("b", 0, &[]),
        ("c", 0, &[("a", 1)]),
    ]));
    let a = Conn::new("a");
    let b = Conn::new("b");
    let x = Conn::new("x");
    assert_eq!(
        refused(hub.send(&a, 1, "b", vec![])).0,
        RefusalCode::ReceiverRules
    );
    assert_eq!(
        refused(hub.send(&b, 1, "a", vec![])).0,
        RefusalCode::SenderRules
    );
    assert_eq!(
        refused(hub.send(&a, 1, "zz", vec![])).0,
        RefusalCode::UnknownReceiver
    );
    assert_eq!(
        refused(hub.send(&x, 1, "a", vec![])).0,
        RefusalCode::UnknownSender
    );
    accepted(hub.send(&a, 1, "c", vec![1]));
    let c = hub.counters();
    assert_eq!(c["a"].refused_messages, 2);
    assert_eq!(c["b"].refused_messages, 1);
    assert_eq!(c["a"].sent_messages, 1);
}

#[test]
fn a_full_queue_refuses_as_back_pressure_and_keeps_what_it_accepted() {
    let mut hub = Hub::new(bounds()).unwrap();
    hub.set_table(table(&[("a", 0, &[("b", 1)]), ("b", 0, &[("a", 1)])]));
    let a = Conn::new("a");
    let b = Conn::new("b");
    for id in 0..3 {
        accepted(hub.send(&a, id, "b", vec![0; 10]));
    }
    let (code, why) = refused(hub.send(&a, 3, "b", vec![0; 10]));
    assert_eq!(code, RefusalCode::QueueFull);
    assert!(why.contains("try again later"), "{why}");
    let (code, _) = refused(hub.send(&a, 4, "b", vec![0; 501]));
    assert_eq!(code, RefusalCode::TooLarge);
    assert_eq!(hub.counters()["a"].queue_full_messages, 1);
    hub.set_receiver(&b, 100);
    let ids: Vec<u64> = hub
        .take(&b, 10, 1 << 20)
        .iter()
        .map(|(_, q)| q.id)
        .collect();
    assert_eq!(ids, vec![0, 1, 2]);
    accepted(hub.send(&a, 5, "b", vec![0; 10]));
}

#[test]
fn a_newer_receiving_connection_replaces_the_older_and_a_closed_one_receives_nothing() {
    let mut hub = Hub::new(bounds()).unwrap();
    hub.set_table(table(&[("a", 0, &[("b", 1)]), ("b", 0, &[("a", 1)])]));
    let a = Conn::new("a");
    let (b1, b2) = (Conn::new("b"), Conn::new("b"));
    hub.set_receiver(&b1, 100);
    hub.set_receiver(&b2, 100);
    assert!(!b1.is_receiving() && b2.is_receiving());
    accepted(hub.send(&a, 1, "b", vec![1]));
    assert!(hub.take(&b1, 10, 100).is_empty());
    hub.connection_closed(&b2);
    assert!(hub.take(&b2, 10, 100).is_empty());
    assert_eq!(hub.queued("b"), Some((1, 1)), "kept for the next receiver");
}

#[test]
fn messages_dropped_by_a_new_plan_or_shutdown_are_reported_failed_to_their_sender() {
    let mut hub = Hub::new(bounds()).unwrap();
    hub.set_table(table(&[
        ("a", 0, &[("b", 1), ("c", 1)]),
        ("b", 0, &[("a", 1)]),
        ("c", 0, &[("a", 1)]),
    ]));
    let a = Conn::new("a");
    accepted(hub.send(&a, 1, "b", vec![1]));
    accepted(hub.send(&a, 2, "c", vec![2]));
    accepted(hub.send(&a, 3, "c", vec![3]));
    // b leaves the host; c stops accepting from a.
    let failed = hub.set_table(table(&[("a", 0, &[("c", 1)]), ("c", 0, &[])]));
    let mut reasons: Vec<(u64, String)> = failed
        .into_iter()
        .map(|f| (f.message.id, f.reason.clone()))
        .collect();
    reasons.sort();
    assert_eq!(reasons[0], (1, "\"b\" left this host".to_string()));
    assert!(
        reasons[1].1.starts_with("talk rules changed:"),
        "{reasons:?}"
    );
    assert_eq!(reasons.len(), 3);
    // Shutdown: whatever is queued is reported, through the sender's connection.
    hub.set_table(table(&[("a", 0, &[("c", 1)]), ("c", 0, &[("a", 2)])]));
    accepted(hub.send(&a, 4, "c", vec![4]));
    for f in hub.drain("mediator stopping") {
        f.report();
    }
    assert_eq!(
        a.take_frames()
            .into_iter()
            .filter(|f| matches!(f, Frame::Done { .. }))
            .collect::<Vec<_>>(),
        vec![Frame::Done {
            id: 4,
            outcome: Outcome::Failed,
            reason: "mediator stopping".into()
        }]
    );
    assert_eq!(hub.queued("c"), Some((0, 0)));
}

#[test]
fn a_plan_change_moves_a_queued_flow_to_its_new_class() {
    let mut hub = Hub::new(bounds()).unwrap();
    hub.set_table(table(&[
        ("lo", 5, &[("r", 1)]),
        ("hi", 1, &[("r", 1)]),
        ("r", 0, &[("lo", 1), ("hi", 1)]),
    ]));
    let (lo, hi, r) = (Conn::new("lo"), Conn::new("hi"), Conn::new("r"));
    accepted(hub.send(&hi, 1, "r", vec![0]));
    accepted(hub.send(&lo, 2, "r", vec![0]));
    // lo becomes the higher priority.
    hub.set_table(table(&[
        ("lo", 0, &[("r", 1)]),
        ("hi", 1, &[("r", 1)]),
        ("r", 0, &[("lo", 1), ("hi", 1)]),
    ]));
    hub.set_receiver(&r, 100);
    let order: Vec<String> = hub.take(&r, 10, 100).into_iter().map(|(f, _)| f).collect();
    assert_eq!(order, vec!["lo", "hi"]);
}

#[test]
fn a_closed_connection_gets_no_more_frames() {
    let c = Conn::new("a");
    c.push(Frame::Accepted { id: 1 });
    c.close();
    c.push(Frame::Accepted { id: 2 });
    assert_eq!(c.take_frames(), vec![Frame::Accepted { id: 1 }]);
    assert_eq!(c.pending_frames(), 0);
}

#[test]
fn a_receiver_is_handed_no_more_than_its_credit() {
    let mut hub = Hub::new(bounds()).unwrap();
    hub.set_table(table(&[("a", 0, &[("b", 1)]), ("b", 0, &[("a", 1)])]));
    let a = Conn::new("a");
    let b = Conn::new("b");
    for id in 0..3 {
        accepted(hub.send(&a, id, "b", vec![0]));
    }
    hub.set_receiver(&b, 2);
    assert_eq!(hub.take(&b, 10, 1 << 20).len(), 2);
    assert!(hub.take(&b, 10, 1 << 20).is_empty(), "window used up");
    b.add_credit(5);
    assert_eq!(hub.take(&b, 10, 1 << 20).len(), 1);
    assert_eq!(b.credit(), 4);
}

/// The answer to a SEND is queued before the hub's lock is released, so it always precedes
/// the DONE of its delivery on the sender's connection.
#[test]
fn the_answer_is_queued_before_any_done() {
    let mut hub = Hub::new(bounds()).unwrap();
    hub.set_table(table(&[("a", 0, &[("b", 1)]), ("b", 0, &[("a", 1)])]));
    let a = Conn::new("a");
    let b = Conn::new("b");
    hub.set_receiver(&b, 10);
    accepted(hub.send(&a, 7, "b", vec![1]));
    refused(hub.send(&a, 8, "zz", vec![1]));
    for (_, m) in hub.take(&b, 10, 100) {
        m.sender.push(Frame::Done {
            id: m.id,
            outcome: Outcome::Delivered,
            reason: String::new(),
        });
    }
    let kinds: Vec<(u64, &str)> = a
        .take_frames()
        .iter()
        .map(|f| match f {
            Frame::Accepted { id } => (*id, "accepted"),
            Frame::Refused { id, .. } => (*id, "refused"),
            Frame::Done { id, .. } => (*id, "done"),
            _ => (0, "other"),
        })
        .collect();
    assert_eq!(kinds, vec![(7, "accepted"), (8, "refused"), (7, "done")]);
}

/// A rate-limited sender (a throttle from its plan) gets one second's worth at once, then is
/// refused `rate-limited`; its refusals and their bytes are counted for its usage reports; a
/// new plan with the same rate keeps its bucket, and one without a rate lifts it.
#[test]
fn a_throttled_sender_is_held_to_its_rate_and_its_refusals_are_counted() {
    let mut hub = Hub::new(Bounds {
        flow_messages_max: 100,
        ..bounds()
    })
    .unwrap();
    let pair = || table(&[("a", 0, &[("b", 1)]), ("b", 0, &[("a", 1)])]);
    hub.set_table(pair().with_rate("a", 5));
    let a = Conn::new("a");
    let b = Conn::new("b");
    let mut codes = Vec::new();
    for id in 0..8 {
        if let Sent::Refused(code, why) = hub.send(&a, id, "b", vec![0; 10]) {
            assert!(why.contains("5 messages a second"), "{why}");
            codes.push(code);
        }
    }
    assert_eq!(codes, vec![RefusalCode::RateLimited; 3]);
    // The receiver is not rate-limited.
    accepted(hub.send(&b, 100, "a", vec![0]));
    // The same rate again: the bucket is kept (still empty), not refilled.
    hub.set_table(pair().with_rate("a", 5));
    refused(hub.send(&a, 9, "b", vec![0; 10]));
    let c = hub.counters()["a"];
    assert_eq!(c.sent_messages, 5);
    assert_eq!(c.rate_limited_messages, 4);
    assert_eq!((c.unaccepted_messages, c.unaccepted_bytes), (4, 40));
    // Lifted.
    hub.set_table(pair());
    accepted(hub.send(&a, 10, "b", vec![0; 10]));
    // A refusal by the rules counts as unaccepted too.
    refused(hub.send(&a, 11, "nobody", vec![0; 3]));
    assert_eq!(hub.counters()["a"].unaccepted_bytes, 43);
}
