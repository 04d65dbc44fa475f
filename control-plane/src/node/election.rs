//! Elections with a pre-vote round, driven here instead of by openraft 0.9's own timer.
//!
//! openraft 0.9 has no pre-vote, fixes the leader lease at its maximum election timeout and lets
//! a follower stand only after `lease + random timeout` of silence (750–1000 ms at the former
//! defaults). Its timer is switched off (`enable_elect = false`) and this module decides when a
//! controller stands:
//!
//! - **Silence**: the time since this controller last heard from a leader (an AppendEntries or
//!   InstallSnapshot it accepted) or granted a vote (`Contact`, touched by the Raft service).
//! - **Standing**: a voter tries after [`Timing::stand_after`] of silence: the election
//!   timeout plus a random jitter below half a heartbeat.
//! - **Pre-vote**: before proposing a new term, it asks the other voters for their status
//!   (`RaftService.Status`, which carries their silence and last log index). A voter that is
//!   not leader and has heard from no leader for [`Timing::prevote_silence`] counts as a grant,
//!   if its log is no longer than this controller's (a longer one would refuse the real vote).
//!   Only with a majority (of every configuration of a joint membership) does it call
//!   openraft's `trigger().elect()`. A controller cut off from the others never gets a
//!   majority, so its term does not grow while it is away, and when it comes back the leader's
//!   next heartbeat is accepted: it cannot depose a healthy leader.
//! - **Who stands** ([`decide`]): of the survivors that answer, only the one with the longest
//!   log (the lowest id among equals) stands; the others defer to it once. Every survivor
//!   reads the same logs, so two rarely stand together (a split vote costs a whole round), and
//!   the one that stands is one that can win.
//! - **Retries**: a round without a majority is retried after one heartbeat (three times, then
//!   after the election timeout); a survivor that deferred retries after two heartbeats, and
//!   then stands if it can.
//! - **Handover** (`node/handover.rs`): a leader told to stop asks its most up-to-date
//!   follower to stand at once, without waiting out the silence.
//! - openraft's lease (its `election_timeout_max`, below which a voter refuses a real vote) is
//!   set under the pre-vote silence ([`Timing::raft_lease_ms`]), so a granted pre-vote is
//!   followed by a granted vote.
//!
//! Raft's safety does not depend on any of this: it only decides when a term is proposed.

use std::collections::BTreeSet;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Mutex, Weak};
use std::time::{Duration, Instant};

use openraft::ServerState;
use tokio::task::JoinSet;
use tribune_proto::v1::ReadIndexRequest;

use super::{Controller, NodeStatus};
use crate::raft::NodeId;

/// When this controller last heard from a leader or granted a vote, and how many of its
/// leader's messages it is handling right now.
///
/// A message being handled is contact for as long as it is handled: a follower waiting on its
/// own `fdatasync` of the leader's entries (or on a runtime busy with ingest work) has heard
/// from a leader that is alive, and under ingest load that wait alone reached the election
/// timeout — the leader's next append cannot come before this one is answered, so counting
/// only arrivals made a busy follower see a live leader as silent.
#[derive(Debug)]
pub(crate) struct Contact {
    last: Mutex<Instant>,
    handling: AtomicUsize,
}

impl Contact {
    pub(crate) fn new() -> Self {
        Self {
            last: Mutex::new(Instant::now()),
            handling: AtomicUsize::new(0),
        }
    }

    pub(crate) fn touch(&self) {
        *self.last.lock().unwrap_or_else(|p| p.into_inner()) = Instant::now();
    }

