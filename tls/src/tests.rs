use std::sync::Arc;

use rustls::pki_types::ServerName;
use rustls::{ClientConnection, ServerConnection};

use super::*;
use crate::OwnCertificate;
use crate::ca::IssueOptions;

struct Pki {
    dir: tempfile::TempDir,
}

impl Pki {
    fn new() -> Self {
        let dir = tempfile::tempdir().expect("temp dir");
        ca::init(dir.path(), 30).expect("ca init");
        Self { dir }
    }

    fn issue(&self, role: Role, name: &str) -> TlsFiles {
        let id = PeerIdentity::new(role, name).expect("identity");
        ca::issue(
            self.dir.path(),
            self.dir.path(),
            &id,
            &IssueOptions::default(),
        )
        .expect("issue");
        TlsFiles::in_dir(self.dir.path(), &id.file_stem())
    }

    fn ca(&self) -> PathBuf {
        self.dir.path().join(ca::CA_CERT)
    }
}

/// Runs a TLS handshake in memory; returns the identity the server saw, or the first error.
fn handshake(
    client: &ClientTls,
    server: &ServerTls,
    name: &str,
) -> Result<Option<PeerIdentity>, String> {
    let server_name = ServerName::try_from(name.to_string()).expect("server name");
    let cfg = client.rustls_config(&[b"h2"]).map_err(|e| e.to_string())?;
    let mut c = ClientConnection::new(Arc::new(cfg), server_name).map_err(|e| e.to_string())?;
    let mut s = ServerConnection::new(server.config.clone()).map_err(|e| e.to_string())?;
    for _ in 0..10 {
        while c.wants_write() {
            let mut buf = Vec::new();
            c.write_tls(&mut buf).expect("client writes");
            s.read_tls(&mut &buf[..]).expect("server reads");
            s.process_new_packets()
                .map_err(|e| format!("server: {e}"))?;
        }
        while s.wants_write() {
            let mut buf = Vec::new();
            s.write_tls(&mut buf).expect("server writes");
            c.read_tls(&mut &buf[..]).expect("client reads");
            c.process_new_packets()
                .map_err(|e| format!("client: {e}"))?;
        }
        if !c.is_handshaking() && !s.is_handshaking() {
            return peer_identity_of(s.peer_certificates())
                .transpose()
                .map_err(|e| e.to_string());
        }
    }
    Err("handshake did not finish".into())
}

#[test]
fn issued_certificates_carry_their_identity_and_complete_a_handshake() {
    let pki = Pki::new();
    let ctl = pki.issue(Role::Controller, "1");
    let agent = pki.issue(Role::Agent, "kvm-03");
    let alice = pki.issue(Role::Operator, "alice");

    let server = server_config(&ctl).expect("server config");
    assert_eq!(server.identity, PeerIdentity::Controller { id: 1 });

    for (files, want) in [
        (&ctl, PeerIdentity::Controller { id: 1 }),
        (
            &agent,
            PeerIdentity::Agent {
                host: "kvm-03".into(),
            },
        ),
        (
            &alice,
            PeerIdentity::User {
                role: crate::UserRole::Operator,
                name: "alice".into(),
                tenant: None,
            },
        ),
    ] {
        let client = ClientTls::from_files(files).expect("client config");
        assert_eq!(client.identity(), Some(&want));
        // The controller certificate names 127.0.0.1 and localhost.
        for name in ["127.0.0.1", "localhost"] {
            assert_eq!(
                handshake(&client, &server, name).expect("handshake"),
                Some(want.clone())
            );
        }
    }

    // A client with only the CA gets in at the TLS layer, without an identity.
    let anonymous = ClientTls::load(&pki.ca(), None).expect("ca only");
    assert_eq!(handshake(&anonymous, &server, "127.0.0.1"), Ok(None));
}

#[test]
fn a_client_certificate_from_another_ca_is_rejected() {
    let ours = Pki::new();
    let theirs = Pki::new();
    let server = server_config(&ours.issue(Role::Controller, "1")).expect("server");
    let intruder = theirs.issue(Role::Controller, "2");
    // It trusts our CA (so it would accept our server) but its own certificate is theirs.
    let client =
        ClientTls::load(&ours.ca(), Some((&intruder.cert, &intruder.key))).expect("client config");
    let err = handshake(&client, &server, "127.0.0.1").expect_err("must fail");
    assert!(err.starts_with("server:"), "{err}");
    assert!(
        err.to_lowercase().contains("certificate"),
        "the error names the certificate: {err}"
    );
}

#[test]
fn a_server_certificate_from_another_ca_is_rejected() {
    let ours = Pki::new();
    let theirs = Pki::new();
    let server = server_config(&theirs.issue(Role::Controller, "1")).expect("server");
    let client = ClientTls::load(&ours.ca(), None).expect("ca only");
    let err = handshake(&client, &server, "127.0.0.1").expect_err("must fail");
    assert!(err.starts_with("client:"), "{err}");
    assert!(err.contains("UnknownIssuer"), "{err}");
}

