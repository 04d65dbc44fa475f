//! HTTP/JSON front end of the control API (axum). Errors are RFC 9457 problem details.

use std::sync::Arc;

use axum::extract::{ConnectInfo, DefaultBodyLimit, Extension, FromRequest, Request, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{MethodRouter, delete, get, post, put};
use axum::{Json, Router};
use serde::Deserialize;
use tribune_tls::UserRole;

use super::console;
use super::log;
use super::problem::Problem;
use super::schedule;
use super::service::Api;
use crate::auth::Principal;
use crate::raft::NodeId;
use crate::state::{Enclave, Expect, Host, Policy};
use crate::tls::PeerInfo;

use super::request::bound_request;
pub use super::request::{
    ApiJson, ApiPath, ApiQuery, BODY_BYTES_MAX, BODY_DRAIN_BYTES_MAX, HEADER_BYTES_MAX,
    HEADERS_MAX, URI_BYTES_MAX,
};

#[derive(Deserialize, Default, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub(super) struct ReadOpts {
    /// Serve from this controller's state without confirming it is current.
    #[serde(default)]
    stale: bool,
}

#[derive(Deserialize, Default, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub(super) struct PutEnclaveOpts {
    /// Write only the spec: the stored state (and, on the same host, placement epoch) stay.
    #[serde(default)]
    spec_only: bool,
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub(super) struct PutPolicyBody {
    source: String,
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub(super) struct AddMemberBody {
    #[schema(value_type = u64)]
    id: NodeId,
    address: String,
    #[serde(default)]
    voter: bool,
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub(super) struct CreateTokenBody {
    name: String,
    role: UserRole,
    #[serde(default)]
    tenant: Option<String>,
    /// Lifetime in seconds.
    ttl_s: u64,
}

pub(super) type Shared = Arc<Api>;

/// The routes behind `authenticate`, as (template, handlers). The router is built from this
/// list and [`PUBLIC_ROUTES`]; [`route_paths`] lists both, and the OpenAPI conformance test
/// (`cli/tests/openapi.rs`) holds the document (`api/openapi.rs`) to it, so a route added here
/// without an annotation and an entry in `ApiDoc` fails that test.
fn authenticated_routes() -> Vec<(&'static str, MethodRouter<Shared>)> {
    vec![
        ("/v1/openapi.json", get(super::openapi::openapi_json)),
        ("/v1/policies", get(list_policies)),
        (
            "/v1/policies/{name}",
            get(get_policy)
                .put(put_policy)
                .delete(delete_policy)
                .post(plan_policies),
        ),
        (
            "/v1/enclaves",
            get(list_enclaves).post(schedule::create_enclave),
        ),
        (
            "/v1/enclaves/{id}",
            get(get_enclave).put(put_enclave).delete(delete_enclave),
        ),
        ("/v1/enclaves/{id}/status", get(enclave_status)),
        ("/v1/enclaves/{id}/receipt", get(enclave_receipt)),
        ("/v1/enclaves/{id}/migrate", post(super::migrate::migrate)),
        ("/v1/migrations", get(super::migrate::list)),
        ("/v1/hosts", get(list_hosts)),
        ("/v1/hosts/{id}", put(put_host)),
        ("/v1/hosts/{id}/cordon", post(schedule::cordon)),
        ("/v1/hosts/{id}/uncordon", post(schedule::uncordon)),
        ("/v1/hosts/{id}/drain", post(schedule::drain)),
        ("/v1/cluster", get(cluster)),
        ("/v1/cluster/members", post(add_member)),
        ("/v1/cluster/members/{id}", delete(remove_member)),
        ("/v1/cluster/members/{id}/promote", post(promote)),
        ("/v1/log/sth", get(log_sth)),
        ("/v1/log/keys", get(log_keys)),
        ("/v1/log/checkpoint", get(log_checkpoint)),
        ("/v1/log/note-keys", get(log_note_keys)),
        ("/v1/log/entries", get(log_entries)),
        ("/v1/log/proof/inclusion", get(log_inclusion)),
        ("/v1/log/proof/consistency", get(log_consistency)),
        ("/v1/tokens", get(list_tokens).post(create_token)),
        ("/v1/tokens/{id}", delete(revoke_token)),
        ("/v1/snapshot", get(snapshot)),
        // The web console's API (`api/console.rs`).
        ("/v1/whoami", get(console::whoami)),
        ("/v1/usage/stream", get(console::usage_stream)),
        ("/v1/policy-format", post(console::format_policy)),
    ]
}

/// The routes anyone may call (`docs/security.md`): liveness, readiness, metrics.
const PUBLIC_ROUTES: [&str; 3] = ["/healthz", "/readyz", "/metrics"];

fn public_routes() -> Vec<(&'static str, MethodRouter<Shared>)> {
    let routes = vec![
        ("/healthz", get(healthz)),
        ("/readyz", get(readyz)),
        ("/metrics", get(super::observe::metrics)),
    ];
    debug_assert!(routes.iter().map(|r| r.0).eq(PUBLIC_ROUTES));
    routes
}

/// Every route template the router serves (axum syntax, `{param}`), authenticated ones first.
pub fn route_paths() -> Vec<&'static str> {
    authenticated_routes()
        .into_iter()
        .map(|(path, _)| path)
        .chain(PUBLIC_ROUTES)
        .collect()
}

/// Every route but `PUBLIC_ROUTES` is behind `authenticate`; the operations check the
/// caller's role themselves (`api::service`), so HTTP and gRPC authorise alike.
pub fn router(api: Shared) -> Router {
    let authenticated = authenticated_routes()
        .into_iter()
        .fold(Router::new(), |r, (path, m)| r.route(path, m))
        .route_layer(middleware::from_fn_with_state(api.clone(), authenticate));
    public_routes()
        .into_iter()
        .fold(authenticated, |r, (path, m)| r.route(path, m))
        .fallback(|| async {
            Problem::not_found("no such endpoint; GET /v1/openapi.json (or docs/api.md) lists the routes")
        })
        .method_not_allowed_fallback(|| async {
            Problem::new(
                StatusCode::METHOD_NOT_ALLOWED,
                "method-not-allowed",
                "this endpoint does not take that method; GET /v1/openapi.json (or docs/api.md) lists the routes",
            )
        })
        .layer(DefaultBodyLimit::max(BODY_BYTES_MAX))
        .layer(middleware::from_fn(bound_request))
        .layer(super::observe::access_log())
        .with_state(api)
}

/// Works out the caller (certificate or bearer token) and puts its [`Principal`] into the
/// request; 401 with what to do when there is none.
async fn authenticate(State(api): State<Shared>, mut req: Request, next: Next) -> Response {
    let peer = req
        .extensions()
        .get::<ConnectInfo<PeerInfo>>()
        .and_then(|c| c.0.identity.clone());
    let authorization = req
        .headers()
        .get(header::AUTHORIZATION)
        .map(|v| v.as_bytes().to_vec());
    match api.authenticate(peer.as_ref(), authorization.as_deref()) {
        Ok(who) => {
            req.extensions_mut().insert(who);
            next.run(req).await
        }
        Err(e) => {
            let mut r = Problem::from(e).into_response();
            r.headers_mut().insert(
                header::WWW_AUTHENTICATE,
                HeaderValue::from_static("Bearer realm=\"tribune\""),
            );
            r
        }
    }
}

/// `If-Match: "3"` → version 3; `If-None-Match: *` → must not exist; neither → unconditional.
fn expectation(headers: &HeaderMap) -> Result<Expect, Problem> {
    if let Some(v) = headers.get(header::IF_NONE_MATCH) {
        return match v.to_str() {
            Ok("*") => Ok(Expect::Absent),
            _ => Err(Problem::bad_request(
                "If-None-Match supports only `*` (create only if absent)",
            )),
        };
    }
    let Some(v) = headers.get(header::IF_MATCH) else {
        return Ok(Expect::Any);
    };
    let text = v
        .to_str()
        .map_err(|_| Problem::bad_request("If-Match is not valid text"))?;
    let trimmed = text.trim().trim_start_matches("W/").trim_matches('"');
    trimmed.parse::<u64>().map(Expect::Version).map_err(|_| {
        Problem::bad_request(format!(
            "If-Match must be a version number such as \"3\" (the ETag you read), got {text:?}"
        ))
    })
}

/// The `Idempotency-Key` header (docs/api.md), if any.
pub(super) fn idempotency_key(headers: &HeaderMap) -> Result<Option<String>, Problem> {
    headers
        .get("idempotency-key")
        .map(|v| {
            v.to_str()
                .map(str::to_string)
                .map_err(|_| Problem::bad_request("Idempotency-Key must be printable ASCII"))
        })
        .transpose()
}

fn with_etag(version: u64, body: impl IntoResponse) -> Response {
    let mut r = body.into_response();
    if let Ok(v) = HeaderValue::from_str(&format!("\"{version}\"")) {
        r.headers_mut().insert(header::ETAG, v);
    }
    r
}

#[utoipa::path(get, path = "/healthz", tag = "health",
    responses((status = 200, description = "the process is alive", body = String, content_type = "text/plain")))]
