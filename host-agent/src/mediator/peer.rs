//! Messages between hosts: agent ↔ agent links over mutual TLS (`peer_tls.rs`).
//!
//! **Sending side.** Every enclave the plan places on another host (`TalkTable::route`) has an
//! inbox in this host's hub like a local one — so messages to it are admitted by both sides'
//! `talk` rules, bounded and fair-queued per sending enclave exactly as on one host — whose
//! receiver is a *forwarder*: a task that takes messages from that inbox in fair-queueing
//! order, at most [`FORWARD_WINDOW`] ahead of their outcomes, and relays each (RELAY: id,
//! sender, receiver, payload) over the link to the host the table places the receiver on, read
//! at the moment it is sent (a receiver that moved is followed). The link reports every
//! relayed message's outcome back to its sender: `DONE delivered`, or `DONE failed` with the
//! reason (refused by the other host and why, the link broke, the other host unreachable).
//!
//! **Receiving side.** A link's dialler is known by its certificate's `tribune://agent/HOST`.
//! Each RELAY is checked against the placement this host's plan carries: its sender must be
//! placed on `HOST` and its receiver on this host (`TalkTable::check_relay`, refused
//! `wrong-host` otherwise), then admitted, bounded and queued by the hub like a local message,
//! with the sender's name as its attested identity. Answers (ACCEPTED, REFUSED, DONE) go back
//! on the same link by the link's id.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWriteExt, BufReader, BufWriter};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tribune_msg::wire::{self, Frame, Outcome};
use tribune_tls::PeerIdentity;
use tribune_tls::tokio_rustls::{TlsAcceptor, TlsConnector};

use super::hub::{Conn, Queued, Sent};
use super::peer_tls::PeerTls;
use super::server::{self, Inner, Mediator, lock};
use crate::error::{AgentError, Result};

/// Messages a forwarder may have relayed and not yet heard the outcome of, per remote
/// receiver: the rest wait in the fair queues of this host's hub.
pub const FORWARD_WINDOW: u32 = 256;
/// Relays queued for one link's writer before forwarders wait.
const LINK_QUEUE_MAX: usize = 1024;
/// Connecting and the TLS handshake, each way.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// Per forwarder round.
const FORWARD_MESSAGES_MAX: usize = 64;
const FORWARD_BYTES_MAX: usize = 256 << 10;

/// The peer-link state of one mediator.
#[derive(Default)]
pub(crate) struct Peers {
    tls: Mutex<Option<PeerTls>>,
    /// Forwarders by remote receiver.
    forwarders: Mutex<HashMap<String, Arc<Conn>>>,
    /// Outgoing links by host, one slot per host. A slot's lock is held while its host is
    /// dialled, so dials to one host are serialised but a slow or unreachable host never holds
    /// up relays to the others.
    links: Mutex<HashMap<String, LinkSlot>>,
    /// Set at shutdown: no new link is opened.
    closed: AtomicBool,
    /// Incoming links (to close on shutdown).
    incoming: Mutex<Vec<Arc<Conn>>>,
    listener: Mutex<Option<tokio::task::JoinHandle<()>>>,
}

/// The outgoing link to one host, if open.
type LinkSlot = Arc<tokio::sync::Mutex<Option<Arc<LinkOut>>>>;

/// A relayed message waiting for its outcome.
struct Pending {
    sender: Arc<Conn>,
    id: u64,
    forwarder: Arc<Conn>,
}

impl Pending {
    fn end(self, outcome: Outcome, reason: String) {
        self.sender.push(Frame::Done {
            id: self.id,
            outcome,
            reason,
        });
        self.forwarder.grant(1);
    }
}

/// An outgoing link to one host's agent.
struct LinkOut {
    host: String,
    addr: String,
    /// Relays to write, with their sender and when they were queued in this mediator.
    tx: mpsc::Sender<(Frame, (String, std::time::Instant))>,
    /// The other agent takes RELAYs with their queued time (`peer_tls::ALPN_QUEUED`).
    stamps: bool,
    pending: Mutex<HashMap<u64, Pending>>,
    next_id: AtomicU64,
    alive: AtomicBool,
}

impl LinkOut {
    /// Ends every message waiting on this link: it broke.
    fn broke(&self, why: &str) {
        self.alive.store(false, Ordering::Release);
        let pending: Vec<Pending> = lock(&self.pending).drain().map(|(_, p)| p).collect();
        for p in pending {
            p.end(
                Outcome::Failed,
                format!(
                    "the link to host {:?} ({}) closed before it reported the outcome ({why}); the message may or may not have been delivered",
                    self.host, self.addr
                ),
            );
        }
    }
}

