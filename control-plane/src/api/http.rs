//! HTTP/JSON front end of the control API (axum). Errors are RFC 9457 problem details.

use std::sync::Arc;

use axum::extract::rejection::{JsonRejection, PathRejection, QueryRejection};
use axum::extract::{
    ConnectInfo, DefaultBodyLimit, Extension, FromRequest, FromRequestParts, Request, State,
};
use axum::http::request::Parts;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, post};
use axum::{Json, Router};
use serde::Deserialize;
use serde::de::DeserializeOwned;
use tribune_tls::UserRole;

use super::log;
use super::problem::Problem;
use super::service::Api;
use crate::auth::Principal;
use crate::raft::NodeId;
use crate::state::{Enclave, Expect, Host};
use crate::tls::PeerInfo;

/// Largest request body accepted, in bytes.
pub const BODY_BYTES_MAX: usize = 1024 * 1024;
/// A refused HTTP/2 body up to this size is read and dropped so the problem reaches the client.
pub const BODY_DRAIN_BYTES_MAX: usize = 8 * 1024 * 1024;
/// Longest request target (path and query) accepted, in bytes.
pub const URI_BYTES_MAX: usize = 8 * 1024;
/// Request headers accepted, at most: their number and their total size.
pub const HEADERS_MAX: usize = 64;
pub const HEADER_BYTES_MAX: usize = 16 * 1024;

/// `Path<T>` whose rejections are problem details (a `%FF` or a non-number where a number
/// belongs says which).
pub struct ApiPath<T>(pub T);

impl<T: DeserializeOwned + Send, S: Send + Sync> FromRequestParts<S> for ApiPath<T> {
    type Rejection = Problem;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Problem> {
        match axum::extract::Path::<T>::from_request_parts(parts, state).await {
            Ok(p) => Ok(Self(p.0)),
            Err(e @ PathRejection::FailedToDeserializePathParams(_)) => Err(Problem::bad_request(
                format!("invalid path parameter: {}", e.body_text()),
            )),
            Err(e) => Err(Problem::bad_request(e.body_text())),
        }
    }
}

/// `Json<T>` whose rejections are problem details with what was wrong and where.
pub struct ApiJson<T>(pub T);

impl<T: DeserializeOwned, S: Send + Sync> FromRequest<S> for ApiJson<T> {
    type Rejection = Problem;

    async fn from_request(req: Request, state: &S) -> Result<Self, Problem> {
        match Json::<T>::from_request(req, state).await {
            Ok(Json(v)) => Ok(Self(v)),
            Err(JsonRejection::BytesRejection(e))
                if e.status() == StatusCode::PAYLOAD_TOO_LARGE =>
            {
                Err(Problem::too_large(format!(
                    "request body is larger than {BODY_BYTES_MAX} bytes"
                )))
            }
            Err(JsonRejection::MissingJsonContentType(_)) => Err(Problem::bad_request(
                "send the body as JSON with `Content-Type: application/json`",
            )),
            Err(e) => Err(Problem::bad_request(format!(
                "invalid JSON body: {}",
                e.body_text()
            ))),
        }
    }
}

/// Query string parsing with problem-detail rejections.
pub struct ApiQuery<T>(pub T);

