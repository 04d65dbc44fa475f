use proptest::prelude::*;

use super::*;
use crate::wire::{Outcome, RefusalCode};

fn encoded(frames: &[Frame]) -> Vec<u8> {
    let mut out = Vec::new();
    for f in frames {
        f.encode(&mut out).unwrap();
    }
    out
}

fn sample() -> Vec<Frame> {
    vec![
        Frame::Receive { window: 1 },
        Frame::Send {
            id: 7,
            to: "app".into(),
            payload: b"ping".to_vec(),
        },
        Frame::Credit { n: 3 },
        Frame::Send {
            id: 8,
            to: "b".into(),
            payload: vec![0xAB; 70_000.min(wire::PAYLOAD_BYTES_MAX)],
        },
        Frame::Done {
            id: 7,
            outcome: Outcome::Failed,
            reason: "gone".into(),
        },
    ]
}

/// Feeds `bytes` in pieces of the given sizes (cycled); returns the frames and the first error.
fn feed(bytes: &[u8], sizes: &[usize]) -> (Vec<Frame>, Option<DeframeError>, Deframer) {
    let mut d = Deframer::new();
    let mut frames = Vec::new();
    let mut rest = bytes;
    let mut i = 0;
    while !rest.is_empty() {
        let n = sizes[i % sizes.len()].clamp(1, rest.len());
        i += 1;
        let (mut piece, tail) = rest.split_at(n);
        rest = tail;
        loop {
            match d.push(&mut piece) {
                Ok(Some(f)) => frames.push(f),
                Ok(None) => break,
                Err(e) => return (frames, Some(e), d),
            }
            assert!(d.held() <= LENGTH_BYTES + FRAME_BYTES_MAX);
        }
        assert!(piece.is_empty(), "Ok(None) leaves nothing of the piece");
    }
    (frames, None, d)
}

#[test]
fn frames_come_out_whole_however_the_stream_is_cut() {
    let frames = sample();
    let bytes = encoded(&frames);
    for sizes in [
        vec![1],
        vec![2],
        vec![3, 5],
        vec![4],
        vec![4096],
        vec![bytes.len()],
    ] {
        let (got, err, d) = feed(&bytes, &sizes);
        assert!(err.is_none(), "{sizes:?}: {err:?}");
        assert_eq!(got, frames, "{sizes:?}");
        d.finish().unwrap();
        assert_eq!(d.held(), 0);
        assert_eq!(d.offset(), bytes.len() as u64);
    }
}

#[test]
fn a_partial_frame_waits_and_an_end_inside_it_is_an_error_naming_how_much_came() {
    let bytes = encoded(&[Frame::Credit { n: 1 }]);
    let mut d = Deframer::new();
    for b in &bytes[..bytes.len() - 1] {
        let mut one = std::slice::from_ref(b);
        assert!(d.push(&mut one).unwrap().is_none());
    }
    let e = d.finish().unwrap_err();
    assert!(
        matches!(
            e,
            DeframeError::Ended {
                at: 0,
                have: 9,
                want: 10
            }
        ),
        "{e}"
    );
    assert!(e.to_string().contains("9 of its 10 bytes"), "{e}");
    let mut last = &bytes[bytes.len() - 1..];
    assert_eq!(d.push(&mut last).unwrap(), Some(Frame::Credit { n: 1 }));
    d.finish().unwrap();
    // Inside the prefix, too.
    let mut d = Deframer::new();
    d.push(&mut &[0u8, 0][..]).unwrap();
    assert!(matches!(
        d.finish(),
        Err(DeframeError::Ended {
            have: 2,
            want: 4,
            ..
        })
    ));
}

