//! Who may do what: a pure function of the caller's role and the operation (`docs/security.md`).
//!
//! Object-level scoping (a tenant sees only its own tenant's enclaves, policies and log entries)
//! is applied by the operations themselves, on top of this table, through [`Principal::tenant`].

use tribune_tls::Role;

use super::Principal;

/// Every operation of the control API, HTTP and gRPC alike.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Op {
    ReadPolicies,
    WritePolicy,
    /// What a policy change would have done to the recorded usage (`POST /v1/policies/plan`):
    /// reads policies, enclaves and the log, changes nothing.
    PlanPolicies,
    ReadEnclaves,
    /// Create, change or delete an enclave, its placement, launch spec or state
    /// (suspend/resume/stop).
    WriteEnclave,
    ReadHosts,
    WriteHost,
    ReadCluster,
    ChangeMembership,
    /// Tree heads, keys, entries, proofs.
    ReadLog,
    ManageTokens,
    /// A backup of the whole replicated state (`GET /v1/snapshot`).
    Backup,
}

impl Op {
    pub const ALL: [Op; 12] = [
        Op::ReadPolicies,
        Op::WritePolicy,
        Op::PlanPolicies,
        Op::ReadEnclaves,
        Op::WriteEnclave,
        Op::ReadHosts,
        Op::WriteHost,
        Op::ReadCluster,
        Op::ChangeMembership,
        Op::ReadLog,
        Op::ManageTokens,
        Op::Backup,
    ];

    fn describe(self) -> &'static str {
        match self {
            Op::ReadPolicies => "read policies",
            Op::WritePolicy => "change policies",
            Op::PlanPolicies => "plan policies",
            Op::ReadEnclaves => "read enclaves",
            Op::WriteEnclave => "create, change or delete enclaves",
            Op::ReadHosts => "read hosts",
            Op::WriteHost => "change hosts",
            Op::ReadCluster => "read the cluster's membership",
            Op::ChangeMembership => "change the cluster's membership",
            Op::ReadLog => "read the attestation log",
            Op::ManageTokens => "create, list or revoke tokens",
            Op::Backup => "take a backup of the whole state",
        }
    }

    /// The roles allowed to do this at all (a tenant only within its tenant).
    pub fn roles(self) -> &'static [Role] {
        use Role::*;
        match self {
            Op::ReadPolicies | Op::PlanPolicies | Op::ReadEnclaves | Op::ReadLog => {
                &[Admin, Operator, Auditor, Tenant]
            }
            Op::WritePolicy => &[Admin, Operator, Tenant],
            Op::WriteEnclave => &[Admin, Operator],
            Op::ReadHosts | Op::ReadCluster => &[Admin, Operator, Auditor],
            Op::WriteHost | Op::ChangeMembership | Op::ManageTokens | Op::Backup => &[Admin],
        }
    }
}

/// The caller may not do this; the message says which role would be needed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{actor} may not {what}: that needs the role {needed}")]
pub struct Denied {
    pub actor: String,
    pub what: &'static str,
    pub needed: String,
}

/// Whether `who` may perform `op`. Pure: the same inputs always give the same answer.
pub fn authorize(who: &Principal, op: Op) -> Result<(), Denied> {
    if op.roles().contains(&who.role) {
        return Ok(());
    }
    Err(Denied {
        actor: who.actor.clone(),
        what: op.describe(),
        needed: op
            .roles()
            .iter()
            .map(|r| r.as_str())
            .collect::<Vec<_>>()
            .join(" or "),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(role: Role) -> Principal {
        Principal {
            role,
            tenant: (role == Role::Tenant).then(|| "acme".to_string()),
            actor: format!("{role} x"),
        }
    }

    /// The whole table, written out once more by hand: a change to `Op::roles` must change this.
    #[test]
    fn role_matrix() {
        use Role::*;
        let all = [Admin, Operator, Auditor, Tenant, Agent, Controller];
        let expect = |op: Op| -> Vec<Role> {
            match op {
                Op::ReadPolicies => vec![Admin, Operator, Auditor, Tenant],
                Op::WritePolicy => vec![Admin, Operator, Tenant],
                Op::PlanPolicies => vec![Admin, Operator, Auditor, Tenant],
                Op::ReadEnclaves => vec![Admin, Operator, Auditor, Tenant],
                Op::WriteEnclave => vec![Admin, Operator],
                Op::ReadHosts => vec![Admin, Operator, Auditor],
                Op::WriteHost => vec![Admin],
                Op::ReadCluster => vec![Admin, Operator, Auditor],
                Op::ChangeMembership => vec![Admin],
                Op::ReadLog => vec![Admin, Operator, Auditor, Tenant],
                Op::ManageTokens => vec![Admin],
                Op::Backup => vec![Admin],
            }
        };
        for op in Op::ALL {
            for role in all {
                let allowed = authorize(&p(role), op).is_ok();
                assert_eq!(allowed, expect(op).contains(&role), "{role} {op:?}");
            }
        }
        // Services never use the user API.
        for op in Op::ALL {
            assert!(authorize(&p(Agent), op).is_err());
            assert!(authorize(&p(Controller), op).is_err());
        }
    }

    #[test]
    fn a_refusal_names_the_caller_and_the_role_needed() {
        let e = authorize(&p(Role::Auditor), Op::WritePolicy).expect_err("refused");
        assert_eq!(
            e.to_string(),
            "auditor x may not change policies: that needs the role admin or operator or tenant"
        );
    }
}
