//! The agent's Prometheus metrics, served on a small local listener (`tribune agent
//! --metrics-listen`, default `127.0.0.1:7480`; see `tribune_telemetry::serve_metrics`).
//!
//! One set per process ([`get`]). The hot paths (sampling at 10 Hz, sealing each window) touch
//! nothing here; counters move where the agent writes (plans, cgroup files, re-enforcement),
//! and the per-enclave gauges are refreshed once per reconcile period (1 s), not per sample.
//!
//! Per-enclave series carry an `enclave` label: bounded by the enclaves of this one host (a
//! plan holds at most `plan::ENCLAVES_MAX`), and an enclave's series are removed when it
//! leaves the host ([`Metrics::forget_enclave`]), so a host's churn does not grow them.

use std::sync::LazyLock;

use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::{Registry, Unit};
use tribune_telemetry::Exposition;

use crate::collector::Usage;

type Labels1 = [(&'static str, &'static str); 1];

/// What a drift re-write restores (`tribune_agent_drift_rewrites_total{what}`).
pub const DRIFT_KINDS: [&str; 4] = ["cpu cap", "weight", "memory limit", "suspend"];
type EnclaveLabel = [(&'static str, String); 1];

pub struct Metrics {
    registry: Registry,
    pub plan_version: Gauge,
    pub plans_applied: Counter,
    pub plans_refused: Counter,
    pub enforcement_seconds: Histogram,
    pub cgroup_write_seconds: Histogram,
    pub drift_rewrites: Family<Labels1, Counter>,
    pub link_up: Gauge,
    pub link_downs: Counter,
    pub windows_sent: Counter,
    pub windows_dropped: Counter,
    pub enclaves: Gauge,
    pub enclave_cpu_millicores: Family<EnclaveLabel, Gauge>,
    pub enclave_memory_bytes: Family<EnclaveLabel, Gauge>,
    pub enclave_net_tx_bytes: Family<EnclaveLabel, Gauge>,
    pub enclave_net_rx_bytes: Family<EnclaveLabel, Gauge>,
    /// The mediator's per-enclave message counters (cumulative since the agent started).
    pub enclave_messages_sent: Family<EnclaveLabel, Gauge>,
    pub enclave_messages_sent_bytes: Family<EnclaveLabel, Gauge>,
    pub enclave_messages_received: Family<EnclaveLabel, Gauge>,
    pub enclave_messages_received_bytes: Family<EnclaveLabel, Gauge>,
    pub enclave_messages_refused: Family<EnclaveLabel, Gauge>,
    pub enclave_messages_queue_full: Family<EnclaveLabel, Gauge>,
    /// Time messages spent in this agent's mediator, per sending enclave (local, or relayed
    /// from another host): accepted → written to the receiver's socket, or to the link to the
    /// receiver's host.
    pub message_queue_seconds: Family<SenderLabel, Histogram, fn() -> Histogram>,
    /// Relayed messages: the time queued on the sending host (carried in the RELAY) plus the
    /// time queued here, paired per message (the link's transit not included).
    pub message_relayed_queue_seconds: Family<SenderLabel, Histogram, fn() -> Histogram>,
}

type SenderLabel = [(&'static str, String); 1];

/// The queueing-time buckets, seconds: fine around the milliseconds a fair queue should hold
/// a well-behaved sender's message (issue 15's goal is a p99 of 2 ms), coarse beyond.
pub const QUEUE_BUCKETS_S: [f64; 20] = [
    0.000_05, 0.000_1, 0.000_2, 0.000_3, 0.000_5, 0.000_75, 0.001, 0.001_25, 0.001_5, 0.002,
    0.002_5, 0.003, 0.004, 0.005, 0.007_5, 0.01, 0.025, 0.1, 0.25, 1.0,
];

fn queue_histogram() -> Histogram {
    Histogram::new(QUEUE_BUCKETS_S)
}

fn latency() -> Histogram {
    // 10 µs … ~1.3 s.
    Histogram::new(exponential_buckets(0.00001, 2.0, 18))
}

impl Metrics {
    fn new() -> Self {
        let mut r = Registry::with_prefix("tribune_agent");
        let m = Self {
            registry: Registry::default(),
            plan_version: Gauge::default(),
            plans_applied: Counter::default(),
            plans_refused: Counter::default(),
            enforcement_seconds: latency(),
            cgroup_write_seconds: latency(),
            drift_rewrites: Family::default(),
            link_up: Gauge::default(),
            link_downs: Counter::default(),
            windows_sent: Counter::default(),
            windows_dropped: Counter::default(),
            enclaves: Gauge::default(),
            enclave_cpu_millicores: Family::default(),
            enclave_memory_bytes: Family::default(),
            enclave_net_tx_bytes: Family::default(),
            enclave_net_rx_bytes: Family::default(),
            enclave_messages_sent: Family::default(),
            enclave_messages_sent_bytes: Family::default(),
            enclave_messages_received: Family::default(),
            enclave_messages_received_bytes: Family::default(),
            enclave_messages_refused: Family::default(),
            enclave_messages_queue_full: Family::default(),
            message_queue_seconds: Family::new_with_constructor(queue_histogram),
            message_relayed_queue_seconds: Family::new_with_constructor(queue_histogram),
        };
        r.register(
            "plan_version",
            "Version of the plan applied on this host (0: none)",
            m.plan_version.clone(),
        );
        r.register("plans_applied", "Plans applied", m.plans_applied.clone());
        r.register(
            "plans_refused",
            "Plans refused (stale, invalid, or a write failed)",
            m.plans_refused.clone(),
        );
        r.register_with_unit(
            "enforcement_duration",
            "Time to apply one plan: launches, cgroup and tc writes, stops",
            Unit::Seconds,
            m.enforcement_seconds.clone(),
        );
        r.register_with_unit(
            "cgroup_write_duration",
            "Time to write one limit change to an enclave's cgroup",
            Unit::Seconds,
            m.cgroup_write_seconds.clone(),
        );
        r.register(
            "drift_rewrites",
            "Limits found changed behind the agent's back and written again, by what",
            m.drift_rewrites.clone(),
        );
        r.register(
            "link_up",
            "1 while a stream to a controller is up",
            m.link_up.clone(),
        );
        r.register(
            "link_downs",
            "Outages of the link to the controllers",
            m.link_downs.clone(),
        );
        r.register(
            "windows_sent",
            "Usage windows handed to the link for sealing",
            m.windows_sent.clone(),
        );
        r.register(
            "windows_dropped",
            "Usage given up (per enclave) after the link took none of it for 60 s; shorter stalls are carried into the next window",
            m.windows_dropped.clone(),
        );
        r.register("enclaves", "Enclaves this agent runs", m.enclaves.clone());
        r.register(
            "enclave_cpu_millicores",
            "CPU an enclave used over its last sample window, in millicores",
            m.enclave_cpu_millicores.clone(),
        );
        r.register_with_unit(
            "enclave_memory",
            "Memory an enclave uses",
            Unit::Bytes,
            m.enclave_memory_bytes.clone(),
        );
        r.register_with_unit(
            "enclave_net_transmit",
            "Bytes an enclave has sent (its shaped interface's counter)",
            Unit::Bytes,
            m.enclave_net_tx_bytes.clone(),
        );
        r.register_with_unit(
            "enclave_net_receive",
            "Bytes an enclave has received",
            Unit::Bytes,
            m.enclave_net_rx_bytes.clone(),
        );
        r.register(
            "enclave_messages_sent",
            "Messages an enclave sent that the mediator accepted (since the agent started)",
            m.enclave_messages_sent.clone(),
        );
        r.register_with_unit(
            "enclave_messages_sent",
            "Payload bytes of the messages an enclave sent that the mediator accepted",
            Unit::Bytes,
            m.enclave_messages_sent_bytes.clone(),
        );
        r.register(
            "enclave_messages_received",
            "Messages delivered to an enclave (taken by its application)",
            m.enclave_messages_received.clone(),
        );
        r.register_with_unit(
            "enclave_messages_received",
            "Payload bytes of the messages delivered to an enclave",
            Unit::Bytes,
            m.enclave_messages_received_bytes.clone(),
        );
        r.register(
            "enclave_messages_refused",
            "An enclave's messages refused by the talk rules (either side) or as unknown",
            m.enclave_messages_refused.clone(),
        );
        r.register(
            "enclave_messages_queue_full",
            "An enclave's messages refused because its queue to the receiver was full",
            m.enclave_messages_queue_full.clone(),
        );
        r.register_with_unit(
            "message_queue",
            "Time a message spent in this agent's mediator, by sending enclave: accepted to written to its receiver's socket, or to the link to its receiver's host",
            Unit::Seconds,
            m.message_queue_seconds.clone(),
        );
        r.register_with_unit(
            "message_relayed_queue",
            "A message relayed from another host, by sending enclave: the time it queued in the sending agent's mediator (its RELAY says) plus the time it queued in this one's (the link's transit not included)",
            Unit::Seconds,
            m.message_relayed_queue_seconds.clone(),
        );
        // Known label values start at 0, so `increase()` sees the first re-write.
        for what in DRIFT_KINDS {
            let _ = m.drift_rewrites.get_or_create(&[("what", what)]);
        }
        Self { registry: r, ..m }
    }

    /// The registry in `format`.
    pub fn encode(&self, format: Exposition) -> String {
        tribune_telemetry::encode(&self.registry, format)
    }

    /// Counts a re-write of `what` (one of [`DRIFT_KINDS`]).
    pub fn drift(&self, what: &'static str) {
        debug_assert!(DRIFT_KINDS.contains(&what), "{what}");
        self.drift_rewrites.get_or_create(&[("what", what)]).inc();
    }

    /// Sets one enclave's usage gauges.
    pub fn enclave_usage(&self, name: &str, u: &Usage) {
        let l = [("enclave", name.to_string())];
        set(
            &self.enclave_cpu_millicores.get_or_create(&l),
            u.cpu_millicores,
        );
        set(&self.enclave_memory_bytes.get_or_create(&l), u.memory_bytes);
        set(&self.enclave_net_tx_bytes.get_or_create(&l), u.net_tx_bytes);
        set(&self.enclave_net_rx_bytes.get_or_create(&l), u.net_rx_bytes);
    }

    /// Sets one enclave's message gauges from the mediator's counters.
    pub fn enclave_messages(&self, name: &str, c: &crate::mediator::hub::Counters) {
        let l = [("enclave", name.to_string())];
        set(
            &self.enclave_messages_sent.get_or_create(&l),
            c.sent_messages,
        );
        set(
            &self.enclave_messages_sent_bytes.get_or_create(&l),
            c.sent_bytes,
        );
        set(
            &self.enclave_messages_received.get_or_create(&l),
            c.received_messages,
        );
        set(
            &self.enclave_messages_received_bytes.get_or_create(&l),
            c.received_bytes,
        );
        set(
            &self.enclave_messages_refused.get_or_create(&l),
            c.refused_messages,
        );
        set(
            &self.enclave_messages_queue_full.get_or_create(&l),
            c.queue_full_messages,
        );
    }

    /// Counts one message of `sender` that spent `seconds` in the mediator.
    pub fn message_queued(&self, sender: &str, seconds: f64) {
        self.message_queue_seconds
            .get_or_create(&[("sender", sender.to_string())])
            .observe(seconds);
    }

    /// Counts one relayed message of `sender` that queued `seconds` on both hosts together.
    pub fn message_queued_both_hosts(&self, sender: &str, seconds: f64) {
        self.message_relayed_queue_seconds
            .get_or_create(&[("sender", sender.to_string())])
            .observe(seconds);
    }

    /// Drops the series of an enclave that left this host.
    pub fn forget_enclave(&self, name: &str) {
        let l = [("enclave", name.to_string())];
        self.enclave_messages_sent.remove(&l);
        self.enclave_messages_sent_bytes.remove(&l);
        self.enclave_messages_received.remove(&l);
        self.enclave_messages_received_bytes.remove(&l);
        self.enclave_messages_refused.remove(&l);
        self.enclave_messages_queue_full.remove(&l);
        self.message_queue_seconds
            .remove(&[("sender", name.to_string())]);
        self.message_relayed_queue_seconds
            .remove(&[("sender", name.to_string())]);
        self.enclave_cpu_millicores.remove(&l);
        self.enclave_memory_bytes.remove(&l);
        self.enclave_net_tx_bytes.remove(&l);
        self.enclave_net_rx_bytes.remove(&l);
    }
}

fn set(g: &Gauge, v: u64) {
    g.set(i64::try_from(v).unwrap_or(i64::MAX));
}

static METRICS: LazyLock<Metrics> = LazyLock::new(Metrics::new);

/// This process's agent metrics.
pub fn get() -> &'static Metrics {
    &METRICS
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_enclave_that_leaves_takes_its_series_along() {
        let m = Metrics::new();
        let u = Usage {
            cpu_millicores: 250,
            memory_bytes: 1 << 20,
            ..Usage::default()
        };
        m.enclave_usage("web-1", &u);
        m.enclave_messages(
            "web-1",
            &crate::mediator::hub::Counters {
                sent_messages: 3,
                sent_bytes: 192,
                queue_full_messages: 2,
                ..Default::default()
            },
        );
        m.drift("cpu cap");
        m.message_queued("web-1", 0.0015);
        m.message_queued("web-1", 0.0003);
        let text = m.encode(Exposition::Classic);
        for line in [
            "tribune_agent_enclave_messages_sent{enclave=\"web-1\"} 3",
            "tribune_agent_enclave_messages_sent_bytes{enclave=\"web-1\"} 192",
            "tribune_agent_enclave_messages_queue_full{enclave=\"web-1\"} 2",
            "tribune_agent_enclave_messages_received{enclave=\"web-1\"} 0",
            "tribune_agent_message_queue_seconds_count{sender=\"web-1\"} 2",
            "tribune_agent_message_queue_seconds_bucket{le=\"0.0003\",sender=\"web-1\"} 1",
            "tribune_agent_message_queue_seconds_bucket{le=\"0.0015\",sender=\"web-1\"} 2",
        ] {
            assert!(text.contains(line), "{line} in\n{text}");
        }
        assert!(
            text.contains("tribune_agent_enclave_cpu_millicores{enclave=\"web-1\"} 250"),
            "{text}"
        );
        assert!(
            text.contains("tribune_agent_enclave_memory_bytes{enclave=\"web-1\"} 1048576"),
            "{text}"
        );
        assert!(
            text.contains("tribune_agent_drift_rewrites_total{what=\"cpu cap\"} 1"),
            "{text}"
        );
        m.forget_enclave("web-1");
        let text = m.encode(Exposition::Classic);
        assert!(!text.contains("web-1"), "{text}");
    }
}
