//! Serves one controller: gRPC (Raft transport and `ControlService`) and HTTP/JSON on a single
//! listener, until the shutdown signal fires. With TLS (the default; plain text only with
//! `insecure`), each request carries the caller's verified identity: see [`crate::tls`].

use std::future::Future;
use std::sync::Arc;

use tokio::net::TcpListener;
use tribune_proto::v1::control_service_server::ControlServiceServer;
use tribune_proto::v1::raft_service_server::RaftServiceServer;

use crate::api::grpc::ControlServer;
use crate::api::http;
use crate::api::service::Api;
use crate::node::Controller;
use crate::raft::network::RAFT_MESSAGE_BYTES_MAX;
use crate::raft::service::RaftServer;

/// Builds the combined router for a controller.
pub fn router(controller: Arc<Controller>) -> axum::Router {
    let api = Arc::new(Api {
        controller: controller.clone(),
    });
    let raft = RaftServiceServer::new(RaftServer { controller })
        .max_decoding_message_size(RAFT_MESSAGE_BYTES_MAX)
        .max_encoding_message_size(RAFT_MESSAGE_BYTES_MAX);
    let control = ControlServiceServer::new(ControlServer { api: api.clone() })
        .max_decoding_message_size(http::BODY_BYTES_MAX);
    // gRPC methods live under their service paths; everything else is the HTTP/JSON API.
    http::router(api)
        .route_service("/tribune.v1.RaftService/{*method}", raft)
        .route_service("/tribune.v1.ControlService/{*method}", control)
}

/// Serves until `shutdown` completes.
pub async fn serve(
    listener: TcpListener,
    controller: Arc<Controller>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    use axum::serve::ListenerExt;
    let tls = controller.tls.as_ref().map(|t| t.server.clone());
    let app = router(controller);
    if let Some(tls) = tls {
        // TCP_NODELAY is set by the TLS listener, for the reason given below.
        let listener = crate::tls::TlsListener::new(listener, &tls)?;
        return axum::serve(
            listener,
            app.into_make_service_with_connect_info::<crate::tls::PeerInfo>(),
        )
        .with_graceful_shutdown(shutdown)
        .await;
    }
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
