//! Backups: a snapshot of the whole replicated state taken from a running cluster
//! (`tribune snapshot save`, `GET /v1/snapshot`), checked end to end, and restored offline into
//! an empty data dir (`tribune snapshot restore`), in the spirit of `etcdctl snapshot save` and
//! `etcdutl snapshot restore`.
//!
//! ```text
//! b"TRIBBKUP" | version: u8 (1) | sha256(snapshot): 32 bytes | snapshot (snapshot_format)
//! ```
//!
//! The snapshot inside is exactly what Raft stores (`snapshot_format.rs`: openraft's meta —
//! last log id and membership — and the state's JSON). A backup is accepted only if its digest
//! holds, it decodes, and its state agrees with its own attestation log (the same check a
//! snapshot loaded from disk or sent by a leader gets). Restoring writes nothing but a fresh
//! data file holding that snapshot and a vote in its term: openraft starts from the snapshot
//! (its log is purged up to the snapshot's last entry), so the restored members elect a leader
//! among themselves and every log entry, policy and enclave is back under the same indexes.
//! Tree heads signed before the backup stay verifiable: the signing keys are registered in the
//! state; a restored controller keeps the key file its data dir still has, or gets a new key
//! (made by the restore) that it registers when it starts.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use openraft::{Membership, StoredMembership, Vote};
use sha2::{Digest, Sha256};

use super::log_store::{DATA_FILE, RAFT_DIR, seed};
use super::snapshot_format::{FormatError, StoredSnapshot};
use super::state_machine::decode_checked;
use super::{Node, NodeId};
use crate::integrity::StoreError;
use crate::log_key::LogSigner;
use crate::state::State;

/// The first bytes of every backup file.
pub const MAGIC: &[u8; 8] = b"TRIBBKUP";
/// The backup format this build writes and reads.
pub const VERSION: u8 = 1;
const HEADER_LEN: usize = MAGIC.len() + 1 + 32;

/// Why a backup is refused.
#[derive(Debug, thiserror::Error)]
pub enum BackupError {
    #[error("not a Tribune backup: it does not start with \"TRIBBKUP\"")]
    NotABackup,
    #[error(
        "backup format {found} is not one this build reads (it reads format {VERSION}); use the release that wrote it"
    )]
    Version { found: u8 },
    #[error("the backup is truncated: {len} bytes, the header alone is {HEADER_LEN}")]
    Truncated { len: usize },
    #[error(
        "the backup's SHA-256 does not match its content (stored {stored}, computed {computed}): the file is damaged or was changed"
    )]
    Digest { stored: String, computed: String },
    #[error("the snapshot in the backup does not decode: {0}")]
    Snapshot(#[from] FormatError),
    #[error("the backup's state is refused: {0}")]
    State(String),
    #[error(
        "the backup holds no log position (a snapshot of an empty cluster); nothing to restore"
    )]
    Empty,
    #[error("node {id} is not a member in the backup (members: {members}); name it with --member")]
    NotAMember { id: NodeId, members: String },
    #[error("{0} already holds a controller's data; restore only into an empty or new directory")]
    NotEmpty(String),
    #[error("writing {path}: {detail}")]
    Io { path: String, detail: String },
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("the controller's log signing key: {0}")]
    Key(String),
}

/// A backup, checked: the stored snapshot and its decoded state.
#[derive(Debug)]
pub struct Backup {
    pub snapshot: StoredSnapshot,
    pub state: State,
    /// Hex SHA-256 of the snapshot bytes (the digest in the file).
    pub sha256: String,
}

/// Wraps snapshot bytes (as stored by the log store, `snapshot_format`) into a backup file.
pub fn encode(snapshot: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(HEADER_LEN + snapshot.len());
    out.extend_from_slice(MAGIC);
    out.push(VERSION);
    out.extend_from_slice(&Sha256::digest(snapshot));
    out.extend_from_slice(snapshot);
    out
}

