//! The write batcher: queued writes become Raft entries of at most 1024 commands or about
//! 1 MiB, with up to 16 entries in flight (pipelining) and a bounded queue behind them
//! (back-pressure).

use std::sync::Arc;

use openraft::error::{ClientWriteError, RaftError};
use tokio::sync::{Semaphore, mpsc, oneshot};

use crate::raft::{Raft, Request};
use crate::state::{Command, Outcome};

/// Largest number of commands one Raft entry carries.
const BATCH_COMMANDS_MAX: usize = 1024;
/// A batch stops growing at about this many bytes ([`Command::approx_bytes`]), so no entry is
/// large enough to hold up heartbeats behind it (a single larger command is bounded by the API).
const BATCH_BYTES_MAX: usize = 1024 * 1024;
/// Batches proposed but not yet committed, at most: bounds memory under overload.
const BATCHES_IN_FLIGHT_MAX: usize = 16;
/// Queue of writes waiting for a batch slot; when full, callers wait (back-pressure).
pub(super) const WRITE_QUEUE_MAX: usize = 16 * 1024;

pub(super) struct Pending {
    pub(super) cmd: Command,
    pub(super) reply: oneshot::Sender<Result<Outcome, SubmitError>>,
}

#[derive(Debug, Clone)]
pub(super) enum SubmitError {
    NotLeader,
    Failed(String),
}

/// Groups queued writes into Raft entries. Several batches may be in flight at once
/// (pipelining); while they are, new writes queue up and form the next batch.
pub(super) async fn batch_writes(raft: Raft, mut rx: mpsc::Receiver<Pending>) {
    let slots = Arc::new(Semaphore::new(BATCHES_IN_FLIGHT_MAX));
    // A write that would have made the previous batch too large starts the next one.
    let mut carried: Option<Pending> = None;
    loop {
        let first = match carried.take() {
            Some(p) => p,
            None => match rx.recv().await {
                Some(p) => p,
                None => return,
            },
        };
        let Ok(permit) = slots.clone().acquire_owned().await else {
            return;
        };
        let mut bytes = first.cmd.approx_bytes();
        let mut batch = vec![first];
        while batch.len() < BATCH_COMMANDS_MAX && bytes < BATCH_BYTES_MAX {
            match rx.try_recv() {
                Ok(p) => {
                    let more = p.cmd.approx_bytes();
                    if bytes + more > BATCH_BYTES_MAX {
                        carried = Some(p);
                        break;
                    }
                    bytes += more;
                    batch.push(p);
                }
                Err(_) => break,
            }
        }
        let raft = raft.clone();
        tokio::spawn(async move {
            let (cmds, replies): (Vec<Command>, Vec<_>) =
                batch.into_iter().map(|p| (p.cmd, p.reply)).unzip();
            let n = cmds.len();
            let result = raft.client_write(Request(cmds)).await;
            drop(permit);
            match result {
                Ok(resp) => {
                    let outcomes = resp.data.0;
                    debug_assert_eq!(outcomes.len(), n, "one outcome per command");
                    for (reply, o) in replies.into_iter().zip(outcomes) {
                        let _ = reply.send(Ok(o));
                    }
                }
                Err(RaftError::APIError(ClientWriteError::ForwardToLeader(_))) => {
                    for reply in replies {
                        let _ = reply.send(Err(SubmitError::NotLeader));
                    }
                }
                Err(e) => {
                    let msg = e.to_string();
                    for reply in replies {
                        let _ = reply.send(Err(SubmitError::Failed(msg.clone())));
                    }
                }
            }
        });
    }
}
