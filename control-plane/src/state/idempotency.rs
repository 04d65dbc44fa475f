//! Idempotency keys (`Idempotency-Key`, docs/api.md): a write that carries one goes through Raft
//! as [`Command::Keyed`], and the key, a fingerprint of the request and the write's outcome are
//! recorded in the replicated [`State`] when it applies — so every replica, a restored snapshot
//! and a new leader all agree on which keys were used and what they answered.
//!
//! A keyed command whose key the caller already used within the window is not applied again: the
//! same request (same fingerprint) gets the recorded outcome back; another request under the
//! same key gets [`Outcome::KeyReused`] and nothing is written. Keys are scoped to the caller
//! (the actor), so two callers never collide.
//!
//! The window is bounded twice, deterministically (by the leader-stamped `at_ms`, never a
//! replica's clock): a key is forgotten [`KEY_WINDOW_MS`] after its write, and at most
//! [`KEYS_MAX`] keys are kept (the oldest is forgotten first). A retry arrives within seconds
//! of the outcome-unknown it follows; both bounds leave ample room for that.

use std::collections::{BTreeMap, VecDeque};

use serde::{Deserialize, Serialize};

use super::{Command, Outcome, State};

/// How long a key is remembered after its write (leader time).
pub const KEY_WINDOW_MS: i64 = 60 * 60 * 1000;
/// Keys remembered at most, all callers together; the oldest is forgotten first.
pub const KEYS_MAX: usize = 20_000;
/// The longest key accepted (bytes).
pub const KEY_BYTES_MAX: usize = 255;

/// One remembered key.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct KeyRecord {
    pub actor: String,
    pub key: String,
    /// sha-256 (hex) of the request the key was first used with ([`fingerprint`]).
    pub fingerprint: String,
    /// When its write applied (the leader's stamp).
    pub at_ms: i64,
    /// What the write answered. A policy's source is not kept (the retry carries the same
    /// source, and the answer is rebuilt from it), nor a loop batch's log indexes,
    /// so the window's memory stays small.
    pub outcome: Outcome,
}

/// The remembered keys, oldest first. Serialised as the list of records.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(from = "Vec<KeyRecord>", into = "Vec<KeyRecord>")]
pub struct Keys {
    order: VecDeque<KeyRecord>,
    /// (actor, key) → its position counted from the first record ever kept (`first + i`).
    index: BTreeMap<(String, String), u64>,
    first: u64,
}

impl From<Vec<KeyRecord>> for Keys {
    fn from(records: Vec<KeyRecord>) -> Keys {
        let mut keys = Keys::default();
        for r in records {
            keys.push(r);
        }
        keys
    }
}

impl From<Keys> for Vec<KeyRecord> {
    fn from(keys: Keys) -> Vec<KeyRecord> {
        keys.order.into()
    }
}

impl Keys {
    pub fn len(&self) -> usize {
        self.order.len()
    }

    pub fn is_empty(&self) -> bool {
        self.order.is_empty()
    }

    /// The record of `actor`'s `key`, if it is still remembered.
    pub fn get(&self, actor: &str, key: &str) -> Option<&KeyRecord> {
        let at = self.index.get(&(actor.to_string(), key.to_string()))?;
        self.order.get(usize::try_from(at - self.first).ok()?)
    }

    fn push(&mut self, r: KeyRecord) {
        let at = self.first + self.order.len() as u64;
        self.index.insert((r.actor.clone(), r.key.clone()), at);
        self.order.push_back(r);
    }

    fn pop_oldest(&mut self) {
        if let Some(r) = self.order.pop_front() {
            // A key is recorded once (a second use finds the first), so the index points here.
            self.index.remove(&(r.actor, r.key));
            self.first += 1;
        }
    }

    /// Forgets keys older than the window at `now_ms`, then the oldest beyond [`KEYS_MAX`]
    /// less `room`.
    fn expire(&mut self, now_ms: i64, room: usize) {
        while self
            .order
            .front()
            .is_some_and(|r| r.at_ms < now_ms.saturating_sub(KEY_WINDOW_MS))
        {
            self.pop_oldest();
        }
        while self.order.len() + room > KEYS_MAX {
            self.pop_oldest();
        }
    }
}

/// Why an idempotency key is not acceptable (the caller's mistake).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BadKey {
    #[error("Idempotency-Key must be 1 to {KEY_BYTES_MAX} bytes, got {0}")]
    Length(usize),
    #[error("Idempotency-Key must be printable ASCII without spaces")]
    Characters,
}

/// Checks a caller's idempotency key.
pub fn check_key(key: &str) -> Result<(), BadKey> {
    if key.is_empty() || key.len() > KEY_BYTES_MAX {
        return Err(BadKey::Length(key.len()));
    }
    if !key.bytes().all(|b| (0x21..=0x7e).contains(&b)) {
        return Err(BadKey::Characters);
    }
    Ok(())
}

