//! The leader's migration decisions, pure over a state snapshot: which migrations are overdue
//! (rolled back), which enclaves want one (a draining host, the ladder's `migrate` step),
//! where each goes, and the request that starts it (re-checked at apply: `state/live.rs`).

use std::net::SocketAddr;

use tribune_migration::{Demand, Freshness, MigrationConfig, MigrationFacts, target};

use super::LiveConfig;
use crate::state::{
    Enclave, EnclaveState, LiveCause, LivePhase, LiveRequest, Outcome, Schedulable, State, Step,
    check_enclave, check_target, cluster_view_of, demand, restartable, wants_network,
};

/// Migrations past their step's deadline, with why: (enclave, migration id, reason).
pub fn overdue(state: &State, now_ms: i64, cfg: &LiveConfig) -> Vec<(String, String, String)> {
    let prepare = ms(cfg.prepare_timeout_s);
    let transfer = ms(cfg.transfer_timeout_s);
    state
        .live
        .values()
        .filter_map(|m| {
            let why = match (m.phase, m.ready_ms) {
                (LivePhase::Preparing, _) if now_ms.saturating_sub(m.started_ms) > prepare => {
                    format!(
                        "the target {} was not ready within {} s",
                        m.to, cfg.prepare_timeout_s
                    )
                }
                (LivePhase::Transferring, Some(r)) if now_ms.saturating_sub(r) > transfer => {
                    format!(
                        "the source {} did not complete within {} s of the target being ready",
                        m.from, cfg.transfer_timeout_s
                    )
                }
                _ => return None,
            };
            Some((m.enclave.clone(), m.id.clone(), why))
        })
        .collect()
}

fn ms(s: u64) -> i64 {
    i64::try_from(s.saturating_mul(1000)).unwrap_or(i64::MAX)
}

/// Enclaves that should start a live migration now, and why: QEMU enclaves on a draining
/// host, and those the policy ladder put on its `migrate` step; none within its cool-down,
/// and no more than the budget leaves room for. In id order.
pub fn wanted(state: &State, now_ms: i64, cfg: &LiveConfig) -> Vec<(String, LiveCause)> {
    let room = (cfg.budget as usize).saturating_sub(state.live.len());
    if room == 0 {
        return Vec::new();
    }
    let cooled = |id: &str| {
        state
            .live_done
            .iter()
            .rev()
            .find(|m| m.enclave == id)
            .and_then(|m| m.ended_ms)
            .is_none_or(|t| now_ms.saturating_sub(t) >= ms(cfg.cooldown_s))
    };
    state
        .enclaves
        .values()
        .filter(|e| !restartable(e) && e.state != EnclaveState::Stopped)
        .filter(|e| !state.live.contains_key(&e.id) && !state.moves.contains_key(&e.id))
        .filter_map(|e| {
            let host = e.placement.as_ref()?.host.as_str();
            let draining = state
                .hosts
                .get(host)
                .is_some_and(|h| h.schedulable == Schedulable::Draining);
            let ladder = state
                .status
                .get(&e.id)
                .is_some_and(|s| s.ladder.step == Step::Migrate && s.operator_hold.is_none());
            // A drain first: it must empty the host whatever the policy says (and the
            // policy's return rule does not hold a drain back).
            let cause = if draining {
                LiveCause::Drain
            } else if ladder {
                LiveCause::Policy
            } else {
                return None;
            };
            cooled(&e.id).then(|| (e.id.clone(), cause))
        })
        .take(room)
        .collect()
}

