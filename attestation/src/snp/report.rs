//! The SEV-SNP ATTESTATION_REPORT (AMD SEV-SNP ABI spec, table "ATTESTATION_REPORT
//! Structure"), versions 2, 3 and 5: Milan, Genoa and Turin layouts. Parsed from the raw
//! bytes; the signature is later checked over exactly bytes `0x000..0x2A0` of the input.

use crate::error::{AttestError, Result};

/// Size of the report structure.
pub const REPORT_LEN: usize = 0x4A0;
/// End of the signed region.
pub const SIGNED_LEN: usize = 0x2A0;
/// Upper bound on an input we will look at (the kernel's report response is 4000 bytes).
pub const INPUT_LEN_MAX: usize = 16 * 1024;
/// Offset of the SNP report inside an Azure HCL report ("HCLA" header).
const HCL_REPORT_OFFSET: usize = 32;

/// AMD processor generation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize)]
pub enum Product {
    Milan,
    Genoa,
    Turin,
}

impl Product {
    pub fn name(self) -> &'static str {
        match self {
            Product::Milan => "Milan",
            Product::Genoa => "Genoa",
            Product::Turin => "Turin",
        }
    }

    /// From CPUID family/model (report v3+).
    pub fn from_cpuid(family: u8, model: u8) -> Option<Self> {
        match (family, model) {
            (0x19, 0x00..=0x0F) => Some(Product::Milan),
            (0x19, 0x10..=0x1F) | (0x19, 0xA0..=0xAF) => Some(Product::Genoa),
            (0x1A, 0x00..=0x1F) => Some(Product::Turin),
            _ => None,
        }
    }
}

/// Which key signed the report (KEY_INFO.SIGNING_KEY).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize)]
pub enum SigningKey {
    Vcek,
    Vlek,
    None,
}

/// A TCB version, decoded for a product (Turin moved the fields and added FMC).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, serde::Serialize)]
pub struct TcbVersion {
    pub fmc: Option<u8>,
    pub bootloader: u8,
    pub tee: u8,
    pub snp: u8,
    pub microcode: u8,
}

impl TcbVersion {
    /// Decode the 8 raw bytes for `product`.
    pub fn decode(raw: u64, product: Product) -> Self {
        let b = raw.to_le_bytes();
        match product {
            Product::Turin => TcbVersion {
                fmc: Some(b[0]),
                bootloader: b[1],
                tee: b[2],
                snp: b[3],
                microcode: b[7],
            },
            Product::Milan | Product::Genoa => TcbVersion {
                fmc: None,
                bootloader: b[0],
                tee: b[1],
                snp: b[6],
                microcode: b[7],
            },
        }
    }

    /// Every component ≥ the minimum's (a missing FMC minimum is no constraint).
    pub fn at_least(&self, min: &TcbVersion) -> bool {
        self.bootloader >= min.bootloader
            && self.tee >= min.tee
            && self.snp >= min.snp
            && self.microcode >= min.microcode
            && match (self.fmc, min.fmc) {
                (_, None) => true,
                (Some(a), Some(b)) => a >= b,
                (None, Some(_)) => false,
            }
    }
}

impl std::fmt::Display for TcbVersion {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if let Some(fmc) = self.fmc {
            write!(f, "fmc={fmc} ")?;
        }
        write!(
            f,
            "bl={} tee={} snp={} ucode={:#04x}",
            self.bootloader, self.tee, self.snp, self.microcode
        )
    }
}

/// A parsed report. Holds the exact input bytes of the report structure.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SnpReport {
    raw: Box<[u8; REPORT_LEN]>,
}

fn u32_at(b: &[u8], at: usize) -> u32 {
    u32::from_le_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]])
}
fn u64_at(b: &[u8], at: usize) -> u64 {
    let mut a = [0u8; 8];
    a.copy_from_slice(&b[at..at + 8]);
    u64::from_le_bytes(a)
}

