//! The mediator's state under one lock: the talk table, one fair-queued inbox per enclave,
//! the refusal log and the counters. No I/O and no `.await`: the socket side (`server.rs`)
//! calls in, gets back what to tell whom, and does the telling.
//!
//! Every accepted message is in exactly one place until it ends: queued in its receiver's
//! inbox, or taken by a receiving connection's writer, which reports it delivered or failed.
//! Whatever takes a message out of an inbox any other way (a removed enclave, a changed rule,
//! shutdown) returns it as a [`Failure`] for the caller to report.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Instant;

use tribune_msg::wire::{Frame, RefusalCode};

use super::admission::{Refusal, TalkTable};
use super::bucket::{RefusalLog, TokenBucket, Verdict};
use super::fq::{Bounds, FlowId, Refused, Scheduler};

/// Refusal log lines: a burst of 5 per (sender, receiver) pair, then one a second.
const REFUSAL_LOG_BURST: u32 = 5;
const REFUSAL_LOG_PER_S: u32 = 1;
const REFUSAL_LOG_PAIRS_MAX: usize = 4096;

/// One enclave connection's outgoing side, shared by its reader, its writer and every inbox
/// holding a message it sent (to report the outcome).
#[derive(Debug)]
pub struct Conn {
    /// The enclave this connection's socket is bound to.
    pub enclave: String,
    out: std::sync::Mutex<std::collections::VecDeque<Frame>>,
    /// Wakes the writer: frames to write or messages to deliver.
    pub wake: tokio::sync::Notify,
    /// Wakes the reader when the writer has drained `out`.
    pub drained: tokio::sync::Notify,
    closed: AtomicBool,
    receiving: AtomicBool,
    /// Messages it may still be handed (its receive window, topped up by CREDIT).
    credit: AtomicU64,
    /// Messages written to it that its application has not taken yet (no CREDIT for them):
    /// (sender, id, payload bytes), oldest first. At most its window.
    in_flight: std::sync::Mutex<std::collections::VecDeque<(Arc<Conn>, u64, usize)>>,
    /// Set by its writer when it has flushed its last frame and ended.
    writer_done: AtomicBool,
}

impl Conn {
    pub fn new(enclave: &str) -> Arc<Conn> {
        Arc::new(Conn {
            enclave: enclave.to_string(),
            out: Default::default(),
            wake: tokio::sync::Notify::new(),
            drained: tokio::sync::Notify::new(),
            closed: AtomicBool::new(false),
            receiving: AtomicBool::new(false),
            credit: AtomicU64::new(0),
            in_flight: Default::default(),
            writer_done: AtomicBool::new(false),
        })
    }

    /// Queues a frame for the writer (dropped once the connection is closed).
    pub fn push(&self, f: Frame) {
        if self.is_closed() {
            return;
        }
        self.out
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push_back(f);
        self.wake.notify_one();
    }

    /// Everything queued for the writer.
    pub fn take_frames(&self) -> Vec<Frame> {
        self.out
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .drain(..)
            .collect()
    }

    /// Frames waiting for the writer.
    pub fn pending_frames(&self) -> usize {
        self.out.lock().unwrap_or_else(|p| p.into_inner()).len()
    }

    pub fn close(&self) {
        self.closed.store(true, Ordering::Release);
        self.wake.notify_one();
        self.drained.notify_waiters();
    }

    /// Its writer has ended (everything queued before `close` was written and flushed, or the
    /// connection broke).
    pub fn writer_done(&self) -> bool {
        self.writer_done.load(Ordering::Acquire)
    }

    pub fn set_writer_done(&self) {
        self.writer_done.store(true, Ordering::Release);
    }

    pub fn is_closed(&self) -> bool {
        self.closed.load(Ordering::Acquire)
    }

    pub fn is_receiving(&self) -> bool {
        self.receiving.load(Ordering::Acquire)
    }

    /// Messages it may be handed now.
    pub fn credit(&self) -> u64 {
        self.credit.load(Ordering::Acquire)
    }

    /// Messages written to this connection, waiting for its application to take them.
    pub fn written(&self, sender: Arc<Conn>, id: u64, bytes: usize) {
        self.in_flight
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push_back((sender, id, bytes));
    }

