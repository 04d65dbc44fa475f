//! Tribune's identities and mutual TLS, shared by controllers, agents and the CLI.
//!
//! - [`ca`]: a small CA on disk (rcgen): `ca.pem`/`ca.key`, and controller, agent and client
//!   certificates whose identity is one `tribune://ROLE/NAME` URI subjectAltName.
//! - [`PeerIdentity`]: that identity, read back from a verified peer certificate (x509-parser).
//! - [`server_config`] / [`ClientTls`]: rustls configurations (ring only) that trust exactly the
//!   Tribune CA; [`ClientTls::endpoint`] builds a tonic endpoint over them.
//!
//! Servers verify client certificates against the CA but also accept clients without one at
//! the TLS layer (a user holding only the CA may read the API); each service then decides from
//! the [`PeerIdentity`] who may call it.

pub mod ca;
mod identity;

use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::WebPkiClientVerifier;
use rustls::{ClientConfig, RootCertStore, ServerConfig};
use serde::{Deserialize, Serialize};

pub use identity::{NAME_LEN_MAX, PeerIdentity, Role, URI_PREFIX, UserRole};
pub use rustls;
pub use tokio_rustls;

#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("reading {}: {error}", path.display())]
    Read {
        path: PathBuf,
        error: std::io::Error,
    },
    #[error("writing {}: {error}", path.display())]
    Write {
        path: PathBuf,
        error: std::io::Error,
    },
    #[error("{} already exists; refusing to overwrite it", path.display())]
    Exists { path: PathBuf },
    #[error("{}: {reason}", path.display())]
    BadPem { path: PathBuf, reason: String },
    #[error("invalid certificate: {0}")]
    Certificate(String),
    #[error("no Tribune identity: {0}")]
    NoIdentity(String),
    #[error("invalid identity {identity:?}: {reason}")]
    BadIdentity { identity: String, reason: String },
    #[error("TLS configuration: {0}")]
    Config(String),
    #[error("issuing a certificate: {0}")]
    Issue(String),
    #[error("invalid address {addr:?}: {reason}")]
    BadAddress { addr: String, reason: String },
}

/// The three files a TLS-speaking process needs: the CA bundle it trusts, its certificate and
/// its private key (PEM).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TlsFiles {
    /// CA certificate(s) to trust; several during a CA rotation.
    pub ca: PathBuf,
    pub cert: PathBuf,
    pub key: PathBuf,
}

impl TlsFiles {
    /// `DIR/ca.pem`, `DIR/STEM.pem`, `DIR/STEM.key` — the layout `tribune ca` writes.
    pub fn in_dir(dir: &Path, stem: &str) -> Self {
        Self {
            ca: dir.join(ca::CA_CERT),
            cert: dir.join(format!("{stem}.pem")),
            key: dir.join(format!("{stem}.key")),
        }
    }
}

/// The process-wide crypto: ring (no aws-lc C build).
pub fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

fn read(path: &Path) -> Result<Vec<u8>, TlsError> {
    std::fs::read(path).map_err(|error| TlsError::Read {
        path: path.to_path_buf(),
        error,
    })
}

fn certs_from_pem(path: &Path, pem: &[u8]) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let certs = CertificateDer::pem_slice_iter(pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| TlsError::BadPem {
            path: path.to_path_buf(),
            reason: format!("not a PEM certificate file: {e}"),
        })?;
    if certs.is_empty() {
        return Err(TlsError::BadPem {
            path: path.to_path_buf(),
            reason: "no CERTIFICATE block in it".into(),
        });
    }
    Ok(certs)
}

fn key_from_pem(path: &Path, pem: &[u8]) -> Result<PrivateKeyDer<'static>, TlsError> {
    PrivateKeyDer::from_pem_slice(pem).map_err(|e| TlsError::BadPem {
        path: path.to_path_buf(),
        reason: format!("not a PEM private key: {e}"),
    })
}

fn roots_from_pem(path: &Path, pem: &[u8]) -> Result<RootCertStore, TlsError> {
    let mut roots = RootCertStore::empty();
    for c in certs_from_pem(path, pem)? {
        roots.add(c).map_err(|e| TlsError::BadPem {
            path: path.to_path_buf(),
            reason: format!("not a usable CA certificate: {e}"),
        })?;
    }
    Ok(roots)
}

/// A certificate chain and its key, loaded and checked to belong together.
#[derive(Clone)]
struct LoadedIdentity {
    cert_pem: Vec<u8>,
    key_pem: Vec<u8>,
    chain: Vec<CertificateDer<'static>>,
    identity: PeerIdentity,
}

