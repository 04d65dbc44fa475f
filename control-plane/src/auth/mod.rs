//! Authentication and authorisation of API callers (`docs/security.md`).
//!
//! Every call except `/healthz` and `/readyz` is made by a [`Principal`]: the verified client
//! certificate's identity, or a bearer token from `tribune token create`. The principal's role
//! decides what it may do ([`rbac::authorize`]); its `actor` is what the log and the stored
//! objects record as having made a change — never anything the caller wrote in a header.
//!
//! Both steps are pure functions of their inputs (the certificate identity the TLS layer
//! verified, the `Authorization` header, the replicated tokens, the time), so they are tested
//! exhaustively without a network.

pub mod rbac;
pub mod token;

use std::collections::BTreeMap;

use tribune_tls::{PeerIdentity, Role};

pub use rbac::{Denied, Op, authorize};
pub use token::TokenError;

use crate::state::Token;

/// Who is making a request, as far as the API is concerned.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Principal {
    pub role: Role,
    /// Set exactly for the tenant role: the only tenant it may see.
    pub tenant: Option<String>,
    /// How the log and stored objects name it: `tribune://ROLE/NAME` for a certificate,
    /// `token:ID (NAME)` for a token, `anonymous (--insecure)` without TLS.
    pub actor: String,
}

impl Principal {
    /// The caller of a controller running `--insecure` (tests and benchmarks only): nothing is
    /// known about it, and nothing is checked.
    pub fn insecure() -> Self {
        Self {
            role: Role::Admin,
            tenant: None,
            actor: "anonymous (--insecure)".into(),
        }
    }

    /// The caller a verified certificate speaks for; its actor is the certificate's URI.
    pub fn of_identity(id: &PeerIdentity) -> Self {
        let (role, tenant) = match id {
            PeerIdentity::User { tenant, .. } => (id.role(), tenant.clone()),
            _ => (id.role(), None),
        };
        Self {
            role,
            tenant,
            actor: id.uri(),
        }
    }

    /// Whether this caller may see objects of `tenant`.
    pub fn sees_tenant(&self, tenant: &str) -> bool {
        self.tenant.as_deref().is_none_or(|t| t == tenant)
    }

    pub fn require(&self, op: Op) -> Result<(), Denied> {
        authorize(self, op)
    }
}

/// Why a request could not be authenticated (answered with 401 / UNAUTHENTICATED).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AuthError {
    #[error(
        "no credentials: present a client certificate issued by the cluster's CA (`tribune ca issue operator NAME`) or a bearer token (`Authorization: Bearer tbt_…`, from `tribune token create`)"
    )]
    NoCredentials,
    #[error("{0}")]
    Token(#[from] TokenError),
    #[error("the Authorization header is not valid text")]
    NotText,
}

