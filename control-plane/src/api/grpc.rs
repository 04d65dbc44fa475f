//! gRPC front end of the control API (`ControlService`), over the same operations as HTTP.

use std::sync::Arc;

use tonic::{Code, Request, Response, Status};
use tribune_proto::v1 as pb;
use tribune_proto::v1::control_service_server::ControlService;

use super::log;
use super::problem::Problem;
use super::service::Api;
use crate::auth::Principal;
use crate::state::{Enclave, Expect, Host, LeafFormat, Policy, Resources};

pub struct ControlServer {
    pub api: Arc<Api>,
}

impl From<Problem> for Status {
    fn from(p: Problem) -> Self {
        let code = match p.status {
            400 => Code::InvalidArgument,
            401 => Code::Unauthenticated,
            403 => Code::PermissionDenied,
            404 => Code::NotFound,
            409 => Code::Aborted,
            413 => Code::ResourceExhausted,
            422 => Code::FailedPrecondition,
            503 => Code::Unavailable,
            _ => Code::Internal,
        };
        Status::new(code, p.detail)
    }
}

fn policy(p: Policy) -> pb::Policy {
    pb::Policy {
        name: p.name,
        version: p.version,
        source: p.source,
        created_by: p.created_by,
        updated_by: p.updated_by,
        created_at_ms: p.created_at_ms,
        updated_at_ms: p.updated_at_ms,
    }
}

fn resources(r: Resources) -> pb::Resources {
    pb::Resources {
        cpu_millicores: r.cpu_millicores,
        memory_bytes: r.memory_bytes,
        egress_bits_per_sec: r.egress_bits_per_sec,
        ingress_bits_per_sec: r.ingress_bits_per_sec,
        gpu_percent: r.gpu_percent,
    }
}

pub(super) fn enclave(e: Enclave) -> pb::Enclave {
    pb::Enclave {
        id: e.id,
        tenant: e.tenant,
        labels: e.labels.into_iter().collect(),
        tee: e.tee.to_string(),
        expected_measurements: e.expected_measurements,
        requested: Some(resources(e.requested)),
        priority: e.priority,
        placement: e.placement.map(|p| pb::Placement {
            host: p.host,
            epoch: p.epoch,
        }),
        state: serde_json::to_value(e.state)
            .ok()
            .and_then(|v| v.as_str().map(str::to_string))
            .unwrap_or_default(),
        scheduling: e.scheduling.map(|s| pb::Scheduling {
            preempt: s.preempt,
            host_selector: s.host_selector.into_iter().collect(),
            anti_affinity: s.anti_affinity,
            min_tee_generation: s.min_tee_generation,
            strategy: match s.strategy {
                crate::state::Strategy::BinPack => "bin_pack",
                crate::state::Strategy::Spread => "spread",
            }
            .into(),
        }),
        launch_json: e.launch.map(|l| l.to_string()).unwrap_or_default(),
    }
}

pub(super) fn host(h: Host) -> pb::Host {
    pb::Host {
        id: h.id,
        address: h.address,
        capacity: Some(resources(h.capacity)),
        tee: h.tee.to_string(),
        attestation_status: h.attestation_status,
        last_heartbeat_ms: h.last_heartbeat_ms,
        agent_cert_fingerprint: h.agent_cert_fingerprint,
        tee_generation: h.tee_generation,
        labels: h.labels.into_iter().collect(),
        schedulable: match h.schedulable {
            crate::state::Schedulable::Ready => "ready",
            crate::state::Schedulable::Cordoned => "cordoned",
            crate::state::Schedulable::Draining => "draining",
        }
        .into(),
    }
}

fn expect(v: Option<u64>) -> Expect {
    match v {
        None => Expect::Any,
        Some(0) => Expect::Absent,
        Some(n) => Expect::Version(n),
    }
}

/// The request's `idempotency-key` metadata (docs/api.md), if any.
pub(super) fn idempotency_key<T>(req: &Request<T>) -> Result<Option<String>, Status> {
    req.metadata()
        .get("idempotency-key")
        .map(|v| {
            v.to_str().map(str::to_string).map_err(|_| {
                Status::invalid_argument("idempotency-key metadata must be printable ASCII")
            })
        })
        .transpose()
}

impl ControlServer {
    /// The caller of this request: its client certificate or its `authorization: Bearer …`
    /// metadata, exactly as for HTTP. UNAUTHENTICATED with what to do when there is none.
    pub(super) fn who<T>(&self, req: &Request<T>) -> Result<Principal, Status> {
        let peer = crate::tls::peer_identity(req.extensions());
        let authorization = req.metadata().get("authorization").map(|v| v.as_bytes());
        self.api
            .authenticate(peer, authorization)
            .map_err(|e| Status::from(Problem::from(e)))
    }
}

#[tonic::async_trait]
impl ControlService for ControlServer {
    async fn list_policies(
        &self,
        req: Request<pb::ListRequest>,
    ) -> Result<Response<pb::ListPoliciesResponse>, Status> {
        let who = self.who(&req)?;
        let ps = self.api.list_policies(&who, req.get_ref().stale).await?;
        Ok(Response::new(pb::ListPoliciesResponse {
            policies: ps.into_iter().map(policy).collect(),
        }))
    }

