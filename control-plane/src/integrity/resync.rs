//! `tribune controller --resync-from-peers`: start over as a fresh member of the cluster.
//!
//! The Raft directory (log, vote, snapshot) is moved aside — never deleted: it is the evidence
//! of what went wrong — and a new data file is created holding only a vote. The controller then
//! starts with an empty log; the leader, which still lists it as a member, sends it the log or a
//! snapshot. The tree-head signing key is kept.
//!
//! The vote matters: a controller that forgot it could vote twice in one term, and two leaders
//! could be elected. So before anything is moved the peers are asked for their status, and the
//! new file holds a vote for term (highest term any peer reports) + 1 for no candidate. That is
//! above every term this controller can have voted in (a candidate it voted for is at that term
//! or later, and terms never go back), at the price of one election when the leader meets it.
//! Re-syncing therefore needs a running cluster: at least one peer that knows a leader.

use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use openraft::Vote;
use tribune_proto::v1::ReadIndexRequest;

use crate::error::ControllerError;
use crate::node::{ControllerConfig, NodeStatus};
use crate::raft::NodeId;
use crate::raft::log_store::{RAFT_DIR, seed_vote};
use crate::raft::network::{PeerError, Peers};

/// What a re-sync did.
#[derive(Debug)]
pub struct Resynced {
    /// Where the old Raft directory went (`None` when there was none).
    pub moved_to: Option<PathBuf>,
    /// The term of the seeded vote.
    pub term: u64,
    /// The peers that answered.
    pub peers: Vec<NodeId>,
}

/// Why a peer's status could not be had.
#[derive(Debug, thiserror::Error)]
enum StatusError {
    #[error("{0}")]
    Peer(#[from] PeerError),
    #[error("no answer within 3 s")]
    Timeout,
    /// The peer answered with an error status: its message.
    #[error("{0}")]
    Status(String),
    #[error("{0}")]
    Json(#[from] serde_json::Error),
}

async fn status(peers: &Peers, addr: &str) -> Result<NodeStatus, StatusError> {
    let mut client = peers.client(addr)?;
    let r = tokio::time::timeout(Duration::from_secs(3), client.status(ReadIndexRequest {}))
        .await
        .map_err(|_| StatusError::Timeout)?
        .map_err(|s| StatusError::Status(s.message().to_string()))?;
    Ok(serde_json::from_slice(&r.into_inner().data)?)
}

/// A name beside `dir` that does not exist yet: `raft.resync-<unix seconds>[-n]`.
fn aside(dir: &Path) -> PathBuf {
    let secs = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let base = dir.with_file_name(format!("{RAFT_DIR}.resync-{secs}"));
    let mut candidate = base.clone();
    let mut n = 1;
    while candidate.exists() {
        candidate = PathBuf::from(format!("{}-{n}", base.display()));
        n += 1;
    }
    candidate
}

/// Moves this controller's Raft data aside and seeds a fresh file, after checking that the
/// cluster is there to re-sync from.
pub async fn prepare(config: &ControllerConfig) -> Result<Resynced, ControllerError> {
    let others: Vec<(NodeId, &String)> = config
        .peers
        .iter()
        .filter(|(id, _)| **id != config.id)
        .map(|(id, addr)| (*id, addr))
        .collect();
    if others.is_empty() {
        return Err(ControllerError::Invalid(
            "--resync-from-peers needs the other controllers: pass --peer ID=HOST:PORT for at least one running controller of the cluster".into(),
        ));
    }
    let tls = config.transport()?;
    let peers = Peers::new(tls.map(|t| t.client));
    let answers = futures::future::join_all(others.iter().map(|(id, addr)| {
        let peers = &peers;
        async move { (*id, *addr, status(peers, addr).await) }
    }))
    .await;
    let mut failures = Vec::new();
    let mut statuses = Vec::new();
    for (id, addr, r) in answers {
        match r {
            Ok(s) => statuses.push((id, s)),
            Err(e) => failures.push(format!("controller {id} at {addr}: {e}")),
        }
    }
    if !statuses.iter().any(|(_, s)| s.leader.is_some()) {
        return Err(ControllerError::Unavailable {
            reason: format!(
                "--resync-from-peers needs a running cluster with a leader, and no peer reported one ({}); nothing was moved",
                if failures.is_empty() {
                    "they answered without a leader".to_string()
                } else {
                    failures.join("; ")
                }
            ),
            retry_after_ms: 5000,
        });
    }
    let term = statuses.iter().map(|(_, s)| s.term).max().unwrap_or(0) + 1;
    let dir = config.data_dir.join(RAFT_DIR);
    let moved_to = if dir.exists() {
        let to = aside(&dir);
        std::fs::rename(&dir, &to).map_err(|e| {
            ControllerError::Internal(format!(
                "moving {} aside to {}: {e}",
                dir.display(),
                to.display()
            ))
        })?;
        Some(to)
    } else {
        None
    };
    // Node id 0 is no controller's: a vote for the term itself, granted to no one.
    seed_vote(&dir, &Vote::new(term, 0))?;
    Ok(Resynced {
        moved_to,
        term,
        peers: statuses.into_iter().map(|(id, _)| id).collect(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_old_directory_goes_beside_the_new_one_under_a_fresh_name() {
        let d = tempfile::tempdir().expect("tempdir");
        let raft = d.path().join(RAFT_DIR);
        let a = aside(&raft);
        assert_eq!(a.parent(), Some(d.path()));
        assert!(
            a.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.starts_with("raft.resync-")),
            "{a:?}"
        );
        std::fs::create_dir(&a).expect("mkdir");
        assert_ne!(aside(&raft), a, "never reuses a name");
    }

    #[tokio::test]
    async fn without_peers_nothing_is_moved() {
        let d = tempfile::tempdir().expect("tempdir");
        let mut cfg =
            ControllerConfig::new(1, "127.0.0.1:1".parse().expect("addr"), d.path().into());
        cfg.insecure = true;
        std::fs::create_dir_all(d.path().join(RAFT_DIR)).expect("mkdir");
        let e = prepare(&cfg).await.expect_err("no peers");
        assert!(e.to_string().contains("--peer"), "{e}");
        // A peer that does not answer: refused, and the data stays where it is.
        cfg.peers.insert(2, format!("127.0.0.1:{}", free_port()));
        let e = prepare(&cfg).await.expect_err("nobody answers");
        assert!(e.to_string().contains("nothing was moved"), "{e}");
        assert!(d.path().join(RAFT_DIR).exists());
    }

    fn free_port() -> u16 {
        std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .map_or(1, |a| a.port())
    }
}
