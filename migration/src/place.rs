//! Placement: filter, then score, then (only when asked and only if nothing fits) preempt.
//!
//! Every function is pure over a [`ClusterView`]: the same view and spec give the same answer,
//! whatever the order hosts were collected in (ties are broken by host id).

use std::collections::BTreeMap;
use std::fmt;

use serde::{Deserialize, Serialize};

use crate::demand::{Demand, Resource, share_ppm, shares_ppm};
use crate::filter::{Freshness, Rejection, admits, check, check_static};
use crate::view::{ClusterView, EnclaveSpec, HostState, Placed, Strategy};

/// Where an enclave goes, and what had to make room for it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Placement {
    pub enclave: String,
    pub host: String,
    /// Lower-priority enclaves displaced to make room (empty without preemption).
    pub displaced: Vec<Displaced>,
}

/// A displaced enclave's fate: moved to another host, or suspended when none can take it.
/// Never silently dropped: the caller logs each with the preemptor as the cause.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Displaced {
    pub enclave: String,
    pub priority: i32,
    pub from: String,
    /// `None`: no other host can take it; it is suspended.
    pub to: Option<String>,
}

/// Why an enclave fits nowhere: every host with the reason it was filtered out.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Unplaceable {
    pub enclave: String,
    pub guarantee: Demand,
    /// Each host and why it was refused, in host id order.
    pub rejections: Vec<(String, Rejection)>,
}

impl std::error::Error for Unplaceable {}

impl fmt::Display for Unplaceable {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.rejections.is_empty() {
            return write!(
                f,
                "enclave {} fits nowhere: there are no hosts",
                self.enclave
            );
        }
        write!(f, "enclave {} fits nowhere: ", self.enclave)?;
        let mut parts: Vec<String> = Vec::new();
        // Capacity first, per resource: "no host with 8 cores free: h1 has 2 cores, …".
        let mut short: BTreeMap<Resource, Vec<(&str, u64)>> = BTreeMap::new();
        let mut other: BTreeMap<&'static str, Vec<String>> = BTreeMap::new();
        for (host, r) in &self.rejections {
            match r {
                Rejection::Capacity { short: s, free } => {
                    if let Some(res) = s.first() {
                        short.entry(*res).or_default().push((host, free.get(*res)));
                    }
                }
                Rejection::NotSchedulable { state } => other
                    .entry("cordoned or draining")
                    .or_default()
                    .push(format!("{host} ({state:?})").to_lowercase()),
                Rejection::Tee { has, generation } => other
                    .entry("another TEE kind or an older generation")
                    .or_default()
                    .push(format!("{host} ({has} gen {generation})")),
                Rejection::Untrusted => other
                    .entry("not trusted by attestation")
                    .or_default()
                    .push(host.clone()),
                Rejection::StaleAttestation { age_ms, max_ms } => other
                    .entry("attested too long ago")
                    .or_default()
                    .push(format!(
                        "{host} ({} s, max {} s)",
                        age_ms / 1000,
                        max_ms / 1000
                    )),
                Rejection::Selector { key, want, has } => other
                    .entry("labels do not match")
                    .or_default()
                    .push(format!(
                        "{host} ({key}={}, wants {want})",
                        has.as_deref().unwrap_or("unset")
                    )),
                Rejection::AntiAffinity { key, value, with } => other
                    .entry("anti-affinity")
                    .or_default()
                    .push(format!("{host} ({with} has {key}={value})")),
            }
        }
        for (res, mut hosts) in short {
            hosts.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(b.0)));
            let listed: Vec<String> = hosts
                .iter()
                .take(5)
                .map(|(h, free)| format!("{h} has {}", res.describe(*free)))
                .collect();
            let more = hosts.len().saturating_sub(5);
            parts.push(format!(
                "no host with {} free: {}{}",
                res.describe(self.guarantee.get(res)),
                listed.join(", "),
                if more > 0 {
                    format!(" (and {more} more)")
                } else {
                    String::new()
                }
            ));
        }
        for (why, hosts) in other {
            let more = hosts.len().saturating_sub(5);
            let listed: Vec<&str> = hosts.iter().take(5).map(String::as_str).collect();
            parts.push(format!(
                "{why}: {}{}",
                listed.join(", "),
                if more > 0 {
                    format!(" (and {more} more)")
                } else {
                    String::new()
                }
            ));
        }
        write!(f, "{}", parts.join("; "))
    }
}