    async fn get_policy(
        &self,
        req: Request<pb::GetRequest>,
    ) -> Result<Response<pb::Policy>, Status> {
        let who = self.who(&req)?;
        let r = req.get_ref();
        Ok(Response::new(policy(
            self.api.get_policy(&who, &r.name, r.stale).await?,
        )))
    }

    async fn put_policy(
        &self,
        req: Request<pb::PutPolicyRequest>,
    ) -> Result<Response<pb::Policy>, Status> {
        let who = self.who(&req)?;
        let key = idempotency_key(&req)?;
        let r = req.into_inner();
        let (p, _) = self
            .api
            .put_policy(&who, &r.name, r.source, expect(r.expected_version), key)
            .await?;
        Ok(Response::new(policy(p)))
    }

    async fn delete_policy(
        &self,
        req: Request<pb::DeleteRequest>,
    ) -> Result<Response<pb::DeleteResponse>, Status> {
        let who = self.who(&req)?;
        let key = idempotency_key(&req)?;
        let r = req.into_inner();
        let v = self
            .api
            .delete_policy(&who, &r.name, expect(r.expected_version), key)
            .await?;
        Ok(Response::new(pb::DeleteResponse { deleted_version: v }))
    }

    async fn delete_enclave(
        &self,
        req: Request<pb::DeleteRequest>,
    ) -> Result<Response<pb::DeleteResponse>, Status> {
        let who = self.who(&req)?;
        let key = idempotency_key(&req)?;
        let r = req.into_inner();
        let v = self
            .api
            .delete_enclave(&who, &r.name, expect(r.expected_version), key)
            .await?;
        Ok(Response::new(pb::DeleteResponse { deleted_version: v }))
    }

    async fn plan_policies(
        &self,
        req: Request<pb::PlanPoliciesRequest>,
    ) -> Result<Response<pb::PolicyPlan>, Status> {
        let who = self.who(&req)?;
        let r = req.into_inner();
        let plan = self
            .api
            .plan_policies(
                &who,
                super::plan::PlanRequest {
                    source: r.source,
                    since_s: r.since_s,
                    enclaves: r.enclaves,
                },
            )
            .await?;
        let plan_json = serde_json::to_vec(&plan).map_err(|e| Status::internal(e.to_string()))?;
        Ok(Response::new(pb::PolicyPlan { plan_json }))
    }

    async fn list_enclaves(
        &self,
        req: Request<pb::ListRequest>,
    ) -> Result<Response<pb::ListEnclavesResponse>, Status> {
        let who = self.who(&req)?;
        let es = self.api.list_enclaves(&who, req.get_ref().stale).await?;
        Ok(Response::new(pb::ListEnclavesResponse {
            enclaves: es.into_iter().map(enclave).collect(),
        }))
    }

    async fn get_enclave(
        &self,
        req: Request<pb::GetRequest>,
    ) -> Result<Response<pb::Enclave>, Status> {
        let who = self.who(&req)?;
        let r = req.get_ref();
        Ok(Response::new(enclave(
            self.api.get_enclave(&who, &r.name, r.stale).await?,
        )))
    }

    async fn get_enclave_receipt(
        &self,
        req: Request<pb::EnclaveReceiptRequest>,
    ) -> Result<Response<pb::EnclaveReceipt>, Status> {
        let who = self.who(&req)?;
        let r = req.get_ref();
        let receipt = self
            .api
            .enclave_receipt(
                &who,
                &r.enclave,
                super::receipt::ReceiptQuery {
                    from: r.from_ms,
                    to: r.to_ms,
                },
            )
            .await?;
        let receipt_json = tribune_receipt::receipt::to_file_bytes(&receipt)
            .map_err(|e| Status::internal(e.to_string()))?;
        Ok(Response::new(pb::EnclaveReceipt { receipt_json }))
    }

    async fn list_hosts(
        &self,
        req: Request<pb::ListRequest>,
    ) -> Result<Response<pb::ListHostsResponse>, Status> {
        let who = self.who(&req)?;
        let hs = self.api.list_hosts(&who, req.get_ref().stale).await?;
        Ok(Response::new(pb::ListHostsResponse {
            hosts: hs.into_iter().map(host).collect(),
        }))
    }

    async fn create_enclave(
        &self,
        req: Request<pb::CreateEnclaveRequest>,
    ) -> Result<Response<pb::Enclave>, Status> {
        self.create_enclave_rpc(req).await
    }

    async fn cordon_host(
        &self,
        req: Request<pb::HostActionRequest>,
    ) -> Result<Response<pb::Host>, Status> {
        self.set_schedulable_rpc(req, crate::state::Schedulable::Cordoned)
            .await
    }

    async fn uncordon_host(
        &self,
        req: Request<pb::HostActionRequest>,
    ) -> Result<Response<pb::Host>, Status> {
        self.set_schedulable_rpc(req, crate::state::Schedulable::Ready)
            .await
    }

