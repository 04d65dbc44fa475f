//! The controller side of a usage stream: one [`StreamVerifier`] per enclave while its
//! session key is known, and [`verify_by_checkpoint`] for buffered reports after failover.

use std::collections::VecDeque;

use ed25519_dalek::VerifyingKey;

use super::*;
use crate::error::{AttestError, Result};

/// Freshness rules for the controller.
#[derive(Debug, Clone, Copy)]
pub struct Freshness {
    /// A report whose window ended longer ago than this is stale.
    pub max_age_ns: u64,
    /// A report whose window ends further in the future than this is refused (clock skew).
    pub max_skew_ns: u64,
}

impl Default for Freshness {
    fn default() -> Self {
        Freshness {
            max_age_ns: 30_000_000_000,
            max_skew_ns: 2_000_000_000,
        }
    }
}

/// What a verified checkpoint confirms.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Confirmed {
    pub enclave: EnclaveId,
    pub first_seq: u64,
    pub last_seq: u64,
    pub head: [u8; 32],
}

impl From<&Checkpoint> for Confirmed {
    /// The point a verified checkpoint confirms (to [`StreamVerifier::resume`] from, e.g.
    /// after [`verify_by_checkpoint`]).
    fn from(cp: &Checkpoint) -> Self {
        Confirmed {
            enclave: cp.enclave,
            first_seq: cp.first_seq,
            last_seq: cp.last_seq,
            head: cp.head,
        }
    }
}

/// Controller side for one enclave's stream: MAC, strictly increasing `seq`, freshness, and
/// checkpoints that must match the chain of the reports they cover. Bounded: at most
/// [`CHECKPOINT_SPAN_MAX`] reports wait for a checkpoint.
pub struct StreamVerifier {
    enclave: EnclaveId,
    mac: MacKey,
    key: VerifyingKey,
    freshness: Freshness,
    last_seq: u64,
    head: [u8; 32],
    confirmed_seq: u64,
    confirmed_head: [u8; 32],
    /// `(seq, chain head after seq)` for reports not yet covered by a checkpoint.
    pending: VecDeque<(u64, [u8; 32])>,
}

impl StreamVerifier {
    /// A verifier for a freshly bound enclave (its stream starts at `seq = 1`).
    pub fn new(bound: &crate::session::BoundEnclave, freshness: Freshness) -> Result<Self> {
        let key = VerifyingKey::from_bytes(&bound.ed25519_pub)
            .map_err(|_| AttestError::Binding("ed25519 public key is not a valid point".into()))?;
        let genesis = chain_genesis(&bound.enclave);
        Ok(StreamVerifier {
            enclave: bound.enclave,
            mac: MacKey::new(&bound.session_key),
            key,
            freshness,
            last_seq: 0,
            head: genesis,
            confirmed_seq: 0,
            confirmed_head: genesis,
            pending: VecDeque::new(),
        })
    }

    /// Continue a stream from a confirmed point (after failover: the last checkpoint this
    /// controller, or the log, confirmed), under a new session key.
    pub fn resume(
        bound: &crate::session::BoundEnclave,
        freshness: Freshness,
        confirmed: &Confirmed,
    ) -> Result<Self> {
        let mut v = Self::new(bound, freshness)?;
        v.last_seq = confirmed.last_seq;
        v.head = confirmed.head;
        v.confirmed_seq = confirmed.last_seq;
        v.confirmed_head = confirmed.head;
        Ok(v)
    }

    /// Highest accepted `seq`.
    pub fn last_seq(&self) -> u64 {
        self.last_seq
    }

    /// Highest `seq` confirmed by a checkpoint.
    pub fn confirmed_seq(&self) -> u64 {
        self.confirmed_seq
    }

