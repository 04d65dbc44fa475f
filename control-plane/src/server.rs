//! Serves one controller: gRPC (Raft transport and `ControlService`) and HTTP/JSON on a single
//! listener, until the shutdown signal fires.

use std::future::Future;
use std::sync::Arc;

use tokio::net::TcpListener;
use tribune_proto::v1::attestation_service_server::AttestationServiceServer;
use tribune_proto::v1::control_service_server::ControlServiceServer;
use tribune_proto::v1::raft_service_server::RaftServiceServer;

use crate::api::grpc::ControlServer;
use crate::api::http;
use crate::api::service::Api;
use crate::attest::{AttestServer, LoopConfig};
use crate::node::Controller;
use crate::raft::network::RAFT_MESSAGE_BYTES_MAX;
use crate::raft::service::RaftServer;

/// Builds the combined router for a controller.
pub fn router(controller: Arc<Controller>) -> axum::Router {
    let api = Arc::new(Api {
        controller: controller.clone(),
    });
    let loop_config = LoopConfig {
        allow_sim: controller.config.allow_sim_evidence,
        // Until TLS identities reach the request, the Hello's host id is taken as said.
        insecure: true,
        ..LoopConfig::default()
    };
    let attest = match AttestServer::new(controller.clone(), loop_config) {
        Ok(a) => Some(
            AttestationServiceServer::new(a)
                .max_decoding_message_size(ATTEST_MESSAGE_BYTES_MAX)
                .max_encoding_message_size(ATTEST_MESSAGE_BYTES_MAX),
        ),
        Err(e) => {
            tracing::error!("the attestation service cannot start: {e}");
            None
        }
    };
    let raft = RaftServiceServer::new(RaftServer { controller })
        .max_decoding_message_size(RAFT_MESSAGE_BYTES_MAX)
        .max_encoding_message_size(RAFT_MESSAGE_BYTES_MAX);
    let control = ControlServiceServer::new(ControlServer { api: api.clone() })
        .max_decoding_message_size(http::BODY_BYTES_MAX);
    // gRPC methods live under their service paths; everything else is the HTTP/JSON API.
    let router = http::router(api)
        .route_service("/tribune.v1.RaftService/{*method}", raft)
        .route_service("/tribune.v1.ControlService/{*method}", control);
    match attest {
        Some(a) => router.route_service("/tribune.v1.AttestationService/{*method}", a),
        None => router,
    }
}

/// Largest message on an attestation stream (a batch of reports for many enclaves).
pub const ATTEST_MESSAGE_BYTES_MAX: usize = 8 << 20;

/// Serves until `shutdown` completes.
pub async fn serve(
    listener: TcpListener,
    controller: Arc<Controller>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    use axum::serve::ListenerExt;
    let app = router(controller);
    // Small request/response pairs, and gRPC trailers written apart from the body: with Nagle's
    // algorithm each would wait for the peer's delayed ACK (~40 ms).
    let listener = listener.tap_io(|tcp| {
        if let Err(e) = tcp.set_nodelay(true) {
            tracing::debug!(error = %e, "could not set TCP_NODELAY on an accepted connection");
        }
    });
    axum::serve(listener, app)
        .with_graceful_shutdown(shutdown)
        .await
}
