//! A controller's own view of Raft (`RaftService.Status`, `tribune cluster status`), a peer's
//! view asked over the network, and readiness.

use std::time::Duration;

use openraft::ServerState;
use serde::{Deserialize, Serialize};
use tribune_proto::v1::ReadIndexRequest;

use super::Controller;
use crate::raft::NodeId;

/// One controller's own view, served by `RaftService.Status`.
#[derive(Clone, Debug, Serialize, Deserialize, utoipa::ToSchema)]
pub struct NodeStatus {
    #[schema(value_type = u64)]
    pub id: NodeId,
    pub addr: String,
    pub state: String,
    pub term: u64,
    #[schema(value_type = Option<u64>)]
    pub leader: Option<NodeId>,
    pub last_log_index: Option<u64>,
    pub last_applied: Option<u64>,
    pub snapshot_index: Option<u64>,
    pub purged_index: Option<u64>,
    /// Only the leader knows it: the highest index stored on a quorum of voters.
    pub commit_index: Option<u64>,
    /// Milliseconds since this controller last heard from a leader or granted a vote (0 on the
    /// leader): what a pre-vote asks (`node/election.rs`). Absent from older builds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub leader_silence_ms: Option<u64>,
}

impl Controller {
    pub fn status(&self) -> NodeStatus {
        let m = self.raft.metrics().borrow().clone();
        let commit_index = if m.state == ServerState::Leader {
            let matched: Vec<u64> = m
                .membership_config
                .membership()
                .voter_ids()
                .map(|v| {
                    if v == self.id {
                        m.last_log_index.unwrap_or(0)
                    } else {
                        m.replication
                            .as_ref()
                            .and_then(|r| r.get(&v).cloned().flatten())
                            .map_or(0, |l| l.index)
                    }
                })
                .collect();
            quorum_index(matched)
        } else {
            None
        };
        NodeStatus {
            id: self.id,
            addr: self.addr.clone(),
            state: format!("{:?}", m.state).to_lowercase(),
            term: m.current_term,
            leader: m.current_leader,
            last_log_index: m.last_log_index,
            last_applied: m.last_applied.map(|l| l.index),
            snapshot_index: m.snapshot.map(|l| l.index),
            purged_index: m.purged.map(|l| l.index),
            commit_index,
            leader_silence_ms: Some(if m.state == ServerState::Leader {
                0
            } else {
                self.contact.silence_ms()
            }),
        }
    }

    /// Asks one member for its status (this node answers locally).
    pub async fn member_status(&self, id: NodeId, addr: &str) -> Option<NodeStatus> {
        if id == self.id {
            return Some(self.status());
        }
        let mut client = self.peers.client(addr).ok()?;
        let r = tokio::time::timeout(
            Duration::from_millis(500),
            client.status(ReadIndexRequest {}),
        )
        .await
        .ok()?
        .ok()?;
        serde_json::from_slice(&r.into_inner().data).ok()
    }

    /// Resolves when Raft has stopped on its own (a storage error: the disk is full, a write
    /// failed) with what stopped it. Never resolves for a controller whose state diverged: the
    /// integrity check stops Raft on purpose and the controller keeps answering 503 until it is
    /// re-synced.
    pub async fn raft_failed(&self) -> String {
        let mut rx = self.raft.metrics();
        let why = match rx.wait_for(|m| m.running_state.is_err()).await {
            Ok(m) => match &m.running_state {
                Err(e) => e.to_string(),
                Ok(()) => String::from("raft stopped"),
            },
            // The metrics sender lives in RaftCore: it is gone once Raft stopped.
            Err(_) => String::from("raft stopped"),
        };
        if matches!(
            self.integrity.standing(),
            crate::integrity::Standing::Diverged(_)
        ) {
            return std::future::pending().await;
        }
        why
    }

    /// Ready: a leader is known and this node has applied what it has.
    pub fn ready(&self) -> Result<(), NotReady> {
        let metrics = self.raft.metrics();
        let m = metrics.borrow();
        let silence = Duration::from_millis(self.contact.silence_ms());
        let leader = super::election::leader_known(
            m.state == ServerState::Leader,
            m.current_leader,
            silence,
            &self.election_timing(),
        );
        if leader.is_none() {
            return Err(NotReady::NoLeader);
        }
        if m.running_state.is_err() {
            return Err(NotReady::Stopped);
        }
        Ok(())
    }
}

/// The highest log index stored on a quorum (a majority) of voters, given each voter's matched
/// index (0 for none): the median, counted from the top — the `n / 2`-th highest of `n`, so
/// `n / 2 + 1` voters hold at least it. `None` without voters.
fn quorum_index(mut matched: Vec<u64>) -> Option<u64> {
    matched.sort_unstable_by(|a, b| b.cmp(a));
    matched.get(matched.len() / 2).copied()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The definition: the largest index that at least a majority of voters hold.
    fn by_definition(matched: &[u64]) -> Option<u64> {
        let majority = matched.len() / 2 + 1;
        (0..=matched.iter().copied().max()?)
            .rev()
            .find(|&i| matched.iter().filter(|&&m| m >= i).count() >= majority)
    }

    #[test]
    fn the_quorum_index_is_what_a_majority_holds() {
        // Every assignment of indexes 0..=4 to 1..=5 voters (5^1 + … + 5^5 cases).
        for n in 1..=5u32 {
            for code in 0..5u64.pow(n) {
                let matched: Vec<u64> = (0..n).map(|k| code / 5u64.pow(k) % 5).collect();
                assert_eq!(
                    quorum_index(matched.clone()),
                    by_definition(&matched),
                    "{matched:?}"
                );
            }
        }
    }

    #[test]
    fn examples() {
        assert_eq!(quorum_index(vec![]), None);
        assert_eq!(quorum_index(vec![7]), Some(7));
        // Two voters: both must hold it.
        assert_eq!(quorum_index(vec![9, 4]), Some(4));
        // Three voters, the leader ahead, one follower behind, one lagging.
        assert_eq!(quorum_index(vec![10, 8, 3]), Some(8));
        // Four voters: three must hold it.
        assert_eq!(quorum_index(vec![10, 9, 8, 1]), Some(8));
        assert_eq!(quorum_index(vec![5, 0, 0, 5, 5]), Some(5));
        assert_eq!(quorum_index(vec![5, 0, 0, 0, 5]), Some(0));
    }
}

/// Why `/readyz` says no (Raft's side; the integrity gate has its own reasons).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum NotReady {
    #[error("no leader known")]
    NoLeader,
    #[error("raft has stopped")]
    Stopped,
}
