//! The stream deframer (bytes a QEMU guest or a process enclave controls, cut anywhere): it
//! must never panic, never hold more than one frame, and give the same frames and the same
//! verdict however the stream is cut. The first byte picks the cut sizes; the rest is the stream.
#![no_main]

use libfuzzer_sys::fuzz_target;
use tribune_msg::stream::{DeframeError, Deframer};
use tribune_msg::wire::{FRAME_BYTES_MAX, Frame, LENGTH_BYTES};

fn run(stream: &[u8], cut: usize) -> (Vec<Frame>, Option<String>) {
    let mut d = Deframer::new();
    let mut frames = Vec::new();
    for mut piece in stream.chunks(cut) {
        loop {
            match d.push(&mut piece) {
                Ok(Some(f)) => frames.push(f),
                Ok(None) => break,
                Err(e) => {
                    assert!(matches!(d.push(&mut &b"x"[..]), Err(DeframeError::Failed { .. })));
                    return (frames, Some(e.to_string()));
                }
            }
            assert!(d.held() <= LENGTH_BYTES + FRAME_BYTES_MAX);
        }
        assert!(piece.is_empty());
    }
    let end = d.finish().err().map(|e| e.to_string());
    (frames, end)
}

fuzz_target!(|data: &[u8]| {
    let Some((&first, stream)) = data.split_first() else {
        return;
    };
    let cut = usize::from(first % 64) + 1;
    let whole = run(stream, stream.len().max(1));
    let pieces = run(stream, cut);
    assert_eq!(pieces.0, whole.0);
    // The verdict, too (an error names the frame's offset, the same however it is cut).
    assert_eq!(pieces.1, whole.1);
    for f in &whole.0 {
        let mut again = Vec::new();
        f.encode(&mut again).expect("a decoded frame encodes");
    }
});
