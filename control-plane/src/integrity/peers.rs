//! The peer check: this controller's attestation log must agree with the other controllers'
//! signed tree heads before it serves a linearizable read.
//!
//! Raft compares log ids (term, index), never payloads, and every replica rebuilds its Merkle tree
//! from its own entries, so a replica whose stored bytes changed — and whose checksums were
//! recomputed, or whose bytes changed before they were checksummed — would otherwise serve the
//! altered state and sign heads over it. Here each controller asks every other member for a
//! signed head over its log (`RaftService.LogHead`, controllers only; it answers whatever its
//! own standing), passing its own tree size so that a peer that is ahead sends a consistency
//! proof from it. A peer *agrees* when its tree extends ours, *disagrees* when the two differ on
//! a common prefix, and proves nothing when it is unreachable or behind. This controller is
//! vouched for once it plus the agreeing voters are a majority of the voters, and has diverged
//! once the disagreeing voters leave it no possible majority; otherwise it asks again.

use std::collections::BTreeMap;
use std::sync::Weak;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use tribune_attest::merkle::{Hash, MerkleTree, verify_consistency};
use tribune_proto::v1::RaftPayload;

use super::Standing;
use crate::api::log::{SthView, parse_hash};
use crate::error::ControllerError;
use crate::node::Controller;
use crate::raft::NodeId;
use crate::raft::network::PeerError;
use crate::state::LogKey;

/// `RaftService.LogHead` request: the asker's tree size.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct HeadRequest {
    pub since: u64,
}

/// `RaftService.LogHead` answer: a head signed over the answering controller's log, and, when
/// that log is larger than `since`, the RFC 6962 consistency proof from `since` to it (hex).
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct HeadReply {
    pub head: SthView,
    #[serde(default)]
    pub proof: Vec<String>,
}

/// How long a peer waits to apply up to the asker's size before it answers with what it has.
const CATCH_UP_WAIT: Duration = Duration::from_secs(1);
/// How long the asker waits for each answer.
const ASK_TIMEOUT: Duration = Duration::from_secs(3);
const RETRY_MIN: Duration = Duration::from_millis(100);
const RETRY_MAX: Duration = Duration::from_secs(2);
/// How often a vouched-for controller compares again.
pub const RECHECK_EVERY: Duration = Duration::from_secs(30);

/// Server side of `LogHead`: a head over this controller's log as it is (no read barrier, no
/// gate: the asker decides what it proves).
pub async fn serve_head(c: &Controller, req: HeadRequest) -> Result<HeadReply, ControllerError> {
    let size = || c.state.read().map(|s| s.log.size()).unwrap_or(0);
    if size() < req.since {
        let mut applied = c.subscribe_applied();
        let _ = tokio::time::timeout(CATCH_UP_WAIT, async {
            while size() < req.since {
                if applied.changed().await.is_err() {
                    return;
                }
            }
        })
        .await;
    }
    let internal = |e: tribune_attest::AttestError| ControllerError::Internal(e.to_string());
    // O(log² n) reads of the tree's stored nodes, under the lock (no copy of the tree).
    let (size, root, proof) = {
        let st = c
            .state
            .read()
            .map_err(|_| ControllerError::Internal("state lock poisoned".into()))?;
        let (tree, size) = (st.log.tree(), st.log.size());
        let proof: Vec<String> = if req.since > 0 && req.since < size {
            tree.consistency_proof(req.since, size)
                .map_err(internal)?
                .iter()
                .map(hex::encode)
                .collect()
        } else {
            Vec::new()
        };
        (size, tree.root_at(size).map_err(internal)?, proof)
    };
    let now = crate::test_fault::wall_now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64);
    let sth = c.log_signer.sign(size, now, root);
    Ok(HeadReply {
        head: SthView::new(&sth, &c.log_signer.key_id, c.id),
        proof,
    })
}

/// What one peer's answer says about this controller's log.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// The peer's log extends ours (or equals it).
    Agrees,
    /// The two logs differ on a common prefix.
    Disagrees(String),
    /// Nothing proven either way (unreachable, behind, a malformed answer).
    Unknown(String),
}

