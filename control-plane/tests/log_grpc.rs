//! The attestation log over gRPC (`ControlService`), against one in-process controller: the same
//! operations as HTTP, answers that verify, and bad input as `INVALID_ARGUMENT`.

mod common;

use std::time::{Duration, Instant};

use tonic::Code;
use tribune_controller::api::log::{InclusionProofView, SthView};
use tribune_controller::state::LogKey;
use tribune_proto::v1 as pb;
use tribune_proto::v1::control_service_client::ControlServiceClient;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn log_over_grpc() {
    let h = common::start(|_| {}).await;
    let addr = h.addr;
    let mut client = ControlServiceClient::connect(format!("http://{addr}"))
        .await
        .expect("connect");

    client
        .put_policy(pb::PutPolicyRequest {
            name: "p".into(),
            source: "policy \"p\" {}".into(),
            expected_version: None,
        })
        .await
        .expect("put");
    // The head waits for the controller's key to be registered (UNAVAILABLE until then).
    let deadline = Instant::now() + Duration::from_secs(30);
    let head = loop {
        match client.get_log_tree_head(pb::LogTreeHeadRequest {}).await {
            Ok(h) => break h.into_inner(),
            Err(s) if s.code() == Code::Unavailable && Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            Err(s) => panic!("tree head: {s}"),
        }
    };
    let keys = client
        .list_log_keys(pb::LogKeysRequest {})
        .await
        .expect("keys")
        .into_inner()
        .keys;
    let keys = keys
        .into_iter()
        .map(|k| {
            (
                k.key_id.clone(),
                LogKey {
                    key_id: k.key_id,
                    node_id: k.node_id,
                    public_key: k.public_key,
                    registered_at_ms: k.registered_at_ms,
                    log_index: k.log_index,
                },
            )
        })
        .collect();
    let view = SthView {
        tree_size: head.tree_size,
        timestamp_ms: head.timestamp_ms,
        root_hash: head.root_hash,
        signature: head.signature,
        key_id: head.key_id,
        node_id: head.node_id,
        sth: head.sth,
    };
    let sth = view.verify(&keys).expect("signed head verifies");
    assert_eq!(sth.size, 2, "key registration and one policy change");

    let entries = client
        .list_log_entries(pb::LogEntriesRequest {
            kind: Some("policy_change".into()),
            ..Default::default()
        })
        .await
        .expect("entries")
        .into_inner();
    assert_eq!(entries.entries.len(), 1);
    let e = &entries.entries[0];
    let p = client
        .get_log_inclusion_proof(pb::LogInclusionProofRequest {
            leaf_hash: Some(e.leaf_hash.clone()),
            tree_size: Some(sth.size),
            ..Default::default()
        })
        .await
        .expect("proof")
        .into_inner();
    let proof = InclusionProofView {
        leaf_index: p.leaf_index,
        tree_size: p.tree_size,
        leaf_hash: p.leaf_hash,
        root_hash: p.root_hash,
        audit_path: p.audit_path,
    };
    let leaf = tribune_controller::api::log::parse_hash("leaf_hash", &e.leaf_hash).expect("hex");
    proof.verify(&leaf, &sth).expect("included");
    let c1 = client
        .get_log_consistency_proof(pb::LogConsistencyProofRequest {
            first: Some(1),
            second: Some(2),
            stale: false,
        })
        .await
        .expect("consistency")
        .into_inner();
    assert_eq!(c1.proof.len(), 1);

    let bad = client
        .get_log_inclusion_proof(pb::LogInclusionProofRequest {
            index: Some(0),
            leaf_hash: Some(e.leaf_hash.clone()),
            ..Default::default()
        })
        .await
        .expect_err("both index and leaf_hash");
    assert_eq!(bad.code(), Code::InvalidArgument);
    assert!(bad.message().contains("not both"), "{}", bad.message());
    let bad = client
        .list_log_entries(pb::LogEntriesRequest {
            start: 10,
            end: Some(3),
            ..Default::default()
        })
        .await
        .expect_err("end before start");
    assert_eq!(bad.code(), Code::InvalidArgument);

    h.shutdown().await;
}
