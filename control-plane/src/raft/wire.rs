//! How openraft's RPCs between controllers travel inside `RaftPayload.data`: a format version
//! byte, then a compact binary envelope in postcard.
//!
//! | bytes | what |
//! | --- | --- |
//! | 1 | [`WIRE_FORMAT`] (1) |
//! | rest | postcard of the message (below) |
//!
//! - AppendEntries: the vote, the previous log id, the leader's commit, then each entry as the
//!   very bytes the write-ahead log stores for it (`wal::codec`, format byte included). The
//!   batch of commands inside a `Normal` entry stays the JSON it is stored as: the leader sends
//!   the bytes it encoded once when appending, and a follower stores the bytes it received, so
//!   no entry is encoded again on the way (see `raft::Request`'s encoding cache).
//! - Vote: the vote and the candidate's last log id; InstallSnapshot: the vote, the snapshot's
//!   meta (openraft's serde form as JSON: small and rare), the offset, the chunk's raw bytes and
//!   `done` — where JSON wrote every byte of a chunk as a decimal number.
//! - Replies: `Ok` with the response in binary, or `Err` with openraft's `RaftError` as JSON
//!   (rare; its serde form is openraft's contract).
//!
//! Rolling upgrade: a controller still accepts the JSON form every message had before format 1
//! (a JSON payload starts with `{`) and answers a JSON request in JSON. It sends format 1; a peer
//! that refuses it as a malformed payload (a controller from before format 1) is spoken to in
//! JSON from then on ([`is_old_peer_refusal`]).
//!
//! postcard encodes an enum variant by its position and a struct as its fields in order, so the
//! field order of the `*W` types and the **order of every enum's variants are part of the
//! format: new variants go at the end** (the golden-bytes tests pin them).

use openraft::error::RaftError;
use openraft::raft::{
    AppendEntriesRequest, AppendEntriesResponse, InstallSnapshotRequest, InstallSnapshotResponse,
    VoteRequest, VoteResponse,
};
use openraft::{CommittedLeaderId, LeaderId, Vote};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use super::wal::codec::{self, Bytes, CodecError};
use super::{LogId, NodeId, TypeConfig};

/// The wire format this code writes (and reads besides the legacy JSON).
pub const WIRE_FORMAT: u8 = 1;

/// Which form a message came in (a reply goes back in the same form).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Form {
    /// [`WIRE_FORMAT`] 1.
    Binary,
    /// The JSON every message was before format 1.
    Json,
}

/// Why bytes are not a Raft message.
#[derive(Debug, thiserror::Error)]
pub enum WireError {
    #[error("the raft message is empty")]
    Empty,
    #[error(
        "the raft message has wire format {0:#04x}; this Tribune reads format {WIRE_FORMAT} and the JSON of older controllers"
    )]
    UnknownFormat(u8),
    #[error("the raft message does not decode (truncated or damaged): {0}")]
    Envelope(postcard::Error),
    #[error("the raft message has {0} bytes after its end")]
    Trailing(usize),
    #[error("entry {position} of the append does not decode: {source}")]
    Entry { position: usize, source: CodecError },
    #[error("the raft message's JSON does not decode: {0}")]
    Json(serde_json::Error),
    #[error("encoding the raft message: {0}")]
    Encode(String),
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
struct LogIdW {
    term: u64,
    leader: u64,
    index: u64,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
struct VoteW {
    term: u64,
    node: u64,
    committed: bool,
}

impl From<LogId> for LogIdW {
    fn from(l: LogId) -> Self {
        LogIdW {
            term: l.leader_id.term,
            leader: l.leader_id.node_id,
            index: l.index,
        }
    }
}

impl From<LogIdW> for LogId {
    fn from(l: LogIdW) -> Self {
        LogId::new(CommittedLeaderId::new(l.term, l.leader), l.index)
    }
}

impl From<Vote<NodeId>> for VoteW {
    fn from(v: Vote<NodeId>) -> Self {
        VoteW {
            term: v.leader_id.term,
            node: v.leader_id.node_id,
            committed: v.committed,
        }
    }
}

impl From<VoteW> for Vote<NodeId> {
    fn from(v: VoteW) -> Self {
        Vote {
            leader_id: LeaderId::new(v.term, v.node),
            committed: v.committed,
        }
    }
}

#[derive(Serialize, Deserialize)]
struct AppendW<'a> {
    vote: VoteW,
    prev: Option<LogIdW>,
    commit: Option<LogIdW>,
    #[serde(borrow)]
    entries: Vec<Bytes<'a>>,
}

