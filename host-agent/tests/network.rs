//! Bandwidth shaping on the real kernel (root only). Three enclaves send TCP flat out to a sink
//! namespace through the bridge uplink, where each has its own HTB class. All traffic stays in
//! namespaces this test creates.
// The lock serialises tests across threads; each test owns its runtime, so holding it
// over awaits cannot deadlock.
#![allow(clippy::await_holding_lock)]

mod common;

use std::collections::HashMap;
use std::io::{Read, Write};
use std::net::{IpAddr, TcpListener};
use std::os::fd::AsRawFd;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::*;
use tribune_agent::net::{self, NetConfig, Uplink, short_hash};
use tribune_agent::{Agent, Bandwidth, EnclavePlan, LaunchSpec, Limits, RunState, RuntimeKind};

const PORT: u16 = 5001;
const PORT_DOWN: u16 = 5002;
const UPLINK_BITS: u64 = 35_000_000;

type Counts = Arc<Mutex<HashMap<IpAddr, u64>>>;

/// A TCP sink inside namespace `ns`: counts payload bytes per source address until `stop`.
fn sink(ns: &str, stop: Arc<AtomicBool>) -> (Counts, std::thread::JoinHandle<()>) {
    let counts: Counts = Arc::default();
    let c = counts.clone();
    let path = format!("/run/netns/{ns}");
    let h = std::thread::spawn(move || {
        let f = std::fs::File::open(&path).unwrap();
        // SAFETY: setns on this thread only; threads it spawns inherit the namespace.
        assert_eq!(unsafe { libc::setns(f.as_raw_fd(), libc::CLONE_NEWNET) }, 0);
        let l = TcpListener::bind(("0.0.0.0", PORT)).unwrap();
        l.set_nonblocking(true).unwrap();
        let mut readers = Vec::new();
        while !stop.load(Ordering::Relaxed) {
            match l.accept() {
                Ok((mut s, peer)) => {
                    s.set_nonblocking(false).unwrap();
                    s.set_read_timeout(Some(Duration::from_millis(200)))
                        .unwrap();
                    let (c, stop) = (c.clone(), stop.clone());
                    readers.push(std::thread::spawn(move || {
                        let mut buf = vec![0u8; 64 << 10];
                        while !stop.load(Ordering::Relaxed) {
                            match s.read(&mut buf) {
                                Ok(0) => break,
                                Ok(n) => {
                                    *c.lock().unwrap().entry(peer.ip()).or_default() += n as u64
                                }
                                Err(e)
                                    if matches!(
                                        e.kind(),
                                        std::io::ErrorKind::WouldBlock
                                            | std::io::ErrorKind::TimedOut
                                    ) => {}
                                Err(_) => break,
                            }
                        }
                    }));
                }
                Err(_) => std::thread::sleep(Duration::from_millis(20)),
            }
        }
        for r in readers {
            let _ = r.join();
        }
    });
    (counts, h)
}

/// A TCP source inside namespace `ns` on `PORT_DOWN`: writes zeros flat out to every client
/// until `stop`.
fn source(ns: &str, stop: Arc<AtomicBool>) -> std::thread::JoinHandle<()> {
    let path = format!("/run/netns/{ns}");
    std::thread::spawn(move || {
        let f = std::fs::File::open(&path).unwrap();
        // SAFETY: setns on this thread only; threads it spawns inherit the namespace.
        assert_eq!(unsafe { libc::setns(f.as_raw_fd(), libc::CLONE_NEWNET) }, 0);
        let l = TcpListener::bind(("0.0.0.0", PORT_DOWN)).unwrap();
        l.set_nonblocking(true).unwrap();
        let mut writers = Vec::new();
        while !stop.load(Ordering::Relaxed) {
            match l.accept() {
                Ok((mut s, _)) => {
                    s.set_nonblocking(false).unwrap();
                    s.set_write_timeout(Some(Duration::from_millis(200)))
                        .unwrap();
                    let stop = stop.clone();
                    writers.push(std::thread::spawn(move || {
                        let buf = vec![0u8; 64 << 10];
                        while !stop.load(Ordering::Relaxed) {
                            match s.write(&buf) {
                                Ok(_) => {}
                                Err(e)
                                    if matches!(
                                        e.kind(),
                                        std::io::ErrorKind::WouldBlock
                                            | std::io::ErrorKind::TimedOut
                                    ) => {}
                                Err(_) => break,
                            }
                        }
                    }));
                }
                Err(_) => std::thread::sleep(Duration::from_millis(20)),
            }
        }
        for w in writers {
            let _ = w.join();
        }
    })
}

/// Bytes sent by each HTB class on `dev` (`tc -s class show`).
fn class_bytes(dev: &str) -> HashMap<String, u64> {
    let out = net::run("tc", &["-s", "class", "show", "dev", dev]).unwrap();
    let mut m = HashMap::new();
    let mut class = None;
    for l in out.lines() {
        let w: Vec<&str> = l.split_whitespace().collect();
        if w.first() == Some(&"class") && w.len() > 2 {
            class = Some(w[2].to_string());
        } else if w.first() == Some(&"Sent")
            && let (Some(c), Some(b)) = (class.take(), w.get(1).and_then(|b| b.parse().ok()))
        {
            m.insert(c, b);
        }
    }
    m
}

