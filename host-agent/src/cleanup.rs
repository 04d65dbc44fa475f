//! Hygiene: removing what the agent created, after a clean exit or a crash, and listing what
//! is left (tests assert the list is empty).
//!
//! Everything is scoped to one **instance** (`tribune/INSTANCE` cgroups, `tb-INSTANCE-…`
//! namespaces, its bridge) so that cleaning up one agent — or a test's — never touches another
//! agent on the same host; only [`cleanup_all`] (`tribune agent cleanup --all`) removes every
//! instance's, and the root qdiscs they share.

use serde::Serialize;

use crate::cgroup::{self, CgroupEnforcer, PREFIX, subtree_deepest_first};
use crate::error::Result;
use crate::net::{self, LINK_PREFIX, QDISC_MAJOR, short_hash};
use crate::sys;

/// What a cleanup removed, or what is left over.
#[derive(Debug, Default, Serialize, PartialEq, Eq)]
pub struct Leftovers {
    pub cgroups: Vec<String>,
    pub netns: Vec<String>,
    pub links: Vec<String>,
    /// `dev:handle` of root qdiscs with our handle.
    pub qdiscs: Vec<String>,
}

impl Leftovers {
    pub fn is_empty(&self) -> bool {
        self.cgroups.is_empty()
            && self.netns.is_empty()
            && self.links.is_empty()
            && self.qdiscs.is_empty()
    }
}

/// Removes `tribune/` itself when nothing is left below it.
fn remove_prefix_if_empty(cg: &dyn CgroupEnforcer) {
    for d in cg.group_dirs(PREFIX) {
        let _ = std::fs::remove_dir(d);
    }
}

/// Removes what an instance left except the enclaves in `keep` (adopted after a crash); with
/// nothing to keep it is [`cleanup_instance`].
pub fn cleanup_instance_except(
    cg: &dyn CgroupEnforcer,
    instance: &str,
    keep: &[&str],
) -> Result<()> {
    if keep.is_empty() {
        return cleanup_instance(cg, instance);
    }
    let root = format!("{PREFIX}/{instance}");
    let mut children: Vec<String> = Vec::new();
    for d in cg.group_dirs(&root) {
        if let Ok(rd) = std::fs::read_dir(d) {
            for e in rd.flatten() {
                if e.file_type().map(|t| t.is_dir()).unwrap_or(false) {
                    children.push(e.file_name().to_string_lossy().into_owned());
                }
            }
        }
    }
    children.sort();
    children.dedup();
    for c in children.iter().filter(|c| !keep.contains(&c.as_str())) {
        cg.remove(&format!("{root}/{c}"))?;
    }
    let ns_prefix = format!("{LINK_PREFIX}{instance}-");
    for ns in net::our_netns() {
        if let Some(enclave) = ns.strip_prefix(&ns_prefix)
            && !keep.contains(&enclave)
        {
            let _ = net::run("ip", &["netns", "del", &ns]);
        }
    }
    Ok(())
}

/// Removes the cgroups, namespaces and bridge of one agent instance.
pub fn cleanup_instance(cg: &dyn CgroupEnforcer, instance: &str) -> Result<()> {
    cg.remove(&format!("{PREFIX}/{instance}"))?;
    remove_prefix_if_empty(cg);
    let ns_prefix = format!("{LINK_PREFIX}{instance}-");
    for ns in net::our_netns() {
        if ns.starts_with(&ns_prefix) {
            let _ = net::run("ip", &["netns", "del", &ns]);
        }
    }
    let bridge = format!("{LINK_PREFIX}{}br", short_hash(instance));
    if net::our_links().contains(&bridge) {
        let _ = net::run("ip", &["link", "del", &bridge]);
    }
    Ok(())
}

/// Root qdiscs carrying our handle, as `dev` names.
fn our_qdisc_devs() -> Vec<String> {
    let out = net::run("tc", &["qdisc", "show"]).unwrap_or_default();
    let ours = format!("qdisc htb {QDISC_MAJOR}: dev ");
    out.lines()
        .filter_map(|l| l.strip_prefix(&ours))
        .filter(|rest| rest.contains(" root "))
        .filter_map(|rest| rest.split_whitespace().next().map(str::to_string))
        .collect()
}

/// Everything of ours on this host (all instances).
pub fn leftovers(cg: &dyn CgroupEnforcer) -> Leftovers {
    let mut cgroups = Vec::new();
    for d in cg.group_dirs(PREFIX) {
        for sub in subtree_deepest_first(&d) {
            cgroups.push(sub.display().to_string());
        }
    }
    Leftovers {
        cgroups,
        netns: net::our_netns(),
        links: net::our_links(),
        qdiscs: our_qdisc_devs(),
    }
}

/// What one instance left: its cgroups (deepest first), namespaces and bridge.
pub fn leftovers_of(cg: &dyn CgroupEnforcer, instance: &str) -> Leftovers {
    let mut cgroups = Vec::new();
    for d in cg.group_dirs(&format!("{PREFIX}/{instance}")) {
        for sub in subtree_deepest_first(&d) {
            cgroups.push(sub.display().to_string());
        }
    }
    let ns_prefix = format!("{LINK_PREFIX}{instance}-");
    let bridge = format!("{LINK_PREFIX}{}br", short_hash(instance));
    Leftovers {
        cgroups,
        netns: net::our_netns()
            .into_iter()
            .filter(|n| n.starts_with(&ns_prefix))
            .collect(),
        links: net::our_links()
            .into_iter()
            .filter(|l| *l == bridge)
            .collect(),
        qdiscs: Vec::new(),
    }
}

/// `tribune agent cleanup [--instance NAME]`: removes what one instance left (its cgroups,
/// namespaces — with their veths and qdiscs — and bridge) and nothing of any other. Returns
/// what it found.
pub fn cleanup_one(cgroup_root: &std::path::Path, instance: &str) -> Result<Leftovers> {
    sys::require_root()?;
    let cg = cgroup::detect(cgroup_root)?;
    let found = leftovers_of(cg.as_ref(), instance);
    cleanup_instance(cg.as_ref(), instance)?;
    Ok(found)
}

/// `tribune agent cleanup --all`: removes every cgroup under `tribune/`, every `tb-` namespace and
/// link, and every root qdisc with our handle. Returns what it found.
pub fn cleanup_all(cgroup_root: &std::path::Path) -> Result<Leftovers> {
    sys::require_root()?;
    let cg = cgroup::detect(cgroup_root)?;
    let found = leftovers(cg.as_ref());
    for dev in &found.qdiscs {
        net::remove_our_root_qdisc(None, dev);
    }
    for ns in &found.netns {
        let _ = net::run("ip", &["netns", "del", ns]);
    }
    for link in net::our_links() {
        let _ = net::run("ip", &["link", "del", &link]);
    }
    cg.remove(PREFIX)?;
    Ok(found)
}
