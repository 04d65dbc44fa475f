//! The checkers of a policy history, independent of the code under test:
//!
//! - linearizability, per policy, against a versioned register with compare-and-set
//!   ([`VersionedRegister`], the sequential model) by **stateright's `LinearizabilityTester`**
//!   (an established checker; we write only the model);
//! - no acknowledged write lost: the final linearizable read of every policy is at a version at
//!   least as high as every acknowledged write's;
//! - no torn value: every value read is one that some write wrote, whole (an outcome-unknown
//!   write is present or absent, never half).
//!
//! The linearizability search is exponential in the operations in flight at once (a write
//! whose outcome is unknown stays in flight to the end). It runs under a time budget
//! ([`SEARCH_BUDGET`]): a policy whose search did not end in time is reported
//! **inconclusive** — neither linearizable nor an anomaly, and a run with one does not pass —
//! instead of holding the run for minutes (CI once hung on it).

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use serde::Serialize;
use stateright::semantics::{ConsistencyTester, LinearizabilityTester, SequentialSpec};

use super::history::{Event, Kind, Op, Ret};

/// A policy as the checker models it: its version (0: absent) and the value last written. A
/// write makes it version + 1; a compare-and-set only when it exists at the expected version.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash)]
pub struct VersionedRegister {
    pub version: u64,
    pub value: Option<u64>,
}

impl SequentialSpec for VersionedRegister {
    type Op = Op;
    type Ret = Ret;

    fn invoke(&mut self, op: &Op) -> Ret {
        match *op {
            Op::Read => Ret::Read {
                version: self.version,
                value: self.value,
            },
            Op::Write { value } => {
                self.version += 1;
                self.value = Some(value);
                Ret::Written {
                    version: self.version,
                }
            }
            // `If-Match` on an absent policy fails: it has no version to match.
            Op::Cas { expect, value } => {
                if self.version != 0 && self.version == expect {
                    self.version += 1;
                    self.value = Some(value);
                    Ret::Written {
                        version: self.version,
                    }
                } else {
                    Ret::CasFailed
                }
            }
        }
    }
}

/// What the checkers found.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Verdict {
    /// Operations given to the linearizability checker (completed or open).
    pub operations_checked: u64,
    pub ok: u64,
    pub failed: u64,
    pub unknown: u64,
    /// Policies whose history is not linearizable.
    pub not_linearizable: Vec<String>,
    /// Acknowledged writes above the final version of their policy.
    pub lost_writes: Vec<String>,
    /// Reads of values no write wrote whole.
    pub torn_reads: Vec<String>,
    /// Events that break the history's own form (a completion without its invoke, …).
    pub malformed: Vec<String>,
    /// Policies whose linearizability search did not end within the budget: not judged.
    pub inconclusive: Vec<String>,
}

/// How long the linearizability searches of one history may take in all (they run in
/// parallel, one per policy).
pub const SEARCH_BUDGET: Duration = Duration::from_secs(120);

impl Verdict {
    pub fn anomalies(&self) -> usize {
        self.not_linearizable.len()
            + self.lost_writes.len()
            + self.torn_reads.len()
            + self.malformed.len()
    }
}

/// Checks `events`; `finals` maps each policy to the version its final linearizable reads
/// returned (after the faults healed). The searches get [`SEARCH_BUDGET`].
pub fn check(events: &[Event], finals: &BTreeMap<String, u64>) -> Verdict {
    check_within(events, finals, SEARCH_BUDGET)
}

