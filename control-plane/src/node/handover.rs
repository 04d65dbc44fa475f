//! Leadership handover on a graceful stop (SIGTERM).
//!
//! openraft 0.9 has no `transfer_leader`. Without a handover, a stopping leader leaves the
//! cluster leaderless for a whole election timeout (plus the pre-vote and the vote) after its
//! last heartbeat. Instead, before it stops serving, the leader:
//!
//! 1. refuses new writes and membership changes ([`Controller::handing_over`]: they answer
//!    "not leader", nothing is proposed, callers retry on the next leader);
//! 2. waits until its own log has settled (the write queue empty, every entry applied, the
//!    last index unchanged between two looks) and a voter has every entry it has ([`successor`]: the lowest id among those
//!    caught up), at most one election timeout;
//! 3. asks it over `RaftService.Forward` ([`Forwarded::Stand`]) to
//!    stand at once. The follower checks the request comes from the leader it follows at the
//!    current term ([`may_stand_for`]) and that its log holds the leader's last entry, and
//!    calls openraft's `trigger().elect()` without a pre-vote;
//! 4. waits until it no longer leads (it grants the successor's vote: a leader's lease ran out
//!    long ago, and the successor's log is as long as its own).
//!
//! Raft's safety does not depend on any of this; a handover that fails (no follower caught up
//! in time, the request refused) leaves the ordinary path: the others elect after the timeout.

use std::collections::BTreeMap;
use std::sync::atomic::Ordering;
use std::time::Instant;

use openraft::ServerState;
use tribune_proto::v1::RaftPayload;

use super::{Controller, ForwardReply, Forwarded};
use crate::error::ControllerError;
use crate::raft::NodeId;

/// The voter to hand leadership to: one holding every entry up to `last` (the leader's last
/// log index), the lowest id among them; `None` while none has caught up.
pub fn successor(last: Option<u64>, matched: &BTreeMap<NodeId, Option<u64>>) -> Option<NodeId> {
    let last = last?;
    matched
        .iter()
        .find(|(_, m)| m.is_some_and(|m| m >= last))
        .map(|(id, _)| *id)
}

/// Whether a follower asked to stand by `from` at `term` does: only if `from` is the leader it
/// follows at its own current term, and it is a voter that does not lead.
pub fn may_stand_for(
    from: NodeId,
    term: u64,
    leader: Option<NodeId>,
    current_term: u64,
    leads: bool,
    voter: bool,
) -> bool {
    voter && !leads && leader == Some(from) && current_term == term
}

/// What the leader reads from its metrics for a handover.
struct LeaderView {
    term: u64,
    last: Option<u64>,
    applied: Option<u64>,
    matched: BTreeMap<NodeId, Option<u64>>,
    addrs: BTreeMap<NodeId, String>,
}

fn leader_view(c: &Controller) -> Option<LeaderView> {
    let metrics = c.raft.metrics();
    let m = metrics.borrow();
    if m.state != ServerState::Leader || m.running_state.is_err() {
        return None;
    }
    let membership = m.membership_config.membership();
    let mut matched = BTreeMap::new();
    let mut addrs = BTreeMap::new();
    for v in membership.voter_ids().filter(|&v| v != c.id) {
        let index = m
            .replication
            .as_ref()
            .and_then(|r| r.get(&v).cloned().flatten())
            .map(|l| l.index);
        matched.insert(v, index);
        if let Some(n) = membership.get_node(&v) {
            addrs.insert(v, n.addr.clone());
        }
    }
    Some(LeaderView {
        term: m.current_term,
        last: m.last_log_index,
        applied: m.last_applied.map(|l| l.index),
        matched,
        addrs,
    })
}

impl Controller {
    /// True while this controller, stopping, hands its leadership over: it proposes nothing
    /// new (a write here answers "not leader" and is retried on the next leader).
    pub fn handing_over(&self) -> bool {
        self.handing_over.load(Ordering::Relaxed)
    }

    /// Hands leadership to the most up-to-date follower, if this controller leads; returns the
    /// successor once this controller no longer leads, `None` if it did not lead or the
    /// handover did not complete within two election timeouts (then the others elect on
    /// their own after the timeout). Writes stay refused afterwards: the controller is
    /// stopping.
    pub async fn hand_over(&self) -> Option<NodeId> {
        let started = Instant::now();
        let timing = self.election_timing();
        let deadline = started + timing.election.saturating_mul(2);
        leader_view(self)?;
        self.handing_over.store(true, Ordering::Relaxed);
        let mut metrics = self.raft.metrics();
        let mut asked: Option<NodeId> = None;
        let mut last_seen: Option<Option<u64>> = None;
        loop {
            let Some(v) = leader_view(self) else {
                let ms = started.elapsed().as_millis();
                match asked {
                    Some(to) => tracing::info!(to, ms, "leadership handed over"),
                    None => tracing::info!(ms, "stepped down before a handover"),
                }
                return asked;
            };
            // Proposals already under way when the refusals began must land first: a leader
            // whose log grows after the successor was picked refuses its vote (seen in `bench
            // failover --graceful`: a follower had entries the chosen one lacked, 1.5 s lost).
            let settled = self.writes.capacity() == self.writes.max_capacity()
                && v.applied == v.last
                && last_seen == Some(v.last);
            last_seen = Some(v.last);
            if asked.is_none()
                && settled
                && let Some(to) = successor(v.last, &v.matched)
                && let Some(addr) = v.addrs.get(&to)
            {
                match self.ask_to_stand(addr, v.term, v.last).await {
                    Ok(()) => {
                        tracing::info!(
                            to,
                            term = v.term,
                            last_log_index = ?v.last,
                            ms = started.elapsed().as_millis(),
                            "stopping: asked the most up-to-date follower to stand"
                        );
                        asked = Some(to);
                    }
                    Err(e) => tracing::warn!(to, error = %e, "stopping: handover refused"),
                }
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                tracing::warn!(
                    ?asked,
                    "stopping: leadership not handed over within {:?}; the others elect after their timeout",
                    timing.election.saturating_mul(2)
                );
                return None;
            }
            // Replication progress and the step-down both show in the metrics; a short pause
            // between looks lets a settled log be seen twice.
            let pause = if asked.is_none() {
                std::time::Duration::from_millis(2)
            } else {
                timing.heartbeat
            };
            let _ = tokio::time::timeout(left.min(pause), metrics.changed()).await;
        }
    }

