//! The migration stream of a VM that lives in a network namespace (`crate::net_vm`). QEMU runs
//! inside the enclave's namespace, whose only address is loopback (the guest owns the
//! enclave's address), so it can neither listen on the address the controllers chose for the
//! target nor reach another host. The agent, outside, opens the stream's socket and hands it
//! to QEMU over QMP (`getfd`, `Qmp::pass_fd`) — the way libvirt does:
//!
//! - target: the agent binds `ADDR:PORT` in its own namespace (before QEMU starts, so a port
//!   in use fails the step), QEMU starts with `-incoming defer`; the first connection accepted
//!   is handed to QEMU (`migrate-incoming fd:…`);
//! - source: the agent connects to `ADDR:PORT` and hands the socket to QEMU (`migrate fd:…`;
//!   `runtime::migration::run_outgoing`).
//!
//! From then on the stream is QEMU's own socket, end to end: no copy through the agent, and
//! the agent may die without breaking it (a restarted agent follows the migration as for any
//! other). The stream never crosses the enclave's veth, so the enclave's bandwidth limits do
//! not slow its own move and the move is not charged to it.

use std::os::fd::AsFd;
use std::path::PathBuf;
use std::time::Duration;

use tokio::net::TcpListener;
use tokio::task::JoinHandle;

use crate::error::{AgentError, Result};
use crate::runtime::migration::STREAM_FD;
use crate::runtime::qmp::Qmp;

/// How long the QMP monitor may take to answer (QEMU started a moment ago on the target).
const MONITOR_WITHIN: Duration = Duration::from_secs(10);

/// The `-incoming` argument of a target whose stream is handed over.
pub(crate) const DEFER: &str = "defer";

/// Target: binds `listen` (`ADDR:PORT`, in the agent's namespace).
pub(crate) async fn bind(listen: &str) -> Result<TcpListener> {
    TcpListener::bind(listen)
        .await
        .map_err(|e| AgentError::io("bind", listen, e))
}

/// Target: hands the first connection to `listener` to the QEMU whose migration monitor is
/// `monitor` (started with `-incoming defer`).
/// A failure is logged (the source's migration then fails, and the controllers roll back).
pub(crate) fn incoming(listener: TcpListener, monitor: PathBuf) -> JoinHandle<Result<()>> {
    tokio::spawn(async move {
        let handed = hand_in(listener, &monitor).await;
        if let Err(e) = &handed {
            tracing::warn!(monitor = %monitor.display(), "migration stream not handed to QEMU: {e}");
        }
        handed
    })
}

async fn hand_in(listener: TcpListener, monitor: &std::path::Path) -> Result<()> {
    {
        let (stream, peer) = listener
            .accept()
            .await
            .map_err(|e| AgentError::io("accept", "the migration listener", e))?;
        drop(listener);
        let _ = stream.set_nodelay(true);
        let mut q = Qmp::connect(monitor, MONITOR_WITHIN).await?;
        q.pass_fd(STREAM_FD, stream.as_fd()).await?;
        q.migrate_incoming(&format!("fd:{STREAM_FD}")).await?;
        tracing::info!(%peer, "migration stream in: handed to QEMU");
        Ok(())
    }
}

/// A target's hand-over task, aborted with what owns it (the enclave's record): a VM torn
/// down on a rollback leaves no listener behind.
pub(crate) struct Handoff(pub(crate) JoinHandle<Result<()>>);

impl Drop for Handoff {
    fn drop(&mut self) {
        self.0.abort();
    }
}
