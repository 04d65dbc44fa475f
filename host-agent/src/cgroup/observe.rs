//! Observe-only "enforcer" for an agent that is not root (e.g. `tribune dev` run by a user):
//! it writes nothing to the kernel, remembers what the plan wanted (so reconciling sees no
//! drift to fix), and measures each enclave's main process from `/proc` instead of a cgroup.
//!
//! Nothing is confined: the agent says so at start-up, in its `Hello` (`can_enforce = false`),
//! and the controllers show the host as `observe-only` in `tribune host ls`.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Mutex;

use super::{CgroupEnforcer, CgroupProbe, CgroupVersion};
use crate::error::{AgentError, Result};

#[derive(Debug, Default)]
struct Wanted {
    pids: Vec<u32>,
    cpu_cap: Option<u64>,
    weight: u32,
    memory: Option<u64>,
}

#[derive(Debug, Default)]
pub struct ObserveOnly {
    groups: Mutex<HashMap<String, Wanted>>,
}

impl ObserveOnly {
    pub fn new() -> ObserveOnly {
        ObserveOnly::default()
    }

    fn with<T>(&self, group: &str, f: impl FnOnce(&mut Wanted) -> T) -> T {
        let mut g = self
            .groups
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        f(g.entry(group.to_string()).or_default())
    }
}

fn alive(pid: u32) -> bool {
    std::path::Path::new(&format!("/proc/{pid}")).exists()
}

impl CgroupEnforcer for ObserveOnly {
    fn version(&self) -> CgroupVersion {
        CgroupVersion::Proc
    }

    fn create(&self, group: &str) -> Result<()> {
        self.with(group, |_| ());
        Ok(())
    }

    fn remove(&self, group: &str) -> Result<()> {
        let removed: Vec<(String, Wanted)> = {
            let mut g = self
                .groups
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            let keys: Vec<String> = g
                .keys()
                .filter(|k| *k == group || k.starts_with(&format!("{group}/")))
                .cloned()
                .collect();
            keys.into_iter()
                .filter_map(|k| g.remove(&k).map(|w| (k, w)))
                .collect()
        };
        for (_, w) in removed {
            for pid in w.pids.into_iter().filter(|p| alive(*p)) {
                // Our own child's process group (the runtime starts each in its own).
                // SAFETY: plain signal.
                unsafe {
                    libc::kill(-(pid as i32), libc::SIGKILL);
                }
            }
        }
        Ok(())
    }

    fn procs_files(&self, _group: &str) -> Vec<PathBuf> {
        Vec::new()
    }

    fn add_pid(&self, group: &str, pid: u32) -> Result<()> {
        self.with(group, |w| w.pids.push(pid));
        Ok(())
    }

    fn observe_pid(&self, group: &str, pid: u32) {
        self.with(group, |w| w.pids.push(pid));
    }

    fn pids(&self, group: &str) -> Result<Vec<u32>> {
        Ok(self.with(group, |w| {
            w.pids.retain(|p| alive(*p));
            w.pids.clone()
        }))
    }

    fn set_cpu_cap(&self, group: &str, millicores: Option<u64>) -> Result<()> {
        self.with(group, |w| w.cpu_cap = millicores);
        Ok(())
    }

    fn cpu_cap(&self, group: &str) -> Result<Option<u64>> {
        Ok(self.with(group, |w| w.cpu_cap))
    }

    fn set_weight(&self, group: &str, weight: u32) -> Result<()> {
        self.with(group, |w| w.weight = weight);
        Ok(())
    }

    fn weight_is(&self, group: &str, weight: u32) -> Result<bool> {
        Ok(self.with(group, |w| w.weight == weight))
    }

    fn set_memory(&self, group: &str, limit: Option<u64>, _high: Option<u64>) -> Result<()> {
        self.with(group, |w| w.memory = limit);
        Ok(())
    }

    fn memory_limit(&self, group: &str) -> Result<Option<u64>> {
        Ok(self.with(group, |w| w.memory))
    }

    fn set_cpuset(&self, _group: &str, _cpus: &str) -> Result<()> {
        Ok(())
    }

