//! Intel TDX quotes (v4 and v5, TD 1.0 and 1.5 bodies).
//!
//! Two layers:
//! 1. **Quote cryptography** (ours, on ring + x509-parser, cached per PCK chain): the PCK chain
//!    (type 6 certification data wrapping a type 5 PEM chain) up to the embedded Intel SGX Root
//!    CA with validity at the verification time, the QE report signature by the PCK, the QE
//!    report's binding of the attestation key (`SHA-256(att_key ‖ qe_auth_data)`), and the
//!    quote signature by the attestation key over header ‖ body.
//! 2. **TCB status** from signature-checked collateral (TCB info, QE identity, CRLs), by
//!    `dcap-qvl` (MIT) — which checks everything at one time and yields the TCB status and
//!    advisory IDs.
//!
//! Parsing is `dcap-qvl`'s; bytes after the signature data (zero padding, or text as in one
//! upstream sample) are ignored, as Intel's QVL and dcap-qvl do, and reported as `trailing`.

pub mod collateral;
pub mod tcb;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use dcap_qvl::quote::{AuthDataV3, Quote, Report};

pub use collateral::Collateral;

use crate::error::{AttestError, Result};
use crate::time::VerifyAt;
use crate::x509::{CertDer, Validity, load_bundle, public_key_bytes, verify_issued_by};

/// The Intel SGX Root CA (SHA-256 44a0196b…74d3), embedded.
pub const INTEL_SGX_ROOT_CA_DER: &[u8] = include_bytes!("intel_sgx_root_ca.der");
/// Upper bound on a quote input.
pub const QUOTE_LEN_MAX: usize = 64 * 1024;
/// Upper bound on cached PCK chain results.
pub const PCK_CACHE_MAX: usize = 16_384;

const TEE_TYPE_TDX: u32 = 0x81;
const HEADER_LEN: usize = 48;
/// A TD 1.0 report (the v4 quote body).
const TD10_BODY_LEN: usize = 584;
/// dcap-qvl's message when its final TD-attribute check refuses SEPT_VE_DISABLE = 0.
const DCAP_QVL_SEPT_VE_REFUSAL: &str = "SEPT_VE_DISABLE is not enabled";
const ATT_KEY_ECDSA_P256: u16 = 2;
const INTEL_QE_VENDOR_ID: [u8; 16] = [
    0x93, 0x9a, 0x72, 0x33, 0xf7, 0x9c, 0x4c, 0xa9, 0x94, 0x0a, 0x0d, 0xb3, 0x95, 0x7f, 0x06, 0x07,
];

/// Why a quote's TCB status could not be evaluated from its collateral. Every message starts
/// with `collateral / TCB: `, as it appears in [`TdxOutcome::errors`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TcbError {
    /// CRLs of the collateral are not usable at the verification time: one problem per CRL,
    /// naming it and its dates.
    #[error("collateral / TCB: {}", .0.join("; "))]
    Crls(Vec<String>),
    /// dcap-qvl refused the quote against the collateral (its message, times made readable).
    #[error("collateral / TCB: {0}")]
    Collateral(String),
    /// The evaluation without CRLs (signed TCB info and QE identity) refused.
    #[error("collateral / TCB: {0}")]
    Evaluation(AttestError),
}

/// A parsed TDX quote, holding its exact bytes (without trailing padding).
#[derive(Debug, Clone)]
pub struct TdxQuote {
    raw: Vec<u8>,
    quote: Quote,
    /// Bytes after the quote in the input (ignored).
    pub trailing: usize,
}

/// The TD measurements a quote carries.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TdMeasurements {
    pub mr_td: [u8; 48],
    pub rtmr: [[u8; 48]; 4],
    pub mr_seam: [u8; 48],
    pub mr_config_id: [u8; 48],
    pub mr_owner: [u8; 48],
    pub mr_owner_config: [u8; 48],
    pub tee_tcb_svn: [u8; 16],
    pub td_attributes: [u8; 8],
    pub report_data: [u8; 64],
}

