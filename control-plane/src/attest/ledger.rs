//! The usage ledger of one attestation stream: which enclaves are tracked under which keys,
//! their MAC'd reports, the checkpoints that confirm them, the digests to commit, and the
//! observations decisions read. No I/O, no lock, no clock: `now` comes in as a parameter.
//!
//! Invariants (asserted in debug builds, tested below):
//! - an enclave's unconfirmed span holds reports in strictly increasing `seq` order, all above
//!   its confirmed point (`span order`);
//! - the confirmed point never exceeds the last accepted seq (`confirmed ≤ last seq`);
//! - a digest either continues the confirmed point (`first_seq = confirmed + 1`, same head) or
//!   declares the seqs it skips ([`UsageDigest::unaccounted_from`]); nothing else is produced.
//!
//! **Freshness** is judged here, not by the verifier: a report whose window is too old or in the
//! future (by the session's monotonic clock, `attest::clock`) is still authentic, so it is
//! accounted (its chain advances, it lands in the next digest) but it is not an observation:
//! decisions never act on it. A controller whose wall clock steps therefore loses no report and
//! never breaks the chain.
//!
//! **Gaps.** A report that does not follow the last accepted one (a lost or forged message)
//! puts the enclave into resync: its reports are buffered by seq until a checkpoint signed by the
//! enclave's key covers a run of them; the ledger then confirms that checkpoint, records a digest
//! that declares the seqs it never saw, and resumes. While an enclave is resyncing or its reports
//! are stale, [`Ledger::accounting_broken_since`] says since when, and decisions see it.

use std::collections::{BTreeMap, HashMap};
use std::time::Instant;

use ed25519_dalek::VerifyingKey;
use tribune_attest::AttestError;
use tribune_attest::session::BoundEnclave;
use tribune_attest::usage::{
    self, CHECKPOINT_SPAN_MAX, Checkpoint, Confirmed, Freshness, StreamVerifier, UsageReport,
};
use tribune_policy::{Agg, Resource};
use tribune_proto::v1 as pb;

use super::decide::Observation;
use super::reattest::Schedule;
pub use super::refusal::{Fault, Refusal};
use super::window::{Rates, Windows};
use crate::state::UsageDigest;

mod rules;
pub use rules::{
    Timeliness, continues, divergence_pct, msgs_of, rates_of, timeliness, wait_millicores_avg,
};
use rules::{UNCHECKED, decode_checkpoint, digest_of, gap_refusal, verify_run};

/// A report arriving later than this after the last fresh one breaks an enclave's live
/// evidence ([`Observation::live_ms`] starts again): reports come every 100 ms.
pub const LIVE_GAP_MS: i64 = 1_000;

/// The current run of an enclave's fresh reports, each following the last (by seq) within
/// [`LIVE_GAP_MS`]: since when (session clock, ms), the last one's seq and arrival.
#[derive(Debug, Clone, Copy)]
struct Live {
    since_ms: i64,
    last_seq: u64,
    last_ms: i64,
}

/// An enclave whose chain broke: its reports, by seq, until a checkpoint re-anchors it.
#[derive(Debug, Default)]
struct Resync {
    /// Since when (Unix ms) its accounting is broken.
    since_ms: i64,
    /// MAC'd wires by seq (bounded by [`CHECKPOINT_SPAN_MAX`]).
    wires: BTreeMap<u64, Vec<u8>>,
}

/// One enclave on this stream whose evidence is trusted.
pub struct Tracked {
    pub bound: BoundEnclave,
    pub key_hex: String,
    pub vk: VerifyingKey,
    /// Created at the first live report, from `confirmed` (after any replay).
    verifier: Option<StreamVerifier>,
    pub confirmed: Confirmed,
    /// Accepted reports not yet covered by a checkpoint, in seq order, with their divergence.
    span: Vec<(UsageReport, f64)>,
    windows: Windows,
    pub observation: Option<Observation>,
    pub held_since: BTreeMap<String, i64>,
    resync: Option<Resync>,
    /// Since when (Unix ms) every report was stale; `None` after a fresh one.
    stale_since_ms: Option<i64>,
    /// Its live evidence on this stream (`None`: none yet, or it broke).
    live: Option<Live>,
    /// Its re-attestation schedule.
    pub schedule: Schedule,
}