async fn healthz() -> &'static str {
    "ok"
}

#[utoipa::path(get, path = "/readyz", tag = "health", responses(
    (status = 200, description = "a leader is known and this controller's state agrees with the cluster's", body = String, content_type = "text/plain"),
    (status = 503, description = "not ready (`not-ready`): why, and when to ask again")))]
async fn readyz(State(api): State<Shared>) -> Response {
    // The integrity gate first: a diverged controller has stopped Raft, and says why.
    let ready = api
        .controller
        .integrity
        .ready()
        .map_err(|e| e.to_string())
        .and_then(|()| api.controller.ready().map_err(|e| e.to_string()));
    match ready {
        Ok(()) => "ready".into_response(),
        Err(why) => {
            let mut p = Problem::new(StatusCode::SERVICE_UNAVAILABLE, "not-ready", why);
            p.retry_after_ms = Some(1000);
            p.into_response()
        }
    }
}

#[utoipa::path(get, path = "/v1/policies", tag = "policies", params(ReadOpts), responses(
    (status = 200, description = "every policy the caller may see", body = Vec<Policy>),
    (status = 400), (status = 403), (status = 503)))]
async fn list_policies(
    State(api): State<Shared>,
    Extension(who): Extension<Principal>,
    ApiQuery(q): ApiQuery<ReadOpts>,
) -> Result<Response, Problem> {
    Ok(Json(api.list_policies(&who, q.stale).await?).into_response())
}

