//! The mediator on real Unix sockets with the `tribune-msg` client (no root needed): the
//! receiver sees the sender's bound name, refusals carry reasons, frames cannot forge a
//! sender, a full queue pushes back without losing what it accepted, and a stop reports every
//! queued message failed.

use std::collections::BTreeMap;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::UnixStream;
use tribune_agent::mediator::Mediator;
use tribune_agent::mediator::admission::{Party, TalkTable};
use tribune_agent::mediator::fq::Bounds;
use tribune_msg::wire::{self, Frame, RefusalCode};
use tribune_msg::{Client, DeliveryError, SendError};

const DEADLINE: Duration = tribune_testkit::DEADLINE;

fn table(parties: &[(&str, &[&str])]) -> TalkTable {
    TalkTable::from_parties(
        parties
            .iter()
            .map(|(n, allow)| {
                (
                    n.to_string(),
                    Party {
                        class: 0,
                        allow: allow.iter().map(|p| (p.to_string(), 1)).collect(),
                    },
                )
            })
            .collect::<BTreeMap<_, _>>(),
    )
}

fn small() -> Bounds {
    Bounds {
        flow_messages_max: 8,
        flow_bytes_max: 1 << 20,
        message_bytes_max: 64 << 10,
        quantum_bytes: 64 << 10,
    }
}

struct Setup {
    m: Mediator,
    _dir: tempfile::TempDir,
}

impl Setup {
    fn new(parties: &[(&str, &[&str])]) -> Setup {
        let dir = tempfile::tempdir().unwrap();
        let m = Mediator::new(&dir.path().join("msg"), small()).unwrap();
        for (n, _) in parties {
            m.open(n, None).unwrap();
        }
        m.set_table(table(parties));
        Setup { m, _dir: dir }
    }

    async fn client(&self, name: &str) -> Client {
        Client::connect(&self.m.socket_path(name)).await.unwrap()
    }
}

async fn within<T>(f: impl std::future::Future<Output = T>) -> T {
    tokio::time::timeout(DEADLINE, f).await.expect("timed out")
}

#[tokio::test]
async fn the_receiver_sees_the_name_the_senders_socket_is_bound_to() {
    let s = Setup::new(&[("alice", &["bob"]), ("bob", &["alice"])]);
    let alice = s.client("alice").await;
    let bob = s.client("bob").await;
    assert_eq!((alice.name(), bob.name()), ("alice", "bob"));
    let sent = alice.send("bob", b"hello").await.unwrap();
    assert_eq!(
        within(bob.recv()).await.unwrap(),
        ("alice".into(), b"hello".to_vec())
    );
    within(sent.delivered()).await.unwrap();
    let c = s.m.counters();
    assert_eq!((c["alice"].sent_messages, c["alice"].sent_bytes), (1, 5));
    assert_eq!(
        (c["bob"].received_messages, c["bob"].received_bytes),
        (1, 5)
    );
}

#[tokio::test]
async fn a_message_either_side_does_not_allow_is_refused_with_a_reason() {
    let s = Setup::new(&[
        ("alice", &["bob", "carol"]),
        ("bob", &[]),
        ("carol", &["alice"]),
    ]);
    let alice = s.client("alice").await;
    let carol = s.client("carol").await;
    let e = alice.send("bob", b"x").await.unwrap_err();
    assert!(
        matches!(&e, SendError::Refused { code: RefusalCode::ReceiverRules, reason } if reason.contains("\"bob\"'s talk rules")),
        "{e}"
    );
    let bob = s.client("bob").await;
    let e = bob.send("alice", b"x").await.unwrap_err();
    assert!(
        matches!(
            e,
            SendError::Refused {
                code: RefusalCode::SenderRules,
                ..
            }
        ),
        "{e}"
    );
    let e = alice.send("nobody", b"x").await.unwrap_err();
    assert!(
        matches!(
            e,
            SendError::Refused {
                code: RefusalCode::UnknownReceiver,
                ..
            }
        ),
        "{e}"
    );
    // Allowed both ways still works.
    alice.send("carol", b"ok").await.unwrap();
    assert_eq!(within(carol.recv()).await.unwrap().0, "alice");
    assert_eq!(s.m.counters()["alice"].refused_messages, 2);
}