#[test]
fn only_controller_certificates_can_serve_and_names_are_checked() {
    let pki = Pki::new();
    let agent = pki.issue(Role::Agent, "h1");
    // An agent certificate names no host and has no serverAuth usage: nobody accepts it as
    // a server.
    let server = server_config(&agent).expect("rustls loads it");
    let client = ClientTls::load(&pki.ca(), None).expect("ca");
    assert!(handshake(&client, &server, "127.0.0.1").is_err());

    // A controller certificate is valid only for the names it carries.
    let ctl_files = pki.issue(Role::Controller, "1");
    let own = ClientTls::from_files(&ctl_files).expect("own");
    assert_eq!(
        own.check_own_certificate("127.0.0.1").ok(),
        Some(OwnCertificate::Valid)
    );
    assert!(matches!(
        own.check_own_certificate("10.1.2.3"),
        Ok(OwnCertificate::WrongName(_))
    ));
    // Its own certificate from another CA than the bundle it was given: an error.
    let other = Pki::new();
    let mixed =
        ClientTls::load(&other.ca(), Some((&ctl_files.cert, &ctl_files.key))).expect("loads");
    assert!(mixed.check_own_certificate("127.0.0.1").is_err());
    let ctl = server_config(&ctl_files).expect("server");
    let err = handshake(&client, &ctl, "10.1.2.3").expect_err("not its name");
    assert!(err.contains("not valid for name"), "{err}");
}

#[test]
fn extra_sans_are_added_and_files_are_not_overwritten() {
    let pki = Pki::new();
    let id = PeerIdentity::Controller { id: 3 };
    let opts = IssueOptions {
        sans: vec!["ctl-3.example".into(), "10.0.0.13".into()],
        ..IssueOptions::default()
    };
    ca::issue(pki.dir.path(), pki.dir.path(), &id, &opts).expect("issue");
    let server = server_config(&TlsFiles::in_dir(pki.dir.path(), &id.file_stem())).expect("server");
    let client = ClientTls::load(&pki.ca(), None).expect("ca");
    for name in ["ctl-3.example", "10.0.0.13", "127.0.0.1"] {
        assert_eq!(handshake(&client, &server, name), Ok(None), "{name}");
    }
    assert!(matches!(
        ca::issue(pki.dir.path(), pki.dir.path(), &id, &opts),
        Err(TlsError::Exists { .. })
    ));
    ca::issue(
        pki.dir.path(),
        pki.dir.path(),
        &id,
        &IssueOptions {
            overwrite: true,
            ..opts
        },
    )
    .expect("rotation overwrites when asked");
    assert!(matches!(
        ca::init(pki.dir.path(), 30),
        Err(TlsError::Exists { .. })
    ));
}

#[test]
fn key_files_are_private_and_mismatched_pairs_are_refused() {
    let pki = Pki::new();
    let a = pki.issue(Role::Admin, "a");
    let b = pki.issue(Role::Admin, "b");
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        for k in [&a.key, &pki.dir.path().join(ca::CA_KEY)] {
            let mode = std::fs::metadata(k).expect("meta").permissions().mode();
            assert_eq!(mode & 0o077, 0, "{} is readable by others", k.display());
        }
    }
    let err = ClientTls::load(&pki.ca(), Some((&a.cert, &b.key))).expect_err("mismatch");
    assert!(err.to_string().contains("do not belong together"), "{err}");
    let err = ClientTls::load(&a.key, None).expect_err("a key is not a CA");
    assert!(err.to_string().contains("CERTIFICATE"), "{err}");
}

#[test]
fn a_certificate_without_a_tribune_uri_has_no_identity() {
    let key = rcgen::KeyPair::generate().expect("key");
    let cert = rcgen::CertificateParams::new(vec!["example.com".to_string()])
        .expect("params")
        .self_signed(&key)
        .expect("cert");
    let err = PeerIdentity::from_cert_der(cert.der()).expect_err("no identity");
    assert!(matches!(err, TlsError::NoIdentity(_)), "{err}");
    assert!(PeerIdentity::from_cert_der(b"not a certificate").is_err());
}

#[test]
fn endpoints_use_https_with_tls_and_http_without() {
    let pki = Pki::new();
    let client = ClientTls::load(&pki.ca(), None).expect("ca");
    assert_eq!(
        client.endpoint("127.0.0.1:7401").expect("endpoint").uri(),
        "https://127.0.0.1:7401/"
    );
    assert_eq!(
        endpoint("http://127.0.0.1:7401/", None)
            .expect("endpoint")
            .uri(),
        "http://127.0.0.1:7401/"
    );
    assert!(endpoint("not an address with spaces", None).is_err());
}
