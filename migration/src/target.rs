//! The target of a `migrate` decision: another host that can honour the enclave's guarantee
//! (and its limit, with headroom), of the same TEE kind, freshly attested — or why there is
//! none, or why not now (cool-down, the cluster-wide budget of concurrent migrations).

use serde::{Deserialize, Serialize};

use crate::demand::{Demand, shares_ppm};
use crate::filter::{Freshness, Rejection, admits, check};
use crate::place::{Unplaceable, explain};
use crate::view::{ClusterView, EnclaveSpec, HostState};

/// Migration settings (product defaults in [`MigrationConfig::default`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct MigrationConfig {
    /// An enclave moved less than this ago is not moved again (no ping-pong).
    pub cooldown_ms: i64,
    /// At most this many migrations at once in the whole cluster.
    pub max_concurrent: usize,
    /// The target must have this much more than the enclave needs, in percent.
    pub headroom_pct: u64,
}

impl Default for MigrationConfig {
    fn default() -> Self {
        MigrationConfig {
            cooldown_ms: 5 * 60 * 1000,
            max_concurrent: 2,
            headroom_pct: 10,
        }
    }
}

/// What the planner knows about migrations besides the view.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MigrationFacts {
    /// When this enclave last finished moving (Unix ms), if ever.
    pub last_moved_at_ms: Option<i64>,
    /// Migrations in flight in the whole cluster now.
    pub in_flight: usize,
}

/// Why an enclave is not moved now.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error, Serialize, Deserialize)]
pub enum NotNow {
    #[error("enclave {0} is not placed")]
    NotPlaced(String),
    #[error("enclave {enclave} moved {ago_ms} ms ago; it may move again in {wait_ms} ms")]
    CoolingDown {
        enclave: String,
        ago_ms: i64,
        wait_ms: i64,
    },
    #[error("{in_flight} migrations are in flight (at most {max} at once); it waits its turn")]
    Budget { in_flight: usize, max: usize },
    #[error("{0}")]
    NoTarget(Unplaceable),
}

/// Needs of the move: the guarantee, and the limit the enclave may use, plus headroom.
fn needs(spec: &EnclaveSpec, limit: Demand, headroom_pct: u64) -> Demand {
    spec.guarantee.max(limit).with_headroom(headroom_pct)
}

/// The best other host for `enclave`, which is placed in `view` with the given `limit`.
/// Same filters as placement (TEE kind and generation, trusted and freshly attested,
/// selectors, anti-affinity) against the enclave's needs with headroom, never its own host.
/// Among the candidates the emptiest wins (a move is for relief, not for packing), then the
/// least loaded, then id.
pub fn target(
    view: &ClusterView,
    enclave: &str,
    limit: Demand,
    facts: MigrationFacts,
    cfg: MigrationConfig,
    fresh: Freshness,
) -> Result<String, NotNow> {
    let placed = view
        .placed(enclave)
        .ok_or_else(|| NotNow::NotPlaced(enclave.to_string()))?;
    if let Some(at) = facts.last_moved_at_ms {
        let ago_ms = fresh.now_ms.saturating_sub(at);
        if ago_ms < cfg.cooldown_ms {
            return Err(NotNow::CoolingDown {
                enclave: enclave.to_string(),
                ago_ms,
                wait_ms: cfg.cooldown_ms - ago_ms,
            });
        }
    }
    if facts.in_flight >= cfg.max_concurrent {
        return Err(NotNow::Budget {
            in_flight: facts.in_flight,
            max: cfg.max_concurrent,
        });
    }
    let mut spec = placed.spec.clone();
    spec.guarantee = needs(&placed.spec, limit, cfg.headroom_pct);
    let mut best: Option<((u64, u64), &HostState)> = None;
    for h in view.hosts() {
        if h.host.id == placed.host || !admits(view, h, &spec, fresh) {
            continue;
        }
        let key = (
            shares_ppm(&h.reserved.saturating_add(spec.guarantee), &h.host.capacity)
                .into_iter()
                .max()
                .unwrap_or(0),
            shares_ppm(&h.host.load, &h.host.capacity)
                .into_iter()
                .max()
                .unwrap_or(0),
        );
        if best.is_none_or(|(b, _)| key < b) {
            best = Some((key, h));
        }
    }
    match best {
        Some((_, h)) => Ok(h.host.id.clone()),
        None => Err(NotNow::NoTarget(explain(
            view,
            &spec,
            spec.guarantee,
            fresh,
            Some(&placed.host),
        ))),
    }
}

/// Whether a requested target (`--to HOST`) is acceptable; the rejection says why not.
pub fn check_target(
    view: &ClusterView,
    enclave: &str,
    to: &str,
    limit: Demand,
    cfg: MigrationConfig,
    fresh: Freshness,
) -> Result<(), TargetRefused> {
    let placed = view
        .placed(enclave)
        .ok_or_else(|| TargetRefused::NotPlaced(enclave.to_string()))?;
    if placed.host == to {
        return Err(TargetRefused::SameHost(to.to_string()));
    }
    let h = view
        .host(to)
        .ok_or_else(|| TargetRefused::UnknownHost(to.to_string()))?;
    let mut spec = placed.spec.clone();
    spec.guarantee = needs(&placed.spec, limit, cfg.headroom_pct);
    check(view, h, &spec, fresh).map_err(|r| TargetRefused::Filtered {
        host: to.to_string(),
        why: r,
    })
}

/// Why a requested target is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TargetRefused {
    #[error("enclave {0} is not placed")]
    NotPlaced(String),
    #[error("enclave is already on host {0}")]
    SameHost(String),
    #[error("no host {0}")]
    UnknownHost(String),
    #[error("host {host} cannot take it: {why:?}")]
    Filtered { host: String, why: Rejection },
}
