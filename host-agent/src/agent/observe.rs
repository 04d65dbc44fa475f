//! Watching: sampling usage on the grid, re-enforcing what drifted, reporting status.

use std::time::Duration;

use super::{
    Agent, AgentStatus, EnclaveReport, EventKind, Migration, RefusedLaunch, Taken, unix_ns,
};
use crate::collector::{MsgTotals, OOM_EVERY, Usage, UsageWindow};
use crate::link_messages::ToLink;
use crate::plan::{Change, RunState};
use crate::runtime::EnclaveStatus;

/// How long usage the link did not take is carried into the next window before it is given
/// up (loudly): the controllers refuse a window longer than they can judge fairly, and an
/// agent whose link is stuck that long reconnects and replays anyway.
const UNSENT_SPAN_MAX: Duration = Duration::from_secs(60);

/// Memory limits read back page-rounded: compare in pages.
fn same_memory(a: Option<u64>, b: Option<u64>) -> bool {
    a.map(|v| v / 4096) == b.map(|v| v / 4096)
}

impl Agent {
    /// Takes one sample of every enclave; reports OOM kills and exits as events; hands the
    /// window since the previous sample of each enclave to the controller link, if any (the
    /// link seals and sends them: this is the only usage pipeline).
    pub async fn sample(&mut self) {
        let now = tokio::time::Instant::now();
        let mut events = Vec::new();
        let mut windows = Vec::new();
        self.ticks += 1;
        let with_oom = self.ticks % OOM_EVERY == 1;
        let links = match self.net_counters.as_mut() {
            Some(n) => n.read(),
            None => Default::default(),
        };
        let messages = self.mediator.counters();
        for (name, r) in self.enclaves.iter_mut() {
            let Ok(mut s) = r.probe.read(&mut self.buf, &links, with_oom) else {
                continue;
            };
            let at_unix_ns = unix_ns();
            if let Some(c) = messages.get(name) {
                s.msgs = MsgTotals {
                    sent: c.sent_messages,
                    sent_bytes: c.sent_bytes,
                    refused: c.unaccepted_messages,
                    refused_bytes: c.unaccepted_bytes,
                };
            }
            if !with_oom {
                s.oom_kills = r.last.map_or(0, |l| l.sample.oom_kills);
                s.memory_limit_hits = r.last.map_or(0, |l| l.sample.memory_limit_hits);
            }
            if let Some(pids) = r.enclave.pid().map(|p| vec![p]) {
                s.gpu_percent = self.gpu.utilization_percent(&pids);
            }
            if let Some(Taken {
                at: t0,
                at_unix_ns: t0_unix_ns,
                sample: prev,
            }) = r.last
            {
                if s.oom_kills > prev.oom_kills {
                    events.push((name.clone(), EventKind::OomKill { total: s.oom_kills }));
                }
                if s.memory_limit_hits > prev.memory_limit_hits {
                    events.push((
                        name.clone(),
                        EventKind::MemoryReclaim {
                            limit_hits_total: s.memory_limit_hits,
                        },
                    ));
                }
                r.usage = Usage::between(&prev, &s, now - t0);
                if r.migration == Some(Migration::Incoming) {
                    // Not placed here until the commit's plan names it: the controllers
                    // would refuse its window (`NotPlaced`) and the refused seq would break
                    // its new usage chain until the next checkpoint (~2 s of no decisions on
                    // arrival). The wait and the load are the move's cost: its first window is
                    // the first tick after the commit (docs/protocol.md "Usage chain after a
                    // move").
                    r.unsent = None;
                } else if self.uplink.is_some() {
                    // A window starts where the last one handed over ended: after a tick the
                    // link could not take, it covers that tick too (no usage is lost).
                    let from = *r.unsent.get_or_insert(Taken {
                        at: t0,
                        at_unix_ns: t0_unix_ns,
                        sample: prev,
                    });
                    windows.push(UsageWindow::between(
                        name,
                        (from.at_unix_ns, &from.sample),
                        (at_unix_ns, &s),
                    ));
                }
            } else {
                r.usage = Usage::between(&s, &s, Duration::from_nanos(1));
                if s.oom_kills > 0 {
                    events.push((name.clone(), EventKind::OomKill { total: s.oom_kills }));
                }
            }
            r.last = Some(Taken {
                at: now,
                at_unix_ns,
                sample: s,
            });
            if !r.exited
                && let Ok(Some(code)) = r.enclave.exit_code()
            {
                r.exited = true;
                events.push((name.clone(), EventKind::Exited { code }));
            }
        }
        for (name, kind) in events {
            self.event(Some(&name), kind);
        }
        let sent = windows.len() as u64;
        if let Some(u) = &self.uplink
            && !windows.is_empty()
        {
            if u.try_send(ToLink::Windows(windows)).is_ok() {
                crate::metrics::get().windows_sent.inc_by(sent);
                for r in self.enclaves.values_mut() {
                    r.unsent = None;
                }
                return;
            }
            // Not sealed, so no sequence number is spent: the next tick's window starts where
            // the last one handed over ended and covers this tick too. Only past
            // UNSENT_SPAN_MAX is usage given up — loudly.
            tracing::debug!(
                "the controller link is not keeping up: this tick's usage goes with the next window"
            );
            for (name, r) in self.enclaves.iter_mut() {
                if r.unsent
                    .is_some_and(|from| now.duration_since(from.at) > UNSENT_SPAN_MAX)
                {
                    crate::metrics::get().windows_dropped.inc();
                    tracing::warn!(enclave = %name, "the controller link has not taken usage for {} s: that usage is given up (the usage chain stays intact)", UNSENT_SPAN_MAX.as_secs());
                    r.unsent = None;
                }
            }
        }
    }