/// Variant order is the format: append new variants at the end only.
#[derive(Serialize, Deserialize)]
enum AppendReplyW {
    Success,
    PartialSuccess(Option<LogIdW>),
    Conflict,
    HigherVote(VoteW),
}

#[derive(Serialize, Deserialize)]
struct VoteReqW {
    vote: VoteW,
    last: Option<LogIdW>,
}

#[derive(Serialize, Deserialize)]
struct VoteReplyW {
    vote: VoteW,
    granted: bool,
    last: Option<LogIdW>,
}

#[derive(Serialize, Deserialize)]
struct SnapshotW<'a> {
    vote: VoteW,
    /// openraft's `SnapshotMeta` as JSON.
    #[serde(borrow)]
    meta: Bytes<'a>,
    offset: u64,
    #[serde(borrow)]
    data: Bytes<'a>,
    done: bool,
}

#[derive(Serialize, Deserialize)]
struct SnapshotReplyW {
    vote: VoteW,
}

/// A reply: the response, or openraft's error as JSON. Variant order is the format.
#[derive(Serialize, Deserialize)]
enum ReplyW<'a, T> {
    Ok(T),
    #[serde(borrow)]
    Err(Bytes<'a>),
}

/// A Raft message with a binary form (format 1) beside its JSON (serde) form.
pub trait Wire: Serialize + DeserializeOwned + Sized {
    /// Appends the format-1 body (after the version byte).
    fn put(&self, out: &mut Vec<u8>) -> Result<(), WireError>;
    /// Reads a format-1 body (after the version byte), all of it.
    fn take(body: &[u8]) -> Result<Self, WireError>;
}

fn post<T: Serialize>(v: &T, out: &mut Vec<u8>) -> Result<(), WireError> {
    postcard::to_io(v, &mut *out).map_err(|e| WireError::Encode(e.to_string()))?;
    Ok(())
}

/// The whole of `body` as one `T`: bytes left over are an error, not ignored.
fn unpost<'a, T: Deserialize<'a>>(body: &'a [u8]) -> Result<T, WireError> {
    let (v, rest) = postcard::take_from_bytes(body).map_err(WireError::Envelope)?;
    if !rest.is_empty() {
        return Err(WireError::Trailing(rest.len()));
    }
    Ok(v)
}

fn json<T: Serialize>(v: &T) -> Result<Vec<u8>, WireError> {
    serde_json::to_vec(v).map_err(|e| WireError::Encode(e.to_string()))
}

impl Wire for AppendEntriesRequest<TypeConfig> {
    fn put(&self, out: &mut Vec<u8>) -> Result<(), WireError> {
        let mut stored = Vec::with_capacity(self.entries.len());
        for (position, e) in self.entries.iter().enumerate() {
            stored.push(codec::encode(e).map_err(|source| WireError::Entry { position, source })?);
        }
        post(
            &AppendW {
                vote: self.vote.into(),
                prev: self.prev_log_id.map(Into::into),
                commit: self.leader_commit.map(Into::into),
                entries: stored.iter().map(|b| Bytes(b)).collect(),
            },
            out,
        )
    }

    fn take(body: &[u8]) -> Result<Self, WireError> {
        let w: AppendW = unpost(body)?;
        let entries = w
            .entries
            .iter()
            .enumerate()
            .map(|(position, b)| {
                codec::decode(b.0).map_err(|source| WireError::Entry { position, source })
            })
            .collect::<Result<Vec<_>, _>>()?;
        Ok(AppendEntriesRequest {
            vote: w.vote.into(),
            prev_log_id: w.prev.map(Into::into),
            entries,
            leader_commit: w.commit.map(Into::into),
        })
    }
}

