//! The wire forms: [`UsageReport`] (v3: 118 bytes; v2: 86; v1: 78) and [`Checkpoint`] (162 bytes),
//! big-endian, fixed layout per version; the decoders are strict (exact length for the
//! version, known version, bounded fields). The layouts are in the
//! [module documentation](super).

use super::*;
use crate::error::{AttestError, Result};

const CHECKPOINT_SIGNED_LEN: usize = 98;
const CHECKPOINT_DOMAIN: &[u8] = b"tribune/checkpoint/v1";

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
    /// Time in the window the enclave was runnable but not running (its unserved CPU demand),
    /// ns, summed over its threads like `cpu_ns` (so it may exceed the window on several
    /// CPUs). `None`: a v1 report, which does not say (and encodes as v1 again).
    pub cpu_wait_ns: Option<u64>,
    /// The enclave's inter-enclave messages in the window. `Some`: a v3 report (which always
    /// carries the wait too: a v3 report without one encodes it as 0). `None`: v2 or v1.
    pub msgs: Option<MsgCounts>,
}

/// An enclave's inter-enclave messages in one window, as its host's mediator counted them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct MsgCounts {
    /// Messages it sent that the mediator accepted, and their payload bytes.
    pub sent: u64,
    pub sent_bytes: u64,
    /// Messages it sent that were refused (talk rules, a full queue, its rate), and their
    /// payload bytes.
    pub refused: u64,
    pub refused_bytes: u64,
}

impl MsgCounts {
    /// Nothing sent and nothing refused.
    pub fn is_empty(&self) -> bool {
        *self == MsgCounts::default()
    }
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
    /// Runnable but not running in the window, ns (the report's `cpu_wait_ns`).
    pub cpu_wait_ns: u64,
    /// Its inter-enclave messages (the report is v3 when any, v2 when none).
    pub msgs: MsgCounts,
}

/// An encoded [`UsageReport`] (v1 or v2) without allocating: the bytes are `&self[..]`.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct ReportBytes {
    buf: [u8; REPORT_LEN_V3],
    len: usize,
}

/// A MAC'd report (`report ‖ tag`, v1 or v2) without allocating: the bytes are `&self[..]`.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct MacReport {
    buf: [u8; MAC_REPORT_LEN_V3],
    len: usize,
}

macro_rules! byte_view {
    ($t:ty) => {
        impl std::ops::Deref for $t {
            type Target = [u8];
            fn deref(&self) -> &[u8] {
                &self.buf[..self.len]
            }
        }
        impl std::ops::DerefMut for $t {
            fn deref_mut(&mut self) -> &mut [u8] {
                &mut self.buf[..self.len]
            }
        }
        impl AsRef<[u8]> for $t {
            fn as_ref(&self) -> &[u8] {
                self
            }
        }
        impl $t {
            /// The encoded bytes.
            pub fn as_slice(&self) -> &[u8] {
                self
            }
        }
        impl std::fmt::Debug for $t {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                write!(f, "{}({})", stringify!($t), hex::encode(&self[..]))
            }
        }
    };
}
byte_view!(ReportBytes);
byte_view!(MacReport);

impl MacReport {
    /// `report ‖ tag(report)`.
    pub(super) fn new(report: &[u8], tag: &[u8]) -> MacReport {
        debug_assert!(report.len() <= REPORT_LEN_V3 && tag.len() == TAG_LEN);
        let mut buf = [0u8; MAC_REPORT_LEN_V3];
        buf[..report.len()].copy_from_slice(report);
        buf[report.len()..report.len() + TAG_LEN].copy_from_slice(tag);
        MacReport {
            buf,
            len: report.len() + TAG_LEN,
        }
    }

    /// The report without its tag.
    pub fn body(&self) -> &[u8] {
        &self.buf[..self.len - TAG_LEN]
    }
}

/// The encoded length of a report of the version its first two bytes name; `None` for too
/// few bytes or an unknown version.
pub fn report_len(b: &[u8]) -> Option<usize> {
    match u16::from_be_bytes([*b.first()?, *b.get(1)?]) {
        REPORT_VERSION_V3 => Some(REPORT_LEN_V3),
        REPORT_VERSION => Some(REPORT_LEN),
        REPORT_VERSION_V1 => Some(REPORT_LEN_V1),
        _ => None,
    }
}

