//! mTLS between controllers and towards clients, on real processes: Raft over TLS, only
//! controllers may call `RaftService`, and nothing signed by another CA gets in.

mod common;

use std::process::{Command, Output};
use std::time::Duration;

use common::{BIN, Cluster, issue, make_ca};
use tribune_proto::v1::ReadIndexRequest;
use tribune_proto::v1::raft_service_client::RaftServiceClient;
use tribune_tls::{ClientTls, PeerIdentity};

fn cli(args: &[&str], extra: &[String]) -> Output {
    Command::new(BIN)
        .args(args)
        .args(extra)
        .env_remove("TRIBUNE_ENDPOINT")
        .env_remove("TRIBUNE_CA")
        .env_remove("TRIBUNE_CERT")
        .env_remove("TRIBUNE_KEY")
        .output()
        .expect("run tribune")
}

/// Calls `RaftService.Status` on `addr` as whoever `tls` says.
async fn raft_status(addr: &str, tls: &ClientTls) -> Result<(), tonic::Status> {
    let channel = tls
        .endpoint(addr)
        .expect("endpoint")
        .connect_timeout(Duration::from_secs(5))
        .timeout(Duration::from_secs(10))
        .connect()
        .await
        .map_err(|e| tonic::Status::unavailable(format!("connect: {e:?}")))?;
    RaftServiceClient::new(channel)
        .status(ReadIndexRequest {})
        .await
        .map(|_| ())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tls_cluster_replicates_and_admits_only_its_own_controllers_to_raft() {
    let c = Cluster::start_tls(3, &[]);
    let leader = c.wait_leader().await;
    let ca_dir = c.tls_dir.clone().expect("tls cluster");
    let follower = *c
        .nodes
        .keys()
        .find(|id| **id != leader)
        .expect("a follower");

    // A write on a follower is forwarded to the leader over mTLS, and reads back everywhere.
    let endpoint = format!("https://{}", c.nodes[&follower].addr);
    let out = cli(
        &[
            "policy",
            "put",
            "../examples/policies/acme-batch.tribune",
            "--endpoint",
            &endpoint,
        ],
        &c.tls_args(),
    );
    assert!(
        out.status.success(),
        "put via a follower: {}\n{}",
        String::from_utf8_lossy(&out.stderr),
        c.logs()
    );
    for id in c.nodes.keys() {
        let (status, body) = c.get_policy(*id, "acme-batch").await;
        assert_eq!(status, 200, "node {id}: {body}");
    }

    let addr = c.nodes[&leader].addr.clone();
    let ca = ca_dir.join("ca.pem");

    // Another controller certificate from the same CA may call RaftService…
    let peer = issue(&ca_dir, &PeerIdentity::Controller { id: 9 });
    let as_controller = ClientTls::from_files(&peer).expect("tls");
    raft_status(&addr, &as_controller)
        .await
        .expect("a controller certificate is admitted");

    // …an agent's may not, however valid…
    let agent = issue(
        &ca_dir,
        &PeerIdentity::Agent {
            host: "kvm-1".into(),
        },
    );
    let err = raft_status(&addr, &ClientTls::from_files(&agent).expect("tls"))
        .await
        .expect_err("an agent is refused");
    assert_eq!(err.code(), tonic::Code::PermissionDenied, "{err:?}");
    assert!(err.message().contains("for controllers only"), "{err:?}");
    assert!(err.message().contains("kvm-1"), "{err:?}");

    // …nor a caller with no certificate at all.
    let anonymous = ClientTls::load(&ca, None).expect("tls");
    let err = raft_status(&addr, &anonymous)
        .await
        .expect_err("anonymous is refused");
    assert_eq!(err.code(), tonic::Code::PermissionDenied, "{err:?}");
    assert!(err.message().contains("no client certificate"), "{err:?}");

    // A controller certificate from another CA fails the handshake, even when it trusts ours.
    let other = tempfile::tempdir().expect("temp dir");
    make_ca(other.path());
    let rogue = issue(other.path(), &PeerIdentity::Controller { id: 4 });
    let rogue_tls = ClientTls::load(&ca, Some((&rogue.cert, &rogue.key))).expect("tls");
    let err = raft_status(&addr, &rogue_tls)
        .await
        .expect_err("another CA's controller is refused");
    assert_ne!(err.code(), tonic::Code::Ok);
    assert_ne!(
        err.code(),
        tonic::Code::PermissionDenied,
        "refused in the handshake, before any RPC: {err:?}"
    );

    // A client that trusts another CA refuses the cluster's certificate: a clear error, at once.
    let out = cli(
        &["cluster", "status", "--endpoint", &endpoint, "--ca"],
        &[other.path().join("ca.pem").display().to_string()],
    );
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("TLS handshake failed") && stderr.contains("UnknownIssuer"),
        "{stderr}"
    );

    // With the cluster's CA and a client certificate from another CA: the server refuses it.
    let stranger = issue(
        other.path(),
        &PeerIdentity::User {
            role: tribune_tls::UserRole::Admin,
            name: "mallory".into(),
            tenant: None,
        },
    );
    let out = cli(
        &[
            "cluster",
            "status",
            "--endpoint",
            &endpoint,
            "--ca",
            &ca.display().to_string(),
            "--cert",
            &stranger.cert.display().to_string(),
            "--key",
            &stranger.key.display().to_string(),
            "--timeout-secs",
            "2",
        ],
        &[],
    );
    assert!(
        !out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_controller_with_another_cas_certificate_cannot_join() {
    let mut c = Cluster::empty_tls(&[]);
    let addr1 = format!("127.0.0.1:{}", common::free_port());
    c.add_node(1, addr1, vec!["--init".into()]);
    c.wait_leader().await;

    // Controller 2 holds a certificate for the right id, from the wrong CA.
    let other = tempfile::tempdir().expect("temp dir");
    make_ca(other.path());
    issue(other.path(), &PeerIdentity::Controller { id: 2 });
    let addr2 = format!("127.0.0.1:{}", common::free_port());
    let log2 = c.dir.path().join("rogue-2.log");
    let log = std::fs::File::create(&log2).expect("log");
    let rogue = Command::new(BIN)
        .args(["controller", "--id", "2", "--listen", &addr2, "--data-dir"])
        .arg(c.dir.path().join("rogue-2"))
        .arg("--tls-dir")
        .arg(other.path())
        .env("RUST_LOG", "warn,tribune_controller=info")
        .stdin(std::process::Stdio::null())
        .stdout(log.try_clone().expect("log"))
        .stderr(log)
        .spawn()
        .expect("spawn");
    // Killed (-9) and reaped when the test ends, however it ends.
    let _reap = tribune_testkit::process::Guard::new(rogue, std::time::Duration::ZERO);

    // The membership change is the leader's own business and may be recorded (as a learner;
    // not as a voter, which would stall a one-node cluster whatever the cause), but the leader
    // cannot reach it: neither side accepts the other's certificate.
    let out = cli(
        &[
            "cluster",
            "add",
            "--id",
            "2",
            "--address",
            &addr2,
            "--endpoint",
            &c.endpoints(),
        ],
        &c.tls_args(),
    );
    eprintln!(
        "cluster add: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );

    // Wait until the rogue has refused the leader at least once…
    let deadline = std::time::Instant::now() + common::DEADLINE;
    let rogue_log = loop {
        let text = std::fs::read_to_string(&log2).unwrap_or_default();
        if text.contains("TLS handshake failed") {
            break text;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the leader never tried to reach the rogue\nrogue log:\n{text}\n{}",
            c.logs()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert!(
        rogue_log.contains("certificate") || rogue_log.contains("alert"),
        "{rogue_log}"
    );

    // …then check that nothing got through: the leader sees it as unreachable, and the rogue
    // knows no leader and has applied nothing.
    let (_, view) = c.get_json(1, "/v1/cluster").await.expect("leader answers");
    let m2 = view["members"]
        .as_array()
        .and_then(|m| m.iter().find(|m| m["id"] == 2).cloned());
    if let Some(m2) = m2 {
        assert_eq!(m2["healthy"], false, "{view}");
    }
    let other_files = tribune_tls::TlsFiles::in_dir(other.path(), common::TEST_CLIENT_STEM);
    let http = reqwest::Client::builder()
        .use_preconfigured_tls(
            ClientTls::from_files(&other_files)
                .expect("tls")
                .rustls_config(&[b"http/1.1"])
                .expect("config"),
        )
        .timeout(Duration::from_secs(10))
        .build()
        .expect("client");
    let v: serde_json::Value = http
        .get(format!("https://{addr2}/v1/cluster"))
        .send()
        .await
        .expect("the rogue answers its own CA's clients")
        .json()
        .await
        .expect("json");
    assert!(v["leader"].is_null(), "{v}");
    assert!(v["last_applied"].is_null(), "{v}");

    // The cluster itself carries on.
    let (status, body) = c.put_policy(1, "after", "policy \"after\" {}", None).await;
    assert!(status == 200 || status == 201, "{status} {body}");
}

#[test]
fn a_controller_needs_certificates_of_its_own_or_an_explicit_insecure() {
    let dir = tempfile::tempdir().expect("temp dir");
    let run = |extra: &[&str]| {
        Command::new(BIN)
            .args([
                "controller",
                "--id",
                "1",
                "--listen",
                "127.0.0.1:0",
                "--data-dir",
            ])
            .arg(dir.path().join("data"))
            .args(extra)
            .output()
            .expect("run")
    };
    let out = run(&[]);
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("tribune ca init") && stderr.contains("--insecure"),
        "{stderr}"
    );

    let ca = dir.path().join("ca");
    make_ca(&ca);
    let two = issue(&ca, &PeerIdentity::Controller { id: 2 });
    let out = run(&[
        "--ca",
        &two.ca.display().to_string(),
        "--cert",
        &two.cert.display().to_string(),
        "--key",
        &two.key.display().to_string(),
    ]);
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("not of controller 1"), "{stderr}");

    let out = run(&["--insecure", "--tls-dir", &ca.display().to_string()]);
    assert_eq!(out.status.code(), Some(2), "TLS and --insecure together");
}