/// Works out who made a request. A bearer token, when present, is what counts (and must be
/// valid); otherwise the verified client certificate; otherwise, with TLS on, nobody (an error),
/// and without TLS the [`Principal::insecure`] caller.
pub fn authenticate(
    tls_on: bool,
    peer: Option<&PeerIdentity>,
    authorization: Option<&[u8]>,
    tokens: &BTreeMap<String, Token>,
    now_ms: i64,
) -> Result<Principal, AuthError> {
    if let Some(raw) = authorization {
        let text = std::str::from_utf8(raw).map_err(|_| AuthError::NotText)?;
        let (id, secret) = token::parse_bearer(text)?;
        let t = tokens
            .get(id)
            .ok_or_else(|| TokenError::Unknown(id.to_string()))?;
        if !token::digests_equal(&token::hash_secret(secret), &t.secret_sha256) {
            return Err(TokenError::WrongSecret(id.to_string()).into());
        }
        if t.revoked.is_some() {
            return Err(TokenError::Revoked(id.to_string()).into());
        }
        if now_ms >= t.expires_at_ms {
            return Err(TokenError::Expired(id.to_string()).into());
        }
        return Ok(Principal {
            role: t.role.into(),
            tenant: t.tenant.clone(),
            actor: format!("token:{} ({})", t.id, t.name),
        });
    }
    match peer {
        Some(id) => Ok(Principal::of_identity(id)),
        None if tls_on => Err(AuthError::NoCredentials),
        None => Ok(Principal::insecure()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::state::Revocation;
    use tribune_tls::UserRole;

    fn stored(role: UserRole, tenant: Option<&str>) -> (String, BTreeMap<String, Token>) {
        let t = token::generate();
        let rec = Token {
            id: t.id.clone(),
            name: "ci".into(),
            role,
            tenant: tenant.map(str::to_string),
            secret_sha256: t.secret_sha256,
            created_by: "tribune://admin/root".into(),
            created_at_ms: 0,
            expires_at_ms: 1_000,
            revoked: None,
        };
        (
            format!("Bearer {}", t.secret),
            BTreeMap::from([(t.id, rec)]),
        )
    }

    #[test]
    fn certificates_tokens_and_nothing() {
        let none = BTreeMap::new();
        let alice = PeerIdentity::user(UserRole::Tenant, "alice", Some("acme")).expect("id");
        let p = authenticate(true, Some(&alice), None, &none, 0).expect("cert");
        assert_eq!(p.role, Role::Tenant);
        assert_eq!(p.tenant.as_deref(), Some("acme"));
        assert_eq!(p.actor, "tribune://tenant/acme/alice");
        assert!(p.sees_tenant("acme") && !p.sees_tenant("globex"));

        assert_eq!(
            authenticate(true, None, None, &none, 0),
            Err(AuthError::NoCredentials)
        );
        assert_eq!(
            authenticate(false, None, None, &none, 0),
            Ok(Principal::insecure())
        );

        let (header, tokens) = stored(UserRole::Operator, None);
        let p = authenticate(true, None, Some(header.as_bytes()), &tokens, 999).expect("token");
        assert_eq!(p.role, Role::Operator);
        assert!(p.actor.starts_with("token:") && p.actor.ends_with("(ci)"));
        // The token wins over the certificate when both are presented.
        let p =
            authenticate(true, Some(&alice), Some(header.as_bytes()), &tokens, 0).expect("token");
        assert_eq!(p.role, Role::Operator);
        // Even without TLS a presented token must be valid.
        assert!(authenticate(false, None, Some(b"Bearer nope"), &tokens, 0).is_err());
    }

    #[test]
    fn expired_revoked_unknown_and_forged_tokens_are_refused() {
        let (header, mut tokens) = stored(UserRole::Admin, None);
        let id = tokens.keys().next().cloned().expect("one");
        assert!(matches!(
            authenticate(true, None, Some(header.as_bytes()), &tokens, 1_000),
            Err(AuthError::Token(TokenError::Expired(_)))
        ));
        let forged = format!("{}{}", &header[..header.len() - 1], "0");
        let forged = if forged == header {
            format!("{}{}", &header[..header.len() - 1], "1")
        } else {
            forged
        };
        assert!(matches!(
            authenticate(true, None, Some(forged.as_bytes()), &tokens, 0),
            Err(AuthError::Token(TokenError::WrongSecret(_)))
        ));
        if let Some(t) = tokens.get_mut(&id) {
            t.revoked = Some(Revocation {
                by: "x".into(),
                at_ms: 1,
            });
        }
        assert!(matches!(
            authenticate(true, None, Some(header.as_bytes()), &tokens, 0),
            Err(AuthError::Token(TokenError::Revoked(_)))
        ));
        assert!(matches!(
            authenticate(true, None, Some(header.as_bytes()), &BTreeMap::new(), 0),
            Err(AuthError::Token(TokenError::Unknown(_)))
        ));
        assert_eq!(
            authenticate(true, None, Some(&[0xff, 0xfe]), &tokens, 0),
            Err(AuthError::NotText)
        );
    }
}
