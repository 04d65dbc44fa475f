//! A backup of the whole replicated state from a running controller (`GET /v1/snapshot`).
//!
//! The backup is a Raft snapshot taken for the purpose: after a linearizable read barrier (so it
//! holds every write acknowledged before the request), this controller builds a snapshot
//! (`raft.trigger().snapshot()`) and the bytes it stored are wrapped in the backup format
//! (`raft::backup`). Any controller can serve it, a follower included: the barrier makes its
//! state current first.

use std::time::{Duration, Instant};

use super::Controller;
use crate::error::ControllerError;
use crate::raft::backup;

/// How long building the snapshot may take on top of the request timeout (a large state is
/// serialised and fsynced).
const BUILD_GRACE: Duration = Duration::from_secs(30);

/// A backup and where it stops.
pub struct BackupFile {
    /// The backup file's bytes (`raft::backup` format).
    pub bytes: Vec<u8>,
    /// The last log index it holds.
    pub last_index: u64,
}

impl Controller {
    /// A backup holding at least every write acknowledged before this call.
    pub async fn backup(&self) -> Result<BackupFile, ControllerError> {
        self.read_barrier().await?;
        let target = *self.applied.borrow();
        let deadline = Instant::now() + self.timeout() + BUILD_GRACE;
        self.raft
            .trigger()
            .snapshot()
            .await
            .map_err(|e| ControllerError::Internal(format!("starting a snapshot: {e}")))?;
        let mut metrics = self.raft.metrics();
        let left = deadline.saturating_duration_since(Instant::now());
        let built = tokio::time::timeout(
            left,
            metrics.wait_for(|m| m.snapshot.is_some_and(|s| s.index >= target)),
        )
        .await;
        if !matches!(built, Ok(Ok(_))) {
            return Err(ControllerError::Unavailable {
                reason: format!(
                    "the snapshot up to index {target} was not built within {} s",
                    (self.timeout() + BUILD_GRACE).as_secs()
                ),
                retry_after_ms: 1000,
            });
        }
        let stored = self
            .log
            .load_snapshot()
            .map_err(|e| ControllerError::Integrity(e.to_string()))?
            .ok_or_else(|| ControllerError::Internal("the snapshot just built is gone".into()))?;
        // Check what goes out as a restore will check it: a backup that cannot be restored is
        // an error now, not at the worst possible moment later.
        let bytes = backup::encode(&stored);
        let checked = backup::decode(&bytes)
            .map_err(|e| ControllerError::Internal(format!("the backup does not check: {e}")))?;
        Ok(BackupFile {
            last_index: checked.last_index(),
            bytes,
        })
    }
}
