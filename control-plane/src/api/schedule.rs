//! Scheduling through the API: create an enclave without naming a host (the scheduler places
//! it), cordon, uncordon and drain a host. The operations ([`Api::create_enclave`],
//! [`Api::set_schedulable`], [`Api::drain_host`]) are shared by HTTP (the route table in `api/http.rs`) and gRPC.
//!
//! The receiving controller plans over its state after a read barrier (so it has every
//! committed write), with `tribune_migration`, and proposes the result; the state machine
//! re-checks it against the state at apply (`state/schedule.rs`). When another write took
//! the room first, the operation plans again over the newer state, up to [`PLAN_ATTEMPTS`]
//! times: never an over-commit, and a lost race is not a failure the caller sees.
//!
//! Routes (all behind authentication, in `http.rs`'s route table): `POST /v1/enclaves`,
//! `POST /v1/hosts/{id}/cordon`, `POST /v1/hosts/{id}/uncordon`, `POST /v1/hosts/{id}/drain`.

use axum::Json;
use axum::extract::{Extension, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};
use std::sync::{Arc, Mutex};

use tribune_migration::{ClusterView, Freshness, Unplaceable, choose, place};

use super::bounds;
use super::http::{ApiJson, ApiPath, Shared};
use super::problem::Problem;
use super::service::{Api, now_ms, single, unexpected};
use crate::auth::{Op, Principal};
use crate::state::{
    Command, Enclave, EnclaveState, Host, Outcome, Schedulable, check_priority, cluster_view,
    enclave_spec, planning_spec, restartable, spec_under,
};
use crate::validate::check_name;

/// How many times a create plans again after losing a race at apply.
pub const PLAN_ATTEMPTS: usize = 8;

/// What a drain did with one enclave of the host.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct DrainMove {
    pub enclave: String,
    pub from: String,
    /// The host it is moving to (`None`: it stays).
    pub to: Option<String>,
    /// The epoch it runs under on `to` once its source stopped it (`None`: not moved).
    pub epoch: Option<u64>,
    pub outcome: DrainOutcome,
    /// Why it stays (empty when moving).
    pub reason: String,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum DrainOutcome {
    /// A stop-and-restart move started.
    Moving,
    /// Left in place: already moving, or a move was refused (the reason says why).
    Left,
    /// No other host can take it now.
    Unplaceable,
    /// A QEMU enclave: a live migration started (`GET /v1/migrations`). One the budget or
    /// its cool-down holds back now is started later by the leader while the host drains.
    Migrating,
}

/// `POST /v1/hosts/{id}/drain`: the host, now draining, and each enclave's fate.
#[derive(Clone, Debug, Serialize, Deserialize, utoipa::ToSchema)]
pub struct DrainReport {
    pub host: Host,
    pub moves: Vec<DrainMove>,
}

fn unplaceable(u: &Unplaceable) -> Problem {
    Problem::new(StatusCode::CONFLICT, "unplaceable", u.to_string())
}

/// The scheduler's view of the state at one applied index, shared by the creates planned at
/// that index (building it copies every placed enclave's spec: once per index, not once per
/// create, and never under the state lock for longer than one build). Keyed by the controller
/// too, as tests run several in one process.
type ViewAt = (usize, u64, Arc<ClusterView>);
static VIEW: Mutex<Option<ViewAt>> = Mutex::new(None);

impl Api {
    /// The view of this controller's state, at least as new as its applied index when called.
    fn view(&self) -> Arc<ClusterView> {
        let me = Arc::as_ptr(&self.controller) as usize;
        // The index first, then the state: the state is at least that new, so a view is never
        // labelled newer than what it holds.
        let applied = *self.controller.subscribe_applied().borrow();
        if let Ok(cached) = VIEW.lock()
            && let Some((who, at, v)) = cached.as_ref()
            && *who == me
            && *at == applied
        {
            return v.clone();
        }
        let v = Arc::new(cluster_view(&self.state()));
        if let Ok(mut cached) = VIEW.lock() {
            *cached = Some((me, applied, v.clone()));
        }
        v
    }
}

fn freshness() -> Freshness {
    crate::state::placement_freshness(now_ms())
}

