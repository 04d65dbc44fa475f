//! The wire format between an enclave and its host's mediator, version 1 (`docs/messages.md`).
//!
//! A stream of frames over a Unix socket. Every frame is a big-endian `u32` length, then that
//! many bytes: a version byte (1), a kind byte, the kind's fields. Integers are big-endian;
//! names are 1..=64 bytes of `a-z 0-9 - _` (not starting with `-`); reasons are UTF-8 of at
//! most 512 bytes; payloads at most [`PAYLOAD_BYTES_MAX`].
//!
//! ```text
//! enclave → mediator
//!   0x01 SEND      id:u64  to_len:u8 to  payload…
//!   0x02 RECEIVE   window:u32                  (deliver this enclave's messages here, at most
//!                                               `window` before a CREDIT; window ≥ 1)
//!   0x03 CREDIT    n:u32                       (n more messages may be delivered; n ≥ 1)
//! agent → agent (the mTLS link between two hosts' mediators; `docs/messages.md`)
//!   0x04 RELAY     id:u64  from_len:u8 from  to_len:u8 to  payload…
//!                                              (answered with ACCEPTED, REFUSED, DONE by id)
//!   0x05 RELAY     id:u64  queued_us:u32  from_len:u8 from  to_len:u8 to  payload…
//!                                              (the same, and how long the message queued in
//!                                               the sending agent's mediator, µs; sent on a
//!                                               link that negotiated `tribune-peer/2`)
//! mediator → enclave
//!   0x80 HELLO     name_len:u8 name            (first frame: the enclave's own attested name)
//!   0x81 ACCEPTED  id:u64                      (queued for delivery)
//!   0x82 REFUSED   id:u64 code:u8 len:u16 reason
//!   0x83 DONE      id:u64 outcome:u8 len:u16 reason   (0 delivered, 1 failed)
//!   0x84 DELIVER   from_len:u8 from payload…   (`from`: the sender's name, set by the mediator)
//! ```
//!
//! There is no sender field in SEND: who sends is the socket it arrives on, never the frame.
//! Decoding is strict: an unknown version, kind, code or outcome, a bad name, a short frame or
//! trailing bytes is a [`WireError`], never a guess.

use tokio::io::{AsyncRead, AsyncReadExt};

/// The only version this code speaks.
pub const VERSION: u8 = 1;
/// Largest message payload.
pub const PAYLOAD_BYTES_MAX: usize = 64 << 10;
/// Longest enclave name.
pub const NAME_BYTES_MAX: usize = 64;
/// Longest reason text.
pub const REASON_BYTES_MAX: usize = 512;
/// Largest frame body (after the length): version, kind, id, the queued time, two names and a
/// payload (RELAY with its queued time, the largest kind; SEND and DELIVER carry one name).
pub const FRAME_BYTES_MAX: usize = 2 + 8 + 4 + 2 * (1 + NAME_BYTES_MAX) + PAYLOAD_BYTES_MAX;

/// Bytes of a frame's length prefix.
pub const LENGTH_BYTES: usize = 4;

const SEND: u8 = 0x01;
const RECEIVE: u8 = 0x02;
const CREDIT: u8 = 0x03;
const RELAY: u8 = 0x04;
const RELAY_QUEUED: u8 = 0x05;
const HELLO: u8 = 0x80;
const ACCEPTED: u8 = 0x81;
const REFUSED: u8 = 0x82;
const DONE: u8 = 0x83;
const DELIVER: u8 = 0x84;

/// One frame, either direction.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Frame {
    /// Send `payload` to enclave `to`; `id` is the sender's own, echoed in the answers.
    Send {
        id: u64,
        to: String,
        payload: Vec<u8>,
    },
    /// Deliver this enclave's messages on this connection from now on, at most `window` ahead
    /// of the CREDITs that follow (so messages wait in the mediator's fair queues, not in
    /// socket buffers).
    Receive { window: u32 },
    /// `n` more messages may be delivered.
    Credit { n: u32 },
    /// Agent → agent: a message from enclave `from` (placed on the sending agent's host, which
    /// the receiving agent checks against the placement it knows) to enclave `to` (placed on
    /// the receiving agent's host). `id` is the link's own, echoed in the answers.
    /// `queued_us`: how long it queued in the sending agent's mediator (kind 0x05; `None`:
    /// kind 0x04, as a link to an agent that does not take 0x05 sends it).
    Relay {
        id: u64,
        queued_us: Option<u32>,
        from: String,
        to: String,
        payload: Vec<u8>,
    },
    /// The mediator's greeting: the name this socket is bound to.
    Hello { name: String },
    /// The message is queued for delivery.
    Accepted { id: u64 },
    /// The message was not taken.
    Refused {
        id: u64,
        code: RefusalCode,
        reason: String,
    },
    /// What became of an accepted message.
    Done {
        id: u64,
        outcome: Outcome,
        reason: String,
    },
    /// A message for this enclave from enclave `from`.
    Deliver { from: String, payload: Vec<u8> },
}

