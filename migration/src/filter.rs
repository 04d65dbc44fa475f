//! The filters: whether an enclave may land on a host at all, and if not, why (one reason per
//! filter, in the order they are checked, so the explanation names the first wall it hit).

use serde::{Deserialize, Serialize};

use crate::demand::{Demand, Resource};
use crate::view::{ClusterView, EnclaveSpec, HostState, Schedulable};

/// The settings the filters need from outside the snapshot.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Freshness {
    /// Now (Unix ms), given by the caller: the filters read no clock.
    pub now_ms: i64,
    /// A host whose last trusted verdict is older than this is not a target (the policy's
    /// `attest { every }`).
    pub attest_max_age_ms: i64,
}

/// Why a host was filtered out.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "filter")]
pub enum Rejection {
    /// Cordoned or draining.
    NotSchedulable { state: Schedulable },
    /// Another TEE kind, or an older generation than asked for.
    Tee { has: String, generation: u32 },
    /// The host's last verdict is not trusted.
    Untrusted,
    /// The host's last trusted verdict is too old.
    StaleAttestation { age_ms: i64, max_ms: i64 },
    /// A selector label is missing or different.
    Selector {
        key: String,
        want: String,
        has: Option<String>,
    },
    /// An enclave already there shares an anti-affinity label value.
    AntiAffinity {
        key: String,
        value: String,
        with: String,
    },
    /// Not enough capacity left for the guarantee.
    Capacity { short: Vec<Resource>, free: Demand },
}

/// The filters that do not depend on capacity (preemption can only free capacity).
pub fn check_static(
    view: &ClusterView,
    h: &HostState,
    spec: &EnclaveSpec,
    fresh: Freshness,
) -> Result<(), Rejection> {
    let host = &h.host;
    if host.schedulable != Schedulable::Ready {
        return Err(Rejection::NotSchedulable {
            state: host.schedulable,
        });
    }
    if host.tee != spec.tee || host.tee_generation < spec.min_tee_generation {
        return Err(Rejection::Tee {
            has: host.tee.to_string(),
            generation: host.tee_generation,
        });
    }
    if !host.trusted {
        return Err(Rejection::Untrusted);
    }
    let age_ms = fresh.now_ms.saturating_sub(host.verified_at_ms);
    if age_ms > fresh.attest_max_age_ms {
        return Err(Rejection::StaleAttestation {
            age_ms,
            max_ms: fresh.attest_max_age_ms,
        });
    }
    for (key, want) in &spec.host_selector {
        let has = host.labels.get(key);
        if has != Some(want) {
            return Err(Rejection::Selector {
                key: key.clone(),
                want: want.clone(),
                has: has.cloned(),
            });
        }
    }
    for key in &spec.anti_affinity {
        let Some(value) = spec.labels.get(key) else {
            continue;
        };
        if let Some(other) = view
            .on_host(&host.id)
            .find(|p| p.spec.id != spec.id && p.spec.labels.get(key) == Some(value))
        {
            return Err(Rejection::AntiAffinity {
                key: key.clone(),
                value: value.clone(),
                with: other.spec.id.clone(),
            });
        }
    }
    Ok(())
}

/// Whether another enclave on `h` shares one of `spec`'s anti-affinity label values (the
/// enclave itself, if it is placed there, does not count).
fn anti_affinity_conflict(view: &ClusterView, h: &HostState, spec: &EnclaveSpec) -> bool {
    let own_here = view.placed(&spec.id).is_some_and(|p| p.host == h.host.id);
    spec.anti_affinity.iter().any(|key| {
        let Some(value) = spec.labels.get(key) else {
            return false;
        };
        let n = h.with_label(key, value);
        let own = u32::from(
            own_here
                && view
                    .placed(&spec.id)
                    .is_some_and(|p| p.spec.labels.get(key) == Some(value)),
        );
        n > own
    })
}

/// The same answer as `check(..).is_ok()`, without building a reason: the hot path of
/// placement (cheap checks first, no allocation).
pub fn admits(view: &ClusterView, h: &HostState, spec: &EnclaveSpec, fresh: Freshness) -> bool {
    let host = &h.host;
    host.schedulable == Schedulable::Ready
        && host.tee == spec.tee
        && host.tee_generation >= spec.min_tee_generation
        && host.trusted
        && fresh.now_ms.saturating_sub(host.verified_at_ms) <= fresh.attest_max_age_ms
        && spec.guarantee.fits_in(&h.free())
        && spec
            .host_selector
            .iter()
            .all(|(k, want)| host.labels.get(k) == Some(want))
        && !anti_affinity_conflict(view, h, spec)
}

/// Every filter; `Ok` when the enclave may land on the host.
pub fn check(
    view: &ClusterView,
    h: &HostState,
    spec: &EnclaveSpec,
    fresh: Freshness,
) -> Result<(), Rejection> {
    check_static(view, h, spec, fresh)?;
    let free = h.free();
    if !spec.guarantee.fits_in(&free) {
        return Err(Rejection::Capacity {
            short: spec.guarantee.short_of(&free),
            free,
        });
    }
    Ok(())
}
