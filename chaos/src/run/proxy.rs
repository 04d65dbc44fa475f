//! A userspace TCP proxy on every link between controllers: delay with jitter, stalls, and
//! connection resets whose in-flight bytes still arrive late (this kernel has no netem).
//!
//! **Where it sits.** Each controller's namespace rewrites (nft `dnat`, see [`super::net`])
//! a new connection to a peer `P:7000` into one to a listening address of the link's own on
//! the bridge, `L(i→j)`, held by this proxy in the harness; the proxy connects on to the
//! peer from a source address of the link's own, `S(i→j)`. So Raft membership keeps one
//! address per controller, and the partitions and packet loss of [`super::net`] still know
//! every packet's link. The clients (root namespace) reach the controllers directly.
//!
//! **What a TCP proxy can do, and what it cannot.** It sees byte streams, not messages: the
//! Raft transport is gRPC (HTTP/2 over one connection per peer), so copying or swapping bytes
//! would only be a framing error that ends the connection. What it does:
//!
//! - **delay**: each chunk read on a direction is written `delay + U(0, jitter)` later, never
//!   before the chunk in front of it (TCP delivers bytes in order; jitter cannot reorder
//!   them); per direction of a link;
//! - **stall**: a direction stops delivering (bytes wait in the proxy), then everything held
//!   is delivered at once — a burst after a silence;
//! - **reset with late delivery** — the nearest a stream proxy comes to *duplication* and
//!   *reordering* of messages: the client's side of every connection on a link is closed at
//!   once (the sender sees its RPCs fail, their outcome unknown, and retries them on a new
//!   connection), while the bytes already in flight to the peer are still delivered on the old
//!   connection, `late` after their time. The peer may so receive a request twice (the
//!   original, late, and the retry) and an older request after newer ones: [`Stats`] counts
//!   the chunks of an old connection delivered after a newer connection of the same link had
//!   delivered, measured, not assumed.
//!
//! What it cannot: duplicate or reorder messages *within* one connection, or lose single
//! messages (a lost TCP segment is retransmitted: loss is done below TCP, by nft).

use std::collections::BTreeMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde::Serialize;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpSocket, TcpStream};
use tokio::sync::mpsc;
use tokio::task::AbortHandle;
use tokio::time::Instant;

use super::Error;

/// A direction of a link: bytes from controller `.0` to controller `.1` (indexes).
pub type Dir = (usize, usize);

/// What the proxy does to one direction of a link.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Shaping {
    pub delay: Duration,
    pub jitter: Duration,
    /// Hold every byte until the stall ends.
    pub stalled: bool,
}

/// What the proxy did, measured.
#[derive(Debug, Clone, Default, Serialize, PartialEq, Eq)]
pub struct Stats {
    pub connections: u64,
    pub bytes: u64,
    pub chunks: u64,
    /// Chunks written later than they were read because of a delay or a stall.
    pub chunks_delayed: u64,
    /// The sum and the largest of the time chunks were held, in ms (delayed ones).
    pub held_ms_total: u64,
    pub held_ms_max: u64,
    /// Connections closed on the client's side by a reset.
    pub resets: u64,
    /// Chunks an old connection delivered to the peer after a newer connection of the same
    /// link had delivered: requests arriving out of order (and possibly twice).
    pub reordered_chunks: u64,
}

#[derive(Default)]
struct Counters {
    connections: AtomicU64,
    bytes: AtomicU64,
    chunks: AtomicU64,
    chunks_delayed: AtomicU64,
    held_ms_total: AtomicU64,
    held_ms_max: AtomicU64,
    resets: AtomicU64,
    reordered_chunks: AtomicU64,
}

/// One live connection through the proxy.
struct Conn {
    link: Dir,
    /// The tasks on the client's side (read from it, write to it, read from the peer).
    client_side: Vec<AbortHandle>,
    /// Extra delay for what is still in flight to the peer after a reset.
    late_ms: Arc<AtomicU64>,
    /// The peer-side writer's end: set when the client side was reset.
    reset: Arc<AtomicBool>,
}

struct Shared {
    shaping: Mutex<BTreeMap<Dir, Shaping>>,
    counters: Counters,
    conns: Mutex<BTreeMap<u64, Conn>>,
    next_conn: AtomicU64,
    /// Per link (by the connecting side's direction), the newest connection that delivered.
    newest_delivered: Mutex<BTreeMap<Dir, u64>>,
    rng: Mutex<ChaCha8Rng>,
}

impl Shared {
    fn shaping(&self, d: Dir) -> Shaping {
        self.shaping
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(&d)
            .copied()
            .unwrap_or_default()
    }
}

/// One link to serve: connections accepted on `listen` go to `upstream`, from `bind`.
#[derive(Debug, Clone)]
pub struct LinkAddrs {
    pub link: Dir,
    pub listen: SocketAddr,
    pub upstream: SocketAddr,
    pub bind: Option<IpAddr>,
}

