//! Elections with a pre-vote round, driven here instead of by openraft 0.9's own timer.
//!
//! openraft 0.9 has no pre-vote, fixes the leader lease at its maximum election timeout and lets
//! a follower stand only after `lease + random timeout` of silence (750–1000 ms at the former
//! defaults). Its timer is switched off (`enable_elect = false`) and this module decides when a
//! controller stands:
//!
//! - **Silence**: the time since this controller last heard from a leader (an AppendEntries or
//!   InstallSnapshot it accepted) or granted a vote (`Contact`, touched by the Raft service).
//! - **Standing**: a voter stands after [`Timing::stand_after`] of silence: the election
//!   timeout, plus one heartbeat per rank (its place among the voters other than the leader it
//!   last knew, by id), plus a random jitter below half a heartbeat. The ranks stagger the
//!   survivors, so two of them rarely stand together (a split vote costs a whole round).
//! - **Pre-vote**: before proposing a new term, it asks the other voters for their status
//!   (`RaftService.Status`, which carries their silence). A voter that is not leader and has
//!   heard from no leader for [`Timing::prevote_silence`] counts as a grant. Only with a
//!   majority (of every configuration of a joint membership) does it call openraft's
//!   `trigger().elect()`. A controller cut off from the others never gets a majority, so its
//!   term does not grow while it is away, and when it comes back the leader's next heartbeat
//!   is accepted: it cannot depose a healthy leader.
//! - openraft's lease (its `election_timeout_max`, below which a voter refuses a real vote) is
//!   set under the pre-vote silence ([`Timing::raft_lease_ms`]), so a granted pre-vote is
//!   followed by a granted vote.
//!
//! Raft's safety does not depend on any of this: it only decides when a term is proposed.

use std::collections::BTreeSet;
use std::sync::{Mutex, Weak};
use std::time::{Duration, Instant};

use openraft::ServerState;
use tokio::task::JoinSet;
use tribune_proto::v1::ReadIndexRequest;

use super::{Controller, NodeStatus};
use crate::raft::NodeId;

/// When this controller last heard from a leader or granted a vote.
#[derive(Debug)]
pub(crate) struct Contact(Mutex<Instant>);

impl Contact {
    pub(crate) fn new() -> Self {
        Self(Mutex::new(Instant::now()))
    }

    pub(crate) fn touch(&self) {
        *self.0.lock().unwrap_or_else(|p| p.into_inner()) = Instant::now();
    }

    pub(crate) fn since(&self) -> Instant {
        *self.0.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Milliseconds of silence until now.
    pub(crate) fn silence_ms(&self) -> u64 {
        u64::try_from(self.since().elapsed().as_millis()).unwrap_or(u64::MAX)
    }
}

/// The election timing derived from `heartbeat_ms` and `election_timeout_ms`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Timing {
    pub heartbeat: Duration,
    pub election: Duration,
}

impl Timing {
    pub fn from_ms(heartbeat_ms: u64, election_timeout_ms: u64) -> Self {
        Self {
            heartbeat: Duration::from_millis(heartbeat_ms),
            election: Duration::from_millis(election_timeout_ms),
        }
    }

    /// A voter grants a pre-vote once it has heard from no leader for this long: the election
    /// timeout less one heartbeat (the candidate's and the voter's last heartbeats left the
    /// leader together; the margin absorbs delivery skew between them).
    pub fn prevote_silence(&self) -> Duration {
        self.election.saturating_sub(self.heartbeat)
    }

    /// openraft's lease (its `election_timeout_max`): below the pre-vote silence by half a
    /// heartbeat, so a voter that granted the pre-vote also grants the vote; never at or below
    /// the heartbeat (openraft refuses that).
    pub fn raft_lease_ms(&self) -> u64 {
        let h = millis(self.heartbeat);
        millis(self.prevote_silence())
            .saturating_sub(h.div_ceil(2))
            .max(h.saturating_add(2))
    }

