//! Cluster membership: bootstrap (who initialises a new cluster, with which members), the
//! current members, and adding, promoting and removing a member on the leader (reached through
//! [`Controller::forwardable`](super::Controller::forwardable)).

use std::collections::{BTreeMap, BTreeSet};
use std::time::Instant;

use openraft::ChangeMembers;
use openraft::error::{ClientWriteError, InitializeError, RaftError};

use super::Controller;
use super::forward::LeaderError;
use crate::error::ControllerError;
use crate::raft::{Node, NodeId};

impl Controller {
    /// Initialises the cluster if this node is the one to do it and nothing is initialised yet.
    pub async fn bootstrap(&self) -> Result<(), ControllerError> {
        let initialized = match self.raft.is_initialized().await {
            Ok(i) => i,
            // A controller whose state a majority disagrees with stops Raft on purpose (maybe
            // while this runs) and keeps serving 503 `state-diverged` until it is re-synced: that
            // is not a failure to start.
            Err(_) if self.integrity.writable().is_err() => {
                tracing::warn!(
                    "not bootstrapping: this controller's state diverged and Raft is stopped"
                );
                return Ok(());
            }
            Err(e) => return Err(ControllerError::Internal(e.to_string())),
        };
        if initialized {
            return Ok(());
        }
        let Some(members) =
            initial_members(self.config.init, &self.config.peers, self.id, &self.addr)
        else {
            tracing::info!("waiting to be initialised by the lowest-id peer or added to a cluster");
            return Ok(());
        };
        tracing::info!(members = ?members.keys().collect::<Vec<_>>(), "initialising cluster");
        match self.raft.initialize(members).await {
            Ok(()) => Ok(()),
            // Another start of this node already did it.
            Err(RaftError::APIError(InitializeError::NotAllowed(_))) => Ok(()),
            Err(e) => Err(ControllerError::Internal(format!(
                "initialising the cluster: {e}"
            ))),
        }
    }

    /// Members from this node's membership config: (id, address, voter).
    pub fn members(&self) -> Vec<(NodeId, String, bool)> {
        let m = self.raft.metrics().borrow().membership_config.clone();
        let voters: BTreeSet<NodeId> = m.membership().voter_ids().collect();
        m.membership()
            .nodes()
            .map(|(id, n)| (*id, n.addr.clone(), voters.contains(id)))
            .collect()
    }

    /// Adds a learner, then makes it a voter if asked (joint consensus).
    pub(super) async fn add_member_on_leader(
        &self,
        id: NodeId,
        addr: &str,
        voter: bool,
        deadline: Instant,
    ) -> Result<(), LeaderError> {
        let left = deadline.saturating_duration_since(Instant::now());
        let node = Node {
            addr: addr.to_string(),
        };
        let r = tokio::time::timeout(left, self.raft.add_learner(id, node, true))
            .await
            .map_err(|_| self.not_committed_in_time("adding the learner was"))?;
        membership_result(r)?;
        if voter {
            self.promote_on_leader(id, deadline).await?;
        }
        Ok(())
    }

    /// Makes a learner a voter.
    pub(super) async fn promote_on_leader(
        &self,
        id: NodeId,
        deadline: Instant,
    ) -> Result<(), LeaderError> {
        self.change_membership(ChangeMembers::AddVoterIds(BTreeSet::from([id])), deadline)
            .await
    }

    /// Removes a member: a voter leaves the voter set first (joint consensus), then the node
    /// list.
    pub(super) async fn remove_member_on_leader(
        &self,
        id: NodeId,
        deadline: Instant,
    ) -> Result<(), LeaderError> {
        let membership = self.raft.metrics().borrow().membership_config.clone();
        let is_voter = membership.membership().voter_ids().any(|v| v == id);
        if membership.membership().get_node(&id).is_none() {
            return Err(LeaderError::Failed(ControllerError::Invalid(format!(
                "controller {id} is not a member of this cluster"
            ))));
        }
        if is_voter {
            // `retain = false`: the committed config leaves the node out of the node list too.
            // A second change must not follow then: when the removed voter is this leader, it
            // is no longer a member, and openraft 0.9 panics on a membership change proposed
            // by a leader outside the membership ("Only leader is allowed to call
            // update_effective_membership()"), which stops this controller (found by the chaos
            // harness's `membership` scenario, removing the leader).
            let left = deadline.saturating_duration_since(Instant::now());
            let r = tokio::time::timeout(
                left,
                self.raft
                    .change_membership(ChangeMembers::RemoveVoters(BTreeSet::from([id])), false),
            )
            .await
            .map_err(|_| self.not_committed_in_time("the membership change was"))?;
            match r {
                Ok(resp)
                    if resp
                        .membership
                        .as_ref()
                        .is_some_and(|m| m.get_node(&id).is_none()) =>
                {
                    return Ok(());
                }
                r => membership_result(r)?,
            }
        }
        self.change_membership(ChangeMembers::RemoveNodes(BTreeSet::from([id])), deadline)
            .await
    }