impl std::fmt::Debug for LoadedIdentity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never print the key.
        f.debug_struct("LoadedIdentity")
            .field("identity", &self.identity)
            .finish_non_exhaustive()
    }
}

impl LoadedIdentity {
    fn load(cert: &Path, key: &Path) -> Result<Self, TlsError> {
        let cert_pem = read(cert)?;
        let key_pem = read(key)?;
        let chain = certs_from_pem(cert, &cert_pem)?;
        let private = key_from_pem(key, &key_pem)?;
        let signing = provider()
            .key_provider
            .load_private_key(private)
            .map_err(|e| TlsError::BadPem {
                path: key.to_path_buf(),
                reason: format!("unsupported private key: {e}"),
            })?;
        let certified = rustls::sign::CertifiedKey::new(chain.clone(), signing);
        certified.keys_match().map_err(|e| {
            TlsError::Config(format!(
                "{} and {} do not belong together: {e}",
                cert.display(),
                key.display()
            ))
        })?;
        let identity = PeerIdentity::from_cert_der(&chain[0]).map_err(|e| TlsError::BadPem {
            path: cert.to_path_buf(),
            reason: e.to_string(),
        })?;
        Ok(Self {
            cert_pem,
            key_pem,
            chain,
            identity,
        })
    }

    fn key(&self, path_hint: &Path) -> Result<PrivateKeyDer<'static>, TlsError> {
        key_from_pem(path_hint, &self.key_pem)
    }
}

/// A server's TLS: its configuration and the identity its own certificate names.
#[derive(Clone, Debug)]
pub struct ServerTls {
    pub config: Arc<ServerConfig>,
    pub identity: PeerIdentity,
}

/// Loads a server configuration: serves `files.cert`, verifies client certificates against
/// `files.ca` but lets clients without a certificate in (services check [`PeerIdentity`]).
/// ALPN offers h2 and http/1.1 (gRPC and HTTP/JSON share the listener).
pub fn server_config(files: &TlsFiles) -> Result<ServerTls, TlsError> {
    let ca_pem = read(&files.ca)?;
    let roots = Arc::new(roots_from_pem(&files.ca, &ca_pem)?);
    let own = LoadedIdentity::load(&files.cert, &files.key)?;
    let verifier = WebPkiClientVerifier::builder_with_provider(roots, provider())
        .allow_unauthenticated()
        .build()
        .map_err(|e| TlsError::Config(format!("client certificate verifier: {e}")))?;
    let mut config = ServerConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(|e| TlsError::Config(e.to_string()))?
        .with_client_cert_verifier(verifier)
        .with_single_cert(own.chain.clone(), own.key(&files.key)?)
        .map_err(|e| TlsError::Config(format!("{}: {e}", files.cert.display())))?;
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(ServerTls {
        config: Arc::new(config),
        identity: own.identity,
    })
}

/// A client's TLS: the CA it trusts, and optionally a certificate to present.
#[derive(Clone, Debug)]
pub struct ClientTls {
    ca_path: PathBuf,
    ca_pem: Vec<u8>,
    roots: Arc<RootCertStore>,
    identity: Option<(LoadedIdentity, PathBuf)>,
}

impl ClientTls {
    /// Loads the CA bundle and, when given, a certificate + key to present.
    pub fn load(ca: &Path, identity: Option<(&Path, &Path)>) -> Result<Self, TlsError> {
        let ca_pem = read(ca)?;
        let roots = Arc::new(roots_from_pem(ca, &ca_pem)?);
        let identity = match identity {
            Some((cert, key)) => Some((LoadedIdentity::load(cert, key)?, key.to_path_buf())),
            None => None,
        };
        Ok(Self {
            ca_path: ca.to_path_buf(),
            ca_pem,
            roots,
            identity,
        })
    }

    /// Loads all three files: CA, certificate, key.
    pub fn from_files(files: &TlsFiles) -> Result<Self, TlsError> {
        Self::load(&files.ca, Some((&files.cert, &files.key)))
    }

    /// The identity this client presents, if any.
    pub fn identity(&self) -> Option<&PeerIdentity> {
        self.identity.as_ref().map(|(l, _)| &l.identity)
    }

