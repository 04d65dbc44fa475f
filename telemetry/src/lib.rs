//! Observability that controllers and agents share, with no domain knowledge: the Prometheus
//! exposition of a [`prometheus_client`] registry ([`exposition`]) and a small HTTP listener
//! that serves it ([`serve_metrics`]).
//!
//! Each process defines its own metric families (`tribune_controller::metrics`,
//! `tribune_agent::metrics`); this crate only turns a registry into bytes a scraper reads.

pub mod exposition;
pub mod trace;

pub use exposition::{Exposition, encode};

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;

use axum::Router;
use axum::http::HeaderMap;
use axum::response::IntoResponse;
use axum::routing::get;

/// What a process exposes at `/metrics`: called at each scrape, it refreshes the gauges read
/// from elsewhere (Raft's state, the enclaves on a host) and returns the registry to encode.
pub trait Scrape: Send + Sync + 'static {
    fn scrape(&self, headers: &HeaderMap) -> (Exposition, String);
}

impl<F> Scrape for F
where
    F: Fn(Exposition) -> String + Send + Sync + 'static,
{
    fn scrape(&self, headers: &HeaderMap) -> (Exposition, String) {
        let format = Exposition::negotiate(headers);
        (format, self(format))
    }
}

/// The `/metrics` route: the body in the format the scraper asked for (`Accept`).
pub fn metrics_route<S: Scrape>(scrape: Arc<S>) -> Router {
    Router::new().route(
        "/metrics",
        get(move |headers: HeaderMap| {
            let scrape = scrape.clone();
            async move {
                let (format, body) = scrape.scrape(&headers);
                (
                    [(axum::http::header::CONTENT_TYPE, format.content_type())],
                    body,
                )
                    .into_response()
            }
        }),
    )
}

#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    #[error("binding the metrics listener on {addr}: {source}")]
    Bind {
        addr: SocketAddr,
        source: std::io::Error,
    },
}

/// Binds `addr` and serves `/metrics` (and `/healthz`) there until `shutdown` completes, in a
/// task of its own. Returns the bound address (port 0 picks one).
pub async fn serve_metrics<S: Scrape>(
    addr: SocketAddr,
    scrape: Arc<S>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<SocketAddr, ServeError> {
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .map_err(|source| ServeError::Bind { addr, source })?;
    let bound = listener
        .local_addr()
        .map_err(|source| ServeError::Bind { addr, source })?;
    let app = metrics_route(scrape).route("/healthz", get(|| async { "ok" }));
    tokio::spawn(async move {
        if let Err(e) = axum::serve(listener, app)
            .with_graceful_shutdown(shutdown)
            .await
        {
            tracing::warn!(error = %e, "the metrics listener stopped");
        }
    });
    Ok(bound)
}
