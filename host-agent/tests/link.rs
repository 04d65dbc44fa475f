//! The agent's side of the attestation stream against a stand-in controller (no root needed):
//! what the link sends for the windows the agent hands it — evidence, then MAC'd reports
//! numbered 1, 2, … per enclave with the host's view of each, and signed checkpoints — and
//! that a controller can verify every byte of it.

mod common;

use std::time::Duration;

use common::controller::{FakeController, unix_ns, usage_of};
use tokio::sync::mpsc;
use tribune_agent::collector::UsageWindow;
use tribune_agent::link::{self, CHECKPOINT_EVERY};
use tribune_agent::{LaunchSpec, LinkEvent, ToLink};
use tribune_attest::usage::UsageReport;
use tribune_proto::v1::agent_message::Body;

fn window(enclave: &str, cpu_ns: u64) -> UsageWindow {
    UsageWindow {
        enclave: enclave.into(),
        start_unix_ns: unix_ns() - 100_000_000,
        len_ns: 100_000_000,
        cpu_ns,
        cpu_wait_ns: cpu_ns / 2,
        mem_bytes: 4 << 20,
        net_tx_bytes: 10,
        net_rx_bytes: 20,
        gpu_util_percent: None,
        msgs: Default::default(),
    }
}

async fn link_up(ctl: &FakeController) -> (mpsc::Sender<ToLink>, mpsc::Receiver<LinkEvent>) {
    let (up_tx, up_rx) = mpsc::channel(64);
    let (ev_tx, mut ev_rx) = mpsc::channel(64);
    tokio::spawn(link::run(ctl.link_config("h1"), up_rx, ev_tx));
    let ev = tokio::time::timeout(tribune_testkit::DEADLINE, ev_rx.recv()).await;
    assert!(matches!(ev, Ok(Some(LinkEvent::Up))), "{ev:?}");
    (up_tx, ev_rx)
}

#[tokio::test]
async fn windows_go_out_sealed_numbered_and_checkpointed() {
    let mut ctl = FakeController::start().await;
    let (up, _events) = link_up(&ctl).await;
    let spec = LaunchSpec::Process {
        cmd: vec!["/bin/sleep".into(), "600".into()],
        network: false,
        sim: None,
    };
    up.send(ToLink::Enclaves(vec![("a".into(), Some(spec))]))
        .await
        .unwrap();
    let n = CHECKPOINT_EVERY as usize + 2;
    for i in 0..n {
        up.send(ToLink::Windows(vec![window("a", 1000 + i as u64)]))
            .await
            .unwrap();
    }
    assert!(
        ctl.receive_usage("a", n, Duration::from_secs(10)).await,
        "{:?}",
        ctl.received
    );
    // One report per window, none repeated.
    ctl.receive_for(Duration::from_millis(200)).await;
    let (reports, confirmed) = ctl.verify_usage("a");
    let seqs: Vec<u64> = reports.iter().map(|r| r.seq).collect();
    assert_eq!(seqs, (1..=n as u64).collect::<Vec<_>>());
    assert_eq!(
        reports.iter().map(|r| r.cpu_ns).collect::<Vec<_>>(),
        (0..n as u64).map(|i| 1000 + i).collect::<Vec<_>>()
    );
    // The demand signal travels sealed (usage report v2): each window's wait, as measured.
    assert_eq!(
        reports.iter().map(|r| r.cpu_wait_ns).collect::<Vec<_>>(),
        (0..n as u64)
            .map(|i| Some((1000 + i) / 2))
            .collect::<Vec<_>>()
    );
    // The first CHECKPOINT_EVERY reports are covered by a signed checkpoint.
    assert_eq!(confirmed, u64::from(CHECKPOINT_EVERY));
    // Beside each report, the host's own view of the same window, under the same seq.
    for (sealed, wire) in reports.iter().zip(usage_of(&ctl.received, "a")) {
        let host = UsageReport::decode(&wire.host_view).unwrap();
        assert_eq!(host, *sealed);
    }
    // The stream began with the host's Hello.
    match ctl.received.first().and_then(|m| m.body.as_ref()) {
        Some(Body::Hello(h)) => assert_eq!(h.host_id, "h1"),
        other => panic!("first message: {other:?}"),
    }
}

#[tokio::test]
async fn windows_of_unknown_enclaves_are_not_sent() {
    let mut ctl = FakeController::start().await;
    let (up, _events) = link_up(&ctl).await;
    up.send(ToLink::Windows(vec![window("ghost", 1)]))
        .await
        .unwrap();
    ctl.receive_for(Duration::from_millis(300)).await;
    assert!(usage_of(&ctl.received, "ghost").is_empty());
}