impl<T: DeserializeOwned, S: Send + Sync> FromRequestParts<S> for ApiQuery<T> {
    type Rejection = Problem;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Problem> {
        match axum::extract::Query::<T>::from_request_parts(parts, state).await {
            Ok(q) => Ok(Self(q.0)),
            Err(e @ QueryRejection::FailedToDeserializeQueryString(_)) => Err(
                Problem::bad_request(format!("invalid query string: {}", e.body_text())),
            ),
            Err(e) => Err(Problem::bad_request(e.body_text())),
        }
    }
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct ReadOpts {
    /// Serve from this controller's state without confirming it is current.
    #[serde(default)]
    stale: bool,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct PutEnclaveOpts {
    /// Write only the spec: the stored state (and, on the same host, placement epoch) stay.
    #[serde(default)]
    spec_only: bool,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct PutPolicyBody {
    source: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct AddMemberBody {
    id: NodeId,
    address: String,
    #[serde(default)]
    voter: bool,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct CreateTokenBody {
    name: String,
    role: UserRole,
    #[serde(default)]
    tenant: Option<String>,
    /// Lifetime in seconds.
    ttl_s: u64,
}

pub(super) type Shared = Arc<Api>;

/// Every route but `/healthz`, `/readyz` and `/metrics` is behind `authenticate`; the operations check
/// the caller's role themselves (`api::service`), so HTTP and gRPC authorise alike.
pub fn router(api: Shared) -> Router {
    Router::new()
        .route("/v1/policies", get(list_policies))
        .route(
            "/v1/policies/{name}",
            get(get_policy)
                .put(put_policy)
                .delete(delete_policy)
                .post(plan_policies),
        )
        .route("/v1/enclaves", get(list_enclaves))
        .route(
            "/v1/enclaves/{id}",
            get(get_enclave).put(put_enclave).delete(delete_enclave),
        )
        .route("/v1/enclaves/{id}/status", get(enclave_status))
        .route("/v1/enclaves/{id}/receipt", get(enclave_receipt))
        .route("/v1/hosts", get(list_hosts))
        .route("/v1/hosts/{id}", axum::routing::put(put_host))
        .route("/v1/cluster", get(cluster))
        .route("/v1/cluster/members", post(add_member))
        .route(
            "/v1/cluster/members/{id}",
            axum::routing::delete(remove_member),
        )
        .route("/v1/cluster/members/{id}/promote", post(promote))
        .route("/v1/log/sth", get(log_sth))
        .route("/v1/log/keys", get(log_keys))
        .route("/v1/log/entries", get(log_entries))
        .route("/v1/log/proof/inclusion", get(log_inclusion))
        .route("/v1/log/proof/consistency", get(log_consistency))
        .route("/v1/tokens", get(list_tokens).post(create_token))
        .route("/v1/tokens/{id}", delete(revoke_token))
        .route("/v1/snapshot", get(snapshot))
        // The console's live usage stream (`api/console.rs`).
        .merge(super::console::routes())
        .route_layer(middleware::from_fn_with_state(api.clone(), authenticate))
        .route("/healthz", get(|| async { "ok" }))
        .route("/readyz", get(readyz))
        .route("/metrics", get(super::observe::metrics))
        .fallback(|| async {
            Problem::not_found("no such endpoint; see docs/api.md for the routes")
        })
        .method_not_allowed_fallback(|| async {
            Problem::new(
                StatusCode::METHOD_NOT_ALLOWED,
                "method-not-allowed",
                "this endpoint does not take that method; see docs/api.md for the routes",
            )
        })
        .layer(DefaultBodyLimit::max(BODY_BYTES_MAX))
        .layer(middleware::from_fn(bound_request))
        .layer(super::observe::access_log())
        .with_state(api)
}

/// Refuses oversized request targets and header sets with a problem saying which limit, before
/// any other work.
async fn bound_request(req: Request, next: Next) -> Response {
    let uri_len = req.uri().path_and_query().map_or(0, |p| p.as_str().len());
    if uri_len > URI_BYTES_MAX {
        return Problem::new(
            StatusCode::URI_TOO_LONG,
            "uri-too-long",
            format!("the request target is {uri_len} bytes; at most {URI_BYTES_MAX}"),
        )
        .into_response();
    }
    let headers = req.headers();
    let header_bytes: usize = headers
        .iter()
        .map(|(k, v)| k.as_str().len() + v.len())
        .sum();
    if headers.len() > HEADERS_MAX || header_bytes > HEADER_BYTES_MAX {
        return Problem::new(
            StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
            "headers-too-large",
            format!(
                "{} headers of {header_bytes} bytes; at most {HEADERS_MAX} headers of {HEADER_BYTES_MAX} bytes",
                headers.len()
            ),
        )
        .into_response();
    }
    // The body is read here, whole (bounded), before any handler runs: a handler that refuses
    // a request early (wrong content type, no credentials) would otherwise leave it unread,
    // and over HTTP/2 the client would see its stream reset instead of the problem.
    let (parts, body) = req.into_parts();
    let announced = parts
        .headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    let too_large = |n: String| {
        Problem::too_large(format!(
            "request body is larger than {BODY_BYTES_MAX} bytes ({n})"
        ))
        .into_response()
    };
    if let Some(n) = announced
        && n > BODY_BYTES_MAX as u64
    {
        // A body of moderate size is read and dropped so the answer arrives (HTTP/2 would
        // reset the stream) and the connection stays usable (HTTP/1.1 would close it).
        if n <= BODY_DRAIN_BYTES_MAX as u64 {
            drain(body).await;
        }
        return too_large(format!("{n} bytes"));
    }
    let bytes = match read_bounded(body).await {
        Some(b) => b,
        None => return too_large("sent without a length".into()),
    };
    next.run(Request::from_parts(parts, axum::body::Body::from(bytes)))
        .await
}

/// The whole body if it is at most [`BODY_BYTES_MAX`]; `None` (after draining it) if it is
/// larger. A body that breaks off counts as empty (the handler then refuses it).
async fn read_bounded(mut body: axum::body::Body) -> Option<axum::body::Bytes> {
    use http_body_util::BodyExt;
    let mut buf = Vec::new();
    while let Some(frame) = body.frame().await {
        let Ok(frame) = frame else {
            return Some(axum::body::Bytes::new());
        };
        if let Some(d) = frame.data_ref() {
            if buf.len() + d.len() > BODY_BYTES_MAX {
                drain(body).await;
                return None;
            }
            buf.extend_from_slice(d);
        }
    }
    Some(buf.into())
}

/// Reads and discards a refused body, up to [`BODY_DRAIN_BYTES_MAX`] and for a few seconds.
async fn drain(mut body: axum::body::Body) {
    use http_body_util::BodyExt;
    let mut left = BODY_DRAIN_BYTES_MAX;
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(5);
    while left > 0 {
        match tokio::time::timeout_at(deadline, body.frame()).await {
            Ok(Some(Ok(f))) => {
                left = left.saturating_sub(f.data_ref().map_or(0, |d| d.len()));
            }
            _ => return,
        }
    }
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

fn with_etag(version: u64, body: impl IntoResponse) -> Response {
    let mut r = body.into_response();
    if let Ok(v) = HeaderValue::from_str(&format!("\"{version}\"")) {
        r.headers_mut().insert(header::ETAG, v);
    }
    r
}

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

async fn list_policies(
    State(api): State<Shared>,
    Extension(who): Extension<Principal>,
    ApiQuery(q): ApiQuery<ReadOpts>,
) -> Result<Response, Problem> {
    Ok(Json(api.list_policies(&who, q.stale).await?).into_response())
}

async fn get_policy(
    State(api): State<Shared>,
    Extension(who): Extension<Principal>,
    ApiPath(name): ApiPath<String>,
    ApiQuery(q): ApiQuery<ReadOpts>,
) -> Result<Response, Problem> {
    let p = api.get_policy(&who, &name, q.stale).await?;
    Ok(with_etag(p.version, Json(p)))
}

async fn put_policy(
    State(api): State<Shared>,
    Extension(who): Extension<Principal>,
    ApiPath(name): ApiPath<String>,
    headers: HeaderMap,
    ApiJson(body): ApiJson<PutPolicyBody>,
) -> Result<Response, Problem> {
    let expect = expectation(&headers)?;
    let (p, created) = api.put_policy(&who, &name, body.source, expect).await?;
    let status = if created {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    Ok(with_etag(p.version, (status, Json(p))))
}

async fn delete_policy(
    State(api): State<Shared>,
    Extension(who): Extension<Principal>,
    ApiPath(name): ApiPath<String>,
    headers: HeaderMap,
) -> Result<Response, Problem> {
    let expect = expectation(&headers)?;
    api.delete_policy(&who, &name, expect).await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

/// `POST /v1/policies/plan` (`api/plan.rs`). Served on the `{name}` route, so a policy named
/// `plan` stays readable, writable and removable at `/v1/policies/plan`; POST to any other name
/// is not an operation.
async fn plan_policies(
    State(api): State<Shared>,
    Extension(who): Extension<Principal>,
    ApiPath(name): ApiPath<String>,
    ApiJson(body): ApiJson<super::plan::PlanRequest>,
) -> Result<Response, Problem> {
    if name != "plan" {
        return Err(Problem::new(
            StatusCode::METHOD_NOT_ALLOWED,
            "method-not-allowed",
            "POST is only for /v1/policies/plan; a policy is stored with PUT (see docs/api.md)",
        ));
    }
    Ok(Json(api.plan_policies(&who, body).await?).into_response())
}

async fn list_enclaves(
    State(api): State<Shared>,
    Extension(who): Extension<Principal>,
    ApiQuery(q): ApiQuery<ReadOpts>,
) -> Result<Response, Problem> {
    Ok(Json(api.list_enclaves(&who, q.stale).await?).into_response())
}

async fn get_enclave(
    State(api): State<Shared>,
    Extension(who): Extension<Principal>,
    ApiPath(id): ApiPath<String>,
    ApiQuery(q): ApiQuery<ReadOpts>,
) -> Result<Response, Problem> {
    let e = api.get_enclave(&who, &id, q.stale).await?;
    Ok(with_etag(e.version, Json(e)))
}

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
        .put_enclave(&who, enclave, expectation(&headers)?, q.spec_only)
        .await?;
    Ok(with_etag(e.version, Json(e)))
}

async fn delete_enclave(
    State(api): State<Shared>,
    Extension(who): Extension<Principal>,
    ApiPath(id): ApiPath<String>,
    headers: HeaderMap,
) -> Result<Response, Problem> {
    let expect = expectation(&headers)?;
    api.delete_enclave(&who, &id, expect).await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

async fn list_hosts(
    State(api): State<Shared>,
    Extension(who): Extension<Principal>,
    ApiQuery(q): ApiQuery<ReadOpts>,
) -> Result<Response, Problem> {
    Ok(Json(api.list_hosts(&who, q.stale).await?).into_response())
}

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

async fn cluster(
    State(api): State<Shared>,
    Extension(who): Extension<Principal>,
) -> Result<Response, Problem> {
    Ok(Json(api.cluster(&who).await?).into_response())
}

async fn add_member(
    State(api): State<Shared>,
    Extension(who): Extension<Principal>,
    ApiJson(body): ApiJson<AddMemberBody>,
) -> Result<Response, Problem> {
    api.add_member(&who, body.id, body.address, body.voter)
        .await?;
    Ok(Json(api.cluster(&who).await?).into_response())
}

async fn promote(
    State(api): State<Shared>,
    Extension(who): Extension<Principal>,
    ApiPath(id): ApiPath<NodeId>,
) -> Result<Response, Problem> {
    api.promote(&who, id).await?;
    Ok(Json(api.cluster(&who).await?).into_response())
}

async fn remove_member(
    State(api): State<Shared>,
    Extension(who): Extension<Principal>,
    ApiPath(id): ApiPath<NodeId>,
) -> Result<Response, Problem> {
    api.remove_member(&who, id).await?;
    Ok(Json(api.cluster(&who).await?).into_response())
}

async fn log_sth(
    State(api): State<Shared>,
    Extension(who): Extension<Principal>,
    ApiQuery(_): ApiQuery<NoQuery>,
) -> Result<Response, Problem> {
    Ok(Json(api.log_sth(&who).await?).into_response())
}

async fn log_keys(
    State(api): State<Shared>,
    Extension(who): Extension<Principal>,
    ApiQuery(_): ApiQuery<NoQuery>,
) -> Result<Response, Problem> {
    Ok(Json(api.log_keys(&who).await?).into_response())
}

async fn log_entries(
    State(api): State<Shared>,
    Extension(who): Extension<Principal>,
    ApiQuery(q): ApiQuery<log::EntriesQuery>,
) -> Result<Response, Problem> {
    Ok(Json(api.log_entries(&who, q).await?).into_response())
}

async fn log_inclusion(
    State(api): State<Shared>,
    Extension(who): Extension<Principal>,
    ApiQuery(q): ApiQuery<log::InclusionQuery>,
) -> Result<Response, Problem> {
    Ok(Json(api.log_inclusion(&who, q).await?).into_response())
}

async fn log_consistency(
    State(api): State<Shared>,
    Extension(who): Extension<Principal>,
    ApiQuery(q): ApiQuery<log::ConsistencyQuery>,
) -> Result<Response, Problem> {
    Ok(Json(api.log_consistency(&who, q).await?).into_response())
}

async fn list_tokens(
    State(api): State<Shared>,
    Extension(who): Extension<Principal>,
) -> Result<Response, Problem> {
    Ok(Json(api.list_tokens(&who).await?).into_response())
}

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

async fn revoke_token(
    State(api): State<Shared>,
    Extension(who): Extension<Principal>,
    ApiPath(id): ApiPath<String>,
) -> Result<Response, Problem> {
    Ok(Json(api.revoke_token(&who, &id).await?).into_response())
}

/// Endpoints that take no query parameters refuse unknown ones rather than ignore them.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct NoQuery {}
