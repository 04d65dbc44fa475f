//! The session's evidence handling (`Session::on_evidence`): each enclave's evidence checked
//! against the fresh challenge (`super::super::evidence`, pure), its verdict written through
//! Raft, and its usage tracked under the key it bound (`Session::track`).

use std::time::Instant;

use tribune_proto::v1 as pb;

use super::{Session, SessionError, Tx, confirmed_for, send, wall_ms};
use crate::attest::evidence::{self, Context, Reattesting, Verdict};
use crate::attest::ledger::{Fault, Refusal};
use crate::attest::reattest;
use crate::attest::server::ENCLAVES_PER_STREAM_MAX;
use crate::attest::window::WINDOW_S_MAX;
use crate::state::{Command, Outcome, VerdictCmd};

impl Session {
    /// Who verifies evidence on this stream, and when: this controller, now, with the
    /// matching policies' `attest` knobs.
    pub(super) fn verify_context(&self, knobs: Option<tribune_policy::AttestKnobs>) -> Context<'_> {
        Context {
            host: &self.host,
            controller_id: self.controller.id,
            allow_sim: self.config.allow_sim,
            now_ms: wall_ms(),
            at: tribune_attest::VerifyAt::now(),
            knobs,
        }
    }

    pub(super) async fn on_evidence(
        &mut self,
        evidence: Vec<pb::Evidence>,
        tx: &Tx,
    ) -> Result<(), SessionError> {
        let mut verdicts = Vec::new();
        let mut need_evidence = Vec::new();
        let mut refused = Vec::new();
        let now = Instant::now();
        let (set, _) = self.policy_set();
        for ev in evidence {
            let id = ev.enclave_id.clone();
            // What the replicated state says about this enclave, copied out of the lock.
            let (placed, expected, identity, prior) = {
                let st = self.state();
                let e = st.enclaves.get(&id);
                let prior = st.status.get(&id).and_then(|s| s.attestation.clone());
                (
                    e.and_then(|e| e.placement.as_ref())
                        .map(|p| p.host == self.host),
                    e.map(|e| e.expected_measurements.clone())
                        .unwrap_or_default(),
                    e.map(|e| crate::attest::decide::identity(e, prior.as_ref())),
                    prior,
                )
            };
            if placed != Some(true) {
                refused.push(Refusal::new(
                    &id,
                    "evidence",
                    Fault::NotPlaced,
                    format!("enclave {id:?} is not placed on host {:?}", self.host),
                ));
                continue;
            }
            if self.ledger.len() >= ENCLAVES_PER_STREAM_MAX && !self.ledger.contains(&id) {
                refused.push(Refusal::new(
                    &id,
                    "evidence",
                    Fault::TooMany,
                    "too many enclaves on one stream",
                ));
                continue;
            }
            let cx = self.verify_context(identity.and_then(|i| set.attest_knobs(&i)));
            if ev.report.is_empty() && !ev.rekey_signature.is_empty() {
                match evidence::rekey(cx, &self.exchange, &ev, prior.as_ref()) {
                    Ok((attestation, bound, vk)) => {
                        self.track(id.clone(), bound, vk, now);
                        verdicts.push(VerdictCmd {
                            enclave: id,
                            attestation,
                        });
                    }
                    Err(why) => {
                        tracing::info!(host = %self.host, enclave = %id, "re-keying refused, asking for evidence: {why}");
                        need_evidence.push(id);
                    }
                }
                continue;
            }
            let reattesting = self.ledger.get(&id).and_then(|t| {
                t.schedule.pending.map(|(nonce, _)| Reattesting {
                    ed25519_pub: t.bound.ed25519_pub,
                    x25519_pub: t.bound.x25519_pub,
                    nonce,
                })
            });
            let verdict = evidence::verify(
                cx,
                &self.verifiers,
                &self.exchange,
                &ev,
                &expected,
                reattesting,
            );
            let trusted = verdict.attestation().trusted;
            let attestation = match verdict {
                Verdict::Reattested(a) => {
                    if a.trusted
                        && let Some(t) = self.ledger.get_mut(&id)
                    {
                        t.schedule = reattest::Schedule::new(now);
                    }
                    a
                }
                Verdict::Fresh { attestation, track } => {
                    if let Some(t) = track {
                        let (bound, vk) = *t;
                        self.track(id.clone(), bound, vk, now);
                    }
                    attestation
                }
            };
            if !trusted {
                // Its reports stop counting at once.
                self.ledger.untrack(&id);
                refused.push(Refusal::new(
                    &id,
                    "evidence",
                    Fault::Evidence,
                    attestation.reasons.join("; "),
                ));
            }
            verdicts.push(VerdictCmd {
                enclave: id,
                attestation,
            });
        }
        self.refuse(refused);
        if !need_evidence.is_empty() {
            send(
                tx,
                pb::controller_message::Body::AttestNow(pb::AttestNow {
                    enclave_ids: need_evidence,
                    nonce: self.exchange.nonce().to_vec(),
                }),
            )
            .await?;
        }
        if verdicts.is_empty() {
            return Ok(());
        }
        let out = self
            .write(Command::Verdicts {
                host: self.host.clone(),
                verdicts,
                at_ms: wall_ms(),
            })
            .await?;
        if let Outcome::Loop(o) = out
            && !o.refused.is_empty()
        {
            tracing::warn!(host = %self.host, refused = ?o.refused, "verdicts refused");
        }
        Ok(())
    }

    /// Starts counting an enclave's reports under `bound`, continuing the chain the log
    /// confirmed for this key (a new key starts at seq 1).
    pub(super) fn track(
        &mut self,
        id: String,
        bound: tribune_attest::session::BoundEnclave,
        vk: ed25519_dalek::VerifyingKey,
        now: Instant,
    ) {
        let confirmed = confirmed_for(&self.state(), &id, &bound);
        let (_, wanted) = self.policy_set();
        let keep = wanted
            .iter()
            .map(|w| w.2)
            .max()
            .unwrap_or(1)
            .min(WINDOW_S_MAX);
        self.ledger.track(id, bound, vk, confirmed, keep, now);
    }
}
