//! The two `/v1` routes the web console needs beyond the rest of the API (both behind the
//! same authentication, both authorised by the same table):
//!
//! - `GET /v1/whoami`: the caller's role, tenant and what it may do, so the console shows only
//!   what the role allows (the server still checks every call).
//! - `GET /v1/usage/stream[?enclave=ID]`: server-sent events from this controller's usage
//!   feed (`console::feed`): first one `history` event per enclave (its last ≤ 600 seconds),
//!   then `point` (one verified second), `action` (the loop committed a decision: its log
//!   entries are in the log) and `lagged` (this watcher fell behind and lost that many
//!   events). Without `enclave`, every enclave the caller may read; a tenant sees its own.
//! - `POST /v1/policy-format` `{"source": …}`: the source in the canonical layout
//!   (`tribune policy fmt`), or 400 with the syntax errors as `diagnostics`. Reads nothing.

use std::collections::HashMap;
use std::convert::Infallible;
use std::time::Duration;

use axum::Json;
use axum::extract::{Extension, State};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use futures::Stream;
use serde::{Deserialize, Serialize};
use tokio::sync::broadcast::error::RecvError;

use super::http::{ApiQuery, Shared};
use super::problem::Problem;
use crate::auth::{Op, Principal};
use crate::console::{ChartPoint, FeedEvent};
use crate::state::Step;
use crate::validate::check_name;

/// `GET /v1/whoami`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct WhoAmI {
    /// `admin`, `operator`, `auditor` or `tenant`.
    pub role: String,
    /// Set exactly for the tenant role.
    pub tenant: Option<String>,
    /// How the log names this caller.
    pub actor: String,
    /// The operations this role may do at all (a tenant only within its tenant), by name:
    /// `read_policies`, `write_policy`, `plan_policies`, `read_enclaves`, `write_enclave`,
    /// `read_hosts`, `write_host`, `read_cluster`, `change_membership`, `read_log`,
    /// `manage_tokens`, `backup`.
    pub may: Vec<String>,
}

/// The name of an operation in [`WhoAmI::may`].
pub fn op_name(op: Op) -> &'static str {
    match op {
        Op::ReadPolicies => "read_policies",
        Op::WritePolicy => "write_policy",
        Op::PlanPolicies => "plan_policies",
        Op::ReadEnclaves => "read_enclaves",
        Op::WriteEnclave => "write_enclave",
        Op::ReadHosts => "read_hosts",
        Op::WriteHost => "write_host",
        Op::ReadCluster => "read_cluster",
        Op::ChangeMembership => "change_membership",
        Op::ReadLog => "read_log",
        Op::ManageTokens => "manage_tokens",
        Op::Backup => "backup",
    }
}

pub fn whoami_of(who: &Principal) -> WhoAmI {
    WhoAmI {
        role: who.role.as_str().to_string(),
        tenant: who.tenant.clone(),
        actor: who.actor.clone(),
        may: Op::ALL
            .iter()
            .filter(|op| who.require(**op).is_ok())
            .map(|op| op_name(*op).to_string())
            .collect(),
    }
}

/// Every user role may read enclaves (a tenant its own); agent and controller certificates may
/// not, and get 403 here as on the rest of the user API.
#[utoipa::path(get, path = "/v1/whoami", tag = "console",
    responses((status = 200, body = WhoAmI), (status = 403)))]
pub(super) async fn whoami(Extension(who): Extension<Principal>) -> Result<Json<WhoAmI>, Problem> {
    who.require(Op::ReadEnclaves)?;
    Ok(Json(whoami_of(&who)))
}

/// `POST /v1/policy-format` body and answer.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PolicySource {
    pub source: String,
}

#[utoipa::path(post, path = "/v1/policy-format", tag = "policies", request_body = PolicySource,
    responses((status = 200, body = PolicySource, description = "the source in the canonical layout"),
        (status = 400, description = "a syntax error: the diagnostics"), (status = 403), (status = 413)))]
pub(super) async fn format_policy(
    Extension(who): Extension<Principal>,
    super::http::ApiJson(body): super::http::ApiJson<PolicySource>,
) -> Result<Json<PolicySource>, Problem> {
    who.require(Op::ReadPolicies)?;
    if body.source.len() > crate::validate::POLICY_SOURCE_BYTES_MAX {
        return Err(Problem::too_large(format!(
            "policy source is {} bytes; the limit is {} bytes",
            body.source.len(),
            crate::validate::POLICY_SOURCE_BYTES_MAX
        )));
    }
    match tribune_policy::format(&body.source) {
        Ok(source) => Ok(Json(PolicySource { source })),
        Err(e) => {
            let rendered =
                tribune_policy::render_diagnostics("<input>", &body.source, &e.diagnostics);
            let mut p = Problem::bad_request(format!("cannot format: {e}\n{rendered}"));
            p.diagnostics = e
                .diagnostics
                .into_iter()
                .map(crate::validate::PolicyProblem::error)
                .collect();
            Err(p)
        }
    }
}

#[derive(Deserialize, Default, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub(super) struct StreamQuery {
    /// Only this enclave (else every enclave the caller may read).
    enclave: Option<String>,
}

/// Every second a comment line keeps proxies and the browser from timing the stream out.
const KEEP_ALIVE: Duration = Duration::from_secs(15);

/// One enclave's history, as the stream's first events carry it.
#[derive(Serialize)]
struct History<'a> {
    enclave: &'a str,
    points: Vec<ChartPoint>,
}

#[derive(Serialize)]
struct PointEvent<'a> {
    enclave: &'a str,
    #[serde(flatten)]
    point: ChartPoint,
}

#[derive(Serialize)]
struct ActionEvent<'a> {
    enclave: &'a str,
    at_ms: i64,
    kinds: &'a [&'static str],
    step: Step,
    cause: &'a str,
}

