//! Certificate rotation without a restart: new files on disk + SIGHUP → new connections get
//! the new certificate, the connection opened before keeps working, the process is the same
//! one; files that do not load are refused and the current certificate stays.

mod common;

use std::sync::Arc;
use std::time::{Duration, Instant};

use common::{BIN, Cluster, DEADLINE};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tribune_tls::rustls::pki_types::pem::PemObject;
use tribune_tls::rustls::pki_types::{CertificateDer, ServerName};
use tribune_tls::tokio_rustls::TlsConnector;
use tribune_tls::tokio_rustls::client::TlsStream;

/// A TLS connection to `addr` as the harness's client; with the certificate the server showed.
async fn connect(c: &Cluster, addr: &str) -> (TlsStream<TcpStream>, Vec<u8>) {
    let files = tribune_testkit::tls::client_files(c.tls_dir.as_ref().expect("TLS"));
    let config = tribune_tls::ClientTls::from_files(&files)
        .expect("client tls")
        .rustls_config(&[b"http/1.1"])
        .expect("rustls config");
    let tcp = TcpStream::connect(addr).await.expect("connect");
    let name = ServerName::try_from("127.0.0.1").expect("name");
    let tls = TlsConnector::from(Arc::new(config))
        .connect(name, tcp)
        .await
        .expect("handshake");
    let cert = tls
        .get_ref()
        .1
        .peer_certificates()
        .and_then(|c| c.first())
        .expect("a server certificate")
        .to_vec();
    (tls, cert)
}

/// `GET /healthz` on an open HTTP/1.1 connection; the status line.
async fn healthz(tls: &mut TlsStream<TcpStream>) -> String {
    tls.write_all(b"GET /healthz HTTP/1.1\r\nhost: x\r\n\r\n")
        .await
        .expect("write");
    let mut buf = vec![0u8; 4096];
    let n = tokio::time::timeout(Duration::from_secs(10), tls.read(&mut buf))
        .await
        .expect("an answer in time")
        .expect("read");
    String::from_utf8_lossy(&buf[..n])
        .lines()
        .next()
        .unwrap_or_default()
        .to_string()
}

fn cert_file(c: &Cluster) -> Vec<u8> {
    let path = c.tls_dir.as_ref().expect("TLS").join("controller-1.pem");
    CertificateDer::from_pem_file(&path)
        .expect("a certificate")
        .to_vec()
}

