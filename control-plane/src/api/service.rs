//! The control operations, shared by the HTTP and gRPC front ends.

use std::sync::Arc;
use std::time::Duration;

use serde::Serialize;

use super::problem::Problem;
use crate::node::{Controller, Forwarded, NodeStatus};
use crate::raft::NodeId;
use crate::state::{Command, Enclave, Expect, Host, Outcome, Policy};
use crate::validate::{POLICY_SOURCE_BYTES_MAX, check_name};

#[derive(Clone, Debug, Serialize)]
pub struct MemberView {
    pub id: NodeId,
    pub address: String,
    pub voter: bool,
    /// Answered a status request from the responding controller just now.
    pub healthy: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub status: Option<NodeStatus>,
    /// How far this member's applied index is behind the leader's commit index.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub lag: Option<u64>,
}

#[derive(Clone, Debug, Serialize)]
pub struct ClusterView {
    pub responder: NodeId,
    pub leader: Option<NodeId>,
    pub term: u64,
    pub commit_index: Option<u64>,
    pub last_applied: Option<u64>,
    pub snapshot_index: Option<u64>,
    pub members: Vec<MemberView>,
}

pub struct Api {
    pub controller: Arc<Controller>,
}

pub(super) fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

fn single(mut outcomes: Vec<Outcome>) -> Result<Outcome, Problem> {
    match (outcomes.pop(), outcomes.is_empty()) {
        (Some(o), true) => Ok(o),
        _ => Err(Problem::from(crate::error::ControllerError::Internal(
            "expected one outcome".into(),
        ))),
    }
}

fn unexpected(o: Outcome) -> Problem {
    Problem::from(crate::error::ControllerError::Internal(format!(
        "unexpected outcome {o:?}"
    )))
}

impl Api {
    /// Before any read: the integrity gate (a diverged controller serves nothing; a linearizable
    /// read waits for the comparison with the peers), then, unless `stale`, the read barrier.
    pub(super) async fn read(&self, stale: bool) -> Result<(), Problem> {
        let wait = Duration::from_millis(self.controller.config.request_timeout_ms);
        self.controller.integrity.readable(stale, wait).await?;
        if !stale {
            self.controller.read_barrier().await?;
        }
        Ok(())
    }

    /// Before any write: a diverged controller takes none.
    fn writable(&self) -> Result<(), Problem> {
        Ok(self.controller.integrity.writable()?)
    }

