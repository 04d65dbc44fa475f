//! `grpc.health.v1` and server reflection on a controller's port, reached the way a
//! Kubernetes gRPC probe or `grpcurl` reaches them: over TLS without a client certificate.
//!
//! - health follows readiness: `SERVING` for the server and `ControlService` while the
//!   cluster has a leader, `NOT_SERVING` (told to a watcher) once a controller lost its quorum;
//!   `RaftService` stays `SERVING`; an unknown service is `NOT_FOUND`;
//! - reflection lists every service and returns the `.proto` file declaring a symbol.

mod common;

use std::time::{Duration, Instant};

use common::{Cluster, DEADLINE};
use tokio_stream::StreamExt;
use tonic::transport::Channel;
use tonic_health::pb::health_check_response::ServingStatus;
use tonic_health::pb::health_client::HealthClient;
use tonic_health::pb::{HealthCheckRequest, HealthCheckResponse};
use tonic_reflection::pb::v1::ServerReflectionRequest;
use tonic_reflection::pb::v1::server_reflection_client::ServerReflectionClient;
use tonic_reflection::pb::v1::server_reflection_request::MessageRequest;
use tonic_reflection::pb::v1::server_reflection_response::MessageResponse;

/// A channel to `addr` trusting the cluster's CA, presenting no certificate.
async fn anonymous(c: &Cluster, addr: &str) -> Channel {
    let ca = c.tls_dir.as_ref().expect("a TLS cluster").join("ca.pem");
    tribune_tls::ClientTls::load(&ca, None)
        .expect("tls")
        .endpoint(addr)
        .expect("endpoint")
        .connect_timeout(Duration::from_secs(5))
        .timeout(Duration::from_secs(10))
        .connect()
        .await
        .expect("connect")
}

async fn check(ch: &Channel, service: &str) -> Result<ServingStatus, tonic::Status> {
    let r: HealthCheckResponse = HealthClient::new(ch.clone())
        .check(HealthCheckRequest {
            service: service.into(),
        })
        .await?
        .into_inner();
    Ok(r.status())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn health_follows_readiness_and_reflection_describes_the_services() {
    let mut c = Cluster::start_tls(3, &[]);
    c.wait_leader().await;
    let addr = c.nodes[&3].addr.clone();
    let ch = anonymous(&c, &addr).await;

    // Ready: the server and the control API serve.
    let deadline = Instant::now() + DEADLINE;
    loop {
        let overall = check(&ch, "").await.expect("check \"\"");
        let control = check(&ch, "tribune.v1.ControlService")
            .await
            .expect("check");
        if overall == ServingStatus::Serving && control == ServingStatus::Serving {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "not SERVING: {overall:?} {control:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(
        check(&ch, "tribune.v1.RaftService").await.expect("check"),
        ServingStatus::Serving
    );
    let unknown = check(&ch, "no.such.Service").await.expect_err("unknown");
    assert_eq!(unknown.code(), tonic::Code::NotFound, "{unknown}");

    // Reflection: the services, and the file that declares one.
    let (tx, rx) = tokio::sync::mpsc::channel(4);
    let mut responses = ServerReflectionClient::new(ch.clone())
        .server_reflection_info(tokio_stream::wrappers::ReceiverStream::new(rx))
        .await
        .expect("reflection stream")
        .into_inner();
    let ask = |m: MessageRequest| ServerReflectionRequest {
        host: String::new(),
        message_request: Some(m),
    };
    tx.send(ask(MessageRequest::ListServices(String::new())))
        .await
        .expect("send");
    let listed = responses.next().await.expect("a response").expect("ok");
    let Some(MessageResponse::ListServicesResponse(list)) = listed.message_response else {
        panic!("not a service list: {listed:?}")
    };
    let names: Vec<String> = list.service.into_iter().map(|s| s.name).collect();
    for want in [
        "tribune.v1.ControlService",
        "tribune.v1.RaftService",
        "tribune.v1.AttestationService",
        "grpc.health.v1.Health",
    ] {
        assert!(names.iter().any(|n| n == want), "{want} not in {names:?}");
    }
    tx.send(ask(MessageRequest::FileContainingSymbol(
        "tribune.v1.ControlService".into(),
    )))
    .await
    .expect("send");
    let file = responses.next().await.expect("a response").expect("ok");
    let Some(MessageResponse::FileDescriptorResponse(fds)) = file.message_response else {
        panic!("not a file descriptor: {file:?}")
    };
    let files: Vec<prost_types::FileDescriptorProto> = fds
        .file_descriptor_proto
        .iter()
        .map(|b| prost::Message::decode(b.as_slice()).expect("a FileDescriptorProto"))
        .collect();
    let control = files
        .iter()
        .find(|f| f.service.iter().any(|s| s.name() == "ControlService"))
        .unwrap_or_else(|| panic!("no file declares ControlService: {files:?}"));
    assert_eq!(control.package(), "tribune.v1");
    drop(tx);

    // A watcher of controller 3 is told when it loses its quorum.
    let mut watch = HealthClient::new(ch.clone())
        .watch(HealthCheckRequest {
            service: "tribune.v1.ControlService".into(),
        })
        .await
        .expect("watch")
        .into_inner();
    let first = watch.next().await.expect("first").expect("ok");
    assert_eq!(first.status(), ServingStatus::Serving);
    c.kill9(1);
    c.kill9(2);
    let next = tokio::time::timeout(DEADLINE, watch.next())
        .await
        .expect("told within the deadline")
        .expect("a status")
        .expect("ok");
    assert_eq!(next.status(), ServingStatus::NotServing);
    assert_eq!(
        check(&ch, "tribune.v1.RaftService").await.expect("check"),
        ServingStatus::Serving,
        "Raft still serves: the peers need it to come back"
    );
}
