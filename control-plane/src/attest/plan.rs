//! Committed state → the versioned enforcement plan of one host (DESIGN.md §4.6).
//!
//! Pure. An enclave without an allocation yet (nothing decided, e.g. before its first report)
//! gets the static settings of its policies, so its limits are in place before its first
//! instruction; it is never sent unlimited because nothing was decided.

use std::collections::BTreeMap;

use tribune_policy::PolicySet;
use tribune_proto::v1 as pb;

use super::decide::{Input, decide_host, identity};
use crate::state::{Allocation, EnclaveState, State};

/// The plan for `host` at the state's current plan version.
pub fn plan_for(state: &State, policies: &PolicySet, host: &str, now_ms: i64) -> pb::Plan {
    let version = state.plan_versions.get(host).copied().unwrap_or(0);
    let placed: Vec<_> = state
        .enclaves
        .values()
        .filter(|e| e.placement.as_ref().is_some_and(|p| p.host == host))
        .filter(|e| e.state != EnclaveState::Stopped)
        // Moving off this host: its plan drops it, so its agent stops it before the target's
        // plan names it (`state/schedule.rs`).
        .filter(|e| !state.moves.contains_key(&e.id))
        .collect();
    let empty = BTreeMap::new();
    // Talk rules see the enclave records only (tenant, labels, TEE kind), not attestation
    // results: those change without moving the plan version, and a plan must never change
    // content under one version (`state/plan_version.rs`).
    let identities: Vec<tribune_policy::Enclave> =
        placed.iter().map(|e| identity(e, None)).collect();
    // Enclaves placed on other hosts (not stopped, not moving): this host's enclaves may talk
    // to them through the agents' peer links (docs/messages.md "Across hosts").
    let elsewhere: Vec<_> = state
        .enclaves
        .values()
        .filter(|e| e.placement.as_ref().is_some_and(|p| p.host != host))
        .filter(|e| e.state != EnclaveState::Stopped)
        .filter(|e| !state.moves.contains_key(&e.id))
        .collect();
    let elsewhere_ids: Vec<tribune_policy::Enclave> =
        elsewhere.iter().map(|e| identity(e, None)).collect();
    let local_peers: Vec<(&str, &tribune_policy::Enclave)> = placed
        .iter()
        .map(|e| e.id.as_str())
        .zip(&identities)
        .collect();
    let remote_peers: Vec<(&str, &tribune_policy::Enclave)> = elsewhere
        .iter()
        .map(|e| e.id.as_str())
        .zip(&elsewhere_ids)
        .collect();
    let mut talked_to = std::collections::BTreeSet::new();
    let enclaves = placed
        .iter()
        .enumerate()
        .map(|(i, e)| {
            let candidates = local_peers
                .iter()
                .enumerate()
                .filter(|(j, _)| *j != i)
                .map(|(_, p)| *p)
                .chain(remote_peers.iter().copied());
            let (talk_priority, talk) = talk_of(policies, &identities[i], candidates);
            talked_to.extend(talk.iter().map(|t| t.enclave_id.clone()));
            let allocation: Allocation = match state.allocations.get(&e.id) {
                Some(a) => a.clone(),
                None => {
                    let input = Input {
                        enclave: e,
                        status: state.status.get(&e.id),
                        allocation: None,
                        observation: None,
                        held_since: &empty,
                        accounting_broken_ms: None,
                    };
                    decide_host(policies, std::slice::from_ref(&input), now_ms)
                        .pop()
                        .and_then(|o| o.enforcement)
                        .map(|en| en.allocation)
                        .unwrap_or(Allocation {
                            enclave: e.id.clone(),
                            limits: Default::default(),
                            guaranteed: Default::default(),
                            weight: 1,
                            suspended: false,
                            msgs_rate_per_s: None,
                        })
                }
            };
            // An operator's suspension holds whatever the allocation says.
            let allocation = Allocation {
                suspended: allocation.suspended
                    || state
                        .status
                        .get(&e.id)
                        .is_some_and(|s| s.operator_hold.is_some()),
                ..allocation
            };
            pb::EnclavePlan {
                enclave_id: e.id.clone(),
                cpu_quota_millicores: allocation.limits.cpu_millicores,
                cpu_weight: u64::from(allocation.weight.max(1)),
                memory_limit_bytes: allocation.limits.memory_bytes,
                egress_ceil_bits_per_sec: allocation.limits.egress_bits_per_sec,
                ingress_ceil_bits_per_sec: allocation.limits.ingress_bits_per_sec,
                gpu_percent: allocation.limits.gpu_percent,
                suspended: allocation.suspended,
                placement_epoch: e.placement.as_ref().map_or(0, |p| p.epoch),
                launch_json: e.launch.as_ref().map(|l| l.to_string()).unwrap_or_default(),
                cpu_guarantee_millicores: allocation.guaranteed.cpu_millicores,
                memory_high_bytes: 0,
                egress_guarantee_bits_per_sec: allocation.guaranteed.egress_bits_per_sec,
                ingress_guarantee_bits_per_sec: allocation.guaranteed.ingress_bits_per_sec,
                talk_priority,
                talk,
                msgs_rate_per_sec: allocation.msgs_rate_per_s.unwrap_or(0),
            }
        })
        .collect();
    let remote_enclaves = elsewhere
        .iter()
        .zip(&elsewhere_ids)
        .filter_map(|(e, who)| {
            let (talk_priority, talk) = talk_of(policies, who, local_peers.iter().copied());
            if talk.is_empty() && !talked_to.contains(&e.id) {
                return None;
            }
            let placement = e.placement.as_ref()?;
            Some(pb::RemoteEnclave {
                enclave_id: e.id.clone(),
                host_id: placement.host.clone(),
                placement_epoch: placement.epoch,
                peer_addr: state
                    .hosts
                    .get(&placement.host)
                    .map(|h| h.address.clone())
                    .unwrap_or_default(),
                talk_priority,
                talk,
            })
        })
        .collect();
    pb::Plan {
        host_id: host.to_string(),
        version,
        enclaves,
        traceparent: String::new(),
        remote_enclaves,
    }
}

