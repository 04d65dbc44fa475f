//! A QEMU enclave's NIC: a tap in the enclave's own network namespace, bridged there with the
//! enclave side of its veth, so the guest's frames take the same path as a process enclave's
//! packets — through the host-side veth (ingress HTB) and, with an uplink, the uplink's HTB
//! class selected by the enclave's address (`net`). Inside the namespace:
//!
//! ```text
//! guest virtio-net ── tap VM_TAP ──┐
//!                                  bridge VM_BRIDGE ── enclave veth ══ host veth ── host bridge
//! ```
//!
//! The guest owns the enclave's address (`NetIdentity::ip`, gateway `.1`); the namespace keeps
//! none of its own, so QEMU (which runs in the namespace) has only loopback — a live
//! migration's stream is a socket the agent opens outside and hands to QEMU
//! (`agent::handoff`), never the enclave's shaped link.
//!
//! The uplink classifies by source address, so a guest that chose another address (or MAC)
//! would leave its class: an nftables bridge filter in the namespace drops any frame from the
//! tap that is not from the guest's MAC, any IPv4 packet or ARP claim not from its address or
//! naming another MAC as its sender, and anything else but RARP (QEMU's self-announce after a
//! migration). IPv6 is not carried.
//!
//! The tap is persistent and owned by uid 0: QEMU opens it while still uid 0 (it drops to the
//! enclave's uid after its devices are open) and holds no `CAP_NET_ADMIN`, which the kernel
//! waives for a tap's owner. Removing the namespace removes the tap, the bridge and the filter.

use crate::error::Result;
use crate::net::{NetIdentity, Network, run};

/// The tap inside an enclave's namespace (names are per namespace).
pub const VM_TAP: &str = "tbt";
/// The bridge inside an enclave's namespace.
pub const VM_BRIDGE: &str = "tbv";
/// The QEMU `-netdev` id of the guest's NIC.
pub const NETDEV_ID: &str = "tribune-net0";

/// What QEMU needs to give the guest its NIC.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct VmNic {
    pub tap: String,
    pub mac: String,
}

impl VmNic {
    /// QEMU's arguments for the NIC: the tap (no helper scripts) and a virtio-net device.
    pub fn qemu_args(&self) -> [String; 4] {
        [
            "-netdev".into(),
            format!(
                "tap,id={NETDEV_ID},ifname={},script=no,downscript=no",
                self.tap
            ),
            "-device".into(),
            format!("virtio-net-pci,netdev={NETDEV_ID},mac={}", self.mac),
        ]
    }
}

/// The guest's MAC: locally administered unicast (`02:`), then 40 bits of SHA-256 of the
/// enclave's name — from the name only, so a migrated guest keeps its MAC on every host
/// (QEMU requires the same device), and with enough bits that two enclaves' MACs collide with
/// negligible odds (about 1 in 10⁵ among 5,000 VMs on one L2).
pub fn vm_mac(enclave: &str) -> String {
    use sha2::Digest;
    let h = sha2::Sha256::digest(enclave.as_bytes());
    format!(
        "02:{:02x}:{:02x}:{:02x}:{:02x}:{:02x}",
        h[0], h[1], h[2], h[3], h[4]
    )
}

/// The nftables ruleset that keeps the guest to its MAC and address (see the module doc).
pub fn guard_ruleset(nic: &VmNic, ip: std::net::Ipv4Addr) -> String {
    let (tap, mac) = (&nic.tap, &nic.mac);
    format!(
        "table bridge tribune {{\n\
         \tchain guard {{\n\
         \t\ttype filter hook forward priority 0; policy accept;\n\
         \t\tiifname \"{tap}\" ether saddr != {mac} drop\n\
         \t\tiifname \"{tap}\" ether type ip ip saddr != {ip} drop\n\
         \t\tiifname \"{tap}\" ether type arp arp saddr ip != {ip} drop\n\
         \t\tiifname \"{tap}\" ether type arp arp saddr ether != {mac} drop\n\
         \t\tiifname \"{tap}\" ether type != {{ ip, arp, 0x8035 }} drop\n\
         \t}}\n\
         }}\n"
    )
}

