//! Messages between two hosts' mediators over the agent ↔ agent mTLS link (no root needed):
//! an enclave on h1 sends to one on h2 by name and the receiver sees the sender's attested
//! name; the receiver's rules refuse with a reason the sender reads; a link that claims a
//! sender not placed on its host is refused `wrong-host`; a dialler without a valid agent
//! certificate gets no link; a receiver that moves is followed; a host hanging in the handshake
//! holds up only the messages to it; a relay says how long it queued on its sending host and
//! the receiving host pairs both waits, and an agent that predates that still links.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tribune_agent::mediator::admission::{Party, Route, TalkTable};
use tribune_agent::mediator::fq::Bounds;
use tribune_agent::mediator::peer::{PeerStream, dial_with};
use tribune_agent::mediator::peer_tls::{ALPN, ALPN_QUEUED, client_config};
use tribune_agent::mediator::{Mediator, PeerTls};
use tribune_msg::wire::{self, Frame, Outcome, RefusalCode};
use tribune_msg::{Client, DeliveryError};
use tribune_tls::{PeerIdentity, TlsFiles};

const DEADLINE: Duration = tribune_testkit::DEADLINE;

async fn within<T>(f: impl std::future::Future<Output = T>) -> T {
    tokio::time::timeout(DEADLINE, f).await.expect("timed out")
}

fn bounds() -> Bounds {
    Bounds {
        flow_messages_max: 64,
        flow_bytes_max: 1 << 20,
        message_bytes_max: 64 << 10,
        quantum_bytes: 64 << 10,
    }
}

/// A party: (name, [peers its rules allow]).
type Spec<'a> = (&'a str, &'a [&'a str]);

fn table(parties: &[Spec], remote: &[(&str, &str, &str)]) -> TalkTable {
    let t = TalkTable::from_parties(
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
    );
    remote.iter().fold(t, |t, (name, host, addr)| {
        t.with_route(
            name,
            Route {
                host: host.to_string(),
                epoch: 1,
                peer_addr: addr.to_string(),
            },
        )
    })
}

struct Host {
    m: Mediator,
    addr: SocketAddr,
    _dir: tempfile::TempDir,
}

impl Host {
    async fn new(name: &str, ca: &std::path::Path, local: &[&str]) -> Host {
        let dir = tempfile::tempdir().unwrap();
        let m = Mediator::new(&dir.path().join("msg"), bounds()).unwrap();
        for n in local {
            m.open(n, None).unwrap();
        }
        let files = agent_files(ca, name);
        m.enable_peers(PeerTls::load(&files, name).unwrap());
        let addr = m.peer_listen("127.0.0.1:0".parse().unwrap()).unwrap();
        Host { m, addr, _dir: dir }
    }

    async fn client(&self, name: &str) -> Client {
        Client::connect(&self.m.socket_path(name)).await.unwrap()
    }
}

fn agent_files(ca: &std::path::Path, host: &str) -> TlsFiles {
    tribune_testkit::tls::issue(ca, &PeerIdentity::Agent { host: host.into() })
}

/// Two hosts: `a` on h1, `b` on h2; `h2_rules` are `b`'s rules as h2 sees them.
async fn pair(ca: &std::path::Path, h1_sees_b_allow: &[&str], h2_b_allow: &[&str]) -> (Host, Host) {
    let h1 = Host::new("h1", ca, &["a"]).await;
    let h2 = Host::new("h2", ca, &["b"]).await;
    let (a1, a2) = (h1.addr.to_string(), h2.addr.to_string());
    h1.m.set_table(table(
        &[("a", &["b"]), ("b", h1_sees_b_allow)],
        &[("b", "h2", &a2)],
    ));
    h2.m.set_table(table(
        &[("a", &["b"]), ("b", h2_b_allow)],
        &[("a", "h1", &a1)],
    ));
    (h1, h2)
}

fn ca_dir() -> tempfile::TempDir {
    let d = tempfile::tempdir().unwrap();
    tribune_testkit::tls::make_ca(d.path());
    d
}

#[tokio::test]
async fn an_enclave_on_h1_sends_to_one_on_h2_by_name_and_it_sees_the_attested_sender() {
    let ca = ca_dir();
    let (h1, h2) = pair(ca.path(), &["a"], &["a"]).await;
    let a = h1.client("a").await;
    let b = h2.client("b").await;
    let mut sent = Vec::new();
    for i in 0..20u32 {
        sent.push(a.send("b", format!("hello {i}").as_bytes()).await.unwrap());
    }
    for i in 0..20u32 {
        let (from, bytes) = within(b.recv()).await.unwrap();
        assert_eq!(from, "a");
        assert_eq!(bytes, format!("hello {i}").into_bytes());
    }
    for s in sent {
        within(s.delivered()).await.unwrap();
    }
    assert_eq!(h2.m.counters()["b"].received_messages, 20);
    assert_eq!(h1.m.counters()["a"].sent_messages, 20);
}

