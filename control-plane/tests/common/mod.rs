//! One in-process controller (single node, fsync'd, plain text) serving gRPC and HTTP on a
//! loopback port of its own, its data dir a [`TestDir`] (kept when the test fails).
#![allow(dead_code)]

use std::net::SocketAddr;
use std::sync::Arc;

use tokio::sync::oneshot;
use tribune_controller::{Controller, ControllerConfig};
use tribune_testkit::TestDir;

pub struct InProcess {
    pub controller: Arc<Controller>,
    pub addr: SocketAddr,
    pub dir: TestDir,
    stop: Option<oneshot::Sender<()>>,
    server: Option<tokio::task::JoinHandle<std::io::Result<tribune_controller::server::Stopped>>>,
}

/// Opens and bootstraps controller 1 (`--init --insecure`, then `configure`) and serves it.
pub async fn start(configure: impl FnOnce(&mut ControllerConfig)) -> InProcess {
    let dir = TestDir::new("tribune-controller-test-");
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    let mut cfg = ControllerConfig::new(1, addr, dir.path().to_path_buf());
    cfg.init = true;
    cfg.insecure = true;
    configure(&mut cfg);
    let controller = Controller::open(cfg, Arc::new(tribune_controller::validate::PolicyLanguage))
        .await
        .expect("open");
    controller.bootstrap().await.expect("bootstrap");
    let (stop, stopped) = oneshot::channel::<()>();
    let server = tokio::spawn(tribune_controller::server::serve(
        listener,
        controller.clone(),
        async {
            let _ = stopped.await;
        },
    ));
    InProcess {
        controller,
        addr,
        dir,
        stop: Some(stop),
        server: Some(server),
    }
}

impl InProcess {
    /// Stops serving, waits for the server, shuts Raft down.
    pub async fn shutdown(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(server) = self.server.take() {
            let _ = server.await;
        }
        let _ = self.controller.raft.shutdown().await;
    }
}
