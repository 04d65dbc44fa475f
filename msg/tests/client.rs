//! The client against a scripted mediator on a real Unix socket: every accepted message ends in
//! exactly one outcome, refusals carry their code and reason, deliveries carry the sender.

use tokio::io::{AsyncWriteExt, BufReader};
use tokio::net::{UnixListener, UnixStream};
use tribune_msg::wire::{self, Frame, Outcome, RefusalCode};
use tribune_msg::{Client, DeliveryError, SendError};

async fn write(s: &mut tokio::net::unix::OwnedWriteHalf, f: Frame) {
    let mut b = Vec::new();
    f.encode(&mut b).unwrap();
    s.write_all(&b).await.unwrap();
}

async fn pair(name: &str) -> (Client, UnixStream, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("m.sock");
    let listener = UnixListener::bind(&path).unwrap();
    let (client, server) = tokio::join!(Client::connect(&path), async {
        let (mut s, _) = listener.accept().await.unwrap();
        let mut b = Vec::new();
        Frame::Hello { name: name.into() }.encode(&mut b).unwrap();
        s.write_all(&b).await.unwrap();
        s
    });
    (client.unwrap(), server, dir)
}

#[tokio::test]
async fn accepted_then_delivered_refused_and_received() {
    let (client, server, _dir) = pair("alpha").await;
    assert_eq!(client.name(), "alpha");
    let (r, mut w) = server.into_split();
    let mut r = BufReader::new(r);
    let mediator = tokio::spawn(async move {
        let mut buf = Vec::new();
        // First message: accept, then report delivered.
        let Some(Frame::Send { id, to, payload }) =
            wire::read_frame(&mut r, &mut buf).await.unwrap()
        else {
            panic!("expected SEND");
        };
        assert_eq!((to.as_str(), payload.as_slice()), ("beta", &b"one"[..]));
        write(&mut w, Frame::Accepted { id }).await;
        write(
            &mut w,
            Frame::Done {
                id,
                outcome: Outcome::Delivered,
                reason: String::new(),
            },
        )
        .await;
        // Second: refused as back-pressure.
        let Some(Frame::Send { id, .. }) = wire::read_frame(&mut r, &mut buf).await.unwrap() else {
            panic!("expected SEND");
        };
        write(
            &mut w,
            Frame::Refused {
                id,
                code: RefusalCode::QueueFull,
                reason: "full".into(),
            },
        )
        .await;
        // Third: accepted, then failed.
        let Some(Frame::Send { id, .. }) = wire::read_frame(&mut r, &mut buf).await.unwrap() else {
            panic!("expected SEND");
        };
        write(&mut w, Frame::Accepted { id }).await;
        write(
            &mut w,
            Frame::Done {
                id,
                outcome: Outcome::Failed,
                reason: "receiver left".into(),
            },
        )
        .await;
        // recv(): RECEIVE first, then a delivery.
        assert_eq!(
            wire::read_frame(&mut r, &mut buf).await.unwrap(),
            Some(Frame::Receive { window: 64 })
        );
        write(
            &mut w,
            Frame::Deliver {
                from: "gamma".into(),
                payload: b"hey".to_vec(),
            },
        )
        .await;
        (r, w)
    });
    client
        .send("beta", b"one")
        .await
        .unwrap()
        .delivered()
        .await
        .unwrap();
    let e = client.send("beta", b"two").await.unwrap_err();
    assert!(e.is_queue_full());
    assert_eq!(e.to_string(), "refused (queue-full): full");
    let sent = client.send("beta", b"three").await.unwrap();
    assert_eq!(
        sent.delivered().await,
        Err(DeliveryError::Failed("receiver left".into()))
    );
    assert_eq!(
        client.recv().await.unwrap(),
        ("gamma".to_string(), b"hey".to_vec())
    );
    let _keep = mediator.await.unwrap();
}

#[tokio::test]
async fn a_lost_connection_fails_every_accepted_message_and_every_waiting_send() {
    let (client, server, _dir) = pair("alpha").await;
    let (r, mut w) = server.into_split();
    let mut r = BufReader::new(r);
    let mut buf = Vec::new();
    let c = client.clone();
    let first = tokio::spawn(async move { c.send("beta", b"1").await });
    let Some(Frame::Send { id, .. }) = wire::read_frame(&mut r, &mut buf).await.unwrap() else {
        panic!("expected SEND");
    };
    write(&mut w, Frame::Accepted { id }).await;
    let sent = first.await.unwrap().unwrap();
    let c = client.clone();
    let second = tokio::spawn(async move { c.send("beta", b"2").await });
    let Some(Frame::Send { .. }) = wire::read_frame(&mut r, &mut buf).await.unwrap() else {
        panic!("expected SEND");
    };
    // The mediator goes away (a restart) with one message accepted and one unanswered.
    drop((r, w));
    assert_eq!(sent.delivered().await, Err(DeliveryError::ConnectionLost));
    assert_eq!(second.await.unwrap().unwrap_err(), SendError::Closed);
    assert_eq!(
        client.send("beta", b"3").await.unwrap_err(),
        SendError::Closed
    );
    assert!(client.recv().await.is_err());
}

#[tokio::test]
async fn bad_input_is_refused_before_it_is_sent() {
    let (client, _server, _dir) = pair("alpha").await;
    assert!(matches!(
        client.send("Bad Name", b"").await,
        Err(SendError::Invalid(_))
    ));
    let big = vec![0u8; wire::PAYLOAD_BYTES_MAX + 1];
    assert!(matches!(
        client.send("beta", &big).await,
        Err(SendError::Invalid(_))
    ));
}

#[tokio::test]
async fn a_peer_that_does_not_greet_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("m.sock");
    let listener = UnixListener::bind(&path).unwrap();
    let (client, _s) = tokio::join!(Client::connect(&path), async {
        let (s, _) = listener.accept().await.unwrap();
        let (_r, mut w) = s.into_split();
        write(&mut w, Frame::Accepted { id: 1 }).await;
        w
    });
    assert!(client.is_err());
    assert!(
        Client::connect(&dir.path().join("none.sock"))
            .await
            .is_err()
    );
}