/// The fingerprint of a write for its key: sha-256 (hex) of the command's JSON without its
/// `at_ms` stamp (a retry is stamped anew) and, for `Command::Place`, without the scheduler's
/// placement. JSON objects are written with sorted keys.
pub fn fingerprint(cmd: &Command) -> String {
    let mut v = serde_json::to_value(cmd).unwrap_or_default();
    if let Some(body) = v.as_object_mut().and_then(|o| o.values_mut().next())
        && let Some(fields) = body.as_object_mut()
    {
        fields.remove("at_ms");
        // The scheduler's choice is not the caller's request: a retry may be placed elsewhere.
        fields.remove("placement");
    }
    hex::encode(<sha2::Sha256 as sha2::Digest>::digest(
        v.to_string().as_bytes(),
    ))
}

impl Command {
    /// `cmd`, to be applied at most once per `(actor, key)` within the window.
    pub fn keyed(key: String, actor: String, cmd: Command, at_ms: i64) -> Command {
        Command::Keyed {
            fingerprint: fingerprint(&cmd),
            key,
            actor,
            command: Box::new(cmd),
            at_ms,
        }
    }
}

/// The outcome as kept: a policy without its source; an attestation-loop batch (a stream's
/// own keyed write) without the log indexes it wrote, which nobody reads back — so the window
/// stays small whatever the batches' size.
fn kept(outcome: &Outcome) -> Outcome {
    match outcome {
        Outcome::Policy(p) => Outcome::Policy(super::Policy {
            source: String::new(),
            ..p.clone()
        }),
        Outcome::Loop(o) => Outcome::Loop(super::LoopOutcome {
            logged: Vec::new(),
            refused: o.refused.clone(),
        }),
        o => o.clone(),
    }
}

/// What a keyed `cmd` would answer now if `actor` already used `key`: the recorded outcome
/// (same request) or [`Outcome::KeyReused`] (another request); `None` when the key is unused.
pub fn recorded(state: &State, actor: &str, key: &str, cmd: &Command) -> Option<Outcome> {
    let r = state.keys.get(actor, key)?;
    Some(if r.fingerprint == fingerprint(cmd) {
        replayed(&r.outcome, cmd)
    } else {
        Outcome::KeyReused {
            key: key.to_string(),
        }
    })
}

/// The kept outcome as answered again: a policy gets back the source its (identical) request
/// carries.
fn replayed(outcome: &Outcome, cmd: &Command) -> Outcome {
    match (outcome, cmd) {
        (Outcome::Policy(p), Command::PutPolicy { source, .. }) => Outcome::Policy(super::Policy {
            source: source.clone(),
            ..p.clone()
        }),
        (o, _) => o.clone(),
    }
}

