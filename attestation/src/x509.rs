//! Thin helpers over `x509-parser` (with its ring-backed `verify`): load DER/PEM bundles,
//! check issuance and validity at a given time.

use x509_parser::certificate::X509Certificate;
use x509_parser::prelude::FromDer;

use crate::error::{AttestError, Result};
use crate::time::VerifyAt;

/// Upper bound on certificates accepted from one bundle.
pub const BUNDLE_CERTS_MAX: usize = 64;

/// A certificate kept as DER; parsed on demand (parsing is cheap next to signature checks).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct CertDer(pub Vec<u8>);

impl CertDer {
    pub fn parse(&self) -> Result<X509Certificate<'_>> {
        let (rest, cert) = X509Certificate::from_der(&self.0)
            .map_err(|e| AttestError::Chain(format!("unparsable certificate: {e}")))?;
        if !rest.is_empty() {
            return Err(AttestError::Chain(
                "trailing bytes after certificate".into(),
            ));
        }
        Ok(cert)
    }

    /// Subject common name (or the whole subject when there is none).
    pub fn subject_cn(&self) -> String {
        match self.parse() {
            Ok(c) => c
                .subject()
                .iter_common_name()
                .next()
                .and_then(|cn| cn.as_str().ok().map(str::to_string))
                .unwrap_or_else(|| c.subject().to_string()),
            Err(_) => "<unparsable>".into(),
        }
    }

    /// SHA-256 of the DER, hex.
    pub fn fingerprint(&self) -> String {
        hex::encode(ring::digest::digest(&ring::digest::SHA256, &self.0))
    }
}

/// Split a bundle into DERs: one DER certificate, or PEM with any number of certificates.
/// PEM may carry explanatory text (RFC 7468 §2) before, between and after the encapsulation
/// boundaries, e.g. `# SEV-VCEK` comment lines; it is ignored, as are blocks that are not
/// `CERTIFICATE`. Input that holds no certificate is refused with a message that says so.
pub fn load_bundle(data: &[u8]) -> Result<Vec<CertDer>> {
    // A DER certificate starts with a SEQUENCE (0x30, also the digit '0' of a text file).
    let has_pem = data.windows(PEM_BEGIN.len()).any(|w| w == PEM_BEGIN);
    if data.first() == Some(&0x30) {
        let c = CertDer(data.to_vec());
        match c.parse() {
            Ok(_) => return Ok(vec![c]),
            Err(e) if !has_pem => return Err(e),
            Err(_) => {}
        }
    }
    if !has_pem {
        return Err(AttestError::Missing(format!(
            "certificate: no DER certificate and no PEM \"-----BEGIN CERTIFICATE-----\" block \
             in {} bytes{}",
            data.len(),
            if data.iter().all(|b| b.is_ascii()) {
                " of text"
            } else {
                ""
            }
        )));
    }
    let mut out = Vec::new();
    for (i, pem) in x509_parser::pem::Pem::iter_from_buffer(data).enumerate() {
        let pem = pem.map_err(|e| AttestError::Chain(format!("bad PEM block {}: {e}", i + 1)))?;
        if pem.label != "CERTIFICATE" {
            continue;
        }
        if out.len() >= BUNDLE_CERTS_MAX {
            return Err(AttestError::Limit(format!(
                "more than {BUNDLE_CERTS_MAX} certificates in one bundle"
            )));
        }
        out.push(CertDer(pem.contents));
    }
    if out.is_empty() {
        return Err(AttestError::Missing(
            "certificate: the PEM text has no \"-----BEGIN CERTIFICATE-----\" block".into(),
        ));
    }
    Ok(out)
}

const PEM_BEGIN: &[u8] = b"-----BEGIN ";

/// Check `child` was signed by `issuer`'s key.
pub fn verify_issued_by(child: &CertDer, issuer: &CertDer) -> Result<()> {
    let c = child.parse()?;
    let i = issuer.parse()?;
    c.verify_signature(Some(i.public_key())).map_err(|e| {
        AttestError::Chain(format!(
            "{} is not signed by {}: {e}",
            child.subject_cn(),
            issuer.subject_cn()
        ))
    })
}

/// A certificate's validity window, parsed once (chain caches keep these so the hot path
/// does not re-parse certificates).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Validity {
    pub subject: String,
    pub not_before: i64,
    pub not_after: i64,
}

impl Validity {
    pub fn of(cert: &CertDer) -> Result<Self> {
        let c = cert.parse()?;
        let v = c.validity();
        Ok(Validity {
            subject: cert.subject_cn(),
            not_before: v.not_before.timestamp(),
            not_after: v.not_after.timestamp(),
        })
    }

    /// Inside the window at `at`?
    pub fn check(&self, at: VerifyAt) -> Result<()> {
        let t = i64::try_from(at.0).unwrap_or(i64::MAX);
        let show = |s: i64| VerifyAt(u64::try_from(s).unwrap_or(0)).to_rfc3339();
        if t < self.not_before {
            return Err(AttestError::Time(format!(
                "certificate {} not yet valid (from {}) at {}",
                self.subject,
                show(self.not_before),
                at.to_rfc3339()
            )));
        }
        if t > self.not_after {
            return Err(AttestError::Time(format!(
                "certificate {} expired ({}) at {}",
                self.subject,
                show(self.not_after),
                at.to_rfc3339()
            )));
        }
        Ok(())
    }
}

/// Check `cert` is inside its validity window at `at`.
pub fn check_validity(cert: &CertDer, at: VerifyAt) -> Result<()> {
    Validity::of(cert)?.check(at)
}

/// Raw subject public key bytes (for ring).
pub fn public_key_bytes(cert: &CertDer) -> Result<Vec<u8>> {
    let c = cert.parse()?;
    Ok(c.public_key().subject_public_key.data.to_vec())
}
