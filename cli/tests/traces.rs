//! Traces end to end, as root: 3 controllers (mTLS) and a real host agent export OTLP/gRPC to
//! a receiver in this test. The agent streams to a *follower*, so one usage window's journey
//! crosses three processes: the agent seals the window (`usage.seal`); the follower verifies it
//! (`attest.usage`, `attest.verify`) and decides (`attest.decide`); the leader commits the
//! decision (`raft.commit`, reached by the forwarded write's gRPC metadata); the follower pushes
//! the plan (`attest.plan_push`); the agent applies it (`agent.plan_apply`) and writes the cgroup
//! (`cgroup.write`). The test finds that journey in what was exported: one trace id, each span
//! the child of the one before it, in time order, on the process it belongs to.

mod common;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::{Cluster, DEADLINE, skip_unless_root};
use opentelemetry_proto::tonic::collector::trace::v1::trace_service_server::{
    TraceService, TraceServiceServer,
};
use opentelemetry_proto::tonic::collector::trace::v1::{
    ExportTraceServiceRequest, ExportTraceServiceResponse,
};
use opentelemetry_proto::tonic::common::v1::any_value::Value as AnyValue;
use serde_json::json;

const GREEDY_POLICY: &str = r#"
policy "trace-greedy" {
  match tenant == "greedy"
  guarantee { cpu = 100m }
  limit { cpu = 200m  memory = 256MiB }
  on over_limit { throttle now; suspend after 10m }
}
"#;

/// One exported span, flattened.
#[derive(Clone, Debug)]
struct Span {
    service: String,
    name: String,
    trace: Vec<u8>,
    id: Vec<u8>,
    parent: Vec<u8>,
    start_ns: u64,
    attrs: HashMap<String, String>,
}

#[derive(Clone, Default)]
struct Receiver(Arc<Mutex<Vec<Span>>>);

#[tonic::async_trait]
impl TraceService for Receiver {
    async fn export(
        &self,
        req: tonic::Request<ExportTraceServiceRequest>,
    ) -> Result<tonic::Response<ExportTraceServiceResponse>, tonic::Status> {
        let mut out = Vec::new();
        for rs in req.into_inner().resource_spans {
            let service = rs
                .resource
                .iter()
                .flat_map(|r| &r.attributes)
                .find(|kv| kv.key == "service.name")
                .and_then(|kv| kv.value.as_ref())
                .map(|v| text(v.value.as_ref()))
                .unwrap_or_default();
            for ss in rs.scope_spans {
                for s in ss.spans {
                    out.push(Span {
                        service: service.clone(),
                        name: s.name,
                        trace: s.trace_id,
                        id: s.span_id,
                        parent: s.parent_span_id,
                        start_ns: s.start_time_unix_nano,
                        attrs: s
                            .attributes
                            .into_iter()
                            .map(|kv| {
                                let v = kv
                                    .value
                                    .as_ref()
                                    .map(|v| text(v.value.as_ref()))
                                    .unwrap_or_default();
                                (kv.key, v)
                            })
                            .collect(),
                    });
                }
            }
        }
        self.0.lock().unwrap_or_else(|p| p.into_inner()).extend(out);
        Ok(tonic::Response::new(ExportTraceServiceResponse {
            partial_success: None,
        }))
    }
}

fn text(v: Option<&AnyValue>) -> String {
    match v {
        Some(AnyValue::StringValue(s)) => s.clone(),
        Some(AnyValue::IntValue(i)) => i.to_string(),
        Some(AnyValue::BoolValue(b)) => b.to_string(),
        Some(AnyValue::DoubleValue(d)) => d.to_string(),
        _ => String::new(),
    }
}

