//! The scheduler's promises: bounds, no loss or duplication, per-flow order, strict priority,
//! weighted shares within the stated bound.

use std::collections::{BTreeMap, VecDeque};

use proptest::prelude::*;

use super::fq::*;

fn small() -> Bounds {
    Bounds {
        flow_messages_max: 4,
        flow_bytes_max: 1000,
        message_bytes_max: 500,
        quantum_bytes: 500,
    }
}

#[test]
fn bounds_are_checked() {
    assert_eq!(
        Scheduler::<()>::new(Bounds {
            flow_messages_max: 0,
            ..small()
        })
        .err(),
        Some(BoundsError::Zero)
    );
    assert!(
        Scheduler::<()>::new(Bounds {
            quantum_bytes: 1,
            ..small()
        })
        .is_ok(),
        "a quantum below the largest message is allowed (amortised O(1) per byte)"
    );
    assert!(matches!(
        Scheduler::<()>::new(Bounds {
            flow_bytes_max: 499,
            ..small()
        }),
        Err(BoundsError::FlowBelowMessage { .. })
    ));
    assert!(Scheduler::<()>::new(Bounds::default()).is_ok());
}

#[test]
fn flows_are_checked() {
    let mut s = Scheduler::<u32>::new(small()).unwrap();
    assert_eq!(s.add_flow(64, 1), Err(FlowError::Class(64)));
    assert_eq!(s.add_flow(0, 0), Err(FlowError::Weight(0)));
    assert_eq!(
        s.add_flow(0, WEIGHT_MAX + 1),
        Err(FlowError::Weight(WEIGHT_MAX + 1))
    );
    let f = s.add_flow(63, WEIGHT_MAX).unwrap();
    assert_eq!(s.flow_settings(f), Some((63, WEIGHT_MAX)));
    assert_eq!(s.set_flow(f, 1, 0), Err(FlowError::Weight(0)));
    s.remove_flow(f).unwrap();
    assert_eq!(s.remove_flow(f), Err(FlowError::Unknown));
    assert_eq!(s.set_flow(f, 0, 1), Err(FlowError::Unknown));
    assert_eq!(s.enqueue(f, 7, 1), Err(Refused::UnknownFlow(7)));
}

#[test]
fn a_full_flow_refuses_by_messages_and_by_bytes_and_hands_the_message_back() {
    let mut s = Scheduler::new(small()).unwrap();
    let a = s.add_flow(0, 1).unwrap();
    for i in 0..4 {
        s.enqueue(a, i, 10).unwrap();
    }
    assert_eq!(s.enqueue(a, 99, 10), Err(Refused::Full(99)));
    let b = s.add_flow(0, 1).unwrap();
    s.enqueue(b, 1, 500).unwrap();
    s.enqueue(b, 2, 500).unwrap();
    assert_eq!(s.enqueue(b, 3, 1), Err(Refused::Full(3)));
    assert_eq!(s.enqueue(b, 4, 501), Err(Refused::TooLarge(4)));
    assert_eq!(s.flow_queued(b), Some((2, 1000)));
    assert_eq!(s.queued(), (6, 1040));
    // Draining makes room again.
    while s.dequeue().is_some() {}
    assert!(s.is_empty());
    assert_eq!(s.queued(), (0, 0));
    s.enqueue(b, 5, 500).unwrap();
}

#[test]
fn one_flow_is_fifo() {
    let mut s = Scheduler::new(small()).unwrap();
    let a = s.add_flow(3, 2).unwrap();
    for i in 0..4 {
        s.enqueue(a, i, 100 + i).unwrap();
    }
    let out: Vec<_> = std::iter::from_fn(|| s.dequeue()).collect();
    assert_eq!(out, vec![(a, 0), (a, 1), (a, 2), (a, 3)]);
}

#[test]
fn a_higher_class_is_served_first_while_it_has_traffic() {
    let mut s = Scheduler::new(small()).unwrap();
    let low = s.add_flow(5, 100).unwrap();
    let high = s.add_flow(1, 1).unwrap();
    s.enqueue(low, "l1", 10).unwrap();
    s.enqueue(low, "l2", 10).unwrap();
    s.enqueue(high, "h1", 10).unwrap();
    s.enqueue(high, "h2", 10).unwrap();
    assert_eq!(s.dequeue(), Some((high, "h1")));
    assert_eq!(s.dequeue(), Some((high, "h2")));
    assert_eq!(s.dequeue(), Some((low, "l1")));
    // New high traffic pre-empts the rest of the low flow's turn.
    s.enqueue(high, "h3", 10).unwrap();
    assert_eq!(s.dequeue(), Some((high, "h3")));
    assert_eq!(s.dequeue(), Some((low, "l2")));
    assert_eq!(s.dequeue(), None);
}

