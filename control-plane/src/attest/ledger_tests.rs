use std::time::Instant;

use tribune_attest::session::{ControllerExchange, EnclaveKeys};
use tribune_attest::usage::{Emitted, EnclaveId, Producer, UsageSample, chain_genesis};

use super::*;

const NAME: &str = "e1";
const SEC: u64 = 1_000_000_000;
/// Report `seq`'s 100 ms window ends at `T0 + seq × 100 ms`.
const T0: u64 = 1_800_000_000 * SEC;

fn end_of(seq: u64) -> u64 {
    T0 + seq * SEC / 10
}

struct Fixture {
    ledger: Ledger,
    producer: Producer,
    emitted: u64,
}

fn fixture() -> Fixture {
    let keys = EnclaveKeys::from_seeds([1; 32], [2; 32]);
    let id = EnclaveId::from_name(NAME);
    let ex = ControllerExchange::from_parts([3; 32], [4; 32]);
    let rd = keys.report_data(ex.nonce());
    let bound = ex
        .bind(id, keys.ed25519_public(), keys.x25519_public(), &rd)
        .expect("bind");
    let vk = VerifyingKey::from_bytes(&keys.ed25519_public()).expect("key");
    let producer = Producer::new(id, keys, ex.nonce(), &ex.eph_public(), 10).expect("producer");
    let mut ledger = Ledger::new("h1", Freshness::default());
    let genesis = Confirmed {
        enclave: id,
        first_seq: 0,
        last_seq: 0,
        head: chain_genesis(&id),
    };
    ledger.track(NAME.into(), bound, vk, genesis, 10, Instant::now());
    Fixture {
        ledger,
        producer,
        emitted: 0,
    }
}

fn to_pb(e: Emitted) -> (pb::UsageReport, Option<pb::Checkpoint>) {
    let r = pb::UsageReport::sealed(NAME, &e.report, Vec::new());
    (r, e.checkpoint.map(|cp| pb::Checkpoint::of(NAME, &cp)))
}

impl Fixture {
    /// The next `n` reports (windows ending at [`end_of`] their seq) and the checkpoints they
    /// closed (one every 10).
    fn emit(&mut self, n: usize) -> (Vec<pb::UsageReport>, Vec<pb::Checkpoint>) {
        let mut rs = Vec::new();
        let mut cps = Vec::new();
        for _ in 0..n {
            self.emitted += 1;
            let e = self.producer.emit(&UsageSample {
                window_start_ns: end_of(self.emitted) - SEC / 10,
                window_len_ns: SEC / 10,
                cpu_ns: SEC / 20,
                mem_bytes: 1 << 20,
                ..UsageSample::default()
            });
            let (r, cp) = to_pb(e);
            rs.push(r);
            cps.extend(cp);
        }
        (rs, cps)
    }

    fn usage(&mut self, rs: Vec<pb::UsageReport>, now: u64) -> Vec<Refusal> {
        let mut out = Vec::new();
        self.ledger.usage(
            pb::UsageBatch { reports: rs },
            now,
            &[],
            &|_| true,
            &mut out,
        );
        out
    }

    fn checkpoints(&mut self, cps: Vec<pb::Checkpoint>, now: u64) -> Vec<Refusal> {
        let mut out = Vec::new();
        self.ledger
            .checkpoints(pb::CheckpointBatch { checkpoints: cps }, now, &mut out);
        out
    }

    fn replay(&mut self, reports: Vec<pb::UsageReport>, cps: Vec<pb::Checkpoint>) -> Vec<Refusal> {
        let mut out = Vec::new();
        self.ledger.replay(
            pb::ReplayBatch {
                reports,
                checkpoints: cps,
            },
            &mut out,
        );
        out
    }

    fn confirmed(&self) -> u64 {
        self.ledger.get(NAME).map_or(0, |t| t.confirmed.last_seq)
    }
}

fn faults(r: &[Refusal]) -> Vec<Fault> {
    r.iter().map(|r| r.fault).collect()
}

#[test]
fn fresh_reports_are_observed_and_a_checkpoint_confirms_them() {
    let mut f = fixture();
    let (rs, cps) = f.emit(10);
    assert!(f.usage(rs, end_of(10)).is_empty());
    let obs = f.ledger.get(NAME).and_then(|t| t.observation.clone());
    assert_eq!(obs.map(|o| o.seq), Some(10));
    assert!(f.checkpoints(cps, end_of(10)).is_empty());
    let d = f.ledger.take_digests();
    assert_eq!(d.len(), 1);
    assert_eq!((d[0].first_seq, d[0].last_seq), (1, 10));
    assert_eq!(d[0].unaccounted_from, None);
    assert_eq!(d[0].cpu_millicores_avg, 500);
    assert_eq!(f.confirmed(), 10);
    assert_eq!(f.ledger.accounting_broken_since(NAME), None);
}