/// The journey, cgroup write first, walked up by parent ids; `None` until it is all there.
fn journey(spans: &[Span]) -> Option<Vec<Span>> {
    let by_id: HashMap<(&[u8], &[u8]), &Span> = spans
        .iter()
        .map(|s| ((s.trace.as_slice(), s.id.as_slice()), s))
        .collect();
    let up = |s: &Span| {
        by_id
            .get(&(s.trace.as_slice(), s.parent.as_slice()))
            .copied()
    };
    let want = [
        "cgroup.write",
        "agent.plan_apply",
        "attest.plan_push",
        "attest.decide",
        "attest.usage",
        "usage.seal",
    ];
    'next: for w in spans.iter().filter(|s| s.name == "cgroup.write") {
        let mut chain = vec![w.clone()];
        let mut at = w;
        for name in &want[1..] {
            match up(at) {
                Some(p) if p.name == *name => {
                    chain.push(p.clone());
                    at = p;
                }
                _ => continue 'next,
            }
        }
        // The leader's commit of the decision: a child of `attest.decide`, same trace.
        let decide = &chain[3];
        let commit = spans.iter().find(|s| {
            s.name == "raft.commit" && s.trace == decide.trace && s.parent == decide.id
        })?;
        chain.push(commit.clone());
        return Some(chain);
    }
    None
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_windows_journey_is_one_trace_across_the_agent_and_two_controllers() {
    if skip_unless_root(
        "one_windows_journey_is_one_trace_across_the_agent_and_two_controllers",
        "the host agent needs cgroups",
    ) {
        return;
    }
    let received = Receiver::default();
    // Bound here, on a port the kernel picks: a bind that failed inside the spawned server
    // would only show as no spans arriving.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind the collector");
    let port = listener.local_addr().expect("collector address").port();
    let server = tokio::spawn(
        tonic::transport::Server::builder()
            .add_service(TraceServiceServer::new(received.clone()))
            .serve_with_incoming(tokio_stream::wrappers::TcpListenerStream::new(listener)),
    );
    let endpoint = format!("http://127.0.0.1:{port}");
    let trace_args = ["--otlp-endpoint", &endpoint, "--trace-sample-ratio", "1"];
    let mut extra = vec!["--allow-sim-evidence"];
    extra.extend(trace_args);
    let c = Cluster::start_tls(3, &extra);
    let leader = c.wait_leader().await;
    let follower = *c
        .nodes
        .keys()
        .find(|id| **id != leader)
        .expect("a follower");
    let (s, b) = c
        .put_policy(leader, "trace-greedy", GREEDY_POLICY, None)
        .await;
    assert!(s == 200 || s == 201, "{s} {b}");
    c.put_json(
        leader,
        "/v1/enclaves/greedy",
        json!({
            "id": "greedy", "tenant": "greedy", "tee": "sim",
            "placement": {"host": "h1", "epoch": 1},
            "launch": {"process": {"cmd": ["/bin/sh", "-c", "while :; do :; done"]}},
        }),
    )
    .await;
    // The agent streams to the follower first: its decisions commit on the leader.
    let mut controllers = vec![c.nodes[&follower].addr.clone()];
    controllers.extend(
        c.nodes
            .values()
            .filter(|n| n.id != follower)
            .map(|n| n.addr.clone()),
    );
    let agent = common::start_agent(
        &c,
        "trace",
        "h1",
        controllers,
        trace_args.iter().map(|s| s.to_string()).collect(),
    );

    // The throttle's journey arrives within the exporters' batch delay (5 s) of it happening.
    let deadline = Instant::now() + DEADLINE + DEADLINE;
    let chain = loop {
        let spans = received.0.lock().unwrap_or_else(|p| p.into_inner()).clone();
        if let Some(chain) = journey(&spans) {
            break chain;
        }
        assert!(
            Instant::now() < deadline,
            "no complete journey among {} spans (names: {:?})\nagent:\n{}\n{}",
            spans.len(),
            spans
                .iter()
                .map(|s| (s.service.as_str(), s.name.as_str()))
                .collect::<std::collections::BTreeSet<_>>(),
            agent.log_text(),
            c.logs()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    let [write, apply, push, decide, usage, seal, commit] = &chain[..] else {
        panic!("journey of {} spans", chain.len());
    };
    // One trace.
    for s in &chain {
        assert_eq!(s.trace, seal.trace, "{} is in another trace", s.name);
    }
    // Each on the process it belongs to: the agent, the follower, the leader.
    for s in [seal, apply, write] {
        assert_eq!(s.service, "tribune-agent", "{s:?}");
    }
    for s in [seal, apply] {
        assert_eq!(s.attrs.get("host").map(String::as_str), Some("h1"), "{s:?}");
    }
    assert_eq!(
        seal.attrs.get("enclave").map(String::as_str),
        Some("greedy"),
        "{seal:?}"
    );
    for s in [usage, decide, push] {
        assert_eq!(s.service, "tribune-controller", "{s:?}");
        assert_eq!(
            s.attrs.get("controller"),
            Some(&follower.to_string()),
            "{s:?}"
        );
    }
    assert_eq!(commit.service, "tribune-controller", "{commit:?}");
    assert_eq!(
        commit.attrs.get("controller"),
        Some(&leader.to_string()),
        "{commit:?}"
    );
    // In order: seal → usage → decide → commit, and decide → push → apply → write.
    for (a, b) in [
        (seal, usage),
        (usage, decide),
        (decide, commit),
        (decide, push),
        (push, apply),
        (apply, write),
    ] {
        assert!(
            a.start_ns <= b.start_ns,
            "{} (on {}) starts after {} (on {})",
            a.name,
            a.service,
            b.name,
            b.service
        );
    }
    assert!(
        write
            .attrs
            .get("change")
            .is_some_and(|c| c.contains("CpuCap")),
        "{write:?}"
    );
    drop(agent);
    server.abort();
}