    /// The receiver's application took `n` more messages: the oldest `n` written are
    /// delivered (returned as (sender, id, bytes) for the caller to report), and `n` more may
    /// be handed over (bounded: a lying client gets at most `u32::MAX` ahead, which its own
    /// memory pays for, not ours).
    pub fn credited(&self, n: u32) -> Vec<(Arc<Conn>, u64, usize)> {
        let taken: Vec<_> = {
            let mut q = self.in_flight.lock().unwrap_or_else(|p| p.into_inner());
            let k = (n as usize).min(q.len());
            q.drain(..k).collect()
        };
        self.add_credit(n);
        taken
    }

    /// Everything written but never taken (the connection is gone), to be reported failed.
    pub fn take_in_flight(&self) -> Vec<(Arc<Conn>, u64, usize)> {
        self.in_flight
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .drain(..)
            .collect()
    }

    /// `n` more messages may be handed to it (a forwarder to another host: one of its relayed
    /// messages ended).
    pub fn grant(&self, n: u32) {
        self.add_credit(n);
    }

    fn add_credit(&self, n: u32) {
        let _ = self
            .credit
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |c| {
                Some((c + u64::from(n)).min(u64::from(u32::MAX)))
            });
        self.wake.notify_one();
    }
}

/// A message in an inbox.
#[derive(Debug)]
pub struct Queued {
    pub sender: Arc<Conn>,
    pub id: u64,
    pub payload: Vec<u8>,
    pub queued_at: Instant,
    /// Relayed from another host: how long it queued there first (its RELAY said).
    pub queued_before: Option<std::time::Duration>,
}

/// A message taken out of an inbox undelivered: tell its sender.
#[derive(Debug)]
pub struct Failure {
    pub message: Queued,
    pub reason: String,
}

impl Failure {
    /// Reports it to the sender (`DONE failed`).
    pub fn report(self) {
        self.message.sender.push(Frame::Done {
            id: self.message.id,
            outcome: tribune_msg::wire::Outcome::Failed,
            reason: self.reason,
        });
    }
}

/// Per-enclave message counters (cumulative since the agent started).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct Counters {
    /// Messages it sent that were accepted, and their payload bytes.
    pub sent_messages: u64,
    pub sent_bytes: u64,
    /// Messages delivered to it, and their payload bytes.
    pub received_messages: u64,
    pub received_bytes: u64,
    /// Its messages refused by the talk rules (either side) or as unknown.
    pub refused_messages: u64,
    /// Its messages refused because its queue to the receiver was full.
    pub queue_full_messages: u64,
    /// Its messages refused because it was over the rate its plan holds it to.
    pub rate_limited_messages: u64,
    /// Every message of its not accepted, for any reason, and their payload bytes (what its
    /// usage reports count as refused).
    pub unaccepted_messages: u64,
    pub unaccepted_bytes: u64,
}

#[derive(Debug)]
struct Inbox {
    fq: Scheduler<Queued>,
    flows: HashMap<String, FlowId>,
    /// Flow index → sender name.
    senders: Vec<Option<String>>,
    receiver: Option<Arc<Conn>>,
}

impl Inbox {
    fn new(fq: Scheduler<Queued>) -> Inbox {
        Inbox {
            fq,
            flows: HashMap::new(),
            senders: Vec::new(),
            receiver: None,
        }
    }

    fn drain_all(&mut self, reason: &str) -> Vec<Failure> {
        let ids: Vec<FlowId> = self.flows.values().copied().collect();
        let mut out = Vec::new();
        for id in ids {
            out.extend(self.remove_flow(id, reason));
        }
        out
    }

    fn remove_flow(&mut self, id: FlowId, reason: &str) -> Vec<Failure> {
        if let Some(name) = self.senders.get_mut(id.index()).and_then(Option::take) {
            self.flows.remove(&name);
        }
        self.fq
            .remove_flow(id)
            .unwrap_or_default()
            .into_iter()
            .map(|message| Failure {
                message,
                reason: reason.to_string(),
            })
            .collect()
    }
}

/// Why the hub could not be made.
pub use super::fq::BoundsError;

/// The mediator's state.
#[derive(Debug)]
pub struct Hub {
    bounds: Bounds,
    table: TalkTable,
    inboxes: HashMap<String, Inbox>,
    refusals: RefusalLog,
    counters: BTreeMap<String, Counters>,
    /// The token bucket of each rate-limited sender (the table's rate, and its bucket).
    rates: HashMap<String, (u64, TokenBucket)>,
    epoch: Instant,
}

