//! Fair queueing of one receiver's inbox: strict priority classes above weighted deficit round
//! robin (DRR, Shreedhar & Varghese 1996). Pure: no I/O, no clock, no allocation per message
//! beyond the bounded queues themselves.
//!
//! Each sender is a *flow* with a priority class (0 is served first) and a weight (its
//! `talk … share N`). A flow's queue is bounded in messages and in bytes; a message that would
//! break either bound is refused and handed back ([`Refused::Full`]), so memory never grows past
//! `flows × flow_bytes_max`.
//!
//! Serving: [`Scheduler::dequeue`] takes the highest non-empty class (a bit mask, one
//! `trailing_zeros`), and inside it the flow at the front of the class's ring of backlogged
//! flows. At the start of a flow's turn its deficit grows by `quantum_bytes × weight`; it is
//! served while its head message fits its deficit, then goes to the back of the ring.
//!
//! **Sparse flows first** (fq_codel's new-flow list, RFC 8290 §4.1): a flow that becomes
//! backlogged from empty takes its first turn before the ring's flows (still one quantum), then
//! joins the back of the ring if it is still backlogged. A light sender — one message now and
//! then — therefore waits behind no flooder's turn at all, only behind other new arrivals; a
//! flow can be new once per time it empties, so it gains at most one quantum per emptying and
//! never more than its arrivals. Flows that stay backlogged see plain DRR (the bound below).
//!
//! **Cost**: when `quantum_bytes` is at least the largest message, every turn serves at least
//! one message, so a dequeue looks at no more than two flows: O(1) per message. A smaller
//! quantum (the default, 512 bytes, keeps a turn short for small messages, which is what keeps the
//! queueing delay of light senders low next to a flooder) costs turns that serve nothing for a
//! large head message: amortised O(1 + size / quantum) per message, i.e. O(1) per byte, since
//! every such turn adds a quantum of credit that the flow later spends.
//!
//! **Fairness bound** (tested in `fq_tests.rs`; `Q = quantum_bytes`, `M` the largest message,
//! `w` the weights): while flows `i` and `j` of one class stay backlogged, the normalised bytes
//! they were served, `bytes/w`, differ by less than `2Q + M` counted from when both became
//! backlogged, and by less than `4Q + 2M` over any span inside that time. Proof sketch: a flow
//! that has started `k` turns has been credited `k·Q·w` and holds a deficit below `Q·w + M`, so
//! its `bytes/w` lies in `((k−1)·Q − M, k·Q]`; in a ring the turn counts of two backlogged flows
//! differ by at most one at any moment. Shares therefore converge to the weights: after `n`
//! turns each, the relative error is below `(2Q + M) / (n·Q)`.
//!
//! **Priority**: a message of class `c` is served only when every class above `c` is empty
//! (strict). A lower class gets nothing while a higher one has traffic; the policy's
//! `priority` says exactly that, and a flooder is held to its own flow's bounds either way.

use std::collections::VecDeque;

/// Most priority classes a scheduler distinguishes (one bit each in the non-empty mask).
pub const CLASSES_MAX: usize = 64;
/// Highest weight accepted (the same ceiling as a plan's fair-share weights).
pub const WEIGHT_MAX: u32 = 1024;

/// The bounds of one scheduler. Every flow gets the same bounds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Bounds {
    /// Most messages one flow may hold.
    pub flow_messages_max: u32,
    /// Most bytes one flow may hold.
    pub flow_bytes_max: u64,
    /// Largest message accepted.
    pub message_bytes_max: u32,
    /// Credit per unit of weight per turn. At least `message_bytes_max`: O(1) per dequeue;
    /// smaller: shorter turns (lower delay for small messages), amortised O(1) per byte.
    pub quantum_bytes: u32,
}

impl Default for Bounds {
    fn default() -> Self {
        Bounds {
            flow_messages_max: 1024,
            flow_bytes_max: 1 << 20,
            message_bytes_max: 64 << 10,
            quantum_bytes: 512,
        }
    }
}

