//! `tribune bench receipt`: the size of one enclave's receipt for a period and how long it
//! takes to verify offline.
//!
//! The log is the one the loop writes, built through the same `State::apply` commands: a
//! trusted verdict binding the enclave's key, then one usage digest per checkpoint — real
//! checkpoints, signed by the enclave's key over a hash chain of real MAC'd reports at the
//! report rate (10 Hz, one checkpoint a second by default) — plus a throttle with its violation.
//! The receipt is assembled and signed by the controller's own code
//! (`tribune_controller::api::receipt::{select, seal}`) and verified by `tribune_receipt`.

use std::time::Instant;

use anyhow::{Context, anyhow};
use serde::Serialize;
use tribune_attest::session::{ControllerExchange, EnclaveKeys};
use tribune_attest::usage::{EnclaveId, Producer, UsageSample};
use tribune_controller::api::log::SthView;
use tribune_controller::api::receipt::{Period, seal, select};
use tribune_controller::log_key::LogSigner;
use tribune_controller::state::{
    Attestation, Command, Enclave, EnclaveState, Expect, Host, LogDetail, OverLimit, Placement,
    Resources, State, TeeKind, UsageDigest, VerdictCmd, ViolationDetail,
};

/// What `tribune bench receipt` measures.
#[derive(Clone, Debug, Serialize)]
pub struct ReceiptFigures {
    pub seconds: u64,
    pub reports_per_second: u32,
    pub log_entries: usize,
    pub receipt_entries: usize,
    pub receipt_bytes: usize,
    /// Assembling and signing the receipt (selection, proofs, signature).
    pub assemble_ms: f64,
    /// `tribune_receipt::verify`: every signature, proof and checkpoint; median of `rounds`.
    pub verify_ms_median: f64,
    pub verify_ms_max: f64,
    pub windows: usize,
}

const ENCLAVE: &str = "bench-e1";

fn digest_of(cp: &tribune_attest::usage::Checkpoint, key: &str, cpu: u64) -> UsageDigest {
    UsageDigest {
        enclave: ENCLAVE.into(),
        key: key.into(),
        first_seq: cp.first_seq,
        last_seq: cp.last_seq,
        prev_head: hex::encode(cp.prev_head),
        head: hex::encode(cp.head),
        samples_root: "00".repeat(32),
        checkpoint: hex::encode(cp.encode()),
        cpu_millicores_avg: cpu,
        mem_bytes_max: 64 << 20,
        net_tx_bytes: 0,
        net_rx_bytes: 0,
        divergence_bp_max: 0,
        // As live digests of v2 reports carry it (the reports below wait for nothing).
        cpu_wait_millicores_avg: Some(0),
        replayed: false,
        unaccounted_from: None,
    }
}

