//! What the API front end tells operators: `/metrics`, the per-request metrics middleware and
//! the HTTP access log.
//!
//! - [`metrics()`]: the Prometheus exposition (`crate::metrics`), refreshed from Raft at each
//!   scrape; OpenMetrics or the classic text format by `Accept`. Not behind authentication,
//!   like `/healthz`: it holds no tenant data (no label carries an id), and scrapers are
//!   rarely given client certificates. Keep the API port off untrusted networks regardless.
//! - [`count_requests`]: `tribune_api_requests_total{route,method,code}` and
//!   `tribune_api_request_duration_seconds{route,method}` for every HTTP and gRPC request,
//!   labelled by the matched route template (bounded), never the path.
//! - [`access_log`]: one `info` event per HTTP/JSON request under the target
//!   [`ACCESS_TARGET`] (method, path, status, latency); gRPC streams are not in it.

use std::time::{Duration, Instant};

use axum::extract::{MatchedPath, Request, State};
use axum::http::HeaderMap;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use tower_http::classify::ServerErrorsAsFailures;
use tower_http::classify::SharedClassifier;
use tower_http::trace::TraceLayer;
use tribune_telemetry::Exposition;

use super::http::Shared;
use crate::metrics::{self, RequestLabels, RouteLabels};

/// The `tracing` target of the access log.
pub const ACCESS_TARGET: &str = "tribune_controller::access";

/// `GET /metrics`.
#[utoipa::path(get, path = "/metrics", tag = "health", responses((status = 200,
    description = "Prometheus exposition: OpenMetrics (`application/openmetrics-text`) or the classic text format (`text/plain`), by `Accept`",
    body = String, content_type = "text/plain")))]
pub async fn metrics(State(api): State<Shared>, headers: HeaderMap) -> Response {
    let m = metrics::get();
    m.refresh_raft(api.controller.id, &api.controller.raft);
    let format = Exposition::negotiate(&headers);
    (
        [(axum::http::header::CONTENT_TYPE, format.content_type())],
        m.encode(format),
    )
        .into_response()
}

/// Counts every request by route template, method and status, and times it to the response
/// head.
pub async fn count_requests(req: Request, next: Next) -> Response {
    let route = req
        .extensions()
        .get::<MatchedPath>()
        .map_or_else(|| "unmatched".to_string(), |p| route_label(p.as_str()));
    let method = metrics::method_str(req.method());
    let started = Instant::now();
    let resp = next.run(req).await;
    let m = metrics::get();
    m.api_request_seconds
        .get_or_create(&RouteLabels {
            route: route.clone(),
            method,
        })
        .observe(started.elapsed().as_secs_f64());
    m.api_requests
        .get_or_create(&RequestLabels {
            route,
            method,
            code: resp.status().as_u16(),
        })
        .inc();
    resp
}

/// A route template as a label value: `{id}` becomes `:id` and a `{*rest}` wildcard `*`
/// (`/v1/enclaves/:id`, `/tribune.v1.RaftService/*`), so label values hold no braces, which
/// some text-format parsers mistake for the end of the label set.
pub fn route_label(template: &str) -> String {
    let mut out = String::with_capacity(template.len());
    let mut rest = template;
    while let Some(open) = rest.find('{') {
        out.push_str(&rest[..open]);
        let Some(close) = rest[open..].find('}') else {
            break;
        };
        let name = &rest[open + 1..open + close];
        if name.starts_with('*') {
            out.push('*');
        } else {
            out.push(':');
            out.push_str(name);
        }
        rest = &rest[open + close + 1..];
    }
    out.push_str(rest);
    out
}

type AccessSpan = fn(&Request) -> tracing::Span;
type AccessOnResponse = fn(&Response, Duration, &tracing::Span);

/// The access log layer (tower-http's trace layer with Tribune's target and level).
pub fn access_log() -> TraceLayer<
    SharedClassifier<ServerErrorsAsFailures>,
    AccessSpan,
    (),
    AccessOnResponse,
    (),
    (),
    (),
> {
    TraceLayer::new_for_http()
        .make_span_with(access_span as AccessSpan)
        .on_request(())
        .on_response(access_event as AccessOnResponse)
        .on_body_chunk(())
        .on_eos(())
        .on_failure(())
}

fn access_span(req: &Request) -> tracing::Span {
    tracing::info_span!(
        target: ACCESS_TARGET,
        "request",
        method = %req.method(),
        path = %req.uri().path(),
    )
}

fn access_event(resp: &Response, latency: Duration, _span: &tracing::Span) {
    tracing::info!(
        target: ACCESS_TARGET,
        status = resp.status().as_u16(),
        latency_ms = latency.as_secs_f64() * 1000.0,
        "served"
    );
}

#[cfg(test)]
mod tests {
    use super::route_label;

    #[test]
    fn route_labels_hold_no_braces() {
        assert_eq!(route_label("/v1/enclaves/{id}"), "/v1/enclaves/:id");
        assert_eq!(
            route_label("/v1/cluster/members/{id}/promote"),
            "/v1/cluster/members/:id/promote"
        );
        assert_eq!(
            route_label("/tribune.v1.RaftService/{*method}"),
            "/tribune.v1.RaftService/*"
        );
        assert_eq!(route_label("/healthz"), "/healthz");
    }
}
