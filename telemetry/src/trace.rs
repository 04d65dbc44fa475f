//! Distributed traces: `tracing` spans exported as OpenTelemetry spans over OTLP/gRPC, and the
//! W3C trace context (`traceparent`) that carries a trace from one process to the next.
//!
//! Off unless an endpoint is given ([`TraceConfig::endpoint`]): then [`init`] returns a layer
//! for the process's one subscriber (`tracing-opentelemetry`, exporting through
//! `opentelemetry-otlp`'s tonic exporter with a batch processor) and sets [`enabled`]. Sampling
//! is decided once per trace, where it starts — a usage window's seal on the agent — with
//! `ParentBased(TraceIdRatioBased(ratio))`: a process continuing a trace follows the decision
//! it was handed, so a journey is traced whole or not at all, and a 10 Hz stream per enclave
//! is traced at `ratio` of its windows (default [`DEFAULT_SAMPLE_RATIO`]).
//!
//! Propagation: a unary gRPC call carries `traceparent` in its metadata ([`inject_metadata`],
//! [`extract_metadata`]); a message on a long-lived stream (a usage report, a plan) carries it
//! in a field of its own, because stream metadata is sent once per stream, not per message
//! ([`traceparent`], [`set_parent`]). Only a sampled context is sent: an unsampled window costs
//! no bytes on the wire.

use std::collections::HashMap;
use std::sync::OnceLock;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use opentelemetry::propagation::TextMapPropagator;
use opentelemetry::trace::{TraceContextExt, TracerProvider as _};
use opentelemetry_otlp::WithExportConfig;
use opentelemetry_sdk::Resource;
use opentelemetry_sdk::propagation::TraceContextPropagator;
use opentelemetry_sdk::trace::{Sampler, SdkTracerProvider};
use tracing_opentelemetry::OpenTelemetrySpanExt;

/// One window in a hundred, when tracing is on and nothing says otherwise.
pub const DEFAULT_SAMPLE_RATIO: f64 = 0.01;
/// The longest `traceparent` accepted from a peer (version 00 is 55 characters).
pub const TRACEPARENT_MAX: usize = 128;
const KEY: &str = "traceparent";

/// Where and how much to trace.
#[derive(Debug, Clone, PartialEq)]
pub struct TraceConfig {
    /// OTLP/gRPC collector, e.g. `http://127.0.0.1:4317`; `None`: no tracing.
    pub endpoint: Option<String>,
    /// Fraction of new traces sampled, 0.0 ..= 1.0.
    pub sample_ratio: f64,
    /// `service.name` of this process (`tribune-controller`, `tribune-agent`, …).
    pub service: String,
    /// `service.instance.id` (a controller's id, an agent's host id).
    pub instance: Option<String>,
}

/// Why tracing could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum TraceError {
    #[error("--trace-sample-ratio {0} is not between 0 and 1")]
    Ratio(f64),
    #[error("--otlp-endpoint {endpoint:?}: {detail}")]
    Endpoint { endpoint: String, detail: String },
    #[error("starting the OTLP exporter's runtime: {0}")]
    Runtime(std::io::Error),
}

static ENABLED: AtomicBool = AtomicBool::new(false);
static PROVIDER: OnceLock<SdkTracerProvider> = OnceLock::new();
/// The exporter's own small runtime: its gRPC channel lives there, whatever runtimes (or none)
/// the process runs, and the batch processor's thread hands it spans.
static RUNTIME: OnceLock<tokio::runtime::Runtime> = OnceLock::new();

/// Whether spans are exported (so callers can skip work that only tracing needs).
pub fn enabled() -> bool {
    ENABLED.load(Ordering::Relaxed)
}