#[utoipa::path(get, path = "/v1/policies/{name}", tag = "policies", params(("name" = String, Path), ReadOpts),
    responses((status = 200, body = Policy, headers(("ETag" = String, description = "the version, quoted"))),
        (status = 400), (status = 403), (status = 404), (status = 503)))]
async fn get_policy(
    State(api): State<Shared>,
    Extension(who): Extension<Principal>,
    ApiPath(name): ApiPath<String>,
    ApiQuery(q): ApiQuery<ReadOpts>,
) -> Result<Response, Problem> {
    let p = api.get_policy(&who, &name, q.stale).await?;
    Ok(with_etag(p.version, Json(p)))
}

#[utoipa::path(put, path = "/v1/policies/{name}", tag = "policies", request_body = PutPolicyBody,
    params(("name" = String, Path), ("If-Match" = Option<String>, Header, description = "write only at this version (`\"3\"`)"),
        ("If-None-Match" = Option<String>, Header, description = "`*`: create only"),
        ("Idempotency-Key" = Option<String>, Header, description = "retry-safe write: a repeat within the window answers the first outcome (docs/api.md)")),
    responses((status = 200, description = "replaced", body = Policy, headers(("ETag" = String))),
        (status = 201, description = "created", body = Policy, headers(("ETag" = String))),
        (status = 400, description = "bad body, name or precondition header, or a policy that does not check (`invalid-policy`, with `diagnostics`)"),
        (status = 403, description = "the role may not write policies, a tenant's policy not limited to its tenant, or a quota (`quota-exceeded`)"),
        (status = 409, description = "version precondition failed (`current_version`)"), (status = 413),
        (status = 422, description = "the Idempotency-Key was used for another request (`idempotency-key-reused`)"), (status = 503)))]
