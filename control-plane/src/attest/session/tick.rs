//! The session's periodic work (`Session::on_tick`, every `TICK`): re-attestation requests
//! and their deadlines, and the flush of pending digests and refusals through Raft with the
//! acknowledgements that follow.

use std::time::{Duration, Instant};

use tribune_attest::session::ControllerExchange;
use tribune_proto::v1 as pb;

use super::{DIGEST_FLUSH, Session, SessionError, Tx, send, wall_ms};
use crate::attest::decide::{Around, utilization};
use crate::attest::reattest;
use crate::attest::window::Rates;
use crate::state::{Attestation, Command, Outcome, Resources, State, VerdictCmd};
use tribune_policy::Utilization;

/// How often a session records its host as seen (`Command::HostSeen`): a tenth of the age a
/// migration target's last sign of attestation may have (`[migration] attest_max_age_s`, 600 s:
/// every 60 s), at least every second and at most every minute, so a host that runs nothing
/// stays a valid target for as long as its agent's stream is up. Pure.
pub fn host_seen_every(cfg: &crate::live::LiveConfig) -> Duration {
    Duration::from_millis(cfg.attest_max_age_s.saturating_mul(100))
        .clamp(Duration::from_secs(1), Duration::from_secs(60))
}

/// A verified second of an enclave's usage older than this does not count in its host's
/// measured load (it stopped reporting, or its reports stopped verifying).
pub const LOAD_FRESH_S: u64 = 5;

/// What a host's enclaves use at `at_ms`: the sum of the newest verified second of each
/// (`Tracked::last_second`, Unix seconds and mean rates), those older than [`LOAD_FRESH_S`]
/// left out. Pure.
pub fn measured_load(seconds: impl Iterator<Item = (u64, Rates)>, at_ms: i64) -> Resources {
    let now_s = u64::try_from(at_ms / 1000).unwrap_or(0);
    let whole = |v: f64| {
        if v.is_finite() && v > 0.0 {
            v.round() as u64
        } else {
            0
        }
    };
    seconds
        .filter(|(second, _)| second.saturating_add(LOAD_FRESH_S) >= now_s)
        .fold(Resources::default(), |load, (_, r)| {
            add(
                load,
                Resources {
                    cpu_millicores: whole(r.cpu_millicores),
                    memory_bytes: whole(r.memory_bytes),
                    egress_bits_per_sec: whole(r.egress_bits_per_sec),
                    ingress_bits_per_sec: whole(r.ingress_bits_per_sec),
                    gpu_percent: u32::try_from(whole(r.gpu_percent)).unwrap_or(u32::MAX),
                },
            )
        })
}

/// The utilization the policies read for `host` (`host.R.utilization`, `cluster.R.utilization`):
/// `live` — what its enclaves use now, by this stream's verified usage ([`measured_load`]) —
/// against its capacity, and every host's recorded `measured_load` (this one's live) against
/// the cluster's capacity. **Unknown** (every comparison false, so no rule fires on it) rather
/// than understated: the host's when `live` is `None` (an enclave placed here without a fresh
/// verified second), the cluster's then too, or when another host's record is older than
/// `stale_ms` at `now_ms` (its agent went away: its load is not known). Pure.
pub fn around(
    state: &State,
    host: &str,
    live: Option<Resources>,
    now_ms: i64,
    stale_ms: i64,
) -> Around {
    let Some(live) = live else {
        return Around::default();
    };
    let capacity = state
        .hosts
        .get(host)
        .map(|h| h.capacity)
        .unwrap_or_default();
    let (mut used, mut total, mut known) = (Resources::default(), Resources::default(), true);
    for h in state.hosts.values() {
        let load = if h.id == host {
            live
        } else {
            known &= now_ms.saturating_sub(h.last_heartbeat_ms) <= stale_ms;
            h.measured_load
        };
        used = add(used, load);
        total = add(total, h.capacity);
    }
    Around {
        host: utilization(live, capacity),
        cluster: if known {
            utilization(used, total)
        } else {
            Utilization::default()
        },
    }
}

fn add(a: Resources, b: Resources) -> Resources {
    Resources {
        cpu_millicores: a.cpu_millicores.saturating_add(b.cpu_millicores),
        memory_bytes: a.memory_bytes.saturating_add(b.memory_bytes),
        egress_bits_per_sec: a.egress_bits_per_sec.saturating_add(b.egress_bits_per_sec),
        ingress_bits_per_sec: a
            .ingress_bits_per_sec
            .saturating_add(b.ingress_bits_per_sec),
        gpu_percent: a.gpu_percent.saturating_add(b.gpu_percent),
    }
}

impl Session {
    /// What this host's enclaves use now, by this stream's verified usage.
    pub(super) fn live_load(&self, at_ms: i64) -> Resources {
        measured_load(
            self.ledger.iter().filter_map(|(_, t)| t.last_second()),
            at_ms,
        )
    }

