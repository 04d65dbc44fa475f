//! The scheduling RPCs of `ControlService` (`CreateEnclave`, `CordonHost`, `UncordonHost`,
//! `DrainHost`): proto ↔ domain conversion around the operations of `api/schedule.rs`.

use tonic::{Request, Response, Status};
use tribune_proto::v1 as pb;

use super::grpc::{ControlServer, enclave, host};
use super::problem::Problem;
use super::schedule::DrainOutcome;
use crate::state::{Enclave, EnclaveState, Resources, Schedulable, Scheduling, Strategy};

fn bad(field: &str, why: impl std::fmt::Display) -> Status {
    Status::from(Problem::bad_request(format!("{field}: {why}")))
}

/// A `CreateEnclaveRequest`'s enclave as the domain type; a field that does not parse is
/// INVALID_ARGUMENT naming it.
fn enclave_in(e: pb::Enclave) -> Result<Enclave, Status> {
    let r = e.requested.unwrap_or_default();
    let scheduling = match e.scheduling {
        None => None,
        Some(s) => Some(Scheduling {
            preempt: s.preempt,
            host_selector: s.host_selector.into_iter().collect(),
            anti_affinity: s.anti_affinity,
            min_tee_generation: s.min_tee_generation,
            strategy: match s.strategy.as_str() {
                "" | "bin_pack" => Strategy::BinPack,
                "spread" => Strategy::Spread,
                other => {
                    return Err(bad(
                        "scheduling.strategy",
                        format!("{other:?} is not bin_pack or spread"),
                    ));
                }
            },
        }),
    };
    let launch = if e.launch_json.is_empty() {
        None
    } else {
        Some(serde_json::from_str(&e.launch_json).map_err(|err| bad("launch_json", err))?)
    };
    if e.placement.is_some() {
        return Err(bad(
            "placement",
            "a created enclave is placed by the scheduler; leave it out",
        ));
    }
    Ok(Enclave {
        id: e.id,
        tenant: e.tenant,
        labels: e.labels.into_iter().collect(),
        tee: e.tee.parse().map_err(|err| bad("tee", err))?,
        expected_measurements: e.expected_measurements,
        requested: Resources {
            cpu_millicores: r.cpu_millicores,
            memory_bytes: r.memory_bytes,
            egress_bits_per_sec: r.egress_bits_per_sec,
            ingress_bits_per_sec: r.ingress_bits_per_sec,
            gpu_percent: r.gpu_percent,
        },
        priority: e.priority,
        placement: None,
        state: EnclaveState::Pending,
        launch,
        scheduling,
        version: 0,
    })
}

impl ControlServer {
    pub(super) async fn create_enclave_rpc(
        &self,
        req: Request<pb::CreateEnclaveRequest>,
    ) -> Result<Response<pb::Enclave>, Status> {
        let who = self.who(&req)?;
        let key = super::grpc::idempotency_key(&req)?;
        let e = req
            .into_inner()
            .enclave
            .ok_or_else(|| bad("enclave", "missing"))?;
        let e = self.api.create_enclave(&who, enclave_in(e)?, key).await?;
        Ok(Response::new(enclave(e)))
    }

    pub(super) async fn set_schedulable_rpc(
        &self,
        req: Request<pb::HostActionRequest>,
        schedulable: Schedulable,
    ) -> Result<Response<pb::Host>, Status> {
        let who = self.who(&req)?;
        let h = self
            .api
            .set_schedulable(&who, &req.get_ref().id, schedulable)
            .await?;
        Ok(Response::new(host(h)))
    }

    pub(super) async fn drain_host_rpc(
        &self,
        req: Request<pb::HostActionRequest>,
    ) -> Result<Response<pb::DrainResponse>, Status> {
        let who = self.who(&req)?;
        let r = self.api.drain_host(&who, &req.get_ref().id).await?;
        Ok(Response::new(pb::DrainResponse {
            host: Some(host(r.host)),
            moves: r
                .moves
                .into_iter()
                .map(|m| pb::DrainMove {
                    enclave: m.enclave,
                    from: m.from,
                    to: m.to.unwrap_or_default(),
                    epoch: m.epoch.unwrap_or(0),
                    outcome: match m.outcome {
                        DrainOutcome::Moving => "moving",
                        DrainOutcome::Left => "left",
                        DrainOutcome::Unplaceable => "unplaceable",
                        DrainOutcome::Migrating => "migrating",
                    }
                    .into(),
                    reason: m.reason,
                })
                .collect(),
        }))
    }
}
