//! Authenticated usage reports (DESIGN.md §4.3–4.4).
//!
//! Wire formats (all integers big-endian, fixed layout, versioned, strict decoders):
//!
//! ```text
//! UsageReport v1 (78 bytes)          MacReport = UsageReport ‖ HMAC-SHA256 tag (32) = 110 bytes
//!   0  u16 version = 1
//!   2  [16] enclave id
//!  18  u64 seq
//!  26  u64 window_start_ns (Unix ns)
//!  34  u64 window_len_ns
//!  42  u64 cpu_ns
//!  50  u64 mem_bytes
//!  58  u64 net_tx_bytes
//!  66  u64 net_rx_bytes
//!  74  u32 gpu_util_bp (basis points of one GPU; 10_000 = one GPU fully busy)
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

use std::collections::VecDeque;

use ed25519_dalek::{Signature, Signer, VerifyingKey};

use crate::error::{AttestError, Result};
use crate::session::{EnclaveKeys, NONCE_LEN, SessionKey};

/// Current wire version of [`UsageReport`] and [`Checkpoint`].
pub const WIRE_VERSION: u16 = 1;
/// Encoded size of a [`UsageReport`].
pub const REPORT_LEN: usize = 78;
/// HMAC-SHA256 tag length.
pub const TAG_LEN: usize = 32;
/// Encoded size of a MAC'd report.
pub const MAC_REPORT_LEN: usize = REPORT_LEN + TAG_LEN;
/// Encoded size of a [`Checkpoint`].
pub const CHECKPOINT_LEN: usize = 162;
/// Upper bound on `gpu_util_bp` (64 GPUs fully busy): anything above is malformed.
pub const GPU_UTIL_BP_MAX: u32 = 64 * 10_000;
/// Upper bound on reports one checkpoint may cover, and on reports a verifier holds unconfirmed.
pub const CHECKPOINT_SPAN_MAX: u64 = 4096;

const CHECKPOINT_SIGNED_LEN: usize = 98;
const CHECKPOINT_DOMAIN: &[u8] = b"tribune/checkpoint/v1";
const GENESIS_DOMAIN: &[u8] = b"tribune/usage-chain/v1/genesis";

/// An enclave's identity on the wire: 16 bytes (a UUID, or a hash of a name).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct EnclaveId(pub [u8; 16]);

impl EnclaveId {
    /// First 16 bytes of SHA-256 of a name: for callers whose ids are strings.
    pub fn from_name(name: &str) -> Self {
        let d = ring::digest::digest(&ring::digest::SHA256, name.as_bytes());
        let mut id = [0u8; 16];
        id.copy_from_slice(&d.as_ref()[..16]);
        EnclaveId(id)
    }
}

impl std::fmt::Display for EnclaveId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&hex::encode(self.0))
    }
}

/// One window of an enclave's resource usage, as the enclave measured it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct UsageReport {
    pub enclave: EnclaveId,
    pub seq: u64,
    pub window_start_ns: u64,
    pub window_len_ns: u64,
    pub cpu_ns: u64,
    pub mem_bytes: u64,
    pub net_tx_bytes: u64,
    pub net_rx_bytes: u64,
    pub gpu_util_bp: u32,
}

/// The measurements of one window, without the identity and sequence the producer adds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct UsageSample {
    pub window_start_ns: u64,
    pub window_len_ns: u64,
    pub cpu_ns: u64,
    pub mem_bytes: u64,
    pub net_tx_bytes: u64,
    pub net_rx_bytes: u64,
    pub gpu_util_bp: u32,
}

fn be_u64(b: &[u8], at: usize) -> u64 {
    let mut a = [0u8; 8];
    a.copy_from_slice(&b[at..at + 8]);
    u64::from_be_bytes(a)
}