/// An enclave's messaging settings (docs/messages.md): its policies' `priority` and the
/// `candidates` (id, identity) its `talk` rules allow, with their shares. The agent checks the
/// receiver's side with the receiver's own list.
fn talk_of<'a>(
    policies: &PolicySet,
    who: &tribune_policy::Enclave,
    candidates: impl Iterator<Item = (&'a str, &'a tribune_policy::Enclave)>,
) -> (i64, Vec<pb::TalkPeer>) {
    let facts = tribune_policy::Facts {
        enclave: who.clone(),
        ..Default::default()
    };
    let priority = policies
        .evaluate(&facts)
        .priority
        .value
        .filter(|p| p.is_finite())
        .map_or(0, |p| p.round() as i64);
    let peers = candidates
        .filter_map(|(id, peer)| {
            let t = policies.talk(&facts, peer);
            t.allowed.then(|| pb::TalkPeer {
                enclave_id: id.to_string(),
                share_milli: (t.share * 1000.0).round().clamp(1.0, f64::from(u32::MAX)) as u32,
            })
        })
        .collect();
    (priority, peers)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::state::{Enclave, EnclaveState, Placement, Resources};

    fn enclave(id: &str, tenant: &str, host: &str) -> Enclave {
        Enclave {
            id: id.into(),
            tenant: tenant.into(),
            labels: Default::default(),
            tee: tribune_attest::TeeKind::Sim,
            expected_measurements: vec![],
            requested: Resources::default(),
            priority: 0,
            placement: Some(Placement {
                host: host.into(),
                epoch: 1,
            }),
            state: EnclaveState::Running,
            launch: None,
            scheduling: Default::default(),
            version: 1,
        }
    }

    /// Each enclave's plan lists the other enclaves of its host that its own `talk` rules
    /// allow, with the share in thousandths, and its policy's priority; the receiver's side is
    /// the receiver's own list (the agent checks both).
    #[test]
    fn plans_carry_each_enclaves_talk_peers_and_priority() {
        let c = tribune_policy::check(
            "t.tribune",
            r#"
policy "acme" {
  match tenant == "acme"
  priority 40
  talk { allow to tenant == "acme" share 2.5; deny to * }
}
policy "open" {
  match tenant == "open"
  talk { allow to * }
}
"#,
        );
        assert!(!c.has_errors(), "{:?}", c.diagnostics);
        let set = PolicySet::new(c.policies);
        let mut state = State::default();
        for (id, tenant, host) in [
            ("a", "acme", "h1"),
            ("b", "acme", "h1"),
            ("o", "open", "h1"),
            ("far", "acme", "h2"),
        ] {
            state.enclaves.insert(id.into(), enclave(id, tenant, host));
        }
        state.hosts.insert(
            "h2".into(),
            crate::state::Host {
                id: "h2".into(),
                address: "10.0.0.2:7444".into(),
                capacity: Resources::default(),
                tee: tribune_attest::TeeKind::Sim,
                attestation_status: String::new(),
                last_heartbeat_ms: 0,
                agent_cert_fingerprint: String::new(),
                enforcement: String::new(),
                tee_generation: 0,
                labels: Default::default(),
                schedulable: Default::default(),
                measured_load: Default::default(),
            },
        );
        let plan = plan_for(&state, &set, "h1", 0);
        /// Per enclave: its priority and its (peer, share in thousandths) list.
        type Talk<'a> = (i64, Vec<(&'a str, u32)>);
        let talk: BTreeMap<&str, Talk> = plan
            .enclaves
            .iter()
            .map(|e| {
                (
                    e.enclave_id.as_str(),
                    (
                        e.talk_priority,
                        e.talk
                            .iter()
                            .map(|t| (t.enclave_id.as_str(), t.share_milli))
                            .collect(),
                    ),
                )
            })
            .collect();
        // `far` on h2 is a peer like the others; the plan says where it lives.
        assert_eq!(talk["a"], (40, vec![("b", 2500), ("far", 2500)]));
        assert_eq!(talk["b"], (40, vec![("a", 2500), ("far", 2500)]));
        assert_eq!(
            talk["o"],
            (0, vec![("a", 1000), ("b", 1000), ("far", 1000)])
        );
        assert!(!talk.contains_key("far"));
        assert_eq!(
            plan.remote_enclaves,
            vec![pb::RemoteEnclave {
                enclave_id: "far".into(),
                host_id: "h2".into(),
                placement_epoch: 1,
                peer_addr: "10.0.0.2:7444".into(),
                talk_priority: 40,
                talk: vec![
                    pb::TalkPeer {
                        enclave_id: "a".into(),
                        share_milli: 2500
                    },
                    pb::TalkPeer {
                        enclave_id: "b".into(),
                        share_milli: 2500
                    },
                ],
            }]
        );
        // A stopped enclave elsewhere is not named (nor is one moving).
        let mut lone = enclave("lone", "acme", "h3");
        lone.state = EnclaveState::Stopped;
        state.enclaves.insert("lone".into(), lone);
        let plan = plan_for(&state, &set, "h1", 0);
        assert_eq!(
            plan.remote_enclaves
                .iter()
                .map(|r| r.enclave_id.as_str())
                .collect::<Vec<_>>(),
            vec!["far"]
        );
    }
}