/// What became of a SEND (its answer is already queued on the sender's connection).
#[derive(Debug)]
pub enum Sent {
    /// Queued; wake this receiving connection, if any.
    Accepted(Option<Arc<Conn>>),
    /// Refused with a code and a reason for the sender.
    Refused(RefusalCode, String),
}

impl Hub {
    pub fn new(bounds: Bounds) -> Result<Hub, BoundsError> {
        bounds.validate()?;
        Ok(Hub {
            bounds,
            table: TalkTable::default(),
            inboxes: HashMap::new(),
            refusals: RefusalLog::new(REFUSAL_LOG_BURST, REFUSAL_LOG_PER_S, REFUSAL_LOG_PAIRS_MAX),
            counters: BTreeMap::new(),
            rates: HashMap::new(),
            epoch: Instant::now(),
        })
    }

    /// A new table (a new plan): inboxes for new enclaves; the inboxes of enclaves that left
    /// are dropped; every queued flow is admitted again and moved to its new class and weight,
    /// or dropped if the rules no longer allow it (fail safe). Returns what was dropped.
    pub fn set_table(&mut self, table: TalkTable) -> Vec<Failure> {
        let mut failed = Vec::new();
        let gone: Vec<String> = self
            .inboxes
            .keys()
            .filter(|n| !table.contains(n))
            .cloned()
            .collect();
        for name in gone {
            if let Some(mut inbox) = self.inboxes.remove(&name) {
                failed.extend(inbox.drain_all(&format!("{name:?} left this host")));
            }
            self.counters.remove(&name);
        }
        for name in table.names() {
            if !self.inboxes.contains_key(name) {
                // The bounds were validated in `Hub::new`, so this cannot fail.
                if let Ok(fq) = Scheduler::new(self.bounds) {
                    self.inboxes.insert(name.to_string(), Inbox::new(fq));
                }
            }
        }
        for (to, inbox) in &mut self.inboxes {
            let flows: Vec<(String, FlowId)> =
                inbox.flows.iter().map(|(n, f)| (n.clone(), *f)).collect();
            for (from, id) in flows {
                match table.admit(&from, to) {
                    Ok(a) => {
                        let _ = inbox.fq.set_flow(id, a.class, a.weight);
                    }
                    Err(why) => {
                        failed.extend(inbox.remove_flow(id, &format!("talk rules changed: {why}")))
                    }
                }
            }
        }
        // Rate limits: a sender whose rate is unchanged keeps its bucket (a new plan does not
        // refill it); a new or changed rate starts a full bucket of one second's worth.
        let now_ms = self.now_ms();
        self.rates
            .retain(|name, (per_s, _)| table.rate_of(name) == Some(*per_s));
        for name in table.names() {
            if let Some(per_s) = table.rate_of(name)
                && !self.rates.contains_key(name)
            {
                let per_s_u32 = u32::try_from(per_s).unwrap_or(u32::MAX);
                self.rates.insert(
                    name.to_string(),
                    (per_s, TokenBucket::new(per_s_u32, per_s_u32, now_ms)),
                );
            }
        }
        self.table = table;
        failed
    }

    fn now_ms(&self) -> u64 {
        self.epoch.elapsed().as_millis() as u64
    }

    /// A SEND from `sender` (the connection's bound enclave) to `to`. The answer (ACCEPTED or
    /// REFUSED) is queued on `sender` here, under the hub's lock, so it always goes out before
    /// the DONE of a delivery that can only start after the lock is released.
    pub fn send(&mut self, sender: &Arc<Conn>, id: u64, to: &str, payload: Vec<u8>) -> Sent {
        let from = sender.enclave.clone();
        self.relay(sender, &from, id, to, payload, None)
    }

