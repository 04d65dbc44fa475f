//! The `AttestationService` server (DESIGN.md §4): authenticates the agent, reads its `Hello`
//! and hands the stream to a [`Session`] (`attest::session`), the per-stream task.
//!
//! Nothing here trusts the host: a report counts only if its MAC verifies under the session key
//! of currently trusted evidence, its `seq` is new, and a signed checkpoint covers it; anything
//! else is refused, recorded in the log (rate-limited), and changes no allocation.

use std::pin::Pin;
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::Stream;
use tokio::sync::mpsc;
use tokio_stream::StreamExt;
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Request, Response, Status, Streaming};
use tribune_attest::evidence::Verifiers;
use tribune_attest::usage::Freshness;
use tribune_proto::v1 as pb;
use tribune_proto::v1::attestation_service_server::AttestationService;

use super::session::{Session, msg};
use crate::node::Controller;
use crate::state::Command;

/// Most enclaves one stream may carry.
pub const ENCLAVES_PER_STREAM_MAX: usize = 4096;
/// Most items in one batch message.
pub const BATCH_ITEMS_MAX: usize = 16_384;
/// Outbound queue per stream; a full queue slows this stream, never grows memory.
const OUTBOUND_MAX: usize = 64;
/// How long a new stream may take to say `Hello`.
const HELLO_TIMEOUT: Duration = Duration::from_secs(10);

/// How the loop runs on this controller.
#[derive(Clone, Debug, Default)]
pub struct LoopConfig {
    /// Accept simulated evidence (`tribune dev`).
    pub allow_sim: bool,
    /// No TLS (`--insecure`): the host id of `Hello` is taken as said.
    pub insecure: bool,
    pub freshness: Freshness,
}

pub struct AttestServer {
    controller: Arc<Controller>,
    config: LoopConfig,
    verifiers: Arc<Verifiers>,
    /// Refused streams logged in the current minute (at most 60, against floods).
    refusals: std::sync::Mutex<(Instant, u32)>,
}

impl AttestServer {
    pub fn new(
        controller: Arc<Controller>,
        config: LoopConfig,
    ) -> Result<AttestServer, tribune_attest::AttestError> {
        let verifiers = Verifiers::new()?;
        Ok(AttestServer {
            controller,
            config,
            verifiers: Arc::new(verifiers),
            refusals: std::sync::Mutex::new((Instant::now(), 0)),
        })
    }
}

impl AttestServer {
    /// Records a refused stream in the log (in the background: refusing does not wait).
    fn record_refusal(&self, subject: &str, why: &str) {
        tracing::warn!(subject, "attestation stream refused: {why}");
        {
            let mut r = self
                .refusals
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            if r.0.elapsed() > Duration::from_secs(60) {
                *r = (Instant::now(), 0);
            }
            if r.1 >= 60 {
                return;
            }
            r.1 += 1;
        }
        let cmd = Command::AppendLog {
            subject: subject.to_string(),
            detail: crate::state::Refusal::new("attestation stream", why).into(),
            at_ms: super::session::wall_ms(),
        };
        let controller = self.controller.clone();
        tokio::spawn(async move {
            if let Err(e) = controller.write(vec![cmd]).await {
                tracing::debug!("recording a refused stream: {e}");
            }
        });
    }
}

type Outbound = Pin<Box<dyn Stream<Item = Result<pb::ControllerMessage, Status>> + Send>>;

#[tonic::async_trait]
impl AttestationService for AttestServer {
    type AttestStream = Outbound;

