//! The mediator's sockets: one Unix socket per enclave, `<data_dir>/msg/<enclave>.sock`,
//! bound by the agent, owned by the enclave's uid (mode 0600), named to the enclave in
//! `TRIBUNE_MSG_SOCKET`. The socket *is* the identity: whatever arrives on it comes from that
//! enclave, and frames carry no sender field. A connecting process must also be the enclave's
//! uid or the agent's own (`SO_PEERCRED`).
//!
//! Per connection: a reader (SENDs in, answers queued) and a writer (answers, then deliveries
//! taken from the hub in fair-queueing order, flushed together). The reader stops reading while
//! the writer is behind, so a sender that does not read its answers is slowed, not buffered.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWrite, AsyncWriteExt, BufWriter};
use tokio::net::unix::OwnedReadHalf;
use tokio::net::{UnixListener, UnixStream};
use tokio::task::JoinHandle;
use tribune_msg::stream::{DeframeError, Deframer};
use tribune_msg::wire::{self, Frame, Outcome};

use super::admission::TalkTable;
use super::fq::Bounds;
use super::hub::{Conn, Counters, Failure, Hub, Queued, Sent};
use crate::error::{AgentError, Result};

/// Answers a reader lets queue before it waits for the writer.
pub(super) const PENDING_FRAMES_MAX: usize = 4096;
/// Deliveries per writer round (then answers get their turn again).
const DELIVER_MESSAGES_MAX: usize = 256;
const DELIVER_BYTES_MAX: usize = 256 << 10;
/// Bytes read from a connection at a time.
const READ_CHUNK_BYTES: usize = 64 << 10;
/// Connections one enclave may hold open.
const CONNECTIONS_PER_ENCLAVE_MAX: usize = 16;
/// Longest Unix socket path (`sun_path` less its terminator).
const SOCKET_PATH_BYTES_MAX: usize = 107;

/// The mediator of one agent.
#[derive(Clone)]
pub struct Mediator {
    pub(super) inner: Arc<Inner>,
}

pub(super) struct Inner {
    dir: PathBuf,
    pub(super) hub: Mutex<Hub>,
    endpoints: Mutex<HashMap<String, Endpoint>>,
    agent_uid: u32,
    /// Messages to and from other hosts (`peer.rs`).
    pub(super) peers: super::peer::Peers,
}

/// An enclave's open connections and their tasks.
type Conns = Arc<Mutex<Vec<(Arc<Conn>, JoinHandle<()>)>>>;

struct Endpoint {
    path: PathBuf,
    owner: Option<(u32, u32)>,
    accept: JoinHandle<()>,
    conns: Conns,
}

impl Drop for Endpoint {
    fn drop(&mut self) {
        self.accept.abort();
        for (c, task) in lock(&self.conns).drain(..) {
            c.close();
            task.abort();
            fail_in_flight(&c);
        }
        let _ = std::fs::remove_file(&self.path);
    }
}