/// The host enclave `id` left in its last committed migration, if that migration was made by
/// its policy and ended less than `return_after_s` before `now_ms`, and why it is avoided.
/// (A move by a drain or an operator sets no such memory: a policy may take it back. The
/// memory is the migration history, `LIVE_HISTORY_MAX` entries for the whole cluster: a
/// cluster moving more than that many enclaves within `return_after_s` forgets early.)
pub fn left_by_policy(
    state: &State,
    id: &str,
    now_ms: i64,
    cfg: &LiveConfig,
) -> Option<(String, String)> {
    // Its last move that happened (a later attempt that rolled back moved nothing).
    let m = state
        .live_done
        .iter()
        .rev()
        .find(|m| m.enclave == id && m.phase == LivePhase::Committed)?;
    let ended = m.ended_ms?;
    let ago = now_ms.saturating_sub(ended);
    (m.cause == LiveCause::Policy && ago < ms(cfg.return_after_s)).then(|| {
        (
            m.from.clone(),
            format!(
                "{}: its policy moved enclave {id:?} off it {} s ago ({}); it does not move it \
                 back within {} s (return_after_s)",
                m.from,
                ago / 1000,
                m.id,
                cfg.return_after_s
            ),
        )
    })
}

/// Why `host` cannot take `e` when `e` asks for networking and `host`'s agent gives none
/// (its `Hello` lacks [`tribune_proto::NETWORK_LABEL`]): its NIC could not be built there.
fn no_network(state: &State, e: &Enclave, host: &str) -> Option<String> {
    let gives = state.hosts.get(host).is_some_and(|h| {
        h.labels
            .get(tribune_proto::NETWORK_LABEL)
            .map(String::as_str)
            == Some("true")
    });
    (wants_network(e) && !gives).then(|| {
        format!(
            "host {host:?}: enclave {:?} asks for networking and the agent there gives none (no --subnet)",
            e.id
        )
    })
}

/// Where enclave `id` goes: `to` if given and it passes every check, else the migration
/// planner's choice (`tribune_migration::target`) among the hosts that pass them: room for the
/// enclave's guarantee or its limit (its allocation's), whichever is more, plus
/// `headroom_pct`; the emptiest such host, then the least loaded. A move by its policy
/// (`cause`) never picks the host its policy moved it off within `return_after_s`
/// ([`left_by_policy`]). (The cool-down and budget are the request's own checks,
/// `check_enclave`.)
pub fn choose_target(
    state: &State,
    id: &str,
    to: Option<&str>,
    cause: LiveCause,
    now_ms: i64,
    cfg: &LiveConfig,
) -> Result<String, Outcome> {
    let max_age = ms(cfg.attest_max_age_s);
    let Some(e) = state.enclaves.get(id) else {
        return Err(Outcome::NotFound {
            what: format!("enclave {id:?}"),
        });
    };
    if let Some(to) = to {
        check_target(state, id, to, now_ms, max_age)?;
        if let Some(why) = no_network(state, e, to) {
            return Err(Outcome::NoRoom { reason: why });
        }
        return Ok(to.to_string());
    }
    let mut refusals = Vec::new();
    let avoid = match cause {
        LiveCause::Policy => left_by_policy(state, id, now_ms, cfg),
        LiveCause::Drain | LiveCause::Request => None,
    };
    if let Some((_, why)) = &avoid {
        refusals.push(why.clone());
    }
    let candidates: Vec<&str> = state
        .hosts
        .keys()
        .filter(|h| e.placement.as_ref().is_none_or(|p| p.host != **h))
        .filter(|h| avoid.as_ref().is_none_or(|(a, _)| a != *h))
        .filter(|h| {
            let why = match check_target(state, id, h.as_str(), now_ms, max_age) {
                Ok(()) => no_network(state, e, h),
                Err(o) => Some(reason(&o)),
            };
            why.map(|w| refusals.push(w)).is_none()
        })
        .map(String::as_str)
        .collect();
    // The view holds the enclave where it is (the planner never picks its own host).
    let source = e.placement.as_ref().map(|p| p.host.as_str());
    let hosts: Vec<&str> = candidates.iter().copied().chain(source).collect();
    let view = cluster_view_of(state, &hosts);
    let limit = state
        .allocations
        .get(id)
        .map_or(Demand::ZERO, |a| demand(a.limits));
    let planner = MigrationConfig {
        cooldown_ms: 0,
        max_concurrent: usize::MAX,
        headroom_pct: cfg.headroom_pct,
    };
    let facts = MigrationFacts {
        last_moved_at_ms: None,
        in_flight: 0,
    };
    let fresh = Freshness {
        now_ms,
        attest_max_age_ms: i64::MAX,
    };
    target(&view, id, limit, facts, planner, fresh).map_err(|why| {
        if !candidates.is_empty() {
            refusals.push(why.to_string());
        }
        Outcome::NoRoom {
            reason: if refusals.is_empty() {
                format!("no other host for enclave {id:?}")
            } else {
                format!("no host can take enclave {id:?}: {}", refusals.join("; "))
            },
        }
    })
}

