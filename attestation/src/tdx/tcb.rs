//! TCB evaluation from signature-checked collateral **without CRLs** — for collateral whose
//! month has no CRL at hand (shared/ has TCB info of 2025-10/11 but no PCK CRL of then).
//! Same rules as dcap-qvl / Intel QVL for TDX: collateral signed by the Intel SGX TCB Signing
//! certificate (chained to the embedded root, dates checked at `at`), issueDate ≤ at ≤
//! nextUpdate, FMSPC match, first TCB level (highest first) the PCK SVNs and TEE_TCB_SVN
//! meet, the TDX module identity and level selected by TEE_TCB_SVN, the QE identity
//! (MRSIGNER, ISVPRODID, masked MISCSELECT/ATTRIBUTES, ISVSVN level), statuses converged as
//! QVL does. Revocation is *not* checked: the verdict says so.

use dcap_qvl::qe_identity::QeIdentity;
use dcap_qvl::quote::EnclaveReport;
use dcap_qvl::tcb_info::{TcbInfo, TcbLevel, TcbStatusWithAdvisory};

use crate::error::{AttestError, Result};
use crate::tdx::{TdxQuote, TdxTcb};
use crate::time::VerifyAt;
use crate::x509::{CertDer, check_validity, load_bundle, public_key_bytes, verify_issued_by};

fn rfc3339(s: &str) -> Result<u64> {
    VerifyAt::parse_rfc3339(s).map(|t| t.0)
}

fn verify_signed_json(signer: &CertDer, json: &str, sig: &[u8], what: &str) -> Result<()> {
    let key = public_key_bytes(signer)?;
    ring::signature::UnparsedPublicKey::new(&ring::signature::ECDSA_P256_SHA256_FIXED, &key)
        .verify(json.as_bytes(), sig)
        .map_err(|_| AttestError::BadSignature(format!("{what} signature")))
}

fn window(issue: &str, next: &str, at: VerifyAt, what: &str) -> Result<()> {
    let (i, n) = (rfc3339(issue)?, rfc3339(next)?);
    if at.0 < i {
        return Err(AttestError::Time(format!(
            "{what} issued {issue}, after {}",
            at.to_rfc3339()
        )));
    }
    if at.0 > n {
        return Err(AttestError::Time(format!(
            "{what} expired (nextUpdate {next}) at {}",
            at.to_rfc3339()
        )));
    }
    Ok(())
}

fn sort_levels(levels: &mut [TcbLevel]) {
    let key = |l: &TcbLevel| {
        (
            l.tcb
                .sgx_components
                .iter()
                .map(|c| c.svn)
                .collect::<Vec<_>>(),
            l.tcb.pce_svn,
            l.tcb
                .tdx_components
                .iter()
                .map(|c| c.svn)
                .collect::<Vec<_>>(),
        )
    };
    levels.sort_by_key(|l| std::cmp::Reverse(key(l)));
}

/// Inputs of a CRL-less evaluation.
pub struct UnrevokedCollateral<'a> {
    pub tcb_info: &'a str,
    pub tcb_info_signature: &'a [u8],
    pub qe_identity: &'a str,
    pub qe_identity_signature: &'a [u8],
    pub signing_chain_pem: &'a str,
}

