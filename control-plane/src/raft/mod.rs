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

use std::fmt;
use std::io::Cursor;

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
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Request {
    pub leaf_format: LeafFormat,
    pub commands: Vec<Command>,
}

impl Request {
    /// A batch written in the current leaf format.
    pub fn new(commands: Vec<Command>) -> Request {
        Request {
            leaf_format: LeafFormat::CURRENT,
            commands,
        }
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
                Ok(Request {
                    leaf_format: LeafFormat::V1,
                    commands,
                })
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
                Ok(Request {
                    leaf_format: leaf_format
                        .ok_or_else(|| serde::de::Error::missing_field("leaf_format"))?,
                    commands: commands
                        .ok_or_else(|| serde::de::Error::missing_field("commands"))?,
                })
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
