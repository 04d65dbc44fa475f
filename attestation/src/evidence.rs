//! One entry point for all evidence: detect the format, verify, apply the policy-facing checks,
//! and say everything in one [`Verdict`].
//!
//! Order: decode (hex text is accepted) → detect (sim magic, TDX header, SNP report) → parse →
//! signature and chain (SNP/TDX/sim) → dates at the verification time → TCB (SNP extensions,
//! TDX collateral) → policy: sim allowed?, debug, VMPL, measurement allow-list, minimum TCB,
//! expected `report_data`. Every failing check adds a reason; the verdict is valid only when
//! there are none.

use serde::Serialize;

use crate::error::{AttestError, Result};
use crate::sim::{SimEvidence, dev_root_public};
use crate::snp::{SnpReport, SnpVerifier, TcbVersion};
use crate::tdx::{Collateral, TdxQuote, TdxVerifier};
use crate::time::VerifyAt;
use crate::x509::CertDer;

/// Kind of TEE the evidence claims (defined in [`crate::tee`]).
pub use crate::tee::TeeKind;

/// Upper bound on an evidence input (hex text of the largest quote included).
pub const EVIDENCE_LEN_MAX: usize = 256 * 1024;

/// Policy-facing checks (what a policy's `attest { … }` block compiles to).
#[derive(Debug, Clone, Default)]
pub struct AttestPolicy {
    /// Accept evidence whose TEE runs in debug mode.
    pub allow_debug: bool,
    /// Highest SNP VMPL accepted (0 is most privileged). `None`: any.
    pub vmpl_max: Option<u32>,
    /// Accepted launch measurements (SNP MEASUREMENT, TDX MRTD, sim measurement). Empty: any.
    pub measurements: Vec<Vec<u8>>,
    /// Minimum SNP REPORTED_TCB, component-wise.
    pub min_snp_tcb: Option<TcbVersion>,
    /// Accepted TDX TCB statuses (e.g. "UpToDate", "SWHardeningNeeded"). Empty: any status
    /// dcap-qvl accepted.
    pub tdx_tcb_statuses: Vec<String>,
    /// Require TDX collateral (a TCB status) for a valid verdict.
    pub require_tdx_tcb: bool,
    /// Accept a TDX TD whose SEPT_VE_DISABLE attribute is clear (the TD lets EPT violations
    /// become #VE exceptions it must handle itself). Refused by default, as Intel's QVL and
    /// dcap-qvl do; the TCB status is reported either way.
    pub allow_sept_ve: bool,
    /// `report_data` the evidence must carry (e.g. the session binding).
    pub report_data: Option<[u8; 64]>,
}

/// Verifier configuration.
#[derive(Debug, Clone, Default)]
pub struct VerifierConfig {
    /// Accept simulated evidence. Off by default; `tribune dev` turns it on.
    pub allow_sim: bool,
    /// Development roots trusted for sim evidence (default: the built-in development root).
    pub sim_roots: Vec<[u8; 32]>,
    pub policy: AttestPolicy,
}

impl VerifierConfig {
    /// Production: simulated evidence refused, debug forbidden.
    pub fn production() -> Self {
        Self::default()
    }

    /// `tribune dev`: simulated evidence accepted (still labelled `sim`).
    pub fn dev() -> Self {
        VerifierConfig {
            allow_sim: true,
            ..Self::default()
        }
    }
}

/// What a caller supplies besides the evidence.
#[derive(Debug, Clone, Default)]
pub struct Inputs<'a> {
    /// Certificates (SNP VEKs; anything else is ignored).
    pub certs: &'a [CertDer],
    /// TDX collateral.
    pub collateral: Option<&'a Collateral>,
}

/// A named measurement.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Measurement {
    pub name: String,
    pub hex: String,
}

/// TCB status and advisories.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Default)]
pub struct TcbInfo {
    pub status: String,
    pub advisory_ids: Vec<String>,
    /// Free-form detail (SNP component versions; TDX platform / QE statuses).
    pub detail: String,
}