#[test]
fn weights_one_two_four_with_full_size_messages_are_exact_per_round() {
    let bounds = Bounds {
        flow_messages_max: 1000,
        flow_bytes_max: 1 << 30,
        message_bytes_max: 100,
        quantum_bytes: 100,
    };
    let mut s = Scheduler::new(bounds).unwrap();
    let flows: Vec<FlowId> = [1, 2, 4]
        .iter()
        .map(|w| s.add_flow(0, *w).unwrap())
        .collect();
    for f in &flows {
        for i in 0..700 {
            s.enqueue(*f, i, 100).unwrap();
        }
    }
    let mut served = BTreeMap::<FlowId, u32>::new();
    for _ in 0..7 * 50 {
        let (f, _) = s.dequeue().unwrap();
        *served.entry(f).or_default() += 1;
    }
    assert_eq!(served[&flows[0]], 50);
    assert_eq!(served[&flows[1]], 100);
    assert_eq!(served[&flows[2]], 200);
}

#[test]
fn an_idle_flow_keeps_no_credit() {
    let bounds = Bounds {
        flow_messages_max: 100,
        flow_bytes_max: 1 << 20,
        message_bytes_max: 100,
        quantum_bytes: 100,
    };
    let mut s = Scheduler::new(bounds).unwrap();
    let a = s.add_flow(0, 4).unwrap();
    let b = s.add_flow(0, 1).unwrap();
    // `a` is served one small message, empties, and must not bank the rest of its 400 bytes.
    s.enqueue(a, 0, 1).unwrap();
    assert_eq!(s.dequeue(), Some((a, 0)));
    for i in 0..10 {
        s.enqueue(b, i, 100).unwrap();
    }
    for i in 1..=10 {
        s.enqueue(a, i, 100).unwrap();
    }
    // b is at the front now: one quantum (one message), then a's full turn of four.
    let order: Vec<FlowId> = (0..6).map(|_| s.dequeue().unwrap().0).collect();
    assert_eq!(order, vec![b, a, a, a, a, b]);
}

#[test]
fn removing_a_flow_returns_its_messages_in_order_and_frees_its_bytes() {
    let mut s = Scheduler::new(small()).unwrap();
    let a = s.add_flow(0, 1).unwrap();
    let b = s.add_flow(0, 1).unwrap();
    s.enqueue(a, 1, 10).unwrap();
    s.enqueue(a, 2, 10).unwrap();
    s.enqueue(b, 3, 10).unwrap();
    assert_eq!(s.remove_flow(a).unwrap(), vec![1, 2]);
    assert_eq!(s.queued(), (1, 10));
    assert_eq!(s.dequeue(), Some((b, 3)));
    assert_eq!(s.dequeue(), None);
    // The slot is reused by the next flow, which starts empty.
    let c = s.add_flow(2, 1).unwrap();
    assert_eq!(c, a);
    assert_eq!(s.flow_queued(c), Some((0, 0)));
}

#[test]
fn moving_a_backlogged_flow_to_another_class_moves_its_messages() {
    let mut s = Scheduler::new(small()).unwrap();
    let a = s.add_flow(4, 1).unwrap();
    let b = s.add_flow(2, 1).unwrap();
    s.enqueue(a, "a", 10).unwrap();
    s.enqueue(b, "b", 10).unwrap();
    s.set_flow(a, 0, 3).unwrap();
    assert_eq!(s.flow_settings(a), Some((0, 3)));
    assert_eq!(s.dequeue(), Some((a, "a")));
    assert_eq!(s.dequeue(), Some((b, "b")));
    assert!(s.is_empty());
}

#[test]
fn classes_rank_distinct_priorities_from_the_highest() {
    assert_eq!(classes(&[]), Vec::<u8>::new());
    assert_eq!(classes(&[7, 7, 7]), vec![0, 0, 0]);
    assert_eq!(classes(&[1, 3, 2]), vec![2, 0, 1]);
    let many: Vec<i64> = (0..100).collect();
    let c = classes(&many);
    assert_eq!(c[99], 0);
    assert_eq!(c[36], 63);
    assert_eq!(
        c[0], 63,
        "priorities below the 64th distinct one share the last class"
    );
}

// ---- properties -------------------------------------------------------------------------

#[derive(Clone, Debug)]
enum Op {
    Enqueue { flow: usize, bytes: u32 },
    Dequeue,
    Move { flow: usize, class: u8, weight: u32 },
}