/// The layer to add to the process's subscriber, or `None` when tracing is off. Call once.
pub fn init<S>(
    cfg: &TraceConfig,
) -> Result<Option<Box<dyn tracing_subscriber::Layer<S> + Send + Sync>>, TraceError>
where
    S: tracing::Subscriber + for<'a> tracing_subscriber::registry::LookupSpan<'a> + Send + Sync,
{
    if !(0.0..=1.0).contains(&cfg.sample_ratio) || cfg.sample_ratio.is_nan() {
        return Err(TraceError::Ratio(cfg.sample_ratio));
    }
    let Some(endpoint) = &cfg.endpoint else {
        return Ok(None);
    };
    let bad = |detail: String| TraceError::Endpoint {
        endpoint: endpoint.clone(),
        detail,
    };
    let uri: http::Uri = endpoint
        .parse()
        .map_err(|e| bad(format!("not a URL: {e}")))?;
    if !matches!(uri.scheme_str(), Some("http" | "https")) || uri.host().is_none() {
        return Err(bad("expected http://HOST:PORT or https://HOST:PORT".into()));
    }
    let rt = match RUNTIME.get() {
        Some(rt) => rt,
        None => {
            let rt = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(1)
                .thread_name("otlp-export")
                .enable_all()
                .build()
                .map_err(TraceError::Runtime)?;
            RUNTIME.get_or_init(|| rt)
        }
    };
    let _entered = rt.enter();
    let exporter = opentelemetry_otlp::SpanExporter::builder()
        .with_tonic()
        .with_endpoint(endpoint.clone())
        .with_timeout(Duration::from_secs(5))
        .build()
        .map_err(|e| bad(e.to_string()))?;
    let mut resource = Resource::builder().with_service_name(cfg.service.clone());
    if let Some(i) = &cfg.instance {
        resource = resource.with_attribute(opentelemetry::KeyValue::new(
            "service.instance.id",
            i.clone(),
        ));
    }
    let provider = SdkTracerProvider::builder()
        .with_batch_exporter(exporter)
        .with_sampler(Sampler::ParentBased(Box::new(Sampler::TraceIdRatioBased(
            cfg.sample_ratio,
        ))))
        .with_resource(resource.build())
        .build();
    let tracer = provider.tracer("tribune");
    let _ = PROVIDER.set(provider);
    ENABLED.store(true, Ordering::Relaxed);
    Ok(Some(Box::new(
        tracing_opentelemetry::layer()
            .with_tracer(tracer)
            .with_threads(false)
            .with_location(false)
            .with_tracked_inactivity(false),
    )))
}

/// Exports what is still buffered (call before the process exits).
pub fn flush() {
    if let Some(p) = PROVIDER.get()
        && let Err(e) = p.force_flush()
    {
        tracing::debug!("flushing traces: {e}");
    }
}

/// `span`'s W3C `traceparent`, if tracing is on and `span` is sampled.
pub fn traceparent(span: &tracing::Span) -> Option<String> {
    if !enabled() {
        return None;
    }
    let cx = span.context();
    let s = cx.span();
    let sc = s.span_context();
    if !sc.is_valid() || !sc.is_sampled() {
        return None;
    }
    Some(format!(
        "00-{}-{}-{:02x}",
        sc.trace_id(),
        sc.span_id(),
        sc.trace_flags().to_u8()
    ))
}

/// Makes `span` a child of the remote span `traceparent` names. Returns false (and changes
/// nothing) when tracing is off or `traceparent` is empty, oversized or malformed: a peer's bad
/// trace context never fails the request it came with.
pub fn set_parent(span: &tracing::Span, traceparent: &str) -> bool {
    if !enabled() || traceparent.is_empty() || traceparent.len() > TRACEPARENT_MAX {
        return false;
    }
    let carrier = HashMap::from([(KEY.to_string(), traceparent.to_string())]);
    let cx = TraceContextPropagator::new().extract(&carrier);
    if !cx.span().span_context().is_valid() {
        return false;
    }
    span.set_parent(cx).is_ok()
}

/// Adds `span`'s `traceparent` to a gRPC request's metadata (nothing when not sampled).
pub fn inject_metadata(span: &tracing::Span, md: &mut tonic::metadata::MetadataMap) {
    if let Some(tp) = traceparent(span)
        && let Ok(v) = tp.parse()
    {
        md.insert(KEY, v);
    }
}

/// The `traceparent` a gRPC request's metadata carries, if any.
pub fn extract_metadata(md: &tonic::metadata::MetadataMap) -> Option<&str> {
    md.get(KEY).and_then(|v| v.to_str().ok())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn off_means_nothing_is_sent_or_accepted() {
        let span = tracing::info_span!("x");
        assert_eq!(traceparent(&span), None);
        assert!(!set_parent(
            &span,
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
        ));
    }

    #[test]
    fn a_bad_ratio_or_endpoint_is_refused_with_what_is_wrong() {
        type Reg = tracing_subscriber::Registry;
        let cfg = |endpoint: &str, ratio| TraceConfig {
            endpoint: Some(endpoint.into()),
            sample_ratio: ratio,
            service: "t".into(),
            instance: None,
        };
        let e = init::<Reg>(&cfg("http://127.0.0.1:4317", 1.5))
            .err()
            .expect("ratio");
        assert!(e.to_string().contains("between 0 and 1"), "{e}");
        let e = init::<Reg>(&cfg("127.0.0.1:4317", 0.5))
            .err()
            .expect("no scheme");
        assert!(e.to_string().contains("expected http://HOST:PORT"), "{e}");
        let off = TraceConfig {
            endpoint: None,
            ..cfg("", 0.01)
        };
        assert!(matches!(init::<Reg>(&off), Ok(None)));
    }
}
