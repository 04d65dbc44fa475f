//! TLS material for a local cluster (a test's, `tribune dev`'s): a CA of its own in a directory
//! of the cluster's, a certificate per controller and agent, and an admin client certificate
//! for the harness and the CLI. Files are named as `tribune-tls` names them (`ca.pem`,
//! `ROLE-NAME.pem`/`.key`).

use std::path::Path;

use tribune_tls::{PeerIdentity, TlsFiles, UserRole, ca};

use crate::Error;

/// Name of the harness's (admin) client certificate in a test cluster's CA directory.
pub const TEST_CLIENT: &str = "test";
/// File stem of that certificate.
pub const TEST_CLIENT_STEM: &str = "admin-test";

/// Days a test CA is valid.
const CA_DAYS: u32 = 30;

/// The identity of the harness's client certificate.
pub fn test_client() -> PeerIdentity {
    PeerIdentity::User {
        role: UserRole::Admin,
        name: TEST_CLIENT.into(),
        tenant: None,
    }
}

/// Creates a CA in `dir` and issues the harness's client certificate ([`TEST_CLIENT`]).
pub fn try_make_ca(dir: &Path) -> Result<TlsFiles, Error> {
    ca::init(dir, CA_DAYS)?;
    try_issue(dir, &test_client())
}

/// Issues a certificate for `id` from the CA in `dir` unless one exists; returns its files.
pub fn try_issue(dir: &Path, id: &PeerIdentity) -> Result<TlsFiles, Error> {
    let files = TlsFiles::in_dir(dir, &id.file_stem());
    if !files.cert.exists() {
        ca::issue(dir, dir, id, &Default::default())?;
    }
    Ok(files)
}

/// [`try_make_ca`] for tests.
pub fn make_ca(dir: &Path) -> TlsFiles {
    try_make_ca(dir).expect("a test CA and its client certificate")
}

/// [`try_issue`] for tests.
pub fn issue(dir: &Path, id: &PeerIdentity) -> TlsFiles {
    try_issue(dir, id).unwrap_or_else(|e| panic!("issuing a certificate for {id}: {e}"))
}

/// The files of the harness's client certificate in the CA directory `dir`.
pub fn client_files(dir: &Path) -> TlsFiles {
    TlsFiles::in_dir(dir, TEST_CLIENT_STEM)
}

/// `--ca … --cert … --key …` for the CLI's client verbs, with the harness's certificate.
pub fn client_args(dir: &Path) -> Vec<String> {
    let f = client_files(dir);
    vec![
        "--ca".into(),
        f.ca.display().to_string(),
        "--cert".into(),
        f.cert.display().to_string(),
        "--key".into(),
        f.key.display().to_string(),
    ]
}

/// Issues a new certificate (with a new key) for `id` from the CA in `dir` into `out`, as a
/// certificate rotation does; returns its files (the CA file stays `dir`'s).
pub fn reissue(dir: &Path, out: &Path, id: &PeerIdentity) -> TlsFiles {
    std::fs::create_dir_all(out).unwrap_or_else(|e| panic!("mkdir {}: {e}", out.display()));
    ca::issue(dir, out, id, &Default::default())
        .unwrap_or_else(|e| panic!("re-issuing a certificate for {id}: {e}"));
    TlsFiles {
        ca: dir.join("ca.pem"),
        ..TlsFiles::in_dir(out, &id.file_stem())
    }
}

/// The DER bytes of the (first) certificate in the PEM file at `path`.
pub fn cert_der(path: &Path) -> Vec<u8> {
    use tribune_tls::rustls::pki_types::CertificateDer;
    use tribune_tls::rustls::pki_types::pem::PemObject;
    CertificateDer::from_pem_file(path)
        .unwrap_or_else(|e| panic!("reading {}: {e}", path.display()))
        .to_vec()
}

/// A TLS server (mTLS, with the server files it is given) that records the certificate each
/// client presents and hangs up: which certificate a dialler uses, observed from outside.
pub struct CertRecorder {
    /// `127.0.0.1:PORT`.
    pub addr: String,
    seen: std::sync::Arc<std::sync::Mutex<Vec<Vec<u8>>>>,
    task: tokio::task::JoinHandle<()>,
}

impl CertRecorder {
    /// Listens on a free loopback port (call inside a Tokio runtime).
    pub async fn start(server: &TlsFiles) -> CertRecorder {
        let config = tribune_tls::server_config(server)
            .expect("the recorder's server config")
            .config;
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind the recorder");
        let addr = listener.local_addr().expect("its address").to_string();
        let seen = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let record = seen.clone();
        let task = tokio::spawn(async move {
            let acceptor = tribune_tls::tokio_rustls::TlsAcceptor::from(config);
            while let Ok((tcp, _)) = listener.accept().await {
                if let Ok(tls) = acceptor.accept(tcp).await
                    && let Some(c) = tls.get_ref().1.peer_certificates().and_then(|c| c.first())
                {
                    record
                        .lock()
                        .unwrap_or_else(|p| p.into_inner())
                        .push(c.to_vec());
                }
            }
        });
        CertRecorder { addr, seen, task }
    }

    /// The client certificates presented so far (DER), in order.
    pub fn seen(&self) -> Vec<Vec<u8>> {
        self.seen.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }
}

impl Drop for CertRecorder {
    fn drop(&mut self) {
        self.task.abort();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_ca_issues_each_identity_once() {
        let d = crate::TestDir::new("tribune-testkit-tls-");
        let client = make_ca(d.path());
        assert!(client.cert.exists() && client.key.exists() && client.ca.exists());
        assert_eq!(client.cert, client_files(d.path()).cert);
        let c1 = issue(d.path(), &PeerIdentity::Controller { id: 1 });
        let pem = std::fs::read(&c1.cert).expect("cert");
        let again = issue(d.path(), &PeerIdentity::Controller { id: 1 });
        assert_eq!(
            std::fs::read(&again.cert).expect("cert"),
            pem,
            "not reissued"
        );
        tribune_tls::ClientTls::from_files(&client).expect("a usable client certificate");
        assert_eq!(client_args(d.path()).len(), 6);
    }
}
