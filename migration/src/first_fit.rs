//! The baseline `tribune bench schedule` compares with: first fit (hosts in id order, the
//! first that passes the filters), and the measures of a packing's quality.

use serde::{Deserialize, Serialize};

use crate::demand::{Demand, Resource};
use crate::filter::{Freshness, admits};
use crate::view::{ClusterView, EnclaveSpec, Placed};

/// Places each spec on the first host (by id) that passes the filters; no preemption.
/// `true` for each spec that was placed.
pub fn first_fit(view: &mut ClusterView, specs: &[EnclaveSpec], fresh: Freshness) -> Vec<bool> {
    let mut out = Vec::with_capacity(specs.len());
    for spec in specs {
        let host = view
            .hosts()
            .find(|h| admits(view, h, spec, fresh))
            .map(|h| h.host.id.clone());
        out.push(match host {
            Some(host) => view
                .assign(Placed {
                    host,
                    spec: spec.clone(),
                })
                .is_ok(),
            None => false,
        });
    }
    out
}

/// How good a packing is.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Quality {
    /// Hosts with at least one enclave.
    pub hosts_used: usize,
    /// The capacity of those hosts (with mixed host sizes, fewer hosts is not less capacity:
    /// filling small hosts first uses more of them).
    pub capacity_in_use: Demand,
    /// Capacity left free on hosts that cannot take even the smallest enclave of the workload
    /// (one resource is used up, so the rest of that host is stranded).
    pub stranded: Demand,
    /// Capacity left free in all.
    pub free: Demand,
}

/// The quality of `view`'s packing for a workload whose smallest demand per resource is
/// `smallest`.
pub fn quality(view: &ClusterView, smallest: Demand) -> Quality {
    let mut q = Quality::default();
    for h in view.hosts() {
        let free = h.free();
        q.free = q.free.saturating_add(free);
        if h.enclaves.is_empty() {
            continue;
        }
        q.hosts_used += 1;
        q.capacity_in_use = q.capacity_in_use.saturating_add(h.host.capacity);
        let blocked = Resource::ALL
            .iter()
            .any(|&r| smallest.get(r) > 0 && free.get(r) < smallest.get(r));
        if blocked {
            q.stranded = q.stranded.saturating_add(free);
        }
    }
    q
}

/// The smallest nonzero amount of each resource among `specs` (0 where none asks for it).
pub fn smallest(specs: &[EnclaveSpec]) -> Demand {
    let mut out = Demand::ZERO;
    for r in Resource::ALL {
        let min = specs
            .iter()
            .map(|s| s.guarantee.get(r))
            .filter(|v| *v > 0)
            .min()
            .unwrap_or(0);
        out = out.saturating_add(Demand::one(r, min));
    }
    out
}