    /// Verify one MAC'd report at time `now_ns`. Accepted reports are provisional until a
    /// checkpoint confirms them.
    pub fn verify_report(&mut self, wire: &[u8], now_ns: u64) -> Result<UsageReport> {
        let report = self.mac.open(wire)?;
        if report.enclave != self.enclave {
            return Err(AttestError::Binding(format!(
                "report for enclave {} on the stream of {}",
                report.enclave, self.enclave
            )));
        }
        if report.seq <= self.last_seq {
            return Err(AttestError::Replay {
                seq: report.seq,
                last: self.last_seq,
            });
        }
        if report.seq != self.last_seq + 1 {
            return Err(AttestError::Checkpoint(format!(
                "gap: seq {} after {}; the hash chain cannot be followed",
                report.seq, self.last_seq
            )));
        }
        // Decode guarantees no overflow of window_start + window_len.
        let end = report.window_start_ns.saturating_add(report.window_len_ns);
        if end.saturating_add(self.freshness.max_age_ns) < now_ns {
            return Err(AttestError::Stale(format!(
                "window ended at {end} ns, now {now_ns} ns"
            )));
        }
        if end > now_ns.saturating_add(self.freshness.max_skew_ns) {
            return Err(AttestError::Stale(format!(
                "window ends at {end} ns, in the future of {now_ns} ns"
            )));
        }
        if self.pending.len() as u64 >= CHECKPOINT_SPAN_MAX {
            return Err(AttestError::Limit(format!(
                "{CHECKPOINT_SPAN_MAX} reports wait for a checkpoint"
            )));
        }
        self.head = chain_step(&self.head, &wire[..wire.len() - TAG_LEN]);
        self.last_seq = report.seq;
        self.pending.push_back((report.seq, self.head));
        Ok(report)
    }

    /// Verify many reports; one result each, in order.
    pub fn verify_reports<'a>(
        &mut self,
        wires: impl IntoIterator<Item = &'a [u8]>,
        now_ns: u64,
    ) -> Vec<Result<UsageReport>> {
        wires
            .into_iter()
            .map(|w| self.verify_report(w, now_ns))
            .collect()
    }

    /// Check a checkpoint's chain against the accepted reports, then its signature.
    pub fn verify_checkpoint(&mut self, cp: &Checkpoint) -> Result<Confirmed> {
        self.match_checkpoint(cp)?;
        cp.verify_signature(&self.key)?;
        Ok(self.confirm(cp))
    }

    /// Chain checks only (no signature): for callers that batch signatures across enclaves
    /// with [`verify_checkpoint_signatures`] and then call [`StreamVerifier::confirm`].
    pub fn match_checkpoint(&self, cp: &Checkpoint) -> Result<()> {
        if cp.enclave != self.enclave {
            return Err(AttestError::Checkpoint("enclave differs".into()));
        }
        if !crate::continuity::continues(
            Some((self.confirmed_seq, &self.confirmed_head)),
            cp.first_seq,
            &cp.prev_head,
        ) {
            return Err(AttestError::Checkpoint(format!(
                "covers {}..={} but the stream is confirmed up to {}",
                cp.first_seq, cp.last_seq, self.confirmed_seq
            )));
        }
        let Some((_, head)) = self.pending.iter().find(|(s, _)| *s == cp.last_seq) else {
            return Err(AttestError::Checkpoint(format!(
                "reports up to seq {} not received (last {})",
                cp.last_seq, self.last_seq
            )));
        };
        if *head != cp.head {
            return Err(AttestError::Checkpoint(
                "hash-chain head differs from the MAC'd reports".into(),
            ));
        }
        Ok(())
    }

    /// The enclave's checkpoint key.
    pub fn verifying_key(&self) -> &VerifyingKey {
        &self.key
    }

    /// Record a checkpoint whose chain ([`StreamVerifier::match_checkpoint`]) and signature
    /// were both checked.
    pub fn confirm(&mut self, cp: &Checkpoint) -> Confirmed {
        while let Some((s, _)) = self.pending.front() {
            if *s <= cp.last_seq {
                self.pending.pop_front();
            } else {
                break;
            }
        }
        self.confirmed_seq = cp.last_seq;
        self.confirmed_head = cp.head;
        Confirmed {
            enclave: self.enclave,
            first_seq: cp.first_seq,
            last_seq: cp.last_seq,
            head: cp.head,
        }
    }
}