impl Mediator {
    /// Lets this mediator send to and take messages from other hosts, with this agent's
    /// certificate (`tribune://agent/HOST`).
    pub fn enable_peers(&self, tls: PeerTls) {
        *lock(&self.inner.peers.tls) = Some(tls);
    }

    /// Listens for other agents' links on `addr` (needs [`Mediator::enable_peers`] first);
    /// returns the address bound (port 0 picks one).
    pub fn peer_listen(&self, addr: SocketAddr) -> Result<SocketAddr> {
        let tls = lock(&self.inner.peers.tls).clone().ok_or_else(|| {
            AgentError::Runtime("peer links need the agent's certificate (enable_peers)".into())
        })?;
        let listen_err =
            |e: std::io::Error| AgentError::Runtime(format!("peer listen on {addr}: {e}"));
        let std_listener = std::net::TcpListener::bind(addr).map_err(listen_err)?;
        std_listener.set_nonblocking(true).map_err(listen_err)?;
        let listener = TcpListener::from_std(std_listener).map_err(listen_err)?;
        let bound = listener
            .local_addr()
            .map_err(|e| AgentError::Runtime(format!("peer listen on {addr}: {e}")))?;
        let task = tokio::spawn(accept_loop(self.inner.clone(), tls, listener));
        if let Some(old) = lock(&self.inner.peers.listener).replace(task) {
            old.abort();
        }
        tracing::info!(addr = %bound, "mediator: listening for other hosts' agents");
        Ok(bound)
    }

    /// Starts a forwarder for every receiver the table places on another host, and stops
    /// those whose receiver is no longer elsewhere (what they hold stays queued in the hub:
    /// for the local receiver if it came here, reported failed if it left the plan).
    pub(super) fn sync_forwarders(&self) {
        let remote: Vec<String> = lock(&self.inner.hub)
            .table()
            .routes()
            .map(|(n, _)| n.to_string())
            .collect();
        let mut forwarders = lock(&self.inner.peers.forwarders);
        forwarders.retain(|name, conn| {
            let keep = remote.contains(name);
            if !keep {
                conn.close();
                lock(&self.inner.hub).connection_closed(conn);
            }
            keep
        });
        for name in remote {
            if forwarders.contains_key(&name) {
                continue;
            }
            let conn = Conn::new(&name);
            lock(&self.inner.hub).set_receiver(&conn, FORWARD_WINDOW);
            tokio::spawn(forward_loop(self.inner.clone(), conn.clone()));
            forwarders.insert(name, conn);
        }
    }

    /// Shutdown: every relayed message still waiting for its outcome is reported failed, and
    /// the links close.
    pub(super) async fn close_peers(&self) {
        if let Some(l) = lock(&self.inner.peers.listener).take() {
            l.abort();
        }
        for c in lock(&self.inner.peers.incoming).drain(..) {
            c.close();
        }
        for (_, c) in lock(&self.inner.peers.forwarders).drain() {
            c.close();
        }
        self.inner.peers.closed.store(true, Ordering::Release);
        let why = "the mediator is stopping (agent shutdown)";
        let slots: Vec<LinkSlot> = lock(&self.inner.peers.links)
            .drain()
            .map(|(_, s)| s)
            .collect();
        for slot in slots {
            let taken = match slot.try_lock() {
                Ok(mut s) => Ok(s.take()),
                Err(_) => Err(()),
            };
            match taken {
                Ok(link) => {
                    if let Some(link) = link {
                        link.broke(why);
                    }
                }
                // A dial is under way (bounded by CONNECT_TIMEOUT): end its link once it is in.
                Err(()) => {
                    tokio::spawn(async move {
                        if let Some(link) = slot.lock().await.take() {
                            link.broke(why);
                        }
                    });
                }
            }
        }
    }
}

async fn forward_loop(inner: Arc<Inner>, conn: Arc<Conn>) {
    loop {
        let wake = conn.wake.notified();
        if conn.is_closed() {
            return;
        }
        let batch = if conn.credit() > 0 {
            lock(&inner.hub).take(&conn, FORWARD_MESSAGES_MAX, FORWARD_BYTES_MAX)
        } else {
            Vec::new()
        };
        if batch.is_empty() {
            wake.await;
            continue;
        }
        relay_batch(&inner, &conn, batch).await;
    }
}

