//! SEV-SNP verification: report signature over the raw bytes, VEK ← ASK/ASVK ← ARK up to the
//! embedded AMD roots, validity dates at the verification time, VEK TCB extensions against
//! REPORTED_TCB, hardware ID against CHIP_ID. Chain results are cached per VEK certificate, so
//! a verification with a known VEK costs one ECDSA P-384 check.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use crate::error::{AttestError, Result};
use crate::snp::certs::{DiskCache, KdsFetcher, OfflineKds, VekExtensions, vek_extensions};
use crate::snp::report::{Product, SigningKey, SnpReport, TcbVersion};
use crate::time::VerifyAt;
use crate::x509::{CertDer, Validity, load_bundle, public_key_bytes, verify_issued_by};

const MILAN: &[u8] = include_bytes!("roots/milan_ask_ark_asvk.pem");
const GENOA: &[u8] = include_bytes!("roots/genoa_ask_ark_asvk.pem");
const TURIN: &[u8] = include_bytes!("roots/turin_ask_ark_asvk.pem");

/// Upper bound on cached VEK chain results.
pub const VEK_CACHE_MAX: usize = 16_384;

/// The embedded AMD certificates of one product: ARK (root), ASK (VCEK issuer), ASVK (VLEK
/// issuer).
#[derive(Debug, Clone)]
pub struct ProductRoots {
    pub product: Product,
    pub ark: CertDer,
    pub ask: CertDer,
    pub asvk: CertDer,
}

/// The embedded roots of Milan, Genoa and Turin (the AMD files `ask_ark_asvk.pem`; SHA-256 of
/// each ARK is checked in tests against the published fingerprints).
pub fn embedded_roots() -> Result<Vec<ProductRoots>> {
    [
        (Product::Milan, MILAN),
        (Product::Genoa, GENOA),
        (Product::Turin, TURIN),
    ]
    .into_iter()
    .map(|(product, pem)| {
        let certs = load_bundle(pem)?;
        let [ask, ark, asvk] = <[CertDer; 3]>::try_from(certs)
            .map_err(|_| AttestError::Chain("embedded AMD bundle is not ASK, ARK, ASVK".into()))?;
        Ok(ProductRoots {
            product,
            ark,
            ask,
            asvk,
        })
    })
    .collect()
}

/// What a verified VEK chain established (cached).
#[derive(Debug)]
pub struct VekEntry {
    pub product: Product,
    pub kind: SigningKey,
    pub vek: CertDer,
    pub vek_public_key: Vec<u8>,
    pub extensions: VekExtensions,
    /// Validity windows from VEK to ARK (checked at each verification).
    pub chain_validity: Vec<Validity>,
    /// Subject CNs of the chain, VEK first.
    pub chain_names: Vec<String>,
}

/// Result of an SNP verification: everything parsed, and every reason it is not valid.
#[derive(Debug, Clone)]
pub struct SnpOutcome {
    pub report: SnpReport,
    pub product: Option<Product>,
    pub signing_key: SigningKey,
    pub reported_tcb: Option<TcbVersion>,
    pub current_tcb: Option<TcbVersion>,
    pub chain: Vec<String>,
    pub vek_fingerprint: Option<String>,
    /// Empty when valid.
    pub errors: Vec<String>,
}

impl SnpOutcome {
    pub fn is_valid(&self) -> bool {
        self.errors.is_empty()
    }
}

/// Verifies SNP reports; holds the embedded roots (checked once at construction) and the
/// per-VEK cache. Shareable across threads.
pub struct SnpVerifier {
    roots: Vec<ProductRoots>,
    cache: Mutex<HashMap<[u8; 32], Arc<VekEntry>>>,
    disk: Option<DiskCache>,
    kds: Box<dyn KdsFetcher>,
}

impl SnpVerifier {
    /// A verifier over the embedded AMD roots, offline, without a disk cache. Checks every
    /// ARK's self-signature and that it signed its ASK and ASVK.
    pub fn new() -> Result<Self> {
        let roots = embedded_roots()?;
        for r in &roots {
            verify_issued_by(&r.ark, &r.ark)?;
            verify_issued_by(&r.ask, &r.ark)?;
            verify_issued_by(&r.asvk, &r.ark)?;
        }
        Ok(SnpVerifier {
            roots,
            cache: Mutex::new(HashMap::new()),
            disk: None,
            kds: Box::new(OfflineKds),
        })
    }

    /// Look up VCEKs in (and store fetched ones to) an on-disk cache.
    pub fn with_disk_cache(mut self, cache: DiskCache) -> Self {
        self.disk = Some(cache);
        self
    }

