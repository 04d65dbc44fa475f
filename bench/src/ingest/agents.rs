//! The simulated host agents of `ingest`: one `Attest` stream each, its evidence, the stream
//! sealed ahead of time, and the tasks that send it on schedule and read what comes back.

use std::collections::HashMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::Context;
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tribune_attest::TeeKind;
use tribune_attest::session::EnclaveKeys;
use tribune_attest::sim::SimEvidence;
use tribune_attest::usage::{Checkpoint, EnclaveId, Producer, UsageSample};
use tribune_proto::v1 as pb;
use tribune_proto::v1::attestation_service_client::AttestationServiceClient;

use super::{CPU_NORMAL_MILLICORES, CPU_OVER_MILLICORES, IngestConfig, unix_ms};

fn agent_msg(body: pb::agent_message::Body) -> pb::AgentMessage {
    pb::AgentMessage { body: Some(body) }
}

/// One simulated host: its stream, the challenge it got, its enclaves.
pub(super) struct Host {
    pub index: usize,
    pub tx: mpsc::Sender<pb::AgentMessage>,
    pub rx: tonic::Streaming<pb::ControllerMessage>,
    pub nonce: [u8; 32],
    pub eph: [u8; 32],
    pub enclaves: Vec<(String, EnclaveKeys)>,
}

pub(super) fn host_name(h: usize) -> String {
    format!("bh{h:04}")
}

pub(super) fn enclave_name(h: usize, e: usize) -> String {
    format!("bh{h:04}-e{e:04}")
}

/// Opens host `index`'s stream, takes the challenge and sends sim evidence for its enclaves.
pub(super) async fn connect(endpoint: &str, index: usize, per_host: usize) -> anyhow::Result<Host> {
    let mut client = AttestationServiceClient::connect(endpoint.to_string())
        .await
        .with_context(|| format!("connecting to {endpoint}"))?;
    let (tx, rx) = mpsc::channel(64);
    tx.send(agent_msg(pb::agent_message::Body::Hello(pb::Hello {
        host_id: host_name(index),
        applied_plan_version: 0,
        enclave_ids: vec![],
        can_enforce: true,
        enforce_problem: String::new(),
        capacity: None,
        labels: Default::default(),
        peer_addr: String::new(),
    })))
    .await
    .map_err(|_| anyhow::anyhow!("stream closed"))?;
    let mut rx = client.attest(ReceiverStream::new(rx)).await?.into_inner();
    let (nonce, eph) = loop {
        let m = rx
            .message()
            .await?
            .ok_or_else(|| anyhow::anyhow!("stream ended before the challenge"))?;
        if let Some(pb::controller_message::Body::Challenge(c)) = m.body {
            let nonce: [u8; 32] = c
                .nonce
                .try_into()
                .map_err(|_| anyhow::anyhow!("nonce is not 32 bytes"))?;
            let eph: [u8; 32] = c
                .controller_x25519
                .try_into()
                .map_err(|_| anyhow::anyhow!("controller key is not 32 bytes"))?;
            break (nonce, eph);
        }
    };
    let enclaves: Vec<(String, EnclaveKeys)> = (0..per_host)
        .map(|e| (enclave_name(index, e), EnclaveKeys::generate()))
        .collect();
    let evidence = enclaves
        .iter()
        .map(|(id, keys)| pb::Evidence {
            enclave_id: id.clone(),
            tee: TeeKind::Sim.to_string(),
            report: SimEvidence::create([7; 48], keys.report_data(&nonce), 0).encode(),
            certs: vec![],
            enclave_ed25519: keys.ed25519_public().to_vec(),
            enclave_x25519: keys.x25519_public().to_vec(),
            rekey_signature: vec![],
        })
        .collect();
    tx.send(agent_msg(pb::agent_message::Body::Evidence(
        pb::EvidenceBatch { evidence },
    )))
    .await
    .map_err(|_| anyhow::anyhow!("stream closed"))?;
    Ok(Host {
        index,
        tx,
        rx,
        nonce,
        eph,
        enclaves,
    })
}

