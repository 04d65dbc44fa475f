//! The live usage feed behind the console's charts: a bounded ring of the last
//! [`POINTS_MAX`] seconds per enclave, and a broadcast of each new point and enforcement
//! action to whoever watches (`GET /v1/usage/stream`, `api::console`).
//!
//! It is filled from the attestation session after a batch of usage reports has verified
//! (`attest::session`), so it holds only verified usage, at the 1 s resolution of the usage
//! windows. The ingest path never waits on a watcher: a point costs one short lock (a
//! `VecDeque` push) and one `broadcast::send`, which never blocks; a watcher that falls more
//! than [`BROADCAST_MAX`] events behind loses the oldest (it is told how many), never the
//! other way round. Nothing here is replicated: each controller has the usage of the agents
//! streaming to it (DESIGN.md: raw samples never enter Raft).
//!
//! Bounds: [`POINTS_MAX`] points per enclave, [`ENCLAVES_MAX`] enclaves (the one updated
//! longest ago is dropped to make room), so at most ≈ 2048 × 600 × 32 B ≈ 40 MiB.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex, PoisonError};

use serde::Serialize;
use tokio::sync::broadcast;

use crate::attest::window::Rates;
use crate::state::Step;

/// Points kept per enclave: 10 minutes at 1 s.
pub const POINTS_MAX: usize = 600;
/// Enclaves with a ring on one controller.
pub const ENCLAVES_MAX: usize = 2048;
/// Events a watcher may fall behind before it loses the oldest.
pub const BROADCAST_MAX: usize = 8192;

/// One second of one enclave's verified usage (the mean of that second's reports).
#[derive(Clone, Copy, Debug, PartialEq, Serialize)]
pub struct ChartPoint {
    /// Start of the second, Unix milliseconds.
    pub t_ms: i64,
    pub cpu_millicores: f32,
    pub memory_bytes: f32,
    pub egress_bits_per_sec: f32,
    pub ingress_bits_per_sec: f32,
    pub gpu_percent: f32,
}

impl ChartPoint {
    pub fn new(second: u64, r: &Rates) -> Self {
        ChartPoint {
            t_ms: i64::try_from(second.saturating_mul(1000)).unwrap_or(i64::MAX),
            cpu_millicores: r.cpu_millicores as f32,
            memory_bytes: r.memory_bytes as f32,
            egress_bits_per_sec: r.egress_bits_per_sec as f32,
            ingress_bits_per_sec: r.ingress_bits_per_sec as f32,
            gpu_percent: r.gpu_percent as f32,
        }
    }
}

/// What a watcher receives.
#[derive(Clone, Debug, PartialEq)]
pub enum FeedEvent {
    Point {
        enclave: Arc<str>,
        point: ChartPoint,
    },
    /// The loop committed a decision about this enclave (its log entries are in the log).
    Action {
        enclave: Arc<str>,
        at_ms: i64,
        /// The log entry kinds it wrote (`action`, `violation`, …).
        kinds: Vec<&'static str>,
        /// The ladder step it is on now, and why.
        step: Step,
        cause: String,
    },
}

impl FeedEvent {
    pub fn enclave(&self) -> &str {
        match self {
            FeedEvent::Point { enclave, .. } | FeedEvent::Action { enclave, .. } => enclave,
        }
    }
}

struct Ring {
    enclave: Arc<str>,
    points: VecDeque<ChartPoint>,
}

/// The rings and the broadcast (one per controller, in [`crate::node::Controller`]).
pub struct UsageFeed {
    rings: Mutex<HashMap<Arc<str>, Ring>>,
    tx: broadcast::Sender<FeedEvent>,
}

impl Default for UsageFeed {
    fn default() -> Self {
        Self::new()
    }
}

impl UsageFeed {
    pub fn new() -> Self {
        let (tx, _) = broadcast::channel(BROADCAST_MAX);
        UsageFeed {
            rings: Mutex::new(HashMap::new()),
            tx,
        }
    }

    /// Records one enclave's newest second. A point for the second already last in the ring
    /// replaces it (that second's mean, now over more reports); an older one is ignored. A
    /// point for a new second completes the one before, which is then broadcast: watchers get
    /// each second once, final (at most one event per enclave per second, whatever the report
    /// rate), and the ring's last point is the second still filling.
    pub fn record(&self, enclave: &str, point: ChartPoint) {
        let completed = {
            let mut rings = self.rings.lock().unwrap_or_else(PoisonError::into_inner);
            if !rings.contains_key(enclave) && rings.len() >= ENCLAVES_MAX {
                evict_stalest(&mut rings);
            }
            let ring = rings.entry(Arc::from(enclave)).or_insert_with(|| Ring {
                enclave: Arc::from(enclave),
                points: VecDeque::with_capacity(16),
            });
            let done = match ring.points.back_mut() {
                Some(last) if last.t_ms == point.t_ms => {
                    *last = point;
                    None
                }
                Some(last) if last.t_ms > point.t_ms => return,
                last => last.map(|l| *l),
            };
            if done.is_some() || ring.points.is_empty() {
                if ring.points.len() >= POINTS_MAX {
                    ring.points.pop_front();
                }
                ring.points.push_back(point);
            }
            done.map(|d| (ring.enclave.clone(), d))
        };
        // Err only when nobody watches.
        if let Some((enclave, point)) = completed {
            let _ = self.tx.send(FeedEvent::Point { enclave, point });
        }
    }