impl UsageReport {
    /// Canonical encoding.
    pub fn encode(&self) -> [u8; REPORT_LEN] {
        let mut b = [0u8; REPORT_LEN];
        b[0..2].copy_from_slice(&WIRE_VERSION.to_be_bytes());
        b[2..18].copy_from_slice(&self.enclave.0);
        b[18..26].copy_from_slice(&self.seq.to_be_bytes());
        b[26..34].copy_from_slice(&self.window_start_ns.to_be_bytes());
        b[34..42].copy_from_slice(&self.window_len_ns.to_be_bytes());
        b[42..50].copy_from_slice(&self.cpu_ns.to_be_bytes());
        b[50..58].copy_from_slice(&self.mem_bytes.to_be_bytes());
        b[58..66].copy_from_slice(&self.net_tx_bytes.to_be_bytes());
        b[66..74].copy_from_slice(&self.net_rx_bytes.to_be_bytes());
        b[74..78].copy_from_slice(&self.gpu_util_bp.to_be_bytes());
        b
    }

    /// Strict decoder: exact length, known version, bounded fields.
    pub fn decode(b: &[u8]) -> Result<Self> {
        if b.len() != REPORT_LEN {
            return Err(AttestError::malformed(
                "usage report",
                format!("{} bytes, expected {REPORT_LEN}", b.len()),
            ));
        }
        let version = u16::from_be_bytes([b[0], b[1]]);
        if version != WIRE_VERSION {
            return Err(AttestError::unsupported(
                "usage report version",
                version.to_string(),
            ));
        }
        let mut enclave = [0u8; 16];
        enclave.copy_from_slice(&b[2..18]);
        let gpu_util_bp = u32::from_be_bytes([b[74], b[75], b[76], b[77]]);
        if gpu_util_bp > GPU_UTIL_BP_MAX {
            return Err(AttestError::malformed(
                "usage report",
                format!("gpu_util_bp {gpu_util_bp} > {GPU_UTIL_BP_MAX}"),
            ));
        }
        let r = UsageReport {
            enclave: EnclaveId(enclave),
            seq: be_u64(b, 18),
            window_start_ns: be_u64(b, 26),
            window_len_ns: be_u64(b, 34),
            cpu_ns: be_u64(b, 42),
            mem_bytes: be_u64(b, 50),
            net_tx_bytes: be_u64(b, 58),
            net_rx_bytes: be_u64(b, 66),
            gpu_util_bp,
        };
        if r.window_start_ns.checked_add(r.window_len_ns).is_none() {
            return Err(AttestError::malformed(
                "usage report",
                "window end overflows",
            ));
        }
        Ok(r)
    }
}

/// A MAC key ready for use (the HMAC inner/outer states are precomputed once per session).
#[derive(Clone)]
pub struct MacKey(ring::hmac::Key);

impl MacKey {
    /// Precompute from a session key.
    pub fn new(key: &SessionKey) -> Self {
        MacKey(ring::hmac::Key::new(ring::hmac::HMAC_SHA256, &key.0))
    }

    /// MAC'd wire form of an encoded report.
    pub fn seal(&self, report: &[u8; REPORT_LEN]) -> [u8; MAC_REPORT_LEN] {
        let tag = ring::hmac::sign(&self.0, report);
        let mut out = [0u8; MAC_REPORT_LEN];
        out[..REPORT_LEN].copy_from_slice(report);
        out[REPORT_LEN..].copy_from_slice(tag.as_ref());
        out
    }

    /// Check the MAC of a wire report (constant time) and decode it.
    pub fn open(&self, wire: &[u8]) -> Result<UsageReport> {
        if wire.len() != MAC_REPORT_LEN {
            return Err(AttestError::malformed(
                "MAC'd usage report",
                format!("{} bytes, expected {MAC_REPORT_LEN}", wire.len()),
            ));
        }
        let (body, tag) = wire.split_at(REPORT_LEN);
        ring::hmac::verify(&self.0, body, tag)
            .map_err(|_| AttestError::BadSignature("usage report MAC".into()))?;
        UsageReport::decode(body)
    }
}

impl std::fmt::Debug for MacKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("MacKey(..)")
    }
}