/// Relays messages taken from the inbox of remote receiver `conn.enclave`, to the host the
/// table places it on now. Every message ends in `pending` (its outcome reported by the link)
/// or is reported failed here.
async fn relay_batch(inner: &Arc<Inner>, conn: &Arc<Conn>, batch: Vec<(String, Queued)>) {
    let to = conn.enclave.clone();
    let route = lock(&inner.hub).table().route(&to).cloned();
    let link = match route {
        None => Err(format!("{to:?} is no longer placed on another host")),
        Some(r) if r.peer_addr.is_empty() => Err(format!(
            "host {:?} (where {to:?} is placed) has no peer address: it takes no messages from other hosts",
            r.host
        )),
        Some(r) => link_to(inner, &r.host, &r.peer_addr).await,
    };
    let link = match link {
        Ok(l) => l,
        Err(why) => {
            for (_, m) in batch {
                Pending {
                    sender: m.sender,
                    id: m.id,
                    forwarder: conn.clone(),
                }
                .end(Outcome::Failed, format!("not relayed: {why}"));
            }
            return;
        }
    };
    for (from, m) in batch {
        let Queued {
            sender,
            id,
            payload,
            queued_at,
            ..
        } = m;
        let link_id = link.next_id.fetch_add(1, Ordering::Relaxed);
        lock(&link.pending).insert(
            link_id,
            Pending {
                sender,
                id,
                forwarder: conn.clone(),
            },
        );
        let queued = (from.clone(), queued_at);
        let frame = Frame::Relay {
            id: link_id,
            queued_us: None,
            from,
            to: to.clone(),
            payload,
        };
        if link.tx.send((frame, queued)).await.is_err() {
            // The writer ended: `broke` reports this one (it is in `pending`) and the rest.
            link.broke("its writer ended");
        }
    }
}

/// The live link to `host` at `addr`, dialled if there is none. Only relays to `host` wait
/// for the dial.
async fn link_to(
    inner: &Arc<Inner>,
    host: &str,
    addr: &str,
) -> std::result::Result<Arc<LinkOut>, String> {
    let slot: LinkSlot = lock(&inner.peers.links)
        .entry(host.to_string())
        .or_default()
        .clone();
    let mut slot = slot.lock().await;
    if let Some(l) = slot.as_ref()
        && l.alive.load(Ordering::Acquire)
        && l.addr == addr
    {
        return Ok(l.clone());
    }
    let stopping = || "this agent's mediator is stopping".to_string();
    if inner.peers.closed.load(Ordering::Acquire) {
        return Err(stopping());
    }
    let tls = lock(&inner.peers.tls)
        .clone()
        .ok_or_else(|| "this agent has no peer links (no agent certificate given)".to_string())?;
    let stream = tokio::time::timeout(CONNECT_TIMEOUT, dial(&tls, host, addr))
        .await
        .map_err(|_| format!("cannot reach host {host:?} at {addr}: timed out"))?
        .map_err(|e| format!("cannot reach host {host:?} at {addr}: {e}"))?;
    if inner.peers.closed.load(Ordering::Acquire) {
        return Err(stopping());
    }
    let stamps = stream.get_ref().1.alpn_protocol() == Some(super::peer_tls::ALPN_QUEUED);
    let (r, w) = tokio::io::split(stream);
    let (tx, rx) = mpsc::channel(LINK_QUEUE_MAX);
    let link = Arc::new(LinkOut {
        host: host.to_string(),
        addr: addr.to_string(),
        tx,
        stamps,
        pending: Mutex::new(HashMap::new()),
        next_id: AtomicU64::new(1),
        alive: AtomicBool::new(true),
    });
    tokio::spawn(link_writer(
        link.clone(),
        rx,
        BufWriter::with_capacity(256 << 10, w),
    ));
    tokio::spawn(link_reader(
        link.clone(),
        BufReader::with_capacity(256 << 10, r),
    ));
    if let Some(old) = slot.replace(link.clone()) {
        old.broke("replaced by a new link");
    }
    tracing::info!(host, addr, "mediator: link to another host's agent open");
    Ok(link)
}

/// A TLS stream of a peer link (the dialling side).
pub type PeerStream = tribune_tls::tokio_rustls::client::TlsStream<TcpStream>;