    /// A message from enclave `from` whose answers go to `sender`: a local enclave's own
    /// connection (`from` is its bound name, [`Hub::send`]), or the link from the agent of the
    /// host the controllers placed `from` on (checked first: `TalkTable::check_relay`).
    pub fn relay(
        &mut self,
        sender: &Arc<Conn>,
        from: &str,
        id: u64,
        to: &str,
        payload: Vec<u8>,
        queued_before: Option<std::time::Duration>,
    ) -> Sent {
        let bytes = payload.len() as u64;
        let sent = self.admit_and_queue(sender, from, id, to, payload, queued_before);
        if let Sent::Refused(..) = sent {
            let c = self.counters.entry(from.to_string()).or_default();
            c.unaccepted_messages += 1;
            c.unaccepted_bytes += bytes;
        }
        sender.push(match &sent {
            Sent::Accepted(_) => Frame::Accepted { id },
            Sent::Refused(code, reason) => Frame::Refused {
                id,
                code: *code,
                reason: reason.clone(),
            },
        });
        sent
    }

    fn admit_and_queue(
        &mut self,
        sender: &Arc<Conn>,
        from: &str,
        id: u64,
        to: &str,
        payload: Vec<u8>,
        queued_before: Option<std::time::Duration>,
    ) -> Sent {
        let admit = match self.table.admit(from, to) {
            Ok(a) => a,
            Err(why) => {
                self.refused(from, to, &why);
                return Sent::Refused(why.code(), why.to_string());
            }
        };
        let now_ms = self.now_ms();
        if let Some((per_s, bucket)) = self.rates.get_mut(from)
            && !bucket.take(now_ms)
        {
            let per_s = *per_s;
            self.counters
                .entry(from.to_string())
                .or_default()
                .rate_limited_messages += 1;
            return Sent::Refused(
                RefusalCode::RateLimited,
                format!("you are held to {per_s} messages a second (throttled): try again later"),
            );
        }
        let Some(inbox) = self.inboxes.get_mut(to) else {
            let why = Refusal::UnknownReceiver(to.to_string());
            return Sent::Refused(why.code(), why.to_string());
        };
        let flow = match inbox.flows.get(from) {
            Some(f) => *f,
            None => match inbox.fq.add_flow(admit.class, admit.weight) {
                Ok(f) => {
                    inbox.flows.insert(from.to_string(), f);
                    if inbox.senders.len() <= f.index() {
                        inbox.senders.resize(f.index() + 1, None);
                    }
                    inbox.senders[f.index()] = Some(from.to_string());
                    f
                }
                Err(e) => return Sent::Refused(RefusalCode::QueueFull, e.to_string()),
            },
        };
        let bytes = payload.len();
        let message = Queued {
            sender: sender.clone(),
            id,
            payload,
            queued_at: Instant::now(),
            queued_before,
        };
        let counters = self.counters.entry(from.to_string()).or_default();
        match inbox.fq.enqueue(flow, message, bytes as u32) {
            Ok(()) => {
                counters.sent_messages += 1;
                counters.sent_bytes += bytes as u64;
                Sent::Accepted(inbox.receiver.clone())
            }
            Err(Refused::Full(_)) => {
                counters.queue_full_messages += 1;
                let (n, b) = inbox.fq.flow_queued(flow).unwrap_or_default();
                Sent::Refused(
                    RefusalCode::QueueFull,
                    format!(
                        "your queue to {to:?} is full ({n} messages, {b} bytes queued; at most {} and {}): try again later",
                        self.bounds.flow_messages_max, self.bounds.flow_bytes_max
                    ),
                )
            }
            Err(Refused::TooLarge(_)) => Sent::Refused(
                RefusalCode::TooLarge,
                format!(
                    "{bytes} bytes: this mediator takes at most {}",
                    self.bounds.message_bytes_max
                ),
            ),
            Err(Refused::UnknownFlow(_)) => {
                Sent::Refused(RefusalCode::UnknownReceiver, format!("no inbox for {to:?}"))
            }
        }
    }

    fn refused(&mut self, from: &str, to: &str, why: &Refusal) {
        self.counters
            .entry(from.to_string())
            .or_default()
            .refused_messages += 1;
        let now_ms = self.now_ms();
        if let Verdict::Log { left_out } = self.refusals.refused(from, to, now_ms) {
            tracing::warn!(
                from,
                to,
                code = why.code().name(),
                left_out,
                "message refused: {why}"
            );
        }
    }

