//! The proxy really delays, stalls, and delivers late after a reset (measured on loopback; no
//! root needed).

use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio::time::Instant;

use super::*;

const GENEROUS: Duration = Duration::from_secs(20);

/// An echo server; its address.
async fn echo() -> SocketAddr {
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let a = l.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((mut s, _)) = l.accept().await {
            tokio::spawn(async move {
                let mut b = vec![0u8; 4096];
                while let Ok(n) = s.read(&mut b).await {
                    if n == 0 || s.write_all(&b[..n]).await.is_err() {
                        return;
                    }
                }
            });
        }
    });
    a
}

/// A server that reports every message (up to a newline) it receives, on any connection, in
/// the order they arrive.
async fn recorder() -> (SocketAddr, mpsc::UnboundedReceiver<String>) {
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let a = l.local_addr().unwrap();
    let (tx, rx) = mpsc::unbounded_channel();
    tokio::spawn(async move {
        while let Ok((mut s, _)) = l.accept().await {
            let tx = tx.clone();
            tokio::spawn(async move {
                let mut b = vec![0u8; 4096];
                while let Ok(n) = s.read(&mut b).await {
                    if n == 0 {
                        return;
                    }
                    for m in String::from_utf8_lossy(&b[..n]).split_terminator('\n') {
                        let _ = tx.send(m.to_string());
                    }
                }
            });
        }
    });
    (a, rx)
}

async fn proxy_to(upstream: SocketAddr) -> (Proxy, SocketAddr) {
    let p = Proxy::start(
        &[LinkAddrs {
            link: (0, 1),
            listen: "127.0.0.1:0".parse().unwrap(),
            upstream,
            bind: None,
        }],
        7,
    )
    .await
    .unwrap();
    let a = p.listening()[0];
    (p, a)
}

async fn round_trip(s: &mut TcpStream, msg: &[u8]) -> Duration {
    let t = Instant::now();
    s.write_all(msg).await.unwrap();
    let mut got = vec![0u8; msg.len()];
    tokio::time::timeout(GENEROUS, s.read_exact(&mut got))
        .await
        .expect("the echo came back")
        .unwrap();
    assert_eq!(got, msg);
    t.elapsed()
}

#[tokio::test]
async fn delay_is_added_per_direction_and_jitter_keeps_byte_order() {
    let (p, at) = proxy_to(echo().await).await;
    let mut s = TcpStream::connect(at).await.unwrap();
    let plain = round_trip(&mut s, b"plain").await;
    p.shape(
        (0, 1),
        Shaping {
            delay: Duration::from_millis(150),
            ..Default::default()
        },
    );
    p.shape(
        (1, 0),
        Shaping {
            delay: Duration::from_millis(100),
            ..Default::default()
        },
    );
    let slow = round_trip(&mut s, b"slow").await;
    eprintln!("round trip through the proxy: {plain:?} plain, {slow:?} with 150 + 100 ms");
    assert!(slow >= Duration::from_millis(250), "{slow:?}");
    // Jitter of up to 80 ms on 10 ms of delay, 40 messages: the echo is the bytes in order.
    p.heal();
    p.shape(
        (0, 1),
        Shaping {
            delay: Duration::from_millis(10),
            jitter: Duration::from_millis(80),
            stalled: false,
        },
    );
    let mut sent = vec![];
    for i in 0..40u32 {
        let m = format!("<{i}>");
        s.write_all(m.as_bytes()).await.unwrap();
        sent.extend_from_slice(m.as_bytes());
        tokio::task::yield_now().await;
    }
    let mut got = vec![0u8; sent.len()];
    tokio::time::timeout(GENEROUS, s.read_exact(&mut got))
        .await
        .expect("all echoed")
        .unwrap();
    assert_eq!(got, sent);
    let st = p.stats();
    assert!(st.chunks_delayed >= 2 && st.held_ms_max >= 150, "{st:?}");
}

#[tokio::test]
async fn a_stall_holds_everything_then_delivers_it_in_a_burst() {
    let (p, at) = proxy_to(echo().await).await;
    let mut s = TcpStream::connect(at).await.unwrap();
    round_trip(&mut s, b"warm").await;
    p.shape(
        (0, 1),
        Shaping {
            stalled: true,
            ..Default::default()
        },
    );
    for m in [b"a1", b"a2", b"a3"] {
        s.write_all(m).await.unwrap();
    }
    let mut got = vec![0u8; 6];
    let held = tokio::time::timeout(Duration::from_millis(400), s.read_exact(&mut got)).await;
    assert!(held.is_err(), "nothing passes a stalled direction");
    p.heal();
    tokio::time::timeout(GENEROUS, s.read_exact(&mut got))
        .await
        .expect("the burst after the stall")
        .unwrap();
    assert_eq!(&got, b"a1a2a3");
    assert!(p.stats().held_ms_max >= 400, "{:?}", p.stats());
}

#[tokio::test]
async fn a_reset_closes_the_client_side_and_old_bytes_arrive_after_newer_ones() {
    let (up, mut arrived) = recorder().await;
    let (p, at) = proxy_to(up).await;
    p.shape(
        (0, 1),
        Shaping {
            delay: Duration::from_millis(200),
            ..Default::default()
        },
    );
    let mut old = TcpStream::connect(at).await.unwrap();
    old.write_all(b"old\n").await.unwrap();
    // Let the proxy read it (it is now in flight, held for 200 ms).
    let deadline = Instant::now() + GENEROUS;
    while p.stats().connections == 0 || p.shared.conns.lock().unwrap().is_empty() {
        assert!(
            Instant::now() < deadline,
            "the proxy accepted the connection"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert_eq!(p.reset(0, 1, Duration::from_millis(600)), 1);
    // The sender sees its connection end.
    let mut b = [0u8; 1];
    let end = tokio::time::timeout(GENEROUS, old.read(&mut b))
        .await
        .expect("the client side closed");
    assert!(matches!(end, Ok(0) | Err(_)), "{end:?}");
    // It retries on a new connection, which overtakes the old one.
    p.heal();
    let mut new = TcpStream::connect(at).await.unwrap();
    new.write_all(b"new\n").await.unwrap();
    let mut order = vec![];
    while order.len() < 2 {
        let m = tokio::time::timeout(GENEROUS, arrived.recv())
            .await
            .expect("both arrive")
            .unwrap();
        order.push(m);
    }
    assert_eq!(
        order,
        ["new", "old"],
        "the old request arrived after the newer one"
    );
    let st = p.stats();
    assert_eq!(st.resets, 1, "{st:?}");
    assert!(st.reordered_chunks >= 1, "{st:?}");
}
