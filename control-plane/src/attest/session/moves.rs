//! The source side of a stop-and-restart move (`state/schedule.rs`): once this host's agent
//! acked a plan at least as new as the first one without a moving enclave, the agent has
//! stopped it, and the move may finish (the target's plan then names it under a new epoch).

use super::{Session, wall_ms};
use crate::state::Command;

impl Session {
    /// This host's agent applied plan `version` (a `PlanAck` without error, or the applied
    /// version its `Hello` names): finishes the moves off this host that it covers. Written in
    /// the background, like the host record: the stream does not wait for Raft. Re-checked at
    /// apply, so a duplicate (two controllers, a retried ack) finishes nothing twice.
    pub(super) fn moves_acked(&self, version: u64) {
        let due = self
            .state()
            .moves
            .values()
            .any(|m| m.from == self.host && version >= m.stop_version);
        if !due {
            return;
        }
        let controller = self.controller.clone();
        let host = self.host.clone();
        tokio::spawn(async move {
            if let Err(e) = controller
                .write(vec![Command::FinishMoves {
                    host: host.clone(),
                    version,
                    at_ms: wall_ms(),
                }])
                .await
            {
                tracing::warn!(%host, version, "finishing moves off the host: {e}");
            }
        });
    }
}
