//! The controller's Prometheus metrics (`/metrics` on the API port).
//!
//! One set per process ([`get`]): a controller process runs one controller, and the places
//! that count (the log store's fsync, the write batcher, the attestation sessions) need no
//! handle threaded to them. Gauges that mirror Raft's own state (term, leader, indexes) are
//! read from openraft at each scrape ([`Metrics::refresh_raft`]), never maintained on the hot
//! path. Names follow Prometheus conventions: `tribune_` prefix, base units in the name
//! (`_seconds`, `_bytes`), `_total` on counters (added by the encoder).
//!
//! Label cardinality is bounded by construction: no label carries an enclave, host or tenant
//! id. Labels are closed sets — `route` is the matched route template (`/v1/enclaves/:id`,
//! or the gRPC service, `/tribune.v1.RaftService/*`), never the request path; `method` one of six HTTP methods or
//! `other`; `code` an HTTP status; `reason` a refusal kind ([`Fault`]); `step` a ladder step;
//! `kind` a log entry kind. Per-enclave usage is the agent's to export (one host's enclaves).

use std::sync::LazyLock;
use std::time::Duration;

use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::{Registry, Unit};
use tribune_telemetry::Exposition;

use crate::attest::refusal::Fault;
use crate::raft::Raft;
use crate::state::{LogEntryKind, Step};

type Labels1 = [(&'static str, &'static str); 1];
type HistogramFamily<L> = Family<L, Histogram, fn() -> Histogram>;

/// Labels of one HTTP or gRPC request.
#[derive(Clone, Debug, Hash, PartialEq, Eq, prometheus_client::encoding::EncodeLabelSet)]
pub struct RequestLabels {
    /// The matched route template (bounded: the router's routes).
    pub route: String,
    pub method: &'static str,
    pub code: u16,
}

/// Labels of a request's duration (status is not known before the first byte).
#[derive(Clone, Debug, Hash, PartialEq, Eq, prometheus_client::encoding::EncodeLabelSet)]
pub struct RouteLabels {
    pub route: String,
    pub method: &'static str,
}

pub struct Metrics {
    registry: Registry,
    // Raft
    pub raft_term: Gauge,
    pub raft_leader_id: Gauge,
    pub raft_is_leader: Gauge,
    pub raft_commit_index: Gauge,
    pub raft_applied_index: Gauge,
    pub raft_apply_lag_entries: Gauge,
    pub raft_last_log_index: Gauge,
    pub raft_leader_changes: Counter,
    pub raft_log_fsync_seconds: Histogram,
    pub raft_batch_commands: Histogram,
    pub raft_batch_bytes: Histogram,
    // The write path
    pub api_requests: Family<RequestLabels, Counter>,
    pub api_request_seconds: HistogramFamily<RouteLabels>,
    pub writes: Counter,
    pub write_seconds: Histogram,
    // The attestation stream
    pub attest_streams: Gauge,
    pub attest_reports_received: Counter,
    pub attest_reports_verified: Counter,
    pub attest_refusals: Family<Labels1, Counter>,
    pub attest_checkpoint_verify_seconds: Histogram,
    pub attest_digest_commit_seconds: Histogram,
    pub attest_plans_pushed: Counter,
    /// Stream writes proposed again after a transient failure (back-pressure, not an end).
    pub attest_writes_retried: Counter,
    // Decisions
    pub ladder_steps: Family<Labels1, Counter>,
    pub decision_entries: Family<Labels1, Counter>,
    pub decision_seconds: Histogram,
}

fn latency() -> Histogram {
    // 100 µs … ~13 s.
    Histogram::new(exponential_buckets(0.0001, 2.0, 18))
}

