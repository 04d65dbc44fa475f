//! Serves one controller: gRPC (Raft transport and `ControlService`) and HTTP/JSON on a single
//! listener, until the shutdown signal fires. With TLS (the default; plain text only with
//! `insecure`), each request carries the caller's verified identity: see [`crate::tls`].

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

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
        insecure: controller.tls.is_none(),
        ..LoopConfig::default()
    };
    let attest = match AttestServer::new(controller.clone(), loop_config) {
        Ok(a) => Some(
            AttestationServiceServer::new(a)
                .max_decoding_message_size(ATTEST_MESSAGE_BYTES_MAX)
                .max_encoding_message_size(ATTEST_MESSAGE_BYTES_MAX),
        ),
        Err(e) => {
            tracing::error!("the attestation service cannot start: evidence verifiers: {e}");
            None
        }
    };
    let controller_for_health = controller.clone();
    let raft = RaftServiceServer::new(RaftServer { controller })
        .max_decoding_message_size(RAFT_MESSAGE_BYTES_MAX)
        .max_encoding_message_size(RAFT_MESSAGE_BYTES_MAX);
    let control = ControlServiceServer::new(ControlServer { api: api.clone() })
        .max_decoding_message_size(http::BODY_BYTES_MAX);
    // gRPC methods live under their service paths; everything else is the HTTP/JSON API.
    let router = http::router(api)
        .route_service("/tribune.v1.RaftService/{*method}", raft)
        .route_service("/tribune.v1.ControlService/{*method}", control);
    let router = crate::api::health::add_health_and_reflection(router, &controller_for_health);
    // The web console's static files (public: it holds no data; `console`).
    let router = router.merge(crate::console::router());
    let router = match attest {
        Some(a) => router.route_service("/tribune.v1.AttestationService/{*method}", a),
        None => router,
    };
    // Outermost: every request, HTTP or gRPC, is counted by its route template.
    router.layer(axum::middleware::from_fn(
        crate::api::observe::count_requests,
    ))
}

/// Largest message on an attestation stream (a batch of reports for many enclaves).
pub const ATTEST_MESSAGE_BYTES_MAX: usize = 8 << 20;

/// How long open connections (agents' attestation streams, long requests) get to finish after
/// the shutdown began; then the server returns anyway. A stop must end within a bound.
pub const SHUTDOWN_GRACE: Duration = Duration::from_secs(5);

/// Why [`serve`] returned.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Stopped {
    /// The shutdown signal fired (SIGTERM, Ctrl-C, a test's trigger).
    Signal,
    /// Raft stopped on its own (a storage error such as a full disk): this controller can no
    /// longer take part in the cluster, so it stops serving instead of answering as a zombie.
    RaftFailed(String),
}

/// Serves until `shutdown` completes or Raft stops on its own, whichever comes first. Then the
/// controller's `stopping` token is cancelled (attestation streams end with a `Goodbye`, so
/// agents reconnect to another controller), open connections get [`SHUTDOWN_GRACE`] to finish,
/// and the server returns why it stopped.
pub async fn serve(
    listener: TcpListener,
    controller: Arc<Controller>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<Stopped> {
    let (_never, reloads) = tokio::sync::mpsc::channel(1);
    serve_reloadable(listener, controller, shutdown, reloads).await
}

/// As [`serve`]; each message on `reloads` (the binary sends one per SIGHUP) re-reads this
/// controller's TLS files and serves the new certificate to new connections, without a
/// restart and without closing established connections. Files that do not load, or whose
/// certificate is not this controller's, are refused with a warning and the current ones kept.
pub async fn serve_reloadable(
    listener: TcpListener,
    controller: Arc<Controller>,
    shutdown: impl Future<Output = ()> + Send + 'static,
    reloads: tokio::sync::mpsc::Receiver<()>,
) -> std::io::Result<Stopped> {
    let why = Arc::new(std::sync::Mutex::new(None));
    let stopping = controller.stopping.clone();
    {
        let (controller, why) = (controller.clone(), why.clone());
        tokio::spawn(async move {
            let reason = tokio::select! {
                () = shutdown => Stopped::Signal,
                e = controller.raft_failed() => Stopped::RaftFailed(e),
                // Cancelled by someone else: nothing to record.
                () = controller.stopping.cancelled() => return,
            };
            if let Stopped::RaftFailed(e) = &reason {
                tracing::error!("raft stopped: {e}; this controller stops serving");
            }
            *why.lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner) = Some(reason);
            controller.stopping.cancel();
        });
    }
    let served = serve_until(
        listener,
        controller,
        stopping.clone().cancelled_owned(),
        reloads,
    );
    let bound = async {
        stopping.cancelled().await;
        tokio::time::sleep(SHUTDOWN_GRACE).await;
        tracing::warn!(
            "connections still open {} s after the shutdown began; closing them",
            SHUTDOWN_GRACE.as_secs()
        );
    };
    tokio::select! {
        r = served => r?,
        () = bound => {}
    }
    let reason = why
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
        .take();
    Ok(reason.unwrap_or(Stopped::Signal))
}

