//! The migration manager: live migration of QEMU enclaves, driven from the leader
//! (docs/protocol.md "Live migration"). The decisions are pure ([`decide`]); this module is
//! their I/O: a loop on every controller that acts only while it leads.
//!
//! Every step lives in the replicated state (`state/live.rs`), and the sessions holding the
//! hosts' streams tell each agent its step from it (`attest/session/migrate.rs`). So the
//! leader keeps nothing a failover could lose: a new leader reads the migrations under way
//! and goes on — a step its agents report is committed as before, and a migration stuck at a
//! step (the old leader's agent gone, a report lost) is rolled back at its deadline. A
//! migration is committed only by the source's `completed`; until then the source's plan
//! still runs it under its epoch, and a rollback resumes it there.
//!
//! Each tick the leader: rolls back migrations past their step's deadline
//! ([`decide::overdue`]); starts migrations for QEMU enclaves on draining hosts and for those
//! the policy ladder put on its `migrate` step ([`decide::wanted`]), within the cluster's
//! budget and each enclave's cool-down. An operator's `POST /v1/enclaves/{id}/migrate`
//! starts one directly (`api/migrate.rs`).

pub mod decide;

use std::sync::{Arc, Weak};
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::attest::session::wall_ms;
use crate::node::Controller;
use crate::state::{Command, LiveCause, Outcome};

/// How often the leader looks at the migrations.
const TICK: Duration = Duration::from_millis(250);

/// Live-migration settings (`[migration]` in `controller.toml`). Every controller of a
/// cluster should hold the same; a request carries the proposer's (budget, cool-down,
/// freshness), so every replica applies the same rule.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LiveConfig {
    /// Live migrations under way in the whole cluster at most.
    pub budget: u32,
    /// After a migration of an enclave ends, how long before the next one (unless forced).
    pub cooldown_s: u64,
    /// A target's last sign of trusted attestation (its agent's stream recorded, or a trusted
    /// verdict on evidence it relayed) must be at most this old.
    pub attest_max_age_s: u64,
    /// A target chosen for an enclave must have room for its guarantee or its limit, whichever
    /// is more, plus this much, in percent (`tribune_migration::target`): a move is for relief.
    pub headroom_pct: u64,
    /// Hysteresis: an enclave its policy moved off a host is not moved back there by its
    /// policy within this long of arriving (a drain or an operator's request may). The
    /// cool-down bounds how often an enclave moves; this, that it does not oscillate
    /// between two hosts whenever the cool-down ends (A → B → A …).
    pub return_after_s: u64,
    /// The target must say it is ready (QEMU started, paused, listening) within this long.
    pub prepare_timeout_s: u64,
    /// The source must complete within this long of the target being ready.
    pub transfer_timeout_s: u64,
    /// QEMU's `downtime-limit` (0: the agent's default, 100 ms).
    pub downtime_limit_ms: u64,
    /// QEMU's `max-bandwidth` (0: the agent's default, 10 GiB/s).
    pub max_bandwidth_bytes_per_sec: u64,
    /// The target listens on a port in `[port_base, port_base + port_span)`, derived from
    /// the migration id. The default, 7500–7999, lies below the kernel's ephemeral range
    /// (32768–60999 on Linux), where any outgoing connection on the host could hold the port a
    /// target's QEMU is about to bind, and next to the controllers' own 74xx ports (one
    /// firewall rule for both).
    pub port_base: u16,
    pub port_span: u16,
}

impl Default for LiveConfig {
    fn default() -> Self {
        LiveConfig {
            budget: 2,
            cooldown_s: 60,
            attest_max_age_s: 600,
            headroom_pct: 10,
            return_after_s: 600,
            prepare_timeout_s: 60,
            transfer_timeout_s: 150,
            downtime_limit_ms: 0,
            max_bandwidth_bytes_per_sec: 0,
            port_base: 7_500,
            port_span: 500,
        }
    }
}

/// A fresh migration nonce (`LiveRequest::nonce`): unpredictable before the `MigrateIn` that
/// carries it, so the target's evidence bound to it was made for this migration.
pub fn fresh_nonce() -> [u8; 32] {
    use rand_core::RngCore;
    let mut n = [0u8; 32];
    rand_core::OsRng.fill_bytes(&mut n);
    n
}

fn leads(c: &Controller) -> bool {
    c.leader().is_some_and(|(id, _)| id == c.id)
}

/// The leader's loop (started with the controller; ends when it stops).
pub async fn run(controller: Weak<Controller>) {
    let mut tick = tokio::time::interval(TICK);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        let Some(c) = controller.upgrade() else {
            return;
        };
        if c.stopping.is_cancelled() {
            return;
        }
        if !leads(&c) {
            continue;
        }
        once(&c).await;
    }
}

/// One tick of the leader's work.
async fn once(c: &Arc<Controller>) {
    let cfg = &c.config.migration;
    let now = wall_ms();
    let (aborts, starts) = {
        let st = c
            .state
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if st.live.is_empty() && st.enclaves.is_empty() {
            return;
        }
        let aborts: Vec<Command> = decide::overdue(&st, now, cfg)
            .into_iter()
            .map(|(enclave, id, reason)| Command::MigrateAbort {
                enclave,
                id,
                reason,
                at_ms: now,
            })
            .collect();
        let starts: Vec<Command> = decide::wanted(&st, now, cfg)
            .into_iter()
            .filter_map(|(id, cause)| {
                let actor = match cause {
                    LiveCause::Drain => "controller:drain",
                    LiveCause::Policy => "controller:policy",
                    LiveCause::Request => "controller",
                };
                match decide::request(&st, &id, None, cause, false, actor, now, cfg, fresh_nonce()) {
                    Ok(request) => Some(Command::MigrateStart {
                        request,
                        at_ms: now,
                    }),
                    Err(o) => {
                        tracing::debug!(enclave = %id, ?cause, "no live migration now: {}", decide::reason(&o));
                        None
                    }
                }
            })
            .collect();
        (aborts, starts)
    };
    for cmd in aborts.into_iter().chain(starts) {
        match c.write(vec![cmd]).await {
            Ok(outs) => {
                for o in outs {
                    match o {
                        Outcome::Migration(m) => {
                            tracing::info!(migration = %m.id, enclave = %m.enclave, from = %m.from, to = %m.to, phase = ?m.phase, reason = %m.reason, "live migration");
                        }
                        o => tracing::debug!("live migration step refused: {}", decide::reason(&o)),
                    }
                }
            }
            Err(e) => tracing::warn!("live migration step: {e}"),
        }
    }
}