impl Tracked {
    /// The newest second of usage verified for this enclave and its mean rates.
    pub fn last_second(&self) -> Option<(u64, Rates)> {
        self.windows.last_second()
    }
}

/// The ledger of one stream.
pub struct Ledger {
    /// The stream's host (for refusals).
    host: String,
    tracked: HashMap<String, Tracked>,
    digests: Vec<UsageDigest>,
    freshness: Freshness,
}

impl Ledger {
    pub fn new(host: &str, freshness: Freshness) -> Ledger {
        Ledger {
            host: host.to_string(),
            tracked: HashMap::new(),
            digests: Vec::new(),
            freshness,
        }
    }

    pub fn len(&self) -> usize {
        self.tracked.len()
    }

    pub fn is_empty(&self) -> bool {
        self.tracked.is_empty()
    }

    pub fn get(&self, id: &str) -> Option<&Tracked> {
        self.tracked.get(id)
    }

    pub fn get_mut(&mut self, id: &str) -> Option<&mut Tracked> {
        self.tracked.get_mut(id)
    }

    pub fn contains(&self, id: &str) -> bool {
        self.tracked.contains_key(id)
    }

    pub fn iter(&self) -> impl Iterator<Item = (&String, &Tracked)> {
        self.tracked.iter()
    }

    /// Stops counting an enclave's reports (its evidence is no longer trusted).
    pub fn untrack(&mut self, id: &str) {
        self.tracked.remove(id);
    }

    /// Starts counting an enclave's reports under `bound`, continuing `confirmed` (the point the
    /// log confirmed for this key, or genesis), with windows of up to `keep_s` seconds.
    pub fn track(
        &mut self,
        id: String,
        bound: BoundEnclave,
        vk: VerifyingKey,
        confirmed: Confirmed,
        keep_s: u32,
        now: Instant,
    ) {
        let key_hex = hex::encode(bound.ed25519_pub);
        self.tracked.insert(
            id,
            Tracked {
                bound,
                key_hex,
                vk,
                verifier: None,
                confirmed,
                span: Vec::new(),
                windows: Windows::new(keep_s),
                observation: None,
                held_since: BTreeMap::new(),
                resync: None,
                stale_since_ms: None,
                live: None,
                schedule: Schedule::new(now),
            },
        );
    }

    /// Digests waiting to be committed.
    pub fn pending_digests(&self) -> usize {
        self.digests.len()
    }

    pub fn take_digests(&mut self) -> Vec<UsageDigest> {
        std::mem::take(&mut self.digests)
    }

    /// Each observation is used once: silence afterwards is "no fresh usage".
    pub fn clear_observations(&mut self) {
        for t in self.tracked.values_mut() {
            t.observation = None;
        }
    }