fn op(flows: usize) -> impl Strategy<Value = Op> {
    prop_oneof![
        4 => (0..flows, 1u32..=600).prop_map(|(flow, bytes)| Op::Enqueue { flow, bytes }),
        3 => Just(Op::Dequeue),
        1 => (0..flows, 0u8..4, 1u32..=5).prop_map(|(flow, class, weight)| Op::Move { flow, class, weight }),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    /// Against a model of plain FIFO queues: a message is accepted exactly when it fits its
    /// flow's bounds, every accepted message comes out once and in its flow's order, nothing
    /// else comes out, every dequeue is from the highest backlogged class, and the bounds hold
    /// after every step.
    #[test]
    fn no_loss_no_duplication_bounds_and_strict_priority(
        setup in proptest::collection::vec((0u8..4, 1u32..=5), 1..6),
        ops in proptest::collection::vec(op(6), 0..400),
    ) {
        let bounds = small();
        let mut s = Scheduler::new(bounds).unwrap();
        let ids: Vec<FlowId> = setup.iter().map(|(c, w)| s.add_flow(*c, *w).unwrap()).collect();
        let mut class: Vec<u8> = setup.iter().map(|(c, _)| *c).collect();
        let mut model: Vec<VecDeque<(u64, u32)>> = vec![VecDeque::new(); ids.len()];
        let mut next = 0u64;
        for op in ops {
            match op {
                Op::Enqueue { flow, bytes } => {
                    let flow = flow % ids.len();
                    let q = &mut model[flow];
                    let held: u64 = q.iter().map(|(_, b)| u64::from(*b)).sum();
                    let fits = bytes <= bounds.message_bytes_max
                        && q.len() < bounds.flow_messages_max as usize
                        && held + u64::from(bytes) <= bounds.flow_bytes_max;
                    match s.enqueue(ids[flow], next, bytes) {
                        Ok(()) => { prop_assert!(fits); q.push_back((next, bytes)); }
                        Err(Refused::Full(m)) => { prop_assert!(!fits); prop_assert_eq!(m, next); }
                        Err(Refused::TooLarge(m)) => {
                            prop_assert!(bytes > bounds.message_bytes_max);
                            prop_assert_eq!(m, next);
                        }
                        Err(Refused::UnknownFlow(_)) => prop_assert!(false, "flow exists"),
                    }
                    next += 1;
                }
                Op::Dequeue => {
                    let top = (0..ids.len()).filter(|i| !model[*i].is_empty()).map(|i| class[i]).min();
                    match s.dequeue() {
                        None => prop_assert!(top.is_none()),
                        Some((f, m)) => {
                            let i = ids.iter().position(|x| *x == f).unwrap();
                            prop_assert_eq!(Some(class[i]), top, "served below the highest backlogged class");
                            let (want, _) = model[i].pop_front().unwrap();
                            prop_assert_eq!(m, want, "out of order, lost or duplicated");
                        }
                    }
                }
                Op::Move { flow, class: c, weight } => {
                    let flow = flow % ids.len();
                    s.set_flow(ids[flow], c, weight).unwrap();
                    class[flow] = c;
                }
            }
            let mut total = (0u64, 0u64);
            for (i, q) in model.iter().enumerate() {
                let bytes: u64 = q.iter().map(|(_, b)| u64::from(*b)).sum();
                prop_assert_eq!(s.flow_queued(ids[i]), Some((q.len(), bytes)));
                prop_assert!(q.len() <= bounds.flow_messages_max as usize);
                prop_assert!(bytes <= bounds.flow_bytes_max);
                total.0 += q.len() as u64;
                total.1 += bytes;
            }
            prop_assert_eq!(s.queued(), total);
        }
        // Drain: everything still queued comes out, once.
        while let Some((f, m)) = s.dequeue() {
            let i = ids.iter().position(|x| *x == f).unwrap();
            prop_assert_eq!(model[i].pop_front().map(|x| x.0), Some(m));
        }
        prop_assert!(model.iter().all(VecDeque::is_empty));
    }

    /// Flows of one class that stay backlogged: `|bytes_i/w_i − bytes_j/w_j| < 2Q + M` from the
    /// start and `< 4Q + 2M` over every span of dequeues (module docs), for quanta above and
    /// below the largest message.
    #[test]
    fn backlogged_flows_get_their_weighted_share_within_the_bound(
        weights in proptest::collection::vec(1u32..=8, 2..6),
        sizes in proptest::collection::vec(1u32..=256, 1..64),
        quantum in prop_oneof![16u32..256, 256u32..=1024],
        steps in 50usize..400,
    ) {
        let max = 256u32;
        let bounds = Bounds {
            flow_messages_max: 100_000,
            flow_bytes_max: u64::MAX / 2,
            message_bytes_max: max,
            quantum_bytes: quantum,
        };
        let mut s = Scheduler::new(bounds).unwrap();
        let ids: Vec<FlowId> = weights.iter().map(|w| s.add_flow(0, *w).unwrap()).collect();
        // Enough messages that no flow empties within `steps` dequeues.
        for (k, f) in ids.iter().enumerate() {
            for i in 0..steps {
                let b = sizes[(i * 7 + k * 3) % sizes.len()];
                s.enqueue(*f, b, b).unwrap();
            }
        }
        // Cumulative bytes per flow after each dequeue.
        let mut cum: Vec<Vec<u64>> = vec![vec![0]; ids.len()];
        for _ in 0..steps {
            let (f, bytes) = s.dequeue().unwrap();
            for (i, c) in cum.iter_mut().enumerate() {
                let last = *c.last().unwrap();
                c.push(if ids[i] == f { last + u64::from(bytes) } else { last });
            }
        }
        let (q, m) = (f64::from(quantum), f64::from(max));
        for t1 in 0..=steps {
            let bound = if t1 == 0 { 2.0 * q + m } else { 4.0 * q + 2.0 * m };
            for t2 in t1..=steps {
                for i in 0..ids.len() {
                    for j in i + 1..ids.len() {
                        let a = (cum[i][t2] - cum[i][t1]) as f64 / f64::from(weights[i]);
                        let b = (cum[j][t2] - cum[j][t1]) as f64 / f64::from(weights[j]);
                        prop_assert!((a - b).abs() < bound,
                            "span {t1}..{t2}: flow {i} {a} vs flow {j} {b}, bound {bound}");
                    }
                }
            }
        }
    }
}

#[test]
fn a_small_quantum_still_serves_large_messages_by_their_weight_in_bytes() {
    let bounds = Bounds {
        flow_messages_max: 10_000,
        flow_bytes_max: 1 << 30,
        message_bytes_max: 64 << 10,
        quantum_bytes: 1 << 10,
    };
    let mut s = Scheduler::new(bounds).unwrap();
    let big = s.add_flow(0, 1).unwrap();
    let small = s.add_flow(0, 1).unwrap();
    for i in 0..100 {
        s.enqueue(big, i, 64 << 10).unwrap();
    }
    for i in 0..10_000 {
        s.enqueue(small, i, 64).unwrap();
    }
    let mut bytes = [0u64; 2];
    // 64 KiB of each: the big flow's one message takes 64 turns of credit.
    while bytes[0] < 10 << 16 {
        let (f, _) = s.dequeue().unwrap();
        if f == big {
            bytes[0] += 64 << 10;
        } else {
            bytes[1] += 64;
        }
    }
    let ratio = bytes[1] as f64 / bytes[0] as f64;
    assert!((0.9..=1.1).contains(&ratio), "small:big bytes {ratio}");
}

/// A sparse flow's message is served next, ahead of a backlogged flooder's turn (new flows
/// first); a flow still backlogged after its one early turn waits in the ring like the rest,
/// so a flooder gains nothing from it.
#[test]
fn a_sparse_flow_jumps_the_flooders_turn_once_per_emptying() {
    let mut s = Scheduler::new(Bounds {
        flow_messages_max: 1000,
        flow_bytes_max: 1 << 20,
        message_bytes_max: 64,
        quantum_bytes: 512,
    })
    .unwrap();
    let flood = s.add_flow(0, 1).unwrap();
    let light = s.add_flow(0, 1).unwrap();
    for i in 0..500u32 {
        s.enqueue(flood, i, 64).unwrap();
    }
    // The flooder's own early turn (8 messages of 64 bytes), then one of its ring turn: it is
    // mid-turn.
    for n in 0..9 {
        assert_eq!(s.dequeue(), Some((flood, n)));
    }
    s.enqueue(light, 1000, 64).unwrap();
    assert_eq!(
        s.dequeue(),
        Some((light, 1000)),
        "the light sender waits for nobody"
    );
    for n in 9..13 {
        assert_eq!(s.dequeue(), Some((flood, n)));
        s.enqueue(light, 1000 + n, 64).unwrap();
        assert_eq!(s.dequeue(), Some((light, 1000 + n)));
    }
    // Both backlogged: after the light flow's early turn (8 messages), plain DRR, 8 each.
    for i in 0..20 {
        s.enqueue(light, 2000 + i, 64).unwrap();
    }
    let order: Vec<FlowId> = (0..40).map(|_| s.dequeue().unwrap().0).collect();
    let light_n = order.iter().filter(|f| **f == light).count();
    assert!(
        (16..=24).contains(&light_n),
        "{light_n} of 40 to the light flow"
    );
}