    /// How long a voter of `rank` stays silent before standing.
    pub fn stand_after(&self, rank: usize, jitter: Duration) -> Duration {
        let rank = u32::try_from(rank).unwrap_or(u32::MAX);
        self.election
            .saturating_add(self.heartbeat.saturating_mul(rank))
            .saturating_add(jitter)
    }

    /// How long a pre-vote waits for a peer's answer: long enough for a first TLS handshake on
    /// a loaded machine (a shorter wait cancelled it every time, and a TLS cluster whose first
    /// election failed never formed); a majority's answers end the wait early.
    pub fn prevote_timeout(&self) -> Duration {
        self.election
            .clamp(Duration::from_millis(500), Duration::from_secs(2))
    }
}

fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

/// `me`'s place among the voters that may stand (every voter but `leader`), by id; 0 first.
pub fn rank(me: NodeId, voters: &BTreeSet<NodeId>, leader: Option<NodeId>) -> usize {
    voters
        .iter()
        .filter(|&&v| Some(v) != leader)
        .take_while(|&&v| v < me)
        .count()
}

/// Whether a peer's status counts as a pre-vote: it does not lead and has heard from no leader
/// (nor granted a vote) for the pre-vote silence. A peer too old to report its silence grants
/// only when it knows no leader.
pub fn grants(peer: &NodeStatus, timing: &Timing) -> bool {
    if peer.state == "leader" {
        return false;
    }
    match peer.leader_silence_ms {
        Some(ms) => Duration::from_millis(ms) >= timing.prevote_silence(),
        None => peer.leader.is_none(),
    }
}

/// The leader this node may still count on. openraft keeps a follower's `current_leader` until
/// a new term starts; with its timer off and the pre-vote refused (a node cut off from the
/// others never stands), a lone follower would name a dead leader for ever. After two election
/// timeouts of silence (no heartbeat, no vote granted) it knows none, so `/readyz` says no.
pub fn leader_known(
    is_leader: bool,
    current_leader: Option<NodeId>,
    silence: Duration,
    timing: &Timing,
) -> Option<NodeId> {
    if !is_leader && silence >= timing.election.saturating_mul(2) {
        return None;
    }
    current_leader
}

/// Whether `granted` (this node included) holds a majority of every configuration.
pub fn has_quorum(configs: &[BTreeSet<NodeId>], granted: &BTreeSet<NodeId>) -> bool {
    !configs.is_empty()
        && configs
            .iter()
            .all(|c| c.iter().filter(|&v| granted.contains(v)).count() * 2 > c.len())
}

/// A jitter below half a heartbeat.
fn jitter(timing: &Timing) -> Duration {
    use rand_core::RngCore;
    let span = millis(timing.heartbeat / 2).max(1);
    Duration::from_millis(u64::from(rand_core::OsRng.next_u32()) % span)
}

/// What the driver reads from Raft's metrics each turn.
struct View {
    leads: bool,
    voter: bool,
    leader: Option<NodeId>,
    configs: Vec<BTreeSet<NodeId>>,
    /// (id, address) of every other voter.
    others: Vec<(NodeId, String)>,
}

fn view(c: &Controller) -> Option<View> {
    let metrics = c.raft.metrics();
    let m = metrics.borrow();
    if m.running_state.is_err() {
        return None;
    }
    let membership = m.membership_config.membership();
    let configs = membership.get_joint_config().clone();
    let others = membership
        .voter_ids()
        .filter(|&v| v != c.id)
        .filter_map(|v| membership.get_node(&v).map(|n| (v, n.addr.clone())))
        .collect();
    Some(View {
        leads: m.state == ServerState::Leader,
        voter: membership.voter_ids().any(|v| v == c.id),
        leader: m.current_leader,
        configs,
        others,
    })
}