/// The report in a bare (`report`) or MAC'd (`report ‖ tag`) wire form, by its version and the
/// length: anything else is malformed.
pub fn report_body(wire: &[u8]) -> Result<&[u8]> {
    let len = report_len(wire).ok_or_else(|| {
        AttestError::malformed(
            "usage report",
            format!("{} bytes, unknown version", wire.len()),
        )
    })?;
    if wire.len() == len || wire.len() == len + TAG_LEN {
        Ok(&wire[..len])
    } else {
        Err(AttestError::malformed(
            "usage report",
            format!("{} bytes, expected {len} or {}", wire.len(), len + TAG_LEN),
        ))
    }
}

/// The header every encoding starts with: the wire version `len_of` knows (it gives that
/// version's length), exactly that many bytes, then the 16-byte enclave id (returned with the
/// version).
fn header(
    b: &[u8],
    len_of: impl Fn(u16) -> Option<usize>,
    what: &'static str,
    version_what: &'static str,
) -> Result<(u16, [u8; 16])> {
    if b.len() < 2 {
        return Err(AttestError::malformed(
            what,
            format!("{} bytes, too short for a version", b.len()),
        ));
    }
    let version = u16::from_be_bytes([b[0], b[1]]);
    let Some(len) = len_of(version) else {
        return Err(AttestError::unsupported(version_what, version.to_string()));
    };
    if b.len() != len {
        return Err(AttestError::malformed(
            what,
            format!("{} bytes, expected {len} for version {version}", b.len()),
        ));
    }
    let mut enclave = [0u8; 16];
    enclave.copy_from_slice(&b[2..18]);
    Ok((version, enclave))
}

fn be_u64(b: &[u8], at: usize) -> u64 {
    let mut a = [0u8; 8];
    a.copy_from_slice(&b[at..at + 8]);
    u64::from_be_bytes(a)
}

impl UsageReport {
    /// Canonical encoding: v3 when it carries message counts, v2 when it carries
    /// `cpu_wait_ns` only, v1 (as it was decoded) when neither.
    pub fn encode(&self) -> ReportBytes {
        let mut b = [0u8; REPORT_LEN_V3];
        let (version, len) = match (self.cpu_wait_ns, self.msgs) {
            (wait, Some(m)) => {
                b[78..86].copy_from_slice(&wait.unwrap_or(0).to_be_bytes());
                b[86..94].copy_from_slice(&m.sent.to_be_bytes());
                b[94..102].copy_from_slice(&m.sent_bytes.to_be_bytes());
                b[102..110].copy_from_slice(&m.refused.to_be_bytes());
                b[110..118].copy_from_slice(&m.refused_bytes.to_be_bytes());
                (REPORT_VERSION_V3, REPORT_LEN_V3)
            }
            (Some(wait), None) => {
                b[78..86].copy_from_slice(&wait.to_be_bytes());
                (REPORT_VERSION, REPORT_LEN)
            }
            (None, None) => (REPORT_VERSION_V1, REPORT_LEN_V1),
        };
        b[0..2].copy_from_slice(&version.to_be_bytes());
        b[2..18].copy_from_slice(&self.enclave.0);
        b[18..26].copy_from_slice(&self.seq.to_be_bytes());
        b[26..34].copy_from_slice(&self.window_start_ns.to_be_bytes());
        b[34..42].copy_from_slice(&self.window_len_ns.to_be_bytes());
        b[42..50].copy_from_slice(&self.cpu_ns.to_be_bytes());
        b[50..58].copy_from_slice(&self.mem_bytes.to_be_bytes());
        b[58..66].copy_from_slice(&self.net_tx_bytes.to_be_bytes());
        b[66..74].copy_from_slice(&self.net_rx_bytes.to_be_bytes());
        b[74..78].copy_from_slice(&self.gpu_util_bp.to_be_bytes());
        ReportBytes { buf: b, len }
    }

