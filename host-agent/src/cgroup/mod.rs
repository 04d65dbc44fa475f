//! cgroup enforcement and accounting behind one trait, for the split v1 hierarchies (this
//! development machine) and the unified v2 hierarchy (most production hosts).
//!
//! Groups are named by their path below the hierarchy root(s), e.g. `tribune/agent/web`; the
//! agent only ever creates groups under `tribune/`. Our own thin cgroupfs layer instead of
//! `cgroups-rs`: we need a dozen files, and the crate pulls zbus and an old nix.

pub mod delegated;
pub mod observe;
pub mod v1;
pub mod v2;

use std::fs::File;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use crate::error::{AgentError, Result};

/// Top of everything the agent creates, in every hierarchy.
pub const PREFIX: &str = "tribune";
/// CFS period used for caps: 100 ms, the kernel default.
pub const CPU_PERIOD_US: u64 = 100_000;

#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum CgroupVersion {
    V1,
    V2,
    /// No cgroups: observe-only, measured from `/proc` ([`observe::ObserveOnly`]).
    Proc,
}

/// What one read of a group's accounting gives.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct CgroupSample {
    pub cpu_ns: u64,
    pub memory_bytes: u64,
    /// Processes the kernel killed for hitting the memory limit, since the group was created.
    pub oom_kills: u64,
    /// Times usage hit the limit and the kernel reclaimed (v1 `memory.failcnt`, v2 `max` of
    /// `memory.events`).
    pub memory_limit_hits: u64,
}

/// Enforcement and accounting for one cgroup layout.
pub trait CgroupEnforcer: Send + Sync + std::fmt::Debug {
    fn version(&self) -> CgroupVersion;
    /// Creates `group` and any missing parents.
    fn create(&self, group: &str) -> Result<()>;
    /// Kills what runs in `group` and its children, then removes them all. Missing is fine.
    fn remove(&self, group: &str) -> Result<()>;
    /// The `cgroup.procs` files a new process writes itself into (one per hierarchy).
    fn procs_files(&self, group: &str) -> Vec<PathBuf>;
    fn add_pid(&self, group: &str, pid: u32) -> Result<()>;
    fn pids(&self, group: &str) -> Result<Vec<u32>>;
    /// CPU cap in millicores; `None` lifts it.
    fn set_cpu_cap(&self, group: &str, millicores: Option<u64>) -> Result<()>;
    fn cpu_cap(&self, group: &str) -> Result<Option<u64>>;
    /// Fair-share weight (1..=256, 1 = the default share of a plain process).
    fn set_weight(&self, group: &str, weight: u32) -> Result<()>;
    /// Whether the group's weight file holds what `set_weight(weight)` writes.
    fn weight_is(&self, group: &str, weight: u32) -> Result<bool>;
    fn set_memory(&self, group: &str, limit: Option<u64>, high: Option<u64>) -> Result<()>;
    fn memory_limit(&self, group: &str) -> Result<Option<u64>>;
    /// Pins the group to CPUs (`"0"`, `"0-1"`), as tests do to measure shares on one core.
    fn set_cpuset(&self, group: &str, cpus: &str) -> Result<()>;
    /// Stops every task in the group; returns once the kernel reports it frozen.
    fn freeze(&self, group: &str) -> Result<()>;
    fn thaw(&self, group: &str) -> Result<()>;
    fn is_frozen(&self, group: &str) -> Result<bool>;
    /// Opens the accounting files once so that each sample is a few `pread`s.
    fn open_probe(&self, group: &str) -> Result<CgroupProbe>;
    /// Where the threads of `group` are listed, for the CPU-wait probe (`crate::cpu_wait`).
    fn thread_list(&self, group: &str) -> crate::cpu_wait::ThreadList;
    /// Whether `group` exists in any hierarchy.
    fn exists(&self, group: &str) -> bool;
    /// The directories of `group` (one per hierarchy).
    fn group_dirs(&self, group: &str) -> Vec<PathBuf>;
    /// A runtime started `pid` as the main process of `group` (already placed in the group
    /// by its own write to `cgroup.procs`; only the observe-only enforcer needs to be told).
    fn observe_pid(&self, _group: &str, _pid: u32) {}
}