/// What a `Command::Place` answered, as `create_enclave`'s reply.
fn created(o: Outcome) -> Result<Enclave, Problem> {
    match o {
        Outcome::Enclave(e) => Ok(e),
        Outcome::NoRoom { reason } => {
            Err(Problem::new(StatusCode::CONFLICT, "unplaceable", reason))
        }
        Outcome::Conflict {
            what,
            current_version,
        } => Err(Problem::conflict(
            format!("{what} already exists"),
            current_version,
        )),
        Outcome::Invalid { reason } => Err(Problem::bad_request(reason)),
        o => Err(unexpected(o)),
    }
}

impl Api {
    /// Creates `enclave` (which must name no placement) where the scheduler places it, with
    /// what had to make room; 409 `unplaceable` with every host's reason when nothing fits.
    pub async fn create_enclave(
        &self,
        who: &Principal,
        enclave: Enclave,
        key: Option<String>,
    ) -> Result<Enclave, Problem> {
        who.require(Op::WriteEnclave)?;
        self.writable()?;
        bounds::enclave(&enclave)?;
        if enclave.placement.is_some() {
            return Err(Problem::bad_request(
                "placement: a created enclave is placed by the scheduler; leave placement out (or PUT /v1/enclaves/{id} to name its host)",
            ));
        }
        let mut last = String::new();
        for _ in 0..PLAN_ATTEMPTS {
            self.read(false).await?;
            // A retry of a keyed create answers what the first one did (the placement is not
            // part of the request: `state::fingerprint`).
            let probe = Command::Place {
                enclave: enclave.clone(),
                placement: tribune_migration::Placement {
                    enclave: enclave.id.clone(),
                    host: String::new(),
                    displaced: Vec::new(),
                },
                actor: who.actor.clone(),
                at_ms: 0,
            };
            if let Some(o) = self.recorded(who, key.as_deref(), &probe)? {
                return created(o);
            }
            if let Some(e) = self.state().enclaves.get(&enclave.id) {
                return Err(Problem::conflict(
                    format!("enclave {:?} already exists at version {}", e.id, e.version),
                    Some(e.version),
                ));
            }
            let view = self.view();
            // The policies decide its priority and whether it may preempt; a spec that asks
            // for more is refused (`state/standing.rs`).
            let spec = {
                let st = self.state();
                let policies = st.policy_set();
                check_priority(&policies, &st, &enclave).map_err(|c| {
                    Problem::new(
                        StatusCode::UNPROCESSABLE_ENTITY,
                        "priority-not-granted",
                        c.to_string(),
                    )
                })?;
                planning_spec(spec_under(&policies, &st, &enclave), &enclave)
            };
            // Without preemption nothing in the view changes: choose on the shared view.
            let planned = if spec.preempt {
                place(&mut (*view).clone(), &spec, freshness())
            } else {
                choose(&view, &spec, freshness()).map(|host| tribune_migration::Placement {
                    enclave: spec.id.clone(),
                    host,
                    displaced: Vec::new(),
                })
            };
            let placement = planned.map_err(|u| unplaceable(&u))?;
            let cmd = Command::Place {
                enclave: enclave.clone(),
                placement,
                actor: who.actor.clone(),
                at_ms: now_ms(),
            };
            match self.write_one(who, key.clone(), cmd).await? {
                Outcome::NoRoom { reason } => last = reason,
                o => return created(o),
            }
        }
        Err(Problem::new(
            StatusCode::CONFLICT,
            "unplaceable",
            format!(
                "enclave {:?}: other writes took the room {PLAN_ATTEMPTS} times in a row; the last: {last}",
                enclave.id
            ),
        ))
    }

    /// Cordons (`Cordoned`), uncordons (`Ready`) or marks a host draining, through Raft.
    pub async fn set_schedulable(
        &self,
        who: &Principal,
        host: &str,
        schedulable: Schedulable,
    ) -> Result<Host, Problem> {
        who.require(Op::WriteHost)?;
        self.writable()?;
        check_name("host", host).map_err(Problem::bad_request)?;
        let cmd = Command::SetSchedulable {
            host: host.to_string(),
            schedulable,
            actor: who.actor.clone(),
            at_ms: now_ms(),
        };
        match single(self.controller.write(vec![cmd]).await?)? {
            Outcome::Host(h) => Ok(h),
            Outcome::NotFound { what } => Err(Problem::not_found(format!("no {what}"))),
            o => Err(unexpected(o)),
        }
    }