pub(super) fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl Mediator {
    /// A mediator whose sockets live in `dir` (created 0711: enclaves reach their own socket,
    /// and cannot list the others).
    pub fn new(dir: &Path, bounds: Bounds) -> Result<Mediator> {
        let hub = Hub::new(bounds).map_err(|e| AgentError::Runtime(format!("mediator: {e}")))?;
        std::fs::create_dir_all(dir).map_err(|e| AgentError::io("creating", dir, e))?;
        set_mode(dir, 0o711)?;
        Ok(Mediator {
            inner: Arc::new(Inner {
                dir: dir.to_path_buf(),
                hub: Mutex::new(hub),
                endpoints: Mutex::new(HashMap::new()),
                // SAFETY: geteuid has no preconditions and cannot fail.
                agent_uid: unsafe { libc::geteuid() },
                peers: Default::default(),
            }),
        })
    }

    /// The socket path of enclave `name`.
    pub fn socket_path(&self, name: &str) -> PathBuf {
        self.inner.dir.join(format!("{name}.sock"))
    }

    /// Binds enclave `name`'s socket (if not bound yet), owned by `owner` (uid, gid) when the
    /// enclave runs as its own user. Idempotent; a new owner re-owns the socket.
    pub fn open(&self, name: &str, owner: Option<(u32, u32)>) -> Result<PathBuf> {
        let mut endpoints = lock(&self.inner.endpoints);
        if let Some(e) = endpoints.get_mut(name) {
            if e.owner != owner {
                set_owner(&e.path, owner)?;
                e.owner = owner;
            }
            return Ok(e.path.clone());
        }
        let path = self.socket_path(name);
        if path.as_os_str().len() > SOCKET_PATH_BYTES_MAX {
            return Err(AgentError::Runtime(format!(
                "mediator socket path {} is longer than {SOCKET_PATH_BYTES_MAX} bytes: use a shorter --data-dir",
                path.display()
            )));
        }
        // A socket left by a crashed agent: ours to replace.
        let _ = std::fs::remove_file(&path);
        let listener =
            UnixListener::bind(&path).map_err(|e| AgentError::io("binding", &path, e))?;
        set_mode(&path, 0o600)?;
        set_owner(&path, owner)?;
        let conns = Arc::new(Mutex::new(Vec::new()));
        let accept = tokio::spawn(accept_loop(
            self.inner.clone(),
            name.to_string(),
            listener,
            conns.clone(),
        ));
        endpoints.insert(
            name.to_string(),
            Endpoint {
                path: path.clone(),
                owner,
                accept,
                conns,
            },
        );
        Ok(path)
    }

    /// Closes enclave `name`'s socket and connections.
    pub fn close(&self, name: &str) {
        let e = lock(&self.inner.endpoints).remove(name);
        if let Some(e) = e {
            for (c, _) in lock(&e.conns).iter() {
                lock(&self.inner.hub).connection_closed(c);
            }
            drop(e);
        }
    }

    /// The enclaves with a socket.
    pub fn open_endpoints(&self) -> Vec<String> {
        lock(&self.inner.endpoints).keys().cloned().collect()
    }

    /// A new talk table (from a newly applied plan). Messages it drops are reported failed.
    pub fn set_table(&self, table: TalkTable) {
        let failed = lock(&self.inner.hub).set_table(table);
        report(failed);
        self.sync_forwarders();
    }

    /// Per-enclave counters.
    pub fn counters(&self) -> std::collections::BTreeMap<String, Counters> {
        lock(&self.inner.hub).counters()
    }

    /// Stops: every queued message is reported failed to its sender, the writers get up to
    /// `grace` to send those reports, then every socket closes.
    pub async fn shutdown(&self, grace: Duration) {
        let failed = lock(&self.inner.hub).drain("the mediator is stopping (agent shutdown)");
        report(failed);
        self.close_peers().await;
        let deadline = tokio::time::Instant::now() + grace;
        let conns: Vec<Arc<Conn>> = lock(&self.inner.endpoints)
            .values()
            .flat_map(|e| {
                lock(&e.conns)
                    .iter()
                    .map(|(c, _)| c.clone())
                    .collect::<Vec<_>>()
            })
            .collect();
        for c in conns {
            while c.pending_frames() > 0 && !c.is_closed() && tokio::time::Instant::now() < deadline
            {
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        }
        lock(&self.inner.endpoints).clear();
    }
}

pub(super) fn report(failed: Vec<Failure>) {
    for f in failed {
        f.report();
    }
}

fn set_mode(path: &Path, mode: u32) -> Result<()> {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode))
        .map_err(|e| AgentError::io("chmod", path, e))
}

fn set_owner(path: &Path, owner: Option<(u32, u32)>) -> Result<()> {
    if let Some((uid, gid)) = owner {
        std::os::unix::fs::chown(path, Some(uid), Some(gid))
            .map_err(|e| AgentError::io("chown", path, e))?;
    }
    Ok(())
}