#[test]
fn stale_reports_are_accounted_but_never_observed() {
    let mut f = fixture();
    let (rs, cps) = f.emit(10);
    // The controller's clock is 60 s ahead: every window looks 60 s old.
    let now = end_of(10) + 60 * SEC;
    let refused = f.usage(rs, now);
    assert_eq!(faults(&refused), vec![Fault::Stale; 10]);
    assert!(f.ledger.get(NAME).is_some_and(|t| t.observation.is_none()));
    assert_eq!(
        f.ledger.accounting_broken_since(NAME),
        Some((now / 1_000_000) as i64)
    );
    // The chain advanced: the checkpoint confirms all ten.
    assert!(f.checkpoints(cps, now).is_empty());
    assert_eq!(f.ledger.take_digests().len(), 1);
    assert_eq!(f.confirmed(), 10);
    // The clock comes back: the next report is fresh, no gap, accounting is live again.
    let (rs, _) = f.emit(1);
    assert!(f.usage(rs, end_of(11)).is_empty());
    assert_eq!(f.ledger.accounting_broken_since(NAME), None);
    assert!(f.ledger.get(NAME).is_some_and(|t| t.observation.is_some()));
}

#[test]
fn a_window_in_the_future_is_stale_too() {
    let mut f = fixture();
    let (rs, _) = f.emit(1);
    let refused = f.usage(rs, end_of(1) - 5 * SEC);
    assert_eq!(faults(&refused), vec![Fault::Stale]);
    assert!(refused[0].why.contains("in the future"), "{refused:?}");
}

#[test]
fn a_lost_report_resyncs_at_the_next_complete_checkpoint_and_declares_the_gap() {
    let mut f = fixture();
    let (mut rs, cps1) = f.emit(10);
    rs.remove(4); // seq 5 never arrives
    let refused = f.usage(rs, end_of(10));
    assert_eq!(faults(&refused), vec![Fault::Gap]);
    assert!(f.ledger.accounting_broken_since(NAME).is_some());
    // The checkpoint over 1..=10 cannot be confirmed without seq 5: nothing is recorded.
    let refused = f.checkpoints(cps1, end_of(10));
    assert_eq!(faults(&refused), vec![Fault::Chain]);
    assert!(f.ledger.take_digests().is_empty());
    // 11..=20 arrive whole: the chain resumes there, declaring 1..=10 unaccounted.
    let (rs, cps2) = f.emit(10);
    assert!(f.usage(rs, end_of(20)).is_empty());
    let (more, _) = f.emit(3); // 21..=23 arrive before the checkpoint
    assert!(f.usage(more, end_of(23)).is_empty());
    let refused = f.checkpoints(cps2, end_of(23));
    assert_eq!(faults(&refused), vec![Fault::Gap]);
    let d = f.ledger.take_digests();
    assert_eq!(d.len(), 1);
    assert_eq!((d[0].first_seq, d[0].last_seq), (11, 20));
    assert_eq!(d[0].unaccounted_from, Some(1));
    assert_eq!(f.confirmed(), 20);
    assert_eq!(f.ledger.accounting_broken_since(NAME), None);
    // 21..=23 went through the live path again: the next report follows on.
    let (rs, cps3) = f.emit(7);
    assert!(f.usage(rs, end_of(30)).is_empty());
    assert!(f.checkpoints(cps3, end_of(30)).is_empty());
    let d = f.ledger.take_digests();
    assert_eq!(
        (d[0].first_seq, d[0].last_seq, d[0].unaccounted_from),
        (21, 30, None)
    );
}

#[test]
fn a_forged_mac_is_refused_and_the_chain_then_resyncs() {
    let mut f = fixture();
    let (mut rs, _) = f.emit(10);
    if let Some(b) = rs[2].mac.first_mut() {
        *b ^= 1;
    }
    let refused = f.usage(rs, end_of(10));
    assert_eq!(faults(&refused), vec![Fault::Signature, Fault::Gap]);
    assert!(f.ledger.get(NAME).is_some_and(|t| t.resync.is_some()));
}

#[test]
fn a_replayed_report_is_refused_as_a_replay() {
    let mut f = fixture();
    let (rs, _) = f.emit(3);
    let again = rs[1].clone();
    assert!(f.usage(rs, end_of(3)).is_empty());
    assert_eq!(
        faults(&f.usage(vec![again], end_of(3))),
        vec![Fault::Replay]
    );
}