    /// Marks `host` draining, then starts a stop-and-restart move of each process enclave on
    /// it to a host the scheduler chooses, and a live migration of each QEMU enclave
    /// (`crate::live`; the leader starts those the budget held back). An enclave no other
    /// host can take now stays and says so. Running the drain again retries what stayed.
    pub async fn drain_host(&self, who: &Principal, host: &str) -> Result<DrainReport, Problem> {
        let drained = self
            .set_schedulable(who, host, Schedulable::Draining)
            .await?;
        self.read(false).await?;
        let on_host: Vec<Enclave> = {
            let st = self.state();
            st.enclaves
                .values()
                .filter(|e| e.placement.as_ref().is_some_and(|p| p.host == host))
                .filter(|e| e.state != EnclaveState::Stopped)
                .cloned()
                .collect()
        };
        let mut moves = Vec::new();
        for e in on_host {
            moves.push(self.drain_one(who, host, &e).await?);
        }
        Ok(DrainReport {
            host: drained,
            moves,
        })
    }

    /// A QEMU enclave of a draining host: a live migration to the scheduler's choice
    /// (`crate::live`). Refused now (budget, cool-down, no target): it stays, and the leader
    /// starts it later while the host is draining.
    async fn drain_live(
        &self,
        who: &Principal,
        host: &str,
        e: &Enclave,
    ) -> Result<DrainMove, Problem> {
        let cfg = &self.controller.config.migration;
        let now = now_ms();
        let planned = crate::live::decide::request(
            &self.state(),
            &e.id,
            None,
            crate::state::LiveCause::Drain,
            false,
            &who.actor,
            now,
            cfg,
            crate::live::fresh_nonce(),
        );
        let stay = |outcome, o: &Outcome| DrainMove {
            enclave: e.id.clone(),
            from: host.to_string(),
            to: None,
            epoch: None,
            outcome,
            reason: format!(
                "{} (a QEMU enclave moves only by live migration; the leader retries while the host drains)",
                crate::live::decide::reason(o)
            ),
        };
        let request = match planned {
            Ok(r) => r,
            Err(o @ Outcome::NoRoom { .. }) => return Ok(stay(DrainOutcome::Unplaceable, &o)),
            Err(o) => return Ok(stay(DrainOutcome::Left, &o)),
        };
        let cmd = Command::MigrateStart {
            request,
            at_ms: now,
        };
        match single(self.controller.write(vec![cmd]).await?)? {
            Outcome::Migration(m) => Ok(DrainMove {
                enclave: e.id.clone(),
                from: host.to_string(),
                to: Some(m.to.clone()),
                epoch: Some(m.epoch + 1),
                outcome: DrainOutcome::Migrating,
                reason: String::new(),
            }),
            o @ Outcome::NoRoom { .. } => Ok(stay(DrainOutcome::Unplaceable, &o)),
            o => Ok(stay(DrainOutcome::Left, &o)),
        }
    }