async fn put_policy(
    State(api): State<Shared>,
    Extension(who): Extension<Principal>,
    ApiPath(name): ApiPath<String>,
    headers: HeaderMap,
    ApiJson(body): ApiJson<PutPolicyBody>,
) -> Result<Response, Problem> {
    let expect = expectation(&headers)?;
    let (p, created) = api
        .put_policy(&who, &name, body.source, expect, idempotency_key(&headers)?)
        .await?;
    let status = if created {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    Ok(with_etag(p.version, (status, Json(p))))
}

#[utoipa::path(delete, path = "/v1/policies/{name}", tag = "policies",
    params(("name" = String, Path), ("If-Match" = Option<String>, Header, description = "delete only at this version"),
        ("Idempotency-Key" = Option<String>, Header, description = "retry-safe write: a repeat within the window answers the first outcome (docs/api.md)")),
    responses((status = 204, description = "removed"), (status = 400), (status = 403), (status = 404), (status = 409),
        (status = 422, description = "the Idempotency-Key was used for another request (`idempotency-key-reused`)"), (status = 503)))]
async fn delete_policy(
    State(api): State<Shared>,
    Extension(who): Extension<Principal>,
    ApiPath(name): ApiPath<String>,
    headers: HeaderMap,
) -> Result<Response, Problem> {
    let expect = expectation(&headers)?;
    api.delete_policy(&who, &name, expect, idempotency_key(&headers)?)
        .await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

/// `POST /v1/policies/plan` (`api/plan.rs`). Served on the `{name}` route, so a policy named
/// `plan` stays readable, writable and removable at `/v1/policies/plan`; POST to any other name
/// is not an operation.
#[utoipa::path(post, path = "/v1/policies/plan", tag = "policies", request_body = super::plan::PlanRequest,
    description = "What the policies in `source` would have done to the recorded usage; changes nothing. (Served on the `{name}` route: a policy named `plan` is still read, written and removed at `/v1/policies/{name}`.)",
    responses((status = 200, body = super::plan::PolicyPlan),
        (status = 400, description = "bad body, a policy that does not check, an unknown enclave or a period beyond the planner's retention"),
        (status = 403), (status = 413, description = "more windows than a plan replays, or a body or source too large"), (status = 503)))]
async fn plan_policies(
    State(api): State<Shared>,
    Extension(who): Extension<Principal>,
    ApiPath(name): ApiPath<String>,
    req: Request,
) -> Result<Response, Problem> {
    if name != "plan" {
        return Err(Problem::new(
            StatusCode::METHOD_NOT_ALLOWED,
            "method-not-allowed",
            "POST is only for /v1/policies/plan; a policy is stored with PUT (see docs/api.md)",
        ));
    }
    // The body is read only for `plan`: a POST elsewhere is not an operation, whatever it sends.
    let ApiJson(body) = ApiJson::<super::plan::PlanRequest>::from_request(req, &()).await?;
    Ok(Json(api.plan_policies(&who, body).await?).into_response())
}

