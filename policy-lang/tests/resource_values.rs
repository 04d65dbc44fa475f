//! Resource values the enforcement path can honour: whole millicores, bytes and bits per
//! second, and no zero cpu, memory or bandwidth limit (E0307, E0308; `grain.rs`).

use tribune_policy::{Facts, Resource, check};

fn errors(src: &str) -> Vec<String> {
    check("x.tribune", src)
        .diagnostics
        .into_iter()
        .filter(|d| d.is_error())
        .map(|d| d.code)
        .collect()
}

fn policy(body: &str) -> String {
    format!("policy \"p\" {{\n  match true\n  {body}\n}}\n")
}

#[test]
fn whole_values_in_any_unit_compile_and_are_stored_exactly() {
    let src = policy(
        "guarantee { cpu = 0.25; memory = 1.5GiB; egress = 1.5Mbit }\n  \
         limit { cpu = 0.3; memory = 2.2GB; egress = 2Mbit; gpu = 12.5% }",
    );
    let out = check("x.tribune", &src);
    assert!(!out.has_errors(), "{:?}", out.diagnostics);
    let p = out.policies[0].evaluate(&Facts::default());
    assert!(p.matched);
    assert_eq!(p.guarantee[Resource::Cpu as usize].value, Some(250.0));
    assert_eq!(
        p.guarantee[Resource::Memory as usize].value,
        Some(1_610_612_736.0)
    );
    assert_eq!(
        p.guarantee[Resource::Egress as usize].value,
        Some(1_500_000.0)
    );
    // Stored as the whole numbers meant, whatever binary floating point made of them.
    assert_eq!(p.limit[Resource::Cpu as usize].value, Some(300.0));
    assert_eq!(
        p.limit[Resource::Memory as usize].value,
        Some(2_200_000_000.0)
    );
    assert_eq!(p.limit[Resource::Gpu as usize].value, Some(12.5));
}

#[test]
fn fractions_of_a_unit_are_refused_wherever_a_resource_is_set() {
    for body in [
        "guarantee { memory = 1.5B }",
        "limit { memory = 1.1GiB }",
        "limit { memory = 1GiB / 3 }",
        "limit { cpu = 0.5m }",
        "limit { cpu = 0.0001 }",
        "limit { cpu = 1.5m }",
        "limit { egress = 0.5bit }",
        "guarantee { cpu = 500m }\n  reclaim { keep cpu = 0.5m }",
        "limit { cpu = 1 }\n  when host.cpu.utilization > 50% { guarantee.cpu = 0.5m }",
        "limit { memory = 1GiB }\n  when host.cpu.utilization > 50% { limit.memory = 1.5B }",
    ] {
        assert_eq!(errors(&policy(body)), ["E0307"], "{body}");
    }
}

#[test]
fn zero_limits_are_refused_but_zero_gpu_guarantees_and_floors_are_not() {
    for body in [
        "limit { cpu = 0 }",
        "limit { cpu = 0m }",
        "limit { memory = 0GiB }",
        "limit { egress = 0Mbit }",
        "limit { ingress = 0bit }",
        "limit { cpu = 1m - 1m }",
        "limit { cpu = 1 }\n  when host.cpu.utilization > 50% { limit.cpu = 0 }",
    ] {
        assert_eq!(errors(&policy(body)), ["E0308"], "{body}");
    }
    for body in [
        "limit { gpu = 0% }",
        "guarantee { cpu = 0; memory = 0B }",
        "guarantee { cpu = 100m }\n  reclaim { keep cpu = 0 }",
        "limit { cpu = 1 }\n  when host.cpu.utilization > 50% { limit.gpu = 0% }",
    ] {
        assert_eq!(errors(&policy(body)), Vec::<String>::new(), "{body}");
    }
}
