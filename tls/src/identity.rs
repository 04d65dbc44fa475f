//! Who a certificate speaks for: one `tribune://ROLE/NAME` URI in its subjectAltName.

use std::fmt;
use std::str::FromStr;

use x509_parser::extensions::GeneralName;

use crate::TlsError;

/// URI scheme of Tribune identities in certificates.
pub const URI_PREFIX: &str = "tribune://";

/// Longest host or client name accepted (a DNS name's limit).
pub const NAME_LEN_MAX: usize = 253;

/// The kinds of certificate the Tribune CA issues. `Controller` and `Agent` are services; the
/// other four are people or programs using the API, with the role the API authorises them by
/// (`docs/security.md`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Role {
    /// A controller; also serves TLS, so its certificate carries DNS/IP names.
    Controller,
    /// A host agent, speaking for one host.
    Agent,
    /// Everything: membership, hosts, tokens, policies, enclaves.
    Admin,
    /// Policies, enclaves, suspend/resume.
    Operator,
    /// Reads everything, changes nothing.
    Auditor,
    /// One tenant's own enclaves, policies and proofs, nothing of other tenants.
    Tenant,
}

/// The four roles a user (certificate or token) can hold.
#[derive(
    Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize, serde::Deserialize,
)]
#[serde(rename_all = "lowercase")]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub enum UserRole {
    Admin,
    Operator,
    Auditor,
    Tenant,
}

impl UserRole {
    pub const ALL: [UserRole; 4] = [
        UserRole::Admin,
        UserRole::Operator,
        UserRole::Auditor,
        UserRole::Tenant,
    ];

    pub fn as_str(self) -> &'static str {
        Role::from(self).as_str()
    }
}

impl From<UserRole> for Role {
    fn from(r: UserRole) -> Self {
        match r {
            UserRole::Admin => Role::Admin,
            UserRole::Operator => Role::Operator,
            UserRole::Auditor => Role::Auditor,
            UserRole::Tenant => Role::Tenant,
        }
    }
}

impl fmt::Display for UserRole {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for UserRole {
    type Err = TlsError;

    fn from_str(s: &str) -> Result<Self, TlsError> {
        match s.parse::<Role>()?.user() {
            Some(r) => Ok(r),
            None => Err(TlsError::BadIdentity {
                identity: s.to_string(),
                reason: "a user's role must be admin, operator, auditor or tenant".into(),
            }),
        }
    }
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Controller => "controller",
            Role::Agent => "agent",
            Role::Admin => "admin",
            Role::Operator => "operator",
            Role::Auditor => "auditor",
            Role::Tenant => "tenant",
        }
    }

    /// The user role, for the four user kinds.
    pub fn user(self) -> Option<UserRole> {
        match self {
            Role::Controller | Role::Agent => None,
            Role::Admin => Some(UserRole::Admin),
            Role::Operator => Some(UserRole::Operator),
            Role::Auditor => Some(UserRole::Auditor),
            Role::Tenant => Some(UserRole::Tenant),
        }
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Role {
    type Err = TlsError;

    fn from_str(s: &str) -> Result<Self, TlsError> {
        match s {
            "controller" => Ok(Role::Controller),
            "agent" => Ok(Role::Agent),
            "admin" => Ok(Role::Admin),
            "operator" => Ok(Role::Operator),
            "auditor" => Ok(Role::Auditor),
            "tenant" => Ok(Role::Tenant),
            "client" => Err(TlsError::BadIdentity {
                identity: s.to_string(),
                reason: "the `client` role carries no permissions any more: reissue the certificate as admin, operator, auditor or tenant (`tribune ca issue operator NAME`)".into(),
            }),
            other => Err(TlsError::BadIdentity {
                identity: other.to_string(),
                reason: "the role must be controller, agent, admin, operator, auditor or tenant".into(),
            }),
        }
    }
}

/// The authenticated identity of a TLS peer, read from its verified certificate.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum PeerIdentity {
    Controller {
        id: u64,
    },
    Agent {
        host: String,
    },
    /// A person or program using the API; `tenant` is set exactly when `role` is `Tenant`.
    User {
        role: UserRole,
        name: String,
        tenant: Option<String>,
    },
}