#[utoipa::path(get, path = "/v1/enclaves", tag = "enclaves", params(ReadOpts), responses(
    (status = 200, description = "every enclave the caller may see", body = Vec<Enclave>),
    (status = 400), (status = 403), (status = 503)))]
async fn list_enclaves(
    State(api): State<Shared>,
    Extension(who): Extension<Principal>,
    ApiQuery(q): ApiQuery<ReadOpts>,
) -> Result<Response, Problem> {
    Ok(Json(api.list_enclaves(&who, q.stale).await?).into_response())
}

#[utoipa::path(get, path = "/v1/enclaves/{id}", tag = "enclaves", params(("id" = String, Path), ReadOpts),
    responses((status = 200, body = Enclave, headers(("ETag" = String))),
        (status = 400), (status = 403), (status = 404), (status = 503)))]
async fn get_enclave(
    State(api): State<Shared>,
    Extension(who): Extension<Principal>,
    ApiPath(id): ApiPath<String>,
    ApiQuery(q): ApiQuery<ReadOpts>,
) -> Result<Response, Problem> {
    let e = api.get_enclave(&who, &id, q.stale).await?;
    Ok(with_etag(e.version, Json(e)))
}

#[utoipa::path(get, path = "/v1/enclaves/{id}/status", tag = "enclaves", params(("id" = String, Path), ReadOpts),
    responses((status = 200, body = super::service::EnclaveStatusView),
        (status = 400), (status = 403), (status = 404), (status = 503)))]
async fn enclave_status(
    State(api): State<Shared>,
    Extension(who): Extension<Principal>,
    ApiPath(id): ApiPath<String>,
    ApiQuery(q): ApiQuery<ReadOpts>,
) -> Result<Response, Problem> {
    Ok(Json(api.enclave_status(&who, &id, q.stale).await?).into_response())
}

/// A signed fairness receipt (`docs/receipts.md`): canonical JSON, as `tribune receipt verify`
/// and `tribune_receipt::verify` read it.
#[utoipa::path(get, path = "/v1/enclaves/{id}/receipt", tag = "enclaves",
    params(("id" = String, Path), super::receipt::ReceiptQuery),
    responses((status = 200, description = "a signed fairness receipt, canonical JSON (`docs/receipts.md`)", body = tribune_receipt::receipt::Receipt),
        (status = 400, description = "bad period, or more than 50 000 log entries"), (status = 403), (status = 404), (status = 503)))]
async fn enclave_receipt(
    State(api): State<Shared>,
    Extension(who): Extension<Principal>,
    ApiPath(id): ApiPath<String>,
    ApiQuery(q): ApiQuery<super::receipt::ReceiptQuery>,
) -> Result<Response, Problem> {
    let r = api.enclave_receipt(&who, &id, q).await?;
    let bytes = tribune_receipt::receipt::to_file_bytes(&r)
        .map_err(|e| Problem::from(crate::ControllerError::Internal(e.to_string())))?;
    Ok((
        [(axum::http::header::CONTENT_TYPE, "application/json")],
        bytes,
    )
        .into_response())
}

/// `GET /v1/snapshot`: a backup file (`raft::backup`), its last log index in a header.
#[utoipa::path(get, path = "/v1/snapshot", tag = "cluster",
    responses((status = 200, description = "a backup of the whole replicated state (`raft/backup.rs`)", body = Vec<u8>, content_type = "application/octet-stream",
            headers(("Tribune-Snapshot-Index" = u64, description = "the last log index it holds"))),
        (status = 403), (status = 503)))]
async fn snapshot(
    State(api): State<Shared>,
    Extension(who): Extension<Principal>,
) -> Result<Response, Problem> {
    let b = api.backup(&who).await?;
    Ok((
        [
            (
                axum::http::header::CONTENT_TYPE,
                "application/octet-stream".to_string(),
            ),
            (
                axum::http::header::HeaderName::from_static("tribune-snapshot-index"),
                b.last_index.to_string(),
            ),
        ],
        b.bytes,
    )
        .into_response())
}

