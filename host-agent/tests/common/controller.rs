//! A stand-in controller for the attestation stream: it challenges each stream, records every
//! message the agent's link sends, and checks the usage in them as a controller does
//! (evidence → key binding → MAC'd reports in seq order, checkpoints), so tests assert on the
//! bytes the agent actually sends. It sends nothing but the challenge: no plans, no acks.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio_stream::wrappers::{ReceiverStream, TcpListenerStream};
use tonic::{Request, Response, Status, Streaming};
use tribune_agent::link::LinkConfig;
use tribune_attest::evidence::{Inputs, VerifierConfig, Verifiers, verify_evidence};
use tribune_attest::session::ControllerExchange;
use tribune_attest::usage::{EnclaveId, Freshness, StreamVerifier, UsageReport};
use tribune_proto::v1 as pb;
use tribune_proto::v1::agent_message::Body;
use tribune_proto::v1::attestation_service_server::{AttestationService, AttestationServiceServer};

pub struct FakeController {
    pub addr: SocketAddr,
    exchange: Arc<ControllerExchange>,
    seen: mpsc::UnboundedReceiver<pb::AgentMessage>,
    /// Every message received so far, in order.
    pub received: Vec<pb::AgentMessage>,
    server: JoinHandle<()>,
}

struct Service {
    exchange: Arc<ControllerExchange>,
    seen: mpsc::UnboundedSender<pb::AgentMessage>,
}

#[tonic::async_trait]
impl AttestationService for Service {
    type AttestStream = ReceiverStream<Result<pb::ControllerMessage, Status>>;

    async fn attest(
        &self,
        request: Request<Streaming<pb::AgentMessage>>,
    ) -> Result<Response<Self::AttestStream>, Status> {
        let mut inbound = request.into_inner();
        let (tx, rx) = mpsc::channel(8);
        let challenge = pb::Challenge {
            nonce: self.exchange.nonce().to_vec(),
            controller_x25519: self.exchange.eph_public().to_vec(),
            controller_id: 1,
        };
        let seen = self.seen.clone();
        tokio::spawn(async move {
            let msg = pb::ControllerMessage {
                body: Some(pb::controller_message::Body::Challenge(challenge)),
            };
            if tx.send(Ok(msg)).await.is_err() {
                return;
            }
            // `tx` lives as long as the agent's side of the stream.
            while let Ok(Some(m)) = inbound.message().await {
                let _ = seen.send(m);
            }
        });
        Ok(Response::new(ReceiverStream::new(rx)))
    }
}

pub fn unix_ns() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_nanos() as u64
}

impl FakeController {
    pub async fn start() -> FakeController {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let exchange = Arc::new(ControllerExchange::new());
        let (seen_tx, seen) = mpsc::unbounded_channel();
        let service = Service {
            exchange: exchange.clone(),
            seen: seen_tx,
        };
        let server = tokio::spawn(async move {
            let _ = tonic::transport::Server::builder()
                .add_service(AttestationServiceServer::new(service))
                .serve_with_incoming(TcpListenerStream::new(listener))
                .await;
        });
        FakeController {
            addr,
            exchange,
            seen,
            received: Vec::new(),
            server,
        }
    }

    /// A plain-text link to this controller alone.
    pub fn link_config(&self, host: &str) -> LinkConfig {
        LinkConfig {
            host_id: host.into(),
            peer_addr: String::new(),
            controllers: vec![self.addr.to_string()],
            can_enforce: true,
            enforce_problem: String::new(),
            capacity: Default::default(),
            labels: Default::default(),
            tls: None,
        }
    }

    /// Receives until `done(received so far)` holds; false when `timeout` passes first.
    pub async fn receive_until(
        &mut self,
        timeout: Duration,
        mut done: impl FnMut(&[pb::AgentMessage]) -> bool,
    ) -> bool {
        let deadline = tokio::time::Instant::now() + timeout;
        while !done(&self.received) {
            match tokio::time::timeout_at(deadline, self.seen.recv()).await {
                Ok(Some(m)) => self.received.push(m),
                Ok(None) | Err(_) => return false,
            }
        }
        true
    }

    /// Receives for `d`, whatever comes.
    pub async fn receive_for(&mut self, d: Duration) {
        self.receive_until(d, |_| false).await;
    }

    /// Receives until `n` usage reports of `enclave` arrived (live or replayed).
    pub async fn receive_usage(&mut self, enclave: &str, n: usize, timeout: Duration) -> bool {
        self.receive_until(timeout, |m| usage_of(m, enclave).len() >= n)
            .await
    }

    /// Checks `enclave`'s usage as a controller does: its first evidence verifies (sim, dev
    /// root) and binds its keys to this controller's exchange; then every report received
    /// must verify under the session key, in order, and every checkpoint under its key.
    /// Returns the reports and the highest seq the checkpoints confirm.
    pub fn verify_usage(&self, enclave: &str) -> (Vec<UsageReport>, u64) {
        let evidence = self
            .received
            .iter()
            .filter_map(|m| match &m.body {
                Some(Body::Evidence(b)) => b.evidence.iter().find(|e| e.enclave_id == enclave),
                _ => None,
            })
            .next()
            .unwrap_or_else(|| panic!("no evidence for {enclave}"));
        assert_eq!(evidence.tee, "sim");
        let verdict = verify_evidence(
            &Verifiers::new().unwrap(),
            &VerifierConfig::dev(),
            &evidence.report,
            &Inputs::default(),
            tribune_attest::VerifyAt::now(),
        )
        .unwrap();
        assert!(verdict.valid, "{:?}", verdict.reasons);
        let key = |b: &[u8]| -> [u8; 32] { b.try_into().expect("32-byte key") };
        let bound = self
            .exchange
            .bind(
                EnclaveId::from_name(enclave),
                key(&evidence.enclave_ed25519),
                key(&evidence.enclave_x25519),
                &verdict.report_data_raw,
            )
            .unwrap();
        let mut verifier = StreamVerifier::new(&bound, Freshness::default()).unwrap();
        let mut reports = Vec::new();
        for r in usage_of(&self.received, enclave) {
            let mut wire = r.report.clone();
            wire.extend_from_slice(&r.mac);
            reports.push(verifier.verify_report(&wire, unix_ns()).unwrap());
        }
        for m in &self.received {
            let checkpoints = match &m.body {
                Some(Body::Checkpoints(b)) => &b.checkpoints,
                Some(Body::Replay(b)) => &b.checkpoints,
                _ => continue,
            };
            for c in checkpoints.iter().filter(|c| c.enclave_id == enclave) {
                let cp = tribune_attest::usage::Checkpoint::decode(&c.encoded).unwrap();
                verifier.verify_checkpoint(&cp).unwrap();
            }
        }
        (reports, verifier.confirmed_seq())
    }
}

/// The usage reports of `enclave` in `received`, in order (live batches and replays).
pub fn usage_of<'a>(received: &'a [pb::AgentMessage], enclave: &str) -> Vec<&'a pb::UsageReport> {
    received
        .iter()
        .flat_map(|m| match &m.body {
            Some(Body::Usage(b)) => b.reports.as_slice(),
            Some(Body::Replay(b)) => b.reports.as_slice(),
            _ => &[],
        })
        .filter(|r| r.enclave_id == enclave)
        .collect()
}

impl Drop for FakeController {
    fn drop(&mut self) {
        self.server.abort();
    }
}
