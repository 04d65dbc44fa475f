//! cgroup v2: one unified hierarchy; controllers are enabled for children through each
//! parent's `cgroup.subtree_control`. Unit-tested on its file formats (this development
//! kernel cannot mount v2 with controllers).

use std::path::{Path, PathBuf};
use std::time::Duration;

use super::{
    CPU_PERIOD_US, CgroupEnforcer, CgroupProbe, CgroupVersion, kill_procs, open, parse_keyed,
    quota_us, read, read_pids, rmdir_retry, shares_to_weight, subtree_deepest_first, wait_until,
    weight_to_shares, write,
};
use crate::error::{AgentError, Result};

#[derive(Debug, Clone)]
pub struct V2 {
    root: PathBuf,
}

/// `cpu.max` line for a cap: `"25000 100000"`, or `"max 100000"` for none.
pub fn format_cpu_max(millicores: Option<u64>) -> String {
    match millicores {
        Some(m) => format!("{} {CPU_PERIOD_US}", quota_us(m)),
        None => format!("max {CPU_PERIOD_US}"),
    }
}

/// Parses `cpu.max` back into millicores.
pub fn parse_cpu_max(text: &str) -> Result<Option<u64>> {
    let mut it = text.split_whitespace();
    let (quota, period) = (it.next(), it.next().and_then(|p| p.parse::<u64>().ok()));
    let bad = || AgentError::Parse {
        what: "cpu.max",
        input: text.to_string(),
        why: "expected `QUOTA PERIOD`".into(),
    };
    let period = period.filter(|p| *p > 0).ok_or_else(bad)?;
    match quota {
        Some("max") => Ok(None),
        Some(q) => Ok(Some(q.parse::<u64>().map_err(|_| bad())? * 1000 / period)),
        None => Err(bad()),
    }
}

/// `memory.max` / `memory.high` value.
pub fn format_memory(bytes: Option<u64>) -> String {
    bytes.map_or("max".to_string(), |b| b.to_string())
}

/// Plan weight → `cpu.weight` through the same shares the v1 path writes, so a plan means the
/// same on both (Kubernetes' conversion).
pub fn format_cpu_weight(weight: u32) -> String {
    shares_to_weight(weight_to_shares(weight)).to_string()
}

/// `usage_usec` of `cpu.stat`, in ns.
pub fn parse_cpu_stat_usage_ns(text: &str) -> Option<u64> {
    parse_keyed(text, "usage_usec").map(|us| us * 1000)
}

impl V2 {
    pub fn new(root: impl Into<PathBuf>) -> V2 {
        V2 { root: root.into() }
    }

    fn dir(&self, group: &str) -> PathBuf {
        self.root.join(group)
    }

    fn file(&self, group: &str, file: &str) -> PathBuf {
        self.dir(group).join(file)
    }

    fn create_once(&self, group: &str) -> Result<()> {
        let mut path = self.root.clone();
        for part in Path::new(group).components() {
            // Children only get controllers their parent hands down; cpuset is optional (only
            // tests pin CPUs), cpu and memory are not.
            let control = path.join("cgroup.subtree_control");
            if write(&control, "+cpu +memory +cpuset").is_err() {
                write(&control, "+cpu +memory")?;
            }
            path.push(part);
            super::mkdir_once(&path)?;
        }
        Ok(())
    }
}

impl CgroupEnforcer for V2 {
    fn version(&self) -> CgroupVersion {
        CgroupVersion::V2
    }

    fn create(&self, group: &str) -> Result<()> {
        super::create_racing_cleanup(|| self.create_once(group))
    }

    fn remove(&self, group: &str) -> Result<()> {
        for dir in subtree_deepest_first(&self.dir(group)) {
            let _ = write(&dir.join("cgroup.freeze"), "0");
            kill_procs(&dir.join("cgroup.procs"))?;
            rmdir_retry(&dir)?;
        }
        Ok(())
    }

    fn procs_files(&self, group: &str) -> Vec<PathBuf> {
        vec![self.file(group, "cgroup.procs")]
    }

    fn add_pid(&self, group: &str, pid: u32) -> Result<()> {
        write(&self.file(group, "cgroup.procs"), &pid.to_string())
    }

    fn pids(&self, group: &str) -> Result<Vec<u32>> {
        read_pids(&self.file(group, "cgroup.procs"))
    }

    fn set_cpu_cap(&self, group: &str, millicores: Option<u64>) -> Result<()> {
        write(&self.file(group, "cpu.max"), &format_cpu_max(millicores))
    }

    fn cpu_cap(&self, group: &str) -> Result<Option<u64>> {
        parse_cpu_max(&read(&self.file(group, "cpu.max"))?)
    }

    fn set_weight(&self, group: &str, weight: u32) -> Result<()> {
        write(&self.file(group, "cpu.weight"), &format_cpu_weight(weight))
    }

    fn weight_is(&self, group: &str, weight: u32) -> Result<bool> {
        Ok(read(&self.file(group, "cpu.weight"))?.trim() == format_cpu_weight(weight))
    }

    fn set_memory(&self, group: &str, limit: Option<u64>, high: Option<u64>) -> Result<()> {
        write(&self.file(group, "memory.max"), &format_memory(limit))?;
        write(&self.file(group, "memory.high"), &format_memory(high))
    }

