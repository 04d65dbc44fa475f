//! What an operator runs beside the controllers, for `tribune bench ingest --observability-cost`:
//! an OTLP/gRPC trace receiver the controllers export to (it counts and drops what it gets) and
//! a Prometheus-like scraper that reads every controller's `/metrics` once a second.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use opentelemetry_proto::tonic::collector::trace::v1::trace_service_server::{
    TraceService, TraceServiceServer,
};
use opentelemetry_proto::tonic::collector::trace::v1::{
    ExportTraceServiceRequest, ExportTraceServiceResponse,
};
use serde::Serialize;
use tokio::task::JoinHandle;

/// What the collector and the scraper saw over a run.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Observed {
    /// Spans the controllers exported.
    pub spans_received: u64,
    /// `/metrics` pages read.
    pub scrapes: u64,
    /// Bytes of exposition read.
    pub scraped_bytes: u64,
}

#[derive(Clone, Default)]
struct Sink(Arc<AtomicU64>);

#[tonic::async_trait]
impl TraceService for Sink {
    async fn export(
        &self,
        req: tonic::Request<ExportTraceServiceRequest>,
    ) -> Result<tonic::Response<ExportTraceServiceResponse>, tonic::Status> {
        let n: usize = req
            .get_ref()
            .resource_spans
            .iter()
            .flat_map(|r| &r.scope_spans)
            .map(|s| s.spans.len())
            .sum();
        self.0.fetch_add(n as u64, Ordering::Relaxed);
        Ok(tonic::Response::new(ExportTraceServiceResponse {
            partial_success: None,
        }))
    }
}

/// The trace receiver, listening before the controllers start.
pub struct Collector {
    pub endpoint: String,
    spans: Arc<AtomicU64>,
    server: JoinHandle<()>,
}

impl Collector {
    pub async fn start() -> anyhow::Result<Self> {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let addr: SocketAddr = listener.local_addr()?;
        let sink = Sink::default();
        let spans = sink.0.clone();
        let incoming = tokio_stream::wrappers::TcpListenerStream::new(listener);
        let server = tokio::spawn(async move {
            let r = tonic::transport::Server::builder()
                .add_service(TraceServiceServer::new(sink))
                .serve_with_incoming(incoming)
                .await;
            if let Err(e) = r {
                eprintln!("ingest: the OTLP receiver stopped: {e}");
            }
        });
        Ok(Self {
            endpoint: format!("http://{addr}"),
            spans,
            server,
        })
    }
}

/// Reads every endpoint's `/metrics` once a second until stopped.
pub struct Scraper {
    task: JoinHandle<(u64, u64)>,
    stop: tokio::sync::watch::Sender<bool>,
}

impl Scraper {
    pub fn start(http: reqwest::Client, endpoints: Vec<String>) -> Self {
        let (stop, mut stopped) = tokio::sync::watch::channel(false);
        let task = tokio::spawn(async move {
            let (mut scrapes, mut bytes) = (0u64, 0u64);
            let mut tick = tokio::time::interval(Duration::from_secs(1));
            loop {
                tokio::select! {
                    _ = tick.tick() => {}
                    _ = stopped.changed() => return (scrapes, bytes),
                }
                for e in &endpoints {
                    if let Ok(r) = http.get(format!("{e}/metrics")).send().await
                        && let Ok(b) = r.bytes().await
                    {
                        scrapes += 1;
                        bytes += b.len() as u64;
                    }
                }
            }
        });
        Self { task, stop }
    }

    /// Stops scraping; what the collector and the scraper saw.
    pub async fn finish(self, collector: Option<&Collector>) -> Observed {
        let _ = self.stop.send(true);
        let (scrapes, scraped_bytes) = self.task.await.unwrap_or_default();
        Observed {
            spans_received: collector.map_or(0, |c| c.spans.load(Ordering::Relaxed)),
            scrapes,
            scraped_bytes,
        }
    }
}

impl Drop for Collector {
    fn drop(&mut self) {
        self.server.abort();
    }
}

/// `tribune bench ingest --observability-cost`: the same ingest run with metrics scraped and
/// traces exported (default sampling) and without, alternating, in one invocation.
#[derive(Debug, Serialize)]
pub struct CostReport {
    /// Verified reports/s of each run without observability, in order.
    pub off_per_sec: Vec<f64>,
    /// … and with it.
    pub on_per_sec: Vec<f64>,
    pub off_median: f64,
    pub on_median: f64,
    /// on ÷ off (medians): 0.95 means 5% fewer reports/s with observability on.
    pub ratio: f64,
    /// Controller cores (median) off and on.
    pub off_cores: f64,
    pub on_cores: f64,
    /// What the last run with observability exported and scraped.
    pub observed: Option<Observed>,
}

fn median(v: &[f64]) -> f64 {
    let mut s = v.to_vec();
    s.sort_by(f64::total_cmp);
    match s.len() {
        0 => 0.0,
        n if n % 2 == 1 => s[n / 2],
        n => (s[n / 2 - 1] + s[n / 2]) / 2.0,
    }
}

/// `rounds` pairs of runs (off, then on), each a full [`super::ingest`] with its own cluster.
pub async fn cost(
    binary: &std::path::Path,
    cfg: &super::IngestConfig,
    rounds: usize,
    progress: impl Fn(&str),
) -> anyhow::Result<CostReport> {
    anyhow::ensure!(rounds > 0, "at least one round");
    let (mut off, mut on, mut off_cores, mut on_cores) = (vec![], vec![], vec![], vec![]);
    let mut observed = None;
    for round in 1..=rounds {
        for observe in [false, true] {
            let label = if observe { "on" } else { "off" };
            progress(&format!("round {round}/{rounds}: observability {label}"));
            let c = super::IngestConfig {
                observe,
                ..cfg.clone()
            };
            let r = super::ingest(binary, &c, |m| progress(&format!("  {label}: {m}"))).await?;
            if observe {
                on.push(r.verified_per_sec);
                on_cores.push(r.controllers_cores);
                observed = r.observed;
            } else {
                off.push(r.verified_per_sec);
                off_cores.push(r.controllers_cores);
            }
        }
    }
    let (off_median, on_median) = (median(&off), median(&on));
    Ok(CostReport {
        ratio: if off_median > 0.0 {
            on_median / off_median
        } else {
            0.0
        },
        off_median,
        on_median,
        off_per_sec: off,
        on_per_sec: on,
        off_cores: median(&off_cores),
        on_cores: median(&on_cores),
        observed,
    })
}

#[cfg(test)]
mod tests {
    #[test]
    fn medians() {
        assert_eq!(super::median(&[3.0, 1.0, 2.0]), 2.0);
        assert_eq!(super::median(&[4.0, 1.0, 2.0, 3.0]), 2.5);
        assert_eq!(super::median(&[]), 0.0);
    }
}