/// Reads and checks a backup file's bytes: digest, snapshot format, state, audit.
pub fn decode(bytes: &[u8]) -> Result<Backup, BackupError> {
    let rest = bytes
        .strip_prefix(MAGIC.as_slice())
        .ok_or(BackupError::NotABackup)?;
    let (&version, rest) = rest
        .split_first()
        .ok_or(BackupError::Truncated { len: bytes.len() })?;
    if version != VERSION {
        return Err(BackupError::Version { found: version });
    }
    let (stored, snapshot) = rest
        .split_first_chunk::<32>()
        .ok_or(BackupError::Truncated { len: bytes.len() })?;
    let computed: [u8; 32] = Sha256::digest(snapshot).into();
    if &computed != stored {
        return Err(BackupError::Digest {
            stored: hex::encode(stored),
            computed: hex::encode(computed),
        });
    }
    let snapshot = StoredSnapshot::decode(snapshot)?;
    let state = decode_checked(&snapshot.data).map_err(|e| BackupError::State(e.to_string()))?;
    Ok(Backup {
        snapshot,
        state,
        sha256: hex::encode(computed),
    })
}

impl Backup {
    /// The members (id → address) the backup's membership names, voters and learners.
    pub fn members(&self) -> BTreeMap<NodeId, String> {
        self.snapshot
            .meta
            .last_membership
            .membership()
            .nodes()
            .map(|(id, n)| (*id, n.addr.clone()))
            .collect()
    }

    /// The index of the last log entry the backup holds (0 if none).
    pub fn last_index(&self) -> u64 {
        self.snapshot.meta.last_log_id.map_or(0, |l| l.index)
    }

    /// Replaces the membership with `members` as voters (a restore onto other addresses or
    /// another set of controllers). The membership keeps the log position it had.
    pub fn set_members(&mut self, members: &BTreeMap<NodeId, String>) {
        let voters: BTreeSet<NodeId> = members.keys().copied().collect();
        let nodes: BTreeMap<NodeId, Node> = members
            .iter()
            .map(|(id, addr)| (*id, Node { addr: addr.clone() }))
            .collect();
        let log_id = *self.snapshot.meta.last_membership.log_id();
        self.snapshot.meta.last_membership =
            StoredMembership::new(log_id, Membership::new(vec![voters], nodes));
    }