/// The prepared stream of one host: per tick (1-based) a usage batch and maybe checkpoints.
pub(super) struct Sealed {
    pub ticks: Vec<(pb::AgentMessage, Option<pb::AgentMessage>)>,
}

/// Over-limit injections: global enclave index → the tick whose report first goes over.
pub(super) fn injections(cfg: &IngestConfig, ticks: u64) -> HashMap<usize, u64> {
    let total = cfg.hosts * cfg.enclaves_per_host;
    let every = cfg.over_limit_every.max(1);
    let chosen: Vec<usize> = (0..total).filter(|i| i % every == every / 2).collect();
    // Spread over the run, leaving the first second (allocations) and the last second out.
    let (lo, hi) = if ticks > 20 {
        (11, ticks - 10)
    } else {
        (1, ticks.max(1))
    };
    let span = hi - lo + 1;
    chosen
        .iter()
        .enumerate()
        .map(|(j, &i)| (i, lo + (j as u64 * span) / chosen.len().max(1) as u64))
        .collect()
}

/// Builds every message of host `host`'s run: reports MAC'd and chained, checkpoints signed,
/// windows on the schedule starting at `t0_ns`.
pub(super) fn seal(
    cfg: &IngestConfig,
    host: usize,
    enclaves: &[(String, EnclaveKeys)],
    (nonce, eph): (&[u8; 32], &[u8; 32]),
    (t0_ns, ticks): (u64, u64),
    injected: &HashMap<usize, u64>,
) -> anyhow::Result<Sealed> {
    let len = cfg.interval_ms * 1_000_000;
    let mut producers = enclaves
        .iter()
        .map(|(id, keys)| {
            Producer::new(
                EnclaveId::from_name(id),
                keys.clone(),
                nonce,
                eph,
                cfg.checkpoint_every,
            )
            .map_err(|e| anyhow::anyhow!("producer for {id}: {e}"))
        })
        .collect::<anyhow::Result<Vec<_>>>()?;
    let mut out = Vec::with_capacity(ticks as usize);
    for k in 1..=ticks {
        let end = t0_ns + k * len;
        let mut reports = Vec::with_capacity(enclaves.len());
        let mut checkpoints = Vec::new();
        for (e, ((id, _), p)) in enclaves.iter().zip(producers.iter_mut()).enumerate() {
            let global = host * cfg.enclaves_per_host + e;
            let over = injected.get(&global).is_some_and(|&at| k >= at);
            let millicores = if over {
                CPU_OVER_MILLICORES
            } else {
                CPU_NORMAL_MILLICORES
            };
            let emitted = p.emit(&UsageSample {
                window_start_ns: end - len,
                window_len_ns: len,
                cpu_ns: millicores * len / 1000,
                mem_bytes: 64 << 20,
                ..UsageSample::default()
            });
            let mut cp = emitted.checkpoint;
            if k == ticks && cp.is_none() {
                cp = p.checkpoint_now();
            }
            reports.push(pb::UsageReport {
                enclave_id: id.clone(),
                report: emitted.report.body().to_vec(),
                mac: emitted.report[emitted.report.body().len()..].to_vec(),
                host_view: emitted.report.body().to_vec(),
                traceparent: String::new(),
            });
            if let Some(cp) = cp {
                checkpoints.push(checkpoint_msg(id, &cp));
            }
        }
        let usage = agent_msg(pb::agent_message::Body::Usage(pb::UsageBatch { reports }));
        let cps = (!checkpoints.is_empty()).then(|| {
            agent_msg(pb::agent_message::Body::Checkpoints(pb::CheckpointBatch {
                checkpoints,
            }))
        });
        out.push((usage, cps));
    }
    Ok(Sealed { ticks: out })
}