impl PeerIdentity {
    /// Builds an identity from a role and a name (controller: its numeric id), checking the
    /// name. A tenant user also needs its tenant ([`Self::user`]).
    pub fn new(role: Role, name: &str) -> Result<Self, TlsError> {
        let bad = |reason: String| TlsError::BadIdentity {
            identity: format!("{role}/{name}"),
            reason,
        };
        match role {
            Role::Controller => match name.parse::<u64>() {
                Ok(id) if id > 0 => Ok(PeerIdentity::Controller { id }),
                _ => Err(bad(
                    "a controller's name is its id, a number greater than 0".into(),
                )),
            },
            Role::Agent => {
                check_name(name).map_err(bad)?;
                Ok(PeerIdentity::Agent {
                    host: name.to_string(),
                })
            }
            Role::Tenant => match name.split_once('/') {
                Some((tenant, user)) => Self::user(UserRole::Tenant, user, Some(tenant)),
                None => Err(bad("a tenant user needs its tenant (TENANT/NAME)".into())),
            },
            Role::Admin | Role::Operator | Role::Auditor => {
                Self::user(role.user().unwrap_or(UserRole::Auditor), name, None)
            }
        }
    }

    /// A user identity. `tenant` is required for the tenant role and refused for the others.
    pub fn user(role: UserRole, name: &str, tenant: Option<&str>) -> Result<Self, TlsError> {
        let bad = |reason: String| TlsError::BadIdentity {
            identity: format!("{role}/{name}"),
            reason,
        };
        check_name(name).map_err(bad)?;
        let tenant = match (role, tenant) {
            (UserRole::Tenant, Some(t)) => {
                check_name(t).map_err(|r| bad(format!("tenant: {r}")))?;
                Some(t.to_string())
            }
            (UserRole::Tenant, None) => {
                return Err(bad("a tenant user needs its tenant (--tenant)".into()));
            }
            (_, Some(_)) => {
                return Err(bad(format!(
                    "only tenant users belong to a tenant; an {role} sees every tenant"
                )));
            }
            (_, None) => None,
        };
        Ok(PeerIdentity::User {
            role,
            name: name.to_string(),
            tenant,
        })
    }

    pub fn role(&self) -> Role {
        match self {
            PeerIdentity::Controller { .. } => Role::Controller,
            PeerIdentity::Agent { .. } => Role::Agent,
            PeerIdentity::User { role, .. } => Role::from(*role),
        }
    }

    /// The name part: a controller's id, an agent's host id, a user's name (a tenant user's
    /// as `TENANT/NAME`).
    pub fn name(&self) -> String {
        match self {
            PeerIdentity::Controller { id } => id.to_string(),
            PeerIdentity::Agent { host } => host.clone(),
            PeerIdentity::User {
                name,
                tenant: Some(t),
                ..
            } => format!("{t}/{name}"),
            PeerIdentity::User { name, .. } => name.clone(),
        }
    }

    /// `tribune://ROLE/NAME` (a tenant user: `tribune://tenant/TENANT/NAME`), as written in
    /// the certificate's subjectAltName.
    pub fn uri(&self) -> String {
        format!("{URI_PREFIX}{}/{}", self.role(), self.name())
    }

    /// File name stem of this identity's certificate and key: `ROLE-NAME`
    /// (`tenant-TENANT-NAME`).
    pub fn file_stem(&self) -> String {
        format!("{}-{}", self.role(), self.name().replace('/', "-"))
    }

    /// Parses `tribune://ROLE/NAME`.
    pub fn from_uri(uri: &str) -> Result<Self, TlsError> {
        let rest = uri
            .strip_prefix(URI_PREFIX)
            .ok_or_else(|| TlsError::BadIdentity {
                identity: uri.to_string(),
                reason: format!("expected {URI_PREFIX}ROLE/NAME"),
            })?;
        let (role, name) = rest.split_once('/').ok_or_else(|| TlsError::BadIdentity {
            identity: uri.to_string(),
            reason: format!("expected {URI_PREFIX}ROLE/NAME"),
        })?;
        Self::new(role.parse()?, name)
    }