#[tokio::test]
async fn the_receivers_rules_refuse_with_a_readable_reason() {
    let ca = ca_dir();
    // h1's plan already says b does not allow a: refused at h1, before anything is relayed.
    let (h1, _h2) = pair(ca.path(), &[], &[]).await;
    let a = h1.client("a").await;
    let e = a.send("b", b"x").await.unwrap_err();
    assert!(
        e.to_string()
            .contains("\"b\"'s talk rules do not allow messages from you"),
        "{e}"
    );
    // h1's view is stale (it thinks b allows a), h2's is not: the message is relayed and
    // refused by h2, and the sender reads why.
    let ca = ca_dir();
    let (h1, _h2) = pair(ca.path(), &["a"], &[]).await;
    let a = h1.client("a").await;
    let sent = a.send("b", b"x").await.unwrap();
    let e = within(sent.delivered()).await.unwrap_err();
    let text = e.to_string();
    assert!(
        text.contains("refused by host \"h2\" (receiver-rules)")
            && text.contains("talk rules do not allow messages from you"),
        "{text}"
    );
    assert!(matches!(e, DeliveryError::Failed(_)), "{e:?}");
}

async fn relay_and_answer(stream: &mut PeerStream, from: &str, to: &str) -> Option<Frame> {
    relay_queued_and_answer(stream, None, from, to).await
}

async fn relay_queued_and_answer(
    stream: &mut PeerStream,
    queued_us: Option<u32>,
    from: &str,
    to: &str,
) -> Option<Frame> {
    let mut bytes = Vec::new();
    Frame::Relay {
        id: 7,
        queued_us,
        from: from.into(),
        to: to.into(),
        payload: b"forged".to_vec(),
    }
    .encode(&mut bytes)
    .unwrap();
    if stream.write_all(&bytes).await.is_err() || stream.flush().await.is_err() {
        return None;
    }
    let mut buf = Vec::new();
    within(wire::read_frame(stream, &mut buf))
        .await
        .ok()
        .flatten()
}

#[tokio::test]
async fn a_peer_claiming_an_enclave_not_placed_on_it_is_refused() {
    let ca = ca_dir();
    let (_h1, h2) = pair(ca.path(), &["a"], &["a"]).await;
    // h3 holds a valid agent certificate, but the controllers placed `a` on h1.
    let h3 = agent_files(ca.path(), "h3");
    let config = Arc::new(client_config(&h3.ca, Some((&h3.cert, &h3.key))).unwrap());
    let mut s = dial_with(config, &h2.addr.to_string()).await.unwrap();
    match relay_and_answer(&mut s, "a", "b").await {
        Some(Frame::Refused { id, code, reason }) => {
            assert_eq!((id, code), (7, RefusalCode::WrongHost));
            assert!(
                reason.contains("host \"h3\" may not send as \"a\"")
                    && reason.contains("placed \"a\" on \"h1\""),
                "{reason}"
            );
        }
        other => panic!("expected REFUSED wrong-host, got {other:?}"),
    }
    // Nor may it speak for h2's own enclave, or for one the plan does not know.
    for from in ["b", "zed"] {
        match relay_and_answer(&mut s, from, "b").await {
            Some(Frame::Refused { code, .. }) => assert_eq!(code, RefusalCode::WrongHost),
            other => panic!("expected REFUSED wrong-host for {from}, got {other:?}"),
        }
    }
    // The genuine h1 may: the receiver still sees `a`.
    let h1 = agent_files(ca.path(), "h1");
    let config = Arc::new(client_config(&h1.ca, Some((&h1.cert, &h1.key))).unwrap());
    let mut s = dial_with(config, &h2.addr.to_string()).await.unwrap();
    let b = h2.client("b").await;
    assert_eq!(
        relay_and_answer(&mut s, "a", "b").await,
        Some(Frame::Accepted { id: 7 })
    );
    assert_eq!(
        within(b.recv()).await.unwrap(),
        ("a".into(), b"forged".to_vec())
    );
    let mut buf = Vec::new();
    assert_eq!(
        within(wire::read_frame(&mut s, &mut buf)).await.unwrap(),
        Some(Frame::Done {
            id: 7,
            outcome: Outcome::Delivered,
            reason: String::new()
        })
    );
}

