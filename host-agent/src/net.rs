//! Per-enclave networking: a network namespace joined to a host bridge by a veth pair, and HTB
//! shaping in both directions (enclave ingress on the host-side veth, enclave egress on the
//! bridge uplink, one class per enclave: rate = guarantee, ceil = limit; fq_codel leaves where
//! the kernel has them, pfifo otherwise).
//!
//! Drives `ip` and `tc` (iproute2) rather than netlink: netlink-packet-route (under rtnetlink)
//! models only the fq_codel and ingress qdiscs, so HTB qdiscs and classes would be hand-built
//! netlink messages; setup runs once per enclave launch or plan change, never per sample.
//! Counters for the collectors come from `/proc/net/dev`, never from `tc -s`.

use std::net::Ipv4Addr;
use std::process::Command;

use crate::error::{AgentError, Result};
use crate::plan::Bandwidth;

/// Every link and namespace the agent creates starts with this.
pub const LINK_PREFIX: &str = "tb-";
/// Our qdisc handle major (`0x7462` = "tb"): a root qdisc with it is ours to delete.
pub const QDISC_MAJOR: &str = "7462";
/// Most enclaves per bridge (one /24).
pub const SLOTS_MAX: u16 = 250;

/// Where enclave traffic leaves the host, and how fast that link is.
#[derive(Clone, Debug, serde::Serialize, serde::Deserialize)]
pub struct Uplink {
    /// A bridge port (the host's NIC on a real host; a veth to another namespace in tests).
    pub device: String,
    pub capacity_bits_per_sec: u64,
}

#[derive(Clone, Debug, serde::Serialize, serde::Deserialize)]
pub struct NetConfig {
    /// First three octets of the enclave /24, e.g. `[10, 77, 0]`: `.1` is the bridge.
    pub subnet: [u8; 3],
    pub uplink: Option<Uplink>,
}

/// The network identity of one enclave.
#[derive(Clone, Debug, serde::Serialize)]
pub struct NetIdentity {
    pub netns: String,
    pub host_veth: String,
    pub enclave_veth: String,
    pub ip: Ipv4Addr,
    pub slot: u16,
}

/// The bridge of one agent instance.
#[derive(Debug)]
pub struct Network {
    cfg: NetConfig,
    tag: String,
    bridge: String,
}

/// A short stable hash (FNV-1a) so link names fit the kernel's 15 characters.
pub fn short_hash(s: &str) -> String {
    let mut h: u32 = 0x811c_9dc5;
    for b in s.bytes() {
        h ^= u32::from(b);
        h = h.wrapping_mul(0x0100_0193);
    }
    format!("{h:08x}")
}

/// Runs a command, mapping a non-zero exit to an error carrying its stderr.
pub fn run(program: &str, args: &[&str]) -> Result<String> {
    let out = Command::new(program).args(args).output().map_err(|e| {
        if e.kind() == std::io::ErrorKind::NotFound {
            AgentError::MissingTool {
                tool: program.to_string(),
                package: "iproute2".to_string(),
                why: e.to_string(),
            }
        } else {
            AgentError::io("spawn", program, e)
        }
    })?;
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    } else {
        Err(AgentError::Command {
            cmd: format!("{program} {}", args.join(" ")),
            stderr: String::from_utf8_lossy(&out.stderr).trim().to_string(),
        })
    }
}

fn rate(bits: u64) -> String {
    format!("{bits}bit")
}

/// Adds the leaf qdisc under an HTB class: fq_codel, or pfifo where the kernel lacks it.
fn add_leaf(ns: Option<&str>, dev: &str, parent: &str) -> Result<()> {
    let mut base: Vec<&str> = Vec::new();
    if let Some(ns) = ns {
        base.extend(["-n", ns]);
    }
    base.extend(["qdisc", "replace", "dev", dev, "parent", parent]);
    let mut fq = base.clone();
    fq.push("fq_codel");
    if run("tc", &fq).is_ok() {
        return Ok(());
    }
    let mut pf = base;
    pf.extend(["pfifo", "limit", "1000"]);
    run("tc", &pf).map(|_| ())
}