/// Builds `seconds` of one enclave's log at `reports_per_second`, a receipt for it, and
/// verifies that receipt `rounds` times.
pub fn run(seconds: u64, reports_per_second: u32, rounds: u32) -> anyhow::Result<ReceiptFigures> {
    let start_ms: i64 = 1_800_000_000_000;
    let mut st = State::default();
    let signer = LogSigner::from_key(ed25519_dalek::SigningKey::from_bytes(&[9; 32]), 1);
    st.apply(Command::RegisterLogKey {
        node_id: 1,
        public_key: signer.public_key.clone(),
        at_ms: start_ms,
    });
    st.apply(Command::PutPolicy {
        name: "bench".into(),
        source: "policy \"bench\" {\n  match tenant == \"bench\"\n  guarantee { cpu = 100m }\n  limit { cpu = 500m }\n  on over_limit { throttle now }\n}\n".into(),
        expect: Expect::Any,
        actor: "bench".into(),
        at_ms: start_ms,
    });
    st.apply(Command::PutHost {
        host: Host {
            id: "h1".into(),
            address: "127.0.0.1:1".into(),
            capacity: Resources::default(),
            tee: TeeKind::Sim,
            attestation_status: "trusted".into(),
            last_heartbeat_ms: start_ms,
            agent_cert_fingerprint: String::new(),
            enforcement: String::new(),
            tee_generation: 0,
            labels: Default::default(),
            schedulable: Default::default(),
            measured_load: Default::default(),
        },
        actor: String::new(),
        at_ms: start_ms,
    });
    st.apply(Command::PutEnclave {
        enclave: Enclave {
            id: ENCLAVE.into(),
            tenant: "bench".into(),
            labels: Default::default(),
            tee: TeeKind::Sim,
            expected_measurements: vec![],
            requested: Resources::default(),
            priority: 0,
            placement: Some(Placement {
                host: "h1".into(),
                epoch: 1,
            }),
            state: EnclaveState::Pending,
            launch: None,
            scheduling: None,
            version: 0,
        },
        expect: Expect::Any,
        actor: "bench".into(),
        at_ms: start_ms,
    });
    let keys = EnclaveKeys::from_seeds([1; 32], [2; 32]);
    let key = hex::encode(keys.ed25519_public());
    st.apply(Command::Verdicts {
        host: "h1".into(),
        verdicts: vec![VerdictCmd {
            enclave: ENCLAVE.into(),
            attestation: Attestation {
                trusted: true,
                host: "h1".into(),
                tee: Some(TeeKind::Sim),
                measurement: "ab".repeat(48),
                debug: false,
                ed25519_pub: key.clone(),
                x25519_pub: "cd".repeat(32),
                reasons: vec![],
                verified_at_ms: start_ms,
                failures: 0,
                verified_by: 1,
                rekeyed: false,
            },
        }],
        at_ms: start_ms,
    });
    let ctl = ControllerExchange::from_parts([3; 32], [4; 32]);
    let mut producer = Producer::new(
        EnclaveId::from_name(ENCLAVE),
        keys,
        ctl.nonce(),
        &ctl.eph_public(),
        reports_per_second,
    )
    .map_err(|e| anyhow!("producer: {e}"))?;
    let window_ns = 1_000_000_000 / u64::from(reports_per_second.max(1));
    let mut seq_ns = start_ms as u64 * 1_000_000;
    for s in 0..seconds {
        let mut cp = None;
        for _ in 0..reports_per_second {
            let e = producer.emit(&UsageSample {
                window_start_ns: seq_ns,
                window_len_ns: window_ns,
                cpu_ns: window_ns / 4,
                mem_bytes: 64 << 20,
                net_tx_bytes: 0,
                net_rx_bytes: 0,
                gpu_util_bp: 0,
                cpu_wait_ns: 0,
                msgs: Default::default(),
            });
            seq_ns += window_ns;
            cp = e.checkpoint.or(cp);
        }
        let cp = cp.context("no checkpoint after a second of reports")?;
        let at_ms = start_ms + 1000 * (s as i64 + 1);
        st.apply(Command::UsageDigests {
            host: "h1".into(),
            digests: vec![digest_of(&cp, &key, 250)],
            at_ms,
        });
        if s == seconds / 2 {
            // One violation and its throttle, as the loop logs them.
            st.apply(Command::AppendLog {
                subject: ENCLAVE.into(),
                detail: LogDetail::Violation(ViolationDetail::OverLimit(OverLimit {
                    cpu_millicores: Some(900),
                    limit_cpu_millicores: Some(500),
                    seq: Some(cp.last_seq),
                    window_end_ms: Some(at_ms as u64),
                })),
                at_ms,
            });
        }
    }
    let size = st.log.size();
    let end_ms = start_ms + 1000 * (seconds as i64 + 1);
    let t = Instant::now();
    let sel = select(&st, ENCLAVE, start_ms, end_ms, size, end_ms)
        .map_err(|p| anyhow!("select: {p:?}"))?
        .context("the enclave is missing")?;
    let root = st.log.tree().root();
    let head = SthView::new(&signer.sign(size, end_ms as u64, root), &signer.key_id, 1);
    let period = Period {
        from_ms: start_ms,
        to_ms: end_ms,
        issued_at_ms: end_ms,
    };
    let receipt = seal(ENCLAVE, period, sel, head, &signer).map_err(|p| anyhow!("seal: {p:?}"))?;
    let bytes = tribune_receipt::receipt::to_file_bytes(&receipt)?;
    let assemble_ms = t.elapsed().as_secs_f64() * 1e3;
    let trusted = [hex_32(&signer.public_key)?];
    let mut times = Vec::new();
    let mut windows = 0;
    for _ in 0..rounds.max(1) {
        let t = Instant::now();
        let v = tribune_receipt::verify(&bytes, &trusted)?;
        times.push(t.elapsed().as_secs_f64() * 1e3);
        windows = v.windows.len();
    }
    times.sort_by(f64::total_cmp);
    Ok(ReceiptFigures {
        seconds,
        reports_per_second,
        log_entries: st.log.entries.len(),
        receipt_entries: receipt.body.entries.len(),
        receipt_bytes: bytes.len(),
        assemble_ms,
        verify_ms_median: times[times.len() / 2],
        verify_ms_max: times[times.len() - 1],
        windows,
    })
}

fn hex_32(s: &str) -> anyhow::Result<[u8; 32]> {
    let mut out = [0u8; 32];
    hex::decode_to_slice(s, &mut out).context("a 32-byte hex key")?;
    Ok(out)
}

#[cfg(test)]
mod tests {
    #[test]
    fn a_short_receipt_verifies_and_counts_its_windows() {
        let f = super::run(5, 10, 1).expect("bench runs");
        assert_eq!(f.windows, 5);
        // Policy change, enclave change, verdict, 5 digests, 1 violation.
        assert_eq!(f.receipt_entries, 9);
        assert!(f.receipt_bytes > 5 * 162 * 2, "{f:?}");
    }
}