/// Why a peer link could not be opened (its text goes into the senders' failure reasons).
#[derive(Debug, thiserror::Error)]
pub enum DialError {
    #[error("{0}")]
    Connect(std::io::Error),
    #[error("address {addr}: not a host name or IP address")]
    Address { addr: String },
    #[error("TLS: {0}")]
    Tls(std::io::Error),
    #[error("it presented {got}, not tribune://agent/{want}")]
    WrongIdentity { got: String, want: String },
    #[error("its certificate: {0}")]
    Certificate(tribune_tls::TlsError),
    #[error("it presented no certificate")]
    NoCertificate,
}

/// TCP, then TLS with this agent's certificate; the server must be `tribune://agent/HOST`.
async fn dial(tls: &PeerTls, host: &str, addr: &str) -> std::result::Result<PeerStream, DialError> {
    let stream = dial_with(tls.client.clone(), addr).await?;
    let identity = stream
        .get_ref()
        .1
        .peer_certificates()
        .and_then(|c| c.first())
        .map(|leaf| PeerIdentity::from_cert_der(leaf));
    match identity {
        Some(Ok(PeerIdentity::Agent { host: h })) if h == host => Ok(stream),
        Some(Ok(other)) => Err(DialError::WrongIdentity {
            got: other.uri(),
            want: host.to_string(),
        }),
        Some(Err(e)) => Err(DialError::Certificate(e)),
        None => Err(DialError::NoCertificate),
    }
}

/// TCP, then TLS with `config` (`peer_tls::client_config`); the server's identity is the
/// caller's to check.
pub async fn dial_with(
    config: Arc<tribune_tls::rustls::ClientConfig>,
    addr: &str,
) -> std::result::Result<PeerStream, DialError> {
    let tcp = TcpStream::connect(addr).await.map_err(DialError::Connect)?;
    let _ = tcp.set_nodelay(true);
    let name = addr
        .rsplit_once(':')
        .map_or(addr, |(h, _)| h)
        .trim_matches(['[', ']']);
    let server_name = tribune_tls::rustls::pki_types::ServerName::try_from(name.to_string())
        .map_err(|_| DialError::Address {
            addr: addr.to_string(),
        })?;
    TlsConnector::from(config)
        .connect(server_name, tcp)
        .await
        .map_err(DialError::Tls)
}

async fn link_writer<W: tokio::io::AsyncWrite + Unpin>(
    link: Arc<LinkOut>,
    mut rx: mpsc::Receiver<(Frame, (String, std::time::Instant))>,
    mut w: BufWriter<W>,
) {
    let mut bytes = Vec::with_capacity(wire::FRAME_BYTES_MAX + 4);
    let mut queued = Vec::new();
    let why = loop {
        let Some((mut first, q)) = rx.recv().await else {
            break "closed".to_string();
        };
        queued.clear();
        stamp(&link, &mut first, q.1);
        queued.push((q.0, q.1, None));
        let mut ok = server::write_frame(&mut w, &mut bytes, &first).await;
        while ok && let Ok((mut f, q)) = rx.try_recv() {
            stamp(&link, &mut f, q.1);
            queued.push((q.0, q.1, None));
            ok = server::write_frame(&mut w, &mut bytes, &f).await;
        }
        if !ok || w.flush().await.is_err() {
            break "writing failed".to_string();
        }
        server::record_queueing(&queued);
        if !link.alive.load(Ordering::Acquire) {
            break "closed".to_string();
        }
    };
    link.broke(&why);
}

/// On a link that takes it, a RELAY says how long it queued here: from its admission to now,
/// as it is written (µs, saturating).
fn stamp(link: &LinkOut, f: &mut Frame, queued_at: std::time::Instant) {
    if let Frame::Relay { queued_us, .. } = f
        && link.stamps
    {
        let us = queued_at.elapsed().as_micros();
        *queued_us = Some(u32::try_from(us).unwrap_or(u32::MAX));
    }
}

async fn link_reader<R: AsyncRead + Unpin>(link: Arc<LinkOut>, mut r: BufReader<R>) {
    let mut buf = Vec::new();
    let why = loop {
        let frame = match wire::read_frame(&mut r, &mut buf).await {
            Ok(Some(f)) => f,
            Ok(None) => break "the other agent closed it".to_string(),
            Err(e) => break e.to_string(),
        };
        match frame {
            Frame::Accepted { .. } => {}
            Frame::Refused { id, code, reason } => {
                if let Some(p) = lock(&link.pending).remove(&id) {
                    p.end(
                        Outcome::Failed,
                        format!(
                            "refused by host {:?} ({}): {reason}",
                            link.host,
                            code.name()
                        ),
                    );
                }
            }
            Frame::Done {
                id,
                outcome,
                reason,
            } => {
                if let Some(p) = lock(&link.pending).remove(&id) {
                    p.end(outcome, reason);
                }
            }
            other => break format!("protocol error: unexpected {other:?}"),
        }
    };
    link.broke(&why);
}

