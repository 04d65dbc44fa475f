//! A VM's NIC on the real kernel (root): the tap in the enclave's namespace is bridged to its
//! veth, so what the guest sends leaves through the enclave's shaped link — and only frames
//! from the guest's own MAC and address do (`net_vm`'s guard). The guest here is this test
//! writing frames to the tap, as QEMU would; `migrate.rs` moves a real VM with its NIC.
// The lock serialises tests across threads; each test owns its runtime, so holding it
// over awaits cannot deadlock.
#![allow(clippy::await_holding_lock)]

mod common;

use std::net::Ipv4Addr;
use std::time::Duration;

use common::frames::{self, Capture, parse_mac};
use common::*;
use tribune_agent::net::{self, NetConfig, Network};
use tribune_agent::net_vm::{VM_BRIDGE, VM_TAP, vm_mac};
use tribune_agent::{Agent, Bandwidth, EnclavePlan, LaunchSpec, RuntimeKind};

/// Waits until the tap's bridge port forwards: the kernel takes a carrier change (the tap
/// opened) in its own time, up to about a second.
fn tap_forwards(ns: &str) {
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    loop {
        let out =
            net::run("bridge", &["-n", ns, "link", "show", "dev", VM_TAP]).unwrap_or_default();
        if out.contains("state forwarding") {
            return;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the tap's bridge port never forwarded: {out}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Packets the HTB class on `dev` in `ns` has sent.
fn class_packets(ns: &str, dev: &str) -> u64 {
    let out = net::run("tc", &["-n", ns, "-s", "class", "show", "dev", dev]).unwrap();
    out.split("Sent ")
        .skip(1)
        .filter_map(|s| s.split_whitespace().nth(2)?.parse::<u64>().ok())
        .sum()
}

#[test]
fn a_vms_tap_carries_only_frames_from_its_guests_mac_and_address() {
    let test = "a_vms_tap_carries_only_frames_from_its_guests_mac_and_address";
    if skip(test) {
        return;
    }
    let _g = lock();
    let tag = format!("t{}-nvm", std::process::id());
    let n = Network::setup(
        &tag,
        NetConfig {
            subnet: [10, 97, 3],
            uplink: None,
        },
    )
    .unwrap();
    let id = n.attach("vm", 1).unwrap();
    let _down = Down(&n, id.clone());
    let bw = Bandwidth {
        guarantee_bits_per_sec: 20_000_000,
        limit_bits_per_sec: 50_000_000,
    };
    n.set_egress(&id, Some(bw)).unwrap();
    let nic = n.attach_vm(&id, "vm").unwrap();
    assert_eq!(nic.mac, vm_mac("vm"));

    // The guest owns the address: the namespace keeps none on its veth.
    let addrs = net::run("ip", &["-n", &id.netns, "-o", "-4", "addr", "show"]).unwrap();
    assert!(!addrs.contains(&id.ip.to_string()), "{addrs}");
    for dev in [VM_TAP, id.enclave_veth.as_str()] {
        let l = net::run("ip", &["-n", &id.netns, "-o", "link", "show", "dev", dev]).unwrap();
        assert!(l.contains(&format!("master {VM_BRIDGE}")), "{dev}: {l}");
    }
    // An agent restarted meanwhile finds the same slot and address (from the veth's alias).
    let back = n.adopt("vm").expect("adopted");
    assert_eq!((back.slot, back.ip), (id.slot, id.ip));

    let guest = parse_mac(&nic.mac);
    let other = parse_mac("52:54:00:de:ad:01");
    let (me, gw) = (id.ip, n.ip(1));
    let not_me = Ipv4Addr::new(10, 97, 3, 200);
    let mut tap = frames::open_tap(&id.netns, VM_TAP);
    tap_forwards(&id.netns);
    let cap = Capture::on(&id.host_veth);
    let before = class_packets(&id.netns, &id.enclave_veth);
    let sent: Vec<(&str, Vec<u8>, bool)> = vec![
        ("ipv4", frames::ipv4(guest, me, gw, b"TBVM-ok"), true),
        ("other mac", frames::ipv4(other, me, gw, b"TBVM-mac"), false),
        (
            "other address",
            frames::ipv4(guest, not_me, gw, b"TBVM-addr"),
            false,
        ),
        ("arp", frames::arp(guest, me, gw, 0x0806), true),
        ("arp claim", frames::arp(guest, not_me, gw, 0x0806), false),
        (
            "arp for another mac",
            arp_naming(other, guest, me, gw),
            false,
        ),
        ("ipv6", frames::ipv6(guest, b"TBVM-v6"), false),
        ("rarp", frames::arp(guest, me, gw, 0x8035), true),
    ];
    for (_, f, _) in &sent {
        frames::send(&mut tap, f);
    }
    let seen = cap.frames_from(&[guest, other], Duration::from_secs(1));
    let outcome: Vec<(&str, bool, bool)> = sent
        .iter()
        .map(|(what, f, passes)| {
            // The kernel may trim an IPv4 frame's padding (to the packet's length).
            let arrived = seen.iter().any(|s| {
                let n = s.len().min(f.len());
                n >= 34 && s[..n] == f[..n]
            });
            (*what, arrived, *passes)
        })
        .collect();
    assert!(
        outcome.iter().all(|(_, arrived, passes)| arrived == passes),
        "(frame, arrived, should pass): {outcome:?}; {} frames seen: {seen:02x?}",
        seen.len()
    );
    // What passed went through the enclave's egress class.
    let through = class_packets(&id.netns, &id.enclave_veth) - before;
    assert!(through >= 3, "the class sent {through} packets");
    drop(tap);
    drop(_down);
    assert!(net::our_netns().iter().all(|ns| !ns.contains(&tag)));
}

/// Removes the namespace and the bridge however the test ends.
struct Down<'a>(&'a Network, net::NetIdentity);

impl Drop for Down<'_> {
    fn drop(&mut self) {
        let _ = self.0.detach(&self.1);
        let _ = self.0.teardown();
    }
}

/// A QEMU enclave with a NIC: QEMU (down to the enclave's uid) opens the tap, and what its
/// NIC sends (`announce-self`) reaches the host through the enclave's veth.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_vm_with_network_gets_a_nic_on_its_tap() {
    if !can_run_qemu("a_vm_with_network_gets_a_nic_on_its_tap") {
        return;
    }
    let _g = lock();
    let (mut cfg, _dir) = config("nvm-qemu", RuntimeKind::Qemu);
    cfg.network = Some(NetConfig {
        subnet: [10, 97, 4],
        uplink: None,
    });
    let mut agent = Agent::start(cfg).await.unwrap();
    let mut vm: EnclavePlan = qemu_vm(1);
    if let Some(LaunchSpec::Qemu { network, .. }) = &mut vm.launch {
        *network = true;
    }
    agent.apply(plan(1, &[("vm", vm)])).await.unwrap();
    let id = agent.net_of("vm").cloned().expect("a namespace");
    let l = net::run(
        "ip",
        &["-n", &id.netns, "-o", "link", "show", "dev", VM_TAP],
    )
    .unwrap();
    assert!(l.contains("LOWER_UP"), "QEMU holds the tap open: {l}");
    tap_forwards(&id.netns);
    let cap = Capture::on(&id.host_veth);
    let mut q = agent.migration_monitor("vm").await.unwrap();
    let a = serde_json::json!({"initial": 50, "max": 100, "rounds": 3, "step": 50});
    q.execute("announce-self", Some(a)).await.unwrap();
    let mac = parse_mac(&vm_mac("vm"));
    let seen = tokio::task::spawn_blocking(move || cap.frames_from(&[mac], Duration::from_secs(1)))
        .await
        .unwrap();
    assert!(
        seen.iter().any(|f| frames::ethertype(f) == 0x8035),
        "the guest's NIC announced itself through its veth ({} frames)",
        seen.len()
    );
    agent.apply(plan(2, &[])).await.unwrap();
    assert!(agent.net_of("vm").is_none());
}

