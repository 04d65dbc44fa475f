//! Where SNP certificates come from, and what a VCEK/VLEK says about itself.
//!
//! Sources, in the order a verifier tries them: the extended report's certificate table, a
//! file or directory given by the operator, an on-disk cache, and — optionally — AMD's key
//! distribution service behind [`KdsFetcher`]. Offline is first-class: the default fetcher
//! ([`OfflineKds`]) fetches nothing.

use std::path::{Path, PathBuf};

use crate::error::{AttestError, Result};
use crate::snp::report::{Product, TcbVersion};
use crate::x509::{BUNDLE_CERTS_MAX, CertDer, load_bundle};

const OID_BL_SPL: &str = "1.3.6.1.4.1.3704.1.3.1";
const OID_TEE_SPL: &str = "1.3.6.1.4.1.3704.1.3.2";
const OID_SNP_SPL: &str = "1.3.6.1.4.1.3704.1.3.3";
const OID_UCODE_SPL: &str = "1.3.6.1.4.1.3704.1.3.8";
const OID_FMC_SPL: &str = "1.3.6.1.4.1.3704.1.3.9";
const OID_HW_ID: &str = "1.3.6.1.4.1.3704.1.4";
const OID_PRODUCT_NAME: &str = "1.3.6.1.4.1.3704.1.2";

/// Upper bound on a certificate file we read.
pub const CERT_FILE_LEN_MAX: u64 = 1 << 20;

/// What a VEK (VCEK or VLEK) certificate carries in AMD's extensions.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct VekExtensions {
    pub bootloader: Option<u8>,
    pub tee: Option<u8>,
    pub snp: Option<u8>,
    pub microcode: Option<u8>,
    pub fmc: Option<u8>,
    /// Hardware ID (VCEK only): 64 bytes, or 8 on Turin.
    pub hw_id: Option<Vec<u8>>,
    pub product_name: Option<String>,
}

/// DER INTEGER (or bare byte) extension value → u8.
fn ext_u8(value: &[u8]) -> Option<u8> {
    match value {
        [0x02, len, rest @ ..] if usize::from(*len) == rest.len() && !rest.is_empty() => {
            let v = rest.iter().fold(0u64, |acc, b| (acc << 8) | u64::from(*b));
            u8::try_from(v).ok()
        }
        [b] => Some(*b),
        _ => None,
    }
}

/// Read AMD's extensions from a VEK certificate. Both encodings of the hwID seen in the wild
/// are accepted: raw bytes, or an OCTET STRING wrapping them.
pub fn vek_extensions(cert: &CertDer) -> Result<VekExtensions> {
    let c = cert.parse()?;
    let mut out = VekExtensions::default();
    for ext in c.extensions() {
        let oid = ext.oid.to_id_string();
        let v = ext.value;
        match oid.as_str() {
            OID_BL_SPL => out.bootloader = ext_u8(v),
            OID_TEE_SPL => out.tee = ext_u8(v),
            OID_SNP_SPL => out.snp = ext_u8(v),
            OID_UCODE_SPL => out.microcode = ext_u8(v),
            OID_FMC_SPL => out.fmc = ext_u8(v),
            OID_HW_ID => {
                let raw = match v {
                    [0x04, len, rest @ ..] if usize::from(*len) == rest.len() => rest.to_vec(),
                    _ => v.to_vec(),
                };
                out.hw_id = Some(raw);
            }
            OID_PRODUCT_NAME => {
                // IA5String: tag 0x16.
                if let [0x16, len, rest @ ..] = v
                    && usize::from(*len) == rest.len()
                {
                    out.product_name = Some(String::from_utf8_lossy(rest).into_owned());
                }
            }
            _ => {}
        }
    }
    Ok(out)
}

impl VekExtensions {
    /// Compare the TCB extensions with a report's REPORTED_TCB; one message per difference.
    pub fn tcb_mismatches(&self, reported: &TcbVersion, product: Product) -> Vec<String> {
        let mut out = Vec::new();
        let mut cmp = |name: &str, cert: Option<u8>, rep: u8| match cert {
            Some(c) if c == rep => {}
            Some(c) => out.push(format!("VEK {name} SPL {c} != REPORTED_TCB {name} {rep}")),
            None => out.push(format!("VEK has no {name} SPL extension")),
        };
        cmp("bootloader", self.bootloader, reported.bootloader);
        cmp("tee", self.tee, reported.tee);
        cmp("snp", self.snp, reported.snp);
        cmp("microcode", self.microcode, reported.microcode);
        if product == Product::Turin {
            cmp("fmc", self.fmc, reported.fmc.unwrap_or(0));
        }
        out
    }
}

/// Parse the extended report's certificate table (GUID, offset, length entries, ended by an
/// all-zero entry; offsets relative to the table start) into certificates.
pub fn parse_cert_table(table: &[u8]) -> Result<Vec<CertDer>> {
    const ENTRY: usize = 24;
    let mut out = Vec::new();
    let mut at = 0;
    loop {
        let e = table
            .get(at..at + ENTRY)
            .ok_or_else(|| AttestError::malformed("SNP cert table", "no terminating entry"))?;
        if e.iter().all(|b| *b == 0) {
            break;
        }
        if out.len() >= BUNDLE_CERTS_MAX {
            return Err(AttestError::Limit("too many cert table entries".into()));
        }
        let off = u32::from_le_bytes([e[16], e[17], e[18], e[19]]) as usize;
        let len = u32::from_le_bytes([e[20], e[21], e[22], e[23]]) as usize;
        let der = off
            .checked_add(len)
            .and_then(|end| table.get(off..end))
            .ok_or_else(|| AttestError::malformed("SNP cert table", "entry out of bounds"))?;
        let c = CertDer(der.to_vec());
        c.parse()?;
        out.push(c);
        at += ENTRY;
    }
    Ok(out)
}