    fn memory_limit(&self, group: &str) -> Result<Option<u64>> {
        let t = read(&self.file(group, "memory.max"))?;
        Ok(t.trim().parse().ok())
    }

    fn set_cpuset(&self, group: &str, cpus: &str) -> Result<()> {
        write(&self.file(group, "cpuset.cpus"), cpus)
    }

    fn freeze(&self, group: &str) -> Result<()> {
        write(&self.file(group, "cgroup.freeze"), "1")?;
        wait_until(Duration::from_secs(5), "cgroup.events frozen 1", || {
            self.is_frozen(group)
        })
    }

    fn thaw(&self, group: &str) -> Result<()> {
        write(&self.file(group, "cgroup.freeze"), "0")
    }

    fn is_frozen(&self, group: &str) -> Result<bool> {
        Ok(parse_keyed(&read(&self.file(group, "cgroup.events"))?, "frozen") == Some(1))
    }

    fn open_probe(&self, group: &str) -> Result<CgroupProbe> {
        Ok(CgroupProbe {
            cpu: open(&self.file(group, "cpu.stat"))?,
            memory: open(&self.file(group, "memory.current"))?,
            oom: open(&self.file(group, "memory.events"))?,
            failcnt: None,
            version: CgroupVersion::V2,
        })
    }

    fn thread_list(&self, group: &str) -> crate::cpu_wait::ThreadList {
        crate::cpu_wait::ThreadList::CgroupFile(self.file(group, "cgroup.threads"))
    }

    fn exists(&self, group: &str) -> bool {
        self.dir(group).exists()
    }

    fn group_dirs(&self, group: &str) -> Vec<PathBuf> {
        vec![self.dir(group)]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cpu_max_format_and_parse() {
        assert_eq!(format_cpu_max(Some(250)), "25000 100000");
        assert_eq!(format_cpu_max(None), "max 100000");
        assert_eq!(parse_cpu_max("25000 100000\n").unwrap(), Some(250));
        assert_eq!(parse_cpu_max("50000 50000").unwrap(), Some(1000));
        assert_eq!(parse_cpu_max("max 100000").unwrap(), None);
        assert!(parse_cpu_max("garbage").is_err());
        assert!(parse_cpu_max("100 0").is_err());
    }

    #[test]
    fn weight_uses_kubernetes_conversion() {
        assert_eq!(format_cpu_weight(1), "39");
        assert_eq!(format_cpu_weight(2), "79");
        assert_eq!(format_cpu_weight(4), "157");
        assert_eq!(format_cpu_weight(256), "10000");
    }

    #[test]
    fn stat_and_events() {
        let stat = "usage_usec 1500\nuser_usec 1000\nsystem_usec 500\n";
        assert_eq!(parse_cpu_stat_usage_ns(stat), Some(1_500_000));
        assert_eq!(
            parse_keyed("low 0\nhigh 2\nmax 5\noom 1\noom_kill 1\n", "oom_kill"),
            Some(1)
        );
        assert_eq!(format_memory(None), "max");
        assert_eq!(format_memory(Some(4096)), "4096");
    }

    /// Drives the whole v2 enforcer against a fake hierarchy of plain files.
    #[test]
    fn writes_the_v2_files() {
        let tmp = tempfile::tempdir().unwrap();
        let v2 = V2::new(tmp.path());
        let g = "tribune/test/web";
        v2.create(g).unwrap();
        assert_eq!(
            std::fs::read_to_string(tmp.path().join("tribune/test/cgroup.subtree_control"))
                .unwrap(),
            "+cpu +memory +cpuset"
        );
        v2.set_cpu_cap(g, Some(250)).unwrap();
        assert_eq!(v2.cpu_cap(g).unwrap(), Some(250));
        v2.set_weight(g, 4).unwrap();
        assert_eq!(
            std::fs::read_to_string(tmp.path().join(g).join("cpu.weight")).unwrap(),
            "157"
        );
        v2.set_memory(g, Some(256 << 20), None).unwrap();
        assert_eq!(v2.memory_limit(g).unwrap(), Some(256 << 20));
        assert_eq!(
            std::fs::read_to_string(tmp.path().join(g).join("memory.high")).unwrap(),
            "max"
        );
        std::fs::write(
            tmp.path().join(g).join("cgroup.events"),
            "populated 1\nfrozen 1\n",
        )
        .unwrap();
        v2.freeze(g).unwrap();
        assert!(v2.is_frozen(g).unwrap());
        std::fs::write(tmp.path().join(g).join("cpu.stat"), "usage_usec 42\n").unwrap();
        std::fs::write(tmp.path().join(g).join("memory.current"), "8192\n").unwrap();
        std::fs::write(
            tmp.path().join(g).join("memory.events"),
            "low 0\nhigh 0\nmax 7\noom 2\noom_kill 2\n",
        )
        .unwrap();
        let s = v2.open_probe(g).unwrap().read(&mut Vec::new()).unwrap();
        assert_eq!((s.cpu_ns, s.memory_bytes, s.oom_kills), (42_000, 8192, 2));
        assert_eq!(s.memory_limit_hits, 7);
    }
}