/// An ARP request sent from `src` whose sender hardware address is `sha` (another MAC).
fn arp_naming(sha: frames::Mac, src: frames::Mac, spa: Ipv4Addr, tpa: Ipv4Addr) -> Vec<u8> {
    let mut f = frames::arp(src, spa, tpa, 0x0806);
    f[22..28].copy_from_slice(&sha);
    f
}

/// A VM with a NIC and tight bandwidth limits (1 Mbit/s each way) under `epoch`.
fn networked_vm(epoch: u64) -> EnclavePlan {
    let mut vm = qemu_vm(epoch);
    if let Some(LaunchSpec::Qemu { network, .. }) = &mut vm.launch {
        *network = true;
    }
    let tight = Bandwidth {
        guarantee_bits_per_sec: 1_000_000,
        limit_bits_per_sec: 1_000_000,
    };
    vm.limits.egress = Some(tight);
    vm.limits.ingress = Some(tight);
    vm
}

async fn counter(agent: &Agent) -> u64 {
    let mut q = agent.migration_monitor("vm").await.unwrap();
    tribune_agent::runtime::qemu::guest_counter(&mut q)
        .await
        .unwrap()
}

/// Live migration of a VM in its namespace: QEMU there has only loopback, so each agent opens
/// the stream's socket outside and hands it to QEMU (`agent/handoff.rs`) — past the
/// enclave's 1 Mbit/s link, which would take minutes for its 64 MiB. On the target the guest resumes with its NIC and announces its
/// MAC from there.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_vm_with_a_nic_migrates_over_a_socket_its_agents_hand_it_and_announces_itself_there() {
    let test =
        "a_vm_with_a_nic_migrates_over_a_socket_its_agents_hand_it_and_announces_itself_there";
    if !can_run_qemu(test) {
        return;
    }
    let _g = lock();
    let (mut src_cfg, _src_dir) = config("nvm-src", RuntimeKind::Qemu);
    let (mut dst_cfg, _dst_dir) = config("nvm-dst", RuntimeKind::Qemu);
    src_cfg.network = Some(NetConfig {
        subnet: [10, 97, 5],
        uplink: None,
    });
    dst_cfg.network = Some(NetConfig {
        subnet: [10, 97, 6],
        uplink: None,
    });
    let mut src = Agent::start(src_cfg).await.unwrap();
    let mut dst = Agent::start(dst_cfg).await.unwrap();
    src.apply(plan(1, &[("vm", networked_vm(1))]))
        .await
        .unwrap();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    let mut before = 0;
    while before == 0 && tokio::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(50)).await;
        before = counter(&src).await;
    }
    assert!(before > 0, "the guest counts");

    let port = tribune_testkit::free_port();
    dst.migrate_in("vm", &networked_vm(2), &format!("127.0.0.1:{port}"))
        .await
        .unwrap();
    let target = dst.net_of("vm").cloned().expect("the target's namespace");
    let job = src
        .migrate_out(
            "vm",
            &format!("tcp:127.0.0.1:{port}"),
            Default::default(),
            None,
        )
        .unwrap();
    let done = tokio::time::timeout(Duration::from_secs(60), job)
        .await
        .expect("the migration ends within a minute")
        .unwrap()
        .unwrap();
    assert!(done.succeeded(), "{done:?}");
    assert!(done.total_bytes >= 64 << 20, "{done:?}");
    let at_switch = counter(&dst).await;
    assert!(at_switch >= before, "{at_switch} < {before}");

    // The commit's plan resumes it; its NIC announces its MAC through the target's veth.
    let cap = Capture::on(&target.host_veth);
    let mac = parse_mac(&vm_mac("vm"));
    let seen = tokio::task::spawn_blocking(move || cap.frames_from(&[mac], Duration::from_secs(3)));
    dst.apply(plan(2, &[("vm", networked_vm(2))]))
        .await
        .unwrap();
    let seen = seen.await.unwrap();
    assert!(
        seen.iter().any(|f| frames::ethertype(f) == 0x8035),
        "the moved guest announced itself from the target ({} frames)",
        seen.len()
    );
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    let mut after = at_switch;
    while after <= at_switch && tokio::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(50)).await;
        after = counter(&dst).await;
    }
    assert!(
        after > at_switch,
        "the guest runs on the target: {after} <= {at_switch}"
    );
    eprintln!(
        "figure: VM with NIC, 64 MiB handed over: total {} ms, downtime {:?} ms",
        done.total_time_ms, done.downtime_ms
    );
    src.migrated_away("vm", 2).await.unwrap();
    assert!(src.net_of("vm").is_none(), "the source's namespace is gone");
    shutdown_clean(src).await;
    shutdown_clean(dst).await;
}