fn sender(ip: &str, streams: u32) -> LaunchSpec {
    let one = format!("cat /dev/zero > /dev/tcp/{ip}/{PORT}");
    let script = format!("for i in $(seq {streams}); do {one} & done; wait");
    LaunchSpec::Process {
        cmd: vec!["/bin/bash".into(), "-c".into(), script],
        network: true,
        sim: None,
    }
}

fn shaped(launch: LaunchSpec, guarantee: u64, limit: u64) -> EnclavePlan {
    let bw = Bandwidth {
        guarantee_bits_per_sec: guarantee,
        limit_bits_per_sec: limit,
    };
    EnclavePlan {
        launch: Some(launch),
        limits: Limits {
            egress: Some(bw),
            ingress: Some(bw),
            ..Limits::default()
        },
        weight: 1,
        state: RunState::Run,
        talk: Default::default(),
        placement_epoch: 0,
    }
}

/// Rates in bit/s per enclave over `window`, from the HTB class counters of the uplink.
fn measure(agent: &Agent, up: &str, names: &[&str], window: Duration) -> Vec<f64> {
    let class_of = |n: &str| {
        let slot = agent.net_of(n).unwrap().slot;
        format!("{}:{:x}", net::QDISC_MAJOR, u32::from(slot) + 0x10)
    };
    let a = class_bytes(up);
    let t0 = Instant::now();
    std::thread::sleep(window);
    let b = class_bytes(up);
    let secs = t0.elapsed().as_secs_f64();
    names
        .iter()
        .map(|n| {
            let c = class_of(n);
            (b.get(&c).copied().unwrap_or(0) - a.get(&c).copied().unwrap_or(0)) as f64 * 8.0 / secs
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn per_enclave_classes_give_planned_rates_and_fair_shares() {
    if skip("network") {
        return;
    }
    if !std::path::Path::new("/bin/bash").exists() {
        say_skipped("network: /bin/bash (used as the TCP sender) not installed");
        return;
    }
    let _g = lock();
    let (mut cfg, _dir) = config("net", RuntimeKind::Process);
    let subnet = [10, 77, (std::process::id() % 200) as u8];
    let h = short_hash(&cfg.instance);
    let (up, sink_side, sink_ns) = (
        format!("tb-{h}u"),
        format!("tb-{h}s"),
        format!("tb-{}sink", cfg.instance),
    );
    let sink_ip = format!("{}.{}.{}.254", subnet[0], subnet[1], subnet[2]);
    net::run("ip", &["netns", "add", &sink_ns]).unwrap();
    net::run(
        "ip",
        &[
            "link", "add", &up, "type", "veth", "peer", "name", &sink_side, "netns", &sink_ns,
        ],
    )
    .unwrap();
    let addr = format!("{sink_ip}/24");
    net::run(
        "ip",
        &["-n", &sink_ns, "addr", "add", &addr, "dev", &sink_side],
    )
    .unwrap();
    net::run("ip", &["-n", &sink_ns, "link", "set", &sink_side, "up"]).unwrap();
    cfg.network = Some(NetConfig {
        subnet,
        uplink: Some(Uplink {
            device: up.clone(),
            capacity_bits_per_sec: UPLINK_BITS,
        }),
    });
    let stop = Arc::new(AtomicBool::new(false));
    let (counts, sink_thread) = sink(&sink_ns, stop.clone());
    let source_thread = source(&sink_ns, stop.clone());
    let mut agent = Agent::start(cfg).await.unwrap();

    // Phase 1: fixed rates 5/10/20 Mbit (ceil = rate); one enclave greedy with 8 streams.
    let names = ["a", "b", "c"];
    let planned = [5e6, 10e6, 20e6];
    let streams = [8, 1, 1];
    let p1: Vec<(&str, EnclavePlan)> = names
        .iter()
        .enumerate()
        .map(|(i, n)| {
            let r = planned[i] as u64;
            (*n, shaped(sender(&sink_ip, streams[i]), r, r))
        })
        .collect();
    agent.apply(plan(1, &p1)).await.unwrap();
    std::thread::sleep(Duration::from_millis(1500));
    let c0 = counts.lock().unwrap().clone();
    let rates = measure(&agent, &up, &names, Duration::from_secs(4));
    let c1 = counts.lock().unwrap().clone();
    let mut failures = Vec::new();
    for (i, n) in names.iter().enumerate() {
        let ip = IpAddr::V4(agent.net_of(n).unwrap().ip);
        let goodput =
            (c1.get(&ip).copied().unwrap_or(0) - c0.get(&ip).copied().unwrap_or(0)) as f64 * 8.0
                / 4.0;
        let off = (rates[i] - planned[i]).abs() / planned[i];
        eprintln!(
            "figure: enclave {n} planned {:.1} Mbit/s -> class {:.2} Mbit/s ({:+.2}%), TCP goodput {:.2} Mbit/s",
            planned[i] / 1e6,
            rates[i] / 1e6,
            (rates[i] / planned[i] - 1.0) * 100.0,
            goodput / 1e6
        );
        if off > 0.05 {
            failures.push(format!("{n}: {:.3} Mbit/s", rates[i] / 1e6));
        }
    }
    // The agent's own collector sees the traffic too.
    agent.sample().await;
    let st = agent.status().await;
    assert!(
        st.enclaves.iter().all(|e| e.usage.net_tx_bytes > 0),
        "{st:?}"
    );

    // Phase 2: equal guarantees (10 Mbit), each may borrow up to the whole uplink.
    let p2: Vec<(&str, EnclavePlan)> = names
        .iter()
        .enumerate()
        .map(|(i, n)| {
            (
                *n,
                shaped(sender(&sink_ip, streams[i]), 10_000_000, UPLINK_BITS),
            )
        })
        .collect();
    let rep = agent.apply(plan(2, &p2)).await.unwrap();
    assert_eq!(rep.writes, 6, "egress + ingress of three enclaves: {rep:?}");
    std::thread::sleep(Duration::from_millis(1500));
    let rates = measure(&agent, &up, &names, Duration::from_secs(4));
    let sum: f64 = rates.iter().sum();
    let sq: f64 = rates.iter().map(|r| r * r).sum();
    let jain = sum * sum / (rates.len() as f64 * sq);
    eprintln!(
        "figure: equal weights, enclave a greedy (8 streams): rates {:?} Mbit/s, Jain {jain:.4}, total {:.2} Mbit/s",
        rates
            .iter()
            .map(|r| (r / 1e4).round() / 100.0)
            .collect::<Vec<_>>(),
        sum / 1e6
    );

    // Phase 3: the other direction. One enclave downloads flat out; its ingress class on the
    // host-side veth holds it to the plan.
    let ingress_bits = 8_000_000u64;
    let down = LaunchSpec::Process {
        cmd: vec![
            "/bin/bash".into(),
            "-c".into(),
            format!("cat < /dev/tcp/{sink_ip}/{PORT_DOWN} > /dev/null"),
        ],
        network: true,
        sim: None,
    };
    let mut d = shaped(down, 1_000_000, 1_000_000);
    d.limits.ingress = Some(Bandwidth {
        guarantee_bits_per_sec: ingress_bits,
        limit_bits_per_sec: ingress_bits,
    });
    let rep = agent.apply(plan(3, &[("d", d)])).await.unwrap();
    assert_eq!(rep.stopped, vec!["a", "b", "c"]);
    std::thread::sleep(Duration::from_millis(1500));
    let veth = agent.net_of("d").unwrap().host_veth.clone();
    let class = format!("{}:1", net::QDISC_MAJOR);
    let a = class_bytes(&veth).get(&class).copied().unwrap_or(0);
    let t0 = Instant::now();
    std::thread::sleep(Duration::from_secs(3));
    let b = class_bytes(&veth).get(&class).copied().unwrap_or(0);
    let down_rate = (b - a) as f64 * 8.0 / t0.elapsed().as_secs_f64();
    eprintln!(
        "figure: ingress planned {:.1} Mbit/s -> class {:.2} Mbit/s ({:+.2}%)",
        ingress_bits as f64 / 1e6,
        down_rate / 1e6,
        (down_rate / ingress_bits as f64 - 1.0) * 100.0
    );
    if (down_rate - ingress_bits as f64).abs() / ingress_bits as f64 > 0.05 {
        failures.push(format!("ingress d: {:.3} Mbit/s", down_rate / 1e6));
    }

    // A crash and restart: the downloading enclave is adopted with its address, and its
    // classes are back on the uplink (re-created at start) and on its veth.
    let before = agent.net_of("d").unwrap().clone();
    let cfg = agent.config().clone();
    drop(agent);
    let agent = Agent::start(cfg).await.unwrap();
    let after = agent.net_of("d").expect("d adopted with its network");
    assert_eq!((after.ip, after.slot), (before.ip, before.slot));
    let up_class = format!("{}:{:x}", net::QDISC_MAJOR, u32::from(after.slot) + 0x10);
    assert!(
        class_bytes(&up).contains_key(&up_class),
        "egress class not restored"
    );
    assert!(class_bytes(&after.host_veth).contains_key(&class));

    stop.store(true, Ordering::Relaxed);
    let cg = agent.cgroups().clone();
    let instance = agent.config().instance.clone();
    agent.shutdown().await.unwrap();
    sink_thread.join().unwrap();
    source_thread.join().unwrap();
    net::run("ip", &["netns", "del", &sink_ns]).unwrap();
    // The namespace goes away asynchronously; its veth peer may outlive it for a moment.
    let _ = net::run("ip", &["link", "del", &up]);
    assert!(
        wait_for(tribune_testkit::DEADLINE, || !net::our_links()
            .contains(&up)),
        "uplink veth left"
    );
    assert_clean(cg.as_ref(), &instance);
    assert!(
        failures.is_empty(),
        "rates off by more than 5%: {failures:?}"
    );
    assert!(jain >= 0.99, "Jain's index {jain:.4}");
}
