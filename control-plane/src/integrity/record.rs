//! Checksummed records: the on-disk envelope of every value a controller stores (Raft log
//! entries, vote and other Raft metadata, the state-machine snapshot).
//!
//! A record is `version ‖ digest ‖ payload`:
//!
//! | bytes | what |
//! | --- | --- |
//! | 1 | format version, [`VERSION`] (1) |
//! | 16 | the first 16 bytes of SHA-256(`"tribune/record/v1"` ‖ len(context) as u32 BE ‖ context ‖ payload) |
//! | rest | the payload, unchanged |
//!
//! `context` names where the record lives (the table and the key), so a record that is intact
//! but sits under the wrong key or in the wrong table is refused too. Opening a record checks the
//! version and the digest and hands back the payload; anything else is a [`RecordError`].
//!
//! The digest is a checksum, not a signature: it catches a flipped bit, a torn or misplaced write
//! and a file from another format, not someone who rewrites the file and recomputes it (that is
//! what comparing with the peers' signed tree heads is for, `crate::integrity`). SHA-256 because
//! the crate already has it and it runs on the CPU's SHA extensions where there are any: ~1 µs
//! per KiB (see the `record_costs` test). This module knows nothing about redb or Raft, so a
//! write-ahead log can reuse it as it is.

use sha2::{Digest, Sha256};

/// The record format this code writes and reads.
pub const VERSION: u8 = 1;
/// Bytes of the SHA-256 kept.
pub const DIGEST_LEN: usize = 16;
/// Bytes in front of the payload.
pub const HEADER_LEN: usize = 1 + DIGEST_LEN;

const DOMAIN: &[u8] = b"tribune/record/v1";

/// Why a stored record was refused.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum RecordError {
    #[error("the record is empty")]
    Empty,
    /// JSON where a header should be: written by a Tribune from before records were checksummed.
    #[error(
        "the record has no checksum header (it starts with {first:?}): it was written by an older Tribune, before stored records were checksummed"
    )]
    Unversioned { first: char },
    #[error("the record has format version {0}; this Tribune reads version {VERSION}")]
    UnknownVersion(u8),
    #[error("the record is {len} bytes, shorter than its {HEADER_LEN}-byte header")]
    Truncated { len: usize },
    #[error(
        "checksum mismatch (stored {stored}, computed {computed}): the bytes changed after they were written"
    )]
    Mismatch { stored: String, computed: String },
}

fn digest(context: &[u8], payload: &[u8]) -> [u8; DIGEST_LEN] {
    let mut h = Sha256::new();
    h.update(DOMAIN);
    h.update((context.len() as u32).to_be_bytes());
    h.update(context);
    h.update(payload);
    let full = h.finalize();
    let mut out = [0u8; DIGEST_LEN];
    out.copy_from_slice(&full[..DIGEST_LEN]);
    out
}

/// The record holding `payload` at `context`.
pub fn seal(context: &[u8], payload: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(HEADER_LEN + payload.len());
    out.push(VERSION);
    out.extend_from_slice(&digest(context, payload));
    out.extend_from_slice(payload);
    out
}

/// A buffer to serialise a payload into, behind room for the header; [`finish`] fills it in.
/// Saves [`seal`]'s copy of the payload.
pub fn begin() -> Vec<u8> {
    let mut out = Vec::with_capacity(HEADER_LEN + 256);
    out.resize(HEADER_LEN, 0);
    out
}

/// Turns a [`begin`] buffer with the payload written behind the header into a record.
pub fn finish(context: &[u8], buf: &mut [u8]) {
    if buf.len() < HEADER_LEN {
        return;
    }
    let d = digest(context, &buf[HEADER_LEN..]);
    buf[0] = VERSION;
    buf[1..HEADER_LEN].copy_from_slice(&d);
}

/// The payload of `record` if it is an intact version-1 record for `context`.
pub fn open<'a>(context: &[u8], record: &'a [u8]) -> Result<&'a [u8], RecordError> {
    let Some(&version) = record.first() else {
        return Err(RecordError::Empty);
    };
    if version != VERSION {
        // Records of the old format were bare JSON: an object, `null`, or a number.
        if matches!(version, b'{' | b'[' | b'n' | b'"' | b'0'..=b'9') {
            return Err(RecordError::Unversioned {
                first: char::from(version),
            });
        }
        return Err(RecordError::UnknownVersion(version));
    }
    if record.len() < HEADER_LEN {
        return Err(RecordError::Truncated { len: record.len() });
    }
    let (stored, payload) = record[1..].split_at(DIGEST_LEN);
    let computed = digest(context, payload);
    if stored != computed {
        return Err(RecordError::Mismatch {
            stored: hex::encode(stored),
            computed: hex::encode(computed),
        });
    }
    Ok(payload)
}