/// Compares our tree (`size` leaves of `tree`) with `peer`'s answer. `keys` is our key set:
/// a head under a key we know must carry a valid signature.
pub fn compare(
    peer: NodeId,
    tree: &MerkleTree,
    size: u64,
    reply: &HeadReply,
    keys: &BTreeMap<String, LogKey>,
) -> Verdict {
    let head = &reply.head;
    let sth = if keys.contains_key(&head.key_id) {
        head.verify(keys)
    } else {
        head.signed()
    };
    let sth = match sth {
        Ok(s) => s,
        Err(e) => return Verdict::Unknown(format!("controller {peer}'s head: {e}")),
    };
    let short = |h: &Hash| hex::encode(&h[..8]);
    if sth.size <= size {
        let ours = match tree.root_at(sth.size) {
            Ok(r) => r,
            Err(e) => return Verdict::Unknown(e.to_string()),
        };
        if ours != sth.root {
            return Verdict::Disagrees(format!(
                "at tree size {}, controller {peer} signed root {}… and this controller's root is {}…",
                sth.size,
                short(&sth.root),
                short(&ours)
            ));
        }
        if sth.size < size {
            return Verdict::Unknown(format!(
                "controller {peer}'s log ({} entries) is behind this controller's ({size})",
                sth.size
            ));
        }
        return Verdict::Agrees;
    }
    let ours = match tree.root_at(size) {
        Ok(r) => r,
        Err(e) => return Verdict::Unknown(e.to_string()),
    };
    let proof: Result<Vec<Hash>, _> = reply.proof.iter().map(|h| parse_hash("proof", h)).collect();
    let proof = match proof {
        Ok(p) => p,
        Err(e) => return Verdict::Unknown(format!("controller {peer}'s proof: {e}")),
    };
    match verify_consistency(size, sth.size, &ours, &sth.root, &proof) {
        Ok(()) => Verdict::Agrees,
        Err(e) => Verdict::Disagrees(format!(
            "this controller's tree of size {size} (root {}…) is not a prefix of controller {peer}'s signed tree of size {} (root {}…): {e}",
            short(&ours),
            sth.size,
            short(&sth.root)
        )),
    }
}

/// The outcome of one round of asking.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Tally {
    Vouched(Vec<NodeId>),
    Diverged(String),
    Undecided(String),
}

/// Counts the voters' verdicts. `me_voter`: this controller is a voter (and so agrees with itself).
pub fn tally(voters: usize, me_voter: bool, verdicts: &[(NodeId, bool, Verdict)]) -> Tally {
    let voting = || verdicts.iter().filter(|(_, voter, _)| *voter);
    let agreeing: Vec<NodeId> = voting()
        .filter(|(_, _, v)| *v == Verdict::Agrees)
        .map(|(id, _, _)| *id)
        .collect();
    let disagreeing: Vec<&String> = voting()
        .filter_map(|(_, _, v)| match v {
            Verdict::Disagrees(d) => Some(d),
            _ => None,
        })
        .collect();
    if (agreeing.len() + usize::from(me_voter)) * 2 > voters {
        return Tally::Vouched(agreeing);
    }
    if (voters - disagreeing.len().min(voters)) * 2 <= voters {
        let all: Vec<&str> = disagreeing.iter().map(|s| s.as_str()).collect();
        return Tally::Diverged(format!(
            "{} of {voters} voters disagree with this controller's attestation log: {}",
            disagreeing.len(),
            all.join("; ")
        ));
    }
    let why: Vec<String> = verdicts
        .iter()
        .filter_map(|(_, _, v)| match v {
            Verdict::Agrees => None,
            Verdict::Disagrees(d) | Verdict::Unknown(d) => Some(d.clone()),
        })
        .collect();
    Tally::Undecided(if why.is_empty() {
        "no other voter has answered yet".into()
    } else {
        why.join("; ")
    })
}