/// A single-class HTB on `dev` (all traffic into class :1 shaped to `bw`); `None` removes it.
fn shape_whole_device(ns: Option<&str>, dev: &str, bw: Option<Bandwidth>) -> Result<()> {
    let pre: Vec<&str> = ns.map_or(vec![], |n| vec!["-n", n]);
    let root = format!("{QDISC_MAJOR}:");
    let class = format!("{QDISC_MAJOR}:1");
    let Some(bw) = bw else {
        let mut a = pre.clone();
        a.extend(["qdisc", "del", "dev", dev, "root"]);
        let _ = run("tc", &a);
        return Ok(());
    };
    let (r, c) = (rate(bw.guarantee_bits_per_sec), rate(bw.limit_bits_per_sec));
    // HTB refuses `replace` of itself: create the root once, then only replace the class.
    let mut show = pre.clone();
    show.extend(["qdisc", "show", "dev", dev, "root"]);
    if !run("tc", &show)?.contains(&format!("htb {root}")) {
        let mut a = pre.clone();
        a.extend([
            "qdisc", "replace", "dev", dev, "root", "handle", &root, "htb", "default", "1",
        ]);
        run("tc", &a)?;
    }
    let mut a = pre.clone();
    a.extend([
        "class", "replace", "dev", dev, "parent", &root, "classid", &class, "htb", "rate", &r,
        "ceil", &c,
    ]);
    run("tc", &a)?;
    add_leaf(ns, dev, &class)
}

impl Network {
    /// Creates (or adopts) the bridge of agent instance `tag`, and the uplink root HTB.
    pub fn setup(tag: &str, cfg: NetConfig) -> Result<Network> {
        let bridge = format!("{LINK_PREFIX}{}br", short_hash(tag));
        let n = Network {
            cfg,
            tag: tag.to_string(),
            bridge,
        };
        if run("ip", &["link", "show", &n.bridge]).is_err() {
            run("ip", &["link", "add", &n.bridge, "type", "bridge"])?;
        }
        let addr = format!("{}/24", n.ip(1));
        let _ = run("ip", &["addr", "replace", &addr, "dev", &n.bridge]);
        run("ip", &["link", "set", &n.bridge, "up"])?;
        if let Some(up) = &n.cfg.uplink {
            run("ip", &["link", "set", &up.device, "master", &n.bridge])?;
            run("ip", &["link", "set", &up.device, "up"])?;
            let root = format!("{QDISC_MAJOR}:");
            let top = format!("{QDISC_MAJOR}:1");
            let other = format!("{QDISC_MAJOR}:fffe");
            let cap = rate(up.capacity_bits_per_sec);
            remove_our_root_qdisc(None, &up.device);
            run(
                "tc",
                &[
                    "qdisc", "replace", "dev", &up.device, "root", "handle", &root, "htb",
                    "default", "fffe",
                ],
            )?;
            run(
                "tc",
                &[
                    "class", "replace", "dev", &up.device, "parent", &root, "classid", &top, "htb",
                    "rate", &cap, "ceil", &cap,
                ],
            )?;
            // Unclassified traffic (ARP, the host's own) gets a small guarantee.
            run(
                "tc",
                &[
                    "class", "replace", "dev", &up.device, "parent", &top, "classid", &other,
                    "htb", "rate", "100kbit", "ceil", &cap,
                ],
            )?;
            add_leaf(None, &up.device, &other)?;
        }
        Ok(n)
    }

    pub fn bridge(&self) -> &str {
        &self.bridge
    }

    /// The address of `slot` in the enclave subnet (`1` is the bridge).
    pub fn ip(&self, slot: u16) -> Ipv4Addr {
        let [a, b, c] = self.cfg.subnet;
        Ipv4Addr::new(a, b, c, slot.min(254) as u8)
    }