/// Load certificates from a file (DER, PEM bundle, or cert table) or from every `*.der`,
/// `*.pem`, `*.crt`, `*.cert` file in a directory.
pub fn load_certs(path: &Path) -> Result<Vec<CertDer>> {
    let md = std::fs::metadata(path)
        .map_err(|e| AttestError::Missing(format!("certificates at {}: {e}", path.display())))?;
    if md.is_dir() {
        let mut files: Vec<PathBuf> = std::fs::read_dir(path)
            .map_err(|e| AttestError::Missing(format!("{}: {e}", path.display())))?
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| {
                matches!(
                    p.extension().and_then(|e| e.to_str()),
                    Some("der" | "pem" | "crt" | "cert")
                )
            })
            .collect();
        files.sort();
        let mut out = Vec::new();
        for f in files {
            out.extend(load_cert_file(&f)?);
            if out.len() > BUNDLE_CERTS_MAX {
                return Err(AttestError::Limit("too many certificates".into()));
            }
        }
        Ok(out)
    } else {
        load_cert_file(path)
    }
}

fn load_cert_file(path: &Path) -> Result<Vec<CertDer>> {
    let md = std::fs::metadata(path)
        .map_err(|e| AttestError::Missing(format!("{}: {e}", path.display())))?;
    if md.len() > CERT_FILE_LEN_MAX {
        return Err(AttestError::Limit(format!(
            "{} is too large",
            path.display()
        )));
    }
    let data = std::fs::read(path)
        .map_err(|e| AttestError::Missing(format!("{}: {e}", path.display())))?;
    load_bundle(&data).or_else(|first| parse_cert_table(&data).map_err(|_| first))
}

/// Fetch a VCEK from AMD's key distribution service. Implementations do the I/O; the crate
/// ships only [`OfflineKds`].
pub trait KdsFetcher: Send + Sync {
    /// `GET /vcek/v1/{product}/{hwid}?blSPL=..&teeSPL=..&snpSPL=..&ucodeSPL=..` → DER.
    fn fetch_vcek(&self, product: Product, hw_id: &[u8], tcb: &TcbVersion) -> Result<Vec<u8>>;
}

/// The offline fetcher: always "missing".
#[derive(Debug, Default, Clone, Copy)]
pub struct OfflineKds;

impl KdsFetcher for OfflineKds {
    fn fetch_vcek(&self, product: Product, _hw_id: &[u8], _tcb: &TcbVersion) -> Result<Vec<u8>> {
        Err(AttestError::Missing(format!(
            "VCEK for {} (offline: supply it with --certs or the cache)",
            product.name()
        )))
    }
}

/// The URL a fetcher would use (for messages and for implementations).
pub fn kds_vcek_url(product: Product, hw_id: &[u8], tcb: &TcbVersion) -> String {
    let mut u = format!(
        "https://kdsintf.amd.com/vcek/v1/{}/{}?blSPL={}&teeSPL={}&snpSPL={}&ucodeSPL={}",
        product.name(),
        hex::encode(hw_id),
        tcb.bootloader,
        tcb.tee,
        tcb.snp,
        tcb.microcode
    );
    if let Some(f) = tcb.fmc {
        u.push_str(&format!("&fmcSPL={f}"));
    }
    u
}

/// On-disk VCEK cache: `<dir>/<product>-<hwid hex>-<tcb raw hex>.der`.
#[derive(Debug, Clone)]
pub struct DiskCache {
    dir: PathBuf,
}

impl DiskCache {
    pub fn new(dir: impl Into<PathBuf>) -> Self {
        DiskCache { dir: dir.into() }
    }

    fn path(&self, product: Product, hw_id: &[u8], tcb_raw: u64) -> PathBuf {
        self.dir.join(format!(
            "{}-{}-{:016x}.der",
            product.name().to_ascii_lowercase(),
            hex::encode(hw_id),
            tcb_raw
        ))
    }

    /// A cached VCEK, if present.
    pub fn get(&self, product: Product, hw_id: &[u8], tcb_raw: u64) -> Option<CertDer> {
        let p = self.path(product, hw_id, tcb_raw);
        let data = std::fs::read(p).ok()?;
        let c = CertDer(data);
        c.parse().ok()?;
        Some(c)
    }

    /// Store a VCEK (atomically: write then rename).
    pub fn put(&self, product: Product, hw_id: &[u8], tcb_raw: u64, cert: &CertDer) -> Result<()> {
        let p = self.path(product, hw_id, tcb_raw);
        std::fs::create_dir_all(&self.dir)
            .map_err(|e| AttestError::Missing(format!("cache dir: {e}")))?;
        let tmp = p.with_extension("tmp");
        std::fs::write(&tmp, &cert.0)
            .and_then(|_| std::fs::rename(&tmp, &p))
            .map_err(|e| AttestError::Missing(format!("cache write: {e}")))
    }
}