    /// Reads back what the plan says and writes it again where it drifted (fail-safe: a limit
    /// removed behind our back comes back, a suspended enclave someone resumed is suspended
    /// again; the other direction is left to the next plan — but a resume the agent made for
    /// the plan and has not seen take effect is made again: `run_state`).
    pub async fn reconcile(&mut self) {
        let mut fixes = Vec::new();
        let mut resuspended = Vec::new();
        let mut resumed = Vec::new();
        for (name, r) in self.enclaves.iter_mut() {
            if !super::run_state::worth_asking(r.plan.state, r.resume_owed, r.exited) {
                continue;
            }
            let seen = r.enclave.status().await.ok();
            let fix = super::run_state::run_fix(r.plan.state, r.migration, r.resume_owed, seen);
            r.resume_owed = fix.owed;
            match fix.change {
                Some(RunState::Suspend) => match r.enclave.suspend().await {
                    Ok(()) => resuspended.push(name.clone()),
                    Err(e) => tracing::debug!(enclave = %name, "re-suspend: {e}"),
                },
                Some(RunState::Run) => match r.enclave.resume().await {
                    Ok(()) => resumed.push(name.clone()),
                    Err(e) => tracing::warn!(enclave = %name, "resume (owed to its plan): {e}"),
                },
                None => {}
            }
        }
        for name in resuspended {
            crate::metrics::get().drift("suspend");
            self.event(
                Some(&name),
                EventKind::Reenforced {
                    what: "suspend".into(),
                },
            );
        }
        for name in resumed {
            tracing::info!(enclave = %name, "resumed again: its plan says run and it was not running");
            self.event(
                Some(&name),
                EventKind::Reenforced {
                    what: "resume".into(),
                },
            );
        }
        for (name, r) in &self.enclaves {
            let g = &r.enclave.identity().group;
            let l = &r.plan.limits;
            if self.cgroups.cpu_cap(g).ok() != Some(l.cpu_millicores) {
                fixes.push((name.clone(), Change::CpuCap(l.cpu_millicores), "cpu cap"));
            }
            if self.cgroups.weight_is(g, r.plan.weight).ok() == Some(false) {
                fixes.push((name.clone(), Change::Weight(r.plan.weight), "weight"));
            }
            if let Ok(m) = self.cgroups.memory_limit(g)
                && !same_memory(m, l.memory_bytes)
            {
                fixes.push((
                    name.clone(),
                    Change::Memory {
                        limit_bytes: l.memory_bytes,
                        high_bytes: l.memory_high_bytes,
                    },
                    "memory limit",
                ));
            }
        }
        let metrics = crate::metrics::get();
        let messages = self.mediator.counters();
        for (name, r) in &self.enclaves {
            metrics.enclave_usage(name, &r.usage);
            if let Some(c) = messages.get(name) {
                metrics.enclave_messages(name, c);
            }
        }
        for (name, change, what) in fixes {
            let g = self.group_of(&name);
            if self.write_cgroup(&g, &change).is_ok() {
                metrics.drift(what);
                self.event(
                    Some(&name),
                    EventKind::Reenforced {
                        what: what.to_string(),
                    },
                );
            }
        }
    }

    pub async fn status(&mut self) -> AgentStatus {
        let mut enclaves = Vec::new();
        for (name, r) in self.enclaves.iter_mut() {
            let status = r
                .enclave
                .status()
                .await
                .unwrap_or(EnclaveStatus::Exited { code: None });
            enclaves.push(EnclaveReport {
                name: name.clone(),
                status,
                pid: r.enclave.pid(),
                identity: r.enclave.identity().clone(),
                ip: r.net.as_ref().map(|n| n.ip),
                plan: r.plan.clone(),
                usage: r.usage,
                user: r.user,
            });
        }
        AgentStatus {
            instance: self.cfg.instance.clone(),
            runtime: self.cfg.runtime,
            cgroup_version: self.cgroups.version(),
            gpu: self
                .gpu
                .absent_reason()
                .map_or_else(|| self.gpu.name().to_string(), str::to_string),
            applied_version: self.applied.as_ref().map(|p| p.version),
            controller_link: self.link,
            enclaves,
            refused: self
                .refused
                .iter()
                .map(|(enclave, error)| RefusedLaunch {
                    enclave: enclave.clone(),
                    error: error.clone(),
                })
                .collect(),
            launch_policy: self.cfg.launch_policy.summary(),
            events: self.events.iter().cloned().collect(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    pub(super) fn memory_compare_in_pages() {
        assert!(same_memory(Some(10_000), Some(8192)));
        assert!(!same_memory(Some(8192), None));
        assert!(same_memory(None, None));
    }
}
