//! Bearer tokens: create (the secret is shown once), list (never the secret or its hash),
//! revoke. Admins only; every change is logged with who made it.

use serde::Serialize;
use tribune_tls::UserRole;

use super::problem::Problem;
use super::service::{Api, now_ms, single, unexpected};
use crate::auth::{Op, Principal, token};
use crate::state::{Command, Outcome, Revocation, Token};
use crate::validate::check_name;

/// Longest lifetime a token may be given: one year.
pub const TOKEN_TTL_MS_MAX: i64 = 366 * 24 * 3600 * 1000;

/// A token as listed: everything but its secret's hash.
#[derive(Clone, Debug, Serialize, utoipa::ToSchema)]
pub struct TokenView {
    pub id: String,
    pub name: String,
    pub role: UserRole,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tenant: Option<String>,
    pub created_by: String,
    pub created_at_ms: i64,
    pub expires_at_ms: i64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub revoked: Option<Revocation>,
}

impl From<Token> for TokenView {
    fn from(t: Token) -> Self {
        Self {
            id: t.id,
            name: t.name,
            role: t.role,
            tenant: t.tenant,
            created_by: t.created_by,
            created_at_ms: t.created_at_ms,
            expires_at_ms: t.expires_at_ms,
            revoked: t.revoked,
        }
    }
}

/// A new token: its view and, once, the secret to hand to its holder.
#[derive(Clone, Debug, Serialize, utoipa::ToSchema)]
pub struct CreatedToken {
    #[serde(flatten)]
    pub view: TokenView,
    pub token: String,
}

impl Api {
    pub async fn create_token(
        &self,
        who: &Principal,
        name: &str,
        role: UserRole,
        tenant: Option<&str>,
        ttl_ms: i64,
    ) -> Result<CreatedToken, Problem> {
        who.require(Op::ManageTokens)?;
        self.writable()?;
        check_name("token", name).map_err(Problem::bad_request)?;
        // Same rules as certificates: a tenant token names its tenant, others none.
        tribune_tls::PeerIdentity::user(role, name, tenant)
            .map_err(|e| Problem::bad_request(e.to_string()))?;
        if let Some(t) = tenant {
            check_name("tenant", t).map_err(Problem::bad_request)?;
        }
        if !(1..=TOKEN_TTL_MS_MAX).contains(&ttl_ms) {
            return Err(Problem::bad_request(format!(
                "ttl must be between 1 ms and {} days",
                TOKEN_TTL_MS_MAX / 86_400_000
            )));
        }
        let fresh = token::generate();
        let at_ms = now_ms();
        let record = Token {
            id: fresh.id,
            name: name.to_string(),
            role,
            tenant: tenant.map(str::to_string),
            secret_sha256: fresh.secret_sha256,
            created_by: who.actor.clone(),
            created_at_ms: at_ms,
            expires_at_ms: at_ms.saturating_add(ttl_ms),
            revoked: None,
        };
        match single(
            self.controller
                .write(vec![Command::CreateToken {
                    token: record,
                    at_ms,
                }])
                .await?,
        )? {
            Outcome::Token(t) => Ok(CreatedToken {
                view: t.into(),
                token: fresh.secret,
            }),
            o => Err(unexpected(o)),
        }
    }

    pub async fn list_tokens(&self, who: &Principal) -> Result<Vec<TokenView>, Problem> {
        who.require(Op::ManageTokens)?;
        self.read(false).await?;
        Ok(self
            .state()
            .tokens
            .values()
            .cloned()
            .map(TokenView::from)
            .collect())
    }

    pub async fn revoke_token(&self, who: &Principal, id: &str) -> Result<TokenView, Problem> {
        who.require(Op::ManageTokens)?;
        self.writable()?;
        if id.len() != 16 || !id.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(Problem::bad_request(format!(
                "{:?} is not a token id (16 hex digits, as `tribune token ls` shows)",
                id.escape_debug().to_string()
            )));
        }
        match single(
            self.controller
                .write(vec![Command::RevokeToken {
                    id: id.to_string(),
                    actor: who.actor.clone(),
                    at_ms: now_ms(),
                }])
                .await?,
        )? {
            Outcome::Token(t) => Ok(t.into()),
            Outcome::NotFound { what } => Err(Problem::not_found(format!("no {what}"))),
            o => Err(unexpected(o)),
        }
    }
}
