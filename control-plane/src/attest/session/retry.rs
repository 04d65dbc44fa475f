//! Back-pressure on the stream's writes (docs/protocol.md "Back-pressure"): a write the cluster
//! cannot commit in time (no quorum for a while, a leader change, an overloaded leader) does not
//! end the agent's stream. The session keeps the write and proposes it again — under an
//! idempotency key (`state/idempotency.rs`), so a first attempt that did commit late is not
//! applied twice — until it commits or [`PENDING_WRITE_MAX`] passes. Meanwhile the session
//! reads nothing more from the agent, so the stream's HTTP/2 flow control slows the agent's
//! sends, and the agent keeps what is unacknowledged in its replay buffer.

use std::sync::OnceLock;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use super::{Session, SessionError, wall_ms};
use crate::error::ControllerError;
use crate::state::{Command, Outcome};

/// How long a session keeps one write pending before it gives up and ends the stream (the
/// agent then reconnects, perhaps to another controller, and replays).
pub const PENDING_WRITE_MAX: Duration = Duration::from_secs(120);
/// The first pause between attempts; doubled up to [`RETRY_PAUSE_MAX`].
const RETRY_PAUSE_MIN: Duration = Duration::from_millis(100);
const RETRY_PAUSE_MAX: Duration = Duration::from_secs(2);

/// A key no other write of this controller process uses: the process's start time and a
/// counter (the actor scopes it to the host).
fn next_key() -> String {
    static START: OnceLock<u128> = OnceLock::new();
    static NEXT: AtomicU64 = AtomicU64::new(0);
    let start = *START.get_or_init(|| {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos())
    });
    format!(
        "stream-{start:x}-{:x}",
        NEXT.fetch_add(1, Ordering::Relaxed)
    )
}

/// Whether the write may have failed only for want of a quorum or a leader in time: worth
/// proposing again (under its key) rather than ending the stream.
pub fn transient(e: &ControllerError) -> bool {
    matches!(
        e,
        ControllerError::OutcomeUnknown { .. }
            | ControllerError::NoLeader { .. }
            | ControllerError::NotLeader { .. }
            | ControllerError::Unavailable { .. }
    )
}

impl Session {
    /// Writes `cmds` through Raft, each under its own idempotency key, proposing them again
    /// while the failure is [`transient`] and the controller is not stopping, for at most
    /// [`PENDING_WRITE_MAX`].
    pub(super) async fn write_kept(
        &self,
        cmds: Vec<Command>,
    ) -> Result<Vec<Outcome>, SessionError> {
        let actor = format!("agent:{}", self.host);
        let keyed: Vec<Command> = cmds
            .into_iter()
            .map(|cmd| Command::Keyed {
                key: next_key(),
                actor: actor.clone(),
                // Keys are never reused: no request to compare.
                fingerprint: String::new(),
                command: Box::new(cmd),
                at_ms: wall_ms(),
            })
            .collect();
        let started = Instant::now();
        let mut pause = RETRY_PAUSE_MIN;
        let mut attempts = 0u32;
        loop {
            attempts += 1;
            match self.controller.write(keyed.clone()).await {
                Ok(out) => {
                    if attempts > 1 {
                        tracing::info!(host = %self.host, attempts, waited_ms = started.elapsed().as_millis() as u64, "a kept write committed");
                    }
                    return Ok(out);
                }
                Err(e) if transient(&e) && started.elapsed() < PENDING_WRITE_MAX => {
                    crate::metrics::get().attest_writes_retried.inc();
                    tracing::warn!(host = %self.host, attempts, "write not committed yet, keeping it and slowing the stream: {e}");
                    tokio::select! {
                        () = tokio::time::sleep(pause) => {}
                        () = self.controller.stopping.cancelled() => return Err(SessionError::Shutdown),
                    }
                    pause = (pause * 2).min(RETRY_PAUSE_MAX);
                }
                Err(e) => return Err(SessionError::Raft(e.to_string())),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_failures_for_want_of_a_quorum_or_leader_are_kept() {
        assert!(transient(&ControllerError::OutcomeUnknown {
            reason: "the write was not committed within 3000 ms".into()
        }));
        assert!(transient(&ControllerError::NoLeader {
            retry_after_ms: 1000
        }));
        assert!(transient(&ControllerError::NotLeader { id: 2 }));
        assert!(!transient(&ControllerError::Invalid("bad".into())));
        assert!(!transient(&ControllerError::Internal("x".into())));
        assert!(!transient(&ControllerError::Integrity("diverged".into())));
        assert_ne!(next_key(), next_key());
    }
}
