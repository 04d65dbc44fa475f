//! The write batcher: queued writes become Raft entries of at most 1024 commands or about
//! 1 MiB, with up to 2 entries in flight (pipelining) and a bounded queue behind them
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
/// Batches proposed but not yet committed, at most: bounds memory under overload, and sets how
/// large batches grow under load. openraft 0.9's core appends each entry on its own and waits
/// for its `fdatasync` before it handles anything else (`RaftCore::append_to_log`), so the
/// leader's log writer cannot group entries: every batch in flight costs the leader one fsync.
/// With 16 in flight, 64 writers made batches of ~4 writes and the leader ~580 fsyncs/s, its
/// log writer always busy (bench/README.md, 2026-12-03 write path); with 2, the writers queue
/// behind the batches in flight and the next batch carries them all, while the leader's fsync
/// of one batch still overlaps the followers' of the one before (measured: 1 in flight 1.35×
/// etcd's writes/s at 64 writers, 2 1.27–1.49×, 4 1.12×, 16 0.70×).
///
/// Still 16: with 2 or 4, `tribune bench ingest` (100 agents' usage digests, 100,000
/// reports/s offered) stalled — acknowledgements stopped at ~40% of the reports for the last
/// 25 s of the run (21,000–35,000 reports/s verified) — where 16 acknowledged every report
/// (75,000/s; bench/README.md, second-session reruns). The batches in flight are what lets the
/// batcher ride out a slow commit or an election; a smaller bound has to come with a change
/// that keeps ingest live (e.g. one bound for policy writes and another for the streams').
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

/// One batch: `first` and the writes queued behind it (taken without waiting), at most
/// [`BATCH_COMMANDS_MAX`] commands and [`BATCH_BYTES_MAX`] bytes — a single larger write goes
/// alone. The write that would have made it too large is returned, to start the next batch.
fn fill_batch(first: Pending, rx: &mut mpsc::Receiver<Pending>) -> (Vec<Pending>, Option<Pending>) {
    let mut bytes = first.cmd.approx_bytes();
    let mut batch = vec![first];
    let mut carried = None;
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
    let m = crate::metrics::get();
    m.raft_batch_commands.observe(batch.len() as f64);
    m.raft_batch_bytes.observe(bytes as f64);
    debug_assert!(
        batch.len() <= BATCH_COMMANDS_MAX && (batch.len() == 1 || bytes <= BATCH_BYTES_MAX),
        "a batch is bounded: {} commands, {bytes} bytes",
        batch.len()
    );
    (batch, carried)
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
        let (batch, next) = fill_batch(first, &mut rx);
        carried = next;
        let raft = raft.clone();
        tokio::spawn(async move {
            let (cmds, replies): (Vec<Command>, Vec<_>) =
                batch.into_iter().map(|p| (p.cmd, p.reply)).unzip();
            let n = cmds.len();
            let result = raft.client_write(Request::new(cmds)).await;
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::state::Expect;

    /// A write of about `bytes` bytes ([`Command::approx_bytes`]), named `n`.
    fn pending(n: usize, bytes: usize) -> Pending {
        let (reply, _) = oneshot::channel();
        let cmd = Command::PutPolicy {
            name: format!("p{n}"),
            source: String::new(),
            expect: Expect::Any,
            actor: String::new(),
            at_ms: 0,
        };
        let fixed = cmd.approx_bytes();
        let cmd = Command::PutPolicy {
            name: format!("p{n}"),
            source: "x".repeat(bytes.saturating_sub(fixed)),
            expect: Expect::Any,
            actor: String::new(),
            at_ms: 0,
        };
        Pending { cmd, reply }
    }

    fn name(p: &Pending) -> String {
        match &p.cmd {
            Command::PutPolicy { name, .. } => name.clone(),
            _ => String::new(),
        }
    }

    /// Queues writes of the given sizes, then cuts them into batches: the names per batch.
    fn batches(sizes: &[usize]) -> Vec<Vec<String>> {
        let (tx, mut rx) = mpsc::channel(sizes.len().max(1));
        for (n, &b) in sizes.iter().enumerate() {
            assert!(tx.try_send(pending(n, b)).is_ok());
        }
        let mut out = Vec::new();
        let mut carried = None;
        while let Some(first) = carried.take().or_else(|| rx.try_recv().ok()) {
            let (batch, next) = fill_batch(first, &mut rx);
            out.push(batch.iter().map(name).collect());
            carried = next;
        }
        out
    }

    #[test]
    fn a_batch_holds_at_most_1024_commands() {
        let b = batches(&[300; 2500]);
        let lens: Vec<usize> = b.iter().map(Vec::len).collect();
        assert_eq!(lens, [1024, 1024, 452]);
        // In order, none lost, none twice.
        let all: Vec<String> = b.into_iter().flatten().collect();
        let want: Vec<String> = (0..2500).map(|n| format!("p{n}")).collect();
        assert_eq!(all, want);
    }

    #[test]
    fn a_batch_holds_about_1_mib_and_a_larger_write_goes_alone() {
        let mib = BATCH_BYTES_MAX;
        let b = batches(&[mib / 2, mib / 2, 1, 2 * mib, mib / 3, mib / 3, mib / 3, 1]);
        assert_eq!(
            b,
            [
                vec!["p0", "p1"],
                vec!["p2"],
                vec!["p3"],
                vec!["p4", "p5", "p6"],
                vec!["p7"]
            ]
        );
        assert_eq!(batches(&[5]), [vec!["p0"]]);
    }
}
