//! mTLS for the controller's one listener: a TLS-terminating [`axum::serve::Listener`] that
//! records each connection's [`PeerIdentity`], and [`peer_identity`] for the services to read
//! it back from a request.
//!
//! Handshakes run in their own tasks, so a slow or silent client never holds up the accept
//! loop. They are bounded in time ([`HANDSHAKE_TIMEOUT`]) and in number, in all
//! ([`HANDSHAKES_IN_FLIGHT_MAX`]) and per source ([`HANDSHAKES_PER_SOURCE_MAX`]); at a bound
//! the oldest pending handshake is closed instead of the new connection waiting (see
//! [`slots`]), so idle sockets cannot starve a real client, wherever they come from.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::extract::ConnectInfo;
use axum::extract::connect_info::Connected;
use axum::serve::{IncomingStream, Listener};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, oneshot};
use tribune_tls::tokio_rustls::TlsAcceptor;
use tribune_tls::tokio_rustls::server::TlsStream;

pub use tribune_tls::{ClientTls, PeerIdentity, ServerTls, TlsFiles};

pub mod slots;

use slots::HandshakeSlots;

/// A TLS handshake must finish within this. A real one takes milliseconds (a few round trips
/// and one signature each way); 3 s leaves room for a slow link without letting a silent
/// client hold a slot for long.
pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(3);
/// Handshakes in progress at once, at most. At the bound a new connection is admitted and the
/// oldest pending handshake closed.
pub const HANDSHAKES_IN_FLIGHT_MAX: usize = 256;
/// Handshakes in progress from one source (IPv4 address, IPv6 /64) at once, at most: at the
/// bound a new connection from it closes that source's oldest pending handshake, so one source
/// cannot take the slots of others.
pub const HANDSHAKES_PER_SOURCE_MAX: usize = 64;
/// How often, at most, evictions are reported at `warn` (with their count since the last).
const EVICTION_WARN_INTERVAL: Duration = Duration::from_secs(10);

/// What a controller knows about the other end of one connection.
#[derive(Clone, Debug)]
pub struct PeerInfo {
    pub remote: SocketAddr,
    /// From the client certificate rustls verified against the CA; `None` when the client
    /// presented none (or, logged, one without a Tribune identity).
    pub identity: Option<PeerIdentity>,
    /// Hex SHA-256 of the client certificate (DER) the client presented; empty when none.
    pub cert_sha256: String,
}

/// The verified identity of the caller of this request, when it came over mTLS with a client
/// certificate. Works on tonic requests (`req.extensions()`) and on axum requests alike.
/// The hex SHA-256 of the client certificate this request came with over mTLS (empty if none).
pub fn peer_cert_sha256(extensions: &tonic::Extensions) -> &str {
    extensions
        .get::<ConnectInfo<PeerInfo>>()
        .map_or("", |c| c.0.cert_sha256.as_str())
}

/// The address the caller connected from, when the connection came over the TLS listener.
pub fn peer_remote(extensions: &tonic::Extensions) -> Option<SocketAddr> {
    extensions
        .get::<ConnectInfo<PeerInfo>>()
        .map(|c| c.0.remote)
}

pub fn peer_identity(extensions: &tonic::Extensions) -> Option<&PeerIdentity> {
    extensions
        .get::<ConnectInfo<PeerInfo>>()
        .and_then(|c| c.0.identity.as_ref())
}

/// For controller-only services (`RaftService`): with TLS on, the caller must present a
/// controller certificate; PERMISSION_DENIED otherwise. Without TLS (`--insecure`) anyone may.
pub fn require_controller(
    tls_on: bool,
    extensions: &tonic::Extensions,
) -> Result<(), tonic::Status> {
    if !tls_on {
        return Ok(());
    }
    match peer_identity(extensions) {
        Some(PeerIdentity::Controller { .. }) => Ok(()),
        Some(other) => Err(tonic::Status::permission_denied(format!(
            "this service is for controllers only; the caller's certificate is for {other}"
        ))),
        None => Err(tonic::Status::permission_denied(
            "this service is for controllers only; the caller presented no client certificate",
        )),
    }
}