    /// A connection of `enclave` closed for a bad frame or a read error (`why`): logged
    /// rate-limited per enclave like refusals (a guest or process that reconnects and writes
    /// garbage in a loop cannot flood the log), each line counting those left out.
    pub fn connection_failed(&mut self, enclave: &str, why: &str) {
        let now_ms = self.now_ms();
        // "" is no enclave's name: the key cannot meet a (sender, receiver) pair's.
        if let Verdict::Log { left_out } = self.refusals.refused(enclave, "", now_ms) {
            tracing::warn!(enclave, left_out, "mediator connection closed: {why}");
        }
    }

    /// A message relayed by the agent of `host` that may not enter this host (a sender not
    /// placed on `host`, a receiver not here): logged like a refusal by the rules.
    pub fn refused_relay(&mut self, host: &str, from: &str, to: &str, reason: &str) {
        let now_ms = self.now_ms();
        if let Verdict::Log { left_out } = self.refusals.refused(host, from, now_ms) {
            tracing::warn!(
                host,
                from,
                to,
                left_out,
                "relayed message refused: {reason}"
            );
        }
    }

    /// The talk table in force.
    pub fn table(&self) -> &TalkTable {
        &self.table
    }

    /// `conn` receives its enclave's messages from now on, `window` ahead of its credits (a
    /// newer receiving connection replaces an older).
    pub fn set_receiver(&mut self, conn: &Arc<Conn>, window: u32) {
        conn.credit.store(u64::from(window), Ordering::Release);
        conn.receiving.store(true, Ordering::Release);
        if let Some(inbox) = self.inboxes.get_mut(&conn.enclave)
            && let Some(old) = inbox.receiver.replace(conn.clone())
            && !Arc::ptr_eq(&old, conn)
        {
            old.receiving.store(false, Ordering::Release);
        }
        conn.wake.notify_one();
    }

    /// A connection ended.
    pub fn connection_closed(&mut self, conn: &Arc<Conn>) {
        conn.close();
        if let Some(inbox) = self.inboxes.get_mut(&conn.enclave)
            && inbox
                .receiver
                .as_ref()
                .is_some_and(|r| Arc::ptr_eq(r, conn))
        {
            inbox.receiver = None;
        }
    }

    /// Up to `messages_max` messages (and about `bytes_max` bytes: at least one), and no more
    /// than its credit, for `conn`'s enclave, in fair-queueing order, with their senders' names.
    /// Nothing unless `conn` is its enclave's receiving connection.
    pub fn take(
        &mut self,
        conn: &Arc<Conn>,
        messages_max: usize,
        bytes_max: usize,
    ) -> Vec<(String, Queued)> {
        let Some(inbox) = self.inboxes.get_mut(&conn.enclave) else {
            return Vec::new();
        };
        if !inbox
            .receiver
            .as_ref()
            .is_some_and(|r| Arc::ptr_eq(r, conn))
        {
            return Vec::new();
        }
        let messages_max = messages_max.min(usize::try_from(conn.credit()).unwrap_or(usize::MAX));
        let mut out = Vec::new();
        let mut bytes = 0;
        while out.len() < messages_max && bytes < bytes_max {
            let Some((flow, m)) = inbox.fq.dequeue() else {
                break;
            };
            bytes += m.payload.len();
            let from = inbox
                .senders
                .get(flow.index())
                .and_then(Clone::clone)
                .unwrap_or_default();
            out.push((from, m));
        }
        conn.credit.fetch_sub(out.len() as u64, Ordering::AcqRel);
        out
    }

    /// Counts a delivery to `to`.
    pub fn delivered(&mut self, to: &str, bytes: usize) {
        let c = self.counters.entry(to.to_string()).or_default();
        c.received_messages += 1;
        c.received_bytes += bytes as u64;
    }

    /// Every queued message, taken out to be reported failed (shutdown).
    pub fn drain(&mut self, reason: &str) -> Vec<Failure> {
        self.inboxes
            .values_mut()
            .flat_map(|i| i.drain_all(reason))
            .collect()
    }

    /// Per-enclave counters.
    pub fn counters(&self) -> BTreeMap<String, Counters> {
        self.counters.clone()
    }

    /// Messages and bytes queued in `to`'s inbox.
    pub fn queued(&self, to: &str) -> Option<(u64, u64)> {
        self.inboxes.get(to).map(|i| i.fq.queued())
    }
}

#[cfg(test)]
#[path = "hub_tests.rs"]
mod tests;
