//! The gRPC half of the role matrix: every `ControlService` method against every caller.

use super::*;

/// A gRPC method's name, its answer, the callers allowed and those it hides objects from.
type Answer<'a> = (
    &'a str,
    Result<(), tonic::Status>,
    Vec<&'a str>,
    Vec<&'a str>,
);

pub(super) async fn grpc_matrix(c: &Cluster, leader: u64, callers: &Callers) {
    let addr = c.nodes[&leader].addr.clone();
    let readers = [
        "admin",
        "operator",
        "auditor",
        "tenant-acme",
        "tenant-globex",
    ];
    for who in WHO {
        let channel = callers.tls[who]
            .endpoint(&addr)
            .expect("endpoint")
            .connect()
            .await
            .expect("connect");
        let mut g = ControlServiceClient::new(channel);
        let results: Vec<Answer> = vec![
            (
                "ListPolicies",
                g.list_policies(pb::ListRequest { stale: false })
                    .await
                    .map(drop),
                readers.to_vec(),
                vec![],
            ),
            (
                "GetPolicy",
                g.get_policy(pb::GetRequest {
                    name: "acme-pol".into(),
                    stale: false,
                })
                .await
                .map(drop),
                vec!["admin", "operator", "auditor", "tenant-acme"],
                vec!["tenant-globex"],
            ),
            (
                "PutPolicy",
                g.put_policy(pb::PutPolicyRequest {
                    name: "acme-pol".into(),
                    source: ACME_POLICY.into(),
                    expected_version: Some(999),
                })
                .await
                .map(drop),
                vec!["admin", "operator", "tenant-acme"],
                vec![],
            ),
            (
                "DeletePolicy",
                g.delete_policy(pb::DeleteRequest {
                    name: "global".into(),
                    expected_version: Some(999),
                })
                .await
                .map(drop),
                vec!["admin", "operator"],
                vec![],
            ),
            (
                "PlanPolicies",
                g.plan_policies(pb::PlanPoliciesRequest {
                    source: ACME_POLICY.into(),
                    since_s: Some(60),
                    enclaves: None,
                })
                .await
                .map(drop),
                vec!["admin", "operator", "auditor", "tenant-acme"],
                vec![],
            ),
            (
                "ListEnclaves",
                g.list_enclaves(pb::ListRequest { stale: false })
                    .await
                    .map(drop),
                readers.to_vec(),
                vec![],
            ),
            (
                "GetEnclave",
                g.get_enclave(pb::GetRequest {
                    name: "ea".into(),
                    stale: false,
                })
                .await
                .map(drop),
                vec!["admin", "operator", "auditor", "tenant-acme"],
                vec!["tenant-globex"],
            ),
            (
                "DeleteEnclave",
                g.delete_enclave(pb::DeleteRequest {
                    name: "ea".into(),
                    expected_version: Some(999),
                })
                .await
                .map(drop),
                vec!["admin", "operator"],
                vec![],
            ),
            (
                "GetEnclaveReceipt",
                g.get_enclave_receipt(pb::EnclaveReceiptRequest {
                    enclave: "ea".into(),
                    from_ms: None,
                    to_ms: None,
                })
                .await
                .map(drop),
                vec!["admin", "operator", "auditor", "tenant-acme"],
                vec!["tenant-globex"],
            ),
            (
                "ListHosts",
                g.list_hosts(pb::ListRequest { stale: false })
                    .await
                    .map(drop),
                vec!["admin", "operator", "auditor"],
                vec![],
            ),
            (
                // Fits nowhere (no host has capacity): nothing is created.
                "CreateEnclave",
                g.create_enclave(pb::CreateEnclaveRequest {
                    enclave: Some(pb::Enclave {
                        id: "nowhere".into(),
                        tenant: "acme".into(),
                        tee: "sim".into(),
                        requested: Some(pb::Resources {
                            cpu_millicores: 1000,
                            ..Default::default()
                        }),
                        ..Default::default()
                    }),
                })
                .await
                .map(drop),
                vec!["admin", "operator"],
                vec![],
            ),
            (
                "CordonHost",
                g.cordon_host(pb::HostActionRequest {
                    id: "no-such-host".into(),
                })
                .await
                .map(drop),
                vec!["admin"],
                vec![],
            ),
            (
                "UncordonHost",
                g.uncordon_host(pb::HostActionRequest {
                    id: "no-such-host".into(),
                })
                .await
                .map(drop),
                vec!["admin"],
                vec![],
            ),
            (
                "DrainHost",
                g.drain_host(pb::HostActionRequest {
                    id: "no-such-host".into(),
                })
                .await
                .map(drop),
                vec!["admin"],
                vec![],
            ),
            (
                "ClusterStatus",
                g.cluster_status(pb::ClusterStatusRequest {})
                    .await
                    .map(drop),
                vec!["admin", "operator", "auditor"],
                vec![],
            ),
            (
                "GetLogTreeHead",
                g.get_log_tree_head(pb::LogTreeHeadRequest {})
                    .await
                    .map(drop),
                readers.to_vec(),
                vec![],
            ),
            (
                "ListLogKeys",
                g.list_log_keys(pb::LogKeysRequest {}).await.map(drop),
                readers.to_vec(),
                vec![],
            ),
            (
                "ListLogEntries",
                g.list_log_entries(pb::LogEntriesRequest::default())
                    .await
                    .map(drop),
                readers.to_vec(),
                vec![],
            ),
            (
                "GetLogInclusionProof",
                g.get_log_inclusion_proof(pb::LogInclusionProofRequest {
                    index: Some(0),
                    ..Default::default()
                })
                .await
                .map(drop),
                // Entry 0 is a controller's key registration: no tenant's.
                vec!["admin", "operator", "auditor"],
                vec!["tenant-acme", "tenant-globex"],
            ),
            (
                "GetLogConsistencyProof",
                g.get_log_consistency_proof(pb::LogConsistencyProofRequest {
                    first: Some(1),
                    ..Default::default()
                })
                .await
                .map(drop),
                readers.to_vec(),
                vec![],
            ),
        ];
        for (method, result, allowed, hidden) in results {
            let code = result.as_ref().err().map(|s| s.code());
            let ok = match want(&allowed, &hidden, who) {
                Want::Allowed => !matches!(
                    code,
                    Some(tonic::Code::Unauthenticated | tonic::Code::PermissionDenied)
                ),
                Want::Forbidden => code == Some(tonic::Code::PermissionDenied),
                Want::Unauthenticated => code == Some(tonic::Code::Unauthenticated),
                Want::Hidden => code == Some(tonic::Code::NotFound),
            };
            assert!(ok, "gRPC {method} as {who}: got {result:?}");
        }
    }
}