/// The proxy: its listeners and connections end when it is dropped.
pub struct Proxy {
    shared: Arc<Shared>,
    tasks: Vec<AbortHandle>,
    listening: Vec<SocketAddr>,
}

impl Proxy {
    /// Listens on every link's address. `seed` draws the jitter.
    pub async fn start(links: &[LinkAddrs], seed: u64) -> Result<Self, Error> {
        let shared = Arc::new(Shared {
            shaping: Mutex::default(),
            counters: Counters::default(),
            conns: Mutex::default(),
            next_conn: AtomicU64::new(1),
            newest_delivered: Mutex::default(),
            rng: Mutex::new(ChaCha8Rng::seed_from_u64(seed ^ 0x7072_6f78)),
        });
        let mut tasks = vec![];
        let mut listening = vec![];
        for l in links {
            let sock = TcpSocket::new_v4()
                .map_err(|e| Error::Setup(format!("proxy socket for {:?}: {e}", l.link)))?;
            let _ = sock.set_reuseaddr(true);
            sock.bind(l.listen)
                .map_err(|e| Error::Setup(format!("proxy: binding {}: {e}", l.listen)))?;
            let listener = sock
                .listen(128)
                .map_err(|e| Error::Setup(format!("proxy: listening on {}: {e}", l.listen)))?;
            if let Ok(a) = listener.local_addr() {
                listening.push(a);
            }
            let t = tokio::spawn(accept_loop(listener, l.clone(), shared.clone()));
            tasks.push(t.abort_handle());
        }
        Ok(Self {
            shared,
            tasks,
            listening,
        })
    }

    /// The address each link listens on, in the order given (port 0 resolved).
    pub fn listening(&self) -> &[SocketAddr] {
        &self.listening
    }

    /// Sets what happens to bytes from `d.0` to `d.1` (new and live connections alike).
    pub fn shape(&self, d: Dir, s: Shaping) {
        self.shared
            .shaping
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(d, s);
    }

    /// Every direction back to plain forwarding (what is held is delivered now).
    pub fn heal(&self) {
        self.shared
            .shaping
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clear();
    }

    /// Closes the client's side of every connection between `a` and `b` (either having
    /// connected); what is in flight to the peer is delivered `late` after its time.
    /// How many connections were reset.
    pub fn reset(&self, a: usize, b: usize, late: Duration) -> u64 {
        let mut conns = self.shared.conns.lock().unwrap_or_else(|p| p.into_inner());
        let mut n = 0;
        conns.retain(|_, c| {
            if c.link == (a, b) || c.link == (b, a) {
                c.late_ms.store(late.as_millis() as u64, Ordering::Relaxed);
                c.reset.store(true, Ordering::Relaxed);
                for t in &c.client_side {
                    t.abort();
                }
                n += 1;
                false
            } else {
                true
            }
        });
        self.shared.counters.resets.fetch_add(n, Ordering::Relaxed);
        n
    }

    pub fn stats(&self) -> Stats {
        let c = &self.shared.counters;
        let g = |a: &AtomicU64| a.load(Ordering::Relaxed);
        Stats {
            connections: g(&c.connections),
            bytes: g(&c.bytes),
            chunks: g(&c.chunks),
            chunks_delayed: g(&c.chunks_delayed),
            held_ms_total: g(&c.held_ms_total),
            held_ms_max: g(&c.held_ms_max),
            resets: g(&c.resets),
            reordered_chunks: g(&c.reordered_chunks),
        }
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        for t in &self.tasks {
            t.abort();
        }
        let conns =
            std::mem::take(&mut *self.shared.conns.lock().unwrap_or_else(|p| p.into_inner()));
        for c in conns.values() {
            for t in &c.client_side {
                t.abort();
            }
            c.reset.store(true, Ordering::Relaxed);
        }
    }
}

async fn accept_loop(listener: TcpListener, l: LinkAddrs, shared: Arc<Shared>) {
    loop {
        let Ok((client, _)) = listener.accept().await else {
            tokio::time::sleep(Duration::from_millis(10)).await;
            continue;
        };
        tokio::spawn(serve(client, l.clone(), shared.clone()));
    }
}

/// A chunk and when it may be written.
struct Chunk {
    bytes: Vec<u8>,
    read_at: Instant,
    due: Instant,
}