#[utoipa::path(put, path = "/v1/enclaves/{id}", tag = "enclaves", request_body = Enclave,
    params(("id" = String, Path), PutEnclaveOpts,
        ("If-Match" = Option<String>, Header, description = "write only at this version (`\"3\"`)"),
        ("If-None-Match" = Option<String>, Header, description = "`*`: create only"),
        ("Idempotency-Key" = Option<String>, Header, description = "retry-safe write: a repeat within the window answers the first outcome (docs/api.md)")),
    responses((status = 200, body = Enclave, headers(("ETag" = String))),
        (status = 400, description = "bad body, a field out of bounds, or a body id that is not the URL's"),
        (status = 403), (status = 409), (status = 413),
        (status = 422, description = "the Idempotency-Key was used for another request (`idempotency-key-reused`)"), (status = 503)))]
async fn put_enclave(
    State(api): State<Shared>,
    Extension(who): Extension<Principal>,
    ApiPath(id): ApiPath<String>,
    ApiQuery(q): ApiQuery<PutEnclaveOpts>,
    headers: HeaderMap,
    ApiJson(enclave): ApiJson<Enclave>,
) -> Result<Response, Problem> {
    if enclave.id != id {
        return Err(Problem::bad_request(format!(
            "body id {:?} does not match the URL's {id:?}",
            enclave.id
        )));
    }
    let e = api
        .put_enclave(
            &who,
            enclave,
            expectation(&headers)?,
            q.spec_only,
            idempotency_key(&headers)?,
        )
        .await?;
    Ok(with_etag(e.version, Json(e)))
}

#[utoipa::path(delete, path = "/v1/enclaves/{id}", tag = "enclaves",
    params(("id" = String, Path), ("If-Match" = Option<String>, Header, description = "delete only at this version"),
        ("Idempotency-Key" = Option<String>, Header, description = "retry-safe write: a repeat within the window answers the first outcome (docs/api.md)")),
    responses((status = 204, description = "removed"), (status = 400), (status = 403), (status = 404),
        (status = 409, description = "version precondition failed, or `enclave-in-use`: placed and not stopped"),
        (status = 422, description = "the Idempotency-Key was used for another request (`idempotency-key-reused`)"), (status = 503)))]
async fn delete_enclave(
    State(api): State<Shared>,
    Extension(who): Extension<Principal>,
    ApiPath(id): ApiPath<String>,
    headers: HeaderMap,
) -> Result<Response, Problem> {
    let expect = expectation(&headers)?;
    api.delete_enclave(&who, &id, expect, idempotency_key(&headers)?)
        .await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

#[utoipa::path(get, path = "/v1/hosts", tag = "hosts", params(ReadOpts), responses(
    (status = 200, body = Vec<Host>), (status = 400), (status = 403), (status = 503)))]
async fn list_hosts(
    State(api): State<Shared>,
    Extension(who): Extension<Principal>,
    ApiQuery(q): ApiQuery<ReadOpts>,
) -> Result<Response, Problem> {
    Ok(Json(api.list_hosts(&who, q.stale).await?).into_response())
}

#[utoipa::path(put, path = "/v1/hosts/{id}", tag = "hosts", request_body = Host, params(("id" = String, Path)),
    responses((status = 200, body = Host), (status = 400), (status = 403), (status = 413), (status = 503)))]
async fn put_host(
    State(api): State<Shared>,
    Extension(who): Extension<Principal>,
    ApiPath(id): ApiPath<String>,
    ApiJson(host): ApiJson<Host>,
) -> Result<Response, Problem> {
    if host.id != id {
        return Err(Problem::bad_request(format!(
            "body id {:?} does not match the URL's {id:?}",
            host.id
        )));
    }
    Ok(Json(api.put_host(&who, host).await?).into_response())
}

