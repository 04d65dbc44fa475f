//! Live migration through the API (`crate::live`): `POST /v1/enclaves/{id}/migrate` starts
//! one (to a named host, checked, or to the scheduler's choice), `GET /v1/migrations` lists
//! those under way and the last finished ones with QEMU's figures. Shared by HTTP and gRPC.
//!
//! A request is checked here as it will be at apply (`state/live.rs`), so a refusal says its
//! reason at once: 404 (no such enclave or host), 409 (the target fails attestation or has no
//! room, the enclave is already migrating, is suspended by policy without `force`, is in its
//! cool-down, or the budget is full), 422 (not a QEMU enclave, not placed, stopped). A
//! refusal that names the target is also recorded in the log.

use axum::Json;
use axum::extract::{Extension, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};

use super::http::{ApiPath, ApiQuery, Shared};
use super::problem::Problem;
use super::service::{Api, now_ms, single, unexpected};
use crate::auth::{Op, Principal};
use crate::live::decide;
use crate::state::{Command, LiveCause, LiveMigration, Outcome};
use crate::validate::check_name;

/// `POST /v1/enclaves/{id}/migrate`'s body.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields, default)]
pub struct MigrateRequest {
    /// The target host (checked: attested freshly, trusted, schedulable, with room); absent:
    /// the scheduler chooses.
    pub to: Option<String>,
    /// Migrate an enclave a policy suspended, or within its cool-down (recorded in the log).
    pub force: bool,
}

/// `GET /v1/migrations`.
#[derive(Clone, Debug, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Migrations {
    /// Under way, by enclave id.
    pub current: Vec<LiveMigration>,
    /// Finished (committed or rolled back), newest first.
    pub past: Vec<LiveMigration>,
}

/// A refused request as the caller's error.
pub(super) fn refused(o: Outcome) -> Problem {
    match o {
        Outcome::NotFound { what } => Problem::not_found(format!("no {what}")),
        Outcome::NoRoom { reason } => {
            Problem::new(StatusCode::CONFLICT, "migration-refused", reason)
        }
        Outcome::Conflict {
            what,
            current_version,
        } => Problem::conflict(what, current_version),
        Outcome::Invalid { reason } => Problem::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "migration-refused",
            reason,
        ),
        o => unexpected(o),
    }
}

impl Api {
    /// Starts a live migration of enclave `id`.
    pub async fn migrate_enclave(
        &self,
        who: &Principal,
        id: &str,
        req: MigrateRequest,
    ) -> Result<LiveMigration, Problem> {
        who.require(Op::WriteEnclave)?;
        self.writable()?;
        check_name("enclave", id).map_err(Problem::bad_request)?;
        if let Some(to) = &req.to {
            check_name("host", to).map_err(Problem::bad_request)?;
        }
        self.read(false).await?;
        let cfg = &self.controller.config.migration;
        let now = now_ms();
        let planned = {
            let st = self.state();
            if let Some(e) = st.enclaves.get(id)
                && !who.sees_tenant(&e.tenant)
            {
                return Err(Problem::not_found(format!("no enclave {id:?}")));
            }
            decide::request(
                &st,
                id,
                req.to.as_deref(),
                LiveCause::Request,
                req.force,
                &who.actor,
                now,
                cfg,
                crate::live::fresh_nonce(),
            )
        };
        let request = match planned {
            Ok(r) => r,
            Err(o) => {
                self.record_refusal(who, id, &o).await;
                return Err(refused(o));
            }
        };
        let cmd = Command::MigrateStart {
            request,
            at_ms: now,
        };
        match single(self.controller.write(vec![cmd]).await?)? {
            Outcome::Migration(m) => Ok(*m),
            o => {
                self.record_refusal(who, id, &o).await;
                Err(refused(o))
            }
        }
    }

    /// A refused migration whose target was at fault goes in the log (subject: the
    /// enclave), as any refusal.
    async fn record_refusal(&self, who: &Principal, id: &str, o: &Outcome) {
        let target = matches!(o, Outcome::NoRoom { .. })
            || matches!(o, Outcome::NotFound { what } if what.starts_with("host"));
        if !target {
            return;
        }
        let cmd = Command::AppendLog {
            subject: id.to_string(),
            detail: crate::state::Refusal::new(
                "migration",
                format!("{} (asked by {})", decide::reason(o), who.actor),
            )
            .into(),
            at_ms: now_ms(),
        };
        if let Err(e) = self.controller.write(vec![cmd]).await {
            tracing::warn!(enclave = id, "recording a refused migration: {e}");
        }
    }

    /// The migrations under way and the finished ones the state keeps, those of enclaves the
    /// caller may see.
    pub async fn migrations(&self, who: &Principal, stale: bool) -> Result<Migrations, Problem> {
        who.require(Op::ReadEnclaves)?;
        self.read(stale).await?;
        let st = self.state();
        let visible = |m: &&LiveMigration| {
            st.enclaves
                .get(&m.enclave)
                .map_or(who.tenant.is_none(), |e| who.sees_tenant(&e.tenant))
        };
        Ok(Migrations {
            current: st.live.values().filter(visible).cloned().collect(),
            past: st.live_done.iter().rev().filter(visible).cloned().collect(),
        })
    }
}

#[utoipa::path(post, path = "/v1/enclaves/{id}/migrate", tag = "enclaves", params(("id" = String, Path)),
    request_body = MigrateRequest,
    responses((status = 202, body = LiveMigration, description = "started: follow it in GET /v1/migrations"),
        (status = 400), (status = 403),
        (status = 404, description = "no such enclave or target host"),
        (status = 409, description = "refused: the target fails attestation or has no room, already migrating, suspended by policy (without force), cool-down, budget"),
        (status = 422, description = "not a QEMU enclave, not placed, or stopped"),
        (status = 503)))]
pub(super) async fn migrate(
    State(api): State<Shared>,
    Extension(who): Extension<Principal>,
    ApiPath(id): ApiPath<String>,
    body: axum::body::Bytes,
) -> Result<Response, Problem> {
    // No body: the scheduler chooses, nothing forced.
    let req = if body.iter().all(u8::is_ascii_whitespace) {
        MigrateRequest::default()
    } else {
        serde_json::from_slice(&body)
            .map_err(|e| Problem::bad_request(format!("invalid JSON body: {e}")))?
    };
    let m = api.migrate_enclave(&who, &id, req).await?;
    Ok((StatusCode::ACCEPTED, Json(m)).into_response())
}

#[derive(Debug, Default, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(default, deny_unknown_fields)]
pub(super) struct ListQuery {
    /// Serve from this controller's applied state without a read barrier.
    stale: bool,
}

#[utoipa::path(get, path = "/v1/migrations", tag = "enclaves",
    params(ListQuery),
    responses((status = 200, body = Migrations), (status = 403), (status = 503)))]
pub(super) async fn list(
    State(api): State<Shared>,
    Extension(who): Extension<Principal>,
    ApiQuery(q): ApiQuery<ListQuery>,
) -> Result<Response, Problem> {
    Ok(Json(api.migrations(&who, q.stale).await?).into_response())
}