/// Whether a link dialled with `config` gets any answer to a RELAY of `a` (placed on h1).
async fn answered(config: tribune_tls::rustls::ClientConfig, addr: &str) -> bool {
    let Ok(mut s) = dial_with(Arc::new(config), addr).await else {
        return false;
    };
    let answer = relay_and_answer(&mut s, "a", "b").await;
    let mut rest = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(2), s.read_to_end(&mut rest)).await;
    answer.is_some()
}

#[tokio::test]
async fn an_agent_without_a_valid_certificate_gets_no_link() {
    let ca = ca_dir();
    let (_h1, h2) = pair(ca.path(), &["a"], &["a"]).await;
    let addr = h2.addr.to_string();
    let files = agent_files(ca.path(), "h1");
    // The same CA, no certificate presented.
    assert!(!answered(client_config(&files.ca, None).unwrap(), &addr).await);
    // A certificate for h1 from another CA.
    let other = ca_dir();
    let forged = agent_files(other.path(), "h1");
    assert!(
        !answered(
            client_config(&files.ca, Some((&forged.cert, &forged.key))).unwrap(),
            &addr
        )
        .await
    );
    // A valid certificate of the CA, but not an agent's (a user's).
    let user = tribune_testkit::tls::client_files(ca.path());
    assert!(
        !answered(
            client_config(&files.ca, Some((&user.cert, &user.key))).unwrap(),
            &addr
        )
        .await
    );
    // The control: h1's own certificate gets an answer.
    assert!(
        answered(
            client_config(&files.ca, Some((&files.cert, &files.key))).unwrap(),
            &addr
        )
        .await
    );
    // And an agent refuses to be configured with a certificate not naming its own host.
    assert!(PeerTls::load(&files, "h9").is_err());
}

#[tokio::test]
async fn a_receiver_that_moves_is_followed() {
    let ca = ca_dir();
    let (h1, h2) = pair(ca.path(), &["a"], &["a"]).await;
    let h3 = Host::new("h3", ca.path(), &["b"]).await;
    h3.m.set_table(table(
        &[("a", &["b"]), ("b", &["a"])],
        &[("a", "h1", &h1.addr.to_string())],
    ));
    let a = h1.client("a").await;
    let b2 = h2.client("b").await;
    let first = a.send("b", b"on h2").await.unwrap();
    assert_eq!(within(b2.recv()).await.unwrap().1, b"on h2".to_vec());
    within(first.delivered()).await.unwrap();
    // b moves to h3 (a new placement epoch): h1's next plan routes there; h2 no longer has it.
    h1.m.set_table(table(&[("a", &["b"]), ("b", &["a"])], &[]).with_route(
        "b",
        Route {
            host: "h3".into(),
            epoch: 2,
            peer_addr: h3.addr.to_string(),
        },
    ));
    h2.m.set_table(table(
        &[("a", &["b"])],
        &[("a", "h1", &h1.addr.to_string())],
    ));
    let b3 = h3.client("b").await;
    let second = a.send("b", b"on h3").await.unwrap();
    assert_eq!(
        within(b3.recv()).await.unwrap(),
        ("a".into(), b"on h3".to_vec())
    );
    within(second.delivered()).await.unwrap();
}

#[tokio::test]
async fn an_unreachable_host_fails_the_message_with_a_reason_never_silently() {
    let ca = ca_dir();
    let h1 = Host::new("h1", ca.path(), &["a"]).await;
    // A port nothing listens on.
    let dead = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = dead.local_addr().unwrap().to_string();
    drop(dead);
    h1.m.set_table(table(
        &[("a", &["b"]), ("b", &["a"])],
        &[("b", "h2", &addr)],
    ));
    let a = h1.client("a").await;
    let sent = a.send("b", b"x").await.unwrap();
    let e = within(sent.delivered()).await.unwrap_err();
    assert!(e.to_string().contains("cannot reach host \"h2\""), "{e}");
}