/// [`check`] with the linearizability searches bounded by `budget` in all.
pub fn check_within(events: &[Event], finals: &BTreeMap<String, u64>, budget: Duration) -> Verdict {
    let mut v = Verdict::default();
    // Each (process, invoke index) → its completion, to leave out operations that certainly
    // did not happen (a definite `fail` other than a compare-and-set's) and reads whose outcome
    // is unknown (a read changes nothing).
    let mut open: BTreeMap<u64, usize> = BTreeMap::new();
    let mut outcome: BTreeMap<usize, usize> = BTreeMap::new();
    for (i, e) in events.iter().enumerate() {
        match e.kind {
            Kind::Invoke => {
                if open.insert(e.process, i).is_some() {
                    v.malformed
                        .push(format!("process {} invoked twice at once", e.process));
                }
            }
            _ => match open.remove(&e.process) {
                Some(inv) => {
                    outcome.insert(inv, i);
                }
                None => v.malformed.push(format!(
                    "process {}: a completion without invoke",
                    e.process
                )),
            },
        }
    }
    let skip = |inv: usize| -> bool {
        let e = &events[inv];
        match outcome.get(&inv).map(|&c| &events[c]) {
            Some(c) if c.kind == Kind::Fail => c.ret != Some(Ret::CasFailed),
            Some(c) if c.kind == Kind::Info => e.op == Op::Read,
            Some(_) => false,
            None => e.op == Op::Read,
        }
    };
    let mut testers: BTreeMap<&str, LinearizabilityTester<u64, VersionedRegister>> =
        BTreeMap::new();
    let mut written: BTreeSet<(&str, u64)> = BTreeSet::new();
    let mut max_acked: BTreeMap<&str, (u64, u64)> = BTreeMap::new();
    let mut skipped: BTreeSet<u64> = BTreeSet::new();
    for (i, e) in events.iter().enumerate() {
        match e.kind {
            Kind::Invoke => {
                if let Op::Write { value } | Op::Cas { value, .. } = e.op {
                    written.insert((&e.key, value));
                }
                if skip(i) {
                    skipped.insert(e.process);
                    continue;
                }
                v.operations_checked += 1;
                let t = testers
                    .entry(&e.key)
                    .or_insert_with(|| LinearizabilityTester::new(VersionedRegister::default()));
                if let Err(err) = t.on_invoke(e.process, e.op) {
                    v.malformed.push(err);
                }
            }
            Kind::Ok => {
                v.ok += 1;
                if let Some(Ret::Written { version }) = e.ret {
                    let m = max_acked.entry(&e.key).or_default();
                    if version > m.0 {
                        *m = (version, e.t_ms);
                    }
                }
                if let Some(ret) = e.ret
                    && !skipped.remove(&e.process)
                    && let Some(t) = testers.get_mut(e.key.as_str())
                    && let Err(err) = t.on_return(e.process, ret)
                {
                    v.malformed.push(err);
                }
            }
            Kind::Fail => {
                v.failed += 1;
                if e.ret == Some(Ret::CasFailed)
                    && !skipped.remove(&e.process)
                    && let Some(t) = testers.get_mut(e.key.as_str())
                    && let Err(err) = t.on_return(e.process, Ret::CasFailed)
                {
                    v.malformed.push(err);
                }
                skipped.remove(&e.process);
            }
            Kind::Info => {
                v.unknown += 1;
                skipped.remove(&e.process);
            }
        }
    }
    for e in events.iter().filter(|e| e.kind == Kind::Ok) {
        if let Some(Ret::Read {
            value: Some(value), ..
        }) = e.ret
            && (e.raw.is_some() || !written.contains(&(e.key.as_str(), value)))
        {
            v.torn_reads.push(format!(
                "{} at {} ms from controller {}: {:?}",
                e.key,
                e.t_ms,
                e.node,
                e.raw.as_deref().unwrap_or("a value no write wrote")
            ));
        }
    }
    let (not_linearizable, inconclusive) = search(testers, budget);
    v.not_linearizable = not_linearizable;
    v.inconclusive = inconclusive;
    for (key, (version, t_ms)) in &max_acked {
        let fin = finals.get(*key).copied().unwrap_or(0);
        if fin < *version {
            v.lost_writes.push(format!(
                "{key}: version {version} acknowledged at {t_ms} ms, final version {fin}"
            ));
        }
    }
    v
}

