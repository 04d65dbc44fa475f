//! The control operations, shared by the HTTP and gRPC front ends.

use std::sync::Arc;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::bounds;
use super::problem::Problem;
use crate::auth::{Op, Principal};
use crate::node::{Controller, Forwarded, NodeStatus};
use crate::raft::NodeId;
use crate::state::{
    Allocation, Command, Enclave, EnclaveState, EnclaveStatus, Expect, Host, LogDetail,
    MembershipChangeDetail, Outcome, Policy,
};
use crate::validate::{POLICY_SOURCE_BYTES_MAX, PolicyScope, check_name};

#[derive(Clone, Debug, Serialize, Deserialize, utoipa::ToSchema)]
pub struct MemberView {
    #[schema(value_type = u64)]
    pub id: NodeId,
    pub address: String,
    pub voter: bool,
    /// Answered a status request from the responding controller just now.
    pub healthy: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<NodeStatus>,
    /// How far this member's applied index is behind the leader's commit index.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lag: Option<u64>,
}

#[derive(Clone, Debug, Serialize, Deserialize, utoipa::ToSchema)]
pub struct ClusterView {
    #[schema(value_type = u64)]
    pub responder: NodeId,
    #[schema(value_type = Option<u64>)]
    pub leader: Option<NodeId>,
    pub term: u64,
    pub commit_index: Option<u64>,
    pub last_applied: Option<u64>,
    pub snapshot_index: Option<u64>,
    pub members: Vec<MemberView>,
}

/// `GET /v1/enclaves/{id}/status`: what the attestation loop knows about one enclave.
#[derive(Clone, Debug, Serialize, Deserialize, utoipa::ToSchema)]
pub struct EnclaveStatusView {
    pub id: String,
    pub state: EnclaveState,
    /// The host it is placed on (`null`: not placed).
    pub host: Option<String>,
    /// Verdict and bound keys, confirmed usage point, ladder step and cause, lending (`null`:
    /// the loop has not seen it yet).
    pub status: Option<EnclaveStatus>,
    /// The allocation its host enforces (`null`: none yet).
    pub allocation: Option<Allocation>,
}

pub struct Api {
    pub controller: Arc<Controller>,
}

