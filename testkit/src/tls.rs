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