/// Runs each policy's linearizability search on a thread of its own and waits for them until
/// `budget` has passed: (the policies not linearizable, those whose search did not end). A
/// search still going at the deadline is left to finish on its own, unread (a search cannot be
/// interrupted; it ends, or the process does).
fn search(
    testers: BTreeMap<&str, LinearizabilityTester<u64, VersionedRegister>>,
    budget: Duration,
) -> (Vec<String>, Vec<String>) {
    let (tx, rx) = std::sync::mpsc::channel();
    let mut pending: BTreeSet<String> = BTreeSet::new();
    for (key, t) in testers {
        let (key, tx) = (key.to_string(), tx.clone());
        pending.insert(key.clone());
        // A thread that cannot be made leaves its policy pending: reported inconclusive.
        let _ = std::thread::Builder::new()
            .name("linearizability".into())
            .spawn(move || {
                let _ = tx.send((key, t.is_consistent()));
            });
    }
    drop(tx);
    let deadline = Instant::now() + budget;
    let mut not_linearizable = vec![];
    while !pending.is_empty() {
        let left = deadline.saturating_duration_since(Instant::now());
        match rx.recv_timeout(left) {
            Ok((key, consistent)) => {
                pending.remove(&key);
                if !consistent {
                    not_linearizable.push(key);
                }
            }
            Err(_) => break,
        }
    }
    not_linearizable.sort();
    (not_linearizable, pending.into_iter().collect())
}

/// The final version of each policy, from a history's final reads (client 0, after the
/// faults healed); `None` when the history has none (a run cut short): then no write can be
/// judged lost.
pub fn finals_of(events: &[Event]) -> Option<BTreeMap<String, u64>> {
    let mut finals = BTreeMap::new();
    let mut any = false;
    for e in events.iter().filter(|e| e.client == 0) {
        any = true;
        if e.kind == Kind::Ok
            && let Some(Ret::Read { version, .. }) = e.ret
        {
            let f = finals.entry(e.key.clone()).or_insert(0);
            *f = version.max(*f);
        }
    }
    any.then_some(finals)
}