pub(super) fn now_ms() -> i64 {
    crate::test_fault::wall_now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

pub(super) fn single(mut outcomes: Vec<Outcome>) -> Result<Outcome, Problem> {
    match (outcomes.pop(), outcomes.is_empty()) {
        (Some(o), true) => Ok(o),
        _ => Err(Problem::from(crate::error::ControllerError::Internal(
            "expected one outcome".into(),
        ))),
    }
}

/// [`Outcome::KeyReused`] as the caller's error (422 `idempotency-key-reused`).
pub(super) fn key_reused(o: Outcome) -> Result<Outcome, Problem> {
    match o {
        Outcome::KeyReused { key } => Err(Problem::new(
            axum::http::StatusCode::UNPROCESSABLE_ENTITY,
            "idempotency-key-reused",
            format!(
                "Idempotency-Key {key:?} was already used for a different request; nothing was written (use a new key for a new request)"
            ),
        )),
        o => Ok(o),
    }
}

pub(super) fn unexpected(o: Outcome) -> Problem {
    if let Outcome::Quota { reason } = o {
        return Problem::new(axum::http::StatusCode::FORBIDDEN, "quota-exceeded", reason);
    }
    Problem::from(crate::error::ControllerError::Internal(format!(
        "unexpected outcome {o:?}"
    )))
}

impl Api {
    /// Who made a request: see [`crate::auth::authenticate`]. Tokens are read from this
    /// controller's applied state (a revocation takes effect on each controller as it applies
    /// it, within milliseconds on a healthy cluster).
    pub fn authenticate(
        &self,
        peer: Option<&tribune_tls::PeerIdentity>,
        authorization: Option<&[u8]>,
    ) -> Result<Principal, crate::auth::AuthError> {
        let st = self.state();
        crate::auth::authenticate(
            self.controller.tls.is_some(),
            peer,
            authorization,
            &st.tokens,
            now_ms(),
        )
    }

    /// Before any read: the integrity gate (a diverged controller serves nothing; a linearizable
    /// read waits for the comparison with the peers), then, unless `stale`, the read barrier.
    pub(super) async fn read(&self, stale: bool) -> Result<(), Problem> {
        let wait = Duration::from_millis(self.controller.config.request_timeout_ms);
        self.controller.integrity.readable(stale, wait).await?;
        if !stale && !crate::test_fault::active(crate::test_fault::Fault::StaleReads) {
            self.controller.read_barrier().await?;
        }
        Ok(())
    }

    /// Writes one command, under the caller's idempotency key if the request carried one
    /// (`state/idempotency.rs`): a repeat of the same request answers the first outcome; the
    /// key reused for another request is refused (422 `idempotency-key-reused`).
    pub(super) async fn write_one(
        &self,
        who: &Principal,
        key: Option<String>,
        cmd: Command,
    ) -> Result<Outcome, Problem> {
        let cmd = match key {
            None => cmd,
            Some(key) => {
                crate::state::check_key(&key).map_err(|e| Problem::bad_request(e.to_string()))?;
                Command::keyed(key, who.actor.clone(), cmd, now_ms())
            }
        };
        key_reused(single(self.controller.write(vec![cmd]).await?)?)
    }

    /// Before a keyed write that first plans against the state (`create_enclave`): what the
    /// key already answered, read after a linearizable barrier; `None` when it is unused.
    pub(super) fn recorded(
        &self,
        who: &Principal,
        key: Option<&str>,
        cmd: &Command,
    ) -> Result<Option<Outcome>, Problem> {
        let Some(key) = key else {
            return Ok(None);
        };
        crate::state::check_key(key).map_err(|e| Problem::bad_request(e.to_string()))?;
        crate::state::recorded(&self.state(), &who.actor, key, cmd)
            .map(key_reused)
            .transpose()
    }

    /// Before any write: a diverged controller takes none.
    pub(super) fn writable(&self) -> Result<(), Problem> {
        Ok(self.controller.integrity.writable()?)
    }

    pub(super) fn state(&self) -> std::sync::RwLockReadGuard<'_, crate::state::State> {
        self.controller
            .state
            .read()
            .unwrap_or_else(|p| p.into_inner())
    }

    /// Whether a tenant caller may see (and change) this policy: only one whose `match` names
    /// exactly its own tenant. Everyone else sees every policy.
    pub(super) fn policy_visible(&self, who: &Principal, p: &Policy) -> bool {
        match &who.tenant {
            None => true,
            Some(t) => self
                .controller
                .validator
                .validate(&p.name, &p.source)
                .is_ok_and(|scope| scope.only_tenant(t)),
        }
    }

    pub async fn list_policies(
        &self,
        who: &Principal,
        stale: bool,
    ) -> Result<Vec<Policy>, Problem> {
        who.require(Op::ReadPolicies)?;
        self.read(stale).await?;
        let all: Vec<Policy> = self.state().policies.values().cloned().collect();
        Ok(all
            .into_iter()
            .filter(|p| self.policy_visible(who, p))
            .collect())
    }

    pub async fn get_policy(
        &self,
        who: &Principal,
        name: &str,
        stale: bool,
    ) -> Result<Policy, Problem> {
        who.require(Op::ReadPolicies)?;
        check_name("policy", name).map_err(Problem::bad_request)?;
        self.read(stale).await?;
        let p = self.state().policies.get(name).cloned();
        p.filter(|p| self.policy_visible(who, p))
            .ok_or_else(|| Problem::not_found(format!("no policy named {name:?}")))
    }

    /// A tenant may change only a policy that is (and stays) its own.
    fn check_tenant_policy(
        &self,
        who: &Principal,
        name: &str,
        scope: Option<&PolicyScope>,
    ) -> Result<(), Problem> {
        let Some(t) = &who.tenant else {
            return Ok(());
        };
        if let Some(scope) = scope
            && !scope.only_tenant(t)
        {
            return Err(Problem::forbidden(format!(
                "{} may store only policies whose match is limited to its own tenant (`match tenant == \"{t}\" && …`)",
                who.actor
            )));
        }
        let existing = self.state().policies.get(name).cloned();
        if let Some(p) = existing
            && !self.policy_visible(who, &p)
        {
            return Err(Problem::forbidden(format!(
                "policy {name:?} belongs to another tenant or to the whole cluster; {} may not change it",
                who.actor
            )));
        }
        Ok(())
    }

    pub async fn put_policy(
        &self,
        who: &Principal,
        name: &str,
        source: String,
        expect: Expect,
        key: Option<String>,
    ) -> Result<(Policy, bool), Problem> {
        who.require(Op::WritePolicy)?;
        self.writable()?;
        check_name("policy", name).map_err(Problem::bad_request)?;
        if source.len() > POLICY_SOURCE_BYTES_MAX {
            return Err(Problem::too_large(format!(
                "policy source is {} bytes; the limit is {POLICY_SOURCE_BYTES_MAX} bytes",
                source.len()
            )));
        }
        let scope = match self.controller.validator.validate(name, &source) {
            Ok(scope) => scope,
            Err((diagnostics, rendered)) => {
                let mut p = Problem::new(
                    axum::http::StatusCode::BAD_REQUEST,
                    "invalid-policy",
                    format!("policy {name:?} does not check; nothing was stored:\n{rendered}"),
                );
                p.diagnostics = diagnostics;
                return Err(p);
            }
        };
        self.check_tenant_policy(who, name, Some(&scope))?;
        let cmd = Command::PutPolicy {
            name: name.to_string(),
            source,
            expect,
            actor: who.actor.clone(),
            at_ms: now_ms(),
        };
        match self.write_one(who, key, cmd).await? {
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
        who: &Principal,
        name: &str,
        expect: Expect,
        key: Option<String>,
    ) -> Result<u64, Problem> {
        who.require(Op::WritePolicy)?;
        self.writable()?;
        check_name("policy", name).map_err(Problem::bad_request)?;
        self.check_tenant_policy(who, name, None)?;
        let cmd = Command::DeletePolicy {
            name: name.to_string(),
            expect,
            actor: who.actor.clone(),
            at_ms: now_ms(),
        };
        match self.write_one(who, key, cmd).await? {
            Outcome::PolicyDeleted { version, .. } => Ok(version),
            Outcome::NotFound { what } => Err(Problem::not_found(format!("no {what}"))),
            Outcome::Conflict {
                what,
                current_version,
            } => Err(conflict(&what, expect, current_version)),
            o => Err(unexpected(o)),
        }
    }

    pub async fn list_enclaves(
        &self,
        who: &Principal,
        stale: bool,
    ) -> Result<Vec<Enclave>, Problem> {
        who.require(Op::ReadEnclaves)?;
        self.read(stale).await?;
        Ok(self
            .state()
            .enclaves
            .values()
            .filter(|e| who.sees_tenant(&e.tenant))
            .cloned()
            .collect())
    }

    pub async fn get_enclave(
        &self,
        who: &Principal,
        id: &str,
        stale: bool,
    ) -> Result<Enclave, Problem> {
        who.require(Op::ReadEnclaves)?;
        check_name("enclave", id).map_err(Problem::bad_request)?;
        self.read(stale).await?;
        self.state()
            .enclaves
            .get(id)
            .filter(|e| who.sees_tenant(&e.tenant))
            .cloned()
            .ok_or_else(|| Problem::not_found(format!("no enclave {id:?}")))
    }

    /// What the loop knows about an enclave: its verdict, confirmed usage point, ladder step,
    /// lending, and the allocation its host enforces.
    pub async fn enclave_status(
        &self,
        who: &Principal,
        id: &str,
        stale: bool,
    ) -> Result<EnclaveStatusView, Problem> {
        who.require(Op::ReadEnclaves)?;
        check_name("enclave", id).map_err(Problem::bad_request)?;
        self.read(stale).await?;
        let st = self.state();
        let e = st
            .enclaves
            .get(id)
            .filter(|e| who.sees_tenant(&e.tenant))
            .ok_or_else(|| Problem::not_found(format!("no enclave {id:?}")))?;
        Ok(EnclaveStatusView {
            id: id.to_string(),
            state: e.state,
            host: e.placement.as_ref().map(|p| p.host.clone()),
            status: st.status.get(id).cloned(),
            allocation: st.allocations.get(id).cloned(),
        })
    }

    /// `spec_only`: an existing enclave keeps its stored state and, on the same host, its
    /// placement epoch (`state::Command::PutEnclaveSpec`).
    pub async fn put_enclave(
        &self,
        who: &Principal,
        enclave: Enclave,
        expect: Expect,
        spec_only: bool,
        key: Option<String>,
    ) -> Result<Enclave, Problem> {
        who.require(Op::WriteEnclave)?;
        self.writable()?;
        bounds::enclave(&enclave)?;
        let (actor, at_ms) = (who.actor.clone(), now_ms());
        let cmd = if spec_only {
            Command::PutEnclaveSpec {
                enclave,
                expect,
                actor,
                at_ms,
            }
        } else {
            Command::PutEnclave {
                enclave,
                expect,
                actor,
                at_ms,
            }
        };
        match self.write_one(who, key, cmd).await? {
            Outcome::Enclave(e) => Ok(e),
            Outcome::Conflict {
                what,
                current_version,
            } => Err(conflict(&what, expect, current_version)),
            // Resuming an enclave a preemption suspended, while its guarantee does not fit.
            Outcome::NoRoom { reason } => Err(Problem::new(
                axum::http::StatusCode::CONFLICT,
                "unplaceable",
                reason,
            )),
            o => Err(unexpected(o)),
        }
    }

    /// Removes an enclave record, at `expect`'s version. Refused (409 `enclave-in-use`) while
    /// the enclave is placed on a host and not `stopped` (`state::Command::DeleteEnclave`).
    pub async fn delete_enclave(
        &self,
        who: &Principal,
        id: &str,
        expect: Expect,
        key: Option<String>,
    ) -> Result<u64, Problem> {
        who.require(Op::WriteEnclave)?;
        self.writable()?;
        check_name("enclave", id).map_err(Problem::bad_request)?;
        let cmd = Command::DeleteEnclave {
            id: id.to_string(),
            expect,
            actor: who.actor.clone(),
            at_ms: now_ms(),
        };
        match self.write_one(who, key, cmd).await? {
            Outcome::EnclaveDeleted { version, .. } => Ok(version),
            Outcome::NotFound { what } => Err(Problem::not_found(format!("no {what}"))),
            Outcome::Conflict {
                what,
                current_version,
            } => Err(conflict(&what, expect, current_version)),
            Outcome::InUse { reason } => Err(Problem::new(
                axum::http::StatusCode::CONFLICT,
                "enclave-in-use",
                reason,
            )),
            o => Err(unexpected(o)),
        }
    }

    /// A backup of the whole replicated state, holding every write acknowledged before the
    /// request (`Controller::backup`). Admins only: it holds every tenant's data.
    pub async fn backup(&self, who: &Principal) -> Result<crate::node::BackupFile, Problem> {
        who.require(Op::Backup)?;
        Ok(self.controller.backup().await?)
    }

    pub async fn list_hosts(&self, who: &Principal, stale: bool) -> Result<Vec<Host>, Problem> {
        who.require(Op::ReadHosts)?;
        self.read(stale).await?;
        Ok(self.state().hosts.values().cloned().collect())
    }

    /// An admin's host record. What only the host's agent and the verifier may say — its
    /// attestation status, heartbeat, certificate and enforcement mode — is kept as stored
    /// (`unverified` for a new host), whatever the body says.
    pub async fn put_host(&self, who: &Principal, mut host: Host) -> Result<Host, Problem> {
        who.require(Op::WriteHost)?;
        self.writable()?;
        bounds::host(&host)?;
        {
            let st = self.state();
            let current = st.hosts.get(&host.id);
            host.attestation_status =
                current.map_or_else(|| "unverified".into(), |h| h.attestation_status.clone());
            host.last_heartbeat_ms = current.map_or(0, |h| h.last_heartbeat_ms);
            host.agent_cert_fingerprint =
                current.map_or_else(String::new, |h| h.agent_cert_fingerprint.clone());
            host.enforcement = current.map_or_else(String::new, |h| h.enforcement.clone());
        }
        match single(
            self.controller
                .write(vec![Command::PutHost {
                    host,
                    actor: who.actor.clone(),
                    at_ms: now_ms(),
                }])
                .await?,
        )? {
            Outcome::Host(h) => Ok(h),
            o => Err(unexpected(o)),
        }
    }

    pub async fn cluster(&self, who: &Principal) -> Result<ClusterView, Problem> {
        who.require(Op::ReadCluster)?;
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

    pub async fn add_member(
        &self,
        who: &Principal,
        id: NodeId,
        addr: String,
        voter: bool,
    ) -> Result<(), Problem> {
        who.require(Op::ChangeMembership)?;
        self.writable()?;
        if addr.len() > bounds::HOST_TEXT_BYTES_MAX
            || addr.chars().any(char::is_control)
            || (addr.parse::<std::net::SocketAddr>().is_err() && !addr.contains(':'))
        {
            return Err(Problem::bad_request(format!(
                "invalid controller address {:?}: expected HOST:PORT",
                addr.escape_debug().to_string()
            )));
        }
        let detail = MembershipChangeDetail::Add {
            id,
            address: addr.clone(),
            voter,
            actor: who.actor.clone(),
        };
        self.controller
            .forwardable(Forwarded::AddMember { id, addr, voter })
            .await?;
        self.log_membership(id, detail).await
    }

    pub async fn promote(&self, who: &Principal, id: NodeId) -> Result<(), Problem> {
        who.require(Op::ChangeMembership)?;
        self.writable()?;
        self.controller
            .forwardable(Forwarded::Promote { id })
            .await?;
        self.log_membership(
            id,
            MembershipChangeDetail::Promote {
                id,
                actor: who.actor.clone(),
            },
        )
        .await
    }

    pub async fn remove_member(&self, who: &Principal, id: NodeId) -> Result<(), Problem> {
        who.require(Op::ChangeMembership)?;
        self.writable()?;
        self.controller
            .forwardable(Forwarded::RemoveMember { id })
            .await?;
        self.log_membership(
            id,
            MembershipChangeDetail::Remove {
                id,
                actor: who.actor.clone(),
            },
        )
        .await
    }

    /// Records a membership change that took effect, with who made it.
    async fn log_membership(
        &self,
        id: NodeId,
        detail: MembershipChangeDetail,
    ) -> Result<(), Problem> {
        self.controller
            .write(vec![Command::AppendLog {
                subject: format!("controller-{id}"),
                detail: LogDetail::MembershipChange(detail),
                at_ms: now_ms(),
            }])
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