#[test]
fn replay_continues_the_confirmed_chain_and_skips_what_is_confirmed() {
    let mut f = fixture();
    let (rs, cps) = f.emit(20);
    assert!(f.replay(rs.clone(), cps.clone()).is_empty());
    let d = f.ledger.take_digests();
    assert_eq!(d.len(), 2);
    assert!(d.iter().all(|d| d.replayed && d.unaccounted_from.is_none()));
    assert_eq!(f.confirmed(), 20);
    // The same replay again (a second reconnect) adds nothing.
    assert!(f.replay(rs, cps).is_empty());
    assert!(f.ledger.take_digests().is_empty());
}

#[test]
fn replay_whose_first_reports_the_agent_dropped_resumes_at_the_first_whole_span() {
    let mut f = fixture();
    let (rs, cps) = f.emit(20);
    // The agent's buffer overflowed: reports 1..=10 are gone, their checkpoint is kept.
    let refused = f.replay(rs[10..].to_vec(), cps);
    assert_eq!(faults(&refused), vec![Fault::Chain, Fault::Gap]);
    let d = f.ledger.take_digests();
    assert_eq!(d.len(), 1);
    assert_eq!((d[0].first_seq, d[0].unaccounted_from), (11, Some(1)));
    // Live reports follow the replayed point.
    let (rs, _) = f.emit(1);
    assert!(f.usage(rs, end_of(21)).is_empty());
}

#[test]
fn reports_for_untracked_enclaves_say_why() {
    let mut f = fixture();
    let (mut rs, _) = f.emit(1);
    rs[0].enclave_id = "other".into();
    let mut out = Vec::new();
    f.ledger.usage(
        pb::UsageBatch {
            reports: rs.clone(),
        },
        end_of(1),
        &[],
        &|_| false,
        &mut out,
    );
    f.ledger.usage(
        pb::UsageBatch { reports: rs },
        end_of(1),
        &[],
        &|_| true,
        &mut out,
    );
    assert_eq!(faults(&out), vec![Fault::NotPlaced, Fault::Untracked]);
}

#[test]
fn a_checkpoint_whose_fields_disagree_with_its_encoding_is_refused() {
    let mut f = fixture();
    let (rs, mut cps) = f.emit(10);
    assert!(f.usage(rs, end_of(10)).is_empty());
    cps[0].last_seq = 9;
    assert_eq!(faults(&f.checkpoints(cps, end_of(10))), vec![Fault::Chain]);
    let short = pb::Checkpoint {
        enclave_id: NAME.into(),
        encoded: vec![0; 3],
        ..pb::Checkpoint::default()
    };
    assert_eq!(
        faults(&f.checkpoints(vec![short], end_of(10))),
        vec![Fault::Malformed]
    );
}

#[test]
fn timeliness_is_exact_at_both_bounds() {
    let fr = Freshness {
        max_age_ns: 30,
        max_skew_ns: 2,
    };
    assert_eq!(timeliness(100, 130, fr), Timeliness::Fresh);
    assert_eq!(timeliness(100, 131, fr), Timeliness::Late(31));
    assert_eq!(timeliness(102, 100, fr), Timeliness::Fresh);
    assert_eq!(timeliness(103, 100, fr), Timeliness::Early(3));
    assert_eq!(timeliness(u64::MAX, u64::MAX, fr), Timeliness::Fresh);
    assert_eq!(timeliness(0, u64::MAX, UNCHECKED), Timeliness::Fresh);
}

#[test]
fn continues_needs_the_next_seq_and_the_same_head() {
    let c = Confirmed {
        enclave: EnclaveId([0; 16]),
        first_seq: 1,
        last_seq: 10,
        head: [7; 32],
    };
    assert!(continues(&c, 11, &[7; 32]));
    assert!(!continues(&c, 12, &[7; 32]));
    assert!(!continues(&c, 10, &[7; 32]));
    assert!(!continues(&c, 11, &[8; 32]));
    let last = Confirmed {
        last_seq: u64::MAX,
        ..c
    };
    assert!(!continues(&last, 0, &[7; 32]));
}

#[test]
fn divergence_is_relative_to_the_larger_view_and_ignores_noise() {
    let r = |cpu| Rates {
        cpu_millicores: cpu,
        ..Rates::default()
    };
    assert_eq!(divergence_pct(&r(5.0), &r(9.0)), 0.0);
    assert_eq!(divergence_pct(&r(500.0), &r(1000.0)), 50.0);
    assert_eq!(divergence_pct(&r(1000.0), &r(500.0)), 50.0);
}