    /// Tells watchers that the loop committed a decision about `enclave`.
    pub fn action(
        &self,
        enclave: &str,
        at_ms: i64,
        kinds: Vec<&'static str>,
        step: Step,
        cause: String,
    ) {
        let _ = self.tx.send(FeedEvent::Action {
            enclave: Arc::from(enclave),
            at_ms,
            kinds,
            step,
            cause,
        });
    }

    /// The points kept for `enclave`, oldest first (a copy: the lock is held for one memcpy
    /// of at most [`POINTS_MAX`] points).
    pub fn history(&self, enclave: &str) -> Vec<ChartPoint> {
        let rings = self.rings.lock().unwrap_or_else(PoisonError::into_inner);
        rings
            .get(enclave)
            .map(|r| r.points.iter().copied().collect())
            .unwrap_or_default()
    }

    /// The enclaves with a ring here.
    pub fn enclaves(&self) -> Vec<String> {
        let rings = self.rings.lock().unwrap_or_else(PoisonError::into_inner);
        rings.keys().map(|k| k.to_string()).collect()
    }

    /// A new watcher: every event from now on (subscribe before reading history, so nothing
    /// falls between the two).
    pub fn subscribe(&self) -> broadcast::Receiver<FeedEvent> {
        self.tx.subscribe()
    }
}

fn evict_stalest(rings: &mut HashMap<Arc<str>, Ring>) {
    let stalest = rings
        .iter()
        .min_by_key(|(_, r)| r.points.back().map_or(i64::MIN, |p| p.t_ms))
        .map(|(k, _)| k.clone());
    if let Some(k) = stalest {
        rings.remove(&k);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(second: u64, cpu: f64) -> ChartPoint {
        ChartPoint::new(
            second,
            &Rates {
                cpu_millicores: cpu,
                ..Rates::default()
            },
        )
    }

    #[test]
    fn a_ring_keeps_the_last_600_seconds_one_point_each() {
        let f = UsageFeed::new();
        for s in 0..1000 {
            f.record("a", at(s, 1.0));
            f.record("a", at(s, 2.0)); // the same second again: replaces
        }
        let h = f.history("a");
        assert_eq!(h.len(), POINTS_MAX);
        assert_eq!(h[0].t_ms, 400_000);
        assert_eq!(h[POINTS_MAX - 1].t_ms, 999_000);
        assert!(h.iter().all(|p| p.cpu_millicores == 2.0));
        // An older second than the newest is ignored.
        f.record("a", at(10, 9.0));
        assert_eq!(f.history("a").len(), POINTS_MAX);
        assert_eq!(f.history("a")[POINTS_MAX - 1].t_ms, 999_000);
    }

    #[test]
    fn at_the_enclave_bound_the_stalest_ring_goes() {
        let f = UsageFeed::new();
        for i in 0..ENCLAVES_MAX {
            f.record(&format!("e{i}"), at(1000 + i as u64, 1.0));
        }
        f.record("new", at(5000, 1.0));
        let names = f.enclaves();
        assert_eq!(names.len(), ENCLAVES_MAX);
        assert!(
            !names.contains(&"e0".to_string()),
            "the stalest ring was dropped"
        );
        assert!(names.contains(&"new".to_string()));
    }

    #[test]
    fn each_second_is_broadcast_once_when_complete() {
        let f = UsageFeed::new();
        let mut rx = f.subscribe();
        for cpu in [1.0, 2.0, 3.0] {
            f.record("a", at(7, cpu)); // three reports in second 7
        }
        assert!(rx.try_recv().is_err(), "second 7 is still filling");
        f.record("a", at(8, 5.0));
        match rx.try_recv() {
            Ok(FeedEvent::Point { enclave, point }) => {
                assert_eq!(&*enclave, "a");
                assert_eq!((point.t_ms, point.cpu_millicores), (7000, 3.0));
            }
            other => panic!("expected second 7, got {other:?}"),
        }
        assert!(rx.try_recv().is_err(), "one event per second");
        assert_eq!(f.history("a").last().map(|p| p.t_ms), Some(8000));
    }

    #[test]
    fn a_slow_watcher_loses_the_oldest_events_and_never_blocks_the_recorder() {
        let f = UsageFeed::new();
        let mut slow = f.subscribe();
        // Far more than the broadcast holds, with the watcher reading nothing: returns at once.
        // Recording second s+1 broadcasts second s: 2 × BROADCAST_MAX events.
        for s in 0..=(BROADCAST_MAX as u64 * 2) {
            f.record("a", at(s, 1.0));
        }
        match slow.try_recv() {
            Err(broadcast::error::TryRecvError::Lagged(n)) => {
                assert_eq!(n, BROADCAST_MAX as u64)
            }
            other => panic!("expected Lagged, got {other:?}"),
        }
        // Then it reads on from the oldest event still held.
        match slow.try_recv() {
            Ok(FeedEvent::Point { point, .. }) => {
                assert_eq!(point.t_ms, BROADCAST_MAX as i64 * 1000)
            }
            other => panic!("expected a point, got {other:?}"),
        }
    }
}