/// Evaluate the TCB of a quote whose own cryptography already verified (`pck_leaf` is its
/// verified PCK certificate).
pub fn evaluate(
    quote: &TdxQuote,
    pck_leaf: &CertDer,
    root: &CertDer,
    c: &UnrevokedCollateral<'_>,
    at: VerifyAt,
) -> Result<TdxTcb> {
    let chain = load_bundle(c.signing_chain_pem.as_bytes())?;
    let signer = chain
        .first()
        .ok_or_else(|| AttestError::Chain("empty TCB signing chain".into()))?;
    verify_issued_by(signer, root)?;
    check_validity(signer, at)?;
    check_validity(root, at)?;
    verify_signed_json(signer, c.tcb_info, c.tcb_info_signature, "TCB info")?;
    verify_signed_json(
        signer,
        c.qe_identity,
        c.qe_identity_signature,
        "QE identity",
    )?;
    let mut tcb_info: TcbInfo = serde_json::from_str(c.tcb_info)
        .map_err(|e| AttestError::malformed("TCB info", e.to_string()))?;
    let qe_id: QeIdentity = serde_json::from_str(c.qe_identity)
        .map_err(|e| AttestError::malformed("QE identity", e.to_string()))?;
    window(&tcb_info.issue_date, &tcb_info.next_update, at, "TCB info")?;
    window(&qe_id.issue_date, &qe_id.next_update, at, "QE identity")?;
    if tcb_info.id != "TDX" || tcb_info.version < 3 {
        return Err(AttestError::Binding("TCB info is not TDX v3+".into()));
    }
    let pck = dcap_qvl::intel::parse_pck_extension(&pck_leaf.0)
        .map_err(|e| AttestError::Chain(format!("PCK SGX extension: {e:#}")))?;
    if !tcb_info.fmspc.eq_ignore_ascii_case(&hex::encode(pck.fmspc)) {
        return Err(AttestError::Binding(format!(
            "TCB info FMSPC {} != PCK FMSPC {}",
            tcb_info.fmspc,
            hex::encode(pck.fmspc)
        )));
    }
    let td = quote
        .quote
        .report
        .as_td10()
        .ok_or_else(|| AttestError::unsupported("quote body", "not a TD report"))?;
    sort_levels(&mut tcb_info.tcb_levels);
    let mut level = None;
    for l in &tcb_info.tcb_levels {
        let short = l
            .shortfalls(&pck.cpu_svn, pck.pce_svn, Some(&td.tee_tcb_svn))
            .map_err(|e| AttestError::malformed("TCB level", format!("{e:#}")))?;
        if short.is_empty() {
            level = Some(l.clone());
            break;
        }
    }
    let level = level.ok_or_else(|| AttestError::Binding("No matching TCB level found".into()))?;
    let mut platform = TcbStatusWithAdvisory::new(level.tcb_status, level.advisory_ids.clone());
    // TDX module identity selected by TEE_TCB_SVN[1].
    let identity = tcb_info
        .tdx_module_identity(&td.tee_tcb_svn)
        .map_err(|e| AttestError::Binding(format!("{e:#}")))?;
    let (mrsigner, attrs, mask) = match (identity, &tcb_info.tdx_module) {
        (Some(i), _) => (
            i.mrsigner.clone(),
            i.attributes.clone(),
            i.attributes_mask.clone(),
        ),
        (None, Some(m)) => (
            m.mrsigner.clone(),
            m.attributes.clone(),
            m.attributes_mask.clone(),
        ),
        (None, None) => return Err(AttestError::Binding("TCB info has no tdxModule".into())),
    };
    if !mrsigner.eq_ignore_ascii_case(&hex::encode(td.mr_signer_seam)) {
        return Err(AttestError::Binding("TDX module MRSIGNER mismatch".into()));
    }
    let (attrs, mask) = (
        hex::decode(attrs).unwrap_or_default(),
        hex::decode(mask).unwrap_or_default(),
    );
    if attrs.len() != 8
        || mask.len() != 8
        || (0..8).any(|i| td.seam_attributes[i] & mask[i] != attrs[i] & mask[i])
    {
        return Err(AttestError::Binding(
            "TDX module attributes mismatch".into(),
        ));
    }
    if let Some(i) = identity {
        let m = i
            .tcb_levels
            .iter()
            .find(|l| l.shortfall(&td.tee_tcb_svn).is_none())
            .ok_or_else(|| AttestError::Binding("TDX module ISVSVN below every level".into()))?;
        platform = platform.merge(&TcbStatusWithAdvisory::new(
            m.tcb_status,
            m.advisory_ids.clone(),
        ));
    }
    // QE identity.
    let auth = quote.auth();
    let qe = decode_qe_report(&auth.qe_report)?;
    if qe.mr_signer != qe_id.mrsigner || qe.isv_prod_id != qe_id.isvprodid {
        return Err(AttestError::Binding(
            "QE MRSIGNER/ISVPRODID mismatch".into(),
        ));
    }
    let misc_mask = u32::from_le_bytes(qe_id.miscselect_mask);
    if qe.misc_select & misc_mask != u32::from_le_bytes(qe_id.miscselect) & misc_mask
        || (0..16).any(|i| {
            qe.attributes[i] & qe_id.attributes_mask[i]
                != qe_id.attributes[i] & qe_id.attributes_mask[i]
        })
    {
        return Err(AttestError::Binding(
            "QE MISCSELECT/ATTRIBUTES mismatch".into(),
        ));
    }
    let qe_level = qe_id
        .tcb_levels
        .iter()
        .find(|l| qe.isv_svn >= l.tcb.isvsvn)
        .ok_or_else(|| AttestError::Binding("QE ISVSVN below every level".into()))?;
    let platform_status = platform.status.to_string();
    let merged = platform.merge(&TcbStatusWithAdvisory::new(
        qe_level.tcb_status,
        qe_level.advisory_ids.clone(),
    ));
    Ok(TdxTcb {
        status: merged.status.to_string(),
        advisory_ids: merged.advisory_ids,
        platform_status: format!("{} (platform level {})", platform_status, level.tcb_status),
        qe_status: qe_level.tcb_status.to_string(),
    })
}

/// The QE's enclave report from its fixed 384-byte layout.
fn decode_qe_report(b: &[u8]) -> Result<EnclaveReport> {
    if b.len() != 384 {
        return Err(AttestError::malformed("QE report", "not 384 bytes"));
    }
    let mut r = EnclaveReport {
        cpu_svn: [0; 16],
        misc_select: u32::from_le_bytes([b[16], b[17], b[18], b[19]]),
        reserved1: [0; 28],
        attributes: [0; 16],
        mr_enclave: [0; 32],
        reserved2: [0; 32],
        mr_signer: [0; 32],
        reserved3: [0; 96],
        isv_prod_id: u16::from_le_bytes([b[256], b[257]]),
        isv_svn: u16::from_le_bytes([b[258], b[259]]),
        reserved4: [0; 60],
        report_data: [0; 64],
    };
    r.cpu_svn.copy_from_slice(&b[0..16]);
    r.attributes.copy_from_slice(&b[48..64]);
    r.mr_enclave.copy_from_slice(&b[64..96]);
    r.mr_signer.copy_from_slice(&b[128..160]);
    r.report_data.copy_from_slice(&b[320..384]);
    Ok(r)
}