impl Metrics {
    fn new() -> Self {
        let mut r = Registry::with_prefix("tribune");
        let m = Self {
            raft_term: Gauge::default(),
            raft_leader_id: Gauge::default(),
            raft_is_leader: Gauge::default(),
            raft_commit_index: Gauge::default(),
            raft_applied_index: Gauge::default(),
            raft_apply_lag_entries: Gauge::default(),
            raft_last_log_index: Gauge::default(),
            raft_leader_changes: Counter::default(),
            raft_log_fsync_seconds: latency(),
            raft_batch_commands: Histogram::new(exponential_buckets(1.0, 2.0, 11)),
            raft_batch_bytes: Histogram::new(exponential_buckets(64.0, 4.0, 9)),
            api_requests: Family::default(),
            api_request_seconds: Family::new_with_constructor(latency),
            writes: Counter::default(),
            write_seconds: latency(),
            attest_streams: Gauge::default(),
            attest_reports_received: Counter::default(),
            attest_reports_verified: Counter::default(),
            attest_refusals: Family::default(),
            attest_checkpoint_verify_seconds: latency(),
            attest_digest_commit_seconds: latency(),
            attest_plans_pushed: Counter::default(),
            attest_writes_retried: Counter::default(),
            ladder_steps: Family::default(),
            decision_entries: Family::default(),
            decision_seconds: latency(),
            registry: Registry::default(),
        };
        let raft = r.sub_registry_with_prefix("raft");
        raft.register("term", "Current Raft term", m.raft_term.clone());
        raft.register(
            "leader_id",
            "Id of the controller this one believes leads (0: none)",
            m.raft_leader_id.clone(),
        );
        raft.register(
            "is_leader",
            "1 when this controller is the leader",
            m.raft_is_leader.clone(),
        );
        raft.register(
            "commit_index",
            "Highest log index known committed",
            m.raft_commit_index.clone(),
        );
        raft.register(
            "applied_index",
            "Highest log index applied to the state machine",
            m.raft_applied_index.clone(),
        );
        raft.register(
            "apply_lag_entries",
            "Log entries appended here but not yet applied",
            m.raft_apply_lag_entries.clone(),
        );
        raft.register(
            "last_log_index",
            "Highest log index in this controller's log",
            m.raft_last_log_index.clone(),
        );
        raft.register(
            "leader_changes",
            "Times the leader this controller knows of changed",
            m.raft_leader_changes.clone(),
        );
        raft.register_with_unit(
            "log_fsync_duration",
            "Time to commit one group of log writes durably (redb commit with fsync)",
            Unit::Seconds,
            m.raft_log_fsync_seconds.clone(),
        );
        raft.register(
            "batch_commands",
            "Commands per Raft entry (group commit)",
            m.raft_batch_commands.clone(),
        );
        raft.register_with_unit(
            "batch_size",
            "Encoded size of the commands grouped into one Raft entry",
            Unit::Bytes,
            m.raft_batch_bytes.clone(),
        );
        let api = r.sub_registry_with_prefix("api");
        api.register(
            "requests",
            "HTTP and gRPC requests by route template, method and HTTP status",
            m.api_requests.clone(),
        );
        api.register_with_unit(
            "request_duration",
            "Time to the response head, by route template and method",
            Unit::Seconds,
            m.api_request_seconds.clone(),
        );
        api.register(
            "writes",
            "Replicated writes submitted on this controller (each a command list)",
            m.writes.clone(),
        );
        api.register_with_unit(
            "write_duration",
            "Time from submitting a write to its outcome (batched, committed, applied)",
            Unit::Seconds,
            m.write_seconds.clone(),
        );
        let at = r.sub_registry_with_prefix("attest");
        at.register(
            "streams_connected",
            "Agent attestation streams open on this controller",
            m.attest_streams.clone(),
        );
        at.register(
            "reports_received",
            "Usage reports received",
            m.attest_reports_received.clone(),
        );
        at.register(
            "reports_verified",
            "Usage reports whose MAC and chain verified",
            m.attest_reports_verified.clone(),
        );
        at.register(
            "refusals",
            "Refused attestation inputs by reason",
            m.attest_refusals.clone(),
        );
        at.register_with_unit(
            "checkpoint_verify_duration",
            "Time to verify one batch of signed checkpoints",
            Unit::Seconds,
            m.attest_checkpoint_verify_seconds.clone(),
        );
        at.register_with_unit(
            "digest_commit_duration",
            "Time to commit one batch of usage digests to the log through Raft",
            Unit::Seconds,
            m.attest_digest_commit_seconds.clone(),
        );
        at.register(
            "plans_pushed",
            "Enforcement plans sent to agents",
            m.attest_plans_pushed.clone(),
        );
        at.register(
            "writes_retried",
            "Stream writes kept and proposed again because the cluster did not commit them in time (the stream slows down instead of ending)",
            m.attest_writes_retried.clone(),
        );
        let d = r.sub_registry_with_prefix("decision");
        d.register(
            "ladder_steps",
            "Enclaves moved to a violation ladder step (committed), by step",
            m.ladder_steps.clone(),
        );
        d.register(
            "log_entries",
            "Decision log entries committed, by kind (violation, action, …)",
            m.decision_entries.clone(),
        );
        d.register_with_unit(
            "duration",
            "Time from a usage batch's arrival to its decisions committed",
            Unit::Seconds,
            m.decision_seconds.clone(),
        );
        // Known label values start at 0, so `rate()` and `increase()` see the first event.
        for f in Fault::ALL {
            let _ = m.attest_refusals.get_or_create(&[("reason", f.as_str())]);
        }
        for s in [Step::Notify, Step::Throttle, Step::Suspend, Step::Migrate] {
            let _ = m.ladder_steps.get_or_create(&[("step", s.as_str())]);
        }
        Self { registry: r, ..m }
    }