/// Why a message was refused (a stable number on the wire).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum RefusalCode {
    /// The sending socket is bound to no enclave of the plan any more.
    UnknownSender = 1,
    /// No such enclave on this host.
    UnknownReceiver = 2,
    /// The sender's `talk` rules do not allow the receiver.
    SenderRules = 3,
    /// The receiver's `talk` rules do not allow the sender.
    ReceiverRules = 4,
    /// The sender's queue to this receiver is full: back-pressure, try again later.
    QueueFull = 5,
    /// The payload is larger than the mediator takes.
    TooLarge = 6,
    /// The sender is over the message rate its plan holds it to (a throttled flooder): try
    /// again later.
    RateLimited = 7,
    /// Across hosts: the sending agent claimed a sender that the controllers did not place on
    /// its host (a forged sender identity), or relayed to an enclave not placed here.
    WrongHost = 8,
}

impl RefusalCode {
    /// Every code, in wire order.
    pub const ALL: [RefusalCode; 8] = [
        RefusalCode::UnknownSender,
        RefusalCode::UnknownReceiver,
        RefusalCode::SenderRules,
        RefusalCode::ReceiverRules,
        RefusalCode::QueueFull,
        RefusalCode::TooLarge,
        RefusalCode::RateLimited,
        RefusalCode::WrongHost,
    ];

    fn from_byte(b: u8) -> Option<RefusalCode> {
        RefusalCode::ALL.into_iter().find(|c| *c as u8 == b)
    }

    /// A short name for logs and the CLI (`queue-full`, …).
    pub fn name(self) -> &'static str {
        match self {
            RefusalCode::UnknownSender => "unknown-sender",
            RefusalCode::UnknownReceiver => "unknown-receiver",
            RefusalCode::SenderRules => "sender-rules",
            RefusalCode::ReceiverRules => "receiver-rules",
            RefusalCode::QueueFull => "queue-full",
            RefusalCode::TooLarge => "too-large",
            RefusalCode::RateLimited => "rate-limited",
            RefusalCode::WrongHost => "wrong-host",
        }
    }
}

/// What became of an accepted message.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// Taken by the receiving application (`recv` returned it; the receiver credited it).
    Delivered = 0,
    /// Not delivered, and it never will be (the reason says why).
    Failed = 1,
}