impl TdxQuote {
    /// Parse a quote (v4 or v5, TDX). Trailing bytes are ignored.
    pub fn parse(input: &[u8]) -> Result<Self> {
        if input.len() > QUOTE_LEN_MAX {
            return Err(AttestError::Limit(format!(
                "TDX input of {} bytes > {QUOTE_LEN_MAX}",
                input.len()
            )));
        }
        let short = |need: usize, what: &str| {
            AttestError::malformed(
                "TDX quote",
                format!("{} bytes, need {need} ({what})", input.len()),
            )
        };
        if input.len() < HEADER_LEN {
            return Err(short(HEADER_LEN, "the 48-byte header"));
        }
        let version = u16::from_le_bytes([input[0], input[1]]);
        if version != 4 && version != 5 {
            return Err(AttestError::unsupported(
                "TDX quote version",
                version.to_string(),
            ));
        }
        let tee = u32::from_le_bytes([input[4], input[5], input[6], input[7]]);
        if tee != TEE_TYPE_TDX {
            return Err(AttestError::unsupported(
                "quote TEE type",
                format!("{tee:#x} (only TDX 0x81)"),
            ));
        }
        // Say how long the quote must be before the parser meets the end of the input.
        let signed = match version {
            4 => HEADER_LEN + TD10_BODY_LEN,
            _ => {
                let d = input
                    .get(HEADER_LEN..HEADER_LEN + 6)
                    .ok_or_else(|| short(HEADER_LEN + 6, "header and v5 body descriptor"))?;
                let size = u32::from_le_bytes([d[2], d[3], d[4], d[5]]) as usize;
                HEADER_LEN + 6 + size.min(QUOTE_LEN_MAX)
            }
        };
        let sig_len = input
            .get(signed..signed + 4)
            .map(|b| u32::from_le_bytes([b[0], b[1], b[2], b[3]]) as usize)
            .ok_or_else(|| short(signed + 4, "header, TD report and signature data length"))?;
        let need = signed + 4 + sig_len.min(QUOTE_LEN_MAX);
        if input.len() < need {
            return Err(short(
                need,
                &format!("header, TD report and {sig_len} bytes of signature data"),
            ));
        }
        let quote = Quote::parse(input)
            .map_err(|e| AttestError::malformed("TDX quote", format!("{e:#}")))?;
        if quote.header.tee_type != TEE_TYPE_TDX {
            return Err(AttestError::unsupported(
                "quote TEE type",
                format!("{:#x} (only TDX 0x81)", quote.header.tee_type),
            ));
        }
        if quote.report.as_td10().is_none() {
            return Err(AttestError::unsupported("quote body", "not a TD report"));
        }
        // header ‖ body, then a u32 length and the signature data.
        let signed = quote.signed_length();
        let sig_len = input
            .get(signed..signed + 4)
            .map(|b| u32::from_le_bytes([b[0], b[1], b[2], b[3]]) as usize)
            .ok_or_else(|| AttestError::malformed("TDX quote", "no signature data length"))?;
        let used = signed
            .checked_add(4)
            .and_then(|n| n.checked_add(sig_len))
            .filter(|n| *n <= input.len())
            .ok_or_else(|| AttestError::malformed("TDX quote", "signature data out of range"))?;
        Ok(TdxQuote {
            raw: input[..used].to_vec(),
            quote,
            trailing: input.len() - used,
        })
    }

    /// Quote version (4 or 5).
    pub fn version(&self) -> u16 {
        self.quote.header.version
    }

    /// The exact quote bytes.
    pub fn bytes(&self) -> &[u8] {
        &self.raw
    }

    /// Length of the signed region (header ‖ body).
    pub fn signed_len(&self) -> usize {
        self.quote.signed_length()
    }

