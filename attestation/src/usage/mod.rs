//! Authenticated usage reports (DESIGN.md §4.3–4.4).
//!
//! Wire formats (all integers big-endian, fixed layout, versioned, strict decoders):
//!
//! ```text
//! UsageReport v2 (86 bytes)          MacReport = UsageReport ‖ HMAC-SHA256 tag (32) = 118 bytes
//!   0  u16 version = 2
//!   2  [16] enclave id
//!  18  u64 seq
//!  26  u64 window_start_ns (Unix ns)
//!  34  u64 window_len_ns
//!  42  u64 cpu_ns
//!  50  u64 mem_bytes
//!  58  u64 net_tx_bytes
//!  66  u64 net_rx_bytes
//!  74  u32 gpu_util_bp (basis points of one GPU; 10_000 = one GPU fully busy)
//!  78  u64 cpu_wait_ns  (time in the window the enclave was runnable but not running: its
//!                        demand the host did not serve; see docs/receipts.md)
//!
//! UsageReport v3 (118 bytes, MAC'd 150): version = 3, bytes 0..86 as v2, then the enclave's
//!   inter-enclave messages in the window, as the host's mediator counted them
//!   (docs/messages.md "Usage facts"):
//!  86  u64 msgs_sent           messages it sent that the mediator accepted
//!  94  u64 msgs_sent_bytes     their payload bytes
//! 102  u64 msgs_refused        messages it sent that were refused (rules, full queue, rate)
//! 110  u64 msgs_refused_bytes  their payload bytes
//!   Producers write v3 only for a window with messages (sent or refused); a window without
//!   stays v2, so enclaves that never message produce exactly the bytes they did before.
//!
//! UsageReport v1 (78 bytes, MAC'd 110): version = 1 and bytes 0..78 as above, without
//!   `cpu_wait_ns`. Still decoded (the wait is then unknown: `cpu_wait_ns = None`) and
//!   re-encoded byte for byte as v1, so hash chains and sample roots over v1 reports still
//!   verify. New producers write v2 only.
//!
//! Checkpoint v1 (162 bytes)
//!   0  u16 version = 1
//!   2  [16] enclave id
//!  18  u64 first_seq
//!  26  u64 last_seq
//!  34  [32] prev_head   hash-chain head before first_seq
//!  66  [32] head        hash-chain head after last_seq
//!  98  [64] ed25519 signature over "tribune/checkpoint/v1" ‖ bytes 0..98
//! ```
//!
//! The hash chain runs over the encoded reports: `head' = SHA-256(head ‖ report_bytes)`, from
//! `genesis = SHA-256("tribune/usage-chain/v1/genesis" ‖ enclave)`. Reports are MAC'd (cheap,
//! millions per second); every N reports a checkpoint is signed (third-party verifiable, goes
//! into the log). A usage report *counts* only once a checkpoint covering it verifies.
//!
//! - `wire`: the reports and checkpoints and their strict encodings.
//! - `crypto`: the report MAC, the hash chain and checkpoint signatures.
//! - `producer`: the enclave side ([`Producer`]).
//! - `verifier`: the controller side ([`StreamVerifier`], [`verify_by_checkpoint`]).

mod crypto;
mod producer;
mod verifier;
mod wire;

pub use crypto::{MacKey, chain_genesis, chain_step, verify_checkpoint_signatures};
pub use producer::{Emitted, Producer};
pub use verifier::{Confirmed, Freshness, StreamVerifier, verify_by_checkpoint};
pub use wire::{
    Checkpoint, EnclaveId, MacReport, MsgCounts, ReportBytes, UsageReport, UsageSample,
    report_body, report_len,
};

/// Wire version of a [`UsageReport`] that carries `cpu_wait_ns` (what producers write).
pub const REPORT_VERSION: u16 = 2;
/// Wire version of a [`UsageReport`] that also carries message counts ([`MsgCounts`]).
pub const REPORT_VERSION_V3: u16 = 3;
/// Wire version of a [`UsageReport`] without `cpu_wait_ns` (still decoded).
pub const REPORT_VERSION_V1: u16 = 1;
/// Wire version of a [`Checkpoint`].
pub const CHECKPOINT_VERSION: u16 = 1;
/// Encoded size of a v2 [`UsageReport`] (what producers write for a window without messages).
pub const REPORT_LEN: usize = 86;
/// Encoded size of a v3 [`UsageReport`] (with message counts); the largest report.
pub const REPORT_LEN_V3: usize = 118;
/// Encoded size of a v1 [`UsageReport`].
pub const REPORT_LEN_V1: usize = 78;
/// HMAC-SHA256 tag length.
pub const TAG_LEN: usize = 32;
/// Encoded size of a MAC'd v2 report.
pub const MAC_REPORT_LEN: usize = REPORT_LEN + TAG_LEN;
/// Encoded size of a MAC'd v3 report; the largest.
pub const MAC_REPORT_LEN_V3: usize = REPORT_LEN_V3 + TAG_LEN;
/// Encoded size of a MAC'd v1 report.
pub const MAC_REPORT_LEN_V1: usize = REPORT_LEN_V1 + TAG_LEN;
/// Encoded size of a [`Checkpoint`].
pub const CHECKPOINT_LEN: usize = 162;
/// Upper bound on `gpu_util_bp` (64 GPUs fully busy): anything above is malformed.
pub const GPU_UTIL_BP_MAX: u32 = 64 * 10_000;
/// Upper bound on reports one checkpoint may cover, and on reports a verifier holds unconfirmed.
pub const CHECKPOINT_SPAN_MAX: u64 = 4096;

/// Shared by the unit tests of the usage modules.
#[cfg(test)]
mod testing {
    use super::*;
    use crate::session::{BoundEnclave, ControllerExchange, EnclaveKeys};

    pub const ENCLAVE: EnclaveId = EnclaveId([7; 16]);

    /// A producer and the controller's binding of it, after one key exchange.
    pub fn bound(every: u32) -> (Producer, BoundEnclave) {
        let keys = EnclaveKeys::from_seeds([1; 32], [2; 32]);
        let ctl = ControllerExchange::from_parts([3; 32], [4; 32]);
        let rd = keys.report_data(ctl.nonce());
        let bound = ctl
            .bind(ENCLAVE, keys.ed25519_public(), keys.x25519_public(), &rd)
            .unwrap();
        let p = Producer::new(ENCLAVE, keys, ctl.nonce(), &ctl.eph_public(), every).unwrap();
        (p, bound)
    }

    /// A producer that signs a checkpoint every `every` reports, and its stream's verifier.
    pub fn setup(every: u32) -> (Producer, StreamVerifier) {
        let (p, bound) = bound(every);
        let v = StreamVerifier::new(&bound, Freshness::default()).unwrap();
        (p, v)
    }

    /// Window `i` of 100 ms, all before [`NOW`].
    pub fn sample(i: u64) -> UsageSample {
        UsageSample {
            window_start_ns: 1_000_000_000_000 + i * 100_000_000,
            window_len_ns: 100_000_000,
            cpu_ns: 50_000_000 + i,
            mem_bytes: 1 << 30,
            net_tx_bytes: 1000 * i,
            net_rx_bytes: 2000 * i,
            gpu_util_bp: 0,
            cpu_wait_ns: 1_000 * i,
            msgs: MsgCounts::default(),
        }
    }

    /// The end of window 100.
    pub const NOW: u64 = 1_000_000_000_000 + 100 * 100_000_000;
}
