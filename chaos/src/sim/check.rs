//! The invariants, checked after every step against the simulation's ground truth (what each
//! agent enforces, what each enclave demands, the committed state), never against what the
//! code under test says about itself.
//!
//! 1. **Plans only move forward**: an agent's applied plan version never goes down, and what
//!    it enforces changes only with a newer plan (DESIGN.md §4.6, plan versions only rise).
//! 2. **Fail-safe when cut off**: while an agent has no stream, what it enforces does not
//!    change at all (DESIGN.md §4: a cut-off agent keeps its last plan).
//! 3. **The usage chain has no gap and no duplicate**: each digest the log accepts continues
//!    the enclave's confirmed point (`first_seq = last + 1`) or declares the seqs it skips
//!    (`unaccounted_from = last + 1`); the confirmed point never goes back (§6.4).
//! 4. **Violations are enforced within the budget**: an enclave demanding more than its limit,
//!    on a host connected to a controller while a leader exists, has its CPU capped at the
//!    limit or is suspended within [`BUDGET_MS`] (§6.5). Judged on seeds whose network keeps
//!    the stream's guarantees (in order, no loss within a stream); on lossy seeds only the
//!    safety invariants are.
//! 5. **Suspension is sticky**: no operator acts in the simulation, so an enclave suspended
//!    (in the state or on its host) is never resumed.

use std::collections::BTreeMap;

use tribune_agent::plan::{Plan, RunState};
use tribune_controller::state::{Command, EnclaveState, State, UsageDigest};

use super::Stats;
use super::world::LIMIT_MC;

/// How long a connected host may run an over-limit enclave unenforced: the report window,
/// the decision, a Raft write, the plan's delivery, doubled for lost and re-sent messages.
pub const BUDGET_MS: u64 = 5_000;

/// A broken invariant, saying which and where.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum Violation {
    #[error("plan order: host {host} applied plan version {applied} after version {before}")]
    PlanOrder {
        host: String,
        before: u64,
        applied: u64,
    },
    #[error("enforcement changed without a newer plan on host {host} (version {version}): {what}")]
    ChangedWithoutPlan {
        host: String,
        version: u64,
        what: String,
    },
    #[error("host {host} is cut off and its enforcement changed: {what}")]
    ChangedWhileCutOff { host: String, what: String },
    #[error("usage chain of {enclave}: {what}")]
    Chain { enclave: String, what: String },
    #[error(
        "enclave {enclave} on connected host {host} demanded {demand_mc}m over its {limit_mc}m limit for {over_ms} ms without being capped or suspended"
    )]
    NotEnforced {
        host: String,
        enclave: String,
        demand_mc: u64,
        limit_mc: u64,
        over_ms: u64,
    },
    #[error("enclave {enclave} was suspended and is running again without an operator: {where_}")]
    Resumed { enclave: String, where_: String },
}

/// The log's confirmed point of one enclave, as the checker last saw it.
#[derive(Clone, Debug, PartialEq, Eq)]
struct Point {
    key: String,
    last_seq: u64,
}

/// What a digest write is checked against.
pub struct Before {
    digest: Option<UsageDigest>,
    confirmed: Option<Point>,
}

#[derive(Default)]
pub struct Checker {
    /// Per host: the plan applied at the last check.
    applied: Vec<Option<Plan>>,
    /// Per host: whether it had a stream at the last check.
    streamed: Vec<bool>,
    /// Per enclave: the confirmed point the checker accepted.
    chain: BTreeMap<String, Point>,
    /// Per (host, enclave): since when it is over its limit while connected (sim ms).
    over_since: BTreeMap<String, u64>,
    /// Enclaves the state ever suspended; enclaves a host ever froze.
    suspended: BTreeMap<String, ()>,
    frozen: BTreeMap<String, ()>,
}

fn point(state: &State, enclave: &str) -> Option<Point> {
    let c = state.status.get(enclave)?.confirmed.as_ref()?;
    Some(Point {
        key: c.key.clone(),
        last_seq: c.last_seq,
    })
}