/// Why bounds cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BoundsError {
    #[error("every bound must be above zero")]
    Zero,
    #[error("flow_bytes_max {flow} must hold at least one message of {message} bytes")]
    FlowBelowMessage { flow: u64, message: u32 },
}

impl Bounds {
    /// Checks the bounds: all non-zero, a flow that holds at least one message.
    pub fn validate(&self) -> Result<(), BoundsError> {
        if self.flow_messages_max == 0
            || self.flow_bytes_max == 0
            || self.message_bytes_max == 0
            || self.quantum_bytes == 0
        {
            return Err(BoundsError::Zero);
        }
        if self.flow_bytes_max < u64::from(self.message_bytes_max) {
            return Err(BoundsError::FlowBelowMessage {
                flow: self.flow_bytes_max,
                message: self.message_bytes_max,
            });
        }
        Ok(())
    }
}

/// A flow's handle in one scheduler (an index; reused after [`Scheduler::remove_flow`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct FlowId(u32);

impl FlowId {
    /// The index, for tables kept beside the scheduler.
    pub fn index(self) -> usize {
        self.0 as usize
    }
}

/// A message the scheduler did not take, handed back with the reason.
#[derive(Debug, PartialEq, Eq)]
pub enum Refused<M> {
    /// The flow's queue would exceed its messages or bytes bound: back-pressure.
    Full(M),
    /// Larger than `message_bytes_max`.
    TooLarge(M),
    /// No such flow (removed, or never added).
    UnknownFlow(M),
}

impl<M> Refused<M> {
    /// The message handed back.
    pub fn into_message(self) -> M {
        match self {
            Refused::Full(m) | Refused::TooLarge(m) | Refused::UnknownFlow(m) => m,
        }
    }
}

/// Why a flow could not be added or changed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FlowError {
    #[error("priority class {0} is out of range (0..{CLASSES_MAX})")]
    Class(u8),
    #[error("weight {0} is out of range (1..={WEIGHT_MAX})")]
    Weight(u32),
    #[error("no such flow")]
    Unknown,
}

#[derive(Debug)]
struct Flow<M> {
    class: u8,
    weight: u32,
    /// Bytes this flow may still send in its current turn.
    deficit_bytes: u64,
    /// Whether the current turn's credit has been added (the flow is at its ring's front).
    in_turn: bool,
    queue: VecDeque<(M, u32)>,
    queued_bytes: u64,
}

#[derive(Debug, Default)]
struct Class {
    /// Flows that just became backlogged from empty, waiting for (or in) their first turn:
    /// served before `ring` (sparse flows first, as fq_codel's new-flow list, RFC 8290 §4.1).
    /// A flow still backlogged after that one turn moves to the back of `ring`.
    fresh: VecDeque<FlowId>,
    /// Backlogged flows of this class past their first turn, in turn order: the front one is
    /// being served (when `fresh` is empty).
    ring: VecDeque<FlowId>,
}

impl Class {
    fn is_idle(&self) -> bool {
        self.fresh.is_empty() && self.ring.is_empty()
    }
}

/// One receiver's inbox scheduler. `M` is whatever the caller queues (the message with its
/// metadata); the scheduler only sees its size.
#[derive(Debug)]
pub struct Scheduler<M> {
    bounds: Bounds,
    flows: Vec<Option<Flow<M>>>,
    free: Vec<u32>,
    classes: Vec<Class>,
    /// Bit `c` set ⇔ class `c` has a backlogged flow.
    backlogged: u64,
    queued_messages: u64,
    queued_bytes: u64,
}

impl<M> Scheduler<M> {
    /// An empty scheduler with `bounds` (checked).
    pub fn new(bounds: Bounds) -> Result<Self, BoundsError> {
        bounds.validate()?;
        Ok(Scheduler {
            bounds,
            flows: Vec::new(),
            free: Vec::new(),
            classes: (0..CLASSES_MAX).map(|_| Class::default()).collect(),
            backlogged: 0,
            queued_messages: 0,
            queued_bytes: 0,
        })
    }

    /// The bounds it was made with.
    pub fn bounds(&self) -> Bounds {
        self.bounds
    }