/// For agent-facing services: the host the caller may speak for. With TLS on, the host named
/// in its agent certificate (`Ok(Some(host))`), PERMISSION_DENIED for any other caller; compare
/// it with every host id the caller sends. Without TLS (`--insecure`): `Ok(None)`, nothing is
/// known about the caller.
pub fn require_agent(
    tls_on: bool,
    extensions: &tonic::Extensions,
) -> Result<Option<String>, tonic::Status> {
    if !tls_on {
        return Ok(None);
    }
    match peer_identity(extensions) {
        Some(PeerIdentity::Agent { host }) => Ok(Some(host.clone())),
        Some(other) => Err(tonic::Status::permission_denied(format!(
            "this service is for host agents only; the caller's certificate is for {other}"
        ))),
        None => Err(tonic::Status::permission_denied(
            "this service is for host agents only; the caller presented no client certificate (issue one with `tribune ca issue agent HOST-ID`)",
        )),
    }
}

/// Accepts TCP connections, sets TCP_NODELAY, completes the TLS handshake and hands over the
/// stream with its [`PeerInfo`].
pub struct TlsListener {
    ready: mpsc::Receiver<(TlsStream<TcpStream>, PeerInfo)>,
    local: SocketAddr,
    accept_task: tokio::task::JoinHandle<()>,
}

impl Drop for TlsListener {
    fn drop(&mut self) {
        self.accept_task.abort();
    }
}

/// A refused TLS handshake: who, and why (for the attestation log).
pub type HandshakeFailure = (SocketAddr, String);

impl TlsListener {
    /// `failures` receives refused handshakes (best effort: dropped when full).
    pub fn new(
        listener: TcpListener,
        tls: &ServerTls,
        failures: Option<mpsc::Sender<HandshakeFailure>>,
    ) -> std::io::Result<Self> {
        let (_keep, config) = tokio::sync::watch::channel(tls.config.clone());
        Self::reloadable(listener, config, failures)
    }

    /// As [`new`](Self::new), serving whatever configuration `config` holds at each new
    /// connection: a reload (new certificate files) reaches new connections, and established
    /// ones keep the configuration they were accepted with.
    pub fn reloadable(
        listener: TcpListener,
        config: tokio::sync::watch::Receiver<Arc<tribune_tls::rustls::ServerConfig>>,
        failures: Option<mpsc::Sender<HandshakeFailure>>,
    ) -> std::io::Result<Self> {
        let local = listener.local_addr()?;
        let (tx, ready) = mpsc::channel(64);
        let accept_task = tokio::spawn(accept_loop(listener, config, tx, failures));
        Ok(Self {
            ready,
            local,
            accept_task,
        })
    }
}

