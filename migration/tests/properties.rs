//! Properties over random clusters and workloads: capacity is never over-promised, preemption
//! takes only strictly lower priorities and only when nothing fits without it, and every
//! answer is a pure function of the snapshot (host order does not matter).

mod common;

use common::{cores_mib, fresh, host, spec};
use proptest::prelude::*;
use tribune_attest::TeeKind;
use tribune_migration::{
    ClusterView, EnclaveSpec, HostView, Resource, Strategy as Packing, choose, filter, place,
    place_all,
};

fn arb_host(i: usize) -> impl Strategy<Value = HostView> {
    (
        1u64..=16,
        1u64..=16,
        prop::bool::weighted(0.9),
        prop::bool::weighted(0.9),
        0u32..3,
    )
        .prop_map(move |(cores, gib, trusted, sim, zone)| {
            let mut h = host(&format!("h{i:02}"), cores_mib(cores * 1000, gib * 1024));
            h.trusted = trusted;
            if !sim {
                h.tee = TeeKind::Tdx;
            }
            h.labels.insert("zone".into(), format!("z{zone}"));
            h
        })
}

fn arb_spec(i: usize) -> impl Strategy<Value = EnclaveSpec> {
    (
        1u64..=40,
        1u64..=32,
        -2i32..4,
        any::<bool>(),
        any::<bool>(),
        prop::option::of(0u32..3),
        prop::option::of(0u32..4),
    )
        .prop_map(
            move |(quarter_cores, mib128, prio, preempt, spread, zone, app)| {
                let mut s = spec(
                    &format!("e{i:03}"),
                    cores_mib(quarter_cores * 250, mib128 * 128),
                );
                s.priority = prio;
                s.preempt = preempt;
                if spread {
                    s.strategy = Packing::Spread;
                }
                if let Some(z) = zone {
                    s.host_selector.insert("zone".into(), format!("z{z}"));
                }
                if let Some(a) = app {
                    s.labels.insert("app".into(), format!("a{a}"));
                    s.anti_affinity.push("app".into());
                }
                s
            },
        )
}

fn arb_case() -> impl Strategy<Value = (Vec<HostView>, Vec<EnclaveSpec>)> {
    (1usize..8, 1usize..30).prop_flat_map(|(nh, ns)| {
        (
            (0..nh).map(arb_host).collect::<Vec<_>>(),
            (0..ns).map(arb_spec).collect::<Vec<_>>(),
        )
    })
}

