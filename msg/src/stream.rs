//! Frames out of a byte stream that arrives in pieces of any size: a socket read, or a QEMU
//! guest's serial port, whose host side is a plain byte stream with no message boundaries
//! (`docs/messages.md`, "QEMU guests"). Sans I/O, so it is tested and fuzzed without a socket
//! (`msg/fuzz`, target `stream_deframe`).
//!
//! The frame format is [`crate::wire`]'s, the one definition: a [`Deframer`] only collects the
//! bytes of one frame (its length prefix checked with [`wire::body_len`] before any of the body
//! is held) and hands the body to [`Frame::decode`]. It holds at most one frame
//! ([`LENGTH_BYTES`] + [`FRAME_BYTES_MAX`] bytes), whatever the stream sends.
//!
//! A stream cannot be resynchronised after a bad frame: nothing tells a length prefix from
//! payload bytes. The first error is therefore final — every later [`Deframer::push`] fails
//! too — and the reader closes the stream, naming the byte offset where the bad frame began.

use crate::wire::{self, FRAME_BYTES_MAX, Frame, LENGTH_BYTES, WireError};

/// Splits a byte stream into frames (see the module docs).
#[derive(Debug, Default)]
pub struct Deframer {
    /// The frame in progress: its length prefix until that is complete, then its body.
    buf: Vec<u8>,
    /// The body length, once the prefix is complete and checked.
    body: Option<usize>,
    /// Bytes taken from the stream so far.
    offset: u64,
    /// Where the frame in progress began.
    frame_start: u64,
    /// The offset of the frame that failed: the stream is unreadable from there on.
    failed_at: Option<u64>,
}

/// A stream that does not hold frames: where, and why.
#[derive(Debug, thiserror::Error)]
pub enum DeframeError {
    #[error("the frame at byte {at} of the stream: {source}")]
    Frame { at: u64, source: WireError },
    #[error("the stream ended inside the frame at byte {at}: {have} of its {want} bytes arrived")]
    Ended { at: u64, have: usize, want: usize },
    #[error("the stream is unreadable since the bad frame at byte {at}")]
    Failed { at: u64 },
}

impl Deframer {
    pub fn new() -> Deframer {
        Deframer::default()
    }

    /// Takes bytes from the front of `input` until one frame is complete and returns it
    /// (`input` then starts after it); `Ok(None)` once `input` is used up inside a frame or
    /// between frames. A length outside 2 ..= [`FRAME_BYTES_MAX`] is refused as soon as its
    /// four bytes are in, before any of the body is held.
    pub fn push(&mut self, input: &mut &[u8]) -> Result<Option<Frame>, DeframeError> {
        if let Some(at) = self.failed_at {
            return Err(DeframeError::Failed { at });
        }
        match self.take(input) {
            Ok(f) => Ok(f),
            Err(source) => {
                let at = self.frame_start;
                self.failed_at = Some(at);
                self.buf = Vec::new();
                self.body = None;
                Err(DeframeError::Frame { at, source })
            }
        }
    }

    /// At the end of the stream: `Ok` if it ended between frames.
    pub fn finish(&self) -> Result<(), DeframeError> {
        if let Some(at) = self.failed_at {
            return Err(DeframeError::Failed { at });
        }
        if self.buf.is_empty() && self.body.is_none() {
            return Ok(());
        }
        let (have, want) = match self.body {
            Some(len) => (LENGTH_BYTES + self.buf.len(), LENGTH_BYTES + len),
            None => (self.buf.len(), LENGTH_BYTES),
        };
        Err(DeframeError::Ended {
            at: self.frame_start,
            have,
            want,
        })
    }

    /// Bytes of a partial frame held now (at most [`LENGTH_BYTES`] + [`FRAME_BYTES_MAX`]).
    pub fn held(&self) -> usize {
        self.buf.len()
    }

    /// Bytes taken from the stream so far.
    pub fn offset(&self) -> u64 {
        self.offset
    }

    fn take(&mut self, input: &mut &[u8]) -> Result<Option<Frame>, WireError> {
        loop {
            let Some(len) = self.body else {
                if self.buf.is_empty() {
                    self.frame_start = self.offset;
                    if input.is_empty() {
                        return Ok(None);
                    }
                }
                let n = (LENGTH_BYTES - self.buf.len()).min(input.len());
                let head = self.advance(input, n);
                self.buf.extend_from_slice(head);
                if self.buf.len() < LENGTH_BYTES {
                    return Ok(None);
                }
                let mut prefix = [0u8; LENGTH_BYTES];
                prefix.copy_from_slice(&self.buf);
                let len = wire::body_len(prefix)?;
                self.buf.clear();
                self.body = Some(len);
                // The whole body is in this piece: decode it where it lies.
                if input.len() >= len {
                    self.body = None;
                    let body = self.advance(input, len);
                    return Frame::decode(body).map(Some);
                }
                continue;
            };
            let n = (len - self.buf.len()).min(input.len());
            let head = self.advance(input, n);
            self.buf.extend_from_slice(head);
            if self.buf.len() < len {
                return Ok(None);
            }
            debug_assert!(self.buf.len() <= FRAME_BYTES_MAX);
            self.body = None;
            let frame = Frame::decode(&self.buf);
            self.buf.clear();
            return frame.map(Some);
        }
    }

    fn advance<'a>(&mut self, input: &mut &'a [u8], n: usize) -> &'a [u8] {
        let (head, rest) = input.split_at(n);
        *input = rest;
        self.offset += n as u64;
        head
    }
}

#[cfg(test)]
#[path = "stream_tests.rs"]
mod tests;
