//! The watcher: every [`EVERY`] it reads each watched enclave's cgroup files and feeds them,
//! with what the harness is doing to each host at that instant, to the enforcement checker
//! ([`super::enforce`]).

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use super::enforce::{self, Checker, HostCtx};

/// How often the enclaves' cgroups are read.
pub const EVERY: Duration = Duration::from_millis(100);

/// What the harness is doing to one host.
#[derive(Debug, Clone, Copy)]
pub struct Host {
    pub cut_all: bool,
    pub cut_some: bool,
    pub killed: bool,
    /// Guarded (nothing may be lifted) until then: a restarted agent.
    pub guard_until: Option<Instant>,
}

struct Inner {
    hosts: Vec<Host>,
    /// Some fault is in force (any kind: controllers' too).
    fault: bool,
    /// Hosts are judged again from then (a fault ended, an agent restarted).
    settled_from: Instant,
    checker: Checker,
}

#[derive(Clone)]
pub struct Watch {
    inner: Arc<Mutex<Inner>>,
    started: Instant,
    instances: Vec<String>,
}

impl Watch {
    pub fn new(checker: Checker, instances: Vec<String>, started: Instant) -> Self {
        let hosts = vec![
            Host {
                cut_all: false,
                cut_some: false,
                killed: false,
                guard_until: None,
            };
            instances.len()
        ];
        Watch {
            inner: Arc::new(Mutex::new(Inner {
                hosts,
                fault: false,
                settled_from: Instant::now(),
                checker,
            })),
            started,
            instances,
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Changes what is known of host `k`.
    pub fn host(&self, k: usize, f: impl FnOnce(&mut Host)) {
        f(&mut self.lock().hosts[k]);
    }

    /// A fault begins.
    pub fn fault_begins(&self) {
        self.lock().fault = true;
    }

    /// Every fault has ended (or an agent restarted): hosts are judged again after
    /// [`enforce::SETTLE`].
    pub fn settle(&self) {
        let mut g = self.lock();
        g.fault = false;
        g.settled_from = Instant::now() + enforce::SETTLE;
    }

    /// When hosts are judged again.
    pub fn settled_from(&self) -> Instant {
        self.lock().settled_from
    }

    /// Reads every watched enclave once and feeds the checker.
    pub fn tick(&self) {
        let watched = self.lock().checker.watched().to_vec();
        let readings: Vec<_> = watched
            .iter()
            .map(|w| super::agents::reading(&self.instances[w.host], &w.name))
            .collect();
        let now = Instant::now();
        let mut g = self.lock();
        let ctx: Vec<HostCtx> = g
            .hosts
            .iter()
            .map(|h| HostCtx {
                guarded: h.cut_all || h.killed,
                restarting: h.guard_until.is_some_and(|t| now < t),
                judged: !h.cut_all && !h.cut_some && !h.killed && !g.fault && now >= g.settled_from,
            })
            .collect();
        g.checker.observe(now - self.started, &ctx, &readings);
    }

    /// Ticks until `stop` is set.
    pub async fn run(self, stop: Arc<std::sync::atomic::AtomicBool>) {
        while !stop.load(std::sync::atomic::Ordering::Relaxed) {
            self.tick();
            tokio::time::sleep(EVERY).await;
        }
    }

    pub fn verdict(&self) -> enforce::Verdict {
        self.lock().checker.verdict.clone()
    }

    /// Whether every enclave in `names` is enforced (capped at its limit or frozen) now.
    pub fn all_enforced(&self, names: &[(usize, String, u64)]) -> bool {
        names.iter().all(|(h, n, limit)| {
            super::agents::reading(&self.instances[*h], n).is_some_and(|r| r.enforces(*limit))
        })
    }
}