    async fn attest(
        &self,
        request: Request<Streaming<pb::AgentMessage>>,
    ) -> Result<Response<Self::AttestStream>, Status> {
        // A controller whose state disagrees with the cluster derives no plans from it: the
        // agent goes to another controller.
        if let Err(e) = self.controller.integrity.writable() {
            return Err(Status::unavailable(e.to_string()));
        }
        // With TLS, the host is the one in the agent's certificate; without (`--insecure`),
        // the Hello is taken as said.
        let identity = match crate::tls::require_agent(!self.config.insecure, request.extensions())
        {
            Ok(i) => i,
            Err(status) => {
                self.record_refusal("attestation stream", status.message());
                return Err(status);
            }
        };
        let cert_sha256 = crate::tls::peer_cert_sha256(request.extensions()).to_string();
        let peer_ip = crate::tls::peer_remote(request.extensions())
            .or_else(|| request.remote_addr())
            .map(|a| match a.ip() {
                std::net::IpAddr::V4(ip) => ip.to_string(),
                std::net::IpAddr::V6(ip) => format!("[{ip}]"),
            });
        let mut inbound = request.into_inner();
        let first = tokio::time::timeout(HELLO_TIMEOUT, inbound.next())
            .await
            .map_err(|_| Status::deadline_exceeded("no Hello within 10 s"))?;
        let hello = match first {
            Some(Ok(pb::AgentMessage {
                body: Some(pb::agent_message::Body::Hello(h)),
            })) => h,
            Some(Err(e)) => return Err(e),
            _ => return Err(Status::invalid_argument("the first message must be Hello")),
        };
        if let Some(host) = &identity
            && *host != hello.host_id
        {
            let why = format!(
                "this agent's certificate is for host {host:?}; it cannot speak for {:?}",
                hello.host_id
            );
            self.record_refusal(&hello.host_id, &why);
            return Err(Status::permission_denied(why));
        }
        if let Err(e) = crate::validate::check_name("host", &hello.host_id) {
            return Err(Status::invalid_argument(e));
        }
        if let Err(why) = check_hello(&hello) {
            self.record_refusal(&hello.host_id, &why);
            return Err(Status::invalid_argument(why));
        }
        let (tx, rx) = mpsc::channel(OUTBOUND_MAX);
        let mut session = Session::new(
            self.controller.clone(),
            self.config.clone(),
            self.verifiers.clone(),
            hello.host_id.clone(),
        );
        session.agent_cert_sha256 = cert_sha256;
        session.peer_ip = peer_ip;
        tokio::spawn(async move {
            let streams = &crate::metrics::get().attest_streams;
            streams.inc();
            // Decremented however the task ends (an error, a panic unwinding it).
            let _open = scopeguard(|| {
                streams.dec();
            });
            if let Err(e) = session.run(hello, inbound, tx.clone()).await {
                tracing::info!(host = %session.host, "attestation stream ended: {e}");
                let _ = tx
                    .send(Ok(msg(pb::controller_message::Body::Goodbye(
                        pb::Goodbye {
                            reason: e.to_string(),
                        },
                    ))))
                    .await;
            }
        });
        Ok(Response::new(Box::pin(ReceiverStream::new(rx))))
    }
}

/// Runs `f` when dropped.
fn scopeguard<F: FnOnce()>(f: F) -> impl Drop {
    struct Guard<F: FnOnce()>(Option<F>);
    impl<F: FnOnce()> Drop for Guard<F> {
        fn drop(&mut self) {
            if let Some(f) = self.0.take() {
                f();
            }
        }
    }
    Guard(Some(f))
}

/// The host record a stream's `Hello` gives: the existing record with its enforcement state
/// updated, or a new, unverified one.
pub(super) fn host_record(
    existing: Option<crate::state::Host>,
    host: &str,
    hello: &pb::Hello,
    cert_sha256: &str,
) -> crate::state::Host {
    let enforcement = if hello.can_enforce {
        "enforcing".to_string()
    } else {
        format!("observe-only: {}", hello.enforce_problem)
    };
    let mut h = match existing {
        Some(mut h) => {
            h.enforcement = enforcement;
            if !cert_sha256.is_empty() {
                h.agent_cert_fingerprint = cert_sha256.to_string();
            }
            h
        }
        None => crate::state::Host {
            id: host.to_string(),
            address: String::new(),
            capacity: Default::default(),
            // An older agent's `Hello` names no TEE kind; its evidence does, per enclave.
            tee: crate::state::TeeKind::Sim,
            attestation_status: "unverified".into(),
            last_heartbeat_ms: 0,
            agent_cert_fingerprint: cert_sha256.to_string(),
            enforcement,
            tee_generation: 0,
            labels: Default::default(),
            schedulable: Default::default(),
            measured_load: Default::default(),
        },
    };
    // What the agent measured (an older agent sends none: the stored record stays).
    if let Some(c) = &hello.capacity {
        h.capacity = crate::state::Resources {
            cpu_millicores: c.cpu_millicores,
            memory_bytes: c.memory_bytes,
            egress_bits_per_sec: c.egress_bits_per_sec,
            ingress_bits_per_sec: c.ingress_bits_per_sec,
            gpu_percent: c.gpu_percent,
        };
        h.tee_generation = c.tee_generation;
        if let Ok(tee) = c.tee.parse() {
            h.tee = tee;
        }
    }
    if hello.capacity.is_some() || !hello.labels.is_empty() {
        h.labels = hello.labels.clone().into_iter().collect();
    }
    // Where other agents reach its mediator (an agent without peer links keeps the stored one).
    if !hello.peer_addr.is_empty() {
        h.address = hello.peer_addr.clone();
    }
    h
}