impl SnpReport {
    /// Parse a report. Accepts exactly one report structure, optionally followed by zero
    /// padding (as in the kernel's 4000-byte response buffer), or an Azure HCL report that
    /// wraps one. Anything else (short, non-zero trailing bytes, unknown version) is an error.
    pub fn parse(input: &[u8]) -> Result<Self> {
        if input.len() > INPUT_LEN_MAX {
            return Err(AttestError::Limit(format!(
                "SNP input of {} bytes > {INPUT_LEN_MAX}",
                input.len()
            )));
        }
        let body = if input.starts_with(b"HCLA") {
            input
                .get(HCL_REPORT_OFFSET..HCL_REPORT_OFFSET + REPORT_LEN)
                .ok_or_else(|| AttestError::malformed("SNP report", "HCL report too short"))?
        } else {
            if input.len() < REPORT_LEN {
                return Err(AttestError::malformed(
                    "SNP report",
                    format!("{} bytes, need {REPORT_LEN}", input.len()),
                ));
            }
            if input[REPORT_LEN..].iter().any(|b| *b != 0) {
                return Err(AttestError::malformed(
                    "SNP report",
                    format!(
                        "{} trailing bytes after the report are not zero padding",
                        input.len() - REPORT_LEN
                    ),
                ));
            }
            &input[..REPORT_LEN]
        };
        let version = u32_at(body, 0);
        if !(2..=5).contains(&version) {
            return Err(AttestError::unsupported(
                "SNP report version",
                version.to_string(),
            ));
        }
        let algo = u32_at(body, 0x34);
        if algo != 1 {
            return Err(AttestError::unsupported(
                "SNP signature algorithm",
                format!("{algo} (only 1 = ECDSA P-384 with SHA-384)"),
            ));
        }
        let mut raw = Box::new([0u8; REPORT_LEN]);
        raw.copy_from_slice(body);
        Ok(SnpReport { raw })
    }

    /// The report bytes.
    pub fn bytes(&self) -> &[u8; REPORT_LEN] {
        &self.raw
    }
    /// The signed region `0x000..0x2A0`.
    pub fn signed_bytes(&self) -> &[u8] {
        &self.raw[..SIGNED_LEN]
    }
    pub fn version(&self) -> u32 {
        u32_at(&self.raw[..], 0)
    }
    pub fn guest_svn(&self) -> u32 {
        u32_at(&self.raw[..], 4)
    }
    pub fn policy(&self) -> u64 {
        u64_at(&self.raw[..], 0x08)
    }
    /// Guest policy bit 19: debugging allowed.
    pub fn debug_allowed(&self) -> bool {
        self.policy() & (1 << 19) != 0
    }
    pub fn vmpl(&self) -> u32 {
        u32_at(&self.raw[..], 0x30)
    }
    pub fn current_tcb_raw(&self) -> u64 {
        u64_at(&self.raw[..], 0x38)
    }
    pub fn platform_info(&self) -> u64 {
        u64_at(&self.raw[..], 0x40)
    }
    pub fn key_info(&self) -> u32 {
        u32_at(&self.raw[..], 0x48)
    }
    pub fn signing_key(&self) -> SigningKey {
        match (self.key_info() >> 2) & 0x7 {
            0 => SigningKey::Vcek,
            1 => SigningKey::Vlek,
            _ => SigningKey::None,
        }
    }
    pub fn mask_chip_id(&self) -> bool {
        self.key_info() & 0x2 != 0
    }
    pub fn report_data(&self) -> [u8; 64] {
        let mut a = [0u8; 64];
        a.copy_from_slice(&self.raw[0x50..0x90]);
        a
    }
    pub fn measurement(&self) -> [u8; 48] {
        let mut a = [0u8; 48];
        a.copy_from_slice(&self.raw[0x90..0xC0]);
        a
    }
    pub fn host_data(&self) -> &[u8] {
        &self.raw[0xC0..0xE0]
    }
    pub fn reported_tcb_raw(&self) -> u64 {
        u64_at(&self.raw[..], 0x180)
    }
    /// CPUID family, model, stepping (report v3+).
    pub fn cpuid(&self) -> Option<(u8, u8, u8)> {
        (self.version() >= 3).then(|| (self.raw[0x188], self.raw[0x189], self.raw[0x18A]))
    }
    pub fn chip_id(&self) -> &[u8] {
        &self.raw[0x1A0..0x1E0]
    }
    pub fn committed_tcb_raw(&self) -> u64 {
        u64_at(&self.raw[..], 0x1E0)
    }
    pub fn launch_tcb_raw(&self) -> u64 {
        u64_at(&self.raw[..], 0x1F0)
    }
    /// Firmware version `major.minor.build` of the current firmware.
    pub fn current_firmware(&self) -> (u8, u8, u8) {
        (self.raw[0x1EA], self.raw[0x1E9], self.raw[0x1E8])
    }
    /// Product from the CPUID fields, when the report has them.
    pub fn product_hint(&self) -> Option<Product> {
        self.cpuid().and_then(|(f, m, _)| Product::from_cpuid(f, m))
    }
    /// The signature as big-endian `r ‖ s` (96 bytes) for ring; `None` when the little-endian
    /// 72-byte components have non-zero high bytes (not a P-384 value).
    pub fn signature_rs(&self) -> Option<[u8; 96]> {
        let r = &self.raw[0x2A0..0x2A0 + 72];
        let s = &self.raw[0x2E8..0x2E8 + 72];
        if r[48..].iter().chain(&s[48..]).any(|b| *b != 0) {
            return None;
        }
        let mut out = [0u8; 96];
        for i in 0..48 {
            out[i] = r[47 - i];
            out[48 + i] = s[47 - i];
        }
        Some(out)
    }
}
