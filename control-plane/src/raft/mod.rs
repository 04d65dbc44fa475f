//! The openraft adaptors: type configuration, the redb log store, the state-machine store and
//! the tonic network. Domain logic lives in `state/`; this module only moves bytes and calls
//! `State::apply`.

pub mod log_store;
pub mod network;
pub mod service;
pub mod snapshot_format;
pub mod state_machine;

use std::fmt;
use std::io::Cursor;

use serde::{Deserialize, Serialize};

use crate::state::{Command, Outcome};

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
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Request(pub Vec<Command>);

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