    /// Adds a flow of priority `class` (0 first) and `weight`.
    pub fn add_flow(&mut self, class: u8, weight: u32) -> Result<FlowId, FlowError> {
        check_flow(class, weight)?;
        let flow = Flow {
            class,
            weight,
            deficit_bytes: 0,
            in_turn: false,
            queue: VecDeque::new(),
            queued_bytes: 0,
        };
        Ok(match self.free.pop() {
            Some(i) => {
                self.flows[i as usize] = Some(flow);
                FlowId(i)
            }
            None => {
                let i = u32::try_from(self.flows.len()).map_err(|_| FlowError::Unknown)?;
                self.flows.push(Some(flow));
                FlowId(i)
            }
        })
    }

    /// Changes a flow's class and weight. A backlogged flow moves to the back of its new
    /// class's ring (O(flows in the old class): plans change rarely, messages often).
    pub fn set_flow(&mut self, id: FlowId, class: u8, weight: u32) -> Result<(), FlowError> {
        check_flow(class, weight)?;
        let flow = self.flow_mut(id).ok_or(FlowError::Unknown)?;
        let (old, backlogged) = (flow.class, !flow.queue.is_empty());
        flow.weight = weight;
        if old == class {
            return Ok(());
        }
        flow.class = class;
        flow.in_turn = false;
        flow.deficit_bytes = 0;
        if backlogged {
            self.unlink(id, old);
            self.link(id, class, false);
        }
        Ok(())
    }

    /// Removes a flow; its queued messages come back in order (to be reported failed).
    pub fn remove_flow(&mut self, id: FlowId) -> Result<Vec<M>, FlowError> {
        let flow = self
            .flows
            .get_mut(id.index())
            .and_then(Option::take)
            .ok_or(FlowError::Unknown)?;
        if !flow.queue.is_empty() {
            self.unlink(id, flow.class);
        }
        self.queued_messages -= flow.queue.len() as u64;
        self.queued_bytes -= flow.queued_bytes;
        self.free.push(id.0);
        Ok(flow.queue.into_iter().map(|(m, _)| m).collect())
    }

    /// Queues `message` of `bytes` on flow `id`, or hands it back with the reason.
    pub fn enqueue(&mut self, id: FlowId, message: M, bytes: u32) -> Result<(), Refused<M>> {
        let bounds = self.bounds;
        if bytes > bounds.message_bytes_max {
            return Err(Refused::TooLarge(message));
        }
        let Some(flow) = self.flow_mut(id) else {
            return Err(Refused::UnknownFlow(message));
        };
        if flow.queue.len() >= bounds.flow_messages_max as usize
            || flow.queued_bytes + u64::from(bytes) > bounds.flow_bytes_max
        {
            return Err(Refused::Full(message));
        }
        let was_empty = flow.queue.is_empty();
        flow.queue.push_back((message, bytes));
        flow.queued_bytes += u64::from(bytes);
        let class = flow.class;
        self.queued_messages += 1;
        self.queued_bytes += u64::from(bytes);
        if was_empty {
            self.link(id, class, true);
        }
        Ok(())
    }