    /// Body kind: "TD1.0", "TD1.5", "TD1.5ex".
    pub fn body_kind(&self) -> &'static str {
        match self.quote.report {
            Report::TD15Ex(_) => "TD1.5ex",
            Report::TD15(_) => "TD1.5",
            _ => "TD1.0",
        }
    }

    /// MRTD, RTMRs, report_data and friends.
    pub fn measurements(&self) -> Option<TdMeasurements> {
        let td = self.quote.report.as_td10()?;
        Some(TdMeasurements {
            mr_td: td.mr_td,
            rtmr: [td.rt_mr0, td.rt_mr1, td.rt_mr2, td.rt_mr3],
            mr_seam: td.mr_seam,
            mr_config_id: td.mr_config_id,
            mr_owner: td.mr_owner,
            mr_owner_config: td.mr_owner_config,
            tee_tcb_svn: td.tee_tcb_svn,
            td_attributes: td.td_attributes,
            report_data: td.report_data,
        })
    }

    /// TD attribute TUD.DEBUG.
    pub fn debug(&self) -> bool {
        self.quote
            .report
            .as_td10()
            .is_some_and(|td| td.td_attributes[0] & 1 != 0)
    }

    /// TD attribute SEPT_VE_DISABLE (bit 28): EPT violations are not converted to #VE.
    pub fn sept_ve_disabled(&self) -> bool {
        self.quote
            .report
            .as_td10()
            .is_some_and(|td| td.td_attributes[3] & 0x10 != 0)
    }

    fn auth(&self) -> AuthDataV3 {
        self.quote.auth_data.clone().into_v3()
    }

    /// The PCK certificate chain PEM (certification data type 5 inside type 6).
    pub fn pck_chain_pem(&self) -> Result<Vec<u8>> {
        let auth = self.auth();
        if auth.certification_data.cert_type != 5 {
            return Err(AttestError::unsupported(
                "TDX certification data",
                format!(
                    "type {} (only 5, a PEM PCK chain)",
                    auth.certification_data.cert_type
                ),
            ));
        }
        Ok(auth.certification_data.body.data.clone())
    }
}

/// What a verified PCK chain established (cached per chain bytes).
#[derive(Debug)]
struct PckEntry {
    pck_public_key: Vec<u8>,
    pck_leaf: CertDer,
    chain_validity: Vec<Validity>,
    chain_names: Vec<String>,
    fmspc: [u8; 6],
}

/// The TCB verdict from collateral.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct TdxTcb {
    pub status: String,
    pub advisory_ids: Vec<String>,
    pub platform_status: String,
    pub qe_status: String,
}

/// Result of a TDX verification.
#[derive(Debug, Clone)]
pub struct TdxOutcome {
    pub version: u16,
    pub body_kind: &'static str,
    pub measurements: Option<TdMeasurements>,
    pub fmspc: Option<[u8; 6]>,
    pub chain: Vec<String>,
    /// Quote signatures and PCK chain verified.
    pub crypto_valid: bool,
    /// TCB status when collateral was given and verified.
    pub tcb: Option<TdxTcb>,
    pub trailing: usize,
    pub debug: bool,
    pub errors: Vec<String>,
    pub warnings: Vec<String>,
}

impl TdxOutcome {
    pub fn is_valid(&self) -> bool {
        self.errors.is_empty()
    }
}

/// Verifies TDX quotes; caches PCK chain results. Shareable across threads.
pub struct TdxVerifier {
    root: CertDer,
    cache: Mutex<HashMap<[u8; 32], Arc<PckEntry>>>,
    /// TCB results per (collateral, PCK chain, TCB-relevant quote fields), with the window in
    /// which every collateral item and certificate behind them is valid.
    tcb_cache: Mutex<HashMap<[u8; 32], CachedTcb>>,
}

#[derive(Debug, Clone)]
struct CachedTcb {
    tcb: TdxTcb,
    valid_from: u64,
    valid_until: u64,
}

/// Accept every claim: the TCB status is reported, and judged by [`crate::evidence`].
struct ReportAll;

impl dcap_qvl::policy::Policy for ReportAll {
    fn validate(&self, _: &dcap_qvl::policy::QuoteClaims) -> anyhow::Result<()> {
        Ok(())
    }
}

