//! Working inside a cgroup subtree a service manager delegated to the agent (systemd
//! `Delegate=yes`), instead of creating `/sys/fs/cgroup/tribune` at the root: on cgroup v2
//! hosts the only correct way, since systemd owns the root's layout.
//!
//! The rules of v2 decide the steps: a group with processes cannot hand controllers to
//! children ("no internal processes"), so the agent first moves itself into a leaf `agent/` of
//! its own group, then uses the group as the root of its hierarchy (`tribune/INSTANCE/NAME`
//! below it; `V2::create` enables `cpu` and `memory` on the way down). Enclaves start in the
//! agent's leaf and move into their own group, as everywhere.

use std::path::{Path, PathBuf};

use crate::error::{AgentError, Result};

/// The leaf the agent moves itself into.
pub const AGENT_LEAF: &str = "agent";

/// This process's group on the unified hierarchy, from `/proc/self/cgroup`'s text (`0::PATH`).
/// `None` on a host without the unified hierarchy (v1 only).
pub fn own_group(proc_self_cgroup: &str) -> Option<&str> {
    proc_self_cgroup
        .lines()
        .find_map(|l| l.strip_prefix("0::"))
        .map(str::trim)
        .filter(|p| p.starts_with('/'))
}

/// Moves process `pid` into a leaf of its delegated group `group` (a path as `/proc/self/cgroup`
/// gives it) under the unified hierarchy mounted at `cgroupfs`, and returns the directory the
/// agent should use as its cgroup root. Refuses a group that is the hierarchy's root (nothing
/// was delegated) or that lacks the `cpu` and `memory` controllers (delegation without them
/// cannot enforce).
pub fn enter(cgroupfs: &Path, group: &str, pid: u32) -> Result<PathBuf> {
    let relative = group.trim_start_matches('/');
    if relative.is_empty() {
        return Err(AgentError::Delegation(
            "the agent runs in the root cgroup: nothing was delegated (run it as a unit with Delegate=yes)".into(),
        ));
    }
    let root = cgroupfs.join(relative);
    let controllers = std::fs::read_to_string(root.join("cgroup.controllers"))
        .map_err(|e| AgentError::io("read", root.join("cgroup.controllers"), e))?;
    for c in ["cpu", "memory"] {
        if !controllers.split_whitespace().any(|w| w == c) {
            return Err(AgentError::Delegation(format!(
                "{} has no {c} controller: delegate it (Delegate=yes, or Delegate=cpu memory)",
                root.display()
            )));
        }
    }
    let leaf = root.join(AGENT_LEAF);
    super::mkdir_once(&leaf)?;
    let procs = leaf.join("cgroup.procs");
    std::fs::write(&procs, pid.to_string()).map_err(|e| AgentError::io("write", &procs, e))?;
    Ok(root)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_unified_line_names_the_group() {
        assert_eq!(
            own_group("0::/system.slice/tribune-agent.service\n"),
            Some("/system.slice/tribune-agent.service")
        );
        let hybrid = "12:cpu,cpuacct:/system.slice/x.service\n0::/system.slice/x.service\n";
        assert_eq!(own_group(hybrid), Some("/system.slice/x.service"));
        assert_eq!(own_group("12:cpu,cpuacct:/x\n"), None, "v1 only");
    }

    #[test]
    fn the_agent_moves_into_a_leaf_and_roots_its_groups_at_the_delegated_one() {
        let fs = tempfile::tempdir().expect("temp dir");
        let group = fs.path().join("system.slice/tribune-agent.service");
        std::fs::create_dir_all(&group).expect("mkdir");
        std::fs::write(
            group.join("cgroup.controllers"),
            "cpuset cpu io memory pids\n",
        )
        .expect("write");
        let root = enter(fs.path(), "/system.slice/tribune-agent.service", 4242).expect("enter");
        assert_eq!(root, group);
        assert_eq!(
            std::fs::read_to_string(group.join("agent/cgroup.procs")).expect("procs"),
            "4242"
        );
    }

    #[test]
    fn nothing_delegated_or_no_controllers_is_refused_saying_what_to_do() {
        let fs = tempfile::tempdir().expect("temp dir");
        let e = enter(fs.path(), "/", 1).expect_err("root");
        assert!(e.to_string().contains("Delegate=yes"), "{e}");
        let group = fs.path().join("a.service");
        std::fs::create_dir_all(&group).expect("mkdir");
        std::fs::write(group.join("cgroup.controllers"), "pids\n").expect("write");
        let e = enter(fs.path(), "/a.service", 1).expect_err("no cpu");
        assert!(e.to_string().contains("no cpu controller"), "{e}");
    }
}
