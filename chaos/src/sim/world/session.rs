//! The controller side of the simulated world: a session's handling of agent messages, its
//! decisions and its tick (flush, acknowledge, push the plan), over the real ledger,
//! `decide_host`, `plan_for` and `State::apply`; and [`World::describe`] for tracing a seed.

use std::collections::BTreeMap;

use tribune_controller::attest::decide::{Input, decide_host};
use tribune_controller::attest::plan::plan_for;
use tribune_controller::state::{Command, Enclave};
use tribune_proto::v1 as pb;

use super::{BARRIER_STEPS, Body, FLUSH_MS, World};

impl World {
    // ----- controller side -----------------------------------------------------------------

    pub(super) fn on_agent_message(&mut self, a: usize, b: pb::agent_message::Body) {
        use pb::agent_message::Body as B;
        let at = self.instant();
        let Some(s) = self.sessions[a].as_mut() else {
            return;
        };
        let now_ns = s.clock.ns_at(at);
        let mut refused = Vec::new();
        match b {
            B::Replay(b) => s.ledger.replay(b, &mut refused),
            B::Checkpoints(b) => s.ledger.checkpoints(b, now_ns, &mut refused),
            B::Usage(b) => {
                s.ledger
                    .usage(b, now_ns, &self.wanted, &|_| true, &mut refused);
                // The session decides after every usage batch.
                if !self.decide(a) {
                    self.drop_stream(a);
                }
            }
            _ => {}
        }
        if self.trace {
            for r in &refused {
                self.log.push(format!("refused {r:?}"));
            }
        }
    }

    /// Writes through the leader; `None` when there is none (the session's write fails and
    /// its stream ends).
    fn write(&mut self, cmd: Command) -> Option<tribune_controller::state::Outcome> {
        self.leader?;
        let before = self.checker.before_write(&self.state, &cmd);
        let out = self.state.apply(cmd);
        if let Err(v) = self
            .checker
            .after_write(before, &self.state, &mut self.stats)
        {
            self.violation.get_or_insert(v);
        }
        Some(out)
    }

    /// The session's `caught_up`: `Some(true)` once its controller has applied the log since
    /// the stream began (a read barrier passed), `Some(false)` while the barrier waits, `None`
    /// when it gave up (the stream ends). `Bugs::unchecked_decisions` skips it.
    fn caught_up(&mut self, a: usize) -> Option<bool> {
        let step = self.step;
        let unchecked = self.bugs.unchecked_decisions;
        let s = self.sessions[a].as_mut()?;
        if s.caught_up || unchecked {
            return Some(true);
        }
        if self.controllers[s.controller].behind.is_none() {
            s.caught_up = true;
            s.barrier_since = None;
            return Some(true);
        }
        let since = *s.barrier_since.get_or_insert(step);
        (step - since < BARRIER_STEPS).then_some(false)
    }

    /// The session's `decide`: the inputs of every enclave placed on this host (a copy of the
    /// shell's assembly), `decide_host`, and the changes proposed through Raft. `false` when
    /// the write failed or the stream ends.
    fn decide(&mut self, a: usize) -> bool {
        match self.caught_up(a) {
            None => return false,
            Some(false) => return true,
            Some(true) => {}
        }
        let Some(s) = self.sessions[a].as_ref() else {
            return true;
        };
        let host = self.agents[a].host.clone();
        let now = self.wall_ms(s.controller);
        // What its controller has applied, which may be behind the log.
        let view = self.view(s.controller);
        let placed: Vec<Enclave> = view
            .enclaves
            .values()
            .filter(|e| e.placement.as_ref().is_some_and(|p| p.host == host))
            .cloned()
            .collect();
        let empty = BTreeMap::new();
        let inputs: Vec<Input> = placed
            .iter()
            .map(|e| {
                let t = s.ledger.get(&e.id);
                Input {
                    enclave: e,
                    status: view.status.get(&e.id),
                    allocation: view.allocations.get(&e.id),
                    observation: t.and_then(|t| t.observation.as_ref()),
                    held_since: t.map_or(&empty, |t| &t.held_since),
                    accounting_broken_ms: s
                        .ledger
                        .accounting_broken_since(&e.id)
                        .map(|since| u64::try_from(now.saturating_sub(since)).unwrap_or(0)),
                }
            })
            .collect();
        let outs = decide_host(&self.policies, &inputs, now);
        drop(inputs);
        let mut changes = Vec::new();
        let Some(s) = self.sessions[a].as_mut() else {
            return true;
        };
        for (e, o) in placed.iter().zip(outs) {
            if let Some(t) = s.ledger.get_mut(&e.id) {
                t.held_since = o.held_since;
            }
            if let Some(mut en) = o.enforcement {
                if self.bugs.unchecked_decisions {
                    en.from = None;
                }
                changes.push(en);
            }
        }
        s.ledger.clear_observations();
        if changes.is_empty() {
            return true;
        }
        let controller = s.controller;
        let written = self
            .write(Command::Enforce {
                host,
                changes,
                at_ms: now,
            })
            .is_some();
        // The write is not applied here in time (`applied_here`): the barrier again.
        if self.controllers[controller].behind.is_some()
            && let Some(s) = self.sessions[a].as_mut()
        {
            s.caught_up = false;
        }
        written
    }