    /// Sets the Raft gauges from openraft's current metrics (cheap: a watch borrow).
    pub fn refresh_raft(&self, id: u64, raft: &Raft) {
        let rx = raft.metrics();
        let m = rx.borrow();
        let applied = m.last_applied.map_or(0, |l| l.index);
        let last = m.last_log_index.unwrap_or(0);
        let committed = m
            .replication
            .as_ref()
            .and_then(|r| r.get(&id).cloned().flatten())
            .map_or(applied, |l| l.index.max(applied));
        set(&self.raft_term, m.current_term);
        set(&self.raft_leader_id, m.current_leader.unwrap_or(0));
        self.raft_is_leader
            .set(i64::from(m.current_leader == Some(id)));
        set(&self.raft_commit_index, committed);
        set(&self.raft_applied_index, applied);
        set(&self.raft_last_log_index, last);
        set(&self.raft_apply_lag_entries, last.saturating_sub(applied));
    }

    /// The registry in `format`.
    pub fn encode(&self, format: Exposition) -> String {
        tribune_telemetry::encode(&self.registry, format)
    }

    pub fn refusal(&self, fault: Fault) {
        self.attest_refusals
            .get_or_create(&[("reason", fault.as_str())])
            .inc();
    }

    pub fn ladder_step(&self, step: Step) {
        self.ladder_steps
            .get_or_create(&[("step", step.as_str())])
            .inc();
    }

    pub fn decision_entry(&self, kind: LogEntryKind) {
        self.decision_entries
            .get_or_create(&[("kind", kind.as_str())])
            .inc();
    }

    /// Counts one committed batch of decisions: the ladder steps moved to, the entries logged.
    pub fn decisions_committed(&self, steps: &[Step], kinds: &[LogEntryKind]) {
        for s in steps {
            self.ladder_step(*s);
        }
        for k in kinds {
            self.decision_entry(*k);
        }
    }
}

fn set(g: &Gauge, v: u64) {
    g.set(i64::try_from(v).unwrap_or(i64::MAX));
}

/// `method` label: the common methods by name, anything else `other` (a client may send any
/// token as a method).
pub fn method_str(m: &axum::http::Method) -> &'static str {
    use axum::http::Method;
    match *m {
        Method::GET => "GET",
        Method::PUT => "PUT",
        Method::POST => "POST",
        Method::DELETE => "DELETE",
        Method::HEAD => "HEAD",
        Method::PATCH => "PATCH",
        _ => "other",
    }
}

/// Seconds of a duration, for histograms.
pub fn secs(d: Duration) -> f64 {
    d.as_secs_f64()
}

static METRICS: LazyLock<Metrics> = LazyLock::new(Metrics::new);

/// This process's controller metrics.
pub fn get() -> &'static Metrics {
    &METRICS
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn families_have_conventional_names_and_bounded_labels() {
        let m = Metrics::new();
        m.refusal(Fault::Replay);
        m.ladder_step(Step::Throttle);
        m.attest_reports_verified.inc_by(3);
        m.raft_log_fsync_seconds.observe(0.002);
        m.api_requests
            .get_or_create(&RequestLabels {
                route: "/v1/enclaves/:id".into(),
                method: "GET",
                code: 200,
            })
            .inc();
        let text = m.encode(Exposition::Classic);
        for want in [
            "tribune_attest_reports_verified_total 3",
            "tribune_attest_refusals_total{reason=\"replay\"} 1",
            "tribune_decision_ladder_steps_total{step=\"throttle\"} 1",
            "tribune_raft_log_fsync_duration_seconds_count 1",
            "tribune_api_requests_total{route=\"/v1/enclaves/:id\",method=\"GET\",code=\"200\"} 1",
            "# TYPE tribune_raft_term gauge",
        ] {
            assert!(text.contains(want), "{want} missing in\n{text}");
        }
    }
}
