//! The ledger's rules, as pure functions over one report, checkpoint or span: freshness, chain
//! continuity, the rates and message facts a report gives, a checkpoint's decoding and
//! verification, and the digest a confirmed span becomes.

use ed25519_dalek::VerifyingKey;
use tribune_attest::AttestError;
use tribune_attest::merkle::{leaf_hash, root_of};
use tribune_attest::session::BoundEnclave;
use tribune_attest::usage::{Checkpoint, Confirmed, Freshness, StreamVerifier, UsageReport};
use tribune_proto::v1 as pb;

use super::super::refusal::{Fault, Refusal};
use super::super::window::Rates;
use crate::state::UsageDigest;

/// The verifier checks MACs, seq and chain; freshness is the ledger's (see the module docs).
pub(super) const UNCHECKED: Freshness = Freshness {
    max_age_ns: u64::MAX,
    max_skew_ns: u64::MAX,
};

/// How a report's window relates to now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Timeliness {
    Fresh,
    /// Ended longer ago than the freshness allows (ns too late).
    Late(u64),
    /// Ends in the future beyond the allowed skew (ns too early).
    Early(u64),
}

/// Pure: how the window ending at `end_ns` relates to `now_ns`.
pub fn timeliness(end_ns: u64, now_ns: u64, f: Freshness) -> Timeliness {
    if end_ns.saturating_add(f.max_age_ns) < now_ns {
        Timeliness::Late(now_ns - end_ns)
    } else if end_ns > now_ns.saturating_add(f.max_skew_ns) {
        Timeliness::Early(end_ns - now_ns)
    } else {
        Timeliness::Fresh
    }
}

/// Whether a span starting at `first_seq` after `prev_head` continues `confirmed` (the one
/// rule: `tribune_attest::continuity::continues`).
pub fn continues(confirmed: &Confirmed, first_seq: u64, prev_head: &[u8; 32]) -> bool {
    tribune_attest::continuity::continues(
        Some((confirmed.last_seq, &confirmed.head)),
        first_seq,
        prev_head,
    )
}

/// The rates of one report window, canonical units.
pub fn rates_of(r: &UsageReport) -> Rates {
    let secs = (r.window_len_ns.max(1)) as f64 / 1e9;
    Rates {
        cpu_millicores: r.cpu_ns as f64 / r.window_len_ns.max(1) as f64 * 1000.0,
        memory_bytes: r.mem_bytes as f64,
        egress_bits_per_sec: r.net_tx_bytes as f64 * 8.0 / secs,
        ingress_bits_per_sec: r.net_rx_bytes as f64 * 8.0 / secs,
        gpu_percent: f64::from(r.gpu_util_bp) / 100.0,
    }
}

/// The messages an enclave sent in a report's window (accepted or refused), per second: the
/// facts `usage.msgs.rate` and `usage.msgs.bytes`. Zero for a report without message counts
/// (v1, v2: it sent none).
pub fn msgs_of(r: &UsageReport) -> tribune_policy::MsgFacts {
    let secs = (r.window_len_ns.max(1)) as f64 / 1e9;
    r.msgs
        .map_or_else(Default::default, |m| tribune_policy::MsgFacts {
            rate: m.sent.saturating_add(m.refused) as f64 / secs,
            bytes: m.sent_bytes.saturating_add(m.refused_bytes) as f64 / secs,
        })
}

/// How far the enclave's own view of CPU differs from the host's, percent of the larger one.
/// Below 10 millicores both are noise.
pub fn divergence_pct(enclave: &Rates, host: &Rates) -> f64 {
    let (a, b) = (enclave.cpu_millicores, host.cpu_millicores);
    let big = a.max(b);
    if big < 10.0 {
        0.0
    } else {
        (a - b).abs() / big * 100.0
    }
}

/// A checkpoint message decoded, or its refusal recorded as `what`.
pub(super) fn decode_checkpoint(
    c: &pb::Checkpoint,
    what: &'static str,
    out: &mut Vec<Refusal>,
) -> Option<Checkpoint> {
    Checkpoint::try_from(c)
        .map_err(|e| {
            out.push(Refusal::new(
                &c.enclave_id,
                what,
                Fault::of(&e),
                e.to_string(),
            ));
        })
        .ok()
}