fn assert_within_capacity(view: &ClusterView) -> Result<(), TestCaseError> {
    for h in view.hosts() {
        for r in Resource::ALL {
            prop_assert!(
                h.reserved.get(r) <= h.host.capacity.get(r),
                "{} over-promised on {r:?}: {} > {}",
                h.host.id,
                h.reserved.get(r),
                h.host.capacity.get(r)
            );
        }
        let sum = view
            .on_host(&h.host.id)
            .fold(tribune_migration::Demand::ZERO, |a, p| {
                a.saturating_add(p.spec.guarantee)
            });
        prop_assert_eq!(sum, h.reserved, "reserved is the sum of what is placed");
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(400))]

    #[test]
    fn place_all_never_over_promises_and_every_placement_passes_the_filters(
        (hosts, specs) in arb_case()
    ) {
        let mut view = ClusterView::new(hosts, []).expect("view");
        let results = place_all(&mut view, &specs, fresh());
        prop_assert_eq!(results.len(), specs.len());
        assert_within_capacity(&view)?;
        for p in view.all_placed() {
            let h = view.host(&p.host).expect("placed on a known host");
            prop_assert!(filter::check_static(&view, h, &p.spec, fresh()).is_ok(),
                "{} on {} fails a filter", p.spec.id, p.host);
        }
        for (spec, r) in specs.iter().zip(&results) {
            if let Ok(p) = r {
                for d in &p.displaced {
                    prop_assert!(spec.preempt, "{} displaced {} without preempt", spec.id, d.enclave);
                    prop_assert!(d.priority < spec.priority,
                        "{} (priority {}) displaced {} (priority {})",
                        spec.id, spec.priority, d.enclave, d.priority);
                }
            }
        }
    }

    #[test]
    fn preemption_only_when_nothing_fits_without_it((hosts, specs) in arb_case()) {
        let mut view = ClusterView::new(hosts, []).expect("view");
        for s in &specs {
            let fits_without = choose(&view, s, fresh()).is_ok();
            let before = view.clone();
            match place(&mut view, s, fresh()) {
                Ok(p) => {
                    if fits_without {
                        prop_assert!(p.displaced.is_empty(), "{} preempted though it fit", s.id);
                    }
                    prop_assert_eq!(view.placed(&s.id).map(|p| p.host.clone()), Some(p.host.clone()));
                }
                Err(_) => prop_assert_eq!(&view, &before, "a refused placement changed the view"),
            }
            assert_within_capacity(&view)?;
        }
    }

    #[test]
    fn the_fast_filter_agrees_with_the_explaining_one((hosts, specs) in arb_case()) {
        let mut view = ClusterView::new(hosts, []).expect("view");
        let half = specs.len() / 2;
        place_all(&mut view, &specs[..half], fresh());
        // Placed enclaves are asked about too: their own labels never block their own host.
        for s in &specs {
            for h in view.hosts() {
                prop_assert_eq!(
                    filter::admits(&view, h, s, fresh()),
                    filter::check(&view, h, s, fresh()).is_ok(),
                    "{} on {}", s.id, h.host.id
                );
            }
        }
    }

    #[test]
    fn results_do_not_depend_on_the_order_hosts_were_collected_in(
        (hosts, specs) in arb_case()
    ) {
        let mut a = ClusterView::new(hosts.clone(), []).expect("view");
        let mut reversed = hosts;
        reversed.reverse();
        let mut b = ClusterView::new(reversed, []).expect("view");
        let ra = place_all(&mut a, &specs, fresh());
        let rb = place_all(&mut b, &specs, fresh());
        prop_assert_eq!(ra, rb);
        prop_assert_eq!(a, b);
    }
}

/// The packing of generated 100-host, 1,000-enclave cases (seeds 1-3), against first fit:
/// every enclave placed that first fit places, on no more hosts and no more cores in use
/// (printed; the full-size comparison is `tribune bench schedule`).
#[test]
fn packing_quality_against_first_fit() {
    use tribune_migration::first_fit::{first_fit, quality, smallest};
    use tribune_migration::synthetic::{NOW_MS, Sizes, workload};
    for seed in 1..=3 {
        let (hosts, specs) = workload(&Sizes {
            hosts: 100,
            enclaves: 1000,
            seed,
        });
        let fresh = tribune_migration::Freshness {
            now_ms: NOW_MS,
            attest_max_age_ms: 60_000,
        };
        let small = smallest(&specs);
        let mut ours = ClusterView::new(hosts.clone(), []).expect("view");
        let placed = place_all(&mut ours, &specs, fresh)
            .iter()
            .filter(|r| r.is_ok())
            .count();
        let mut ff = ClusterView::new(hosts, []).expect("view");
        let ff_placed = first_fit(&mut ff, &specs, fresh)
            .iter()
            .filter(|ok| **ok)
            .count();
        let (q, fq) = (quality(&ours, small), quality(&ff, small));
        eprintln!(
            "seed {seed}\n  tribune: placed {placed}, {q:?}\n  first fit: placed {ff_placed}, {fq:?}"
        );
        assert!(
            placed >= ff_placed,
            "seed {seed}: placed {placed} < first fit's {ff_placed}"
        );
        assert!(
            q.hosts_used <= fq.hosts_used,
            "seed {seed}: {} hosts used, first fit {}",
            q.hosts_used,
            fq.hosts_used
        );
        assert!(
            q.capacity_in_use.cpu_millicores <= fq.capacity_in_use.cpu_millicores,
            "seed {seed}: {} cores in use, first fit {}",
            q.capacity_in_use.cpu_millicores / 1000,
            fq.capacity_in_use.cpu_millicores / 1000
        );
    }
}