    /// Reads the identity from a DER certificate: exactly one `tribune://` URI in its
    /// subjectAltName. Does not verify the certificate: call this on a chain rustls verified.
    pub fn from_cert_der(der: &[u8]) -> Result<Self, TlsError> {
        let (_, cert) = x509_parser::parse_x509_certificate(der)
            .map_err(|e| TlsError::Certificate(format!("not an X.509 certificate: {e}")))?;
        let san = cert
            .subject_alternative_name()
            .map_err(|e| TlsError::Certificate(format!("malformed subjectAltName: {e}")))?
            .ok_or_else(|| {
                TlsError::NoIdentity(format!(
                    "the certificate for {} has no subjectAltName",
                    cert.subject()
                ))
            })?;
        let uris: Vec<&str> = san
            .value
            .general_names
            .iter()
            .filter_map(|n| match n {
                GeneralName::URI(u) if u.starts_with(URI_PREFIX) => Some(*u),
                _ => None,
            })
            .collect();
        match uris.as_slice() {
            [one] => Self::from_uri(one),
            [] => Err(TlsError::NoIdentity(format!(
                "the certificate for {} has no {URI_PREFIX}ROLE/NAME subjectAltName: was it issued by `tribune ca issue`?",
                cert.subject()
            ))),
            many => Err(TlsError::NoIdentity(format!(
                "the certificate for {} names {} identities ({}); exactly one is allowed",
                cert.subject(),
                many.len(),
                many.join(", ")
            ))),
        }
    }
}

impl fmt::Display for PeerIdentity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PeerIdentity::Controller { id } => write!(f, "controller {id}"),
            PeerIdentity::Agent { host } => write!(f, "agent for host {host:?}"),
            PeerIdentity::User {
                role,
                name,
                tenant: Some(t),
            } => write!(f, "{role} {name:?} of tenant {t:?}"),
            PeerIdentity::User { role, name, .. } => write!(f, "{role} {name:?}"),
        }
    }
}

/// Host and client names: 1–253 of `A-Z a-z 0-9 . _ -`, not starting with `.` or `-` (they
/// become file names and URI path segments).
fn check_name(name: &str) -> Result<(), String> {
    if name.is_empty() || name.len() > NAME_LEN_MAX {
        return Err(format!("the name must be 1 to {NAME_LEN_MAX} characters"));
    }
    if name.starts_with(['.', '-']) {
        return Err("the name must not start with '.' or '-'".into());
    }
    if let Some(c) = name
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-')))
    {
        return Err(format!(
            "{c:?} is not allowed in a name (use letters, digits, '.', '_' and '-')"
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uris_round_trip_and_bad_ones_are_refused() {
        for id in [
            PeerIdentity::Controller { id: 7 },
            PeerIdentity::Agent {
                host: "kvm-03.rack2".into(),
            },
            PeerIdentity::User {
                role: UserRole::Operator,
                name: "alice".into(),
                tenant: None,
            },
            PeerIdentity::User {
                role: UserRole::Tenant,
                name: "bob".into(),
                tenant: Some("acme".into()),
            },
        ] {
            assert_eq!(PeerIdentity::from_uri(&id.uri()).expect("parses"), id);
        }
        for bad in [
            "tribune://controller/0",
            "tribune://controller/x",
            "tribune://agent/",
            "tribune://agent/a/b",
            "tribune://agent/../x",
            "tribune://root/x",
            "spiffe://agent/x",
            "tribune://agent",
            "tribune://client/alice",
            "tribune://tenant/alice",
            "tribune://admin/acme/alice",
            "tribune://tenant/acme/b/c",
        ] {
            assert!(PeerIdentity::from_uri(bad).is_err(), "{bad} accepted");
        }
    }
}