#[derive(Serialize)]
struct LaggedEvent {
    dropped: u64,
}

#[utoipa::path(get, path = "/v1/usage/stream", tag = "console", params(StreamQuery),
    responses((status = 200, body = String, content_type = "text/event-stream",
            description = "server-sent events: `history`, `point`, `action`, `lagged` (docs/console.md)"),
        (status = 400), (status = 403), (status = 404), (status = 503)))]
pub(super) async fn usage_stream(
    State(api): State<Shared>,
    Extension(who): Extension<Principal>,
    ApiQuery(q): ApiQuery<StreamQuery>,
) -> Result<Response, Problem> {
    who.require(Op::ReadEnclaves)?;
    let feed = api.controller.usage_feed.clone();
    // Subscribe before reading history: nothing falls between the two (a point may come twice,
    // which the page ignores by time).
    let rx = feed.subscribe();
    let scope = match &q.enclave {
        Some(id) => {
            check_name("enclave", id).map_err(Problem::bad_request)?;
            // 404 for an enclave the caller may not see, as for every other read.
            api.get_enclave(&who, id, true).await?;
            Scope::One(id.clone())
        }
        None => Scope::Visible,
    };
    let mut first = Vec::new();
    let names = match &scope {
        Scope::One(id) => vec![id.clone()],
        Scope::Visible => feed.enclaves(),
    };
    let mut tenants = Tenants::default();
    for name in names {
        if !tenants.visible(&api, &who, &scope, &name) {
            continue;
        }
        let points = feed.history(&name);
        if let Ok(ev) = Event::default().event("history").json_data(History {
            enclave: &name,
            points,
        }) {
            first.push(Ok::<_, Infallible>(ev));
        }
    }
    let live = futures::stream::unfold(
        (rx, api, who, scope, tenants),
        |(mut rx, api, who, scope, mut tenants)| async move {
            loop {
                let ev = match rx.recv().await {
                    Ok(ev) => ev,
                    Err(RecvError::Lagged(n)) => {
                        let ev = Event::default()
                            .event("lagged")
                            .json_data(LaggedEvent { dropped: n });
                        match ev {
                            Ok(ev) => return Some((Ok(ev), (rx, api, who, scope, tenants))),
                            Err(_) => continue,
                        }
                    }
                    Err(RecvError::Closed) => return None,
                };
                if !tenants.visible(&api, &who, &scope, ev.enclave()) {
                    continue;
                }
                if let Some(e) = to_event(&ev) {
                    return Some((Ok(e), (rx, api, who, scope, tenants)));
                }
            }
        },
    );
    let stream: std::pin::Pin<Box<dyn Stream<Item = Result<Event, Infallible>> + Send>> = Box::pin(
        futures::StreamExt::chain(futures::stream::iter(first), live),
    );
    Ok(Sse::new(stream)
        .keep_alive(KeepAlive::new().interval(KEEP_ALIVE))
        .into_response())
}

fn to_event(ev: &FeedEvent) -> Option<Event> {
    let e = match ev {
        FeedEvent::Point { enclave, point } => {
            Event::default().event("point").json_data(PointEvent {
                enclave,
                point: *point,
            })
        }
        FeedEvent::Action {
            enclave,
            at_ms,
            kinds,
            step,
            cause,
        } => Event::default().event("action").json_data(ActionEvent {
            enclave,
            at_ms: *at_ms,
            kinds,
            step: *step,
            cause,
        }),
    };
    e.ok()
}

enum Scope {
    One(String),
    Visible,
}

/// Which enclaves a watcher may see, remembered per enclave for a minute so a busy stream
/// reads the state once per enclave, not once per point (an enclave that moves to another
/// tenant is re-checked within the minute).
#[derive(Default)]
struct Tenants {
    seen: HashMap<String, (bool, std::time::Instant)>,
}

const VISIBLE_CACHE: Duration = Duration::from_secs(60);
/// Enclaves remembered per watcher.
const VISIBLE_CACHE_MAX: usize = 4096;

impl Tenants {
    fn visible(&mut self, api: &Shared, who: &Principal, scope: &Scope, enclave: &str) -> bool {
        if let Scope::One(id) = scope
            && id != enclave
        {
            return false;
        }
        if let Some((ok, at)) = self.seen.get(enclave)
            && at.elapsed() < VISIBLE_CACHE
        {
            return *ok;
        }
        let ok = api
            .state()
            .enclaves
            .get(enclave)
            .is_some_and(|e| who.sees_tenant(&e.tenant));
        if self.seen.len() >= VISIBLE_CACHE_MAX {
            self.seen.clear();
        }
        self.seen
            .insert(enclave.to_string(), (ok, std::time::Instant::now()));
        ok
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tribune_tls::Role;

    fn principal(role: Role, tenant: Option<&str>) -> Principal {
        Principal {
            role,
            tenant: tenant.map(str::to_string),
            actor: "test".into(),
        }
    }

    #[test]
    fn whoami_lists_exactly_what_the_role_may_do() {
        let admin = whoami_of(&principal(Role::Admin, None));
        assert_eq!(admin.may.len(), Op::ALL.len());
        let tenant = whoami_of(&principal(Role::Tenant, Some("acme")));
        assert_eq!(tenant.role, "tenant");
        assert_eq!(tenant.tenant.as_deref(), Some("acme"));
        assert_eq!(
            tenant.may,
            [
                "read_policies",
                "write_policy",
                "plan_policies",
                "read_enclaves",
                "read_log"
            ]
        );
        let auditor = whoami_of(&principal(Role::Auditor, None));
        assert!(!auditor.may.iter().any(|m| m.starts_with("write")));
        assert!(auditor.may.contains(&"read_hosts".to_string()));
    }
}