/// Everything the verifier established about one piece of evidence.
#[derive(Debug, Clone, Serialize)]
pub struct Verdict {
    pub tee: TeeKind,
    /// The overall verdict: signature and chain valid, and every policy check passed.
    pub valid: bool,
    /// The evidence itself, apart from policy: its signature verifies under a certificate
    /// chain to the embedded roots, valid at the verification time (SNP: with the VEK's TCB
    /// and hwID matching the report; TDX: quote, QE report and PCK chain; sim: the development
    /// root's signature). TCB collateral and policy checks do not change it.
    pub signature_and_chain_valid: bool,
    /// Every reason the evidence is not valid (empty when valid).
    pub reasons: Vec<String>,
    /// Things worth knowing that do not invalidate (e.g. TCB not evaluated, trailing bytes).
    pub warnings: Vec<String>,
    pub format: String,
    pub measurements: Vec<Measurement>,
    pub report_data: String,
    pub debug: bool,
    /// SNP VMPL of the report.
    pub vmpl: Option<u32>,
    pub tcb: Option<TcbInfo>,
    /// SNP CHIP_ID (hex).
    pub chip_id: Option<String>,
    /// TDX FMSPC (hex).
    pub fmspc: Option<String>,
    /// Certificate chain used, leaf first (subject CNs).
    pub chain: Vec<String>,
    pub verified_at: String,
    #[serde(skip)]
    pub report_data_raw: [u8; 64],
}

/// Turn hex text (optionally `0x`-prefixed, whitespace allowed) into bytes; binary passes
/// through unchanged.
pub fn decode_input(data: &[u8]) -> Vec<u8> {
    let t = data.trim_ascii();
    let t = t.strip_prefix(b"0x").unwrap_or(t);
    if t.len() >= 2
        && t.iter()
            .all(|b| b.is_ascii_hexdigit() || b.is_ascii_whitespace())
    {
        let compact: Vec<u8> = t
            .iter()
            .copied()
            .filter(|b| !b.is_ascii_whitespace())
            .collect();
        if let Ok(v) = hex::decode(compact) {
            return v;
        }
    }
    data.to_vec()
}

/// Detect the kind of evidence.
pub fn detect(bytes: &[u8]) -> Result<TeeKind> {
    if SimEvidence::detect(bytes) {
        return Ok(TeeKind::Sim);
    }
    if bytes.starts_with(b"HCLA") {
        return Ok(TeeKind::SevSnp);
    }
    if bytes.len() >= 8 {
        let v16 = u16::from_le_bytes([bytes[0], bytes[1]]);
        let tee = u32::from_le_bytes([bytes[4], bytes[5], bytes[6], bytes[7]]);
        if (v16 == 4 || v16 == 5) && tee == 0x81 {
            return Ok(TeeKind::Tdx);
        }
        let v32 = u32::from_le_bytes([bytes[0], bytes[1], bytes[2], bytes[3]]);
        // Short inputs with an SNP version still go to the SNP parser, whose error says
        // how many bytes are missing.
        if (2..=5).contains(&v32) {
            return Ok(TeeKind::SevSnp);
        }
    }
    Err(AttestError::malformed(
        "evidence",
        "not an SNP report, a TDX quote or sim evidence",
    ))
}

/// Verifiers for every kind, built once and shared.
pub struct Verifiers {
    pub snp: SnpVerifier,
    pub tdx: TdxVerifier,
}

impl Verifiers {
    pub fn new() -> Result<Self> {
        Ok(Verifiers {
            snp: SnpVerifier::new()?,
            tdx: TdxVerifier::new()?,
        })
    }
}