    /// Since when (Unix ms) this enclave's usage is not being accounted live: its chain is
    /// resyncing, or every report since then was stale.
    pub fn accounting_broken_since(&self, id: &str) -> Option<i64> {
        let t = self.tracked.get(id)?;
        match (t.resync.as_ref().map(|r| r.since_ms), t.stale_since_ms) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    /// Reports buffered by the agent while it had no controller: each span must come with its
    /// checkpoint, continue the confirmed chain, and verify under the bound key. Spans already
    /// confirmed (the old controller committed them) are skipped: no duplicate.
    pub fn replay(&mut self, b: pb::ReplayBatch, out: &mut Vec<Refusal>) {
        // Each replayed report decoded once, indexed by enclave and seq; a checkpoint then
        // takes its range. Undecodable ones are left out (their span fails to verify).
        let mut by_enclave: HashMap<String, BTreeMap<u64, Vec<u8>>> = HashMap::new();
        for r in b.reports {
            if let Ok(decoded) = usage::report_body(&r.report).and_then(UsageReport::decode) {
                by_enclave
                    .entry(r.enclave_id)
                    .or_default()
                    .insert(decoded.seq, r.report);
            }
        }
        for c in b.checkpoints {
            let id = c.enclave_id.clone();
            let Some(t) = self.tracked.get_mut(&id) else {
                out.push(Refusal::new(
                    &id,
                    "replay",
                    Fault::Untracked,
                    "no trusted evidence on this stream",
                ));
                continue;
            };
            let Some(cp) = decode_checkpoint(&c, "replay checkpoint", out) else {
                continue;
            };
            if cp.last_seq <= t.confirmed.last_seq {
                continue; // already in the log
            }
            let wires: Vec<&[u8]> = by_enclave
                .get(&id)
                .map(|m| {
                    m.range(cp.first_seq..=cp.last_seq)
                        .map(|(_, w)| w.as_slice())
                        .collect()
                })
                .unwrap_or_default();
            let gap = !continues(&t.confirmed, cp.first_seq, &cp.prev_head);
            if gap && cp.first_seq <= t.confirmed.last_seq {
                out.push(Refusal::new(
                    &id,
                    "replay",
                    Fault::Chain,
                    format!(
                        "replayed span {}..={} overlaps the confirmed seq {}",
                        cp.first_seq, cp.last_seq, t.confirmed.last_seq
                    ),
                ));
                continue;
            }
            match usage::verify_by_checkpoint(&cp, &t.vk, &wires) {
                Ok(decoded) => {
                    // No host view is replayed: divergence is not known for these windows.
                    let span: Vec<(UsageReport, f64)> =
                        decoded.into_iter().map(|r| (r, 0.0)).collect();
                    // A span the agent kept while the reports before it were lost re-anchors
                    // the chain and says so.
                    let skipped = gap.then(|| t.confirmed.last_seq + 1);
                    if let Some(from) = skipped {
                        out.push(gap_refusal(&id, "replay", from, &cp));
                    }
                    self.digests
                        .push(digest_of(&id, &t.key_hex, &cp, &span, true, skipped));
                    t.confirmed = Confirmed::from(&cp);
                    // A verifier created before this replay would not continue it.
                    t.verifier = None;
                    t.span.clear();
                }
                Err(e) => out.push(Refusal::new(&id, "replay", Fault::of(&e), e.to_string())),
            }
        }
    }

    /// Live reports. `now_ns`/`now_ms`: the session clock; `wanted`: the usage aggregates the
    /// policies read; `placed_here`: whether an untracked enclave is placed on this host (for
    /// the refusal's wording). Returns how many reports verified (MAC and chain; a stale one
    /// counts: it is authentic and accounted, only not acted on).
    pub fn usage(
        &mut self,
        b: pb::UsageBatch,
        now_ns: u64,
        wanted: &[(Resource, Agg, u32)],
        placed_here: &dyn Fn(&str) -> bool,
        out: &mut Vec<Refusal>,
    ) -> usize {
        let mut verified = 0;
        let mut touched = Vec::new();
        for r in b.reports {
            let id = r.enclave_id.clone();
            let Some(t) = self.tracked.get_mut(&id) else {
                let (fault, why) = if placed_here(&id) {
                    (
                        Fault::Untracked,
                        "no trusted evidence for this enclave on this stream: the report does not count"
                            .to_string(),
                    )
                } else {
                    (
                        Fault::NotPlaced,
                        format!("enclave {id:?} is not placed on host {:?}", self.host),
                    )
                };
                out.push(Refusal::new(&id, "usage report", fault, why));
                continue;
            };
            let wire = r.wire();
            let host_view = UsageReport::decode(&r.host_view).ok();
            if t.intake(&id, wire, host_view.as_ref(), now_ns, self.freshness, out) {
                verified += 1;
            }
            touched.push(id);
        }
        // The window facts, once per enclave per batch (not per report).
        touched.sort_unstable();
        touched.dedup();
        for id in touched {
            if let Some(t) = self.tracked.get_mut(&id) {
                t.observe(wanted);
            }
        }
        verified
    }

    /// Live checkpoints: each must match the reports accepted since the confirmed point and be
    /// signed by the bound key (signatures checked in one batch). A resyncing enclave's
    /// checkpoint re-anchors its chain when its reports are all buffered.
    pub fn checkpoints(&mut self, b: pb::CheckpointBatch, now_ns: u64, out: &mut Vec<Refusal>) {
        let mut checked = Vec::new();
        for c in b.checkpoints {
            let id = c.enclave_id.clone();
            let Some(cp) = decode_checkpoint(&c, "checkpoint", out) else {
                continue;
            };
            let Some(t) = self.tracked.get_mut(&id) else {
                out.push(Refusal::new(
                    &id,
                    "checkpoint",
                    Fault::Untracked,
                    "no trusted evidence on this stream",
                ));
                continue;
            };
            if t.resync.is_some() {
                if let Some(d) = t.reanchor(&id, &cp, now_ns, self.freshness, out) {
                    self.digests.push(d);
                }
                continue;
            }
            let matched = match &t.verifier {
                Some(v) => v.match_checkpoint(&cp),
                None => Err(AttestError::Checkpoint(
                    "no reports received for this checkpoint".into(),
                )),
            };
            match matched {
                Ok(()) => checked.push((id, cp, t.vk)),
                Err(e) => out.push(Refusal::new(
                    &id,
                    "checkpoint",
                    Fault::of(&e),
                    e.to_string(),
                )),
            }
        }
        let items: Vec<(Checkpoint, VerifyingKey)> =
            checked.iter().map(|(_, cp, vk)| (*cp, *vk)).collect();
        let results = usage::verify_checkpoint_signatures(&items);
        for ((id, cp, _), res) in checked.into_iter().zip(results) {
            if let Err(e) = res {
                out.push(Refusal::new(
                    &id,
                    "checkpoint",
                    Fault::of(&e),
                    e.to_string(),
                ));
                continue;
            }
            let Some(t) = self.tracked.get_mut(&id) else {
                continue;
            };
            let Some(v) = t.verifier.as_mut() else {
                continue;
            };
            let confirmed = v.confirm(&cp);
            // The span holds only unconfirmed reports in seq order, and the checkpoint starts
            // right after the confirmed point: it covers the span's head up to `last_seq`.
            let n = t
                .span
                .iter()
                .take_while(|(r, _)| r.seq <= cp.last_seq)
                .count();
            let covered: Vec<(UsageReport, f64)> = t.span.drain(..n).collect();
            self.digests
                .push(digest_of(&id, &t.key_hex, &cp, &covered, false, None));
            t.confirmed = confirmed;
            t.check_invariants();
        }
    }
}

impl Tracked {
    /// One live MAC'd report; true when it verified (buffered for a resync: not yet).
    fn intake(
        &mut self,
        id: &str,
        wire: Vec<u8>,
        host_view: Option<&UsageReport>,
        now_ns: u64,
        freshness: Freshness,
        out: &mut Vec<Refusal>,
    ) -> bool {
        let now_ms = (now_ns / 1_000_000) as i64;
        if let Some(rs) = self.resync.as_mut() {
            // Unauthenticated seq, used only to index: the checkpoint authenticates the run.
            match usage::report_body(&wire).and_then(UsageReport::decode) {
                Ok(r) if rs.wires.len() < CHECKPOINT_SPAN_MAX as usize => {
                    rs.wires.insert(r.seq, wire);
                }
                Ok(_) => out.push(Refusal::new(
                    id,
                    "usage report",
                    Fault::Limit,
                    format!("{CHECKPOINT_SPAN_MAX} reports wait for a checkpoint to resync"),
                )),
                Err(e) => out.push(Refusal::new(
                    id,
                    "usage report",
                    Fault::of(&e),
                    e.to_string(),
                )),
            }
            return false;
        }
        if self.verifier.is_none() {
            match StreamVerifier::resume(&self.bound, UNCHECKED, &self.confirmed) {
                Ok(v) => self.verifier = Some(v),
                Err(e) => {
                    out.push(Refusal::new(
                        id,
                        "usage report",
                        Fault::of(&e),
                        e.to_string(),
                    ));
                    return false;
                }
            }
        }
        let Some(verifier) = self.verifier.as_mut() else {
            return false;
        };
        let last = verifier.last_seq();
        let report = match verifier.verify_report(&wire, now_ns) {
            Ok(rep) => rep,
            Err(e) => {
                let seq = usage::report_body(&wire)
                    .and_then(UsageReport::decode)
                    .map(|r| r.seq);
                let fault = match (&e, seq) {
                    (AttestError::Checkpoint(_), Ok(s)) if s > last + 1 => Fault::Gap,
                    _ => Fault::of(&e),
                };
                out.push(Refusal::new(id, "usage report", fault, e.to_string()));
                if fault == Fault::Gap {
                    self.start_resync(now_ms, wire);
                }
                return false;
            }
        };
        let rates = rates_of(&report);
        let divergence = divergence_pct(&rates, &host_view.map(rates_of).unwrap_or(rates));
        let end_ns = report.window_start_ns.saturating_add(report.window_len_ns);
        match timeliness(end_ns, now_ns, freshness) {
            Timeliness::Fresh => {
                self.stale_since_ms = None;
                let since_ms = match self.live {
                    Some(l)
                        if l.last_seq.checked_add(1) == Some(report.seq)
                            && now_ms.saturating_sub(l.last_ms) <= LIVE_GAP_MS =>
                    {
                        l.since_ms
                    }
                    _ => now_ms,
                };
                self.live = Some(Live {
                    since_ms,
                    last_seq: report.seq,
                    last_ms: now_ms,
                });
                let end_ms = end_ns / 1_000_000;
                self.windows.push(end_ms, &rates);
                self.observation = Some(Observation {
                    cpu_millicores: rates.cpu_millicores,
                    // Filled in once per batch (`Tracked::observe`).
                    cpu_recent_millicores: 0.0,
                    usage: Vec::new(),
                    divergence_pct: divergence,
                    seq: report.seq,
                    window_end_ms: end_ms,
                    msgs: msgs_of(&report),
                    live_ms: u64::try_from(now_ms.saturating_sub(since_ms)).unwrap_or(0),
                });
            }
            t => {
                // Authentic but not current: accounted, never acted on (and not evidence).
                self.stale_since_ms.get_or_insert(now_ms);
                self.live = None;
                let why = match t {
                    Timeliness::Late(ns) => format!(
                        "seq {} ended {} ms ago: accounted, not used for decisions",
                        report.seq,
                        ns / 1_000_000
                    ),
                    _ => format!(
                        "seq {} ends {} ms in the future: accounted, not used for decisions",
                        report.seq,
                        end_ns.saturating_sub(now_ns) / 1_000_000
                    ),
                };
                out.push(Refusal::new(id, "usage report", Fault::Stale, why));
            }
        }
        self.span.push((report, divergence));
        self.check_invariants();
        true
    }