/// Hash-chain genesis for an enclave.
pub fn chain_genesis(enclave: &EnclaveId) -> [u8; 32] {
    let mut ctx = ring::digest::Context::new(&ring::digest::SHA256);
    ctx.update(GENESIS_DOMAIN);
    ctx.update(&enclave.0);
    to32(ctx.finish().as_ref())
}

/// One step of the hash chain: `SHA-256(head ‖ report_bytes)`.
pub fn chain_step(head: &[u8; 32], report: &[u8]) -> [u8; 32] {
    let mut ctx = ring::digest::Context::new(&ring::digest::SHA256);
    ctx.update(head);
    ctx.update(report);
    to32(ctx.finish().as_ref())
}

fn to32(s: &[u8]) -> [u8; 32] {
    let mut a = [0u8; 32];
    a.copy_from_slice(&s[..32]);
    a
}

/// A signed statement: "these are the reports `first_seq..=last_seq` of `enclave`, and their
/// hash chain runs from `prev_head` to `head`".
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Checkpoint {
    pub enclave: EnclaveId,
    pub first_seq: u64,
    pub last_seq: u64,
    pub prev_head: [u8; 32],
    pub head: [u8; 32],
    pub signature: [u8; 64],
}

impl Checkpoint {
    fn signed_bytes(&self) -> [u8; CHECKPOINT_SIGNED_LEN] {
        let mut b = [0u8; CHECKPOINT_SIGNED_LEN];
        b[0..2].copy_from_slice(&WIRE_VERSION.to_be_bytes());
        b[2..18].copy_from_slice(&self.enclave.0);
        b[18..26].copy_from_slice(&self.first_seq.to_be_bytes());
        b[26..34].copy_from_slice(&self.last_seq.to_be_bytes());
        b[34..66].copy_from_slice(&self.prev_head);
        b[66..98].copy_from_slice(&self.head);
        b
    }

    /// The exact message the ed25519 signature covers (domain-separated).
    pub fn signed_message(&self) -> Vec<u8> {
        let mut m = Vec::with_capacity(CHECKPOINT_DOMAIN.len() + CHECKPOINT_SIGNED_LEN);
        m.extend_from_slice(CHECKPOINT_DOMAIN);
        m.extend_from_slice(&self.signed_bytes());
        m
    }

    /// Canonical encoding.
    pub fn encode(&self) -> [u8; CHECKPOINT_LEN] {
        let mut b = [0u8; CHECKPOINT_LEN];
        b[..CHECKPOINT_SIGNED_LEN].copy_from_slice(&self.signed_bytes());
        b[CHECKPOINT_SIGNED_LEN..].copy_from_slice(&self.signature);
        b
    }

    /// Strict decoder (exact length, version, `first_seq <= last_seq`, bounded span).
    pub fn decode(b: &[u8]) -> Result<Self> {
        if b.len() != CHECKPOINT_LEN {
            return Err(AttestError::malformed(
                "checkpoint",
                format!("{} bytes, expected {CHECKPOINT_LEN}", b.len()),
            ));
        }
        let version = u16::from_be_bytes([b[0], b[1]]);
        if version != WIRE_VERSION {
            return Err(AttestError::unsupported(
                "checkpoint version",
                version.to_string(),
            ));
        }
        let mut enclave = [0u8; 16];
        enclave.copy_from_slice(&b[2..18]);
        let first_seq = be_u64(b, 18);
        let last_seq = be_u64(b, 26);
        if first_seq > last_seq || last_seq - first_seq >= CHECKPOINT_SPAN_MAX {
            return Err(AttestError::malformed(
                "checkpoint",
                format!("seq range {first_seq}..={last_seq} empty or over {CHECKPOINT_SPAN_MAX}"),
            ));
        }
        let mut signature = [0u8; 64];
        signature.copy_from_slice(&b[98..162]);
        Ok(Checkpoint {
            enclave: EnclaveId(enclave),
            first_seq,
            last_seq,
            prev_head: to32(&b[34..66]),
            head: to32(&b[66..98]),
            signature,
        })
    }