/// Kubernetes' conversion from cgroup v1 `cpu.shares` to v2 `cpu.weight`
/// (`[2, 262144]` → `[1, 10000]`).
pub fn shares_to_weight(shares: u64) -> u64 {
    let shares = shares.clamp(2, 262_144);
    1 + ((shares - 2) * 9999) / 262_142
}

/// Plan weight → v1 `cpu.shares` (weight 1 = 1024, the share of one plain process).
pub fn weight_to_shares(weight: u32) -> u64 {
    (u64::from(weight) * 1024).clamp(2, 262_144)
}

/// Millicores → CFS quota in µs for the fixed period.
pub fn quota_us(millicores: u64) -> u64 {
    (millicores * CPU_PERIOD_US / 1000).max(1000)
}

/// Picks the layout this host has, naming what is missing when neither fits.
pub fn detect(root: &Path) -> Result<Box<dyn CgroupEnforcer>> {
    for unified in [root.to_path_buf(), root.join("unified")] {
        if let Ok(ctrl) = std::fs::read_to_string(unified.join("cgroup.controllers"))
            && ["cpu", "memory"]
                .iter()
                .all(|c| ctrl.split_whitespace().any(|w| w == *c))
        {
            return Ok(Box::new(v2::V2::new(unified)));
        }
    }
    v1::V1::new(root).map(|v| Box::new(v) as Box<dyn CgroupEnforcer>)
}

/// Opened accounting files of one group.
#[derive(Debug)]
pub struct CgroupProbe {
    pub(crate) cpu: File,
    pub(crate) memory: File,
    pub(crate) oom: File,
    /// v1 `memory.failcnt`; on v2 the limit hits are in `oom` (`memory.events`) too.
    pub(crate) failcnt: Option<File>,
    pub(crate) version: CgroupVersion,
}

impl CgroupProbe {
    /// Reads the three counters; `buf` is reused between calls to avoid allocating per sample.
    pub fn read(&self, buf: &mut Vec<u8>) -> Result<CgroupSample> {
        self.read_with(buf, true)
    }

    /// As [`read`](Self::read); the memory event counters (OOM kills, limit hits) only when
    /// `with_oom`, so the collector can read them at a lower rate (0 otherwise).
    pub fn read_with(&self, buf: &mut Vec<u8>, with_oom: bool) -> Result<CgroupSample> {
        let cpu = pread_text(&self.cpu, buf)?;
        let cpu_ns = match self.version {
            CgroupVersion::V1 => parse_u64(cpu.trim()),
            CgroupVersion::V2 => v2::parse_cpu_stat_usage_ns(cpu),
            CgroupVersion::Proc => observe::parse_proc_stat_cpu_ns(cpu),
        }
        .unwrap_or(0);
        let memory = pread_text(&self.memory, buf)?;
        let memory_bytes = match self.version {
            CgroupVersion::Proc => observe::parse_proc_statm_bytes(memory),
            _ => parse_u64(memory.trim()),
        }
        .unwrap_or(0);
        let (mut oom_kills, mut memory_limit_hits) = (0, 0);
        if with_oom && self.version != CgroupVersion::Proc {
            let events = pread_text(&self.oom, buf)?;
            oom_kills = parse_keyed(events, "oom_kill").unwrap_or(0);
            memory_limit_hits = match (&self.failcnt, self.version) {
                (Some(f), _) => parse_u64(pread_text(f, buf)?.trim()).unwrap_or(0),
                (None, CgroupVersion::V2) => parse_keyed(events, "max").unwrap_or(0),
                (None, CgroupVersion::V1 | CgroupVersion::Proc) => 0,
            };
        }
        Ok(CgroupSample {
            cpu_ns,
            memory_bytes,
            oom_kills,
            memory_limit_hits,
        })
    }
}

fn pread_text<'b>(f: &File, buf: &'b mut Vec<u8>) -> Result<&'b str> {
    buf.resize(4096, 0);
    let n = f
        .read_at(buf, 0)
        .map_err(|e| AgentError::io("read", "cgroup probe", e))?;
    std::str::from_utf8(&buf[..n]).map_err(|_| AgentError::Parse {
        what: "cgroup file",
        input: String::new(),
        why: "not UTF-8".into(),
    })
}

