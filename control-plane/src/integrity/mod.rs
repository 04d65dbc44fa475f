//! Integrity at rest (DESIGN invariant 8: "a controller never serves state it cannot vouch for:
//! stored records are checksummed, and its log must agree with its peers' signed tree heads
//! before it answers").
//!
//! Three lines of defence, from the disk up:
//!
//! 1. **The file.** redb verifies the checksum of every page of the committed trees each time the
//!    data file is opened (`set_check_integrity_on_open`), and every redb call made while opening
//!    it runs under [`catch_panic`], so a damaged file is a [`StoreError`] naming it — never a
//!    panic and a backtrace.
//! 2. **The records.** Every stored value (Raft log entry, vote and other Raft metadata, the
//!    snapshot) is a checksummed [`record`], checked on every read from disk; the snapshot is
//!    also checked against its own attestation log ([`audit`]) when it is loaded or installed.
//! 3. **The peers.** None of that catches a change made by someone who rewrote the file and its
//!    checksums, or a fault before the bytes reached the disk. So a controller compares the
//!    Merkle root of its attestation log with its peers' signed tree heads ([`peers`]) and
//!    serves linearizable reads only once a majority of the voters agree with it ([`Gate`]).
//!    A controller that a majority disagrees with stops Raft and answers 503 until an operator
//!    re-syncs it ([`resync`]).

pub mod audit;
pub mod peers;
pub mod record;
pub mod resync;

use std::cell::{Cell, RefCell};
use std::path::PathBuf;
use std::sync::Once;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use tokio::sync::watch;

use crate::error::ControllerError;
use crate::raft::NodeId;

/// What an operator does about a data file this controller cannot vouch for.
pub const RESYNC_ADVICE: &str = "This controller will not serve data it cannot vouch for. \
     Re-sync it from the other controllers: start it once with `tribune controller … --resync-from-peers` \
     (the data file is moved aside, not deleted, and the leader sends a fresh copy); \
     a one-controller cluster has no peers: restore its data directory from a backup. \
     See docs/operations.md, \"Corrupt or diverged data\"";

/// Why this controller's stored data cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// One record failed its checksum, did not decode, or disagrees with the rest of the state.
    #[error("DATA FILE {} is corrupt: table {table}, {record}: {problem}", file.display())]
    Corrupt {
        file: PathBuf,
        table: &'static str,
        record: String,
        problem: String,
    },
    /// redb refused the file (failed page checksums, a bad header) or panicked reading it.
    #[error("DATA FILE {} is corrupt (redb: {detail})", file.display())]
    Damaged { file: PathBuf, detail: String },
    /// The file could not be read or written at all (permissions, disk full, in use).
    #[error("DATA FILE {}: {detail}", file.display())]
    Io { file: PathBuf, detail: String },
}

impl StoreError {
    /// Corruption (as opposed to an environment problem the operator fixes in place).
    pub fn is_corruption(&self) -> bool {
        !matches!(self, Self::Io { .. })
    }
}

impl From<StoreError> for ControllerError {
    fn from(e: StoreError) -> Self {
        if e.is_corruption() {
            ControllerError::Integrity(format!("{e}. {RESYNC_ADVICE}"))
        } else {
            ControllerError::Internal(e.to_string())
        }
    }
}

thread_local! {
    /// Set while [`catch_panic`] runs on this thread: the panic hook stays quiet.
    static CATCHING: Cell<bool> = const { Cell::new(false) };
    /// What the quiet hook saw: the message and where.
    static CAUGHT: RefCell<Option<String>> = const { RefCell::new(None) };
}

static QUIET_HOOK: Once = Once::new();

fn payload_text(p: &(dyn std::any::Any + Send)) -> String {
    if let Some(s) = p.downcast_ref::<&str>() {
        (*s).to_string()
    } else if let Some(s) = p.downcast_ref::<String>() {
        s.clone()
    } else {
        "a panic without a message".to_string()
    }
}