/// The record of a chain re-anchored at `cp` after the seqs from `from` could not be confirmed.
pub(super) fn gap_refusal(id: &str, what: &'static str, from: u64, cp: &Checkpoint) -> Refusal {
    Refusal::new(
        id,
        what,
        Fault::Gap,
        format!(
            "seqs {from}..={} could not be confirmed; the chain resumes at the checkpoint of {}..={}",
            cp.first_seq.saturating_sub(1),
            cp.first_seq,
            cp.last_seq
        ),
    )
}

/// Verifies a run of MAC'd wires against the checkpoint that covers it, as the live path would
/// have: a verifier started at the checkpoint's `prev_head` checks each MAC, seq and chain step,
/// then the checkpoint's chain and signature.
pub(super) fn verify_run(
    bound: &BoundEnclave,
    cp: &Checkpoint,
    vk: &VerifyingKey,
    wires: &[&[u8]],
    now_ns: u64,
) -> Result<Vec<UsageReport>, AttestError> {
    let before = cp
        .first_seq
        .checked_sub(1)
        .ok_or_else(|| AttestError::Checkpoint("a checkpoint starting at seq 0".into()))?;
    let start = Confirmed {
        enclave: cp.enclave,
        first_seq: before,
        last_seq: before,
        head: cp.prev_head,
    };
    let mut v = StreamVerifier::resume(bound, UNCHECKED, &start)?;
    let mut decoded = Vec::with_capacity(wires.len());
    for w in wires {
        decoded.push(v.verify_report(w, now_ns)?);
    }
    v.match_checkpoint(cp)?;
    cp.verify_signature(vk)?;
    Ok(decoded)
}

/// The digest of a confirmed span. `unaccounted_from`: the first seq of a run this controller
/// never saw, which ends right before the checkpoint (a re-anchored chain).
pub(super) fn digest_of(
    id: &str,
    key_hex: &str,
    cp: &Checkpoint,
    span: &[(UsageReport, f64)],
    replayed: bool,
    unaccounted_from: Option<u64>,
) -> UsageDigest {
    let leaves: Vec<[u8; 32]> = span.iter().map(|(r, _)| leaf_hash(&r.encode())).collect();
    let n = span.len().max(1) as f64;
    UsageDigest {
        enclave: id.to_string(),
        key: key_hex.to_string(),
        first_seq: cp.first_seq,
        last_seq: cp.last_seq,
        prev_head: hex::encode(cp.prev_head),
        head: hex::encode(cp.head),
        samples_root: hex::encode(root_of(&leaves)),
        checkpoint: hex::encode(cp.encode()),
        // Whole millicores and basis points: the log's leaves hold no floats (leaf format 2).
        cpu_millicores_avg: whole(
            span.iter()
                .map(|(r, _)| rates_of(r).cpu_millicores)
                .sum::<f64>()
                / n,
        ),
        mem_bytes_max: span.iter().map(|(r, _)| r.mem_bytes).max().unwrap_or(0),
        net_tx_bytes: span.iter().map(|(r, _)| r.net_tx_bytes).sum(),
        net_rx_bytes: span.iter().map(|(r, _)| r.net_rx_bytes).sum(),
        divergence_bp_max: whole(span.iter().map(|(_, d)| *d).fold(0.0, f64::max) * 100.0),
        cpu_wait_millicores_avg: wait_millicores_avg(span.iter().map(|(r, _)| r)),
        replayed,
        unaccounted_from,
    }
}

/// The average CPU the enclave waited for (runnable, not running) over a span, in whole
/// millicores; `None` when any report of the span does not say (a v1 report): a partial
/// average would understate the demand.
pub fn wait_millicores_avg<'a>(reports: impl Iterator<Item = &'a UsageReport>) -> Option<u64> {
    let (mut sum, mut n) = (0.0, 0u64);
    for r in reports {
        let wait = r.cpu_wait_ns?;
        sum += wait as f64 / r.window_len_ns.max(1) as f64 * 1000.0;
        n += 1;
    }
    (n > 0).then(|| whole(sum / n as f64))
}

/// A non-negative quantity rounded to a whole number (NaN and negatives are 0; `as` saturates).
fn whole(x: f64) -> u64 {
    if x.is_nan() || x <= 0.0 {
        0
    } else {
        x.round() as u64
    }
}