#[test]
fn an_oversized_frame_is_refused_at_its_prefix_before_any_of_it_is_held() {
    let good = encoded(&[Frame::Credit { n: 1 }]);
    let mut bytes = good.clone();
    bytes.extend_from_slice(&((FRAME_BYTES_MAX + 1) as u32).to_be_bytes());
    bytes.extend_from_slice(&[0x01; 100]);
    let mut d = Deframer::new();
    let mut input = &bytes[..];
    assert_eq!(d.push(&mut input).unwrap(), Some(Frame::Credit { n: 1 }));
    let e = d.push(&mut input).unwrap_err();
    assert_eq!(d.held(), 0);
    assert_eq!(input.len(), 100, "nothing after the prefix was taken");
    assert!(
        matches!(&e, DeframeError::Frame { at: 10, source: WireError::Length { len, .. } } if *len == FRAME_BYTES_MAX + 1),
        "{e}"
    );
    assert!(
        e.to_string().contains(&format!(
            "the frame at byte 10 of the stream: frame of {} bytes: must be 2..={FRAME_BYTES_MAX}",
            FRAME_BYTES_MAX + 1
        )),
        "{e}"
    );
    // Final: the stream cannot be read further.
    assert!(matches!(
        d.push(&mut &good[..]),
        Err(DeframeError::Failed { at: 10 })
    ));
    assert!(matches!(d.finish(), Err(DeframeError::Failed { at: 10 })));
    for tiny in [0u32, 1] {
        let mut d = Deframer::new();
        let e = d.push(&mut &tiny.to_be_bytes()[..]).unwrap_err();
        assert!(
            matches!(
                e,
                DeframeError::Frame {
                    source: WireError::Length { .. },
                    ..
                }
            ),
            "{e}"
        );
    }
}

#[test]
fn garbage_is_an_error_that_names_where_and_why() {
    // Text where a frame should be (a guest's boot messages on the port): the first four bytes
    // read as a length far over the limit.
    let (frames, err, _) = feed(b"SeaBIOS (version 1.16)\r\n", &[1]);
    assert!(frames.is_empty());
    let e = err.unwrap();
    assert!(e.to_string().starts_with("the frame at byte 0"), "{e}");
    // A good frame, then one of a plausible length that does not decode.
    let mut bytes = encoded(&[Frame::Receive { window: 2 }]);
    bytes.extend_from_slice(&[0, 0, 0, 3, 1, 0x7F, 0]);
    let (frames, err, _) = feed(&bytes, &[5]);
    assert_eq!(frames, vec![Frame::Receive { window: 2 }]);
    let e = err.unwrap();
    assert!(
        matches!(
            &e,
            DeframeError::Frame {
                at: 10,
                source: WireError::Kind(0x7F)
            }
        ),
        "{e}"
    );
    // A refusal code no version has.
    let mut bad = encoded(&[Frame::Refused {
        id: 1,
        code: RefusalCode::QueueFull,
        reason: String::new(),
    }]);
    bad[4 + 2 + 8] = 99;
    let (_, err, _) = feed(&bad, &[bad.len()]);
    assert!(matches!(
        err,
        Some(DeframeError::Frame {
            source: WireError::Code(99),
            ..
        })
    ));
}

fn frame() -> impl Strategy<Value = Frame> {
    let name = "[a-z0-9_][a-z0-9_-]{0,63}";
    prop_oneof![
        (
            any::<u64>(),
            name,
            proptest::collection::vec(any::<u8>(), 0..300)
        )
            .prop_map(|(id, to, payload)| Frame::Send { id, to, payload }),
        (1u32..).prop_map(|window| Frame::Receive { window }),
        (1u32..).prop_map(|n| Frame::Credit { n }),
        (name, proptest::collection::vec(any::<u8>(), 0..300))
            .prop_map(|(from, payload)| Frame::Deliver { from, payload }),
        any::<u64>().prop_map(|id| Frame::Accepted { id }),
    ]
}

proptest! {
    /// Any frames, cut anywhere: the same frames come out, in order.
    #[test]
    fn any_cut_of_any_frames_gives_the_frames_back(
        frames in proptest::collection::vec(frame(), 0..12),
        sizes in proptest::collection::vec(1usize..600, 1..8),
    ) {
        let bytes = encoded(&frames);
        let (got, err, d) = feed(&bytes, &sizes);
        prop_assert!(err.is_none());
        prop_assert_eq!(got, frames);
        prop_assert!(d.finish().is_ok());
    }

    /// Any bytes: no panic, never more than one frame held, and the frames that come out are
    /// exactly those of decoding the stream whole.
    #[test]
    fn any_bytes_cut_anywhere_decode_as_the_whole_stream(
        bytes in proptest::collection::vec(any::<u8>(), 0..2000),
        sizes in proptest::collection::vec(1usize..64, 1..8),
    ) {
        let (got, err, _) = feed(&bytes, &sizes);
        let (whole, whole_err, _) = feed(&bytes, &[bytes.len().max(1)]);
        prop_assert_eq!(got, whole);
        prop_assert_eq!(err.is_some(), whole_err.is_some());
    }
}