fn checkpoint_msg(id: &str, cp: &Checkpoint) -> pb::Checkpoint {
    pb::Checkpoint {
        enclave_id: id.to_string(),
        first_seq: cp.first_seq,
        last_seq: cp.last_seq,
        chain_head: cp.head.to_vec(),
        signature: cp.signature.to_vec(),
        encoded: cp.encode().to_vec(),
    }
}

/// What the receiving side of all streams saw.
#[derive(Default)]
pub(super) struct Seen {
    pub acked: AtomicU64,
    /// Enclave → ms from the window end of its first over-limit report to the capped plan.
    pub planned: Mutex<HashMap<String, i64>>,
    /// Why controllers ended streams.
    pub goodbyes: Mutex<Vec<String>>,
}

impl Seen {
    fn goodbyes(&self) -> String {
        self.goodbyes
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .join("; ")
    }
}

/// Reads host `index`'s stream until it ends: acks (progress), plans (the injected enclaves'
/// caps arriving, against `inj_end`), goodbyes (an error).
pub(super) async fn receive(
    index: usize,
    mut rx: tonic::Streaming<pb::ControllerMessage>,
    seen: &Seen,
    inj_end: &HashMap<String, i64>,
) -> anyhow::Result<()> {
    let mut confirmed: HashMap<String, u64> = HashMap::new();
    while let Ok(Some(m)) = rx.message().await {
        match m.body {
            Some(pb::controller_message::Body::UsageAcks(a)) => {
                let mut delta = 0;
                for ack in a.acks {
                    let c = confirmed.entry(ack.enclave_id).or_insert(0);
                    if ack.confirmed_seq > *c {
                        delta += ack.confirmed_seq - *c;
                        *c = ack.confirmed_seq;
                    }
                }
                seen.acked.fetch_add(delta, Ordering::Relaxed);
            }
            Some(pb::controller_message::Body::Plan(p)) => {
                let now = unix_ms();
                for e in p.enclaves {
                    if e.cpu_quota_millicores > 0
                        && let Some(&end) = inj_end.get(&e.enclave_id)
                        && now >= end
                    {
                        let mut planned = seen
                            .planned
                            .lock()
                            .unwrap_or_else(std::sync::PoisonError::into_inner);
                        planned.entry(e.enclave_id).or_insert(now - end);
                    }
                }
            }
            Some(pb::controller_message::Body::Goodbye(g)) => {
                let why = format!(
                    "host {index}: the controller ended the stream: {}",
                    g.reason
                );
                seen.goodbyes
                    .lock()
                    .unwrap_or_else(std::sync::PoisonError::into_inner)
                    .push(why.clone());
                return Err(anyhow::anyhow!(why));
            }
            _ => {}
        }
    }
    Ok(())
}

/// Sends host `index`'s sealed stream on schedule (tick k at `t0 + k × interval`), counting
/// reports in `sent`. Returns the stream (kept open until the run is measured) and how late
/// each batch left.
pub(super) async fn send(
    index: usize,
    tx: mpsc::Sender<pb::AgentMessage>,
    stream: Sealed,
    (t0, interval): (Instant, Duration),
    per_host: u64,
    sent: &AtomicU64,
    seen: &Seen,
) -> anyhow::Result<(mpsc::Sender<pb::AgentMessage>, Vec<Duration>)> {
    let mut lags = Vec::with_capacity(stream.ticks.len());
    for (k, (usage, cps)) in stream.ticks.into_iter().enumerate() {
        let at = t0 + interval * (k as u32 + 1);
        tokio::time::sleep_until(at.into()).await;
        lags.push(at.elapsed());
        if tx.send(usage).await.is_err() {
            anyhow::bail!("host {index}: stream closed ({})", seen.goodbyes());
        }
        sent.fetch_add(per_host, Ordering::Relaxed);
        if let Some(cps) = cps
            && tx.send(cps).await.is_err()
        {
            anyhow::bail!("host {index}: stream closed ({})", seen.goodbyes());
        }
    }
    Ok((tx, lags))
}