#[utoipa::path(get, path = "/v1/cluster", tag = "cluster",
    responses((status = 200, body = super::service::ClusterView), (status = 403)))]
async fn cluster(
    State(api): State<Shared>,
    Extension(who): Extension<Principal>,
) -> Result<Response, Problem> {
    Ok(Json(api.cluster(&who).await?).into_response())
}

#[utoipa::path(post, path = "/v1/cluster/members", tag = "cluster", request_body = AddMemberBody,
    responses((status = 200, body = super::service::ClusterView), (status = 400), (status = 403), (status = 503)))]
async fn add_member(
    State(api): State<Shared>,
    Extension(who): Extension<Principal>,
    ApiJson(body): ApiJson<AddMemberBody>,
) -> Result<Response, Problem> {
    api.add_member(&who, body.id, body.address, body.voter)
        .await?;
    Ok(Json(api.cluster(&who).await?).into_response())
}

#[utoipa::path(post, path = "/v1/cluster/members/{id}/promote", tag = "cluster", params(("id" = u64, Path)),
    responses((status = 200, body = super::service::ClusterView), (status = 400), (status = 403), (status = 503)))]
async fn promote(
    State(api): State<Shared>,
    Extension(who): Extension<Principal>,
    ApiPath(id): ApiPath<NodeId>,
) -> Result<Response, Problem> {
    api.promote(&who, id).await?;
    Ok(Json(api.cluster(&who).await?).into_response())
}

#[utoipa::path(delete, path = "/v1/cluster/members/{id}", tag = "cluster", params(("id" = u64, Path)),
    responses((status = 200, body = super::service::ClusterView), (status = 400), (status = 403), (status = 503)))]
async fn remove_member(
    State(api): State<Shared>,
    Extension(who): Extension<Principal>,
    ApiPath(id): ApiPath<NodeId>,
) -> Result<Response, Problem> {
    api.remove_member(&who, id).await?;
    Ok(Json(api.cluster(&who).await?).into_response())
}

#[utoipa::path(get, path = "/v1/log/sth", tag = "log", params(NoQuery),
    responses((status = 200, body = log::SthView), (status = 400), (status = 403),
        (status = 503, description = "no leader, or this controller's key is not registered yet: retry")))]
async fn log_sth(
    State(api): State<Shared>,
    Extension(who): Extension<Principal>,
    ApiQuery(_): ApiQuery<NoQuery>,
) -> Result<Response, Problem> {
    Ok(Json(api.log_sth(&who).await?).into_response())
}

#[utoipa::path(get, path = "/v1/log/keys", tag = "log", params(NoQuery),
    responses((status = 200, body = Vec<crate::state::LogKey>), (status = 400), (status = 403), (status = 503)))]
async fn log_keys(
    State(api): State<Shared>,
    Extension(who): Extension<Principal>,
    ApiQuery(_): ApiQuery<NoQuery>,
) -> Result<Response, Problem> {
    Ok(Json(api.log_keys(&who).await?).into_response())
}

#[utoipa::path(get, path = "/v1/log/checkpoint", tag = "log", params(NoQuery),
    responses((status = 200, description = "The current tree head as a C2SP tlog checkpoint (c2sp.org/tlog-checkpoint), signed by this controller as a C2SP signed note", body = String, content_type = "text/plain"),
        (status = 400), (status = 403),
        (status = 503, description = "no leader, or this controller's key is not registered yet: retry")))]
async fn log_checkpoint(
    State(api): State<Shared>,
    Extension(who): Extension<Principal>,
    ApiQuery(_): ApiQuery<NoQuery>,
) -> Result<Response, Problem> {
    let note = api.log_checkpoint(&who).await?;
    Ok((
        [(
            axum::http::header::CONTENT_TYPE,
            "text/plain; charset=utf-8",
        )],
        note,
    )
        .into_response())
}