/// Key of a TCB evaluation: everything dcap-qvl's TCB matching reads, and nothing that
/// changes per attestation (report_data, RTMRs). `None` for bodies we do not cache.
fn tcb_key(quote: &TdxQuote, collateral: &dcap_qvl::QuoteCollateralV3) -> Option<[u8; 32]> {
    let td = match &quote.quote.report {
        Report::TD10(td) => td,
        Report::TD15(td) => &td.base,
        _ => return None,
    };
    let mut h = ring::digest::Context::new(&ring::digest::SHA256);
    let mut put = |b: &[u8]| {
        h.update(&(b.len() as u64).to_be_bytes());
        h.update(b);
    };
    put(&collateral.root_ca_crl);
    put(&collateral.pck_crl);
    put(collateral.pck_crl_issuer_chain.as_bytes());
    put(collateral.tcb_info_issuer_chain.as_bytes());
    put(collateral.tcb_info.as_bytes());
    put(&collateral.tcb_info_signature);
    put(collateral.qe_identity_issuer_chain.as_bytes());
    put(collateral.qe_identity.as_bytes());
    put(&collateral.qe_identity_signature);
    put(collateral
        .pck_certificate_chain
        .as_deref()
        .unwrap_or("")
        .as_bytes());
    put(quote.raw.get(..48)?);
    put(&td.tee_tcb_svn);
    put(&td.mr_seam);
    put(&td.mr_signer_seam);
    put(&td.seam_attributes);
    put(&td.td_attributes);
    put(&td.xfam);
    if let Report::TD15(td15) = &quote.quote.report {
        put(&td15.tee_tcb_svn2);
        put(&td15.mr_service_td);
    }
    let auth = quote.auth();
    put(&auth.qe_report);
    put(&auth.certification_data.body.data);
    let d = h.finish();
    let mut k = [0u8; 32];
    k.copy_from_slice(d.as_ref());
    Some(k)
}

impl TdxVerifier {
    /// A verifier anchored at the embedded Intel SGX Root CA.
    pub fn new() -> Result<Self> {
        let root = CertDer(INTEL_SGX_ROOT_CA_DER.to_vec());
        verify_issued_by(&root, &root)?;
        Ok(TdxVerifier {
            root,
            cache: Mutex::new(HashMap::new()),
            tcb_cache: Mutex::new(HashMap::new()),
        })
    }

    /// Forget cached chain results.
    pub fn clear_cache(&self) {
        if let Ok(mut c) = self.cache.lock() {
            c.clear();
        }
        if let Ok(mut c) = self.tcb_cache.lock() {
            c.clear();
        }
    }

    fn pck_entry(&self, pem: &[u8]) -> Result<Arc<PckEntry>> {
        let mut fp = [0u8; 32];
        fp.copy_from_slice(ring::digest::digest(&ring::digest::SHA256, pem).as_ref());
        if let Ok(c) = self.cache.lock()
            && let Some(e) = c.get(&fp)
        {
            return Ok(e.clone());
        }
        // PEM may carry a trailing NUL.
        let end = pem.iter().rposition(|b| *b != 0).map_or(0, |i| i + 1);
        let certs = load_bundle(&pem[..end])?;
        let [leaf, ca, root] = <[CertDer; 3]>::try_from(certs).map_err(|v| {
            AttestError::Chain(format!(
                "PCK chain has {} certificates, expected 3",
                v.len()
            ))
        })?;
        if root != self.root {
            return Err(AttestError::Chain(
                "PCK chain does not end in the Intel SGX Root CA".into(),
            ));
        }
        verify_issued_by(&ca, &self.root)?;
        verify_issued_by(&leaf, &ca)?;
        let ext = dcap_qvl::intel::parse_pck_extension(&leaf.0)
            .map_err(|e| AttestError::Chain(format!("PCK SGX extension: {e:#}")))?;
        let chain = [&leaf, &ca, &self.root];
        let entry = Arc::new(PckEntry {
            pck_public_key: public_key_bytes(&leaf)?,
            chain_names: chain.iter().map(|c| c.subject_cn()).collect(),
            chain_validity: chain
                .iter()
                .map(|c| Validity::of(c))
                .collect::<Result<_>>()?,
            pck_leaf: leaf.clone(),
            fmspc: ext.fmspc,
        });
        if let Ok(mut c) = self.cache.lock() {
            if c.len() >= PCK_CACHE_MAX {
                c.clear();
            }
            c.insert(fp, entry.clone());
        }
        Ok(entry)
    }