/// Verify evidence bytes (binary or hex text) at `at`. `Err` only for input that is not
/// evidence at all; everything else yields a [`Verdict`] with reasons.
pub fn verify_evidence(
    verifiers: &Verifiers,
    config: &VerifierConfig,
    evidence: &[u8],
    inputs: &Inputs<'_>,
    at: VerifyAt,
) -> Result<Verdict> {
    if evidence.len() > EVIDENCE_LEN_MAX {
        return Err(AttestError::Limit(format!(
            "evidence of {} bytes > {EVIDENCE_LEN_MAX}",
            evidence.len()
        )));
    }
    let bytes = decode_input(evidence);
    let kind = detect(&bytes)?;
    let mut v = match kind {
        TeeKind::Sim => verify_sim(config, &bytes)?,
        TeeKind::SevSnp => verify_snp(verifiers, &bytes, inputs, at, &config.policy)?,
        TeeKind::Tdx => verify_tdx(verifiers, &bytes, inputs, at, &config.policy)?,
    };
    apply_policy(&mut v, config);
    v.verified_at = at.to_rfc3339();
    v.valid = v.reasons.is_empty();
    Ok(v)
}

fn blank(tee: TeeKind, format: String) -> Verdict {
    Verdict {
        tee,
        valid: false,
        signature_and_chain_valid: false,
        reasons: Vec::new(),
        warnings: Vec::new(),
        format,
        measurements: Vec::new(),
        report_data: String::new(),
        debug: false,
        vmpl: None,
        tcb: None,
        chip_id: None,
        fmspc: None,
        chain: Vec::new(),
        verified_at: String::new(),
        report_data_raw: [0; 64],
    }
}

fn verify_sim(config: &VerifierConfig, bytes: &[u8]) -> Result<Verdict> {
    let e = SimEvidence::decode(bytes)?;
    let mut v = blank(TeeKind::Sim, "sim evidence v1".into());
    v.measurements.push(Measurement {
        name: "measurement".into(),
        hex: hex::encode(e.measurement),
    });
    v.report_data = hex::encode(e.report_data);
    v.report_data_raw = e.report_data;
    v.debug = e.debug();
    v.chain = vec!["tribune development root (sim)".into()];
    v.warnings
        .push("simulated TEE: no hardware isolation is attested".into());
    if !config.allow_sim {
        v.reasons.push(
            "simulated evidence refused by configuration (allow it with --allow-sim / tribune dev)"
                .into(),
        );
    }
    let roots = if config.sim_roots.is_empty() {
        vec![dev_root_public()]
    } else {
        config.sim_roots.clone()
    };
    match e.verify(&roots) {
        Ok(()) => v.signature_and_chain_valid = true,
        Err(err) => v.reasons.push(err.to_string()),
    }
    Ok(v)
}

fn verify_snp(
    verifiers: &Verifiers,
    bytes: &[u8],
    inputs: &Inputs<'_>,
    at: VerifyAt,
    policy: &AttestPolicy,
) -> Result<Verdict> {
    let r = SnpReport::parse(bytes)?;
    let mut v = blank(
        TeeKind::SevSnp,
        format!("SEV-SNP attestation report v{}", r.version()),
    );
    v.measurements.push(Measurement {
        name: "measurement".into(),
        hex: hex::encode(r.measurement()),
    });
    v.report_data = hex::encode(r.report_data());
    v.report_data_raw = r.report_data();
    v.debug = r.debug_allowed();
    v.chip_id = Some(hex::encode(r.chip_id()));
    if bytes.starts_with(b"HCLA") {
        v.warnings.push(
            "Azure HCL wrapper: report_data binds the HCL runtime data, not checked here".into(),
        );
    }
    let o = verifiers.snp.verify(&r, inputs.certs, at);
    v.signature_and_chain_valid = o.is_valid();
    fill_snp(&mut v, &o);
    v.vmpl = Some(r.vmpl());
    if let Some(max) = policy.vmpl_max
        && r.vmpl() > max
    {
        v.reasons
            .push(format!("VMPL {} above the allowed {max}", r.vmpl()));
    }
    if let (Some(min), Some(rep)) = (&policy.min_snp_tcb, &o.reported_tcb) {
        if !rep.at_least(min) {
            v.reasons
                .push(format!("REPORTED_TCB {rep} below the minimum {min}"));
        }
    } else if policy.min_snp_tcb.is_some() {
        v.reasons
            .push("minimum TCB not checkable: the report's product is unknown".into());
    }
    Ok(v)
}