    /// Writes a new data dir for controller `id` holding this backup: `DATA_DIR/raft/tribune.redb`
    /// with the snapshot and a vote in the snapshot's term. Refuses a data dir that already
    /// holds a controller's data, and an `id` the membership does not name.
    pub fn restore_into(&self, data_dir: &Path, id: NodeId) -> Result<(), BackupError> {
        let last = self.snapshot.meta.last_log_id.ok_or(BackupError::Empty)?;
        let members = self.members();
        if !members.contains_key(&id) {
            return Err(BackupError::NotAMember {
                id,
                members: members
                    .iter()
                    .map(|(id, a)| format!("{id}={a}"))
                    .collect::<Vec<_>>()
                    .join(", "),
            });
        }
        let dir = data_dir.join(RAFT_DIR);
        if dir.join(DATA_FILE).exists() {
            return Err(BackupError::NotEmpty(data_dir.display().to_string()));
        }
        let bytes = self.snapshot.encode().map_err(|e| BackupError::Io {
            path: data_dir.display().to_string(),
            detail: format!("encoding the snapshot: {e}"),
        })?;
        // A vote in the snapshot's term, for no one (node 0, as a re-sync seeds it): the first
        // election after the restore runs in a later term than any entry the snapshot covers.
        let vote = Vote::new(last.leader_id.term, 0);
        // The tree-head signing key first: a controller refuses to start with data but no key.
        // One kept from before (same data dir) is used again; otherwise a new one is made, and
        // the restored controller registers it (heads signed with the old keys still verify:
        // those keys are in the restored state).
        LogSigner::load_or_create(data_dir, id).map_err(|e| BackupError::Key(e.to_string()))?;
        seed(&dir, &vote, Some(&bytes))?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use openraft::{CommittedLeaderId, LogId, SnapshotMeta};

    use super::*;
    use crate::state::{Command, Expect};

    fn sample() -> Vec<u8> {
        let mut state = State::default();
        state.apply(Command::PutPolicy {
            name: "p".into(),
            source: "precedence -10".into(),
            expect: Expect::Any,
            actor: "t".into(),
            at_ms: 1,
        });
        let nodes: BTreeMap<NodeId, Node> = [(1, "127.0.0.1:1"), (2, "127.0.0.1:2")]
            .into_iter()
            .map(|(i, a)| (i, Node { addr: a.into() }))
            .collect();
        let last = LogId::new(CommittedLeaderId::new(3, 1), 42);
        let s = StoredSnapshot {
            meta: SnapshotMeta {
                last_log_id: Some(last),
                last_membership: StoredMembership::new(
                    Some(LogId::new(CommittedLeaderId::new(1, 1), 1)),
                    Membership::new(vec![[1, 2].into()], nodes),
                ),
                snapshot_id: "3-1-42-1".into(),
            },
            data: serde_json::to_vec(&state).expect("json"),
        };
        encode(&s.encode().expect("encode"))
    }

    #[test]
    fn a_backup_round_trips_and_names_its_members() {
        let b = decode(&sample()).expect("decodes");
        assert_eq!(b.last_index(), 42);
        assert_eq!(b.state.policies.len(), 1);
        assert_eq!(
            b.members().into_iter().collect::<Vec<_>>(),
            vec![(1, "127.0.0.1:1".into()), (2, "127.0.0.1:2".into())]
        );
    }

    #[test]
    fn every_single_byte_change_is_refused() {
        let good = sample();
        for at in 0..good.len() {
            let mut bad = good.clone();
            bad[at] ^= 0x20;
            assert!(decode(&bad).is_err(), "flip at {at} was accepted");
        }
        for cut in 0..good.len() {
            assert!(decode(&good[..cut]).is_err(), "cut at {cut} was accepted");
        }
        let e = decode(b"TRIBSNAP\x01").expect_err("a raw snapshot");
        assert!(matches!(e, BackupError::NotABackup), "{e}");
        let mut v2 = good.clone();
        v2[MAGIC.len()] = 2;
        let e = decode(&v2).expect_err("newer");
        assert!(e.to_string().contains("backup format 2"), "{e}");
    }

    #[test]
    fn restore_writes_a_data_dir_once_and_only_for_a_member() {
        let root = tempfile::tempdir().expect("tempdir");
        let b = decode(&sample()).expect("decodes");
        let e = b.restore_into(root.path(), 9).expect_err("not a member");
        assert!(e.to_string().contains("node 9 is not a member"), "{e}");
        b.restore_into(root.path(), 2).expect("restores");
        let e = b.restore_into(root.path(), 2).expect_err("twice");
        assert!(matches!(e, BackupError::NotEmpty(_)), "{e}");

        // What was written opens as a data dir whose snapshot is the backup's.
        let log = super::super::log_store::LogStore::open_dir(&root.path().join(RAFT_DIR))
            .expect("opens");
        let stored = log.load_snapshot().expect("reads").expect("a snapshot");
        let s = StoredSnapshot::decode(&stored).expect("decodes");
        assert_eq!(s.meta, b.snapshot.meta);

        // Other members: the restore follows the new membership.
        let mut moved = decode(&sample()).expect("decodes");
        moved.set_members(&[(7, "10.0.0.7:7000".to_string())].into());
        let dir = root.path().join("moved");
        moved.restore_into(&dir, 7).expect("restores as 7");
        assert_eq!(moved.members().len(), 1);
    }
}