/// Runs `f`, turning a panic into a [`Panicked`] error. The panic prints nothing (no "thread
/// panicked", no backtrace): the caller reports it. Panics elsewhere keep the usual hook.
///
/// For calls into redb with a file that may be damaged: redb trusts what it reads from a file
/// it believes consistent and can panic (`entered unreachable code`) on one that is not.
pub fn catch_panic<T>(f: impl FnOnce() -> T) -> Result<T, Panicked> {
    QUIET_HOOK.call_once(|| {
        let previous = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            if CATCHING.with(Cell::get) {
                let at = info
                    .location()
                    .map(|l| format!(" (at {}:{})", l.file(), l.line()))
                    .unwrap_or_default();
                let text = format!("{}{at}", payload_text(info.payload()));
                CAUGHT.with(|c| *c.borrow_mut() = Some(text));
            } else {
                previous(info);
            }
        }));
    });
    let outer = CATCHING.with(|c| c.replace(true));
    let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(f));
    CATCHING.with(|c| c.set(outer));
    result.map_err(|p| Panicked {
        message: CAUGHT
            .with(|c| c.borrow_mut().take())
            .unwrap_or_else(|| payload_text(&*p)),
    })
}

/// A panic [`catch_panic`] caught: its message, and where it was raised when known.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct Panicked {
    pub message: String,
}

/// Why [`Gate::ready`] says no.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum NotReady {
    #[error("the local state is not yet checked against the other controllers' tree heads: {why}")]
    Pending { why: String },
    #[error("{}", diverged_message(detail))]
    Diverged { detail: String },
}

/// Whether this controller may serve what it holds.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Standing {
    /// Not yet compared with the cluster since start or since the last snapshot install; why.
    Pending(String),
    /// A majority of the voters' signed tree heads extend this controller's log.
    Vouched { tree_size: u64, peers: Vec<NodeId> },
    /// The local state disagrees with the cluster (or a stored record failed its check while
    /// running): nothing is served until the controller is re-synced. Final until restart.
    Diverged(String),
}

/// The integrity gate: what the API asks before it serves. Cheap to ask (a lock-free read of a
/// watch channel); the answers change only at start, after a snapshot install, or on divergence.
pub struct Gate {
    standing: watch::Sender<Standing>,
    /// Bumped by every [`Gate::invalidate`]: a check that started before it proves nothing.
    generation: AtomicU64,
    /// Vouched for at least once since start: from then on, `stale` reads are served while a
    /// re-check (after a snapshot install from the leader) is pending.
    ever_vouched: AtomicBool,
}

impl Default for Gate {
    fn default() -> Self {
        Self::new()
    }
}

impl Gate {
    pub fn new() -> Self {
        Self {
            standing: watch::Sender::new(Standing::Pending(
                "not yet compared with the other controllers".into(),
            )),
            generation: AtomicU64::new(0),
            ever_vouched: AtomicBool::new(false),
        }
    }

    pub fn standing(&self) -> Standing {
        self.standing.borrow().clone()
    }

    pub fn subscribe(&self) -> watch::Receiver<Standing> {
        self.standing.subscribe()
    }

    pub fn generation(&self) -> u64 {
        self.generation.load(Ordering::SeqCst)
    }

    /// The state changed wholesale (a snapshot was installed): compare again before serving.
    pub fn invalidate(&self, why: &str) {
        self.generation.fetch_add(1, Ordering::SeqCst);
        self.standing.send_if_modified(|s| {
            if matches!(s, Standing::Diverged(_)) {
                return false;
            }
            *s = Standing::Pending(why.to_string());
            true
        });
    }

    /// A check that began at `generation` found a majority agreeing.
    pub fn vouch(&self, generation: u64, tree_size: u64, peers: Vec<NodeId>) -> bool {
        self.standing.send_if_modified(|s| {
            if matches!(s, Standing::Diverged(_)) || self.generation() != generation {
                return false;
            }
            *s = Standing::Vouched { tree_size, peers };
            self.ever_vouched.store(true, Ordering::SeqCst);
            true
        })
    }

    /// Why the last check (begun at `generation`) could not decide.
    pub fn undecided(&self, generation: u64, why: String) {
        self.standing.send_if_modified(|s| {
            if !matches!(s, Standing::Pending(_)) || self.generation() != generation {
                return false;
            }
            *s = Standing::Pending(why);
            true
        });
    }

    /// This controller must not serve again until re-synced.
    pub fn diverge(&self, detail: String) {
        self.standing.send_if_modified(|s| {
            if matches!(s, Standing::Diverged(_)) {
                return false;
            }
            *s = Standing::Diverged(detail);
            true
        });
    }

    /// For `/readyz`: ready only when vouched for.
    pub fn ready(&self) -> Result<(), NotReady> {
        match &*self.standing.borrow() {
            Standing::Vouched { .. } => Ok(()),
            Standing::Pending(why) => Err(NotReady::Pending { why: why.clone() }),
            Standing::Diverged(d) => Err(NotReady::Diverged { detail: d.clone() }),
        }
    }

