//! HTTP/JSON front end of the control API (axum). Errors are RFC 9457 problem details.

use std::sync::Arc;

use axum::extract::rejection::{JsonRejection, QueryRejection};
use axum::extract::{DefaultBodyLimit, FromRequest, FromRequestParts, Path, Request, State};
use axum::http::request::Parts;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::Deserialize;
use serde::de::DeserializeOwned;

use super::log;
use super::problem::Problem;
use super::service::Api;
use crate::raft::NodeId;
use crate::state::{Enclave, Expect, Host};

/// Largest request body accepted, in bytes.
pub const BODY_BYTES_MAX: usize = 1024 * 1024;

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

type Shared = Arc<Api>;

pub fn router(api: Shared) -> Router {
    Router::new()
        .route("/healthz", get(|| async { "ok" }))
        .route("/readyz", get(readyz))
        .route("/v1/policies", get(list_policies))
        .route(
            "/v1/policies/{name}",
            get(get_policy).put(put_policy).delete(delete_policy),
        )
        .route("/v1/enclaves", get(list_enclaves))
        .route("/v1/enclaves/{id}", get(get_enclave).put(put_enclave))
        .route("/v1/enclaves/{id}/status", get(enclave_status))
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
        .fallback(|| async {
            Problem::not_found("no such endpoint; see docs/api.md for the routes")
        })
        .layer(DefaultBodyLimit::max(BODY_BYTES_MAX))
        .with_state(api)
}

fn actor(headers: &HeaderMap) -> String {
    headers
        .get("x-tribune-actor")
        .and_then(|v| v.to_str().ok())
        .filter(|s| !s.is_empty() && s.len() <= 128)
        .unwrap_or("anonymous")
        .to_string()
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
        .and_then(|()| api.controller.ready());
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
    ApiQuery(q): ApiQuery<ReadOpts>,
) -> Result<Response, Problem> {
    Ok(Json(api.list_policies(q.stale).await?).into_response())
}

async fn get_policy(
    State(api): State<Shared>,
    Path(name): Path<String>,
    ApiQuery(q): ApiQuery<ReadOpts>,
) -> Result<Response, Problem> {
    let p = api.get_policy(&name, q.stale).await?;
    Ok(with_etag(p.version, Json(p)))
}

async fn put_policy(
    State(api): State<Shared>,
    Path(name): Path<String>,
    headers: HeaderMap,
    ApiJson(body): ApiJson<PutPolicyBody>,
) -> Result<Response, Problem> {
    let expect = expectation(&headers)?;
    let (p, created) = api
        .put_policy(&name, body.source, expect, &actor(&headers))
        .await?;
    let status = if created {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    Ok(with_etag(p.version, (status, Json(p))))
}

async fn delete_policy(
    State(api): State<Shared>,
    Path(name): Path<String>,
    headers: HeaderMap,
) -> Result<Response, Problem> {
    let expect = expectation(&headers)?;
    api.delete_policy(&name, expect, &actor(&headers)).await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

async fn list_enclaves(
    State(api): State<Shared>,
    ApiQuery(q): ApiQuery<ReadOpts>,
) -> Result<Response, Problem> {
    Ok(Json(api.list_enclaves(q.stale).await?).into_response())
}

async fn get_enclave(
    State(api): State<Shared>,
    Path(id): Path<String>,
    ApiQuery(q): ApiQuery<ReadOpts>,
) -> Result<Response, Problem> {
    let e = api.get_enclave(&id, q.stale).await?;
    Ok(with_etag(e.version, Json(e)))
}

async fn enclave_status(
    State(api): State<Shared>,
    Path(id): Path<String>,
    ApiQuery(q): ApiQuery<ReadOpts>,
) -> Result<Response, Problem> {
    Ok(Json(api.enclave_status(&id, q.stale).await?).into_response())
}

async fn put_enclave(
    State(api): State<Shared>,
    Path(id): Path<String>,
    headers: HeaderMap,
    ApiJson(enclave): ApiJson<Enclave>,
) -> Result<Response, Problem> {
    if enclave.id != id {
        return Err(Problem::bad_request(format!(
            "body id {:?} does not match the URL's {id:?}",
            enclave.id
        )));
    }
    let e = api.put_enclave(enclave, expectation(&headers)?).await?;
    Ok(with_etag(e.version, Json(e)))
}

async fn list_hosts(
    State(api): State<Shared>,
    ApiQuery(q): ApiQuery<ReadOpts>,
) -> Result<Response, Problem> {
    Ok(Json(api.list_hosts(q.stale).await?).into_response())
}

async fn put_host(
    State(api): State<Shared>,
    Path(id): Path<String>,
    ApiJson(host): ApiJson<Host>,
) -> Result<Response, Problem> {
    if host.id != id {
        return Err(Problem::bad_request(format!(
            "body id {:?} does not match the URL's {id:?}",
            host.id
        )));
    }
    Ok(Json(api.put_host(host).await?).into_response())
}

async fn cluster(State(api): State<Shared>) -> Result<Response, Problem> {
    Ok(Json(api.cluster().await?).into_response())
}

async fn add_member(
    State(api): State<Shared>,
    ApiJson(body): ApiJson<AddMemberBody>,
) -> Result<Response, Problem> {
    api.add_member(body.id, body.address, body.voter).await?;
    Ok(Json(api.cluster().await?).into_response())
}

async fn promote(State(api): State<Shared>, Path(id): Path<NodeId>) -> Result<Response, Problem> {
    api.promote(id).await?;
    Ok(Json(api.cluster().await?).into_response())
}

async fn remove_member(
    State(api): State<Shared>,
    Path(id): Path<NodeId>,
) -> Result<Response, Problem> {
    api.remove_member(id).await?;
    Ok(Json(api.cluster().await?).into_response())
}

async fn log_sth(
    State(api): State<Shared>,
    ApiQuery(_): ApiQuery<NoQuery>,
) -> Result<Response, Problem> {
    Ok(Json(api.log_sth().await?).into_response())
}

async fn log_keys(
    State(api): State<Shared>,
    ApiQuery(_): ApiQuery<NoQuery>,
) -> Result<Response, Problem> {
    Ok(Json(api.log_keys().await?).into_response())
}

async fn log_entries(
    State(api): State<Shared>,
    ApiQuery(q): ApiQuery<log::EntriesQuery>,
) -> Result<Response, Problem> {
    Ok(Json(api.log_entries(q).await?).into_response())
}

async fn log_inclusion(
    State(api): State<Shared>,
    ApiQuery(q): ApiQuery<log::InclusionQuery>,
) -> Result<Response, Problem> {
    Ok(Json(api.log_inclusion(q).await?).into_response())
}

async fn log_consistency(
    State(api): State<Shared>,
    ApiQuery(q): ApiQuery<log::ConsistencyQuery>,
) -> Result<Response, Problem> {
    Ok(Json(api.log_consistency(q).await?).into_response())
}

/// Endpoints that take no query parameters refuse unknown ones rather than ignore them.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct NoQuery {}