    /// Contact from now until the guard is dropped (the message answered, refused or its
    /// handling cancelled), when the silence starts anew.
    pub(crate) fn handling(&self) -> Handling<'_> {
        self.touch();
        self.handling.fetch_add(1, Ordering::AcqRel);
        Handling(self)
    }

    /// When the silence began: now while a leader's message is being handled.
    pub(crate) fn since(&self) -> Instant {
        let last = *self.last.lock().unwrap_or_else(|p| p.into_inner());
        if self.handling.load(Ordering::Acquire) > 0 {
            Instant::now()
        } else {
            last
        }
    }

    /// Sets the last contact (tests: silence without waiting for it).
    #[cfg(test)]
    fn touched_at(&self, at: Instant) {
        *self.last.lock().unwrap_or_else(|p| p.into_inner()) = at;
    }

    /// Milliseconds of silence until now.
    pub(crate) fn silence_ms(&self) -> u64 {
        u64::try_from(self.since().elapsed().as_millis()).unwrap_or(u64::MAX)
    }
}

/// A leader's message being handled ([`Contact::handling`]).
pub(crate) struct Handling<'a>(&'a Contact);

impl Drop for Handling<'_> {
    fn drop(&mut self) {
        // Touch before the count drops, so no reader sees the old instant with no handler.
        self.0.touch();
        self.0.handling.fetch_sub(1, Ordering::AcqRel);
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

    /// How long a voter stays silent before its first pre-vote round.
    pub fn stand_after(&self, jitter: Duration) -> Duration {
        self.election.saturating_add(jitter)
    }

    /// How long after its last attempt a survivor tries again: after `outcome`, the
    /// `failed`-th round in a row without a majority (1 for the first).
    pub fn retry_after(&self, outcome: &Round, failed: u32, jitter: Duration) -> Duration {
        match outcome {
            // A vote round (two fsyncs) needs its time; a new term now would cut it short.
            Round::Stand => self.stand_after(jitter),
            // Time for the better survivor's round; if it wins, its vote request resets the
            // silence here anyway.
            Round::Defer(_) => self.heartbeat.saturating_mul(2),
            // The peers were not silent long enough yet: ask again soon, but not for ever
            // at that pace (a cut-off controller asks on).
            Round::Undecided if failed <= RETRIES_FAST => self.heartbeat.saturating_add(jitter),
            Round::Undecided => self.stand_after(jitter),
        }
    }

    /// How long a pre-vote waits for a peer's answer: long enough for a first TLS handshake on
    /// a loaded machine (a shorter wait cancelled it every time, and a TLS cluster whose first
    /// election failed never formed); a majority's answers end the wait early.
    pub fn prevote_timeout(&self) -> Duration {
        self.election
            .clamp(Duration::from_millis(500), Duration::from_secs(2))
    }
}

/// Rounds without a majority retried after one heartbeat before falling back to the election
/// timeout.
const RETRIES_FAST: u32 = 3;

fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

/// What a pre-vote round decided, from the answers so far.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Round {
    /// A majority granted and no answering survivor is better placed: stand now.
    Stand,
    /// This survivor, also without a leader, has a longer log (or as long, and a lower id):
    /// it stands, this one waits for it.
    Defer(NodeId),
    /// No majority (yet).
    Undecided,
}

/// Whether a candidate with `a`'s last log index and id is better placed than `b`'s: a longer
/// log, or as long and a lower id. (The index alone: the survivors' last entries come from the
/// same dead leader's term. A wrong pick costs a round, never safety.)
fn better(a: (Option<u64>, NodeId), b: (Option<u64>, NodeId)) -> bool {
    a.0 > b.0 || (a.0 == b.0 && a.1 < b.1)
}