    async fn ask_to_stand(
        &self,
        addr: &str,
        term: u64,
        last: Option<u64>,
    ) -> Result<(), ControllerError> {
        let mut client = self
            .peers
            .client(addr)
            .map_err(|e| ControllerError::Internal(e.to_string()))?;
        let req = Forwarded::Stand {
            from: self.id,
            term,
            last_log_index: last,
        };
        let data =
            serde_json::to_vec(&req).map_err(|e| ControllerError::Internal(e.to_string()))?;
        let wait = self.election_timing().election;
        let reply = tokio::time::timeout(wait, client.forward(RaftPayload { data }))
            .await
            .map_err(|_| ControllerError::Internal(format!("{addr} did not answer in {wait:?}")))?
            .map_err(|s| ControllerError::Internal(format!("{addr}: {}", s.message())))?;
        let r: Result<ForwardReply, ControllerError> =
            serde_json::from_slice(&reply.into_inner().data)
                .map_err(|e| ControllerError::Internal(format!("bad reply from {addr}: {e}")))?;
        r.map(|_| ())
    }

    /// Serves [`Forwarded::Stand`]: stands for election at once if `from` is the leader this
    /// controller follows at `term` and its log holds `last` (waiting up to one election
    /// timeout for the entries on their way).
    pub(super) async fn stand_when_asked(
        &self,
        from: NodeId,
        term: u64,
        last: Option<u64>,
    ) -> Result<(), ControllerError> {
        let started = Instant::now();
        let wait = self.election_timing().election;
        {
            let metrics = self.raft.metrics();
            let m = metrics.borrow();
            let membership = m.membership_config.membership();
            if !may_stand_for(
                from,
                term,
                m.current_leader,
                m.current_term,
                m.state == ServerState::Leader,
                membership.voter_ids().any(|v| v == self.id),
            ) {
                return Err(ControllerError::Invalid(format!(
                    "controller {from} asked controller {} to stand at term {term}, but it follows {:?} at term {}",
                    self.id, m.current_leader, m.current_term
                )));
            }
        }
        let mut metrics = self.raft.metrics();
        let caught_up = matches!(
            tokio::time::timeout(wait, metrics.wait_for(|m| m.last_log_index >= last)).await,
            Ok(Ok(_))
        );
        if !caught_up {
            return Err(ControllerError::Unavailable {
                reason: format!(
                    "controller {} does not hold entry {last:?} within {wait:?}",
                    self.id
                ),
                retry_after_ms: 0,
            });
        }
        self.raft
            .trigger()
            .elect()
            .await
            .map_err(|e| ControllerError::Internal(format!("starting an election: {e}")))?;
        tracing::info!(
            from,
            term,
            ms = started.elapsed().as_millis(),
            "the stopping leader asked this controller to stand: standing for election"
        );
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_successor_holds_every_entry_and_has_the_lowest_id() {
        let m = |v: &[(NodeId, Option<u64>)]| v.iter().copied().collect::<BTreeMap<_, _>>();
        assert_eq!(
            successor(Some(10), &m(&[(2, Some(10)), (3, Some(10))])),
            Some(2)
        );
        assert_eq!(
            successor(Some(10), &m(&[(2, Some(9)), (3, Some(10))])),
            Some(3)
        );
        assert_eq!(successor(Some(10), &m(&[(2, Some(9)), (3, None)])), None);
        assert_eq!(successor(Some(10), &m(&[])), None);
        assert_eq!(successor(None, &m(&[(2, Some(1))])), None);
    }

    #[test]
    fn a_follower_stands_only_for_its_own_leader_at_its_term() {
        assert!(may_stand_for(1, 5, Some(1), 5, false, true));
        // Another controller, an old term, a newer term, no leader known.
        assert!(!may_stand_for(3, 5, Some(1), 5, false, true));
        assert!(!may_stand_for(1, 4, Some(1), 5, false, true));
        assert!(!may_stand_for(1, 6, Some(1), 5, false, true));
        assert!(!may_stand_for(1, 5, None, 5, false, true));
        // A leader, or a learner, never.
        assert!(!may_stand_for(1, 5, Some(1), 5, true, true));
        assert!(!may_stand_for(1, 5, Some(1), 5, false, false));
    }
}