    /// The next message to deliver and its flow, or `None` when every flow is empty.
    pub fn dequeue(&mut self) -> Option<(FlowId, M)> {
        if self.backlogged == 0 {
            return None;
        }
        let class = self.backlogged.trailing_zeros() as usize;
        let quantum = u64::from(self.bounds.quantum_bytes);
        // With a quantum of at least one message this visits two flows at most: the front one
        // either fits its head, or its turn ends and the next starts with enough credit. With a
        // smaller quantum, each visit that serves nothing adds credit the flow spends later.
        loop {
            let c = &self.classes[class];
            let fresh = !c.fresh.is_empty();
            let id = *if fresh {
                c.fresh.front()
            } else {
                c.ring.front()
            }?;
            let flow = self.flows[id.index()].as_mut()?;
            if !flow.in_turn {
                flow.in_turn = true;
                flow.deficit_bytes += quantum * u64::from(flow.weight);
            }
            let head_bytes = u64::from(flow.queue.front()?.1);
            if head_bytes <= flow.deficit_bytes {
                let (message, bytes) = flow.queue.pop_front()?;
                flow.deficit_bytes -= u64::from(bytes);
                flow.queued_bytes -= u64::from(bytes);
                let emptied = flow.queue.is_empty();
                self.queued_messages -= 1;
                self.queued_bytes -= u64::from(bytes);
                if emptied {
                    // An idle flow keeps no credit (DRR): it cannot save up a burst.
                    flow.deficit_bytes = 0;
                    flow.in_turn = false;
                    let c = &mut self.classes[class];
                    if fresh {
                        c.fresh.pop_front();
                    } else {
                        c.ring.pop_front();
                    }
                    if c.is_idle() {
                        self.backlogged &= !(1u64 << class);
                    }
                }
                return Some((id, message));
            }
            // Turn over: keep the remainder (< head), go to the back of the ring (a fresh
            // flow's one early turn is spent).
            flow.in_turn = false;
            let c = &mut self.classes[class];
            if fresh {
                c.fresh.pop_front();
                c.ring.push_back(id);
            } else {
                c.ring.rotate_left(1);
            }
        }
    }

    /// Messages and bytes queued on `id` (`None`: no such flow).
    pub fn flow_queued(&self, id: FlowId) -> Option<(usize, u64)> {
        self.flow(id).map(|f| (f.queue.len(), f.queued_bytes))
    }

    /// Messages and bytes queued in total.
    pub fn queued(&self) -> (u64, u64) {
        (self.queued_messages, self.queued_bytes)
    }

    /// Whether anything is queued.
    pub fn is_empty(&self) -> bool {
        self.backlogged == 0
    }

    /// The class and weight of a flow.
    pub fn flow_settings(&self, id: FlowId) -> Option<(u8, u32)> {
        self.flow(id).map(|f| (f.class, f.weight))
    }

    fn flow(&self, id: FlowId) -> Option<&Flow<M>> {
        self.flows.get(id.index()).and_then(Option::as_ref)
    }

    fn flow_mut(&mut self, id: FlowId) -> Option<&mut Flow<M>> {
        self.flows.get_mut(id.index()).and_then(Option::as_mut)
    }

    /// A flow becomes backlogged: `fresh` (it was empty) to the new-flow list, else (moved
    /// between classes) to the back of the ring.
    fn link(&mut self, id: FlowId, class: u8, fresh: bool) {
        let c = &mut self.classes[usize::from(class)];
        if fresh {
            c.fresh.push_back(id);
        } else {
            c.ring.push_back(id);
        }
        self.backlogged |= 1u64 << class;
    }

    fn unlink(&mut self, id: FlowId, class: u8) {
        let c = &mut self.classes[usize::from(class)];
        c.fresh.retain(|f| *f != id);
        c.ring.retain(|f| *f != id);
        if c.is_idle() {
            self.backlogged &= !(1u64 << class);
        }
    }
}

fn check_flow(class: u8, weight: u32) -> Result<(), FlowError> {
    if usize::from(class) >= CLASSES_MAX {
        return Err(FlowError::Class(class));
    }
    if weight == 0 || weight > WEIGHT_MAX {
        return Err(FlowError::Weight(weight));
    }
    Ok(())
}

/// Priority classes from policy priorities: the distinct priorities ranked from the highest
/// (class 0) down; priorities below the 64th distinct one share the last class.
///
/// ```
/// use tribune_agent::mediator::fq::classes;
/// assert_eq!(classes(&[10, 40, 10, -5]), vec![1, 0, 1, 2]);
/// ```
pub fn classes(priorities: &[i64]) -> Vec<u8> {
    let mut distinct: Vec<i64> = priorities.to_vec();
    distinct.sort_unstable_by(|a, b| b.cmp(a));
    distinct.dedup();
    priorities
        .iter()
        .map(|p| {
            let rank = distinct.partition_point(|d| d > p);
            u8::try_from(rank.min(CLASSES_MAX - 1)).unwrap_or(u8::MAX)
        })
        .collect()
}
