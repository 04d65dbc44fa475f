//! Evidence and re-keying as pure verdicts: what the session knows goes in (the verifiers, the
//! stream's key exchange, what the replicated state says about the enclave, the time), a
//! verdict to record and the keys to track come out. No lock, no Raft, no send.

use ed25519_dalek::VerifyingKey;
use tribune_attest::VerifyAt;
use tribune_attest::evidence::{Inputs, VerifierConfig, Verifiers, verify_evidence};
use tribune_attest::session::{BoundEnclave, ControllerExchange, binding_report_data};
use tribune_attest::usage::EnclaveId;
use tribune_proto::v1 as pb;

use crate::state::{Attestation, TeeKind};

/// Who verifies, where and when.
#[derive(Debug, Clone, Copy)]
pub struct Context<'a> {
    pub host: &'a str,
    pub controller_id: u64,
    /// Accept simulated evidence (`tribune dev`).
    pub allow_sim: bool,
    pub now_ms: i64,
    /// When certificates, CRLs and collateral must be valid.
    pub at: VerifyAt,
    /// What the `attest` blocks of the policies matching the enclave allow and require
    /// (`PolicySet::attest_knobs`); `None`: the verifier's defaults.
    pub knobs: Option<tribune_policy::AttestKnobs>,
}

/// What the session tracks of an enclave that is being re-attested: the keys bound on this
/// stream and the nonce of the outstanding `AttestNow`.
#[derive(Debug, Clone, Copy)]
pub struct Reattesting {
    pub ed25519_pub: [u8; 32],
    pub x25519_pub: [u8; 32],
    pub nonce: [u8; 32],
}

/// The outcome of one piece of evidence.
#[derive(Debug)]
pub enum Verdict {
    /// First evidence on this stream: the verdict, and when trusted the keys to track.
    Fresh {
        attestation: Attestation,
        track: Option<Box<(BoundEnclave, VerifyingKey)>>,
    },
    /// An answer to `AttestNow`: the verdict (trusted only with the same keys and the nonce).
    Reattested(Attestation),
}

impl Verdict {
    pub fn attestation(&self) -> &Attestation {
        match self {
            Verdict::Fresh { attestation, .. } | Verdict::Reattested(attestation) => attestation,
        }
    }
}

/// Why re-keying was refused (the session then asks for evidence).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RekeyError {
    #[error("{what}: {got} bytes, expected {want}")]
    Length {
        what: &'static str,
        got: usize,
        want: usize,
    },
    #[error("no trusted evidence bound these keys")]
    NoPrior,
    #[error("{0}")]
    Exchange(String),
    #[error("ed25519 key is not a valid point")]
    BadPoint,
}

fn key32(b: &[u8], what: &'static str) -> Result<[u8; 32], RekeyError> {
    b.try_into().map_err(|_| RekeyError::Length {
        what,
        got: b.len(),
        want: 32,
    })
}

/// Verifies one piece of evidence: the report itself, the measurement the enclave expects
/// (`expected`, empty: any), and its binding to this stream's exchange (or, when `reattesting`,
/// to the same keys and the fresh nonce).
pub fn verify(
    cx: Context<'_>,
    verifiers: &Verifiers,
    exchange: &ControllerExchange,
    ev: &pb::Evidence,
    expected: &[String],
    reattesting: Option<Reattesting>,
) -> Verdict {
    // The envelope's claim; the verified evidence says what it really is.
    let claimed = ev.tee.parse::<TeeKind>();
    let mut a = Attestation {
        host: cx.host.to_string(),
        tee: claimed.as_ref().ok().copied(),
        verified_at_ms: cx.now_ms,
        verified_by: cx.controller_id,
        ..Attestation::default()
    };
    let fresh = |attestation| Verdict::Fresh {
        attestation,
        track: None,
    };
    if let Err(e) = claimed {
        a.reasons.push(format!("evidence envelope: {e}"));
        return fresh(a);
    }
    let keys = key32(&ev.enclave_ed25519, "enclave_ed25519")
        .and_then(|ed| Ok((ed, key32(&ev.enclave_x25519, "enclave_x25519")?)));
    let (ed, x) = match keys {
        Ok(k) => k,
        Err(e) => {
            a.reasons.push(e.to_string());
            return fresh(a);
        }
    };
    a.ed25519_pub = hex::encode(ed);
    a.x25519_pub = hex::encode(x);
    let mut config = if cx.allow_sim {
        VerifierConfig::dev()
    } else {
        VerifierConfig::production()
    };
    // Debug-mode evidence is verified and reported as such: the policy's `attest { debug = … }`
    // decides what that means (`attestation.debug`), so the ladder sees it.
    config.policy.allow_debug = true;
    if let Some(k) = cx.knobs {
        config.policy.allow_sept_ve = k.allow_sept_ve;
        config.policy.require_tdx_tcb = k.require_tdx_tcb;
    }
    let verdict = match verify_evidence(verifiers, &config, &ev.report, &Inputs::default(), cx.at) {
        Ok(v) => v,
        Err(e) => {
            a.reasons.push(format!("not evidence: {e}"));
            return fresh(a);
        }
    };
    a.tee = Some(verdict.tee);
    a.debug = verdict.debug;
    a.measurement = verdict
        .measurements
        .first()
        .map(|m| m.hex.clone())
        .unwrap_or_default();
    a.reasons.extend(verdict.reasons.iter().cloned());
    if !expected.is_empty()
        && !expected
            .iter()
            .any(|m| m.eq_ignore_ascii_case(&a.measurement))
    {
        a.reasons.push(format!(
            "measurement {} is not one of the enclave's expected measurements",
            a.measurement
        ));
    }
    // Re-attestation: same keys, a fresh nonce from AttestNow.
    if let Some(r) = reattesting {
        let want = binding_report_data(&ed, &x, &r.nonce);
        if verdict.report_data_raw != want || r.ed25519_pub != ed || r.x25519_pub != x {
            a.reasons.push(
                "re-attestation evidence does not bind the stream's keys to the fresh nonce".into(),
            );
        }
        a.trusted = a.reasons.is_empty();
        return Verdict::Reattested(a);
    }
    let eid = EnclaveId::from_name(&ev.enclave_id);
    let bound = match exchange.bind(eid, ed, x, &verdict.report_data_raw) {
        Ok(b) => b,
        Err(e) => {
            a.reasons.push(e.to_string());
            return fresh(a);
        }
    };
    if !a.reasons.is_empty() {
        return fresh(a);
    }
    match VerifyingKey::from_bytes(&ed) {
        Ok(vk) => {
            a.trusted = true;
            Verdict::Fresh {
                attestation: a,
                track: Some(Box::new((bound, vk))),
            }
        }
        Err(_) => {
            a.reasons.push("ed25519 key is not a valid point".into());
            fresh(a)
        }
    }
}

