//! The wire forms: [`UsageReport`] (78 bytes) and [`Checkpoint`] (162 bytes), big-endian,
//! fixed layout, versioned; the decoders are strict (exact length, known version, bounded
//! fields). The layouts are in the [module documentation](super).

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

/// The header every encoding starts with: exactly `len` bytes, the known wire version, then the
/// 16-byte enclave id (returned).
fn header(
    b: &[u8],
    len: usize,
    what: &'static str,
    version_what: &'static str,
) -> Result<[u8; 16]> {
    if b.len() != len {
        return Err(AttestError::malformed(
            what,
            format!("{} bytes, expected {len}", b.len()),
        ));
    }
    let version = u16::from_be_bytes([b[0], b[1]]);
    if version != WIRE_VERSION {
        return Err(AttestError::unsupported(version_what, version.to_string()));
    }
    let mut enclave = [0u8; 16];
    enclave.copy_from_slice(&b[2..18]);
    Ok(enclave)
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
        let enclave = header(b, REPORT_LEN, "usage report", "usage report version")?;
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
        let enclave = header(b, CHECKPOINT_LEN, "checkpoint", "checkpoint version")?;
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
        let r = UsageReport::decode(&e.report[..REPORT_LEN]).unwrap();
        assert_eq!(r.encode().as_slice(), &e.report[..REPORT_LEN]);
        let mut v2 = r.encode();
        v2[1] = 2;
        assert!(UsageReport::decode(&v2).is_err());
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
        };
        let b = r.encode();
        assert_eq!(&b[0..2], &WIRE_VERSION.to_be_bytes());
        assert_eq!(&b[2..18], &[7; 16]);
        assert_eq!(&b[24..26], &[1, 2]);
        assert_eq!(b[33], 3);
        assert_eq!(b[73], 8);
        assert_eq!(&b[74..78], &10_000u32.to_be_bytes());
        assert_eq!(UsageReport::decode(&b).unwrap(), r);
    }

    #[test]
    fn fields_out_of_bounds_are_malformed() {
        let mut r = UsageReport::decode(&setup(1).0.emit(&sample(0)).report[..REPORT_LEN]).unwrap();
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