/// Runs until the controller is dropped or stops: stands for election when the leader has
/// been silent long enough and a pre-vote round allows it.
pub(super) async fn drive(controller: Weak<Controller>) {
    let mut attempted: Option<Instant> = None;
    let mut jit = Duration::ZERO;
    loop {
        let Some(c) = controller.upgrade() else {
            return;
        };
        if c.stopping.is_cancelled() {
            return;
        }
        let timing = c.election_timing();
        let Some(v) = view(&c) else {
            // Raft stopped: nothing to elect.
            return;
        };
        if v.leads || !v.voter {
            // A leader's own silence starts when it stops leading. A node that is no voter (a
            // learner, or not yet given a membership at all) is not touched: its silence is
            // real, and a first leader needs the pre-votes of peers still waiting for their
            // membership (touching them here deadlocked a new cluster whose first election
            // was lost: they never granted).
            if v.leads {
                c.contact.touch();
            }
            attempted = None;
            drop(c);
            tokio::time::sleep(timing.heartbeat).await;
            continue;
        }
        let voters: BTreeSet<NodeId> = v.configs.iter().flatten().copied().collect();
        let since = match attempted {
            Some(a) => a.max(c.contact.since()),
            None => c.contact.since(),
        };
        let due = since + timing.stand_after(rank(c.id, &voters, v.leader), jit);
        if Instant::now() < due {
            drop(c);
            tokio::time::sleep_until(due.into()).await;
            continue;
        }
        attempted = Some(Instant::now());
        jit = jitter(&timing);
        let silence_ms = c.contact.silence_ms();
        if prevote(&c, &v, &timing).await {
            tracing::info!(
                silence_ms,
                last_leader = ?v.leader,
                "leader silent; pre-vote won, standing for election"
            );
            if let Err(e) = c.raft.trigger().elect().await {
                tracing::warn!(error = %e, "could not start an election");
            }
        } else {
            tracing::debug!(
                silence_ms,
                "leader silent here, but no quorum granted a pre-vote"
            );
        }
    }
}