/// One agent's view for the checks.
pub struct HostView<'a> {
    pub host: &'a str,
    pub applied: Option<&'a Plan>,
    /// (enclave, demand in millicores).
    pub enclaves: Vec<(&'a str, u64)>,
    pub stream_up: bool,
    /// Stream up, a leader to write through, and a transport that keeps its guarantees
    /// (the budget is judged only then).
    pub connected: bool,
}

impl Checker {
    pub fn new(hosts: usize) -> Checker {
        Checker {
            applied: vec![None; hosts],
            streamed: vec![false; hosts],
            ..Checker::default()
        }
    }

    pub fn before_write(&self, state: &State, cmd: &Command) -> Before {
        match cmd {
            Command::UsageDigests { digests, .. } if digests.len() == 1 => Before {
                digest: digests.first().cloned(),
                confirmed: digests.first().and_then(|d| point(state, &d.enclave)),
            },
            _ => Before {
                digest: None,
                confirmed: None,
            },
        }
    }

    /// Invariant 3, per digest the log was asked to accept.
    pub fn after_write(
        &mut self,
        before: Before,
        state: &State,
        stats: &mut Stats,
    ) -> Result<(), Violation> {
        let Some(d) = before.digest else {
            return Ok(());
        };
        stats.checks += 1;
        let after = point(state, &d.enclave);
        if after == before.confirmed {
            return Ok(()); // refused: nothing accounted
        }
        let chain_err = |what: String| Violation::Chain {
            enclave: d.enclave.clone(),
            what,
        };
        let Some(after) = after else {
            return Err(chain_err("the confirmed point vanished".into()));
        };
        if after.key != d.key || after.last_seq != d.last_seq {
            return Err(chain_err(format!(
                "the log confirms {}:{} after a digest ending at {}:{}",
                after.key, after.last_seq, d.key, d.last_seq
            )));
        }
        let last = match self.chain.get(&d.enclave) {
            Some(p) if p.key == d.key => p.last_seq,
            _ => 0, // a new key starts a new chain at seq 1
        };
        let starts = d.unaccounted_from.unwrap_or(d.first_seq);
        if starts != last + 1 || d.first_seq < last + 1 || d.first_seq > d.last_seq {
            return Err(chain_err(format!(
                "accepted span {}..={} (unaccounted from {:?}) after confirmed seq {last}: {}",
                d.first_seq,
                d.last_seq,
                d.unaccounted_from,
                if d.first_seq <= last {
                    "a duplicate"
                } else {
                    "a gap"
                }
            )));
        }
        stats.digests_accepted += 1;
        self.chain.insert(d.enclave.clone(), after);
        Ok(())
    }

    /// Every invariant after a step; returns how many checks ran.
    pub fn check(
        &mut self,
        now_ms: u64,
        state: &State,
        hosts: &[HostView],
        stats: &mut Stats,
    ) -> Result<u64, Violation> {
        let mut n = 0;
        for (i, h) in hosts.iter().enumerate() {
            n += self.check_plans(i, h, stats)?;
            n += self.check_budget(now_ms, h)?;
        }
        // Invariant 3 between writes: the confirmed point never goes back.
        for (id, p) in &self.chain {
            n += 1;
            match point(state, id) {
                Some(now) if now.key == p.key && now.last_seq < p.last_seq => {
                    return Err(Violation::Chain {
                        enclave: id.clone(),
                        what: format!(
                            "confirmed seq went back from {} to {}",
                            p.last_seq, now.last_seq
                        ),
                    });
                }
                None => {
                    return Err(Violation::Chain {
                        enclave: id.clone(),
                        what: "the confirmed point vanished".into(),
                    });
                }
                _ => {}
            }
        }
        // Invariant 5 in the state.
        for (id, e) in &state.enclaves {
            n += 1;
            if e.state == EnclaveState::Suspended {
                if self.suspended.insert(id.clone(), ()).is_none() {
                    stats.suspensions += 1;
                }
            } else if self.suspended.contains_key(id) && e.state != EnclaveState::Migrating {
                return Err(Violation::Resumed {
                    enclave: id.clone(),
                    where_: format!("the state says {:?}", e.state),
                });
            }
        }
        Ok(n)
    }

