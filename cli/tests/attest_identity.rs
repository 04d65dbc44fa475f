//! Who may open an attestation stream (no root needed): only an agent with a certificate from
//! the cluster's CA, and only for the host in that certificate. Every refusal is logged.

mod common;

use std::time::{Duration, Instant};

use common::{Cluster, DEADLINE};
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tribune_proto::v1 as pb;
use tribune_proto::v1::attestation_service_client::AttestationServiceClient;
use tribune_tls::{ClientTls, PeerIdentity, TlsFiles};

async fn open_stream(
    addr: &str,
    tls: &ClientTls,
    host: &str,
) -> Result<tonic::Streaming<pb::ControllerMessage>, String> {
    let channel = tls
        .endpoint(addr)
        .map_err(|e| e.to_string())?
        .connect_timeout(Duration::from_secs(5))
        .connect()
        .await
        .map_err(|e| format!("connect: {e:?}"))?;
    let mut client = AttestationServiceClient::new(channel);
    let (tx, rx) = mpsc::channel(4);
    tx.send(pb::AgentMessage {
        body: Some(pb::agent_message::Body::Hello(pb::Hello {
            host_id: host.into(),
            applied_plan_version: 0,
            enclave_ids: vec![],
            can_enforce: true,
            enforce_problem: String::new(),
            capacity: None,
            labels: Default::default(),
            peer_addr: String::new(),
        })),
    })
    .await
    .map_err(|e| e.to_string())?;
    let r = client
        .attest(ReceiverStream::new(rx))
        .await
        .map_err(|s| format!("{:?}: {}", s.code(), s.message()))?;
    // Keep the sender alive for as long as the caller reads.
    std::mem::forget(tx);
    Ok(r.into_inner())
}

async fn refusals(c: &Cluster, what: &str) -> Vec<serde_json::Value> {
    c.log_entries(1)
        .await
        .unwrap_or_default()
        .into_iter()
        .filter(|e| e["detail"]["event"] == "refused" && e["detail"]["what"] == what)
        .collect()
}

async fn wait_refusal(c: &Cluster, what: &str, needle: &str) {
    let deadline = Instant::now() + DEADLINE;
    loop {
        let r = refusals(c, what).await;
        if r.iter().any(|e| e.to_string().contains(needle)) {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "no logged refusal of {what} mentioning {needle:?}: {r:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_the_clusters_agents_speak_and_only_for_their_own_host() {
    let c = Cluster::start_tls(1, &["--allow-sim-evidence"]);
    c.wait_leader().await;
    let dir = c.tls_dir.clone().expect("tls cluster");
    let addr = c.nodes[&1].addr.clone();
    let ca = dir.join(tribune_tls::ca::CA_CERT);

    // An agent certificate for h1 from the cluster's CA: accepted, challenged.
    let h1 = common::issue(&dir, &PeerIdentity::Agent { host: "h1".into() });
    let tls = ClientTls::load(&ca, Some((&h1.cert, &h1.key))).expect("client tls");
    let mut s = open_stream(&addr, &tls, "h1")
        .await
        .expect("h1 speaks for h1");
    let first = s.message().await.expect("message").expect("a challenge");
    assert!(matches!(
        first.body,
        Some(pb::controller_message::Body::Challenge(_))
    ));

    // The same agent claiming another host: refused and logged.
    let err = open_stream(&addr, &tls, "h2")
        .await
        .expect_err("h1 cannot speak for h2");
    assert!(
        err.contains("PermissionDenied") && err.contains("\"h1\""),
        "{err}"
    );
    wait_refusal(&c, "attestation stream", "cannot speak for").await;

    // A user's client certificate from the same CA: not an agent.
    let user = common::issue(
        &dir,
        &PeerIdentity::User {
            role: tribune_tls::UserRole::Admin,
            name: "alice".into(),
            tenant: None,
        },
    );
    let tls = ClientTls::load(&ca, Some((&user.cert, &user.key))).expect("client tls");
    let err = open_stream(&addr, &tls, "h1")
        .await
        .expect_err("a user is no agent");
    assert!(
        err.contains("PermissionDenied") && err.contains("host agents only"),
        "{err}"
    );

    // An agent certificate from another CA: the handshake fails; the refusal is logged.
    let other = tempfile::tempdir().expect("dir");
    tribune_tls::ca::init(other.path(), 30).expect("other ca");
    let rogue: TlsFiles = {
        tribune_tls::ca::issue(
            other.path(),
            other.path(),
            &PeerIdentity::Agent { host: "h1".into() },
            &Default::default(),
        )
        .expect("issue");
        TlsFiles::in_dir(other.path(), "agent-h1")
    };
    let tls = ClientTls::load(&ca, Some((&rogue.cert, &rogue.key))).expect("client tls");
    let err = match open_stream(&addr, &tls, "h1").await {
        Ok(mut s) => match s.message().await {
            Ok(Some(m)) => panic!("a foreign agent got {m:?}"),
            Ok(None) => "stream closed".to_string(),
            Err(e) => e.to_string(),
        },
        Err(e) => e,
    };
    assert!(!err.is_empty());
    wait_refusal(&c, "tls handshake", "").await;
}
