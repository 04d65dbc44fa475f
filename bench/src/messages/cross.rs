//! The cross-host variant of `messages`: two agent processes, each in a network namespace of
//! its own joined by a veth pair (no loopback shortcut), with mutual-TLS peer links between
//! their mediators (certificates from a `tribune ca` directory of the run). The receivers
//! (`rx`, `tq`) live on host `hb`; every sender on `ha`. Each host's plan carries the other's
//! enclaves as remote ones (their host, epoch, peer address and talk rules), as the controllers
//! would send them.

use std::path::Path;
use std::process::Command;

use anyhow::Context;
use tribune_agent::plan::{Plan, RemoteEnclave};
use tribune_tls::PeerIdentity;

use super::{AgentSpec, BenchAgent, Peer, plan, start_agent};

/// The host of the receivers in a cross-host run.
pub const RECEIVER_HOST: &str = "hb";
/// The host of the senders.
pub const SENDER_HOST: &str = "ha";
/// Enclaves placed on [`RECEIVER_HOST`].
pub const ON_RECEIVER_HOST: [&str; 2] = ["rx", "tq"];
/// The peer-link port inside each namespace (namespaces have ports of their own).
const PEER_PORT: u16 = 7601;

/// Two namespaces joined by a veth pair; deleted when dropped.
pub struct NetPair {
    names: [String; 2],
    addrs: [String; 2],
}

fn ip(args: &[&str]) -> anyhow::Result<()> {
    let out = Command::new("ip")
        .args(args)
        .output()
        .context("running ip (iproute2)")?;
    anyhow::ensure!(
        out.status.success(),
        "ip {}: {}",
        args.join(" "),
        String::from_utf8_lossy(&out.stderr).trim()
    );
    Ok(())
}

impl NetPair {
    /// `tbmA<pid>`/`tbmB<pid>` with 10.231.(pid % 250).1 and .2 on a veth pair.
    pub fn create() -> anyhow::Result<NetPair> {
        let pid = std::process::id();
        let names = [format!("tbmA{pid}"), format!("tbmB{pid}")];
        let net = pid % 250;
        let addrs = [format!("10.231.{net}.1"), format!("10.231.{net}.2")];
        let pair = NetPair { names, addrs };
        let [a, b] = &pair.names;
        ip(&["netns", "add", a])?;
        ip(&["netns", "add", b])?;
        let (va, vb) = (format!("tbma{pid}"), format!("tbmb{pid}"));
        ip(&["link", "add", &va, "type", "veth", "peer", "name", &vb])?;
        for (ns, veth, addr) in [(a, &va, &pair.addrs[0]), (b, &vb, &pair.addrs[1])] {
            ip(&["link", "set", veth, "netns", ns])?;
            ip(&["-n", ns, "addr", "add", &format!("{addr}/24"), "dev", veth])?;
            ip(&["-n", ns, "link", "set", veth, "up"])?;
            ip(&["-n", ns, "link", "set", "lo", "up"])?;
        }
        Ok(pair)
    }

    fn peer_addr(&self, i: usize) -> String {
        format!("{}:{PEER_PORT}", self.addrs[i])
    }
}

impl Drop for NetPair {
    fn drop(&mut self) {
        for n in &self.names {
            let _ = Command::new("ip").args(["netns", "del", n]).output();
        }
    }
}

/// `plan()` split across the two hosts, each with the other's enclaves as remote ones.
fn split(net: &NetPair) -> (Plan, Plan) {
    let all = plan();
    let (mut on_a, mut on_b) = (
        Plan {
            version: 1,
            ..Plan::default()
        },
        Plan {
            version: 1,
            ..Plan::default()
        },
    );
    for (name, e) in all.enclaves {
        let on_receiver_host = ON_RECEIVER_HOST.contains(&name.as_str());
        let (home, other, host, addr) = if on_receiver_host {
            (&mut on_b, &mut on_a, RECEIVER_HOST, net.peer_addr(1))
        } else {
            (&mut on_a, &mut on_b, SENDER_HOST, net.peer_addr(0))
        };
        other.remote.insert(
            name.clone(),
            RemoteEnclave {
                host: host.into(),
                placement_epoch: 1,
                peer_addr: addr,
                talk: e.talk.clone(),
            },
        );
        home.enclaves.insert(name, e);
    }
    (on_a, on_b)
}

/// Starts the senders' agent in the first namespace and the receivers' in the second.
pub async fn start_pair(
    binary: &Path,
    net: &NetPair,
    ca: &Path,
    progress: &impl Fn(&str),
) -> anyhow::Result<(BenchAgent, BenchAgent)> {
    tribune_testkit::tls::try_make_ca(ca).context("making the run's CA")?;
    for host in [SENDER_HOST, RECEIVER_HOST] {
        tribune_testkit::tls::try_issue(ca, &PeerIdentity::Agent { host: host.into() })
            .with_context(|| format!("issuing agent {host}'s certificate"))?;
    }
    let (plan_a, plan_b) = split(net);
    let spec = |i: usize, host: &str, plan: Plan| AgentSpec {
        suffix: host.to_string(),
        netns: Some(net.names[i].clone()),
        peer: Some(Peer {
            listen: net.peer_addr(i),
            host_id: host.to_string(),
            tls_dir: ca.to_path_buf(),
        }),
        plan,
    };
    let a = start_agent(binary, spec(0, SENDER_HOST, plan_a), progress).await?;
    let b = start_agent(binary, spec(1, RECEIVER_HOST, plan_b), progress).await?;
    Ok((a, b))
}