    /// One membership change on the leader, bounded by the request deadline.
    async fn change_membership(
        &self,
        change: ChangeMembers<NodeId, Node>,
        deadline: Instant,
    ) -> Result<(), LeaderError> {
        let left = deadline.saturating_duration_since(Instant::now());
        let r = tokio::time::timeout(left, self.raft.change_membership(change, false))
            .await
            .map_err(|_| self.not_committed_in_time("the membership change was"))?;
        membership_result(r)
    }
}

/// The members a new cluster starts with, if this node (`id`, reachable at `addr`) is the one
/// to initialise it: when told to (`init`), or as the lowest id among its configured peers.
/// `None`: wait to be initialised by another node or added to a cluster.
fn initial_members(
    init: bool,
    peers: &BTreeMap<NodeId, String>,
    id: NodeId,
    addr: &str,
) -> Option<BTreeMap<NodeId, Node>> {
    let lowest = peers.keys().copied().chain(std::iter::once(id)).min();
    let should_init = init || (!peers.is_empty() && lowest == Some(id));
    if !should_init {
        return None;
    }
    let mut members: BTreeMap<NodeId, Node> = peers
        .iter()
        .map(|(id, addr)| (*id, Node { addr: addr.clone() }))
        .collect();
    members.insert(
        id,
        Node {
            addr: addr.to_string(),
        },
    );
    Some(members)
}

/// Sorts a failed membership change: not the leader (try the next), refused, or broken.
fn membership_result<T>(
    r: Result<T, RaftError<NodeId, ClientWriteError<NodeId, Node>>>,
) -> Result<(), LeaderError> {
    match r {
        Ok(_) => Ok(()),
        Err(RaftError::APIError(ClientWriteError::ForwardToLeader(_))) => {
            Err(LeaderError::NotLeader)
        }
        Err(RaftError::APIError(ClientWriteError::ChangeMembershipError(e))) => {
            Err(LeaderError::Failed(ControllerError::Invalid(format!(
                "membership change refused: {e}"
            ))))
        }
        Err(e) => Err(LeaderError::Failed(ControllerError::Internal(
            e.to_string(),
        ))),
    }
}

#[cfg(test)]
mod tests {
    use openraft::error::{
        ChangeMembershipError, EmptyMembership, Fatal, ForwardToLeader, LearnerNotFound,
    };

    use super::*;

    fn peers(ids: &[NodeId]) -> BTreeMap<NodeId, String> {
        ids.iter().map(|i| (*i, format!("c{i}:7401"))).collect()
    }

    fn ids(m: &BTreeMap<NodeId, Node>) -> Vec<NodeId> {
        m.keys().copied().collect()
    }

    #[test]
    fn the_lowest_id_initialises_with_every_peer_and_itself() {
        let m = initial_members(false, &peers(&[2, 3]), 1, "me:7401");
        let m = m.unwrap_or_else(|| panic!("node 1 is the lowest"));
        assert_eq!(ids(&m), [1, 2, 3]);
        assert_eq!(m[&1].addr, "me:7401");
        assert_eq!(m[&2].addr, "c2:7401");
        // Listed among its own peers: its advertised address wins.
        let m = initial_members(false, &peers(&[1, 2, 3]), 1, "me:7401");
        assert_eq!(m.map(|m| m[&1].addr.clone()).as_deref(), Some("me:7401"));
    }

    #[test]
    fn another_node_waits_unless_told_to_initialise() {
        assert!(initial_members(false, &peers(&[1, 3]), 2, "me").is_none());
        assert!(initial_members(false, &peers(&[1, 2, 3]), 3, "me").is_none());
        // No peers and no `init`: join an existing cluster later.
        assert!(initial_members(false, &peers(&[]), 1, "me").is_none());
        let m = initial_members(true, &peers(&[]), 7, "me");
        assert_eq!(m.as_ref().map(ids), Some(vec![7]));
        let m = initial_members(true, &peers(&[1]), 7, "me");
        assert_eq!(m.as_ref().map(ids), Some(vec![1, 7]));
    }

    #[test]
    fn membership_errors_are_sorted() {
        let not_leader: Result<(), _> = Err(RaftError::APIError(
            ClientWriteError::ForwardToLeader(ForwardToLeader {
                leader_id: Some(2),
                leader_node: None,
            }),
        ));
        assert!(matches!(
            membership_result(not_leader),
            Err(LeaderError::NotLeader)
        ));
        for e in [
            ChangeMembershipError::EmptyMembership(EmptyMembership {}),
            ChangeMembershipError::LearnerNotFound(LearnerNotFound { node_id: 9 }),
        ] {
            let r: Result<(), _> = Err(RaftError::APIError(
                ClientWriteError::ChangeMembershipError(e),
            ));
            match membership_result(r) {
                Err(LeaderError::Failed(ControllerError::Invalid(m))) => {
                    assert!(m.starts_with("membership change refused"), "{m}");
                }
                other => panic!("a refused change is invalid: {other:?}"),
            }
        }
        let fatal: Result<(), _> = Err(RaftError::Fatal(Fatal::Stopped));
        assert!(matches!(
            membership_result(fatal),
            Err(LeaderError::Failed(ControllerError::Internal(_)))
        ));
        assert!(membership_result(Ok::<_, RaftError<_, _>>(5)).is_ok());
    }
}