    /// Verify the quote's cryptography at `at`, then — when `collateral` is given — its TCB
    /// status with dcap-qvl at the same time.
    pub fn verify(
        &self,
        quote: &TdxQuote,
        collateral: Option<&Collateral>,
        at: VerifyAt,
    ) -> TdxOutcome {
        let mut out = TdxOutcome {
            version: quote.version(),
            body_kind: quote.body_kind(),
            measurements: quote.measurements(),
            fmspc: None,
            chain: Vec::new(),
            crypto_valid: false,
            tcb: None,
            trailing: quote.trailing,
            debug: quote.debug(),
            errors: Vec::new(),
            warnings: Vec::new(),
        };
        let entry = match self.verify_crypto(quote, at, &mut out) {
            Ok(e) => {
                out.crypto_valid = out.errors.is_empty();
                Some(e)
            }
            Err(e) => {
                out.errors.push(e.to_string());
                None
            }
        };
        let tcb = match (collateral, entry.filter(|_| out.crypto_valid)) {
            (None, _) => {
                out.warnings.push(
                    "TCB status not evaluated: no collateral (TCB info, QE identity, CRLs) given"
                        .into(),
                );
                return out;
            }
            (Some(_), None) => {
                out.errors
                    .push("TCB not evaluated: the quote's own verification failed".into());
                return out;
            }
            (Some(c), Some(e)) if c.has_crls() => self.evaluate_tcb(quote, c, &e, at),
            (Some(c), Some(e)) => {
                out.warnings.push(
                    "collateral has no CRLs: PCK revocation not checked (TCB evaluated without \
                     dcap-qvl)"
                        .into(),
                );
                self.evaluate_without_crls(quote, c, &e, at)
            }
        };
        match tcb {
            Ok(t) => {
                if t.status != "UpToDate" {
                    out.warnings
                        .push(format!("TCB status {} (policy decides)", t.status));
                }
                out.tcb = Some(t);
            }
            Err(e) => out.errors.push(e.to_string()),
        }
        out
    }

    /// TCB status from collateral with dcap-qvl, cached (only for quotes whose own
    /// cryptography verified) while `at` is inside the collateral's common validity window.
    fn evaluate_tcb(
        &self,
        quote: &TdxQuote,
        c: &Collateral,
        pck: &PckEntry,
        at: VerifyAt,
    ) -> std::result::Result<TdxTcb, TcbError> {
        let key = tcb_key(quote, c.inner());
        if let Some(k) = key
            && let Ok(cache) = self.tcb_cache.lock()
            && let Some(hit) = cache.get(&k)
            && (hit.valid_from..=hit.valid_until).contains(&at.0)
        {
            return Ok(hit.tcb.clone());
        }
        let v = dcap_qvl::verify::QuoteVerifier::new(self.root.0.clone()).allow_debug(true);
        let claims = match v.verify_with_policy(quote.bytes(), c.inner(), at.0, &ReportAll) {
            Ok(claims) => claims,
            // dcap-qvl refuses a TD with SEPT_VE_DISABLE clear in its last step, after every
            // collateral, CRL and TCB check passed. That is a policy decision
            // (`AttestPolicy::allow_sept_ve`), the same on both paths: the TCB status comes
            // from the same collateral, evaluated by the CRL-less path (revocation was just
            // checked by dcap-qvl).
            Err(e)
                if !quote.sept_ve_disabled()
                    && format!("{e:#}").contains(DCAP_QVL_SEPT_VE_REFUSAL) =>
            {
                return self.evaluate_without_crls(quote, c, pck, at);
            }
            Err(e) => {
                // dcap-qvl passes webpki's errors on in Debug form (`CrlExpired { time:
                // UnixTime(…), … }`): name the CRL and give the dates.
                let msg = collateral::readable_times(&format!("{e:#}"));
                let crls = c.crl_problems(at);
                return Err(if msg.contains("Crl") && !crls.is_empty() {
                    TcbError::Crls(crls)
                } else {
                    TcbError::Collateral(msg)
                });
            }
        };
        let tcb = TdxTcb {
            status: claims.tcb.status.to_string(),
            advisory_ids: claims.tcb.advisory_ids.clone(),
            platform_status: claims.platform.tcb_level.tcb_status.to_string(),
            qe_status: claims.qe.tcb_level.tcb_status.to_string(),
        };
        if let Some(k) = key
            && let Ok(mut cache) = self.tcb_cache.lock()
        {
            if cache.len() >= PCK_CACHE_MAX {
                cache.clear();
            }
            cache.insert(
                k,
                CachedTcb {
                    tcb: tcb.clone(),
                    valid_from: claims.latest_issue_date,
                    valid_until: claims.earliest_expiration_date,
                },
            );
        }
        Ok(tcb)
    }