#[test]
fn a_resync_run_must_verify_by_mac_too() {
    let mut f = fixture();
    let (mut rs, _) = f.emit(10);
    rs.remove(4); // seq 5 lost: resync from seq 6
    assert_eq!(faults(&f.usage(rs, end_of(10))), vec![Fault::Gap]);
    // 11..=20 arrive with one MAC forged (the checkpoint's signature alone would accept them).
    let (mut rs, cps) = f.emit(10);
    if let Some(b) = rs[3].mac.first_mut() {
        *b ^= 1;
    }
    assert!(
        f.usage(rs, end_of(20)).is_empty(),
        "buffered, not yet judged"
    );
    assert_eq!(
        faults(&f.checkpoints(cps, end_of(20))),
        vec![Fault::Signature]
    );
    assert!(f.ledger.take_digests().is_empty());
    assert!(f.ledger.accounting_broken_since(NAME).is_some());
    // The next clean run re-anchors.
    let (rs, cps) = f.emit(10);
    assert!(f.usage(rs, end_of(30)).is_empty());
    assert_eq!(faults(&f.checkpoints(cps, end_of(30))), vec![Fault::Gap]);
    let d = f.ledger.take_digests();
    assert_eq!((d[0].first_seq, d[0].unaccounted_from), (21, Some(1)));
}

/// The digest's demand signal: the span's average wait in whole millicores, and unknown
/// (`None`) as soon as one report of the span does not say (a v1 report).
#[test]
fn the_wait_average_is_whole_millicores_or_unknown() {
    let report = |wait_ns: Option<u64>| UsageReport {
        enclave: EnclaveId::from_name(NAME),
        seq: 1,
        window_start_ns: T0,
        window_len_ns: SEC / 10,
        cpu_ns: 0,
        mem_bytes: 0,
        net_tx_bytes: 0,
        net_rx_bytes: 0,
        gpu_util_bp: 0,
        cpu_wait_ns: wait_ns,
        msgs: None,
    };
    // 100 ms windows: 90 ms waited is 900m, 10 ms is 100m; the average 500m.
    let span = [report(Some(SEC / 100 * 9)), report(Some(SEC / 100))];
    assert_eq!(wait_millicores_avg(span.iter()), Some(500));
    let idle = [report(Some(0)), report(Some(0))];
    assert_eq!(wait_millicores_avg(idle.iter()), Some(0));
    let mixed = [report(Some(SEC / 10)), report(None)];
    assert_eq!(wait_millicores_avg(mixed.iter()), None);
    assert_eq!(wait_millicores_avg([].iter()), None);
    // Several threads waiting a whole window each: more than one core's worth.
    let many = [report(Some(4 * SEC / 10))];
    assert_eq!(wait_millicores_avg(many.iter()), Some(4000));
}

fn live_ms(f: &Fixture) -> Option<u64> {
    f.ledger
        .get(NAME)
        .and_then(|t| t.observation.as_ref())
        .map(|o| o.live_ms)
}

/// Live evidence (what a throttle's release is counted on): fresh reports, each following the
/// last by seq within LIVE_GAP_MS; a silence, a stale report or a lost one starts it again, and
/// a new stream (a new `Tracked`) has none.
#[test]
fn live_evidence_runs_only_while_fresh_reports_follow_each_other() {
    let mut f = fixture();
    let ms = 1_000_000;
    for k in 1..=20u64 {
        let (rs, _) = f.emit(1);
        assert!(f.usage(rs, end_of(k)).is_empty());
        assert_eq!(live_ms(&f), Some((k - 1) * 100));
    }
    // A silence just within the gap continues it; one past it starts it again.
    let (rs, _) = f.emit(1);
    let at = end_of(20) + LIVE_GAP_MS as u64 * ms;
    assert!(f.usage(rs, at).is_empty());
    assert_eq!(live_ms(&f), Some(1_900 + LIVE_GAP_MS as u64));
    let (rs, _) = f.emit(1);
    let at = at + (LIVE_GAP_MS as u64 + 1) * ms;
    assert!(f.usage(rs, at).is_empty());
    assert_eq!(live_ms(&f), Some(0));
    let (rs, _) = f.emit(1);
    assert!(f.usage(rs, at + 100 * ms).is_empty());
    assert_eq!(live_ms(&f), Some(100));
    // A stale report (the controller's clock far ahead) is not evidence: the next fresh one
    // starts again.
    let (rs, _) = f.emit(1);
    assert_eq!(faults(&f.usage(rs, at + 60 * SEC)), vec![Fault::Stale]);
    let (rs, _) = f.emit(1);
    assert!(f.usage(rs, end_of(f.emitted)).is_empty());
    assert_eq!(live_ms(&f), Some(0));
    // A lost report (a gap, a resync): nothing observed until the chain re-anchors, and then
    // the evidence starts again.
    let (mut rs, _) = f.emit(3);
    rs.remove(1);
    let now = end_of(f.emitted);
    assert_eq!(faults(&f.usage(rs, now)), vec![Fault::Gap]);
    assert_eq!(live_ms(&f), None);
    assert!(f.ledger.get(NAME).is_some_and(|t| t.live.is_none()));
}