async fn accept_loop(
    listener: TcpListener,
    config: tokio::sync::watch::Receiver<Arc<tribune_tls::rustls::ServerConfig>>,
    tx: mpsc::Sender<(TlsStream<TcpStream>, PeerInfo)>,
    failures: Option<mpsc::Sender<HandshakeFailure>>,
) {
    // Each pending handshake is held as the sender of a oneshot its task waits on: evicting it
    // drops the sender, which ends the task and closes the connection. The lock is held only
    // for the bookkeeping, never across an await.
    let slots = Arc::new(Mutex::new(HandshakeSlots::<oneshot::Sender<()>>::new(
        HANDSHAKES_IN_FLIGHT_MAX,
        HANDSHAKES_PER_SOURCE_MAX,
    )));
    let mut evictions = (Instant::now(), 0u64);
    loop {
        let (tcp, remote) = match listener.accept().await {
            Ok(c) => c,
            Err(e) => {
                // Per-connection errors (reset before accept) are harmless; others (out of
                // file descriptors) get a short pause instead of a busy loop.
                tracing::debug!(error = %e, "accept failed");
                if !matches!(
                    e.kind(),
                    std::io::ErrorKind::ConnectionAborted
                        | std::io::ErrorKind::ConnectionReset
                        | std::io::ErrorKind::ConnectionRefused
                ) {
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
                continue;
            }
        };
        // Small request/response pairs: see `server::serve`.
        if let Err(e) = tcp.set_nodelay(true) {
            tracing::debug!(error = %e, "could not set TCP_NODELAY on an accepted connection");
        }
        let (evict_tx, evicted_rx) = oneshot::channel::<()>();
        let admitted = match slots.lock() {
            Ok(mut s) => s.admit(remote.ip(), evict_tx),
            // Poisoned only if a holder panicked; the bookkeeping cannot be trusted, stop
            // serving TLS rather than serve it unbounded.
            Err(_) => {
                tracing::error!("TLS handshake bookkeeping poisoned; no longer accepting");
                return;
            }
        };
        if let Some(closed) = admitted.evicted {
            drop(closed);
            evictions.1 += 1;
            tracing::debug!(%remote, "handshake slots full: closed the oldest pending handshake");
            if evictions.0.elapsed() >= EVICTION_WARN_INTERVAL {
                tracing::warn!(
                    closed = evictions.1,
                    "pending TLS handshakes at their bound: closed the oldest to admit new connections (idle or flooding clients)"
                );
                evictions = (Instant::now(), 0);
            }
        }
        let slot = Slot {
            slots: slots.clone(),
            id: admitted.id,
        };
        let acceptor = TlsAcceptor::from(config.borrow().clone());
        let tx = tx.clone();
        let failures = failures.clone();
        tokio::spawn(async move {
            let handshake = tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(tcp));
            let stream = tokio::select! {
                r = handshake => match r {
                    Ok(Ok(s)) => s,
                    Ok(Err(e)) => {
                        tracing::info!(%remote, error = %e, "TLS handshake failed");
                        if let Some(f) = &failures {
                            let _ = f.try_send((remote, e.to_string()));
                        }
                        return;
                    }
                    Err(_) => {
                        tracing::info!(%remote, "TLS handshake timed out");
                        return;
                    }
                },
                // Evicted: the sender was dropped. Returning drops the connection.
                _ = evicted_rx => return,
            };
            // Established: no longer half-open.
            drop(slot);
            let identity = match tribune_tls::peer_identity_of(
                stream.get_ref().1.peer_certificates(),
            ) {
                None => None,
                Some(Ok(id)) => Some(id),
                Some(Err(e)) => {
                    tracing::warn!(%remote, error = %e, "client certificate verified but names no Tribune identity; treating the client as anonymous");
                    None
                }
            };
            let cert_sha256 = stream
                .get_ref()
                .1
                .peer_certificates()
                .and_then(|c| c.first())
                .map(|c| {
                    use sha2::Digest;
                    hex::encode(sha2::Sha256::digest(c.as_ref()))
                })
                .unwrap_or_default();
            tracing::debug!(%remote, identity = ?identity, "TLS connection");
            let _ = tx
                .send((
                    stream,
                    PeerInfo {
                        remote,
                        identity,
                        cert_sha256,
                    },
                ))
                .await;
        });
    }
}

/// A pending handshake's slot, freed when its task ends or the handshake completes.
struct Slot {
    slots: Arc<Mutex<HandshakeSlots<oneshot::Sender<()>>>>,
    id: u64,
}

impl Drop for Slot {
    fn drop(&mut self) {
        if let Ok(mut s) = self.slots.lock() {
            s.finish(self.id);
        }
    }
}

impl Listener for TlsListener {
    type Io = TlsStream<TcpStream>;
    type Addr = PeerInfo;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        match self.ready.recv().await {
            Some(c) => c,
            // The accept task only ends when this listener is dropped.
            None => std::future::pending().await,
        }
    }

    fn local_addr(&self) -> std::io::Result<Self::Addr> {
        Ok(PeerInfo {
            remote: self.local,
            identity: None,
            cert_sha256: String::new(),
        })
    }
}

impl Connected<IncomingStream<'_, TlsListener>> for PeerInfo {
    fn connect_info(stream: IncomingStream<'_, TlsListener>) -> Self {
        stream.remote_addr().clone()
    }
}

