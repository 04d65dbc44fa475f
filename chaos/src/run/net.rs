//! The run's network: one bridge in the root namespace and one network namespace per node,
//! each joined to the bridge by a veth pair and given its own address on a /24 of the run's
//! own. Partitions and packet loss are nft rules inside the nodes' namespaces (table
//! `inet tchaos`; loss draws each packet with `numgen random`), so they go away with the
//! namespaces.
//!
//! Names are unique per run and carry the harness's pid (`tch<PID>x<N>…`), so a sweep at start
//! ([`sweep_stale`]) removes what a harness that died without cleaning up left behind, and
//! never what a live one is using. [`Net`] removes its own on drop, also when unwinding.
//!
//! Every link between controllers goes through the harness's userspace proxy
//! ([`super::proxy`]): in namespace `i`, a new connection to peer `j`'s port is rewritten
//! (`dnat`) to the link's listening address `L(i→j)` on the bridge, and the proxy connects on
//! from the link's source address `S(i→j)`. The partition and loss rules name every address a
//! link's packets can carry, so they cut proxied and direct packets alike.

use std::collections::{BTreeMap, BTreeSet};
use std::net::Ipv4Addr;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};

use super::Error;

/// The prefix of every name a run creates.
pub const PREFIX: &str = "tch";

static RUNS: AtomicU32 = AtomicU32::new(0);