async fn serve_until(
    listener: TcpListener,
    controller: Arc<Controller>,
    shutdown: impl Future<Output = ()> + Send + 'static,
    reloads: tokio::sync::mpsc::Receiver<()>,
) -> std::io::Result<()> {
    use axum::serve::ListenerExt;
    let tls = controller.tls.as_ref().map(|t| t.server.clone());
    let app = router(controller.clone());
    if let Some(tls) = tls {
        let (failures_tx, failures) = tokio::sync::mpsc::channel(64);
        tokio::spawn(log_refused_handshakes(controller.clone(), failures));
        let (config_tx, config) = tokio::sync::watch::channel(tls.config.clone());
        tokio::spawn(reload_certificates(controller, reloads, config_tx));
        // TCP_NODELAY is set by the TLS listener, for the reason given below.
        let listener = crate::tls::TlsListener::reloadable(listener, config, Some(failures_tx))?;
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

async fn reload_certificates(
    controller: Arc<Controller>,
    mut reloads: tokio::sync::mpsc::Receiver<()>,
    config: tokio::sync::watch::Sender<Arc<tribune_tls::rustls::ServerConfig>>,
) {
    while reloads.recv().await.is_some() {
        let Some(files) = controller.config.tls.as_ref() else {
            continue;
        };
        match crate::tls::ControllerTls::load(files, controller.id) {
            Ok(t) => {
                let _ = config.send(t.server.config.clone());
                // The same certificate as a client, when this controller dials its peers.
                controller.peers.set_tls(t.client);
                tracing::info!(cert = %files.cert.display(), "TLS certificates reloaded: new connections (served and dialled) use them");
            }
            Err(e) => tracing::warn!(
                error = %e,
                "TLS certificates not reloaded (the current ones stay in use)"
            ),
        }
    }
}

/// Records refused TLS handshakes (a certificate from another CA, a forged one) in the
/// attestation log: the first from each address at once, then at most one a minute per
/// address, and at most 60 entries a minute in all, so a scanner cannot flood the log.
async fn log_refused_handshakes(
    controller: Arc<Controller>,
    mut failures: tokio::sync::mpsc::Receiver<crate::tls::HandshakeFailure>,
) {
    use std::collections::HashMap;
    use std::time::{Duration, Instant};
    let mut last: HashMap<std::net::IpAddr, Instant> = HashMap::new();
    let mut window = (Instant::now(), 0u32);
    while let Some((remote, why)) = failures.recv().await {
        let now = Instant::now();
        if now.duration_since(window.0) > Duration::from_secs(60) {
            window = (now, 0);
            last.retain(|_, t| now.duration_since(*t) < Duration::from_secs(60));
        }
        if last
            .get(&remote.ip())
            .is_some_and(|t| now.duration_since(*t) < Duration::from_secs(60))
            || window.1 >= 60
        {
            continue;
        }
        last.insert(remote.ip(), now);
        window.1 += 1;
        let at_ms = crate::test_fault::wall_now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as i64);
        let cmd = crate::state::Command::AppendLog {
            subject: remote.ip().to_string(),
            detail: crate::state::Refusal {
                remote: Some(remote.to_string()),
                controller: Some(controller.id),
                ..crate::state::Refusal::new("tls handshake", why)
            }
            .into(),
            at_ms,
        };
        if let Err(e) = controller.write(vec![cmd]).await {
            tracing::debug!("recording a refused handshake: {e}");
        }
    }
}