/// Decides a pre-vote round for `me` (last log index `my_last`) from the `answers` received so
/// far. A peer grants when [`grants`] says so and its log is no longer than `me`'s (a longer
/// one refuses the real vote). With `may_defer`, a granting peer better placed than `me`
/// ([`Round::Defer`]) stands instead; without it (`me` deferred once already and no leader
/// came), `me` stands on any majority.
pub fn decide(
    me: NodeId,
    my_last: Option<u64>,
    answers: &[(NodeId, NodeStatus)],
    configs: &[BTreeSet<NodeId>],
    timing: &Timing,
    may_defer: bool,
) -> Round {
    let silent = answers.iter().filter(|(_, s)| grants(s, timing));
    if may_defer
        && let Some((best, _)) = silent
            .clone()
            .filter(|(id, s)| better((s.last_log_index, *id), (my_last, me)))
            .max_by(|(a, sa), (b, sb)| {
                if better((sa.last_log_index, *a), (sb.last_log_index, *b)) {
                    std::cmp::Ordering::Greater
                } else {
                    std::cmp::Ordering::Less
                }
            })
    {
        return Round::Defer(*best);
    }
    let mut granted = BTreeSet::from([me]);
    granted.extend(
        silent
            .filter(|(_, s)| s.last_log_index <= my_last)
            .map(|(id, _)| *id),
    );
    if has_quorum(configs, &granted) {
        Round::Stand
    } else {
        Round::Undecided
    }
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

/// Whether a timer that fired `late` after it was due says the process was starved (half a
/// heartbeat or more): then the silence measured includes heartbeats not yet read, and the
/// soak under full load saw both followers stand together after a ~150 ms stall of all three
/// controllers.
pub fn starved(late: Duration, timing: &Timing) -> bool {
    late >= timing.heartbeat / 2
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
    last_log_index: Option<u64>,
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
        last_log_index: m.last_log_index,
        configs,
        others,
    })
}

/// The driver's memory of its attempts since it last heard from a leader.
struct Attempt {
    at: Instant,
    wait: Duration,
    /// Rounds in a row without a majority.
    failed: u32,
    /// Deferred to a better survivor once already.
    deferred: bool,
}

/// Runs until the controller is dropped or stops: stands for election when the leader has
/// been silent long enough and a pre-vote round allows it.
pub(super) async fn drive(controller: Weak<Controller>) {
    let mut attempt: Option<Attempt> = None;
    let mut jit = Duration::ZERO;
    // When the timer last put to sleep was due (to see whether it fired late).
    let mut woke: Option<Instant> = None;
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
            attempt = None;
            woke = None;
            drop(c);
            tokio::time::sleep(timing.heartbeat).await;
            continue;
        }
        let heard = c.contact.since();
        // Heard from a leader (or granted a vote) since the last attempt: start over.
        if attempt.as_ref().is_some_and(|a| heard > a.at) {
            attempt = None;
        }
        let due = match &attempt {
            Some(a) => a.at + a.wait,
            None => heard + timing.stand_after(jit),
        };
        if Instant::now() < due {
            drop(c);
            tokio::time::sleep_until(due.into()).await;
            woke = Some(due);
            continue;
        }
        // Woken late: this process (or the machine) was starved, and the silence it measured
        // may be heartbeats still queued unread. Give them one heartbeat to arrive first.
        if let Some(d) = woke.take()
            && starved(Instant::now().saturating_duration_since(d), &timing)
        {
            tracing::debug!(
                late_ms = d.elapsed().as_millis(),
                "election timer fired late; waiting a heartbeat before a pre-vote"
            );
            drop(c);
            tokio::time::sleep(timing.heartbeat).await;
            continue;
        }
        let at = Instant::now();
        jit = jitter(&timing);
        let silence_ms = c.contact.silence_ms();
        let (failed, deferred) = attempt
            .as_ref()
            .map_or((0, false), |a| (a.failed, a.deferred));
        let round = prevote(&c, &v, &timing, !deferred).await;
        let asked_ms = at.elapsed().as_millis();
        let failed = if round == Round::Undecided {
            failed + 1
        } else {
            0
        };
        match round {
            Round::Stand => {
                tracing::info!(
                    silence_ms,
                    asked_ms,
                    last_leader = ?v.leader,
                    last_log_index = ?v.last_log_index,
                    "leader silent; pre-vote won, standing for election"
                );
                if let Err(e) = c.raft.trigger().elect().await {
                    tracing::warn!(error = %e, "could not start an election");
                }
            }
            Round::Defer(to) => tracing::info!(
                silence_ms,
                asked_ms,
                to,
                last_log_index = ?v.last_log_index,
                "leader silent; deferring to a survivor with a longer log"
            ),
            Round::Undecided => tracing::debug!(
                silence_ms,
                asked_ms,
                failed,
                "leader silent here, but no quorum granted a pre-vote"
            ),
        }
        attempt = Some(Attempt {
            at,
            wait: timing.retry_after(&round, failed, jit),
            failed,
            deferred: deferred || matches!(round, Round::Defer(_)),
        });
    }
}