    /// Verify the signature alone (single).
    pub fn verify_signature(&self, key: &VerifyingKey) -> Result<()> {
        key.verify_strict(
            &self.signed_message(),
            &Signature::from_bytes(&self.signature),
        )
        .map_err(|_| AttestError::BadSignature("checkpoint signature".into()))
    }
}

/// Verify many checkpoint signatures at once (ed25519 batch verification, ~2× faster per
/// signature). On failure, falls back to single checks to say which one failed: returns one
/// result per checkpoint.
pub fn verify_checkpoint_signatures(items: &[(Checkpoint, VerifyingKey)]) -> Vec<Result<()>> {
    if items.is_empty() {
        return Vec::new();
    }
    let msgs: Vec<Vec<u8>> = items.iter().map(|(c, _)| c.signed_message()).collect();
    let msg_refs: Vec<&[u8]> = msgs.iter().map(|m| m.as_slice()).collect();
    let sigs: Vec<Signature> = items
        .iter()
        .map(|(c, _)| Signature::from_bytes(&c.signature))
        .collect();
    let keys: Vec<VerifyingKey> = items.iter().map(|(_, k)| *k).collect();
    if ed25519_dalek::verify_batch(&msg_refs, &sigs, &keys).is_ok() {
        return items.iter().map(|_| Ok(())).collect();
    }
    items.iter().map(|(c, k)| c.verify_signature(k)).collect()
}

/// Enclave side: holds the keys and the session, numbers reports, MACs them, keeps the hash
/// chain and signs a checkpoint every `checkpoint_every` reports.
pub struct Producer {
    enclave: EnclaveId,
    keys: EnclaveKeys,
    mac: MacKey,
    next_seq: u64,
    head: [u8; 32],
    span_first: u64,
    span_prev_head: [u8; 32],
    checkpoint_every: u64,
}

/// What the producer emits for one window.
#[derive(Debug, Clone)]
pub struct Emitted {
    /// The MAC'd report (wire form).
    pub report: [u8; MAC_REPORT_LEN],
    /// A checkpoint, when this report closes a span.
    pub checkpoint: Option<Checkpoint>,
}

impl Producer {
    /// Start a stream after the key exchange: `nonce` and `controller_eph_pub` come from the
    /// controller; the first report gets `seq = 1`.
    pub fn new(
        enclave: EnclaveId,
        keys: EnclaveKeys,
        nonce: &[u8; NONCE_LEN],
        controller_eph_pub: &[u8; 32],
        checkpoint_every: u32,
    ) -> Result<Self> {
        let session = keys.session_key(&enclave, nonce, controller_eph_pub)?;
        let every = u64::from(checkpoint_every.max(1)).min(CHECKPOINT_SPAN_MAX);
        let genesis = chain_genesis(&enclave);
        Ok(Producer {
            enclave,
            keys,
            mac: MacKey::new(&session),
            next_seq: 1,
            head: genesis,
            span_first: 1,
            span_prev_head: genesis,
            checkpoint_every: every,
        })
    }

    /// Switch to a new session key (after re-keying with a new controller); the sequence
    /// numbers and the hash chain continue.
    pub fn rekey(&mut self, nonce: &[u8; NONCE_LEN], controller_eph_pub: &[u8; 32]) -> Result<()> {
        let session = self
            .keys
            .session_key(&self.enclave, nonce, controller_eph_pub)?;
        self.mac = MacKey::new(&session);
        Ok(())
    }

    /// The enclave's keys (for evidence `report_data` and re-key signatures).
    pub fn keys(&self) -> &EnclaveKeys {
        &self.keys
    }

    /// Produce the report for one window.
    pub fn emit(&mut self, sample: &UsageSample) -> Emitted {
        let report = UsageReport {
            enclave: self.enclave,
            seq: self.next_seq,
            window_start_ns: sample.window_start_ns,
            window_len_ns: sample.window_len_ns,
            cpu_ns: sample.cpu_ns,
            mem_bytes: sample.mem_bytes,
            net_tx_bytes: sample.net_tx_bytes,
            net_rx_bytes: sample.net_rx_bytes,
            gpu_util_bp: sample.gpu_util_bp.min(GPU_UTIL_BP_MAX),
        };
        let bytes = report.encode();
        self.head = chain_step(&self.head, &bytes);
        self.next_seq += 1;
        let checkpoint = if report.seq - self.span_first + 1 >= self.checkpoint_every {
            self.checkpoint_now()
        } else {
            None
        };
        Emitted {
            report: self.mac.seal(&bytes),
            checkpoint,
        }
    }