/// Runs `program args`, an error with its stderr when it fails.
pub fn cmd(program: &str, args: &[&str]) -> Result<String, Error> {
    let out = Command::new(program)
        .args(args)
        .stdin(Stdio::null())
        .output()
        .map_err(|e| Error::Setup(format!("running {program}: {e}")))?;
    if !out.status.success() {
        return Err(Error::Setup(format!(
            "{program} {}: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        )));
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// `nft -f -` with `script` inside namespace `ns`.
fn nft(ns: &str, script: &str) -> Result<(), Error> {
    use std::io::Write;
    let mut child = Command::new("ip")
        .args(["netns", "exec", ns, "nft", "-f", "-"])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| Error::Setup(format!("running nft: {e}")))?;
    if let Some(mut stdin) = child.stdin.take() {
        stdin
            .write_all(script.as_bytes())
            .map_err(|e| Error::Setup(format!("writing to nft: {e}")))?;
    }
    let out = child
        .wait_with_output()
        .map_err(|e| Error::Setup(format!("waiting for nft: {e}")))?;
    if !out.status.success() {
        return Err(Error::Setup(format!(
            "nft in {ns}: {}\n{script}",
            String::from_utf8_lossy(&out.stderr).trim()
        )));
    }
    Ok(())
}

/// Whether this machine can build a run's network: root, `ip` and `nft`.
/// Why the harness cannot run on this machine.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CannotRun {
    #[error("the chaos harness needs root (network namespaces, nft)")]
    NotRoot,
    #[error("`{0}` is not installed (iproute2, nftables)")]
    Missing(&'static str),
}

pub fn can_run() -> Result<(), CannotRun> {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        return Err(CannotRun::NotRoot);
    }
    for tool in ["ip", "nft"] {
        let found = Command::new(tool)
            .arg("-V")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok();
        if !found {
            return Err(CannotRun::Missing(tool));
        }
    }
    Ok(())
}

/// The pid a name of ours carries (`tch<PID>x…`), if it is one of ours.
pub fn owner(name: &str) -> Option<i32> {
    let rest = name.strip_prefix(PREFIX)?;
    let digits: String = rest.chars().take_while(char::is_ascii_digit).collect();
    if !rest[digits.len()..].starts_with('x') {
        return None;
    }
    digits.parse().ok()
}

pub fn alive(pid: i32) -> bool {
    std::path::Path::new(&format!("/proc/{pid}")).exists()
}

/// Removes the namespaces and links that runs whose harness is gone left behind; how many.
pub fn sweep_stale() -> usize {
    let mut removed = 0;
    let names = cmd("ip", &["netns", "list"]).unwrap_or_default();
    for line in names.lines() {
        let name = line.split_whitespace().next().unwrap_or("");
        if owner(name).is_some_and(|p| !alive(p)) && cmd("ip", &["netns", "del", name]).is_ok() {
            removed += 1;
        }
    }
    let links = cmd("ip", &["-o", "link", "show"]).unwrap_or_default();
    for line in links.lines() {
        // "7: tch123x0b: <…"
        let Some(name) = line.split(": ").nth(1) else {
            continue;
        };
        let name = name.split('@').next().unwrap_or(name);
        if owner(name).is_some_and(|p| !alive(p)) && cmd("ip", &["link", "del", name]).is_ok() {
            removed += 1;
        }
    }
    // The controllers' tmpfs (named `tch<PID>x<N>d<I>`).
    let mounts = std::fs::read_to_string("/proc/self/mounts").unwrap_or_default();
    for line in mounts.lines() {
        let mut f = line.split_whitespace();
        if let (Some(src), Some(at)) = (f.next(), f.next())
            && owner(src).is_some_and(|p| !alive(p))
            && cmd("umount", &["-l", at]).is_ok()
        {
            removed += 1;
        }
    }
    removed
}

/// One node's place in the network.
#[derive(Debug, Clone)]
pub struct Slot {
    pub ns: String,
    pub ip: Ipv4Addr,
}

/// A run's bridge and namespaces.
pub struct Net {
    pub tag: String,
    pub bridge: String,
    pub gateway: Ipv4Addr,
    pub slots: Vec<Slot>,
    /// `(from, to)`: packets from slot `from` to slot `to` are dropped.
    blocked: BTreeSet<(usize, usize)>,
    /// `(from, to) → percent`: that share of the packets from `from` to `to` is dropped, each
    /// packet drawn at random by nft (`numgen random`): packet loss without netem.
    lossy: BTreeMap<(usize, usize), u8>,
    /// The port the nodes listen on (the proxy's links are rewritten to it).
    port: u16,
    /// The host agents' namespaces ([`Net::add_agents`]).
    pub agents: Vec<Slot>,
    /// `(agent, controller)`: cut off from each other, both ways.
    agent_cut: BTreeSet<(usize, usize)>,
    /// The run's hold on its /24 ([`lease_subnet`]); released after the bridge is deleted.
    _subnet: Option<std::fs::File>,
}

/// Takes the /24 `10.SECOND.THIRD.0` for this run, starting at (`second`, `third`) and
/// walking on: one held (an exclusive `flock` on `/tmp/tribune-chaos-subnets/…`) by another
/// run of any process, or already routed on this host, is skipped. Two runs on one /24 put
/// the same route on two bridges, and the host's packets to one run's nodes can leave on the
/// other's. `None` (the lock directory unusable): the start, unheld.
fn lease_subnet(second: u8, third: u8) -> (u8, u8, Option<std::fs::File>) {
    use std::os::unix::io::AsRawFd;
    // Not $TMPDIR: every run on the host must meet in one place, whatever its environment.
    let dir = std::path::Path::new("/tmp/tribune-chaos-subnets");
    if std::fs::create_dir_all(dir).is_err() {
        return (second, third, None);
    }
    let start = u32::from(second.saturating_sub(200)) * 256 + u32::from(third);
    for k in 0..50 * 256 {
        let i = (start + k) % (50 * 256);
        let (s, t) = (200 + (i / 256) as u8, (i % 256) as u8);
        let Ok(file) = std::fs::File::create(dir.join(format!("10.{s}.{t}.lock"))) else {
            continue;
        };
        // SAFETY: a valid open descriptor; flock has no other preconditions.
        if unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) } != 0 {
            continue;
        }
        let routed = cmd("ip", &["-4", "route", "show", &format!("10.{s}.{t}.0/24")])
            .map(|out| !out.trim().is_empty())
            .unwrap_or(false);
        if !routed {
            return (s, t, Some(file));
        }
    }
    (second, third, None)
}

impl Net {
    /// A bridge and `n` namespaces on a /24 of this run's own.
    pub fn create(n: usize, port: u16) -> Result<Self, Error> {
        let pid = std::process::id();
        let run = RUNS.fetch_add(1, Ordering::Relaxed);
        let tag = format!("{PREFIX}{pid}x{run}");
        // 10.(200 + run % 50).(pid % 256).0/24 or the next one no other run holds.
        let (second, third, lease) = lease_subnet(200 + (run % 50) as u8, (pid % 256) as u8);
        let ip = |host: u8| Ipv4Addr::new(10, second, third, host);
        let mut net = Net {
            bridge: format!("{tag}b"),
            tag: tag.clone(),
            gateway: ip(1),
            slots: vec![],
            blocked: BTreeSet::new(),
            lossy: BTreeMap::new(),
            port,
            agents: vec![],
            agent_cut: BTreeSet::new(),
            _subnet: lease,
        };
        cmd("ip", &["link", "add", &net.bridge, "type", "bridge"])?;
        cmd(
            "ip",
            &[
                "addr",
                "add",
                &format!("{}/24", net.gateway),
                "dev",
                &net.bridge,
            ],
        )?;
        for a in 0..n {
            for b in (0..n).filter(|&b| b != a) {
                for ip in [net.listen_ip(a, b), net.source_ip(a, b)] {
                    cmd(
                        "ip",
                        &["addr", "add", &format!("{ip}/32"), "dev", &net.bridge],
                    )?;
                }
            }
        }
        cmd("ip", &["link", "set", &net.bridge, "up"])?;
        for i in 0..n {
            let slot = Slot {
                ns: format!("{tag}n{i}"),
                ip: ip(10 + i as u8),
            };
            // Listed before it is made, so a failure half-way still removes it on drop.
            net.slots.push(slot.clone());
            net.join(&slot, &format!("{tag}v{i}"), &format!("{tag}p{i}"))?;
        }
        net.apply_rules()?;
        Ok(net)
    }

    /// Creates namespace `slot.ns`, joined to the bridge by the veth pair `host_end`/`ns_end`,
    /// with `slot.ip` and a default route through the bridge.
    fn join(&self, slot: &Slot, host_end: &str, ns_end: &str) -> Result<(), Error> {
        cmd("ip", &["netns", "add", &slot.ns])?;
        cmd(
            "ip",
            &[
                "link", "add", host_end, "type", "veth", "peer", "name", ns_end,
            ],
        )?;
        cmd("ip", &["link", "set", host_end, "master", &self.bridge])?;
        cmd("ip", &["link", "set", host_end, "up"])?;
        cmd("ip", &["link", "set", ns_end, "netns", &slot.ns])?;
        let in_ns = |args: &[&str]| {
            let mut a = vec!["netns", "exec", &slot.ns];
            a.extend_from_slice(args);
            cmd("ip", &a)
        };
        in_ns(&["ip", "link", "set", "lo", "up"])?;
        in_ns(&[
            "ip",
            "addr",
            "add",
            &format!("{}/24", slot.ip),
            "dev",
            ns_end,
        ])?;
        in_ns(&["ip", "link", "set", ns_end, "up"])?;
        in_ns(&[
            "ip",
            "route",
            "add",
            "default",
            "via",
            &self.gateway.to_string(),
        ])?;
        Ok(())
    }

    /// Adds `n` host-agent namespaces (`<tag>a<K>`, address `….(50+K)`) on the bridge; they
    /// reach the controllers directly (no proxy), and [`Net::cut_agent`] cuts them off.
    pub fn add_agents(&mut self, n: usize) -> Result<(), Error> {
        for k in 0..n {
            let slot = Slot {
                ns: format!("{}a{k}", self.tag),
                ip: self.on_bridge(50 + k),
            };
            self.agents.push(slot.clone());
            self.join(
                &slot,
                &format!("{}w{k}", self.tag),
                &format!("{}q{k}", self.tag),
            )?;
        }
        self.apply_rules()
    }

    /// Cuts agent `agent` off from each of `controllers`, both ways, until [`Net::heal`]: one
    /// rewrite of the rules for all of them.
    pub fn cut_agent(
        &mut self,
        agent: usize,
        controllers: impl IntoIterator<Item = usize>,
    ) -> Result<(), Error> {
        self.agent_cut
            .extend(controllers.into_iter().map(|c| (agent, c)));
        self.apply_rules()
    }

    /// Heals every agent's cuts (the controllers' partitions stay).
    pub fn heal_agents(&mut self) -> Result<(), Error> {
        self.agent_cut.clear();
        self.apply_rules()
    }

    /// The controllers agent `agent` is cut off from.
    pub fn agent_cut_from(&self, agent: usize) -> BTreeSet<usize> {
        self.agent_cut
            .iter()
            .filter(|(a, _)| *a == agent)
            .map(|(_, c)| *c)
            .collect()
    }

    /// Drops packets from `from` to `to` (one way) until [`Net::heal`].
    pub fn block(&mut self, from: usize, to: usize) -> Result<(), Error> {
        self.blocked.insert((from, to));
        self.apply_rules()
    }

    /// Cuts `a` and `b` apart both ways.
    pub fn cut(&mut self, a: usize, b: usize) -> Result<(), Error> {
        self.blocked.insert((a, b));
        self.blocked.insert((b, a));
        self.apply_rules()
    }

    /// Cuts `a` apart from each of `others`, both ways, in one rewrite of the rules.
    pub fn isolate(
        &mut self,
        a: usize,
        others: impl IntoIterator<Item = usize>,
    ) -> Result<(), Error> {
        for b in others {
            self.blocked.insert((a, b));
            self.blocked.insert((b, a));
        }
        self.apply_rules()
    }

    /// Joins `a` again with each of `others`, both ways (what [`Net::isolate`] or [`Net::cut`]
    /// did, and any one-way block), and moves agent `agent`'s cuts to `agent_cut_from`: one
    /// rewrite of the rules.
    pub fn rejoin(
        &mut self,
        a: usize,
        others: &[usize],
        agent: usize,
        agent_cut_from: &[usize],
    ) -> Result<(), Error> {
        for &b in others {
            self.blocked.remove(&(a, b));
            self.blocked.remove(&(b, a));
        }
        self.agent_cut.retain(|(k, _)| *k != agent);
        self.agent_cut
            .extend(agent_cut_from.iter().map(|&c| (agent, c)));
        self.apply_rules()
    }

    /// Drops `percent` % of the packets from `from` to `to`, at random, until [`Net::heal`].
    pub fn lose(&mut self, from: usize, to: usize, percent: u8) -> Result<(), Error> {
        self.lossy.insert((from, to), percent.min(100));
        self.apply_rules()
    }

    /// Removes every partition and every lossy link.
    pub fn heal(&mut self) -> Result<(), Error> {
        self.blocked.clear();
        self.lossy.clear();
        self.agent_cut.clear();
        self.apply_rules()
    }

    pub fn blocked(&self) -> &BTreeSet<(usize, usize)> {
        &self.blocked
    }

    /// Where the proxy listens for the link from node `from` to node `to` (on the bridge).
    pub fn listen_ip(&self, from: usize, to: usize) -> Ipv4Addr {
        self.on_bridge(100 + 10 * from + to)
    }

    /// The address the proxy connects to node `to` from, for the link from node `from`.
    pub fn source_ip(&self, from: usize, to: usize) -> Ipv4Addr {
        self.on_bridge(150 + 10 * from + to)
    }

    fn on_bridge(&self, host: usize) -> Ipv4Addr {
        let o = self.gateway.octets();
        Ipv4Addr::new(o[0], o[1], o[2], host as u8)
    }

    /// The proxy's links: for each ordered pair of nodes, where it listens, where it connects.
    pub fn proxy_links(&self) -> Vec<super::proxy::LinkAddrs> {
        let n = self.slots.len();
        let mut out = vec![];
        for a in 0..n {
            for b in (0..n).filter(|&b| b != a) {
                out.push(super::proxy::LinkAddrs {
                    link: (a, b),
                    listen: (self.listen_ip(a, b), self.port).into(),
                    upstream: (self.slots[b].ip, self.port).into(),
                    bind: Some(self.source_ip(a, b).into()),
                });
            }
        }
        out
    }

    /// Every address a packet from `from` to `to` may carry as its destination, as seen in
    /// `from`'s namespace: `to` itself, the link's listening address (after the `dnat`), and
    /// the proxy's source address on the reverse link (answers on connections `to` opened).
    fn sent_to(&self, from: usize, to: usize) -> String {
        format!(
            "{{ {}, {}, {} }}",
            self.slots[to].ip,
            self.listen_ip(from, to),
            self.source_ip(to, from)
        )
    }

    /// Every source address a packet from `from` may carry when it arrives at `to`.
    fn received_from(&self, from: usize, to: usize) -> String {
        format!(
            "{{ {}, {}, {} }}",
            self.slots[from].ip,
            self.source_ip(from, to),
            self.listen_ip(to, from)
        )
    }

    /// Rewrites every namespace's table from `blocked`: a slot drops what it would send to a
    /// peer it may not reach, and what arrives from a peer that may not reach it.
    fn apply_rules(&self) -> Result<(), Error> {
        for (i, slot) in self.slots.iter().enumerate() {
            let mut out = String::new();
            let mut inp = String::new();
            let mut nat = String::new();
            for (j, peer) in self.slots.iter().enumerate().filter(|&(j, _)| j != i) {
                nat.push_str(&format!(
                    "    ip daddr {} tcp dport {port} dnat ip to {}:{port}\n",
                    peer.ip,
                    self.listen_ip(i, j),
                    port = self.port
                ));
            }
            for &(from, to) in &self.blocked {
                if from == i {
                    out.push_str(&format!("    ip daddr {} drop\n", self.sent_to(from, to)));
                }
                if to == i {
                    inp.push_str(&format!(
                        "    ip saddr {} drop\n",
                        self.received_from(from, to)
                    ));
                }
            }
            for (&(from, to), pct) in &self.lossy {
                if from == i {
                    out.push_str(&format!(
                        "    ip daddr {} numgen random mod 100 < {pct} drop\n",
                        self.sent_to(from, to)
                    ));
                }
            }
            let script = format!(
                "table inet tchaos {{}}\ndelete table inet tchaos\n\
                 table inet tchaos {{\n  chain input {{\n    type filter hook input priority 0; policy accept;\n{inp}  }}\n\
                 \x20 chain output {{\n    type filter hook output priority 0; policy accept;\n{out}  }}\n\
                 \x20 chain nat_out {{\n    type nat hook output priority -100; policy accept;\n{nat}  }}\n}}\n"
            );
            nft(&slot.ns, &script)?;
        }
        for (k, slot) in self.agents.iter().enumerate() {
            let cut: Vec<String> = self
                .agent_cut_from(k)
                .into_iter()
                .map(|c| self.slots[c].ip.to_string())
                .collect();
            let (inp, out) = if cut.is_empty() {
                (String::new(), String::new())
            } else {
                let set = cut.join(", ");
                (
                    format!("    ip saddr {{ {set} }} drop\n"),
                    format!("    ip daddr {{ {set} }} drop\n"),
                )
            };
            let script = format!(
                "table inet tchaos {{}}\ndelete table inet tchaos\n\
                 table inet tchaos {{\n  chain input {{\n    type filter hook input priority 0; policy accept;\n{inp}  }}\n\
                 \x20 chain output {{\n    type filter hook output priority 0; policy accept;\n{out}  }}\n}}\n"
            );
            nft(&slot.ns, &script)?;
        }
        Ok(())
    }
}

impl Drop for Net {
    fn drop(&mut self) {
        for s in self.slots.iter().chain(&self.agents) {
            // Deleting the namespace deletes its veth end (and so the pair) and its nft table.
            let _ = cmd("ip", &["netns", "del", &s.ns]);
        }
        for i in 0..self.slots.len() {
            let _ = cmd("ip", &["link", "del", &format!("{}v{i}", self.tag)]);
        }
        for k in 0..self.agents.len() {
            let _ = cmd("ip", &["link", "del", &format!("{}w{k}", self.tag)]);
        }
        let _ = cmd("ip", &["link", "del", &self.bridge]);
    }
}

/// Whether any namespace or link of this process is still there (for tests of the cleanup).
pub fn leftovers_of(pid: u32) -> Vec<String> {
    let mine = |n: &str| owner(n) == Some(pid as i32);
    let mut left = vec![];
    for line in cmd("ip", &["netns", "list"]).unwrap_or_default().lines() {
        let name = line.split_whitespace().next().unwrap_or("");
        if mine(name) {
            left.push(name.to_string());
        }
    }
    for line in cmd("ip", &["-o", "link", "show"])
        .unwrap_or_default()
        .lines()
    {
        if let Some(name) = line.split(": ").nth(1) {
            let name = name.split('@').next().unwrap_or(name);
            if mine(name) {
                left.push(name.to_string());
            }
        }
    }
    left
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_carry_their_owner() {
        assert_eq!(owner("tch1234x0n2"), Some(1234));
        assert_eq!(owner("tch1234x17b"), Some(1234));
        assert_eq!(owner("tch1234"), None);
        assert_eq!(owner("veth0"), None);
        assert_eq!(owner("tchx0"), None);
    }

    #[test]
    fn runs_at_once_never_share_a_subnet_and_a_released_one_is_taken_again() {
        // Held by another run (in this process or another): the next one is taken.
        let (s1, t1, a) = lease_subnet(249, 255);
        let (s2, t2, b) = lease_subnet(s1, t1);
        assert!(a.is_some() && b.is_some(), "the lock directory is usable");
        assert_ne!((s1, t1), (s2, t2), "two runs on one /24");
        drop(a);
        let (s3, t3, _c) = lease_subnet(s1, t1);
        assert_eq!((s3, t3), (s1, t1), "released with its run");
    }
}
