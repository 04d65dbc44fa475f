//! What a request must be before a handler runs: the bounds on its target, headers and body
//! (`bound_request`, the outermost middleware of `api/http.rs`), and the extractors whose
//! rejections are problem details that say what was wrong and where ([`ApiPath`], [`ApiJson`],
//! [`ApiQuery`]).

use axum::Json;
use axum::extract::rejection::{JsonRejection, PathRejection, QueryRejection};
use axum::extract::{FromRequest, FromRequestParts, Request};
use axum::http::request::Parts;
use axum::http::{StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use serde::de::DeserializeOwned;

use super::problem::Problem;

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

/// Refuses oversized request targets and header sets with a problem saying which limit, before
/// any other work.
pub(super) async fn bound_request(req: Request, next: Next) -> Response {
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