/// A frame that cannot be read.
#[derive(Debug, thiserror::Error)]
pub enum WireError {
    #[error("frame of {len} bytes: must be 2..={max}")]
    Length { len: usize, max: usize },
    #[error("wire version {0}: this side speaks version {VERSION} only")]
    Version(u8),
    #[error("unknown frame kind 0x{0:02x}")]
    Kind(u8),
    #[error("frame kind 0x{kind:02x} ends before its {field}")]
    Truncated { kind: u8, field: &'static str },
    #[error("frame kind 0x{kind:02x} has {extra} bytes after its last field")]
    Trailing { kind: u8, extra: usize },
    #[error("{field}: {why}")]
    Name {
        field: &'static str,
        why: &'static str,
    },
    #[error("reason: {0}")]
    Reason(&'static str),
    #[error("payload of {0} bytes: at most {PAYLOAD_BYTES_MAX}")]
    Payload(usize),
    #[error("unknown refusal code {0}")]
    Code(u8),
    #[error("unknown outcome {0}")]
    Outcome(u8),
    #[error("{0} must be at least 1")]
    Zero(&'static str),
    #[error("reading a frame: {0}")]
    Io(#[from] std::io::Error),
}

/// Checks an enclave name as the wire carries it.
pub fn check_name(field: &'static str, name: &str) -> Result<(), WireError> {
    let bad = |why| Err(WireError::Name { field, why });
    if name.is_empty() || name.len() > NAME_BYTES_MAX {
        return bad("must be 1 to 64 bytes");
    }
    if name.starts_with('-') {
        return bad("must not start with '-'");
    }
    if !name
        .bytes()
        .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'_')
    {
        return bad("only a-z, 0-9, '-' and '_'");
    }
    Ok(())
}

impl Frame {
    /// Appends the frame, length prefix included. Refuses what a decoder would refuse, so a
    /// frame that encodes always decodes to itself.
    pub fn encode(&self, out: &mut Vec<u8>) -> Result<(), WireError> {
        let start = out.len();
        out.extend_from_slice(&[0, 0, 0, 0, VERSION]);
        match self {
            Frame::Send { id, to, payload } => {
                out.push(SEND);
                out.extend_from_slice(&id.to_be_bytes());
                put_name(out, "to", to)?;
                put_payload(out, payload)?;
            }
            Frame::Receive { window } => {
                out.push(RECEIVE);
                out.extend_from_slice(&nonzero("window", *window)?.to_be_bytes());
            }
            Frame::Credit { n } => {
                out.push(CREDIT);
                out.extend_from_slice(&nonzero("n", *n)?.to_be_bytes());
            }
            Frame::Relay {
                id,
                queued_us,
                from,
                to,
                payload,
            } => {
                out.push(if queued_us.is_some() {
                    RELAY_QUEUED
                } else {
                    RELAY
                });
                out.extend_from_slice(&id.to_be_bytes());
                if let Some(us) = queued_us {
                    out.extend_from_slice(&us.to_be_bytes());
                }
                put_name(out, "from", from)?;
                put_name(out, "to", to)?;
                put_payload(out, payload)?;
            }
            Frame::Hello { name } => {
                out.push(HELLO);
                put_name(out, "name", name)?;
            }
            Frame::Accepted { id } => {
                out.push(ACCEPTED);
                out.extend_from_slice(&id.to_be_bytes());
            }
            Frame::Refused { id, code, reason } => {
                out.push(REFUSED);
                out.extend_from_slice(&id.to_be_bytes());
                out.push(*code as u8);
                put_reason(out, reason)?;
            }
            Frame::Done {
                id,
                outcome,
                reason,
            } => {
                out.push(DONE);
                out.extend_from_slice(&id.to_be_bytes());
                out.push(*outcome as u8);
                put_reason(out, reason)?;
            }
            Frame::Deliver { from, payload } => {
                out.push(DELIVER);
                put_name(out, "from", from)?;
                put_payload(out, payload)?;
            }
        }
        let len = out.len() - start - 4;
        debug_assert!(len <= FRAME_BYTES_MAX);
        let len = u32::try_from(len).map_err(|_| WireError::Length {
            len,
            max: FRAME_BYTES_MAX,
        })?;
        out[start..start + 4].copy_from_slice(&len.to_be_bytes());
        Ok(())
    }

    /// Decodes one frame body (the bytes after the length prefix).
    pub fn decode(body: &[u8]) -> Result<Frame, WireError> {
        if body.len() < 2 || body.len() > FRAME_BYTES_MAX {
            return Err(WireError::Length {
                len: body.len(),
                max: FRAME_BYTES_MAX,
            });
        }
        if body[0] != VERSION {
            return Err(WireError::Version(body[0]));
        }
        let kind = body[1];
        let mut r = Reader {
            kind,
            rest: &body[2..],
        };
        let frame = match kind {
            SEND => {
                let id = r.u64("id")?;
                let to = r.name("to")?;
                let payload = r.payload()?;
                Frame::Send { id, to, payload }
            }
            RECEIVE => Frame::Receive {
                window: nonzero("window", r.u32("window")?)?,
            },
            CREDIT => Frame::Credit {
                n: nonzero("n", r.u32("n")?)?,
            },
            RELAY | RELAY_QUEUED => {
                let id = r.u64("id")?;
                let queued_us = match kind {
                    RELAY_QUEUED => Some(r.u32("queued_us")?),
                    _ => None,
                };
                let from = r.name("from")?;
                let to = r.name("to")?;
                let payload = r.payload()?;
                Frame::Relay {
                    id,
                    queued_us,
                    from,
                    to,
                    payload,
                }
            }
            HELLO => Frame::Hello {
                name: r.name("name")?,
            },
            ACCEPTED => Frame::Accepted { id: r.u64("id")? },
            REFUSED => {
                let id = r.u64("id")?;
                let b = r.u8("code")?;
                let code = RefusalCode::from_byte(b).ok_or(WireError::Code(b))?;
                Frame::Refused {
                    id,
                    code,
                    reason: r.reason()?,
                }
            }
            DONE => {
                let id = r.u64("id")?;
                let outcome = match r.u8("outcome")? {
                    0 => Outcome::Delivered,
                    1 => Outcome::Failed,
                    b => return Err(WireError::Outcome(b)),
                };
                Frame::Done {
                    id,
                    outcome,
                    reason: r.reason()?,
                }
            }
            DELIVER => {
                let from = r.name("from")?;
                let payload = r.payload()?;
                Frame::Deliver { from, payload }
            }
            k => return Err(WireError::Kind(k)),
        };
        if !r.rest.is_empty() {
            return Err(WireError::Trailing {
                kind,
                extra: r.rest.len(),
            });
        }
        Ok(frame)
    }
}

/// Reads one frame; `Ok(None)` at a clean end of stream (before a length prefix). `buf` is
/// reused between calls; it never grows past [`FRAME_BYTES_MAX`].
pub async fn read_frame<R: AsyncRead + Unpin>(
    r: &mut R,
    buf: &mut Vec<u8>,
) -> Result<Option<Frame>, WireError> {
    let mut len = [0u8; LENGTH_BYTES];
    match r.read_exact(&mut len[..1]).await {
        Ok(_) => {}
        Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => return Ok(None),
        Err(e) => return Err(e.into()),
    }
    r.read_exact(&mut len[1..]).await?;
    let len = body_len(len)?;
    buf.clear();
    buf.resize(len, 0);
    r.read_exact(buf).await?;
    Frame::decode(buf).map(Some)
}

/// The body length a frame's length prefix announces, if it is one a decoder takes
/// (2 ..= [`FRAME_BYTES_MAX`]): checked before a byte of the body is read or buffered.
pub fn body_len(prefix: [u8; LENGTH_BYTES]) -> Result<usize, WireError> {
    let len = u32::from_be_bytes(prefix) as usize;
    if !(2..=FRAME_BYTES_MAX).contains(&len) {
        return Err(WireError::Length {
            len,
            max: FRAME_BYTES_MAX,
        });
    }
    Ok(len)
}

fn nonzero(field: &'static str, v: u32) -> Result<u32, WireError> {
    if v == 0 {
        Err(WireError::Zero(field))
    } else {
        Ok(v)
    }
}

fn put_name(out: &mut Vec<u8>, field: &'static str, name: &str) -> Result<(), WireError> {
    check_name(field, name)?;
    out.push(name.len() as u8);
    out.extend_from_slice(name.as_bytes());
    Ok(())
}

fn put_payload(out: &mut Vec<u8>, payload: &[u8]) -> Result<(), WireError> {
    if payload.len() > PAYLOAD_BYTES_MAX {
        return Err(WireError::Payload(payload.len()));
    }
    out.extend_from_slice(payload);
    Ok(())
}

fn put_reason(out: &mut Vec<u8>, reason: &str) -> Result<(), WireError> {
    if reason.len() > REASON_BYTES_MAX {
        return Err(WireError::Reason("longer than 512 bytes"));
    }
    out.extend_from_slice(&(reason.len() as u16).to_be_bytes());
    out.extend_from_slice(reason.as_bytes());
    Ok(())
}

struct Reader<'a> {
    kind: u8,
    rest: &'a [u8],
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize, field: &'static str) -> Result<&'a [u8], WireError> {
        if self.rest.len() < n {
            return Err(WireError::Truncated {
                kind: self.kind,
                field,
            });
        }
        let (a, b) = self.rest.split_at(n);
        self.rest = b;
        Ok(a)
    }

    fn u8(&mut self, field: &'static str) -> Result<u8, WireError> {
        Ok(self.take(1, field)?[0])
    }

    fn u32(&mut self, field: &'static str) -> Result<u32, WireError> {
        let b = self.take(4, field)?;
        Ok(u32::from_be_bytes([b[0], b[1], b[2], b[3]]))
    }

    fn u64(&mut self, field: &'static str) -> Result<u64, WireError> {
        let b = self.take(8, field)?;
        let mut a = [0u8; 8];
        a.copy_from_slice(b);
        Ok(u64::from_be_bytes(a))
    }

    fn name(&mut self, field: &'static str) -> Result<String, WireError> {
        let len = usize::from(self.u8(field)?);
        let bytes = self.take(len, field)?;
        let name = std::str::from_utf8(bytes).map_err(|_| WireError::Name {
            field,
            why: "only a-z, 0-9, '-' and '_'",
        })?;
        check_name(field, name)?;
        Ok(name.to_string())
    }

    fn reason(&mut self) -> Result<String, WireError> {
        let b = self.take(2, "reason length")?;
        let len = usize::from(u16::from_be_bytes([b[0], b[1]]));
        if len > REASON_BYTES_MAX {
            return Err(WireError::Reason("longer than 512 bytes"));
        }
        let bytes = self.take(len, "reason")?;
        std::str::from_utf8(bytes)
            .map(str::to_string)
            .map_err(|_| WireError::Reason("not UTF-8"))
    }

    fn payload(&mut self) -> Result<Vec<u8>, WireError> {
        let p = std::mem::take(&mut self.rest);
        if p.len() > PAYLOAD_BYTES_MAX {
            return Err(WireError::Payload(p.len()));
        }
        Ok(p.to_vec())
    }
}

#[cfg(test)]
#[path = "wire_tests.rs"]
mod tests;