async fn accept_loop(inner: Arc<Inner>, tls: PeerTls, listener: TcpListener) {
    let acceptor = TlsAcceptor::from(tls.server.clone());
    loop {
        let (tcp, remote) = match listener.accept().await {
            Ok(s) => s,
            Err(e) => {
                tracing::warn!("peer listener accept: {e}");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let _ = tcp.set_nodelay(true);
        let inner = inner.clone();
        let acceptor = acceptor.clone();
        tokio::spawn(async move {
            let stream = match tokio::time::timeout(CONNECT_TIMEOUT, acceptor.accept(tcp)).await {
                Ok(Ok(s)) => s,
                Ok(Err(e)) => {
                    tracing::warn!(%remote, "peer link refused: TLS: {e}");
                    return;
                }
                Err(_) => {
                    tracing::warn!(%remote, "peer link refused: TLS handshake timed out");
                    return;
                }
            };
            let identity = stream
                .get_ref()
                .1
                .peer_certificates()
                .and_then(|c| c.first())
                .map(|leaf| PeerIdentity::from_cert_der(leaf));
            let host = match identity {
                Some(Ok(PeerIdentity::Agent { host })) => host,
                Some(Ok(other)) => {
                    tracing::warn!(%remote, identity = other.uri(), "peer link refused: not an agent's certificate");
                    return;
                }
                Some(Err(e)) => {
                    tracing::warn!(%remote, "peer link refused: {e}");
                    return;
                }
                None => {
                    tracing::warn!(%remote, "peer link refused: no client certificate");
                    return;
                }
            };
            serve_link(inner, host, stream).await;
        });
    }
}

/// One incoming link from the agent of `host`.
async fn serve_link<S>(inner: Arc<Inner>, host: String, stream: S)
where
    S: AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    tracing::info!(host, "mediator: link from another host's agent open");
    let (r, w) = tokio::io::split(stream);
    // The link's answers go out through a connection of its own (never a receiver).
    let conn = Conn::new(&format!("host/{host}"));
    lock(&inner.peers.incoming).push(conn.clone());
    let writer = tokio::spawn(server::write_loop(
        inner.clone(),
        conn.clone(),
        BufWriter::with_capacity(256 << 10, w),
    ));
    let mut r = BufReader::with_capacity(256 << 10, r);
    let mut buf = Vec::new();
    let why = loop {
        // The writer is behind: stop reading (back-pressure onto the other agent).
        loop {
            let drained = conn.drained.notified();
            if conn.pending_frames() < server::PENDING_FRAMES_MAX || conn.is_closed() {
                break;
            }
            drained.await;
        }
        if conn.is_closed() {
            break "closed".to_string();
        }
        let frame = match wire::read_frame(&mut r, &mut buf).await {
            Ok(Some(f)) => f,
            Ok(None) => break "the other agent closed it".to_string(),
            Err(e) => break e.to_string(),
        };
        let (id, queued_us, from, to, payload) = match frame {
            Frame::Relay {
                id,
                queued_us,
                from,
                to,
                payload,
            } => (id, queued_us, from, to, payload),
            other => break format!("protocol error: an agent may send RELAY only, got {other:?}"),
        };
        let mut hub = lock(&inner.hub);
        if let Err((code, reason)) = hub.table().check_relay(&host, &from, &to) {
            hub.refused_relay(&host, &from, &to, &reason);
            conn.push(Frame::Refused { id, code, reason });
            continue;
        }
        let before = queued_us.map(|us| Duration::from_micros(u64::from(us)));
        if let Sent::Accepted(Some(receiver)) = hub.relay(&conn, &from, id, &to, payload, before) {
            receiver.wake.notify_one();
        }
    };
    tracing::info!(
        host,
        "mediator: link from another host's agent ended: {why}"
    );
    lock(&inner.hub).connection_closed(&conn);
    let _ = writer.await;
    lock(&inner.peers.incoming).retain(|c| !Arc::ptr_eq(c, &conn));
}