fn fill_snp(v: &mut Verdict, o: &crate::snp::SnpOutcome) {
    v.reasons.extend(o.errors.iter().cloned());
    v.chain = o.chain.clone();
    if let Some(p) = o.product {
        v.format = format!("{} ({}, {:?})", v.format, p.name(), o.signing_key);
    }
    if let Some(t) = o.reported_tcb {
        v.tcb = Some(TcbInfo {
            status: if o.is_valid() {
                "VEK TCB matches REPORTED_TCB".into()
            } else {
                "unverified".into()
            },
            advisory_ids: Vec::new(),
            detail: format!(
                "reported {t}; current {}",
                o.current_tcb.map(|c| c.to_string()).unwrap_or_default()
            ),
        });
    }
}

fn verify_tdx(
    verifiers: &Verifiers,
    bytes: &[u8],
    inputs: &Inputs<'_>,
    at: VerifyAt,
    policy: &AttestPolicy,
) -> Result<Verdict> {
    let q = TdxQuote::parse(bytes)?;
    let o = verifiers.tdx.verify(&q, inputs.collateral, at);
    let mut v = blank(
        TeeKind::Tdx,
        format!("TDX quote v{} ({})", o.version, o.body_kind),
    );
    if let Some(m) = &o.measurements {
        v.measurements.push(Measurement {
            name: "mr_td".into(),
            hex: hex::encode(m.mr_td),
        });
        for (i, r) in m.rtmr.iter().enumerate() {
            v.measurements.push(Measurement {
                name: format!("rtmr{i}"),
                hex: hex::encode(r),
            });
        }
        v.measurements.push(Measurement {
            name: "mr_seam".into(),
            hex: hex::encode(m.mr_seam),
        });
        v.report_data = hex::encode(m.report_data);
        v.report_data_raw = m.report_data;
    }
    v.debug = o.debug;
    v.signature_and_chain_valid = o.crypto_valid;
    v.fmspc = o.fmspc.map(hex::encode);
    v.chain = o.chain.clone();
    v.reasons.extend(o.errors.iter().cloned());
    v.warnings.extend(o.warnings.iter().cloned());
    if o.trailing > 0 {
        v.warnings.push(format!(
            "{} bytes after the quote's signature data ignored",
            o.trailing
        ));
    }
    if !q.sept_ve_disabled() && !policy.allow_sept_ve {
        v.reasons.push(
            "policy: TD attribute SEPT_VE_DISABLE is clear (EPT violations reach the TD as #VE); \
             allow it with allow_sept_ve / --allow-sept-ve"
                .into(),
        );
    }
    match &o.tcb {
        Some(t) => {
            if !policy.tdx_tcb_statuses.is_empty() && !policy.tdx_tcb_statuses.contains(&t.status) {
                v.reasons
                    .push(format!("TDX TCB status {} is not accepted", t.status));
            }
            v.tcb = Some(TcbInfo {
                status: t.status.clone(),
                advisory_ids: t.advisory_ids.clone(),
                detail: format!("platform {}, QE {}", t.platform_status, t.qe_status),
            });
        }
        None if policy.require_tdx_tcb => v
            .reasons
            .push("TDX TCB status required but not evaluated".into()),
        None => {}
    }
    Ok(v)
}

fn apply_policy(v: &mut Verdict, config: &VerifierConfig) {
    let p = &config.policy;
    if v.debug && !p.allow_debug {
        v.reasons.push("debug mode is forbidden".into());
    }
    if !p.measurements.is_empty() {
        let launch = v
            .measurements
            .first()
            .map(|m| m.hex.clone())
            .unwrap_or_default();
        if !p.measurements.iter().any(|m| hex::encode(m) == launch) {
            v.reasons
                .push(format!("measurement {launch} is not in the allow-list"));
        }
    }
    if let Some(rd) = &p.report_data
        && !crate::session::ring_ct_eq(rd, &v.report_data_raw)
    {
        v.reasons
            .push("report_data does not match the expected binding".into());
    }
}