    /// The CRL-less evaluation of [`tcb`] over the signed parts of `c`.
    fn evaluate_without_crls(
        &self,
        quote: &TdxQuote,
        c: &Collateral,
        pck: &PckEntry,
        at: VerifyAt,
    ) -> std::result::Result<TdxTcb, TcbError> {
        let inner = c.inner();
        let u = tcb::UnrevokedCollateral {
            tcb_info: &inner.tcb_info,
            tcb_info_signature: &inner.tcb_info_signature,
            qe_identity: &inner.qe_identity,
            qe_identity_signature: &inner.qe_identity_signature,
            signing_chain_pem: &inner.tcb_info_issuer_chain,
        };
        tcb::evaluate(quote, &pck.pck_leaf, &self.root, &u, at).map_err(TcbError::Evaluation)
    }

    fn verify_crypto(
        &self,
        quote: &TdxQuote,
        at: VerifyAt,
        out: &mut TdxOutcome,
    ) -> Result<Arc<PckEntry>> {
        let h = &quote.quote.header;
        if h.attestation_key_type != ATT_KEY_ECDSA_P256 {
            return Err(AttestError::unsupported(
                "attestation key type",
                h.attestation_key_type.to_string(),
            ));
        }
        if h.qe_vendor_id != INTEL_QE_VENDOR_ID {
            return Err(AttestError::Chain("QE vendor is not Intel".into()));
        }
        let auth = quote.auth();
        let pem = quote.pck_chain_pem()?;
        let entry = self.pck_entry(&pem)?;
        out.chain = entry.chain_names.clone();
        out.fmspc = Some(entry.fmspc);
        for v in &entry.chain_validity {
            if let Err(e) = v.check(at) {
                out.errors.push(e.to_string());
            }
        }
        // QE report signed by the PCK.
        ring::signature::UnparsedPublicKey::new(
            &ring::signature::ECDSA_P256_SHA256_FIXED,
            &entry.pck_public_key,
        )
        .verify(&auth.qe_report, &auth.qe_report_signature)
        .map_err(|_| AttestError::BadSignature("QE report signature by the PCK".into()))?;
        // QE report binds the attestation key.
        let mut ctx = ring::digest::Context::new(&ring::digest::SHA256);
        ctx.update(&auth.ecdsa_attestation_key);
        ctx.update(&auth.qe_auth_data.data);
        let hash = ctx.finish();
        // QE report_data is at offset 320 of the 384-byte enclave report.
        let rd = &auth.qe_report[320..384];
        if rd[..32] != *hash.as_ref() || rd[32..].iter().any(|b| *b != 0) {
            return Err(AttestError::Binding(
                "QE report_data != SHA-256(attestation key ‖ QE auth data)".into(),
            ));
        }
        // Quote signed by the attestation key.
        let mut key = [0x04u8; 65];
        key[1..].copy_from_slice(&auth.ecdsa_attestation_key);
        let signed = quote
            .bytes()
            .get(..quote.signed_len())
            .ok_or_else(|| AttestError::malformed("TDX quote", "signed region out of range"))?;
        ring::signature::UnparsedPublicKey::new(&ring::signature::ECDSA_P256_SHA256_FIXED, &key)
            .verify(signed, &auth.ecdsa_signature)
            .map_err(|_| {
                AttestError::BadSignature("quote signature by the attestation key".into())
            })?;
        Ok(entry)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tcb_errors_read_as_before() {
        let crls = TcbError::Crls(vec![
            "PCK CRL expired at 2025-01-01T00:00:00Z".into(),
            "root CA CRL not yet valid".into(),
        ]);
        assert_eq!(
            crls.to_string(),
            "collateral / TCB: PCK CRL expired at 2025-01-01T00:00:00Z; root CA CRL not yet valid"
        );
        let qvl = TcbError::Collateral("TCB info expired".into());
        assert_eq!(qvl.to_string(), "collateral / TCB: TCB info expired");
        let ours = TcbError::Evaluation(AttestError::Chain("empty TCB signing chain".into()));
        assert_eq!(
            ours.to_string(),
            "collateral / TCB: certificate chain: empty TCB signing chain"
        );
    }
}
