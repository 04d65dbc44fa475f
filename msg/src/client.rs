//! The enclave's client: one connection to the mediator's socket, shared by clones.
//!
//! Two tasks per connection: a writer that drains queued frames and flushes once the queue is
//! empty (many small messages, few system calls), and a reader that routes the mediator's
//! answers to the waiting [`Client::send`] calls and deliveries to [`Client::recv`].
//!
//! Every message [`Client::send`] had accepted ends in exactly one outcome on its [`Sent`]:
//! delivered, failed with the mediator's reason, or failed because the connection to the
//! mediator was lost (a restart): never silently dropped.
//!
//! ```no_run
//! # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
//! let client = tribune_msg::Client::connect_env().await?;
//! client.send("billing", b"hello").await?.delivered().await?;
//! let (from, bytes) = client.recv().await?;
//! # Ok(()) }
//! ```

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use tokio::io::{AsyncWriteExt, BufReader, BufWriter};
use tokio::net::UnixStream;
use tokio::net::unix::{OwnedReadHalf, OwnedWriteHalf};
use tokio::sync::{mpsc, oneshot};

use crate::wire::{self, Frame, Outcome, RefusalCode, WireError};

/// The environment variable that names an enclave's mediator socket.
pub const SOCKET_ENV: &str = "TRIBUNE_MSG_SOCKET";
/// Frames queued for the writer before `send` waits.
const OUTGOING_FRAMES_MAX: usize = 1024;
/// Most messages the mediator may deliver ahead of [`Client::recv`] (the receive window; the
/// rest wait in the mediator's fair queues, where the scheduler orders them).
pub const RECEIVE_WINDOW_MAX: u32 = 1024;
/// The default receive window.
pub const RECEIVE_WINDOW_DEFAULT: u32 = 64;

/// Connecting or receiving failed.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error("{SOCKET_ENV} is not set: this process was not started as a Tribune enclave")]
    NoSocket,
    #[error("connecting to the mediator at {path}: {source}")]
    Connect {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("the mediator did not greet with the enclave's name: {0}")]
    Greeting(String),
    #[error("the connection to the mediator is closed")]
    Closed,
}

/// Why [`Client::send`] did not get the message accepted.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SendError {
    /// The mediator refused it; `code` says why in a way a program can match on.
    #[error("refused ({}): {reason}", code.name())]
    Refused { code: RefusalCode, reason: String },
    #[error("not a message the wire can carry: {0}")]
    Invalid(String),
    #[error("the connection to the mediator is closed")]
    Closed,
}

impl SendError {
    /// Whether this is back-pressure (try again later) rather than a refusal for good.
    pub fn is_queue_full(&self) -> bool {
        matches!(
            self,
            SendError::Refused {
                code: RefusalCode::QueueFull,
                ..
            }
        )
    }
}

/// An accepted message that was not delivered.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DeliveryError {
    #[error("not delivered: {0}")]
    Failed(String),
    #[error("the connection to the mediator was lost before the message was delivered")]
    ConnectionLost,
}

/// An accepted message; [`Sent::delivered`] waits for its outcome.
#[derive(Debug)]
pub struct Sent {
    id: u64,
    done: oneshot::Receiver<Result<(), DeliveryError>>,
}

impl Sent {
    /// The id this client gave the message.
    pub fn id(&self) -> u64 {
        self.id
    }

    /// Waits until the message is delivered to the receiver's connection, or has failed.
    pub async fn delivered(self) -> Result<(), DeliveryError> {
        self.done
            .await
            .unwrap_or(Err(DeliveryError::ConnectionLost))
    }
}

struct Pending {
    accepted: Option<oneshot::Sender<Result<(), SendError>>>,
    done: Option<oneshot::Sender<Result<(), DeliveryError>>>,
}

struct Shared {
    name: String,
    next_id: AtomicU64,
    receiving: AtomicBool,
    window: std::sync::atomic::AtomicU32,
    pending: Mutex<PendingTable>,
    outgoing: mpsc::Sender<Frame>,
    inbox: tokio::sync::Mutex<Inbox>,
}

/// The receiving side: delivered messages, and how many were taken since the last CREDIT.
struct Inbox {
    rx: mpsc::Receiver<(String, Vec<u8>)>,
    taken: u32,
}

/// The pending messages; `closed` once the reader has ended, so nothing is added after the
/// table was failed.
#[derive(Default)]
struct PendingTable {
    by_id: HashMap<u64, Pending>,
    closed: bool,
}

