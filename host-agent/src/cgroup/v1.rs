//! cgroup v1: one hierarchy per controller (`cpu`, `cpuacct`, `memory`, `freezer`, `cpuset`),
//! each mounted under the root (usually `/sys/fs/cgroup`).

use std::path::{Path, PathBuf};
use std::time::Duration;

use super::{
    CPU_PERIOD_US, CgroupEnforcer, CgroupProbe, CgroupVersion, kill_procs, open, quota_us, read,
    read_pids, rmdir_retry, subtree_deepest_first, wait_until, weight_to_shares, write,
};
use crate::error::{AgentError, Result};

/// The hierarchies the agent needs, in the order groups are created.
pub const CONTROLLERS: [&str; 5] = ["cpu", "cpuacct", "memory", "freezer", "cpuset"];

#[derive(Debug, Clone)]
pub struct V1 {
    root: PathBuf,
}

/// `memory.limit_in_bytes` reads back this (page-rounded `LONG_MAX`) when unlimited.
const UNLIMITED_FLOOR: u64 = 1 << 62;

impl V1 {
    /// Checks every hierarchy is mounted under `root`.
    pub fn new(root: &Path) -> Result<V1> {
        for c in CONTROLLERS {
            let p = root.join(c);
            if !p.join("cgroup.procs").exists() {
                return Err(AgentError::MissingHierarchy {
                    what: format!("cgroup v1 controller `{c}`"),
                    path: p,
                });
            }
        }
        Ok(V1 {
            root: root.to_path_buf(),
        })
    }

    fn dir(&self, controller: &str, group: &str) -> PathBuf {
        self.root.join(controller).join(group)
    }

    fn file(&self, controller: &str, group: &str, file: &str) -> PathBuf {
        self.dir(controller, group).join(file)
    }

    fn create_once(&self, group: &str) -> Result<()> {
        for c in CONTROLLERS {
            let dir = self.dir(c, group);
            if c == "cpuset" {
                // A new cpuset group starts with no CPUs and no memory nodes: copy them down
                // level by level or no task can join it.
                let mut path = self.root.join(c);
                for part in Path::new(group).components() {
                    let parent = path.clone();
                    path.push(part);
                    super::mkdir_once(&path)?;
                    for f in ["cpuset.cpus", "cpuset.mems"] {
                        if read(&path.join(f))?.trim().is_empty() {
                            write(&path.join(f), read(&parent.join(f))?.trim())?;
                        }
                    }
                }
            } else {
                std::fs::create_dir_all(&dir).map_err(|e| AgentError::io("mkdir", &dir, e))?;
            }
        }
        // `cpu.cfs_period_us` is per group; keep it at the value our quotas assume.
        write(
            &self.file("cpu", group, "cpu.cfs_period_us"),
            &CPU_PERIOD_US.to_string(),
        )
    }

    fn freezer_state(&self, group: &str) -> Result<String> {
        Ok(read(&self.file("freezer", group, "freezer.state"))?
            .trim()
            .to_string())
    }
}

impl CgroupEnforcer for V1 {
    fn version(&self) -> CgroupVersion {
        CgroupVersion::V1
    }

    fn create(&self, group: &str) -> Result<()> {
        super::create_racing_cleanup(|| self.create_once(group))
    }

    fn remove(&self, group: &str) -> Result<()> {
        // Thaw first: frozen tasks cannot act on SIGKILL.
        for dir in subtree_deepest_first(&self.dir("freezer", group)) {
            let _ = write(&dir.join("freezer.state"), "THAWED");
        }
        for c in CONTROLLERS {
            for dir in subtree_deepest_first(&self.dir(c, group)) {
                kill_procs(&dir.join("cgroup.procs"))?;
                rmdir_retry(&dir)?;
            }
        }
        Ok(())
    }

    fn procs_files(&self, group: &str) -> Vec<PathBuf> {
        CONTROLLERS
            .iter()
            .map(|c| self.file(c, group, "cgroup.procs"))
            .collect()
    }

    fn add_pid(&self, group: &str, pid: u32) -> Result<()> {
        for f in self.procs_files(group) {
            write(&f, &pid.to_string())?;
        }
        Ok(())
    }