/// A host's score for a spec: smaller is better. Integer parts, compared in order.
///
/// Only the resources in play count (the host has some, and the spec or the host's enclaves
/// ask for some): a host's idle GPU says nothing about how well CPU-only enclaves pack.
fn score(h: &HostState, spec: &EnclaveSpec) -> (i64, i64, i64) {
    let cap = &h.host.capacity;
    let after = h.reserved.saturating_add(spec.guarantee);
    let (mut n, mut dominant, mut least) = (0i64, 0i64, i64::MAX);
    for r in Resource::ALL {
        let (c, a) = (cap.get(r), after.get(r));
        if c > 0 && a > 0 {
            let share = share_ppm(a, c) as i64;
            n += 1;
            dominant = dominant.max(share);
            least = least.min(share);
        }
    }
    // Fragmentation: one resource full while another is idle strands the idle one.
    let imbalance = if n == 0 { 0 } else { dominant - least };
    let load = shares_ppm(&h.host.load.saturating_add(spec.guarantee), cap)
        .into_iter()
        .max()
        .unwrap_or(0) as i64;
    match spec.strategy {
        // Most allocated first, in absolute terms: the most CPU promised after placing, less
        // half the imbalance it would leave (capacity stranded behind a used-up resource),
        // counted in millicores of this host; then the less loaded. Filling the hosts that
        // already hold the most before opening another packs tighter than any relative share
        // (which prefers small hosts): on the synthetic workloads of seeds 1-3 (100 hosts,
        // 1,000 enclaves; `migration/tests/properties.rs`) it uses fewer hosts and no more
        // cores than first fit, where the fullest-by-average-share score it replaces used
        // 10-15 % more hosts (bench/README.md).
        Strategy::BinPack => {
            let imbalance_mc = i64::try_from(
                i128::from(imbalance) * i128::from(cap.get(Resource::Cpu)) / 1_000_000,
            )
            .unwrap_or(i64::MAX);
            let promised = i64::try_from(after.get(Resource::Cpu)).unwrap_or(i64::MAX);
            (imbalance_mc / 2 - promised, load, imbalance)
        }
        // Emptiest first, by reservation and by measured load alike.
        Strategy::Spread => (dominant.max(load), imbalance, dominant),
    }
}

/// Places `spec` without changing `view`: the best host, or why there is none (no preemption;
/// see [`place`]).
pub fn choose(
    view: &ClusterView,
    spec: &EnclaveSpec,
    fresh: Freshness,
) -> Result<String, Unplaceable> {
    let mut best: Option<((i64, i64, i64), &str)> = None;
    for h in view.hosts() {
        if admits(view, h, spec, fresh) {
            let s = score(h, spec);
            if best.is_none_or(|(b, _)| s < b) {
                best = Some((s, h.host.id.as_str()));
            }
        }
    }
    match best {
        Some((_, host)) => Ok(host.to_string()),
        None => Err(explain(view, spec, spec.guarantee, fresh, None)),
    }
}

/// Why no host admits `spec` (asking for `guarantee`), host by host; `skip` is left out.
pub(crate) fn explain(
    view: &ClusterView,
    spec: &EnclaveSpec,
    guarantee: Demand,
    fresh: Freshness,
    skip: Option<&str>,
) -> Unplaceable {
    let rejections = view
        .hosts()
        .filter(|h| Some(h.host.id.as_str()) != skip)
        .filter_map(|h| {
            check(view, h, spec, fresh)
                .err()
                .map(|r| (h.host.id.clone(), r))
        })
        .collect();
    Unplaceable {
        enclave: spec.id.clone(),
        guarantee,
        rejections,
    }
}

