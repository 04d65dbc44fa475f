//! The attestation stream against a real (single-node, fsync'd) controller, driven by a
//! hand-made agent that can lie: every forged, replayed or misattributed input must be
//! refused, recorded in the log, and change no allocation.

mod common;

use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tribune_attest::session::EnclaveKeys;
use tribune_attest::sim::SimEvidence;
use tribune_attest::usage::{EnclaveId, Producer, REPORT_LEN, TAG_LEN, UsageSample};
use tribune_controller::Controller;
use tribune_controller::state::{
    Command, Enclave, EnclaveState, Expect, LogDetail, Placement, State, TeeKind, ViolationDetail,
};
use tribune_proto::v1 as pb;
use tribune_proto::v1::attestation_service_client::AttestationServiceClient;

const POLICY: &str = r#"
policy "t" {
  match tenant == "t"
  limit { cpu = 200m  memory = 256MiB }
  on over_limit { throttle now; suspend after 30s }
  on attestation.failed { suspend now }
}
"#;

struct Harness {
    controller: Arc<Controller>,
    addr: String,
    _served: common::InProcess,
}

async fn start() -> Harness {
    let served = common::start(|cfg| cfg.allow_sim_evidence = true).await;
    let h = Harness {
        controller: served.controller.clone(),
        addr: served.addr.to_string(),
        _served: served,
    };
    h.write(Command::PutPolicy {
        name: "t".into(),
        source: POLICY.into(),
        expect: Expect::Any,
        actor: "test".into(),
        at_ms: 1,
    })
    .await;
    for (id, host) in [("e1", "h1"), ("other", "h2")] {
        h.write(Command::PutEnclave {
            enclave: Enclave {
                id: id.into(),
                tenant: "t".into(),
                labels: Default::default(),
                tee: TeeKind::Sim,
                expected_measurements: vec![],
                requested: Default::default(),
                priority: 0,
                placement: Some(Placement {
                    host: host.into(),
                    epoch: 1,
                }),
                state: EnclaveState::Pending,
                launch: None,
                scheduling: None,
                version: 0,
            },
            expect: Expect::Any,
            actor: "tribune://operator/test".into(),
            at_ms: 1,
        })
        .await;
    }
    h
}

impl Harness {
    async fn write(&self, cmd: Command) {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            match self.controller.write(vec![cmd.clone()]).await {
                Ok(_) => return,
                Err(e) if Instant::now() < deadline => {
                    tracing::debug!("waiting for a leader: {e}");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
                Err(e) => panic!("write: {e}"),
            }
        }
    }

    fn state<T>(&self, f: impl FnOnce(&State) -> T) -> T {
        f(&self.controller.state.read().expect("state lock"))
    }

