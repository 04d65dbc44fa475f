//! The migration stream of a VM that lives in a network namespace (`crate::net_vm`). QEMU runs
//! inside the enclave's namespace, whose only address is loopback (the guest owns the
//! enclave's address), so it can neither listen on the address the controllers chose for the
//! target nor reach another host. The agent, outside, relays:
//!
//! ```text
//! source QEMU ─ tcp 127.0.0.1:P (its netns) ─ source agent ═ tcp LISTEN ═ target agent ─
//!   tcp 127.0.0.1:PORT (the target's netns) ─ target QEMU (-incoming)
//! ```
//!
//! The sockets on each side are created inside the enclave's namespace (a thread that joins
//! it, creates the socket and leaves) and used from the agent's runtime like any other. The
//! stream never crosses the enclave's veth, so the enclave's bandwidth limits do not slow its
//! own move and the move is not charged to it. Each relay carries one connection; a relay is
//! not adopted by a restarted agent — the stream breaks, QEMU's migration fails and the
//! controllers roll it back (the source resumes), as for any transfer failure.

use std::net::{Ipv4Addr, SocketAddr};
use std::os::fd::AsRawFd;
use std::time::Duration;

use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;

use crate::error::{AgentError, Result};

/// How long the target's relay retries reaching QEMU's listener in the namespace.
const CONNECT_WITHIN: Duration = Duration::from_secs(5);
/// How long the source's relay waits for the target after QEMU's migration ended.
pub(crate) const DRAIN_WITHIN: Duration = Duration::from_secs(30);

/// Runs `f` on a thread that has joined network namespace `ns` (`/run/netns/NS`): sockets it
/// creates belong to that namespace for good.
fn in_netns<T: Send + 'static>(
    ns: &str,
    f: impl FnOnce() -> std::io::Result<T> + Send + 'static,
) -> Result<T> {
    let path = std::path::PathBuf::from("/run/netns").join(ns);
    let file = std::fs::File::open(&path).map_err(|e| AgentError::io("open netns", &path, e))?;
    let shown = path.clone();
    std::thread::spawn(move || {
        // SAFETY: setns on this thread only, with a valid namespace fd it owns.
        if unsafe { libc::setns(file.as_raw_fd(), libc::CLONE_NEWNET) } != 0 {
            return Err(std::io::Error::last_os_error());
        }
        f()
    })
    .join()
    .map_err(|_| AgentError::Runtime(format!("the thread in {} panicked", shown.display())))?
    .map_err(|e| AgentError::io("socket in netns", &shown, e))
}

/// Source: a listener on loopback inside `ns` for QEMU's `migrate` (returned with the URI to
/// give QEMU), relayed to `target` (`ADDR:PORT`, reached from the agent's namespace).
pub(crate) fn outgoing(ns: &str, target: &str) -> Result<(String, JoinHandle<Result<u64>>)> {
    let std_listener = in_netns(ns, || {
        let l = std::net::TcpListener::bind((Ipv4Addr::LOCALHOST, 0))?;
        l.set_nonblocking(true)?;
        Ok(l)
    })?;
    let port = std_listener
        .local_addr()
        .map_err(|e| AgentError::io("local_addr", ns, e))?
        .port();
    let listener =
        TcpListener::from_std(std_listener).map_err(|e| AgentError::io("listen", ns, e))?;
    let target = target.to_string();
    let job = tokio::spawn(async move {
        let (mut from_qemu, _) = listener
            .accept()
            .await
            .map_err(|e| AgentError::io("accept", "QEMU's migration stream", e))?;
        let mut to_target = TcpStream::connect(&target)
            .await
            .map_err(|e| AgentError::io("connect", &target, e))?;
        let _ = to_target.set_nodelay(true);
        let (sent, _) = tokio::io::copy_bidirectional(&mut from_qemu, &mut to_target)
            .await
            .map_err(|e| AgentError::io("relay", &target, e))?;
        Ok(sent)
    });
    Ok((format!("tcp:127.0.0.1:{port}"), job))
}

/// Target: binds `listen` (`ADDR:PORT`, in the agent's namespace) now, so a port in use fails
/// the step before QEMU starts; [`incoming`] then relays what arrives.
pub(crate) async fn bind(listen: &str) -> Result<TcpListener> {
    TcpListener::bind(listen)
        .await
        .map_err(|e| AgentError::io("bind", listen, e))
}

/// The URI the target's QEMU listens on inside its namespace (loopback, the same port).
pub(crate) fn incoming_uri(listener: &TcpListener) -> Result<String> {
    let port = listener
        .local_addr()
        .map_err(|e| AgentError::io("local_addr", "the migration listener", e))?
        .port();
    Ok(format!("tcp:127.0.0.1:{port}"))
}

/// Target: relays the first connection to `listener` into QEMU's listener on loopback inside
/// `ns` (port `port`).
pub(crate) fn incoming(listener: TcpListener, ns: &str, port: u16) -> JoinHandle<Result<u64>> {
    let ns = ns.to_string();
    tokio::spawn(async move {
        let (mut from_source, peer) = listener
            .accept()
            .await
            .map_err(|e| AgentError::io("accept", "the migration listener", e))?;
        tracing::info!(%peer, netns = ns, "migration stream in: relaying to QEMU");
        let _ = from_source.set_nodelay(true);
        let deadline = tokio::time::Instant::now() + CONNECT_WITHIN;
        let mut to_qemu = loop {
            let ns2 = ns.clone();
            let tried = tokio::task::spawn_blocking(move || {
                in_netns(&ns2, move || {
                    let s = std::net::TcpStream::connect(SocketAddr::from((
                        Ipv4Addr::LOCALHOST,
                        port,
                    )))?;
                    s.set_nonblocking(true)?;
                    Ok(s)
                })
            })
            .await
            .map_err(|e| AgentError::Runtime(format!("relay: {e}")))?;
            match tried {
                Ok(s) => {
                    break TcpStream::from_std(s).map_err(|e| AgentError::io("relay", &ns, e))?;
                }
                Err(e) if tokio::time::Instant::now() >= deadline => return Err(e),
                Err(_) => tokio::time::sleep(Duration::from_millis(20)).await,
            }
        };
        let (sent, _) = tokio::io::copy_bidirectional(&mut from_source, &mut to_qemu)
            .await
            .map_err(|e| AgentError::io("relay", &ns, e))?;
        Ok(sent)
    })
}

/// A relay task that ends with what owns it (the enclave's record on the target): a VM torn
/// down on a rollback leaves no listener behind.
pub(crate) struct Relay(pub(crate) JoinHandle<Result<u64>>);

impl Drop for Relay {
    fn drop(&mut self) {
        self.0.abort();
    }
}