/// The cheapest set of strictly lower-priority enclaves on `h` whose removal makes room for
/// `spec`: lowest priority first, then the largest (fewest evictions), then id.
fn victims_on(view: &ClusterView, h: &HostState, spec: &EnclaveSpec) -> Option<Vec<Placed>> {
    let mut candidates: Vec<&Placed> = view
        .on_host(&h.host.id)
        .filter(|p| p.spec.priority < spec.priority)
        .collect();
    candidates.sort_by(|a, b| {
        a.spec
            .priority
            .cmp(&b.spec.priority)
            .then_with(|| {
                let sa = shares_ppm(&a.spec.guarantee, &h.host.capacity)
                    .into_iter()
                    .max();
                let sb = shares_ppm(&b.spec.guarantee, &h.host.capacity)
                    .into_iter()
                    .max();
                sb.cmp(&sa)
            })
            .then_with(|| a.spec.id.cmp(&b.spec.id))
    });
    let mut free = h.free();
    let mut chosen = Vec::new();
    for p in candidates {
        if spec.guarantee.fits_in(&free) {
            break;
        }
        free = free.saturating_add(p.spec.guarantee);
        chosen.push(p.clone());
    }
    spec.guarantee.fits_in(&free).then_some(chosen)
}

/// Places `spec` and records it in `view`. When nothing fits and the spec may preempt, the
/// host where the fewest, lowest-priority enclaves make room is chosen; each displaced one is
/// moved to another host if one takes it (without preempting in turn), else suspended.
pub fn place(
    view: &mut ClusterView,
    spec: &EnclaveSpec,
    fresh: Freshness,
) -> Result<Placement, Unplaceable> {
    let unplaceable = match choose(view, spec, fresh) {
        Ok(host) => {
            assign(view, &host, spec);
            return Ok(Placement {
                enclave: spec.id.clone(),
                host,
                displaced: Vec::new(),
            });
        }
        Err(u) => u,
    };
    if !spec.preempt {
        return Err(unplaceable);
    }
    // (highest victim priority, number of victims, host id): smallest wins.
    let mut best: Option<((i32, usize, String), Vec<Placed>)> = None;
    for h in view.hosts() {
        if check_static(view, h, spec, fresh).is_err() {
            continue;
        }
        let Some(victims) = victims_on(view, h, spec) else {
            continue;
        };
        let top = victims
            .iter()
            .map(|v| v.spec.priority)
            .max()
            .unwrap_or(i32::MIN);
        let key = (top, victims.len(), h.host.id.clone());
        if best.as_ref().is_none_or(|(b, _)| key < *b) {
            best = Some((key, victims));
        }
    }
    let Some(((_, _, host), victims)) = best else {
        return Err(unplaceable);
    };
    for v in &victims {
        view.remove(v.id());
    }
    assign(view, &host, spec);
    let mut displaced = Vec::new();
    for v in victims {
        let mut again = v.spec.clone();
        again.preempt = false;
        let to = match choose(view, &again, fresh) {
            Ok(to) => {
                assign(view, &to, &again);
                Some(to)
            }
            Err(_) => None,
        };
        if to.as_deref() == Some(host.as_str()) {
            // It fits back where it was: it was not in the way after all.
            continue;
        }
        displaced.push(Displaced {
            enclave: v.spec.id,
            priority: v.spec.priority,
            from: host.clone(),
            to,
        });
    }
    Ok(Placement {
        enclave: spec.id.clone(),
        host,
        displaced,
    })
}

fn assign(view: &mut ClusterView, host: &str, spec: &EnclaveSpec) {
    // `host` came from the view itself.
    let _ = view.assign(Placed {
        host: host.to_string(),
        spec: spec.clone(),
    });
}

/// Places many at once, in a fixed order: higher priority first, then larger guarantees (big
/// enclaves are hardest to fit later), then id. Each result in the order of `specs`.
pub fn place_all(
    view: &mut ClusterView,
    specs: &[EnclaveSpec],
    fresh: Freshness,
) -> Vec<Result<Placement, Unplaceable>> {
    let mut order: Vec<usize> = (0..specs.len()).collect();
    let size = |s: &EnclaveSpec| (s.guarantee.cpu_millicores, s.guarantee.memory_bytes);
    order.sort_by(|&a, &b| {
        let (x, y) = (&specs[a], &specs[b]);
        y.priority
            .cmp(&x.priority)
            .then_with(|| size(y).cmp(&size(x)))
            .then_with(|| x.id.cmp(&y.id))
    });
    let mut out: Vec<Option<Result<Placement, Unplaceable>>> = vec![None; specs.len()];
    for i in order {
        out[i] = Some(place(view, &specs[i], fresh));
    }
    out.into_iter().flatten().collect()
}