    /// May this controller write (or forward a write)? Only a diverged one may not.
    pub fn writable(&self) -> Result<(), ControllerError> {
        match &*self.standing.borrow() {
            Standing::Diverged(d) => Err(ControllerError::Integrity(diverged_message(d))),
            _ => Ok(()),
        }
    }

    /// May this controller answer a read? A diverged one never. Until it is first vouched for,
    /// none: reads wait up to `wait` for the check. After that, a `stale` read (which promises
    /// nothing about currency) is served while a re-check is pending; a linearizable one waits.
    pub async fn readable(&self, stale: bool, wait: Duration) -> Result<(), ControllerError> {
        let stale_ok = stale && self.ever_vouched.load(Ordering::SeqCst);
        let mut rx = self.standing.subscribe();
        let decided = |s: &Standing| !matches!(s, Standing::Pending(_));
        let standing = if stale_ok || decided(&rx.borrow()) {
            rx.borrow().clone()
        } else {
            let waited = tokio::time::timeout(wait, rx.wait_for(decided))
                .await
                .ok()
                .and_then(|r| r.ok().map(|s| s.clone()));
            waited.unwrap_or_else(|| rx.borrow().clone())
        };
        match standing {
            Standing::Vouched { .. } => Ok(()),
            Standing::Pending(_) if stale_ok => Ok(()),
            Standing::Pending(why) => Err(ControllerError::Unavailable {
                reason: format!(
                    "this controller has not yet checked its state against the other controllers' signed tree heads ({why})"
                ),
                retry_after_ms: 500,
            }),
            Standing::Diverged(d) => Err(ControllerError::Integrity(diverged_message(&d))),
        }
    }
}

fn diverged_message(detail: &str) -> String {
    format!(
        "this controller's local state disagrees with the cluster and it serves nothing until it is re-synced: {detail}. \
         Fix: restart it once with `tribune controller … --resync-from-peers` (the data file is moved aside, not deleted, \
         and the leader sends a fresh copy); see docs/operations.md, \"Corrupt or diverged data\""
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn panics_become_errors_without_output() {
        let r = catch_panic(|| -> u32 { unreachable!("a corrupt page") });
        let e = r.expect_err("panicked").to_string();
        assert!(e.contains("a corrupt page"), "{e}");
        assert!(e.contains("mod.rs"), "names where: {e}");
        assert_eq!(catch_panic(|| 7), Ok(7));
        // Nested: the inner catch does not unset the outer one.
        let r = catch_panic(|| {
            let inner = catch_panic(|| panic!("inner"));
            assert!(inner.is_err());
            panic!("outer")
        });
        assert!(r.expect_err("outer").to_string().contains("outer"));
    }

    #[tokio::test]
    async fn the_gate_serves_only_what_it_can_vouch_for() {
        let g = Gate::new();
        let wait = Duration::from_millis(20);
        assert!(g.ready().is_err());
        for stale in [true, false] {
            let e = g.readable(stale, wait).await.expect_err("never vouched");
            assert!(matches!(e, ControllerError::Unavailable { .. }), "{e}");
        }
        g.writable().expect("writes go to the leader");

        // A check that started before an invalidation proves nothing.
        let gen0 = g.generation();
        g.invalidate("a snapshot was installed");
        assert!(!g.vouch(gen0, 3, vec![2]));
        assert!(g.vouch(g.generation(), 3, vec![2]));
        g.ready().expect("vouched");
        g.readable(false, wait).await.expect("vouched");

        // Once vouched for, a re-check lets stale reads through; a linearizable one waits.
        g.invalidate("again");
        g.readable(true, wait).await.expect("stale, vouched before");
        g.readable(false, wait)
            .await
            .expect_err("linearizable waits");
        let gen1 = g.generation();
        let (r, _) = tokio::join!(g.readable(false, Duration::from_secs(5)), async {
            tokio::time::sleep(Duration::from_millis(10)).await;
            g.vouch(gen1, 4, vec![3]);
        });
        r.expect("waited for the check");

        g.diverge("at size 4 controller 2's root is …".into());
        g.invalidate("cannot undo divergence");
        assert!(!g.vouch(g.generation(), 4, vec![3]));
        for stale in [true, false] {
            let e = g.readable(stale, wait).await.expect_err("diverged");
            assert!(e.to_string().contains("--resync-from-peers"), "{e}");
        }
        assert!(g.writable().is_err());
        assert!(
            g.ready()
                .expect_err("diverged")
                .to_string()
                .contains("disagrees")
        );
    }
}