/// A connection to this host's mediator. Cheap to clone; the connection closes when the last
/// clone is dropped.
#[derive(Clone)]
pub struct Client {
    shared: Arc<Shared>,
}

impl Client {
    /// Connects to the socket named by `TRIBUNE_MSG_SOCKET` (set for every process enclave).
    pub async fn connect_env() -> Result<Client, ClientError> {
        let path = std::env::var_os(SOCKET_ENV).ok_or(ClientError::NoSocket)?;
        Client::connect(Path::new(&path)).await
    }

    /// Connects to the mediator at `path` and reads its greeting.
    pub async fn connect(path: &Path) -> Result<Client, ClientError> {
        let stream = UnixStream::connect(path)
            .await
            .map_err(|source| ClientError::Connect {
                path: path.to_path_buf(),
                source,
            })?;
        let (read, write) = stream.into_split();
        let mut read = BufReader::with_capacity(128 << 10, read);
        let mut buf = Vec::new();
        let name = match wire::read_frame(&mut read, &mut buf).await {
            Ok(Some(Frame::Hello { name })) => name,
            Ok(Some(other)) => return Err(ClientError::Greeting(format!("{other:?}"))),
            Ok(None) => return Err(ClientError::Greeting("connection closed".into())),
            Err(e) => return Err(ClientError::Greeting(e.to_string())),
        };
        let (outgoing, rx) = mpsc::channel(OUTGOING_FRAMES_MAX);
        // Room for a whole window: the reader never waits on the inbox, so answers to sends
        // are never held up behind deliveries.
        let (inbox_tx, inbox) = mpsc::channel(RECEIVE_WINDOW_MAX as usize);
        let shared = Arc::new(Shared {
            name,
            next_id: AtomicU64::new(1),
            receiving: AtomicBool::new(false),
            window: std::sync::atomic::AtomicU32::new(RECEIVE_WINDOW_DEFAULT),
            pending: Mutex::new(PendingTable::default()),
            outgoing,
            inbox: tokio::sync::Mutex::new(Inbox {
                rx: inbox,
                taken: 0,
            }),
        });
        tokio::spawn(write_loop(BufWriter::with_capacity(128 << 10, write), rx));
        tokio::spawn(read_loop(read, buf, Arc::downgrade(&shared), inbox_tx));
        Ok(Client { shared })
    }

    /// This enclave's name, as the mediator knows it (the name receivers see).
    pub fn name(&self) -> &str {
        &self.shared.name
    }

    /// Sends `bytes` to enclave `to`; returns once the mediator has queued it (or refused it:
    /// [`SendError::is_queue_full`] is back-pressure).
    pub async fn send(&self, to: &str, bytes: &[u8]) -> Result<Sent, SendError> {
        wire::check_name("to", to).map_err(|e| SendError::Invalid(e.to_string()))?;
        if bytes.len() > wire::PAYLOAD_BYTES_MAX {
            return Err(SendError::Invalid(
                WireError::Payload(bytes.len()).to_string(),
            ));
        }
        let id = self.shared.next_id.fetch_add(1, Ordering::Relaxed);
        let (accepted_tx, accepted) = oneshot::channel();
        let (done_tx, done) = oneshot::channel();
        {
            let mut table = lock(&self.shared.pending);
            if table.closed {
                return Err(SendError::Closed);
            }
            table.by_id.insert(
                id,
                Pending {
                    accepted: Some(accepted_tx),
                    done: Some(done_tx),
                },
            );
        }
        let frame = Frame::Send {
            id,
            to: to.to_string(),
            payload: bytes.to_vec(),
        };
        if self.shared.outgoing.send(frame).await.is_err() {
            lock(&self.shared.pending).by_id.remove(&id);
            return Err(SendError::Closed);
        }
        accepted.await.unwrap_or(Err(SendError::Closed))?;
        Ok(Sent { id, done })
    }

    /// Sets the receive window (1..=1024, clamped) before the first [`Client::recv`]: how many
    /// messages the mediator may hand over ahead of the application. Small windows keep the
    /// queueing in the mediator's fair queues; large ones suit bulk transfer.
    pub fn set_receive_window(&self, window: u32) {
        self.shared
            .window
            .store(window.clamp(1, RECEIVE_WINDOW_MAX), Ordering::Relaxed);
    }