    pub(super) fn state(&self) -> std::sync::RwLockReadGuard<'_, crate::state::State> {
        self.controller
            .state
            .read()
            .unwrap_or_else(|p| p.into_inner())
    }

    pub async fn list_policies(&self, stale: bool) -> Result<Vec<Policy>, Problem> {
        self.read(stale).await?;
        Ok(self.state().policies.values().cloned().collect())
    }

    pub async fn get_policy(&self, name: &str, stale: bool) -> Result<Policy, Problem> {
        check_name("policy", name).map_err(Problem::bad_request)?;
        self.read(stale).await?;
        self.state()
            .policies
            .get(name)
            .cloned()
            .ok_or_else(|| Problem::not_found(format!("no policy named {name:?}")))
    }

    pub async fn put_policy(
        &self,
        name: &str,
        source: String,
        expect: Expect,
        actor: &str,
    ) -> Result<(Policy, bool), Problem> {
        self.writable()?;
        check_name("policy", name).map_err(Problem::bad_request)?;
        if source.len() > POLICY_SOURCE_BYTES_MAX {
            return Err(Problem::too_large(format!(
                "policy source is {} bytes; the limit is {POLICY_SOURCE_BYTES_MAX} bytes",
                source.len()
            )));
        }
        if let Err((diagnostics, rendered)) = self.controller.validator.validate(name, &source) {
            let mut p = Problem::new(
                axum::http::StatusCode::BAD_REQUEST,
                "invalid-policy",
                format!("policy {name:?} does not check; nothing was stored:\n{rendered}"),
            );
            p.diagnostics = diagnostics;
            return Err(p);
        }
        let cmd = Command::PutPolicy {
            name: name.to_string(),
            source,
            expect,
            actor: actor.to_string(),
            at_ms: now_ms(),
        };
        match single(self.controller.write(vec![cmd]).await?)? {
            Outcome::Policy(p) => {
                let created = p.version == 1;
                Ok((p, created))
            }
            Outcome::Conflict {
                what,
                current_version,
            } => Err(conflict(&what, expect, current_version)),
            o => Err(unexpected(o)),
        }
    }

    pub async fn delete_policy(
        &self,
        name: &str,
        expect: Expect,
        actor: &str,
    ) -> Result<u64, Problem> {
        self.writable()?;
        check_name("policy", name).map_err(Problem::bad_request)?;
        let cmd = Command::DeletePolicy {
            name: name.to_string(),
            expect,
            actor: actor.to_string(),
            at_ms: now_ms(),
        };
        match single(self.controller.write(vec![cmd]).await?)? {
            Outcome::PolicyDeleted { version, .. } => Ok(version),
            Outcome::NotFound { what } => Err(Problem::not_found(format!("no {what}"))),
            Outcome::Conflict {
                what,
                current_version,
            } => Err(conflict(&what, expect, current_version)),
            o => Err(unexpected(o)),
        }
    }

    pub async fn list_enclaves(&self, stale: bool) -> Result<Vec<Enclave>, Problem> {
        self.read(stale).await?;
        Ok(self.state().enclaves.values().cloned().collect())
    }

    pub async fn get_enclave(&self, id: &str, stale: bool) -> Result<Enclave, Problem> {
        check_name("enclave", id).map_err(Problem::bad_request)?;
        self.read(stale).await?;
        self.state()
            .enclaves
            .get(id)
            .cloned()
            .ok_or_else(|| Problem::not_found(format!("no enclave {id:?}")))
    }

    /// What the loop knows about an enclave: its verdict, confirmed usage point, ladder step,
    /// lending, and the allocation its host enforces.
    pub async fn enclave_status(
        &self,
        id: &str,
        stale: bool,
    ) -> Result<serde_json::Value, Problem> {
        check_name("enclave", id).map_err(Problem::bad_request)?;
        self.read(stale).await?;
        let st = self.state();
        let e = st
            .enclaves
            .get(id)
            .ok_or_else(|| Problem::not_found(format!("no enclave {id:?}")))?;
        Ok(serde_json::json!({
            "id": id,
            "state": e.state,
            "host": e.placement.as_ref().map(|p| p.host.clone()),
            "status": st.status.get(id),
            "allocation": st.allocations.get(id),
        }))
    }

    pub async fn put_enclave(&self, enclave: Enclave, expect: Expect) -> Result<Enclave, Problem> {
        self.writable()?;
        check_name("enclave", &enclave.id).map_err(Problem::bad_request)?;
        if !["sev-snp", "tdx", "sim"].contains(&enclave.tee.as_str()) {
            return Err(Problem::bad_request(format!(
                "unknown TEE kind {:?}: use \"sev-snp\", \"tdx\" or \"sim\"",
                enclave.tee
            )));
        }
        match single(
            self.controller
                .write(vec![Command::PutEnclave {
                    enclave,
                    expect,
                    at_ms: now_ms(),
                }])
                .await?,
        )? {
            Outcome::Enclave(e) => Ok(e),
            Outcome::Conflict {
                what,
                current_version,
            } => Err(conflict(&what, expect, current_version)),
            o => Err(unexpected(o)),
        }
    }

    pub async fn list_hosts(&self, stale: bool) -> Result<Vec<Host>, Problem> {
        self.read(stale).await?;
        Ok(self.state().hosts.values().cloned().collect())
    }

    pub async fn put_host(&self, host: Host) -> Result<Host, Problem> {
        self.writable()?;
        check_name("host", &host.id).map_err(Problem::bad_request)?;
        match single(
            self.controller
                .write(vec![Command::PutHost {
                    host,
                    at_ms: now_ms(),
                }])
                .await?,
        )? {
            Outcome::Host(h) => Ok(h),
            o => Err(unexpected(o)),
        }
    }

    pub async fn cluster(&self) -> Result<ClusterView, Problem> {
        let c = &self.controller;
        let me = c.status();
        let members = c.members();
        let statuses = futures::future::join_all(
            members
                .iter()
                .map(|(id, addr, _)| c.member_status(*id, addr)),
        )
        .await;
        let commit_index = statuses.iter().flatten().find_map(|s| s.commit_index);
        let views = members
            .into_iter()
            .zip(statuses)
            .map(|((id, address, voter), status)| MemberView {
                id,
                address,
                voter,
                healthy: status.is_some(),
                lag: match (commit_index, status.as_ref().and_then(|s| s.last_applied)) {
                    (Some(c), Some(a)) => Some(c.saturating_sub(a)),
                    _ => None,
                },
                status,
            })
            .collect();
        Ok(ClusterView {
            responder: me.id,
            leader: me.leader,
            term: me.term,
            commit_index,
            last_applied: me.last_applied,
            snapshot_index: me.snapshot_index,
            members: views,
        })
    }

    pub async fn add_member(&self, id: NodeId, addr: String, voter: bool) -> Result<(), Problem> {
        self.writable()?;
        if addr.parse::<std::net::SocketAddr>().is_err() && !addr.contains(':') {
            return Err(Problem::bad_request(format!(
                "invalid controller address {addr:?}: expected HOST:PORT"
            )));
        }
        self.controller
            .forwardable(Forwarded::AddMember { id, addr, voter })
            .await?;
        Ok(())
    }

    pub async fn promote(&self, id: NodeId) -> Result<(), Problem> {
        self.writable()?;
        self.controller
            .forwardable(Forwarded::Promote { id })
            .await?;
        Ok(())
    }

    pub async fn remove_member(&self, id: NodeId) -> Result<(), Problem> {
        self.writable()?;
        self.controller
            .forwardable(Forwarded::RemoveMember { id })
            .await?;
        Ok(())
    }
}

fn conflict(what: &str, expect: Expect, current: Option<u64>) -> Problem {
    let detail = match (expect, current) {
        (Expect::Absent, Some(v)) => format!(
            "{what} already exists at version {v}; fetch it and send If-Match: \"{v}\" to replace it"
        ),
        (Expect::Version(want), Some(v)) => format!(
            "{what} is at version {v}, not {want}: someone changed it since you read it; fetch it again and reapply your change"
        ),
        (Expect::Version(want), None) => {
            format!("{what} does not exist (you expected version {want})")
        }
        _ => format!("{what}: precondition failed"),
    };
    Problem::conflict(detail, current)
}