/// An outcome's reason in words.
pub fn reason(o: &Outcome) -> String {
    match o {
        Outcome::NotFound { what } => format!("no {what}"),
        Outcome::Invalid { reason } | Outcome::NoRoom { reason } => reason.clone(),
        Outcome::Conflict { what, .. } => what.clone(),
        o => format!("{o:?}"),
    }
}

/// Where the target's QEMU listens: the host's recorded address (its agent's, as the
/// controller saw it connect) and a port derived from the migration id. `None` when the host
/// has no address.
pub fn listen_for(state: &State, to: &str, id: &str, cfg: &LiveConfig) -> Option<String> {
    let address = state.hosts.get(to)?.address.trim();
    if address.is_empty() {
        return None;
    }
    let ip = match address.parse::<SocketAddr>() {
        Ok(sa) if sa.is_ipv6() => format!("[{}]", sa.ip()),
        Ok(sa) => sa.ip().to_string(),
        Err(_) => address.to_string(),
    };
    // FNV-1a: stable across builds and replicas.
    let mut h: u32 = 0x811c_9dc5;
    for b in id.bytes() {
        h = (h ^ u32::from(b)).wrapping_mul(0x0100_0193);
    }
    let span = u32::from(cfg.port_span.max(1));
    let port = u32::from(cfg.port_base)
        .saturating_add(h % span)
        .min(65_535);
    Some(format!("{ip}:{port}"))
}

/// The request that starts a migration of `id` (checked here as it will be at apply, so a
/// refusal names its reason at once). `nonce` is fresh from the caller ([`super::fresh_nonce`]):
/// the target's evidence must bind it before anything moves.
#[allow(clippy::too_many_arguments)]
pub fn request(
    state: &State,
    id: &str,
    to: Option<&str>,
    cause: LiveCause,
    force: bool,
    actor: &str,
    now_ms: i64,
    cfg: &LiveConfig,
    nonce: [u8; 32],
) -> Result<LiveRequest, Outcome> {
    let Some(epoch) = state
        .enclaves
        .get(id)
        .map(|e| e.placement.as_ref().map_or(0, |p| p.epoch))
    else {
        return Err(Outcome::NotFound {
            what: format!("enclave {id:?}"),
        });
    };
    let mut r = LiveRequest {
        id: format!("mig-{now_ms}-{id}"),
        enclave: id.to_string(),
        to: String::new(),
        epoch,
        listen: String::new(),
        cause,
        force,
        budget: cfg.budget,
        cooldown_ms: ms(cfg.cooldown_s),
        attest_max_age_ms: ms(cfg.attest_max_age_s),
        actor: actor.to_string(),
        nonce: hex::encode(nonce),
        verdict_max_age_ms: state
            .enclaves
            .get(id)
            .and_then(|e| state.reattest_every_ms(e))
            .unwrap_or(0),
    };
    // The enclave's own checks first (QEMU, placed, not migrating, budget, cool-down): then
    // the target.
    check_enclave(state, &r, now_ms)?;
    r.to = match to {
        Some(t) => t.to_string(),
        None => choose_target(state, id, None, cause, now_ms, cfg)?,
    };
    check_target(state, id, &r.to, now_ms, r.attest_max_age_ms)?;
    r.listen = listen_for(state, &r.to, &r.id, cfg).ok_or_else(|| Outcome::NoRoom {
        reason: format!(
            "host {:?} has no address recorded (its agent has never connected): nothing to send the enclave to",
            r.to
        ),
    })?;
    Ok(r)
}

#[cfg(test)]
#[path = "decide_tests.rs"]
mod tests;