/// `tribune ca issue KIND NAME --force`: a new certificate and key over the old files, as an
/// operator rotates one.
fn reissue(tls_dir: &std::path::Path, kind: &str, name: &str) {
    let out = std::process::Command::new(BIN)
        .args(["ca", "issue", kind, name, "--force", "--dir"])
        .arg(tls_dir)
        .output()
        .expect("tribune ca issue");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

fn sighup(c: &Cluster) {
    sighup_pid(c.nodes[&1].child.as_ref().expect("running").id());
}

fn sighup_pid(pid: u32) {
    // SAFETY: kill(2) on a child process this test started and still owns.
    let r = unsafe { libc::kill(pid as i32, libc::SIGHUP) };
    assert_eq!(r, 0, "kill -HUP {pid}");
}

/// New connections until one shows `want`.
async fn wait_for_cert(c: &Cluster, addr: &str, want: &[u8], what: &str) {
    let deadline = Instant::now() + DEADLINE;
    loop {
        let (_, cert) = connect(c, addr).await;
        if cert == want {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{what}: still the old certificate"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sighup_serves_new_certificates_to_new_connections_without_a_restart() {
    let mut c = Cluster::start_tls(1, &[]);
    c.wait_leader().await;
    let addr = c.nodes[&1].addr.clone();
    let pid = c.nodes[&1].child.as_ref().expect("running").id();
    let tls_dir = c.tls_dir.clone().expect("TLS");

    let (mut old, first) = connect(&c, &addr).await;
    assert_eq!(first, cert_file(&c));
    assert!(healthz(&mut old).await.contains("200"));

    // Rotate: a new certificate for the same controller, as an operator would.
    reissue(&tls_dir, "controller", "1");
    let second = cert_file(&c);
    assert_ne!(first, second, "a new certificate was issued");
    sighup(&c);
    wait_for_cert(&c, &addr, &second, "after SIGHUP").await;

    // The connection from before is still served, and the process is the same one.
    assert!(
        healthz(&mut old).await.contains("200"),
        "the old connection was dropped"
    );
    let node = c.nodes.get_mut(&1).expect("node");
    let child = node.child.as_mut().expect("running");
    assert_eq!(child.id(), pid);
    assert!(
        child.try_wait().expect("wait").is_none(),
        "the controller exited"
    );

    // Files that do not load: refused, the current certificate stays, the process lives.
    std::fs::write(tls_dir.join("controller-1.pem"), "not a certificate").expect("write");
    sighup(&c);
    let deadline = Instant::now() + Duration::from_secs(2);
    while Instant::now() < deadline {
        let (_, cert) = connect(&c, &addr).await;
        assert_eq!(cert, second, "a broken file replaced the certificate");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let node = c.nodes.get_mut(&1).expect("node");
    let child = node.child.as_mut().expect("running");
    assert!(
        child.try_wait().expect("wait").is_none(),
        "the controller exited"
    );
    let log = std::fs::read_to_string(&node.log).unwrap_or_default();
    assert!(log.contains("TLS certificates not reloaded"), "{log}");
}

/// The SHA-256 (hex) of the certificate in `path`, as the controllers record it.
fn fingerprint(path: &std::path::Path) -> String {
    use sha2::Digest;
    hex::encode(sha2::Sha256::digest(
        CertificateDer::from_pem_file(path).expect("a certificate"),
    ))
}

/// The agent certificate fingerprint the controllers hold for `host`, once it is `want`.
async fn wait_host_cert(c: &Cluster, host: &str, want: &str, what: &str) {
    let deadline = Instant::now() + DEADLINE;
    loop {
        let leader = c.wait_leader().await;
        if let Some((200, hosts)) = c.get_json(leader, "/v1/hosts").await
            && hosts
                .as_array()
                .into_iter()
                .flatten()
                .any(|h| h["id"] == host && h["agent_cert_fingerprint"] == want)
        {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{what}: host {host} never showed certificate {want}\n{}",
            c.logs()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_agent_reloads_its_certificate_on_sighup_and_reconnects_with_it() {
    if common::skip_unless_root(
        "an_agent_reloads_its_certificate_on_sighup_and_reconnects_with_it",
        "the host agent needs cgroups",
    ) {
        return;
    }
    let mut c = Cluster::start_tls(3, &["--allow-sim-evidence"]);
    c.wait_leader().await;
    let tls_dir = c.tls_dir.clone().expect("TLS");
    // Streams to controller 1 first (the one stopped below).
    let controllers: Vec<String> = c.nodes.values().map(|n| n.addr.clone()).collect();
    let mut agent = common::start_agent(&c, "rot", "h1", controllers, vec![]);
    let cert = tls_dir.join("agent-h1.pem");
    let first = fingerprint(&cert);
    wait_host_cert(&c, "h1", &first, "first connection").await;

    reissue(&tls_dir, "agent", "h1");
    let second = fingerprint(&cert);
    assert_ne!(first, second, "a new certificate was issued");
    let pid = agent.child.id();
    sighup_pid(pid);
    let deadline = Instant::now() + DEADLINE;
    while !agent.log_text().contains("TLS certificates reloaded") {
        assert!(Instant::now() < deadline, "no reload\n{}", agent.log_text());
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(
        agent.child.try_wait().expect("wait").is_none(),
        "the agent exited on SIGHUP"
    );
    // Its next connection (the controller it streams to is gone) presents the new certificate.
    c.kill9(1);
    wait_host_cert(&c, "h1", &second, "after the reconnect").await;
    assert_eq!(agent.child.id(), pid, "the same agent process");
}