    /// Gives `enclave` a namespace and a veth pair on the bridge, address `.slot+1`.
    pub fn attach(&self, enclave: &str, slot: u16) -> Result<NetIdentity> {
        if slot == 0 || slot > SLOTS_MAX {
            return Err(AgentError::Runtime(format!(
                "network slot {slot} outside 1..={SLOTS_MAX}"
            )));
        }
        let h = short_hash(&format!("{}/{enclave}", self.tag));
        let id = NetIdentity {
            netns: format!("{LINK_PREFIX}{}-{enclave}", self.tag),
            host_veth: format!("{LINK_PREFIX}{h}h"),
            enclave_veth: format!("{LINK_PREFIX}{h}e"),
            ip: self.ip(slot + 1),
            slot,
        };
        let _ = self.detach(&id);
        run("ip", &["netns", "add", &id.netns])?;
        run(
            "ip",
            &[
                "link",
                "add",
                &id.host_veth,
                "type",
                "veth",
                "peer",
                "name",
                &id.enclave_veth,
                "netns",
                &id.netns,
            ],
        )?;
        run(
            "ip",
            &["link", "set", &id.host_veth, "master", &self.bridge],
        )?;
        run("ip", &["link", "set", &id.host_veth, "up"])?;
        // The slot, for `adopt` (a VM's namespace hands its address to the guest: `net_vm`).
        let alias = format!("{SLOT_ALIAS}{slot}");
        run(
            "ip",
            &["link", "set", "dev", &id.host_veth, "alias", &alias],
        )?;
        let ns = id.netns.as_str();
        let addr = format!("{}/24", id.ip);
        run(
            "ip",
            &["-n", ns, "addr", "add", &addr, "dev", &id.enclave_veth],
        )?;
        run("ip", &["-n", ns, "link", "set", &id.enclave_veth, "up"])?;
        run("ip", &["-n", ns, "link", "set", "lo", "up"])?;
        let gw = self.ip(1).to_string();
        run("ip", &["-n", ns, "route", "add", "default", "via", &gw])?;
        Ok(id)
    }

    /// The identity of an enclave attached before an agent crash, if its namespace and veth
    /// are still there (the slot is read back from the host veth's alias, or from the
    /// enclave's address on a namespace set up before the alias was written).
    pub fn adopt(&self, enclave: &str) -> Option<NetIdentity> {
        let h = short_hash(&format!("{}/{enclave}", self.tag));
        let netns = format!("{LINK_PREFIX}{}-{enclave}", self.tag);
        let enclave_veth = format!("{LINK_PREFIX}{h}e");
        let host_veth = format!("{LINK_PREFIX}{h}h");
        run("ip", &["-n", &netns, "link", "show", "dev", &enclave_veth]).ok()?;
        let slot = run("ip", &["-o", "link", "show", "dev", &host_veth])
            .ok()
            .and_then(|out| slot_from_alias(&out))
            .or_else(|| Self::slot_from_address(&netns, &enclave_veth))?;
        Some(NetIdentity {
            netns,
            host_veth,
            enclave_veth,
            ip: self.ip(slot + 1),
            slot,
        })
    }

    fn slot_from_address(netns: &str, enclave_veth: &str) -> Option<u16> {
        let out = run(
            "ip",
            &["-n", netns, "-o", "-4", "addr", "show", "dev", enclave_veth],
        )
        .ok()?;
        let ip: Ipv4Addr = out
            .split_whitespace()
            .skip_while(|w| *w != "inet")
            .nth(1)?
            .split('/')
            .next()?
            .parse()
            .ok()?;
        u16::from(ip.octets()[3]).checked_sub(1)
    }

    /// Removes an enclave's namespace and links (and with them their qdiscs).
    pub fn detach(&self, id: &NetIdentity) -> Result<()> {
        let _ = self.set_egress(id, None);
        let _ = run("ip", &["link", "del", &id.host_veth]);
        if run("ip", &["netns", "pids", &id.netns]).is_ok() {
            run("ip", &["netns", "del", &id.netns])?;
        }
        Ok(())
    }

    /// Outside → enclave: HTB on the host-side veth (its egress is the enclave's ingress).
    pub fn set_ingress(&self, id: &NetIdentity, bw: Option<Bandwidth>) -> Result<()> {
        shape_whole_device(None, &id.host_veth, bw)
    }