/// The wire has no sender field: a client that writes a DELIVER claiming to be someone else
/// (or anything but SEND/RECEIVE) is cut off, and the receiver only ever sees the socket's
/// bound name.
#[tokio::test]
async fn a_sender_cannot_forge_another_identity() {
    let s = Setup::new(&[
        ("mallory", &["bob"]),
        ("bob", &["mallory", "alice"]),
        ("alice", &["bob"]),
    ]);
    let bob = s.client("bob").await;
    let mut raw = UnixStream::connect(s.m.socket_path("mallory"))
        .await
        .unwrap();
    let mut hello = [0u8; 4 + 2 + 1 + 7];
    within(raw.read_exact(&mut hello)).await.unwrap();
    assert_eq!(
        Frame::decode(&hello[4..]).unwrap(),
        Frame::Hello {
            name: "mallory".into()
        }
    );
    // A SEND first: it arrives as mallory's.
    let mut bytes = Vec::new();
    Frame::Send {
        id: 1,
        to: "bob".into(),
        payload: b"from mallory".to_vec(),
    }
    .encode(&mut bytes)
    .unwrap();
    // Then a forged delivery claiming alice.
    Frame::Deliver {
        from: "alice".into(),
        payload: b"from alice, honest".to_vec(),
    }
    .encode(&mut bytes)
    .unwrap();
    raw.write_all(&bytes).await.unwrap();
    assert_eq!(
        within(bob.recv()).await.unwrap(),
        ("mallory".into(), b"from mallory".to_vec())
    );
    // The mediator closed mallory's connection after the forged frame.
    let mut rest = Vec::new();
    within(raw.read_to_end(&mut rest)).await.unwrap();
    let mut r = &rest[..];
    let mut buf = Vec::new();
    let mut answers = Vec::new();
    while let Some(f) = wire::read_frame(&mut r, &mut buf).await.unwrap() {
        answers.push(f);
    }
    assert!(answers.contains(&Frame::Accepted { id: 1 }), "{answers:?}");
    // Nothing claiming alice ever reached bob.
    let nothing = tokio::time::timeout(Duration::from_millis(200), bob.recv()).await;
    assert!(nothing.is_err(), "bob received {nothing:?}");
}

#[tokio::test]
async fn a_full_queue_pushes_back_and_loses_nothing_it_accepted() {
    let s = Setup::new(&[("fast", &["slow"]), ("slow", &["fast"])]);
    let fast = s.client("fast").await;
    // `slow` is connected but does not receive yet: its inbox fills to the bound.
    let slow = s.client("slow").await;
    let mut accepted = Vec::new();
    let mut pushed_back = 0;
    for i in 0u32..50 {
        match fast.send("slow", &i.to_be_bytes()).await {
            Ok(sent) => accepted.push((i, sent)),
            Err(e) if e.is_queue_full() => pushed_back += 1,
            Err(e) => panic!("{e}"),
        }
    }
    assert_eq!(accepted.len(), 8, "the bound is 8 messages");
    assert_eq!(pushed_back, 42);
    assert_eq!(s.m.counters()["fast"].queue_full_messages, 42);
    // Now it receives: every accepted message, once, in order; each reported delivered.
    for (i, _) in &accepted {
        let (from, bytes) = within(slow.recv()).await.unwrap();
        assert_eq!((from.as_str(), bytes), ("fast", i.to_be_bytes().to_vec()));
    }
    for (_, sent) in accepted {
        within(sent.delivered()).await.unwrap();
    }
    // Room again.
    fast.send("slow", b"more").await.unwrap();
}

#[tokio::test]
async fn a_stopping_mediator_reports_queued_messages_failed() {
    let s = Setup::new(&[("a", &["b"]), ("b", &["a"])]);
    let a = s.client("a").await;
    let sent = a.send("b", b"never read").await.unwrap();
    within(s.m.shutdown(Duration::from_secs(2))).await;
    let r = within(sent.delivered()).await;
    assert!(
        matches!(&r, Err(DeliveryError::Failed(why)) if why.contains("stopping")),
        "{r:?}"
    );
    assert!(!s.m.socket_path("a").exists(), "sockets are removed");
}

#[tokio::test]
async fn a_vanished_mediator_fails_every_accepted_message_at_the_sender() {
    let s = Setup::new(&[("a", &["b"]), ("b", &["a"])]);
    let a = s.client("a").await;
    let sent = a.send("b", b"queued").await.unwrap();
    // Not a clean stop: the endpoint and its connections just go (as in a crash).
    s.m.close("a");
    assert_eq!(
        within(sent.delivered()).await,
        Err(DeliveryError::ConnectionLost)
    );
    assert!(matches!(a.send("b", b"x").await, Err(SendError::Closed)));
}

