//! A QEMU guest's message port end to end (root + qemu-system-x86_64, TCG): the guest is the
//! UART test firmware (`runtime::qemu_msg::uart_msg_firmware`), which waits for the mediator's
//! HELLO on COM1, writes a RECEIVE and a SEND to "app", then logs every byte it reads into its
//! RAM. "app" is the other enclave of the plan; the test is its application, on its mediator
//! socket with the `tribune-msg` client, as a process enclave's would be (an agent runs one
//! runtime kind, so "app" is a second, idle VM: the counting guest with the default
//! virtio-serial port, whose device and connected chardev are checked over QMP).
//!
//! Checked: app receives the guest's message with the sender "vm" — the name the agent bound
//! the guest's chardev socket to, never a name the guest wrote; app's answer reaches the guest
//! (the DELIVER frame is in guest RAM, read over QMP); the guest, which never credits, holds
//! only its window of deliveries and the rest wait in the bounded queue until app is refused
//! `queue-full`.
// The lock serialises tests across threads; each test owns its runtime, so holding it
// over awaits cannot deadlock.
#![allow(clippy::await_holding_lock)]

mod common;

use std::time::Duration;

use common::*;
use tribune_agent::runtime::qemu_msg::{
    CHARDEV_ID, UART_COUNT_ADDR, UART_LOG_ADDR, VIRTIO_PORT_NAME, uart_msg_firmware,
};
use tribune_agent::runtime::qmp::Qmp;
use tribune_agent::{Agent, AllowList, LaunchPolicy, LaunchSpec, MsgPort, RuntimeKind};
use tribune_msg::Client;
use tribune_msg::stream::Deframer;
use tribune_msg::wire::{Frame, Outcome, RefusalCode};

const DEADLINE: Duration = Duration::from_secs(60);
/// Deliveries the guest lets the mediator hand it (it never credits).
const GUEST_WINDOW: u32 = 2;

fn encoded(frames: &[Frame]) -> Vec<u8> {
    let mut out = Vec::new();
    for f in frames {
        f.encode(&mut out).unwrap();
    }
    out
}

/// The values of a monitor `xp` dump (`0000000000001000: 0x00 0x80 …`, one line per row).
fn xp_values(out: &str) -> Vec<u64> {
    out.lines()
        .filter_map(|l| l.split_once(':'))
        .flat_map(|(_, v)| {
            v.split_whitespace()
                .map(|w| u64::from_str_radix(w.trim_start_matches("0x"), 16).unwrap())
                .collect::<Vec<_>>()
        })
        .collect()
}

async fn monitor(qmp: &mut Qmp, command: String) -> String {
    let out = qmp
        .execute(
            "human-monitor-command",
            Some(serde_json::json!({ "command-line": command })),
        )
        .await
        .unwrap();
    out.as_str().unwrap().to_string()
}

/// What the guest has read from its UART so far: its log in guest RAM.
async fn guest_log(qmp: &mut Qmp) -> Vec<u8> {
    let count = xp_values(&monitor(qmp, format!("xp /1xh {UART_COUNT_ADDR:#x}")).await)[0];
    if count == 0 {
        return Vec::new();
    }
    xp_values(&monitor(qmp, format!("xp /{count}xb {UART_LOG_ADDR:#x}")).await)
        .into_iter()
        .map(|b| b as u8)
        .collect()
}

