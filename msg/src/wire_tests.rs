use proptest::prelude::*;

use super::*;

fn encoded(f: &Frame) -> Vec<u8> {
    let mut out = Vec::new();
    f.encode(&mut out).unwrap();
    out
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

/// The byte layout of every kind, pinned (docs/messages.md documents exactly these).
#[test]
fn golden_bytes() {
    let cases = [
        (
            Frame::Send {
                id: 0x0102,
                to: "b".into(),
                payload: b"hi".to_vec(),
            },
            "0000000e01010000000000000102016268 69".replace(' ', ""),
        ),
        (Frame::Receive { window: 64 }, "00000006010200000040".into()),
        (Frame::Credit { n: 0x0102 }, "00000006010300000102".into()),
        (
            Frame::Relay {
                id: 3,
                queued_us: None,
                from: "a".into(),
                to: "b".into(),
                payload: b"hi".to_vec(),
            },
            "00000010010400000000000000030161 01626869".replace(' ', ""),
        ),
        (
            Frame::Relay {
                id: 3,
                queued_us: Some(0x0102),
                from: "a".into(),
                to: "b".into(),
                payload: b"hi".to_vec(),
            },
            "000000140105000000000000000300000102 0161 01626869".replace(' ', ""),
        ),
        (
            Frame::Hello { name: "a-1".into() },
            "00000006018003612d31".into(),
        ),
        (
            Frame::Accepted { id: 7 },
            "0000000a01810000000000000007".into(),
        ),
        (
            Frame::Refused {
                id: 7,
                code: RefusalCode::QueueFull,
                reason: "full".into(),
            },
            "0000001101820000000000000007050004".to_string() + "66756c6c",
        ),
        (
            Frame::Done {
                id: 9,
                outcome: Outcome::Failed,
                reason: String::new(),
            },
            "0000000d018300000000000000090100 00".replace(' ', ""),
        ),
        (
            Frame::Deliver {
                from: "a".into(),
                payload: vec![0xff],
            },
            "0000000501840161ff".into(),
        ),
    ];
    for (frame, want) in cases {
        let bytes = encoded(&frame);
        assert_eq!(hex(&bytes), want, "{frame:?}");
        assert_eq!(Frame::decode(&bytes[4..]).unwrap(), frame);
    }
}

#[test]
fn strict_decoding_names_what_is_wrong() {
    let err = |b: &[u8]| Frame::decode(b).unwrap_err().to_string();
    assert_eq!(
        err(&[1]),
        format!("frame of 1 bytes: must be 2..={FRAME_BYTES_MAX}")
    );
    assert_eq!(
        err(&[2, 1]),
        "wire version 2: this side speaks version 1 only"
    );
    assert_eq!(err(&[1, 0x7f]), "unknown frame kind 0x7f");
    assert_eq!(err(&[1, 0x81, 0, 0]), "frame kind 0x81 ends before its id");
    assert_eq!(
        err(&[1, 0x81, 0, 0, 0, 0, 0, 0, 0, 1, 9]),
        "frame kind 0x81 has 1 bytes after its last field"
    );
    assert_eq!(err(&[1, 0x02, 0]), "frame kind 0x02 ends before its window");
    assert_eq!(err(&[1, 0x02, 0, 0, 0, 0]), "window must be at least 1");
    assert_eq!(err(&[1, 0x03, 0, 0, 0, 0]), "n must be at least 1");
    assert_eq!(
        err(&[1, 0x03, 0, 0, 0, 1, 0]),
        "frame kind 0x03 has 1 bytes after its last field"
    );
    assert_eq!(err(&[1, 0x80, 0]), "name: must be 1 to 64 bytes");
    assert_eq!(err(&[1, 0x80, 1, b'A']), "name: only a-z, 0-9, '-' and '_'");
    assert_eq!(err(&[1, 0x80, 1, b'-']), "name: must not start with '-'");
    assert_eq!(
        err(&[1, 0x80, 2, 0xc3, 0x28]),
        "name: only a-z, 0-9, '-' and '_'"
    );
    assert_eq!(
        err(&[1, 0x82, 0, 0, 0, 0, 0, 0, 0, 1, 99, 0, 0]),
        "unknown refusal code 99"
    );
    assert_eq!(
        err(&[1, 0x83, 0, 0, 0, 0, 0, 0, 0, 1, 2, 0, 0]),
        "unknown outcome 2"
    );
    assert_eq!(
        err(&[1, 0x83, 0, 0, 0, 0, 0, 0, 0, 1, 1, 0, 1, 0xff]),
        "reason: not UTF-8"
    );
    assert_eq!(
        err(&[1, 0x83, 0, 0, 0, 0, 0, 0, 0, 1, 1, 0x02, 0x01]),
        "reason: longer than 512 bytes"
    );
}

#[test]
fn encoding_refuses_what_decoding_would_refuse() {
    let mut out = Vec::new();
    let big = Frame::Deliver {
        from: "a".into(),
        payload: vec![0; PAYLOAD_BYTES_MAX + 1],
    };
    assert!(matches!(big.encode(&mut out), Err(WireError::Payload(_))));
    let name = Frame::Hello {
        name: "x".repeat(65),
    };
    assert!(matches!(name.encode(&mut out), Err(WireError::Name { .. })));
    let reason = Frame::Refused {
        id: 1,
        code: RefusalCode::TooLarge,
        reason: "r".repeat(513),
    };
    assert!(matches!(reason.encode(&mut out), Err(WireError::Reason(_))));
    // The largest frame fits the bound exactly.
    let max = Frame::Relay {
        id: u64::MAX,
        queued_us: Some(u32::MAX),
        from: "m".repeat(NAME_BYTES_MAX),
        to: "n".repeat(NAME_BYTES_MAX),
        payload: vec![1; PAYLOAD_BYTES_MAX],
    };
    out.clear();
    max.encode(&mut out).unwrap();
    assert_eq!(out.len() - 4, FRAME_BYTES_MAX);
    assert_eq!(Frame::decode(&out[4..]).unwrap(), max);
}

#[tokio::test]
async fn frames_stream_back_to_back_and_end_cleanly() {
    let frames = vec![
        Frame::Receive { window: 1 },
        Frame::Accepted { id: 1 },
        Frame::Deliver {
            from: "abc".into(),
            payload: vec![1, 2, 3],
        },
    ];
    let mut bytes = Vec::new();
    for f in &frames {
        f.encode(&mut bytes).unwrap();
    }
    let mut r = &bytes[..];
    let mut buf = Vec::new();
    for f in &frames {
        assert_eq!(
            read_frame(&mut r, &mut buf).await.unwrap().as_ref(),
            Some(f)
        );
    }
    assert!(read_frame(&mut r, &mut buf).await.unwrap().is_none());
    // A length over the bound is refused before anything is allocated for it.
    let mut huge = &[0xff, 0xff, 0xff, 0xff][..];
    assert!(matches!(
        read_frame(&mut huge, &mut buf).await,
        Err(WireError::Length { .. })
    ));
    // A frame cut short is an error, not a clean end.
    let mut cut = &bytes[..bytes.len() - 1][..];
    let _ = read_frame(&mut cut, &mut buf).await.unwrap();
    let _ = read_frame(&mut cut, &mut buf).await.unwrap();
    assert!(matches!(
        read_frame(&mut cut, &mut buf).await,
        Err(WireError::Io(_))
    ));
}

fn name() -> impl Strategy<Value = String> {
    "[a-z0-9_][a-z0-9_-]{0,63}"
}

fn frame() -> impl Strategy<Value = Frame> {
    let code = proptest::sample::select(RefusalCode::ALL.to_vec());
    let outcome = prop_oneof![Just(Outcome::Delivered), Just(Outcome::Failed)];
    let payload = proptest::collection::vec(any::<u8>(), 0..300);
    prop_oneof![
        (any::<u64>(), name(), payload.clone()).prop_map(|(id, to, payload)| Frame::Send {
            id,
            to,
            payload
        }),
        (
            any::<u64>(),
            proptest::option::of(any::<u32>()),
            name(),
            name(),
            payload.clone()
        )
            .prop_map(|(id, queued_us, from, to, payload)| {
                Frame::Relay {
                    id,
                    queued_us,
                    from,
                    to,
                    payload,
                }
            }),
        (1u32..).prop_map(|window| Frame::Receive { window }),
        (1u32..).prop_map(|n| Frame::Credit { n }),
        name().prop_map(|name| Frame::Hello { name }),
        any::<u64>().prop_map(|id| Frame::Accepted { id }),
        (any::<u64>(), code, "\\PC{0,40}").prop_map(|(id, code, reason)| Frame::Refused {
            id,
            code,
            reason
        }),
        (any::<u64>(), outcome, "\\PC{0,40}").prop_map(|(id, outcome, reason)| Frame::Done {
            id,
            outcome,
            reason
        }),
        (name(), payload).prop_map(|(from, payload)| Frame::Deliver { from, payload }),
    ]
}

proptest! {
    #[test]
    fn every_frame_round_trips(f in frame()) {
        let bytes = encoded(&f);
        prop_assert_eq!(u32::from_be_bytes(bytes[..4].try_into().unwrap()) as usize, bytes.len() - 4);
        prop_assert_eq!(Frame::decode(&bytes[4..]).unwrap(), f);
    }

    /// Whatever decodes re-encodes to the same bytes: one encoding per frame.
    #[test]
    fn decoding_arbitrary_bytes_never_panics_and_is_canonical(body in proptest::collection::vec(any::<u8>(), 0..200)) {
        if let Ok(f) = Frame::decode(&body) {
            prop_assert_eq!(&encoded(&f)[4..], &body[..]);
        }
    }

    /// Mutations of valid frames (the inputs a fuzzer finds first).
    #[test]
    fn mutated_frames_decode_canonically_or_fail(f in frame(), at in any::<usize>(), to in any::<u8>()) {
        let mut bytes = encoded(&f);
        let i = 4 + at % (bytes.len() - 4);
        bytes[i] = to;
        if let Ok(g) = Frame::decode(&bytes[4..]) {
            prop_assert_eq!(&encoded(&g)[4..], &bytes[4..]);
        }
    }
}