/// Why a migration target's evidence is refused (the migration then rolls back).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MoveEvidenceError {
    #[error("its ready carried no evidence")]
    Missing,
    #[error("its evidence is for enclave {got:?}, not {want:?}")]
    OtherEnclave { got: String, want: String },
    #[error("the migration record holds no nonce")]
    NoNonce,
    #[error("{0}")]
    Malformed(RekeyError),
    /// Verified and not trusted: every reason the verdict gave.
    #[error("{}", if .0.is_empty() { "not trusted".to_string() } else { .0.join("; ") })]
    Untrusted(Vec<String>),
}

/// A migration target's evidence (its `ready`): the waiting VM's report verified as any
/// evidence, binding the keys it carries to the migration's fresh `nonce` (not to the stream's
/// exchange: those keys are tracked only once the commit places the enclave there and it is
/// attested on the stream). `Ok`: the measurement it was verified to.
pub fn verify_for_move(
    cx: Context<'_>,
    verifiers: &Verifiers,
    exchange: &ControllerExchange,
    ev: &pb::Evidence,
    expected: &[String],
    nonce: &[u8; 32],
) -> Result<String, MoveEvidenceError> {
    let ed = key32(&ev.enclave_ed25519, "enclave_ed25519").map_err(MoveEvidenceError::Malformed)?;
    let x = key32(&ev.enclave_x25519, "enclave_x25519").map_err(MoveEvidenceError::Malformed)?;
    let bound = Reattesting {
        ed25519_pub: ed,
        x25519_pub: x,
        nonce: *nonce,
    };
    let verdict = verify(cx, verifiers, exchange, ev, expected, Some(bound));
    let a = verdict.attestation();
    if a.trusted {
        Ok(a.measurement.clone())
    } else {
        Err(MoveEvidenceError::Untrusted(a.reasons.clone()))
    }
}

/// Re-keying on a new stream without evidence (DESIGN.md §4.5): the enclave signs this stream's
/// exchange with the ed25519 key that earlier trusted evidence bound (`prior`, from the
/// replicated state). Any doubt is an error, answered by asking for evidence, never by trusting.
pub fn rekey(
    cx: Context<'_>,
    exchange: &ControllerExchange,
    ev: &pb::Evidence,
    prior: Option<&Attestation>,
) -> Result<(Attestation, BoundEnclave, VerifyingKey), RekeyError> {
    let ed = key32(&ev.enclave_ed25519, "enclave_ed25519")?;
    let x = key32(&ev.enclave_x25519, "enclave_x25519")?;
    let sig: [u8; 64] =
        ev.rekey_signature
            .as_slice()
            .try_into()
            .map_err(|_| RekeyError::Length {
                what: "re-key signature",
                got: ev.rekey_signature.len(),
                want: 64,
            })?;
    let prior = prior
        .filter(|a| a.trusted && a.ed25519_pub == hex::encode(ed) && a.x25519_pub == hex::encode(x))
        .ok_or(RekeyError::NoPrior)?;
    let bound = exchange
        .rekey(EnclaveId::from_name(&ev.enclave_id), ed, x, &sig)
        .map_err(|e| RekeyError::Exchange(e.to_string()))?;
    let vk = VerifyingKey::from_bytes(&ed).map_err(|_| RekeyError::BadPoint)?;
    Ok((
        Attestation {
            host: cx.host.to_string(),
            reasons: Vec::new(),
            verified_at_ms: cx.now_ms,
            verified_by: cx.controller_id,
            rekeyed: true,
            failures: 0,
            ..prior.clone()
        },
        bound,
        vk,
    ))
}

#[cfg(test)]
#[path = "evidence_tests.rs"]
mod tests;