    fn pids(&self, group: &str) -> Result<Vec<u32>> {
        read_pids(&self.file("cpuacct", group, "cgroup.procs"))
    }

    fn set_cpu_cap(&self, group: &str, millicores: Option<u64>) -> Result<()> {
        let v = millicores.map_or("-1".to_string(), |m| quota_us(m).to_string());
        write(&self.file("cpu", group, "cpu.cfs_quota_us"), &v)
    }

    fn cpu_cap(&self, group: &str) -> Result<Option<u64>> {
        let q: i64 = read(&self.file("cpu", group, "cpu.cfs_quota_us"))?
            .trim()
            .parse()
            .unwrap_or(-1);
        let period: u64 = read(&self.file("cpu", group, "cpu.cfs_period_us"))?
            .trim()
            .parse()
            .unwrap_or(CPU_PERIOD_US);
        Ok((q > 0).then(|| q as u64 * 1000 / period.max(1)))
    }

    fn set_weight(&self, group: &str, weight: u32) -> Result<()> {
        write(
            &self.file("cpu", group, "cpu.shares"),
            &weight_to_shares(weight).to_string(),
        )
    }

    fn weight_is(&self, group: &str, weight: u32) -> Result<bool> {
        Ok(read(&self.file("cpu", group, "cpu.shares"))?.trim()
            == weight_to_shares(weight).to_string())
    }

    fn set_memory(&self, group: &str, limit: Option<u64>, high: Option<u64>) -> Result<()> {
        let fmt = |v: Option<u64>| v.map_or("-1".to_string(), |b| b.to_string());
        write(
            &self.file("memory", group, "memory.limit_in_bytes"),
            &fmt(limit),
        )?;
        write(
            &self.file("memory", group, "memory.soft_limit_in_bytes"),
            &fmt(high),
        )
    }

    fn memory_limit(&self, group: &str) -> Result<Option<u64>> {
        let v: u64 = read(&self.file("memory", group, "memory.limit_in_bytes"))?
            .trim()
            .parse()
            .unwrap_or(u64::MAX);
        Ok((v < UNLIMITED_FLOOR).then_some(v))
    }

    fn set_cpuset(&self, group: &str, cpus: &str) -> Result<()> {
        write(&self.file("cpuset", group, "cpuset.cpus"), cpus)
    }

    fn freeze(&self, group: &str) -> Result<()> {
        write(&self.file("freezer", group, "freezer.state"), "FROZEN")?;
        wait_until(Duration::from_secs(5), "freezer FROZEN", || {
            Ok(self.freezer_state(group)? == "FROZEN")
        })
    }

    fn thaw(&self, group: &str) -> Result<()> {
        write(&self.file("freezer", group, "freezer.state"), "THAWED")
    }

    fn is_frozen(&self, group: &str) -> Result<bool> {
        Ok(self.freezer_state(group)? == "FROZEN")
    }

    fn open_probe(&self, group: &str) -> Result<CgroupProbe> {
        Ok(CgroupProbe {
            cpu: open(&self.file("cpuacct", group, "cpuacct.usage"))?,
            memory: open(&self.file("memory", group, "memory.usage_in_bytes"))?,
            oom: open(&self.file("memory", group, "memory.oom_control"))?,
            failcnt: Some(open(&self.file("memory", group, "memory.failcnt"))?),
            version: CgroupVersion::V1,
        })
    }

    fn thread_list(&self, group: &str) -> crate::cpu_wait::ThreadList {
        crate::cpu_wait::ThreadList::CgroupFile(self.file("cpu", group, "tasks"))
    }

    fn exists(&self, group: &str) -> bool {
        CONTROLLERS.iter().any(|c| self.dir(c, group).exists())
    }

    fn group_dirs(&self, group: &str) -> Vec<PathBuf> {
        CONTROLLERS.iter().map(|c| self.dir(c, group)).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn missing_hierarchy_is_named() {
        let tmp = tempfile::tempdir().unwrap();
        let err = V1::new(tmp.path()).unwrap_err().to_string();
        assert!(err.contains("cgroup v1 controller `cpu`"), "{err}");
    }
}
