//! TDX collateral: dcap-qvl's `QuoteCollateralV3` JSON, or assembled from Intel PCS bodies.
//!
//! PCS serves `{"tcbInfo": {...}, "signature": "<hex r‖s>"}`; the signature covers the exact
//! bytes of the `tcbInfo` value, so assembly cuts that value out byte-exact (re-serialising
//! would break the signature).

use x509_parser::prelude::FromDer;
use x509_parser::revocation_list::CertificateRevocationList;

use crate::error::{AttestError, Result};
use crate::time::VerifyAt;

/// Upper bound on a collateral file.
pub const COLLATERAL_LEN_MAX: usize = 4 << 20;

/// Collateral for one quote's TCB evaluation.
#[derive(Debug, Clone)]
pub struct Collateral(dcap_qvl::QuoteCollateralV3);

impl Collateral {
    /// Parse dcap-qvl's collateral JSON.
    pub fn from_json(data: &[u8]) -> Result<Self> {
        if data.len() > COLLATERAL_LEN_MAX {
            return Err(AttestError::Limit("collateral file too large".into()));
        }
        serde_json::from_slice(data)
            .map(Collateral)
            .map_err(|e| AttestError::malformed("TDX collateral JSON", e.to_string()))
    }

    /// Assemble from PCS bodies: a TCB info response, a QE identity response, the PEM issuer
    /// chain that signed them, and the DER root-CA and PCK-CA CRLs with their issuer chain.
    pub fn assemble(
        tcb_info_response: &[u8],
        qe_identity_response: &[u8],
        signing_chain_pem: &str,
        root_ca_crl_der: &[u8],
        pck_crl_der: &[u8],
        pck_crl_issuer_chain_pem: &str,
    ) -> Result<Self> {
        let (tcb_info, tcb_info_signature) = cut_signed(tcb_info_response, "tcbInfo")?;
        let (qe_identity, qe_identity_signature) =
            cut_signed(qe_identity_response, "enclaveIdentity")?;
        Ok(Collateral(dcap_qvl::QuoteCollateralV3 {
            pck_crl_issuer_chain: pck_crl_issuer_chain_pem.to_string(),
            root_ca_crl: root_ca_crl_der.to_vec(),
            pck_crl: pck_crl_der.to_vec(),
            tcb_info_issuer_chain: signing_chain_pem.to_string(),
            tcb_info,
            tcb_info_signature,
            qe_identity_issuer_chain: signing_chain_pem.to_string(),
            qe_identity,
            qe_identity_signature,
            pck_certificate_chain: None,
        }))
    }

    /// Replace parts (tests combine collateral of matching dates from several sources).
    pub fn with_qe_identity_from(mut self, other: &Collateral) -> Self {
        self.0.qe_identity = other.0.qe_identity.clone();
        self.0.qe_identity_signature = other.0.qe_identity_signature.clone();
        self.0.qe_identity_issuer_chain = other.0.qe_identity_issuer_chain.clone();
        self
    }

    /// Take the CRLs (and their issuer chain) from another collateral.
    pub fn with_crls_from(mut self, other: &Collateral) -> Self {
        self.0.root_ca_crl = other.0.root_ca_crl.clone();
        self.0.pck_crl = other.0.pck_crl.clone();
        self.0.pck_crl_issuer_chain = other.0.pck_crl_issuer_chain.clone();
        self
    }

    /// The same collateral without CRLs (tests; collateral of months without CRLs at hand).
    pub fn without_crls(mut self) -> Self {
        self.0.root_ca_crl.clear();
        self.0.pck_crl.clear();
        self
    }

    /// Both CRLs present? Without them dcap-qvl cannot run and the CRL-less evaluation of
    /// [`crate::tdx::tcb`] is used (revocation unchecked, said in the verdict).
    pub fn has_crls(&self) -> bool {
        !self.0.root_ca_crl.is_empty() && !self.0.pck_crl.is_empty()
    }

    /// Every CRL of the collateral that is not valid at `at`, named, with its dates, e.g.
    /// "PCK CRL (issuer Intel SGX PCK Platform CA) expired: nextUpdate 2025-07-19T…, thisUpdate
    /// 2025-06-19T…, verification time 2026-07-01T00:00:00Z". Empty when both are in their
    /// windows (or cannot be parsed: dcap-qvl says so itself).
    pub fn crl_problems(&self, at: VerifyAt) -> Vec<String> {
        [
            ("root CA CRL", &self.0.root_ca_crl),
            ("PCK CRL", &self.0.pck_crl),
        ]
        .into_iter()
        .filter_map(|(name, der)| crl_problem(name, der, at))
        .collect()
    }

    pub(crate) fn inner(&self) -> &dcap_qvl::QuoteCollateralV3 {
        &self.0
    }
}