    /// Enclave → outside: an HTB class of its own on the uplink, selected by source address.
    /// Without an uplink (a standalone development host) the enclave-side veth is shaped.
    pub fn set_egress(&self, id: &NetIdentity, bw: Option<Bandwidth>) -> Result<()> {
        let Some(up) = &self.cfg.uplink else {
            return shape_whole_device(Some(&id.netns), &id.enclave_veth, bw);
        };
        let dev = up.device.as_str();
        let minor = format!("{:x}", u32::from(id.slot) + 0x10);
        let class = format!("{QDISC_MAJOR}:{minor}");
        let root = format!("{QDISC_MAJOR}:");
        let top = format!("{QDISC_MAJOR}:1");
        let prio = (u32::from(id.slot) + 10).to_string();
        let _ = run(
            "tc",
            &["filter", "del", "dev", dev, "parent", &root, "prio", &prio],
        );
        let Some(bw) = bw else {
            let _ = run("tc", &["class", "del", "dev", dev, "classid", &class]);
            return Ok(());
        };
        let (r, c) = (rate(bw.guarantee_bits_per_sec), rate(bw.limit_bits_per_sec));
        run(
            "tc",
            &[
                "class", "replace", "dev", dev, "parent", &top, "classid", &class, "htb", "rate",
                &r, "ceil", &c,
            ],
        )?;
        add_leaf(None, dev, &class)?;
        let src = format!("{}/32", id.ip);
        run(
            "tc",
            &[
                "filter", "add", "dev", dev, "parent", &root, "protocol", "ip", "prio", &prio,
                "u32", "match", "ip", "src", &src, "flowid", &class,
            ],
        )
        .map(|_| ())
    }

    /// Removes the bridge and our uplink qdisc.
    pub fn teardown(&self) -> Result<()> {
        if let Some(up) = &self.cfg.uplink {
            remove_our_root_qdisc(None, &up.device);
            let _ = run("ip", &["link", "set", &up.device, "nomaster"]);
        }
        let _ = run("ip", &["link", "del", &self.bridge]);
        Ok(())
    }
}

/// The host veth's alias names the enclave's slot: `tribune-slot=N`.
const SLOT_ALIAS: &str = "tribune-slot=";

/// The slot in `ip -o link show`'s line of a host veth (`… alias tribune-slot=N`).
fn slot_from_alias(line: &str) -> Option<u16> {
    let rest = &line[line.find(SLOT_ALIAS)? + SLOT_ALIAS.len()..];
    let n: u16 = rest.split_whitespace().next()?.parse().ok()?;
    (1..=SLOTS_MAX).contains(&n).then_some(n)
}

/// Deletes the root qdisc of `dev` if its handle is ours.
pub fn remove_our_root_qdisc(ns: Option<&str>, dev: &str) {
    let mut a: Vec<&str> = ns.map_or(vec![], |n| vec!["-n", n]);
    a.extend(["qdisc", "show", "dev", dev, "root"]);
    if let Ok(out) = run("tc", &a)
        && out.contains(&format!("qdisc htb {QDISC_MAJOR}:"))
    {
        let mut d: Vec<&str> = ns.map_or(vec![], |n| vec!["-n", n]);
        d.extend(["qdisc", "del", "dev", dev, "root"]);
        let _ = run("tc", &d);
    }
}

/// Every link in the root namespace whose name starts with our prefix.
pub fn our_links() -> Vec<String> {
    let out = run("ip", &["-o", "link", "show"]).unwrap_or_default();
    out.lines()
        .filter_map(|l| l.split(':').nth(1))
        .map(|n| n.trim().split('@').next().unwrap_or("").to_string())
        .filter(|n| n.starts_with(LINK_PREFIX) && n.len() > LINK_PREFIX.len())
        .collect()
}

/// Every network namespace whose name starts with our prefix.
pub fn our_netns() -> Vec<String> {
    let out = run("ip", &["netns", "list"]).unwrap_or_default();
    out.lines()
        .filter_map(|l| l.split_whitespace().next())
        .filter(|n| n.starts_with(LINK_PREFIX))
        .map(str::to_string)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn link_names_fit_the_kernel_limit() {
        let h = short_hash("some-long-instance-name/some-long-enclave-name");
        assert_eq!(h.len(), 8);
        assert!(format!("{LINK_PREFIX}{h}h").len() <= 15);
        assert_ne!(short_hash("a/b"), short_hash("a/c"));
    }

    #[test]
    fn the_slot_is_read_back_from_the_host_veths_alias() {
        let line = "12: tb-1234abcdh@if2: <BROADCAST,UP> mtu 1500 qdisc htb master tb-x \\                        link/ether 5a:1b:2c:3d:4e:5f brd ff:ff:ff:ff:ff:ff link-netns tb-a-vm \\                        alias tribune-slot=17";
        assert_eq!(slot_from_alias(line), Some(17));
        assert_eq!(slot_from_alias("alias tribune-slot=0"), None);
        assert_eq!(slot_from_alias("alias tribune-slot=251"), None);
        assert_eq!(slot_from_alias("alias tribune-slot=x"), None);
        assert_eq!(slot_from_alias("no alias here"), None);
    }
}