    /// Invariants 1, 2 and 5 on one host.
    fn check_plans(&mut self, i: usize, h: &HostView, stats: &mut Stats) -> Result<u64, Violation> {
        let mut n = 3;
        let prev = self.applied[i].take();
        let was_up = std::mem::replace(&mut self.streamed[i], h.stream_up);
        if let (Some(p), Some(a)) = (&prev, h.applied) {
            if a.version < p.version {
                return Err(Violation::PlanOrder {
                    host: h.host.to_string(),
                    before: p.version,
                    applied: a.version,
                });
            }
            if a.version == p.version && a != p {
                return Err(Violation::ChangedWithoutPlan {
                    host: h.host.to_string(),
                    version: a.version,
                    what: diff(p, a),
                });
            }
            if !was_up && !h.stream_up && a != p {
                return Err(Violation::ChangedWhileCutOff {
                    host: h.host.to_string(),
                    what: diff(p, a),
                });
            }
        }
        if let Some(a) = h.applied {
            for (name, e) in &a.enclaves {
                n += 1;
                match e.state {
                    RunState::Suspend => {
                        self.frozen.insert(name.clone(), ());
                    }
                    RunState::Run if self.frozen.contains_key(name) => {
                        return Err(Violation::Resumed {
                            enclave: name.clone(),
                            where_: format!("host {} runs it (plan {})", h.host, a.version),
                        });
                    }
                    RunState::Run => {}
                }
                let capped = e.limits.cpu_millicores.is_some_and(|c| c <= LIMIT_MC);
                let was = prev
                    .as_ref()
                    .and_then(|p| p.enclaves.get(name))
                    .is_some_and(|p| p.limits.cpu_millicores.is_some_and(|c| c <= LIMIT_MC));
                if capped && !was {
                    stats.throttles += 1;
                }
            }
        }
        self.applied[i] = h.applied.cloned();
        Ok(n)
    }

    /// Invariant 4 on one host.
    fn check_budget(&mut self, now_ms: u64, h: &HostView) -> Result<u64, Violation> {
        let mut n = 0;
        for (name, demand) in &h.enclaves {
            n += 1;
            let key = format!("{}/{name}", h.host);
            let over = (*demand as f64) > LIMIT_MC as f64 * 1.05;
            let planned = h.applied.and_then(|p| p.enclaves.get(*name));
            let enforced = planned.is_some_and(|p| {
                p.state == RunState::Suspend
                    || p.limits.cpu_millicores.is_some_and(|c| c <= LIMIT_MC)
            });
            if !over || !h.connected || enforced {
                self.over_since.remove(&key);
                continue;
            }
            let since = *self.over_since.entry(key).or_insert(now_ms);
            if now_ms - since > BUDGET_MS {
                return Err(Violation::NotEnforced {
                    host: h.host.to_string(),
                    enclave: name.to_string(),
                    demand_mc: *demand,
                    limit_mc: LIMIT_MC,
                    over_ms: now_ms - since,
                });
            }
        }
        Ok(n)
    }
}

fn diff(a: &Plan, b: &Plan) -> String {
    let mut out = Vec::new();
    for (name, x) in &a.enclaves {
        match b.enclaves.get(name) {
            Some(y) if x != y => out.push(format!(
                "{name}: cpu {:?}→{:?}, {:?}→{:?}",
                x.limits.cpu_millicores, y.limits.cpu_millicores, x.state, y.state
            )),
            None => out.push(format!("{name}: dropped")),
            _ => {}
        }
    }
    out.join("; ")
}