fn crl_problem(name: &str, der: &[u8], at: VerifyAt) -> Option<String> {
    let (_, crl) = CertificateRevocationList::from_der(der).ok()?;
    let issuer = crl
        .issuer()
        .iter_common_name()
        .next()
        .and_then(|cn| cn.as_str().ok().map(str::to_string))
        .unwrap_or_else(|| crl.issuer().to_string());
    let show = |t: i64| VerifyAt(u64::try_from(t).unwrap_or(0)).to_rfc3339();
    let this = crl.last_update().timestamp();
    let next = crl.next_update().map(|t| t.timestamp());
    let now = i64::try_from(at.0).unwrap_or(i64::MAX);
    let dates = format!(
        "thisUpdate {}, nextUpdate {}, verification time {}",
        show(this),
        next.map_or_else(|| "none".to_string(), show),
        at.to_rfc3339()
    );
    if now < this {
        Some(format!(
            "{name} (issuer {issuer}) is not yet valid: {dates}"
        ))
    } else if next.is_some_and(|n| now > n) {
        Some(format!("{name} (issuer {issuer}) expired: {dates}"))
    } else {
        None
    }
}

/// Rewrite the `UnixTime(1751328000)` of Debug-formatted webpki errors as RFC 3339 dates.
pub(crate) fn readable_times(msg: &str) -> String {
    const TAG: &str = "UnixTime(";
    let mut out = String::with_capacity(msg.len());
    let mut rest = msg;
    while let Some(i) = rest.find(TAG) {
        out.push_str(&rest[..i]);
        let after = &rest[i + TAG.len()..];
        let digits = after.bytes().take_while(u8::is_ascii_digit).count();
        match (
            after[..digits].parse::<u64>(),
            after[digits..].starts_with(')'),
        ) {
            (Ok(secs), true) => {
                out.push_str(&VerifyAt(secs).to_rfc3339());
                rest = &after[digits + 1..];
            }
            _ => {
                out.push_str(TAG);
                rest = after;
            }
        }
    }
    out.push_str(rest);
    out
}

/// Cut the raw JSON value of `key` and the hex `signature` out of a PCS response.
fn cut_signed(body: &[u8], key: &str) -> Result<(String, Vec<u8>)> {
    let text = std::str::from_utf8(body)
        .map_err(|_| AttestError::malformed("PCS response", "not UTF-8"))?;
    let needle = format!("\"{key}\"");
    let k = text
        .find(&needle)
        .ok_or_else(|| AttestError::malformed("PCS response", format!("no {key}")))?;
    let after = &text[k + needle.len()..];
    let colon = after
        .find(':')
        .ok_or_else(|| AttestError::malformed("PCS response", "no ':'"))?;
    let value_start = after[colon + 1..]
        .find('{')
        .map(|i| k + needle.len() + colon + 1 + i)
        .ok_or_else(|| AttestError::malformed("PCS response", format!("{key} is no object")))?;
    let value = balanced_object(&text[value_start..])
        .ok_or_else(|| AttestError::malformed("PCS response", "unbalanced JSON"))?;
    let v: serde_json::Value = serde_json::from_str(text)
        .map_err(|e| AttestError::malformed("PCS response", e.to_string()))?;
    let sig_hex = v
        .get("signature")
        .and_then(|s| s.as_str())
        .ok_or_else(|| AttestError::malformed("PCS response", "no signature"))?;
    let sig = hex::decode(sig_hex)
        .map_err(|_| AttestError::malformed("PCS response", "signature is not hex"))?;
    Ok((value.to_string(), sig))
}

/// The prefix of `s` (starting at `{`) up to its matching `}`, string-aware.
fn balanced_object(s: &str) -> Option<&str> {
    let mut depth = 0usize;
    let mut in_str = false;
    let mut esc = false;
    for (i, c) in s.char_indices() {
        if in_str {
            match (esc, c) {
                (true, _) => esc = false,
                (false, '\\') => esc = true,
                (false, '"') => in_str = false,
                _ => {}
            }
            continue;
        }
        match c {
            '"' => in_str = true,
            '{' => depth += 1,
            '}' => {
                depth = depth.checked_sub(1)?;
                if depth == 0 {
                    return Some(&s[..=i]);
                }
            }
            _ => {}
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::readable_times;

    #[test]
    fn unix_times_become_dates() {
        assert_eq!(
            readable_times("CrlExpired { time: UnixTime(1782864000), next_update: UnixTime(0) }"),
            "CrlExpired { time: 2026-07-01T00:00:00Z, next_update: 1970-01-01T00:00:00Z }"
        );
        assert_eq!(
            readable_times("UnixTime(12x) UnixTime("),
            "UnixTime(12x) UnixTime("
        );
        assert_eq!(readable_times("no times"), "no times");
    }
}