#[tokio::test]
async fn a_new_plan_that_removes_the_receiver_fails_its_queued_messages() {
    let s = Setup::new(&[("a", &["b"]), ("b", &["a"])]);
    let a = s.client("a").await;
    let sent = a.send("b", b"queued").await.unwrap();
    s.m.set_table(table(&[("a", &["b"])]));
    let r = within(sent.delivered()).await;
    assert!(
        matches!(&r, Err(DeliveryError::Failed(why)) if why.contains("left this host")),
        "{r:?}"
    );
}

/// "Delivered" means the receiving application took it: messages written to a receiver that
/// goes away before taking them are reported failed, not delivered.
#[tokio::test]
async fn messages_a_receiver_never_took_are_reported_failed() {
    let s = Setup::new(&[("a", &["b"]), ("b", &["a"])]);
    let a = s.client("a").await;
    let b = s.client("b").await;
    b.set_receive_window(8);
    let first = a.send("b", b"taken").await.unwrap();
    assert_eq!(within(b.recv()).await.unwrap().1, b"taken".to_vec());
    within(first.delivered()).await.unwrap();
    // Three more reach b's connection (its window allows), but b never takes them.
    let mut sent = Vec::new();
    for i in 0..3u8 {
        sent.push(a.send("b", &[i]).await.unwrap());
    }
    tokio::time::sleep(Duration::from_millis(100)).await;
    drop(b);
    for m in sent {
        let r = within(m.delivered()).await;
        assert!(
            matches!(&r, Err(DeliveryError::Failed(why)) if why.contains("before it took")),
            "{r:?}"
        );
    }
    assert_eq!(s.m.counters()["b"].received_messages, 1);
}

/// What a QEMU guest's chardev is: a byte stream, cut anywhere. A frame written a byte at a
/// time arrives whole; garbage or an oversized length closes the stream (the reason is
/// logged) without touching anyone else; a new connection — QEMU reconnects — starts clean
/// with a new HELLO.
#[tokio::test]
async fn a_byte_stream_is_framed_across_any_cut_and_garbage_closes_only_it() {
    let s = Setup::new(&[("vm", &["app"]), ("app", &["vm"])]);
    let app = s.client("app").await;
    async fn connect(s: &Setup) -> UnixStream {
        let mut raw = UnixStream::connect(s.m.socket_path("vm")).await.unwrap();
        let mut hello = [0u8; 4 + 2 + 1 + 2];
        within(raw.read_exact(&mut hello)).await.unwrap();
        assert_eq!(
            Frame::decode(&hello[4..]).unwrap(),
            Frame::Hello { name: "vm".into() }
        );
        raw
    }
    async fn closed(raw: &mut UnixStream) -> Vec<Frame> {
        let mut rest = Vec::new();
        within(raw.read_to_end(&mut rest)).await.unwrap();
        let mut d = tribune_msg::stream::Deframer::new();
        let mut input = &rest[..];
        let mut frames = Vec::new();
        while let Some(f) = d.push(&mut input).unwrap() {
            frames.push(f);
        }
        frames
    }
    let send = |id, payload: &[u8]| {
        let mut b = Vec::new();
        Frame::Send {
            id,
            to: "app".into(),
            payload: payload.to_vec(),
        }
        .encode(&mut b)
        .unwrap();
        b
    };
    let mut raw = connect(&s).await;
    for b in send(1, b"one byte at a time") {
        raw.write_all(&[b]).await.unwrap();
        raw.flush().await.unwrap();
    }
    assert_eq!(
        within(app.recv()).await.unwrap(),
        ("vm".into(), b"one byte at a time".to_vec())
    );
    // Text where a frame should be: closed.
    raw.write_all(b"Booting from ROM...\r\n").await.unwrap();
    let answers = closed(&mut raw).await;
    assert!(answers.contains(&Frame::Accepted { id: 1 }), "{answers:?}");
    // A new connection works; a frame announcing more than a frame's bytes closes it at once.
    let mut raw = connect(&s).await;
    let mut bytes = send(2, b"after the reconnect");
    bytes.extend_from_slice(&(wire::FRAME_BYTES_MAX as u32 + 1).to_be_bytes());
    raw.write_all(&bytes).await.unwrap();
    let answers = closed(&mut raw).await;
    assert!(answers.contains(&Frame::Accepted { id: 2 }), "{answers:?}");
    assert_eq!(
        within(app.recv()).await.unwrap(),
        ("vm".into(), b"after the reconnect".to_vec())
    );
    // The other enclave's connection never noticed.
    app.send("vm", b"still here").await.unwrap();
}