    /// Waits (generously) until `f` holds on the replicated state.
    async fn until(&self, what: &str, f: impl Fn(&State) -> bool) {
        let deadline = Instant::now() + Duration::from_secs(20);
        while !self.state(&f) {
            assert!(Instant::now() < deadline, "timed out waiting for: {what}");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    fn refusals(&self, subject: &str, what: &str) -> Vec<String> {
        self.state(|s| {
            s.log
                .entries
                .iter()
                .filter(|e| e.subject == subject)
                .filter_map(|e| match &e.detail {
                    LogDetail::Violation(ViolationDetail::Refused(r)) if r.what == what => {
                        Some(r.why.clone())
                    }
                    _ => None,
                })
                .collect()
        })
    }

    fn digests(&self, subject: &str) -> Vec<(u64, u64)> {
        self.state(|s| {
            s.log
                .entries
                .iter()
                .filter(|e| e.subject == subject)
                .filter_map(|e| match &e.detail {
                    LogDetail::UsageDigest(d) => Some((d.first_seq, d.last_seq)),
                    _ => None,
                })
                .collect()
        })
    }
}

/// A hand-made agent for host `host`.
struct FakeAgent {
    tx: mpsc::Sender<pb::AgentMessage>,
    rx: tonic::Streaming<pb::ControllerMessage>,
    nonce: [u8; 32],
    eph: [u8; 32],
}

fn msg(body: pb::agent_message::Body) -> pb::AgentMessage {
    pb::AgentMessage { body: Some(body) }
}

impl FakeAgent {
    async fn connect(addr: &str, host: &str) -> FakeAgent {
        let mut client = AttestationServiceClient::connect(format!("http://{addr}"))
            .await
            .expect("connect");
        let (tx, rx) = mpsc::channel(64);
        tx.send(msg(pb::agent_message::Body::Hello(pb::Hello {
            host_id: host.into(),
            applied_plan_version: 0,
            enclave_ids: vec![],
            can_enforce: true,
            enforce_problem: String::new(),
            capacity: None,
            labels: Default::default(),
            peer_addr: String::new(),
        })))
        .await
        .expect("hello");
        let mut rx = client
            .attest(ReceiverStream::new(rx))
            .await
            .expect("attest")
            .into_inner();
        loop {
            let m = rx.message().await.expect("message").expect("challenge");
            if let Some(pb::controller_message::Body::Challenge(c)) = m.body {
                return FakeAgent {
                    tx,
                    rx,
                    nonce: c.nonce.try_into().expect("nonce"),
                    eph: c.controller_x25519.try_into().expect("key"),
                };
            }
        }
    }

    async fn send(&self, body: pb::agent_message::Body) {
        self.tx.send(msg(body)).await.expect("send");
    }

    async fn evidence(&self, enclave: &str, keys: &EnclaveKeys, good_signer: bool) {
        self.evidence_claiming(enclave, keys, good_signer, "sim")
            .await;
    }

    /// Evidence whose envelope names the TEE kind `tee` (the report itself is sim evidence).
    async fn evidence_claiming(
        &self,
        enclave: &str,
        keys: &EnclaveKeys,
        good_signer: bool,
        tee: &str,
    ) {
        let rd = keys.report_data(&self.nonce);
        let ev = if good_signer {
            SimEvidence::create([1; 48], rd, 0)
        } else {
            let k = ed25519_dalek::SigningKey::from_bytes(&[9; 32]);
            SimEvidence::create_with(&k, [1; 48], rd, 0)
        };
        self.send(pb::agent_message::Body::Evidence(pb::EvidenceBatch {
            evidence: vec![pb::Evidence {
                enclave_id: enclave.into(),
                tee: tee.into(),
                report: ev.encode(),
                certs: vec![],
                enclave_ed25519: keys.ed25519_public().to_vec(),
                enclave_x25519: keys.x25519_public().to_vec(),
                rekey_signature: vec![],
            }],
        }))
        .await;
    }
}

fn now_ns() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(0)
}

fn sample(cpu_millicores: u64) -> UsageSample {
    let len = 100_000_000;
    UsageSample {
        window_start_ns: now_ns() - len,
        window_len_ns: len,
        cpu_ns: cpu_millicores * len / 1000,
        mem_bytes: 1 << 20,
        ..UsageSample::default()
    }
}

/// A sealed report whose host view is the enclave's own.
fn report(enclave: &str, wire: &[u8]) -> pb::UsageReport {
    pb::UsageReport::sealed(enclave, wire, wire[..wire.len() - TAG_LEN].to_vec())
}

fn checkpoint(enclave: &str, cp: &tribune_attest::usage::Checkpoint) -> pb::Checkpoint {
    pb::Checkpoint::of(enclave, cp)
}

fn producer(enclave: &str, keys: &EnclaveKeys, agent: &FakeAgent) -> Producer {
    Producer::new(
        EnclaveId::from_name(enclave),
        keys.clone(),
        &agent.nonce,
        &agent.eph,
        1000,
    )
    .expect("producer")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn honest_reports_are_digested_and_forgeries_are_refused_and_logged() {
    let h = start().await;
    let agent = FakeAgent::connect(&h.addr, "h1").await;
    let keys = EnclaveKeys::generate();
    agent.evidence("e1", &keys, true).await;
    h.until("e1 trusted", |s| {
        s.status
            .get("e1")
            .and_then(|st| st.attestation.as_ref())
            .is_some_and(|a| a.trusted)
    })
    .await;
    let mut p = producer("e1", &keys, &agent);

    // Three honest reports within the limit, then a checkpoint: one digest 1..=3.
    let mut wires = Vec::new();
    for _ in 0..3 {
        wires.push(p.emit(&sample(50)).report);
    }
    agent
        .send(pb::agent_message::Body::Usage(pb::UsageBatch {
            reports: wires.iter().map(|w| report("e1", w)).collect(),
        }))
        .await;
    let cp = p.checkpoint_now().expect("checkpoint");
    agent
        .send(pb::agent_message::Body::Checkpoints(pb::CheckpointBatch {
            checkpoints: vec![checkpoint("e1", &cp)],
        }))
        .await;
    h.until("digest 1..=3", |s| {
        s.status
            .get("e1")
            .and_then(|st| st.confirmed.as_ref())
            .is_some_and(|c| c.last_seq == 3)
    })
    .await;
    assert_eq!(h.digests("e1"), vec![(1, 3)]);
    let alloc_before = h.state(|s| s.allocations.get("e1").cloned());
    assert!(
        alloc_before.is_some(),
        "the first verified window allocates"
    );

    // Forged MAC on an over-limit report: refused, logged, no throttle.
    let mut forged = p.emit(&sample(5000)).report;
    forged[REPORT_LEN] ^= 1;
    // A replay of seq 1, and a report for an enclave placed on another host.
    let other = p.emit(&sample(50)).report;
    agent
        .send(pb::agent_message::Body::Usage(pb::UsageBatch {
            reports: vec![
                report("e1", &forged),
                report("e1", &wires[0]),
                report("other", &other),
            ],
        }))
        .await;
    h.until("mac refusal logged", |_| {
        !h.refusals("e1", "usage report").is_empty()
    })
    .await;
    h.until("other-host refusal logged", |_| {
        !h.refusals("other", "usage report").is_empty()
    })
    .await;
    let why = h.refusals("e1", "usage report").join(" | ");
    assert!(why.contains("MAC") || why.contains("mac"), "{why}");
    assert!(
        h.refusals("other", "usage report")[0].contains("not placed on host \"h1\""),
        "{:?}",
        h.refusals("other", "usage report")
    );
    // The replay is refused too (the forged report did not advance seq).
    h.until("replay refusal logged", |_| {
        h.refusals("e1", "usage report")
            .iter()
            .any(|w| w.contains("replay"))
    })
    .await;

    // A checkpoint signed by another key, and one whose chain does not match.
    let impostor = EnclaveKeys::generate();
    let mut q = Producer::new(
        EnclaveId::from_name("e1"),
        impostor,
        &agent.nonce,
        &agent.eph,
        1000,
    )
    .expect("producer");
    for _ in 0..3 {
        q.emit(&sample(50));
    }
    let bad_sig = q.checkpoint_now().expect("cp");
    agent
        .send(pb::agent_message::Body::Checkpoints(pb::CheckpointBatch {
            checkpoints: vec![checkpoint("e1", &bad_sig)],
        }))
        .await;
    h.until("checkpoint refusal logged", |_| {
        !h.refusals("e1", "checkpoint").is_empty()
    })
    .await;
    assert_eq!(h.digests("e1"), vec![(1, 3)], "no digest from forged input");
    let alloc_after = h.state(|s| s.allocations.get("e1").cloned());
    assert_eq!(
        alloc_before, alloc_after,
        "forged input changed an allocation"
    );
    assert_eq!(
        h.state(|s| s.status.get("e1").map(|st| st.ladder.step)),
        Some(tribune_controller::state::Step::None)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tampered_evidence_is_untrusted_logged_and_suspended() {
    let h = start().await;
    let agent = FakeAgent::connect(&h.addr, "h1").await;
    let keys = EnclaveKeys::generate();
    agent.evidence("e1", &keys, false).await;
    h.until("e1 untrusted", |s| {
        s.enclaves.get("e1").map(|e| e.state) == Some(EnclaveState::Untrusted)
    })
    .await;
    let a = h
        .state(|s| s.status["e1"].attestation.clone())
        .expect("verdict");
    assert!(!a.trusted);
    assert!(
        a.reasons.join(" ").contains("development root"),
        "{:?}",
        a.reasons
    );
    h.until("evidence refusal logged", |_| {
        !h.refusals("e1", "evidence").is_empty()
    })
    .await;
    // Its reports do not count.
    let mut p = producer("e1", &keys, &agent);
    agent
        .send(pb::agent_message::Body::Usage(pb::UsageBatch {
            reports: vec![report("e1", &p.emit(&sample(5000)).report)],
        }))
        .await;
    h.until("report refused", |_| {
        !h.refusals("e1", "usage report").is_empty()
    })
    .await;
    // The policy's `on attestation.failed { suspend now }` runs on the next decision.
    h.until("suspended", |s| {
        s.allocations.get("e1").is_some_and(|a| a.suspended)
    })
    .await;
    assert!(h.digests("e1").is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn evidence_naming_an_unknown_tee_kind_is_refused_not_taken_for_sim() {
    let h = start().await;
    let agent = FakeAgent::connect(&h.addr, "h1").await;
    agent
        .evidence_claiming("e1", &EnclaveKeys::generate(), true, "sgx")
        .await;
    h.until("e1 untrusted", |s| {
        s.enclaves.get("e1").map(|e| e.state) == Some(EnclaveState::Untrusted)
    })
    .await;
    let a = h
        .state(|s| s.status["e1"].attestation.clone())
        .expect("verdict");
    assert!(!a.trusted);
    assert_eq!(a.tee, None);
    assert!(
        a.reasons.join(" ").contains("unknown TEE kind \"sgx\""),
        "{:?}",
        a.reasons
    );
    // The same evidence naming its kind is trusted.
    agent.evidence("e1", &EnclaveKeys::generate(), true).await;
    h.until("e1 trusted", |s| {
        s.status["e1"]
            .attestation
            .as_ref()
            .is_some_and(|a| a.trusted && a.tee == Some(TeeKind::Sim))
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn evidence_for_an_enclave_of_another_host_is_refused() {
    let h = start().await;
    let agent = FakeAgent::connect(&h.addr, "h1").await;
    agent
        .evidence("other", &EnclaveKeys::generate(), true)
        .await;
    h.until("refusal logged", |_| {
        !h.refusals("other", "evidence").is_empty()
    })
    .await;
    assert!(h.state(|s| !s.status.contains_key("other")));
    drop(agent.rx);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_new_stream_rekeys_by_signature_and_doubt_asks_for_evidence() {
    let h = start().await;
    let keys = EnclaveKeys::generate();
    let first = FakeAgent::connect(&h.addr, "h1").await;
    first.evidence("e1", &keys, true).await;
    h.until("e1 trusted", |s| {
        s.status
            .get("e1")
            .and_then(|st| st.attestation.as_ref())
            .is_some_and(|a| a.trusted)
    })
    .await;
    drop(first);

    // The agent moved: it signs the new exchange with the bound key, no evidence.
    let second = FakeAgent::connect(&h.addr, "h1").await;
    let rekey = |sig: [u8; 64]| pb::Evidence {
        enclave_id: "e1".into(),
        tee: "sim".into(),
        report: vec![],
        certs: vec![],
        enclave_ed25519: keys.ed25519_public().to_vec(),
        enclave_x25519: keys.x25519_public().to_vec(),
        rekey_signature: sig.to_vec(),
    };
    let good = keys.sign_rekey(&EnclaveId::from_name("e1"), &second.nonce, &second.eph);
    second
        .send(pb::agent_message::Body::Evidence(pb::EvidenceBatch {
            evidence: vec![rekey(good)],
        }))
        .await;
    h.until("re-keyed verdict", |s| {
        s.status
            .get("e1")
            .and_then(|st| st.attestation.as_ref())
            .is_some_and(|a| a.trusted && a.rekeyed)
    })
    .await;
    // Reports under the new session key count.
    let mut p = producer("e1", &keys, &second);
    for _ in 0..2 {
        let w = p.emit(&sample(50)).report;
        second
            .send(pb::agent_message::Body::Usage(pb::UsageBatch {
                reports: vec![report("e1", &w)],
            }))
            .await;
    }
    let cp = p.checkpoint_now().expect("cp");
    second
        .send(pb::agent_message::Body::Checkpoints(pb::CheckpointBatch {
            checkpoints: vec![checkpoint("e1", &cp)],
        }))
        .await;
    h.until("digest under the re-keyed session", |_| {
        h.digests("e1") == vec![(1, 2)]
    })
    .await;

    // A third stream with a forged re-key signature: no verdict, a request for evidence.
    let mut third = FakeAgent::connect(&h.addr, "h1").await;
    let forged =
        EnclaveKeys::generate().sign_rekey(&EnclaveId::from_name("e1"), &third.nonce, &third.eph);
    third
        .send(pb::agent_message::Body::Evidence(pb::EvidenceBatch {
            evidence: vec![rekey(forged)],
        }))
        .await;
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let m = tokio::time::timeout(Duration::from_secs(20), third.rx.message())
            .await
            .expect("an answer")
            .expect("message")
            .expect("open stream");
        if let Some(pb::controller_message::Body::AttestNow(a)) = m.body {
            assert_eq!(a.enclave_ids, vec!["e1".to_string()]);
            assert_eq!(a.nonce, third.nonce.to_vec());
            break;
        }
        assert!(
            Instant::now() < deadline,
            "no AttestNow after a forged re-key"
        );
    }
    assert!(h.state(|s| {
        s.status["e1"]
            .attestation
            .as_ref()
            .is_some_and(|a| a.trusted)
    }));
    drop(second.rx);
}

/// Finding 7 of issue 11: an operator's suspension is not undone by the next decision round.
/// The enclave keeps reporting well within its limit (the policy alone would run it); it stays
/// suspended, and the plan its host receives keeps it frozen, until an operator resumes it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_operators_suspension_survives_the_decisions_that_follow() {
    let h = start().await;
    let mut agent = FakeAgent::connect(&h.addr, "h1").await;
    let keys = EnclaveKeys::generate();
    agent.evidence("e1", &keys, true).await;
    h.until("e1 running", |s| {
        s.enclaves.get("e1").map(|e| e.state) == Some(EnclaveState::Running)
    })
    .await;
    let mut p = producer("e1", &keys, &agent);
    let round = |agent: &FakeAgent, p: &mut Producer| {
        let wires: Vec<_> = (0..3).map(|_| p.emit(&sample(50)).report).collect();
        let cp = p.checkpoint_now().expect("checkpoint");
        let agent_tx = agent.tx.clone();
        async move {
            for body in [
                pb::agent_message::Body::Usage(pb::UsageBatch {
                    reports: wires.iter().map(|w| report("e1", w)).collect(),
                }),
                pb::agent_message::Body::Checkpoints(pb::CheckpointBatch {
                    checkpoints: vec![checkpoint("e1", &cp)],
                }),
            ] {
                agent_tx.send(msg(body)).await.expect("send");
            }
        }
    };
    round(&agent, &mut p).await;
    h.until("allocated", |s| s.allocations.contains_key("e1"))
        .await;

    let mut e = h.state(|s| s.enclaves["e1"].clone());
    e.state = EnclaveState::Suspended;
    h.write(Command::PutEnclave {
        enclave: e.clone(),
        expect: Expect::Any,
        actor: "tribune://operator/alice".into(),
        at_ms: 2,
    })
    .await;
    // Three more rounds of compliant usage, each confirmed, so decisions ran after the hold.
    for n in 2..=4u64 {
        round(&agent, &mut p).await;
        h.until("confirmed", |s| {
            s.status["e1"]
                .confirmed
                .as_ref()
                .is_some_and(|c| c.last_seq == 3 * n)
        })
        .await;
        assert_eq!(
            h.state(|s| s.enclaves["e1"].state),
            EnclaveState::Suspended,
            "round {n}"
        );
        assert!(h.state(|s| s.allocations["e1"].suspended), "round {n}");
    }
    // The host's newest plan freezes it.
    let version = h.state(|s| s.plan_versions["h1"]);
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        assert!(Instant::now() < deadline, "no plan at version {version}");
        let m = agent.rx.message().await.expect("message").expect("open");
        if let Some(pb::controller_message::Body::Plan(plan)) = m.body
            && plan.version >= version
        {
            let e1 = plan.enclaves.iter().find(|x| x.enclave_id == "e1");
            assert!(e1.is_some_and(|x| x.suspended), "{plan:?}");
            break;
        }
    }
    // An operator resumes it: the hold is gone.
    e.state = EnclaveState::Running;
    h.write(Command::PutEnclave {
        enclave: e,
        expect: Expect::Any,
        actor: "tribune://operator/bob".into(),
        at_ms: 3,
    })
    .await;
    assert!(h.state(|s| s.status["e1"].operator_hold.is_none()));
    assert_eq!(h.state(|s| s.enclaves["e1"].state), EnclaveState::Running);
}