    /// Fetch missing VCEKs from AMD KDS through `kds`.
    pub fn with_kds(mut self, kds: Box<dyn KdsFetcher>) -> Self {
        self.kds = kds;
        self
    }

    /// The embedded roots.
    pub fn roots(&self) -> &[ProductRoots] {
        &self.roots
    }

    /// Forget cached chain results.
    pub fn clear_cache(&self) {
        if let Ok(mut c) = self.cache.lock() {
            c.clear();
        }
    }

    /// Check a VEK certificate's chain to the embedded roots (cached); returns the product.
    pub fn check_vek(&self, vek: &CertDer, kind: SigningKey) -> Result<Product> {
        self.vek_entry(vek, kind).map(|e| e.product)
    }

    fn is_cached(&self, vek: &CertDer, kind: SigningKey) -> bool {
        let fp = fingerprint(vek);
        self.cache
            .lock()
            .is_ok_and(|c| c.get(&fp).is_some_and(|e| e.kind == kind))
    }

    fn vek_entry(&self, vek: &CertDer, kind: SigningKey) -> Result<Arc<VekEntry>> {
        let fp = fingerprint(vek);
        if let Ok(c) = self.cache.lock()
            && let Some(e) = c.get(&fp)
            && e.kind == kind
        {
            return Ok(e.clone());
        }
        let entry = Arc::new(self.build_entry(vek, kind)?);
        if let Ok(mut c) = self.cache.lock() {
            if c.len() >= VEK_CACHE_MAX {
                c.clear();
            }
            c.insert(fp, entry.clone());
        }
        Ok(entry)
    }

    fn build_entry(&self, vek: &CertDer, kind: SigningKey) -> Result<VekEntry> {
        let mut last_err = None;
        for r in &self.roots {
            let issuer = match kind {
                SigningKey::Vcek => &r.ask,
                SigningKey::Vlek => &r.asvk,
                SigningKey::None => {
                    return Err(AttestError::Chain("report is not signed by a VEK".into()));
                }
            };
            match verify_issued_by(vek, issuer) {
                Ok(()) => {
                    let chain = [vek, issuer, &r.ark];
                    return Ok(VekEntry {
                        product: r.product,
                        kind,
                        vek: vek.clone(),
                        vek_public_key: public_key_bytes(vek)?,
                        extensions: vek_extensions(vek)?,
                        chain_names: chain.iter().map(|c| c.subject_cn()).collect(),
                        chain_validity: chain
                            .iter()
                            .map(|c| Validity::of(c))
                            .collect::<Result<_>>()?,
                    });
                }
                Err(e) => last_err = Some(e),
            }
        }
        Err(last_err.unwrap_or_else(|| AttestError::Chain("no AMD root".into())))
    }

    fn find_cached_vcek(&self, report: &SnpReport) -> Vec<CertDer> {
        let Some(disk) = &self.disk else {
            return Vec::new();
        };
        let products = match report.product_hint() {
            Some(p) => vec![p],
            None => vec![Product::Milan, Product::Genoa, Product::Turin],
        };
        products
            .into_iter()
            .filter_map(|p| {
                let hw = hw_id_for(report, p);
                disk.get(p, hw, report.reported_tcb_raw())
            })
            .collect()
    }

    fn fetch_vcek(&self, report: &SnpReport) -> Option<CertDer> {
        let p = report.product_hint()?;
        let hw = hw_id_for(report, p);
        let tcb = TcbVersion::decode(report.reported_tcb_raw(), p);
        let der = self.kds.fetch_vcek(p, hw, &tcb).ok()?;
        let c = CertDer(der);
        c.parse().ok()?;
        if let Some(d) = &self.disk {
            let _ = d.put(p, hw, report.reported_tcb_raw(), &c);
        }
        Some(c)
    }