    async fn drain_host(
        &self,
        req: Request<pb::HostActionRequest>,
    ) -> Result<Response<pb::DrainResponse>, Status> {
        self.drain_host_rpc(req).await
    }

    async fn migrate_enclave(
        &self,
        req: Request<pb::MigrateEnclaveRequest>,
    ) -> Result<Response<pb::Migration>, Status> {
        self.migrate_enclave_rpc(req).await
    }

    async fn list_migrations(
        &self,
        req: Request<pb::ListRequest>,
    ) -> Result<Response<pb::ListMigrationsResponse>, Status> {
        self.list_migrations_rpc(req).await
    }

    async fn get_log_tree_head(
        &self,
        req: Request<pb::LogTreeHeadRequest>,
    ) -> Result<Response<pb::LogTreeHead>, Status> {
        let who = self.who(&req)?;
        let h = self.api.log_sth(&who).await?;
        Ok(Response::new(pb::LogTreeHead {
            tree_size: h.tree_size,
            timestamp_ms: h.timestamp_ms,
            root_hash: h.root_hash,
            signature: h.signature,
            key_id: h.key_id,
            node_id: h.node_id,
            sth: h.sth,
        }))
    }

    async fn list_log_keys(
        &self,
        req: Request<pb::LogKeysRequest>,
    ) -> Result<Response<pb::LogKeysResponse>, Status> {
        let who = self.who(&req)?;
        let keys = self.api.log_keys(&who).await?;
        Ok(Response::new(pb::LogKeysResponse {
            keys: keys
                .into_iter()
                .map(|k| pb::LogKeyInfo {
                    key_id: k.key_id,
                    node_id: k.node_id,
                    public_key: k.public_key,
                    registered_at_ms: k.registered_at_ms,
                    log_index: k.log_index,
                })
                .collect(),
        }))
    }

    async fn list_log_entries(
        &self,
        req: Request<pb::LogEntriesRequest>,
    ) -> Result<Response<pb::LogEntriesResponse>, Status> {
        let who = self.who(&req)?;
        let r = req.into_inner();
        let page = self
            .api
            .log_entries(
                &who,
                log::EntriesQuery {
                    start: r.start,
                    end: r.end,
                    kind: r.kind,
                    subject: r.subject,
                    stale: r.stale,
                },
            )
            .await?;
        Ok(Response::new(pb::LogEntriesResponse {
            tree_size: page.tree_size,
            entries: page
                .entries
                .into_iter()
                .map(|e| pb::LogEntryInfo {
                    detail_json: e.entry.detail_value().to_string(),
                    index: e.entry.index,
                    at_ms: e.entry.at_ms,
                    kind: e.entry.kind().as_str().to_string(),
                    subject: e.entry.subject,
                    leaf_format: match e.entry.format {
                        LeafFormat::V1 => 0,
                        f => f.number() as u32,
                    },
                    leaf_hash: e.leaf_hash,
                })
                .collect(),
            next: page.next,
        }))
    }

    async fn get_log_inclusion_proof(
        &self,
        req: Request<pb::LogInclusionProofRequest>,
    ) -> Result<Response<pb::LogInclusionProof>, Status> {
        let who = self.who(&req)?;
        let r = req.into_inner();
        let p = self
            .api
            .log_inclusion(
                &who,
                log::InclusionQuery {
                    index: r.index,
                    leaf_hash: r.leaf_hash,
                    tree_size: r.tree_size,
                    stale: r.stale,
                },
            )
            .await?;
        Ok(Response::new(pb::LogInclusionProof {
            leaf_index: p.leaf_index,
            tree_size: p.tree_size,
            leaf_hash: p.leaf_hash,
            root_hash: p.root_hash,
            audit_path: p.audit_path,
        }))
    }

    async fn get_log_consistency_proof(
        &self,
        req: Request<pb::LogConsistencyProofRequest>,
    ) -> Result<Response<pb::LogConsistencyProof>, Status> {
        let who = self.who(&req)?;
        let r = req.into_inner();
        let p = self
            .api
            .log_consistency(
                &who,
                log::ConsistencyQuery {
                    first: r.first,
                    second: r.second,
                    stale: r.stale,
                },
            )
            .await?;
        Ok(Response::new(pb::LogConsistencyProof {
            first: p.first,
            second: p.second,
            first_root: p.first_root,
            second_root: p.second_root,
            proof: p.proof,
        }))
    }

    async fn cluster_status(
        &self,
        req: Request<pb::ClusterStatusRequest>,
    ) -> Result<Response<pb::ClusterStatus>, Status> {
        let who = self.who(&req)?;
        let v = self.api.cluster(&who).await?;
        Ok(Response::new(pb::ClusterStatus {
            responder: v.responder,
            leader: v.leader,
            term: v.term,
            commit_index: v.commit_index,
            last_applied: v.last_applied,
            snapshot_index: v.snapshot_index,
            members: v
                .members
                .into_iter()
                .map(|m| pb::Member {
                    id: m.id,
                    address: m.address,
                    voter: m.voter,
                    reachable: m.healthy,
                    matched_index: m.status.and_then(|s| s.last_applied),
                })
                .collect(),
        }))
    }
}