#[utoipa::path(get, path = "/v1/log/note-keys", tag = "log", params(NoQuery),
    responses((status = 200, body = Vec<log::NoteKeyView>), (status = 400), (status = 403), (status = 503)))]
async fn log_note_keys(
    State(api): State<Shared>,
    Extension(who): Extension<Principal>,
    ApiQuery(_): ApiQuery<NoQuery>,
) -> Result<Response, Problem> {
    Ok(Json(api.log_note_keys(&who).await?).into_response())
}

#[utoipa::path(get, path = "/v1/log/entries", tag = "log", params(log::EntriesQuery),
    responses((status = 200, body = log::EntriesPage), (status = 400), (status = 403), (status = 503)))]
async fn log_entries(
    State(api): State<Shared>,
    Extension(who): Extension<Principal>,
    ApiQuery(q): ApiQuery<log::EntriesQuery>,
) -> Result<Response, Problem> {
    Ok(Json(api.log_entries(&who, q).await?).into_response())
}

#[utoipa::path(get, path = "/v1/log/proof/inclusion", tag = "log", params(log::InclusionQuery),
    responses((status = 200, body = log::InclusionProofView), (status = 400),
        (status = 403), (status = 404, description = "no entry has this `leaf_hash`"), (status = 503)))]
async fn log_inclusion(
    State(api): State<Shared>,
    Extension(who): Extension<Principal>,
    ApiQuery(q): ApiQuery<log::InclusionQuery>,
) -> Result<Response, Problem> {
    Ok(Json(api.log_inclusion(&who, q).await?).into_response())
}

#[utoipa::path(get, path = "/v1/log/proof/consistency", tag = "log", params(log::ConsistencyQuery),
    responses((status = 200, body = log::ConsistencyProofView), (status = 400), (status = 403), (status = 503)))]
async fn log_consistency(
    State(api): State<Shared>,
    Extension(who): Extension<Principal>,
    ApiQuery(q): ApiQuery<log::ConsistencyQuery>,
) -> Result<Response, Problem> {
    Ok(Json(api.log_consistency(&who, q).await?).into_response())
}

#[utoipa::path(get, path = "/v1/tokens", tag = "tokens",
    responses((status = 200, body = Vec<super::tokens::TokenView>), (status = 403), (status = 503)))]
async fn list_tokens(
    State(api): State<Shared>,
    Extension(who): Extension<Principal>,
) -> Result<Response, Problem> {
    Ok(Json(api.list_tokens(&who).await?).into_response())
}

#[utoipa::path(post, path = "/v1/tokens", tag = "tokens", request_body = CreateTokenBody,
    responses((status = 201, description = "the token; its secret is shown only here", body = super::tokens::CreatedToken),
        (status = 400), (status = 403), (status = 503)))]
async fn create_token(
    State(api): State<Shared>,
    Extension(who): Extension<Principal>,
    ApiJson(body): ApiJson<CreateTokenBody>,
) -> Result<Response, Problem> {
    let ttl_ms = i64::try_from(body.ttl_s.saturating_mul(1000)).unwrap_or(i64::MAX);
    let t = api
        .create_token(&who, &body.name, body.role, body.tenant.as_deref(), ttl_ms)
        .await?;
    Ok((StatusCode::CREATED, Json(t)).into_response())
}

#[utoipa::path(delete, path = "/v1/tokens/{id}", tag = "tokens", params(("id" = String, Path)),
    responses((status = 200, body = super::tokens::TokenView), (status = 400), (status = 403), (status = 404), (status = 503)))]
async fn revoke_token(
    State(api): State<Shared>,
    Extension(who): Extension<Principal>,
    ApiPath(id): ApiPath<String>,
) -> Result<Response, Problem> {
    Ok(Json(api.revoke_token(&who, &id).await?).into_response())
}

/// Endpoints that take no query parameters refuse unknown ones rather than ignore them.
#[derive(Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub(super) struct NoQuery {}
