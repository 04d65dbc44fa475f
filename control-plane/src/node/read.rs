//! Linearizable reads: the read index, on the leader and from a follower.
//!
//! A read is linearizable when it is served from a state that has applied at least the leader's
//! read index, taken after the leader confirmed with a quorum that it still leads. openraft's
//! read index is `max(first entry of the leader's term, commit index)`. That is enough for a
//! leader elected in this process: its first entry commits only with everything before it. It
//! is not enough for a leader that openraft *restored* at start-up (a controller that led before
//! a restart resumes leading in the same term, without an election): its first entry of the term
//! committed long ago, and its commit index is only what it had persisted, which may trail the
//! entries it acknowledged just before it stopped. Every such entry is in its log, so while it
//! leads in the term it started with, the read index is at least the last index it started with
//! ([`Restored`], [`leader_read_index`]).

use std::time::{Duration, Instant};

use openraft::Vote;
use openraft::storage::RaftLogStorage;
use tribune_proto::v1::ReadIndexRequest;

use super::Controller;
use crate::error::ControllerError;
use crate::raft::NodeId;
use crate::raft::log_store::LogStore;

/// What the log held when this controller started, as far as reads need it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Restored {
    /// The term in which this controller led when it stopped; `None` unless its stored vote was
    /// a committed vote for itself (the only case in which openraft resumes leading at start).
    pub led_in_term: Option<u64>,
    /// The last log index it had on disk.
    pub last_index: u64,
}

impl Restored {
    /// Reads it from the log store before Raft starts.
    pub async fn read(id: NodeId, log: &LogStore) -> Result<Self, ControllerError> {
        let mut log = log.clone();
        let state = log
            .get_log_state()
            .await
            .map_err(|e| ControllerError::Internal(format!("reading the log state: {e}")))?;
        let vote: Option<Vote<NodeId>> = log
            .read_vote()
            .await
            .map_err(|e| ControllerError::Internal(format!("reading the vote: {e}")))?;
        Ok(Self::from_parts(
            id,
            vote,
            state.last_log_id.map_or(0, |l| l.index),
        ))
    }

    fn from_parts(id: NodeId, vote: Option<Vote<NodeId>>, last_index: u64) -> Self {
        let led_in_term = vote
            .filter(|v| v.is_committed() && v.leader_id().voted_for() == Some(id))
            .map(|v| v.leader_id().term);
        Self {
            led_in_term,
            last_index,
        }
    }
}

/// The index a read on the leader must wait for: openraft's `read` index, raised to the last
/// index the controller started with while it still leads in the term it was restored to
/// (`term`, read *before* openraft's read index was taken: terms only rise, so a later term
/// means a new election, whose first entry covers everything acknowledged before it).
pub fn leader_read_index(read: u64, term: u64, restored: Restored) -> u64 {
    match restored.led_in_term {
        Some(t) if t == term => read.max(restored.last_index),
        _ => read,
    }
}

impl Controller {
    /// Blocks until a linearizable read may be served from this node's state.
    pub async fn read_barrier(&self) -> Result<(), ControllerError> {
        let deadline = Instant::now() + self.timeout();
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let index = match self.leader() {
                Some((id, _)) if id == self.id => {
                    match tokio::time::timeout(left, self.read_index()).await {
                        Ok(Ok(index)) => Some(index),
                        Ok(Err(e)) => {
                            tracing::debug!(error = %e, "read index on leader failed; retrying");
                            None
                        }
                        Err(_) => break,
                    }
                }
                Some((_, addr)) => self.leader_read_index(&addr, left).await,
                None => None,
            };
            if let Some(index) = index {
                return self.wait_applied(index, deadline).await;
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                break;
            }
            self.wait_for_leader_change(left.min(Duration::from_millis(100)))
                .await;
        }
        Err(ControllerError::NoLeader {
            retry_after_ms: 1000,
        })
    }

    /// Waits until this node's state machine has applied `index`.
    async fn wait_applied(&self, index: u64, deadline: Instant) -> Result<(), ControllerError> {
        let mut applied = self.applied.clone();
        let left = deadline.saturating_duration_since(Instant::now());
        match tokio::time::timeout(left, applied.wait_for(|a| *a >= index)).await {
            Ok(Ok(_)) => Ok(()),
            _ => Err(ControllerError::Unavailable {
                reason: format!("this controller has not caught up to the leader's index {index}"),
                retry_after_ms: 200,
            }),
        }
    }

    async fn leader_read_index(&self, addr: &str, left: Duration) -> Option<u64> {
        let mut client = self.peers.client(addr).ok()?;
        let r = tokio::time::timeout(left, client.read_index(ReadIndexRequest {}))
            .await
            .ok()?
            .ok()?;
        Some(r.into_inner().index.unwrap_or(0))
    }

    /// Leader side of a read (its own or a follower's): confirms leadership with a quorum,
    /// returns the index the reader must have applied ([`leader_read_index`]).
    pub async fn read_index(&self) -> Result<u64, ControllerError> {
        let term = self.raft.metrics().borrow().current_term;
        let left = self.timeout();
        match tokio::time::timeout(left, self.raft.get_read_log_id()).await {
            Ok(Ok((read, _))) => {
                let read = read.map_or(0, |l| l.index);
                let index = leader_read_index(read, term, self.restored);
                if index > read {
                    tracing::info!(
                        read,
                        index,
                        term,
                        "restored leader: the read waits for the last index it started with"
                    );
                }
                Ok(index)
            }
            Ok(Err(e)) => Err(ControllerError::Unavailable {
                reason: e.to_string(),
                retry_after_ms: 100,
            }),
            Err(_) => Err(ControllerError::NoLeader {
                retry_after_ms: 1000,
            }),
        }
    }
}

#[cfg(test)]
mod tests {
    use openraft::Vote;

    use super::*;

    fn vote(term: u64, node: NodeId, committed: bool) -> Vote<NodeId> {
        let mut v = Vote::new(term, node);
        if committed {
            v.commit();
        }
        v
    }

    #[test]
    fn only_a_committed_vote_for_itself_means_it_led() {
        assert_eq!(
            Restored::from_parts(1, Some(vote(7, 1, true)), 90).led_in_term,
            Some(7)
        );
        // Voted for itself but never won: a candidate, not a restored leader.
        assert_eq!(
            Restored::from_parts(1, Some(vote(7, 1, false)), 90).led_in_term,
            None
        );
        // Followed another leader.
        assert_eq!(
            Restored::from_parts(1, Some(vote(7, 2, true)), 90).led_in_term,
            None
        );
        assert_eq!(Restored::from_parts(1, None, 0), Restored::default());
    }

    #[test]
    fn a_restored_leader_reads_at_least_what_it_started_with_in_its_old_term() {
        let r = Restored {
            led_in_term: Some(7),
            last_index: 120,
        };
        // Persisted commit index 100 trails acknowledged entries up to 120.
        assert_eq!(leader_read_index(100, 7, r), 120);
        // Once the commit index passes it, the read index is openraft's.
        assert_eq!(leader_read_index(130, 7, r), 130);
        // A new election (a later term) proposes a first entry that covers everything before.
        assert_eq!(leader_read_index(100, 8, r), 100);
    }

    #[test]
    fn a_controller_that_did_not_lead_uses_openraft_s_read_index() {
        let r = Restored {
            led_in_term: None,
            last_index: 500,
        };
        for term in [0, 1, 7, 100] {
            for read in [0, 1, 499, 500, 501] {
                assert_eq!(leader_read_index(read, term, r), read);
            }
        }
    }
}