/// Why a peer's tree head could not be had.
#[derive(Debug, thiserror::Error)]
enum AskError {
    #[error("{0}")]
    Peer(#[from] PeerError),
    #[error("{0}")]
    Json(#[from] serde_json::Error),
    #[error("no answer within {ASK_TIMEOUT:?}")]
    Timeout,
    /// The peer answered with an error status: its message.
    #[error("{0}")]
    Status(String),
}

async fn ask(c: &Controller, addr: &str, since: u64) -> Result<HeadReply, AskError> {
    let mut client = c.peers.client(addr)?;
    let data = serde_json::to_vec(&HeadRequest { since })?;
    let reply = tokio::time::timeout(ASK_TIMEOUT, client.log_head(RaftPayload { data }))
        .await
        .map_err(|_| AskError::Timeout)?
        .map_err(|s| AskError::Status(s.message().to_string()))?;
    Ok(serde_json::from_slice(&reply.into_inner().data)?)
}

/// One round: catch up with the leader's commit index (so that nothing committed is applied
/// only after the comparison), ask every other member, count.
async fn check_once(c: &Controller) -> Tally {
    if let Err(e) = c.read_barrier().await {
        return Tally::Undecided(format!("not caught up with the leader yet: {e}"));
    }
    let members = c.members();
    let voters = members.iter().filter(|(_, _, v)| *v).count();
    if voters == 0 {
        return Tally::Undecided("the cluster's membership is not known yet".into());
    }
    let me_voter = members.iter().any(|(id, _, v)| *id == c.id && *v);
    let (size, tree, keys) = {
        let Ok(st) = c.state.read() else {
            return Tally::Undecided("state lock poisoned".into());
        };
        (st.log.size(), st.log.tree().clone(), st.log_keys.clone())
    };
    let others: Vec<(NodeId, String, bool)> = members
        .into_iter()
        .filter(|(id, _, _)| *id != c.id)
        .collect();
    let (tree, keys) = (&tree, &keys);
    let answers = futures::future::join_all(others.iter().map(|(id, addr, voter)| async move {
        let verdict = match ask(c, addr, size).await {
            Ok(reply) => compare(*id, tree, size, &reply, keys),
            Err(e) => Verdict::Unknown(format!("controller {id} at {addr}: {e}")),
        };
        (*id, *voter, verdict)
    }))
    .await;
    match tally(voters, me_voter, &answers) {
        // Learners count for nothing, but one that disagrees is worth a warning.
        Tally::Vouched(peers) => {
            for (id, _, v) in &answers {
                if let Verdict::Disagrees(d) = v {
                    tracing::warn!(peer = id, "a controller disagrees with the majority: {d}");
                }
            }
            Tally::Vouched(peers)
        }
        other => other,
    }
}

/// Runs for the controller's life: checks on start and after every snapshot install, retrying
/// (with backoff) until decided, and again every [`RECHECK_EVERY`] while vouched (an entry
/// applied after a check is covered by the next). On divergence it stops Raft — this controller
/// must neither lead nor vote on a log it cannot vouch for — and the gate answers 503 with the
/// reason.
pub async fn watch(controller: Weak<Controller>) {
    let mut backoff = RETRY_MIN;
    let mut vouched_since = tokio::time::Instant::now();
    loop {
        let Some(c) = controller.upgrade() else {
            return;
        };
        let gate = c.integrity.clone();
        let recheck = match gate.standing() {
            Standing::Diverged(_) => return,
            Standing::Vouched { .. } if vouched_since.elapsed() < RECHECK_EVERY => {
                drop(c);
                let mut rx = gate.subscribe();
                // Wake now and then to notice the controller was dropped, and to re-check.
                let _ = tokio::time::timeout(
                    Duration::from_secs(5),
                    rx.wait_for(|s| matches!(s, Standing::Pending(_))),
                )
                .await;
                backoff = RETRY_MIN;
                continue;
            }
            Standing::Vouched { .. } => true,
            Standing::Pending(_) => false,
        };
        let generation = gate.generation();
        let tally = check_once(&c).await;
        if recheck {
            // While vouched, only a divergence changes anything.
            vouched_since = tokio::time::Instant::now();
            if !matches!(tally, Tally::Diverged(_)) {
                continue;
            }
        }
        match tally {
            Tally::Vouched(peers) => {
                let size = c.state.read().map(|s| s.log.size()).unwrap_or(0);
                vouched_since = tokio::time::Instant::now();
                if gate.vouch(generation, size, peers.clone()) {
                    tracing::info!(
                        tree_size = size,
                        agreeing = ?peers,
                        "the local attestation log agrees with a majority of the controllers; serving"
                    );
                }
            }
            Tally::Diverged(detail) => {
                tracing::error!(
                    "{detail}. This controller stops Raft and answers 503 until it is re-synced: restart it once with `tribune controller … --resync-from-peers`"
                );
                gate.diverge(detail);
                if let Err(e) = c.raft.shutdown().await {
                    tracing::warn!(error = %e, "stopping raft");
                }
                return;
            }
            Tally::Undecided(why) => {
                tracing::debug!(%why, "integrity check undecided; asking again");
                gate.undecided(generation, why);
                drop(c);
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(RETRY_MAX);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::log_key::LogSigner;

    fn tree(leaves: &[&[u8]]) -> MerkleTree {
        let mut t = MerkleTree::new();
        for l in leaves {
            t.push(l);
        }
        t
    }

    fn reply(signer: &LogSigner, t: &MerkleTree, since: u64) -> HeadReply {
        let size = t.size();
        let sth = signer.sign(size, 1, t.root_at(size).expect("root"));
        let proof = if since > 0 && since < size {
            t.consistency_proof(since, size)
                .expect("proof")
                .iter()
                .map(hex::encode)
                .collect()
        } else {
            vec![]
        };
        HeadReply {
            head: SthView::new(&sth, &signer.key_id, 2),
            proof,
        }
    }

    #[test]
    fn peers_agree_disagree_or_prove_nothing() {
        let signer = LogSigner::from_key(ed25519_dalek::SigningKey::from_bytes(&[3; 32]), 2);
        let keys = BTreeMap::new();
        let ours = tree(&[b"a", b"b", b"c"]);
        let same = tree(&[b"a", b"b", b"c"]);
        let ahead = tree(&[b"a", b"b", b"c", b"d", b"e"]);
        let behind = tree(&[b"a", b"b"]);
        let forked = tree(&[b"a", b"B", b"c"]);
        let forked_ahead = tree(&[b"a", b"B", b"c", b"d"]);
        let forked_behind = tree(&[b"a", b"B"]);
        let v = |peer: &MerkleTree| compare(2, &ours, 3, &reply(&signer, peer, 3), &keys);
        assert_eq!(v(&same), Verdict::Agrees);
        assert_eq!(v(&ahead), Verdict::Agrees);
        assert!(matches!(v(&behind), Verdict::Unknown(_)));
        for f in [&forked, &forked_ahead, &forked_behind] {
            assert!(matches!(v(f), Verdict::Disagrees(_)), "{:?}", v(f));
        }
        // A proof that does not match the head is a disagreement, not a pass.
        let mut bad = reply(&signer, &ahead, 3);
        bad.proof = reply(&signer, &forked_ahead, 3).proof;
        assert!(matches!(
            compare(2, &ours, 3, &bad, &keys),
            Verdict::Disagrees(_)
        ));
        // Under a key we know, the signature must verify.
        let key = LogKey {
            key_id: signer.key_id.clone(),
            node_id: 2,
            public_key: signer.public_key.clone(),
            registered_at_ms: 0,
            log_index: 0,
        };
        let known = BTreeMap::from([(key.key_id.clone(), key)]);
        let mut forged = reply(&signer, &same, 3);
        forged.head.signature = hex::encode([0u8; 64]);
        forged.head.sth.clear();
        assert!(matches!(
            compare(2, &ours, 3, &forged, &known),
            Verdict::Unknown(_)
        ));
        assert_eq!(
            compare(2, &ours, 3, &reply(&signer, &same, 3), &known),
            Verdict::Agrees
        );
        // The empty tree agrees with everything and proves nothing about a fork.
        let empty = MerkleTree::new();
        assert_eq!(
            compare(2, &empty, 0, &reply(&signer, &forked, 0), &keys),
            Verdict::Agrees
        );
    }

    #[test]
    fn a_majority_of_voters_decides() {
        let agree = |id| (id, true, Verdict::Agrees);
        let differ = |id| (id, true, Verdict::Disagrees(format!("fork at {id}")));
        let unknown = |id| (id, true, Verdict::Unknown("down".into()));
        assert_eq!(tally(1, true, &[]), Tally::Vouched(vec![]));
        assert_eq!(
            tally(3, true, &[agree(2), differ(3)]),
            Tally::Vouched(vec![2])
        );
        assert!(matches!(
            tally(3, true, &[differ(2), differ(3)]),
            Tally::Diverged(_)
        ));
        assert!(matches!(
            tally(3, true, &[differ(2), unknown(3)]),
            Tally::Undecided(_)
        ));
        assert!(matches!(
            tally(5, true, &[agree(2), differ(3), differ(4), unknown(5)]),
            Tally::Undecided(_)
        ));
        assert!(matches!(
            tally(5, true, &[differ(2), differ(3), differ(4), agree(5)]),
            Tally::Diverged(_)
        ));
        // Two voters that disagree cannot tell which is right: both refuse.
        assert!(matches!(tally(2, true, &[differ(2)]), Tally::Diverged(_)));
        // A learner needs a majority of the voters; learners' answers do not count.
        assert_eq!(
            tally(3, false, &[agree(1), agree(2), (4, false, Verdict::Agrees)]),
            Tally::Vouched(vec![1, 2])
        );
        assert!(matches!(
            tally(3, false, &[agree(1), unknown(2), unknown(3)]),
            Tally::Undecided(_)
        ));
    }
}