/// A host that accepts TCP connections and never answers the TLS handshake holds up only the
/// messages to it: another host's receiver is served while that dial is still waiting.
#[tokio::test]
async fn a_host_that_hangs_in_the_handshake_does_not_hold_up_the_others() {
    let ca = ca_dir();
    let h1 = Host::new("h1", ca.path(), &["a"]).await;
    let h2 = Host::new("h2", ca.path(), &["c"]).await;
    let hang = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let hang_addr = hang.local_addr().unwrap().to_string();
    let (accepted_tx, accepted_rx) = tokio::sync::oneshot::channel();
    let holder = tokio::spawn(async move {
        let (socket, _) = hang.accept().await.unwrap();
        let _ = accepted_tx.send(());
        // Hold the connection open, silent, until the test ends.
        std::future::pending::<()>().await;
        drop(socket);
    });
    h1.m.set_table(table(
        &[("a", &["b", "c"]), ("b", &["a"]), ("c", &["a"])],
        &[("b", "hang", &hang_addr), ("c", "h2", &h2.addr.to_string())],
    ));
    h2.m.set_table(table(
        &[("a", &["c"]), ("c", &["a"])],
        &[("a", "h1", &h1.addr.to_string())],
    ));
    let a = h1.client("a").await;
    let c = h2.client("c").await;
    let to_b = a.send("b", b"to the hung host").await.unwrap();
    // The dial to "hang" is under way (its TCP connection was accepted).
    within(accepted_rx).await.unwrap();
    let to_c = a.send("c", b"to h2").await.unwrap();
    assert_eq!(
        within(c.recv()).await.unwrap(),
        ("a".into(), b"to h2".to_vec())
    );
    within(to_c.delivered()).await.unwrap();
    // The message to the hung host has no outcome yet: its dial waits for the handshake.
    let b_outcome = to_b.delivered();
    tokio::pin!(b_outcome);
    assert!(
        tokio::time::timeout(Duration::ZERO, b_outcome.as_mut())
            .await
            .is_err(),
        "the message to the hung host ended before its dial timed out"
    );
    // It ends failed, with the reason, once the handshake times out.
    let e = within(b_outcome).await.unwrap_err();
    assert!(e.to_string().contains("cannot reach host \"hang\""), "{e}");
    holder.abort();
}

/// The count of `metric`'s series for `sender` in this process's agent metrics.
fn histogram_count(metric: &str, sender: &str) -> u64 {
    let text = tribune_agent::metrics::get().encode(tribune_telemetry::Exposition::Classic);
    let want = format!("{metric}_count{{sender=\"{sender}\"}} ");
    text.lines()
        .find_map(|l| l.strip_prefix(&want))
        .and_then(|n| n.trim().parse().ok())
        .unwrap_or(0)
}

#[tokio::test]
async fn a_relay_says_how_long_it_queued_and_the_receiving_host_pairs_both_waits() {
    let ca = ca_dir();
    // Names of this test's own: the metrics are the process's.
    let h1 = Host::new("h1", ca.path(), &["qa"]).await;
    let h2 = Host::new("h2", ca.path(), &["qb"]).await;
    let (a1, a2) = (h1.addr.to_string(), h2.addr.to_string());
    h1.m.set_table(table(
        &[("qa", &["qb"]), ("qb", &["qa"])],
        &[("qb", "h2", &a2)],
    ));
    h2.m.set_table(table(
        &[("qa", &["qb"]), ("qb", &["qa"])],
        &[("qa", "h1", &a1)],
    ));
    let (a, b) = (h1.client("qa").await, h2.client("qb").await);
    let mut sent = Vec::new();
    for i in 0..10u32 {
        sent.push(a.send("qb", &i.to_be_bytes()).await.unwrap());
    }
    for _ in 0..10 {
        within(b.recv()).await.unwrap();
    }
    for s in sent {
        within(s.delivered()).await.unwrap();
    }
    // Each host timed its own wait (20 in all, one process); h2 also both together, per
    // message, from what each RELAY said.
    assert_eq!(
        histogram_count("tribune_agent_message_queue_seconds", "qa"),
        20
    );
    assert_eq!(
        histogram_count("tribune_agent_message_relayed_queue_seconds", "qa"),
        10
    );
}

#[tokio::test]
async fn an_agent_that_predates_queued_relays_still_links_and_relays() {
    let ca = ca_dir();
    let (_h1, h2) = pair(ca.path(), &["a"], &["a"]).await;
    let h1 = agent_files(ca.path(), "h1");
    let mut old = client_config(&h1.ca, Some((&h1.cert, &h1.key))).unwrap();
    old.alpn_protocols = vec![ALPN.to_vec()];
    let mut s = dial_with(Arc::new(old), &h2.addr.to_string())
        .await
        .unwrap();
    assert_eq!(s.get_ref().1.alpn_protocol(), Some(ALPN));
    assert_eq!(
        relay_and_answer(&mut s, "a", "b").await,
        Some(Frame::Accepted { id: 7 })
    );
    // Today's agents negotiate the queued time, and send it.
    let new = client_config(&h1.ca, Some((&h1.cert, &h1.key))).unwrap();
    let mut s = dial_with(Arc::new(new), &h2.addr.to_string())
        .await
        .unwrap();
    assert_eq!(s.get_ref().1.alpn_protocol(), Some(ALPN_QUEUED));
    assert_eq!(
        relay_queued_and_answer(&mut s, Some(1500), "a", "b").await,
        Some(Frame::Accepted { id: 7 })
    );
}