    /// The next message for this enclave and its sender's name. The first call asks the
    /// mediator to deliver on this connection. What this returns is credited back to the
    /// mediator (at once when nothing more is buffered, else every half window): only then is
    /// the sender told its message was delivered.
    pub async fn recv(&self) -> Result<(String, Vec<u8>), ClientError> {
        let mut inbox = self.shared.inbox.lock().await;
        let window = self.shared.window.load(Ordering::Relaxed);
        if !self.shared.receiving.swap(true, Ordering::Relaxed) {
            self.shared
                .outgoing
                .send(Frame::Receive { window })
                .await
                .map_err(|_| ClientError::Closed)?;
        }
        let m = inbox.rx.recv().await.ok_or(ClientError::Closed)?;
        inbox.taken += 1;
        // Credit at once when nothing else is buffered (the sender learns of the delivery
        // promptly), else every half window (few frames under load).
        if inbox.rx.is_empty() || inbox.taken >= (window / 2).max(1) {
            let n = std::mem::take(&mut inbox.taken);
            self.shared
                .outgoing
                .send(Frame::Credit { n })
                .await
                .map_err(|_| ClientError::Closed)?;
        }
        Ok(m)
    }
}

fn lock(m: &Mutex<PendingTable>) -> std::sync::MutexGuard<'_, PendingTable> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

async fn write_loop(mut w: BufWriter<OwnedWriteHalf>, mut rx: mpsc::Receiver<Frame>) {
    let mut bytes = Vec::with_capacity(wire::FRAME_BYTES_MAX + 4);
    while let Some(frame) = rx.recv().await {
        let mut next = Some(frame);
        while let Some(f) = next.take() {
            bytes.clear();
            if f.encode(&mut bytes).is_err() || w.write_all(&bytes).await.is_err() {
                return;
            }
            next = rx.try_recv().ok();
        }
        if w.flush().await.is_err() {
            return;
        }
    }
}

async fn read_loop(
    mut r: BufReader<OwnedReadHalf>,
    mut buf: Vec<u8>,
    shared: std::sync::Weak<Shared>,
    inbox: mpsc::Sender<(String, Vec<u8>)>,
) {
    loop {
        let frame = match wire::read_frame(&mut r, &mut buf).await {
            Ok(Some(f)) => f,
            Ok(None) | Err(_) => break,
        };
        let Some(shared) = shared.upgrade() else {
            return;
        };
        match frame {
            Frame::Accepted { id } => {
                let mut t = lock(&shared.pending);
                if let Some(tx) = t.by_id.get_mut(&id).and_then(|p| p.accepted.take()) {
                    let _ = tx.send(Ok(()));
                }
            }
            Frame::Refused { id, code, reason } => {
                let p = lock(&shared.pending).by_id.remove(&id);
                if let Some(tx) = p.and_then(|p| p.accepted) {
                    let _ = tx.send(Err(SendError::Refused { code, reason }));
                }
            }
            Frame::Done {
                id,
                outcome,
                reason,
            } => {
                let p = lock(&shared.pending).by_id.remove(&id);
                // A mediator answers ACCEPTED before DONE; should a DONE come first, the
                // message was evidently accepted.
                let mut p = p;
                if let Some(tx) = p.as_mut().and_then(|p| p.accepted.take()) {
                    let _ = tx.send(Ok(()));
                }
                if let Some(tx) = p.and_then(|p| p.done) {
                    let _ = tx.send(match outcome {
                        Outcome::Delivered => Ok(()),
                        Outcome::Failed => Err(DeliveryError::Failed(reason)),
                    });
                }
            }
            Frame::Deliver { from, payload } => {
                // The window bounds deliveries to the inbox's room: a mediator that overruns
                // it breaks the protocol.
                if inbox.try_send((from, payload)).is_err() && !inbox.is_closed() {
                    break;
                }
            }
            // A mediator never sends these twice or in this direction: end the connection.
            Frame::Hello { .. }
            | Frame::Send { .. }
            | Frame::Relay { .. }
            | Frame::Receive { .. }
            | Frame::Credit { .. } => break,
        }
    }
    // The connection is gone: every accepted, undelivered message is reported failed, every
    // waiting send is told, and nothing is added after this.
    if let Some(shared) = shared.upgrade() {
        let pending = {
            let mut t = lock(&shared.pending);
            t.closed = true;
            std::mem::take(&mut t.by_id)
        };
        for (_, p) in pending {
            if let Some(tx) = p.accepted {
                let _ = tx.send(Err(SendError::Closed));
            }
            if let Some(tx) = p.done {
                let _ = tx.send(Err(DeliveryError::ConnectionLost));
            }
        }
    }
}
