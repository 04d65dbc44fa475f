//! Builders shared by the scenario and property tests.
#![allow(dead_code)]

use std::collections::BTreeMap;

use tribune_attest::TeeKind;
use tribune_migration::{Demand, EnclaveSpec, Freshness, HostView, Schedulable, Strategy};

pub const NOW: i64 = 1_000_000_000;

pub fn fresh() -> Freshness {
    Freshness {
        now_ms: NOW,
        attest_max_age_ms: 60_000,
    }
}

pub fn cores_mib(cores_milli: u64, mib: u64) -> Demand {
    Demand {
        cpu_millicores: cores_milli,
        memory_bytes: mib << 20,
        ..Demand::ZERO
    }
}

pub fn host(id: &str, cap: Demand) -> HostView {
    HostView {
        id: id.into(),
        capacity: cap,
        load: Demand::ZERO,
        tee: TeeKind::Sim,
        tee_generation: 1,
        trusted: true,
        verified_at_ms: NOW - 1000,
        labels: BTreeMap::new(),
        schedulable: Schedulable::Ready,
    }
}

pub fn spec(id: &str, g: Demand) -> EnclaveSpec {
    EnclaveSpec {
        id: id.into(),
        tee: TeeKind::Sim,
        min_tee_generation: 0,
        guarantee: g,
        priority: 0,
        preempt: false,
        host_selector: BTreeMap::new(),
        anti_affinity: Vec::new(),
        labels: BTreeMap::new(),
        strategy: Strategy::BinPack,
    }
}