    /// Completes the observation of the last fresh report with the window aggregates.
    fn observe(&mut self, wanted: &[(Resource, Agg, u32)]) {
        if let Some(o) = self.observation.as_mut() {
            o.cpu_recent_millicores = self.windows.recent_cpu(1000);
            o.usage = self.windows.facts(wanted);
        }
    }

    /// The chain broke at the report in `wire`: buffer MAC'd wires from here until a signed
    /// checkpoint re-anchors. The unconfirmed reports before the break are dropped (their MACs
    /// were not kept, and every report a re-anchored span counts must verify by MAC, seq, chain
    /// and signature); the re-anchoring digest declares them unaccounted.
    fn start_resync(&mut self, now_ms: i64, wire: Vec<u8>) {
        let mut rs = Resync {
            since_ms: now_ms,
            wires: BTreeMap::new(),
        };
        self.span.clear();
        if let Ok(r) = usage::report_body(&wire).and_then(UsageReport::decode) {
            rs.wires.insert(r.seq, wire);
        }
        self.verifier = None;
        self.observation = None;
        self.live = None;
        self.resync = Some(rs);
    }

    /// A checkpoint while resyncing: confirms it when every report it covers is buffered and
    /// its chain and signature verify; returns the digest (declaring any skipped seqs) and
    /// resumes live accounting with the reports buffered after it.
    fn reanchor(
        &mut self,
        id: &str,
        cp: &Checkpoint,
        now_ns: u64,
        freshness: Freshness,
        out: &mut Vec<Refusal>,
    ) -> Option<UsageDigest> {
        if cp.last_seq <= self.confirmed.last_seq {
            return None;
        }
        let rs = self.resync.as_mut()?;
        let wires: Vec<&[u8]> = rs
            .wires
            .range(cp.first_seq..=cp.last_seq)
            .map(|(_, w)| w.as_slice())
            .collect();
        let gap = !continues(&self.confirmed, cp.first_seq, &cp.prev_head);
        if gap && cp.first_seq <= self.confirmed.last_seq {
            return None;
        }
        // The run must verify exactly as live reports do: each MAC under this stream's session
        // key, seqs in order, the chain from the checkpoint's `prev_head`, then the signature.
        let decoded = match verify_run(&self.bound, cp, &self.vk, &wires, now_ns) {
            Ok(d) => d,
            Err(e) => {
                out.push(Refusal::new(id, "checkpoint", Fault::of(&e), e.to_string()));
                return None;
            }
        };
        let skipped = gap.then(|| self.confirmed.last_seq + 1);
        if let Some(from) = skipped {
            out.push(gap_refusal(id, "usage report", from, cp));
        }
        let span: Vec<(UsageReport, f64)> = decoded.into_iter().map(|r| (r, 0.0)).collect();
        let digest = digest_of(id, &self.key_hex, cp, &span, false, skipped);
        self.confirmed = Confirmed::from(cp);
        let after: Vec<Vec<u8>> = rs
            .wires
            .split_off(&(cp.last_seq + 1))
            .into_values()
            .collect();
        self.resync = None;
        self.verifier = None;
        self.span.clear();
        // What arrived after the checkpoint goes through the live path again (MAC'd wires);
        // their timeliness decides whether they are observations.
        let mut later = Vec::new();
        for w in after {
            self.intake(id, w, None, now_ns, freshness, &mut later);
        }
        // Decisions resume with the next live batch (whose aggregates are complete).
        self.observation = None;
        out.extend(later.into_iter().filter(|r| r.fault != Fault::Stale));
        Some(digest)
    }

    /// Span order and `confirmed ≤ last seq` (debug builds).
    fn check_invariants(&self) {
        debug_assert!(
            self.span.windows(2).all(|w| w[0].0.seq < w[1].0.seq),
            "span out of seq order"
        );
        debug_assert!(
            self.span
                .first()
                .is_none_or(|(r, _)| r.seq > self.confirmed.last_seq),
            "span starts at or below the confirmed point"
        );
        debug_assert!(
            self.verifier
                .as_ref()
                .is_none_or(|v| self.confirmed.last_seq <= v.last_seq()),
            "confirmed beyond the last accepted seq"
        );
    }
}

#[cfg(test)]
#[path = "ledger_tests.rs"]
mod tests;