/// A controller's TLS material, loaded once at start-up: what it serves and how it dials the
/// other controllers (the same certificate, as a client).
#[derive(Clone, Debug)]
pub struct ControllerTls {
    pub server: ServerTls,
    pub client: ClientTls,
}

impl ControllerTls {
    /// Loads `files` and checks that the certificate is controller `id`'s.
    pub fn load(files: &TlsFiles, id: crate::raft::NodeId) -> Result<Self, crate::ControllerError> {
        let invalid =
            |e: tribune_tls::TlsError| crate::ControllerError::Invalid(format!("TLS: {e}"));
        let server = tribune_tls::server_config(files).map_err(invalid)?;
        let want = PeerIdentity::Controller { id };
        if server.identity != want {
            return Err(crate::ControllerError::Invalid(format!(
                "TLS: {} is the certificate of {}, not of controller {id}; issue one with `tribune ca issue controller {id}`",
                files.cert.display(),
                server.identity
            )));
        }
        let client = ClientTls::from_files(files).map_err(invalid)?;
        Ok(Self { server, client })
    }

    /// Checks the own certificate the way the other controllers will when they dial
    /// `advertised` (`HOST:PORT`): a certificate the CA bundle does not vouch for is an error; one
    /// that does not name HOST only a warning (the name may be valid elsewhere, e.g. behind NAT),
    /// but peers dialling that address will refuse it.
    pub fn check_advertised(&self, advertised: &str) -> Result<(), crate::ControllerError> {
        let host = advertised
            .rsplit_once(':')
            .map_or(advertised, |(h, _)| h)
            .trim_start_matches('[')
            .trim_end_matches(']');
        // Listening on every address with no --advertise: nothing to compare with.
        if host
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_unspecified())
        {
            return Ok(());
        }
        match self.client.check_own_certificate(host) {
            Ok(tribune_tls::OwnCertificate::Valid) => Ok(()),
            Ok(tribune_tls::OwnCertificate::WrongName(why)) => {
                tracing::warn!(%host, reason = %why, "this controller's certificate does not name its advertised host: peers and clients dialling it will refuse it; reissue it with `tribune ca issue controller ID --san HOST --force`");
                Ok(())
            }
            Err(e) => Err(crate::ControllerError::Invalid(format!("TLS: {e}"))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn with(identity: Option<PeerIdentity>) -> tonic::Extensions {
        let mut e = tonic::Extensions::new();
        e.insert(ConnectInfo(PeerInfo {
            remote: SocketAddr::from(([127, 0, 0, 1], 1)),
            identity,
            cert_sha256: String::new(),
        }));
        e
    }

    #[test]
    fn services_admit_only_their_role_when_tls_is_on() {
        let ctl = with(Some(PeerIdentity::Controller { id: 2 }));
        let agent = with(Some(PeerIdentity::Agent { host: "h1".into() }));
        let client = with(Some(PeerIdentity::User {
            role: tribune_tls::UserRole::Admin,
            name: "a".into(),
            tenant: None,
        }));
        let anonymous = with(None);
        let nothing = tonic::Extensions::new();

        assert_eq!(
            peer_identity(&ctl),
            Some(&PeerIdentity::Controller { id: 2 })
        );
        assert_eq!(peer_identity(&anonymous), None);
        assert_eq!(peer_identity(&nothing), None);

        assert!(require_controller(true, &ctl).is_ok());
        for e in [&agent, &client, &anonymous, &nothing] {
            let err = require_controller(true, e).expect_err("refused");
            assert_eq!(err.code(), tonic::Code::PermissionDenied);
        }
        assert_eq!(
            require_agent(true, &agent).ok(),
            Some(Some("h1".to_string()))
        );
        for e in [&ctl, &client, &anonymous] {
            let err = require_agent(true, e).expect_err("refused");
            assert_eq!(err.code(), tonic::Code::PermissionDenied);
            assert!(err.message().contains("host agents only"), "{err:?}");
        }
        // --insecure: nothing to check against.
        assert!(require_controller(false, &agent).is_ok());
        assert_eq!(require_agent(false, &ctl).ok(), Some(None));
    }
}