/// What a `Hello`'s capacity and labels may hold, checked before anything is recorded: the
/// same bounds as a host record written through the API.
pub(super) fn check_hello(hello: &pb::Hello) -> Result<(), String> {
    if let Some(c) = &hello.capacity
        && !c.tee.is_empty()
        && c.tee.parse::<crate::state::TeeKind>().is_err()
    {
        return Err(format!(
            "Hello: unknown TEE kind {:?} (sev-snp, tdx or sim)",
            c.tee.escape_debug().to_string()
        ));
    }
    let h = host_record(None, &hello.host_id, hello, "");
    crate::api::bounds::host(&h).map_err(|e| format!("Hello: {e}"))
}

#[cfg(test)]
mod hello_tests {
    use super::*;

    fn hello(capacity: Option<pb::HostCapacity>, labels: &[(&str, &str)]) -> pb::Hello {
        pb::Hello {
            host_id: "h1".into(),
            applied_plan_version: 0,
            enclave_ids: vec![],
            can_enforce: true,
            enforce_problem: String::new(),
            capacity,
            labels: labels
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            peer_addr: String::new(),
        }
    }

    fn measured() -> pb::HostCapacity {
        pb::HostCapacity {
            cpu_millicores: 8000,
            memory_bytes: 16 << 30,
            egress_bits_per_sec: 1_000_000_000,
            ingress_bits_per_sec: 1_000_000_000,
            gpu_percent: 100,
            tee: "sev-snp".into(),
            tee_generation: 3,
        }
    }

    #[test]
    fn a_hellos_capacity_and_labels_go_on_the_host_record() {
        let h = host_record(None, "h1", &hello(Some(measured()), &[("zone", "a")]), "");
        assert_eq!(h.capacity.cpu_millicores, 8000);
        assert_eq!(h.capacity.memory_bytes, 16 << 30);
        assert_eq!(h.capacity.gpu_percent, 100);
        assert_eq!(h.tee, crate::state::TeeKind::SevSnp);
        assert_eq!(h.tee_generation, 3);
        assert_eq!(h.labels.get("zone").map(String::as_str), Some("a"));
        // An operator's cordon stays whatever the agent says (the record keeps it; the state
        // machine keeps the stored one too).
        let mut cordoned = h.clone();
        cordoned.schedulable = crate::state::Schedulable::Cordoned;
        let again = host_record(Some(cordoned), "h1", &hello(Some(measured()), &[]), "");
        assert_eq!(again.schedulable, crate::state::Schedulable::Cordoned);
        assert!(
            again.labels.is_empty(),
            "a new Hello's labels replace the old"
        );
    }

    #[test]
    fn an_older_agents_hello_keeps_the_stored_capacity() {
        let stored = host_record(None, "h1", &hello(Some(measured()), &[("zone", "a")]), "");
        let h = host_record(Some(stored.clone()), "h1", &hello(None, &[]), "");
        assert_eq!(h.capacity, stored.capacity);
        assert_eq!(h.labels, stored.labels);
        assert_eq!(h.tee, stored.tee);
    }

    #[test]
    fn a_hello_out_of_bounds_is_refused_naming_the_field() {
        assert!(check_hello(&hello(Some(measured()), &[("zone", "a")])).is_ok());
        assert!(check_hello(&hello(None, &[])).is_ok());
        let mut bad_tee = measured();
        bad_tee.tee = "sgx".into();
        let e = check_hello(&hello(Some(bad_tee), &[])).expect_err("tee");
        assert!(e.contains("unknown TEE kind"), "{e}");
        let mut huge = measured();
        huge.cpu_millicores = u64::MAX;
        let e = check_hello(&hello(Some(huge), &[])).expect_err("cpu");
        assert!(e.contains("capacity.cpu_millicores"), "{e}");
        let e = check_hello(&hello(None, &[("bad key!", "v")])).expect_err("label");
        assert!(e.contains("labels"), "{e}");
    }
}