    /// A rustls client configuration: servers are verified against the CA (and the name
    /// dialled); the client certificate is presented when one was loaded.
    pub fn rustls_config(&self, alpn: &[&[u8]]) -> Result<ClientConfig, TlsError> {
        let builder = ClientConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()
            .map_err(|e| TlsError::Config(e.to_string()))?
            .with_root_certificates(self.roots.clone());
        let mut config = match &self.identity {
            Some((l, key_path)) => builder
                .with_client_auth_cert(l.chain.clone(), l.key(key_path)?)
                .map_err(|e| TlsError::Config(format!("client certificate: {e}")))?,
            None => builder.with_no_client_auth(),
        };
        config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
        Ok(config)
    }

    /// tonic's TLS settings for the same CA and certificate.
    pub fn tonic_config(&self) -> tonic::transport::ClientTlsConfig {
        let mut c = tonic::transport::ClientTlsConfig::new()
            .ca_certificate(tonic::transport::Certificate::from_pem(&self.ca_pem));
        if let Some((l, _)) = &self.identity {
            c = c.identity(tonic::transport::Identity::from_pem(
                &l.cert_pem,
                &l.key_pem,
            ));
        }
        c
    }

    /// A tonic endpoint for `addr` (`HOST:PORT`, or a URL whose scheme is dropped) over TLS:
    /// `https://HOST:PORT`, the server verified against the CA and `HOST`.
    pub fn endpoint(&self, addr: &str) -> Result<tonic::transport::Endpoint, TlsError> {
        endpoint(addr, Some(self))
    }

    pub fn ca_path(&self) -> &Path {
        &self.ca_path
    }

    /// Checks this client's own certificate as a server certificate for `host`, the way a
    /// peer dialling `host` will: it must chain to the CA bundle, be valid now and name `host`.
    /// A missing name is [`OwnCertificate::WrongName`] (the caller decides how bad that is).
    pub fn check_own_certificate(&self, host: &str) -> Result<OwnCertificate, TlsError> {
        use rustls::client::danger::ServerCertVerifier;
        let (l, _) = self
            .identity
            .as_ref()
            .ok_or_else(|| TlsError::Config("no certificate loaded to check".into()))?;
        let name = rustls::pki_types::ServerName::try_from(host.to_string()).map_err(|e| {
            TlsError::BadAddress {
                addr: host.to_string(),
                reason: e.to_string(),
            }
        })?;
        let verifier = rustls::client::WebPkiServerVerifier::builder_with_provider(
            self.roots.clone(),
            provider(),
        )
        .build()
        .map_err(|e| TlsError::Config(format!("server certificate verifier: {e}")))?;
        match verifier.verify_server_cert(
            &l.chain[0],
            &l.chain[1..],
            &name,
            &[],
            rustls::pki_types::UnixTime::now(),
        ) {
            Ok(_) => Ok(OwnCertificate::Valid),
            Err(rustls::Error::InvalidCertificate(
                e @ (rustls::CertificateError::NotValidForName
                | rustls::CertificateError::NotValidForNameContext { .. }),
            )) => Ok(OwnCertificate::WrongName(format!("{e:?}"))),
            Err(e) => Err(TlsError::Certificate(format!(
                "this process's own certificate does not verify against {}: {e}",
                self.ca_path.display()
            ))),
        }
    }
}

/// Outcome of [`ClientTls::check_own_certificate`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum OwnCertificate {
    Valid,
    /// Chains to the CA and is current, but does not name the host (the reason says which
    /// names it has).
    WrongName(String),
}

/// A tonic endpoint for `addr` (`HOST:PORT`, or a URL whose scheme is dropped): over TLS with
/// `tls`, plain `http://` without (only for `--insecure` set-ups).
pub fn endpoint(
    addr: &str,
    tls: Option<&ClientTls>,
) -> Result<tonic::transport::Endpoint, TlsError> {
    let bare = addr
        .split_once("://")
        .map_or(addr, |(_, rest)| rest)
        .trim_end_matches('/');
    let bad = |reason: String| TlsError::BadAddress {
        addr: addr.to_string(),
        reason,
    };
    let scheme = if tls.is_some() { "https" } else { "http" };
    let e = tonic::transport::Endpoint::from_shared(format!("{scheme}://{bare}"))
        .map_err(|e| bad(e.to_string()))?;
    match tls {
        Some(t) => e
            .tls_config(t.tonic_config())
            .map_err(|e| bad(e.to_string())),
        None => Ok(e),
    }
}

/// The identity in the leaf of a peer's verified chain (`None` when it presented none).
pub fn peer_identity_of(
    certs: Option<&[CertificateDer<'_>]>,
) -> Option<Result<PeerIdentity, TlsError>> {
    certs
        .and_then(|c| c.first())
        .map(|leaf| PeerIdentity::from_cert_der(leaf))
}

#[cfg(test)]
mod tests;