    async fn drain_one(
        &self,
        who: &Principal,
        host: &str,
        e: &Enclave,
    ) -> Result<DrainMove, Problem> {
        let stay = |outcome, reason: String| DrainMove {
            enclave: e.id.clone(),
            from: host.to_string(),
            to: None,
            epoch: None,
            outcome,
            reason,
        };
        if !restartable(e) {
            return self.drain_live(who, host, e).await;
        }
        let epoch = e.placement.as_ref().map_or(0, |p| p.epoch);
        let mut last = String::new();
        for _ in 0..PLAN_ATTEMPTS {
            let chosen = {
                let st = self.state();
                if st.moves.contains_key(&e.id) {
                    return Ok(stay(DrainOutcome::Left, "already moving".into()));
                }
                let mut view = cluster_view(&st);
                view.remove(&e.id);
                let mut spec = planning_spec(enclave_spec(e), e);
                spec.preempt = false;
                tribune_migration::choose(&view, &spec, freshness())
            };
            let to = match chosen {
                Ok(to) => to,
                Err(u) => return Ok(stay(DrainOutcome::Unplaceable, u.to_string())),
            };
            let cmd = Command::StartMove {
                enclave: e.id.clone(),
                to: to.clone(),
                epoch,
                cause: "drain".into(),
                actor: who.actor.clone(),
                at_ms: now_ms(),
            };
            match single(self.controller.write(vec![cmd]).await?)? {
                Outcome::Enclave(_) => {
                    return Ok(DrainMove {
                        enclave: e.id.clone(),
                        from: host.to_string(),
                        to: Some(to),
                        epoch: Some(epoch + 1),
                        outcome: DrainOutcome::Moving,
                        reason: String::new(),
                    });
                }
                Outcome::NoRoom { reason } => last = reason,
                Outcome::Invalid { reason } | Outcome::NotFound { what: reason } => {
                    return Ok(stay(DrainOutcome::Left, reason));
                }
                Outcome::Conflict { what, .. } => return Ok(stay(DrainOutcome::Left, what)),
                o => return Err(unexpected(o)),
            }
            self.read(false).await?;
        }
        Ok(stay(DrainOutcome::Unplaceable, last))
    }
}

#[utoipa::path(post, path = "/v1/enclaves", tag = "enclaves", request_body = Enclave,
    params(("Idempotency-Key" = Option<String>, Header, description = "retry-safe write: a repeat within the window answers the first outcome (docs/api.md)")),
    responses((status = 201, body = Enclave, description = "created and placed by the scheduler"),
        (status = 400), (status = 403),
        (status = 409, description = "the enclave exists, or it fits on no host: the reason per filter (`unplaceable`)"),
        (status = 422, description = "the Idempotency-Key was used for another request (`idempotency-key-reused`), or the spec asks a priority or preemption its policy does not give (`priority-not-granted`)"),
        (status = 503)))]
pub(super) async fn create_enclave(
    State(api): State<Shared>,
    Extension(who): Extension<Principal>,
    headers: axum::http::HeaderMap,
    ApiJson(enclave): ApiJson<Enclave>,
) -> Result<Response, Problem> {
    let e = api
        .create_enclave(&who, enclave, super::http::idempotency_key(&headers)?)
        .await?;
    Ok((
        StatusCode::CREATED,
        [(axum::http::header::ETAG, format!("\"{}\"", e.version))],
        Json(e),
    )
        .into_response())
}

#[utoipa::path(post, path = "/v1/hosts/{id}/cordon", tag = "hosts", params(("id" = String, Path)),
    responses((status = 200, body = Host), (status = 400), (status = 403), (status = 404), (status = 503)))]
pub(super) async fn cordon(
    State(api): State<Shared>,
    Extension(who): Extension<Principal>,
    ApiPath(id): ApiPath<String>,
) -> Result<Response, Problem> {
    let h = api
        .set_schedulable(&who, &id, Schedulable::Cordoned)
        .await?;
    Ok(Json(h).into_response())
}

#[utoipa::path(post, path = "/v1/hosts/{id}/uncordon", tag = "hosts", params(("id" = String, Path)),
    responses((status = 200, body = Host), (status = 400), (status = 403), (status = 404), (status = 503)))]
pub(super) async fn uncordon(
    State(api): State<Shared>,
    Extension(who): Extension<Principal>,
    ApiPath(id): ApiPath<String>,
) -> Result<Response, Problem> {
    let h = api.set_schedulable(&who, &id, Schedulable::Ready).await?;
    Ok(Json(h).into_response())
}

#[utoipa::path(post, path = "/v1/hosts/{id}/drain", tag = "hosts", params(("id" = String, Path)),
    responses((status = 200, body = DrainReport, description = "the host, now draining, and each enclave's fate"),
        (status = 400), (status = 403), (status = 404), (status = 503)))]
pub(super) async fn drain(
    State(api): State<Shared>,
    Extension(who): Extension<Principal>,
    ApiPath(id): ApiPath<String>,
) -> Result<Response, Problem> {
    Ok(Json(api.drain_host(&who, &id).await?).into_response())
}