/// Verify buffered reports by checkpoint alone (a controller that never held their session key,
/// e.g. after failover): the reports must be exactly `first_seq..=last_seq` of the checkpoint,
/// their chain must run from `prev_head` to `head`, and the signature must verify under the
/// enclave's bound key. `wires` may be MAC'd reports (the MAC is ignored) or bare reports.
pub fn verify_by_checkpoint(
    cp: &Checkpoint,
    key: &VerifyingKey,
    wires: &[&[u8]],
) -> Result<Vec<UsageReport>> {
    let span = cp.last_seq.checked_sub(cp.first_seq).map(|d| d + 1);
    if span != Some(wires.len() as u64) {
        return Err(AttestError::Checkpoint(format!(
            "{} reports for range {}..={}",
            wires.len(),
            cp.first_seq,
            cp.last_seq
        )));
    }
    let mut head = cp.prev_head;
    let mut out = Vec::with_capacity(wires.len());
    for (i, w) in wires.iter().enumerate() {
        let body = report_body(w)?;
        let r = UsageReport::decode(body)?;
        if r.enclave != cp.enclave || r.seq != cp.first_seq + i as u64 {
            return Err(AttestError::Checkpoint(format!(
                "report {i} is seq {} of {}",
                r.seq, r.enclave
            )));
        }
        head = chain_step(&head, body);
        out.push(r);
    }
    if head != cp.head {
        return Err(AttestError::Checkpoint("hash-chain head differs".into()));
    }
    cp.verify_signature(key)?;
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::super::testing::*;
    use super::*;

    #[test]
    fn stream_round_trip_with_checkpoints() {
        let (mut p, mut v) = setup(10);
        let mut confirmed = 0;
        for i in 0..35 {
            let e = p.emit(&sample(i));
            v.verify_report(&e.report, NOW).unwrap();
            if let Some(cp) = e.checkpoint {
                let c = v.verify_checkpoint(&cp).unwrap();
                confirmed = c.last_seq;
            }
        }
        assert_eq!(confirmed, 30);
        let cp = p.checkpoint_now().unwrap();
        assert_eq!((cp.first_seq, cp.last_seq), (31, 35));
        assert_eq!(v.verify_checkpoint(&cp).unwrap().last_seq, 35);
        assert!(p.checkpoint_now().is_none());
    }

    #[test]
    fn replay_tamper_and_staleness_are_rejected() {
        let (mut p, mut v) = setup(4);
        let e1 = p.emit(&sample(0));
        v.verify_report(&e1.report, NOW).unwrap();
        assert!(matches!(
            v.verify_report(&e1.report, NOW),
            Err(AttestError::Replay { seq: 1, last: 1 })
        ));
        let e2 = p.emit(&sample(1));
        for i in 0..MAC_REPORT_LEN {
            let mut bad = e2.report;
            bad[i] ^= 0x01;
            assert!(v.verify_report(&bad, NOW).is_err(), "flip at {i}");
        }
        assert!(matches!(
            v.verify_report(&e2.report, NOW + 3_600_000_000_000),
            Err(AttestError::Stale(_))
        ));
        assert!(matches!(
            v.verify_report(&e2.report, 0),
            Err(AttestError::Stale(_))
        ));
        v.verify_report(&e2.report, NOW).unwrap();
    }

    #[test]
    fn checkpoint_must_match_reports() {
        let (mut p, mut v) = setup(2);
        let e1 = p.emit(&sample(0));
        let e2 = p.emit(&sample(1));
        let cp = e2.checkpoint.unwrap();
        v.verify_report(&e1.report, NOW).unwrap();
        // Checkpoint before its reports arrived.
        assert!(v.verify_checkpoint(&cp).is_err());
        v.verify_report(&e2.report, NOW).unwrap();
        let mut forged = cp;
        forged.head[0] ^= 1;
        assert!(v.verify_checkpoint(&forged).is_err());
        let mut badsig = cp;
        badsig.signature[5] ^= 1;
        assert!(v.verify_checkpoint(&badsig).is_err());
        v.verify_checkpoint(&cp).unwrap();
        // The same checkpoint again is a replay of a confirmed range.
        assert!(v.verify_checkpoint(&cp).is_err());
    }

    #[test]
    fn failover_verifies_by_checkpoint_alone() {
        let (mut p, _) = setup(5);
        let mut wires = Vec::new();
        let mut cps = Vec::new();
        for i in 0..10 {
            let e = p.emit(&sample(i));
            wires.push(e.report);
            cps.extend(e.checkpoint);
        }
        let key = VerifyingKey::from_bytes(&p.keys().ed25519_public()).unwrap();
        let refs: Vec<&[u8]> = wires[5..10].iter().map(|w| w.as_slice()).collect();
        let got = verify_by_checkpoint(&cps[1], &key, &refs).unwrap();
        assert_eq!(got[0].seq, 6);
        assert!(verify_by_checkpoint(&cps[0], &key, &refs).is_err());
        let mut short = refs.clone();
        short.pop();
        assert!(verify_by_checkpoint(&cps[1], &key, &short).is_err());
        let mut forged = cps[1];
        forged.head[0] ^= 1;
        assert!(verify_by_checkpoint(&forged, &key, &refs).is_err());
        // Bare reports work too: the MAC is not needed.
        let bare: Vec<&[u8]> = refs.iter().map(|w| report_body(w).unwrap()).collect();
        assert_eq!(verify_by_checkpoint(&cps[1], &key, &bare).unwrap().len(), 5);
    }

    #[test]
    fn resume_continues_from_a_confirmed_point() {
        let (mut p, bound) = bound(3);
        let mut first = StreamVerifier::new(&bound, Freshness::default()).unwrap();
        let mut confirmed = None;
        for i in 0..4 {
            let e = p.emit(&sample(i));
            first.verify_report(&e.report, NOW).unwrap();
            if let Some(cp) = e.checkpoint {
                confirmed = Some(first.verify_checkpoint(&cp).unwrap());
            }
        }
        let confirmed = confirmed.unwrap();
        assert_eq!((first.last_seq(), first.confirmed_seq()), (4, 3));
        // Another controller resumes at the confirmed point; report 4 must come again.
        let mut next = StreamVerifier::resume(&bound, Freshness::default(), &confirmed).unwrap();
        assert_eq!((next.last_seq(), next.confirmed_seq()), (3, 3));
        let mut p2 = p;
        let e5 = p2.emit(&sample(4));
        assert!(matches!(
            next.verify_report(&e5.report, NOW),
            Err(AttestError::Checkpoint(m)) if m.contains("gap: seq 5 after 3")
        ));
    }

    #[test]
    fn a_report_for_another_enclave_is_refused() {
        let (mut p, mut v) = setup(10);
        let e = p.emit(&sample(0));
        let mut r = UsageReport::decode(e.report.body()).unwrap();
        r.enclave = EnclaveId([1; 16]);
        let (_, bound) = bound(10);
        let forged = MacKey::new(&bound.session_key).seal(&r.encode());
        assert!(matches!(
            v.verify_report(&forged, NOW),
            Err(AttestError::Binding(_))
        ));
    }

    #[test]
    fn at_most_a_span_of_reports_waits_for_a_checkpoint() {
        // The producer's own checkpoints (every 4096) are never shown to this verifier.
        let (mut p, mut v) = setup(u32::MAX);
        let now = |i: u64| sample(i).window_start_ns + 100_000_000;
        for i in 0..CHECKPOINT_SPAN_MAX {
            v.verify_report(&p.emit(&sample(i)).report, now(i)).unwrap();
        }
        let i = CHECKPOINT_SPAN_MAX;
        assert!(matches!(
            v.verify_report(&p.emit(&sample(i)).report, now(i)),
            Err(AttestError::Limit(_))
        ));
    }
}