fn frames_of(log: &[u8]) -> Vec<Frame> {
    let mut d = Deframer::new();
    let mut input = log;
    let mut frames = Vec::new();
    while let Some(f) = d
        .push(&mut input)
        .expect("the guest read well-formed frames")
    {
        frames.push(f);
    }
    frames
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_uart_guest_talks_to_another_enclave_through_the_mediator() {
    if !can_run_qemu("qemu_msg") {
        return;
    }
    let _g = lock();
    let (mut cfg, dir) = config("qemu-msg", RuntimeKind::Qemu);
    cfg.cpuset_cpus = Some(test_cpu());
    let fw = dir.path().join("msg-fw.bin");
    let frames = encoded(&[
        Frame::Receive {
            window: GUEST_WINDOW,
        },
        Frame::Send {
            id: 7,
            to: "app".into(),
            payload: b"hello from the guest".to_vec(),
        },
    ]);
    std::fs::write(&fw, uart_msg_firmware(&frames).unwrap()).unwrap();
    std::fs::set_permissions(&fw, std::os::unix::fs::PermissionsExt::from_mode(0o644)).unwrap();
    let vm_spec = LaunchSpec::Qemu {
        memory_mib: 64,
        args: vec![
            "-machine".into(),
            "q35,accel=tcg".into(),
            "-bios".into(),
            fw.display().to_string(),
        ],
        msg_port: MsgPort::Uart,
        guest: Default::default(),
        network: false,
    };
    // The host allows exactly this guest (and the idle counting guest, which has no arguments).
    let policy = dir.path().join("launch-policy.toml");
    AllowList::exactly(&vm_spec, &policy)
        .unwrap()
        .write(&policy)
        .unwrap();
    cfg.launch_policy = LaunchPolicy::load(&policy).unwrap();
    let mut agent = Agent::start(cfg).await.unwrap();
    prioritise(&agent);
    let mut vm = enclave(vm_spec, Some(500), 1);
    vm.talk.allow.insert("app".into(), 1000);
    let mut app = enclave(
        LaunchSpec::Qemu {
            memory_mib: 64,
            args: vec![],
            msg_port: MsgPort::default(),
            guest: Default::default(),
            network: false,
        },
        Some(50),
        1,
    );
    app.talk.allow.insert("vm".into(), 1000);
    let rep = agent
        .apply(plan(1, &[("vm", vm), ("app", app)]))
        .await
        .unwrap();
    assert_eq!(rep.launched, vec!["app", "vm"], "{rep:?}");

    // The guest → app: the sender is the name the guest's socket is bound to.
    let app_client = Client::connect(&agent.mediator().socket_path("app"))
        .await
        .unwrap();
    assert_eq!(app_client.name(), "app");
    let (from, bytes) = tokio::time::timeout(DEADLINE, app_client.recv())
        .await
        .expect("the guest's message within 60 s")
        .unwrap();
    assert_eq!(
        (from.as_str(), bytes.as_slice()),
        ("vm", &b"hello from the guest"[..])
    );

    // app → the guest: queued for it, then written down its UART.
    app_client.send("vm", b"hello from app").await.unwrap();
    let mut qmp = agent.migration_monitor("vm").await.unwrap();
    let want_deliver = Frame::Deliver {
        from: "app".into(),
        payload: b"hello from app".to_vec(),
    };
    let want_done = Frame::Done {
        id: 7,
        outcome: Outcome::Delivered,
        reason: String::new(),
    };
    let deadline = tokio::time::Instant::now() + DEADLINE;
    let got = loop {
        let got = frames_of(&guest_log(&mut qmp).await);
        if got.contains(&want_deliver) && got.contains(&want_done) {
            break got;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the guest read only {got:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    eprintln!("the guest read from its UART: {got:?}");
    // Its first frame names it; its SEND was accepted, then delivered once app took it.
    assert_eq!(got[0], Frame::Hello { name: "vm".into() });
    let pos = |f: &Frame| got.iter().position(|g| g == f).unwrap();
    assert!(pos(&Frame::Accepted { id: 7 }) < pos(&want_done), "{got:?}");

    // A guest that does not take what it is handed: after its window the messages wait in the
    // mediator's bounded queue for it, and app is pushed back, nothing lost or grown.
    let mut accepted = 0u32;
    let refused = loop {
        match app_client.send("vm", b"more").await {
            Ok(_) => accepted += 1,
            Err(e) => break e,
        }
        assert!(accepted <= 2048, "never pushed back");
    };
    assert!(refused.is_queue_full(), "{refused}");
    let c = agent.mediator().counters();
    assert_eq!(
        (c["vm"].received_messages, c["app"].received_messages),
        (0, 1),
        "delivered means taken by the receiving application: the guest credited nothing"
    );
    assert!(
        accepted >= 1000,
        "the default bound is 1024 messages: {accepted}"
    );
    let got = frames_of(&guest_log(&mut qmp).await);
    let delivers = got
        .iter()
        .filter(|f| matches!(f, Frame::Deliver { .. }))
        .count();
    assert!(
        delivers <= GUEST_WINDOW as usize,
        "the guest was handed {delivers} messages, more than its window"
    );
    assert!(
        !got.iter().any(|f| matches!(
            f,
            Frame::Refused {
                code: RefusalCode::QueueFull,
                ..
            }
        )),
        "the guest sent nothing that could be refused"
    );
    drop(qmp);

    // app runs the default port: QEMU took the virtio-serial arguments, the port is there under
    // its name, and its chardev is connected to app's mediator socket.
    let mut qmp = agent.migration_monitor("app").await.unwrap();
    let qtree = monitor(&mut qmp, "info qtree".into()).await;
    assert!(qtree.contains("virtserialport"), "{qtree}");
    assert!(
        qtree.contains(&format!("\"{VIRTIO_PORT_NAME}\"")),
        "{qtree}"
    );
    let deadline = tokio::time::Instant::now() + DEADLINE;
    loop {
        let chardevs = qmp.execute("query-chardev", None).await.unwrap();
        let ours = chardevs
            .as_array()
            .unwrap()
            .iter()
            .find(|c| c["label"] == CHARDEV_ID)
            .cloned()
            .unwrap_or_else(|| panic!("no {CHARDEV_ID} chardev in {chardevs}"));
        let filename = ours["filename"].as_str().unwrap_or_default();
        // QEMU 7.2 says "disconnected:unix:PATH" until it is connected, then "unix:…".
        if !filename.starts_with("disconnected") {
            assert!(filename.starts_with("unix:"), "{ours}");
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "app's chardev never connected: {ours}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    drop(qmp);
    shutdown_clean(agent).await;
}