    /// What `placed` (this host's enclaves) use now, or `None` when one that is not stopped
    /// has no verified second within [`LOAD_FRESH_S`]: a load that leaves it out would read
    /// low, and a rule like `host.cpu.utilization < 30%` would fire on it.
    pub(super) fn load_of<'a>(
        &self,
        placed: impl Iterator<Item = &'a crate::state::Enclave>,
        at_ms: i64,
    ) -> Option<Resources> {
        let now_s = u64::try_from(at_ms / 1000).unwrap_or(0);
        let mut seconds = Vec::new();
        for e in placed.filter(|e| e.state != crate::state::EnclaveState::Stopped) {
            let second = self.ledger.get(&e.id).and_then(|t| t.last_second())?;
            if second.0.saturating_add(LOAD_FRESH_S) < now_s {
                return None;
            }
            seconds.push(second);
        }
        Some(measured_load(seconds.into_iter(), at_ms))
    }

    pub(super) async fn on_tick(&mut self, tx: &Tx) -> Result<(), SessionError> {
        if self.last_flush.elapsed() >= DIGEST_FLUSH {
            self.flush(tx).await?;
        }
        if self.seen_at.elapsed() >= host_seen_every(&self.controller.config.migration) {
            self.seen_at = Instant::now();
            // In the background, as the host's record at connect: the stream never waits on
            // it, and one that fails is the next one's to make up.
            let (controller, host) = (self.controller.clone(), self.host.clone());
            let at_ms = wall_ms();
            let load = self.live_load(at_ms);
            tokio::spawn(async move {
                let cmd = Command::HostSeen {
                    host: host.clone(),
                    at_ms,
                    load,
                };
                if let Err(e) = controller.write(vec![cmd]).await {
                    tracing::debug!(%host, "recording the host as seen: {e}");
                }
            });
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::live::LiveConfig;

    #[test]
    fn a_hosts_load_sums_its_enclaves_fresh_verified_seconds() {
        let r = |cpu, egress, gpu| Rates {
            cpu_millicores: cpu,
            memory_bytes: 1024.4,
            egress_bits_per_sec: egress,
            ingress_bits_per_sec: 0.0,
            gpu_percent: gpu,
        };
        let at_ms = 1_000_000_500; // second 1_000_000
        let seconds = [
            (1_000_000, r(250.4, 1e6, 10.0)),
            (999_995, r(500.0, 0.0, 0.0)),  // 5 s old: counts
            (999_994, r(4000.0, 0.0, 0.0)), // 6 s old: stopped reporting
            (1_000_000, r(f64::NAN, -3.0, 95.0)),
        ];
        let load = measured_load(seconds.into_iter(), at_ms);
        assert_eq!(
            load,
            Resources {
                cpu_millicores: 750,
                memory_bytes: 3072,
                egress_bits_per_sec: 1_000_000,
                ingress_bits_per_sec: 0,
                gpu_percent: 105,
            }
        );
        assert_eq!(
            measured_load(std::iter::empty(), at_ms),
            Resources::default()
        );
    }

    #[test]
    fn utilization_is_the_enclaves_use_of_the_hosts_and_the_clusters_capacity() {
        let mut st = State::default();
        let cpu = |m| Resources {
            cpu_millicores: m,
            ..Resources::default()
        };
        for (id, capacity, recorded) in [("h1", 4000, 3000), ("h2", 4000, 1000), ("h3", 0, 0)] {
            st.hosts.insert(
                id.into(),
                crate::state::Host {
                    id: id.into(),
                    address: String::new(),
                    capacity: cpu(capacity),
                    tee: crate::state::TeeKind::Sim,
                    attestation_status: String::new(),
                    last_heartbeat_ms: 0,
                    agent_cert_fingerprint: String::new(),
                    enforcement: String::new(),
                    tee_generation: 0,
                    labels: Default::default(),
                    schedulable: Default::default(),
                    measured_load: cpu(recorded),
                },
            );
        }
        let fresh = 60_000;
        // h1's own load is the live one (2000), not the recorded 3000.
        let a = around(&st, "h1", Some(cpu(2000)), 1_000, fresh);
        assert_eq!(a.host.cpu, 50.0);
        assert_eq!(a.cluster.cpu, 3000.0 * 100.0 / 8000.0);
        assert!(
            a.host.memory.is_nan(),
            "no memory capacity declared: unknown"
        );
        // A host that declared no CPU: unknown, never 0 % or infinite.
        assert!(
            around(&st, "h3", Some(cpu(10)), 1_000, fresh)
                .host
                .cpu
                .is_nan()
        );
        assert!(
            around(&st, "nope", Some(cpu(0)), 1_000, fresh)
                .host
                .cpu
                .is_nan()
        );
        // An enclave without fresh usage here: unknown, not low — and the cluster's too.
        let a = around(&st, "h1", None, 1_000, fresh);
        assert!(a.host.cpu.is_nan() && a.cluster.cpu.is_nan());
        // Another host's record gone stale (its agent away): the cluster's is unknown.
        let a = around(&st, "h1", Some(cpu(2000)), fresh + 1, fresh);
        assert_eq!(a.host.cpu, 50.0);
        assert!(a.cluster.cpu.is_nan());
    }

    #[test]
    fn a_host_is_recorded_as_seen_ten_times_within_the_targets_freshness_window() {
        let every = |attest_max_age_s| {
            host_seen_every(&LiveConfig {
                attest_max_age_s,
                ..LiveConfig::default()
            })
        };
        assert_eq!(every(600), Duration::from_secs(60), "the default");
        assert_eq!(every(100), Duration::from_secs(10));
        assert_eq!(every(2), Duration::from_secs(1), "at least a second apart");
        assert_eq!(every(0), Duration::from_secs(1));
        assert_eq!(
            every(86_400),
            Duration::from_secs(60),
            "at most a minute apart"
        );
        assert_eq!(every(u64::MAX), Duration::from_secs(60));
    }
}
