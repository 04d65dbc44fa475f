//! The openraft adaptors: type configuration, the redb log store, the state-machine store and
//! the tonic network. Domain logic lives in `state/`; this module only moves bytes and calls
//! `State::apply`.

pub mod backup;
pub mod log_store;
pub mod network;
pub mod service;
pub mod snapshot_format;
pub mod state_machine;
pub mod wal;
pub mod wire;

use std::fmt;
use std::io::Cursor;
use std::sync::{Arc, OnceLock};

use serde::{Deserialize, Serialize};

use crate::state::{Command, LeafFormat, Outcome};

pub type NodeId = u64;

/// What a controller is reachable at: one address serves gRPC (Raft, control) and HTTP/JSON.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Node {
    pub addr: String,
}

impl fmt::Display for Node {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.addr)
    }
}

/// One Raft log entry carries a batch of commands: the write path groups concurrent client
/// writes so that one append, one fsync and one replication round serve many of them.
///
/// The proposer stamps the attestation log's leaf format into the entry (like the time into a
/// command), so every replica — and a replay of this entry years later — writes the same
/// leaves. JSON: `{"leaf_format": 2, "commands": […]}`; an entry written before leaf format 2
/// is the bare array of commands and replays in format 1.
///
/// A request is not changed once it is proposed: its JSON is encoded once, when the leader
/// appends it to its log, and kept ([`Request::stored_json`]) for replication; a follower keeps
/// the JSON it received and stores exactly those bytes.
#[derive(Clone, Debug, Serialize)]
pub struct Request {
    pub leaf_format: LeafFormat,
    pub commands: Vec<Command>,
    /// The JSON this request was decoded from or first encoded to; shared by clones.
    #[serde(skip)]
    json: Arc<OnceLock<Box<[u8]>>>,
}

impl PartialEq for Request {
    fn eq(&self, other: &Self) -> bool {
        self.leaf_format == other.leaf_format && self.commands == other.commands
    }
}

impl Request {
    /// A batch written in the current leaf format.
    pub fn new(commands: Vec<Command>) -> Request {
        Request::in_format(LeafFormat::CURRENT, commands)
    }

    /// A batch written in leaf format `leaf_format`.
    pub fn in_format(leaf_format: LeafFormat, commands: Vec<Command>) -> Request {
        Request {
            leaf_format,
            commands,
            json: Arc::default(),
        }
    }

    /// The request as JSON: the bytes it was decoded from, or encoded now (once) and kept.
    pub fn json(&self) -> Result<&[u8], serde_json::Error> {
        if let Some(b) = self.json.get() {
            return Ok(b);
        }
        let encoded = serde_json::to_vec(self)?.into_boxed_slice();
        Ok(self.json.get_or_init(|| encoded))
    }

    /// The JSON kept for this request, if it has been encoded or was decoded.
    pub fn stored_json(&self) -> Option<&[u8]> {
        self.json.get().map(|b| &b[..])
    }

    /// `json` decoded, keeping `json` as its stored form.
    pub fn from_json(json: &[u8]) -> Result<Request, serde_json::Error> {
        let r: Request = serde_json::from_slice(json)?;
        let _ = r.json.set(json.into());
        Ok(r)
    }
}

impl<'de> Deserialize<'de> for Request {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        // A visitor rather than an untagged enum: a command that does not parse keeps its own
        // error message.
        struct V;
        impl<'de> serde::de::Visitor<'de> for V {
            type Value = Request;

            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("{\"leaf_format\", \"commands\"} or an array of commands")
            }

            fn visit_seq<A: serde::de::SeqAccess<'de>>(
                self,
                mut seq: A,
            ) -> Result<Request, A::Error> {
                // Before leaf format 2: the bare array.
                let mut commands = Vec::new();
                while let Some(c) = seq.next_element::<Command>()? {
                    commands.push(c);
                }
                Ok(Request::in_format(LeafFormat::V1, commands))
            }

            fn visit_map<A: serde::de::MapAccess<'de>>(
                self,
                mut map: A,
            ) -> Result<Request, A::Error> {
                let (mut leaf_format, mut commands) = (None, None);
                while let Some(k) = map.next_key::<String>()? {
                    match k.as_str() {
                        "leaf_format" => leaf_format = Some(map.next_value::<LeafFormat>()?),
                        "commands" => commands = Some(map.next_value::<Vec<Command>>()?),
                        other => {
                            return Err(serde::de::Error::unknown_field(
                                other,
                                &["leaf_format", "commands"],
                            ));
                        }
                    }
                }
                Ok(Request::in_format(
                    leaf_format.ok_or_else(|| serde::de::Error::missing_field("leaf_format"))?,
                    commands.ok_or_else(|| serde::de::Error::missing_field("commands"))?,
                ))
            }
        }
        d.deserialize_any(V)
    }
}

/// Outcomes in the order of the request's commands.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Response(pub Vec<Outcome>);

openraft::declare_raft_types!(
    pub TypeConfig:
        D = Request,
        R = Response,
        Node = Node,
);

pub type Raft = openraft::Raft<TypeConfig>;
pub type Entry = openraft::Entry<TypeConfig>;
pub type LogId = openraft::LogId<NodeId>;
pub type StorageError = openraft::StorageError<NodeId>;