/// Re-checks a recorded history file offline (`tribune chaos check FILE`): the verdict, and
/// whether the lost-write check could run (the history holds final reads).
pub fn check_file(path: &std::path::Path) -> Result<(Verdict, bool), super::Error> {
    let events = super::history::read(path)?;
    Ok(match finals_of(&events) {
        Some(f) => (check(&events, &f), true),
        None => {
            let mut v = check(&events, &BTreeMap::new());
            v.lost_writes.clear();
            (v, false)
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ev(process: u64, kind: Kind, op: Op, ret: Option<Ret>) -> Event {
        Event {
            t_ms: 0,
            process,
            client: process,
            node: 1,
            key: "k".into(),
            kind,
            op,
            ret,
            error: None,
            raw: None,
        }
    }

    fn read(version: u64, value: Option<u64>) -> Option<Ret> {
        Some(Ret::Read { version, value })
    }

    #[test]
    fn a_sequential_history_is_linearizable() {
        let w = Op::Write { value: 7 };
        let h = vec![
            ev(1, Kind::Invoke, w, None),
            ev(1, Kind::Ok, w, Some(Ret::Written { version: 1 })),
            ev(2, Kind::Invoke, Op::Read, None),
            ev(2, Kind::Ok, Op::Read, read(1, Some(7))),
            ev(
                2,
                Kind::Invoke,
                Op::Cas {
                    expect: 0,
                    value: 8,
                },
                None,
            ),
            ev(
                2,
                Kind::Fail,
                Op::Cas {
                    expect: 0,
                    value: 8,
                },
                Some(Ret::CasFailed),
            ),
        ];
        let v = check(&h, &BTreeMap::from([("k".into(), 1)]));
        assert_eq!(v.anomalies(), 0, "{v:?}");
        assert_eq!(v.operations_checked, 3);
    }

    #[test]
    fn a_stale_read_after_an_acknowledged_write_is_caught() {
        let w = Op::Write { value: 7 };
        let h = vec![
            ev(1, Kind::Invoke, w, None),
            ev(1, Kind::Ok, w, Some(Ret::Written { version: 1 })),
            ev(2, Kind::Invoke, Op::Read, None),
            ev(2, Kind::Ok, Op::Read, read(0, None)),
        ];
        let v = check(&h, &BTreeMap::from([("k".into(), 1)]));
        assert_eq!(v.not_linearizable, vec!["k".to_string()]);
    }

    #[test]
    fn an_unknown_write_may_take_effect_later_but_a_lost_ack_is_caught() {
        let w = Op::Write { value: 7 };
        let h = vec![
            ev(1, Kind::Invoke, w, None),
            ev(1, Kind::Info, w, None),
            ev(2, Kind::Invoke, Op::Read, None),
            ev(2, Kind::Ok, Op::Read, read(0, None)),
            ev(3, Kind::Invoke, Op::Read, None),
            ev(3, Kind::Ok, Op::Read, read(1, Some(7))),
        ];
        assert_eq!(check(&h, &BTreeMap::from([("k".into(), 1)])).anomalies(), 0);
        let acked = vec![
            ev(1, Kind::Invoke, w, None),
            ev(1, Kind::Ok, w, Some(Ret::Written { version: 1 })),
        ];
        let v = check(&acked, &BTreeMap::from([("k".into(), 0)]));
        assert_eq!(v.lost_writes.len(), 1, "{v:?}");
    }

    #[test]
    fn a_value_nobody_wrote_is_torn() {
        let h = vec![
            ev(2, Kind::Invoke, Op::Read, None),
            ev(2, Kind::Ok, Op::Read, read(1, Some(99))),
        ];
        let v = check(&h, &BTreeMap::new());
        assert_eq!(v.torn_reads.len(), 1);
    }

    /// `writers` writes of unknown outcome on one policy, all in flight together, then a read
    /// seeing `seen` of them: a search that grows with the subsets of the writers.
    fn many_unknown_writes(writers: u64, seen: u64) -> Vec<Event> {
        let mut h = vec![];
        for p in 1..=writers {
            h.push(ev(p, Kind::Invoke, Op::Write { value: p }, None));
        }
        for p in 1..=writers {
            h.push(ev(p, Kind::Info, Op::Write { value: p }, None));
        }
        let r = writers + 1;
        h.push(ev(r, Kind::Invoke, Op::Read, None));
        h.push(ev(r, Kind::Ok, Op::Read, read(seen, Some(1))));
        h
    }

    #[test]
    fn a_search_past_its_budget_is_inconclusive_not_a_verdict() {
        // An impossible read (version 0 with a value) makes the search try every subset and
        // order of the writers: 8 took 0.65 s, 10 took 58 s, 12 over 100 s (debug build).
        let h = many_unknown_writes(12, 0);
        let started = Instant::now();
        let v = check_within(&h, &BTreeMap::new(), Duration::from_millis(50));
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "the check waited {:?}",
            started.elapsed()
        );
        assert_eq!(v.inconclusive, vec!["k".to_string()], "{v:?}");
        assert!(v.not_linearizable.is_empty(), "{v:?}");
        assert_eq!(v.anomalies(), 0);
    }

    #[test]
    fn a_search_within_its_budget_is_judged() {
        let ok = check_within(
            &many_unknown_writes(3, 1),
            &BTreeMap::new(),
            Duration::from_secs(60),
        );
        assert!(ok.inconclusive.is_empty(), "{ok:?}");
        assert_eq!(ok.anomalies(), 0, "{ok:?}");
        let bad = check_within(
            &many_unknown_writes(3, 0),
            &BTreeMap::new(),
            Duration::from_secs(60),
        );
        assert!(bad.inconclusive.is_empty(), "{bad:?}");
        assert_eq!(bad.not_linearizable, vec!["k".to_string()], "{bad:?}");
    }

    #[test]
    fn refused_operations_and_unknown_reads_are_left_out() {
        let w = Op::Write { value: 7 };
        let h = vec![
            ev(1, Kind::Invoke, w, None),
            ev(1, Kind::Fail, w, None),
            ev(2, Kind::Invoke, Op::Read, None),
            ev(2, Kind::Info, Op::Read, None),
            ev(3, Kind::Invoke, Op::Read, None),
            ev(3, Kind::Ok, Op::Read, read(0, None)),
        ];
        let v = check(&h, &BTreeMap::new());
        assert_eq!(v.anomalies(), 0, "{v:?}");
        assert_eq!(v.operations_checked, 1);
    }
}