impl State {
    /// [`Command::Keyed`].
    pub(super) fn apply_keyed(
        &mut self,
        key: String,
        actor: String,
        fingerprint: String,
        cmd: Command,
        at_ms: i64,
    ) -> Outcome {
        self.keys.expire(at_ms, 0);
        if let Some(r) = self.keys.get(&actor, &key) {
            return if r.fingerprint == fingerprint {
                replayed(&r.outcome, &cmd)
            } else {
                Outcome::KeyReused { key }
            };
        }
        if matches!(cmd, Command::Keyed { .. }) {
            return Outcome::Invalid {
                reason: "a keyed write may not hold another".into(),
            };
        }
        let outcome = self.apply(cmd);
        // A placement that no longer fits wrote nothing and is planned again by the same
        // request (`Api::create_enclave`): not an answer to remember.
        if matches!(outcome, Outcome::NoRoom { .. }) {
            return outcome;
        }
        self.keys.expire(at_ms, 1);
        self.keys.push(KeyRecord {
            actor,
            key,
            fingerprint,
            at_ms,
            outcome: kept(&outcome),
        });
        outcome
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::state::Expect;

    fn put(name: &str, source: &str) -> Command {
        Command::PutPolicy {
            name: name.into(),
            source: source.into(),
            expect: Expect::Any,
            actor: "alice".into(),
            at_ms: 1_000,
        }
    }

    fn keyed(key: &str, cmd: Command, at_ms: i64) -> Command {
        Command::keyed(key.into(), "alice".into(), cmd, at_ms)
    }

    fn version(o: &Outcome) -> u64 {
        match o {
            Outcome::Policy(p) => p.version,
            o => panic!("not a policy: {o:?}"),
        }
    }

    #[test]
    fn a_repeated_key_answers_the_first_outcome_and_applies_once() {
        let mut s = State::default();
        let first = s.apply(keyed("k", put("p", "policy \"p\" {}"), 1_000));
        let log = s.log.size();
        // Stamped later, as a retry is: the same request still.
        let again = s.apply(keyed("k", put("p", "policy \"p\" {}"), 2_000));
        assert_eq!(
            first, again,
            "the retry gets the first outcome, source included"
        );
        assert_eq!(version(&again), 1);
        assert_eq!(s.policies["p"].version, 1);
        assert_eq!(s.log.size(), log, "nothing was logged again");
        // Another caller's same key is its own.
        let bob = Command::keyed("k".into(), "bob".into(), put("p", "policy \"p\" {}"), 3_000);
        assert_eq!(version(&s.apply(bob)), 2);
    }

    #[test]
    fn a_key_reused_for_another_request_is_refused_and_writes_nothing() {
        let mut s = State::default();
        s.apply(keyed("k", put("p", "policy \"p\" {}"), 1_000));
        let before = s.clone();
        assert_eq!(
            s.apply(keyed("k", put("p", "policy \"p\" {} # changed"), 2_000)),
            Outcome::KeyReused { key: "k".into() }
        );
        assert_eq!(s, before);
    }

    #[test]
    fn failed_outcomes_are_answered_again_too() {
        let mut s = State::default();
        let del = Command::DeletePolicy {
            name: "p".into(),
            expect: Expect::Any,
            actor: "alice".into(),
            at_ms: 1_000,
        };
        let first = s.apply(keyed("d", del.clone(), 1_000));
        assert!(matches!(first, Outcome::NotFound { .. }), "{first:?}");
        s.apply(put("p", "policy \"p\" {}"));
        assert_eq!(s.apply(keyed("d", del, 2_000)), first);
        assert!(s.policies.contains_key("p"), "the retry deleted nothing");
    }

    #[test]
    fn keys_are_forgotten_after_the_window_or_beyond_the_count() {
        let mut s = State::default();
        s.apply(keyed("old", put("p", "policy \"p\" {}"), 1_000));
        // Within the window: remembered.
        s.apply(keyed(
            "old",
            put("p", "policy \"p\" {}"),
            1_000 + KEY_WINDOW_MS,
        ));
        assert_eq!(s.policies["p"].version, 1);
        // Past it: a new write.
        s.apply(keyed(
            "old",
            put("p", "policy \"p\" {}"),
            1_001 + KEY_WINDOW_MS,
        ));
        assert_eq!(s.policies["p"].version, 2);

        let mut s = State::default();
        for i in 0..=KEYS_MAX {
            s.apply(keyed(&format!("k{i}"), put("q", "policy \"q\" {}"), 5_000));
        }
        assert_eq!(s.keys.len(), KEYS_MAX);
        assert!(s.keys.get("alice", "k0").is_none(), "the oldest went first");
        assert!(s.keys.get("alice", "k1").is_some());
        let v = s.policies["q"].version;
        s.apply(keyed("k0", put("q", "policy \"q\" {}"), 5_000));
        assert_eq!(
            s.policies["q"].version,
            v + 1,
            "a forgotten key writes anew"
        );
        // Remembering k0 again made k1 the oldest beyond the count.
        assert!(s.keys.get("alice", "k1").is_none());
        s.apply(keyed("k2", put("q", "policy \"q\" {}"), 5_000));
        assert_eq!(s.policies["q"].version, v + 1, "a kept one does not");
    }

    #[test]
    fn keys_survive_a_snapshot() {
        let mut s = State::default();
        let first = s.apply(keyed("k", put("p", "policy \"p\" {}"), 1_000));
        let json = serde_json::to_vec(&s).expect("encode");
        let mut restored: State = serde_json::from_slice(&json).expect("decode");
        assert_eq!(restored, s);
        assert_eq!(
            restored.apply(keyed("k", put("p", "policy \"p\" {}"), 2_000)),
            first
        );
        assert_eq!(restored.policies["p"].version, 1);
        // A state written before keys existed loads with none.
        let mut v: serde_json::Value = serde_json::from_slice(&json).expect("value");
        v.as_object_mut().expect("object").remove("keys");
        let old: State = serde_json::from_value(v).expect("old state");
        assert!(old.keys.is_empty());
    }

    #[test]
    fn the_fingerprint_ignores_the_stamp_and_the_placement_only() {
        let a = put("p", "x");
        let mut b = a.clone();
        if let Command::PutPolicy { at_ms, .. } = &mut b {
            *at_ms = 99;
        }
        assert_eq!(fingerprint(&a), fingerprint(&b));
        assert_ne!(fingerprint(&a), fingerprint(&put("p", "y")));
        assert_ne!(fingerprint(&a), fingerprint(&put("q", "x")));
    }

    #[test]
    fn keys_are_checked() {
        assert!(check_key("8e3f-01").is_ok());
        assert!(check_key("").is_err());
        assert!(check_key("has space").is_err());
        assert!(check_key(&"x".repeat(KEY_BYTES_MAX + 1)).is_err());
    }
}
