//! A small async QMP client (QEMU Machine Protocol: JSON lines over a unix socket).
//!
//! Our own rather than `qapi`: we need six commands, and QMP is a greeting, one handshake and
//! then `{"execute"}` → `{"return"}` | `{"error"}` with `{"event"}` lines in between.

use std::collections::VecDeque;
use std::path::Path;
use std::time::Duration;

use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::UnixStream;
use tokio::net::unix::{OwnedReadHalf, OwnedWriteHalf};

use crate::error::{AgentError, Result};

/// Most asynchronous events kept (oldest dropped).
pub const EVENTS_MAX: usize = 64;
/// Longest wait for one reply.
pub const REPLY_TIMEOUT: Duration = Duration::from_secs(10);
/// Longest reply line accepted.
const LINE_BYTES_MAX: usize = 1 << 20;

pub struct Qmp {
    reader: BufReader<OwnedReadHalf>,
    writer: OwnedWriteHalf,
    events: VecDeque<Value>,
}

/// `query-status`.
#[derive(Clone, Debug, PartialEq, Eq, serde::Deserialize)]
pub struct VmStatus {
    pub status: String,
    pub running: bool,
}

impl Qmp {
    /// Connects (retrying until `timeout` while QEMU creates the socket) and negotiates.
    pub async fn connect(path: &Path, timeout: Duration) -> Result<Qmp> {
        let deadline = tokio::time::Instant::now() + timeout;
        let stream = loop {
            match UnixStream::connect(path).await {
                Ok(s) => break s,
                Err(e) if tokio::time::Instant::now() < deadline => {
                    tracing::trace!("QMP connect {}: {e}", path.display());
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
                Err(e) => return Err(AgentError::io("connect QMP", path, e)),
            }
        };
        let (r, w) = stream.into_split();
        let mut q = Qmp {
            reader: BufReader::new(r),
            writer: w,
            events: VecDeque::new(),
        };
        let greeting = q.read_line().await?;
        if greeting.get("QMP").is_none() {
            return Err(AgentError::Qmp(format!("unexpected greeting {greeting}")));
        }
        q.execute("qmp_capabilities", None).await?;
        Ok(q)
    }

    async fn read_line(&mut self) -> Result<Value> {
        let mut line = String::new();
        let n = tokio::time::timeout(REPLY_TIMEOUT, self.reader.read_line(&mut line))
            .await
            .map_err(|_| AgentError::Qmp("timed out waiting for QEMU".into()))?
            .map_err(|e| AgentError::Qmp(format!("read: {e}")))?;
        if n == 0 {
            return Err(AgentError::Qmp("QEMU closed the QMP socket".into()));
        }
        if n > LINE_BYTES_MAX {
            return Err(AgentError::Qmp(format!("reply of {n} bytes")));
        }
        serde_json::from_str(&line).map_err(|e| AgentError::Qmp(format!("bad JSON {line:?}: {e}")))
    }

    /// Runs one command and returns its `return` value.
    pub async fn execute(&mut self, command: &str, arguments: Option<Value>) -> Result<Value> {
        let text = command_line(command, arguments);
        self.writer
            .write_all(text.as_bytes())
            .await
            .map_err(|e| AgentError::Qmp(format!("write: {e}")))?;
        self.reply(command).await
    }

    /// Hands `fd` to QEMU under `name` (QMP `getfd`: the command and the descriptor travel in
    /// one message, `SCM_RIGHTS`), for a later `fd:NAME` on this same monitor. QEMU holds its
    /// own copy: the caller may close `fd` once this returns.
    pub async fn pass_fd(&mut self, name: &str, fd: std::os::fd::BorrowedFd<'_>) -> Result<()> {
        use rustix::net::{SendAncillaryBuffer, SendAncillaryMessage, SendFlags, sendmsg};
        let text = command_line("getfd", Some(json!({ "fdname": name })));
        let stream: &UnixStream = self.writer.as_ref();
        loop {
            stream
                .writable()
                .await
                .map_err(|e| AgentError::Qmp(format!("getfd: {e}")))?;
            let sent = stream.try_io(tokio::io::Interest::WRITABLE, || {
                let fds = [fd];
                let mut space =
                    [std::mem::MaybeUninit::uninit(); rustix::cmsg_space!(ScmRights(1))];
                let mut control = SendAncillaryBuffer::new(&mut space);
                control.push(SendAncillaryMessage::ScmRights(&fds));
                sendmsg(
                    stream,
                    &[std::io::IoSlice::new(text.as_bytes())],
                    &mut control,
                    SendFlags::NOSIGNAL,
                )
                .map_err(std::io::Error::from)
            });
            match sent {
                Ok(n) if n == text.len() => break,
                Ok(n) => {
                    return Err(AgentError::Qmp(format!(
                        "getfd: sent {n} of {} bytes",
                        text.len()
                    )));
                }
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => continue,
                Err(e) => return Err(AgentError::Qmp(format!("getfd: {e}"))),
            }
        }
        self.reply("getfd").await.map(|_| ())
    }

    /// The reply to `command` (events that come first are kept).
    async fn reply(&mut self, command: &str) -> Result<Value> {
        loop {
            let v = self.read_line().await?;
            if let Some(r) = v.get("return") {
                return Ok(r.clone());
            }
            if let Some(e) = v.get("error") {
                return Err(AgentError::Qmp(format!("{command}: {e}")));
            }
            if v.get("event").is_some() {
                if self.events.len() == EVENTS_MAX {
                    self.events.pop_front();
                }
                self.events.push_back(v);
            }
        }
    }

    pub async fn query_status(&mut self) -> Result<VmStatus> {
        let v = self.execute("query-status", None).await?;
        serde_json::from_value(v).map_err(|e| AgentError::Qmp(format!("query-status: {e}")))
    }

    /// Pauses every vCPU.
    pub async fn stop(&mut self) -> Result<()> {
        self.execute("stop", None).await.map(|_| ())
    }

    pub async fn cont(&mut self) -> Result<()> {
        self.execute("cont", None).await.map(|_| ())
    }

    /// Asks QEMU to exit; the socket closes right after the reply (or before it).
    pub async fn quit(&mut self) -> Result<()> {
        match self.execute("quit", None).await {
            Ok(_) => Ok(()),
            Err(AgentError::Qmp(m)) if m.contains("closed") => Ok(()),
            Err(e) => Err(e),
        }
    }

    /// Starts an outgoing migration to `uri` (e.g. `tcp:10.0.0.2:4444`, or `fd:NAME` after
    /// [`Qmp::pass_fd`]); poll `query-migrate`.
    pub async fn migrate(&mut self, uri: &str) -> Result<()> {
        self.execute("migrate", Some(json!({ "uri": uri })))
            .await
            .map(|_| ())
    }

    pub async fn query_migrate(&mut self) -> Result<Value> {
        self.execute("query-migrate", None).await
    }

    /// Starts taking an incoming migration on `uri` (a VM started with `-incoming defer`).
    pub async fn migrate_incoming(&mut self, uri: &str) -> Result<()> {
        self.execute("migrate-incoming", Some(json!({ "uri": uri })))
            .await
            .map(|_| ())
    }

    /// Events seen so far (oldest first), drained.
    pub fn take_events(&mut self) -> Vec<Value> {
        self.events.drain(..).collect()
    }
}

/// One command as QMP's JSON line.
fn command_line(command: &str, arguments: Option<Value>) -> String {
    let mut msg = json!({ "execute": command });
    if let Some(a) = arguments {
        msg["arguments"] = a;
    }
    let mut text = msg.to_string();
    text.push('\n');
    text
}