pub(crate) fn parse_u64(s: &str) -> Option<u64> {
    s.parse().ok()
}

/// Value of `key` in a `key value` per line file (`memory.events`, `cpu.stat`, `oom_control`).
pub(crate) fn parse_keyed(text: &str, key: &str) -> Option<u64> {
    text.lines().find_map(|l| {
        let mut it = l.split_whitespace();
        (it.next() == Some(key)).then(|| it.next().and_then(parse_u64))?
    })
}

pub(crate) fn write(path: &Path, value: &str) -> Result<()> {
    std::fs::write(path, value).map_err(|e| AgentError::io("write", path, e))
}

/// Makes one cgroup directory; one that exists already is fine. Agents of several instances
/// on one host start at once and share the `tribune` parent: two may both find it missing and
/// both make it (the loser's `EEXIST` is not an error — it failed `tribune dev`'s second agent
/// on a fresh machine).
pub(crate) fn mkdir_once(path: &Path) -> Result<()> {
    match std::fs::create_dir(path) {
        Err(e) if e.kind() != std::io::ErrorKind::AlreadyExists => {
            Err(AgentError::io("mkdir", path, e))
        }
        _ => Ok(()),
    }
}

pub(crate) fn read(path: &Path) -> Result<String> {
    std::fs::read_to_string(path).map_err(|e| AgentError::io("read", path, e))
}

pub(crate) fn open(path: &Path) -> Result<File> {
    File::open(path).map_err(|e| AgentError::io("open", path, e))
}

pub(crate) fn read_pids(path: &Path) -> Result<Vec<u32>> {
    match std::fs::read_to_string(path) {
        Ok(t) => Ok(t.lines().filter_map(|l| l.trim().parse().ok()).collect()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Vec::new()),
        Err(e) => Err(AgentError::io("read", path, e)),
    }
}

/// Polls `done` until it holds or `timeout` passes.
pub(crate) fn wait_until(
    timeout: Duration,
    what: &str,
    mut done: impl FnMut() -> Result<bool>,
) -> Result<()> {
    let deadline = Instant::now() + timeout;
    loop {
        if done()? {
            return Ok(());
        }
        if Instant::now() > deadline {
            return Err(AgentError::Runtime(format!("timed out waiting for {what}")));
        }
        std::thread::sleep(Duration::from_millis(2));
    }
}

/// Directories below `dir`, deepest first, then `dir` itself.
pub(crate) fn subtree_deepest_first(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    if let Ok(rd) = std::fs::read_dir(dir) {
        for e in rd.flatten() {
            if e.file_type().map(|t| t.is_dir()).unwrap_or(false) {
                out.extend(subtree_deepest_first(&e.path()));
            }
        }
    }
    if dir.is_dir() {
        out.push(dir.to_path_buf());
    }
    out
}

/// SIGKILLs every pid listed in `procs`, then waits for the list to empty.
pub(crate) fn kill_procs(procs: &Path) -> Result<()> {
    wait_until(Duration::from_secs(5), "cgroup tasks to exit", || {
        let pids = read_pids(procs)?;
        for pid in &pids {
            // SAFETY: plain syscall; a stale pid is harmless (ESRCH).
            unsafe { libc::kill(*pid as libc::pid_t, libc::SIGKILL) };
        }
        Ok(pids.is_empty())
    })
}

/// Makes a group, again from the top when a directory it made vanished under it. Another
/// instance's cleanup removes the shared `tribune/` parent once it is empty, and can do so
/// between our `mkdir` of the parent and of our own group below it: the next step then finds
/// no directory (`ENOENT`) or a removed group (`ENODEV` on cgroupfs). It failed an agent's
/// start in CI while another test's agent exited. Once our group exists the parent is not
/// empty and no cleanup can remove it, so a few tries settle it.
pub(crate) fn create_racing_cleanup(mut make: impl FnMut() -> Result<()>) -> Result<()> {
    const TRIES: u32 = 50;
    let mut tries = 1;
    loop {
        match make() {
            Err(AgentError::Io { source, .. }) if tries < TRIES && vanished(&source) => {
                tries += 1;
            }
            r => return r,
        }
    }
}

