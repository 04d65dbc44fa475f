//! Unit tests of the controller link (`link.rs`).

use super::*;
use crate::plan::{CPU_MILLICORES_MIN, MEMORY_BYTES_MIN, RunState, WEIGHT_MAX};

#[tokio::test]
async fn an_unreachable_controller_is_one_link_down_event() {
    // A port nobody listens on: every attempt is refused at once.
    let addr = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("free port");
    let cfg = LinkConfig {
        host_id: "h".into(),
        peer_addr: String::new(),
        controllers: vec![addr.to_string()],
        can_enforce: true,
        enforce_problem: String::new(),
        capacity: Default::default(),
        labels: Default::default(),
        tls: None,
    };
    let (_uplink_tx, uplink_rx) = mpsc::channel(8);
    let (events_tx, mut events) = mpsc::channel(1024);
    let link = tokio::spawn(run(cfg, uplink_rx, events_tx));
    let first = tokio::time::timeout(Duration::from_secs(30), events.recv()).await;
    assert!(matches!(first, Ok(Some(LinkEvent::Down))), "{first:?}");
    // The old link sent one every 200 ms: 15 in the next 3 s.
    let more = tokio::time::timeout(Duration::from_secs(3), events.recv()).await;
    assert!(more.is_err(), "a second event in one outage: {more:?}");
    link.abort();
}

#[tokio::test]
async fn a_reloaded_certificate_is_presented_on_the_next_connection() {
    use tribune_testkit::tls::{CertRecorder, cert_der, issue, make_ca, reissue};
    let dir = tempfile::tempdir().expect("tempdir");
    make_ca(dir.path());
    let rec = CertRecorder::start(&issue(
        dir.path(),
        &tribune_tls::PeerIdentity::Controller { id: 1 },
    ))
    .await;
    let me = tribune_tls::PeerIdentity::Agent { host: "h".into() };
    let tonic_tls = |f: &tribune_tls::TlsFiles| {
        tribune_tls::ClientTls::from_files(f)
            .expect("client tls")
            .tonic_config()
    };
    let old = issue(dir.path(), &me);
    let (tls_tx, tls_rx) = tokio::sync::watch::channel(tonic_tls(&old));
    let cfg = LinkConfig {
        host_id: "h".into(),
        peer_addr: String::new(),
        controllers: vec![rec.addr.clone()],
        can_enforce: true,
        enforce_problem: String::new(),
        capacity: Default::default(),
        labels: Default::default(),
        tls: Some(tls_rx),
    };
    let (_uplink_tx, uplink_rx) = mpsc::channel(8);
    let (events_tx, _events) = mpsc::channel(1024);
    // The recorder hangs up after the handshake: the link reconnects, with backoff.
    let link = tokio::spawn(run(cfg, uplink_rx, events_tx));
    let wait = |want: Vec<u8>| {
        let rec = &rec;
        async move {
            let deadline = std::time::Instant::now() + Duration::from_secs(60);
            while rec.seen().last() != Some(&want) {
                assert!(std::time::Instant::now() < deadline, "not presented");
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }
    };
    wait(cert_der(&old.cert)).await;
    let new = reissue(dir.path(), &dir.path().join("rotated"), &me);
    tls_tx
        .send(tonic_tls(&new))
        .expect("the link holds the receiver");
    wait(cert_der(&new.cert)).await;
    link.abort();
}

#[test]
fn plan_conversion_keeps_caps_and_raises_tiny_values() {
    let p = pb::Plan {
        host_id: "h".into(),
        version: 7,
        enclaves: vec![pb::EnclavePlan {
            enclave_id: "a".into(),
            cpu_quota_millicores: 5,
            cpu_weight: 1000,
            memory_limit_bytes: 1,
            egress_ceil_bits_per_sec: 10_000_000,
            egress_guarantee_bits_per_sec: 0,
            suspended: true,
            launch_json: r#"{"process":{"cmd":["sleep","1"]}}"#.into(),
            ..Default::default()
        }],
        traceparent: String::new(),
        remote_enclaves: vec![pb::RemoteEnclave {
            enclave_id: "far".into(),
            host_id: "h2".into(),
            placement_epoch: 3,
            peer_addr: "10.0.0.2:7444".into(),
            talk_priority: 5,
            talk: vec![pb::TalkPeer {
                enclave_id: "a".into(),
                share_milli: 2000,
            }],
        }],
    };
    let plan = plan_from_pb(&p).unwrap();
    let a = &plan.enclaves["a"];
    assert_eq!(plan.version, 7);
    let far = &plan.remote["far"];
    assert_eq!(
        (
            far.host.as_str(),
            far.placement_epoch,
            far.peer_addr.as_str()
        ),
        ("h2", 3, "10.0.0.2:7444")
    );
    assert_eq!((far.talk.priority, far.talk.allow["a"]), (5, 2000));
    assert_eq!(a.limits.cpu_millicores, Some(CPU_MILLICORES_MIN));
    assert_eq!(a.limits.memory_bytes, Some(MEMORY_BYTES_MIN));
    assert_eq!(a.weight, WEIGHT_MAX);
    assert_eq!(a.state, RunState::Suspend);
    assert_eq!(
        a.limits
            .egress
            .map(|b| (b.guarantee_bits_per_sec, b.limit_bits_per_sec)),
        Some((1, 10_000_000))
    );
    assert!(matches!(a.launch, Some(LaunchSpec::Process { .. })));
    let bad = pb::Plan {
        enclaves: vec![pb::EnclavePlan {
            enclave_id: "a".into(),
            launch_json: "{".into(),
            ..Default::default()
        }],
        ..p
    };
    assert!(
        plan_from_pb(&bad)
            .unwrap_err()
            .to_string()
            .contains("launch spec")
    );
}

#[test]
fn replay_buffer_is_bounded_and_acks_drop_what_is_committed() {
    let mut r = Replay::default();
    for seq in 1..=(REPLAY_MAX as u64 + 5) {
        r.push(
            "a",
            Buffered {
                seq,
                msg: pb::UsageReport::default(),
            },
        );
    }
    assert_eq!(r.reports["a"].len(), REPLAY_MAX);
    assert_eq!(r.reports["a"].front().map(|b| b.seq), Some(6));
    r.ack("a", 100);
    assert_eq!(r.reports["a"].front().map(|b| b.seq), Some(101));
    assert!(r.batch().is_none(), "nothing to replay without checkpoints");
}

#[cfg(debug_assertions)]
#[test]
#[should_panic(expected = "usage seq 3 buffered after Some(3)")]
fn a_buffered_seq_that_does_not_rise_is_a_bug() {
    let mut r = Replay::default();
    for seq in [1, 2, 3, 3] {
        let msg = pb::UsageReport::default();
        r.push("a", Buffered { seq, msg });
    }
}

#[cfg(debug_assertions)]
#[test]
#[should_panic(expected = "span 12..=20 buffered after Some(1..=10)")]
fn a_buffered_span_that_leaves_a_gap_is_a_bug() {
    let mut r = Replay::default();
    let span = |first_seq, last_seq| Checkpoint {
        enclave: EnclaveId::from_name("a"),
        first_seq,
        last_seq,
        prev_head: [0; 32],
        head: [0; 32],
        signature: [0; 64],
    };
    r.push_checkpoint("a", span(1, 10));
    r.push_checkpoint("a", span(12, 20));
}