    /// The session's tick: flush digests (one command per digest, so the checker sees each
    /// accepted or refused), acknowledge what the log confirmed, decide, push a changed plan.
    pub(super) fn tick(&mut self, a: usize) {
        let now_ms = self.now_ms();
        let Some(s) = self.sessions[a].as_mut() else {
            return;
        };
        let (controller, stream) = (s.controller, s.stream);
        if now_ms - s.last_flush_ms >= FLUSH_MS {
            s.last_flush_ms = now_ms;
            let digests = s.ledger.take_digests();
            let host = self.agents[a].host.clone();
            let at_ms = self.wall_ms(controller);
            let mut enclaves = Vec::new();
            for d in digests {
                enclaves.push(d.enclave.clone());
                if self
                    .write(Command::UsageDigests {
                        host: host.clone(),
                        digests: vec![d],
                        at_ms,
                    })
                    .is_none()
                {
                    self.drop_stream(a);
                    return;
                }
            }
            enclaves.sort();
            enclaves.dedup();
            let acks: Vec<pb::UsageAck> = enclaves
                .into_iter()
                .filter_map(|id| {
                    let c = self.state.status.get(&id)?.confirmed.as_ref()?;
                    Some(pb::UsageAck {
                        confirmed_seq: c.last_seq,
                        enclave_id: id,
                    })
                })
                .collect();
            if !acks.is_empty() {
                self.send(
                    a,
                    stream,
                    Body::ToAgent(pb::controller_message::Body::UsageAcks(pb::UsageAcks {
                        acks,
                    })),
                );
            }
            if !self.decide(a) {
                self.drop_stream(a);
                return;
            }
        }
        // push_plan: the plan at the current version, once per version per stream, once caught up.
        match self.caught_up(a) {
            None => {
                self.drop_stream(a);
                return;
            }
            Some(false) => return,
            Some(true) => {}
        }
        let host = self.agents[a].host.clone();
        let Some(version) = self.view(controller).plan_versions.get(&host).copied() else {
            return;
        };
        let Some(s) = self.sessions[a].as_mut() else {
            return;
        };
        if s.sent_plan == Some(version) {
            return;
        }
        s.sent_plan = Some(version);
        let plan = plan_for(
            self.view(controller),
            &self.policies,
            &host,
            self.wall_ms(controller),
        );
        self.send(
            a,
            stream,
            Body::ToAgent(pb::controller_message::Body::Plan(plan)),
        );
    }
}

impl World {
    /// One line of what each host enforces and what the state says (debugging a seed).
    pub fn describe(&self) -> String {
        let mut out = format!("t={} leader={:?}", self.step, self.leader);
        for a in &self.agents {
            out += &format!(
                " | {} up={} stream={:?} v={:?}",
                a.host,
                a.up,
                a.stream,
                a.applied.as_ref().map(|p| p.version)
            );
            for e in &a.enclaves {
                let p = a.applied.as_ref().and_then(|p| p.enclaves.get(&e.name));
                let st = self.state.status.get(&e.name);
                out += &format!(
                    " {}:d{} cap{:?} {:?} ladder{:?} conf{:?} broken{:?}",
                    e.name,
                    e.demand_mc,
                    p.and_then(|p| p.limits.cpu_millicores),
                    p.map(|p| p.state),
                    st.map(|s| s.ladder.step),
                    st.and_then(|s| s.confirmed.as_ref()).map(|c| c.last_seq),
                    self.sessions[self
                        .agents
                        .iter()
                        .position(|x| x.host == a.host)
                        .unwrap_or(0)]
                    .as_ref()
                    .map(|s| s.ledger.accounting_broken_since(&e.name))
                );
            }
        }
        out
    }
}