/// The context of the record under `key` in `table`: `table ‖ 0x00 ‖ key`.
pub fn context(table: &str, key: &[u8]) -> Vec<u8> {
    let mut c = Vec::with_capacity(table.len() + 1 + key.len());
    c.extend_from_slice(table.as_bytes());
    c.push(0);
    c.extend_from_slice(key);
    c
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn sealed_records_open_to_their_payload(
            ctx in proptest::collection::vec(any::<u8>(), 0..40),
            payload in proptest::collection::vec(any::<u8>(), 0..600),
        ) {
            let r = seal(&ctx, &payload);
            prop_assert_eq!(r.len(), HEADER_LEN + payload.len());
            prop_assert_eq!(open(&ctx, &r), Ok(payload.as_slice()));
            let mut b = begin();
            b.extend_from_slice(&payload);
            finish(&ctx, &mut b);
            prop_assert_eq!(b, r);
        }

        #[test]
        fn every_single_bit_flip_is_detected(
            ctx in proptest::collection::vec(any::<u8>(), 0..16),
            payload in proptest::collection::vec(any::<u8>(), 0..96),
        ) {
            let r = seal(&ctx, &payload);
            for bit in 0..r.len() * 8 {
                let mut bad = r.clone();
                bad[bit / 8] ^= 1 << (bit % 8);
                prop_assert!(open(&ctx, &bad).is_err(), "flip of bit {} went unnoticed", bit);
            }
        }

        #[test]
        fn a_record_under_another_context_is_refused(
            a in proptest::collection::vec(any::<u8>(), 0..16),
            b in proptest::collection::vec(any::<u8>(), 0..16),
            payload in proptest::collection::vec(any::<u8>(), 0..64),
        ) {
            prop_assume!(a != b);
            let r = seal(&a, &payload);
            let refused = matches!(open(&b, &r), Err(RecordError::Mismatch { .. }));
            prop_assert!(refused);
        }
    }

    #[test]
    fn old_and_foreign_formats_are_named() {
        assert_eq!(open(b"t", b""), Err(RecordError::Empty));
        assert_eq!(
            open(b"t", br#"{"log_id":1}"#),
            Err(RecordError::Unversioned { first: '{' })
        );
        assert_eq!(
            open(b"t", b"null"),
            Err(RecordError::Unversioned { first: 'n' })
        );
        assert_eq!(open(b"t", &[2, 0, 0]), Err(RecordError::UnknownVersion(2)));
        assert_eq!(
            open(b"t", &[VERSION, 1, 2]),
            Err(RecordError::Truncated { len: 3 })
        );
        let e = open(b"t", &[VERSION; HEADER_LEN]).expect_err("wrong digest");
        assert!(e.to_string().contains("checksum mismatch"), "{e}");
        assert_eq!(context("raft_log", &[0, 1]), b"raft_log\0\0\x01".to_vec());
    }

    /// What a checksum costs on the write path (seal) and the read path (open):
    /// `cargo test -p tribune-controller --release --lib -- --ignored record_costs --nocapture`.
    #[test]
    #[ignore = "a measurement, not a check"]
    fn record_costs() {
        for size in [256usize, 1024, 16 * 1024, 1 << 20] {
            let payload = vec![0x5au8; size];
            let ctx = context("raft_log", &42u64.to_be_bytes());
            let rounds = (64 << 20) / size;
            let t = std::time::Instant::now();
            let mut keep = 0usize;
            for _ in 0..rounds {
                keep += seal(&ctx, &payload).len();
            }
            let sealed = t.elapsed() / rounds as u32;
            let r = seal(&ctx, &payload);
            let t = std::time::Instant::now();
            for _ in 0..rounds {
                keep += open(&ctx, &r).map_or(0, <[u8]>::len);
            }
            let opened = t.elapsed() / rounds as u32;
            println!("{size:>8} B: seal {sealed:?}, open {opened:?} ({keep})");
        }
    }
}