    /// Sign a checkpoint over the reports since the last one (e.g. on a timer or before
    /// disconnecting). `None` when there is nothing new.
    pub fn checkpoint_now(&mut self) -> Option<Checkpoint> {
        let last = self.next_seq.checked_sub(1)?;
        if last < self.span_first {
            return None;
        }
        let mut cp = Checkpoint {
            enclave: self.enclave,
            first_seq: self.span_first,
            last_seq: last,
            prev_head: self.span_prev_head,
            head: self.head,
            signature: [0; 64],
        };
        cp.signature = self
            .keys
            .signing_key()
            .sign(&cp.signed_message())
            .to_bytes();
        self.span_first = last + 1;
        self.span_prev_head = self.head;
        Some(cp)
    }
}

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
        self.head = chain_step(&self.head, &wire[..REPORT_LEN]);
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
        let body = match w.len() {
            REPORT_LEN | MAC_REPORT_LEN => &w[..REPORT_LEN],
            n => {
                return Err(AttestError::malformed("usage report", format!("{n} bytes")));
            }
        };
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
    use super::*;
    use crate::session::ControllerExchange;

    fn setup(every: u32) -> (Producer, StreamVerifier) {
        let keys = EnclaveKeys::from_seeds([1; 32], [2; 32]);
        let id = EnclaveId([7; 16]);
        let ctl = ControllerExchange::from_parts([3; 32], [4; 32]);
        let rd = keys.report_data(ctl.nonce());
        let bound = ctl
            .bind(id, keys.ed25519_public(), keys.x25519_public(), &rd)
            .unwrap();
        let p = Producer::new(id, keys, ctl.nonce(), &ctl.eph_public(), every).unwrap();
        let v = StreamVerifier::new(&bound, Freshness::default()).unwrap();
        (p, v)
    }

    fn sample(i: u64) -> UsageSample {
        UsageSample {
            window_start_ns: 1_000_000_000_000 + i * 100_000_000,
            window_len_ns: 100_000_000,
            cpu_ns: 50_000_000 + i,
            mem_bytes: 1 << 30,
            net_tx_bytes: 1000 * i,
            net_rx_bytes: 2000 * i,
            gpu_util_bp: 0,
        }
    }

    const NOW: u64 = 1_000_000_000_000 + 100 * 100_000_000;

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
    fn failover_path_and_batch() {
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
        let items: Vec<_> = cps.iter().map(|c| (*c, key)).collect();
        assert!(
            verify_checkpoint_signatures(&items)
                .iter()
                .all(|r| r.is_ok())
        );
        let mut bad = items.clone();
        bad[1].0.signature[0] ^= 1;
        let res = verify_checkpoint_signatures(&bad);
        assert!(res[0].is_ok() && res[1].is_err());
    }

    #[test]
    fn decoders_are_strict() {
        let (mut p, _) = setup(1);
        let e = p.emit(&sample(0));
        let cp = e.checkpoint.unwrap();
        assert_eq!(Checkpoint::decode(&cp.encode()).unwrap(), cp);
        assert!(Checkpoint::decode(&cp.encode()[..161]).is_err());
        let r = UsageReport::decode(&e.report[..REPORT_LEN]).unwrap();
        assert_eq!(r.encode().as_slice(), &e.report[..REPORT_LEN]);
        let mut v2 = r.encode();
        v2[1] = 2;
        assert!(UsageReport::decode(&v2).is_err());
        let mut padded = e.report.to_vec();
        padded.push(0);
        assert!(UsageReport::decode(&padded).is_err());
    }
}
