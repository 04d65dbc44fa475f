//! Checks a state against its own attestation log: what the state holds must be what the log
//! says was written. Run on every snapshot loaded from disk or installed from the leader.
//!
//! The Merkle tree needs no such check: it is never stored, only rebuilt from the entries
//! (`state::log`). But the rest of the state is stored beside the log, and a change to it (a
//! policy's source) leaves the log — and so the root the peers compare — untouched. Every policy
//! write logs the version and the SHA-256 of the source it stored, so each stored policy must
//! match the last `policy_change` entry for its name. Pure and deterministic: every replica with
//! the same state reaches the same answer, so a failure is never a matter of timing.

use std::collections::HashMap;

use sha2::{Digest, Sha256};

use crate::state::{LogDetail, PolicyChangeDetail, State};

/// The first disagreement between a state's policies and its attestation log.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum AuditError {
    #[error(
        "policy {name:?} is stored (version {version}), but log entry {index} records its deletion"
    )]
    StoredButDeleted {
        name: String,
        version: u64,
        index: u64,
    },
    #[error(
        "policy {name:?} is stored as version {version} with source SHA-256 {sha256}, but log entry {index} records version {logged_version} with source SHA-256 {logged_sha256}"
    )]
    Mismatch {
        name: String,
        version: u64,
        sha256: String,
        index: u64,
        logged_version: u64,
        logged_sha256: String,
    },
    #[error("log entry {index} records policy {name:?}, but the state holds no such policy")]
    Missing { name: String, index: u64 },
}

/// `Err` describes the first disagreement found.
pub fn audit(state: &State) -> Result<(), AuditError> {
    // The last put or delete logged for each policy name.
    let mut last: HashMap<&str, (u64, &PolicyChangeDetail)> = HashMap::new();
    for e in &state.log.entries {
        if let LogDetail::PolicyChange(change) = &e.detail {
            last.insert(e.subject.as_str(), (e.index, change));
        }
    }
    for (name, p) in &state.policies {
        // A policy with no entry predates the log's policy entries: nothing to compare.
        let Some((index, change)) = last.get(name.as_str()) else {
            continue;
        };
        match change {
            PolicyChangeDetail::Delete { .. } => {
                return Err(AuditError::StoredButDeleted {
                    name: name.clone(),
                    version: p.version,
                    index: *index,
                });
            }
            PolicyChangeDetail::Put {
                version,
                source_sha256,
                ..
            } => {
                let sha = hex::encode(Sha256::digest(p.source.as_bytes()));
                if *version != p.version || *source_sha256 != sha {
                    return Err(AuditError::Mismatch {
                        name: name.clone(),
                        version: p.version,
                        sha256: sha,
                        index: *index,
                        logged_version: *version,
                        logged_sha256: source_sha256.clone(),
                    });
                }
            }
        }
    }
    for (name, (index, change)) in &last {
        let put = matches!(change, PolicyChangeDetail::Put { .. });
        if put && !state.policies.contains_key(*name) {
            return Err(AuditError::Missing {
                name: name.to_string(),
                index: *index,
            });
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::state::{Command, Expect};

    fn put(s: &mut State, name: &str, source: &str) {
        s.apply(Command::PutPolicy {
            name: name.into(),
            source: source.into(),
            expect: Expect::Any,
            actor: "t".into(),
            at_ms: 1,
        });
    }

    #[test]
    fn a_state_agrees_with_its_log_until_something_is_changed_behind_its_back() {
        let mut s = State::default();
        put(&mut s, "a", "precedence -10");
        put(&mut s, "a", "precedence -11");
        put(&mut s, "b", "x");
        s.apply(Command::DeletePolicy {
            name: "b".into(),
            expect: Expect::Any,
            actor: "t".into(),
            at_ms: 2,
        });
        audit(&s).expect("consistent");

        let mut tampered = s.clone();
        if let Some(p) = tampered.policies.get_mut("a") {
            p.source = "precedence -19".into();
        }
        let e = audit(&tampered).expect_err("source changed").to_string();
        assert!(
            e.contains("policy \"a\"") && e.contains("log entry 1"),
            "{e}"
        );

        let mut bumped = s.clone();
        if let Some(p) = bumped.policies.get_mut("a") {
            p.version = 7;
        }
        assert!(audit(&bumped).is_err());

        let mut revived = s.clone();
        let mut b = revived.policies["a"].clone();
        b.name = "b".into();
        revived.policies.insert("b".into(), b);
        assert!(
            audit(&revived)
                .expect_err("deleted")
                .to_string()
                .contains("deletion")
        );

        let mut dropped = s.clone();
        dropped.policies.remove("a");
        assert!(
            audit(&dropped)
                .expect_err("missing")
                .to_string()
                .contains("no such policy")
        );
    }
}