/// A directory (or the group it was) removed under us.
fn vanished(e: &std::io::Error) -> bool {
    e.kind() == std::io::ErrorKind::NotFound || e.raw_os_error() == Some(libc::ENODEV)
}

/// `rmdir`, retried while the kernel still reports the group busy (tasks exiting).
pub(crate) fn rmdir_retry(dir: &Path) -> Result<()> {
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        match std::fs::remove_dir(dir) {
            Ok(()) => return Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
            Err(e) if Instant::now() < deadline && e.raw_os_error() == Some(libc::EBUSY) => {
                std::thread::sleep(Duration::from_millis(5));
            }
            Err(e) => return Err(AgentError::io("rmdir", dir, e)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kubernetes_conversion() {
        assert_eq!(shares_to_weight(2), 1);
        assert_eq!(shares_to_weight(1024), 39);
        assert_eq!(shares_to_weight(262_144), 10_000);
        assert_eq!(weight_to_shares(1), 1024);
        assert_eq!(weight_to_shares(256), 262_144);
    }

    #[test]
    fn quota() {
        assert_eq!(quota_us(250), 25_000);
        assert_eq!(quota_us(1500), 150_000);
        assert_eq!(quota_us(1), 1000);
    }

    #[test]
    fn keyed() {
        let t = "oom_kill_disable 0\nunder_oom 0\noom_kill 3\n";
        assert_eq!(parse_keyed(t, "oom_kill"), Some(3));
        assert_eq!(parse_keyed(t, "missing"), None);
    }

    #[test]
    fn mkdir_once_takes_an_existing_dir_and_names_a_real_failure() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("tribune");
        mkdir_once(&dir).unwrap();
        mkdir_once(&dir).unwrap();
        let err = mkdir_once(&tmp.path().join("missing/child")).unwrap_err();
        assert!(err.to_string().contains("missing/child"), "{err}");
    }

    /// One instance's cleanup removes the empty `tribune` parent while others make their
    /// groups below it: every create still succeeds (an agent failed its start on this in CI).
    #[test]
    fn creating_a_group_while_another_instance_removes_the_empty_parent_succeeds() {
        use std::sync::atomic::{AtomicBool, Ordering};
        let removed = std::sync::atomic::AtomicU64::new(0);
        for round in 0..200 {
            let tmp = tempfile::tempdir().unwrap();
            let done = AtomicBool::new(false);
            std::thread::scope(|s| {
                let parent = tmp.path().join(PREFIX);
                let (done, removed) = (&done, &removed);
                s.spawn(move || {
                    while !done.load(Ordering::Relaxed) {
                        if std::fs::remove_dir(&parent).is_ok() {
                            removed.fetch_add(1, Ordering::Relaxed);
                        }
                    }
                });
                let makers: Vec<_> = (0..4)
                    .map(|i| {
                        let v2 = v2::V2::new(tmp.path());
                        s.spawn(move || v2.create(&format!("{PREFIX}/r{round}-h{i}")))
                    })
                    .collect();
                let results: Vec<_> = makers.into_iter().map(|m| m.join().unwrap()).collect();
                done.store(true, Ordering::Relaxed);
                for r in results {
                    assert!(r.is_ok(), "round {round}: {r:?}");
                }
            });
        }
        assert!(
            removed.load(Ordering::Relaxed) > 0,
            "the race was never exercised"
        );
    }

    /// Agents of two instances starting at once both make the shared `tribune` parent: every
    /// one of them must succeed (one lost the race with EEXIST before, and that agent exited).
    #[test]
    fn agents_creating_their_groups_at_once_all_succeed() {
        for round in 0..20 {
            let tmp = tempfile::tempdir().unwrap();
            let barrier = std::sync::Arc::new(std::sync::Barrier::new(8));
            let threads: Vec<_> = (0..8)
                .map(|i| {
                    let root = tmp.path().to_path_buf();
                    let barrier = barrier.clone();
                    std::thread::spawn(move || {
                        let v2 = v2::V2::new(&root);
                        barrier.wait();
                        v2.create(&format!("{PREFIX}/dev-h{i}"))
                    })
                })
                .collect();
            for t in threads {
                let r = t.join().unwrap();
                assert!(r.is_ok(), "round {round}: {r:?}");
            }
        }
    }
}
