//! What the scheduler sees: a snapshot of the hosts and the enclaves placed on them. Built by
//! the controller from its replicated state (one conversion, at the edge); nothing here reads
//! a clock or a file.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use tribune_attest::TeeKind;

use crate::demand::Demand;

/// Whether new enclaves may land on a host.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub enum Schedulable {
    #[default]
    Ready,
    /// Nothing new lands here; what runs stays.
    Cordoned,
    /// Nothing new lands here, and what runs is being moved off.
    Draining,
}

/// One host as the scheduler sees it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HostView {
    pub id: String,
    pub capacity: Demand,
    /// What the host measured in use (for scoring only: guarantees are placed against
    /// `capacity`, never against a momentary low load).
    #[serde(default)]
    pub load: Demand,
    pub tee: TeeKind,
    /// The TEE's generation (firmware / TCB level) the host's last verdict reported.
    #[serde(default)]
    pub tee_generation: u32,
    /// The host's last attestation verdict was trusted.
    pub trusted: bool,
    /// When that verdict was made (Unix ms).
    pub verified_at_ms: i64,
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
    #[serde(default)]
    pub schedulable: Schedulable,
}

/// An enclave placed on a host, with what it asked for (so a displaced one can be placed
/// again elsewhere).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Placed {
    pub host: String,
    pub spec: EnclaveSpec,
}

impl Placed {
    pub fn id(&self) -> &str {
        &self.spec.id
    }
}

/// How the policy asks enclaves to be packed.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub enum Strategy {
    /// Fill the host with the most CPU promised that fits, in absolute terms (fewer hosts in
    /// use, room kept for big enclaves).
    #[default]
    BinPack,
    /// Use the emptiest host (less interference, smaller blast radius).
    Spread,
}

/// What an enclave asks of the host it lands on.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EnclaveSpec {
    pub id: String,
    pub tee: TeeKind,
    /// Lowest TEE generation accepted (0: any).
    #[serde(default)]
    pub min_tee_generation: u32,
    /// Reserved on the host for as long as the enclave is placed there.
    pub guarantee: Demand,
    #[serde(default)]
    pub priority: i32,
    /// May displace strictly lower-priority enclaves when nothing else fits.
    #[serde(default)]
    pub preempt: bool,
    /// Host labels that must all match (affinity).
    #[serde(default)]
    pub host_selector: BTreeMap<String, String>,
    /// Label keys: never share a host with another enclave that has the same value for any of
    /// these keys (anti-affinity, e.g. `app` to spread replicas).
    #[serde(default)]
    pub anti_affinity: Vec<String>,
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
    #[serde(default)]
    pub strategy: Strategy,
}

/// The whole snapshot. Hosts and placements are kept in id order, so every result is a pure
/// function of the contents, whatever order they were collected in.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ClusterView {
    hosts: BTreeMap<String, HostState>,
    placed: BTreeMap<String, Placed>,
}

/// A host and what is reserved on it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostState {
    pub host: HostView,
    /// Sum of the guarantees of the enclaves placed here.
    pub reserved: Demand,
    /// Enclave ids placed here.
    pub enclaves: Vec<String>,
    /// How many enclaves placed here carry each label value (key → value → count), so an
    /// anti-affinity check is a lookup, not a scan.
    labels_in_use: BTreeMap<String, BTreeMap<String, u32>>,
}

impl HostState {
    /// Capacity not yet promised to anyone.
    pub fn free(&self) -> Demand {
        self.host.capacity.saturating_sub(self.reserved)
    }

    /// How many enclaves here carry `key=value`.
    pub fn with_label(&self, key: &str, value: &str) -> u32 {
        self.labels_in_use
            .get(key)
            .and_then(|m| m.get(value))
            .copied()
            .unwrap_or(0)
    }
}

/// A placement that refers to a host the view does not have.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("enclave {enclave} is placed on host {host}, which is not in the view")]
pub struct UnknownHost {
    pub enclave: String,
    pub host: String,
}

impl ClusterView {
    pub fn new(
        hosts: impl IntoIterator<Item = HostView>,
        placed: impl IntoIterator<Item = Placed>,
    ) -> Result<Self, UnknownHost> {
        let mut view = ClusterView {
            hosts: hosts
                .into_iter()
                .map(|h| {
                    (
                        h.id.clone(),
                        HostState {
                            host: h,
                            reserved: Demand::ZERO,
                            enclaves: Vec::new(),
                            labels_in_use: BTreeMap::new(),
                        },
                    )
                })
                .collect(),
            placed: BTreeMap::new(),
        };
        let mut placed: Vec<Placed> = placed.into_iter().collect();
        placed.sort_by(|a, b| a.spec.id.cmp(&b.spec.id));
        for p in placed {
            view.assign(p)?;
        }
        Ok(view)
    }

    pub fn hosts(&self) -> impl Iterator<Item = &HostState> {
        self.hosts.values()
    }

    pub fn host(&self, id: &str) -> Option<&HostState> {
        self.hosts.get(id)
    }

    pub fn placed(&self, enclave: &str) -> Option<&Placed> {
        self.placed.get(enclave)
    }

    pub fn all_placed(&self) -> impl Iterator<Item = &Placed> {
        self.placed.values()
    }

    /// Records `p` on its host (replacing an earlier placement of the same enclave).
    pub fn assign(&mut self, p: Placed) -> Result<(), UnknownHost> {
        if !self.hosts.contains_key(&p.host) {
            return Err(UnknownHost {
                enclave: p.spec.id,
                host: p.host,
            });
        }
        self.remove(&p.spec.id);
        if let Some(h) = self.hosts.get_mut(&p.host) {
            h.reserved = h.reserved.saturating_add(p.spec.guarantee);
            h.enclaves.push(p.spec.id.clone());
            for (k, v) in &p.spec.labels {
                *h.labels_in_use
                    .entry(k.clone())
                    .or_default()
                    .entry(v.clone())
                    .or_default() += 1;
            }
        }
        self.placed.insert(p.spec.id.clone(), p);
        Ok(())
    }

    /// Takes an enclave off its host; what it was, if placed.
    pub fn remove(&mut self, enclave: &str) -> Option<Placed> {
        let p = self.placed.remove(enclave)?;
        if let Some(h) = self.hosts.get_mut(&p.host) {
            h.reserved = h.reserved.saturating_sub(p.spec.guarantee);
            h.enclaves.retain(|e| e != enclave);
            for (k, v) in &p.spec.labels {
                if let Some(values) = h.labels_in_use.get_mut(k) {
                    if let Some(n) = values.get_mut(v) {
                        *n = n.saturating_sub(1);
                        if *n == 0 {
                            values.remove(v);
                        }
                    }
                    if values.is_empty() {
                        h.labels_in_use.remove(k);
                    }
                }
            }
        }
        Some(p)
    }

    /// Enclaves placed on `host`, in the order they were assigned.
    pub fn on_host<'a>(&'a self, host: &'a str) -> impl Iterator<Item = &'a Placed> + 'a {
        self.hosts
            .get(host)
            .into_iter()
            .flat_map(|h| h.enclaves.iter())
            .filter_map(|e| self.placed.get(e))
    }
}