impl Wire for VoteRequest<NodeId> {
    fn put(&self, out: &mut Vec<u8>) -> Result<(), WireError> {
        post(
            &VoteReqW {
                vote: self.vote.into(),
                last: self.last_log_id.map(Into::into),
            },
            out,
        )
    }

    fn take(body: &[u8]) -> Result<Self, WireError> {
        let w: VoteReqW = unpost(body)?;
        Ok(VoteRequest::new(w.vote.into(), w.last.map(Into::into)))
    }
}

impl Wire for InstallSnapshotRequest<TypeConfig> {
    fn put(&self, out: &mut Vec<u8>) -> Result<(), WireError> {
        let meta = json(&self.meta)?;
        post(
            &SnapshotW {
                vote: self.vote.into(),
                meta: Bytes(&meta),
                offset: self.offset,
                data: Bytes(&self.data),
                done: self.done,
            },
            out,
        )
    }

    fn take(body: &[u8]) -> Result<Self, WireError> {
        let w: SnapshotW = unpost(body)?;
        Ok(InstallSnapshotRequest {
            vote: w.vote.into(),
            meta: serde_json::from_slice(w.meta.0).map_err(WireError::Json)?,
            offset: w.offset,
            data: w.data.0.to_vec(),
            done: w.done,
        })
    }
}

/// The binary body of a successful reply.
pub trait ReplyBody: Sized {
    fn put(&self, out: &mut Vec<u8>) -> Result<(), WireError>;
    /// Reads the body from the front of `body`, returning what follows it.
    fn take(body: &[u8]) -> Result<(Self, &[u8]), WireError>;
}

fn take_prefix<'a, T: Deserialize<'a>>(body: &'a [u8]) -> Result<(T, &'a [u8]), WireError> {
    postcard::take_from_bytes(body).map_err(WireError::Envelope)
}

impl ReplyBody for AppendEntriesResponse<NodeId> {
    fn put(&self, out: &mut Vec<u8>) -> Result<(), WireError> {
        post(
            &match self {
                AppendEntriesResponse::Success => AppendReplyW::Success,
                AppendEntriesResponse::PartialSuccess(l) => {
                    AppendReplyW::PartialSuccess(l.map(Into::into))
                }
                AppendEntriesResponse::Conflict => AppendReplyW::Conflict,
                AppendEntriesResponse::HigherVote(v) => AppendReplyW::HigherVote((*v).into()),
            },
            out,
        )
    }

    fn take(body: &[u8]) -> Result<(Self, &[u8]), WireError> {
        let (w, rest): (AppendReplyW, _) = take_prefix(body)?;
        let r = match w {
            AppendReplyW::Success => AppendEntriesResponse::Success,
            AppendReplyW::PartialSuccess(l) => {
                AppendEntriesResponse::PartialSuccess(l.map(Into::into))
            }
            AppendReplyW::Conflict => AppendEntriesResponse::Conflict,
            AppendReplyW::HigherVote(v) => AppendEntriesResponse::HigherVote(v.into()),
        };
        Ok((r, rest))
    }
}

impl ReplyBody for VoteResponse<NodeId> {
    fn put(&self, out: &mut Vec<u8>) -> Result<(), WireError> {
        post(
            &VoteReplyW {
                vote: self.vote.into(),
                granted: self.vote_granted,
                last: self.last_log_id.map(Into::into),
            },
            out,
        )
    }

    fn take(body: &[u8]) -> Result<(Self, &[u8]), WireError> {
        let (w, rest): (VoteReplyW, _) = take_prefix(body)?;
        Ok((
            VoteResponse {
                vote: w.vote.into(),
                vote_granted: w.granted,
                last_log_id: w.last.map(Into::into),
            },
            rest,
        ))
    }
}