async fn serve(client: TcpStream, l: LinkAddrs, shared: Arc<Shared>) {
    let upstream = async {
        let sock = TcpSocket::new_v4()?;
        if let Some(ip) = l.bind {
            sock.bind(SocketAddr::new(ip, 0))?;
        }
        sock.connect(l.upstream).await
    };
    // A refused or timed-out connect: the client's connection just closes, as the peer's own
    // refusal would have closed it.
    let Ok(Ok(server)) = tokio::time::timeout(Duration::from_secs(5), upstream).await else {
        return;
    };
    let _ = client.set_nodelay(true);
    let _ = server.set_nodelay(true);
    // A reset closes with RST, as a crashed or reset peer would. (Deprecated because a
    // non-zero linger blocks the thread on drop; a zero one never does: RST at once.)
    #[allow(deprecated)]
    let _ = client.set_linger(Some(Duration::ZERO));
    shared.counters.connections.fetch_add(1, Ordering::Relaxed);
    let id = shared.next_conn.fetch_add(1, Ordering::Relaxed);
    let (cr, cw) = client.into_split();
    let (sr, sw) = server.into_split();
    let (ftx, frx) = mpsc::unbounded_channel();
    let (btx, brx) = mpsc::unbounded_channel();
    let late_ms = Arc::new(AtomicU64::new(0));
    let reset = Arc::new(AtomicBool::new(false));
    let fwd = l.link;
    let back = (l.link.1, l.link.0);
    let a = tokio::spawn(read_side(cr, ftx, fwd, shared.clone()));
    let c = tokio::spawn(read_side(sr, btx, back, shared.clone()));
    let d = tokio::spawn(write_side(cw, brx, back, shared.clone(), None));
    let delivery = Delivery {
        link: l.link,
        conn: id,
        late_ms: late_ms.clone(),
        reset: reset.clone(),
    };
    let b = tokio::spawn(write_side(sw, frx, fwd, shared.clone(), Some(delivery)));
    shared
        .conns
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .insert(
            id,
            Conn {
                link: l.link,
                client_side: vec![a.abort_handle(), c.abort_handle(), d.abort_handle()],
                late_ms,
                reset,
            },
        );
    let _ = b.await;
    let _ = d.await;
    shared
        .conns
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .remove(&id);
}

/// Reads chunks and queues each with its due time (never before the one in front of it).
async fn read_side<R: tokio::io::AsyncRead + Unpin>(
    mut r: R,
    tx: mpsc::UnboundedSender<Chunk>,
    dir: Dir,
    shared: Arc<Shared>,
) {
    let mut buf = vec![0u8; 64 * 1024];
    let mut last_due = Instant::now();
    loop {
        let n = match r.read(&mut buf).await {
            Ok(0) | Err(_) => return,
            Ok(n) => n,
        };
        let s = shared.shaping(dir);
        let jitter = if s.jitter.is_zero() {
            Duration::ZERO
        } else {
            let ms = shared
                .rng
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .random_range(0..=s.jitter.as_millis() as u64);
            Duration::from_millis(ms)
        };
        let now = Instant::now();
        let due = (now + s.delay + jitter).max(last_due);
        last_due = due;
        if tx
            .send(Chunk {
                bytes: buf[..n].to_vec(),
                read_at: now,
                due,
            })
            .is_err()
        {
            return;
        }
    }
}

/// The peer-side writer's view of its connection, for late delivery and reordering counts.
struct Delivery {
    link: Dir,
    conn: u64,
    late_ms: Arc<AtomicU64>,
    reset: Arc<AtomicBool>,
}

/// Writes each chunk at its due time, holding everything while the direction is stalled.
async fn write_side<W: tokio::io::AsyncWrite + Unpin>(
    mut w: W,
    mut rx: mpsc::UnboundedReceiver<Chunk>,
    dir: Dir,
    shared: Arc<Shared>,
    delivery: Option<Delivery>,
) {
    while let Some(c) = rx.recv().await {
        // Due time, plus the late delivery a reset may add while the chunk waits.
        loop {
            let late = delivery
                .as_ref()
                .map_or(0, |d| d.late_ms.load(Ordering::Relaxed));
            let at = c.due + Duration::from_millis(late);
            if Instant::now() >= at {
                break;
            }
            tokio::time::sleep_until(at).await;
        }
        while shared.shaping(dir).stalled
            && !delivery
                .as_ref()
                .is_some_and(|d| d.reset.load(Ordering::Relaxed))
        {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        if w.write_all(&c.bytes).await.is_err() {
            return;
        }
        let k = &shared.counters;
        k.chunks.fetch_add(1, Ordering::Relaxed);
        k.bytes.fetch_add(c.bytes.len() as u64, Ordering::Relaxed);
        let held = c.read_at.elapsed().as_millis() as u64;
        if held >= 5 {
            k.chunks_delayed.fetch_add(1, Ordering::Relaxed);
            k.held_ms_total.fetch_add(held, Ordering::Relaxed);
            k.held_ms_max.fetch_max(held, Ordering::Relaxed);
        }
        if let Some(d) = &delivery {
            let mut newest = shared
                .newest_delivered
                .lock()
                .unwrap_or_else(|p| p.into_inner());
            let n = newest.entry(d.link).or_insert(0);
            if *n > d.conn {
                k.reordered_chunks.fetch_add(1, Ordering::Relaxed);
            } else {
                *n = d.conn;
            }
        }
    }
    let _ = w.shutdown().await;
}

#[cfg(test)]
mod tests;