/// Asks the other voters for their status; true once a majority (this node included) grants.
async fn prevote(c: &Controller, v: &View, timing: &Timing) -> bool {
    let mut granted = BTreeSet::from([c.id]);
    if has_quorum(&v.configs, &granted) {
        return true;
    }
    let mut asks = JoinSet::new();
    for (id, addr) in &v.others {
        let Ok(mut client) = c.peers.client(addr) else {
            continue;
        };
        let (id, wait) = (*id, timing.prevote_timeout());
        asks.spawn(async move {
            let r = tokio::time::timeout(wait, client.status(ReadIndexRequest {})).await;
            let status = match r {
                Ok(Ok(r)) => serde_json::from_slice::<NodeStatus>(&r.into_inner().data).ok(),
                _ => None,
            };
            (id, status)
        });
    }
    while let Some(joined) = asks.join_next().await {
        if let Ok((id, Some(status))) = joined
            && grants(&status, timing)
        {
            granted.insert(id);
            if has_quorum(&v.configs, &granted) {
                asks.abort_all();
                return true;
            }
        }
    }
    false
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_silent_follower_knows_no_leader() {
        let t = Timing::from_ms(50, 150);
        let ms = Duration::from_millis;
        assert_eq!(leader_known(false, Some(1), ms(0), &t), Some(1));
        assert_eq!(leader_known(false, Some(1), ms(299), &t), Some(1));
        assert_eq!(leader_known(false, Some(1), ms(300), &t), None);
        assert_eq!(leader_known(false, None, ms(0), &t), None);
        // The leader itself is never silent to itself.
        assert_eq!(leader_known(true, Some(3), ms(10_000), &t), Some(3));
    }

    fn status(state: &str, leader: Option<NodeId>, silence: Option<u64>) -> NodeStatus {
        NodeStatus {
            id: 2,
            addr: "c2:7401".into(),
            state: state.into(),
            term: 3,
            leader,
            last_log_index: Some(10),
            last_applied: Some(10),
            snapshot_index: None,
            purged_index: None,
            commit_index: None,
            leader_silence_ms: silence,
        }
    }

    #[test]
    fn timing_at_the_defaults_and_at_the_edges() {
        let t = Timing::from_ms(50, 150);
        assert_eq!(t.prevote_silence(), Duration::from_millis(100));
        assert_eq!(t.raft_lease_ms(), 75);
        assert_eq!(t.stand_after(0, Duration::ZERO), Duration::from_millis(150));
        assert_eq!(
            t.stand_after(1, Duration::from_millis(7)),
            Duration::from_millis(207)
        );
        // The lease stays under the pre-vote silence and above the heartbeat, for every
        // timing the configuration accepts (election > heartbeat).
        for h in [1u64, 2, 5, 20, 50, 100, 1000] {
            for e in [h + 1, 2 * h, 3 * h, 5 * h, 10 * h, 60_000] {
                let t = Timing::from_ms(h, e);
                assert!(t.raft_lease_ms() > h + 1, "h {h} e {e}");
                if e >= 3 * h && h >= 5 {
                    assert!(
                        Duration::from_millis(t.raft_lease_ms()) < t.prevote_silence(),
                        "h {h} e {e}"
                    );
                }
                assert!(t.prevote_silence() < t.stand_after(0, Duration::ZERO));
            }
        }
    }

    #[test]
    fn ranks_skip_the_last_leader() {
        let voters = BTreeSet::from([1, 2, 3]);
        assert_eq!(rank(2, &voters, Some(1)), 0);
        assert_eq!(rank(3, &voters, Some(1)), 1);
        assert_eq!(rank(1, &voters, Some(2)), 0);
        assert_eq!(rank(3, &voters, Some(2)), 1);
        assert_eq!(rank(1, &voters, None), 0);
        assert_eq!(rank(3, &voters, None), 2);
        assert_eq!(rank(7, &BTreeSet::from([7]), None), 0);
    }

    #[test]
    fn a_peer_grants_only_when_it_has_not_heard_from_a_leader() {
        let t = Timing::from_ms(50, 150);
        let cases = [
            (status("follower", Some(1), Some(100)), true),
            (status("follower", Some(1), Some(500)), true),
            (status("follower", Some(1), Some(99)), false),
            (status("follower", Some(1), Some(0)), false),
            (status("candidate", None, Some(120)), true),
            (status("candidate", None, Some(20)), false),
            (status("leader", Some(2), Some(1000)), false),
            // A peer that reports no silence (an older build): only without a leader.
            (status("follower", None, None), true),
            (status("follower", Some(1), None), false),
            (status("leader", None, None), false),
        ];
        for (s, want) in cases {
            assert_eq!(grants(&s, &t), want, "{s:?}");
        }
    }

    #[test]
    fn quorum_of_every_configuration() {
        let one = vec![BTreeSet::from([1])];
        assert!(has_quorum(&one, &BTreeSet::from([1])));
        let three = vec![BTreeSet::from([1, 2, 3])];
        assert!(!has_quorum(&three, &BTreeSet::from([1])));
        assert!(has_quorum(&three, &BTreeSet::from([1, 3])));
        assert!(!has_quorum(&three, &BTreeSet::from([1, 4])));
        let joint = vec![BTreeSet::from([1, 2, 3]), BTreeSet::from([3, 4, 5])];
        assert!(!has_quorum(&joint, &BTreeSet::from([1, 2])));
        assert!(has_quorum(&joint, &BTreeSet::from([1, 2, 4, 5])));
        assert!(has_quorum(&joint, &BTreeSet::from([2, 3, 4])));
        assert!(!has_quorum(&[], &BTreeSet::from([1])));
        let four = vec![BTreeSet::from([1, 2, 3, 4])];
        assert!(!has_quorum(&four, &BTreeSet::from([1, 2])));
        assert!(has_quorum(&four, &BTreeSet::from([1, 2, 3])));
    }
}
