//! The mediator's frame decoder (bytes an enclave controls): it must never panic, and what
//! decodes must encode back to exactly the bytes it came from (one encoding per frame).
#![no_main]

use libfuzzer_sys::fuzz_target;
use tribune_msg::wire::Frame;

fuzz_target!(|data: &[u8]| {
    if let Ok(frame) = Frame::decode(data) {
        let mut again = Vec::new();
        frame.encode(&mut again).expect("a decoded frame encodes");
        assert_eq!(&again[4..], data);
        assert_eq!(u32::from_be_bytes([again[0], again[1], again[2], again[3]]) as usize, data.len());
    }
});