/// Asks the other voters for their status and decides ([`decide`]) as answers come in: it
/// ends as soon as they decide, without waiting for the rest (a dead leader's, say).
async fn prevote(c: &Controller, v: &View, timing: &Timing, may_defer: bool) -> Round {
    let mut answers = Vec::new();
    let decide_now = |answers: &[(NodeId, NodeStatus)]| {
        decide(
            c.id,
            v.last_log_index,
            answers,
            &v.configs,
            timing,
            may_defer,
        )
    };
    let first = decide_now(&answers);
    if first != Round::Undecided {
        return first;
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
        if let Ok((id, Some(status))) = joined {
            answers.push((id, status));
            let round = decide_now(&answers);
            if round != Round::Undecided {
                asks.abort_all();
                return round;
            }
        }
    }
    Round::Undecided
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
        assert_eq!(t.stand_after(Duration::ZERO), Duration::from_millis(150));
        assert_eq!(
            t.stand_after(Duration::from_millis(7)),
            Duration::from_millis(157)
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
                assert!(t.prevote_silence() < t.stand_after(Duration::ZERO));
            }
        }
    }

    #[test]
    fn a_leaders_message_being_handled_is_contact_until_answered() {
        let c = Contact::new();
        let long_ago = Instant::now() - Duration::from_secs(10);
        c.touched_at(long_ago);
        assert_eq!(c.since(), long_ago);
        assert!(c.silence_ms() >= 10_000);
        // An append arrives; handling it (our fsync, a busy core) takes as long as it takes:
        // however old the last touch, the follower is not silent meanwhile.
        let before = Instant::now();
        let first = c.handling();
        let second = c.handling();
        c.touched_at(long_ago);
        assert!(c.since() >= before);
        assert!(c.silence_ms() < 10_000);
        // Still one in hand.
        drop(first);
        c.touched_at(long_ago);
        assert!(c.since() >= before);
        // Answered: the silence starts when the last one was answered, not when it arrived.
        let answered = Instant::now();
        drop(second);
        assert!(c.since() >= answered);
        c.touched_at(long_ago);
        assert_eq!(c.since(), long_ago);
    }

    #[test]
    fn a_follower_handling_its_leaders_append_refuses_a_pre_vote() {
        let t = Timing::from_ms(50, 150);
        let c = Contact::new();
        c.touched_at(Instant::now() - Duration::from_secs(1));
        let silent = status("follower", Some(1), Some(c.silence_ms()));
        assert!(grants(&silent, &t));
        let _handling = c.handling();
        c.touched_at(Instant::now() - Duration::from_secs(1));
        let busy = status("follower", Some(1), Some(c.silence_ms()));
        assert!(!grants(&busy, &t));
    }

    #[test]
    fn a_timer_half_a_heartbeat_late_means_starved() {
        let t = Timing::from_ms(50, 150);
        let ms = Duration::from_millis;
        assert!(!starved(ms(0), &t));
        assert!(!starved(ms(24), &t));
        assert!(starved(ms(25), &t));
        assert!(starved(ms(150), &t));
    }

    #[test]
    fn retries_come_fast_after_a_round_without_a_majority_then_slow_down() {
        let t = Timing::from_ms(50, 150);
        let j = Duration::from_millis(9);
        let ms = Duration::from_millis;
        assert_eq!(t.retry_after(&Round::Stand, 0, j), ms(159));
        assert_eq!(t.retry_after(&Round::Defer(2), 0, j), ms(100));
        assert_eq!(t.retry_after(&Round::Undecided, 1, j), ms(59));
        assert_eq!(t.retry_after(&Round::Undecided, 3, j), ms(59));
        assert_eq!(t.retry_after(&Round::Undecided, 4, j), ms(159));
        assert_eq!(t.retry_after(&Round::Undecided, u32::MAX, j), ms(159));
    }

    fn answer(id: NodeId, state: &str, silence: u64, last: Option<u64>) -> (NodeId, NodeStatus) {
        let mut s = status(state, Some(1), Some(silence));
        s.id = id;
        s.last_log_index = last;
        (id, s)
    }

    #[test]
    fn the_survivor_with_the_longest_log_stands_and_the_other_defers() {
        let t = Timing::from_ms(50, 150);
        let three = vec![BTreeSet::from([1, 2, 3])];
        // Leader 1 is dead; 2 and 3 survive.
        let shorter = [answer(3, "follower", 160, Some(40))];
        let longer = [answer(3, "follower", 160, Some(42))];
        let same = [answer(3, "follower", 160, Some(41))];
        // 2 (log 41) against 3 (log 40): 2 stands, and 3, asking 2, defers to it.
        assert_eq!(
            decide(2, Some(41), &shorter, &three, &t, true),
            Round::Stand
        );
        let two = [answer(2, "follower", 160, Some(41))];
        assert_eq!(decide(3, Some(40), &two, &three, &t, true), Round::Defer(2));
        // 3 ahead: 2 defers, even though it has the lower id.
        assert_eq!(
            decide(2, Some(41), &longer, &three, &t, true),
            Round::Defer(3)
        );
        // Equal logs: the lower id stands, the higher defers.
        assert_eq!(decide(2, Some(41), &same, &three, &t, true), Round::Stand);
        assert_eq!(
            decide(
                3,
                Some(41),
                &[answer(2, "follower", 160, Some(41))],
                &three,
                &t,
                true
            ),
            Round::Defer(2)
        );
        // Deferred once and still no leader: stand on any majority that would vote...
        assert_eq!(decide(3, Some(41), &two, &three, &t, false), Round::Stand);
        // ...but a longer log than ours never votes for us.
        assert_eq!(
            decide(2, Some(41), &longer, &three, &t, false),
            Round::Undecided
        );
    }

    #[test]
    fn only_silent_peers_grant_or_are_deferred_to() {
        let t = Timing::from_ms(50, 150);
        let three = vec![BTreeSet::from([1, 2, 3])];
        // A peer that still hears the leader neither grants nor is deferred to.
        let hears = [answer(3, "follower", 20, Some(99))];
        assert_eq!(
            decide(2, Some(41), &hears, &three, &t, true),
            Round::Undecided
        );
        // The leader itself answering: no grant.
        let leader = [answer(1, "leader", 0, Some(99))];
        assert_eq!(
            decide(2, Some(41), &leader, &three, &t, true),
            Round::Undecided
        );
        // No answers yet: undecided; a single voter stands alone.
        assert_eq!(decide(2, Some(41), &[], &three, &t, true), Round::Undecided);
        let one = vec![BTreeSet::from([2])];
        assert_eq!(decide(2, None, &[], &one, &t, true), Round::Stand);
        // Five voters, 1 dead: the best of the silent answerers is deferred to.
        let five = vec![BTreeSet::from([1, 2, 3, 4, 5])];
        let answers = [
            answer(3, "follower", 160, Some(40)),
            answer(5, "follower", 160, Some(44)),
            answer(4, "follower", 160, Some(44)),
        ];
        assert_eq!(
            decide(2, Some(41), &answers, &five, &t, true),
            Round::Defer(4)
        );
        assert_eq!(
            decide(4, Some(44), &answers[..2], &five, &t, true),
            Round::Stand
        );
        // Two shorter logs and ours: a majority of five.
        let shorter = [
            answer(3, "follower", 160, Some(40)),
            answer(5, "follower", 160, Some(39)),
        ];
        assert_eq!(decide(2, Some(41), &shorter, &five, &t, true), Round::Stand);
        assert_eq!(
            decide(2, Some(41), &shorter[..1], &five, &t, true),
            Round::Undecided
        );
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
