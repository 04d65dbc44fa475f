//! The controller: Raft (openraft + redb), replicated state machine, API.