    /// Strict decoder: exact length for its version (v3: 118, v2: 86, v1: 78), known version,
    /// bounded fields.
    pub fn decode(b: &[u8]) -> Result<Self> {
        let len_of = |v| match v {
            REPORT_VERSION_V3 => Some(REPORT_LEN_V3),
            REPORT_VERSION => Some(REPORT_LEN),
            REPORT_VERSION_V1 => Some(REPORT_LEN_V1),
            _ => None,
        };
        let (version, enclave) = header(b, len_of, "usage report", "usage report version")?;
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
            cpu_wait_ns: (version != REPORT_VERSION_V1).then(|| be_u64(b, 78)),
            msgs: (version == REPORT_VERSION_V3).then(|| MsgCounts {
                sent: be_u64(b, 86),
                sent_bytes: be_u64(b, 94),
                refused: be_u64(b, 102),
                refused_bytes: be_u64(b, 110),
            }),
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

pub(super) fn to32(s: &[u8]) -> [u8; 32] {
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
        b[0..2].copy_from_slice(&CHECKPOINT_VERSION.to_be_bytes());
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
        let len_of = |v| (v == CHECKPOINT_VERSION).then_some(CHECKPOINT_LEN);
        let (_, enclave) = header(b, len_of, "checkpoint", "checkpoint version")?;
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
}

#[cfg(test)]
mod tests {
    use super::super::testing::*;
    use super::*;

    #[test]
    fn decoders_are_strict() {
        let (mut p, _) = setup(1);
        let e = p.emit(&sample(0));
        let cp = e.checkpoint.unwrap();
        assert_eq!(Checkpoint::decode(&cp.encode()).unwrap(), cp);
        assert!(Checkpoint::decode(&cp.encode()[..161]).is_err());
        let r = UsageReport::decode(e.report.body()).unwrap();
        assert_eq!(r.encode().as_slice(), e.report.body());
        assert_eq!(e.report.body().len(), REPORT_LEN, "producers write v2");
        let mut v4 = r.encode();
        v4[1] = 4;
        assert!(UsageReport::decode(&v4).is_err());
        // v3 bytes at v2's length.
        let mut v3_short = r.encode();
        v3_short[1] = 3;
        assert!(UsageReport::decode(&v3_short).is_err());
        // A version whose length does not match: v1 bytes at v2's length and back.
        let mut v1_long = r.encode();
        v1_long[1] = 1;
        assert!(UsageReport::decode(&v1_long).is_err());
        assert!(UsageReport::decode(&r.encode()[..REPORT_LEN_V1]).is_err());
        let mut padded = e.report.to_vec();
        padded.push(0);
        assert!(UsageReport::decode(&padded).is_err());
    }

    #[test]
    fn report_layout_is_big_endian_at_fixed_offsets() {
        let r = UsageReport {
            enclave: ENCLAVE,
            seq: 0x0102,
            window_start_ns: 3,
            window_len_ns: 4,
            cpu_ns: 5,
            mem_bytes: 6,
            net_tx_bytes: 7,
            net_rx_bytes: 8,
            gpu_util_bp: 10_000,
            cpu_wait_ns: Some(0x0a0b),
            msgs: None,
        };
        let b = r.encode();
        assert_eq!(b.len(), REPORT_LEN);
        assert_eq!(&b[0..2], &REPORT_VERSION.to_be_bytes());
        assert_eq!(&b[78..86], &0x0a0bu64.to_be_bytes());
        assert_eq!(&b[2..18], &[7; 16]);
        assert_eq!(&b[24..26], &[1, 2]);
        assert_eq!(b[33], 3);
        assert_eq!(b[73], 8);
        assert_eq!(&b[74..78], &10_000u32.to_be_bytes());
        assert_eq!(UsageReport::decode(&b).unwrap(), r);
    }

    #[test]
    fn v3_reports_carry_message_counts_after_the_wait() {
        let mut r = UsageReport::decode(setup(1).0.emit(&sample(1)).report.body()).unwrap();
        r.msgs = Some(MsgCounts {
            sent: 0x11,
            sent_bytes: 0x22,
            refused: 0x33,
            refused_bytes: 0x44,
        });
        let b = r.encode();
        assert_eq!(b.len(), REPORT_LEN_V3);
        assert_eq!(&b[0..2], &REPORT_VERSION_V3.to_be_bytes());
        assert_eq!(&b[78..86], &r.cpu_wait_ns.unwrap().to_be_bytes());
        assert_eq!((b[93], b[101], b[109], b[117]), (0x11, 0x22, 0x33, 0x44));
        assert_eq!(UsageReport::decode(&b).unwrap(), r);
        assert_eq!(report_len(&b), Some(REPORT_LEN_V3));
        assert!(UsageReport::decode(&b[..REPORT_LEN]).is_err());
        // A producer seals v3 for a window with messages, v2 for one without.
        let (mut p, mut v) = setup(1);
        let mut s = sample(1);
        s.msgs.refused = 3;
        let e = p.emit(&s);
        assert_eq!(e.report.body().len(), REPORT_LEN_V3);
        assert_eq!(e.report.len(), MAC_REPORT_LEN_V3);
        let opened = v.verify_report(&e.report, NOW).unwrap();
        assert_eq!(opened.msgs.map(|m| m.refused), Some(3));
        assert_eq!(p.emit(&sample(2)).report.body().len(), REPORT_LEN);
    }

    #[test]
    fn v1_reports_still_decode_and_re_encode_byte_for_byte() {
        // A v1 report as an agent before the demand signal wrote it (fixed bytes, not this
        // encoder's output): the wait is unknown, and the same 78 bytes come back.
        let mut v1 = [0u8; REPORT_LEN_V1];
        v1[1] = 1;
        v1[2..18].copy_from_slice(&[7; 16]);
        v1[25] = 9; // seq 9
        v1[41] = 100; // window_len_ns 100
        v1[49] = 50; // cpu_ns 50
        let r = UsageReport::decode(&v1).unwrap();
        assert_eq!((r.seq, r.cpu_ns, r.cpu_wait_ns), (9, 50, None));
        assert_eq!(r.encode().as_slice(), &v1[..]);
        assert_eq!(report_len(&v1), Some(REPORT_LEN_V1));
        assert_eq!(report_body(&v1).unwrap(), &v1[..]);
        let mut mac_d = v1.to_vec();
        mac_d.extend_from_slice(&[0; TAG_LEN]);
        assert_eq!(report_body(&mac_d).unwrap(), &v1[..]);
        mac_d.push(0);
        assert!(report_body(&mac_d).is_err());
        assert!(report_body(&[]).is_err());
        assert_eq!(report_len(&[0, 2]), Some(REPORT_LEN));
        assert_eq!(report_len(&[0, 9]), None);
    }

    #[test]
    fn fields_out_of_bounds_are_malformed() {
        let mut r = UsageReport::decode(setup(1).0.emit(&sample(0)).report.body()).unwrap();
        r.gpu_util_bp = GPU_UTIL_BP_MAX + 1;
        let e = UsageReport::decode(&r.encode()).unwrap_err();
        assert!(e.to_string().contains("gpu_util_bp"), "{e}");
        r.gpu_util_bp = 0;
        r.window_start_ns = u64::MAX;
        let e = UsageReport::decode(&r.encode()).unwrap_err();
        assert!(e.to_string().contains("window end overflows"), "{e}");
    }

    #[test]
    fn checkpoint_ranges_are_bounded() {
        let cp = Checkpoint {
            enclave: ENCLAVE,
            first_seq: 5,
            last_seq: 4,
            prev_head: [1; 32],
            head: [2; 32],
            signature: [3; 64],
        };
        assert!(Checkpoint::decode(&cp.encode()).is_err(), "empty range");
        let wide = Checkpoint {
            first_seq: 1,
            last_seq: CHECKPOINT_SPAN_MAX + 1,
            ..cp
        };
        assert!(
            Checkpoint::decode(&wide.encode()).is_err(),
            "over the span bound"
        );
        let ok = Checkpoint {
            first_seq: 1,
            last_seq: CHECKPOINT_SPAN_MAX,
            ..cp
        };
        assert_eq!(Checkpoint::decode(&ok.encode()).unwrap(), ok);
        // The signature covers the domain and the first 98 bytes.
        let m = ok.signed_message();
        assert!(m.starts_with(b"tribune/checkpoint/v1"));
        assert_eq!(
            &m[CHECKPOINT_DOMAIN.len()..],
            &ok.encode()[..CHECKPOINT_SIGNED_LEN]
        );
    }

    #[test]
    fn enclave_ids_from_names() {
        let a = EnclaveId::from_name("web-1");
        assert_eq!(a, EnclaveId::from_name("web-1"));
        assert_ne!(a, EnclaveId::from_name("web-2"));
        assert_eq!(a.to_string().len(), 32);
        assert_eq!(EnclaveId([0xab; 16]).to_string(), "ab".repeat(16));
    }
}