async fn accept_loop(inner: Arc<Inner>, name: String, listener: UnixListener, conns: Conns) {
    loop {
        let stream = match listener.accept().await {
            Ok((s, _)) => s,
            Err(e) => {
                tracing::warn!(enclave = name, "mediator socket accept: {e}");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let owner = lock(&inner.endpoints).get(&name).and_then(|e| e.owner);
        match stream.peer_cred() {
            Ok(cred)
                if owner.is_none_or(|(uid, _)| cred.uid() == uid)
                    || cred.uid() == inner.agent_uid => {}
            Ok(cred) => {
                tracing::warn!(
                    enclave = name,
                    uid = cred.uid(),
                    pid = cred.pid(),
                    "mediator socket: refused a connection from a process that is not the enclave's user"
                );
                continue;
            }
            Err(e) => {
                tracing::warn!(enclave = name, "mediator socket: no peer credentials: {e}");
                continue;
            }
        }
        let mut list = lock(&conns);
        list.retain(|(c, t)| !c.is_closed() || !t.is_finished());
        if list.len() >= CONNECTIONS_PER_ENCLAVE_MAX {
            tracing::warn!(
                enclave = name,
                "mediator socket: {CONNECTIONS_PER_ENCLAVE_MAX} connections open already; refused one"
            );
            continue;
        }
        let conn = Conn::new(&name);
        let task = tokio::spawn(serve(inner.clone(), conn.clone(), stream));
        list.push((conn, task));
    }
}

async fn serve(inner: Arc<Inner>, conn: Arc<Conn>, stream: UnixStream) {
    let (read, write) = stream.into_split();
    let writer = tokio::spawn(write_loop(
        inner.clone(),
        conn.clone(),
        BufWriter::with_capacity(256 << 10, write),
    ));
    conn.push(Frame::Hello {
        name: conn.enclave.clone(),
    });
    if let Err(e) = read_loop(&inner, &conn, read).await {
        lock(&inner.hub).connection_failed(&conn.enclave, &e.to_string());
    }
    lock(&inner.hub).connection_closed(&conn);
    let _ = writer.await;
    fail_in_flight(&conn);
}

/// Messages written to a connection that closed before its application took them.
fn fail_in_flight(conn: &Conn) {
    for (sender, id, _) in conn.take_in_flight() {
        sender.push(Frame::Done {
            id,
            outcome: Outcome::Failed,
            reason: "the receiver's connection closed before it took the message".into(),
        });
    }
}

/// Why a connection's read side ended early.
#[derive(Debug, thiserror::Error)]
enum ReadEnd {
    #[error("reading: {0}")]
    Io(std::io::Error),
    #[error(transparent)]
    Frame(#[from] DeframeError),
    /// A frame only the mediator sends (its `Debug` form).
    #[error("protocol error: an enclave may send SEND, RECEIVE and CREDIT only, got {0}")]
    NotAnEnclaveFrame(String),
}

/// Reads what the enclave writes — a process's socket or a QEMU guest's serial port, both a
/// byte stream cut anywhere — frame by frame through a [`Deframer`] (at most one frame held).
/// A bad frame ends the connection with the reason (the stream cannot be resynchronised).
async fn read_loop(
    inner: &Inner,
    conn: &Arc<Conn>,
    mut r: OwnedReadHalf,
) -> std::result::Result<(), ReadEnd> {
    let mut chunk = vec![0u8; READ_CHUNK_BYTES];
    let (mut start, mut end) = (0, 0);
    let mut deframer = Deframer::new();
    loop {
        // The writer is behind: stop reading until it catches up (back-pressure).
        loop {
            let drained = conn.drained.notified();
            if conn.pending_frames() < PENDING_FRAMES_MAX || conn.is_closed() {
                break;
            }
            drained.await;
        }
        if conn.is_closed() {
            return Ok(());
        }
        if start == end {
            end = r.read(&mut chunk).await.map_err(ReadEnd::Io)?;
            start = 0;
            if end == 0 {
                return Ok(deframer.finish()?);
            }
        }
        let mut input = &chunk[start..end];
        let frame = deframer.push(&mut input)?;
        start = end - input.len();
        let Some(frame) = frame else { continue };
        match frame {
            Frame::Send { id, to, payload } => {
                let sent = lock(&inner.hub).send(conn, id, &to, payload);
                if let Sent::Accepted(Some(receiver)) = sent {
                    receiver.wake.notify_one();
                }
            }
            Frame::Receive { window } => lock(&inner.hub).set_receiver(conn, window),
            Frame::Credit { n } => {
                let taken = conn.credited(n);
                if !taken.is_empty() {
                    let mut hub = lock(&inner.hub);
                    for (sender, id, bytes) in taken {
                        hub.delivered(&conn.enclave, bytes);
                        sender.push(Frame::Done {
                            id,
                            outcome: Outcome::Delivered,
                            reason: String::new(),
                        });
                    }
                }
            }
            other => {
                return Err(ReadEnd::NotAnEnclaveFrame(format!("{other:?}")));
            }
        }
    }
}

pub(super) async fn write_loop<W: AsyncWrite + Unpin>(
    inner: Arc<Inner>,
    conn: Arc<Conn>,
    w: BufWriter<W>,
) {
    write_until_closed(&inner, &conn, w).await;
    conn.set_writer_done();
}

async fn write_until_closed<W: AsyncWrite + Unpin>(
    inner: &Inner,
    conn: &Arc<Conn>,
    mut w: BufWriter<W>,
) {
    let mut bytes = Vec::with_capacity(wire::FRAME_BYTES_MAX + 4);
    loop {
        let wake = conn.wake.notified();
        let frames = conn.take_frames();
        if !frames.is_empty() {
            conn.drained.notify_waiters();
        }
        let batch = if conn.is_receiving() && conn.credit() > 0 {
            lock(&inner.hub).take(conn, DELIVER_MESSAGES_MAX, DELIVER_BYTES_MAX)
        } else {
            Vec::new()
        };
        if frames.is_empty() && batch.is_empty() {
            if conn.is_closed() {
                return;
            }
            wake.await;
            continue;
        }
        let mut ok = true;
        for f in &frames {
            ok = ok && write_frame(&mut w, &mut bytes, f).await;
        }
        // Each is in flight before it is written (the receiver may take and credit it before
        // this task runs again): delivered once the receiver's application takes it (its
        // CREDIT), failed if the connection goes first (`fail_in_flight`).
        let mut queued = Vec::with_capacity(batch.len());
        for (from, m) in batch {
            let Queued {
                sender,
                id,
                payload,
                queued_at,
                queued_before,
            } = m;
            conn.written(sender, id, payload.len());
            queued.push((from.clone(), queued_at, queued_before));
            ok = ok && write_frame(&mut w, &mut bytes, &Frame::Deliver { from, payload }).await;
        }
        ok = ok && w.flush().await.is_ok();
        if !ok {
            conn.close();
            lock(&inner.hub).connection_closed(conn);
            return;
        }
        record_queueing(&queued);
    }
}

/// One written message's queueing: its sender, when this mediator queued it, and how long it
/// queued on the sending host first (relayed messages whose RELAY said).
pub(super) type QueuedAt = (String, std::time::Instant, Option<std::time::Duration>);

/// Counts how long each of these messages spent in the mediator, now that they are written out
/// (`tribune_agent_message_queue_seconds`), and for a relayed one that says how long it queued
/// on its sending host, both waits together (`tribune_agent_message_relayed_queue_seconds`).
pub(super) fn record_queueing(queued: &[QueuedAt]) {
    let now = std::time::Instant::now();
    let metrics = crate::metrics::get();
    for (sender, at, before) in queued {
        let here = now.saturating_duration_since(*at);
        metrics.message_queued(sender, here.as_secs_f64());
        if let Some(before) = before {
            metrics.message_queued_both_hosts(sender, (here + *before).as_secs_f64());
        }
    }
}

pub(super) async fn write_frame<W: AsyncWrite + Unpin>(
    w: &mut BufWriter<W>,
    bytes: &mut Vec<u8>,
    f: &Frame,
) -> bool {
    bytes.clear();
    match f.encode(bytes) {
        Ok(()) => w.write_all(bytes).await.is_ok(),
        Err(e) => {
            tracing::warn!("mediator: a frame did not encode: {e}");
            true
        }
    }
}
