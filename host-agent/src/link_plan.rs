//! The controllers' plans in the agent's terms (`PlanStream` and the attestation stream's
//! `Plan`): validated, with values below what the kernel enforces raised, never dropped.

use std::collections::BTreeMap;

use tribune_proto::v1 as pb;

use crate::link_error::PlanError;
use crate::plan::{
    Bandwidth, CPU_MILLICORES_MIN, EnclavePlan, LaunchSpec, Limits, MEMORY_BYTES_MIN, Plan,
    RemoteEnclave, RunState, Talk, WEIGHT_MAX,
};

/// A controller's plan in the agent's terms. Values below what the kernel can enforce are
/// raised to the smallest enforceable value (never dropped: a cap stays a cap).
pub fn plan_from_pb(p: &pb::Plan) -> Result<Plan, PlanError> {
    let mut enclaves = BTreeMap::new();
    for e in &p.enclaves {
        let launch = if e.launch_json.is_empty() {
            None
        } else {
            Some(
                serde_json::from_str::<LaunchSpec>(&e.launch_json).map_err(|source| {
                    PlanError::LaunchSpec {
                        enclave: e.enclave_id.clone(),
                        source,
                    }
                })?,
            )
        };
        let nz = |v: u64| (v > 0).then_some(v);
        let bw = |ceil: u64, guarantee: u64| {
            nz(ceil).map(|limit| Bandwidth {
                guarantee_bits_per_sec: guarantee.clamp(1, limit),
                limit_bits_per_sec: limit,
            })
        };
        let plan = EnclavePlan {
            launch,
            limits: Limits {
                cpu_millicores: nz(e.cpu_quota_millicores).map(|c| c.max(CPU_MILLICORES_MIN)),
                memory_bytes: nz(e.memory_limit_bytes).map(|m| m.max(MEMORY_BYTES_MIN)),
                memory_high_bytes: nz(e.memory_high_bytes),
                egress: bw(e.egress_ceil_bits_per_sec, e.egress_guarantee_bits_per_sec),
                ingress: bw(
                    e.ingress_ceil_bits_per_sec,
                    e.ingress_guarantee_bits_per_sec,
                ),
                gpu_percent: (e.gpu_percent > 0).then_some(e.gpu_percent),
            },
            weight: e.cpu_weight.clamp(1, u64::from(WEIGHT_MAX)) as u32,
            state: if e.suspended {
                RunState::Suspend
            } else {
                RunState::Run
            },
            talk: Talk {
                priority: e.talk_priority,
                allow: e
                    .talk
                    .iter()
                    .map(|t| (t.enclave_id.clone(), t.share_milli))
                    .collect(),
                rate_per_s: e.msgs_rate_per_sec,
            },
            placement_epoch: e.placement_epoch,
        };
        enclaves.insert(e.enclave_id.clone(), plan);
    }
    let remote = p
        .remote_enclaves
        .iter()
        .map(|r| {
            (
                r.enclave_id.clone(),
                RemoteEnclave {
                    host: r.host_id.clone(),
                    placement_epoch: r.placement_epoch,
                    peer_addr: r.peer_addr.clone(),
                    talk: Talk {
                        priority: r.talk_priority,
                        allow: r
                            .talk
                            .iter()
                            .map(|t| (t.enclave_id.clone(), t.share_milli))
                            .collect(),
                        rate_per_s: 0,
                    },
                },
            )
        })
        .collect();
    Ok(Plan {
        version: p.version,
        enclaves,
        remote,
    })
}
