//! The session's periodic work (`Session::on_tick`, every `TICK`): re-attestation requests
//! and their deadlines, and the flush of pending digests and refusals through Raft with the
//! acknowledgements that follow.

use std::time::Instant;

use tribune_attest::session::ControllerExchange;
use tribune_proto::v1 as pb;

use super::{DIGEST_FLUSH, Session, SessionError, Tx, send, wall_ms};
use crate::attest::reattest;
use crate::state::{Attestation, Command, Outcome, VerdictCmd};

impl Session {
    pub(super) async fn on_tick(&mut self, tx: &Tx) -> Result<(), SessionError> {
        if self.last_flush.elapsed() >= DIGEST_FLUSH {
            self.flush(tx).await?;
        }
        let now = Instant::now();
        let schedules = || self.ledger.iter().map(|(id, t)| (id, &t.schedule));
        let due = reattest::due(schedules(), &self.reattest_every_ms, now);
        let overdue = reattest::overdue(schedules(), now);
        if !due.is_empty() {
            let nonce = ControllerExchange::new().nonce().to_owned();
            for id in &due {
                if let Some(t) = self.ledger.get_mut(id) {
                    t.schedule.pending = Some((nonce, now));
                }
            }
            send(
                tx,
                pb::controller_message::Body::AttestNow(pb::AttestNow {
                    enclave_ids: due,
                    nonce: nonce.to_vec(),
                }),
            )
            .await?;
        }
        // Unanswered re-attestation: a failure.
        if !overdue.is_empty() {
            let verdicts = overdue
                .into_iter()
                .map(|id| {
                    self.ledger.untrack(&id);
                    VerdictCmd {
                        enclave: id,
                        attestation: Attestation {
                            trusted: false,
                            host: self.host.clone(),
                            reasons: vec![format!(
                                "no evidence within {} s of a re-attestation request",
                                reattest::ANSWER_WITHIN.as_secs()
                            )],
                            verified_at_ms: wall_ms(),
                            ..Attestation::default()
                        },
                    }
                })
                .collect();
            self.write(Command::Verdicts {
                host: self.host.clone(),
                verdicts,
                at_ms: wall_ms(),
            })
            .await?;
        }
        Ok(())
    }

    /// Commits pending digests and refusals; acknowledges what is durable.
    pub(super) async fn flush(&mut self, tx: &Tx) -> Result<(), SessionError> {
        self.last_flush = Instant::now();
        let rejects = std::mem::take(&mut self.rejects);
        if !rejects.is_empty() {
            self.write_kept(rejects).await?;
        }
        if self.ledger.pending_digests() > 0 {
            self.commit_digests(tx).await?;
        }
        // Decisions also run on silence, so a stopped stream still ages the ladder.
        self.decide().await
    }

    async fn commit_digests(&mut self, tx: &Tx) -> Result<(), SessionError> {
        let digests = self.ledger.take_digests();
        let enclaves: Vec<String> = digests.iter().map(|d| d.enclave.clone()).collect();
        let started = Instant::now();
        let out = self
            .write(Command::UsageDigests {
                host: self.host.clone(),
                digests,
                at_ms: wall_ms(),
            })
            .await?;
        crate::metrics::get()
            .attest_digest_commit_seconds
            .observe(started.elapsed().as_secs_f64());
        if let Outcome::Loop(o) = &out
            && !o.refused.is_empty()
        {
            tracing::warn!(host = %self.host, refused = ?o.refused, "digests refused");
        }
        // Ack the confirmed point the log now holds for each enclave.
        let acks = {
            let st = self.state();
            enclaves
                .into_iter()
                .filter_map(|id| {
                    let c = st.status.get(&id)?.confirmed.as_ref()?;
                    Some(pb::UsageAck {
                        confirmed_seq: c.last_seq,
                        enclave_id: id,
                    })
                })
                .collect::<Vec<_>>()
        };
        send(
            tx,
            pb::controller_message::Body::UsageAcks(pb::UsageAcks { acks }),
        )
        .await
    }
}