    /// Verify `report` at `at` with candidate certificates `certs` (VEKs among them are
    /// tried; ASK/ARK given there are ignored: the embedded ones are the trust anchors).
    pub fn verify(&self, report: &SnpReport, certs: &[CertDer], at: VerifyAt) -> SnpOutcome {
        let signing_key = report.signing_key();
        let mut out = SnpOutcome {
            report: report.clone(),
            product: report.product_hint(),
            signing_key,
            reported_tcb: None,
            current_tcb: None,
            chain: Vec::new(),
            vek_fingerprint: None,
            errors: Vec::new(),
        };
        let want_cn = match signing_key {
            SigningKey::Vcek => "SEV-VCEK",
            SigningKey::Vlek => "SEV-VLEK",
            SigningKey::None => {
                out.errors
                    .push("report KEY_INFO says it is not signed (SIGNING_KEY = none)".into());
                return out;
            }
        };
        // Known VEKs are recognised by fingerprint (no certificate parsing on the hot path).
        let mut candidates: Vec<CertDer> = certs
            .iter()
            .filter(|c| self.is_cached(c, signing_key) || c.subject_cn() == want_cn)
            .cloned()
            .collect();
        if candidates.is_empty() && signing_key == SigningKey::Vcek {
            candidates = self.find_cached_vcek(report);
            if candidates.is_empty() {
                candidates.extend(self.fetch_vcek(report));
            }
        }
        if candidates.is_empty() {
            out.errors.push(format!(
                "no {want_cn} certificate supplied (give it with --certs, the extended report's \
                 cert table, or the VCEK cache)"
            ));
            return out;
        }
        let Some(sig) = report.signature_rs() else {
            out.errors
                .push("report signature is not a valid P-384 value".into());
            return out;
        };
        let mut reasons = Vec::new();
        let mut chosen = None;
        for c in &candidates {
            match self.vek_entry(c, signing_key) {
                Ok(e) => {
                    let key = ring::signature::UnparsedPublicKey::new(
                        &ring::signature::ECDSA_P384_SHA384_FIXED,
                        &e.vek_public_key,
                    );
                    if key.verify(report.signed_bytes(), &sig).is_ok() {
                        chosen = Some(e);
                        break;
                    }
                    // The usual cause: the VCEK of another chip. Say so when its hwID shows it.
                    let other_chip = match (&e.extensions.hw_id, e.kind) {
                        (Some(hw), SigningKey::Vcek) => hw_id_mismatch(hw, report.chip_id()),
                        _ => None,
                    };
                    reasons.push(match other_chip {
                        Some(m) => format!(
                            "report signature does not verify under {want_cn} {}: {m} (a VCEK \
                             of another chip)",
                            &c.fingerprint()[..16]
                        ),
                        None => format!(
                            "report signature does not verify under {want_cn} {}",
                            &c.fingerprint()[..16]
                        ),
                    });
                }
                Err(e) => reasons.push(format!("{want_cn} {}: {e}", &c.fingerprint()[..16])),
            }
        }
        let Some(e) = chosen else {
            out.errors.extend(reasons);
            return out;
        };
        out.chain = e.chain_names.clone();
        out.vek_fingerprint = Some(e.vek.fingerprint());
        if let Some(hint) = report.product_hint()
            && hint != e.product
        {
            out.errors.push(format!(
                "report CPUID says {} but the VEK chains to {}",
                hint.name(),
                e.product.name()
            ));
        }
        out.product = Some(e.product);
        let reported = TcbVersion::decode(report.reported_tcb_raw(), e.product);
        out.reported_tcb = Some(reported);
        out.current_tcb = Some(TcbVersion::decode(report.current_tcb_raw(), e.product));
        for v in &e.chain_validity {
            if let Err(err) = v.check(at) {
                out.errors.push(err.to_string());
            }
        }
        out.errors
            .extend(e.extensions.tcb_mismatches(&reported, e.product));
        if e.kind == SigningKey::Vcek {
            match &e.extensions.hw_id {
                None => out.errors.push("VCEK has no hwID extension".into()),
                Some(hw) => {
                    let chip = report.chip_id();
                    if chip.iter().all(|b| *b == 0) {
                        out.errors.push(
                            "CHIP_ID is zero (MASK_CHIP_ID): the VCEK's hwID cannot be matched"
                                .into(),
                        );
                    } else if let Some(m) = hw_id_mismatch(hw, chip) {
                        out.errors.push(m);
                    }
                }
            }
        }
        out
    }
}

/// `Some(message)` when a VCEK's hwID is not the report's CHIP_ID (Turin: the 8-byte hwID is
/// CHIP_ID's first 8 bytes, the rest zero).
fn hw_id_mismatch(hw: &[u8], chip: &[u8]) -> Option<String> {
    let matches = !hw.is_empty()
        && hw.len() <= chip.len()
        && hw[..] == chip[..hw.len()]
        && chip[hw.len()..].iter().all(|b| *b == 0);
    (!matches).then(|| {
        format!(
            "VCEK hwID {} does not match the report's CHIP_ID {}",
            hex::encode(hw),
            hex::encode(chip)
        )
    })
}

fn fingerprint(c: &CertDer) -> [u8; 32] {
    let mut fp = [0u8; 32];
    fp.copy_from_slice(ring::digest::digest(&ring::digest::SHA256, &c.0).as_ref());
    fp
}

fn hw_id_for(report: &SnpReport, product: Product) -> &[u8] {
    match product {
        Product::Turin => &report.chip_id()[..8],
        _ => report.chip_id(),
    }
}
