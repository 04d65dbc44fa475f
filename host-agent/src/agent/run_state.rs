//! An enclave's run state against its plan: what reconcile does when they differ. Pure.
//!
//! A suspend is always re-enforced (fail safe: a suspended enclave someone resumed is
//! suspended again). A resume is re-tried only while one is **owed**: the agent resumed the
//! enclave for its plan and has not seen it running since. That is what makes a VM that moved
//! while paused run on its target (issue 14): the plan naming it there can arrive while the
//! target's QEMU still loads the incoming state (`inmigrate`), where QEMU takes `cont` only as
//! "start once loaded" and drops that when the source was paused (its run state travels with
//! the state), so the VM ends `paused` under a plan that says run. The same after an agent
//! restart that adopted it under that plan. A VM paused by anything else, with no resume owed,
//! is left to the next plan, as before; and an enclave taking part in a migration is never
//! resumed here (a target not yet named by a committed plan; a source, which only a rollback
//! resumes).

use super::Migration;
use crate::plan::RunState;
use crate::runtime::EnclaveStatus;

/// What reconcile does about an enclave's run state.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) struct RunFix {
    /// The state to bring it to (`None`: nothing to do).
    pub change: Option<RunState>,
    /// Whether a resume is still owed afterwards (it is checked again next time).
    pub owed: bool,
}

/// What to do for an enclave whose plan says `wanted`, taking part in `migration`, with a
/// resume `owed`, seen `seen` (`None`: it could not be asked).
pub(super) fn run_fix(
    wanted: RunState,
    migration: Option<Migration>,
    owed: bool,
    seen: Option<EnclaveStatus>,
) -> RunFix {
    let (change, owed) = match (wanted, seen) {
        // Not known now: ask again next time.
        (_, None) => (None, owed),
        (_, Some(EnclaveStatus::Exited { .. })) => (None, false),
        (RunState::Suspend, Some(EnclaveStatus::Running)) => (Some(RunState::Suspend), false),
        (RunState::Suspend, Some(EnclaveStatus::Suspended)) => (None, false),
        (RunState::Run, Some(EnclaveStatus::Running)) => (None, false),
        (RunState::Run, Some(EnclaveStatus::Suspended)) if owed && migration.is_none() => {
            (Some(RunState::Run), true)
        }
        (RunState::Run, Some(EnclaveStatus::Suspended)) => (None, false),
    };
    RunFix { change, owed }
}

/// Whether reconcile must ask how the enclave runs (a QMP round trip for a VM): only when
/// something can follow from the answer.
pub(super) fn worth_asking(wanted: RunState, owed: bool, exited: bool) -> bool {
    !exited && (wanted == RunState::Suspend || owed)
}

#[cfg(test)]
mod tests {
    use super::*;

    const WANTED: [RunState; 2] = [RunState::Run, RunState::Suspend];
    const MIGRATIONS: [Option<Migration>; 3] =
        [None, Some(Migration::Incoming), Some(Migration::Outgoing)];
    const SEEN: [Option<EnclaveStatus>; 5] = [
        None,
        Some(EnclaveStatus::Running),
        Some(EnclaveStatus::Suspended),
        Some(EnclaveStatus::Exited { code: None }),
        Some(EnclaveStatus::Exited { code: Some(1) }),
    ];

    fn every() -> impl Iterator<Item = (RunState, Option<Migration>, bool, Option<EnclaveStatus>)> {
        WANTED.into_iter().flat_map(|w| {
            MIGRATIONS.into_iter().flat_map(move |m| {
                [false, true]
                    .into_iter()
                    .flat_map(move |o| SEEN.into_iter().map(move |s| (w, m, o, s)))
            })
        })
    }

    #[test]
    fn never_resumes_what_its_plan_suspends_nor_a_migrating_enclave() {
        for (w, m, o, s) in every() {
            let f = run_fix(w, m, o, s);
            if f.change == Some(RunState::Run) {
                assert_eq!(w, RunState::Run, "{w:?} {m:?} {o} {s:?}");
                assert_eq!(m, None, "{w:?} {m:?} {o} {s:?}");
                assert!(o, "only an owed resume: {w:?} {m:?} {o} {s:?}");
                assert_eq!(s, Some(EnclaveStatus::Suspended));
            }
            if f.owed {
                assert!(o, "never newly owed: {w:?} {m:?} {o} {s:?}");
            }
        }
    }

    #[test]
    fn a_suspend_is_always_reenforced_and_an_owed_resume_retried() {
        for (w, m, o, s) in every() {
            let f = run_fix(w, m, o, s);
            let expected = match (w, s) {
                (RunState::Suspend, Some(EnclaveStatus::Running)) => Some(RunState::Suspend),
                (RunState::Run, Some(EnclaveStatus::Suspended)) if o && m.is_none() => {
                    Some(RunState::Run)
                }
                _ => None,
            };
            assert_eq!(f.change, expected, "{w:?} {m:?} {o} {s:?}");
            // Seen as the plan wants, or gone: nothing is owed any more.
            let settled = matches!(
                (w, s),
                (RunState::Run, Some(EnclaveStatus::Running))
                    | (_, Some(EnclaveStatus::Exited { .. }))
            );
            if settled {
                assert!(!f.owed, "{w:?} {m:?} {o} {s:?}");
            }
            // Not known: unchanged, asked again.
            if s.is_none() {
                assert_eq!(
                    f,
                    RunFix {
                        change: None,
                        owed: o
                    }
                );
            }
        }
    }

    #[test]
    fn asks_only_when_an_answer_can_change_something() {
        for w in WANTED {
            for owed in [false, true] {
                for exited in [false, true] {
                    let asks = worth_asking(w, owed, exited);
                    let useful = !exited
                        && SEEN.into_iter().any(|s| {
                            MIGRATIONS
                                .into_iter()
                                .any(|m| run_fix(w, m, owed, s).change.is_some())
                        });
                    assert_eq!(asks, useful, "{w:?} owed {owed} exited {exited}");
                }
            }
        }
    }
}