impl ReplyBody for InstallSnapshotResponse<NodeId> {
    fn put(&self, out: &mut Vec<u8>) -> Result<(), WireError> {
        post(
            &SnapshotReplyW {
                vote: self.vote.into(),
            },
            out,
        )
    }

    fn take(body: &[u8]) -> Result<(Self, &[u8]), WireError> {
        let (w, rest): (SnapshotReplyW, _) = take_prefix(body)?;
        Ok((
            InstallSnapshotResponse {
                vote: w.vote.into(),
            },
            rest,
        ))
    }
}

/// Variant tags of [`ReplyW`] (postcard writes a variant index as a varint: one byte here).
const REPLY_OK: u8 = 0;
const REPLY_ERR: u8 = 1;

impl<R, E> Wire for Result<R, RaftError<NodeId, E>>
where
    R: ReplyBody + Serialize + DeserializeOwned,
    E: std::error::Error + Serialize + DeserializeOwned,
{
    fn put(&self, out: &mut Vec<u8>) -> Result<(), WireError> {
        match self {
            Ok(r) => {
                out.push(REPLY_OK);
                r.put(out)
            }
            Err(e) => post(&ReplyW::<()>::Err(Bytes(&json(e)?)), out),
        }
    }

    fn take(body: &[u8]) -> Result<Self, WireError> {
        match body.split_first() {
            Some((&REPLY_OK, rest)) => {
                let (r, rest) = R::take(rest)?;
                if !rest.is_empty() {
                    return Err(WireError::Trailing(rest.len()));
                }
                Ok(Ok(r))
            }
            Some((&REPLY_ERR, _)) => match unpost::<ReplyW<()>>(body)? {
                ReplyW::Err(json) => {
                    Ok(Err(serde_json::from_slice(json.0).map_err(WireError::Json)?))
                }
                ReplyW::Ok(()) => Err(WireError::Envelope(postcard::Error::DeserializeBadEnum)),
            },
            Some(_) => Err(WireError::Envelope(postcard::Error::DeserializeBadEnum)),
            None => Err(WireError::Envelope(
                postcard::Error::DeserializeUnexpectedEnd,
            )),
        }
    }
}

/// `v` in `form`.
pub fn encode<T: Wire>(v: &T, form: Form) -> Result<Vec<u8>, WireError> {
    match form {
        Form::Json => json(v),
        Form::Binary => {
            let mut out = Vec::with_capacity(128);
            out.push(WIRE_FORMAT);
            v.put(&mut out)?;
            Ok(out)
        }
    }
}

/// The message in `bytes`, and the form it came in: format 1, or the JSON of a controller from
/// before it (which starts with `{`, `[` or white space).
pub fn decode<T: Wire>(bytes: &[u8]) -> Result<(T, Form), WireError> {
    match bytes.first() {
        None => Err(WireError::Empty),
        Some(&WIRE_FORMAT) => Ok((T::take(&bytes[1..])?, Form::Binary)),
        Some(b'{' | b'[' | b' ' | b'\t' | b'\n' | b'\r') => Ok((
            serde_json::from_slice(bytes).map_err(WireError::Json)?,
            Form::Json,
        )),
        Some(&other) => Err(WireError::UnknownFormat(other)),
    }
}

/// The prefix of the status message a controller refusing a payload it cannot decode answers
/// with (`service.rs`); a controller from before format 1 answers a format-1 message so.
pub const MALFORMED: &str = "malformed raft payload";

/// Whether `status` is a peer refusing a format-1 message because it predates format 1 (it
/// answers INVALID_ARGUMENT "malformed raft payload: expected value …", from serde_json).
pub fn is_old_peer_refusal(status: &tonic::Status) -> bool {
    // serde_json's error for a first byte of 1, which no JSON starts with.
    status.code() == tonic::Code::InvalidArgument
        && status
            .message()
            .starts_with(&format!("{MALFORMED}: expected value at line 1 column 1"))
}

#[cfg(test)]
#[path = "wire_tests.rs"]
mod tests;
