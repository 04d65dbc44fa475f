//! The mutual TLS of the links between agents: each agent serves and dials with its agent
//! certificate from `tribune ca` (`tribune://agent/HOST`). Both ends verify the other's chain
//! against the Tribune CA; a peer is then known by the identity its certificate names, not by
//! its address: the dialling side checks the server is `tribune://agent/H` for the host `H`
//! the controllers placed the receiver on, the listening side takes the dialler's host from its
//! certificate (and refuses a dialler without one, or with another role's).

use std::sync::Arc;

use tribune_tls::rustls::client::danger::{
    HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier,
};
use tribune_tls::rustls::pki_types::pem::PemObject;
use tribune_tls::rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use tribune_tls::rustls::server::WebPkiClientVerifier;
use tribune_tls::rustls::server::danger::ClientCertVerifier;
use tribune_tls::rustls::{self, DigitallySignedStruct, RootCertStore};
use tribune_tls::{ClientTls, PeerIdentity, TlsFiles};

use crate::error::{AgentError, Result};

/// The ALPN protocol of a peer link (wire format version 1 of `tribune-msg`).
pub const ALPN: &[u8] = b"tribune-peer/1";
/// The same, where a RELAY may carry how long it queued on the sending host (kind `0x05`).
/// Both ends offer it first and fall back to [`ALPN`], so an agent that predates it still
/// links (and gets kind `0x04` only).
pub const ALPN_QUEUED: &[u8] = b"tribune-peer/2";

/// An agent's TLS for peer links.
#[derive(Clone)]
pub struct PeerTls {
    pub(super) host: String,
    pub(super) server: Arc<rustls::ServerConfig>,
    pub(super) client: Arc<rustls::ClientConfig>,
}

impl std::fmt::Debug for PeerTls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PeerTls").field("host", &self.host).finish()
    }
}

fn tls_err(what: &str, e: impl std::fmt::Display) -> AgentError {
    AgentError::Runtime(format!("peer TLS: {what}: {e}"))
}

impl PeerTls {
    /// Loads the CA bundle and this agent's certificate and key. The certificate must name
    /// `tribune://agent/HOST` (the host this agent runs as).
    pub fn load(files: &TlsFiles, host: &str) -> Result<PeerTls> {
        let client_tls = ClientTls::from_files(files).map_err(|e| tls_err("loading", e))?;
        match client_tls.identity() {
            Some(PeerIdentity::Agent { host: h }) if h == host => {}
            other => {
                return Err(tls_err(
                    "certificate",
                    format!(
                        "{} names {}, not tribune://agent/{host}",
                        files.cert.display(),
                        other.map_or("no Tribune identity".to_string(), |i| i.uri())
                    ),
                ));
            }
        }
        let client = client_config(&files.ca, Some((&files.cert, &files.key)))?;
        let server = tribune_tls::server_config(files).map_err(|e| tls_err("server", e))?;
        let mut server = (*server.config).clone();
        server.alpn_protocols = vec![ALPN_QUEUED.to_vec(), ALPN.to_vec()];
        Ok(PeerTls {
            host: host.to_string(),
            server: Arc::new(server),
            client: Arc::new(client),
        })
    }

    /// The host this agent's certificate names.
    pub fn host(&self) -> &str {
        &self.host
    }
}

/// A client configuration for peer links: trusts the CA bundle `ca`, presents `identity`
/// (certificate, key) when given, and checks a server's chain but not its name (`ChainOnly`).
pub fn client_config(
    ca: &std::path::Path,
    identity: Option<(&std::path::Path, &std::path::Path)>,
) -> Result<rustls::ClientConfig> {
    let client_tls = ClientTls::load(ca, identity).map_err(|e| tls_err("loading", e))?;
    let mut client = client_tls
        .rustls_config(&[ALPN_QUEUED, ALPN])
        .map_err(|e| tls_err("client configuration", e))?;
    let mut roots = RootCertStore::empty();
    let bad = |e: &dyn std::fmt::Display| tls_err(&ca.display().to_string(), e);
    for cert in CertificateDer::pem_file_iter(ca).map_err(|e| bad(&e))? {
        roots.add(cert.map_err(|e| bad(&e))?).map_err(|e| bad(&e))?;
    }
    let inner =
        WebPkiClientVerifier::builder_with_provider(Arc::new(roots), tribune_tls::provider())
            .build()
            .map_err(|e| tls_err("server verifier", e))?;
    client
        .dangerous()
        .set_certificate_verifier(Arc::new(ChainOnly { inner }));
    Ok(client)
}

/// Verifies a server's certificate as what it is, an agent certificate of the Tribune CA
/// (issued for client authentication): its chain to the CA, its validity and its signatures,
/// exactly as the listening side verifies the dialler's. Not its name: an agent is known by its
/// `tribune://agent/HOST` identity, which the link checks after the handshake (`peer.rs`), not
/// by a DNS name or IP address.
#[derive(Debug)]
struct ChainOnly {
    inner: Arc<dyn ClientCertVerifier>,
}

impl ServerCertVerifier for ChainOnly {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp: &[u8],
        now: UnixTime,
    ) -> std::result::Result<ServerCertVerified, rustls::Error> {
        let _ = (server_name, ocsp);
        self.inner
            .verify_client_cert(end_entity, intermediates, now)
            .map(|_| ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> std::result::Result<HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> std::result::Result<HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.inner.supported_verify_schemes()
    }
}