impl Network {
    /// Turns enclave `id`'s namespace into a VM's: the tap and the bridge, the address handed
    /// to the guest, the guard filter. Its shaping (on the veth and the uplink) is unchanged.
    pub fn attach_vm(&self, id: &NetIdentity, enclave: &str) -> Result<VmNic> {
        let ns = id.netns.as_str();
        let nic = VmNic {
            tap: VM_TAP.to_string(),
            mac: vm_mac(enclave),
        };
        run("ip", &["-n", ns, "addr", "flush", "dev", &id.enclave_veth])?;
        run(
            "ip",
            &["-n", ns, "link", "add", VM_BRIDGE, "type", "bridge"],
        )?;
        run(
            "ip",
            &[
                "-n", ns, "tuntap", "add", "dev", VM_TAP, "mode", "tap", "user", "0",
            ],
        )?;
        for dev in [id.enclave_veth.as_str(), VM_TAP] {
            run("ip", &["-n", ns, "link", "set", dev, "master", VM_BRIDGE])?;
        }
        for dev in [VM_TAP, VM_BRIDGE] {
            run("ip", &["-n", ns, "link", "set", dev, "up"])?;
        }
        nft_in(ns, &guard_ruleset(&nic, id.ip))?;
        Ok(nic)
    }
}

/// Loads `ruleset` into namespace `ns` (`nsenter --net`, which, unlike `ip netns exec`, does
/// not remount /sys under the agent).
fn nft_in(ns: &str, ruleset: &str) -> Result<()> {
    use std::io::Write;
    let path = format!("/run/netns/{ns}");
    let net = format!("--net={path}");
    let mut child = std::process::Command::new("nsenter")
        .args([net.as_str(), "nft", "-f", "-"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .map_err(|e| crate::error::AgentError::MissingTool {
            tool: "nsenter".into(),
            package: "util-linux".into(),
            why: e.to_string(),
        })?;
    if let Some(mut stdin) = child.stdin.take() {
        stdin
            .write_all(ruleset.as_bytes())
            .map_err(|e| crate::error::AgentError::io("write", "nft's stdin", e))?;
    }
    let out = child
        .wait_with_output()
        .map_err(|e| crate::error::AgentError::io("wait", "nft", e))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(crate::error::AgentError::Command {
            cmd: format!("nsenter {net} nft -f - (the guard of {ns})"),
            stderr: String::from_utf8_lossy(&out.stderr).trim().to_string(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_guest_keeps_its_mac_on_every_host_and_its_nic_is_virtio_on_the_tap() {
        assert_eq!(vm_mac("vm"), vm_mac("vm"));
        assert_ne!(vm_mac("vm"), vm_mac("vm2"));
        let mac = vm_mac("vm");
        assert!(mac.starts_with("02:") && mac.len() == 17, "{mac}");
        let nic = VmNic {
            tap: VM_TAP.into(),
            mac: mac.clone(),
        };
        let a = nic.qemu_args();
        assert_eq!(
            a[1],
            "tap,id=tribune-net0,ifname=tbt,script=no,downscript=no"
        );
        assert_eq!(
            a[3],
            format!("virtio-net-pci,netdev=tribune-net0,mac={mac}")
        );
    }

    #[test]
    fn the_guard_drops_frames_not_from_the_guests_mac_and_address() {
        let nic = VmNic {
            tap: "tbt".into(),
            mac: "02:54:00:aa:bb:cc".into(),
        };
        let r = guard_ruleset(&nic, std::net::Ipv4Addr::new(10, 77, 0, 3));
        for line in [
            "iifname \"tbt\" ether saddr != 02:54:00:aa:bb:cc drop",
            "iifname \"tbt\" ether type arp arp saddr ether != 02:54:00:aa:bb:cc drop",
            "iifname \"tbt\" ether type ip ip saddr != 10.77.0.3 drop",
            "iifname \"tbt\" ether type arp arp saddr ip != 10.77.0.3 drop",
            "iifname \"tbt\" ether type != { ip, arp, 0x8035 } drop",
        ] {
            assert!(r.contains(line), "{line} missing from\n{r}");
        }
    }
}