    fn freeze(&self, _group: &str) -> Result<()> {
        Ok(())
    }

    fn thaw(&self, _group: &str) -> Result<()> {
        Ok(())
    }

    fn is_frozen(&self, _group: &str) -> Result<bool> {
        Ok(false)
    }

    fn open_probe(&self, group: &str) -> Result<CgroupProbe> {
        let pid = self
            .with(group, |w| w.pids.first().copied())
            .ok_or_else(|| AgentError::Runtime(format!("{group}: no process to observe")))?;
        let open = |f: &str| {
            let p = PathBuf::from(format!("/proc/{pid}/{f}"));
            std::fs::File::open(&p).map_err(|e| AgentError::io("open", &p, e))
        };
        Ok(CgroupProbe {
            cpu: open("stat")?,
            memory: open("statm")?,
            oom: open("statm")?,
            failcnt: None,
            version: CgroupVersion::Proc,
        })
    }

    fn thread_list(&self, group: &str) -> crate::cpu_wait::ThreadList {
        // The threads of the main process (its children are not followed without a cgroup).
        let pid = self.with(group, |w| w.pids.first().copied()).unwrap_or(0);
        crate::cpu_wait::ThreadList::ProcTasks(pid)
    }

    fn exists(&self, group: &str) -> bool {
        self.groups
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .contains_key(group)
    }

    fn group_dirs(&self, _group: &str) -> Vec<PathBuf> {
        Vec::new()
    }
}

/// CPU time (ns) from the text of `/proc/PID/stat`: utime + stime (clock ticks → ns).
pub fn parse_proc_stat_cpu_ns(text: &str) -> Option<u64> {
    // The command name (field 2) may contain spaces and ')': fields resume after the last ')'.
    let rest = &text[text.rfind(')')? + 1..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // After ')': state is field 3, so utime (14) and stime (15) are at 11 and 12.
    let utime: u64 = fields.get(11)?.parse().ok()?;
    let stime: u64 = fields.get(12)?.parse().ok()?;
    // SAFETY: sysconf has no preconditions.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    let hz = if hz > 0 { hz as u64 } else { 100 };
    Some((utime + stime).saturating_mul(1_000_000_000 / hz))
}

/// Resident memory (bytes) from `/proc/PID/statm`.
pub(crate) fn parse_proc_statm_bytes(text: &str) -> Option<u64> {
    let pages: u64 = text.split_whitespace().nth(1)?.parse().ok()?;
    // SAFETY: sysconf has no preconditions.
    let page = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
    Some(pages.saturating_mul(if page > 0 { page as u64 } else { 4096 }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn proc_formats() {
        let stat =
            "1234 (sh -c (x)) R 1 1234 1234 0 -1 4194560 100 0 0 0 250 50 0 0 20 0 1 0 99 1000 200";
        let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) } as u64;
        assert_eq!(
            parse_proc_stat_cpu_ns(stat),
            Some(300 * (1_000_000_000 / hz))
        );
        assert_eq!(parse_proc_stat_cpu_ns("garbage"), None);
        let page = unsafe { libc::sysconf(libc::_SC_PAGESIZE) } as u64;
        assert_eq!(
            parse_proc_statm_bytes("1000 25 10 1 0 5 0"),
            Some(25 * page)
        );
    }

    #[test]
    fn remembers_what_the_plan_wanted_and_measures_a_live_process() {
        let o = ObserveOnly::new();
        o.create("g").unwrap();
        o.set_cpu_cap("g", Some(250)).unwrap();
        o.set_weight("g", 3).unwrap();
        assert_eq!(o.cpu_cap("g").unwrap(), Some(250));
        assert!(o.weight_is("g", 3).unwrap());
        o.observe_pid("g", std::process::id());
        let probe = o.open_probe("g").unwrap();
        let mut buf = Vec::new();
        let s = probe.read(&mut buf).unwrap();
        assert!(s.memory_bytes > 0);
        assert_eq!(o.pids("g").unwrap(), vec![std::process::id()]);
    }
}
